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

from .checks import LAM_LIMIT, check_int, check_lam, check_real, check_seed, check_tensor
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
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ValueError/TypeError naming the field and its allowed range if a setting is invalid."""
        if self.mode not in MODES:
            raise ValueError(f"unknown geodesic mode {self.mode!r}; choose one of {', '.join(MODES)}")
        check_lam(self.lam_end, "GeodesicConfig.lam_end")
        check_int(self.n_points, "GeodesicConfig.n_points", 3, "a curve needs at least 3 points (e.g. 128)")
        check_int(self.n_nodes, "GeodesicConfig.n_nodes", 1, "use at least one learnable interior node (e.g. 8)")
        check_int(self.steps, "GeodesicConfig.steps", 1, "optimise for at least one step (e.g. 1000)")
        check_real(self.lr, "GeodesicConfig.lr", low=0.0, low_open=True, fix="use a learning rate such as 0.05")
        check_real(self.rho_var, "GeodesicConfig.rho_var")
        check_real(self.rho_kl, "GeodesicConfig.rho_kl")
        check_real(self.w_var, "GeodesicConfig.w_var", low=0.0, fix="use a penalty weight >= 0 such as 1e4")
        check_real(self.w_kl, "GeodesicConfig.w_kl", low=0.0, fix="use a penalty weight >= 0 such as 1e4")
        check_real(self.sharpness, "GeodesicConfig.sharpness", low=0.0, low_open=True,
                   fix="use a positive hinge sharpness such as 4")
        check_real(self.margin, "GeodesicConfig.margin", low=0.0, fix="use a margin >= 0 such as 0.5")
        if self.n_probes is not None:
            check_int(self.n_probes, "GeodesicConfig.n_probes", 1,
                      "use None (exact divergence) or at least one Hutchinson probe")
        check_real(self.tol, "GeodesicConfig.tol", low=0.0, fix="use a relative tolerance >= 0 such as 1e-5 (0: no "
                   "early stop)")
        check_seed(self.seed, "GeodesicConfig.seed")
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
    steps_done: int = 0  # steps of the longest-running curve
    curve_steps: list[int] = field(default_factory=list)  # steps of each curve (each stops on its own)
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


def _check_endpoints(x_start, x_end, avoid) -> tuple[Tensor, Tensor]:
    """Endpoints ``(D,)`` or ``(B, D)`` with equal D, batch sizes equal or 1, finite; ``avoid`` ``(1 + D,)``."""
    fix = "pass finite model-unit coordinates (check the endpoint structures and the normaliser)"
    a = check_tensor(x_start, "x_start", (1, 2), fix=fix, shape="(D,) or (B, D)")
    b = check_tensor(x_end, "x_end", (1, 2), fix=fix, shape="(D,) or (B, D)")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"x_start has shape {tuple(a.shape)} but x_end has shape {tuple(b.shape)}: their last "
                         "dimensions (D) differ; give both endpoints in the same model coordinates")
    na, nb = (len(t) if t.ndim == 2 else 1 for t in (a, b))
    if na != nb and 1 not in (na, nb):
        raise ValueError(f"x_start has shape {tuple(a.shape)} and x_end {tuple(b.shape)}: give equal numbers of start "
                         "and end points, or one of either")
    if avoid is not None:
        z = check_tensor(avoid, "avoid", 1, fix="pass the forbidden point z* = (lam, *x) with finite values",
                         shape="(1 + D,)")
        if z.shape[0] != a.shape[-1] + 1:
            raise ValueError(f"avoid has shape {tuple(z.shape)} but the endpoints have D = {a.shape[-1]}: pass the "
                             f"forbidden point z* = (lam, *x) of shape ({a.shape[-1] + 1},)")
        lam = float(z[0])
        if abs(lam) > LAM_LIMIT:
            raise ValueError(f"the log-SNR of avoid ({lam:g}) is outside [-{LAM_LIMIT:g}, {LAM_LIMIT:g}]: log-SNR "
                             f"beyond +-{LAM_LIMIT:g} is numerically meaningless (the sigmoid saturates); place z* at "
                             "a log-SNR within the trained range")
    return a, b


def _check_denoiser_dim(denoiser, x: Tensor, lam_end: float) -> None:
    """The endpoints' dimension D must be the denoiser's (its config, or else one call on a start point)."""
    dim = x.shape[-1]
    config = getattr(denoiser, "config", None)
    want = getattr(config, "dim", None)
    if isinstance(want, int):
        if want != dim:
            raise ValueError(f"the endpoints have shape {tuple(x.shape)} (D = {dim}) but the denoiser expects D = "
                             f"{want}; give endpoints in the model's coordinates (featurise them with the model's "
                             "featurizer / normaliser)")
        return
    lam = torch.full((1,), lam_end, dtype=x.dtype, device=x.device)
    try:
        with torch.no_grad():
            out = denoiser(x[:1], lam)
    except RuntimeError as exc:
        raise ValueError(f"the denoiser fails on an endpoint of shape {tuple(x[:1].shape)} (D = {dim}): "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; give endpoints with the "
                         "denoiser's dimension") from None
    if not isinstance(out, Tensor) or tuple(out.shape) != (1, dim):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"the denoiser maps an endpoint of shape {(1, dim)} to {shape}, not {(1, dim)}; give "
                         "endpoints with the denoiser's dimension")


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
    Bad settings, non-finite endpoints or shapes that do not match each other or the denoiser raise a
    one-line ValueError/TypeError before optimising. The curves are independent: each stops on its own
    (converged, see ``GeodesicConfig.tol``, or non-finite), so a curve of a batch is the curve optimised
    alone up to floating-point rounding (batched matrix products round differently). If the loss or its
    gradient of a curve stops being finite, that curve stops, with a warning naming the step, at its
    last finite state; if it is not finite at step 0 (no finite curve exists) FloatingPointError is
    raised. ``callback`` is called
    after every step with ``{"step": int, "loss": float (summed over curves), "nodes": Tensor (B, M, 1 + D)}``.
    """
    if config is not None and not isinstance(config, GeodesicConfig):
        raise TypeError(f"config must be a GeodesicConfig or None, got {type(config).__name__}; pass "
                        "GeodesicConfig(...)")
    cfg = config or GeodesicConfig()
    cfg.validate()  # the dataclass is mutable: check the values as they are now
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as D(x (M, D), lam (M,)), got {type(denoiser).__name__}; pass a "
                        "Denoiser (e.g. DiffusionModel.denoiser)")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (called with a dict after every step), got "
                        f"{type(callback).__name__}")
    if cfg.mode == "avoid" and avoid is None:
        raise ValueError("mode 'avoid' needs the forbidden point: pass avoid=(lam, *x) in model coordinates")
    a, _ = _check_endpoints(x_start, x_end, avoid)
    params = next(iter(denoiser.parameters()), None) if isinstance(denoiser, torch.nn.Module) else None
    dtype, device = (params.dtype, params.device) if params is not None else (a.dtype, a.device)
    x_start = torch.atleast_2d(torch.as_tensor(x_start, dtype=dtype, device=device))
    x_end = torch.atleast_2d(torch.as_tensor(x_end, dtype=dtype, device=device))
    _check_denoiser_dim(denoiser, x_start, cfg.lam_end)
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

    def evaluate(z: Tensor, pr: Tensor | None, curves: Tensor | slice):
        """Loss (per curve), energy, eta, mu and KL of the curves ``z`` (those of the indices ``curves``)."""
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

    n_curves = spline.nodes.shape[0]
    history: list[float] = []
    curve_history: list[list[float]] = []  # per step: the loss of every curve
    running = torch.ones(n_curves, dtype=torch.bool, device=device)  # curves still being optimised
    curve_steps = [cfg.steps] * n_curves
    losses = torch.zeros(n_curves, dtype=dtype, device=device)
    last_good = spline.nodes.detach().clone()
    messages: list[str] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"geodesic ({cfg.mode})", disable=not progress, mininterval=1.0)
    step = 0
    chunk = curves_per_pass(spline.nodes.device, n_curves, cfg.n_points, cfg.n_probes or dim)
    for step in bar:
        # the curves are independent: one backward pass per chunk of the running curves (see
        # curves_per_pass), then the spline's own (linear) backward; gradients w.r.t. the curve only
        z = spline(cfg.n_points)
        z_free = z.detach()
        grad = torch.zeros_like(z_free)
        pr = probes()
        active = running.nonzero().flatten()
        for i in range(0, len(active), chunk):
            part = active[i:i + chunk]
            zc = z_free[part].requires_grad_(True)
            loss_c = evaluate(zc, pr, part)[0]
            (grad[part],) = torch.autograd.grad(loss_c.sum(), zc)
            losses[part] = loss_c.detach()
        opt.zero_grad(set_to_none=True)
        z.backward(grad)
        finite = torch.isfinite(losses) & torch.isfinite(spline.nodes.grad).flatten(1).all(1)
        bad = running & ~finite
        if bad.any():
            which = "" if n_curves == 1 else f" of curve(s) {bad.nonzero().flatten().tolist()}"
            if step == 0:  # no finite curve to return
                what = "loss" if not torch.isfinite(losses[bad]).all() else "gradient"
                where = "at these endpoints" + (" or at the forbidden point avoid" if cfg.mode == "avoid" else "")
                raise FloatingPointError(
                    f"geodesic optimisation: the {what} of the initial curve{which} is not finite, so no "
                    f"finite curve exists; the model's output is NaN/inf {where}: check that lam_end ({cfg.lam_end:g}) "
                    "is inside the trained log-SNR range and that the model file is intact (retrain if not)")
            messages.append(f"geodesic optimisation{which} stopped at step {step}: non-finite loss or gradient (model "
                            f"output NaN/inf); returned the curve of step {step - 1}")
            warnings.warn(messages[-1], RuntimeWarning, stacklevel=2)
            with torch.no_grad():
                spline.nodes[bad] = last_good[bad]
                losses[bad] = torch.as_tensor(curve_history[-1], dtype=dtype, device=device)[bad]
            running &= ~bad
            for c in bad.nonzero().flatten().tolist():
                curve_steps[c] = step
            if not running.any():
                break
        last_good = spline.nodes.detach().clone()
        curve_history.append(losses.tolist())
        history.append(sum(curve_history[-1]))
        spline.nodes.grad[~running] = 0.0
        opt.step()
        with torch.no_grad():  # Adam's momentum would still move the stopped curves
            spline.nodes[~running] = last_good[~running]
        if callback is not None:
            callback({"step": step, "loss": history[-1], "nodes": spline.nodes.detach()})
        if step % 50 == 0:
            bar.set_postfix(loss=f"{history[-1]:.3f}")
            if step >= 100 and cfg.n_probes is None:  # a Hutchinson loss is too noisy for this test
                for c in running.nonzero().flatten().tolist():  # each curve stops on its own
                    before, now = curve_history[-51][c], curve_history[-1][c]
                    if before - now < cfg.tol * abs(now):
                        running[c] = False
                        curve_steps[c] = step + 1
                if not running.any():
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
                    curve_steps=curve_steps, seconds=seconds, message="; ".join(messages))
