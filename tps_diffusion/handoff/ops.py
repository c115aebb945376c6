"""OpenPathSampling hand-off: an initial trajectory and an OpenMM engine, optionally saved to a ``Storage``.

``openpathsampling`` is optional; without it the functions here raise ImportError naming
:data:`OPS_INSTALL`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import mdtraj
import numpy as np

from ..molecular.limits import as_count, check_output_dir
from ..utils.files import atomic_path, check_writable, writing
from .path_frames import check_path

__all__ = ["OPS_INSTALL", "OPSHandoff", "to_openpathsampling", "write_ops_storage"]

#: how to install the optional dependency (quoted in the ImportError)
OPS_INSTALL = "pip install openpathsampling"


def _check_engine(temperature, timestep, friction, n_steps_per_frame, n_frames_max) -> tuple:
    """Checked engine settings (one-line ``ValueError`` naming the bad one)."""
    for name, value, zero_ok in (("temperature (K)", temperature, False), ("timestep (ps)", timestep, False),
                                 ("friction (1/ps)", friction, True)):
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = float("nan")
        if not (np.isfinite(v) and (v > 0 or (zero_ok and v == 0))):
            raise ValueError(f"OPS engine {name} must be finite and {'>= 0' if zero_ok else '> 0'}; got {value}")
    return (float(temperature), float(timestep), float(friction), as_count(n_steps_per_frame, "n_steps_per_frame"),
            as_count(n_frames_max, "n_frames_max"))


class OPSHandoff(NamedTuple):
    """What :func:`to_openpathsampling` returns."""

    trajectory: Any  #: ``openpathsampling.Trajectory``
    engine: Any  #: ``openpathsampling.engines.openmm.Engine`` or None (no system given)


def to_openpathsampling(
    traj: mdtraj.Trajectory,
    system=None,
    *,
    temperature: float = 300.0,
    timestep: float = 0.002,
    friction: float = 1.0,
    n_steps_per_frame: int = 10,
    n_frames_max: int = 5000,
    velocities: np.ndarray | None = None,
    platform: str | None = None,
) -> OPSHandoff:
    """Initial trajectory for OpenPathSampling (e.g. two-way shooting), and an OpenMM engine.

    ``traj`` becomes an ``openpathsampling.Trajectory`` (positions nm; ``velocities`` nm/ps, or
    zero -- two-way shooting redraws them anyway). With ``system`` an
    ``openpathsampling.engines.openmm.Engine`` is built too: Langevin (``LangevinMiddleIntegrator``,
    ``temperature`` K, ``friction`` 1/ps, ``timestep`` ps), one saved frame every
    ``n_steps_per_frame`` steps, at most ``n_frames_max`` frames per trajectory; ``platform``
    (name) initialises it, else OPS picks the fastest platform lazily. The input path should be
    a reactive trajectory saved at the same ``n_steps_per_frame * timestep`` spacing for a
    correct path ensemble; an interpolated geodesic path is only a starting point to decorrelate.

    Needs ``openpathsampling`` (optional; else ImportError naming ``pip install
    openpathsampling``). Note: openpathsampling 1.7.0 declares ``numpy<2`` and a plain install
    downgrades numpy; the calls used here work with numpy 2.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The path, ``n_frames`` frames of ``n_atoms`` atoms, positions in nm.
    system : openmm.System or tps_diffusion.molecular.MolecularSystem or None
        The system of the engine (its ``openmm_system`` for a MolecularSystem); None: no engine.
    temperature : float
        Langevin temperature, K.
    timestep : float
        Integration time step, ps.
    friction : float
        Langevin friction, 1/ps.
    n_steps_per_frame : int
        MD steps between saved frames.
    n_frames_max : int
        Maximum number of frames of a trajectory the engine generates.
    velocities : numpy.ndarray, shape (n_frames, n_atoms, 3), or None
        Velocities in nm/ps; None for zero.
    platform : str or None
        OpenMM platform name to initialise the engine with; None: chosen lazily by OPS.

    Returns
    -------
    OPSHandoff
        ``(trajectory, engine)``; ``engine`` is None without ``system``.
    """
    check_path(traj)
    temperature, timestep, friction, n_steps_per_frame, n_frames_max = _check_engine(
        temperature, timestep, friction, n_steps_per_frame, n_frames_max)
    if velocities is not None:
        velocities = np.asarray(velocities, dtype=float)
        if velocities.shape != traj.xyz.shape or not np.all(np.isfinite(velocities)):
            raise ValueError(f"velocities must be finite, shape {traj.xyz.shape} nm/ps; got shape {velocities.shape}")
    try:
        from openpathsampling.engines import openmm as ops_openmm
        from openpathsampling.engines.topology import MDTrajTopology
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"to_openpathsampling needs openpathsampling: {OPS_INSTALL}") from exc

    trajectory = ops_openmm.trajectory_from_mdtraj(traj, velocities=velocities)
    engine = None
    system = getattr(system, "openmm_system", system)
    if system is not None:
        import openmm
        from openmm import unit

        integrator = openmm.LangevinMiddleIntegrator(
            temperature * unit.kelvin, friction / unit.picosecond, timestep * unit.picosecond
        )
        engine = ops_openmm.Engine(
            MDTrajTopology(traj.topology),
            system,
            integrator,
            options={"n_steps_per_frame": int(n_steps_per_frame), "n_frames_max": int(n_frames_max)},
        )
        if platform is not None:
            engine.initialize(platform)
    return OPSHandoff(trajectory, engine)


def write_ops_storage(
    traj: mdtraj.Trajectory,
    system,
    path: str | os.PathLike,
    *,
    temperature: float,
    timestep: float,
    friction: float,
    n_steps_per_frame: int,
    overwrite: bool = False,
) -> Path:
    """Save the hand-off of :func:`to_openpathsampling` (engine and trajectory) to an OPS ``Storage``.

    The storage (netCDF, usually ``*.nc``) holds the engine and the initial trajectory, also
    under the tags ``"engine"`` and ``"initial_trajectory"``::

        storage = openpathsampling.Storage(path, "r")
        engine, trajectory = storage.tags["engine"], storage.tags["initial_trajectory"]

    It is written to a temporary file and renamed into place, so a failure leaves nothing; an
    existing file is only replaced with ``overwrite=True``.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The path, positions in nm (velocities are zero).
    system : openmm.System or tps_diffusion.molecular.MolecularSystem
        The system of the engine (its ``openmm_system`` for a MolecularSystem).
    path : str or os.PathLike
        The storage file.
    temperature : float
        Langevin temperature of the engine, K.
    timestep : float
        Integration time step, ps.
    friction : float
        Langevin friction, 1/ps.
    n_steps_per_frame : int
        MD steps between saved frames.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ImportError
        Without ``openpathsampling`` (the message names :data:`OPS_INSTALL`).
    ValueError
        If ``system`` is None.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    if system is None:
        raise ValueError("write_ops_storage needs a system: the storage holds the OpenMM engine")
    path = check_writable(path, overwrite)
    check_output_dir(Path(path).parent, "the OPS storage", "choose another path or --run-dir")
    handoff = to_openpathsampling(traj, system, temperature=temperature, timestep=timestep, friction=friction,
                                  n_steps_per_frame=n_steps_per_frame)
    import openpathsampling as ops

    with atomic_path(path, overwrite) as tmp, writing(path):
        storage = ops.Storage(str(tmp), "w")
        try:
            storage.save(handoff.engine)
            storage.save(handoff.trajectory)
            storage.tags["initial_trajectory"] = handoff.trajectory
            storage.tags["engine"] = handoff.engine
        finally:
            storage.close()
    return path
