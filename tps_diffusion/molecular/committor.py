"""Committor analysis with OpenMM.

From each configuration, shoot ``n_shots`` short unbiased Langevin trajectories with fresh
Maxwell-Boltzmann velocities and record which state (A or B) each reaches first. The committor
``p_B = n_B / (n_A + n_B)`` comes with a Wilson score confidence interval; shots that reach
neither state within ``max_steps`` are counted separately (``n_undecided``) and left out of p_B.

Units: nm, ps, kelvin, kJ/mol.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import openmm
from openmm import unit
from tqdm.auto import tqdm

from ..utils.files import write_json, writing
from ..utils.seeds import spawn_seeds
from ._openmm import get_platform, platform_properties, quantity_value
from .dynamics import Dynamics
from .limits import as_count, openmm_errors
from .parallel import BatchContext, run_batches
from .system import MolecularSystem
from .topology import as_positions

__all__ = [
    "CommittorResult",
    "committor",
    "wilson_interval",
    "transition_state_ensemble",
    "OUTCOME_A",
    "OUTCOME_B",
    "OUTCOME_UNDECIDED",
]

OUTCOME_A, OUTCOME_B, OUTCOME_UNDECIDED = 0, 1, -1


def wilson_interval(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes out of ``n`` trials (arrays broadcast).

    ``center = (p + z^2/2n) / (1 + z^2/n)``, ``half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)``
    with ``p = k/n`` and ``z`` the two-sided normal quantile of ``confidence`` (1.95996 for 95%).
    ``n = 0`` gives the uninformative interval (0, 1).
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= k <= n")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        center = (p + z * z / (2.0 * n)) / denom
        half = z / denom * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n))
        # exact 0 / 1 at k = 0 / k = n (the formula gives them up to rounding)
        low = np.where((n > 0) & (k > 0), np.clip(center - half, 0.0, 1.0), 0.0)
        high = np.where((n > 0) & (k < n), np.clip(center + half, 0.0, 1.0), 1.0)
    return low, high


@dataclass
class CommittorResult:
    """Outcome of :func:`committor` for ``n_configs`` configurations.

    ``outcomes[i, j]`` is ``OUTCOME_A`` (0), ``OUTCOME_B`` (1) or ``OUTCOME_UNDECIDED`` (-1) for
    shot j from configuration i, ``steps[i, j]`` the MD steps it took (0 if the configuration was
    already inside a state; ``max_steps`` if undecided). ``p_B`` is NaN where no shot decided.
    ``n_force_evaluations`` counts one force evaluation per Langevin step (what
    ``LangevinMiddleIntegrator`` costs), i.e. ``steps.sum()``.
    """

    outcomes: np.ndarray
    steps: np.ndarray
    confidence: float = 0.95
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def n_configs(self) -> int:
        return self.outcomes.shape[0]

    @property
    def n_shots(self) -> int:
        return self.outcomes.shape[1]

    @property
    def n_A(self) -> np.ndarray:
        return (self.outcomes == OUTCOME_A).sum(axis=1)

    @property
    def n_B(self) -> np.ndarray:
        return (self.outcomes == OUTCOME_B).sum(axis=1)

    @property
    def n_undecided(self) -> np.ndarray:
        return (self.outcomes == OUTCOME_UNDECIDED).sum(axis=1)

    @property
    def n_decided(self) -> np.ndarray:
        return self.n_A + self.n_B

    @property
    def p_B(self) -> np.ndarray:
        n = self.n_decided
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, self.n_B / np.maximum(n, 1), np.nan)

    @property
    def ci(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) Wilson score interval of p_B at ``confidence``."""
        return wilson_interval(self.n_B, self.n_decided, self.confidence)

    @property
    def ci_low(self) -> np.ndarray:
        return self.ci[0]

    @property
    def ci_high(self) -> np.ndarray:
        return self.ci[1]

    @property
    def n_force_evaluations(self) -> int:
        return int(self.steps.sum())

    def as_dict(self) -> dict[str, Any]:
        low, high = self.ci
        p = self.p_B
        return {
            "p_B": [None if np.isnan(v) else float(v) for v in p],
            "ci_low": low.tolist(),
            "ci_high": high.tolist(),
            "confidence": self.confidence,
            "n_A": self.n_A.tolist(),
            "n_B": self.n_B.tolist(),
            "n_undecided": self.n_undecided.tolist(),
            "n_force_evaluations": self.n_force_evaluations,
            "outcomes": self.outcomes.tolist(),
            "steps": self.steps.tolist(),
            "settings": self.settings,
        }

    def save(self, path: str | os.PathLike, overwrite: bool = False):
        """Write :meth:`as_dict` as JSON (atomic; no overwrite unless asked; a failed write raises a
        one-line ``OSError`` and leaves nothing)."""
        with writing(path):
            return write_json(path, self.as_dict(), overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CommittorResult":
        with open(path) as fh:
            d = json.load(fh)
        return cls(
            outcomes=np.asarray(d["outcomes"], dtype=int).reshape(len(d["n_A"]), -1),
            steps=np.asarray(d["steps"], dtype=np.int64).reshape(len(d["n_A"]), -1),
            confidence=d["confidence"],
            settings=d["settings"],
        )


def _membership(fn: Callable, x: np.ndarray, name: str) -> bool:
    """``fn(x)`` for one frame ``x (1, n_atoms, 3)`` as a bool; one-line error for a wrong result."""
    out = np.asarray(fn(x))
    if out.shape not in ((1,), ()):
        raise ValueError(f"{name} must map positions (n_frames, n_atoms, 3) nm to a bool array (n_frames,); for one "
                         f"frame it returned shape {out.shape}")
    if out.dtype != bool:
        if out.dtype.kind not in "iuf" or not np.isin(out, (0, 1)).all():
            raise ValueError(f"{name} must return booleans (or 0/1) per frame; it returned {out.reshape(-1)[0]!r} "
                             f"({out.dtype})")
    return bool(out.reshape(-1)[0])


def state_of(positions: np.ndarray, in_A: Callable, in_B: Callable) -> int | None:
    """``OUTCOME_A``, ``OUTCOME_B`` or None for one configuration ``(n_atoms, 3)`` nm; a one-line
    ``ValueError`` if it lies in both states (they overlap)."""
    x = positions[None]
    a = _membership(in_A, x, "in_A")
    b = _membership(in_B, x, "in_B")
    if a and b:
        raise ValueError("a configuration is inside both state A and state B: the states overlap; make them disjoint")
    return OUTCOME_A if a else OUTCOME_B if b else None


def check_state_tests(in_A, in_B) -> None:
    """One-line ``TypeError`` unless ``in_A`` and ``in_B`` are callables."""
    if not (callable(in_A) and callable(in_B)):
        raise TypeError("in_A and in_B must be callables mapping positions (n_frames, n_atoms, 3) nm to bools "
                        "(n_frames,), e.g. system.states['C5'].contains")


def resolve_system(system, dynamics: Dynamics | None, what: str,
                   check_platform: bool = True) -> tuple[Dynamics, openmm.System]:
    """The resolved :class:`Dynamics` and the ``openmm.System`` of a MolecularSystem or a bare
    ``openmm.System`` (which needs temperature and time step; its platform defaults to Reference).
    ``check_platform``: check here that the platform exists (not for work sent to other machines)."""
    dyn = dynamics or Dynamics()
    if isinstance(system, MolecularSystem):
        return dyn.for_system(system, check_platform), system.openmm_system
    if dyn.temperature is None or dyn.timestep is None:
        raise ValueError(f"{what} on a bare openmm.System needs Dynamics(temperature=..., timestep=...); "
                         "or pass the MolecularSystem")
    if not isinstance(system, openmm.System):
        raise TypeError(f"system must be a MolecularSystem or an openmm.System; got {type(system).__name__}")
    dyn = replace(dyn, platform=dyn.platform or "Reference")
    if check_platform:
        get_platform(dyn.platform, system.getNumParticles())
    return dyn, system


def check_configurations(positions_list, box_vectors, n_atoms: int,
                         what: str = "positions_list") -> tuple[np.ndarray, np.ndarray | None]:
    """Configurations ``(n_configs, n_atoms, 3)`` float64 nm and their boxes ``(n_configs, 3, 3)`` nm
    (None if not periodic) from an array or an ``mdtraj.Trajectory`` (whose unit cell is used
    unless ``box_vectors`` is given); one-line errors for shapes, atom counts and NaN."""
    if hasattr(positions_list, "xyz"):  # mdtraj.Trajectory
        if box_vectors is None and positions_list.unitcell_vectors is not None:
            box_vectors = positions_list.unitcell_vectors
        positions_list = positions_list.xyz
    pos = np.asarray(positions_list, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[2] != 3:
        raise ValueError(f"{what} must have shape (n_configs, n_atoms, 3); got {pos.shape}")
    n_configs = pos.shape[0]
    if pos.shape[1] != n_atoms:
        raise ValueError(f"{what} have {pos.shape[1]} atoms, the system {n_atoms} particles; give configurations "
                         "of this system")
    if n_configs == 0:
        raise ValueError(f"{what} holds no configurations; give (n_configs >= 1, n_atoms, 3) nm")
    pos = as_positions(pos, n_atoms, what)
    if box_vectors is not None:
        box_vectors = np.asarray(box_vectors, dtype=np.float64)
        if box_vectors.ndim == 2:
            box_vectors = np.broadcast_to(box_vectors, (n_configs, 3, 3)) if box_vectors.shape == (3, 3) else None
        if box_vectors is None or box_vectors.shape != (n_configs, 3, 3) or not np.all(np.isfinite(box_vectors)):
            raise ValueError(f"box_vectors must be finite (3, 3) or ({n_configs}, 3, 3) nm")
    return pos, box_vectors


class Propagation(NamedTuple):
    """What :func:`propagate` returns: the state reached (``OUTCOME_*``), the steps taken, and (if
    recorded) the frames every ``check_interval`` steps ``(n, n_atoms, 3)`` float32 nm with their
    boxes ``(n, 3, 3)`` nm (None when not periodic)."""

    outcome: int
    steps: int
    frames: np.ndarray | None
    boxes: np.ndarray | None


def propagate(context: openmm.Context, integrator: openmm.Integrator, in_A: Callable, in_B: Callable,
              max_steps: int, check_interval: int, what: str, record: bool = False) -> Propagation:
    """Integrate ``context`` from its current state until it enters A or B (tested every
    ``check_interval`` steps) or ``max_steps`` have passed (``OUTCOME_UNDECIDED``).

    ``what`` names the run in errors (``"committor shot 3 from configuration 1"``); NaN
    coordinates raise a one-line ``RuntimeError``. ``record`` keeps every tested frame.
    """
    frames, boxes = [], []
    periodic = record and context.getSystem().usesPeriodicBoundaryConditions()
    done, outcome = 0, OUTCOME_UNDECIDED
    while done < max_steps:
        n = min(check_interval, max_steps - done)
        with openmm_errors(f"integrating {what} (step {done})"):
            integrator.step(n)
            st = context.getState(getPositions=True)
            x = np.asarray(quantity_value(st.getPositions(asNumpy=True), unit.nanometer))
        done += n
        if not np.all(np.isfinite(x)):
            raise RuntimeError(f"{what} blew up (NaN coordinates after {done} steps); reduce the time step or relax "
                               "the configuration")
        if record:
            frames.append(x.astype(np.float32))
            if periodic:
                boxes.append(quantity_value(st.getPeriodicBoxVectors(asNumpy=True), unit.nanometer))
        state = state_of(x, in_A, in_B)
        if state is not None:
            outcome = state
            break
    if not record:
        return Propagation(outcome, done, None, None)
    n_atoms = context.getSystem().getNumParticles()
    xyz = np.stack(frames) if frames else np.empty((0, n_atoms, 3), dtype=np.float32)
    return Propagation(outcome, done, xyz, np.stack(boxes) if boxes else None)


# ---------------------------------------------------------------------------------------------
# worker side (module-level: the functions travel to the workers by name)


def _setup(payload: dict) -> dict:
    return dict(payload, system=openmm.XmlSerializer.deserialize(payload["system_xml"]))


def _shot_batch(w: dict, tasks, progress) -> Iterator[tuple[int, int]]:
    """Committor shots ``(config, shot, seed)`` on one Context: yields (outcome, steps) per shot."""
    context = BatchContext(w["dynamics"], w["system"], w["properties"])
    pos, boxes, dyn = w["positions"], w["boxes"], w["dynamics"]
    try:
        for i, j, seed in tasks:
            with openmm_errors(f"creating the committor context on the {dyn.platform} platform"):
                ctx, integ = context.reseed(seed)
            with openmm_errors(f"shooting from configuration {i}"):
                if boxes is not None:
                    ctx.setPeriodicBoxVectors(*(openmm.Vec3(*map(float, v)) for v in boxes[i]))
                ctx.setPositions(pos[i])
                ctx.setVelocitiesToTemperature(dyn.temperature, seed)
            run = propagate(ctx, integ, w["in_A"], w["in_B"], w["max_steps"], w["check_interval"],
                            f"committor shot {j} from configuration {i}")
            if progress is not None:
                progress(1)
            yield run.outcome, run.steps
    finally:
        context.close()


def committor(
    system,
    positions_list,
    in_A: Callable[[np.ndarray], np.ndarray],
    in_B: Callable[[np.ndarray], np.ndarray],
    n_shots: int = 20,
    max_steps: int = 10_000,
    check_interval: int = 10,
    dynamics: Dynamics | None = None,
    *,
    box_vectors=None,
    confidence: float = 0.95,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    executor: Executor | None = None,
) -> CommittorResult:
    """Estimate the committor p_B of each configuration by unbiased Langevin shooting.

    Parameters
    ----------
    system : MolecularSystem or openmm.System
    positions_list : array (n_configs, n_atoms, 3) in nm, or an ``mdtraj.Trajectory`` (its box,
        if any, is used unless ``box_vectors`` is given).
    in_A, in_B : callables mapping positions (n_frames, n_atoms, 3) nm to a bool array
        (n_frames,). They are evaluated on the starting configuration and then every
        ``check_interval`` steps; picklable (e.g. :func:`~tps_diffusion.molecular.shooting.in_states`)
        when the shots run in other processes.
    n_shots : trajectories per configuration, each with fresh Maxwell-Boltzmann velocities
        (``Context.setVelocitiesToTemperature``).
    max_steps : a shot that has reached neither state after this many steps is undecided.
    dynamics : temperature (K), time step (ps), friction (1/ps), platform, seed and ``n_workers``
        of the ``LangevinMiddleIntegrator`` shots; ``None`` fields come from a MolecularSystem (a
        bare ``openmm.System`` needs temperature and time step; its platform defaults to Reference).
        Every shot has its own seed (its velocities and its integrator's random stream), derived
        from ``dynamics.seed``: the result does not depend on where the shots run (bitwise on the
        Reference platform); None draws fresh entropy.
    box_vectors : (3, 3) nm, or (n_configs, 3, 3), for periodic systems.
    callback : called after each shot with ``{"config": i, "shot": j, "outcome": OUTCOME_*, "steps": n}``
        (in the order the shots finish).
    executor : any ``concurrent.futures.Executor`` or a ``dask.distributed.Client`` to run the shots
        on (:mod:`~tps_diffusion.molecular.parallel`); None: ``dynamics.n_workers`` local processes
        (1: this process).

    Returns a :class:`CommittorResult`; ``n_force_evaluations`` = total Langevin steps.
    """
    check_state_tests(in_A, in_B)
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    n_shots, max_steps = as_count(n_shots, "n_shots"), as_count(max_steps, "max_steps")
    check_interval = as_count(check_interval, "check_interval")
    dyn, omm_system = resolve_system(system, dynamics, "committor", check_platform=executor is None)
    pos, box_vectors = check_configurations(positions_list, box_vectors, omm_system.getNumParticles(),
                                            "committor start positions")
    n_configs = len(pos)

    seeds = spawn_seeds(dyn.seed, 1 + n_configs * n_shots)  # seeds[0]: unused (kept: same shot seeds as before)
    outcomes = np.full((n_configs, n_shots), OUTCOME_UNDECIDED, dtype=int)
    steps = np.zeros((n_configs, n_shots), dtype=np.int64)
    tasks = []
    for i in range(n_configs):
        start = state_of(pos[i], in_A, in_B)
        if start is not None:  # already committed: every shot counts, at no cost
            outcomes[i] = start
        else:
            tasks += [(i, j, seeds[1 + i * n_shots + j]) for j in range(n_shots)]
    dyn = dyn.with_workers(len(tasks))
    bar = tqdm(total=n_configs * n_shots, desc="committor", unit="shot", disable=not progress)
    bar.update(n_configs * n_shots - len(tasks))

    def on_result(k: int, r: tuple[int, int]) -> None:
        i, j, _ = tasks[k]
        outcomes[i, j], steps[i, j] = r
        if callback is not None:
            callback({"config": i, "shot": j, "outcome": int(r[0]), "steps": int(r[1])})

    payload = dict(system_xml=openmm.XmlSerializer.serialize(omm_system), dynamics=dyn, in_A=in_A, in_B=in_B,
                   max_steps=max_steps, check_interval=check_interval, positions=pos, boxes=box_vectors,
                   properties=platform_properties(dyn.platform, dyn.n_workers) if executor is None else {})
    run_batches(_setup, _shot_batch, payload, tasks, executor=executor, n_workers=dyn.n_workers,
                start_method=dyn.mp_context, platform=dyn.platform, bar=bar, on_result=on_result, keep=False)
    settings = dict(dyn.to_dict(), n_shots=n_shots, max_steps=max_steps, check_interval=check_interval)
    return CommittorResult(outcomes=outcomes, steps=steps, confidence=confidence, settings=settings)


def transition_state_ensemble(result: CommittorResult, tol: float = 0.1) -> np.ndarray:
    """Indices of configurations with ``|p_B - 0.5| < tol`` (the transition-state ensemble).

    Judge them with ``result.ci``: with few shots the interval is wide. Configurations without
    any decided shot (p_B undefined) are never included.
    """
    p = result.p_B
    decided = result.n_decided > 0
    with np.errstate(invalid="ignore"):
        keep = decided & (np.abs(p - 0.5) < tol)
    return np.flatnonzero(keep)
