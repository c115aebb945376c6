"""Plain Langevin MD under OpenMM: many independent runs (training data for the diffusion model).

Settings come from a :class:`~tps_diffusion.molecular.dynamics.Dynamics` (``LangevinMiddleIntegrator``
at the system temperature, friction 1/ps by default). Time step: ``timestep=None`` picks 1 fs for
flexible systems (alanine dipeptide is built with flexible bonds because its published minimum
energies and the model's Cartesian coordinates include the X-H bond lengths, and 1 fs is the
stable step with free X-H vibrations, period ~10 fs) and 2 fs when every X-H bond is constrained
(``constraints="HBonds"``), see :meth:`MolecularSystem.default_timestep`. One step = one force
evaluation.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Iterator

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit
from tqdm.auto import tqdm

from ..utils.seeds import spawn_seeds
from ._openmm import platform_properties, quantity_value
from .dynamics import Dynamics
from .limits import as_count, check_frame_memory, openmm_errors
from .parallel import BatchContext, run_batches, runs_here
from .system import MolecularSystem

__all__ = ["MDResult", "run_md", "start_array"]


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


def start_array(system: MolecularSystem, start_positions) -> np.ndarray:
    """``(n_starts, n_atoms, 3)`` nm from positions, a Trajectory, a state name or a list of names."""
    if isinstance(start_positions, str):
        start_positions = [start_positions]
    names = isinstance(start_positions, (list, tuple)) and start_positions
    if names and all(isinstance(s, str) for s in start_positions):
        return np.stack([system.positions_of(s) for s in start_positions])
    return system.check_positions(start_positions, "start positions")


# ---------------------------------------------------------------------------------------------
# worker side (module-level: the functions travel to the workers by name)


def _setup(payload: dict) -> dict:
    return dict(payload, system=openmm.XmlSerializer.deserialize(payload["system_xml"]))


def _run_batch(w: dict, tasks, progress) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One run per task ``(start, seed)``, all on one Context (re-seeded per run)."""
    context = BatchContext(w["dynamics"], w["system"], w["properties"])
    n_frames, every = w["n_frames"], w["report_interval"]
    try:
        for start, seed in tasks:
            with openmm_errors(f"starting MD (seed {seed})"):
                ctx, integ = context.start(start, seed)
            with openmm_errors(f"equilibrating (seed {seed})"):
                if w["n_equilibration"]:
                    integ.step(w["n_equilibration"])
            xyz = np.empty((n_frames, start.shape[0], 3), dtype=np.float32)
            energy = np.empty(n_frames)
            for i in range(n_frames):
                with openmm_errors(f"running MD (seed {seed}, after {i * every} steps)"):
                    integ.step(every)
                    st = ctx.getState(getPositions=True, getEnergy=True)
                xyz[i] = quantity_value(st.getPositions(asNumpy=True), unit.nanometer)
                energy[i] = quantity_value(st.getPotentialEnergy(), unit.kilojoule_per_mole)
                if not np.isfinite(energy[i]):
                    raise RuntimeError(f"MD blew up (non-finite energy) after {(i + 1) * every} steps (seed {seed}); "
                                       f"reduce the time step")
                if progress is not None:
                    progress(1)
            yield xyz, energy
    finally:
        context.close()


def run_md(system: MolecularSystem, start_positions, n_steps: int, report_interval: int = 100,
           dynamics: Dynamics | None = None, n_runs_per_start: int = 1, n_equilibration: int = 0,
           progress: bool = True, callback: Callable[[dict], None] | None = None,
           executor: Executor | None = None) -> MDResult:
    """Independent Langevin runs, one per start structure (times ``n_runs_per_start``).

    Parameters
    ----------
    system : MolecularSystem
    start_positions : ``(n_starts, n_atoms, 3)`` or ``(n_atoms, 3)`` nm, Trajectory, a state name
        or list of state names (``system.state_positions``)
    n_steps : production steps per run; a frame is recorded every ``report_interval`` steps
        (``n_steps // report_interval`` frames per run, the start itself is not recorded)
    dynamics : temperature (K), time step (ps), friction (1/ps), platform, seed, workers
        (default ``Dynamics()``: the system's temperature and time step, one process)
    n_equilibration : unrecorded steps before production (counted in ``n_force_evaluations``)
    progress : show a progress bar
    callback : called in this process after each run with ``{"run": i, "n_runs": n,
        "positions": (n_frames, n_atoms, 3) nm, "potential_energy": (n_frames,) kJ/mol}`` (in the order
        the runs finish)
    executor : any ``concurrent.futures.Executor`` or a ``dask.distributed.Client`` to run on
        (:mod:`~tps_diffusion.molecular.parallel`); None: ``dynamics.n_workers`` local processes
    """
    t0 = time.perf_counter()
    n_steps, report_interval = as_count(n_steps, "n_steps"), as_count(report_interval, "report_interval")
    n_runs_per_start = as_count(n_runs_per_start, "n_runs_per_start")
    n_equilibration = as_count(n_equilibration, "n_equilibration", minimum=0)
    starts = start_array(system, start_positions)
    n_frames = n_steps // report_interval
    if n_frames < 1:
        raise ValueError(f"n_steps={n_steps} < report_interval={report_interval}: no frame would be recorded")
    check_frame_memory(len(starts) * n_runs_per_start, n_frames, system.n_atoms, n_copies=2)
    starts = np.repeat(starts, n_runs_per_start, axis=0)
    n_runs = len(starts)
    dyn = (dynamics or Dynamics()).for_system(system, check_platform=executor is None).with_workers(n_runs)
    seeds = spawn_seeds(dyn.seed, n_runs)
    payload = dict(system_xml=system.system_xml(), dynamics=dyn,
                   properties=platform_properties(dyn.platform, dyn.n_workers) if executor is None else {},
                   n_equilibration=int(n_equilibration), n_frames=n_frames, report_interval=int(report_interval))
    tasks = [(starts[i], seeds[i]) for i in range(n_runs)]
    one_process = runs_here(executor, dyn.n_workers)
    bar = tqdm(total=n_runs * n_frames if one_process else n_runs, disable=not progress,
               desc=f"MD {n_runs} runs x {n_steps} steps", unit="frame" if one_process else "run")

    def on_result(i: int, result: tuple[np.ndarray, np.ndarray]) -> None:
        if callback is not None:
            callback({"run": i, "n_runs": n_runs, "positions": result[0], "potential_energy": result[1]})

    results = run_batches(_setup, _run_batch, payload, tasks, executor=executor, n_workers=dyn.n_workers,
                          start_method=dyn.mp_context, platform=dyn.platform, bar=bar, on_result=on_result,
                          task_bytes=n_frames * (system.n_atoms * 12 + 8))
    xyz = np.concatenate([r[0] for r in results])
    energy = np.concatenate([r[1] for r in results])
    run_index = np.repeat(np.arange(n_runs), n_frames)
    times = np.tile((np.arange(1, n_frames + 1) * report_interval) * dyn.timestep, n_runs)
    traj = system.with_box(mdtraj.Trajectory(xyz, system.md_topology, time=times))
    settings = dict(dyn.to_dict(), n_steps=int(n_steps), report_interval=int(report_interval),
                    n_equilibration=int(n_equilibration), n_runs=n_runs)
    return MDResult(trajectory=traj, run_index=run_index, potential_energy=energy,
                    n_force_evaluations=int(n_runs * (n_frames * report_interval + n_equilibration)),
                    n_energy_evaluations=int(n_runs * n_frames), seeds=seeds, settings=settings,
                    wall_time_s=time.perf_counter() - t0)
