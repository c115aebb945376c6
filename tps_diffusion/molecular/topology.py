"""Topologies, positions and force fields at the API boundary (nm; OpenMM and mdtraj objects)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import mdtraj
import numpy as np
import openmm.app as app
import openmm.unit as unit

__all__ = ["as_md_topology", "as_positions", "load_forcefield", "NONBONDED_METHODS", "CONSTRAINTS"]


def as_md_topology(top) -> mdtraj.Topology:
    """mdtraj Topology from an mdtraj/OpenMM Topology, a Trajectory, a MolecularSystem or a structure file."""
    if isinstance(top, mdtraj.Topology):
        return top
    if isinstance(top, mdtraj.Trajectory):
        return top.topology
    if isinstance(top, app.Topology):
        return mdtraj.Topology.from_openmm(top)
    if isinstance(getattr(top, "md_topology", None), mdtraj.Topology):  # a MolecularSystem
        return top.md_topology
    if isinstance(top, (str, os.PathLike)):
        path = Path(top)
        if not path.is_file():
            raise FileNotFoundError(f"topology file not found: {path}; pass a PDB (or any file mdtraj reads) of the "
                                    "system")
        return mdtraj.load_topology(str(path))
    raise TypeError("expected an mdtraj/openmm Topology, Trajectory, MolecularSystem or structure file, got "
                    f"{type(top).__name__}")


def as_positions(positions, n_atoms: int | None = None, what: str = "positions") -> np.ndarray:
    """Positions as a float64 array ``(n_frames, n_atoms, 3)`` in nm.

    Accepts an ``mdtraj.Trajectory``, an ``openmm.unit.Quantity`` (list of Vec3 or array), or
    an array ``(n_atoms, 3)`` / ``(n_frames, n_atoms, 3)`` in nm. Raises ``ValueError`` for a
    wrong shape, an atom-count mismatch with ``n_atoms`` or non-finite values.
    """
    if isinstance(positions, mdtraj.Trajectory):
        xyz = np.asarray(positions.xyz, dtype=np.float64)
    else:
        if unit.is_quantity(positions):
            positions = positions.value_in_unit(unit.nanometer)
        xyz = np.asarray(positions, dtype=np.float64)
        if xyz.ndim == 2:
            xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (n_atoms, 3) or (n_frames, n_atoms, 3); got {xyz.shape}")
    if n_atoms is not None and xyz.shape[1] != n_atoms:
        raise ValueError(f"{what} have {xyz.shape[1]} atoms but the topology has {n_atoms}")
    if not np.all(np.isfinite(xyz)):
        bad = np.unique(np.nonzero(~np.isfinite(xyz))[0])
        more = " ..." if len(bad) > 10 else ""
        raise ValueError(f"{what} contain NaN/inf values (frames {bad[:10].tolist()}{more}); drop those frames "
                         f"(e.g. traj[mask]) or regenerate them")
    return xyz


@functools.lru_cache(maxsize=16)
def load_forcefield(files: tuple[str, ...]) -> app.ForceField:
    """Parsed (cached) ``openmm.app.ForceField``; one-line error naming an unknown file."""
    for f in files:
        if not Path(f).is_file() and not any((Path(d) / f).is_file() for d in _ff_data_dirs()):
            raise ValueError(f"unknown force-field file {f!r} (neither a file nor part of OpenMM's data directories)")
    try:
        return app.ForceField(*files)
    except Exception as exc:  # noqa: BLE001 - OpenMM raises a bare Exception for a bad XML
        raise ValueError(f"cannot load force field {list(files)}: {exc}".splitlines()[0]) from None


def _ff_data_dirs() -> list[str]:
    dirs = [os.path.join(os.path.dirname(app.__file__), "data")]
    try:  # plugins (e.g. openmmforcefields) register further data directories
        from openmm.app.forcefield import _getDataDirectories

        dirs = list(_getDataDirectories())
    except Exception:  # noqa: BLE001 - a private OpenMM helper; fall back to the data dir
        pass
    return dirs


NONBONDED_METHODS = {"NoCutoff": app.NoCutoff, "CutoffNonPeriodic": app.CutoffNonPeriodic,
                     "CutoffPeriodic": app.CutoffPeriodic, "PME": app.PME}
CONSTRAINTS = {None: None, "None": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds, "HAngles": app.HAngles}
