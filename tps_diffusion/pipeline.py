"""Molecule-level API: MD samples -> Cartesian features -> denoiser -> geodesic -> OpenMM paths.

A user's MD script calls five small functions::

    from tps_diffusion.molecule import alanine_dipeptide
    from tps_diffusion.md import run_md
    from tps_diffusion import pipeline

    system = alanine_dipeptide()
    md = run_md(system, ["C5", "C7ax"], n_steps=50_000, report_interval=50, seed=0)
    model = pipeline.train_on_samples(system, md, selection="heavy", checkpoint="aldp.pt")
    geo = pipeline.molecular_geodesic(model, system, "C5", "C7ax", mode="low_variance")  # or frames
    paths = pipeline.sample_molecular_paths(system, model, geo, n_paths=100, steps_per_point=16)
    paths.save("paths", fmt="dcd")

    model = pipeline.load_model("aldp.pt", system)                             # later

Model coordinates are the features of :class:`~tps_diffusion.featurize.CartesianFeaturizer`
(selected atoms Kabsch-aligned onto a reference, minus the mean structure, divided by one
scale in nm). The featurizer is the single source of truth for that scaling: the model's own
``normalizer`` is the identity, and ``model.metadata["featurizer"]`` holds ``to_dict()`` of the
featurizer, so targets map back to nm exactly (``featurizer.inverse``).

Endpoint check: ``metadata["endpoint_check"]`` keeps a random subset of the training features
and the 99th percentile ``q`` of their leave-one-out nearest-neighbour distances. An endpoint
whose distance to that subset exceeds ``tolerance * q`` (default 3) lies outside the training
data; the denoiser is not trained there and :func:`endpoint` raises.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import mdtraj
import numpy as np
import torch

from .data import Normalizer
from .featurize import CartesianFeaturizer
from .geodesic import Geodesic, GeodesicConfig, optimise_geodesic
from .geometry import expectation_params, natural_params, neighbour_kl, rademacher
from .md import MDResult
from .model import DenoiserConfig
from .molecule import MolecularSystem
from .openmm_sampler import PathSet, sample_paths, tilt_schedule
from .training import DiffusionModel, TrainConfig, train

__all__ = [
    "SELECTIONS",
    "MOLECULAR_GEODESIC",
    "MOLECULAR_TRAINING",
    "resolve_selection",
    "featurize_samples",
    "train_on_samples",
    "load_model",
    "get_featurizer",
    "endpoint",
    "molecular_geodesic",
    "metric_check",
    "path_targets",
    "sample_molecular_paths",
    "save_geodesic",
    "load_geodesic",
]

METADATA_FORMAT = "tps_diffusion.molecular/1"
GEODESIC_FORMAT = "tps_diffusion.geodesic/1"

#: short names for atom selections (anything else is passed to mdtraj's selection language)
SELECTIONS = {"heavy": "not element H", "all": "all", "backbone": "backbone"}

#: geodesic defaults for Cartesian molecules (tuned on alanine dipeptide, see bench/aldp.py).
#: Two interior spline nodes: with more, Adam finds wiggly curves through regions the
#: basin-only training data never covered, where the learned metric is not positive and the
#: energy estimate runs to large negative values (see :func:`metric_check`).
#: ``rho_kl`` in nats: KLs between posteriors of 30-D features are tens to thousands of nats, so
#: the 2-D value (3) would never be active; 150 keeps alanine dipeptide paths out of C7eq.
MOLECULAR_GEODESIC = dict(lam_end=4.0, n_points=64, n_nodes=2, steps=300, lr=0.1, rho_var=1.0, rho_kl=150.0)

#: denoiser/training defaults for Cartesian molecules (minutes on one CPU core). ``sigma_data``
#: 0.25 (model units; the features have overall std 1): the stiff bond/angle modes have std
#: ~0.05 and the preconditioning with the overall std makes the network cancel most of the skip
#: connection along them; 0.25 gives a markedly more positive (physical) denoiser Jacobian.
MOLECULAR_TRAINING = dict(model=dict(hidden=256, depth=4, sigma_data=0.25),
                          train=dict(steps=6000, batch_size=512, lr=2e-3, lam_sampling="importance"))

#: largest acceptable negative mass of the energy terms along a geodesic (see :func:`metric_check`)
METRIC_TOLERANCE = 0.05

#: default number of training samples kept for the endpoint check, and its tolerance
N_CHECK_SAMPLES = 2000
ENDPOINT_TOLERANCE = 3.0


# ---------------------------------------------------------------------------------------------
# featurisation and training


def resolve_selection(selection: str | Sequence[int]) -> str | Sequence[int]:
    """``"heavy"`` -> ``"not element H"``, ``"all"`` -> ``"all"``; other strings/indices unchanged."""
    if isinstance(selection, str):
        return SELECTIONS.get(selection, selection)
    return selection


def _positions(system: MolecularSystem, traj) -> np.ndarray:
    """``(n_frames, n_atoms, 3)`` nm from a Trajectory, MDResult, positions or a list of them."""
    if isinstance(traj, MDResult):
        traj = traj.trajectory
    if isinstance(traj, (list, tuple)) and traj and not np.isscalar(traj[0]) and not isinstance(traj[0], (list, tuple)):
        return np.concatenate([_positions(system, t) for t in traj])
    return system.check_positions(traj, "samples")


def featurize_samples(system: MolecularSystem, traj, selection: str | Sequence[int] = "heavy",
                      reference=None) -> tuple[CartesianFeaturizer, np.ndarray]:
    """Fit a :class:`CartesianFeaturizer` on MD samples and return it with the features.

    ``traj``: mdtraj Trajectory, :class:`~tps_diffusion.md.MDResult`, positions
    ``(n_frames, n_atoms, 3)`` nm, or a list of those. ``selection``: ``"heavy"`` (non-hydrogen
    atoms), ``"all"``, any mdtraj selection string, or atom indices. ``reference``: alignment
    reference (default: ``system.positions``). Returns ``(featurizer, x (n_frames, 3 * n_sel))``.
    """
    xyz = _positions(system, traj)
    feat = CartesianFeaturizer(system, resolve_selection(selection), reference=reference)
    return feat, feat.fit_transform(xyz)


def _config(cls, base: dict, override) -> Any:
    """``cls(**base)`` updated by ``override`` (a dict or an instance of ``cls``)."""
    if isinstance(override, cls):
        return override
    kw = dict(base)
    if override is not None:
        unknown = set(override) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} settings {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        kw.update(override)
    return cls(**kw)


def _nn_distances(x: np.ndarray, ref: np.ndarray, exclude_self: bool = False, chunk: int = 512) -> np.ndarray:
    """Distance of every row of ``x`` to its nearest row of ``ref`` (leave-one-out if ``exclude_self``)."""
    out = np.empty(len(x))
    r2 = (ref**2).sum(1)
    for i in range(0, len(x), chunk):
        xs = x[i:i + chunk]
        d2 = (xs**2).sum(1)[:, None] + r2[None] - 2.0 * xs @ ref.T
        if exclude_self:
            d2[np.arange(len(xs)), np.arange(i, i + len(xs))] = np.inf
        out[i:i + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def _endpoint_check_data(x: np.ndarray, n_keep: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    keep = x if len(x) <= n_keep else x[np.sort(rng.choice(len(x), n_keep, replace=False))]
    nn = _nn_distances(keep, keep, exclude_self=True)
    return {"samples": keep.astype(np.float32).tolist(), "nn_q99": float(np.quantile(nn, 0.99)),
            "nn_median": float(np.median(nn)), "n_training_samples": int(len(x))}


def train_on_samples(system: MolecularSystem, traj, selection: str | Sequence[int] = "heavy",
                     model_config: dict | DenoiserConfig | None = None, train_config: dict | TrainConfig | None = None,
                     checkpoint: str | Path | None = None, overwrite: bool = False, resume: bool = False,
                     data_recipe: Mapping | None = None, reference=None, n_check_samples: int = N_CHECK_SAMPLES,
                     device: str | torch.device = "auto", progress: bool = True) -> DiffusionModel:
    """Featurise MD samples and train the Cartesian denoiser on them.

    ``model_config`` / ``train_config``: dicts of overrides of :data:`MOLECULAR_TRAINING` (or full
    :class:`DenoiserConfig` / :class:`TrainConfig`). ``data_recipe``: how the samples were made
    (temperatures, steps, starts ...), stored in the metadata; taken from an ``MDResult``'s
    settings when not given. The returned model has ``model.featurizer`` and
    ``model.metadata = {"format", "system", "featurizer", "selection", "data_recipe",
    "endpoint_check", "seconds"}``; with ``checkpoint`` it is saved there (see :func:`load_model`).
    """
    t0 = time.perf_counter()
    feat, x = featurize_samples(system, traj, selection, reference)
    tcfg = _config(TrainConfig, MOLECULAR_TRAINING["train"], train_config)
    mcfg = _config(DenoiserConfig, dict(MOLECULAR_TRAINING["model"], dim=x.shape[1]), model_config)
    recipe = dict(data_recipe) if data_recipe is not None else (dict(traj.settings) if isinstance(traj, MDResult) else {})
    recipe.setdefault("n_samples", int(len(x)))
    metadata = {
        "format": METADATA_FORMAT,
        "system": system.name,
        "system_info": _jsonable(system.info),
        "temperature": system.temperature,
        "featurizer": feat.to_dict(),
        "selection": selection if isinstance(selection, str) else [int(i) for i in selection],
        "data_recipe": _jsonable(recipe),
        "endpoint_check": _endpoint_check_data(x, n_check_samples, tcfg.seed),
    }
    model = train(x, mcfg, tcfg, normalizer=Normalizer.identity(x.shape[1]), checkpoint=checkpoint, resume=resume,
                  overwrite=overwrite, metadata=metadata, device=device, progress=progress)
    model.metadata["seconds"] = time.perf_counter() - t0
    model.featurizer = feat
    return model


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def get_featurizer(model: DiffusionModel, system: MolecularSystem | None = None) -> CartesianFeaturizer:
    """The model's featurizer, rebuilt from ``model.metadata["featurizer"]`` (checked against
    ``system``'s topology when given) and cached as ``model.featurizer``."""
    feat = getattr(model, "featurizer", None)
    if feat is None:
        d = model.metadata.get("featurizer")
        if d is None:
            raise ValueError("this model has no featurizer in its metadata; train it with pipeline.train_on_samples")
        feat = CartesianFeaturizer.from_dict(d, topology=None if system is None else system.md_topology)
        model.featurizer = feat
    elif system is not None and feat.n_atoms != system.n_atoms:
        raise ValueError(f"model was trained on a {feat.n_atoms}-atom system, {system.name} has {system.n_atoms} atoms")
    return feat


def load_model(path: str | Path, system: MolecularSystem | None = None, device: str | torch.device = "auto") -> DiffusionModel:
    """Load a checkpoint of :func:`train_on_samples`; ``model.featurizer`` is rebuilt from the
    metadata (its atoms checked against ``system``)."""
    model = DiffusionModel.load(path, device=device)
    if model.metadata.get("format") != METADATA_FORMAT:
        raise ValueError(f"{path} is not a molecular model (no featurizer metadata); train it with pipeline.train_on_samples")
    get_featurizer(model, system)
    if system is not None and model.metadata.get("system") not in (None, system.name):
        warnings.warn(f"model was trained on system {model.metadata['system']!r}, used with {system.name!r}", RuntimeWarning, stacklevel=2)
    return model


# ---------------------------------------------------------------------------------------------
# endpoints and geodesics


def _spec_positions(system: MolecularSystem, spec) -> tuple[np.ndarray, str]:
    """``(n_atoms or n_sel, 3)`` nm and a label for a state name, frame or positions."""
    if isinstance(spec, str):
        if spec not in system.state_positions:
            known = ", ".join(sorted(system.state_positions)) or "none"
            raise ValueError(f"unknown state {spec!r} for {system.name}; known states: {known} (or pass a frame / (n_atoms, 3) nm array)")
        return system.positions_of(spec), spec
    if isinstance(spec, mdtraj.Trajectory):
        if spec.n_frames != 1:
            raise ValueError(f"an endpoint must be a single frame; got a trajectory of {spec.n_frames} frames (use traj[i])")
        return np.asarray(spec.xyz[0], dtype=np.float64), "frame"
    xyz = np.asarray(spec, dtype=np.float64)
    if xyz.ndim == 3 and xyz.shape[0] == 1:
        xyz = xyz[0]
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"an endpoint must be a state name, an mdtraj frame or an (n_atoms, 3) array in nm; got shape {xyz.shape}")
    return xyz, "positions"


def endpoint_distance(model: DiffusionModel, x: np.ndarray) -> tuple[float, float]:
    """Distance (model units) of features ``x (D,)`` to the nearest stored training sample and the
    stored 99th-percentile nearest-neighbour spacing ``q`` of the data."""
    chk = model.metadata.get("endpoint_check")
    if not chk:
        return float("nan"), float("nan")
    ref = np.asarray(chk["samples"], dtype=np.float64)
    return float(_nn_distances(np.asarray(x, dtype=np.float64)[None], ref)[0]), float(chk["nn_q99"])


def endpoint(system: MolecularSystem, model: DiffusionModel, spec, check: bool = True,
             tolerance: float = ENDPOINT_TOLERANCE) -> torch.Tensor:
    """Model coordinates ``(D,)`` (float64 tensor) of an endpoint.

    ``spec``: a state name (``system.state_positions``), an mdtraj frame, or positions
    ``(n_atoms, 3)`` / ``(n_selected, 3)`` nm. With ``check`` a ``ValueError`` is raised when the
    endpoint lies more than ``tolerance`` times the data's 99th-percentile nearest-neighbour
    spacing away from the nearest training sample (the denoiser was not trained there).
    """
    feat = get_featurizer(model, system)
    xyz, label = _spec_positions(system, spec)
    if xyz.shape[0] not in (feat.n_atoms, feat.n_selected):
        raise ValueError(f"endpoint has {xyz.shape[0]} atoms; expected {feat.n_atoms} (all) or {feat.n_selected} (selected)")
    x = feat.transform(xyz)[0]
    if check:
        d, q = endpoint_distance(model, x)
        if np.isfinite(d) and d > tolerance * q:
            raise ValueError(
                f"endpoint {label!r} lies outside the training data (nearest training sample {d:.2f} model units away, "
                f"{d / q:.1f}x the data's nearest-neighbour spacing {q:.2f}): add MD samples around this structure "
                f"(e.g. run_md from it) and retrain, or pass check=False")
    return torch.as_tensor(x, dtype=torch.float64)


def _as_list(spec) -> list:
    if isinstance(spec, (list, tuple)) and spec and (isinstance(spec[0], (str, mdtraj.Trajectory)) or np.ndim(spec[0]) == 2):
        return list(spec)
    return [spec]


def metric_check(model: DiffusionModel, geodesic: Geodesic, n_probes: int | None = None) -> list[dict]:
    """Positivity of the learned metric along each curve of ``geodesic``.

    Each neighbour term ``d_eta . d_mu`` is a symmetrised KL, >= 0 for an exact denoiser. Returns
    per curve ``{"n_negative", "negative_fraction", "negative_mass"}`` where ``negative_mass`` is
    ``-sum(negative terms) / sum(|terms|)``: near 0 for a trustworthy curve, large when the
    optimiser exploited model errors (then retrain longer or lower ``n_nodes``/``steps``).
    """
    z = geodesic.curve.to(next(model.denoiser.parameters()))
    probes = None
    if n_probes is not None:
        probes = rademacher(n_probes, z.shape[-1] - 1, z, torch.Generator().manual_seed(0))
    with torch.enable_grad():
        terms = neighbour_kl(natural_params(z), expectation_params(model.denoiser, z, probes)).detach().double().cpu()
    out = []
    for t in terms.reshape(-1, terms.shape[-1]):
        neg = t[t < 0]
        out.append({"n_negative": int(len(neg)), "negative_fraction": float(len(neg) / len(t)),
                    "negative_mass": float(-neg.sum() / t.abs().sum().clamp_min(1e-30)) + 0.0})
    return out


def molecular_geodesic(model: DiffusionModel, system: MolecularSystem, start, end, mode: str = "unconstrained",
                       avoid=None, avoid_lam: float | None = None, config: dict | GeodesicConfig | None = None,
                       check: bool = True, progress: bool = True, **overrides) -> Geodesic:
    """Geodesic(s) in the model's spacetime between two endpoints.

    ``start``/``end``: state names, frames or positions (see :func:`endpoint`), or lists of them
    for a batch of curves (``geodesic.curve`` is ``(B, N, 1 + D)``). ``mode``: ``"unconstrained"``,
    ``"low_variance"`` or ``"avoid"``; for ``"avoid"``, ``avoid`` is the forbidden region as a
    state name or frame, placed at log-SNR ``avoid_lam`` (default: ``lam_end``) as ``z*``.
    ``config``/``overrides``: :class:`GeodesicConfig` settings over :data:`MOLECULAR_GEODESIC`.
    The result carries ``geodesic.molecular``: the full-atom start/end structures (or None) and labels.
    """
    base = dict(MOLECULAR_GEODESIC, mode=mode)
    cfg = config if isinstance(config, GeodesicConfig) else _config(GeodesicConfig, base, {**(config or {}), **overrides})
    if isinstance(config, GeodesicConfig) and overrides:
        cfg = GeodesicConfig(**{**asdict(config), **overrides})
    if cfg.mode == "avoid" and avoid is None:
        raise ValueError("mode 'avoid' needs the forbidden region: avoid='C7eq' (a state name) or a frame")
    starts, ends = _as_list(start), _as_list(end)
    if len(starts) != len(ends) and 1 not in (len(starts), len(ends)):
        raise ValueError(f"got {len(starts)} start and {len(ends)} end points; give equal numbers or one of either")
    x_a = torch.stack([endpoint(system, model, s, check) for s in starts])
    x_b = torch.stack([endpoint(system, model, e, check) for e in ends])
    z_star = None
    if avoid is not None:
        lam = cfg.lam_end if avoid_lam is None else float(avoid_lam)
        z_star = torch.cat([torch.tensor([lam], dtype=torch.float64), endpoint(system, model, avoid, check=False)])
    dev = next(model.denoiser.parameters()).device
    dtype = next(model.denoiser.parameters()).dtype
    geo = optimise_geodesic(model.denoiser, x_a.to(dev, dtype), x_b.to(dev, dtype), cfg,
                            avoid=None if z_star is None else z_star.to(dev, dtype), progress=progress)
    feat = get_featurizer(model, system)

    def full(spec):
        xyz, label = _spec_positions(system, spec)
        return (xyz if xyz.shape[0] == feat.n_atoms else None), label

    checks = metric_check(model, geo, cfg.n_probes)
    geo.molecular = {"start": [full(s) for s in starts], "end": [full(e) for e in ends],
                     "avoid": None if avoid is None else _spec_positions(system, avoid)[1], "z_star": z_star,
                     "metric_check": checks}
    worst = max(c["negative_mass"] for c in checks)
    if worst > METRIC_TOLERANCE:
        warnings.warn(f"the learned metric is not positive along the geodesic ({100 * worst:.0f} % of the energy terms' mass is "
                      f"negative): the curve exploits model errors; train longer, or lower n_nodes or steps", RuntimeWarning, stacklevel=2)
    return geo


# ---------------------------------------------------------------------------------------------
# sampling


def path_targets(system: MolecularSystem, model: DiffusionModel, geodesic: Geodesic | torch.Tensor,
                 curve_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Restraint targets ``(N, n_sel, 3)`` nm (aligned frame) and stiffnesses ``(N,)`` kJ/mol/nm^2
    of one curve: ``featurizer.inverse(x_n / alpha_n)`` and ``kT * exp(lam_n) / scale^2``."""
    c = _curve(geodesic, curve_index)
    return tilt_schedule(get_featurizer(model, system), c[:, 1:], c[:, 0], system.kT)


def _curve(geodesic: Geodesic | torch.Tensor, curve_index: int = 0) -> np.ndarray:
    """One curve ``(N, 1 + D)`` as float64 numpy."""
    curve = geodesic.curve if isinstance(geodesic, Geodesic) else torch.as_tensor(geodesic)
    if curve.ndim == 3:
        curve = curve[curve_index]
    return curve.detach().cpu().double().numpy()


def sample_molecular_paths(system: MolecularSystem, model: DiffusionModel, geodesic: Geodesic, n_paths: int,
                           steps_per_point: int, seed: int | None = 0, n_workers: int = 2, start=None,
                           curve_index: int = 0, timestep: float | None = None, friction: float = 1.0,
                           temperature: float | None = None, record_interval: int = 1, compute_energies: bool = True,
                           platform: str | None = None, progress: bool = True, mp_context: str | None = None) -> PathSet:
    """Annealed Langevin transition paths under the force field along a geodesic (OpenMM).

    Every path starts at ``start`` (default: the geodesic's full-atom start structure, e.g. the
    state's minimum) and runs ``steps_per_point`` Langevin steps (``timestep`` ps, ``friction``
    1/ps, at the system temperature unless ``temperature``) per curve point with a harmonic
    restraint of the selected atoms towards the point's target (see :func:`path_targets`). The
    result's ``energies`` are force-field potentials (kJ/mol) of the recorded frames;
    ``settings`` also record the geodesic config and the curve's lowest log-SNR.
    """
    feat = get_featurizer(model, system)
    targets, stiffness = path_targets(system, model, geodesic, curve_index)
    if start is None:
        mol = getattr(geodesic, "molecular", None)
        if mol is None:
            raise ValueError("pass start= (a state name or (n_atoms, 3) nm): this geodesic has no start structure")
        starts = mol["start"]
        xyz, label = starts[curve_index if len(starts) > 1 else 0]
        if xyz is None:
            raise ValueError(f"the geodesic's start ({label}) has only the selected atoms; pass start= with all {feat.n_atoms} atoms")
        start = xyz
    ps = sample_paths(system, feat, targets, stiffness, start, n_paths, steps_per_point, timestep=timestep,
                      temperature=temperature, friction=friction, seed=seed, n_workers=n_workers, platform=platform,
                      record_interval=record_interval, compute_energies=compute_energies, progress=progress,
                      mp_context=mp_context)
    ps.settings.update(geodesic=geodesic.config.to_dict() if isinstance(geodesic, Geodesic) else None,
                       min_lambda=float(_curve(geodesic, curve_index)[:, 0].min()),
                       max_stiffness=float(stiffness.max()), curve_index=int(curve_index))
    return ps



# ---------------------------------------------------------------------------------------------
# geodesic files


def save_geodesic(path: str | Path, geo: Geodesic, overwrite: bool = False, **labels: str) -> Path:
    """Write a molecular geodesic to ``path`` (``.npz``, atomically): the curve (log-SNR ``lam``
    and model-coordinate ``x``), energy, length, KL profile, config, the endpoint structures
    (nm) of ``geo.molecular`` and any string ``labels`` (e.g. ``system``, ``start_label``)."""
    from .io import atomic_path

    curve = geo.curve.detach().cpu().double().numpy()
    mol = geo.molecular or {}
    arrays = dict(format=np.array(GEODESIC_FORMAT), lam=curve[..., 0], x=curve[..., 1:],
                  energy=geo.energy.detach().cpu().double().numpy(), length=geo.length.detach().cpu().double().numpy(),
                  history=np.asarray(geo.history, dtype=float), config=np.array(json.dumps(geo.config.to_dict())),
                  message=np.array(geo.message), steps_done=np.array(geo.steps_done), seconds=np.array(geo.seconds),
                  **{key: np.array(str(value)) for key, value in labels.items()})
    for key in ("start", "end"):
        xyz = (mol.get(key) or [(None, None)])[0][0]
        if xyz is not None:
            arrays[f"{key}_positions_nm"] = np.asarray(xyz, dtype=float)
    if geo.kl is not None:
        arrays["kl_nats"] = geo.kl.detach().cpu().double().numpy()
    if mol.get("z_star") is not None:
        arrays["z_star"] = mol["z_star"].detach().cpu().double().numpy()
        arrays["avoid_label"] = np.array(str(mol.get("avoid")))
    with atomic_path(path, overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return Path(path)


def load_geodesic(path: str | Path) -> tuple[Geodesic, dict]:
    """Read a file of :func:`save_geodesic`: ``(Geodesic with .molecular, dict of the stored arrays)``,
    ready for :func:`sample_molecular_paths`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"geodesic file not found: {path}; make one with pipeline.save_geodesic or 'tps-diffusion geodesic'")
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
    geo.molecular = {"start": [(d.get("start_positions_nm"), str(d.get("start_label", "")))],
                     "end": [(d.get("end_positions_nm"), str(d.get("end_label", "")))],
                     "avoid": str(d["avoid_label"]) if "avoid_label" in d else None,
                     "z_star": torch.as_tensor(d["z_star"]) if "z_star" in d else None}
    return geo, d
