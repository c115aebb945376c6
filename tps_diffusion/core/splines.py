"""Cubic splines in spacetime with fixed endpoints, batched over curves.

A curve ``gamma(s), s in [0, 1]`` through ``1 + D``-dimensional spacetime points is a natural
cubic spline through ``M + 2`` equally spaced knots: the two fixed endpoints and ``M``
learnable interior nodes. Because spline interpolation is linear in the knot values, the
curve at any set of curve times is one fixed matrix times the knots.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def natural_spline_matrix(n_knots: int, s: Tensor) -> Tensor:
    """Matrix ``W (len(s), n_knots)`` with ``spline(s) = W @ knot_values``.

    Knots sit at ``linspace(0, 1, n_knots)``; natural boundary conditions (zero second
    derivative at both ends).
    """
    dtype = s.dtype if s.is_floating_point() else torch.float64
    k = n_knots
    h = 1.0 / (k - 1)
    eye = torch.eye(k, dtype=torch.float64)
    # second derivatives m: m_0 = m_{k-1} = 0, m_{i-1} + 4 m_i + m_{i+1} = 6 / h^2 (y_{i-1} - 2 y_i + y_{i+1})
    m = torch.zeros(k, k, dtype=torch.float64)
    if k > 2:
        a = 4.0 * torch.eye(k - 2, dtype=torch.float64)
        off = torch.ones(k - 3, dtype=torch.float64)
        a += torch.diag(off, 1) + torch.diag(off, -1)
        rhs = 6.0 / h**2 * (eye[:-2] - 2.0 * eye[1:-1] + eye[2:])
        m[1:-1] = torch.linalg.solve(a, rhs)
    s64 = s.to(torch.float64).clamp(0.0, 1.0)
    i = torch.clamp((s64 / h).floor().long(), max=k - 2)
    u = s64 / h - i.to(torch.float64)
    lin = (1 - u)[:, None] * eye[i] + u[:, None] * eye[i + 1]
    cub = (((1 - u) ** 3 - (1 - u))[:, None] * m[i] + (u**3 - u)[:, None] * m[i + 1]) * h**2 / 6.0
    return (lin + cub).to(dtype)


class SpacetimeSpline(nn.Module):
    """B cubic-spline curves in spacetime with fixed endpoints.

    Parameters
    ----------
    start, end : Tensor ``(B, 1 + D)`` or ``(1 + D,)``
        Fixed endpoints ``(lam, x)``.
    n_nodes : int
        Learnable interior knots per curve, initialised on the straight line.
    """

    def __init__(self, start: Tensor, end: Tensor, n_nodes: int = 8):
        super().__init__()
        start, end = torch.atleast_2d(start), torch.atleast_2d(end)
        start, end = torch.broadcast_tensors(start, end)
        self.register_buffer("start", start.clone())
        self.register_buffer("end", end.clone())
        t = torch.linspace(0.0, 1.0, n_nodes + 2, dtype=start.dtype, device=start.device)[1:-1, None]
        self.nodes = nn.Parameter(start[:, None] + t * (end - start)[:, None])  # (B, M, 1 + D)
        self._weights: dict[int, Tensor] = {}

    @property
    def knots(self) -> Tensor:
        """All knots ``(B, M + 2, 1 + D)``, endpoints included."""
        return torch.cat([self.start[:, None], self.nodes, self.end[:, None]], dim=1)

    def forward(self, n_points: int) -> Tensor:
        """Curve at ``n_points`` equally spaced curve times, ``(B, n_points, 1 + D)``."""
        w = self._weights.get(n_points)
        if w is None or w.device != self.nodes.device or w.dtype != self.nodes.dtype:
            s = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
            w = natural_spline_matrix(self.nodes.shape[1] + 2, s).to(self.nodes)
            self._weights[n_points] = w
        return torch.einsum("nk,bkd->bnd", w, self.knots)
