"""Denoiser network ``D(x, lam) ~= E[x0 | x_t = x]`` for variance-preserving diffusion.

An MLP on sinusoidal embeddings of the log-SNR and of the inputs, with EDM-style
preconditioning written for the VP schedule: with ``x' = x / alpha`` and ``s = sigma / alpha``
(the noise level of ``x'``), ``D = c_skip x' + c_out F(c_in x', lam)`` where
``c_skip = sd^2 / (s^2 + sd^2)``, ``c_out = s sd / sqrt(s^2 + sd^2)``,
``c_in = 1 / sqrt(s^2 + sd^2)`` and ``sd`` is the data standard deviation. The network output
``F`` then has unit-scale targets at every noise level.

Periodic inputs (dihedrals, radians) get ``alpha * (sin k x', cos k x')`` features,
``k = 1..n_freq``: periodic in the clean coordinate, and fading out (with bounded
derivatives) at low SNR where ``x'`` is mostly noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .schedule import alpha_sigma


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
        self.config = config
        periodic = config.periodic or [False] * config.dim
        if len(periodic) != config.dim:
            raise ValueError(f"periodic has {len(periodic)} entries but dim is {config.dim}")
        mask = torch.tensor(periodic, dtype=torch.bool)
        k = torch.arange(1, config.n_freq + 1, dtype=torch.float32)[:, None]
        # periodic dims: integer frequencies of the angle; others: up to 2 pi per data std
        self.register_buffer("periodic_mask", mask)
        self.register_buffer("omega", torch.where(mask, k, k * (2 * math.pi / config.n_freq)))  # (F, D)
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
        base = torch.where(self.periodic_mask, xp, c_in * xp)
        ang = base[:, None, :] * self.omega.to(x.dtype)  # (M, F, D)
        amp = torch.where(self.periodic_mask, alpha, torch.ones_like(alpha))[:, None, :]
        h = torch.cat(
            [c_in * xp, (amp * ang.sin()).flatten(1), (amp * ang.cos()).flatten(1),
             lam_embedding(lam, self.config.lam_freq, self.config.lam_range)],
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
