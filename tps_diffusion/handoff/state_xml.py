"""OpenMM ``State`` XML files of path frames, to start MD (``Simulation.loadState``) from a path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import mdtraj
import numpy as np

from ..molecular._openmm import get_platform
from ..molecular.limits import check_output_dir, openmm_errors
from ..utils.files import atomic_path, check_writable, writing
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
        If the particle counts differ, ``frames`` contains duplicates or frames with NaN
        coordinates, or ``temperature`` is not > 0 K (or None).
    OSError
        If ``directory`` is not writable or a write fails (full disk).
    IndexError
        For a frame index out of range.
    FileExistsError
        If a target exists and ``overwrite`` is False.
    """
    import openmm
    from openmm import unit

    system = getattr(system, "openmm_system", system)
    if not isinstance(system, openmm.System):
        raise TypeError(f"system must be an openmm.System or a MolecularSystem; got {type(system).__name__}")
    if not isinstance(traj, mdtraj.Trajectory):
        raise TypeError(f"traj must be an mdtraj.Trajectory; got {type(traj).__name__}")
    if system.getNumParticles() != traj.n_atoms:
        raise ValueError(f"system has {system.getNumParticles()} particles, trajectory {traj.n_atoms} atoms")
    if temperature is not None:
        try:
            temperature = float(temperature.value_in_unit(unit.kelvin) if unit.is_quantity(temperature)
                                else temperature)
        except (TypeError, ValueError):
            temperature = float("nan")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"velocity temperature must be > 0 K, or None for zero velocities; got {temperature}")
    raw = np.atleast_1d(np.asarray(frames))
    if raw.size == 0:
        raise ValueError("frames is empty; give at least one frame index")
    if raw.dtype == bool or raw.dtype.kind not in "iu" and not (raw.dtype.kind == "f" and np.all(raw == np.round(raw))):
        raise ValueError(f"frames must be integer frame indices; got {raw.tolist()[:10]}")
    frames = [int(f) for f in raw.reshape(-1)]
    for f in frames:
        if not -traj.n_frames <= f < traj.n_frames:
            raise IndexError(f"frame {f} out of range for {traj.n_frames} frames")
    bad = sorted({f % traj.n_frames for f in frames if not np.all(np.isfinite(traj.xyz[f]))})
    if bad:
        raise ValueError(f"frames {bad[:10]}{' ...' if len(bad) > 10 else ''} of the path have NaN/inf coordinates; "
                         "choose other frames or regenerate the path")
    if not isinstance(prefix, str) or not prefix or "/" in prefix or "\\" in prefix:
        raise ValueError(f"prefix must be a plain file-name prefix; got {prefix!r}")
    directory = Path(directory)
    paths = [directory / f"{prefix}_{f % traj.n_frames:05d}.xml" for f in frames]
    if len(set(paths)) != len(paths):
        raise ValueError("frames contains duplicates")
    for p in paths:
        check_writable(p, overwrite)
    check_output_dir(directory, "the State XML files", "choose another directory or --run-dir")
    plat = get_platform(platform, traj.n_atoms)

    seeds = spawn_seeds(seed, len(frames))
    # A CustomIntegrator has no velocity time offset: setVelocitiesToTemperature then stores plain
    # Maxwell-Boltzmann velocities. A leapfrog integrator (Verlet, LangevinMiddle) would shift them
    # by -dt/2 F/m, which is huge on strained (e.g. interpolated) frames.
    integrator = openmm.CustomIntegrator(0.001)
    with openmm_errors(f"creating a context on the {plat.getName()} platform"):
        context = openmm.Context(system, integrator, plat)
    zeros = np.zeros((traj.n_atoms, 3))
    written: list[Path] = []
    try:
        for f, p, s in zip(frames, paths, seeds):
            with openmm_errors(f"setting up frame {f}"):
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
            text = openmm.XmlSerializer.serialize(state)
            with atomic_path(p, overwrite) as tmp, writing(p):
                tmp.write_text(text)
            written.append(p)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    finally:
        del context, integrator
    return paths
