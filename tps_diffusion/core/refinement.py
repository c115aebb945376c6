"""String refinement of a spacetime curve's restraint centres under the force field (docs/method.md, section 11).

A geodesic of the learned spacetime geometry (Karczewski et al., ICLR 2026, arXiv:2505.17517;
docs/method.md, sections 4-5) gives restraint centres ``c_n`` and stiffnesses ``k_n``. Where the
training data hold only the two end basins, the model knows nothing of the channel between them and the
centres cut across it. :func:`refine_curve` keeps the geodesic's end points and moves its centres into
the lowest channel it can find:

1. **Pilot paths.** ``pilot_paths`` walkers run the paper's annealed Langevin (Algorithm 1) along the
   curve with ``pilot_steps_per_point`` steps per point. Where the geodesic's log-SNR is low the tilt is
   soft and the walkers cross where the force field lets them.
2. **Candidates.** The curve's own centres and the ``n_candidates`` pilot paths that hit with the lowest
   MaxEnergy, each averaged over its blocks of steps (one point per curve point; the two end points are
   the curve's).
3. **String relaxation.** Every candidate is relaxed to a minimum-energy path with the simplified string
   method (W. E, W. Ren and E. Vanden-Eijnden, J. Chem. Phys. 126, 164103 (2007)):

       c_n <- c_n - dt * grad U(c_n) / kT        (interior points; the two end centres stay)
       c   <- the same polyline, resampled at N points equally spaced in arc length

   until no centre moves more than ``tol`` mean spacings in one iteration. The fixed point is a
   minimum-energy path in the homotopy class of the candidate (the channel it points at).
4. **Choice and stiffness.** The relaxed candidate with the lowest highest energy (its barrier) is kept.
   Its log-SNR profile is the geodesic's, raised to at least ``lam_floor`` (default: the larger of the two
   end log-SNRs, i.e. the restraint is nowhere softer than at the end states), so the stiffness is
   ``k_n = exp(max(lam_n, lam_floor)) / scale^2`` and the walkers stay in the channel.

The refined curve is returned in model coordinates (``x_n = alpha(lam_n) * normalise(c_n)``), ready for
:func:`~tps_diffusion.core.langevin.tilt_schedule` and
:func:`~tps_diffusion.core.langevin.annealed_langevin`. Every call of the potential is counted (pilot
steps, string iterations, the final energies of every candidate).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor

from .checks import check_int, check_lam, check_real, check_seed
from .device import resolve_device
from .langevin import PathSample, annealed_langevin, energy_and_grad, tilt_schedule
from .normalizer import Normalizer
from .schedule import alpha_sigma

__all__ = ["RefineConfig", "Refinement", "refine_curve", "relax_strings", "resample_equal_arc"]

Potential = Callable[[Tensor], Tensor]


@dataclass
class RefineConfig:
    """Settings of :func:`refine_curve`.

    ``pilot_paths`` (0: no pilot, relax the curve itself only) and ``pilot_steps_per_point`` size the
    pilot; ``n_candidates`` pilot hits are relaxed next to the curve. ``step`` is the Euler step ``dt``
    of the string in data-unit^2 (the unit of the sampler's ``ds``; stable for
    ``dt * curvature / kT < 2`` at the stiffest point of the surface). A string has converged when no
    centre moves more than ``tol`` mean spacings in one iteration. ``lam_floor`` (log-SNR) is the
    lowest log-SNR of the refined curve, i.e. its softest stiffness is ``exp(lam_floor) / scale^2``;
    ``None``: the larger of the curve's two end log-SNRs.
    """

    pilot_paths: int = 100
    pilot_steps_per_point: int = 32
    n_candidates: int = 5
    step: float = 1e-3
    max_iterations: int = 2000
    tol: float = 1e-3
    lam_floor: float | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ValueError/TypeError naming the field if a setting is invalid."""
        check_int(self.pilot_paths, "RefineConfig.pilot_paths", 0, "use 0 (no pilot) or a number of paths (e.g. 100)")
        check_int(self.pilot_steps_per_point, "RefineConfig.pilot_steps_per_point", 1,
                  "run at least one pilot step per curve point (e.g. 32)")
        check_int(self.n_candidates, "RefineConfig.n_candidates", 1, "relax at least one pilot path (e.g. 5)")
        check_real(self.step, "RefineConfig.step", low=0.0, low_open=True,
                   fix="use a small positive step (data-unit^2), e.g. 1e-3")
        check_int(self.max_iterations, "RefineConfig.max_iterations", 1, "run at least one iteration (e.g. 2000)")
        check_real(self.tol, "RefineConfig.tol", low=0.0, fix="use a tolerance >= 0 such as 1e-3 (0: run all "
                   "iterations)")
        if self.lam_floor is not None:
            check_lam(self.lam_floor, "RefineConfig.lam_floor")

    def to_dict(self) -> dict:
        return asdict(self)

    def max_energy_evals(self, n_points: int) -> int:
        """The most energy evaluations :func:`refine_curve` can spend on a curve of ``n_points`` points: the
        pilot, and every candidate string moved for ``max_iterations`` plus its final energies."""
        pilot = self.pilot_paths * (n_points * self.pilot_steps_per_point + 1)
        n_strings = 1 + (self.n_candidates if self.pilot_paths else 0)
        return pilot + n_strings * ((n_points - 2) * self.max_iterations + n_points)


@dataclass
class Refinement:
    """The refined curve, how it was chosen and what it cost.

    ``curve`` ``(N, 1 + D)`` model coordinates (log-SNR first); ``centres`` ``(N, D)`` data units and
    ``stiffness`` ``(N,)`` kT / data-unit^2 (its tilt schedule); ``energies`` ``(N,)`` the potential at the
    centres (units of ``U``). ``barriers`` ``(1 + n,)``: the highest energy of every relaxed candidate
    (index 0: the curve itself, then the pilot hits by rising MaxEnergy); ``chosen`` the index kept.
    ``pilot`` is None without a pilot. Energy evaluations: ``evals_pilot + evals_string = energy_evals``.
    """

    curve: Tensor
    centres: Tensor
    stiffness: Tensor
    energies: Tensor
    barriers: Tensor
    chosen: int
    pilot: PathSample | None
    pilot_hit_rate: float | None
    evals_pilot: int
    evals_string: int
    iterations: int
    converged: bool
    seconds: float

    @property
    def energy_evals(self) -> int:
        return self.evals_pilot + self.evals_string


def resample_equal_arc(points: Tensor) -> Tensor:
    """Polylines ``points`` ``(..., N, D)`` resampled at ``N`` points equally spaced in arc length.

    Linear interpolation; the two endpoints are kept. Repeated points (zero-length segments) are allowed.
    """
    if points.ndim > 2:
        return torch.stack([resample_equal_arc(p) for p in points])
    seg = (points[1:] - points[:-1]).norm(dim=-1)
    arc = torch.cat([seg.new_zeros(1), seg.cumsum(0)])
    if float(arc[-1]) == 0.0:
        return points.clone()
    arc = arc / arc[-1]
    want = torch.linspace(0.0, 1.0, len(points), dtype=arc.dtype, device=arc.device)
    i = torch.searchsorted(arc, want, right=True).clamp(1, len(points) - 1)
    w = ((want - arc[i - 1]) / (arc[i] - arc[i - 1]).clamp_min(torch.finfo(arc.dtype).tiny)).clamp(0.0, 1.0)
    return points[i - 1] + w[:, None] * (points[i] - points[i - 1])


def relax_strings(U: Potential, strings: Tensor, kT: float, step: float, max_iterations: int,
                  tol: float) -> tuple[Tensor, int, int, bool]:
    """Relax ``strings`` ``(B, N, D)`` (data units) to minimum-energy paths of ``U`` together.

    The simplified string method (module docstring, step 3); a string that has converged stops moving
    and costs nothing more. Returns the relaxed strings ``(B, N, D)`` (float64), the energy evaluations
    (``N - 2`` per string per iteration it was moved), the iterations run and whether all converged.
    Raises FloatingPointError when a string becomes NaN/inf (the step is too large for the surface).
    """
    c = resample_equal_arc(strings.detach().to(torch.float64))
    active = torch.ones(len(c), dtype=torch.bool, device=c.device)
    evals, iteration = 0, 0
    for iteration in range(1, max_iterations + 1):
        idx = active.nonzero().squeeze(1)
        inner = c[idx, 1:-1]
        _, g = energy_and_grad(U, inner.reshape(-1, c.shape[-1]))
        evals += inner.shape[0] * inner.shape[1]
        moved = c[idx].clone()
        moved[:, 1:-1] = inner - step * g.reshape(inner.shape) / kT
        moved = resample_equal_arc(moved)
        if not bool(torch.isfinite(moved).all()):
            raise FloatingPointError(f"relax_strings: a string became NaN/inf at iteration {iteration}; lower the "
                                     f"string step (now {step:g}) below 2 kT / (largest curvature of U)")
        shift = (moved - c[idx]).norm(dim=-1).amax(-1)
        spacing = (moved[:, 1:] - moved[:, :-1]).norm(dim=-1).mean(-1)
        c[idx] = moved
        active[idx] = shift > tol * spacing
        if not bool(active.any()):
            return c, evals, iteration, True
    return c, evals, iteration, False


def _block_means(paths: Tensor, n_points: int) -> Tensor:
    """``(P, N * K, D)`` frames -> ``(P, N, D)``: the mean of each block of K steps (one curve point)."""
    p, t, d = paths.shape
    return paths.reshape(p, n_points, t // n_points, d).mean(2)


def refine_curve(U: Potential, curve: Tensor, normalizer: Normalizer, start: Tensor,
                 is_hit: Callable[[Tensor], Tensor], ds: float, kT: float = 1.0, config: RefineConfig | None = None,
                 seed: int = 0, device: str | torch.device = "auto", progress: bool = False) -> Refinement:
    """Move the restraint centres of ``curve`` into the lowest channel of ``U`` that pilot paths find.

    Parameters
    ----------
    U : callable
        Potential, ``(P, D)`` data-unit points -> ``(P,)`` energies in the units of ``kT``, differentiable.
    curve : Tensor, shape (N, 1 + D)
        A spacetime curve (e.g. ``geodesic.curve[0]``) in model coordinates, log-SNR first.
    normalizer : Normalizer
        The model's normaliser (data units <-> model units).
    start : Tensor, shape (D,)
        Where the pilot walkers start (data units), as for :func:`annealed_langevin`.
    is_hit : callable
        ``(P, D)`` final pilot frames (data units) -> ``(P,)`` bool: which pilot paths reached the product.
    ds : float
        Pilot Langevin step, data-unit^2.
    kT : float
        Thermal energy in the units of ``U``.
    config : RefineConfig, optional
        Pilot size, candidates, string settings and log-SNR floor (default :class:`RefineConfig`).
    seed, device, progress
        Of the pilot sampler; the strings are relaxed on ``device`` too, so ``U`` must live there.

    Returns
    -------
    Refinement
        The refined curve ``(N, 1 + D)`` (dtype and device of ``curve``), its tilt schedule and energies,
        the barrier of every candidate and the energy evaluations spent (pilot and strings).
    """
    if config is not None and not isinstance(config, RefineConfig):
        raise TypeError(f"config must be a RefineConfig or None, got {type(config).__name__}; pass RefineConfig(...)")
    cfg = config or RefineConfig()
    cfg.validate()
    for f, name in ((U, "U"), (is_hit, "is_hit")):
        if not callable(f):
            raise TypeError(f"{name} must be callable, got {type(f).__name__}")
    check_real(kT, "kT", low=0.0, low_open=True, fix="use the thermal energy in the units of U")
    check_seed(seed, "seed")
    centres, stiffness = tilt_schedule(curve, normalizer)  # checks curve and normalizer
    n_points = curve.shape[0]
    if n_points < 3:
        raise ValueError(f"curve has {n_points} points; a string needs at least 3 (e.g. 128)")
    t0 = time.perf_counter()
    dev = resolve_device(device)  # the pilot and the strings run there, so U must live on it
    centres = centres.detach().to(dev, torch.float64)
    candidates = [centres]
    pilot, hit_rate, evals_pilot = None, None, 0
    if cfg.pilot_paths:
        pilot = annealed_langevin(U, centres, stiffness.detach(), start, cfg.pilot_paths, cfg.pilot_steps_per_point,
                                  ds, kT=kT, seed=seed, device=dev, progress=progress)
        evals_pilot = pilot.energy_evals
        hits = torch.as_tensor(is_hit(pilot.paths[:, -1]), dtype=torch.bool, device=pilot.paths.device)
        hit_rate = float(hits.double().mean())
        score = torch.where(hits, pilot.energies.max(1).values, torch.inf)
        best = score.argsort()[: min(cfg.n_candidates, int(hits.sum()))]
        means = _block_means(pilot.paths[best].detach().to(torch.float64), n_points)
        means[:, 0], means[:, -1] = centres[0], centres[-1]
        candidates += list(means)
    relaxed, evals_string, iterations, converged = relax_strings(U, torch.stack(candidates), kT, cfg.step,
                                                                 cfg.max_iterations, cfg.tol)
    if not converged:
        warnings.warn(f"refine_curve: a string has not converged after {cfg.max_iterations} iterations (tol "
                      f"{cfg.tol:g}); raise RefineConfig.max_iterations or step", RuntimeWarning, stacklevel=2)
    with torch.no_grad():
        energies = U(relaxed.reshape(-1, relaxed.shape[-1])).reshape(relaxed.shape[:2])
    evals_string += energies.numel()
    barriers = energies.amax(1)
    chosen = int(barriers.argmin())
    lam = curve[:, 0].detach().to(torch.float64)
    floor = float(torch.maximum(lam[0], lam[-1])) if cfg.lam_floor is None else cfg.lam_floor
    lam = lam.clamp_min(floor)
    alpha, _ = alpha_sigma(lam)
    x = alpha[:, None] * normalizer.forward(relaxed[chosen].to(lam.device))
    refined = torch.cat([lam[:, None], x], 1).to(curve.dtype)
    centres_out, stiffness_out = tilt_schedule(refined, normalizer)
    return Refinement(refined, centres_out, stiffness_out, energies[chosen].to(curve.device, curve.dtype),
                      barriers.cpu(), chosen, pilot, hit_rate, evals_pilot, evals_string, iterations, converged,
                      time.perf_counter() - t0)
