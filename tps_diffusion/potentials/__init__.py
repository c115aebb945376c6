"""Differentiable torch potentials ``U(x: Tensor[..., D]) -> Tensor[...]`` for the core sampler:
2-D test surfaces (the alanine dipeptide (phi, psi) surface of the paper's Table 1, Mueller-Brown),
TorchANI, and the 2-D path metrics of the benchmark. Torch only (no OpenMM)."""

from .metrics import hit_rate, max_energy, minimax_bound
from .surfaces import MullerBrown, PeriodicGridSurface, load_aldp_surface

__all__ = ["hit_rate", "max_energy", "minimax_bound", "MullerBrown", "PeriodicGridSurface", "load_aldp_surface"]
