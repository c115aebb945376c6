"""The lag diagnostic of annealed_langevin against closed forms (docs/method.md, section 5, "Lag diagnostic").

Truth for U = 0: the walker mean ``m`` obeys ``m <- m - a (m - c)`` with ``a = ds k / 2`` (the noise has
mean zero), so with a centre that jumps by ``delta`` at the start of every block of ``K`` steps, the
offset at the end of a block settles at ``e = delta q / (1 - q)``, ``q = (1 - a)^K``; for ``K = 1`` and a
centre moving ``v`` per step this is ``(1 - a) v / a``. In widths: ``sqrt(k) e``.
"""

import math
import warnings

import pytest
import torch

from tps_diffusion.core.langevin import LAG_WARN_WIDTHS, annealed_langevin, centre_tangents, restraint_lag, warn_lag
from tps_diffusion.potentials.surfaces import MullerBrown


def free(y):
    return 0.0 * y.sum(-1)


def moving_centres(n_points, step, dim=3):
    """Centres ``n * step`` along a fixed oblique unit direction, ``(n_points, dim)``."""
    direction = torch.arange(1.0, dim + 1, dtype=torch.float64)
    direction = direction / direction.norm()
    return torch.arange(n_points, dtype=torch.float64)[:, None] * step * direction


def run(centres, k, K, ds, n_paths=2000, seed=0):
    return annealed_langevin(free, centres, torch.full((len(centres),), k, dtype=torch.float64),
                             torch.zeros(centres.shape[1]), n_paths, K, ds, seed=seed, device="cpu",
                             dtype=torch.float64, progress=False)


def test_constant_velocity_lag_is_one_minus_a_v_over_a():
    """K = 1, centre moving v per step: lag (1 - a) v / a, i.e. 4.5 widths here; the continuous-time
    v / a (5.0 widths) is outside the tolerance. 4.5 > 3 at the last point: one warning naming the fix."""
    k, ds, v = 100.0, 2e-3, 0.05
    a = ds * k / 2
    truth = math.sqrt(k) * (1 - a) * v / a
    with pytest.warns(RuntimeWarning, match=r"raise steps_per_point \(now 1\) or ds \(now 0.002") as rec:
        s = run(moving_centres(300, v), k, 1, ds)
    assert len([w for w in rec if "trail" in str(w.message)]) == 1
    assert s.lag.shape == (300,) and s.lag.dtype == torch.float64
    steady = s.lag[100:]  # transient (1 - a)^100 ~ 3e-5
    assert abs(float(steady.mean()) / truth - 1) < 0.01, (float(steady.mean()), truth)
    assert float((steady - truth).abs().max()) < 0.15  # noise 1/sqrt(2000) = 0.022 per point
    assert float(s.lag[0]) < 0.5 * truth  # the walkers start on the first centre


def test_block_staircase_lag_and_no_warning_below_threshold():
    """K = 4, jumps of delta per block: e = delta q / (1 - q), q = (1 - a)^4; 1.9 widths: no warning."""
    k, ds, K, delta = 100.0, 2e-3, 4, 0.1
    a = ds * k / 2
    q = (1 - a) ** K
    truth = math.sqrt(k) * delta * q / (1 - q)
    assert 1.5 < truth < LAG_WARN_WIDTHS
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s = run(moving_centres(100, delta), k, K, ds)
    steady = s.lag[40:]  # transient q^40 ~ 5e-8
    assert abs(float(steady.mean()) / truth - 1) < 0.01, (float(steady.mean()), truth)
    assert float((steady - truth).abs().max()) < 0.15


def test_stationary_centre_has_no_lag():
    """All centres equal (zero tangent): the lag is the RMS per coordinate of the walker-mean offset,
    ~1/sqrt(P); the final distance is the restraint's stationary spread, E[d^2] = 1 / (1 - a / 2)."""
    k, ds, n_paths = 50.0, 4e-3, 2000
    a = ds * k / 2
    centres = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64).repeat(20, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s = annealed_langevin(free, centres, torch.full((20,), k), centres[0], n_paths, 20, ds, seed=1, device="cpu",
                              dtype=torch.float64, progress=False)
    assert float(s.lag.abs().max()) < 5 / math.sqrt(n_paths)
    assert s.final_distance.shape == (n_paths,)
    assert abs(float((s.final_distance**2).mean()) * (1 - a / 2) - 1) < 0.05


def test_restraint_lag_formula():
    """Projection onto the unit tangent times sqrt(k); negative ahead of the centre; RMS where the tangent is 0."""
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    tangents = centre_tangents(centres)
    assert torch.equal(tangents, torch.tensor([[1.0, 0], [1, 0], [0.5, 0], [0, 0], [0, 0]], dtype=torch.float64))
    offset = torch.tensor([[0.1, 5.0], [-0.2, 1.0], [0.3, 0.0], [3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    k = torch.tensor([4.0, 4.0, 9.0, 4.0, 4.0], dtype=torch.float64)
    lag = restraint_lag(offset, tangents, k)
    expected = torch.tensor([0.2, -0.4, 0.9, 2 * 5 / math.sqrt(2), 0.0], dtype=torch.float64)
    assert torch.allclose(lag, expected, rtol=1e-12, atol=1e-12), lag
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert not warn_lag(torch.tensor([9.0, LAG_WARN_WIDTHS]), 1, "x", "fix")  # only the last point counts
        assert not warn_lag(torch.tensor([1.0, float("nan")]), 1, "x", "fix")  # diverged: reported elsewhere
    with pytest.warns(RuntimeWarning, match=r"x: at the last curve point .* 3\.5 restraint widths .*; do this"):
        assert warn_lag(torch.tensor([0.0, 3.5]), 4, "x", "do this")


# The geodesic of the issue-14 pipeline on Mueller-Brown (basin-only training data, kT = 10, lam_end = 3.75):
# every 8th of its 128 points and the last, as restraint centres (x, y) and stiffness (kT / unit^2).
MB_SCHEDULE = [
    (-0.564, 1.450, 102.117), (-0.527, 1.416, 62.324), (-0.435, 1.333, 42.061), (-0.280, 1.194, 32.641),
    (-0.143, 1.083, 26.719), (-0.020, 1.061, 20.101), (0.188, 1.143, 12.054), (0.434, 1.246, 7.051),
    (0.565, 1.227, 5.523), (0.603, 1.127, 5.344), (0.620, 1.016, 5.324), (0.600, 0.843, 4.774),
    (0.555, 0.576, 4.546), (0.557, 0.299, 7.442), (0.604, 0.108, 18.888), (0.629, 0.032, 47.836),
    (0.630, 0.020, 102.117),
]
MB_A, MB_B = (-0.558, 1.442), (0.623, 0.028)


@pytest.mark.parametrize("ds, arrives", [(8e-5, False), (8e-4, True)])
def test_mueller_brown_lag_warns_when_walkers_do_not_arrive(ds, arrives):
    """The issue's case at 1/8 of the steps (17 points x 128 steps, ds x 8, so the Langevin time N K ds
    is that of its runs at ds = 1e-5 and 1e-4): with the small step no walker reaches B and the
    sampler warns; with the larger one they arrive and it does not. Arrival is checked directly."""
    sched = torch.tensor(MB_SCHEDULE)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s = annealed_langevin(MullerBrown(), sched[:, :2], sched[:, 2], torch.tensor(MB_A), 8, 128, ds, kT=10.0,
                              seed=0, device="cpu", progress=False)
    lagging = [w for w in rec if issubclass(w.category, RuntimeWarning) and "trail" in str(w.message)]
    dist_to_b = (s.paths[:, -1] - torch.tensor(MB_B)).norm(dim=-1)
    if arrives:
        assert bool((dist_to_b < 0.35).all()) and not lagging, (dist_to_b, [str(w.message) for w in lagging])
        assert abs(float(s.lag[-1])) < 1.5  # seeds 0-3: |lag| <= 0.14, distances <= 0.20
    else:
        assert bool((dist_to_b > 0.4).all()) and len(lagging) == 1  # seeds 0-3: 0.54 to 1.21
        assert float(s.lag[-1]) > 1.5 * LAG_WARN_WIDTHS  # seeds 0-3: 6.5 to 8.6
        assert "steps_per_point (now 128) or ds (now 8e-05" in str(lagging[0].message)
