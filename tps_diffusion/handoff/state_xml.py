"""OpenMM ``State`` XML files of path frames, to start MD (``Simulation.loadState``) from a path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import mdtraj
import numpy as np

from ..utils.files import check_writable, write_text
from ..utils.seeds import spawn_seeds

__all__ = ["write_state_xml"]


def write_state_xml(
    system,
    traj: mdtraj.Trajectory,
    frames: Sequence[int],
    directory: str | os.PathLike,
    temperature: float | None = None,
    overwrite: bool = False,
    *,
    seed: int | None = None,
    prefix: str = "state",
    platform: str = "Reference",
) -> list[Path]:
    """One OpenMM ``State`` XML per frame index in ``frames`` (``<prefix>_<frame:05d>.xml``).

    Each state holds the frame's positions (nm, as in ``traj``; constraints are *not* applied),
    the box of the frame if ``traj`` has one, time (ps), the context's global parameters and
    velocities: drawn from Maxwell-Boltzmann at ``temperature`` (K; via
    ``Context.setVelocitiesToTemperature``, reproducible with ``seed``; on-step velocities, not
    shifted by half a leapfrog step) or zero when ``temperature`` is None. Serialised with
    ``openmm.XmlSerializer``; load with ``simulation.loadState(path)`` or
    ``context.setState(XmlSerializer.deserialize(text))``. Nothing is written if any target exists
    and ``overwrite`` is False; on an error the files already written by this call are removed.

    Parameters
    ----------
    system : openmm.System or tps_diffusion.molecular.MolecularSystem
        The system (its ``openmm_system`` for a MolecularSystem), ``traj.n_atoms`` particles.
    traj : mdtraj.Trajectory
        The path, positions nm, times ps, box (optional) nm.
    frames : sequence of int, shape (k,)
        Frame indices (negative ones count from the end; no duplicates). File names use the
        non-negative index.
    directory : str or os.PathLike
        Output folder (created if missing).
    temperature : float or None
        Temperature (K) of the Maxwell-Boltzmann velocities; None for zero velocities.
    overwrite : bool
        Replace existing files.
    seed : int or None
        Seed of the velocity draws (one seed per frame via
        :func:`tps_diffusion.utils.seeds.spawn_seeds`); None for fresh entropy.
    prefix : str
        File-name prefix.
    platform : str
        OpenMM platform name of the temporary context.

    Returns
    -------
    list of pathlib.Path, length k
        The files written, in the order of ``frames``.

    Raises
    ------
    ValueError
        If the particle counts differ or ``frames`` contains duplicates.
    IndexError
        For a frame index out of range.
    FileExistsError
        If a target exists and ``overwrite`` is False.
    """
    import openmm
    from openmm import unit

    system = getattr(system, "openmm_system", system)
    if system.getNumParticles() != traj.n_atoms:
        raise ValueError(f"system has {system.getNumParticles()} particles, trajectory {traj.n_atoms} atoms")
    frames = [int(f) for f in np.atleast_1d(frames)]
    for f in frames:
        if not -traj.n_frames <= f < traj.n_frames:
            raise IndexError(f"frame {f} out of range for {traj.n_frames} frames")
    directory = Path(directory)
    paths = [directory / f"{prefix}_{f % traj.n_frames:05d}.xml" for f in frames]
    if len(set(paths)) != len(paths):
        raise ValueError("frames contains duplicates")
    for p in paths:
        check_writable(p, overwrite)

    seeds = spawn_seeds(seed, len(frames))
    # A CustomIntegrator has no velocity time offset: setVelocitiesToTemperature then stores plain
    # Maxwell-Boltzmann velocities. A leapfrog integrator (Verlet, LangevinMiddle) would shift them
    # by -dt/2 F/m, which is huge on strained (e.g. interpolated) frames.
    integrator = openmm.CustomIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    zeros = np.zeros((traj.n_atoms, 3))
    written: list[Path] = []
    try:
        for f, p, s in zip(frames, paths, seeds):
            if traj.unitcell_vectors is not None:
                a, b, c = (openmm.Vec3(*v) * unit.nanometer for v in traj.unitcell_vectors[f].astype(float))
                context.setPeriodicBoxVectors(a, b, c)
            context.setPositions(traj.xyz[f].astype(np.float64) * unit.nanometer)
            if traj.time is not None:
                context.setTime(float(traj.time[f]) * unit.picosecond)
            if temperature is not None:
                context.setVelocitiesToTemperature(float(temperature) * unit.kelvin, s)
            else:
                context.setVelocities(zeros * unit.nanometer / unit.picosecond)
            state = context.getState(getPositions=True, getVelocities=True, getEnergy=True, getParameters=True)
            write_text(p, openmm.XmlSerializer.serialize(state), overwrite)
            written.append(p)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    finally:
        del context, integrator
    return paths
