"""Geodesics between molecular structures: endpoints from states or frames, the learned metric's
positivity check, and geodesic files.

    geo = molecular_geodesic(model, system, "C5", "C7ax", mode="low_variance")
    geo.save("geodesic.npz"); geo = MolecularGeodesic.load("geodesic.npz")
    many = molecular_geodesic(model, system, pairs=[("C7eq", "C7ax"), ("C5", "C7ax")])   # or pairs="all"
    many.pair_names                       # ['C7eq:C7ax', 'C5:C7ax']: one curve each, optimised in one batch

A :class:`MolecularGeodesic` is the core :class:`~tps_diffusion.core.geodesic.Geodesic` (curves in
model coordinates, docs/method.md, section 4) with what the molecular layer needs to turn it into
paths: the endpoint structures (nm) and their labels, the forbidden point and the metric check.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
import torch

from ..core.geodesic import Geodesic, GeodesicConfig, optimise_geodesic
from ..core.geometry import expectation_params, natural_params, neighbour_kl, rademacher
from ..utils.files import atomic_path, writing
from .model import MolecularModel, structure, updated_config
from .system import MolecularSystem

__all__ = ["MOLECULAR_GEODESIC", "METRIC_TOLERANCE", "ALL_PAIRS", "PAIR_SEPARATOR", "Endpoint", "MetricCheck",
           "MolecularGeodesic", "endpoint_pairs", "molecular_geodesic", "metric_check"]

GEODESIC_FORMAT = "tps_diffusion.geodesic/1"

#: geodesic defaults for Cartesian molecules (tuned on alanine dipeptide, see bench/aldp.py).
#: Two interior spline nodes: with more, Adam finds wiggly curves through regions the
#: basin-only training data never covered, where the learned metric is not positive and the
#: energy estimate runs to large negative values (see :func:`metric_check`).
#: ``rho_kl`` in nats: KLs between posteriors of 30-D features are tens to thousands of nats, so
#: the 2-D value (3) would never be active; 150 keeps alanine dipeptide paths out of C7eq.
MOLECULAR_GEODESIC = dict(lam_end=4.0, n_points=64, n_nodes=2, steps=300, lr=0.1, rho_var=1.0, rho_kl=150.0)

#: largest acceptable negative mass of the energy terms along a geodesic (see :func:`metric_check`)
METRIC_TOLERANCE = 0.05

#: ``pairs=ALL_PAIRS``: every pair of the system's states that have a structure, each once
ALL_PAIRS = "all"
#: between the start and the end in the name of a pair of endpoints (``"C5:C7ax"``)
PAIR_SEPARATOR = ":"


@dataclass
class Endpoint:
    """An endpoint as given: ``label`` (state name, ``"frame"`` or ``"positions"``) and the full
    structure ``(n_atoms, 3)`` nm, or None when only the selected atoms were given."""

    label: str
    positions: np.ndarray | None = None


@dataclass
class MetricCheck:
    """Positivity of the learned metric along one curve: each neighbour term ``d_eta . d_mu`` is a
    symmetrised KL, >= 0 for an exact denoiser. ``negative_mass`` = ``-sum(negative terms) /
    sum(|terms|)``: near 0 for a trustworthy curve, large when the optimiser exploited model errors."""

    n_negative: int
    negative_fraction: float
    negative_mass: float


@dataclass
class MolecularGeodesic:
    """Geodesic curves between molecular endpoints, ready for :func:`sample_molecular_paths`.

    ``geodesic``: the curves ``(B, N, 1 + D)`` in model coordinates and their diagnostics;
    ``starts``/``ends``: one :class:`Endpoint` per curve (or one for all); ``avoid``: label of the
    forbidden region and ``z_star`` its spacetime point ``(1 + D,)`` (mode ``"avoid"``);
    ``metric_check``: one :class:`MetricCheck` per curve; ``labels``: strings stored with the file
    (e.g. ``system``, ``model``, ``model_sha256``); ``pair_names``: one name ``"START:END"`` per
    curve (see :func:`endpoint_pairs`; default: from the endpoints' labels).
    """

    geodesic: Geodesic
    starts: list[Endpoint]
    ends: list[Endpoint]
    avoid: str | None = None
    z_star: torch.Tensor | None = None
    metric_check: list[MetricCheck] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    pair_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.pair_names:
            self.pair_names = [f"{self.start(i).label}{PAIR_SEPARATOR}{self.end(i).label}"
                               for i in range(self.n_curves)]

    @property
    def curve(self) -> torch.Tensor:
        return self.geodesic.curve

    @property
    def n_curves(self) -> int:
        """Number of curves B (one per pair of endpoints)."""
        return self.curve.shape[0] if self.curve.ndim == 3 else 1

    def curve_index(self, pair: str | tuple[str, str]) -> int:
        """Index of the curve of ``pair``: its name ``"START:END"`` or ``(START, END)``.

        Raises
        ------
        ValueError
            One line listing the geodesic's pairs when it has no such pair.
        """
        name = PAIR_SEPARATOR.join(pair) if isinstance(pair, tuple) else str(pair)
        if name not in self.pair_names:
            raise ValueError(f"the geodesic has no pair {name!r}; its pairs: {', '.join(self.pair_names)}")
        return self.pair_names.index(name)

    @property
    def config(self) -> GeodesicConfig:
        return self.geodesic.config

    def start(self, curve_index: int = 0) -> Endpoint:
        return self.starts[curve_index if len(self.starts) > 1 else 0]

    def end(self, curve_index: int = 0) -> Endpoint:
        return self.ends[curve_index if len(self.ends) > 1 else 0]

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write to ``path`` (``.npz``, atomically): the curve (log-SNR ``lam`` and model-coordinate
        ``x``), energy, length, KL profile, config, the start/end structures (nm; ``(n_atoms, 3)`` for
        one endpoint, ``(B, n_atoms, 3)`` with NaN rows for endpoints without all atoms for several),
        the endpoints' labels, each curve's steps, the pair names and ``labels``."""
        geo = self.geodesic
        curve = geo.curve.detach().cpu().double().numpy()
        arrays = dict(format=np.array(GEODESIC_FORMAT), lam=curve[..., 0], x=curve[..., 1:],
                      energy=geo.energy.detach().cpu().double().numpy(),
                      length=geo.length.detach().cpu().double().numpy(),
                      history=np.asarray(geo.history, dtype=float), config=np.array(json.dumps(geo.config.to_dict())),
                      message=np.array(geo.message), steps_done=np.array(geo.steps_done), seconds=np.array(geo.seconds),
                      curve_steps=np.asarray(geo.curve_steps, dtype=int),
                      labels=np.array(json.dumps(self.labels)), pair_names=np.array(json.dumps(self.pair_names)),
                      metric_check=np.array(json.dumps([asdict(c) for c in self.metric_check])))
        for key, ends in (("start", self.starts), ("end", self.ends)):
            arrays.update(_endpoint_arrays(key, ends))
        if geo.kl is not None:
            arrays["kl_nats"] = geo.kl.detach().cpu().double().numpy()
        if self.z_star is not None:
            arrays["z_star"] = self.z_star.detach().cpu().double().numpy()
            arrays["avoid_label"] = np.array(str(self.avoid))
        with atomic_path(path, overwrite) as tmp, writing(path), open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> MolecularGeodesic:
        """Read a file of :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"geodesic file not found: {path}; make one with MolecularGeodesic.save or "
                                    f"'tps-diffusion geodesic'")
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - any failure to read means a bad file
            raise ValueError(f"{path} is not a readable geodesic file ({type(exc).__name__})") from None
        if str(d.get("format", "")) != GEODESIC_FORMAT:
            raise ValueError(f"{path} is not a tps_diffusion geodesic file (format {GEODESIC_FORMAT})")
        curve = torch.as_tensor(np.concatenate([d["lam"][..., None], d["x"]], axis=-1))
        geo = Geodesic(curve=curve, energy=torch.as_tensor(d["energy"]), length=torch.as_tensor(d["length"]),
                       config=GeodesicConfig(**json.loads(str(d["config"]))),
                       kl=torch.as_tensor(d["kl_nats"]) if "kl_nats" in d else None, history=d["history"].tolist(),
                       steps_done=int(d["steps_done"]), curve_steps=d["curve_steps"].tolist() if "curve_steps" in d
                       else [], seconds=float(d["seconds"]), message=str(d["message"]))
        return cls(geo, _endpoints_of(d, "start"), _endpoints_of(d, "end"),
                   avoid=str(d["avoid_label"]) if "avoid_label" in d else None,
                   z_star=torch.as_tensor(d["z_star"]) if "z_star" in d else None,
                   metric_check=[MetricCheck(**c) for c in json.loads(str(d["metric_check"]))],
                   labels=json.loads(str(d["labels"])),
                   pair_names=json.loads(str(d["pair_names"])) if "pair_names" in d else [])


def _endpoint_arrays(key: str, ends: list[Endpoint]) -> dict[str, np.ndarray]:
    """The arrays of :meth:`MolecularGeodesic.save` for the endpoints ``ends`` (``key``: start or end)."""
    arrays = {f"{key}_label": np.array(ends[0].label)}
    if len(ends) > 1:
        arrays[f"{key}_labels"] = np.array(json.dumps([e.label for e in ends]))
    known = [e.positions for e in ends if e.positions is not None]
    if len(ends) == 1 and known:
        arrays[f"{key}_positions_nm"] = np.asarray(known[0], dtype=float)
    elif known:
        missing = np.full(np.shape(known[0]), np.nan)
        arrays[f"{key}_positions_nm"] = np.stack([missing if e.positions is None else np.asarray(e.positions, float)
                                                  for e in ends])
    return arrays


def _endpoints_of(d: dict, key: str) -> list[Endpoint]:
    """The endpoints written by :func:`_endpoint_arrays` (``key``: start or end)."""
    labels = json.loads(str(d[f"{key}_labels"])) if f"{key}_labels" in d else [str(d[f"{key}_label"])]
    xyz = d.get(f"{key}_positions_nm")
    if xyz is None:
        positions = [None] * len(labels)
    elif xyz.ndim == 2:
        positions = [xyz]
    else:
        positions = [None if np.isnan(p).all() else p for p in xyz]
    return [Endpoint(label, p) for label, p in zip(labels, positions, strict=True)]


def _as_list(spec) -> list:
    if isinstance(spec, (list, tuple)) and spec and (isinstance(spec[0], (str, mdtraj.Trajectory))
                                                     or np.ndim(spec[0]) == 2):
        return list(spec)
    return [spec]


def _endpoint_name(system: MolecularSystem, spec) -> str:
    """A state's name, else ``"frame@<hash>"`` / ``"positions@<hash>"`` (SHA-256 of the coordinates)."""
    xyz, label = structure(system, spec)
    if isinstance(spec, str):
        return label
    return f"{label}@{hashlib.sha256(np.ascontiguousarray(xyz, dtype=np.float64).tobytes()).hexdigest()[:8]}"


def endpoint_pairs(system: MolecularSystem, pairs) -> dict[str, tuple[Any, Any]]:
    """Named pairs of endpoints ``{"START:END": (start, end)}``, checked.

    Parameters
    ----------
    system : MolecularSystem
        Names the states.
    pairs : str, sequence or mapping
        :data:`ALL_PAIRS` (``"all"``): every pair of the system's states that have a structure, each
        once, in the order of ``system.states`` (``C5:C7eq``, ``C5:C7ax``, ``C7eq:C7ax`` for alanine
        dipeptide; ask for ``B:A`` explicitly when the paths must start in B); a sequence of
        ``(start, end)``, each a state name, an mdtraj frame or positions ``(n_atoms, 3)`` nm, named
        ``"start:end"`` (a frame or positions by their coordinates: ``"frame@<8 hex digits>"``);
        or a mapping ``{name: (start, end)}`` that names the pairs itself.

    Returns
    -------
    dict
        ``{name: (start, end)}`` in the order given.

    Raises
    ------
    ValueError
        One line naming the fix: no pairs, an unknown state, a pair whose start is its end, a name
        given twice, or ``"all"`` for a system with fewer than two states.
    """
    if isinstance(pairs, str):
        if pairs != ALL_PAIRS:
            raise ValueError(f"pairs must be {ALL_PAIRS!r}, a list of (start, end) or a mapping name -> (start, end); "
                             f"got the string {pairs!r}")
        states = [s for s in system.states if s in system.state_positions]
        if len(states) < 2:
            raise ValueError(f"pairs={ALL_PAIRS!r} needs two states with structures; {system.name} has "
                             f"{', '.join(states) or 'none'}: give the pairs as (start, end) frames or positions")
        pairs = list(itertools.combinations(states, 2))
    if isinstance(pairs, Mapping):
        items = list(pairs.items())
    elif isinstance(pairs, Sequence):
        items = [(None, p) for p in pairs]
    else:
        raise TypeError(f"pairs must be {ALL_PAIRS!r}, a list of (start, end) or a mapping name -> (start, end); got "
                        f"{type(pairs).__name__}")
    if not items:
        raise ValueError(f"no endpoint pairs given; give at least one (start, end) pair, or {ALL_PAIRS!r}")
    named: dict[str, tuple[Any, Any]] = {}
    for name, pair in items:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"each pair must be (start, end); got {type(pair).__name__} "
                             f"{pair if isinstance(pair, str) else ''}".rstrip())
        a, b = (_endpoint_name(system, spec) for spec in pair)
        name = f"{a}{PAIR_SEPARATOR}{b}" if name is None else str(name)
        if a == b:
            raise ValueError(f"pair {name!r} starts where it ends ({a}); give two different endpoints")
        if name in named:
            raise ValueError(f"pair {name!r} is given twice; give each pair once")
        named[name] = (pair[0], pair[1])
    return named


def metric_check(model: MolecularModel, geodesic: Geodesic, n_probes: int | None = None) -> list[MetricCheck]:
    """:class:`MetricCheck` of each curve of ``geodesic`` under ``model``'s denoiser (exact
    divergence, or ``n_probes`` Hutchinson probes with a fixed seed). A large ``negative_mass``
    means: retrain longer or lower ``n_nodes``/``steps``."""
    z = geodesic.curve.to(next(model.denoiser.parameters()))
    probes = None
    if n_probes is not None:
        probes = rademacher(n_probes, z.shape[-1] - 1, z, torch.Generator().manual_seed(0))
    with torch.enable_grad():
        terms = neighbour_kl(natural_params(z), expectation_params(model.denoiser, z, probes)).detach().double().cpu()
    out = []
    for t in terms.reshape(-1, terms.shape[-1]):
        neg = t[t < 0]
        out.append(MetricCheck(int(len(neg)), float(len(neg) / len(t)),
                               float(-neg.sum() / t.abs().sum().clamp_min(1e-30)) + 0.0))
    return out


#: Above this many features the geodesic uses :data:`DEFAULT_PROBES` Hutchinson probes for the
#: divergence unless told otherwise: the exact divergence costs one backward pass per feature (231
#: for chignolin's heavy atoms), the unbiased Hutchinson estimate one per probe.
EXACT_DIVERGENCE_MAX_FEATURES = 96
DEFAULT_PROBES = 8


def molecular_geodesic(model: MolecularModel, system: MolecularSystem, start=None, end=None,
                       mode: str = "unconstrained", avoid=None, avoid_lam: float | None = None,
                       config: dict | GeodesicConfig | None = None, check: bool = True, progress: bool = True,
                       callback=None, pairs=None, **overrides) -> MolecularGeodesic:
    """Geodesic(s) in the model's spacetime between pairs of endpoints, optimised in one batch.

    Parameters
    ----------
    model, system : MolecularModel, MolecularSystem
    start, end : endpoint or list of endpoints, optional
        State names, frames or positions ``(n_atoms, 3)`` nm (see :meth:`MolecularModel.endpoint`), or
        lists of them for a batch of curves (equal lengths, or one of either); or give ``pairs``.
    mode : str
        ``"unconstrained"``, ``"low_variance"`` or ``"avoid"``.
    avoid, avoid_lam
        For ``"avoid"``: the forbidden region (state name or frame), placed at log-SNR ``avoid_lam``
        (default: ``lam_end``) as ``z*``; one for all curves.
    config, overrides : :class:`GeodesicConfig` settings over :data:`MOLECULAR_GEODESIC`
        ``n_probes``: None/absent = the exact divergence up to :data:`EXACT_DIVERGENCE_MAX_FEATURES`
        features, else :data:`DEFAULT_PROBES` Hutchinson probes; 0 forces the exact divergence.
    check : bool
        Refuse endpoints outside the training data (before optimising).
    callback : see :func:`~tps_diffusion.core.geodesic.optimise_geodesic`
    pairs : "all", sequence of (start, end) or mapping name -> (start, end), optional
        Several transitions at once (see :func:`endpoint_pairs`): one curve per pair, all optimised
        in one batched call; each curve stops on its own, so it is the curve of its pair optimised
        alone, up to floating-point rounding.

    Returns
    -------
    MolecularGeodesic
        ``curve`` ``(B, N, 1 + D)`` (log-SNR, model coordinates), one start/end :class:`Endpoint`
        and one name ``"START:END"`` per curve (``pair_names``; :meth:`MolecularGeodesic.curve_index`).

    Every endpoint and pair is checked before the optimisation starts (one-line ValueError). Warns
    when the learned metric is not positive along a curve (:func:`metric_check`).
    """
    if pairs is not None and (start is not None or end is not None):
        raise ValueError("give start and end, or pairs, not both")
    if pairs is None:
        if start is None or end is None:
            raise ValueError("give the endpoints: start and end, or pairs=[(start, end), ...] (or pairs='all')")
        starts, ends = _as_list(start), _as_list(end)
        if len(starts) != len(ends) and 1 not in (len(starts), len(ends)):
            raise ValueError(f"got {len(starts)} start and {len(ends)} end points; give equal numbers or one of either")
        n = max(len(starts), len(ends))
        pairs = [(starts[i % len(starts)], ends[i % len(ends)]) for i in range(n)]
    base = dict(MOLECULAR_GEODESIC, mode=mode)
    given = {**(asdict(config) if isinstance(config, GeodesicConfig) else (config or {})), **overrides}
    if "n_probes" not in given and model.featurizer.n_features > EXACT_DIVERGENCE_MAX_FEATURES:
        overrides = {**overrides, "n_probes": DEFAULT_PROBES}  # exact divergence: one backward pass per feature
    elif given.get("n_probes") == 0:
        overrides = {**overrides, "n_probes": None}  # 0: the exact divergence at any size
    if isinstance(config, GeodesicConfig):
        cfg = GeodesicConfig(**{**asdict(config), **overrides}) if overrides else config
    else:
        cfg = updated_config(GeodesicConfig, base, {**(config or {}), **overrides})
    if cfg.mode == "avoid" and avoid is None:
        raise ValueError("mode 'avoid' needs the forbidden region: avoid='C7eq' (a state name) or a frame")
    model.check_system(system)
    named = endpoint_pairs(system, pairs)
    x_a = torch.stack([model.endpoint(system, a, check) for a, _ in named.values()])
    x_b = torch.stack([model.endpoint(system, b, check) for _, b in named.values()])
    z_star = None
    if avoid is not None:
        lam = cfg.lam_end if avoid_lam is None else float(avoid_lam)
        z_star = torch.cat([torch.tensor([lam], dtype=torch.float64), model.endpoint(system, avoid, check=False)])
    param = next(model.denoiser.parameters())
    geo = optimise_geodesic(model.denoiser, x_a.to(param), x_b.to(param), cfg,
                            avoid=None if z_star is None else z_star.to(param), progress=progress, callback=callback)

    def full(spec) -> Endpoint:
        xyz, label = structure(system, spec)
        return Endpoint(label, xyz if xyz.shape[0] == model.featurizer.n_atoms else None)

    checks = metric_check(model, geo, cfg.n_probes)
    worst = max(c.negative_mass for c in checks)
    if worst > METRIC_TOLERANCE:
        warnings.warn(f"the learned metric is not positive along the geodesic ({100 * worst:.0f} % of the energy "
                      f"terms' mass is negative): the curve exploits model errors; train longer, or lower n_nodes or "
                      f"steps", RuntimeWarning, stacklevel=2)
    return MolecularGeodesic(geo, [full(a) for a, _ in named.values()], [full(b) for _, b in named.values()],
                             avoid=None if avoid is None else structure(system, avoid)[1], z_star=z_star,
                             metric_check=checks, labels={"system": system.name}, pair_names=list(named))
