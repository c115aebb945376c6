"""Transition paths under the force field along a molecular geodesic (the last step of the pipeline).

    paths = sample_molecular_paths(system, model, geo, n_paths=100, steps_per_point=32,
                                   dynamics=Dynamics(seed=1, n_workers=2))
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from typing import Callable

import numpy as np
import torch

from ..core.checks import check_choice
from ..core.langevin import respace_by_tilt
from .dynamics import Dynamics
from .geodesic import MolecularGeodesic
from .limits import as_count
from .model import MolecularModel
from .restrained import PathSet, restraint_schedule, sample_paths
from .system import MolecularSystem

__all__ = ["path_targets", "sample_molecular_paths"]


#: values of ``spacing``: the geodesic's own points, or respaced by :func:`respace_by_tilt`
SPACINGS = ("geodesic", "tilt")


def path_targets(system: MolecularSystem, model: MolecularModel, geodesic: MolecularGeodesic,
                 curve_index: int = 0, spacing: str = "geodesic") -> tuple[np.ndarray, np.ndarray]:
    """Restraint targets ``(N, n_sel, 3)`` nm (aligned frame) and stiffnesses ``(N,)`` kJ/mol/nm^2
    of one curve: ``featurizer.inverse(x_n / alpha_n)`` and ``kT * exp(lam_n) / scale^2``
    (docs/method.md, section 5). ``spacing="tilt"`` first respaces the curve so that every block
    moves the target by the same number of restraint widths
    (:func:`~tps_diffusion.core.langevin.respace_by_tilt`)."""
    check_choice(spacing, "spacing", SPACINGS)
    c = _curve(geodesic, curve_index)
    if spacing == "tilt":
        c = respace_by_tilt(torch.as_tensor(c), model.featurizer.normalizer).numpy()
    if not (np.isfinite(system.temperature) and system.temperature > 0):
        raise ValueError(f"the system temperature must be finite and > 0 K; got {system.temperature}")
    return restraint_schedule(model.featurizer, c[:, 1:], c[:, 0], system.kT)


def _curve(geodesic: MolecularGeodesic, curve_index: int = 0) -> np.ndarray:
    """One curve ``(N, 1 + D)`` as float64 numpy."""
    curve = geodesic.curve
    if curve.ndim == 3:
        n = curve.shape[0]
        curve_index = as_count(curve_index, "curve_index", minimum=-n, maximum=n - 1,
                               hint=f" (the geodesic has {n} curves)")
        curve = curve[curve_index]
    if curve.ndim != 2 or curve.shape[0] < 1:
        raise ValueError(f"the geodesic curve must be (N, 1 + D) or (B, N, 1 + D); got shape {tuple(curve.shape)}: "
                         "the geodesic file is corrupt; recompute it")
    return curve.detach().cpu().double().numpy()


def sample_molecular_paths(system: MolecularSystem, model: MolecularModel, geodesic: MolecularGeodesic, n_paths: int,
                           steps_per_point: int, dynamics: Dynamics | None = None, start=None, curve_index: int = 0,
                           record_interval: int = 1, compute_energies: bool = True, spacing: str = "geodesic",
                           progress: bool = True, callback: Callable[[dict], None] | None = None,
                           executor: Executor | None = None, store: str | os.PathLike | None = None) -> PathSet:
    """Annealed Langevin transition paths under the force field along a geodesic (OpenMM).

    Every path starts at ``start`` (default: the geodesic's full-atom start structure, e.g. the
    state's minimum) and runs ``steps_per_point`` Langevin steps per curve point with a harmonic
    restraint of the selected atoms towards the point's target (see :func:`path_targets`).
    ``dynamics`` (default ``Dynamics(seed=0, n_workers=2)``): temperature (K, default the
    system's), time step (ps), friction (1/ps), platform, seed, workers. The result's ``energies``
    are force-field potentials (kJ/mol) of the recorded frames; ``settings`` also record the
    geodesic config and the curve's lowest log-SNR. ``spacing``: see :func:`path_targets`.
    ``callback``, ``executor`` (any ``concurrent.futures.Executor``, a Dask cluster's), ``store`` (a
    directory the paths stream into; an interrupted call resumes): see :func:`sample_paths`.
    """
    n_paths, steps_per_point = as_count(n_paths, "n_paths"), as_count(steps_per_point, "steps_per_point")
    record_interval = as_count(record_interval, "record_interval")
    model.check_system(system)
    targets, stiffness = path_targets(system, model, geodesic, curve_index, spacing)
    if start is None:
        first = geodesic.start(curve_index)
        if first.positions is None:
            raise ValueError(f"the geodesic's start ({first.label}) has only the selected atoms; pass start= with all "
                             f"{model.featurizer.n_atoms} atoms")
        start = first.positions
    ps = sample_paths(system, model.featurizer, targets, stiffness, start, n_paths, steps_per_point,
                      dynamics=dynamics or Dynamics(seed=0, n_workers=2), record_interval=record_interval,
                      compute_energies=compute_energies, progress=progress, callback=callback, executor=executor,
                      store=store)
    ps.settings.update(geodesic=geodesic.config.to_dict(), min_lambda=float(_curve(geodesic, curve_index)[:, 0].min()),
                       max_stiffness=float(stiffness.max()), curve_index=int(curve_index), spacing=spacing)
    return ps
