"""Annealed Langevin under the real force field with a moving harmonic restraint (docs/method.md, section 5).

For curve points ``n = 0..N-1`` with target structures ``T_n`` (selected atoms, nm, in the
featurizer's aligned frame) and stiffnesses ``k_n`` (kJ/mol/nm^2) every walker runs ``K``
Langevin steps (``LangevinMiddleIntegrator`` at the physical temperature) on

    U(y) + 0.5 * k_n * |y_sel - (T_n R + t)|^2

where ``(R, t)`` is the rigid motion that best superposes ``T_n`` onto the walker's selected
atoms at the start of block ``n`` (Kabsch), so an overall rotation/translation of the molecule
costs nothing. The restraint is a ``CustomExternalForce`` in its own force group; recorded
energies are force field only (restraint excluded).

Conversion from a geodesic in model coordinates (see :func:`restraint_schedule`): for a curve point
``(lam_n, x_n)`` in feature space, ``alpha^2 = sigmoid(lam)``, ``sigma^2 = sigmoid(-lam)``,
the tilt ``kT * alpha^2/(2 sigma^2) |y_feat - x_n/alpha_n|^2`` becomes, with
``y_feat = (y_nm - mean)/scale``, a restraint towards ``T_n = featurizer.inverse(x_n/alpha_n)``
with ``k_n = kT * exp(lam_n) / scale^2`` (energy ``0.5 * k_n * |y - T_n|^2``).

Lag diagnostic (docs/method.md, section 5): from the last recorded frame of every block the client
measures how far each path trails its block's (superposed) target along the target path, in the
restraint's thermal width ``sqrt(kT / k_n)``; the mean over paths is ``PathSet.lag`` and a lag above
:data:`~tps_diffusion.core.langevin.LAG_WARN_WIDTHS` at the last point raises a ``RuntimeWarning``.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit
import torch
from tqdm.auto import tqdm

from ..core.langevin import restraint_lag, tilt_schedule, warn_lag
from ..utils.files import atomic_path, write_json, writing
from ..utils.seeds import spawn_seeds
from ._openmm import platform_properties, quantity_value
from .dynamics import Dynamics
from .featurizer import CartesianFeaturizer
from .formats import write_trajectory
from .limits import as_count, check_frame_memory, check_output_dir, openmm_errors
from .md import start_array
from .parallel import BatchContext, run_batches, runs_here
from .pathstore import PathStore, StoredTrajectories
from .shooting import ShootingResult, as_state_test, shooting_frames, two_way_shooting
from .superpose import kabsch_rotation, superpose
from .system import MolecularSystem

__all__ = ["PathSet", "sample_paths", "tilt_energy", "restraint_schedule", "add_restraint", "RESTRAINT_K",
           "path_offsets", "target_tangents"]

#: name of the global stiffness parameter of the restraint force (kJ/mol/nm^2)
RESTRAINT_K = "tps_restraint_k"


def tilt_energy(positions, targets, k, align: bool = False) -> np.ndarray:
    """``0.5 * k * |positions - targets|^2`` summed over atoms and axes (kJ/mol).

    ``positions``, ``targets``: ``(..., n_sel, 3)`` nm (broadcast); ``k``: scalar or ``(...)``
    kJ/mol/nm^2. ``align=True`` first superposes the targets onto the positions (Kabsch), i.e.
    the energy the sampler's restraint has right after a block starts.
    """
    x = np.asarray(positions, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    if align:
        t = superpose(np.broadcast_to(t, np.broadcast_shapes(t.shape, x.shape)), x)
    return 0.5 * np.asarray(k, dtype=np.float64) * ((x - t) ** 2).sum((-2, -1))


def restraint_schedule(featurizer: CartesianFeaturizer, x_features, lam, kT: float) -> tuple[np.ndarray, np.ndarray]:
    """Restraint targets (nm, aligned frame) and stiffness (kJ/mol/nm^2) from curve points.

    ``x_features`` ``(N, n_features)``: the noisy curve points ``x_n`` in the model's (scaled)
    coordinates; ``lam`` ``(N,)`` their log-SNR; ``kT`` in kJ/mol. Returns
    ``targets = featurizer.inverse(x_n / alpha_n)`` ``(N, n_sel, 3)`` and
    ``stiffness = kT * exp(lam) / scale^2`` ``(N,)`` (docs/method.md, section 5, after undoing the
    scaling): the formula of :func:`tps_diffusion.core.langevin.tilt_schedule` (which it calls) with
    the featurizer's scaling as the normaliser, in nm and kJ/mol instead of model units and kT.
    """
    x = np.asarray(x_features, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != lam.shape[0]:
        raise ValueError(f"x_features must be (N, n_features) with N = len(lam); got {x.shape} and {lam.shape}")
    if x.shape[1] != featurizer.n_features:
        raise ValueError(f"the curve has {x.shape[1]} model coordinates but the featurizer {featurizer.n_features}: "
                         "the geodesic was made with another model; recompute it with this model")
    kT = float(kT)
    if not (np.isfinite(kT) and kT > 0):
        raise ValueError(f"kT must be finite and > 0 kJ/mol; got {kT} (the temperature must be > 0 K)")
    bad = np.nonzero(~(np.isfinite(lam) & np.all(np.isfinite(x), axis=1)))[0]
    if len(bad):
        raise ValueError(f"the geodesic curve contains NaN/inf at points {bad[:10].tolist()}: the geodesic file is "
                         "corrupt or its optimisation diverged; recompute the geodesic")
    curve = torch.as_tensor(np.concatenate([lam[:, None], x], axis=1), dtype=torch.float64)
    centres, k = tilt_schedule(curve, featurizer.normalizer)  # nm (flattened), 1/nm^2
    stiffness = kT * k.numpy()
    if not np.all(np.isfinite(stiffness)):
        raise ValueError(f"restraint stiffness kT*exp(lam)/scale^2 overflows (largest log-SNR {lam.max():.4g}): the "
                         "geodesic's log-SNR is far too large; recompute the geodesic with a smaller lam_end")
    return centres.numpy().reshape(len(lam), featurizer.n_selected, 3), stiffness


def add_restraint(system: openmm.System, atom_indices: Sequence[int]) -> tuple[openmm.CustomExternalForce, int]:
    """Add the (zero-stiffness) positional restraint on ``atom_indices`` in an unused force group.

    Returns the force and its group. Per-particle parameters ``x0 y0 z0`` (nm), global
    :data:`RESTRAINT_K` (kJ/mol/nm^2).
    """
    used = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
    free = [g for g in range(31, -1, -1) if g not in used]
    if not free:
        raise ValueError("all 32 OpenMM force groups are in use; cannot separate the restraint energy")
    force = openmm.CustomExternalForce(f"0.5*{RESTRAINT_K}*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    force.addGlobalParameter(RESTRAINT_K, 0.0)
    for p in ("x0", "y0", "z0"):
        force.addPerParticleParameter(p)
    for i in atom_indices:
        force.addParticle(int(i), [0.0, 0.0, 0.0])
    force.setForceGroup(free[0])
    system.addForce(force)
    return force, free[0]


def _check_stiffness(system: MolecularSystem, idx: np.ndarray, k: np.ndarray, timestep: float) -> None:
    """Warn when the restraint alone makes the lightest restrained atom oscillate too fast for the step."""
    masses = np.array([system.openmm_system.getParticleMass(int(i))._value for i in idx])
    masses = masses[masses > 0]
    if len(masses) == 0 or k.max() <= 0:
        return
    omega_dt = np.sqrt(k.max() / masses.min()) * timestep
    if omega_dt > 0.5:
        warnings.warn(f"restraint stiffness up to {k.max():.3g} kJ/mol/nm^2 gives omega*dt = {omega_dt:.2f} for a "
                      f"{masses.min():.3g} amu atom at dt = {timestep} ps (> 0.5): integration may be inaccurate or "
                      f"unstable; cap the stiffness (lower lam_end) or shorten the time step", RuntimeWarning,
                      stacklevel=3)


@dataclass
class PathSet:
    """Transition paths of :func:`sample_paths`.

    ``trajectories[i]``: path ``i`` (full topology, ``N*K/record_interval`` frames; the start
    is not included; ``time`` in ps); a list, or with ``sample_paths(store=...)`` a
    :class:`~tps_diffusion.molecular.pathstore.StoredTrajectories` that reads each path from disk.
    ``energies`` ``(n_paths, n_frames)``: force-field potential energy (restraint excluded), kJ/mol
    (NaN when not computed). ``tilt_energies``: restraint
    energy of each frame, kJ/mol. ``point_index`` ``(n_frames,)``: curve point of each frame.
    ``n_force_evaluations`` = integration steps = ``n_paths * N * K`` (the paper's count);
    ``n_energy_evaluations``: the extra force-field energy evaluations for ``energies``.

    ``lag`` ``(N,)`` (dimensionless, restraint widths ``sqrt(kT / k_n)``): mean over paths of how far
    the selected atoms trail block ``n``'s superposed target along the target path at the end of the
    block (:func:`path_offsets`); about 0 when the walkers follow, above
    :data:`~tps_diffusion.core.langevin.LAG_WARN_WIDTHS` at the last point they did not arrive.
    ``final_distance`` ``(n_paths,)``: RMS distance per coordinate of each path's last frame to the
    last target, in the same widths (about 1 in equilibrium with the last restraint). Both None when
    not measured (a PathSet built by hand or read from an older file).
    """

    trajectories: Sequence[mdtraj.Trajectory]
    energies: np.ndarray
    tilt_energies: np.ndarray
    point_index: np.ndarray
    n_force_evaluations: int
    n_energy_evaluations: int
    seeds: list[int]
    settings: dict
    wall_time_s: float = 0.0
    lag: np.ndarray | None = None
    final_distance: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.trajectories)

    def __getitem__(self, i: int) -> mdtraj.Trajectory:
        return self.trajectories[i]

    @property
    def n_paths(self) -> int:
        return len(self.trajectories)

    def max_energy(self) -> np.ndarray:
        """Largest force-field energy along each path, ``(n_paths,)`` kJ/mol."""
        return self.energies.max(1)

    def final_frames(self) -> mdtraj.Trajectory:
        """Last frame of every path as one trajectory (one path in memory at a time)."""
        xyz, time_, boxes, top = [], [], [], None
        for t in self.trajectories:
            top = t.topology if top is None else top
            xyz.append(t.xyz[-1].copy())  # copies: a view would keep the whole path alive
            time_.append(float(t.time[-1]))
            boxes.append(None if t.unitcell_vectors is None else t.unitcell_vectors[-1].copy())
        out = mdtraj.Trajectory(np.stack(xyz), top, time=np.asarray(time_))
        if boxes and boxes[0] is not None:
            out.unitcell_vectors = np.stack(boxes)
        return out

    def joined(self) -> mdtraj.Trajectory:
        return mdtraj.join(self.trajectories, check_topology=False)

    def shoot(self, system: MolecularSystem, in_A, in_B, *, select: str = "max_energy", per_path: int = 5,
              spacing: int | None = None, **kwargs) -> ShootingResult:
        """Two-way shooting under the unbiased force field from frames of these paths.

        ``in_A``, ``in_B``: state names of ``system`` (a list: their union), StateDefinitions or
        callables on positions ``(n_frames, n_atoms, 3)`` nm. Frames: :func:`~tps_diffusion.molecular.
        shooting.shooting_frames` (``select``, ``per_path``, ``spacing``; default each path's
        highest-energy frame between leaving A and entering B, and 4 frames around it); shots:
        :func:`~tps_diffusion.molecular.shooting.two_way_shooting` with ``kwargs`` (``n_shots``,
        ``max_steps``, ``check_interval``, ``dynamics``, ``tps_moves``, ``checkpoint``, ...)::

            result = paths.shoot(system, ["C5", "C7eq"], "C7ax", n_shots=2, dynamics=Dynamics(seed=1, n_workers=2))
        """
        in_A, in_B = as_state_test(system, in_A, "in_A"), as_state_test(system, in_B, "in_B")
        frames = shooting_frames(self, in_A, in_B, select=select, per_path=per_path, spacing=spacing)
        return two_way_shooting(system, frames, in_A, in_B, **kwargs)

    def save(self, directory: str | os.PathLike, fmt: str = "h5", overwrite: bool = False) -> Path:
        """Write ``path_0000.<fmt>`` ... plus ``energies.npz`` (with ``lag`` and ``final_distance`` when
        measured) and ``pathset.json`` into ``directory``."""
        directory = check_output_dir(directory, "the paths", "choose another directory or --run-dir")
        directory.mkdir(parents=True, exist_ok=True)
        fmt = fmt.lstrip(".")
        for i, t in enumerate(self.trajectories):
            write_trajectory(t, directory / f"path_{i:04d}.{fmt}", overwrite=overwrite,
                             topology_pdb=(fmt in ("dcd", "xtc") and i == 0) and directory / "topology.pdb")
        with atomic_path(directory / "energies.npz", overwrite) as tmp, writing(directory / "energies.npz"):
            with open(tmp, "wb") as fh:
                extra = {name: np.asarray(getattr(self, name), dtype=np.float64)
                         for name in ("lag", "final_distance") if getattr(self, name) is not None}
                np.savez(fh, energies=self.energies, tilt_energies=self.tilt_energies, point_index=self.point_index,
                         **extra)
        record = {"n_paths": self.n_paths, "n_force_evaluations": self.n_force_evaluations,
                  "n_energy_evaluations": self.n_energy_evaluations, "seeds": self.seeds, "settings": self.settings,
                  "wall_time_s": self.wall_time_s}
        with writing(directory / "pathset.json"):
            write_json(directory / "pathset.json", record, overwrite)
        return directory


def target_tangents(targets) -> np.ndarray:
    """Direction of motion of the restraint target at each curve point, ``(N, n_sel, 3)`` nm.

    Central differences ``(T_{n+1} - T_{n-1}) / 2`` (one-sided at the ends, zero for ``N = 1``), with
    both neighbours first superposed onto ``T_n`` (Kabsch): the restraint is re-superposed at every
    block, so only the change of shape counts, whatever rigid placement the targets were given in.
    """
    t = np.asarray(targets, dtype=np.float64)
    tan = np.zeros_like(t)
    if len(t) >= 2:
        nxt = superpose(t[1:], t[:-1])  # T_{n+1} onto T_n, n = 0..N-2
        prv = superpose(t[:-1], t[1:])  # T_{n-1} onto T_n, n = 1..N-1
        tan[0] = nxt[0] - t[0]
        tan[-1] = t[-1] - prv[-1]
        tan[1:-1] = 0.5 * (nxt[1:] - prv[:-1])
    return tan


def path_offsets(xyz, start, targets, atom_indices, per_block: int) -> np.ndarray:
    """Offsets of one path from its restraint targets at the end of every block, in the target frame.

    Parameters
    ----------
    xyz : array ``(N * per_block, n_atoms, 3)``
        The recorded frames of the path, nm.
    start : array ``(n_atoms, 3)``
        Its start structure, nm (the first block's target is superposed onto it).
    targets : array ``(N, n_sel, 3)``
        The restraint targets, nm.
    atom_indices : sequence of int
        The restrained atoms.
    per_block : int
        Recorded frames per block (``K / record_interval``).

    Returns
    -------
    array ``(N, n_sel * 3)``, nm
        ``T_n - y_n`` with ``y_n`` the selected atoms at the end of block ``n`` moved by the inverse of
        the rigid motion that placed ``T_n`` at the start of the block (the Kabsch fit onto the end of
        block ``n - 1``, or onto ``start``): the walker's offset from the restraint centre, in the
        frame where consecutive targets are compared (:func:`target_tangents`). With ``k_n / kT`` as
        the stiffness, :func:`~tps_diffusion.core.langevin.restraint_lag` turns it into the lag in
        restraint widths.
    """
    idx = np.asarray(atom_indices)
    tg = np.asarray(targets, dtype=np.float64)
    ends = np.asarray(xyz[per_block - 1::per_block], dtype=np.float64)[:, idx]  # (N, n_sel, 3)
    refs = np.concatenate([np.asarray(start, dtype=np.float64)[None, idx], ends[:-1]])
    c_t, c_r = tg.mean(1, keepdims=True), refs.mean(1, keepdims=True)
    rot = kabsch_rotation(tg - c_t, refs - c_r, centred=True)  # (T_n - c_t) @ rot ~ refs_n - c_r
    in_target_frame = (ends - c_r) @ np.swapaxes(rot, -1, -2) + c_t
    return (tg - in_target_frame).reshape(len(tg), -1)


class _LagMeter:
    """The lag diagnostic of :func:`sample_paths`, accumulated path by path in constant memory
    (``N * 3 n_sel`` sums and one distance per path)."""

    def __init__(self, targets, stiffness, kT: float, atom_indices, starts, per_block: int, n_paths: int):
        self.targets, self.idx, self.starts, self.per_block = targets, atom_indices, starts, per_block
        self.kk = np.clip(np.asarray(stiffness, dtype=np.float64), 0, None) / float(kT)  # 1/nm^2
        self.sum = np.zeros((len(targets), 3 * len(atom_indices)))
        self.count = 0
        self.final = np.full(n_paths, np.nan)

    def add(self, i: int, xyz) -> None:
        offset = path_offsets(xyz, self.starts[i % len(self.starts)], self.targets, self.idx, self.per_block)
        self.sum += offset
        self.count += 1
        self.final[i] = np.sqrt(self.kk[-1] / offset.shape[1]) * np.linalg.norm(offset[-1])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``lag (N,)`` restraint widths (NaN without paths) and ``final_distance (n_paths,)``."""
        tg = np.asarray(self.targets, dtype=np.float64).reshape(len(self.sum), -1)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
        lag = restraint_lag(as_t(self.sum / max(self.count, 1)), as_t(target_tangents(self.targets).reshape(tg.shape)),
                            as_t(self.kk), scale=as_t(np.linalg.norm(tg, axis=1))).numpy()
        return (lag if self.count else np.full(len(lag), np.nan)), self.final


# ---------------------------------------------------------------------------------------------
# worker side (module-level: the functions travel to the workers by name)


def _setup(payload: dict) -> dict:
    system = openmm.XmlSerializer.deserialize(payload["system_xml"])
    force, group = add_restraint(system, payload["atom_indices"])
    mask = 0xFFFFFFFF & ~(1 << group)
    return dict(payload, system=system, force=force, ff_groups=mask - 2**32 if mask >= 2**31 else mask)  # int32


def _sample_batch(w: dict, tasks, progress) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One path per task ``(start index, seed)``, all on one Context (re-seeded per path)."""
    context = BatchContext(w["dynamics"], w["system"], w["properties"])
    try:
        for start, seed in tasks:
            yield _sample_one(w, context, w["starts"][start], seed, progress)
    finally:
        context.close()


def _sample_one(w: dict, context: BatchContext, start: np.ndarray, seed: int,
                progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx, targets, stiffness = w["atom_indices"], w["targets"], w["stiffness"]
    K, every, want_e = w["steps_per_point"], w["record_interval"], w["compute_energies"]
    force: openmm.CustomExternalForce = w["force"]
    with openmm_errors(f"starting a path (seed {seed})"):
        ctx, integ = context.start(start, seed)
    cur = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    N = len(targets)
    per_block = K // every
    xyz = np.empty((N * per_block, start.shape[0], 3), dtype=np.float32)
    energy = np.full(N * per_block, np.nan)
    tilt = np.empty(N * per_block)
    f = 0
    for n in range(N):
        aligned = superpose(targets[n], cur[idx])
        for j, i in enumerate(idx):
            force.setParticleParameters(j, int(i), [float(v) for v in aligned[j]])
        force.updateParametersInContext(ctx)
        ctx.setParameter(RESTRAINT_K, float(stiffness[n]))
        f0 = f
        for _ in range(per_block):
            with openmm_errors(f"sampling a path (curve point {n}, seed {seed})"):
                integ.step(every)
                if want_e:
                    st = ctx.getState(getPositions=True, getEnergy=True, groups=w["ff_groups"])
                    energy[f] = quantity_value(st.getPotentialEnergy(), unit.kilojoule_per_mole)
                else:
                    st = ctx.getState(getPositions=True)
            cur = quantity_value(st.getPositions(asNumpy=True), unit.nanometer)
            if not (np.isfinite(cur).all() and np.abs(cur).max() < 1e6):
                raise RuntimeError(f"simulation blew up (NaN coordinates) at curve point {n} (stiffness "
                                   f"{stiffness[n]:.3g} "
                                   f"kJ/mol/nm^2, seed {seed}); reduce the time step or the stiffness")
            xyz[f] = cur
            f += 1
        tilt[f0:f] = tilt_energy(xyz[f0:f, idx], aligned, stiffness[n])
        if progress is not None:
            progress(1)
    return xyz, energy, tilt


def sample_paths(system: MolecularSystem, featurizer: CartesianFeaturizer | None, targets_nm, stiffness,
                 start_positions, n_paths: int, steps_per_point: int, dynamics: Dynamics | None = None,
                 record_interval: int = 1, compute_energies: bool = True, progress: bool = True,
                 callback: Callable[[dict], None] | None = None, executor: Executor | None = None,
                 store: str | os.PathLike | None = None) -> PathSet:
    """Annealed Langevin transition paths under OpenMM (the paper's Algorithm 1; docs/method.md, section 5).

    Parameters
    ----------
    system : MolecularSystem (force field, temperature)
    featurizer : defines the restrained atoms (``featurizer.atom_indices``); None = all atoms
    targets_nm : ``(N, n_sel, 3)`` nm, target structures in the featurizer's aligned frame (any
        rigid placement works: each is re-superposed onto the walker before its block)
    stiffness : ``(N,)`` (or scalar) kJ/mol/nm^2, restraint ``0.5*k*|y - target|^2``
    start_positions : ``(n_atoms, 3)`` nm, ``(n_paths, n_atoms, 3)``, or a state name
    n_paths, steps_per_point (K) : every path makes ``N*K`` steps (= force evaluations)
    dynamics : temperature (K), time step (ps), friction (1/ps), platform, seed, workers (default
        ``Dynamics(n_workers=2)``); per-path seeds (integrator noise + initial velocities) derive
        from ``dynamics.seed``, so the result does not depend on ``n_workers`` (bitwise on the
        Reference platform); each worker deserialises the System once and builds one Context per
        batch of paths (re-seeded for every path)
    record_interval : record every this many steps (must divide K)
    compute_energies : evaluate the force-field energy at every recorded frame (one extra
        energy evaluation each, counted in ``n_energy_evaluations``)
    progress : show a progress bar
    callback : called in this process after each path with ``{"path": i, "n_paths": n,
        "positions": (n_frames, n_atoms, 3) nm, "energies": (n_frames,) kJ/mol}`` (in the order
        the paths finish)
    executor : any ``concurrent.futures.Executor`` or a ``dask.distributed.Client`` to run on
        (:mod:`~tps_diffusion.molecular.parallel`); None: ``dynamics.n_workers`` local processes
    store : a directory (:class:`~tps_diffusion.molecular.pathstore.PathStore`): every path is written
        there as it finishes, paths already there are not sampled again (an interrupted call resumes;
        more ``n_paths`` extend the store), and the returned PathSet reads the trajectories from disk
        when asked for them (memory does not grow with ``n_paths``). Needs ``dynamics.seed``.

    Returns
    -------
    PathSet
        With ``lag`` ``(N,)``: the mean over paths of how far the restraint target leads the walkers at
        the end of each block, in restraint widths ``sqrt(kT / k_n)`` (kT from the dynamics'
        temperature; :func:`path_offsets`, computed here from the recorded frames as the paths arrive).
        When the lag at the last point exceeds :data:`~tps_diffusion.core.langevin.LAG_WARN_WIDTHS`
        the walkers did not reach the end state and a ``RuntimeWarning`` says so: raise
        ``steps_per_point`` (or the time step, within what the force field allows).
    """
    t0 = time.perf_counter()
    n_paths = as_count(n_paths, "n_paths")
    steps_per_point = as_count(steps_per_point, "steps_per_point")
    record_interval = as_count(record_interval, "record_interval")
    idx = np.arange(system.n_atoms) if featurizer is None else np.asarray(featurizer.atom_indices, dtype=int)
    targets = np.asarray(targets_nm, dtype=np.float64)
    if targets.ndim == 2:
        targets = targets.reshape(targets.shape[0], -1, 3) if targets.shape[1] == 3 * len(idx) else targets[None]
    if targets.ndim != 3 or targets.shape[1:] != (len(idx), 3):
        raise ValueError(f"targets_nm must be (N, {len(idx)}, 3) (N curve points, selected atoms); got "
                         f"{np.shape(targets_nm)}")
    if not np.all(np.isfinite(targets)):
        bad = np.nonzero(~np.all(np.isfinite(targets), axis=(1, 2)))[0]
        raise ValueError(f"targets_nm contain NaN/inf at curve points {bad[:10].tolist()}; recompute the geodesic")
    N = len(targets)
    if N < 1:
        raise ValueError("targets_nm has no curve points; give (N >= 1, n_sel, 3) nm")
    try:
        k = np.broadcast_to(np.asarray(stiffness, dtype=np.float64), (N,)).copy()
    except ValueError:
        raise ValueError(f"stiffness must be a scalar or ({N},) kJ/mol/nm^2 (one per curve point); got shape "
                         f"{np.shape(stiffness)}") from None
    if not np.all(np.isfinite(k)) or np.any(k < 0):
        raise ValueError("stiffness must be finite and >= 0 (kJ/mol/nm^2); a negative or NaN stiffness comes from a "
                         "temperature <= 0 K or a corrupt geodesic")
    K, every = steps_per_point, record_interval
    if K % every:
        raise ValueError(f"record_interval ({every}) must divide steps_per_point ({K})")
    check_frame_memory(1 if store is not None else n_paths, N * (K // every), system.n_atoms, per_frame_extra=16)
    starts = start_array(system, start_positions)
    if len(starts) not in (1, n_paths):
        raise ValueError(f"got {len(starts)} start structures for n_paths={n_paths}; give one or n_paths")
    dyn = (dynamics or Dynamics(n_workers=2)).for_system(system, check_platform=executor is None)
    dyn = dyn.with_workers(n_paths)
    _check_stiffness(system, idx, k, dyn.timestep)
    seeds = spawn_seeds(dyn.seed, n_paths)
    system_xml = system.system_xml()
    log = None
    if store is not None:
        if dyn.seed is None:
            raise ValueError("a path store needs a seed (Dynamics(seed=...)): a resumed run must continue the same "
                             "random streams")
        digest = {name: hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
                  for name, a in (("targets", targets), ("stiffness", k), ("starts", starts), ("atoms", idx))}
        # not what the paths depend on (the platform changes them only by rounding: a run may resume elsewhere)
        where = ("n_workers", "mp_context", "platform")
        log = PathStore(store, {**{key: v for key, v in dyn.to_dict().items() if key not in where},
                                "n_points": N, "steps_per_point": K, "record_interval": every,
                                "compute_energies": bool(compute_energies),
                                "system_sha256": hashlib.sha256(system_xml.encode()).hexdigest(),
                                **{f"{name}_sha256": v for name, v in digest.items()}})
    todo = [i for i in range(n_paths) if log is None or i not in log.done]
    payload = dict(system_xml=system_xml, atom_indices=idx, targets=targets, stiffness=k, steps_per_point=K,
                   record_interval=every, compute_energies=bool(compute_energies), dynamics=dyn, starts=starts,
                   properties=platform_properties(dyn.platform, dyn.n_workers) if executor is None else {})
    tasks = [(i % len(starts), seeds[i]) for i in todo]
    one_process = runs_here(executor, dyn.n_workers)
    bar = tqdm(total=len(todo) * N if one_process else len(todo), disable=not progress,
               desc=f"paths {len(todo)} x {N} points x {K} steps", unit="block" if one_process else "path")

    n_frames = N * K // every
    kT = float((unit.MOLAR_GAS_CONSTANT_R * dyn.temperature * unit.kelvin).value_in_unit(unit.kilojoule_per_mole))
    meter = _LagMeter(targets, k, kT, idx, starts, K // every, n_paths)
    if log is not None:  # the energies (16 bytes a frame) stay in memory; the coordinates go to the store
        energies, tilt = np.full((n_paths, n_frames), np.nan), np.full((n_paths, n_frames), np.nan)
        for i in sorted(log.done & set(range(n_paths))):
            saved = log.read(i, "xyz", "energies", "tilt_energies")  # one path in memory at a time
            energies[i], tilt[i] = saved["energies"], saved["tilt_energies"]
            meter.add(i, saved["xyz"])

    def on_result(k: int, result: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        i = todo[k]
        meter.add(i, result[0])
        if log is not None:
            log.write(i, *result)
            energies[i], tilt[i] = result[1], result[2]
        if callback is not None:
            callback({"path": i, "n_paths": n_paths, "positions": result[0], "energies": result[1]})

    try:
        results = run_batches(_setup, _sample_batch, payload, tasks, executor=executor, n_workers=dyn.n_workers,
                              start_method=dyn.mp_context, platform=dyn.platform, bar=bar, on_result=on_result,
                              keep=log is None, task_bytes=n_frames * (system.n_atoms * 12 + 16))
    finally:
        if log is not None:
            log.flush()
    times = np.arange(1, n_frames + 1) * every * dyn.timestep

    def make(xyz: np.ndarray) -> mdtraj.Trajectory:
        return system.with_box(mdtraj.Trajectory(xyz, system.md_topology, time=times))

    settings = dict(dyn.to_dict(), n_points=N, steps_per_point=K, record_interval=every, n_restrained_atoms=len(idx))
    if log is not None:
        trajs = StoredTrajectories(log, n_paths, make)
    else:
        trajs, energies, tilt = ([make(r[0]) for r in results], np.stack([r[1] for r in results]),
                                 np.stack([r[2] for r in results]))
    lag, final = meter.result()
    warn_lag(lag, n_paths, "sample_paths", f"raise steps_per_point (now {K}) or the time step (now {dyn.timestep:g} "
             f"ps, within what the force field allows); the last restraint is {k[-1]:.4g} kJ/mol/nm^2, width "
             f"{np.sqrt(kT / k[-1]) if k[-1] > 0 else np.inf:.3g} nm")
    return PathSet(trajectories=trajs, energies=energies,
                   tilt_energies=tilt, point_index=np.repeat(np.arange(N), K // every),
                   n_force_evaluations=int(n_paths * N * K),
                   n_energy_evaluations=int(n_paths * n_frames) if compute_energies else 0, seeds=seeds,
                   settings=settings, wall_time_s=time.perf_counter() - t0, lag=lag, final_distance=final)
