"""Optimal rigid superposition (Kabsch): unweighted, proper rotations only, float64, batched.

The one implementation used for feature alignment, restraint targets and RMSD-based path hand-off.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kabsch_rotation", "superpose", "superposed_msd"]


def kabsch_rotation(mobile: np.ndarray, target: np.ndarray, centred: bool = False) -> np.ndarray:
    """Optimal proper rotation ``R`` (``(..., 3, 3)``) with ``(mobile - c_m) @ R ~= target - c_t``.

    ``mobile`` ``(..., m, 3)``, ``target`` ``(m, 3)`` or ``(..., m, 3)`` (broadcast over leading
    axes). Unweighted; ``centred=True`` skips the centring when the inputs are centred already.
    """
    mobile = np.asarray(mobile, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if not centred:
        mobile = mobile - mobile.mean(-2, keepdims=True)
        target = target - target.mean(-2, keepdims=True)
    h = np.swapaxes(mobile, -1, -2) @ target  # (..., 3, 3)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    u = u.copy()
    u[..., :, -1] *= d[..., None]
    return u @ vt


def superpose(mobile: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``mobile`` ``(..., m, 3)`` rigidly moved onto ``target`` (``(m, 3)`` or ``(..., m, 3)``)."""
    mobile = np.asarray(mobile, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    cm = mobile.mean(-2, keepdims=True)
    ct = target.mean(-2, keepdims=True)
    r = kabsch_rotation(mobile - cm, target - ct, centred=True)
    return (mobile - cm) @ r + ct


def superposed_msd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean-square deviation (per atom, nm^2 for nm input) of ``a`` and ``b`` ``(..., m, 3)`` after
    optimal superposition of ``a`` onto ``b``; shape ``(...)``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    moved = superpose(a, b)
    return ((moved - b) ** 2).sum((-2, -1)) / a.shape[-2]
