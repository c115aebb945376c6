"""Matplotlib figures of surfaces, geodesics, paths, energies and committors.

Each function draws on a given ``ax`` (or a new one) and returns the Axes, as pandas and
mdtraj-style plotting helpers do.
"""

from __future__ import annotations

import numpy as np

import matplotlib.pyplot as plt


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
    """Draw up to ``n_show`` paths ``(P, T, 2)``; periodic jumps (wrap-arounds) are not joined."""
    ax = _axes(ax)
    for path in np.asarray(paths)[:n_show]:
        path = np.array(path, dtype=float)
        if periodic:
            path = (path + np.pi) % (2 * np.pi) - np.pi
            jumps = np.abs(np.diff(path, axis=0)).max(1) > np.pi
            path = np.insert(path, np.flatnonzero(jumps) + 1, np.nan, axis=0)
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
