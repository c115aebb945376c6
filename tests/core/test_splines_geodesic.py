"""Spline curves and geodesic optimisation (on Gaussian-mixture data with a closed-form denoiser)."""


import numpy as np
import pytest
import torch
from closed_forms import GaussianMixtureDenoiser
from scipy.interpolate import CubicSpline

from tps_diffusion.core.geodesic import GeodesicConfig, optimise_geodesic
from tps_diffusion.core.geometry import curve_energy, expectation_params, natural_params
from tps_diffusion.core.splines import SpacetimeSpline, natural_spline_matrix


def test_spline_matrix_matches_scipy_natural_spline():
    knots = np.random.default_rng(0).normal(size=(7, 3))
    s = np.linspace(0, 1, 101)
    w = natural_spline_matrix(7, torch.tensor(s))
    ref = CubicSpline(np.linspace(0, 1, 7), knots, bc_type="natural")(s)
    np.testing.assert_allclose((w @ torch.tensor(knots)).numpy(), ref, atol=1e-12)


def test_spline_curves_have_fixed_endpoints_and_start_straight():
    start, end = torch.tensor([[4.0, 0.0, 1.0], [4.0, 2.0, 2.0]]), torch.tensor([4.0, 1.0, -1.0])
    spline = SpacetimeSpline(start, end, n_nodes=5)
    with torch.no_grad():
        spline.nodes.add_(torch.randn_like(spline.nodes))
    z = spline(33)
    assert z.shape == (2, 33, 3)
    torch.testing.assert_close(z[:, 0], start)
    torch.testing.assert_close(z[:, -1], end.expand(2, 3))
    straight = SpacetimeSpline(start, end, n_nodes=5)(11)
    lin = start[:, None] + torch.linspace(0, 1, 11)[None, :, None] * (end - start)[:, None]
    torch.testing.assert_close(straight, lin)


MEANS = [[-1.5, 0.0], [1.5, 0.0], [0.0, 1.2]]


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixtureDenoiser(MEANS, 0.25)


def energy_of(den, z):
    return curve_energy(natural_params(z), expectation_params(den, z))


def test_unconstrained_geodesic_lowers_energy_and_climbs_in_noise(mixture):
    a, b = torch.tensor(MEANS[0], dtype=torch.float64), torch.tensor(MEANS[1], dtype=torch.float64)
    cfg = GeodesicConfig(steps=200, n_points=48, n_nodes=6)
    geo = optimise_geodesic(mixture, a, b, cfg, progress=False)
    straight = torch.cat([torch.full((48, 1), 4.0, dtype=torch.float64),
                          a + torch.linspace(0, 1, 48, dtype=torch.float64)[:, None] * (b - a)], -1)
    assert geo.energy.item() < 0.5 * energy_of(mixture, straight).item()
    assert geo.min_lambda.item() < 2.0  # climbs to lower SNR (from 4) before descending to x_B
    assert geo.history[-1] < geo.history[0]
    torch.testing.assert_close(geo.curve[0, 0, 1:], a)
    torch.testing.assert_close(geo.curve[0, -1, 1:], b)


def test_low_variance_keeps_log_snr_above_threshold(mixture):
    a, b = torch.tensor(MEANS[0], dtype=torch.float64), torch.tensor(MEANS[1], dtype=torch.float64)
    cfg = GeodesicConfig(mode="low_variance", rho_var=1.0, steps=200, n_points=48, n_nodes=6)
    geo = optimise_geodesic(mixture, a, b, cfg, progress=False)
    assert geo.min_lambda.item() > 1.0 - 0.1


def test_avoid_mode_keeps_kl_from_forbidden_point(mixture):
    a, b = torch.tensor(MEANS[0], dtype=torch.float64), torch.tensor(MEANS[1], dtype=torch.float64)
    z_star = torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)
    free = optimise_geodesic(mixture, a, b,
                             GeodesicConfig(mode="low_variance", rho_var=1.0, steps=200, n_points=48, n_nodes=6),
                             progress=False)
    cfg = GeodesicConfig(mode="avoid", rho_var=1.0, rho_kl=4.0, steps=200, n_points=48, n_nodes=6)
    geo = optimise_geodesic(mixture, a, b, cfg, avoid=z_star, progress=False)
    from tps_diffusion.core.geometry import kl_to_point
    kl_free = kl_to_point(mixture, z_star, free.curve[0]).min().item()
    assert geo.kl.min().item() > 4.0 - 0.5
    assert kl_free < geo.kl.min().item()
    # the KL profile integrated along the curve agrees with direct integration from z*
    direct = kl_to_point(mixture, z_star, geo.curve[0, ::8], n_points=400)
    torch.testing.assert_close(geo.kl[0, ::8], direct, rtol=0.02, atol=0.05)


def test_batched_optimisation_of_several_pairs(mixture):
    starts = torch.tensor([MEANS[0], MEANS[2]], dtype=torch.float64)
    ends = torch.tensor([MEANS[1], MEANS[0]], dtype=torch.float64)
    geo = optimise_geodesic(mixture, starts, ends, GeodesicConfig(steps=20, n_points=32, n_nodes=4), progress=False)
    assert geo.curve.shape == (2, 32, 3)
    torch.testing.assert_close(geo.curve[:, -1, 1:], ends)


def test_non_finite_model_stops_with_last_finite_curve(mixture):
    calls = {"n": 0}

    def flaky(x, lam):
        calls["n"] += 1
        out = mixture(x, lam)
        return out * float("nan") if calls["n"] > 12 else out

    a, b = torch.tensor(MEANS[0], dtype=torch.float64), torch.tensor(MEANS[1], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="stopped at step"):
        geo = optimise_geodesic(flaky, a, b, GeodesicConfig(steps=50, n_points=16, n_nodes=3), progress=False)
    assert "step" in geo.message and geo.steps_done < 50
    assert torch.isfinite(geo.curve).all()


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown geodesic mode 'fast'"):
        GeodesicConfig(mode="fast")
