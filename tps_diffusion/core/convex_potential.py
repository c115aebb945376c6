"""Gradient of a potential that is convex in the data coordinates: a denoiser with a PSD Jacobian.

For the variance-preserving diffusion ``x_t = alpha x0 + sigma eps``, the posterior mean is the
gradient of a convex function of ``x_t`` (Tweedie's formula, docs/method.md, section 3):
``E[x0 | x_t] = (sigma^2 / alpha) grad_x A(x_t)`` with ``A(x) = log int p(x0)
exp(alpha x.x0 / sigma^2 - alpha^2 |x0|^2 / (2 sigma^2)) dx0`` a log-partition function, convex
in ``x``. Its Jacobian ``alpha / sigma^2 Cov[x0 | x_t]`` is therefore symmetric and positive
semi-definite, and so is the ``x``-block of the spacetime metric ``d eta . d mu``. A free network
``D`` has neither property: the geodesic then finds directions where the learned metric is
negative and exploits them (a negative "length").

:class:`ConvexPotentialGradient` restores the structure by construction. It is a partially
input-convex network (Amos, Xu and Kolter, "Input Convex Neural Networks", ICML 2017):

    z_1 = softplus(W_1 u + b_1(lam))
    z_k = softplus(V_k (z_{k-1} - log 2) + W_k u + b_k(lam)),   V_k >= 0 elementwise
    Psi(u, lam) = a(lam) . z_L + 1/2 sum_i q_i(lam) u_i^2,     a, q >= 0

convex in ``u`` for every ``lam`` (softplus is convex and non-decreasing, non-negative
combinations of convex functions are convex); ``b``, ``a`` and ``q`` come from an unconstrained
network of the log-SNR. The forward pass returns ``grad_u Psi`` written out by the chain rule (no
autograd inside), so it composes with ``torch.func.jvp``/``vmap`` and double backprop like any
network, and its Jacobian, ``Hess_u Psi``, is a non-negative sum of ``w w^T`` terms.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as nnf


def _positive(raw: Tensor) -> Tensor:
    return nnf.softplus(raw)


class ConvexPotentialGradient(nn.Module):
    """``F(u: (M, D), lam_features: (M, C)) -> grad_u Psi (M, D)`` with ``Psi`` convex in ``u``.

    Parameters
    ----------
    dim : D, the data dimension.
    hidden : width H of every convex layer.
    depth : number L >= 1 of convex layers.
    context : C, the width of the log-SNR features ``lam_features``.
    """

    def __init__(self, dim: int, hidden: int, depth: int, context: int):
        super().__init__()
        self.dim, self.hidden, self.depth = dim, hidden, max(1, depth)
        L, H = self.depth, hidden
        self.w_in = nn.ParameterList([nn.Parameter(torch.randn(H, dim) / math.sqrt(dim)) for _ in range(L)])
        # V_k = softplus(raw): start near 1/H so that a layer's input from the previous one is O(1)
        self.v_raw = nn.ParameterList(
            [nn.Parameter(torch.full((H, H), math.log(math.expm1(1.0 / H))) + 0.1 * torch.randn(H, H) / H)
             for _ in range(L - 1)])
        width = max(64, min(256, H))
        self.context = nn.Sequential(nn.Linear(context, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                     nn.Linear(width, L * H + H + dim))
        with torch.no_grad():  # start with a(lam) ~ 1/sqrt(H) and a small quadratic term
            last = self.context[-1]
            last.weight.mul_(0.1)
            last.bias.zero_()
            last.bias[L * H:L * H + H] = math.log(math.expm1(1.0 / math.sqrt(H)))
            last.bias[L * H + H:] = math.log(math.expm1(0.1))

    def forward(self, u: Tensor, lam_features: Tensor) -> Tensor:
        L, H = self.depth, self.hidden
        c = self.context(lam_features)
        biases = c[:, :L * H].reshape(-1, L, H)
        a = _positive(c[:, L * H:L * H + H])
        q = _positive(c[:, L * H + H:])
        pre, z = [], None
        for k in range(L):
            p = u @ self.w_in[k].T + biases[:, k]
            if k > 0:
                p = p + (z - math.log(2.0)) @ _positive(self.v_raw[k - 1]).T
            pre.append(p)
            z = nnf.softplus(p)
        # backward by hand: g_k = dPsi/dpre_k >= 0
        g = a * torch.sigmoid(pre[-1])
        grad = g @ self.w_in[-1]
        for k in range(L - 2, -1, -1):
            g = (g @ _positive(self.v_raw[k])) * torch.sigmoid(pre[k])
            grad = grad + g @ self.w_in[k]
        return grad + q * u
