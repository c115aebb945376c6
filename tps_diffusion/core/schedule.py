"""Variance-preserving noise schedule parameterised by log-SNR ``lam``.

``alpha^2 = sigmoid(lam)``, ``sigma^2 = sigmoid(-lam)``, ``x_t = alpha * x0 + sigma * eps``,
so ``alpha^2 / sigma^2 = exp(lam)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def alpha_sigma(lam: Tensor) -> tuple[Tensor, Tensor]:
    """Signal and noise scales ``(alpha, sigma)`` for log-SNR ``lam`` (any shape)."""
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def add_noise(x0: Tensor, lam: Tensor, eps: Tensor | None = None) -> Tensor:
    """Noisy sample ``alpha * x0 + sigma * eps``; ``x0`` is ``(..., D)``, ``lam`` is ``(...)``."""
    alpha, sigma = alpha_sigma(lam)
    if eps is None:
        eps = torch.randn_like(x0)
    return alpha[..., None] * x0 + sigma[..., None] * eps
