"""Geodesics between molecular structures: endpoints from states or frames, the learned metric's
positivity check, and geodesic files.

    geo = molecular_geodesic(model, system, "C5", "C7ax", mode="low_variance")
    geo.save("geodesic.npz"); geo = MolecularGeodesic.load("geodesic.npz")

A :class:`MolecularGeodesic` is the core :class:`~tps_diffusion.core.geodesic.Geodesic` (curves in
model coordinates, docs/method.md, section 4) with what the molecular layer needs to turn it into
paths: the endpoint structures (nm) and their labels, the forbidden point and the metric check.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mdtraj
import numpy as np
import torch

from ..core.geodesic import Geodesic, GeodesicConfig, optimise_geodesic
from ..core.geometry import expectation_params, natural_params, neighbour_kl, rademacher
from ..utils.files import atomic_path, writing
from .model import MolecularModel, structure, updated_config
from .system import MolecularSystem

__all__ = ["MOLECULAR_GEODESIC", "METRIC_TOLERANCE", "Endpoint", "MetricCheck", "MolecularGeodesic",
           "molecular_geodesic", "metric_check"]

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
    (e.g. ``system``, ``model``, ``model_sha256``).
    """

    geodesic: Geodesic
    starts: list[Endpoint]
    ends: list[Endpoint]
    avoid: str | None = None
    z_star: torch.Tensor | None = None
    metric_check: list[MetricCheck] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def curve(self) -> torch.Tensor:
        return self.geodesic.curve

    @property
    def config(self) -> GeodesicConfig:
        return self.geodesic.config

    def start(self, curve_index: int = 0) -> Endpoint:
        return self.starts[curve_index if len(self.starts) > 1 else 0]

    def end(self, curve_index: int = 0) -> Endpoint:
        return self.ends[curve_index if len(self.ends) > 1 else 0]

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write to ``path`` (``.npz``, atomically): the curve (log-SNR ``lam`` and model-coordinate
        ``x``), energy, length, KL profile, config, the first start/end structures (nm) and labels."""
        geo = self.geodesic
        curve = geo.curve.detach().cpu().double().numpy()
        arrays = dict(format=np.array(GEODESIC_FORMAT), lam=curve[..., 0], x=curve[..., 1:],
                      energy=geo.energy.detach().cpu().double().numpy(),
                      length=geo.length.detach().cpu().double().numpy(),
                      history=np.asarray(geo.history, dtype=float), config=np.array(json.dumps(geo.config.to_dict())),
                      message=np.array(geo.message), steps_done=np.array(geo.steps_done), seconds=np.array(geo.seconds),
                      start_label=np.array(self.starts[0].label), end_label=np.array(self.ends[0].label),
                      labels=np.array(json.dumps(self.labels)),
                      metric_check=np.array(json.dumps([asdict(c) for c in self.metric_check])))
        for key, ends in (("start", self.starts), ("end", self.ends)):
            if ends[0].positions is not None:
                arrays[f"{key}_positions_nm"] = np.asarray(ends[0].positions, dtype=float)
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
                       steps_done=int(d["steps_done"]), seconds=float(d["seconds"]), message=str(d["message"]))
        return cls(geo, [Endpoint(str(d["start_label"]), d.get("start_positions_nm"))],
                   [Endpoint(str(d["end_label"]), d.get("end_positions_nm"))],
                   avoid=str(d["avoid_label"]) if "avoid_label" in d else None,
                   z_star=torch.as_tensor(d["z_star"]) if "z_star" in d else None,
                   metric_check=[MetricCheck(**c) for c in json.loads(str(d["metric_check"]))],
                   labels=json.loads(str(d["labels"])))


def _as_list(spec) -> list:
    if isinstance(spec, (list, tuple)) and spec and (isinstance(spec[0], (str, mdtraj.Trajectory))
                                                     or np.ndim(spec[0]) == 2):
        return list(spec)
    return [spec]


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


def molecular_geodesic(model: MolecularModel, system: MolecularSystem, start, end, mode: str = "unconstrained",
                       avoid=None, avoid_lam: float | None = None, config: dict | GeodesicConfig | None = None,
                       check: bool = True, progress: bool = True, callback=None, **overrides) -> MolecularGeodesic:
    """Geodesic(s) in the model's spacetime between two endpoints.

    ``start``/``end``: state names, frames or positions (see :meth:`MolecularModel.endpoint`), or
    lists of them for a batch of curves (``curve`` is ``(B, N, 1 + D)``). ``mode``: ``"unconstrained"``,
    ``"low_variance"`` or ``"avoid"``; for ``"avoid"``, ``avoid`` is the forbidden region as a
    state name or frame, placed at log-SNR ``avoid_lam`` (default: ``lam_end``) as ``z*``.
    ``config``/``overrides``: :class:`GeodesicConfig` settings over :data:`MOLECULAR_GEODESIC`;
    ``n_probes`` (a config setting): None/absent = the exact divergence up to
    :data:`EXACT_DIVERGENCE_MAX_FEATURES` features, else :data:`DEFAULT_PROBES` Hutchinson probes;
    0 forces the exact divergence. ``callback``: see
    :func:`~tps_diffusion.core.geodesic.optimise_geodesic`. Warns when the
    learned metric is not positive along the result (:func:`metric_check`).
    """
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
    starts, ends = _as_list(start), _as_list(end)
    if len(starts) != len(ends) and 1 not in (len(starts), len(ends)):
        raise ValueError(f"got {len(starts)} start and {len(ends)} end points; give equal numbers or one of either")
    x_a = torch.stack([model.endpoint(system, s, check) for s in starts])
    x_b = torch.stack([model.endpoint(system, e, check) for e in ends])
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
    return MolecularGeodesic(geo, [full(s) for s in starts], [full(e) for e in ends],
                             avoid=None if avoid is None else structure(system, avoid)[1], z_star=z_star,
                             metric_check=checks, labels={"system": system.name})
