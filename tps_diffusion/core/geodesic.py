"""Geodesics in diffusion spacetime, optionally constrained (docs/method.md, section 4).

A batch of spline curves from ``(lam_end, x_A)`` to ``(lam_end, x_B)`` (model coordinates)
is optimised with Adam to minimise

    E(gamma) + w_var * mean_s softplus(rho_var - lam(s)) + w_kl * mean_s softplus(rho_kl - KL_s)

* ``"unconstrained"``: only the curve energy E;
* ``"low_variance"``: keeps the log-SNR above ``rho_var`` (the posterior stays sharp);
* ``"avoid"``: keeps ``KL(p(.|z*) || p(.|gamma_s))`` (in nats, absolute: see
  :func:`tps_diffusion.geometry.kl_to_point`) above ``rho_kl`` for a forbidden point ``z*``,
  together with the low-variance term.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .geometry import (
    Denoiser,
    curve_energy,
    curve_length,
    curves_per_pass,
    expectation_params,
    kl_from_reference,
    kl_to_point,
    natural_params,
    rademacher,
)
from .splines import SpacetimeSpline

MODES = ("unconstrained", "low_variance", "avoid")


@dataclass
class GeodesicConfig:
    """Settings of :func:`optimise_geodesic` (log-SNR in nats of SNR, KL in nats)."""

    mode: str = "unconstrained"
    lam_end: float = 4.0
    n_points: int = 128
    n_nodes: int = 8
    steps: int = 1000
    lr: float = 0.05
    rho_var: float = 0.0
    w_var: float = 1e4
    rho_kl: float = 3.0
    w_kl: float = 1e4
    sharpness: float = 4.0  # softplus(beta * u) / beta: how hard the constraints are
    margin: float = 0.5  # the hinges act from threshold + margin, so the optimum stays inside
    n_probes: int | None = None  # None: exact divergence; int: Hutchinson probes per step
    tol: float = 1e-5  # exact divergence only: stop when the loss improved by < tol (relative) over 50 steps
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown geodesic mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.mode != "unconstrained" and self.rho_var > self.lam_end:
            raise ValueError(f"rho_var={self.rho_var} is above lam_end={self.lam_end}, so the endpoints violate it; "
                             "lower rho_var or raise lam_end")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Geodesic:
    """Optimised curves ``(B, N, 1 + D)`` in model coordinates with their diagnostics."""

    curve: Tensor
    energy: Tensor  # (B,)
    length: Tensor  # (B,)
    config: GeodesicConfig
    kl: Tensor | None = None  # (B, N) KL from z* in nats, for mode "avoid"
    history: list[float] = field(default_factory=list)  # total loss per step (summed over curves)
    steps_done: int = 0
    seconds: float = 0.0
    message: str = ""

    @property
    def lam(self) -> Tensor:
        return self.curve[..., 0]

    @property
    def min_lambda(self) -> Tensor:
        """Lowest log-SNR on each curve, ``(B,)``."""
        return self.lam.min(-1).values


def _soft_hinge(u: Tensor, beta: float) -> Tensor:
    return F.softplus(beta * u) / beta


def optimise_geodesic(
    denoiser: Denoiser,
    x_start: Tensor,
    x_end: Tensor,
    config: GeodesicConfig | None = None,
    avoid: Tensor | None = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> Geodesic:
    """Optimise B curves between ``x_start`` and ``x_end`` (``(B, D)`` or ``(D,)``, model units).

    ``avoid`` is the forbidden spacetime point ``z* = (lam, x)`` ``(1 + D,)`` for mode ``"avoid"``.
    If the loss or its gradient stops being finite the optimisation stops, warns with the step
    number, and returns the last finite curve. ``callback`` is called after every step with
    ``{"step": int, "loss": float (summed over curves), "nodes": Tensor (B, M, 1 + D)}``.
    """
    cfg = config or GeodesicConfig()
    if cfg.mode == "avoid" and avoid is None:
        raise ValueError("mode 'avoid' needs the forbidden point: pass avoid=(lam, *x) in model coordinates")
    params = next(iter(denoiser.parameters()), None) if isinstance(denoiser, torch.nn.Module) else None
    dtype, device = (params.dtype, params.device) if params is not None else (x_start.dtype, x_start.device)
    x_start = torch.atleast_2d(torch.as_tensor(x_start, dtype=dtype, device=device))
    x_end = torch.atleast_2d(torch.as_tensor(x_end, dtype=dtype, device=device))
    lam_col = torch.full((max(len(x_start), len(x_end)), 1), cfg.lam_end, dtype=dtype, device=device)
    spline = SpacetimeSpline(torch.cat([lam_col, x_start.expand(len(lam_col), -1)], -1),
                             torch.cat([lam_col, x_end.expand(len(lam_col), -1)], -1), cfg.n_nodes)
    opt = torch.optim.Adam(spline.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    dim = x_start.shape[-1]

    def probes():
        return None if cfg.n_probes is None else rademacher(cfg.n_probes, dim, x_start, gen)

    kl_start = mu_ref = None
    if cfg.mode == "avoid":
        z_ref = torch.as_tensor(avoid, dtype=dtype, device=device)
        mu_ref = expectation_params(denoiser, z_ref[None], probes())[0].detach()
        kl_start = kl_to_point(denoiser, z_ref, spline.start, probes=probes()).detach()[:, None]

    def evaluate(z: Tensor, pr: Tensor | None, curves: slice):
        """Loss (per curve), energy, eta, mu and KL of the curves ``z`` = curves[curves]."""
        eta, mu = natural_params(z), expectation_params(denoiser, z, pr)
        energy = curve_energy(eta, mu)
        loss = energy
        kl = None
        if cfg.mode in ("low_variance", "avoid"):
            loss = loss + cfg.w_var * _soft_hinge(cfg.rho_var + cfg.margin - z[..., 0], cfg.sharpness).mean(-1)
        if cfg.mode == "avoid":
            kl = kl_from_reference(eta, mu, mu_ref, kl_start[curves])
            loss = loss + cfg.w_kl * _soft_hinge(cfg.rho_kl + cfg.margin - kl, cfg.sharpness).mean(-1)
        return loss, energy, eta, mu, kl

    history: list[float] = []
    last_good = spline.nodes.detach().clone()
    message = ""
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"geodesic ({cfg.mode})", disable=not progress, mininterval=1.0)
    step = 0
    n_curves = spline.nodes.shape[0]
    chunk = curves_per_pass(spline.nodes.device, n_curves, cfg.n_points, cfg.n_probes or dim)
    for step in bar:
        # the curves are independent: one backward pass per chunk of curves (see curves_per_pass),
        # then the spline's own (linear) backward; gradients w.r.t. the curve only, never the model
        z = spline(cfg.n_points)
        z_free = z.detach()
        grad = torch.zeros_like(z_free)
        pr = probes()
        loss = torch.zeros((), dtype=dtype, device=device)
        for i in range(0, n_curves, chunk):
            part = slice(i, i + chunk)
            zc = z_free[part].requires_grad_(True)
            loss_c = evaluate(zc, pr, part)[0].sum()
            (grad[part],) = torch.autograd.grad(loss_c, zc)
            loss = loss + loss_c.detach()
        opt.zero_grad(set_to_none=True)
        z.backward(grad)
        if not torch.isfinite(loss) or not torch.isfinite(spline.nodes.grad).all():
            message = (f"geodesic optimisation stopped at step {step}: non-finite loss or gradient (model output "
                       f"NaN/inf); returned the curve of step {step - 1}")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            with torch.no_grad():
                spline.nodes.copy_(last_good)
            break
        last_good = spline.nodes.detach().clone()
        history.append(loss.item())
        opt.step()
        if callback is not None:
            callback({"step": step, "loss": history[-1], "nodes": spline.nodes.detach()})
        if step % 50 == 0:
            bar.set_postfix(loss=f"{history[-1]:.3f}")
            converged = step >= 100 and history[-51] - history[-1] < cfg.tol * abs(history[-1])
            if converged and cfg.n_probes is None:  # a Hutchinson loss is too noisy for this test
                step += 1
                break
    else:
        step = cfg.steps
    bar.close()
    seconds = time.perf_counter() - t0

    z = spline(cfg.n_points).detach()
    with torch.enable_grad():  # the divergence needs forward-mode AD through the network
        _, energy, eta, mu, kl = evaluate(z, probes(), slice(None))
    return Geodesic(curve=z, energy=energy.detach(), length=curve_length(eta, mu).detach(), config=cfg,
                    kl=None if kl is None else kl.detach(), history=history, steps_done=step,
                    seconds=seconds, message=message)
