"""Transition paths under the force field along a molecular geodesic (the last step of the pipeline).

    paths = sample_molecular_paths(system, model, geo, n_paths=100, steps_per_point=32,
                                   dynamics=Dynamics(seed=1, n_workers=2))

Several transitions at once: a geodesic of several pairs (``molecular_geodesic(..., pairs=...)``) and
:func:`sample_pair_paths`, one :class:`~tps_diffusion.molecular.restrained.PathSet` per pair::

    geo = molecular_geodesic(model, system, pairs="all")
    paths = sample_pair_paths(system, model, geo, n_paths=100, steps_per_point=32, dynamics=Dynamics(seed=1),
                              executor=client)            # all pairs' paths on the same workers
    paths["C5:C7ax"].max_energy()
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core.checks import check_choice, check_real
from ..core.langevin import interpolate_curve, kick_positions
from .dynamics import Dynamics
from .geodesic import PAIR_SEPARATOR, MolecularGeodesic
from .limits import as_count
from .model import MolecularModel
from .parallel import as_executor
from .restrained import PathSet, restraint_schedule, sample_paths
from .system import MolecularSystem

__all__ = ["PairPaths", "RestraintSettings", "pair_directory", "pair_seed", "path_targets", "sample_molecular_paths",
           "sample_pair_paths"]


#: values of ``RestraintSettings.spacing``: the geodesic's own points, equal restraint kicks per block, or equal
#: thermodynamic length per block (kicks and stiffening)
SPACINGS = ("geodesic", "tilt", "thermodynamic")
#: values of ``RestraintSettings.targets``: the paper's tilt centres, or the denoiser's posterior mean
TARGETS = ("tilt", "denoised")


@dataclass(frozen=True)
class RestraintSettings:
    """How a geodesic curve becomes restraint targets and stiffnesses (docs/method.md, section 5).

    Parameters
    ----------
    targets : {"tilt", "denoised"}
        ``"tilt"`` (the paper's Algorithm 1): target ``x_n / alpha_n``, noisy where the log-SNR is
        low, which the low stiffness there tolerates. ``"denoised"``: the posterior mean
        ``D(x_n, lam_n)``, a smooth structure at every noise level, which a stiffness floor can then
        hold the walkers to while the molecule crosses.
    spacing : {"geodesic", "tilt", "thermodynamic"}
        ``"geodesic"``: the curve's own points (equal information length). ``"tilt"``: the curve
        resampled so that every block moves the target by the same number of restraint widths,
        ``sqrt(k_n / kT) |T_{n+1} - T_n|``, computed on the targets and stiffnesses chosen here.
        ``"thermodynamic"``: equal thermodynamic length per block, the kicks and the stiffening
        together, ``sqrt(k_n / kT |T_{n+1} - T_n|^2 + (D / 2) max(0, ln k_{n+1} - ln k_n)^2)`` with ``D``
        the restrained coordinates (see :func:`~tps_diffusion.core.langevin.kick_positions`): a
        stiffness that rises while the target stands still, as at the end of a path, gets time too.
    min_stiffness, max_stiffness : float, optional
        Clamp the stiffness ``kT exp(lam_n) / scale^2`` to ``[min, max]``, kJ/mol/nm^2 (None: no bound).
    """

    targets: str = "tilt"
    spacing: str = "geodesic"
    min_stiffness: float | None = None
    max_stiffness: float | None = None

    def __post_init__(self) -> None:
        check_choice(self.targets, "targets", TARGETS)
        check_choice(self.spacing, "spacing", SPACINGS)
        for name in ("min_stiffness", "max_stiffness"):
            v = getattr(self, name)
            if v is not None:
                check_real(v, name, low=0.0, low_open=True, fix="give a stiffness in kJ/mol/nm^2 > 0, or None")
        if None not in (self.min_stiffness, self.max_stiffness) and self.min_stiffness > self.max_stiffness:
            raise ValueError(f"min_stiffness ({self.min_stiffness:g}) exceeds max_stiffness ({self.max_stiffness:g}) "
                             "kJ/mol/nm^2; swap them")

    def to_dict(self) -> dict:
        return asdict(self)


def path_targets(system: MolecularSystem, model: MolecularModel, geodesic: MolecularGeodesic,
                 curve_index: int = 0, restraint: RestraintSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Restraint targets ``(N, n_sel, 3)`` nm (aligned frame) and stiffnesses ``(N,)`` kJ/mol/nm^2
    of one curve. Default (the paper): ``featurizer.inverse(x_n / alpha_n)`` and
    ``kT * exp(lam_n) / scale^2`` (docs/method.md, section 5); ``restraint``: see
    :class:`RestraintSettings` (posterior-mean targets, stiffness bounds, equal-kick spacing)."""
    restraint = RestraintSettings() if restraint is None else restraint
    if not isinstance(restraint, RestraintSettings):
        raise TypeError(f"restraint must be a RestraintSettings, got {type(restraint).__name__}")
    if not (np.isfinite(system.temperature) and system.temperature > 0):
        raise ValueError(f"the system temperature must be finite and > 0 K; got {system.temperature}")
    c = _curve(geodesic, curve_index)
    targets, stiffness = _schedule(model, c, restraint, system.kT)
    if restraint.spacing != "geodesic" and len(c) > 1:
        flat = torch.as_tensor(targets.reshape(len(c), -1))
        weight = flat.shape[1] / 2 if restraint.spacing == "thermodynamic" else 0.0
        where = kick_positions(flat, torch.as_tensor(stiffness / system.kT), stiffening_weight=weight)
        targets, stiffness = _schedule(model, interpolate_curve(torch.as_tensor(c), where).numpy(), restraint,
                                       system.kT)
    return targets, stiffness


def _schedule(model: MolecularModel, c: np.ndarray, restraint: RestraintSettings,
              kT: float) -> tuple[np.ndarray, np.ndarray]:
    """Targets and (clamped) stiffnesses of the curve points ``c`` ``(N, 1 + D)``."""
    targets, stiffness = restraint_schedule(model.featurizer, c[:, 1:], c[:, 0], kT)
    if restraint.targets == "denoised":
        den = model.denoiser
        dtype = next(den.parameters()).dtype
        with torch.no_grad():
            x0 = den(torch.as_tensor(c[:, 1:], dtype=dtype), torch.as_tensor(c[:, 0], dtype=dtype))
        targets = model.featurizer.normalizer.inverse(x0.double()).numpy().reshape(targets.shape)
    if restraint.min_stiffness is not None or restraint.max_stiffness is not None:
        stiffness = np.clip(stiffness, restraint.min_stiffness, restraint.max_stiffness)
    return targets, stiffness


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


def _restraints(system: MolecularSystem, model: MolecularModel, geodesic: MolecularGeodesic, curve_index: int,
                restraint: RestraintSettings | None, start) -> tuple[np.ndarray, np.ndarray, Any]:
    """Targets ``(N, n_sel, 3)`` nm, stiffnesses ``(N,)`` kJ/mol/nm^2 and start structure of one curve
    (``start`` None: the curve's full-atom start), checked."""
    targets, stiffness = path_targets(system, model, geodesic, curve_index, restraint)
    if start is None:
        first = geodesic.start(curve_index)
        if first.positions is None:
            raise ValueError(f"the geodesic's start of curve {curve_index} ({first.label}) has only the selected "
                             f"atoms: make the geodesic from full structures, or pass start= with all "
                             f"{model.featurizer.n_atoms} atoms")
        start = first.positions
    return targets, stiffness, start


def _annotated(ps: PathSet, geodesic: MolecularGeodesic, curve_index: int, stiffness: np.ndarray,
               restraint: RestraintSettings | None) -> PathSet:
    """``ps`` with the geodesic's settings, its curve and pair recorded in ``ps.settings``."""
    ps.settings.update(geodesic=geodesic.config.to_dict(), min_lambda=float(_curve(geodesic, curve_index)[:, 0].min()),
                       max_stiffness=float(stiffness.max()), curve_index=int(curve_index),
                       pair=geodesic.pair_names[curve_index], restraint=(restraint or RestraintSettings()).to_dict())
    return ps


def sample_molecular_paths(system: MolecularSystem, model: MolecularModel, geodesic: MolecularGeodesic, n_paths: int,
                           steps_per_point: int, dynamics: Dynamics | None = None, start=None, curve_index: int = 0,
                           record_interval: int = 1, compute_energies: bool = True,
                           restraint: RestraintSettings | None = None, progress: bool = True,
                           callback: Callable[[dict], None] | None = None,
                           executor: Executor | None = None, store: str | os.PathLike | None = None) -> PathSet:
    """Annealed Langevin transition paths under the force field along a geodesic (OpenMM).

    Every path starts at ``start`` (default: the geodesic's full-atom start structure, e.g. the
    state's minimum) and runs ``steps_per_point`` Langevin steps per curve point with a harmonic
    restraint of the selected atoms towards the point's target (see :func:`path_targets`).
    ``dynamics`` (default ``Dynamics(seed=0, n_workers=2)``): temperature (K, default the
    system's), time step (ps), friction (1/ps), platform, seed, workers. The result's ``energies``
    are force-field potentials (kJ/mol) of the recorded frames; ``settings`` also record the
    geodesic config, the curve's lowest log-SNR and its pair. ``restraint``: targets, stiffness
    bounds and spacing (:class:`RestraintSettings`; default: the paper's).
    ``callback``, ``executor`` (any ``concurrent.futures.Executor``, a Dask cluster's), ``store`` (a
    directory the paths stream into; an interrupted call resumes): see :func:`sample_paths`.
    The paths of several pairs: :func:`sample_pair_paths`.
    """
    n_paths, steps_per_point = as_count(n_paths, "n_paths"), as_count(steps_per_point, "steps_per_point")
    record_interval = as_count(record_interval, "record_interval")
    model.check_system(system)
    targets, stiffness, start = _restraints(system, model, geodesic, curve_index, restraint, start)
    ps = sample_paths(system, model.featurizer, targets, stiffness, start, n_paths, steps_per_point,
                      dynamics=dynamics or Dynamics(seed=0, n_workers=2), record_interval=record_interval,
                      compute_energies=compute_energies, progress=progress, callback=callback, executor=executor,
                      store=store)
    return _annotated(ps, geodesic, curve_index, stiffness, restraint)


def pair_seed(seed: int | None, pair: str) -> int | None:
    """The dynamics seed of the pair named ``pair``, derived from ``seed`` and the name alone.

    Parameters
    ----------
    seed : int or None
        The user's seed (None: fresh entropy, stays None).
    pair : str
        The pair's name (``"C5:C7ax"``).

    Returns
    -------
    int or None
        A seed in ``0 .. 2**32 - 1``: the same whichever other pairs are sampled with it, different
        for different pairs (independent random streams).
    """
    if seed is None:
        return None
    words = np.frombuffer(hashlib.sha256(pair.encode()).digest(), dtype="<u4").tolist()  # the same on any machine
    return int(np.random.SeedSequence([int(seed), *words]).generate_state(1)[0])


def pair_directory(pair: str) -> str:
    """A directory name for the pair named ``pair``: ``"C5:C7ax"`` -> ``"C5_to_C7ax"`` (characters other than
    letters, digits, ``.``, ``_`` and ``-`` become ``_``; no leading dot)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", pair.replace(PAIR_SEPARATOR, "_to_"))
    return re.sub(r"^\.+", "_", name) or "_"


@dataclass(eq=False)
class PairPaths(Mapping[str, PathSet]):
    """Paths of several pairs of endpoints (:func:`sample_pair_paths`): a mapping pair name -> PathSet.

    ``paths["C5:C7ax"]`` (or ``paths["C5", "C7ax"]``): the pair's
    :class:`~tps_diffusion.molecular.restrained.PathSet` (its ``settings`` record ``pair``,
    ``curve_index`` and the pair's ``seed``, see :func:`pair_seed`); ``wall_time_s``: of the whole call.
    """

    paths: dict[str, PathSet]
    wall_time_s: float = 0.0

    def __getitem__(self, pair: str | tuple[str, str]) -> PathSet:
        name = PAIR_SEPARATOR.join(pair) if isinstance(pair, tuple) else pair
        if name not in self.paths:
            raise KeyError(f"no paths of pair {name!r}; pairs: {', '.join(self.paths)}")
        return self.paths[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_paths(self) -> int:
        """Paths of all pairs together."""
        return sum(ps.n_paths for ps in self.paths.values())


class _Stopped(Exception):
    """Raised in the threads of the other pairs after one pair failed (never seen by the caller)."""


def sample_pair_paths(system: MolecularSystem, model: MolecularModel, geodesic: MolecularGeodesic, n_paths: int,
                      steps_per_point: int, dynamics: Dynamics | None = None,
                      pairs: Sequence[str | tuple[str, str]] | None = None, record_interval: int = 1,
                      compute_energies: bool = True, restraint: RestraintSettings | None = None,
                      progress: bool = True, callback: Callable[[dict], None] | None = None,
                      executor: Executor | None = None, store: str | os.PathLike | None = None) -> PairPaths:
    """Transition paths of several pairs of endpoints, one geodesic curve each (OpenMM).

    Parameters
    ----------
    system, model : MolecularSystem, MolecularModel
    geodesic : MolecularGeodesic
        Curves of several pairs (``molecular_geodesic(..., pairs=...)`` or a geodesic file).
    n_paths, steps_per_point : int
        Paths per pair; Langevin steps per curve point (every path makes ``N * steps_per_point`` steps).
    dynamics : Dynamics, optional
        As in :func:`sample_molecular_paths` (default ``Dynamics(seed=0, n_workers=2)``). Pair
        ``name`` samples with seed :func:`pair_seed` ``(dynamics.seed, name)``, so its paths do not
        depend on which other pairs are sampled with it (bitwise on the Reference platform).
    pairs : sequence of str or (start, end), optional
        Names of the geodesic's pairs to sample (default: all of its curves).
    record_interval, compute_energies, restraint : see :func:`sample_molecular_paths`
    progress : bool
        One progress bar over the paths of all pairs.
    callback : callable, optional
        As in :func:`~tps_diffusion.molecular.restrained.sample_paths`, with ``"pair"`` added to the
        dict; never called concurrently.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Where the paths run. Given, the pairs are submitted to it together (one thread each here drives
        its pair's batches), so its workers stay busy until the last path of the last pair; None: the
        pairs one after another, each on ``dynamics.n_workers`` local processes.
    store : path, optional
        A directory with one path store per pair (``store/<pair_directory(name)>``): paths are written
        as they finish and an interrupted call resumes (see :func:`sample_paths`).

    Returns
    -------
    PairPaths
        ``{name: PathSet}`` in the order of ``pairs``; each pair's paths start at its curve's start
        structure.

    Raises
    ------
    ValueError
        Before any path runs: an unknown or repeated pair, no pairs, or a curve without a full-atom
        start. The error of a pair that fails while sampling is raised as soon as it happens; the
        other pairs stop at their next finished path.
    """
    t0 = time.perf_counter()
    n_paths, steps_per_point = as_count(n_paths, "n_paths"), as_count(steps_per_point, "steps_per_point")
    record_interval = as_count(record_interval, "record_interval")
    model.check_system(system)
    indices = list(range(geodesic.n_curves)) if pairs is None else [geodesic.curve_index(p) for p in pairs]
    names = [geodesic.pair_names[i] for i in indices]
    if not names:
        raise ValueError(f"no pairs to sample; give names of the geodesic's pairs: {', '.join(geodesic.pair_names)}")
    dirs = [pair_directory(name) for name in names]
    if len(set(dirs)) != len(dirs):
        twice = sorted({n for n, d in zip(names, dirs) if dirs.count(d) > 1})
        raise ValueError(f"pairs {twice} are given twice (or share a directory name); give each pair once")
    jobs = {name: (i, *_restraints(system, model, geodesic, i, restraint, None)) for name, i in zip(names, indices)}
    dyn = dynamics or Dynamics(seed=0, n_workers=2)
    executor = as_executor(executor)
    bar = tqdm(total=len(names) * n_paths, disable=not progress, unit="path",
               desc=f"{len(names)} pairs x {n_paths} paths")
    lock, stop = threading.Lock(), threading.Event()

    def sample(name: str) -> PathSet:
        index, targets, stiffness, start = jobs[name]
        seen = 0

        def on_path(info: dict) -> None:
            nonlocal seen
            if stop.is_set():
                raise _Stopped
            with lock:
                seen += 1
                bar.update(1)
                if callback is not None:
                    callback({**info, "pair": name})

        ps = sample_paths(system, model.featurizer, targets, stiffness, start, n_paths, steps_per_point,
                          dynamics=replace(dyn, seed=pair_seed(dyn.seed, name)), record_interval=record_interval,
                          compute_energies=compute_energies, progress=False, callback=on_path, executor=executor,
                          store=None if store is None else Path(store) / pair_directory(name))
        with lock:
            bar.update(n_paths - seen)  # paths of an earlier, interrupted call
        return _annotated(ps, geodesic, index, stiffness, restraint)

    try:
        if executor is None:
            done = {name: sample(name) for name in names}
        else:
            threads = ThreadPoolExecutor(len(names), thread_name_prefix="tps-pair")
            try:
                futures = {threads.submit(sample, name): name for name in names}
                done = {futures[f]: f.result() for f in as_completed(futures)}
            except BaseException:
                stop.set()
                raise
            finally:
                threads.shutdown(wait=False, cancel_futures=True)
    finally:
        bar.close()
    return PairPaths({name: done[name] for name in names}, wall_time_s=time.perf_counter() - t0)
