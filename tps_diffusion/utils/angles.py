"""Periodic coordinates (angles in radians by default)."""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

ArrayLike = TypeVar("ArrayLike")


def wrap(x: ArrayLike, period: float = 2 * math.pi) -> ArrayLike:
    """``x`` wrapped into ``[-period/2, period/2)`` element-wise (numpy arrays, torch tensors, floats)."""
    return (x + period / 2) % period - period / 2


def periodic_difference(a: ArrayLike, b: ArrayLike, period: float = 2 * math.pi) -> ArrayLike:
    """Difference ``a - b`` wrapped into ``[-period/2, period/2)``, element-wise.

    ``a`` and ``b`` are numpy arrays or torch tensors of broadcastable shapes (radians for the
    default period); the result has the broadcast shape and the array type of the inputs.
    """
    return wrap(a - b, period)


def periodic_distance(a: ArrayLike, b: ArrayLike, period: float = 2 * math.pi) -> ArrayLike:
    """Euclidean norm over the last axis of :func:`periodic_difference`.

    ``a`` (..., D) and ``b`` (..., D) broadcastable; returns shape (...), same units as the inputs.
    """
    delta = periodic_difference(a, b, period)
    return (delta * delta).sum(-1) ** 0.5


def unwrap_for_plot(path: np.ndarray, period: float = 2 * math.pi) -> np.ndarray:
    """Wrapped ``path (T, D)`` with a NaN row inserted at every wrap-around, so a line plot does not
    draw the jumps across the periodic boundary."""
    path = wrap(np.asarray(path, dtype=float), period)
    jumps = np.abs(np.diff(path, axis=0)).max(1) > period / 2
    return np.insert(path, np.flatnonzero(jumps) + 1, np.nan, axis=0)
