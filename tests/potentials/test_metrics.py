"""Path metrics: periodic distances, MaxEnergy, hit rate and the minimax bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tps_diffusion.potentials.metrics import hit_rate, max_energy, minimax_bound
from tps_diffusion.potentials.surfaces import MullerBrown, load_aldp_surface
from tps_diffusion.utils.angles import periodic_difference, periodic_distance

TWO_PI = 2 * math.pi
X1 = (-2.55, 2.70)
X2 = (0.95, -0.40)


def test_periodic_difference_wraps():
    assert periodic_difference(np.array(3.1), np.array(-3.1)) == pytest.approx(6.2 - TWO_PI)
    assert periodic_difference(np.array(-3.1), np.array(3.1)) == pytest.approx(TWO_PI - 6.2)
    assert periodic_difference(np.array(1.0), np.array(0.5)) == pytest.approx(0.5)
    assert periodic_difference(np.array(10.0), np.array(0.0), period=4.0) == pytest.approx(-2.0)
    result = periodic_difference(torch.tensor([3.1]), torch.tensor([-3.1]))
    assert isinstance(result, torch.Tensor)
    assert result.item() == pytest.approx(6.2 - TWO_PI, abs=1e-6)


def test_periodic_distance():
    assert periodic_distance(np.array([3.1, 0.0]), np.array([-3.1, 0.0])) == pytest.approx(0.0832, abs=1e-4)
    assert periodic_distance(np.array([3.1, -3.1]), np.array([-3.1, 3.1])) == pytest.approx(
        math.sqrt(2) * (TWO_PI - 6.2)
    )
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1.5, 1.5, size=(2, 20, 2))
    np.testing.assert_allclose(periodic_distance(a, b), np.linalg.norm(a - b, axis=-1))
    np.testing.assert_allclose(periodic_distance(a, b + TWO_PI * rng.integers(-2, 3, size=(20, 2))),
                               np.linalg.norm(a - b, axis=-1))
    distance = periodic_distance(torch.tensor(a), torch.tensor(b[0]))
    assert isinstance(distance, torch.Tensor) and distance.shape == (20,)


def test_max_energy_matches_loop():
    surface = MullerBrown()
    paths = torch.randn(7, 13, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.tensor([max(surface(frame).item() for frame in path) for path in paths], dtype=torch.float64)
    torch.testing.assert_close(max_energy(surface, paths), expected)
    torch.testing.assert_close(max_energy(surface, paths, max_points=20), expected)  # one path per call
    torch.testing.assert_close(max_energy(surface, paths, max_points=1), expected)
    torch.testing.assert_close(max_energy(surface, paths.numpy()), expected)
    with pytest.raises(ValueError, match=r"\(P, T, D\)"):
        max_energy(surface, paths[0])


def test_max_energy_aldp_endpoints():
    surface = load_aldp_surface()
    line = torch.linspace(0, 1, 50, dtype=torch.float64)[:, None]
    path = (1 - line) * torch.tensor(X1) + line * torch.tensor(X2)
    assert max_energy(surface, path[None]).item() == pytest.approx(surface(path).max().item())


def test_hit_rate_wraps_around():
    target = np.array([3.1, 0.0])
    points = np.array([[-3.1, 0.0], [3.1, 0.7], [3.1, 0.8], [0.0, 0.0]])
    assert hit_rate(points, target) == pytest.approx(0.5)
    assert hit_rate(points, target, periodic=False) == pytest.approx(0.25)
    assert hit_rate(torch.tensor(points), torch.tensor(target), radius=0.1) == pytest.approx(0.25)
    assert hit_rate(points + TWO_PI, target) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\(P, D\)"):
        hit_rate(points[0], target)


# ------------------------------------------------------------------------- minimax bound


def _connected(allowed: np.ndarray, source, goal, periodic: bool, connectivity: int) -> bool:
    """Flood fill of ``allowed`` from ``source`` by whole-array shifts; is ``goal`` reached?"""
    steps = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]
    if connectivity == 4:
        steps = [s for s in steps if 0 in s]

    def shift(mask, di, dj):
        if periodic:
            return np.roll(mask, (di, dj), axis=(0, 1))
        padded = np.pad(mask, 1)
        return padded[1 - di : 1 - di + mask.shape[0], 1 - dj : 1 - dj + mask.shape[1]]

    reached = np.zeros_like(allowed)
    reached[source] = allowed[source]
    while True:
        grown = reached.copy()
        for di, dj in steps:
            grown |= shift(reached, di, dj)
        grown &= allowed
        if np.array_equal(grown, reached):
            return bool(reached[goal])
        reached = grown


def _brute_force_minimax(values, source, goal, periodic, connectivity) -> float:
    """Bisection over the sorted node energies for the lowest level that connects the nodes."""
    levels = np.unique(values)
    lo, hi = 0, len(levels) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _connected(values <= levels[mid], source, goal, periodic, connectivity):
            hi = mid
        else:
            lo = mid + 1
    return float(levels[lo])


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("connectivity", [4, 8])
def test_minimax_matches_brute_force(periodic, connectivity):
    rng = np.random.default_rng(2)
    n, m = 9, 12
    for _ in range(15):
        values = rng.uniform(0, 10, size=(n, m))
        source = tuple(int(k) for k in rng.integers((n, m)))
        goal = tuple(int(k) for k in rng.integers((n, m)))
        # Node (i, j) sits at (-pi + 2 pi i / n, -pi + 2 pi j / m); nudge inside its rounding cell.
        start = [-math.pi + TWO_PI * (source[0] + 0.3) / n, -math.pi + TWO_PI * (source[1] - 0.3) / m]
        end = [-math.pi + TWO_PI * goal[0] / n, -math.pi + TWO_PI * goal[1] / m]
        expected = _brute_force_minimax(values, source, goal, periodic, connectivity)
        assert minimax_bound(values, start, end, periodic=periodic, connectivity=connectivity) == expected


def test_minimax_periodic_shortcut():
    """A wall in the middle of the grid is crossed only without wrap-around."""
    values = np.zeros((8, 8))
    values[:, 3:5] = 5.0
    axis = -math.pi + TWO_PI * np.arange(8) / 8
    start, end = (axis[0], axis[1]), (axis[0], axis[6])
    assert minimax_bound(values, start, end, periodic=True) == 0.0
    assert minimax_bound(values, start, end, periodic=False) == 5.0
    assert minimax_bound(values, start, start) == 0.0
    with pytest.raises(ValueError, match="connectivity"):
        minimax_bound(values, start, end, connectivity=6)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_minimax_aldp_matches_spec(connectivity):
    values = load_aldp_surface().grid_values
    assert minimax_bound(values, X1, X2, connectivity=connectivity) == pytest.approx(36.34, abs=0.01)
    assert minimax_bound(values, torch.tensor(X1), torch.tensor(X2), connectivity=connectivity) == pytest.approx(
        36.336052838, abs=1e-9
    )
