"""Training a denoiser on samples, with EMA weights and resumable checkpoints.

The loss is the x0-prediction loss with the preconditioning of :mod:`tps_diffusion.core.denoiser`
(docs/method.md, section 2).
Log-SNR values are drawn uniformly over ``[lam_min, lam_max]`` or, with
``lam_sampling="importance"``, from a histogram proportional to the running loss per bin
(mixed with 10 % uniform), each sample reweighted so that the objective stays the uniform
average.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..utils.files import atomic_path, check_writable, writing
from ..utils.provenance import versions
from .checks import LAM_LIMIT, check_choice, check_int, check_lam, check_real, check_seed
from .denoiser import Denoiser, DenoiserConfig
from .device import resolve_device
from .normalizer import Normalizer, check_samples

CHECKPOINT_FORMAT = "tps_diffusion.checkpoint/1"


@dataclass
class TrainConfig:
    """Optimisation settings (stored in checkpoints)."""

    steps: int = 20_000
    batch_size: int = 1024
    lr: float = 1e-3
    warmup: int = 200
    ema_decay: float = 0.999
    lam_min: float = -10.0
    lam_max: float = 10.0
    lam_sampling: str = "uniform"  # or "importance"
    n_lam_bins: int = 32
    checkpoint_every: int = 1000
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise a one-line ValueError/TypeError naming the field and its allowed range if a setting is invalid."""
        check_choice(self.lam_sampling, "lam_sampling", ("uniform", "importance"))
        check_int(self.steps, "TrainConfig.steps", 1, "train for at least one step (e.g. 20000)")
        check_int(self.batch_size, "TrainConfig.batch_size", 1, "use a batch size such as 1024")
        check_real(self.lr, "TrainConfig.lr", low=0.0, low_open=True, fix="use a learning rate such as 1e-3")
        check_int(self.warmup, "TrainConfig.warmup", 0, "use 0 (no warm-up) or a number of steps such as 200")
        check_real(self.ema_decay, "TrainConfig.ema_decay", low=0.0, high=1.0, high_open=True,
                   fix="use a decay such as 0.999 (0: no averaging)")
        check_lam(self.lam_min, "TrainConfig.lam_min")
        check_lam(self.lam_max, "TrainConfig.lam_max")
        if not self.lam_min < self.lam_max:
            raise ValueError(f"TrainConfig.lam_min ({self.lam_min}) must be below lam_max ({self.lam_max}); "
                             + ("swap them" if self.lam_min > self.lam_max else "widen the range (e.g. -10 to 10)"))
        check_int(self.n_lam_bins, "TrainConfig.n_lam_bins", 1, "use a number of log-SNR bins such as 32")
        check_int(self.checkpoint_every, "TrainConfig.checkpoint_every", 1,
                  "save every N >= 1 steps (e.g. 1000; the final step is always saved)")
        check_seed(self.seed, "TrainConfig.seed")


@dataclass
class DiffusionModel:
    """A trained denoiser together with everything needed to use it on physical data.

    ``metadata`` carries what produced the model (e.g. the featurizer of a molecular system,
    the system name); ``denoiser`` holds the EMA weights and works in model coordinates.
    """

    denoiser: Denoiser
    normalizer: Normalizer
    train_config: TrainConfig
    metadata: dict = field(default_factory=dict)
    versions: dict = field(default_factory=lambda: versions("torch"))

    @property
    def dim(self) -> int:
        return self.denoiser.config.dim

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> "DiffusionModel":
        """Load a checkpoint written by :func:`train` (EMA weights)."""
        ckpt = _read_checkpoint(path)
        denoiser = Denoiser(DenoiserConfig(**_tuplify(ckpt["model_config"])))
        denoiser.load_state_dict(ckpt["ema_state"])
        denoiser.to(resolve_device(device)).eval().requires_grad_(False)
        return cls(denoiser, Normalizer.from_dict(ckpt["normalizer"]), TrainConfig(**ckpt["train_config"]),
                   ckpt.get("metadata", {}), ckpt.get("versions", {}))

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the model (EMA weights, configs, normalisation, metadata, versions) atomically to ``path``
        in the checkpoint format of :func:`train`, without optimiser state: loadable with :meth:`load`,
        not resumable."""
        state = {"format": CHECKPOINT_FORMAT, "model_config": self.denoiser.config.to_dict(),
                 "train_config": asdict(self.train_config), "normalizer": self.normalizer.to_dict(),
                 "metadata": self.metadata, "versions": self.versions,
                 "ema_state": {k: v.detach().cpu() for k, v in self.denoiser.state_dict().items()}}
        with atomic_path(path, overwrite) as tmp, writing(path):  # full disk: "[enforce fail at inline_container.cc]"
            torch.save(state, tmp)
        return Path(path)


def _tuplify(cfg: dict) -> dict:
    cfg = dict(cfg)
    cfg["lam_range"] = tuple(cfg["lam_range"])
    return cfg


def _read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; train a model first (tps-diffusion train)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path} is not a readable tps_diffusion checkpoint ({type(exc).__name__}); retrain or pick "
                         "another file") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tps_diffusion checkpoint (format {CHECKPOINT_FORMAT}); retrain or pick "
                         "another file")
    return ckpt


def _lam_sampler(cfg: TrainConfig, bin_loss: torch.Tensor, n: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` log-SNR values and their importance weights (CPU tensors)."""
    lo, hi = cfg.lam_min, cfg.lam_max
    if cfg.lam_sampling == "uniform":
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    k = cfg.n_lam_bins
    p = 0.9 * bin_loss / bin_loss.sum() + 0.1 / k
    b = torch.multinomial(p, n, replacement=True, generator=gen)
    lam = lo + (hi - lo) * (b + torch.rand(n, generator=gen, dtype=torch.float64)) / k
    return lam, (1.0 / k) / p[b]


def train(
    samples: np.ndarray,
    model_config: DenoiserConfig | None = None,
    train_config: TrainConfig | None = None,
    normalizer: Normalizer | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    metadata: dict | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> DiffusionModel:
    """Train a denoiser on ``samples (n, D)`` given in data units.

    ``normalizer`` defaults to :meth:`Normalizer.fit` on the samples; ``model_config`` to a
    :class:`DenoiserConfig` of the right dimension with ``sigma_data`` measured in model units.
    With ``checkpoint``, the state is saved every ``checkpoint_every`` steps and at the end
    (atomically); ``resume=True`` continues from an existing checkpoint, which must have been
    made with the same model config and normalisation. ``callback`` is called after every step
    with ``{"step": int, "loss": Tensor (0-d, on the device: call .item() only when needed), "lr": float}``.
    """
    for value, name, cls in ((model_config, "model_config", DenoiserConfig),
                             (train_config, "train_config", TrainConfig), (normalizer, "normalizer", Normalizer)):
        if value is not None and not isinstance(value, cls):
            raise TypeError(f"{name} must be a {cls.__name__} or None, got {type(value).__name__}; pass "
                            f"{cls.__name__}(...)")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable (called with a dict after every step), got "
                        f"{type(callback).__name__}")
    samples = check_samples(samples)
    tcfg = train_config or TrainConfig()
    tcfg.validate()  # the dataclass is mutable: check the values as they are now
    norm = normalizer or Normalizer.fit(samples)
    if norm.dim != samples.shape[1]:
        raise ValueError(f"normalizer has {norm.dim} features but samples have {samples.shape[1]}; fit the normalizer "
                         "on these samples (Normalizer.fit) or pass normalizer=None")
    x_model = norm.forward(samples)
    mcfg = model_config or DenoiserConfig(dim=samples.shape[1], sigma_data=float(x_model.std()))
    mcfg.validate()
    if mcfg.dim != samples.shape[1]:
        raise ValueError(f"model_config.dim is {mcfg.dim} but samples have {samples.shape[1]} features; set "
                         f"DenoiserConfig(dim={samples.shape[1]}, ...)")
    dev = resolve_device(device)

    torch.manual_seed(tcfg.seed)
    gen = torch.Generator().manual_seed(tcfg.seed)
    model = Denoiser(mcfg).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    bin_loss = torch.ones(tcfg.n_lam_bins, dtype=torch.float64)
    step = 0

    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None:
        _check_checkpoint_dir(ckpt_path)
    if ckpt_path is not None and ckpt_path.exists():
        if resume:
            ckpt = _read_checkpoint(ckpt_path)
            if "optimizer_state" not in ckpt:
                raise ValueError(f"{ckpt_path} holds a finished model (DiffusionModel.save), not a training "
                                 "checkpoint; it cannot be resumed: train into a new checkpoint path")
            _check_compatible(ckpt, mcfg, tcfg, norm, ckpt_path)
            model.load_state_dict(ckpt["model_state"])
            ema.load_state_dict(ckpt["ema_state"])
            opt.load_state_dict(ckpt["optimizer_state"])
            bin_loss = ckpt["bin_loss"]
            gen.set_state(ckpt["rng_state"])
            step = ckpt["step"]
        else:
            check_writable(ckpt_path, overwrite)

    data = torch.as_tensor(x_model, dtype=torch.float32, device=dev)
    meta = dict(metadata or {})

    def save():
        if ckpt_path is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT, "model_config": mcfg.to_dict(), "train_config": asdict(tcfg),
            "normalizer": norm.to_dict(), "metadata": meta, "versions": versions("torch"), "step": step,
            "model_state": model.state_dict(), "ema_state": ema.state_dict(),
            "optimizer_state": opt.state_dict(), "bin_loss": bin_loss, "rng_state": gen.get_state(),
        }
        with atomic_path(ckpt_path, overwrite=True) as tmp, writing(ckpt_path):
            torch.save(state, tmp)

    bar = tqdm(total=tcfg.steps, initial=step, desc="training", disable=not progress, mininterval=1.0)
    while step < tcfg.steps:
        idx = torch.randint(0, data.shape[0], (tcfg.batch_size,), generator=gen).to(dev)
        lam, weight = _lam_sampler(tcfg, bin_loss, tcfg.batch_size, gen)
        eps = torch.randn(tcfg.batch_size, mcfg.dim, generator=gen).to(dev)
        per_sample = model.loss(data[idx], lam.to(dev, torch.float32), eps)
        loss = (per_sample * weight.to(dev, torch.float32)).mean()
        if not torch.isfinite(loss):
            save()
            raise FloatingPointError(f"training loss became {loss.item()} at step {step}; lower --lr (now {tcfg.lr:g}) "
                                     f"or narrow the training log-SNR range [lam_min, lam_max] = [{tcfg.lam_min:g}, "
                                     f"{tcfg.lam_max:g}] (log-SNR beyond +-{LAM_LIMIT:g} is numerically meaningless: "
                                     "the sigmoid saturates) (checkpoint kept at the last finite step)")
        for group in opt.param_groups:
            group["lr"] = _learning_rate(tcfg, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(tcfg.ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
            if tcfg.lam_sampling == "importance":
                b = ((lam - tcfg.lam_min) / (tcfg.lam_max - tcfg.lam_min) * tcfg.n_lam_bins).long()
                b = b.clamp(0, tcfg.n_lam_bins - 1)
                sums = torch.zeros_like(bin_loss).index_add_(0, b, per_sample.detach().double().cpu())
                counts = torch.zeros_like(bin_loss).index_add_(0, b, torch.ones_like(lam))
                seen = counts > 0
                bin_loss[seen] = 0.99 * bin_loss[seen] + 0.01 * sums[seen] / counts[seen]
        step += 1
        bar.update(1)
        if callback is not None:
            callback({"step": step, "loss": loss.detach(), "lr": opt.param_groups[0]["lr"]})
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % tcfg.checkpoint_every == 0 or step == tcfg.steps:
            save()
    bar.close()
    ema.eval()
    return DiffusionModel(ema, norm, tcfg, meta)


def _check_checkpoint_dir(path: Path) -> None:
    """Fail before training if ``path`` cannot be written: a directory, or in a directory that
    does not exist and cannot be created, or that is not writable."""
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a directory; give a file path such as {path / 'model.pt'}")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"cannot write the checkpoint {path}: its directory {parent} cannot be created or written "
                         f"({reason}); choose a checkpoint path in a writable directory") from None


def _learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to 1 % of ``cfg.lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


#: training settings that may change when a run is resumed (e.g. to train for longer)
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


def _check_compatible(ckpt: dict, mcfg: DenoiserConfig, tcfg: TrainConfig, norm: Normalizer, path: Path) -> None:
    saved = _tuplify(ckpt["model_config"])
    wanted = {k: tuple(v) if k == "lam_range" else v for k, v in mcfg.to_dict().items()}
    wanted.update({k: v for k, v in asdict(tcfg).items() if k not in RESUMABLE_CHANGES})
    saved.update({k: v for k, v in ckpt["train_config"].items() if k not in RESUMABLE_CHANGES})
    for key, value in wanted.items():
        if saved.get(key) != value:
            raise ValueError(f"checkpoint {path} was made with {key}={saved.get(key)!r}, not {value!r}; use a new "
                             "checkpoint path or the same settings")
    saved_norm = Normalizer.from_dict(ckpt["normalizer"])
    same = saved_norm.dim == norm.dim and np.allclose(saved_norm.mean, norm.mean)
    if not same or not np.isclose(saved_norm.scale, norm.scale):
        raise ValueError(f"checkpoint {path} was trained on differently normalised data; use a new checkpoint path or "
                         "the same data")
