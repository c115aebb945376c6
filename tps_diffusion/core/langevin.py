"""Annealed Langevin dynamics along a spacetime curve (the paper's Algorithm 1; docs/method.md, section 5), in torch.

Curve point ``n`` defines the tilted target (in data units ``y``, energy ``U`` in units of kT)

    U_n(y) = U(y) / kT + k_n / 2 * |y - c_n|^2,   c_n = denormalise(x_n / alpha_n),
    k_n = alpha_n^2 / sigma_n^2 / scale^2 = exp(lam_n) / scale^2

All walkers of all paths start at the clean start point and run K overdamped Langevin steps
``y += -ds/2 grad U_n(y) + sqrt(ds) xi`` on each ``U_n`` in turn; every state is recorded.

After each point the sampler measures how far the walkers trail the restraint centre, in units of
the restraint's thermal width ``1 / sqrt(k_n)`` (:func:`restraint_lag`, ``PathSample.lag``), and
warns when the lag at the last point exceeds :data:`LAG_WARN_WIDTHS` (docs/method.md, section 5,
"Lag diagnostic").
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .checks import check_int, check_real, check_seed, check_tensor
from .device import resolve_device
from .normalizer import Normalizer
from .schedule import alpha_sigma

Potential = Callable[[Tensor], Tensor]

#: Walker-mean lag behind the last restraint centre, in restraint widths, above which the samplers warn.
#: The last centre is the end state, where the potential's force vanishes, so walkers that follow have lag
#: ~0 there (one walker in equilibrium with the restraint is N(0, 1) widths along the path: 3 widths, a
#: restraint energy of 4.5 kT, is a 1-in-740 event for one walker and rarer for the mean of several);
#: a larger lag means the walkers did not arrive. Earlier points are recorded but not tested: there the
#: potential's force pulls the tilted equilibrium itself several widths behind the centre (measured:
#: 5.8 widths at the Mueller-Brown barrier, kT = 10, ds = 1e-4, K = 1024: 8x the steps that suffice).
LAG_WARN_WIDTHS = 3.0


def tilt_schedule(curve: Tensor, normalizer: Normalizer) -> tuple[Tensor, Tensor]:
    """Restraint centres ``(N, D)`` in data units and stiffness ``(N,)`` in kT / data-unit^2.

    ``curve`` is ``(N, 1 + D)`` in model coordinates.
    """
    if not isinstance(normalizer, Normalizer):
        raise TypeError(f"normalizer must be a Normalizer, got {type(normalizer).__name__}; pass the model's "
                        "normalizer (DiffusionModel.normalizer)")
    if not isinstance(curve, Tensor):
        raise TypeError(f"curve must be a torch.Tensor (N, 1 + D), got {type(curve).__name__}; pass geodesic.curve[0]")
    if curve.ndim != 2 or curve.shape[1] != 1 + normalizer.dim:
        raise ValueError(f"curve must have shape (N, 1 + D) = (N, {1 + normalizer.dim}) for the normaliser's D = "
                         f"{normalizer.dim}, got {tuple(curve.shape)}; pass one curve (geodesic.curve[i]) of the model "
                         "that owns this normaliser")
    check_tensor(curve, "curve", 2, fix="the geodesic holds NaN/inf: re-run the geodesic optimisation",
                 shape="(N, 1 + D)")
    lam, x = curve[:, 0], curve[:, 1:]
    alpha, _ = alpha_sigma(lam)
    return normalizer.inverse(x / alpha[:, None]), lam.exp() / normalizer.scale**2


def kick_positions(centres: Tensor, stiffness: Tensor, n_points: int | None = None,
                   stiffening_weight: float = 0.0) -> Tensor:
    """Fractional indices ``(n_points,)`` (default N) into a schedule ``centres (N, D)``, ``stiffness (N,)``
    (kT per unit^2) at which every block moves the centre equally far in units of the restraint's own
    thermal width: ``sqrt(k_n) |c_{n+1} - c_n|`` (geometric mean of the two stiffnesses) is the same
    for all blocks. First 0, last N - 1; use with :func:`interpolate_curve`.

    A geodesic is evenly spaced in information length, which says nothing about how fast a
    walker can follow: where the stiffness is high a small step of the centre is many thermal
    widths and the walker is dragged out of equilibrium, while at low stiffness the centre may move
    a long way without any pull. Equal kicks ``k_n |c_{n+1} - c_n|^2 / 2`` (in kT) give more blocks
    where the pull is stiff or the centre moves far.

    ``stiffening_weight`` ``w`` adds the restraint's stiffening to the length of a block,
    ``sqrt(sqrt(k_n k_{n+1}) |c_{n+1} - c_n|^2 + w * max(0, ln k_{n+1} - ln k_n)^2)``. With ``w = D / 2``
    this is the thermodynamic (Fisher) length of the restraint's Boltzmann factor, the Gaussian
    ``N(c, I / k)`` in ``D`` dimensions (softening not counted: releasing a walker drags nothing), and
    equal lengths per block are the protocol of least dissipation in linear response (Sivak and
    Crooks, Phys. Rev. Lett. 108, 190602 (2012)). Without it a stiffness that rises while the centre
    stands still, as at the end of a path, gets no time and yanks the walker in (docs/method.md,
    section 5).
    """
    n = centres.shape[0]
    n_points = n if n_points is None else check_int(n_points, "n_points", 2)
    check_real(stiffening_weight, "stiffening_weight", low=0.0, fix="use a weight >= 0 (0: centre moves only)")
    step = (stiffness[1:] * stiffness[:-1]).sqrt().sqrt() * (centres[1:] - centres[:-1]).norm(dim=-1)
    if stiffening_weight:
        rise = (stiffness[1:].log() - stiffness[:-1].log()).clamp_min(0.0)
        step = (step**2 + stiffening_weight * rise**2).sqrt()
    step = step + 1e-9 * step.mean().clamp_min(1e-30)  # strictly increasing arc length
    arc = torch.cat([step.new_zeros(1), step.cumsum(0)])
    arc = arc / arc[-1]
    want = torch.linspace(0.0, 1.0, n_points, dtype=arc.dtype, device=arc.device)
    i = torch.searchsorted(arc, want, right=True).clamp(1, n - 1)
    w = ((want - arc[i - 1]) / (arc[i] - arc[i - 1])).clamp(0.0, 1.0)
    return (i - 1).to(arc.dtype) + w


def interpolate_curve(curve: Tensor, where: Tensor) -> Tensor:
    """``curve (N, C)`` linearly interpolated at fractional indices ``where (M,)`` in ``[0, N - 1]``."""
    i = where.floor().long().clamp(0, max(curve.shape[0] - 2, 0))
    w = (where - i.to(where.dtype)).clamp(0.0, 1.0)[:, None].to(curve.dtype)
    return curve[i] + w * (curve[(i + 1).clamp(max=curve.shape[0] - 1)] - curve[i])


def respace_by_tilt(curve: Tensor, normalizer: Normalizer, n_points: int | None = None) -> Tensor:
    """The same curve resampled (:func:`kick_positions`) so that every block moves the restraint
    centre equally far in units of the restraint's own thermal width: ``sqrt(k_n) |c_{n+1} - c_n|``
    (kT = 1) is the same for all ``n``. ``curve`` ``(N, 1 + D)`` model coordinates; returns
    ``(n_points, 1 + D)`` (default N) by linear interpolation in curve time, endpoints kept.
    """
    centres, k = tilt_schedule(curve, normalizer)
    n_points = curve.shape[0] if n_points is None else check_int(n_points, "n_points", 2)
    if curve.shape[0] < 2:
        return curve.clone()
    return interpolate_curve(curve, kick_positions(centres, k, n_points))


def energy_and_grad(U: Potential, y: Tensor) -> tuple[Tensor, Tensor]:
    """``U(y)`` ``(P,)`` and ``grad U(y)`` ``(P, D)`` by autograd."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        u = U(y)
        (g,) = torch.autograd.grad(u.sum(), y)
    return u.detach(), g


def centre_tangents(centres: Tensor) -> Tensor:
    """Tangents ``(N, D)`` of the centre path ``centres (N, D)``, not normalised.

    Central differences ``(c_{n+1} - c_{n-1}) / 2``, one-sided ``c_1 - c_0`` and ``c_{N-1} - c_{N-2}``
    at the ends; zero for ``N = 1`` (in the units of ``centres`` per curve point).
    """
    t = torch.zeros_like(centres)
    if centres.shape[0] >= 2:
        t[0] = centres[1] - centres[0]
        t[-1] = centres[-1] - centres[-2]
        t[1:-1] = 0.5 * (centres[2:] - centres[:-2])
    return t


def restraint_lag(offset: Tensor, tangents: Tensor, stiffness: Tensor, scale: Tensor | None = None) -> Tensor:
    """Lag of the walkers behind the restraint centres, in restraint widths, ``(N,)``.

    Parameters
    ----------
    offset : Tensor ``(N, D)``
        Walker-mean ``c_n - y`` at the end of block ``n`` (data units; for molecules nm, in the
        frame of the target). Averaging over walkers first removes the thermal noise.
    tangents : Tensor ``(N, D)``
        Direction of motion of the centre at ``n`` (any length; :func:`centre_tangents`).
    stiffness : Tensor ``(N,)``
        ``k_n`` in kT per data-unit^2, so the restraint's thermal width is ``1 / sqrt(k_n)``.
    scale : Tensor ``(N,)``, optional
        Size of the coordinates at ``n`` (data units): a tangent shorter than 16 machine epsilons of
        it is rounding noise and counts as zero. Default None: only an exactly zero tangent does.

    Returns
    -------
    Tensor ``(N,)``, dimensionless (restraint widths)
        ``sqrt(k_n) * offset_n . t_n / |t_n|`` where the centre moves (positive: the walkers trail
        behind; negative: ahead); ``sqrt(k_n) |offset_n| / sqrt(D)`` (the RMS per coordinate)
        where the tangent is zero. A walker ensemble in equilibrium with the restraint alone has
        lag 0 (noise ``1 / sqrt(P)`` for ``P`` walkers); a force of the potential adds an offset
        ``|grad U / kT| / sqrt(k_n)``.
    """
    dim = offset.shape[-1]
    norm = tangents.norm(dim=-1)
    tiny = torch.zeros_like(norm) if scale is None else 16 * torch.finfo(norm.dtype).eps * scale
    moving = norm > tiny
    unit = tangents / torch.where(moving, norm, torch.ones_like(norm))[:, None]
    along = (offset * unit).sum(-1)
    rms = offset.norm(dim=-1) / math.sqrt(dim)
    return stiffness.clamp_min(0).sqrt() * torch.where(moving, along, rms)


def warn_lag(lag, n_walkers: int, who: str, fix: str, stacklevel: int = 3) -> bool:
    """Warn (``RuntimeWarning``, once) when the walkers did not follow the restraint to the end.

    Parameters
    ----------
    lag : Tensor or array ``(N,)``
        Walker-mean lag in restraint widths (:func:`restraint_lag`); read once (one host sync).
    n_walkers : int
        Walkers (paths) averaged over, for the message.
    who : str
        The sampler's name, first word of the message.
    fix : str
        The end of the message: what to raise, with the current values.

    Returns
    -------
    bool
        Whether it warned: the lag at the last point exceeds :data:`LAG_WARN_WIDTHS` (NaN lags, from
        walkers that diverged, are reported by the divergence check instead).
    """
    lag = torch.as_tensor(lag).detach().double().cpu().reshape(-1)
    if lag.numel() == 0 or not bool(torch.isfinite(lag[-1])) or float(lag[-1]) <= LAG_WARN_WIDTHS:
        return False
    n = lag.numel()
    warnings.warn(f"{who}: at the last curve point (n = {n - 1}, N = {n}) the walkers trail the restraint centre by "
                  f"{float(lag[-1]):.3g} restraint widths (mean of {n_walkers} walker(s); threshold "
                  f"{LAG_WARN_WIDTHS:g}): they did not follow the schedule to the end state; {fix}", RuntimeWarning,
                  stacklevel=stacklevel)
    return True


@dataclass
class PathSample:
    """Paths of :func:`annealed_langevin` and their cost and lag diagnostic.

    Attributes
    ----------
    paths : Tensor ``(P, T, D)``
        Every state, data units.
    energies : Tensor ``(P, T)``
        ``U`` along the paths, in the units of ``U``.
    energy_evals : int
        Energy (and gradient) evaluations, ``P * (N * K + 1)``.
    seconds : float
        Wall time of the sampling, s.
    lag : Tensor ``(N,)``
        Walker-mean lag behind the restraint centre at the end of each block, in restraint widths
        ``1 / sqrt(k_n)`` (dimensionless; :func:`restraint_lag`). About 0 when the walkers follow
        and the potential exerts no force along the path; where it pushes back (a barrier) the
        equilibrium itself lags by ``|grad U / kT| / sqrt(k_n)``. A lag above :data:`LAG_WARN_WIDTHS`
        at the last point (the end state) means the walkers did not arrive; a warning is issued.
    final_distance : Tensor ``(P,)``
        ``sqrt(k_{N-1} / D) |y - c_{N-1}|`` per walker at the end: RMS distance per coordinate to
        the last centre in restraint widths (about 1 in equilibrium with the last restraint).
    """

    paths: Tensor
    energies: Tensor
    energy_evals: int
    seconds: float
    lag: Tensor | None = None
    final_distance: Tensor | None = None


def langevin(U: Potential, y0: Tensor, n_steps: int, ds: float, kT: float = 1.0, seed: int = 0,
             record_every: int = 0, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Plain overdamped Langevin on ``U / kT`` for walkers ``y0 (P, D)``.

    Returns the final states ``(P, D)`` and, if ``record_every > 0``, the recorded states
    ``(P, n_steps // record_every, D)`` (else an empty tensor). ``n_steps`` energy evaluations per walker.
    """
    if not callable(U):
        raise TypeError(f"U must be callable (energies of (P, D) points), got {type(U).__name__}")
    if not isinstance(y0, Tensor):
        raise TypeError(f"y0 must be a torch.Tensor of walkers (P, D), got {type(y0).__name__}; pass "
                        "torch.as_tensor(y0)")
    if not y0.is_floating_point():
        raise TypeError(f"y0 must be a floating-point tensor, got dtype {y0.dtype}; pass y0.double() or y0.float()")
    check_tensor(y0, "y0", fix="start the walkers from finite points", shape="(P, D)")
    check_int(n_steps, "n_steps", 0)
    check_real(ds, "ds", low=0.0, low_open=True, fix="use a small positive step (data-unit^2), e.g. 1e-3")
    check_real(kT, "kT", low=0.0, low_open=True, fix="use the thermal energy in the units of U (1 for surfaces in kT)")
    check_seed(seed, "seed")
    check_int(record_every, "record_every", 0, "use 0 (record nothing) or a positive interval")
    gen = torch.Generator(device=y0.device).manual_seed(seed)
    y = y0.clone()
    frames = []
    for step in tqdm(range(1, n_steps + 1), desc="langevin", disable=not progress, mininterval=1.0):
        _, g = energy_and_grad(U, y)
        y = y - 0.5 * ds * g / kT + math.sqrt(ds) * torch.randn(y.shape, generator=gen, device=y.device, dtype=y.dtype)
        if record_every and step % record_every == 0:
            frames.append(y)
    _warn_if_diverged(y, "langevin")
    return y, (torch.stack(frames, 1) if frames else y.new_empty(0))


def _warn_if_diverged(y: Tensor, who: str) -> None:
    """Warn (one host sync) when walkers ended at NaN/inf: the step was too large for the potential."""
    bad = ~torch.isfinite(y).reshape(len(y), -1).all(-1) if y.ndim > 1 else ~torch.isfinite(y).all()[None]
    n_bad = int(bad.sum())
    if n_bad:
        warnings.warn(f"{who}: {n_bad} of {bad.numel()} walkers ended at NaN/inf (the dynamics diverged); lower ds or "
                      "check the potential and its gradient", RuntimeWarning, stacklevel=3)


def _check_schedule(centres, stiffness, start, n_paths) -> None:
    """``centres (N, D)``, ``stiffness (N,) >= 0`` and ``start (D,)``, ``(1, D)`` or ``(n_paths, D)``, all finite."""
    fix = "the tilt schedule holds NaN/inf: re-run the geodesic / tilt_schedule"
    c = check_tensor(centres, "centres", 2, fix=fix, shape="(N, D)")
    k = check_tensor(stiffness, "stiffness", 1, fix=fix, shape="(N,)")
    s = check_tensor(start, "start", (1, 2), fix="start the walkers from a finite point", shape="(D,) or (P, D)")
    n, dim = c.shape
    if k.shape[0] != n:
        raise ValueError(f"centres has shape {tuple(c.shape)} but stiffness {tuple(k.shape)}: give one stiffness per "
                         f"centre, shape ({n},)")
    if bool((k < 0).any()):
        raise ValueError(f"stiffness has {int((k < 0).sum())} negative value(s) (min {float(k.min()):g}); the tilt "
                         "stiffness exp(lam) / scale^2 is >= 0: use tilt_schedule")
    rows = s.shape[0] if s.ndim == 2 else 1
    ok = s.shape[-1] == dim and (rows == 1 or rows == n_paths)
    if not ok:
        raise ValueError(f"start has shape {tuple(s.shape)} but centres have D = {dim} and n_paths is {n_paths}: pass "
                         f"one start point ({dim},) or one per path ({n_paths}, {dim})")


def annealed_langevin(
    U: Potential,
    centres: Tensor,
    stiffness: Tensor,
    start: Tensor,
    n_paths: int,
    steps_per_point: int,
    ds: float,
    kT: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> PathSample:
    """Sample ``n_paths`` paths along the tilt schedule ``centres (N, D)``, ``stiffness (N,)``.

    ``U`` maps ``(P, D)`` data-unit points to energies ``(P,)`` in the same unit as ``kT``;
    ``stiffness`` is in units of kT per data-unit^2 (see :func:`tilt_schedule`). One path has
    ``N * K`` frames and costs ``N * K + 1`` energy evaluations (the last frame's energy).
    ``callback`` is called after each curve point with ``{"point": n, "n_points": N, "y": Tensor (P, D),
    "energy": Tensor (P,)}`` (tensors on the device; no host sync is made for it).

    After each point the walker-mean lag behind the centre, in restraint widths, is recorded on
    the device (``PathSample.lag``, :func:`restraint_lag`; no host sync inside the loops). When the
    lag at the last point exceeds :data:`LAG_WARN_WIDTHS` (:func:`warn_lag`) a ``RuntimeWarning``
    names the fix: raise ``steps_per_point`` or ``ds``. The restraint alone relaxes the lag by a
    factor ``exp(-ds k_n K / 2)`` per block (``ds k_n / 2`` per step, which must stay well below 1).
    """
    if not callable(U):
        raise TypeError(f"U must be callable (energies of (P, D) points), got {type(U).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (called with a dict after each point), got "
                        f"{type(callback).__name__}")
    check_int(n_paths, "n_paths", 1, "sample at least one path")
    _check_schedule(centres, stiffness, start, n_paths)
    check_int(steps_per_point, "steps_per_point", 1, "run at least one Langevin step per curve point (e.g. 128)")
    check_real(ds, "ds", low=0.0, low_open=True, fix="use a small positive step (data-unit^2), e.g. 1e-4")
    check_real(kT, "kT", low=0.0, low_open=True, fix="use the thermal energy in the units of U (1 for surfaces in kT)")
    check_seed(seed, "seed")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}; pass torch.float32 or "
                        "torch.float64")
    dev = resolve_device(device)
    centres = torch.as_tensor(centres, dtype=dtype, device=dev)
    stiffness = torch.as_tensor(stiffness, dtype=dtype, device=dev)
    n_points, dim = centres.shape
    start = torch.as_tensor(start, dtype=dtype, device=dev).reshape(-1, dim)
    y = start.expand(n_paths, dim).clone()
    gen = torch.Generator(device=dev).manual_seed(seed)
    paths = torch.empty(n_paths, n_points * steps_per_point, dim, dtype=dtype, device=dev)
    energies = torch.empty(n_paths, n_points * steps_per_point, dtype=dtype, device=dev)
    noise_scale = math.sqrt(ds)
    offsets = torch.empty(n_points, dim, dtype=dtype, device=dev)  # walker-mean c_n - y after block n
    t0 = time.perf_counter()
    u, g = energy_and_grad(U, y)
    if tuple(u.shape) != (n_paths,):
        raise ValueError(f"U must return one energy per walker, shape ({n_paths},), for points of shape "
                         f"{tuple(y.shape)}; got {tuple(u.shape)}: make U reduce over the last axis only")
    if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(g).all())):
        raise ValueError("U or its gradient is NaN/inf at the start point; check the potential and that start is a "
                         "valid configuration in U's units")
    frame = 0
    for n in tqdm(range(n_points), desc="annealed langevin", disable=not progress, mininterval=1.0):
        c, k = centres[n], stiffness[n]
        for _ in range(steps_per_point):
            drift = g / kT + k * (y - c)
            y = y - 0.5 * ds * drift + noise_scale * torch.randn(y.shape, generator=gen, device=dev, dtype=dtype)
            u, g = energy_and_grad(U, y)
            paths[:, frame] = y
            energies[:, frame] = u
            frame += 1
        offsets[n] = c - y.mean(0)
        if callback is not None:
            callback({"point": n, "n_points": n_points, "y": y, "energy": u})
    lag = restraint_lag(offsets, centre_tangents(centres), stiffness, scale=centres.norm(dim=-1))
    final = (stiffness[-1].clamp_min(0) / dim).sqrt() * (y - centres[-1]).norm(dim=-1)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    _warn_if_diverged(y, "annealed_langevin")
    k_last = float(stiffness[-1])
    warn_lag(lag, n_paths, "annealed_langevin",
             f"raise steps_per_point (now {steps_per_point}) or ds (now {ds:g}; a block lasts ds * k * K / 2 = "
             f"{ds * k_last * steps_per_point / 2:.3g} restraint relaxation times at the last point, k = "
             f"{k_last:.4g} kT/data-unit^2)")
    return PathSample(paths, energies, n_paths * (n_points * steps_per_point + 1), time.perf_counter() - t0,
                      lag=lag, final_distance=final)
