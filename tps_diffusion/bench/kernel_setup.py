"""Settings and test problem of the kernel benchmark (:mod:`tps_diffusion.bench.kernel`).

:class:`KernelRecipe` holds every size and limit; the test problem is a seeded, frozen
denoiser, smooth spacetime test curves, Rademacher probes for Hutchinson's divergence estimate,
and the call that is measured (curve energy plus its gradient w.r.t. the curve points).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ..core.denoiser import Denoiser, DenoiserConfig
from ..core.geometry import curve_energy_and_grad, rademacher

__all__ = ["EXACT", "HUTCHINSON", "KernelRecipe", "energy_and_grad", "log", "make_curves", "make_model",
           "make_probes"]

EXACT, HUTCHINSON = "exact", "hutchinson"


@dataclass
class KernelRecipe:
    """Every setting of the kernel benchmark (written to the JSON)."""

    n_points: int = 128
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
    configs: tuple[tuple[int, str], ...] = ((2, EXACT), (66, EXACT), (66, HUTCHINSON), (300, HUTCHINSON))
    n_probes: int = 4
    hidden: int = 256
    depth: int = 4
    lam_end: float = 4.0  # curve endpoints' log-SNR
    lam_min: float = -2.0  # log-SNR at the middle of the test curves
    repeats: int = 5  # timed calls after the warm-up (fewer when a call is slow, see repeat_budget_s)
    repeat_budget_s: float = 15.0  # time allowed for the timed repeats of one measurement
    max_call_s: dict[str, float] = field(default_factory=lambda: {"cpu": 8.0, "cuda": 30.0})
    target: tuple[int, int] = (66, 256)  # (D, B) of the headline batched-vs-loop figure
    target_max_call_s: dict[str, float] = field(default_factory=lambda: {"cpu": 45.0, "cuda": 120.0})
    max_loop_s: float = 20.0  # longer single-curve loops are timed on a prefix and extrapolated
    curve_chunk: int = 16  # also time B > curve_chunk as a loop over chunks of this many curves (0: off)
    memory_fraction: dict[str, float] = field(default_factory=lambda: {"cpu": 0.25, "cuda": 0.85})
    precision_batch: int = 2
    compile_batch: int = 16
    sampler_2d_walkers: tuple[int, ...] = (1, 1000, 10000)
    sampler_2d_schedule: tuple[int, int] = (32, 16)  # (curve points, Langevin steps per point)
    sampler_2d_ds: float = 4e-4
    ani_walkers: tuple[int, ...] = (1, 64, 256)
    ani_schedule: tuple[int, int] = (4, 4)
    ani_ds: float = 1e-6  # nm^2 per step (overdamped, in units of kT)
    ani_tilt: float = 1000.0  # kJ/mol/nm^2, harmonic restraint towards the start structure
    sampler_repeats: int = 3
    sampler_budget_s: float = 20.0

    @classmethod
    def quick(cls) -> KernelRecipe:
        """A reduced grid for smoke tests (well under a minute on two busy cores)."""
        return cls(n_points=32, batch_sizes=(1, 4), target=(66, 4), repeats=2, repeat_budget_s=2.0,
                   max_call_s={"cpu": 4.0, "cuda": 10.0}, target_max_call_s={"cpu": 8.0, "cuda": 20.0},
                   max_loop_s=4.0, curve_chunk=2, compile_batch=4, sampler_2d_walkers=(1000,),
                   sampler_2d_schedule=(8, 8), ani_walkers=(1, 8), ani_schedule=(2, 2), sampler_repeats=1,
                   sampler_budget_s=2.0)

    def to_dict(self) -> dict:
        return asdict(self)


def log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[bench kernel] {msg}", file=sys.stderr, flush=True)


def make_model(dim: int, recipe: KernelRecipe, dev: torch.device, seed: int) -> Denoiser:
    """A seeded, frozen denoiser (the global RNG state of the caller is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + dim)
        model = Denoiser(DenoiserConfig(dim=dim, periodic=[True] * dim if dim == 2 else [],
                                        hidden=recipe.hidden, depth=recipe.depth))
    return model.requires_grad_(False).eval().to(dev)


def make_curves(n_curves: int, n_points: int, dim: int, recipe: KernelRecipe, seed: int) -> Tensor:
    """Smooth spacetime curves ``(B, N, 1 + D)`` (float64, CPU), like geodesics in the making.

    Random endpoints at log-SNR ``lam_end``, a straight line between them plus three smooth
    sine modes, and a log-SNR dip to ``lam_min`` in the middle.
    """
    gen = torch.Generator().manual_seed(seed)
    s = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    xa = torch.randn(n_curves, 1, dim, generator=gen, dtype=torch.float64)
    xb = torch.randn(n_curves, 1, dim, generator=gen, dtype=torch.float64)
    amp = 0.3 * torch.randn(n_curves, 3, dim, generator=gen, dtype=torch.float64)
    modes = torch.sin(math.pi * torch.arange(1, 4, dtype=torch.float64)[:, None] * s)  # (3, N)
    x = xa + s[None, :, None] * (xb - xa) + torch.einsum("kn,bkd->bnd", modes, amp)
    lam = recipe.lam_end - (recipe.lam_end - recipe.lam_min) * torch.sin(math.pi * s)
    return torch.cat([lam.expand(n_curves, n_points)[..., None], x], dim=-1)


def make_probes(mode: str, dim: int, recipe: KernelRecipe, like: Tensor, seed: int) -> Tensor | None:
    if mode == EXACT:
        return None
    return rademacher(recipe.n_probes, dim, like, torch.Generator().manual_seed(seed + 7))


def energy_and_grad(denoiser, z: Tensor, probes: Tensor | None) -> tuple[Tensor, Tensor]:
    """Curve energies ``(B,)`` and their gradient w.r.t. the curve points: the library kernel."""
    return curve_energy_and_grad(denoiser, z, probes)
