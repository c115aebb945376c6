"""Trajectory files: one format table, atomic writes, reads checked against a topology.

Formats by extension (:data:`FORMATS`): ``.dcd`` ``.xtc`` (coordinates only; optional companion
topology PDB), ``.pdb`` and ``.h5`` (topology included; ``.h5`` needs PyTables). Precision: HDF5
stores float32 nm (lossless for an ``mdtraj.Trajectory``), DCD float32 Angstrom (~1e-7 relative),
PDB 0.001 Angstrom = 1e-4 nm, XTC 1e-3 nm (mdtraj default precision 1000/nm). Reading takes any
format mdtraj reads; coordinate-only formats need a topology.

Reads are checked: a DCD whose header promises more frames than the file holds (truncated copy)
is refused, as are reader failures and NaN/inf coordinates, each with a one-line ``ValueError``.
mdtraj's C readers and writers (DCD, XTC, TRR) only take ASCII file names; other names are
reached through an ASCII-named symbolic link in a temporary directory, so any path works.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import mdtraj
import numpy as np
import openmm
import openmm.unit as unit

from ..utils.files import atomic_path, check_writable, first_line, writing
from .limits import check_output_dir, nonfinite_frames
from .topology import as_md_topology, as_positions

__all__ = ["FORMATS", "WRITE_FORMATS", "needs_topology", "write_trajectory", "write_dcd_stream", "load_trajectory",
           "load_samples", "openmm_positions", "check_writable_trajectory_path", "save_trajectory"]


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

#: coordinates this large (nm, 1 mm) only come from a corrupt file (or a simulation that blew up)
MAX_COORDINATE_NM = 1e6


def needs_topology(path: str | os.PathLike) -> bool:
    """True for coordinate-only formats (DCD, XTC, ...), which need a topology to be read."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    return fmt is not None and not fmt.has_topology


@contextmanager
def _ascii_alias(path: Path, write: bool) -> Iterator[Path]:
    """A path with an ASCII name through which ``path`` is read (``write=False``) or written.

    ``path`` itself when its name is ASCII. Otherwise a symbolic link in a fresh temporary
    directory: to the file (reading) or to its directory (writing; a non-ASCII file name is
    written under an ASCII temporary name and renamed onto ``path``). The links are removed at
    the end; a failed write leaves no file.
    """
    if str(path).isascii():
        yield path
        return
    tmpdir = Path(tempfile.mkdtemp(prefix="tps_ascii_"))
    link = tmpdir / ("d" if write else f"f{path.suffix if path.suffix.isascii() else ''}")
    written = None
    try:
        try:
            if not str(tmpdir).isascii():
                raise OSError(f"the temporary directory {tmpdir} has a non-ASCII name")
            os.symlink(os.path.abspath(path.parent if write else path), link, target_is_directory=write)
        except OSError as exc:
            raise OSError(f"cannot {'write' if write else 'read'} {path.name}: mdtraj's DCD/XTC/TRR code needs an "
                          f"ASCII path and no ASCII alias could be made ({first_line(exc)}); use a path of ASCII "
                          "characters only") from None
        if not write:
            yield link
            return
        name = path.name if path.name.isascii() else f"{tmpdir.name}{path.suffix if path.suffix.isascii() else ''}"
        written = path.parent / name
        yield link / name
        if name != path.name:
            os.replace(written, path)
    finally:
        if written is not None and written != path and os.path.lexists(written):
            os.unlink(written)
        if os.path.lexists(link):
            os.unlink(link)
        shutil.rmtree(tmpdir, ignore_errors=True)


def save_trajectory(traj: mdtraj.Trajectory, path: str | os.PathLike, writer: str | None = None,
                    name: str | os.PathLike | None = None) -> None:
    """Call mdtraj's writer (``writer``, a ``Trajectory`` method name; None: ``Trajectory.save``)
    on ``path`` (a fresh temporary file of :func:`~tps_diffusion.utils.files.atomic_path`).

    Works for non-ASCII paths (see :func:`_ascii_alias`); any writer failure becomes a one-line
    ``OSError`` naming ``name`` (default ``path``: the final file) and suggesting a full disk
    (mdtraj's DCD writer raises ``TypeError`` there).
    """
    path = Path(path)
    with _ascii_alias(path, write=True) as target, writing(path if name is None else name):
        getattr(traj, writer or "save")(str(target))


def check_writable_trajectory_path(path: str | os.PathLike, overwrite: bool = False,
                                   n_bytes: int | None = None) -> Path:
    """Fail fast (before long work) on a trajectory output :func:`write_trajectory` could not write.

    Raises ``ValueError`` for an extension it does not write, ``FileExistsError`` for an existing
    file without ``overwrite``, ``OSError`` when no file can be created in the directory (or its
    nearest existing ancestor: read-only, no permission, a file in the way) or, with ``n_bytes``
    (the expected size), when the file system has less free space than that. Returns the path.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_FORMATS:
        raise ValueError(f"cannot write {path.name!r}: unsupported extension {ext!r}; supported: "
                         f"{', '.join(WRITE_FORMATS)}")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory; give a file name ending in {ext}")
    check_writable(path, overwrite)
    check_output_dir(path.parent, "the trajectory", "choose another output path or --run-dir")
    if not str(path).isascii():
        with tempfile.TemporaryDirectory(prefix="tps_ascii_") as tmp:
            try:
                if not tmp.isascii():
                    raise OSError(f"the temporary directory {tmp} has a non-ASCII name")
                os.symlink(tempfile.gettempdir(), os.path.join(tmp, "probe"), target_is_directory=True)
            except OSError as exc:
                raise OSError(f"cannot write {path.name}: mdtraj needs an ASCII path and no ASCII alias could be made "
                              f"({first_line(exc)}); use a path of ASCII characters only") from None
    if n_bytes is not None:
        base = path.parent
        while not base.exists() and base != base.parent:
            base = base.parent
        free = shutil.disk_usage(base).free
        if free < n_bytes:
            raise OSError(f"writing {path.name} needs about {n_bytes / 1024**2:.3g} MiB but only {free / 1024**2:.3g} "
                          "MiB are free; free space or choose another --run-dir")
    return path


def write_trajectory(traj: mdtraj.Trajectory, path: str | os.PathLike, overwrite: bool = False,
                     topology_pdb: bool | str | os.PathLike = False) -> Path:
    """Write ``traj`` to ``path`` (.dcd .xtc .pdb .h5) atomically; returns the path.

    An existing file is only replaced with ``overwrite=True``; a failing writer leaves nothing and
    raises a one-line ``OSError`` (a full disk is the usual cause). Non-ASCII paths work.
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
    bad = nonfinite_frames(traj.xyz)
    if bad is not None:
        raise ValueError(f"refusing to write {path.name}: coordinates contain NaN/inf (frames {bad}); drop those "
                         "frames (traj[mask]) or regenerate them")
    check_writable(path, overwrite)
    check_output_dir(path.parent, "the trajectory", "choose another output path or --run-dir")
    if top_path is not None:
        check_output_dir(top_path.parent, "the topology PDB", "choose another output path or --run-dir")
    with atomic_path(path, overwrite) as tmp:
        save_trajectory(traj, tmp, FORMATS[ext].writer, name=path)
    if top_path is not None:
        with atomic_path(top_path, overwrite) as tmp:
            save_trajectory(traj[0], tmp, "save_pdb", name=top_path)
    return path


def write_dcd_stream(trajectories: Iterable[mdtraj.Trajectory], path: str | os.PathLike, overwrite: bool = False,
                     topology_pdb: bool | str | os.PathLike = False) -> Path:
    """Write ``trajectories`` one after another into one DCD file (the same bytes as
    ``write_trajectory(mdtraj.join(trajectories), path)``), holding one of them in memory at a
    time: for paths streamed from a :class:`~tps_diffusion.molecular.pathstore.PathStore`. Atomic,
    with the overwrite and ``topology_pdb`` rules of :func:`write_trajectory`."""
    from mdtraj.formats import DCDTrajectoryFile

    path = Path(path)
    if path.suffix.lower() != ".dcd":
        raise ValueError(f"write_dcd_stream writes .dcd files; got {path.name!r}")
    top_path = None
    if topology_pdb:
        top_path = path.with_suffix(".pdb") if topology_pdb is True else Path(topology_pdb)
        check_writable(top_path, overwrite)
    check_writable(path, overwrite)
    check_output_dir(path.parent, "the trajectory", "choose another output path or --run-dir")
    first = None
    with atomic_path(path, overwrite) as tmp:
        with _ascii_alias(tmp, write=True) as target, writing(path), DCDTrajectoryFile(str(target), "w") as fh:
            for t in trajectories:
                bad = nonfinite_frames(t.xyz)
                if bad is not None:
                    raise ValueError(f"refusing to write {path.name}: coordinates contain NaN/inf (frames {bad}); "
                                     "drop those frames or regenerate them")
                if first is None:
                    first = t[0]
                t._check_valid_unitcell()
                fh.write(t.xyz * 10.0, cell_lengths=None if t.unitcell_lengths is None else t.unitcell_lengths * 10.0,
                         cell_angles=t.unitcell_angles)
        if first is None:
            raise ValueError(f"no trajectories to write to {path.name}")
    if top_path is not None:
        with atomic_path(top_path, overwrite) as tmp:
            save_trajectory(first, tmp, "save_pdb", name=top_path)
    return path


def _n_atoms_in_file(path: Path) -> int | None:
    try:
        with mdtraj.open(str(path)) as fh:
            out = fh.read(n_frames=1)
        xyz = out[0] if isinstance(out, tuple) else out
        return int(np.asarray(xyz).shape[1])
    except Exception:  # noqa: BLE001 - unreadable here means: let the loader below report it
        return None


def _dcd_layout(path: Path) -> tuple[int, int, int, int] | None:
    """``(n_frames in the header, n_atoms, header bytes, bytes per frame)`` of a DCD file, or None
    when the header cannot be parsed here (the reader then reports the problem) or the file uses
    fixed atoms (frames of different sizes). CHARMM/NAMD/OpenMM/mdtraj layout, either endianness,
    4-byte record markers."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
        for e in "<>":
            if len(head) >= 92 and struct.unpack(e + "i", head[:4])[0] == 84 and head[4:8] == b"CORD":
                break
        else:
            return None
        icntrl = struct.unpack(e + "20i", head[8:88])
        if struct.unpack(e + "i", head[88:92])[0] != 84:
            return None
        n_title = struct.unpack(e + "i", head[92:96])[0]
        o = 96 + n_title
        if n_title < 0 or len(head) < o + 16 or struct.unpack(e + "i", head[o:o + 4])[0] != n_title:
            return None
        marker, n_atoms, end = struct.unpack(e + "3i", head[o + 4:o + 16])
        if marker != 4 or end != 4 or n_atoms < 1 or icntrl[8] != 0:
            return None
        charmm = icntrl[19] != 0
        coords = 8 + 4 * n_atoms
        frame = 3 * coords + (56 if charmm and icntrl[10] else 0) + (coords if charmm and icntrl[11] else 0)
        return icntrl[0], n_atoms, o + 16, frame
    except (OSError, struct.error):
        return None


def _check_dcd(path: Path) -> int | None:
    """Refuse a DCD whose size does not match its header (truncated or corrupt); returns the
    header's frame count (None: unknown, e.g. a writer that leaves it 0)."""
    layout = _dcd_layout(path)
    if layout is None:
        return None
    n_header, _, header, frame = layout
    readable = max(0, (path.stat().st_size - header)) // frame
    if n_header > 0 and (readable != n_header or header + n_header * frame != path.stat().st_size):
        raise _corrupt(path, n_header, readable)
    return n_header or None


def _corrupt(path: Path, n_header, n_readable) -> ValueError:
    return ValueError(f"{path.name} is truncated or corrupt (header says {n_header} frames, {n_readable} readable); "
                      "re-copy or regenerate it")


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

    Raises ``FileNotFoundError`` for a missing file and a one-line ``ValueError`` when the file
    does not match the topology (naming both atom counts or the first differing atom), when a DCD
    holds fewer (or more) frames than its header says, when the reader fails (truncated or
    corrupt file) and when coordinates are NaN/inf (naming the frames). Non-ASCII paths work.
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
    n_header = _check_dcd(path) if path.suffix.lower() == ".dcd" else None
    with _ascii_alias(path, write=False) as alias:
        traj = _read(path, alias, md_top)
    if n_header is not None and traj.n_frames != n_header:
        raise _corrupt(path, n_header, traj.n_frames)
    bad = nonfinite_frames(traj.xyz)
    if bad is not None:
        raise ValueError(f"{path.name} contains NaN/inf coordinates (frames {bad}); drop those frames or regenerate "
                         "the file")
    if traj.n_frames and max(traj.xyz.max(), -traj.xyz.min()) >= MAX_COORDINATE_NM:
        frames = np.nonzero(np.abs(traj.xyz).max(axis=(1, 2)) >= MAX_COORDINATE_NM)[0]
        raise ValueError(f"{path.name} has implausible coordinates (|x| up to {np.abs(traj.xyz).max():.3g} nm, frames "
                         f"{frames[:10].tolist()}{' ...' if len(frames) > 10 else ''}); the file is corrupt: re-copy "
                         "or regenerate it")
    return traj


def _read(path: Path, alias: Path, md_top: mdtraj.Topology | None) -> mdtraj.Trajectory:
    """``mdtraj.load`` of ``alias`` (``path`` or an ASCII link to it), errors in one line naming ``path``."""
    def unreadable(exc: Exception) -> ValueError:
        reason = first_line(exc)
        return ValueError(f"cannot read {path.name} as a trajectory ({type(exc).__name__}{': ' if reason else ''}"
                          f"{reason[:200]}); the file is truncated or corrupt, or its suffix does not name its format "
                          "(.h5 .dcd .xtc .pdb ...): re-copy or regenerate it")

    if needs_topology(path):
        n_file = _n_atoms_in_file(alias)
        if n_file is not None and n_file != md_top.n_atoms:
            raise ValueError(f"topology mismatch: {path.name} has {n_file} atoms but the topology has {md_top.n_atoms}")
        try:
            return mdtraj.load(str(alias), top=md_top)
        except ValueError as exc:
            if n_file is None:
                raise unreadable(exc) from None
            raise ValueError(f"topology mismatch or corrupt file loading {path.name} ({first_line(exc)}); pass the "
                             "matching topology (--top / top=) or re-copy the file") from None
        except Exception as exc:  # noqa: BLE001 - any other reader failure means a bad or truncated file
            raise unreadable(exc) from None
    try:
        traj = mdtraj.load(str(alias))
    except Exception as exc:  # noqa: BLE001 - any reader failure means a bad or truncated file
        raise unreadable(exc) from None
    if traj.topology is None or traj.n_atoms == 0:
        raise ValueError(f"cannot read {path.name}: no atoms or no readable topology in it; the file is truncated or "
                         "corrupt: re-copy or regenerate it")
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
