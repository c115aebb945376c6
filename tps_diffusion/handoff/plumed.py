"""PLUMED ``PATHMSD`` hand-off: a reference PDB (Angstrom) and a ``plumed.dat`` snippet.

PLUMED's PDB reader expects Angstrom (it multiplies by 0.1 to get its internal nm); everything
else, including LAMBDA (nm^-2), is in nm.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np

from ..molecular.limits import as_count, check_output_dir
from ..molecular.superpose import superposed_msd
from ..utils.files import atomic_path, check_writable, writing
from .path_frames import check_n_frames, check_path, check_smooth, equally_spaced_frames, resolve_atom_indices

__all__ = ["LAMBDA_FACTOR", "write_plumed_path"]

#: PATHMSD smoothing rule of the PLUMED documentation/tutorials: LAMBDA = 2.3 / <MSD between
#: consecutive reference frames>, so that exp(-LAMBDA * MSD) of the neighbouring frame is ~0.1.
LAMBDA_FACTOR = 2.3

_H36_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _serial(n: int) -> str:
    """5-character PDB atom serial; hybrid-36 (which PLUMED decodes) beyond 99999."""
    if n < 100000:
        return f"{n:5d}"
    v = n - 100000 + 10 * 36**4
    if v >= 36**5:
        raise ValueError(f"atom serial {n} too large for a PDB file")
    digits = ""
    for _ in range(5):
        v, r = divmod(v, 36)
        digits = _H36_DIGITS[r] + digits
    return digits


def _atom_name(atom) -> str:
    """4-character PDB atom name, left-padded by one space for 1-letter elements (PDB convention)."""
    name = atom.name[:4]
    element = atom.element.symbol if atom.element is not None else ""
    if len(name) < 4 and len(element) == 1:
        return f" {name:<3s}"
    return f"{name:<4s}"


def _plumed_pdb_text(frames: mdtraj.Trajectory, idx: np.ndarray, align_w: float, disp_w: float) -> str:
    """Multi-frame PDB in PLUMED's format: Angstrom, occupancy = align, beta = displace, END."""
    atoms = [frames.topology.atom(int(i)) for i in idx]
    chains = {}
    for c in frames.topology.chains:
        cid = getattr(c, "chain_id", None)
        chains[c.index] = (cid or "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[c.index % 26])[:1]
    xyz = frames.xyz[:, idx].astype(np.float64) * 10.0  # nm -> Angstrom
    if np.abs(xyz).max() >= 1000.0:
        raise ValueError("coordinates beyond the PDB format's range (|x| >= 1000 Angstrom)")
    lines = []
    for f in range(frames.n_frames):
        for j, (i, a) in enumerate(zip(idx, atoms)):
            res = a.residue
            el = a.element.symbol if a.element is not None else ""
            x, y, z = xyz[f, j]
            lines.append(
                f"ATOM  {_serial(int(i) + 1)} {_atom_name(a)} {res.name[:3]:>3s} "
                f"{chains[res.chain.index]}{res.resSeq % 10000:4d}    "
                f"{x:8.3f}{y:8.3f}{z:8.3f}{align_w:6.2f}{disp_w:6.2f}          {el:>2s}"
            )
        lines.append("END")
    return "\n".join(lines) + "\n"


def _plumed_dat_text(pdb_name: str, n_frames: int, n_atoms: int, mean_msd: float, lam: float, label: str,
                     print_stride: int, colvar_file: str) -> str:
    """The ``plumed.dat`` snippet: a commented ``PATHMSD`` action and a ``PRINT`` of sss and zzz."""
    return (
        "# PATHMSD path collective variable, written by tps_diffusion.handoff.write_plumed_path\n"
        f"# reference {pdb_name}: {n_frames} frames x {n_atoms} atoms, Angstrom, equal RMSD spacing;\n"
        "#   atom serials = 1-based atom indices of the MD topology; occupancy = alignment weight,\n"
        "#   beta = displacement weight (all 1.00).\n"
        f"# LAMBDA = {LAMBDA_FACTOR} / <MSD between consecutive frames> = {LAMBDA_FACTOR} / {mean_msd:.6g} nm^2\n"
        f"#        = {lam:.6g} nm^-2 (consecutive RMSD {np.sqrt(mean_msd):.6g} nm); "
        f"with UNITS LENGTH=A use {lam / 100:.6g}.\n"
        f"# sss runs from 1 (first frame) to {n_frames} (last frame); zzz is in nm^2.\n"
        f"{label}: PATHMSD REFERENCE={pdb_name} LAMBDA={lam:.8g}\n"
        f"PRINT ARG={label}.sss,{label}.zzz STRIDE={int(print_stride)} FILE={colvar_file}\n"
    )


def write_plumed_path(
    traj: mdtraj.Trajectory,
    directory: str | os.PathLike,
    n_frames: int = 20,
    atom_indices=None,
    overwrite: bool = False,
    *,
    pdb_name: str = "path_msd.pdb",
    plumed_name: str = "plumed.dat",
    label: str = "p",
    print_stride: int = 100,
    colvar_file: str = "COLVAR",
    smooth: int = 1,
) -> dict[str, Any]:
    """Write a PLUMED ``PATHMSD`` reference (``pdb_name``) and input snippet (``plumed_name``).

    Reference PDB: ``n_frames`` frames from :func:`~tps_diffusion.handoff.equally_spaced_frames`
    (interpolated, equal RMSD between neighbours), only the atoms ``atom_indices`` (default all),
    each frame closed by ``END``. Coordinates are in **Angstrom** (PLUMED's PDB reader multiplies
    by 0.1 to get nm). Atom serials are the 1-based indices in the full topology, i.e. they must
    match the MD engine's atom numbering. Occupancy (alignment weight) and beta (displacement
    weight) are 1.00 for every atom, so PATHMSD aligns and measures on the same atoms with equal
    weights.

    LAMBDA: PATHMSD evaluates ``exp(-LAMBDA * MSD)`` with MSD the mean-square deviation after
    optimal alignment in PLUMED's internal unit nm^2. Following the PLUMED documentation
    ``LAMBDA = 2.3 / <MSD between consecutive reference frames>`` in **nm^-2** (divide by 100 if
    the PLUMED input sets ``UNITS LENGTH=A``).

    ``plumed.dat`` refers to the PDB by its bare file name: run PLUMED in ``directory`` or edit
    the path. Both files are written atomically; if either exists and ``overwrite`` is False,
    nothing is written.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The path, at least 2 frames, positions in nm.
    directory : str or os.PathLike
        Folder for both files (created if missing).
    n_frames : int
        Number of reference frames, at least 2.
    atom_indices : array_like of int, shape (m,), or None
        Atoms written to the reference and used for spacing (default all).
    overwrite : bool
        Replace existing files.
    pdb_name, plumed_name : str
        File names of the reference PDB and of the PLUMED input snippet.
    label : str
        PLUMED label of the ``PATHMSD`` action.
    print_stride : int
        ``STRIDE`` (MD steps) of the ``PRINT`` action.
    colvar_file : str
        ``FILE`` of the ``PRINT`` action.
    smooth : int
        Running-mean window (frames) for raw thermal paths, see
        :func:`~tps_diffusion.handoff.equally_spaced_frames`.

    Returns
    -------
    dict
        ``{"pdb": Path, "plumed": Path, "lambda": float (nm^-2), "msd": ndarray (n_frames - 1,)
        (nm^2, between consecutive frames), "mean_msd": float (nm^2), "n_frames": int,
        "atom_indices": ndarray (m,)}``.
    """
    check_path(traj)
    n_frames = check_n_frames(n_frames, traj)
    smooth = check_smooth(smooth, traj)
    print_stride = as_count(print_stride, "print_stride")
    for what, name in (("pdb_name", pdb_name), ("plumed_name", plumed_name), ("colvar_file", colvar_file)):
        if not isinstance(name, (str, os.PathLike)) or not str(name) or any(c.isspace() for c in str(name)):
            raise ValueError(f"{what} must be a file name without spaces (PLUMED splits its input at spaces); got "
                             f"{name!r}")
    if not isinstance(label, str) or not label or any(c.isspace() for c in label) or ":" in label:
        raise ValueError(f"label must be a PLUMED label (no spaces or ':'); got {label!r}")
    directory = Path(directory)
    pdb_path = check_writable(directory / pdb_name, overwrite)
    dat_path = check_writable(directory / plumed_name, overwrite)
    idx = resolve_atom_indices(traj, atom_indices)
    check_output_dir(directory, "the PLUMED files", "choose another directory (--plumed DIR) or --run-dir")
    frames = equally_spaced_frames(traj, n_frames, idx, smooth=smooth)
    pdb_text = _plumed_pdb_text(frames, idx, 1.0, 1.0)

    msd = superposed_msd(frames.xyz[:-1, idx].astype(np.float64), frames.xyz[1:, idx].astype(np.float64))
    mean_msd = float(msd.mean())
    lam = LAMBDA_FACTOR / mean_msd
    dat_text = _plumed_dat_text(pdb_name, n_frames, idx.size, mean_msd, lam, label, print_stride, colvar_file)
    with ExitStack() as stack:
        tmp_pdb = stack.enter_context(atomic_path(pdb_path, overwrite))
        tmp_dat = stack.enter_context(atomic_path(dat_path, overwrite))
        with writing(pdb_path):
            tmp_pdb.write_text(pdb_text)
        with writing(dat_path):
            tmp_dat.write_text(dat_text)
    return {
        "pdb": pdb_path,
        "plumed": dat_path,
        "lambda": lam,
        "msd": msd,
        "mean_msd": mean_msd,
        "n_frames": n_frames,
        "atom_indices": idx,
    }
