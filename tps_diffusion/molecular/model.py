"""A denoiser of a molecule's Cartesian features: MD samples -> features -> trained model.

    model = train_on_samples(system, md, selection="heavy", checkpoint="aldp.pt")
    model = MolecularModel.load("aldp.pt", system)                        # later
    x = model.endpoint(system, "C5")                                       # model coordinates

Model coordinates are the features of :class:`~tps_diffusion.molecular.featurizer.CartesianFeaturizer`
(selected atoms Kabsch-aligned onto a reference, minus the mean structure, divided by one scale
in nm; docs/method.md, section 6). The featurizer is the single source of truth for that scaling:
the denoiser's own normaliser is the identity, and the checkpoint stores the featurizer, so
restraint targets map back to nm exactly (``featurizer.inverse``).

Endpoint check: the model keeps a random subset of the training features and the 99th percentile
``q`` of their leave-one-out nearest-neighbour distances. An endpoint whose distance to that
subset exceeds ``tolerance * q`` (default 3) lies outside the training data; the denoiser is not
trained there and :meth:`MolecularModel.endpoint` raises.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import mdtraj
import numpy as np
import torch

from ..core.denoiser import DenoiserConfig
from ..core.normalizer import Normalizer
from ..core.training import DiffusionModel, TrainConfig, train
from ..utils.provenance import jsonable
from .featurizer import CartesianFeaturizer
from .md import MDResult
from .system import MolecularSystem

__all__ = ["SELECTIONS", "MOLECULAR_TRAINING", "EndpointCheck", "MolecularModel", "resolve_selection",
           "featurize_samples", "train_on_samples", "updated_config"]

METADATA_FORMAT = "tps_diffusion.molecular/1"

#: short names for atom selections (anything else is passed to mdtraj's selection language)
_SOLUTE = "not water and not resname NA CL K LI RB CS MG ZN SOD CLA POT"
#: Named atom selections: the solute is everything but water and monatomic ions.
SELECTIONS = {"heavy": f"not element H and {_SOLUTE}", "solute": _SOLUTE, "all": "all", "backbone": "backbone"}

#: denoiser/training defaults for Cartesian molecules (minutes on one CPU core). ``sigma_data``
#: 0.25 (model units; the features have overall std 1): the stiff bond/angle modes have std
#: ~0.05 and the preconditioning with the overall std makes the network cancel most of the skip
#: connection along them; 0.25 gives a markedly more positive (physical) denoiser Jacobian.
MOLECULAR_TRAINING = dict(model=dict(hidden=256, depth=4, sigma_data=0.25),
                          train=dict(steps=6000, batch_size=512, lr=2e-3, lam_sampling="importance"))

#: default number of training samples kept for the endpoint check, and its tolerance
N_CHECK_SAMPLES = 2000
ENDPOINT_TOLERANCE = 3.0


def updated_config(cls, base: Mapping, override=None) -> Any:
    """``cls(**base)`` updated by ``override`` (a dict, or an instance of the dataclass ``cls``
    which is returned as is); unknown keys raise naming the known ones."""
    if isinstance(override, cls):
        return override
    kw = dict(base)
    if override is not None:
        unknown = set(override) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} settings {sorted(unknown)}; known: "
                             f"{[f.name for f in fields(cls)]}")
        kw.update(override)
    return cls(**kw)


def resolve_selection(selection: str | Sequence[int]) -> str | Sequence[int]:
    """Named selections of :data:`SELECTIONS` (``"heavy"``: solute heavy atoms, never water or ions;
    ``"solute"``, ``"all"``, ``"backbone"``) as mdtraj selections; other strings/indices unchanged."""
    if isinstance(selection, str):
        return SELECTIONS.get(selection, selection)
    return selection


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


@dataclass
class EndpointCheck:
    """A subset of the training features (model units) and their nearest-neighbour spacing."""

    samples: np.ndarray  # (n_keep, D)
    nn_q99: float
    nn_median: float
    n_training_samples: int

    @classmethod
    def from_features(cls, x: np.ndarray, n_keep: int = N_CHECK_SAMPLES, seed: int = 0) -> EndpointCheck:
        rng = np.random.default_rng(seed)
        keep = x if len(x) <= n_keep else x[np.sort(rng.choice(len(x), n_keep, replace=False))]
        nn = _nn_distances(keep, keep, exclude_self=True)
        return cls(keep.astype(np.float32), float(np.quantile(nn, 0.99)), float(np.median(nn)), int(len(x)))

    def distance(self, x: np.ndarray) -> float:
        """Distance (model units) of features ``x (D,)`` to the nearest kept training sample."""
        ref = np.asarray(self.samples, dtype=np.float64)
        return float(_nn_distances(np.asarray(x, dtype=np.float64)[None], ref)[0])

    def to_dict(self) -> dict:
        return {"samples": np.asarray(self.samples, dtype=np.float32).tolist(), "nn_q99": self.nn_q99,
                "nn_median": self.nn_median, "n_training_samples": self.n_training_samples}

    @classmethod
    def from_dict(cls, d: Mapping) -> EndpointCheck:
        return cls(np.asarray(d["samples"], dtype=np.float32), float(d["nn_q99"]), float(d["nn_median"]),
                   int(d["n_training_samples"]))


@dataclass
class MolecularModel:
    """A denoiser trained on Cartesian features of a molecular system, with the featurizer that maps
    structures (nm) to its coordinates and the record of what produced it.

    Attributes
    ----------
    diffusion : DiffusionModel
        Denoiser (EMA weights, model coordinates), identity normaliser, training settings, versions.
    featurizer : CartesianFeaturizer
        Structures (nm) <-> model coordinates.
    system_name : str
    temperature : float
        K, of the training data (used as the sampling temperature by default).
    selection : str or list of int
        The atom selection as the user gave it.
    data_recipe : dict
        How the samples were made (MD settings, files, number of samples).
    endpoint_check : EndpointCheck
    system_info : dict
        Force field, solvent, provenance of the system.
    train_seconds : float
    """

    diffusion: DiffusionModel
    featurizer: CartesianFeaturizer
    system_name: str
    temperature: float
    selection: str | list[int]
    data_recipe: dict = field(default_factory=dict)
    endpoint_check: EndpointCheck | None = None
    system_info: dict = field(default_factory=dict)
    train_seconds: float = float("nan")

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.diffusion.denoiser

    @property
    def dim(self) -> int:
        return self.diffusion.dim

    @property
    def train_config(self) -> TrainConfig:
        return self.diffusion.train_config

    def metadata(self) -> dict:
        """The JSON-able record stored in the checkpoint (everything but the weights)."""
        return {"format": METADATA_FORMAT, "system": self.system_name, "system_info": jsonable(self.system_info),
                "temperature": self.temperature, "featurizer": self.featurizer.to_dict(),
                "selection": self.selection, "data_recipe": jsonable(self.data_recipe),
                "endpoint_check": None if self.endpoint_check is None else self.endpoint_check.to_dict(),
                "train_seconds": self.train_seconds}

    @classmethod
    def from_diffusion_model(cls, diffusion: DiffusionModel, system: MolecularSystem | None = None) -> MolecularModel:
        """Rebuild from a loaded checkpoint's metadata; the featurizer's atoms are checked against ``system``."""
        meta = diffusion.metadata
        if meta.get("format") != METADATA_FORMAT:
            raise ValueError("not a molecular model (no featurizer metadata); train it with train_on_samples")
        topology = None if system is None else system.md_topology
        feat = CartesianFeaturizer.from_dict(meta["featurizer"], topology=topology)
        check = meta.get("endpoint_check")
        model = cls(diffusion, feat, meta.get("system", ""), float(meta.get("temperature", float("nan"))),
                    meta.get("selection", feat.selection), meta.get("data_recipe", {}),
                    None if check is None else EndpointCheck.from_dict(check), meta.get("system_info", {}),
                    float(meta.get("train_seconds") or float("nan")))
        if system is not None:
            model.check_system(system)
        return model

    @classmethod
    def load(cls, path: str | Path, system: MolecularSystem | None = None,
             device: str | torch.device = "auto") -> MolecularModel:
        """Load a checkpoint of :func:`train_on_samples` (its atoms checked against ``system``)."""
        try:
            return cls.from_diffusion_model(DiffusionModel.load(path, device=device), system)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model and its record atomically to ``path`` (loadable with :meth:`load`; see
        :meth:`~tps_diffusion.core.training.DiffusionModel.save`)."""
        self.diffusion.metadata = self.metadata()
        return self.diffusion.save(path, overwrite)

    def check_system(self, system: MolecularSystem) -> None:
        """Raise if ``system`` is not the molecule the model was trained on (atom count); warn on another name."""
        if self.featurizer.n_atoms != system.n_atoms:
            raise ValueError(f"model was trained on a {self.featurizer.n_atoms}-atom system, {system.name} has "
                             f"{system.n_atoms} atoms")
        if self.system_name not in ("", system.name):
            warnings.warn(f"model was trained on system {self.system_name!r}, used with {system.name!r}",
                          RuntimeWarning, stacklevel=3)

    def endpoint(self, system: MolecularSystem, spec, check: bool = True,
                 tolerance: float = ENDPOINT_TOLERANCE) -> torch.Tensor:
        """Model coordinates ``(D,)`` (float64 tensor) of an endpoint.

        ``spec``: a state name (``system.state_positions``), an mdtraj frame, or positions
        ``(n_atoms, 3)`` / ``(n_selected, 3)`` nm. With ``check`` a ``ValueError`` is raised when the
        endpoint lies more than ``tolerance`` times the data's 99th-percentile nearest-neighbour
        spacing away from the nearest training sample (the denoiser was not trained there).
        """
        feat = self.featurizer
        xyz, label = structure(system, spec)
        if xyz.shape[0] not in (feat.n_atoms, feat.n_selected):
            raise ValueError(f"endpoint has {xyz.shape[0]} atoms; expected {feat.n_atoms} (all) or {feat.n_selected} "
                             "(selected)")
        x = feat.transform(xyz)[0]
        if check and self.endpoint_check is not None:
            d, q = self.endpoint_check.distance(x), self.endpoint_check.nn_q99
            if d > tolerance * q:
                raise ValueError(
                    f"endpoint {label!r} lies outside the training data (nearest training sample {d:.2f} model units "
                    f"away, {d / q:.1f}x the data's nearest-neighbour spacing {q:.2f}): add MD samples around this "
                    f"structure (e.g. run_md from it) and retrain, or pass check=False (command line: --no-check)")
        return torch.as_tensor(x, dtype=torch.float64)


def structure(system: MolecularSystem, spec) -> tuple[np.ndarray, str]:
    """``(n_atoms or n_selected, 3)`` nm and a label for a state name, an mdtraj frame or positions."""
    if isinstance(spec, str):
        if spec not in system.state_positions:
            known = ", ".join(sorted(system.state_positions)) or "none"
            raise ValueError(f"unknown state {spec!r} for {system.name}; known states: {known} "
                             f"(or pass a frame / (n_atoms, 3) nm array)")
        return system.positions_of(spec), spec
    if isinstance(spec, mdtraj.Trajectory):
        if spec.n_frames != 1:
            raise ValueError(f"an endpoint must be a single frame; got a trajectory of {spec.n_frames} frames (use "
                             "traj[i])")
        return np.asarray(spec.xyz[0], dtype=np.float64), "frame"
    xyz = np.asarray(spec, dtype=np.float64)
    if xyz.ndim == 3 and xyz.shape[0] == 1:
        xyz = xyz[0]
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"an endpoint must be a state name, an mdtraj frame or an (n_atoms, 3) array in nm; "
                         f"got shape {xyz.shape}")
    return xyz, "positions"


def _positions(system: MolecularSystem, traj) -> np.ndarray:
    """``(n_frames, n_atoms, 3)`` nm from a Trajectory, MDResult, positions or a list of them."""
    if isinstance(traj, MDResult):
        traj = traj.trajectory
    if isinstance(traj, (list, tuple)) and traj and not np.isscalar(traj[0]) and not isinstance(traj[0], (list, tuple)):
        return np.concatenate([_positions(system, t) for t in traj])
    if isinstance(traj, mdtraj.Trajectory):
        traj = system.adopt(traj, "the samples")
    return system.check_positions(traj, "samples")


def featurize_samples(system: MolecularSystem, traj, selection: str | Sequence[int] = "heavy",
                      reference=None) -> tuple[CartesianFeaturizer, np.ndarray]:
    """Fit a :class:`CartesianFeaturizer` on MD samples and return it with the features.

    ``traj``: mdtraj Trajectory, :class:`~tps_diffusion.molecular.md.MDResult`, positions
    ``(n_frames, n_atoms, 3)`` nm, or a list of those. ``selection``: ``"heavy"`` (non-hydrogen
    atoms), ``"all"``, any mdtraj selection string, or atom indices. ``reference``: alignment
    reference (default: ``system.positions``). Returns ``(featurizer, x (n_frames, 3 * n_sel))``.
    """
    xyz = _positions(system, traj)
    feat = CartesianFeaturizer(system, resolve_selection(selection), reference=reference)
    return feat, feat.fit_transform(xyz)


def train_on_samples(system: MolecularSystem, traj, selection: str | Sequence[int] = "heavy",
                     model_config: dict | DenoiserConfig | None = None, train_config: dict | TrainConfig | None = None,
                     checkpoint: str | Path | None = None, overwrite: bool = False, resume: bool = False,
                     data_recipe: Mapping | None = None, reference=None, n_check_samples: int = N_CHECK_SAMPLES,
                     device: str | torch.device = "auto", progress: bool = True, callback=None) -> MolecularModel:
    """Featurise MD samples and train the Cartesian denoiser on them.

    ``model_config`` / ``train_config``: dicts of overrides of :data:`MOLECULAR_TRAINING` (or full
    :class:`DenoiserConfig` / :class:`TrainConfig`). ``data_recipe``: how the samples were made
    (temperatures, steps, starts ...), stored with the model; taken from an ``MDResult``'s settings
    when not given. With ``checkpoint`` the model is saved there (see :meth:`MolecularModel.load`);
    ``callback`` is passed to :func:`tps_diffusion.core.training.train`.
    """
    t0 = time.perf_counter()
    feat, x = featurize_samples(system, traj, selection, reference)
    tcfg = updated_config(TrainConfig, MOLECULAR_TRAINING["train"], train_config)
    mcfg = updated_config(DenoiserConfig, dict(MOLECULAR_TRAINING["model"], dim=x.shape[1]), model_config)
    if data_recipe is not None:
        recipe = dict(data_recipe)
    else:
        recipe = dict(traj.settings) if isinstance(traj, MDResult) else {}
    recipe.setdefault("n_samples", int(len(x)))
    selection = selection if isinstance(selection, str) else [int(i) for i in selection]
    record = MolecularModel(diffusion=None, featurizer=feat, system_name=system.name, temperature=system.temperature,
                            selection=selection, data_recipe=recipe,
                            endpoint_check=EndpointCheck.from_features(x, n_check_samples, tcfg.seed),
                            system_info=system.info)
    record.diffusion = train(x, mcfg, tcfg, normalizer=Normalizer.identity(x.shape[1]), checkpoint=checkpoint,
                             resume=resume, overwrite=overwrite, metadata=record.metadata(), device=device,
                             progress=progress, callback=callback)
    record.train_seconds = time.perf_counter() - t0
    return record

