"""Plain Langevin MD under OpenMM: many independent runs (training data for the diffusion model).

Integrator: ``LangevinMiddleIntegrator`` at the system temperature, friction 1/ps. Time step:
``timestep=None`` picks 1 fs for flexible systems (the default; alanine dipeptide is built with
flexible bonds because the SPEC minimum energies and the model's Cartesian coordinates include
the X-H bond lengths, and 1 fs is the stable step with free X-H vibrations, period ~10 fs) and
2 fs when every X-H bond is constrained (``constraints="HBonds"``), see
:meth:`MolecularSystem.default_timestep`. One step = one force evaluation.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit
from tqdm.auto import tqdm

from .molecule import MolecularSystem, _strip

__all__ = ["MDResult", "run_md", "load_samples", "spawn_seeds", "start_array"]


@dataclass
class MDResult:
    """Samples of :func:`run_md`.

    ``trajectory`` holds every recorded frame of every run, runs concatenated in order
    (``run_index`` per frame, ``trajectory.time`` = ps since the end of equilibration).
    ``potential_energy`` (kJ/mol) per frame. ``n_force_evaluations`` = integration steps of all
    runs including equilibration (the sampling cost); ``n_energy_evaluations`` = extra energy
    evaluations made to report ``potential_energy`` (one per recorded frame).
    """

    trajectory: mdtraj.Trajectory
    run_index: np.ndarray
    potential_energy: np.ndarray
    n_force_evaluations: int
    n_energy_evaluations: int
    seeds: list[int]
    settings: dict
    wall_time_s: float = 0.0

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    def run(self, i: int) -> mdtraj.Trajectory:
        """Frames of run ``i``."""
        return self.trajectory[np.nonzero(self.run_index == i)[0]]

    @property
    def steps_per_second(self) -> float:
        return self.n_force_evaluations / self.wall_time_s if self.wall_time_s > 0 else float("nan")


def spawn_seeds(seed: int | None, n: int) -> list[int]:
    """``n`` independent OpenMM seeds (1 .. 2**30-1) derived from ``seed`` (None: fresh entropy)."""
    ss = np.random.SeedSequence(seed)
    return [int(s) for s in (ss.generate_state(n, dtype=np.uint32) % (2**30 - 1) + 1)]


def start_array(system: MolecularSystem, start_positions) -> np.ndarray:
    """``(n_starts, n_atoms, 3)`` nm from positions, a Trajectory, a state name or a list of names."""
    if isinstance(start_positions, str):
        start_positions = [start_positions]
    if isinstance(start_positions, (list, tuple)) and start_positions and all(isinstance(s, str) for s in start_positions):
        return np.stack([system.positions_of(s) for s in start_positions])
    return system.check_positions(start_positions, "start positions")


# ---------------------------------------------------------------------------------------------
# worker side (must be importable and picklable for spawn)

_WORKER: dict = {}


def _init_worker(payload: dict) -> None:
    _WORKER.clear()
    _WORKER.update(payload)
    _WORKER["system"] = openmm.XmlSerializer.deserialize(payload["system_xml"])


def _value(q, u):
    """Magnitude of Quantity ``q`` in unit ``u`` (fast path when it is already in ``u``)."""
    return q._value if q.unit is u else q.value_in_unit(u)


def _mp_context(mp_context: str | None, platform: str):
    """``multiprocessing`` context: ``fork`` for the Reference/CPU platforms where available (no
    ``if __name__ == "__main__"`` guard needed, fast start), else ``spawn`` (safe with GPU platforms)."""
    if mp_context is None:
        mp_context = "fork" if platform in ("Reference", "CPU") and "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(mp_context)


def _platform_properties(platform: str, n_workers: int) -> dict:
    if platform == "CPU" and n_workers > 1:
        return {"Threads": str(max(1, (os.cpu_count() or 1) // n_workers))}
    return {}


def run_tasks(init, work, state: dict, payload: dict, tasks: list, n_workers: int, ctx, bar) -> list:
    """``[work(t) for t in tasks]`` in this process (``n_workers == 1``; ``work`` reports progress
    through ``state["callback"]``) or in a pool of ``n_workers`` processes of context ``ctx``, each
    set up by ``init(payload)``. Order is kept; ``bar`` (tqdm) is closed at the end."""
    results = []
    try:
        if n_workers == 1:
            init(payload)
            state["callback"] = bar.update
            try:
                results = [work(t) for t in tasks]
            finally:
                state.clear()
        else:
            with ctx.Pool(n_workers, initializer=init, initargs=(payload,)) as pool:
                for r in pool.imap(work, tasks):
                    results.append(r)
                    bar.update(1)
    finally:
        bar.close()
    return results


def _run_one(task) -> tuple[np.ndarray, np.ndarray]:
    start, seed = task
    w = _WORKER
    integ = openmm.LangevinMiddleIntegrator(w["temperature"], w["friction"], w["timestep"])
    integ.setRandomNumberSeed(seed)
    plat = openmm.Platform.getPlatformByName(w["platform"])
    ctx = openmm.Context(w["system"], integ, plat, w["properties"])
    ctx.setPositions(start)
    ctx.applyConstraints(1e-6)
    ctx.setVelocitiesToTemperature(w["temperature"], seed)
    if w["n_equilibration"]:
        integ.step(w["n_equilibration"])
    n_frames, every = w["n_frames"], w["report_interval"]
    xyz = np.empty((n_frames, start.shape[0], 3), dtype=np.float32)
    energy = np.empty(n_frames)
    for i in range(n_frames):
        integ.step(every)
        st = ctx.getState(getPositions=True, getEnergy=True)
        xyz[i] = _value(st.getPositions(asNumpy=True), unit.nanometer)
        energy[i] = _value(st.getPotentialEnergy(), unit.kilojoule_per_mole)
        if not np.isfinite(energy[i]):
            raise RuntimeError(f"MD blew up (non-finite energy) after {(i + 1) * every} steps (seed {seed}); reduce the time step")
        if "callback" in w:
            w["callback"](1)
    del ctx, integ
    return xyz, energy


def run_md(system: MolecularSystem, start_positions, n_steps: int, temperature: float | None = None,
           timestep: float | None = None, friction: float = 1.0, report_interval: int = 100,
           platform: str | None = None, seed: int | None = None, n_runs_per_start: int = 1,
           n_equilibration: int = 0, n_workers: int = 1, progress: bool = True,
           mp_context: str | None = None) -> MDResult:
    """Independent Langevin runs, one per start structure (times ``n_runs_per_start``).

    Parameters
    ----------
    system : MolecularSystem
    start_positions : ``(n_starts, n_atoms, 3)`` or ``(n_atoms, 3)`` nm, Trajectory, a state name
        or list of state names (``system.state_positions``)
    n_steps : production steps per run; a frame is recorded every ``report_interval`` steps
        (``n_steps // report_interval`` frames per run, the start itself is not recorded)
    temperature : K (None: ``system.temperature``); timestep : ps (None: 1 fs flexible, 2 fs
        with all X-H constrained); friction : 1/ps
    platform : OpenMM platform name (None: Reference below 200 atoms, else CUDA/OpenCL/CPU)
    seed : reproducible runs (Reference platform: bitwise identical for any ``n_workers``)
    n_equilibration : unrecorded steps before production (counted in ``n_force_evaluations``)
    n_workers : processes; 1 runs in this process
    mp_context : ``multiprocessing`` start method; None: ``fork`` on Linux for the Reference/CPU
        platforms, else ``spawn`` (then the calling script needs ``if __name__ == "__main__":``)
    """
    t0 = time.perf_counter()
    starts = np.repeat(start_array(system, start_positions), int(n_runs_per_start), axis=0)
    if n_steps < 1 or report_interval < 1:
        raise ValueError(f"n_steps and report_interval must be >= 1 (got {n_steps}, {report_interval})")
    n_frames = n_steps // report_interval
    if n_frames < 1:
        raise ValueError(f"n_steps={n_steps} < report_interval={report_interval}: no frame would be recorded")
    temperature = system.temperature if temperature is None else float(_strip(temperature, unit.kelvin))
    timestep = system.default_timestep() if timestep is None else float(_strip(timestep, unit.picosecond))
    friction = float(_strip(friction, unit.picosecond**-1))
    plat = system.platform_name(platform)
    n_runs = len(starts)
    seeds = spawn_seeds(seed, n_runs)
    n_workers = max(1, min(int(n_workers), n_runs))
    payload = dict(system_xml=system.system_xml(), temperature=temperature, friction=float(friction), timestep=timestep,
                   platform=plat, properties=_platform_properties(plat, n_workers), n_equilibration=int(n_equilibration),
                   n_frames=n_frames, report_interval=int(report_interval))
    tasks = [(starts[i], seeds[i]) for i in range(n_runs)]
    bar = tqdm(total=n_runs * n_frames if n_workers == 1 else n_runs, disable=not progress,
               desc=f"MD {n_runs} runs x {n_steps} steps", unit="frame" if n_workers == 1 else "run")
    results = run_tasks(_init_worker, _run_one, _WORKER, payload, tasks, n_workers, _mp_context(mp_context, plat), bar)
    xyz = np.concatenate([r[0] for r in results])
    energy = np.concatenate([r[1] for r in results])
    run_index = np.repeat(np.arange(n_runs), n_frames)
    times = np.tile((np.arange(1, n_frames + 1) * report_interval) * timestep, n_runs)
    traj = mdtraj.Trajectory(xyz, system.md_topology, time=times)
    settings = dict(n_steps=int(n_steps), temperature=temperature, timestep=timestep, friction=float(friction),
                    report_interval=int(report_interval), platform=plat, seed=seed, n_equilibration=int(n_equilibration),
                    n_runs=n_runs, n_workers=n_workers, integrator="LangevinMiddleIntegrator")
    return MDResult(trajectory=traj, run_index=run_index, potential_energy=energy,
                    n_force_evaluations=int(n_runs * (n_steps // report_interval * report_interval + n_equilibration)),
                    n_energy_evaluations=int(n_runs * n_frames), seeds=seeds, settings=settings,
                    wall_time_s=time.perf_counter() - t0)


def load_samples(path: str | os.PathLike | Sequence[str | os.PathLike], top=None) -> mdtraj.Trajectory:
    """Load MD samples from one file or several (concatenated), any format mdtraj reads.

    ``top``: MolecularSystem, Topology, Trajectory or structure file; required for coordinate-only
    formats (DCD, XTC, ...) unless ``<name>.pdb`` lies next to the file. A file whose atoms do
    not match ``top`` raises ``ValueError`` naming both atom counts.
    """
    from .export import load_trajectory

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise ValueError("load_samples: no paths given")
    trajs = [load_trajectory(Path(p), top) for p in paths]
    if len(trajs) == 1:
        return trajs[0]
    first = trajs[0]
    for p, t in zip(paths[1:], trajs[1:]):
        if t.n_atoms != first.n_atoms:
            raise ValueError(f"topology mismatch: {p} has {t.n_atoms} atoms, {paths[0]} has {first.n_atoms}")
    return mdtraj.join(trajs, check_topology=False)
