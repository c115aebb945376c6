"""Information geometry of diffusion spacetime (docs/method.md, section 3).

A spacetime point is ``z = (lam, x)`` stored as a tensor ``(..., 1 + D)`` with the log-SNR
first. The denoising posterior ``p(x0 | z)`` is an exponential family with

* natural parameters     ``eta(z) = (alpha / sigma^2 * x, -exp(lam) / 2)``
* expectation parameters ``mu(z) = (D, |D|^2 + sigma^2 / alpha * div_x D)``

where ``D(x, lam) ~= E[x0 | x_t = x]`` is the denoiser. Every curve quantity below is
computed from ``eta`` and ``mu`` at the curve points: the energy is the sum of symmetrised
KL divergences between neighbouring posteriors.

A *denoiser* is any callable ``D(x: Tensor[M, D], lam: Tensor[M]) -> Tensor[M, D]``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.func import jvp, vmap

from .schedule import alpha_sigma

Denoiser = Callable[[Tensor, Tensor], Tensor]


def natural_params(z: Tensor) -> Tensor:
    """``eta(z)``, shape ``(..., D + 1)`` for ``z`` of shape ``(..., 1 + D)``."""
    lam, x = z[..., 0], z[..., 1:]
    alpha, sigma = alpha_sigma(lam)
    return torch.cat([(alpha / sigma**2)[..., None] * x, (-0.5 * lam.exp())[..., None]], dim=-1)


def rademacher(n_probes: int, dim: int, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random +-1 probe vectors ``(n_probes, dim)`` with dtype/device of ``like`` (CPU ``generator``)."""
    bits = torch.randint(0, 2, (n_probes, dim), generator=generator)
    return (2.0 * bits - 1.0).to(dtype=like.dtype, device=like.device)


def denoise_with_divergence(
    denoiser: Denoiser, x: Tensor, lam: Tensor, probes: Tensor | None = None, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Denoiser output ``D (M, D)`` and its divergence ``div_x D (M,)``.

    ``probes=None`` gives the exact Jacobian trace (one JVP per basis vector, vectorised with
    ``vmap``); a ``(P, D)`` tensor of Rademacher probes gives Hutchinson's estimate
    ``mean_p v_p . J v_p`` with the same probes at every point (common random numbers, so the
    noise largely cancels in differences along a curve). Differentiable (double backprop).
    """

    def f(x_):
        return denoiser(x_, lam)

    exact = probes is None
    vecs = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device) if exact else probes

    def directional(v):
        return jvp(f, (x,), (v.expand_as(x),))

    out, jv = vmap(directional, chunk_size=chunk_size)(vecs)  # (P, M, D) each
    if exact:
        div = torch.diagonal(jv, dim1=0, dim2=2).sum(-1)
    else:
        div = (jv * vecs[:, None, :]).sum(-1).mean(0)
    return out[0], div


def expectation_params(
    denoiser: Denoiser, z: Tensor, probes: Tensor | None = None, chunk_size: int | None = None
) -> Tensor:
    """``mu(z)``, shape ``(..., D + 1)`` for ``z`` of shape ``(..., 1 + D)``.

    See :func:`denoise_with_divergence` for ``probes`` (None: exact divergence).
    """
    shape = z.shape
    flat = z.reshape(-1, shape[-1])
    lam, x = flat[:, 0], flat[:, 1:]
    d, div = denoise_with_divergence(denoiser, x, lam, probes, chunk_size)
    alpha, sigma = alpha_sigma(lam)
    second = (d * d).sum(-1) + sigma**2 / alpha * div
    return torch.cat([d, second[:, None]], dim=-1).reshape(shape)


def neighbour_kl(eta: Tensor, mu: Tensor) -> Tensor:
    """Symmetrised KL between neighbouring posteriors, ``(..., N - 1)``, for ``(..., N, D + 1)``."""
    return ((eta[..., 1:, :] - eta[..., :-1, :]) * (mu[..., 1:, :] - mu[..., :-1, :])).sum(-1)


def curve_energy(eta: Tensor, mu: Tensor) -> Tensor:
    """Discrete curve energy ``(N - 1) / 2 * sum_n d_eta . d_mu``, shape ``(...)``.

    ``eta`` and ``mu`` are ``(..., N, D + 1)`` at N points equally spaced in curve time.
    """
    n = eta.shape[-2]
    return 0.5 * (n - 1) * neighbour_kl(eta, mu).sum(-1)


#: on a CPU, one autograd pass holds at most this many (curve point x JVP direction) pairs
CPU_PASS_BUDGET = 2048


def curves_per_pass(device: torch.device, n_curves: int, n_points: int, n_directions: int) -> int:
    """How many curves one forward/backward pass should hold: all of them on a GPU; on a CPU as
    many as fit :data:`CPU_PASS_BUDGET` JVP rows (``n_points * n_directions`` per curve, the
    directions being the basis vectors or the Hutchinson probes), because one huge autograd
    graph is slower there than several cache-sized ones."""
    if device.type == "cuda":
        return n_curves
    return max(1, min(n_curves, CPU_PASS_BUDGET // (n_points * n_directions)))


def curve_energy_and_grad(
    denoiser: Denoiser, z: Tensor, probes: Tensor | None = None, chunk: int | None = None
) -> tuple[Tensor, Tensor]:
    """Energies ``(B,)`` and gradients ``dE/dz (B, N, 1 + D)`` of B curves ``z (B, N, 1 + D)``.

    The curves are independent, so they are processed ``chunk`` at a time (default:
    :func:`curves_per_pass`) with one backward pass each; the result equals one batched pass.
    """
    n_dirs = z.shape[-1] - 1 if probes is None else probes.shape[0]
    step = chunk or curves_per_pass(z.device, z.shape[0], z.shape[1], n_dirs)
    energies, grads = [], []
    for i in range(0, z.shape[0], step):
        zc = z[i : i + step].detach().requires_grad_(True)
        with torch.enable_grad():
            e = curve_energy(natural_params(zc), expectation_params(denoiser, zc, probes))
            (g,) = torch.autograd.grad(e.sum(), zc)
        energies.append(e.detach())
        grads.append(g)
    return torch.cat(energies), torch.cat(grads)


def curve_length(eta: Tensor, mu: Tensor) -> Tensor:
    """Curve length ``sum_n sqrt(max(0, d_eta . d_mu))`` (the Diffusion Edit Distance), ``(...)``."""
    return neighbour_kl(eta, mu).clamp_min(0.0).sqrt().sum(-1)


def kl_from_reference(eta: Tensor, mu: Tensor, mu_ref: Tensor, kl_start: Tensor | float = 0.0) -> Tensor:
    """``KL(p(.|z*) || p(.|gamma_n))`` along a curve, shape ``(..., N)``, in nats.

    Integrates ``d eta . (mu(gamma) - mu*)`` with the trapezoid rule from the first point,
    where the KL is ``kl_start``. ``eta``/``mu`` are ``(..., N, D + 1)``; ``mu_ref`` is the
    reference point's expectation parameter ``(D + 1,)``.
    """
    d_eta = eta[..., 1:, :] - eta[..., :-1, :]
    mid = 0.5 * (mu[..., 1:, :] + mu[..., :-1, :]) - mu_ref
    steps = (d_eta * mid).sum(-1)
    zero = torch.zeros_like(steps[..., :1])
    return kl_start + torch.cat([zero, steps.cumsum(-1)], dim=-1)


def kl_to_point(denoiser: Denoiser, z_ref: Tensor, z: Tensor, n_points: int = 64,
                probes: Tensor | None = None) -> Tensor:
    """Absolute ``KL(p(.|z_ref) || p(.|z))`` in nats for points ``z (..., 1 + D)``.

    The integrand of :func:`kl_from_reference` is an exact differential, so the KL is the
    integral along the straight spacetime segment from ``z_ref`` (where it is 0) to ``z``.
    """
    s = torch.linspace(0.0, 1.0, n_points, dtype=z.dtype, device=z.device)[:, None]
    seg = z_ref + s * (z[..., None, :] - z_ref)  # (..., n_points, 1 + D)
    eta, mu = natural_params(seg), expectation_params(denoiser, seg, probes)
    mu_ref = expectation_params(denoiser, z_ref[None], probes)[0]
    return kl_from_reference(eta, mu, mu_ref)[..., -1]
