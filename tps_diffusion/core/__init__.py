"""The method, in torch only: no OpenMM, no mdtraj (docs/method.md).

Pipeline: a denoiser trained on samples (:mod:`.training`) defines the spacetime geometry
(:mod:`.geometry`); geodesics between two clean points (:mod:`.geodesic`, curves from
:mod:`.splines`) become transition paths by annealed Langevin dynamics on any differentiable
potential (:mod:`.langevin`), optionally after a string refinement of the curve
(:mod:`.refinement`). Data enter in model coordinates through a :class:`Normalizer`.
"""

from .denoiser import Denoiser, DenoiserConfig
from .device import resolve_device
from .geodesic import MODES, Geodesic, GeodesicConfig, optimise_geodesic
from .geometry import curve_energy, curve_energy_and_grad, curve_length, expectation_params, kl_to_point, natural_params
from .langevin import PathSample, annealed_langevin, langevin, tilt_schedule
from .normalizer import Normalizer, check_samples
from .refinement import RefineConfig, Refinement, refine_curve
from .schedule import add_noise, alpha_sigma
from .splines import SpacetimeSpline
from .training import DiffusionModel, TrainConfig, train

__all__ = [
    "Denoiser", "DenoiserConfig", "resolve_device", "MODES", "Geodesic", "GeodesicConfig", "optimise_geodesic",
    "curve_energy", "curve_energy_and_grad", "curve_length", "expectation_params", "kl_to_point", "natural_params",
    "PathSample", "annealed_langevin", "langevin", "tilt_schedule", "Normalizer", "check_samples", "add_noise",
    "alpha_sigma", "SpacetimeSpline", "DiffusionModel", "TrainConfig", "train", "RefineConfig", "Refinement",
    "refine_curve",
]
