"""Trajectory files: one format table, atomic writes, reads checked against a topology.

Formats by extension (:data:`FORMATS`): ``.dcd`` ``.xtc`` (coordinates only; optional companion
topology PDB), ``.pdb`` and ``.h5`` (topology included; ``.h5`` needs PyTables). Precision: HDF5
stores float32 nm (lossless for an ``mdtraj.Trajectory``), DCD float32 Angstrom (~1e-7 relative),
PDB 0.001 Angstrom = 1e-4 nm, XTC 1e-3 nm (mdtraj default precision 1000/nm). Reading takes any
format mdtraj reads; coordinate-only formats need a topology.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit

from ..utils.files import atomic_path, check_writable
from .topology import as_md_topology, as_positions

__all__ = ["FORMATS", "WRITE_FORMATS", "needs_topology", "write_trajectory", "load_trajectory", "load_samples",
           "openmm_positions"]


@dataclass(frozen=True)
class Format:
    """A trajectory file format: whether the file holds a topology, and how mdtraj writes it."""

    has_topology: bool
    writer: str | None = None  # name of the ``mdtraj.Trajectory`` method that writes it; None: read only


#: extension -> format (read by mdtraj; the ones with a ``writer`` are written by :func:`write_trajectory`)
FORMATS: dict[str, Format] = {
    ".dcd": Format(False, "save_dcd"), ".xtc": Format(False, "save_xtc"), ".pdb": Format(True, "save_pdb"),
    ".h5": Format(True, "save_hdf5"), ".trr": Format(False), ".nc": Format(False), ".netcdf": Format(False),
    ".binpos": Format(False), ".mdcrd": Format(False), ".crd": Format(False), ".xyz": Format(False),
    ".lammpstrj": Format(False), ".dtr": Format(False), ".ncrst": Format(False), ".rst7": Format(False),
    ".gro": Format(True), ".cif": Format(True), ".mol2": Format(True), ".pdbx": Format(True),
}
WRITE_FORMATS = tuple(ext for ext, f in FORMATS.items() if f.writer)


def needs_topology(path: str | os.PathLike) -> bool:
    """True for coordinate-only formats (DCD, XTC, ...), which need a topology to be read."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    return fmt is not None and not fmt.has_topology


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
        raise ValueError(f"cannot write {path.name!r}: unsupported extension {ext!r}; supported: "
                         f"{', '.join(WRITE_FORMATS)}")
    top_path = None
    if topology_pdb:
        if FORMATS[ext].has_topology:
            raise ValueError(f"topology_pdb is only meaningful for .dcd/.xtc (a {ext} file carries its topology)")
        top_path = path.with_suffix(".pdb") if topology_pdb is True else Path(topology_pdb)
        check_writable(top_path, overwrite)
    if not np.all(np.isfinite(traj.xyz)):
        raise ValueError(f"refusing to write {path.name}: coordinates contain NaN/inf")
    check_writable(path, overwrite)
    with atomic_path(path, overwrite) as tmp:
        getattr(traj, FORMATS[ext].writer)(str(tmp))
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
    except Exception:  # noqa: BLE001 - unreadable here means: let the loader below report it
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
    if top is None and needs_topology(path):
        companion = path.with_suffix(".pdb")
        if not companion.is_file():
            raise ValueError(f"{path.name} has no topology; pass top= (a PDB, Topology or MolecularSystem) or put "
                             f"{companion.name} next to it")
        top = companion
    md_top = None if top is None else as_md_topology(top)
    if needs_topology(path):
        n_file = _n_atoms_in_file(path)
        if n_file is not None and n_file != md_top.n_atoms:
            raise ValueError(f"topology mismatch: {path.name} has {n_file} atoms but the topology has {md_top.n_atoms}")
        try:
            return mdtraj.load(str(path), top=md_top)
        except ValueError as exc:
            raise ValueError(f"topology mismatch loading {path.name}: {exc}".splitlines()[0]) from None
    try:
        traj = mdtraj.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad or truncated file
        raise ValueError(f"cannot read {path.name} as a trajectory ({type(exc).__name__}); check that the file is "
                         "complete and its suffix names its format (.h5 .dcd .xtc .pdb ...)") from None
    if md_top is not None:
        diff = _same_atoms(traj.topology, md_top)
        if diff is not None:
            raise ValueError(f"topology mismatch: {path.name} does not match the given topology ({diff}); pass the "
                             "matching topology (--top / top=) or system")
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


def load_samples(path: str | os.PathLike | Sequence[str | os.PathLike], top=None) -> mdtraj.Trajectory:
    """Load MD samples from one file or several (concatenated), any format mdtraj reads.

    ``top``: MolecularSystem, Topology, Trajectory or structure file; required for coordinate-only
    formats (DCD, XTC, ...) unless ``<name>.pdb`` lies next to the file. A file whose atoms do
    not match ``top`` raises ``ValueError`` naming both atom counts.
    """
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
