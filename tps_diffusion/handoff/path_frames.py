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

from ..molecular.superpose import kabsch_rotation, superposed_msd

__all__ = ["resolve_atom_indices", "consecutive_rmsd", "equally_spaced_frames"]


def resolve_atom_indices(traj: mdtraj.Trajectory, atom_indices=None) -> np.ndarray:
    """Checked atom indices into ``traj``'s topology.

    Parameters
    ----------
    traj : mdtraj.Trajectory
        The trajectory the indices refer to.
    atom_indices : array_like of int, shape (m,), or None
        0-based atom indices; None means all ``traj.n_atoms`` atoms.

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
        return np.arange(traj.n_atoms)
    idx = np.asarray(atom_indices, dtype=int).ravel()
    if idx.size == 0:
        raise ValueError("atom_indices is empty")
    if idx.min() < 0 or idx.max() >= traj.n_atoms:
        raise ValueError(f"atom_indices out of range for a trajectory with {traj.n_atoms} atoms")
    if np.unique(idx).size != idx.size:
        raise ValueError("atom_indices contains duplicates")
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
        If ``n_frames < 2``, ``traj`` has fewer than 2 frames, or all frames are identical.
    """
    n_frames = int(n_frames)
    if n_frames < 2:
        raise ValueError("n_frames must be at least 2")
    if traj.n_frames < 2:
        raise ValueError("the path needs at least 2 frames")
    idx = resolve_atom_indices(traj, atom_indices)
    x = _chain_aligned(traj, idx)
    if smooth > 1:
        x = _running_mean(x, int(smooth))
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
