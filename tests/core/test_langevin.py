"""Annealed Langevin in torch against Ornstein-Uhlenbeck statistics and its own bookkeeping."""

import math

import numpy as np
import pytest
import torch

from tps_diffusion.core.langevin import annealed_langevin, kick_positions, langevin, respace_by_tilt, tilt_schedule
from tps_diffusion.core.normalizer import Normalizer
from tps_diffusion.core.schedule import alpha_sigma


def test_tilt_schedule_formula():
    curve = torch.tensor([[4.0, 1.0, -1.0], [-2.0, 0.5, 0.25]], dtype=torch.float64)
    norm = Normalizer(np.array([0.1, -0.3]), 0.5)
    centres, k = tilt_schedule(curve, norm)
    alpha, sigma = alpha_sigma(curve[:, 0])
    torch.testing.assert_close(centres,
                               curve[:, 1:] / alpha[:, None] * 0.5 + torch.tensor([0.1, -0.3], dtype=torch.float64))
    torch.testing.assert_close(k, alpha**2 / sigma**2 / 0.25)


def test_harmonic_stationary_variance():
    k = 4.0
    U = lambda y: 0.5 * k * (y**2).sum(-1)  # noqa: E731
    y, _ = langevin(U, torch.zeros(4000, 2, dtype=torch.float64), 600, 1e-2, kT=2.0, seed=0)
    assert abs(y.var().item() - 2.0 / k) < 0.05 * 2.0 / k  # kT / k (up to O(ds) discretisation error)


def test_annealed_langevin_follows_tilt_and_is_reproducible():
    U = lambda y: 0.0 * y.sum(-1)  # noqa: E731 - pure tilt: an OU process
    centres = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    stiffness = torch.tensor([50.0, 50.0])
    run = lambda seed: annealed_langevin(U, centres, stiffness, torch.zeros(2), 2000, 400, 1e-3,  # noqa: E731
                                         seed=seed, device="cpu", progress=False)
    a, b, c = run(0), run(0), run(1)
    assert a.paths.shape == (2000, 800, 2) and a.energies.shape == (2000, 800)
    assert a.energy_evals == 2000 * (800 + 1)
    torch.testing.assert_close(a.paths, b.paths)
    assert not torch.equal(a.paths, c.paths)
    last = a.paths[:, -1]
    # OU with drift -k(y - c)/2 and unit diffusion: stationary N(c, 1/k); after 400 steps, relaxed
    torch.testing.assert_close(last.mean(0), centres[1], atol=0.02, rtol=0)
    assert abs(last.var(0).mean().item() - 1 / 50.0) < 0.1 / 50.0


def test_recorded_energies_are_energies_of_recorded_frames():
    U = lambda y: ((y - 1.0) ** 2).sum(-1) + torch.sin(3 * y[..., 0])  # noqa: E731
    s = annealed_langevin(U, torch.ones(3, 2), torch.ones(3), torch.zeros(2), 8, 5, 1e-2,
                          seed=3, device="cpu", progress=False)
    torch.testing.assert_close(s.energies, U(s.paths))


def test_respace_by_tilt_gives_equal_restraint_kicks():
    """After respacing, sqrt(k_n) |c_{n+1} - c_n| is the same for every block (to the
    interpolation error), the endpoints are unchanged, and a curve that already has equal kicks
    is left as it is."""
    n = 400
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    lam = -2.0 + 6.0 * t  # stiffness exp(lam) grows 400-fold along the curve
    curve = torch.stack([lam, 3.0 * t, torch.sin(2.0 * t)], dim=1)
    norm = Normalizer.identity(2)
    out = respace_by_tilt(curve, norm, n_points=60)
    assert out.shape == (60, 3)
    assert torch.allclose(out[0], curve[0]) and torch.allclose(out[-1], curve[-1])
    c, k = tilt_schedule(out, norm)
    kicks = (k[1:] * k[:-1]).sqrt().sqrt() * (c[1:] - c[:-1]).norm(dim=-1)
    assert float(kicks.std() / kicks.mean()) < 0.02
    # the original spacing was far from equal kicks
    c0, k0 = tilt_schedule(curve, norm)
    kicks0 = (k0[1:] * k0[:-1]).sqrt().sqrt() * (c0[1:] - c0[:-1]).norm(dim=-1)
    assert float(kicks0.std() / kicks0.mean()) > 0.3
    again = respace_by_tilt(out, norm)  # moves each point by a few % of a block at most
    block = (out[1:] - out[:-1]).abs().max(0).values
    assert torch.all((again - out).abs().max(0).values < 0.05 * block)


def _gaussian_kl(c1, k1, c2, k2) -> float:
    """KL(N(c1, I/k1) || N(c2, I/k2)) in D dimensions, closed form."""
    d = c1.shape[-1]
    return 0.5 * (d * k2 / k1 + k2 * ((c2 - c1) ** 2).sum() - d + d * math.log(k1 / k2))


def test_thermodynamic_spacing_is_the_fisher_length_of_the_restraint():
    """With stiffening_weight = D/2 a block's length is sqrt(2 KL) between the restraint's Gaussians
    N(c_n, I/k_n) and N(c_{n+1}, I/k_{n+1}) (to second order). A schedule that first moves the
    centre at constant stiffness and then stiffens in place gets blocks in proportion to the two
    Fisher lengths (computed here from the closed-form KL); a softening costs nothing."""
    d, n = 6, 2001
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    first = t <= 0.5
    direction = torch.ones(d, dtype=torch.float64) / math.sqrt(d)
    centres = torch.where(first[:, None], 2 * t[:, None] * direction, direction)  # moves 1 unit, then stands
    log_k = torch.where(first, torch.zeros_like(t), 2 * (2 * t - 1)) + math.log(50.0)  # then stiffens e^2-fold
    k = log_k.exp()
    kl = [_gaussian_kl(centres[i], float(k[i]), centres[i + 1], float(k[i + 1])) for i in range(n - 1)]
    lengths = np.sqrt(2 * np.array(kl))
    half = int(first.sum()) - 1  # blocks before the corner
    share = lengths[half:].sum() / lengths.sum()  # Fisher length of the stiffening, as a fraction
    where = kick_positions(centres, k, n_points=401, stiffening_weight=d / 2)
    got = float((where > half).double().mean())  # fraction of the new points in the stiffening
    assert 0.2 < share < 0.8
    assert abs(got - share) < 0.01
    # no weight: the stiffening gets no time at all; a softening is not counted
    assert float((kick_positions(centres, k, n_points=401) > half + 1).double().sum()) <= 1
    soft = kick_positions(centres, k.flip(0), n_points=401, stiffening_weight=d / 2)
    torch.testing.assert_close(soft, kick_positions(centres, k.flip(0), n_points=401))
    with pytest.raises(ValueError, match="stiffening_weight"):
        kick_positions(centres, k, stiffening_weight=-1.0)
