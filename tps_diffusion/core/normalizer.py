"""Training data in model coordinates: an affine normalisation that maps back exactly.

Model coordinates are ``x_model = (x - mean) / scale`` with a per-feature ``mean`` and one
scalar ``scale`` (isotropic, so that a restraint of stiffness ``k`` in model units is a
restraint of stiffness ``k / scale^2`` in physical units for every coordinate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .checks import check_int, check_real


@dataclass(frozen=True)
class Normalizer:
    """``x_model = (x - mean) / scale``; ``mean`` is ``(D,)`` in data units, ``scale`` a float."""

    mean: np.ndarray
    scale: float

    def __post_init__(self):
        mean = self.mean.detach().cpu().numpy() if isinstance(self.mean, Tensor) else self.mean
        try:
            mean = np.asarray(mean, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"Normalizer.mean must be an array of numbers (D,), got {type(self.mean).__name__}; pass "
                            "a numpy array") from None
        if mean.ndim != 1 or mean.size == 0:
            raise ValueError(f"Normalizer.mean must be a non-empty 1-D array (D,), got shape {mean.shape}; pass one "
                             "value per feature")
        if not np.isfinite(mean).all():
            raise ValueError("Normalizer.mean contains NaN/inf; fit it on finite samples (Normalizer.fit)")
        check_real(self.scale, "Normalizer.scale", low=0.0, low_open=True,
                   fix="the scale is the (positive) overall standard deviation of the data; use Normalizer.fit")

    @classmethod
    def identity(cls, dim: int) -> "Normalizer":
        check_int(dim, "Normalizer.identity dim", 1)
        return cls(np.zeros(dim), 1.0)

    @classmethod
    def fit(cls, samples: np.ndarray) -> "Normalizer":
        """Mean per feature and the overall standard deviation of ``samples (n, D)``."""
        samples = check_samples(samples)
        mean = samples.mean(0)
        return cls(mean, float(np.sqrt(((samples - mean) ** 2).mean())))

    @property
    def dim(self) -> int:
        return len(self.mean)

    def forward(self, x):
        """Data units -> model units (numpy or torch, ``(..., D)``)."""
        return (x - self._as(x, self.mean)) / self.scale

    def inverse(self, x):
        """Model units -> data units (numpy or torch, ``(..., D)``)."""
        return x * self.scale + self._as(x, self.mean)

    @staticmethod
    def _as(x, a: np.ndarray):
        return torch.as_tensor(a, dtype=x.dtype, device=x.device) if isinstance(x, Tensor) else a

    def to_dict(self) -> dict:
        return {"mean": np.asarray(self.mean, dtype=float).tolist(), "scale": float(self.scale)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], dtype=float), float(d["scale"]))


def check_samples(samples: np.ndarray, dim: int | None = None) -> np.ndarray:
    """Validate a ``(n, D)`` array of training samples; raise a one-line error otherwise."""
    try:
        samples = np.asarray(samples, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"training samples must be an (n_samples, n_features) array of numbers, got "
                        f"{type(samples).__name__}; pass a numpy array") from None
    if samples.ndim != 2 or samples.shape[0] < 2:
        raise ValueError(f"training samples must be a 2-D array (n_samples >= 2, n_features); "
                         f"got shape {samples.shape}")
    if dim is not None and samples.shape[1] != dim:
        raise ValueError(f"training samples have {samples.shape[1]} features but the model expects {dim}; featurise "
                         "with the model's featurizer")
    if samples.shape[1] < 1:
        raise ValueError(f"training samples have no features (shape {samples.shape}); pass an (n_samples, n_features) "
                         "array with n_features >= 1")
    if not np.isfinite(samples).all():
        raise ValueError("training samples contain NaN or inf; drop those frames (e.g. "
                         "samples[np.isfinite(samples).all(1)])")
    mean = samples.mean(0)
    spread = float(np.sqrt(((samples - mean) ** 2).mean()))
    magnitude = float(np.sqrt((mean**2).mean()))
    if spread == 0.0 or spread < 1e-12 * magnitude:
        raise ValueError(f"all training samples are (nearly) identical (spread {spread:.3g}); need samples of the "
                         "basins, not one structure repeated")
    return samples
