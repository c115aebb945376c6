"""Annealed Langevin dynamics along a spacetime curve (the paper's Algorithm 1; docs/method.md, section 5), in torch.

Curve point ``n`` defines the tilted target (in data units ``y``, energy ``U`` in units of kT)

    U_n(y) = U(y) / kT + k_n / 2 * |y - c_n|^2,   c_n = denormalise(x_n / alpha_n),
    k_n = alpha_n^2 / sigma_n^2 / scale^2 = exp(lam_n) / scale^2

All walkers of all paths start at the clean start point and run K overdamped Langevin steps
``y += -ds/2 grad U_n(y) + sqrt(ds) xi`` on each ``U_n`` in turn; every state is recorded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .device import resolve_device
from .normalizer import Normalizer
from .schedule import alpha_sigma

Potential = Callable[[Tensor], Tensor]


def tilt_schedule(curve: Tensor, normalizer: Normalizer) -> tuple[Tensor, Tensor]:
    """Restraint centres ``(N, D)`` in data units and stiffness ``(N,)`` in kT / data-unit^2.

    ``curve`` is ``(N, 1 + D)`` in model coordinates.
    """
    lam, x = curve[:, 0], curve[:, 1:]
    alpha, _ = alpha_sigma(lam)
    return normalizer.inverse(x / alpha[:, None]), lam.exp() / normalizer.scale**2


def energy_and_grad(U: Potential, y: Tensor) -> tuple[Tensor, Tensor]:
    """``U(y)`` ``(P,)`` and ``grad U(y)`` ``(P, D)`` by autograd."""
    with torch.enable_grad():
        y = y.detach().requires_grad_(True)
        u = U(y)
        (g,) = torch.autograd.grad(u.sum(), y)
    return u.detach(), g


@dataclass
class PathSample:
    """Paths ``(P, T, D)`` in data units, ``U`` along them ``(P, T)`` and the cost."""

    paths: Tensor
    energies: Tensor
    energy_evals: int
    seconds: float


def langevin(U: Potential, y0: Tensor, n_steps: int, ds: float, kT: float = 1.0, seed: int = 0,
             record_every: int = 0, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Plain overdamped Langevin on ``U / kT`` for walkers ``y0 (P, D)``.

    Returns the final states ``(P, D)`` and, if ``record_every > 0``, the recorded states
    ``(P, n_steps // record_every, D)`` (else an empty tensor). ``n_steps`` energy evaluations per walker.
    """
    gen = torch.Generator(device=y0.device).manual_seed(seed)
    y = y0.clone()
    frames = []
    for step in tqdm(range(1, n_steps + 1), desc="langevin", disable=not progress, mininterval=1.0):
        _, g = energy_and_grad(U, y)
        y = y - 0.5 * ds * g / kT + math.sqrt(ds) * torch.randn(y.shape, generator=gen, device=y.device, dtype=y.dtype)
        if record_every and step % record_every == 0:
            frames.append(y)
    return y, (torch.stack(frames, 1) if frames else y.new_empty(0))


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
    """
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
    t0 = time.perf_counter()
    u, g = energy_and_grad(U, y)
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
        if callback is not None:
            callback({"point": n, "n_points": n_points, "y": y, "energy": u})
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return PathSample(paths, energies, n_paths * (n_points * steps_per_point + 1), time.perf_counter() - t0)
