"""Analytic and tabulated energy surfaces as differentiable torch callables.

Every energy is a ``torch.nn.Module`` with signature ``U(x: Tensor[..., D]) -> Tensor[...]``:
any batch shape, differentiable by autograd, result in the dtype and on the device of ``x``.
Coefficients are float64 buffers, so ``.to(device)`` moves them, and they are cast to the dtype
of ``x`` when called (float32 and float64 inputs both work; keep the module itself in float64,
i.e. do not call ``.float()`` on it).

- :class:`PeriodicGridSurface`: periodic cubic B-spline interpolant of a 2-D periodic grid, e.g.
  the alanine dipeptide (phi, psi) surface of the benchmark (:func:`load_aldp_surface`).
- :class:`MullerBrown`: the Mueller-Brown surface (Mueller & Brown 1979).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..utils.systems_dir import systems_dir

__all__ = ["PeriodicGridSurface", "MullerBrown", "load_aldp_surface"]

# Rows: coefficients of 1, u, u^2, u^3; columns: the uniform cubic B-spline weights of the
# control points i-1, i, i+1, i+2 at fractional position u in [0, 1) of the cell [i, i+1].
_BSPLINE = np.array([[1.0, 4.0, 1.0, 0.0], [-3.0, 0.0, 3.0, 0.0], [3.0, -6.0, 3.0, 0.0], [-1.0, 3.0, -3.0, 1.0]]) / 6.0


def _periodic_bspline_coefficients(values: np.ndarray) -> np.ndarray:
    """Control points ``c`` (n, m) whose periodic cubic B-spline passes through ``values`` (n, m).

    At a node the spline equals ``(c[i-1] + 4 c[i] + c[i+1]) / 6`` along each axis: a circulant
    system per axis, diagonal in Fourier space with eigenvalues ``(4 + 2 cos(2 pi k / n)) / 6``
    (never below 1/3, so always well conditioned).
    """
    n, m = values.shape
    eig_n = (4.0 + 2.0 * np.cos(2.0 * np.pi * np.arange(n) / n)) / 6.0
    eig_m = (4.0 + 2.0 * np.cos(2.0 * np.pi * np.arange(m) / m)) / 6.0
    return np.real(np.fft.ifft2(np.fft.fft2(values) / np.outer(eig_n, eig_m)))


def _cell_polynomials(values: np.ndarray) -> np.ndarray:
    """Per-cell bicubic polynomials of the periodic B-spline through ``values`` (n, m).

    Returns ``T`` of shape ((n + 1) * (m + 1), 3, 4, 4): for cell ``(i, j)`` (row ``i * (m + 1) + j``;
    cells ``n`` and ``m`` repeat cells 0 so that a coordinate rounded onto the upper end of the
    period stays in range), ``T[., 0, p, q]`` is the coefficient of ``u^p v^q`` of the energy,
    ``T[., 1]`` that of its derivative in ``v`` and ``T[., 2]`` that of its derivative in ``u``,
    with ``(u, v)`` in [0, 1]^2 the position inside the cell in units of the grid spacing.
    """
    n, m = values.shape
    coef = np.pad(_periodic_bspline_coefficients(values), ((1, 3), (1, 3)), mode="wrap")
    windows = np.lib.stride_tricks.sliding_window_view(coef, (4, 4))[: n + 1, : m + 1]
    poly = np.einsum("pa,ijab,qb->ijpq", _BSPLINE, windows, _BSPLINE)
    d_v = np.zeros_like(poly)
    d_v[..., :3] = poly[..., 1:] * np.arange(1, 4)
    d_u = np.zeros_like(poly)
    d_u[..., :3, :] = poly[..., 1:, :] * np.arange(1, 4)[:, None]
    return np.stack((poly, d_v, d_u), axis=2).reshape((n + 1) * (m + 1), 3, 4, 4)


class _GridSpline(torch.autograd.Function):
    """Energy (N,) of points (N, 2) from the cell polynomials; the gradient comes from the same pass."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, lower: float, scale: Tensor, size: Tensor, stride: int) -> Tensor:
        t = torch.remainder((x - lower) * scale, size)
        cell = torch.floor(t)
        frac = t - cell
        cell = cell.long()
        poly = table.index_select(0, cell[:, 0] * stride + cell[:, 1])  # (N, 3, 4, 4)
        v = frac[:, 1, None, None]
        acc = torch.addcmul(poly[..., 2], poly[..., 3], v)
        acc = torch.addcmul(poly[..., 1], acc, v)
        acc = torch.addcmul(poly[..., 0], acc, v)  # (N, 3, 4): Horner in v
        u = frac[:, :1]
        out = torch.addcmul(acc[..., 2], acc[..., 3], u)
        out = torch.addcmul(acc[..., 1], out, u)
        out = torch.addcmul(acc[..., 0], out, u)  # (N, 3): U, dU/dv, dU/du
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(out[:, [2, 1]] * scale)
        return out[:, 0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_energy: Tensor):
        (grad_x,) = ctx.saved_tensors
        return grad_energy[:, None] * grad_x, None, None, None, None, None


class PeriodicGridSurface(torch.nn.Module):
    """Smooth (C2) periodic interpolant of energies tabulated on a periodic 2-D grid.

    Node ``(i, j)`` sits at ``(lower + i * period / n_phi, lower + j * period / n_psi)``; the grid
    has no duplicate row or column at ``lower + period``. The interpolant is the periodic cubic
    B-spline through the nodes: it reproduces every grid value (to round-off), is periodic with
    ``period`` along both axes and twice continuously differentiable.

    Parameters
    ----------
    values : array or Tensor, shape (n_phi, n_psi)
        Energies at the grid nodes, ``values[i, j]`` at (phi_i, psi_j). Units are kept as given.
    lower : float
        Coordinate of the first node along both axes (radians for dihedral surfaces).
    period : float
        Period along both axes.

    Call with ``x`` of shape (..., 2) holding (phi, psi); returns the energy, shape (...).
    First derivatives come from autograd (computed together with the energy, so an energy plus
    gradient costs one pass); second derivatives are not supported (autograd raises).
    """

    def __init__(self, values: Tensor | np.ndarray, lower: float = -math.pi, period: float = 2 * math.pi):
        super().__init__()
        grid = torch.as_tensor(values, dtype=torch.float64).detach().cpu().numpy().copy()
        if grid.ndim != 2 or min(grid.shape) < 4 or not np.isfinite(grid).all():
            raise ValueError(f"values must be a finite 2-D grid of at least 4 x 4 nodes, got shape {grid.shape}")
        if not period > 0:
            raise ValueError(f"period must be positive, got {period}")
        self.lower = float(lower)
        self.period = float(period)
        # Buffers follow .to(device) but stay out of state_dict: a surface is rebuilt from its grid.
        self.register_buffer("_values", torch.from_numpy(grid), persistent=False)
        self.register_buffer("_table", torch.from_numpy(_cell_polynomials(grid)), persistent=False)
        self.register_buffer("_size", torch.tensor(grid.shape, dtype=torch.float64), persistent=False)
        self._cast: dict = {}

    @property
    def grid_values(self) -> np.ndarray:
        """Energies at the nodes, numpy float64 of shape (n_phi, n_psi)."""
        return self._values.cpu().numpy().copy()

    @property
    def grid_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Node coordinates ``(phi (n_phi,), psi (n_psi,))``, from ``lower`` in steps of ``period / n``."""
        n, m = self._values.shape
        return (
            self.lower + self.period * np.arange(n) / n,
            self.lower + self.period * np.arange(m) / m,
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "PeriodicGridSurface":
        """Read a text grid with one node per line, columns ``phi psi U`` (radians, energy).

        Lines starting with ``#`` are comments. The rows may come in any order but must fill a
        regular periodic grid starting at -pi with spacing ``2 pi / n`` along each axis (no
        duplicate +pi row), every node exactly once.
        """
        path = Path(path)
        fmt = "expected a text file of 'phi psi U' rows (radians) on a periodic grid starting at -pi, spacing 2*pi/n"
        if not path.is_file():
            raise FileNotFoundError(f"grid surface file not found: {path} ({fmt})")
        try:
            with warnings.catch_warnings():  # an empty file warns here and fails below
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(path, comments="#", ndmin=2, dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"{path}: cannot parse ({err}); {fmt}") from None
        if table.shape[0] == 0 or table.shape[1] != 3:
            raise ValueError(f"{path}: found {table.shape[1]} columns in {table.shape[0]} rows; {fmt}")
        if not np.isfinite(table).all():
            raise ValueError(f"{path}: non-finite numbers; {fmt}")
        lower, period = -math.pi, 2 * math.pi
        shape = tuple(np.unique(np.round(table[:, axis], 6)).size for axis in range(2))
        index = []
        for axis, n in enumerate(shape):
            pos = (table[:, axis] - lower) / (period / n)
            idx = np.rint(pos).astype(np.int64)
            if np.abs(pos - idx).max() > 1e-4 or idx.min() < 0 or idx.max() >= n:
                raise ValueError(f"{path}: column {axis + 1} is not on a grid of {n} nodes from -pi; {fmt}")
            index.append(idx)
        flat = index[0] * shape[1] + index[1]
        if table.shape[0] != shape[0] * shape[1] or np.unique(flat).size != table.shape[0]:
            raise ValueError(f"{path}: {table.shape[0]} rows do not fill the {shape[0]} x {shape[1]} grid once; {fmt}")
        grid = np.empty(shape)
        grid[index[0], index[1]] = table[:, 2]
        return cls(grid, lower=lower, period=period)

    def _tensors(self, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """Cell table, inverse spacing and grid size in ``dtype`` (cached per dtype and device)."""
        key = (dtype, self._table.device, self._table.data_ptr())
        if key not in self._cast:
            self._cast.clear()
            self._cast[key] = (
                self._table.to(dtype),
                (self._size / self.period).to(dtype),
                self._size.to(dtype),
            )
        return self._cast[key]

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != 2:
            raise ValueError(f"expected points of shape (..., 2), got {tuple(x.shape)}")
        table, scale, size = self._tensors(x.dtype)
        energy = _GridSpline.apply(x.reshape(-1, 2), table, self.lower, scale, size, self._values.shape[1] + 1)
        return energy.reshape(x.shape[:-1])


class MullerBrown(torch.nn.Module):
    """Mueller-Brown surface, ``V(x, y) = sum_k A_k exp(a_k dx^2 + b_k dx dy + c_k dy^2)``.

    ``dx = x - x0_k``, ``dy = y - y0_k`` with the parameters of K. Mueller and L. D. Brown,
    Theor. Chim. Acta 53, 75 (1979). Energies in the paper's units (minimum -146.70 at
    (-0.558, 1.442)). Call with ``x`` of shape (..., 2) holding (x, y); returns shape (...).
    Plain torch operations, so autograd gives derivatives of any order.
    """

    A = (-200.0, -100.0, -170.0, 15.0)
    a = (-1.0, -1.0, -6.5, 0.7)
    b = (0.0, 0.0, 11.0, 0.6)
    c = (-10.0, -10.0, -6.5, 0.7)
    x0 = (1.0, 0.0, -0.5, -1.0)
    y0 = (0.0, 0.5, 1.5, 1.0)

    def __init__(self):
        super().__init__()
        for name in ("A", "a", "b", "c", "x0", "y0"):
            self.register_buffer(f"_{name}", torch.tensor(getattr(self, name), dtype=torch.float64), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != 2:
            raise ValueError(f"expected points of shape (..., 2), got {tuple(x.shape)}")
        dx = x[..., :1] - self._x0.to(x.dtype)
        dy = x[..., 1:] - self._y0.to(x.dtype)
        exponent = self._a.to(x.dtype) * dx * dx + self._b.to(x.dtype) * dx * dy + self._c.to(x.dtype) * dy * dy
        return (self._A.to(x.dtype) * torch.exp(exponent)).sum(-1)


def load_aldp_surface() -> PeriodicGridSurface:
    """The benchmark alanine dipeptide (phi, psi) surface, 89 x 89 nodes, energies in kJ/mol.

    Read from ``utils.systems_dir.systems_dir() / "aldp_surface" / "aldp_phi_psi_surface.dat"``.
    """
    return PeriodicGridSurface.from_file(systems_dir() / "aldp_surface" / "aldp_phi_psi_surface.dat")
