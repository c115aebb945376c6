"""Path metrics of the 2-D benchmark (docs/method.md, section 8): MaxEnergy, hit rate, minimax bound.

Coordinates are angles in radians unless ``periodic=False``; energies are in the units of the
surface (kJ/mol-like for the alanine dipeptide surface, where kT = 1 in the benchmark).
"""

from __future__ import annotations

import heapq
import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..core.checks import check_int, check_real, check_tensor, short
from ..utils.angles import periodic_distance

__all__ = ["max_energy", "hit_rate", "minimax_bound"]


def max_energy(U: Callable[[Tensor], Tensor], paths: Tensor | np.ndarray, max_points: int = 1 << 18) -> Tensor:
    """Largest energy along each path.

    Parameters
    ----------
    U : callable
        Energy, ``Tensor[..., D] -> Tensor[...]``.
    paths : Tensor or array, shape (P, T, D)
        P paths of T frames each.
    max_points : int
        Frames evaluated per call of ``U`` (whole paths are grouped; one path at least), which
        bounds the memory (~100 MB per call at the default for the grid surface in float32;
        1000 paths x 16384 frames x 2 take 63 calls).

    Returns
    -------
    Tensor, shape (P,)
        ``max_t U(paths[p, t])`` in the units of ``U``, dtype of ``paths`` (float64 for numpy input).
    """
    if not callable(U):
        raise TypeError(f"U must be callable (energies of (..., D) points), got {type(U).__name__}")
    check_int(max_points, "max_points", 1, "evaluate at least one frame per call")
    if not isinstance(paths, (Tensor, np.ndarray)):
        paths = check_tensor(paths, "paths", finite=False, shape="(P, T, D)")
    paths = torch.as_tensor(paths)
    if paths.ndim != 3:
        raise ValueError(f"paths must have shape (P, T, D), got {tuple(paths.shape)}")
    if 0 in paths.shape:
        raise ValueError(f"paths is empty (shape {tuple(paths.shape)}); pass at least one path of at least one frame")
    check_tensor(paths, "paths", finite=False, shape="(P, T, D)")  # real numbers
    if paths.is_floating_point() and not bool(torch.isfinite(paths).all()):
        raise ValueError(f"paths contain NaN/inf in {int((~torch.isfinite(paths)).any(-1).any(-1).sum())} of "
                         f"{paths.shape[0]} paths; drop those paths (the sampler diverged: lower ds)")
    per_call = max(1, max_points // max(1, paths.shape[1]))
    with torch.no_grad():
        result = torch.cat([U(chunk).amax(dim=1) for chunk in paths.split(per_call)])
    if bool(torch.isnan(result).any()):
        raise ValueError(f"U returned NaN on {int(torch.isnan(result).sum())} of {len(result)} paths; check the "
                         "potential on these coordinates")
    return result


def hit_rate(
    final_points: Tensor | np.ndarray,
    target: Tensor | np.ndarray,
    radius: float = 0.75,
    periodic: bool = True,
    period: float = 2 * math.pi,
) -> float:
    """Fraction of points within ``radius`` of ``target``.

    ``final_points`` (P, D) (usually the last frame of each path) and ``target`` (D,) in radians;
    the distance is :func:`periodic_distance` when ``periodic`` else the plain Euclidean one.
    A point exactly at ``radius`` counts as a hit. Returns a float in [0, 1].
    """
    points, goal = _numpy(final_points, "final_points"), _numpy(target, "target")
    if points.ndim != 2 or goal.shape != points.shape[1:]:
        raise ValueError(f"expected final_points (P, D) and target (D,), got {points.shape} and {goal.shape}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise ValueError(f"final_points is empty (shape {points.shape}); pass the last frame of at least one path")
    _check_finite(points, "final_points", "drop the paths that diverged (NaN) before computing the hit rate")
    _check_finite(goal, "target", "pass the target state's coordinates")
    check_real(radius, "radius", low=0.0, fix="use a hit radius >= 0 (e.g. 0.75 rad)")
    if periodic:
        check_real(period, "period", low=0.0, low_open=True, fix="use the period of the coordinates (2 pi for radians)")
    if periodic:
        distance = periodic_distance(points, goal, period)
    else:
        distance = np.linalg.norm(points - goal, axis=-1)
    return float(np.mean(distance <= radius))


def minimax_bound(
    grid_values: np.ndarray | Tensor,
    start: np.ndarray | Tensor,
    end: np.ndarray | Tensor,
    lower: float = -math.pi,
    period: float = 2 * math.pi,
    periodic: bool = True,
    connectivity: int = 8,
) -> float:
    """Minimax (bottleneck) energy of the best grid path between the nodes nearest to two points.

    The value of a path is the largest node energy on it (endpoints included); the result is
    the smallest such value over all paths on the grid graph, found by a Dijkstra-style search
    with a heap. On the alanine dipeptide grid with the benchmark endpoints it gives 36.34
    (docs/method.md, section 8), with either connectivity.

    Parameters
    ----------
    grid_values : array, shape (n, m)
        Energies at nodes ``(lower + i * period / n, lower + j * period / m)``.
    start, end : array, shape (2,)
        Endpoint coordinates (radians), each snapped to its nearest node.
    lower, period : float
        Grid origin and period (the node spacing is ``period / n`` and ``period / m``).
    periodic : bool
        Whether the grid wraps around (edges between the last and first row and column).
        Without wrapping, endpoints outside the grid snap to its border.
    connectivity : {4, 8}
        4: edges to the axis neighbours; 8: also to the diagonal ones.

    Returns
    -------
    float
        The bottleneck energy, in the units of ``grid_values``.
    """
    values = _numpy(grid_values, "grid_values")
    if values.ndim != 2:
        raise ValueError(f"grid_values must be 2-D, got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"grid_values is empty (shape {values.shape}); pass the tabulated energies (n, m)")
    if np.isnan(values).any():
        raise ValueError(f"grid_values contain {int(np.isnan(values).sum())} NaN value(s); fill them (e.g. with "
                         "np.inf for forbidden cells) or use a complete grid")
    check_real(lower, "lower", fix="use the grid's first node coordinate (e.g. -pi)")
    check_real(period, "period", low=0.0, low_open=True, fix="use the extent of the grid (2 pi for radians)")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    n, m = values.shape
    source, goal = (_nearest_node(p, values.shape, lower, period, periodic) for p in (start, end))
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    best = np.full(values.shape, np.inf)
    best[source] = values[source]
    heap = [(values[source], source)]
    while heap:
        cost, (i, j) = heapq.heappop(heap)
        if (i, j) == goal:
            return float(cost)
        if cost > best[i, j]:
            continue
        for di, dj in steps:
            a, b = i + di, j + dj
            if periodic:
                a, b = a % n, b % m
            elif not (0 <= a < n and 0 <= b < m):
                continue
            through = max(cost, values[a, b])
            if through < best[a, b]:
                best[a, b] = through
                heapq.heappush(heap, (through, (a, b)))
    raise AssertionError("the grid graph is connected, so the goal is always reached")


def _nearest_node(
    point: np.ndarray | Tensor, shape: tuple[int, int], lower: float, period: float, periodic: bool
) -> tuple[int, int]:
    """Index (i, j) of the grid node nearest to ``point`` (2,) on a grid of ``shape`` nodes."""
    coords = _numpy(point, "start/end")
    if coords.shape != (2,):
        raise ValueError(f"endpoints must have shape (2,), got {coords.shape}")
    _check_finite(coords, "start/end", "pass finite endpoint coordinates")
    index = []
    for x, n in zip(coords, shape):
        k = int(np.rint((x - lower) / (period / n)))
        index.append(k % n if periodic else min(max(k, 0), n - 1))
    return index[0], index[1]


def _numpy(x: np.ndarray | Tensor, name: str = "input") -> np.ndarray:
    """``x`` (array, tensor or nested sequence) as a float64 numpy array."""
    try:
        return torch.as_tensor(x).detach().cpu().numpy().astype(np.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be an array or tensor of numbers, got {short(x)} ({type(x).__name__}); pass a "
                        "numpy array") from None


def _check_finite(x: np.ndarray, name: str, fix: str) -> None:
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(x)).sum())} NaN/inf value(s); {fix}")
