"""Frames equally spaced in RMSD along a transition path.

The arc length of a path is the cumulative RMSD (nm) between consecutive frames after optimal
superposition (:mod:`tps_diffusion.molecular.superpose`). PLUMED's ``PATHMSD``, the string method
and NEB all want reference frames at equal RMSD from their neighbours; :func:`equally_spaced_frames`
makes them.
"""

from __future__ import annotations

import warnings

import mdtraj
import numpy as np

from ..molecular.limits import as_count, check_frame_memory, nonfinite_frames
from ..molecular.solvent import solute_atoms
from ..molecular.superpose import kabsch_rotation, superposed_msd

__all__ = ["resolve_atom_indices", "consecutive_rmsd", "equally_spaced_frames", "check_path", "check_n_frames",
           "check_smooth"]


def check_path(traj, what: str = "the path") -> mdtraj.Trajectory:
    """``traj`` if it is an ``mdtraj.Trajectory`` of at least 2 frames with finite coordinates;
    one-line ``TypeError``/``ValueError`` otherwise (NaN frames named)."""
    if not isinstance(traj, mdtraj.Trajectory):
        raise TypeError(f"{what} must be an mdtraj.Trajectory; got {type(traj).__name__}")
    if traj.n_frames < 2:
        raise ValueError(f"{what} needs at least 2 frames; got {traj.n_frames}")
    bad = nonfinite_frames(traj.xyz)
    if bad is not None:
        raise ValueError(f"{what} has NaN/inf coordinates (frames {bad}); drop those frames (traj[mask]) or "
                         "regenerate the path")
    return traj


def check_n_frames(n_frames, traj: mdtraj.Trajectory, name: str = "n_frames") -> int:
    """``n_frames`` as an int in ``[2, traj.n_frames]``: a hand-off file never holds more frames than
    the path it comes from (more would only interpolate, and inflate PATHMSD's LAMBDA)."""
    n = as_count(n_frames, name, minimum=2)
    if n > traj.n_frames:
        raise ValueError(f"asked for {n} frames but the path has only {traj.n_frames}; use at most {traj.n_frames}")
    return n


def check_smooth(smooth, traj: mdtraj.Trajectory) -> int:
    """``smooth`` (a running-mean window, frames) checked against the length of ``traj``."""
    return as_count(smooth, "smooth (running-mean window, frames)", minimum=1, maximum=traj.n_frames,
                    hint=f" (the path has {traj.n_frames} frames; 1 = no smoothing)")


def resolve_atom_indices(traj: mdtraj.Trajectory, atom_indices=None) -> np.ndarray:
    """Checked atom indices into ``traj``'s topology.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The trajectory the indices refer to.
    atom_indices : array_like of int, shape (m,), or None
        0-based atom indices; None means all solute atoms (water and ions are never part of a path CV:
        selected ones are dropped with a warning).

    Returns
    -------
    numpy.ndarray of int, shape (m,)
        The indices, flattened, in the given order.

    Raises
    ------
    ValueError
        If the indices are empty, out of range or contain duplicates.
    """
    if atom_indices is None:
        return solute_atoms(traj.topology)
    raw = np.asarray(atom_indices)
    if raw.dtype == bool or raw.dtype.kind not in "iu" and not (raw.dtype.kind == "f" and np.all(raw == np.round(raw))):
        raise ValueError(f"atom_indices must be integers (0-based atom indices); got {raw.dtype} values")
    idx = raw.astype(int).ravel()
    if idx.size == 0:
        raise ValueError("atom_indices is empty")
    if idx.min() < 0 or idx.max() >= traj.n_atoms:
        raise ValueError(f"atom_indices out of range for a trajectory with {traj.n_atoms} atoms")
    if np.unique(idx).size != idx.size:
        raise ValueError("atom_indices contains duplicates")
    solute = np.isin(idx, solute_atoms(traj.topology))
    if not solute.all():
        if not solute.any():
            raise ValueError("atom_indices select only water or ions; select solute atoms (e.g. 'heavy')")
        warnings.warn(f"dropped {int((~solute).sum())} water/ion atoms from the selection: path CVs and images hold "
                      "solute atoms only", RuntimeWarning, stacklevel=3)
        idx = idx[solute]
    return idx


def consecutive_rmsd(traj: mdtraj.Trajectory, atom_indices=None) -> np.ndarray:
    """RMSD between frames k and k+1 after optimal superposition on ``atom_indices``.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The path, ``n_frames`` frames, positions in nm.
    atom_indices : array_like of int, shape (m,), or None
        Atoms superposed and compared (default all).

    Returns
    -------
    numpy.ndarray of float64, shape (n_frames - 1,)
        RMSD in nm (empty for a single frame).
    """
    idx = resolve_atom_indices(traj, atom_indices)
    x = traj.xyz[:, idx].astype(np.float64)
    bad = nonfinite_frames(x)
    if bad is not None:
        raise ValueError(f"the path has NaN/inf coordinates (frames {bad}); drop those frames or regenerate the path")
    if len(x) < 2:
        return np.zeros(0)
    return np.sqrt(superposed_msd(x[:-1], x[1:]))


def _chain_aligned(traj: mdtraj.Trajectory, idx: np.ndarray) -> np.ndarray:
    """All frames (float64), each superposed onto the previous (already aligned) one.

    Every atom of frame k is moved by the rigid motion that best fits its atoms ``idx`` onto those
    of the aligned frame k-1; shape ``(n_frames, n_atoms, 3)``, nm.
    """
    x = traj.xyz.astype(np.float64)
    out = np.empty_like(x)
    out[0] = x[0]
    for k in range(1, len(x)):
        p, q = x[k, idx], out[k - 1, idx]
        pc, qc = p.mean(axis=0), q.mean(axis=0)
        rot = kabsch_rotation(p - pc, q - qc, centred=True)
        out[k] = (x[k] - pc) @ rot + qc
    return out


def _running_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` frames (shrinking at the ends), endpoints kept."""
    half = window // 2
    c = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)])
    k = np.arange(len(x))
    lo, hi = np.maximum(k - half, 0), np.minimum(k + half + 1, len(x))
    out = (c[hi] - c[lo]) / (hi - lo)[:, None, None]
    out[0], out[-1] = x[0], x[-1]
    return out


def _on_polyline(x: np.ndarray, s: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Points at arc length ``sigma`` on the piecewise-linear curve through ``x`` (knots at ``s``)."""
    k = np.clip(np.searchsorted(s, sigma, side="right") - 1, 0, len(s) - 2)
    seg = s[k + 1] - s[k]
    t = np.divide(sigma - s[k], seg, out=np.zeros_like(sigma), where=seg > 0)
    t = np.clip(t, 0.0, 1.0)[:, None, None]
    return (1.0 - t) * x[k] + t * x[k + 1]


def equally_spaced_frames(
    traj: mdtraj.Trajectory,
    n_frames: int,
    atom_indices=None,
    *,
    interpolate: bool = True,
    rtol: float = 1e-4,
    max_iter: int = 100,
    smooth: int = 1,
) -> mdtraj.Trajectory:
    """``n_frames`` frames equally spaced in RMSD along the path ``traj``.

    The path is first made rotation/translation free: every frame is superposed onto the previous
    one (optimal Kabsch fit on ``atom_indices``; all atoms are moved), so the result lies in the
    frame of reference of ``traj[0]``. The arc length is the cumulative RMSD between consecutive
    frames (on ``atom_indices``, default all atoms).

    ``interpolate=True`` (default): frames are **interpolated** linearly (all atoms, Cartesian)
    between the two bracketing aligned input frames. Their positions start at equal arc length and
    are then refined (fixed-point iteration, at most ``max_iter`` steps, to relative spread
    ``rtol``) until the RMSDs between *consecutive output frames* are equal -- which is what
    PLUMED's ``PATHMSD`` and the string method want. First and last frames are the path's
    endpoints. Interpolated frames are not MD configurations (bond lengths are slightly off where
    the input path is coarse).

    ``interpolate=False``: the input frame nearest to each equal-arc-length target is **picked**
    (unaligned, exactly as in ``traj``); spacing is then only as even as the input allows.

    ``smooth > 1``: the aligned path is first averaged over a centred window of that many frames
    (endpoints kept). Use it for raw thermal paths, whose arc length is otherwise dominated by
    fluctuations that fold the path back on itself.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The path, at least 2 frames, positions in nm.
    n_frames : int
        Number of output frames, at least 2.
    atom_indices : array_like of int, shape (m,), or None
        Atoms used for superposition and RMSD (default all); all atoms are moved and returned.
    interpolate : bool
        Interpolate new frames (True) or pick input frames (False).
    rtol : float
        Target relative spread ``(max - min) / mean`` of the consecutive output RMSDs.
    max_iter : int
        Maximum number of refinement iterations; a ``RuntimeWarning`` is issued if ``rtol`` is
        not reached.
    smooth : int
        Running-mean window (frames) applied to the aligned path; 1 means no smoothing.

    Returns
    -------
    mdtraj.Trajectory
        ``n_frames`` frames with ``traj``'s topology, positions in nm. Interpolated frames carry
        times interpolated along the arc length (ps, if ``traj`` has times) and the first frame's
        box.

    Raises
    ------
    ValueError
        If ``n_frames < 2`` (or, with ``interpolate=False``, more than the path's frames), ``traj``
        has fewer than 2 frames or NaN coordinates, ``smooth`` is not in ``[1, traj.n_frames]``,
        or all frames are identical.
    """
    n_frames = as_count(n_frames, "n_frames", minimum=2)
    if traj.n_frames < 2:
        raise ValueError("the path needs at least 2 frames")
    check_path(traj)
    if not interpolate:
        n_frames = check_n_frames(n_frames, traj)
    else:  # more frames than the path only interpolate; refuse what cannot fit into memory
        check_frame_memory(1, n_frames, traj.n_atoms, n_copies=4, fix="ask for fewer frames")
    smooth = check_smooth(smooth, traj)
    max_iter = as_count(max_iter, "max_iter")
    idx = resolve_atom_indices(traj, atom_indices)
    x = _chain_aligned(traj, idx)
    if smooth > 1:
        x = _running_mean(x, smooth)
    seg = np.sqrt(superposed_msd(x[:-1, idx], x[1:, idx]))
    s = np.concatenate([[0.0], np.cumsum(seg)])
    length = s[-1]
    if not length > 0:
        raise ValueError("the path has zero RMSD length (all frames identical)")
    sigma = np.linspace(0.0, length, n_frames)

    if not interpolate:
        picks = np.abs(s[None, :] - sigma[:, None]).argmin(axis=1)
        return traj[picks]

    for _ in range(max_iter):
        y = _on_polyline(x, s, sigma)
        chord = np.sqrt(superposed_msd(y[:-1, idx], y[1:, idx]))
        if chord.max() - chord.min() <= rtol * chord.mean():
            break
        c = np.concatenate([[0.0], np.cumsum(chord)])
        sigma = np.interp(np.linspace(0.0, c[-1], n_frames), c, sigma)
        sigma[0], sigma[-1] = 0.0, length
    else:
        y = _on_polyline(x, s, sigma)
        chord = np.sqrt(superposed_msd(y[:-1, idx], y[1:, idx]))
        warnings.warn(
            f"equal RMSD spacing not reached in {max_iter} iterations: consecutive RMSD spread "
            f"{(chord.max() - chord.min()) / chord.mean():.2%} of the mean (path folds back on itself?)",
            RuntimeWarning,
            stacklevel=2,
        )

    time = np.interp(sigma, s, traj.time) if traj.time is not None else None
    out = mdtraj.Trajectory(y.astype(np.float32), traj.topology, time=time)
    if traj.unitcell_vectors is not None:
        out.unitcell_vectors = np.repeat(traj.unitcell_vectors[:1], n_frames, axis=0)
    return out
