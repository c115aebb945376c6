"""String refinement of the restraint centres (tps_diffusion.core.refinement) against potentials whose
minimum-energy paths are known in closed form, and its bookkeeping."""

import math

import numpy as np
import pytest
import torch

from tps_diffusion.core.langevin import tilt_schedule
from tps_diffusion.core.normalizer import Normalizer
from tps_diffusion.core.refinement import RefineConfig, refine_curve, resample_equal_arc
from tps_diffusion.core.schedule import alpha_sigma


def ring(y: torch.Tensor) -> torch.Tensor:
    """``20 (r - 1)^2 + 5 (y / r)^2``: minima at (+-1, 0), saddles (energy 5) at (0, +-1). Radially the
    force points to r = 1 and tangentially along the circle, so the minimum-energy paths between the
    minima are the two unit half-circles."""
    r = y.norm(dim=-1)
    return 20.0 * (r - 1.0) ** 2 + 5.0 * (y[..., 1] / r) ** 2


START = torch.tensor([-1.0, 0.0], dtype=torch.float64)


def never(final: torch.Tensor) -> torch.Tensor:
    return torch.zeros(len(final), dtype=torch.bool)


def curve_through(centres: torch.Tensor, lam: torch.Tensor, norm: Normalizer) -> torch.Tensor:
    """The spacetime curve ``(N, 1 + D)`` whose tilt centres are ``centres`` (data units)."""
    alpha, _ = alpha_sigma(lam)
    return torch.cat([lam[:, None], alpha[:, None] * norm.forward(centres)], 1)


def bulge(n: int, height: float) -> torch.Tensor:
    """A chord from (-1, 0) to (1, 0) bent by ``height`` in y: (N, 2)."""
    s = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return torch.stack([2.0 * s - 1.0, height * torch.sin(math.pi * s)], 1)


def relaxed_bulge(n: int, height: float, norm: Normalizer, lam: torch.Tensor):
    return refine_curve(ring, curve_through(bulge(n, height), lam, norm), norm, START, never, 1e-3, kT=2.0,
                        config=RefineConfig(pilot_paths=0, step=2e-3, max_iterations=20_000, tol=1e-8, lam_floor=-5.0))


@pytest.mark.parametrize("height", [0.3, -0.3])
def test_string_relaxes_onto_the_half_circle_it_started_towards(height):
    """The fixed point is the minimum-energy path on the starting curve's side: the centres on the unit
    circle and equally spaced in angle up to the error of linear resampling, which halves when N doubles;
    the highest centre at the saddle energy 5."""
    norm = Normalizer(np.array([0.2, -0.1]), 0.7)  # any affine map: the string lives in data units
    errors = []
    for n in (33, 65):
        lam = torch.linspace(2.0, -1.0, n, dtype=torch.float64)
        res = relaxed_bulge(n, height, norm, lam)
        assert res.converged
        c = res.centres
        assert bool((c[:, 1] * math.copysign(1.0, height) >= 0).all())  # the side it started on
        angle = torch.atan2(c[:, 1].abs(), c[:, 0])
        expected = torch.linspace(math.pi, 0.0, n, dtype=torch.float64)
        errors.append(((c.norm(dim=-1) - 1).abs().max().item(), (angle - expected).abs().max().item()))
        assert res.energies.max().item() == pytest.approx(5.0, abs=1e-6)
        assert res.energy_evals == (n - 2) * res.iterations + n
        torch.testing.assert_close(res.curve[:, 0], lam)  # the log-SNR profile is kept
        centres, stiffness = tilt_schedule(res.curve, norm)
        torch.testing.assert_close(centres, res.centres)
        torch.testing.assert_close(stiffness, lam.exp() / 0.7**2)
    (radius_33, angle_33), (radius_65, angle_65) = errors
    assert radius_33 < 0.01 and angle_33 < 1e-3
    assert radius_65 < 0.6 * radius_33 and angle_65 < 0.6 * angle_33  # first order in the spacing


def two_channels(y: torch.Tensor) -> torch.Tensor:
    """``20 (r - 1)^2 + 4 s^2 + s`` with ``s = y / r``: a ring whose upper saddle (0, 1) has energy 5 and
    lower saddle (0, -1) energy 3 (the radial force vanishes on r = 1 at any angle)."""
    r = y.norm(dim=-1)
    s = y[..., 1] / r
    return 20.0 * (r - 1.0) ** 2 + 4.0 * s**2 + s


def test_pilot_paths_find_the_lower_channel_that_the_curve_misses():
    """The curve bulges into the upper channel (barrier 5) and its tilt is soft in the middle, so pilot
    walkers cross through either channel; the refinement keeps the candidate with the lower barrier: the
    lower half-circle through the saddle of energy 3, and counts the pilot's and the strings' evaluations."""
    n = 33
    norm = Normalizer.identity(2)
    lam = 3.0 - 3.0 * torch.sin(math.pi * torch.linspace(0.0, 1.0, n, dtype=torch.float64))  # k from 20 to 1
    curve = curve_through(bulge(n, 0.3), lam, norm)

    def lower_right(final):  # the product: near (1, 0)
        return (final - torch.tensor([1.0, 0.0], dtype=final.dtype)).norm(dim=-1) < 0.3

    cfg = RefineConfig(pilot_paths=40, pilot_steps_per_point=40, n_candidates=4, step=2e-3, max_iterations=20_000)
    res = refine_curve(two_channels, curve, norm, START, lower_right, 1e-2, kT=1.0, config=cfg, seed=0, device="cpu")
    assert res.converged and res.pilot_hit_rate > 0.5
    assert res.barriers[0].item() == pytest.approx(5.0, abs=1e-3)  # the curve itself: the upper channel
    assert res.chosen > 0 and res.barriers.min().item() == pytest.approx(3.0, abs=1e-3)
    assert bool((res.centres[1:-1, 1] < 0).all())  # every interior centre in the lower channel
    assert res.energies.max().item() == pytest.approx(3.0, abs=1e-3)
    torch.testing.assert_close(res.curve[:, 0], lam.clamp_min(3.0))  # floor: the end log-SNR
    assert res.evals_pilot == 40 * (n * 40 + 1) and res.energy_evals <= cfg.max_energy_evals(n)
    assert res.energy_evals == res.evals_pilot + res.evals_string > res.evals_pilot + len(res.barriers) * n


@pytest.mark.filterwarnings("ignore:refine_curve. a string has not converged")
def test_lam_floor_raises_the_stiffness_and_keeps_the_ends():
    n = 9
    norm = Normalizer.identity(2)
    lam = torch.tensor([4.0, 3.0, 1.0, -2.0, -3.0, -2.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    curve = curve_through(bulge(n, 0.5), lam, norm)
    res = refine_curve(ring, curve, norm, START, never, 1e-3,
                       config=RefineConfig(pilot_paths=0, max_iterations=5, lam_floor=2.5))
    torch.testing.assert_close(res.curve[:, 0], lam.clamp_min(2.5))
    torch.testing.assert_close(res.stiffness, lam.clamp_min(2.5).exp())
    torch.testing.assert_close(res.centres[[0, -1]], bulge(n, 0.5)[[0, -1]])  # end centres stay
    assert res.pilot is None and res.chosen == 0 and res.evals_pilot == 0


def test_resample_equal_arc_is_linear_and_keeps_ends():
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 3.0]], dtype=torch.float64)
    out = resample_equal_arc(points)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [1.0, 1 / 3], [1.0, 5 / 3], [1.0, 3.0]],
                                                 dtype=torch.float64))


def test_unconverged_string_warns_and_bad_settings_fail_in_one_line():
    norm = Normalizer.identity(2)
    curve = curve_through(bulge(9, 0.5), torch.full((9,), 3.0, dtype=torch.float64), norm)
    no_pilot = dict(pilot_paths=0)
    with pytest.warns(RuntimeWarning, match="not converged"):
        res = refine_curve(ring, curve, norm, START, never, 1e-3, config=RefineConfig(max_iterations=2, **no_pilot))
    assert res.iterations == 2 and not res.converged
    with pytest.raises(ValueError, match="RefineConfig.step"):
        RefineConfig(step=0.0)
    with pytest.raises(ValueError, match="at least 3"):
        refine_curve(ring, curve[:2], norm, START, never, 1e-3, config=RefineConfig(**no_pilot))
    with pytest.raises(FloatingPointError, match="lower the string step"):  # dt * curvature / kT = 2000
        refine_curve(lambda y: 1e3 * y[..., 1] ** 2, curve, norm, START, never, 1e-3,
                     config=RefineConfig(step=1.0, max_iterations=500, **no_pilot))
