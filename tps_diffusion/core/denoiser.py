"""Denoiser network ``D(x, lam) ~= E[x0 | x_t = x]`` for variance-preserving diffusion.

An MLP on sinusoidal embeddings of the log-SNR and of the inputs, with EDM-style
preconditioning written for the VP schedule: with ``x' = x / alpha`` and ``s = sigma / alpha``
(the noise level of ``x'``), ``D = c_skip x' + c_out F(c_in x', lam)`` where
``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``,
``c_in = 1 / sqrt(s^2 + sd^2)`` and ``sd`` is the data standard deviation. The network output
``F`` then has unit-scale targets at every noise level.

Two architectures for ``F`` (``DenoiserConfig.architecture``):

* ``"mlp"``: an MLP on sinusoidal embeddings of the log-SNR and of the inputs. Periodic inputs
  (dihedrals, radians) get ``alpha * (sin k x', cos k x')`` features, ``k = 1..n_freq``: periodic
  in the clean coordinate, and fading out (with bounded derivatives) at low SNR where ``x'`` is
  mostly noise.
* ``"convex"``: ``F = grad_u Psi(u, lam)`` with ``u = c_in x'`` and ``Psi`` convex in ``u``
  (:mod:`tps_diffusion.core.convex_potential`), so that ``dD/dx = (c_skip + c_out c_in Hess Psi) /
  alpha`` is symmetric positive semi-definite like the true posterior covariance it estimates.
  Non-periodic inputs only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .checks import check_choice, check_int, check_real, short
from .convex_potential import ConvexPotentialGradient
from .schedule import alpha_sigma

#: values of ``DenoiserConfig.architecture``
ARCHITECTURES = ("mlp", "convex")


@dataclass
class DenoiserConfig:
    """Architecture of :class:`Denoiser` (stored in checkpoints)."""

    dim: int
    periodic: list[bool] = field(default_factory=list)  # per input dimension; empty = none
    sigma_data: float = 1.0
    hidden: int = 256
    depth: int = 4
    n_freq: int = 8
    lam_freq: int = 16
    lam_range: tuple[float, float] = (-12.0, 12.0)
    architecture: str = "mlp"  # or "convex": a Jacobian that is symmetric positive semi-definite by construction

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ValueError/TypeError naming the field and its allowed range if a setting is invalid."""
        check_choice(self.architecture, "DenoiserConfig.architecture", ARCHITECTURES)
        check_int(self.dim, "DenoiserConfig.dim", 1, "the data dimension is the number of features per sample")
        check_int(self.hidden, "DenoiserConfig.hidden", 1, "use a layer width such as 256")
        check_int(self.depth, "DenoiserConfig.depth", 0, "use a number of hidden layers such as 4")
        check_int(self.n_freq, "DenoiserConfig.n_freq", 1, "use a number of Fourier frequencies such as 8")
        check_int(self.lam_freq, "DenoiserConfig.lam_freq", 1, "use a number of log-SNR frequencies such as 16")
        check_real(self.sigma_data, "DenoiserConfig.sigma_data", low=0.0, low_open=True,
                   fix="pass the standard deviation of the training data in model units (about 1 when normalised)")
        if isinstance(self.periodic, (str, bytes)) or not hasattr(self.periodic, "__len__"):
            raise TypeError(f"DenoiserConfig.periodic must be a list of bools (one per dimension, or empty), got "
                            f"{short(self.periodic)}; pass e.g. [True, False]")
        if len(self.periodic) not in (0, self.dim):
            raise ValueError(f"DenoiserConfig.periodic has {len(self.periodic)} entries but dim is {self.dim}; give "
                             "one bool per dimension or an empty list (no periodic inputs)")
        if isinstance(self.lam_range, (str, bytes)) or not hasattr(self.lam_range, "__len__") \
                or len(self.lam_range) != 2:
            raise TypeError(f"DenoiserConfig.lam_range must be a pair (lo, hi), got {short(self.lam_range)}; pass e.g. "
                            "(-12.0, 12.0)")
        if self.architecture == "convex" and any(self.periodic):
            raise ValueError("DenoiserConfig.architecture 'convex' takes non-periodic (Cartesian) inputs only; use "
                             "architecture='mlp' for periodic features such as dihedrals")
        lo, hi = self.lam_range
        check_real(lo, "DenoiserConfig.lam_range[0]")
        check_real(hi, "DenoiserConfig.lam_range[1]")
        if not lo < hi:
            raise ValueError(f"DenoiserConfig.lam_range ({lo}, {hi}) must be increasing (lo < hi); swap them or widen "
                             "the range")

    def to_dict(self) -> dict:
        return asdict(self)


def lam_embedding(lam: Tensor, n_freq: int, lam_range: tuple[float, float]) -> Tensor:
    """Sinusoidal embedding of log-SNR, ``(M,) -> (M, 2 * n_freq)``."""
    lo, hi = lam_range
    u = (lam - lo) / (hi - lo)  # ~[0, 1] over the trained range
    freqs = math.pi * torch.arange(1, n_freq + 1, dtype=lam.dtype, device=lam.device)
    ang = u[:, None] * freqs
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


class Denoiser(nn.Module):
    """``D(x: (M, D), lam: (M,)) -> (M, D)``, the posterior mean of the clean sample."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        if not isinstance(config, DenoiserConfig):
            raise TypeError(f"Denoiser needs a DenoiserConfig, got {type(config).__name__}; pass "
                            "DenoiserConfig(dim=...)")
        config.validate()
        self.config = config
        periodic = config.periodic or [False] * config.dim
        if len(periodic) != config.dim:
            raise ValueError(f"periodic has {len(periodic)} entries but dim is {config.dim}")
        mask = torch.tensor(periodic, dtype=torch.bool)
        k = torch.arange(1, config.n_freq + 1, dtype=torch.float32)[:, None]
        # periodic dims: integer frequencies of the angle; others: up to 2 pi per data std
        self.register_buffer("periodic_mask", mask)
        self.register_buffer("omega", torch.where(mask, k, k * (2 * math.pi / config.n_freq)))  # (F, D)
        if config.architecture == "convex":
            self.net = ConvexPotentialGradient(config.dim, config.hidden, config.depth, 2 * config.lam_freq)
            return
        n_in = config.dim * (1 + 2 * config.n_freq) + 2 * config.lam_freq
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, config.dim))
        self.net = nn.Sequential(*layers)

    def _preconditioned(self, x: Tensor, lam: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Network output ``F``, ``x' = x / alpha``, ``c_skip`` and ``c_out`` (each ``(M, .)``)."""
        alpha, sigma = alpha_sigma(lam)
        alpha = alpha[:, None]
        s2 = (sigma[:, None] / alpha) ** 2
        sd2 = self.config.sigma_data**2
        c_skip, c_out, c_in = sd2 / (s2 + sd2), (s2 * sd2 / (s2 + sd2)).sqrt(), (s2 + sd2).rsqrt()
        xp = x / alpha
        lam_features = lam_embedding(lam, self.config.lam_freq, self.config.lam_range)
        if self.config.architecture == "convex":
            return self.net(c_in * xp, lam_features), xp, c_skip, c_out
        base = torch.where(self.periodic_mask, xp, c_in * xp)
        ang = base[:, None, :] * self.omega.to(x.dtype)  # (M, F, D)
        amp = torch.where(self.periodic_mask, alpha, torch.ones_like(alpha))[:, None, :]
        h = torch.cat(
            [c_in * xp, (amp * ang.sin()).flatten(1), (amp * ang.cos()).flatten(1),
             lam_features],
            dim=-1,
        )
        return self.net(h), xp, c_skip, c_out

    def forward(self, x: Tensor, lam: Tensor) -> Tensor:
        f, xp, c_skip, c_out = self._preconditioned(x, lam)
        return c_skip * xp + c_out * f

    def loss(self, x0: Tensor, lam: Tensor, eps: Tensor) -> Tensor:
        """Per-sample x0-prediction loss ``|D - x0|^2 / c_out^2`` (unit-scale targets), ``(M,)``."""
        alpha, sigma = alpha_sigma(lam)
        x = alpha[:, None] * x0 + sigma[:, None] * eps
        f, xp, c_skip, c_out = self._preconditioned(x, lam)
        return ((f - (x0 - c_skip * xp) / c_out) ** 2).mean(-1)
