"""Two-way shooting under OpenMM: unbiased reactive trajectories, committors, the transition-state
ensemble and transition path sampling, started from frames of transition paths (docs/shooting.md).

A *two-way shot* from a configuration ``x0``: draw Maxwell-Boltzmann velocities ``v0``, integrate
forward (``LangevinMiddleIntegrator`` at the system's temperature and friction, no restraint)
until the configuration enters state A or B (tested every ``check_interval`` steps) or
``max_steps`` have passed; then, from ``x0`` with the velocities reversed (``-v0``), integrate
again with the same integrator: the *backward half*. A shot whose halves end in different states
is *reactive*: the backward half reversed in time, ``x0``, and the forward half form an unbiased
reactive trajectory, stored oriented A -> B (the whole trajectory is reversed when the forward
half ended in A), one frame every ``check_interval`` steps (time in ps from its first frame, in
A, to its last, in B).

Committor: each half is itself a committor shot from ``x0`` (``-v0`` is as probable as ``v0``
under the Maxwell-Boltzmann distribution), so both halves count: ``p_B = n_B / (n_A + n_B)`` over
the ``2 * n_shots`` decided halves of a frame, with a Wilson interval that treats them as
independent. The two halves of one shot are not independent: with inertia they are typically
anti-correlated (``v0`` and ``-v0`` push to opposite sides), which makes the interval conservative;
halves correlated positively (an outcome set by the speed rather than the direction) could make it
too narrow by up to a factor ``sqrt(2)``.

Transition path sampling (``tps_moves > 0``): every reactive trajectory seeds a Monte Carlo chain
of two-way shooting moves: a shooting frame drawn uniformly from the path's interior frames (all
but the first and last, i.e. the frames outside A and B), fresh Maxwell-Boltzmann velocities,
both halves integrated as above; the trial path is accepted when it connects A and B (either
orientation: it is then stored A -> B, which amounts to having drawn ``-v``) and with probability
``min(1, (L_old - 2) / (L_new - 2))`` for paths of ``L`` frames: the flexible-length rule of
Bolhuis, Chandler, Dellago and Geissler (Annu. Rev. Phys. Chem. 53, 291, 2002), with the lengths
counted in frames that can be chosen as shooting points.

Every shot and chain has its own seed (:func:`~tps_diffusion.utils.seeds.spawn_seeds`) and starts its
own random stream (a batch of shots shares one OpenMM Context, re-seeded per shot:
:mod:`~tps_diffusion.molecular.parallel`), so results do not depend on the executor or the number of
workers (bitwise on the Reference platform), and a ``checkpoint`` directory lets an interrupted run
continue where it stopped.

Units: nm, ps, K, kJ/mol.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit
from tqdm.auto import tqdm

from ..utils.files import atomic_path, write_json, writing
from ..utils.provenance import jsonable, versions
from ..utils.seeds import MAX_SEED, spawn_seeds
from ._openmm import platform_properties, quantity_value
from .committor import (
    OUTCOME_A,
    OUTCOME_B,
    OUTCOME_UNDECIDED,
    CommittorResult,
    Propagation,
    check_configurations,
    check_state_tests,
    propagate,
    resolve_system,
    state_of,
    transition_state_ensemble,
)
from .dynamics import Dynamics
from .formats import load_trajectory, write_trajectory
from .limits import as_count, check_output_dir, openmm_errors
from .parallel import BatchContext, run_batches
from .states import StateDefinition
from .system import MolecularSystem

if TYPE_CHECKING:
    from .restrained import PathSet

__all__ = ["ShootingFrames", "Shot", "TPSMove", "TPSResult", "ShootingResult", "StateTest", "CheckpointMismatch",
           "NoShootingFrames", "in_states", "as_state_test", "shooting_frames", "two_way_shooting", "remove_checkpoint",
           "SELECT"]

#: frame selections of :func:`shooting_frames`
SELECT = ("max_energy", "uniform", "all")

_OUTCOME_NAME = {OUTCOME_A: "A", OUTCOME_B: "B", OUTCOME_UNDECIDED: "none"}
_NAME_OUTCOME = {v: k for k, v in _OUTCOME_NAME.items()}


# ---------------------------------------------------------------------------------------------
# states


class StateTest:
    """Picklable membership test for worker processes: positions ``(n_frames, n_atoms, 3)`` nm ->
    bool ``(n_frames,)``, True where a frame lies in any of ``states`` (their union).

    ``topology``: the system's mdtraj Topology; ``box``: ``(3, 3)`` nm for periodic CVs, or None.
    """

    def __init__(self, topology: mdtraj.Topology, states: Sequence[StateDefinition], box: np.ndarray | None = None):
        if not states:
            raise ValueError("a state test needs at least one state")
        self.topology = topology
        self.states = tuple(states)
        self.box = None if box is None else np.asarray(box, dtype=np.float32).reshape(3, 3)

    @property
    def name(self) -> str:
        """The state names joined by ``+`` (``"C5+C7eq"``)."""
        return "+".join(s.name for s in self.states)

    def __call__(self, positions) -> np.ndarray:
        xyz = np.asarray(positions, dtype=np.float32)
        traj = mdtraj.Trajectory(xyz.reshape(-1, self.topology.n_atoms, 3), self.topology)
        if self.box is not None:
            traj.unitcell_vectors = np.broadcast_to(self.box, (traj.n_frames, 3, 3)).copy()
        return np.any([s.contains(traj) for s in self.states], axis=0)

    def __repr__(self) -> str:
        return f"StateTest({self.name!r})"


def in_states(system: MolecularSystem, *names: str) -> StateTest:
    """Test for the union of the system's states ``names`` (e.g. ``in_states(aldp, "C5", "C7eq")``)."""
    return as_state_test(system, list(names), "the states")


def as_state_test(system, spec, which: str = "the state") -> Callable:
    """A state test (positions ``(n_frames, n_atoms, 3)`` nm -> bool ``(n_frames,)``) from a callable
    (returned as is), a state name or StateDefinition of ``system``, or a list of those (their union)."""
    if callable(spec) and not isinstance(spec, StateDefinition):
        return spec
    single = isinstance(spec, (str, StateDefinition))
    specs = [spec] if single else list(spec) if isinstance(spec, (list, tuple)) else []
    if not specs or not all(isinstance(s, (str, StateDefinition)) for s in specs):
        raise TypeError(f"{which} must be a callable on positions (n_frames, n_atoms, 3) nm, a state name, a "
                        f"StateDefinition or a list of those; got {spec!r}")
    if not isinstance(system, MolecularSystem):
        raise TypeError(f"{which} given as states needs a MolecularSystem (for its topology and states); pass "
                        "callables with a bare openmm.System")
    unknown = [s for s in specs if isinstance(s, str) and s not in system.states]
    if unknown:
        raise ValueError(f"unknown state(s) {unknown} of {system.name}; known states: {', '.join(system.states)}")
    states = [system.states[s] if isinstance(s, str) else s for s in specs]
    return StateTest(system.md_topology, states, system.box)


def _label(test: Callable, default: str) -> str:
    return test.name if isinstance(test, StateTest) else default


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class ShootingFrames:
    """Configurations to shoot from, and where they come from.

    ``trajectory``: the frames ``(n_frames, n_atoms, 3)`` nm, with topology and unit cell;
    ``path``, ``frame``: ``(n_frames,)`` int, the path of a :class:`PathSet` and the frame within it
    (``path = -1`` and ``frame`` = the index in the given configurations when not from a path set).
    """

    trajectory: mdtraj.Trajectory
    path: np.ndarray
    frame: np.ndarray

    def __post_init__(self):
        n = self.trajectory.n_frames
        object.__setattr__(self, "path", np.asarray(self.path, dtype=int).reshape(-1))
        object.__setattr__(self, "frame", np.asarray(self.frame, dtype=int).reshape(-1))
        if self.path.shape != (n,) or self.frame.shape != (n,):
            raise ValueError(f"path and frame must have one entry per frame ({n}); got {self.path.shape} and "
                             f"{self.frame.shape}")

    def __len__(self) -> int:
        return self.trajectory.n_frames


@dataclass(frozen=True)
class Shot:
    """One two-way shot: from start configuration ``start`` (path ``path``, frame ``frame``),
    outcome (``OUTCOME_A``, ``OUTCOME_B`` or ``OUTCOME_UNDECIDED``) and MD steps of each half
    (0 when the start lies in a state), and the seed of its velocities and Langevin noise."""

    index: int
    start: int
    path: int
    frame: int
    forward: int
    backward: int
    forward_steps: int
    backward_steps: int
    seed: int

    @property
    def reactive(self) -> bool:
        """The halves end in different states."""
        return _reactive(self.forward, self.backward)

    @property
    def steps(self) -> int:
        """MD steps (= force evaluations) of both halves."""
        return self.forward_steps + self.backward_steps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(forward=_OUTCOME_NAME[self.forward], backward=_OUTCOME_NAME[self.backward], reactive=self.reactive)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Shot:
        d = {k: v for k, v in d.items() if k != "reactive"}
        return cls(**{**d, "forward": _NAME_OUTCOME[d["forward"]], "backward": _NAME_OUTCOME[d["backward"]]})


@dataclass(frozen=True)
class TPSMove:
    """One two-way shooting Monte Carlo move of chain ``chain``: the shooting frame (index into the
    path before the move), the halves' outcomes and steps, the path lengths in frames before and
    after (``n_frames_new = 0`` when the trial path is not reactive) and whether it was accepted."""

    chain: int
    move: int
    shooting_frame: int
    forward: int
    backward: int
    forward_steps: int
    backward_steps: int
    n_frames_old: int
    n_frames_new: int
    accepted: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(forward=_OUTCOME_NAME[self.forward], backward=_OUTCOME_NAME[self.backward])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TPSMove:
        return cls(**{**d, "forward": _NAME_OUTCOME[d["forward"]], "backward": _NAME_OUTCOME[d["backward"]]})


def _reactive(forward: int, backward: int) -> bool:
    return forward != backward and OUTCOME_UNDECIDED not in (forward, backward)


def _path_ps(trajectories: Sequence[mdtraj.Trajectory], frame_interval_ps: float) -> np.ndarray:
    """Duration (ps) of each trajectory from its first frame (in A) to its last (in B)."""
    return np.array([(t.n_frames - 1) * frame_interval_ps for t in trajectories], dtype=float)


@dataclass
class TPSResult:
    """Transition path sampling chains seeded with the reactive shots' trajectories.

    ``moves``: every move of every chain; ``trajectories``: the final path of each chain (A -> B,
    topology and unit cell, time in ps); ``seed_shots``: the shot whose trajectory started each
    chain; ``decorrelated``: ``(n_chains,)`` bool, the final path holds no frame of the seed path
    (every frame was generated after the chain started); ``frame_interval_ps``: frame spacing.
    """

    moves: list[TPSMove]
    trajectories: list[mdtraj.Trajectory]
    seed_shots: list[int]
    decorrelated: np.ndarray
    frame_interval_ps: float

    @property
    def n_chains(self) -> int:
        return len(self.trajectories)

    @property
    def acceptance(self) -> float | None:
        """Fraction of accepted moves (None without moves)."""
        return float(np.mean([m.accepted for m in self.moves])) if self.moves else None

    @property
    def n_force_evaluations(self) -> int:
        return int(sum(m.forward_steps + m.backward_steps for m in self.moves))

    @property
    def path_ps(self) -> np.ndarray:
        """Duration (ps) of each chain's final path ``(n_chains,)``."""
        return _path_ps(self.trajectories, self.frame_interval_ps)

    def as_dict(self) -> dict[str, Any]:
        """Summary: chains, moves, acceptance, decorrelated chains, mean path time (ps), force evaluations."""
        ps = self.path_ps
        return {"n_chains": self.n_chains, "n_moves": len(self.moves), "acceptance": self.acceptance,
                "n_decorrelated": int(self.decorrelated.sum()),
                "mean_path_ps": float(ps.mean()) if len(ps) else None,
                "n_force_evaluations": self.n_force_evaluations}


@dataclass
class ShootingResult:
    """Outcome of :func:`two_way_shooting`.

    Attributes
    ----------
    frames : ShootingFrames
        The ``n_frames`` start configurations.
    shots : list of Shot
        ``shots_per_frame`` shots per frame, frame after frame.
    trajectories : list of mdtraj.Trajectory
        The reactive shots' trajectories, in shot order, each oriented A -> B, one frame every
        ``check_interval`` steps (time in ps), with topology and unit cell.
    shots_per_frame : int
    settings : dict
        Dynamics (K, ps, 1/ps, platform, seed), ``max_steps``, ``check_interval``, ``tps_moves``,
        state labels.
    tps : TPSResult or None
        The transition path sampling chains (``tps_moves > 0``).
    confidence : float
        Of the Wilson intervals.
    tse_tol : float
        The transition-state ensemble holds the frames with ``|p_B - 1/2| < tse_tol``.
    wall_time_s : float
    """

    frames: ShootingFrames
    shots: list[Shot]
    trajectories: list[mdtraj.Trajectory]
    shots_per_frame: int
    settings: dict
    tps: TPSResult | None = None
    confidence: float = 0.95
    tse_tol: float = 0.1
    wall_time_s: float = 0.0

    @property
    def n_shots(self) -> int:
        """All shots (``n_frames * shots_per_frame``)."""
        return len(self.shots)

    @property
    def reactive(self) -> np.ndarray:
        """``(n_shots,)`` bool."""
        return np.array([s.reactive for s in self.shots], dtype=bool)

    @property
    def n_reactive(self) -> int:
        return int(self.reactive.sum())

    @property
    def reactive_fraction(self) -> float:
        return self.n_reactive / self.n_shots

    @property
    def frame_interval_ps(self) -> float:
        """Time between frames of the trajectories, ps."""
        return self.settings["check_interval"] * self.settings["timestep"]

    @property
    def committor(self) -> CommittorResult:
        """Per-frame committor: outcomes ``(n_frames, 2 * shots_per_frame)``, the forward halves
        then the backward halves (each half is a committor shot; see the module docstring)."""
        n = self.shots_per_frame
        out = np.array([[s.forward for s in self.shots], [s.backward for s in self.shots]])
        steps = np.array([[s.forward_steps for s in self.shots], [s.backward_steps for s in self.shots]])

        def per_frame(a: np.ndarray) -> np.ndarray:
            return a.reshape(2, -1, n).transpose(1, 0, 2).reshape(-1, 2 * n)

        return CommittorResult(outcomes=per_frame(out), steps=per_frame(steps), confidence=self.confidence,
                               settings=dict(self.settings, halves="forward then backward"))

    def tse(self, tol: float | None = None) -> np.ndarray:
        """Indices of the frames with ``|p_B - 1/2| < tol`` (default ``tse_tol``): the transition-state ensemble."""
        return transition_state_ensemble(self.committor, self.tse_tol if tol is None else tol)

    @property
    def path_ps(self) -> np.ndarray:
        """Transition path time (ps) of each reactive trajectory: first frame (in A) to last (in B)."""
        return _path_ps(self.trajectories, self.frame_interval_ps)

    @property
    def mean_path_ps(self) -> float | None:
        ps = self.path_ps
        return float(ps.mean()) if len(ps) else None

    @property
    def n_force_evaluations(self) -> int:
        """MD steps of all shots and TPS moves (one force evaluation each)."""
        return int(sum(s.steps for s in self.shots)) + (self.tps.n_force_evaluations if self.tps else 0)

    @property
    def ensemble(self) -> list[mdtraj.Trajectory]:
        """The unbiased transition path ensemble: the chains' final paths with TPS, else the reactive trajectories."""
        return self.tps.trajectories if self.tps is not None else self.trajectories

    def as_dict(self) -> dict[str, Any]:
        """Summary (counts, fractions, ps, force evaluations) and settings; per-frame committors are
        in :attr:`committor`."""
        undecided = sum((s.forward == OUTCOME_UNDECIDED) + (s.backward == OUTCOME_UNDECIDED) for s in self.shots)
        ps = self.path_ps
        return {
            "n_frames": len(self.frames), "shots_per_frame": self.shots_per_frame, "n_shots": self.n_shots,
            "n_reactive": self.n_reactive, "reactive_fraction": self.reactive_fraction,
            "n_undecided_halves": int(undecided), "n_tse_frames": int(len(self.tse())), "tse_tol": self.tse_tol,
            "mean_path_ps": self.mean_path_ps, "path_ps_std": float(ps.std()) if len(ps) else None,
            "frame_interval_ps": self.frame_interval_ps,
            "n_force_evaluations": self.n_force_evaluations,
            "n_force_evaluations_shots": int(sum(s.steps for s in self.shots)),
            "tps": self.tps.as_dict() if self.tps is not None else None,
            "wall_time_s": self.wall_time_s, "settings": self.settings,
        }

    # ----- files

    def save(self, directory: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the result into ``directory``.

        ``shooting.json`` (:meth:`as_dict` + versions), ``shots.json`` (per-shot records, the
        frames' path/frame indices, confidence, tolerance), ``committor.json`` (p_B, Wilson
        interval, counts per frame, TSE indices), ``frames.dcd`` (the start frames) +
        ``topology.pdb``, ``tse.pdb`` (the transition-state ensemble, if any),
        ``reactive/path_XXXX.dcd`` (reactive trajectories, A -> B, unit cell kept) and with TPS
        ``tps.json`` (moves) + ``tps/path_XXXX.dcd`` (final path of each chain). Every file is
        written atomically; existing files are replaced only with ``overwrite``.
        """
        d = check_output_dir(directory, "the shooting results", "choose another directory or --run-dir")
        d.mkdir(parents=True, exist_ok=True)
        write_trajectory(self.frames.trajectory, d / "frames.dcd", overwrite, topology_pdb=d / "topology.pdb")
        for sub, trajs in (("reactive", self.trajectories), ("tps", self.tps.trajectories if self.tps else [])):
            for i, t in enumerate(trajs):
                write_trajectory(t, d / sub / f"path_{i:04d}.dcd", overwrite)
        tse = self.tse()
        if len(tse):
            write_trajectory(self.frames.trajectory[tse], d / "tse.pdb", overwrite)
        c = self.committor
        write_json(d / "committor.json", jsonable({
            "path": self.frames.path, "frame": self.frames.frame, "tse": tse, "tse_tol": self.tse_tol,
            **{k: v for k, v in c.as_dict().items() if k not in ("outcomes", "steps", "settings")}}), overwrite)
        write_json(d / "shots.json", jsonable({
            "shots": [s.to_dict() for s in self.shots], "path": self.frames.path, "frame": self.frames.frame,
            "shots_per_frame": self.shots_per_frame, "confidence": self.confidence, "tse_tol": self.tse_tol,
            "settings": self.settings, "wall_time_s": self.wall_time_s}), overwrite)
        if self.tps is not None:
            write_json(d / "tps.json", jsonable({
                "moves": [m.to_dict() for m in self.tps.moves], "seed_shots": self.tps.seed_shots,
                "decorrelated": self.tps.decorrelated, **self.tps.as_dict()}), overwrite)
        write_json(d / "shooting.json", jsonable({**self.as_dict(), "versions": versions("openmm", "mdtraj")}),
                   overwrite)
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ShootingResult:
        """Read a result written by :meth:`save`."""
        d = Path(directory)
        if not (d / "shots.json").is_file():
            raise FileNotFoundError(f"{d} holds no shooting result (shots.json missing); give the directory "
                                    "ShootingResult.save or 'tps-diffusion shoot' wrote")
        rec = json.loads((d / "shots.json").read_text())
        top = d / "topology.pdb"
        frames = ShootingFrames(load_trajectory(d / "frames.dcd", top), rec["path"], rec["frame"])
        shots = [Shot.from_dict(s) for s in rec["shots"]]
        dt = rec["settings"]["check_interval"] * rec["settings"]["timestep"]

        def paths(sub: str, n: int) -> list[mdtraj.Trajectory]:
            out = [load_trajectory(d / sub / f"path_{i:04d}.dcd", top) for i in range(n)]
            for t in out:
                t.time = np.arange(t.n_frames) * dt
            return out

        tps = None
        if (d / "tps.json").is_file():
            t = json.loads((d / "tps.json").read_text())
            tps = TPSResult(moves=[TPSMove.from_dict(m) for m in t["moves"]], trajectories=paths("tps", t["n_chains"]),
                            seed_shots=t["seed_shots"], decorrelated=np.asarray(t["decorrelated"], dtype=bool),
                            frame_interval_ps=dt)
        return cls(frames=frames, shots=shots, trajectories=paths("reactive", sum(s.reactive for s in shots)),
                   shots_per_frame=rec["shots_per_frame"], settings=rec["settings"], tps=tps,
                   confidence=rec["confidence"], tse_tol=rec["tse_tol"], wall_time_s=rec["wall_time_s"])


# ---------------------------------------------------------------------------------------------
# frame selection


class NoShootingFrames(ValueError):
    """No path of a PathSet has a frame between leaving A and entering B."""


def _transition_segment(inside_a: np.ndarray, inside_b: np.ndarray) -> np.ndarray:
    """Frames after the last frame in A and before the first frame in B after that."""
    n = len(inside_a)
    a = np.flatnonzero(inside_a)
    lo = int(a[-1]) + 1 if len(a) else 0
    b = np.flatnonzero(inside_b[lo:])
    hi = lo + int(b[0]) if len(b) else n
    return np.arange(lo, hi)


def _around(centre: int, segment: np.ndarray, n: int, spacing: int) -> np.ndarray:
    """Up to ``n`` frames of ``segment`` at ``centre + k * spacing``, ``k = 0, -1, 1, -2, 2, ...``."""
    lo, hi = segment[0], segment[-1]
    out = [centre]
    k = 1
    while len(out) < n and (centre - k * spacing >= lo or centre + k * spacing <= hi):
        for f in (centre - k * spacing, centre + k * spacing):
            if lo <= f <= hi and len(out) < n:
                out.append(f)
        k += 1
    return np.sort(np.array(out, dtype=int))


def shooting_frames(pathset: PathSet, in_A: Callable, in_B: Callable, select: str = "max_energy",
                    per_path: int = 5, spacing: int | None = None) -> ShootingFrames:
    """Frames of the paths of ``pathset`` to shoot from.

    Only the *transition segment* of each path is used: the frames after its last frame in A and
    before its first frame in B after that (frames inside a state give no reactive shot; a path
    that never leaves A contributes nothing).

    Parameters
    ----------
    pathset : PathSet
        Paths (frames in nm) with their force-field energies ``(n_paths, n_frames)`` kJ/mol.
    in_A, in_B : callables
        Positions ``(n_frames, n_atoms, 3)`` nm -> bool ``(n_frames,)`` (:func:`in_states`).
    select : {"max_energy", "uniform", "all"}
        ``max_energy``: the segment's highest-energy frame and ``per_path - 1`` frames around it,
        ``spacing`` frames apart (clipped to the segment); ``uniform``: ``per_path`` frames evenly
        spread over the segment; ``all``: every frame of the segment.
    per_path : int
        Frames per path (``max_energy``, ``uniform``).
    spacing : int, optional
        Frames between the ``max_energy`` picks; default: the segment's length over ``2 * per_path``
        (the picks then span about half the segment), at least 1.

    Returns
    -------
    ShootingFrames

    Raises
    ------
    NoShootingFrames
        (a ValueError) when no path has a frame between leaving A and entering B.
    """
    if select not in SELECT:
        raise ValueError(f"unknown frame selection {select!r}; choose one of {', '.join(SELECT)}")
    per_path = as_count(per_path, "per_path")
    if spacing is not None:
        spacing = as_count(spacing, "spacing")
    check_state_tests(in_A, in_B)
    energies = np.asarray(pathset.energies, dtype=float)
    if select == "max_energy" and not np.isfinite(energies).any():
        raise ValueError("the paths have no energies (sampled with compute_energies=False); select 'uniform' or "
                         "'all', or sample with energies")
    picked, path_index, frame_index = [], [], []
    for p, traj in enumerate(pathset.trajectories):
        segment = _transition_segment(np.asarray(in_A(traj.xyz), dtype=bool), np.asarray(in_B(traj.xyz), dtype=bool))
        if len(segment) == 0:
            continue
        if select == "all":
            idx = segment
        elif select == "uniform":
            idx = np.unique(np.linspace(segment[0], segment[-1], min(per_path, len(segment))).round().astype(int))
        else:
            e = energies[p, segment]
            if not np.isfinite(e).any():
                continue
            step = spacing or max(1, len(segment) // (2 * per_path))
            idx = _around(int(segment[np.nanargmax(e)]), segment, per_path, step)
        picked.append(traj[idx])
        path_index += [p] * len(idx)
        frame_index += idx.tolist()
    if not picked:
        raise NoShootingFrames(f"none of the {pathset.n_paths} paths has a frame outside states A and B after leaving "
                               "A; check the states (in_A, in_B) or sample paths that make the transition")
    return ShootingFrames(mdtraj.join(picked, check_topology=False), path_index, frame_index)


# ---------------------------------------------------------------------------------------------
# worker side (module-level: the functions travel to the workers by name)


def _setup(payload: dict) -> dict:
    return dict(payload, system=openmm.XmlSerializer.deserialize(payload["system_xml"]))


def _two_way(w: dict, ctx: openmm.Context, integ: openmm.Integrator, x: np.ndarray, box: np.ndarray | None,
             velocity_seed: int, what: str) -> tuple[Propagation, Propagation, np.ndarray, np.ndarray | None]:
    """Both halves of a two-way shot from ``x`` (nm; box ``(3, 3)`` nm or None): Maxwell-Boltzmann
    velocities ``v0`` drawn with ``velocity_seed``, forward with ``v0``, backward from the same
    positions and box with ``-v0``. Returns the forward and backward :class:`Propagation` (frames
    recorded), the start ``(n_atoms, 3)`` nm after constraints and its box (None if not periodic)."""
    dyn: Dynamics = w["dynamics"]
    with openmm_errors(f"starting {what}"):
        if box is not None:
            ctx.setPeriodicBoxVectors(*(openmm.Vec3(*map(float, v)) for v in box))
        ctx.setPositions(np.asarray(x, dtype=np.float64))
        ctx.applyConstraints(1e-6)
        ctx.setVelocitiesToTemperature(dyn.temperature, int(velocity_seed))
        st = ctx.getState(getPositions=True, getVelocities=True)
    x0 = quantity_value(st.getPositions(asNumpy=True), unit.nanometer)
    v0 = quantity_value(st.getVelocities(asNumpy=True), unit.nanometer / unit.picosecond)
    box0 = (quantity_value(st.getPeriodicBoxVectors(asNumpy=True), unit.nanometer)
            if w["system"].usesPeriodicBoundaryConditions() else None)
    args = (w["in_A"], w["in_B"], w["max_steps"], w["check_interval"])
    forward = propagate(ctx, integ, *args, f"{what} (forward half)", record=True)
    with openmm_errors(f"reversing the velocities of {what}"):
        if box0 is not None:
            ctx.setPeriodicBoxVectors(*(openmm.Vec3(*map(float, v)) for v in box0))
        ctx.setPositions(x0)
        ctx.setVelocities(-v0)
    backward = propagate(ctx, integ, *args, f"{what} (backward half)", record=True)
    return forward, backward, x0, box0


def _join(forward: Propagation, backward: Propagation, x0: np.ndarray,
          box0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """The reactive trajectory ``(n, n_atoms, 3)`` float32 nm (backward half reversed, start, forward
    half; reversed as a whole when it runs B -> A), its boxes ``(n, 3, 3)`` nm or None, and the index
    of the start frame in it."""
    xyz = np.concatenate([backward.frames[::-1], x0[None].astype(np.float32), forward.frames])
    boxes = None if box0 is None else np.concatenate([backward.boxes[::-1], box0[None], forward.boxes])
    k = len(backward.frames)
    if forward.outcome == OUTCOME_A:
        xyz, boxes, k = xyz[::-1], None if boxes is None else boxes[::-1], len(xyz) - 1 - k
    return np.ascontiguousarray(xyz), None if boxes is None else np.ascontiguousarray(boxes), k


def _reseed(context: BatchContext, seed: int, what: str) -> tuple[openmm.Context, openmm.Integrator]:
    """The batch's Context with its integrator seeded with ``seed`` (as a fresh Context would be)."""
    with openmm_errors(f"creating the context of {what} on the {context.dynamics.platform} platform"):
        return context.reseed(seed)


def _shoot_batch(w: dict, tasks, progress) -> Iterator[tuple]:
    """Two-way shots ``(index, start, seed)`` on one Context; yields per shot (forward outcome, steps,
    backward outcome, steps, xyz or None, boxes or None): the trajectory only when reactive."""
    context = BatchContext(w["dynamics"], w["system"], w["properties"])
    try:
        for index, start, seed in tasks:
            what = f"shot {index} (start {start})"
            ctx, integ = _reseed(context, seed, what)
            fwd, bwd, x0, box0 = _two_way(w, ctx, integ, w["starts"][start],
                                          None if w["boxes"] is None else w["boxes"][start], seed, what)
            xyz = boxes = None
            if _reactive(fwd.outcome, bwd.outcome):
                xyz, boxes, _ = _join(fwd, bwd, x0, box0)
            if progress is not None:
                progress(1)
            yield fwd.outcome, fwd.steps, bwd.outcome, bwd.steps, xyz, boxes
    finally:
        context.close()


def _tps_batch(w: dict, tasks, progress) -> Iterator[tuple]:
    """TPS chains ``(chain, xyz, boxes, seed, n_moves)`` on one Context; yields per chain (moves as
    tuples, final xyz, final boxes, decorrelated)."""
    context = BatchContext(w["dynamics"], w["system"], w["properties"])
    try:
        for task in tasks:
            yield _tps_chain(w, context, *task)
            if progress is not None:
                progress(1)
    finally:
        context.close()


def _tps_chain(w: dict, context: BatchContext, chain: int, xyz: np.ndarray, boxes: np.ndarray | None, seed: int,
               n_moves: int) -> tuple:
    """``n_moves`` two-way shooting moves from one reactive path (one random stream for the chain)."""
    rng = np.random.default_rng(seed)
    seeded = np.ones(len(xyz), dtype=bool)  # frames that come from the seed path
    moves = []
    ctx, integ = _reseed(context, seed, f"TPS chain {chain}")
    for m in range(n_moves):
        n_old = len(xyz)
        k = int(rng.integers(1, n_old - 1))  # interior frames: outside A and B
        velocity_seed = int(rng.integers(1, MAX_SEED + 1))
        u = float(rng.random())
        fwd, bwd, x0, box0 = _two_way(w, ctx, integ, xyz[k], None if boxes is None else boxes[k], velocity_seed,
                                      f"TPS chain {chain}, move {m}")
        n_new = len(fwd.frames) + len(bwd.frames) + 1 if _reactive(fwd.outcome, bwd.outcome) else 0
        accepted = n_new > 0 and u < min(1.0, (n_old - 2) / (n_new - 2))
        if accepted:
            from_seed = seeded[k]
            xyz, boxes, k_new = _join(fwd, bwd, x0, box0)
            seeded = np.zeros(len(xyz), dtype=bool)
            seeded[k_new] = from_seed
        moves.append((chain, m, k, fwd.outcome, bwd.outcome, fwd.steps, bwd.steps, n_old, n_new, accepted))
    return moves, xyz, boxes, not seeded.any()


# ---------------------------------------------------------------------------------------------
# checkpoint


class CheckpointMismatch(ValueError):
    """The checkpoint directory was written by a run with other settings or start frames."""


class _Checkpoint:
    """One file per finished shot (``shot_000012.npz``) and chain (``chain_0003.npz``), written
    atomically, plus ``settings.json``: what an interrupted run has done."""

    def __init__(self, directory: str | os.PathLike, key: dict):
        self.dir = Path(check_output_dir(directory, "the shooting checkpoint", "choose another checkpoint directory"))
        self.dir.mkdir(parents=True, exist_ok=True)
        saved = self.dir / "settings.json"
        if saved.is_file():
            old = json.loads(saved.read_text())
            diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            if diff:
                raise CheckpointMismatch(f"checkpoint {self.dir} was written by a run with other {', '.join(diff)}; "
                                         "use the same settings and start frames, or delete the checkpoint")
        else:
            write_json(saved, key)

    def _write(self, name: str, record: dict, xyz, boxes) -> None:
        arrays = {"record": np.array(json.dumps(record))}
        if xyz is not None:
            arrays["xyz"] = xyz
        if boxes is not None:
            arrays["boxes"] = boxes
        with atomic_path(self.dir / name, overwrite=True) as tmp, writing(self.dir / name), open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    def _read(self, pattern: str) -> dict[int, tuple]:
        out = {}
        for f in sorted(self.dir.glob(pattern)):
            with np.load(f) as z:
                out[int(f.stem.split("_")[1])] = (json.loads(str(z["record"])), z["xyz"] if "xyz" in z else None,
                                                   z["boxes"] if "boxes" in z else None)
        return out

    def save_shot(self, shot: Shot, xyz, boxes) -> None:
        self._write(f"shot_{shot.index:06d}.npz", shot.to_dict(), xyz, boxes)

    def shots(self) -> dict[int, tuple[Shot, np.ndarray | None, np.ndarray | None]]:
        return {i: (Shot.from_dict(r), x, b) for i, (r, x, b) in self._read("shot_*.npz").items()}

    def save_chain(self, chain: int, moves: list[TPSMove], xyz, boxes, decorrelated: bool) -> None:
        self._write(f"chain_{chain:04d}.npz", {"moves": [m.to_dict() for m in moves], "decorrelated": decorrelated},
                    xyz, boxes)

    def chains(self) -> dict[int, tuple[list[TPSMove], np.ndarray, np.ndarray | None, bool]]:
        return {i: ([TPSMove.from_dict(m) for m in r["moves"]], x, b, bool(r["decorrelated"]))
                for i, (r, x, b) in self._read("chain_*.npz").items()}


# ---------------------------------------------------------------------------------------------
# driver


def _placeholder_topology(n_atoms: int) -> mdtraj.Topology:
    """One residue of ``n_atoms`` virtual sites (for a bare ``openmm.System`` given arrays)."""
    top = mdtraj.Topology()
    res = top.add_residue("UNK", top.add_chain())
    for i in range(n_atoms):
        top.add_atom(f"P{i}", mdtraj.element.virtual, res)
    return top


def _as_frames(starts, system, box_vectors, n_atoms: int) -> ShootingFrames:
    """``starts`` (ShootingFrames, Trajectory or array) as checked ShootingFrames with topology and box
    (the frames are shot from exactly as stored: float32 nm)."""
    if isinstance(starts, ShootingFrames):
        traj, path, frame = starts.trajectory, starts.path, starts.frame
    else:
        traj, path, frame = starts, None, None
    pos, boxes = check_configurations(traj, box_vectors, n_atoms, "the start configurations")
    if isinstance(system, MolecularSystem):
        top = system.md_topology
    elif isinstance(traj, mdtraj.Trajectory):
        top = traj.topology
    else:
        top = _placeholder_topology(n_atoms)
    out = mdtraj.Trajectory(pos.astype(np.float32), top)
    if boxes is not None:
        out.unitcell_vectors = boxes.astype(np.float32)
    elif isinstance(system, MolecularSystem):
        out = system.with_box(out)
    n = len(pos)
    return ShootingFrames(out, np.full(n, -1) if path is None else path, np.arange(n) if frame is None else frame)


def _trajectory(frames: ShootingFrames, xyz: np.ndarray, boxes: np.ndarray | None,
                frame_interval_ps: float) -> mdtraj.Trajectory:
    t = mdtraj.Trajectory(xyz, frames.trajectory.topology, time=np.arange(len(xyz)) * frame_interval_ps)
    if boxes is not None:
        t.unitcell_vectors = boxes.astype(np.float32)
    elif frames.trajectory.unitcell_vectors is not None:
        t.unitcell_vectors = np.broadcast_to(frames.trajectory.unitcell_vectors[0], (len(xyz), 3, 3)).copy()
    return t


def two_way_shooting(
    system,
    starts,
    in_A,
    in_B,
    *,
    n_shots: int = 10,
    max_steps: int = 10_000,
    check_interval: int = 10,
    dynamics: Dynamics | None = None,
    box_vectors=None,
    tps_moves: int = 0,
    confidence: float = 0.95,
    tse_tol: float = 0.1,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
    callback: Callable[[Shot, mdtraj.Trajectory | None], None] | None = None,
    executor: Executor | None = None,
) -> ShootingResult:
    """Two-way shooting from every start configuration; optionally transition path sampling.

    Parameters
    ----------
    system : MolecularSystem or openmm.System
        The unbiased system (no restraint).
    starts : ShootingFrames, mdtraj.Trajectory or array (n_frames, n_atoms, 3) nm
        Configurations to shoot from (:func:`shooting_frames` picks them from a PathSet; a
        trajectory's unit cell is used unless ``box_vectors`` is given).
    in_A, in_B : callable, state name, StateDefinition or a list of those
        The states: callables map positions ``(n_frames, n_atoms, 3)`` nm to bool ``(n_frames,)``
        (picklable for worker processes other than ``fork``); names (a list: their union) need a
        MolecularSystem. Tested every ``check_interval`` steps.
    n_shots : int
        Two-way shots per start configuration (each: two halves, two committor shots).
    max_steps : int
        A half that is in neither state after this many steps is undecided (a multiple of
        ``check_interval``, so that all frames are ``check_interval`` steps apart).
    check_interval : int
        Steps between state tests = between the frames of the trajectories.
    dynamics : Dynamics, optional
        Temperature (K), time step (ps), friction (1/ps), platform, seed and ``n_workers`` (worker
        processes; one Context per batch of shots, re-seeded per shot); None fields come from a MolecularSystem (a bare
        ``openmm.System`` needs temperature and time step). A None seed is drawn once and recorded
        in ``settings``.
    box_vectors : (3, 3) or (n_frames, 3, 3) nm, optional
        Periodic box of the starts.
    tps_moves : int
        Two-way shooting Monte Carlo moves per reactive trajectory (0: no TPS; see the module docstring).
    confidence : float
        Of the Wilson intervals of p_B.
    tse_tol : float
        Transition-state ensemble: frames with ``|p_B - 1/2| < tse_tol``.
    checkpoint : path, optional
        Directory recording every finished shot and chain; a rerun with the same settings and
        starts skips them (same results as an uninterrupted run), other settings raise
        :class:`CheckpointMismatch`. Not removed at the end.
    progress : bool
        Progress bars (shots, chains).
    callback : callable, optional
        Called in this process after each shot that ran with ``(Shot, trajectory or None)``, in the
        order the shots finish.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Where the shots and chains run (:mod:`~tps_diffusion.molecular.parallel`; state tests must
        then be picklable); None: ``dynamics.n_workers`` local processes.

    Returns
    -------
    ShootingResult
    """
    t0 = time.perf_counter()
    n_shots, max_steps = as_count(n_shots, "n_shots"), as_count(max_steps, "max_steps")
    check_interval = as_count(check_interval, "check_interval")
    tps_moves = as_count(tps_moves, "tps_moves", minimum=0)
    if max_steps % check_interval:
        raise ValueError(f"max_steps ({max_steps}) must be a multiple of check_interval ({check_interval}), so that "
                         f"frames are equally spaced; use max_steps={-(-max_steps // check_interval) * check_interval}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if not 0.0 < float(tse_tol) <= 0.5:
        raise ValueError(f"tse_tol must be in (0, 0.5]; got {tse_tol}")
    in_A, in_B = as_state_test(system, in_A, "in_A"), as_state_test(system, in_B, "in_B")
    check_state_tests(in_A, in_B)
    dyn, omm_system = resolve_system(system, dynamics, "two_way_shooting", check_platform=executor is None)
    if dyn.seed is None:
        dyn = replace(dyn, seed=int(np.random.SeedSequence().generate_state(1)[0] % MAX_SEED))
    frames = _as_frames(starts, system, box_vectors, omm_system.getNumParticles())
    xyz, boxes = frames.trajectory.xyz, frames.trajectory.unitcell_vectors
    start_state = [state_of(x, in_A, in_B) for x in xyz]  # overlapping states fail here, before any MD

    settings = dict(dyn.to_dict(), n_shots=n_shots, max_steps=max_steps, check_interval=check_interval,
                    tps_moves=tps_moves, state_a=_label(in_A, "A"), state_b=_label(in_B, "B"))
    n_total = len(xyz) * n_shots
    seeds = spawn_seeds(dyn.seed, n_total)
    log = None
    if checkpoint is not None:
        digest = hashlib.sha256(xyz.tobytes() + (b"" if boxes is None else boxes.tobytes())).hexdigest()
        key = {k: v for k, v in settings.items() if k not in ("n_workers", "mp_context")}
        log = _Checkpoint(checkpoint, jsonable({**key, "start_frames_sha256": digest}))
    done = log.shots() if log is not None else {}

    dt_frame = check_interval * dyn.timestep
    shots: list[Shot | None] = [None] * n_total
    xyz_of: dict[int, tuple] = {}  # reactive shot -> (xyz, boxes) of its trajectory
    tasks = []
    for i in range(n_total):
        s = i // n_shots
        if i in done:
            shots[i], x, b = done[i]
            if shots[i].reactive:
                xyz_of[i] = (x, b)
        elif start_state[s] is not None:  # already committed: both halves end there at once
            shots[i] = Shot(i, s, int(frames.path[s]), int(frames.frame[s]), start_state[s], start_state[s], 0, 0,
                            seeds[i])
        else:
            tasks.append((i, s, seeds[i]))

    frame_bytes = omm_system.getNumParticles() * 12 + (36 if boxes is not None else 0)
    base = dict(system_xml=openmm.XmlSerializer.serialize(omm_system), dynamics=dyn, in_A=in_A, in_B=in_B,
                max_steps=max_steps, check_interval=check_interval, starts=xyz, boxes=boxes)

    def run_phase(work: Callable, phase_tasks: list, desc: str, unit_: str, on_result: Callable) -> None:
        n_workers = dyn.with_workers(len(phase_tasks)).n_workers
        bar = tqdm(total=len(phase_tasks), desc=desc, unit=unit_, disable=not progress)
        payload = dict(base, properties=platform_properties(dyn.platform, n_workers) if executor is None else {})
        run_batches(_setup, work, payload, phase_tasks, executor=executor, n_workers=n_workers,
                    start_method=dyn.mp_context, platform=dyn.platform, bar=bar, on_result=on_result, keep=False,
                    task_bytes=frame_bytes * (2 * max_steps // check_interval + 1))  # the longest trajectory

    def on_shot(k: int, r: tuple) -> None:
        i, s, seed = tasks[k]
        shot = Shot(i, s, int(frames.path[s]), int(frames.frame[s]), r[0], r[2], r[1], r[3], seed)
        shots[i] = shot
        if shot.reactive:
            xyz_of[i] = (r[4], r[5])
        if log is not None:
            log.save_shot(shot, r[4], r[5])
        if callback is not None:
            callback(shot, _trajectory(frames, r[4], r[5], dt_frame) if shot.reactive else None)

    if tasks:
        run_phase(_shoot_batch, tasks, f"two-way shots ({len(xyz)} frames x {n_shots})", "shot", on_shot)
    reactive_shots = sorted(xyz_of)
    tps = None
    if tps_moves and reactive_shots:
        tps = _run_tps(reactive_shots, xyz_of, seeds, tps_moves, frames, dt_frame, log, run_phase)
    return ShootingResult(frames=frames, shots=shots,
                          trajectories=[_trajectory(frames, *xyz_of[i], dt_frame) for i in reactive_shots],
                          shots_per_frame=n_shots, settings=settings, tps=tps, confidence=float(confidence),
                          tse_tol=float(tse_tol), wall_time_s=time.perf_counter() - t0)


def _run_tps(reactive_shots: list[int], xyz_of: dict, seeds: list[int], n_moves: int, frames: ShootingFrames,
             dt_frame: float, log: _Checkpoint | None, run_phase: Callable) -> TPSResult:
    """One TPS chain per reactive shot (seeded from that shot's seed), ``n_moves`` moves each."""
    chains: dict[int, tuple] = log.chains() if log is not None else {}
    tasks = [(c, *xyz_of[i], spawn_seeds(seeds[i], 1)[0], n_moves) for c, i in enumerate(reactive_shots)
             if c not in chains]

    def on_chain(k: int, r: tuple) -> None:
        c = tasks[k][0]
        moves = [TPSMove(*m) for m in r[0]]
        chains[c] = (moves, r[1], r[2], r[3])
        if log is not None:
            log.save_chain(c, moves, r[1], r[2], r[3])

    if tasks:
        run_phase(_tps_batch, tasks, f"TPS chains ({n_moves} moves each)", "chain", on_chain)
    order = range(len(reactive_shots))
    return TPSResult(moves=[m for c in order for m in chains[c][0]],
                     trajectories=[_trajectory(frames, chains[c][1], chains[c][2], dt_frame) for c in order],
                     seed_shots=list(reactive_shots), decorrelated=np.array([chains[c][3] for c in order], dtype=bool),
                     frame_interval_ps=dt_frame)


def remove_checkpoint(directory: str | os.PathLike) -> None:
    """Delete a checkpoint directory of :func:`two_way_shooting` (after its result is saved)."""
    d = Path(directory)
    if (d / "settings.json").is_file():
        shutil.rmtree(d)


