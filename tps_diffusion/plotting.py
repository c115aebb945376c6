"""Matplotlib figures of surfaces, geodesics, paths, energies and committors.

Each function draws on a given ``ax`` (or a new one) and returns the Axes, as pandas and
mdtraj-style plotting helpers do.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Circle

from .utils.angles import unwrap_for_plot
from .utils.files import atomic_path

if TYPE_CHECKING:
    from .molecular.committor import CommittorResult


def _axes(ax):
    return ax if ax is not None else plt.subplots(figsize=(5, 4))[1]


def plot_surface(grid_values: np.ndarray, axes: tuple[np.ndarray, np.ndarray], ax=None, vmax: float | None = None,
                 levels: int = 30, label: str = "U") -> plt.Axes:
    """Filled contours of a surface ``grid_values (n_x, n_y)`` on node coordinates ``axes``."""
    ax = _axes(ax)
    x, y = axes
    vmax = float(np.percentile(grid_values, 95)) if vmax is None else vmax
    cs = ax.contourf(x, y, np.minimum(grid_values, vmax).T, levels=levels, cmap="viridis")
    ax.figure.colorbar(cs, ax=ax, label=label)
    return ax


def plot_paths(paths: np.ndarray, ax=None, n_show: int = 20, periodic: bool = True, color: str = "white",
               alpha: float = 0.35, **kwargs) -> plt.Axes:
    """Draw up to ``n_show`` paths ``(P, T, 2)`` (or a sequence of ``(T_i, 2)`` of different lengths);
    periodic jumps (wrap-arounds) are not joined."""
    ax = _axes(ax)
    for path in list(paths)[:n_show]:
        path = np.array(path, dtype=float)
        if periodic:
            path = unwrap_for_plot(path)
        ax.plot(path[:, 0], path[:, 1], color=color, alpha=alpha, lw=0.6, **kwargs)
    return ax


def plot_log_snr(curve_lam: np.ndarray, ax=None, threshold: float | None = None, **kwargs) -> plt.Axes:
    """Log-SNR along a geodesic (curve time on the x axis)."""
    ax = _axes(ax)
    lam = np.asarray(curve_lam)
    ax.plot(np.linspace(0, 1, len(lam)), lam, **kwargs)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
    ax.set_xlabel("curve time s")
    ax.set_ylabel("log-SNR lambda")
    return ax


def plot_path_energies(energies: np.ndarray, ax=None, n_show: int = 20, unit: str = "kJ/mol", **kwargs) -> plt.Axes:
    """Energy along paths ``(P, T)`` against frame index, with the mean in black."""
    ax = _axes(ax)
    e = np.asarray(energies)
    for row in e[:n_show]:
        ax.plot(row, color="C0", alpha=0.2, lw=0.5)
    ax.plot(e.mean(0), color="k", lw=1.2, label="mean", **kwargs)
    ax.set_xlabel("frame")
    ax.set_ylabel(f"energy ({unit})")
    return ax


def plot_committor(result: CommittorResult, ax=None, x=None, **errorbar_kwargs) -> plt.Axes:
    """p_B with its Wilson interval as error bars against frame index (or ``x``). Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    x = np.arange(result.n_configs) if x is None else np.asarray(x)
    p = result.p_B
    low, high = result.ci
    kw = {"fmt": "o", "ms": 4, "capsize": 2, "label": f"$p_B$ ({100 * result.confidence:.0f}% Wilson CI)"}
    kw.update(errorbar_kwargs)
    ax.errorbar(x, p, yerr=np.vstack([p - low, high - p]), **kw)
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("frame index")
    ax.set_ylabel("committor $p_B$")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_cv_paths(system, trajectories, ax=None, n_show: int = 50) -> plt.Axes:
    """Paths (trajectories of any lengths; the first ``n_show``) in the plane of the system's first two
    collective variables (e.g. phi/psi in rad), with the states on those CVs drawn as dashed circles;
    hides ``ax`` when there are fewer than two CVs."""
    ax = _axes(ax)
    cvs = list(system.cvs.values())[:2]
    if len(cvs) < 2:
        ax.set_visible(False)
        return ax
    values = [np.stack([cv.compute(t) for cv in cvs], -1) for t in itertools.islice(trajectories, n_show)]
    periodic = all(cv.periodic for cv in cvs)
    plot_paths(values, ax=ax, n_show=n_show, periodic=periodic, color="C0", alpha=0.5)
    for s in system.states.values():
        if [cv.name for cv in s.cvs] == [cv.name for cv in cvs]:
            ax.add_patch(Circle(tuple(s.centre), s.radius, fill=False, ls="--", color="k", lw=0.8))
            ax.annotate(s.name, s.centre, ha="center", va="center", fontsize=8)
    if periodic:
        ax.set_xlim(-np.pi, np.pi)
        ax.set_ylim(-np.pi, np.pi)
        ax.set_aspect("equal")
    ax.set_xlabel(f"{cvs[0].name} ({cvs[0].units})")
    ax.set_ylabel(f"{cvs[1].name} ({cvs[1].units})")
    return ax


def save_figure(fig, path: str | Path, overwrite: bool = False, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically (format from the suffix) and close it."""
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    return Path(path)
