"""Trajectory and OpenMM-state output (atomic writes), trajectory input with topology checks.

Formats by extension: ``.dcd`` ``.xtc`` (coordinates only; optional companion topology PDB),
``.pdb`` and ``.h5`` (topology included; ``.h5`` needs PyTables). Precision: HDF5 stores
float32 nm (lossless for an ``mdtraj.Trajectory``), DCD float32 Angstrom (~1e-7 relative), PDB
0.001 Angstrom = 1e-4 nm, XTC 1e-3 nm (mdtraj default precision 1000/nm).
"""

from __future__ import annotations

import os
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit

from .io import atomic_path, check_writable
from .molecule import as_md_topology, as_positions

__all__ = [
    "WRITE_FORMATS",
    "write_trajectory",
    "load_trajectory",
    "openmm_positions",
]

WRITE_FORMATS = (".dcd", ".xtc", ".pdb", ".h5")
_NEEDS_TOPOLOGY = {".dcd", ".xtc", ".trr", ".nc", ".netcdf", ".binpos", ".mdcrd", ".crd", ".xyz", ".lammpstrj", ".dtr", ".ncrst", ".rst7"}


def write_trajectory(traj: mdtraj.Trajectory, path: str | os.PathLike, overwrite: bool = False,
                     topology_pdb: bool | str | os.PathLike = False) -> Path:
    """Write ``traj`` to ``path`` (.dcd .xtc .pdb .h5) atomically; returns the path.

    An existing file is only replaced with ``overwrite=True``; a failing writer leaves nothing.
    ``topology_pdb`` (DCD/XTC only): True writes ``<path without suffix>.pdb`` (first frame) next
    to the trajectory, a path writes it there; same overwrite rule.
    """
    if not isinstance(traj, mdtraj.Trajectory):
        raise TypeError(f"expected an mdtraj.Trajectory, got {type(traj).__name__}")
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_FORMATS:
        raise ValueError(f"cannot write {path.name!r}: unsupported extension {ext!r}; supported: {', '.join(WRITE_FORMATS)}")
    top_path = None
    if topology_pdb:
        if ext not in (".dcd", ".xtc"):
            raise ValueError(f"topology_pdb is only meaningful for .dcd/.xtc (a {ext} file carries its topology)")
        top_path = path.with_suffix(".pdb") if topology_pdb is True else Path(topology_pdb)
        check_writable(top_path, overwrite)
    if not np.all(np.isfinite(traj.xyz)):
        raise ValueError(f"refusing to write {path.name}: coordinates contain NaN/inf")
    check_writable(path, overwrite)
    with atomic_path(path, overwrite) as tmp:
        if ext == ".dcd":
            traj.save_dcd(str(tmp))
        elif ext == ".xtc":
            traj.save_xtc(str(tmp))
        elif ext == ".pdb":
            traj.save_pdb(str(tmp))
        else:
            traj.save_hdf5(str(tmp))
    if top_path is not None:
        with atomic_path(top_path, overwrite) as tmp:
            traj[0].save_pdb(str(tmp))
    return path


def _n_atoms_in_file(path: Path) -> int | None:
    try:
        with mdtraj.open(str(path)) as fh:
            out = fh.read(n_frames=1)
        xyz = out[0] if isinstance(out, tuple) else out
        return int(np.asarray(xyz).shape[1])
    except Exception:
        return None


def _same_atoms(a: mdtraj.Topology, b: mdtraj.Topology) -> str | None:
    """None if the atoms match in count and element; else a short description of the difference."""
    if a.n_atoms != b.n_atoms:
        return f"{a.n_atoms} atoms vs {b.n_atoms}"
    for x, y in zip(a.atoms, b.atoms):
        ex, ey = getattr(x.element, "symbol", None), getattr(y.element, "symbol", None)
        if ex != ey:
            return f"atom {x.index} is {x} ({ex}) vs {y} ({ey})"
    return None


def load_trajectory(path: str | os.PathLike, top=None) -> mdtraj.Trajectory:
    """Load any file mdtraj reads; ``top`` (Topology, Trajectory, MolecularSystem or structure file)
    is required for coordinate-only formats unless ``<path without suffix>.pdb`` exists.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming both atom counts
    (or the first differing atom) when the file does not match the topology.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    ext = path.suffix.lower()
    if top is None and ext in _NEEDS_TOPOLOGY:
        companion = path.with_suffix(".pdb")
        if not companion.is_file():
            raise ValueError(f"{path.name} has no topology; pass top= (a PDB, Topology or MolecularSystem) or put {companion.name} next to it")
        top = companion
    md_top = None if top is None else as_md_topology(top)
    if ext in _NEEDS_TOPOLOGY:
        n_file = _n_atoms_in_file(path)
        if n_file is not None and n_file != md_top.n_atoms:
            raise ValueError(f"topology mismatch: {path.name} has {n_file} atoms but the topology has {md_top.n_atoms}")
        try:
            return mdtraj.load(str(path), top=md_top)
        except ValueError as exc:
            raise ValueError(f"topology mismatch loading {path.name}: {exc}".splitlines()[0]) from None
    try:
        traj = mdtraj.load(str(path))
    except Exception as exc:
        raise ValueError(f"cannot read {path.name} as a trajectory ({type(exc).__name__}); check that the file is complete and its suffix names its format (.h5 .dcd .xtc .pdb ...)") from None
    if md_top is not None:
        diff = _same_atoms(traj.topology, md_top)
        if diff is not None:
            raise ValueError(f"topology mismatch: {path.name} does not match the given topology ({diff}); pass the matching topology (--top / top=) or system")
        traj.topology = md_top
    return traj


def openmm_positions(traj, frame: int = 0) -> unit.Quantity:
    """Positions of ``frame`` as a Quantity (list of Vec3, nm) for ``context.setPositions``.

    ``traj``: an ``mdtraj.Trajectory`` or positions ``(n_atoms, 3)`` / ``(n_frames, n_atoms, 3)`` nm.
    """
    xyz = as_positions(traj)
    if not -len(xyz) <= frame < len(xyz):
        raise IndexError(f"frame {frame} out of range for {len(xyz)} frames")
    return [openmm.Vec3(*map(float, r)) for r in xyz[frame]] * unit.nanometer
