"""String-method / NEB images: a path resampled to equal RMSD spacing, written as a trajectory file."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import mdtraj

from ..molecular.formats import needs_topology, save_trajectory
from ..molecular.limits import check_output_dir
from ..utils.files import atomic_path, check_writable
from .path_frames import check_n_frames, check_path, check_smooth, equally_spaced_frames

__all__ = ["write_string_images"]

#: suffixes :func:`write_string_images` writes (those mdtraj's ``Trajectory.save`` handles and that
#: string/NEB codes read); the coordinate-only ones (:func:`needs_topology`) get a topology PDB
_IMAGE_SUFFIXES = (".pdb", ".h5", ".dcd", ".xtc", ".trr", ".nc")


def write_string_images(
    traj: mdtraj.Trajectory,
    path: str | os.PathLike,
    n_images: int,
    overwrite: bool = False,
    *,
    atom_indices=None,
    smooth: int = 1,
) -> dict[str, Path | None]:
    """Write ``n_images`` string/NEB images equally spaced in RMSD.

    The images come from :func:`~tps_diffusion.handoff.equally_spaced_frames` (interpolated, in
    the frame of reference of ``traj[0]``).

    The format follows the suffix of ``path``: ``.pdb`` (multi-model), ``.h5`` (with topology), or
    ``.dcd``/``.xtc``/``.trr``/``.nc`` plus a topology PDB (first image) next to it, named
    ``<stem>_top.pdb``. All files are written atomically; if any exists and ``overwrite`` is False,
    nothing is written.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The path, at least 2 frames, positions in nm.
    path : str or os.PathLike
        Output file; its suffix selects the format.
    n_images : int
        Number of images, at least 2 and at most ``traj.n_frames``.
    overwrite : bool
        Replace existing files.
    atom_indices : array_like of int, shape (m,), or None
        Atoms used for superposition and spacing (default all); every atom is written.
    smooth : int
        Running-mean window (frames), see :func:`~tps_diffusion.handoff.equally_spaced_frames`.

    Returns
    -------
    dict
        ``{"images": Path, "topology": Path or None}`` (the topology PDB for coordinate-only
        formats).

    Raises
    ------
    ValueError
        For an unsupported suffix, ``n_images`` not in ``[2, traj.n_frames]``, ``smooth`` not in
        ``[1, traj.n_frames]`` or NaN coordinates.
    OSError
        If the directory is not writable or the writer fails (full disk).
    FileExistsError
        If a target exists and ``overwrite`` is False.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _IMAGE_SUFFIXES:
        raise ValueError(f"unsupported image format {suffix!r}: use {', '.join(_IMAGE_SUFFIXES)}")
    check_path(traj)
    n_images = check_n_frames(n_images, traj, "n_images")
    smooth = check_smooth(smooth, traj)
    top_path = path.with_name(path.stem + "_top.pdb") if needs_topology(path) else None
    if path.is_dir():
        raise IsADirectoryError(f"cannot write images to {path}: it is a directory; give a file name ending in "
                                f"{suffix}")
    check_writable(path, overwrite)
    if top_path is not None:
        check_writable(top_path, overwrite)
    check_output_dir(path.parent, "the images", "choose another output path or --run-dir")
    images = equally_spaced_frames(traj, n_images, atom_indices, smooth=smooth)
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(path, overwrite))
        save_trajectory(images, tmp, name=path)
        if top_path is not None:
            tmp_top = stack.enter_context(atomic_path(top_path, overwrite))
            save_trajectory(images[0], tmp_top, "save_pdb", name=top_path)
    return {"images": path, "topology": top_path}
