"""Spacetime geometry against closed forms for Gaussian data, finite differences and invariances."""

import math

import numpy as np
import pytest
import torch
from closed_forms import GaussianDenoiser

from tps_diffusion.core.denoiser import Denoiser, DenoiserConfig
from tps_diffusion.core.geometry import (
    curve_energy,
    curve_length,
    denoise_with_divergence,
    expectation_params,
    kl_from_reference,
    kl_to_point,
    natural_params,
    neighbour_kl,
    rademacher,
)
from tps_diffusion.core.schedule import alpha_sigma

DIM = 3
MEAN = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64)


@pytest.fixture(autouse=True)
def float64_default():
    """These checks compare against closed forms, so they run in float64 (restored afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
S = 0.7


def gaussian_kl(m1, v1, m2, v2, d):
    """KL(N(m1, v1 I) || N(m2, v2 I)), textbook formula."""
    return 0.5 * (d * v1 / v2 + ((m2 - m1) ** 2).sum(-1) / v2 - d + d * torch.log(v2 / v1))


def smooth_curve(n, dim=DIM, warp=lambda s: s):
    s = warp(torch.linspace(0, 1, n))
    lam = 4.0 - 10.0 * torch.sin(math.pi * s)
    x = torch.stack([torch.cos(2 * s + k) * (1 + k) for k in range(dim)], -1)
    return torch.cat([lam[:, None], x], -1)


def test_mu_matches_gaussian_closed_form():
    den = GaussianDenoiser(MEAN, S)
    z = torch.cat([torch.linspace(-6, 6, 25)[:, None], torch.randn(25, DIM)], -1)
    mu = expectation_params(den, z)
    m, v = den.posterior(z[:, 1:], z[:, 0])
    torch.testing.assert_close(mu[:, :DIM], m)
    torch.testing.assert_close(mu[:, DIM], (m**2).sum(-1) + DIM * v)


def test_neighbour_kl_is_symmetrised_gaussian_kl():
    den = GaussianDenoiser(MEAN, S)
    z = smooth_curve(40)
    eta, mu = natural_params(z), expectation_params(den, z)
    m, v = den.posterior(z[:, 1:], z[:, 0])
    sym = gaussian_kl(m[:-1], v[:-1], m[1:], v[1:], DIM) + gaussian_kl(m[1:], v[1:], m[:-1], v[:-1], DIM)
    torch.testing.assert_close(neighbour_kl(eta, mu), sym)
    assert (neighbour_kl(eta, mu) >= 0).all()


def test_kl_along_curve_matches_closed_form_and_vanishes_at_reference():
    den = GaussianDenoiser(MEAN, S)
    z = smooth_curve(2001)
    z_ref = z[700]
    eta, mu = natural_params(z), expectation_params(den, z)
    m, v = den.posterior(z[:, 1:], z[:, 0])
    exact = gaussian_kl(m[700], v[700], m, v, DIM)
    kl = kl_from_reference(eta, mu, expectation_params(den, z_ref[None])[0], exact[0])
    assert exact.max() > 1.0  # a non-trivial range of KL values
    torch.testing.assert_close(kl, exact, rtol=1e-3, atol=1e-3)
    assert abs(kl[700]) < 1e-3
    # absolute KL by integrating from the reference point along a straight segment
    pts = z[[0, 300, 1500]]
    kl_abs = kl_to_point(den, z_ref, pts, n_points=2001)
    torch.testing.assert_close(kl_abs, exact[[0, 300, 1500]], rtol=1e-3, atol=1e-3)
    assert kl_to_point(den, z_ref, z_ref[None]).abs().item() < 1e-12


def test_energy_and_length_under_refinement_and_reparametrisation():
    den = GaussianDenoiser(MEAN, S)

    def e_l(z):
        eta, mu = natural_params(z), expectation_params(den, z)
        return curve_energy(eta, mu).item(), curve_length(eta, mu).item()

    e1, l1 = e_l(smooth_curve(2000))
    e2, l2 = e_l(smooth_curve(4000))
    assert abs(e1 - e2) / e2 < 2e-3 and abs(l1 - l2) / l2 < 1e-3  # converges under refinement
    e3, l3 = e_l(smooth_curve(4000, warp=lambda s: s**2))  # same curve, non-uniform speed
    assert abs(l3 - l2) / l2 < 1e-3  # length is parametrisation invariant
    assert e3 > e2 * 1.05  # energy is not, and penalises uneven speed
    assert 2 * e2 >= l2**2 * (1 - 1e-9) and 2 * e3 >= l3**2  # Cauchy-Schwarz: 2E >= L^2


def random_mlp(dim=DIM, dtype=torch.float64):
    torch.manual_seed(0)
    return Denoiser(DenoiserConfig(dim=dim, hidden=32, depth=2, n_freq=2,
                                   periodic=[True] + [False] * (dim - 1))).to(dtype)


def test_hutchinson_mean_matches_exact_divergence():
    net = random_mlp()
    x, lam = torch.randn(6, DIM), torch.linspace(-3, 3, 6)
    _, exact = denoise_with_divergence(net, x, lam)
    probes = rademacher(20000, DIM, x, torch.Generator().manual_seed(1))
    _, est = denoise_with_divergence(net, x, lam, probes)
    torch.testing.assert_close(est, exact, rtol=0.02, atol=0.02)
    # exact trace against a dense Jacobian
    jac = torch.stack([torch.autograd.functional.jacobian(lambda xi: net(xi[None], lam[i : i + 1])[0], x[i])
                       for i in range(6)])
    torch.testing.assert_close(exact, torch.diagonal(jac, dim1=1, dim2=2).sum(-1))


def test_energy_gradient_matches_finite_differences():
    net = random_mlp()
    z = smooth_curve(12).requires_grad_(True)

    def energy(zz):
        return curve_energy(natural_params(zz), expectation_params(net, zz))

    (grad,) = torch.autograd.grad(energy(z), z)
    rng = np.random.default_rng(0)
    for _ in range(6):
        n, d = int(rng.integers(1, 11)), int(rng.integers(0, DIM + 1))
        h = 1e-5
        zp, zm = z.detach().clone(), z.detach().clone()
        zp[n, d] += h
        zm[n, d] -= h
        fd = (energy(zp) - energy(zm)).item() / (2 * h)
        assert fd == pytest.approx(grad[n, d].item(), rel=1e-5, abs=1e-6)


def test_float32_matches_float64_energy():
    net64 = random_mlp()
    net32 = random_mlp().float()
    z = smooth_curve(128)
    e64 = curve_energy(natural_params(z), expectation_params(net64, z))
    z32 = z.float()
    e32 = curve_energy(natural_params(z32), expectation_params(net32, z32))
    assert abs(e32.item() - e64.item()) / abs(e64.item()) < 1e-4


def test_batched_curves_equal_one_at_a_time():
    net = random_mlp()
    zb = torch.stack([smooth_curve(32), smooth_curve(32, warp=lambda s: s**1.5)])
    eb = curve_energy(natural_params(zb), expectation_params(net, zb))
    for b in range(2):
        e = curve_energy(natural_params(zb[b]), expectation_params(net, zb[b]))
        torch.testing.assert_close(eb[b], e)


def test_natural_params_formula():
    z = torch.tensor([[0.7, 1.0, -2.0, 0.5]])
    alpha, sigma = alpha_sigma(z[:, 0])
    eta = natural_params(z)
    torch.testing.assert_close(eta[0, :3], alpha[0] / sigma[0] ** 2 * z[0, 1:])
    torch.testing.assert_close(eta[0, 3], -alpha[0] ** 2 / (2 * sigma[0] ** 2))


def test_chunked_energy_and_grad_equals_one_pass():
    from tps_diffusion.core.geometry import curve_energy_and_grad

    net = random_mlp()
    z = torch.stack([smooth_curve(16), smooth_curve(16, warp=lambda s: s**2), smooth_curve(16, warp=lambda s: s**0.5)])
    e1, g1 = curve_energy_and_grad(net, z, chunk=3)
    e2, g2 = curve_energy_and_grad(net, z, chunk=1)
    zz = z.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(curve_energy(natural_params(zz), expectation_params(net, zz)).sum(), zz)
    torch.testing.assert_close(g1, g_ref)
    torch.testing.assert_close(g2, g_ref)
    torch.testing.assert_close(e1, e2)
