"""Bad inputs to the torch-only core: a one-line ValueError/TypeError that names the fix, before any long work.

One parametrised test per group of cases (configs, geodesic endpoints, samplers, samples, checkpoints,
benchmarks and JSON output, path metrics), then a property-based layer (hypothesis): random finite,
non-finite, negative and wrongly typed values either work (and give finite results) or raise
ValueError/TypeError with a one-line message, never anything else.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from closed_forms import GaussianDenoiser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tps_diffusion.core.denoiser import Denoiser, DenoiserConfig
from tps_diffusion.core.geodesic import GeodesicConfig, optimise_geodesic
from tps_diffusion.core.langevin import annealed_langevin, langevin, tilt_schedule
from tps_diffusion.core.normalizer import Normalizer, check_samples
from tps_diffusion.core.training import TrainConfig, train
from tps_diffusion.potentials.metrics import hit_rate, max_energy, minimax_bound
from tps_diffusion.utils.files import write_json

NAN, INF = float("nan"), float("inf")
TINY = dict(hidden=8, depth=1, n_freq=2, lam_freq=2)


def assert_one_line(exc: BaseException, pattern: str) -> None:
    """The message is a single non-empty line and matches ``pattern`` (the key phrase of the fix)."""
    msg = str(exc)
    assert msg.strip() and "\n" not in msg and "\r" not in msg, repr(msg)
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"


def check(call, exc_type, pattern):
    with pytest.raises(exc_type) as info:
        call()
    assert type(info.value) is exc_type or isinstance(info.value, exc_type)
    assert_one_line(info.value, pattern)


def samples(n=64, seed=0):
    return np.random.default_rng(seed).normal([1.0, -2.0], 0.5, size=(n, 2))


def quadratic(y):
    return 0.5 * (y**2).sum(-1)


def gauss():
    return GaussianDenoiser([0.0, 0.0], 1.0)


A64, B64 = torch.tensor([-1.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
FAST_GEO = dict(steps=2, n_points=8, n_nodes=2)


# ---------------------------------------------------------------------------------------------
# 1. DenoiserConfig and TrainConfig

CONFIG_CASES = [
    ("hidden0", lambda: DenoiserConfig(dim=2, hidden=0), ValueError, r"DenoiserConfig\.hidden \(0\) must be >= 1"),
    ("depth-1", lambda: DenoiserConfig(dim=2, depth=-1), ValueError, r"DenoiserConfig\.depth \(-1\) must be >= 0"),
    ("dim0", lambda: DenoiserConfig(dim=0), ValueError, r"DenoiserConfig\.dim \(0\) must be >= 1"),
    ("hidden_float", lambda: DenoiserConfig(dim=2, hidden=2.5), TypeError, r"hidden must be an integer.*whole number"),
    ("sigma0", lambda: DenoiserConfig(dim=2, sigma_data=0.0), ValueError, r"sigma_data.*> 0.*standard deviation"),
    ("sigma_nan", lambda: DenoiserConfig(dim=2, sigma_data=NAN), ValueError, r"sigma_data is nan.*finite"),
    ("sigma_inf", lambda: DenoiserConfig(dim=2, sigma_data=INF), ValueError, r"sigma_data is inf.*finite"),
    ("n_freq0", lambda: DenoiserConfig(dim=2, n_freq=0), ValueError, r"n_freq \(0\) must be >= 1"),
    ("lam_freq0", lambda: DenoiserConfig(dim=2, lam_freq=0), ValueError, r"lam_freq \(0\) must be >= 1"),
    ("lam_range_flat", lambda: DenoiserConfig(dim=2, lam_range=(1.0, 1.0)), ValueError, r"lam_range.*increasing"),
    ("lam_range_down", lambda: DenoiserConfig(dim=2, lam_range=(2.0, -2.0)), ValueError, r"swap them"),
    ("lam_range_nan", lambda: DenoiserConfig(dim=2, lam_range=(NAN, 1.0)), ValueError, r"lam_range\[0\].*finite"),
    ("periodic_len", lambda: DenoiserConfig(dim=2, periodic=[True]), ValueError, r"one bool per dimension"),
    ("steps0", lambda: TrainConfig(steps=0), ValueError, r"TrainConfig\.steps \(0\) must be >= 1"),
    ("batch0", lambda: TrainConfig(batch_size=0), ValueError, r"batch_size \(0\) must be >= 1"),
    ("lr0", lambda: TrainConfig(lr=0.0), ValueError, r"TrainConfig\.lr \(0\.0\) must be > 0.*learning rate"),
    ("lr_neg", lambda: TrainConfig(lr=-1e-3), ValueError, r"TrainConfig\.lr .* must be > 0"),
    ("lr_nan", lambda: TrainConfig(lr=NAN), ValueError, r"TrainConfig\.lr is nan.*finite"),
    ("lr_inf", lambda: TrainConfig(lr=INF), ValueError, r"TrainConfig\.lr is inf.*finite"),
    ("lr_str", lambda: TrainConfig(lr="fast"), TypeError, r"lr must be a real number.*pass a float"),
    ("warmup-1", lambda: TrainConfig(warmup=-1), ValueError, r"warmup \(-1\) must be >= 0"),
    ("ema1", lambda: TrainConfig(ema_decay=1.0), ValueError, r"ema_decay \(1\.0\) must be in \[0, 1\)"),
    ("ema_neg", lambda: TrainConfig(ema_decay=-0.1), ValueError, r"ema_decay .* must be in \[0, 1\)"),
    ("ema_nan", lambda: TrainConfig(ema_decay=NAN), ValueError, r"ema_decay is nan"),
    ("lam_swapped", lambda: TrainConfig(lam_min=3.0, lam_max=-1.0), ValueError,
     r"TrainConfig\.lam_min \(3\.0\) must be below lam_max \(-1\.0\); swap them"),
    ("lam_equal", lambda: TrainConfig(lam_min=1.0, lam_max=1.0), ValueError, r"must be below lam_max.*widen"),
    ("lam_min_nan", lambda: TrainConfig(lam_min=NAN), ValueError, r"lam_min is nan.*finite"),
    ("lam_max_inf", lambda: TrainConfig(lam_max=INF), ValueError, r"lam_max is inf.*finite"),
    ("lam_max_1000", lambda: TrainConfig(lam_max=1000.0), ValueError, r"lam_max \(1000\.0\).*beyond \+-30.*sigmoid"),
    ("lam_min_-31", lambda: TrainConfig(lam_min=-31.0), ValueError, r"numerically meaningless"),
    ("bins0", lambda: TrainConfig(n_lam_bins=0), ValueError, r"n_lam_bins \(0\) must be >= 1"),
    ("ckpt_every0", lambda: TrainConfig(checkpoint_every=0), ValueError, r"checkpoint_every \(0\) must be >= 1"),
    ("steps_str", lambda: TrainConfig(steps="10"), TypeError, r"steps must be an integer"),
    ("seed_huge", lambda: TrainConfig(seed=2**70), ValueError, r"seed.*outside the seeds torch accepts"),
    ("sampling", lambda: TrainConfig(lam_sampling="fancy"), ValueError, r"unknown lam_sampling 'fancy'"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_model_and_training_configs(call, exc, pattern):
    check(call, exc, pattern)


def test_train_rechecks_a_mutated_config_before_training():
    cfg = TrainConfig(steps=5, batch_size=8)
    cfg.steps = 0  # the dataclass is mutable: train checks the values it is given
    check(lambda: train(samples(), DenoiserConfig(dim=2, **TINY), cfg, progress=False, device="cpu"),
          ValueError, r"TrainConfig\.steps \(0\) must be >= 1")
    check(lambda: train(samples(), train_config={"steps": 5}, progress=False, device="cpu"),
          TypeError, r"train_config must be a TrainConfig")


def test_non_finite_training_loss_names_lr_and_log_snr_range(monkeypatch):
    monkeypatch.setattr(Denoiser, "loss", lambda self, x0, lam, eps: torch.full((len(x0),), NAN))
    check(lambda: train(samples(), DenoiserConfig(dim=2, **TINY), TrainConfig(steps=3, batch_size=8),
                        progress=False, device="cpu"),
          FloatingPointError, r"lower --lr.*log-SNR range \[lam_min, lam_max\] = \[-10, 10\].*sigmoid saturates")


# ---------------------------------------------------------------------------------------------
# 2. GeodesicConfig

GEO_CONFIG_CASES = [
    ("lam_end_nan", dict(lam_end=NAN), ValueError, r"lam_end is nan.*finite"),
    ("lam_end_inf", dict(lam_end=INF), ValueError, r"lam_end is inf.*finite"),
    ("lam_end_1000", dict(lam_end=1000.0), ValueError, r"lam_end \(1000\.0\).*beyond \+-30.*sigmoid saturates"),
    ("lam_end_-31", dict(lam_end=-31.0), ValueError, r"outside \[-30, 30\]"),
    ("points0", dict(n_points=0), ValueError, r"n_points \(0\) must be >= 3.*at least 3 points"),
    ("points1", dict(n_points=1), ValueError, r"n_points \(1\) must be >= 3"),
    ("points2", dict(n_points=2), ValueError, r"n_points \(2\) must be >= 3"),
    ("points_float", dict(n_points=12.5), TypeError, r"n_points must be an integer"),
    ("nodes0", dict(n_nodes=0), ValueError, r"n_nodes \(0\) must be >= 1"),
    ("steps0", dict(steps=0), ValueError, r"GeodesicConfig\.steps \(0\) must be >= 1"),
    ("lr0", dict(lr=0.0), ValueError, r"GeodesicConfig\.lr \(0\.0\) must be > 0"),
    ("lr_nan", dict(lr=NAN), ValueError, r"GeodesicConfig\.lr is nan"),
    ("rho_var_nan", dict(rho_var=NAN), ValueError, r"rho_var is nan.*finite"),
    ("rho_kl_inf", dict(rho_kl=INF), ValueError, r"rho_kl is inf.*finite"),
    ("w_var_nan", dict(w_var=NAN), ValueError, r"w_var is nan"),
    ("w_kl_inf", dict(w_kl=INF), ValueError, r"w_kl is inf"),
    ("w_var_neg", dict(w_var=-1.0), ValueError, r"w_var \(-1\.0\) must be >= 0"),
    ("sharp0", dict(sharpness=0.0), ValueError, r"sharpness \(0\.0\) must be > 0"),
    ("sharp_nan", dict(sharpness=NAN), ValueError, r"sharpness is nan"),
    ("margin_neg", dict(margin=-0.1), ValueError, r"margin \(-0\.1\) must be >= 0"),
    ("probes0", dict(n_probes=0), ValueError, r"n_probes \(0\) must be >= 1.*None \(exact divergence\)"),
    ("tol_neg", dict(tol=-1.0), ValueError, r"tol \(-1\.0\) must be >= 0"),
    ("tol_nan", dict(tol=NAN), ValueError, r"tol is nan"),
    ("mode", dict(mode="fast"), ValueError, r"unknown geodesic mode 'fast'; choose one of"),
    ("rho_var_above_end", dict(mode="low_variance", rho_var=5.0), ValueError, r"lower rho_var or raise lam_end"),
]


@pytest.mark.parametrize("kw, exc, pattern", [c[1:] for c in GEO_CONFIG_CASES], ids=[c[0] for c in GEO_CONFIG_CASES])
def test_bad_geodesic_configs(kw, exc, pattern):
    check(lambda: GeodesicConfig(**kw), exc, pattern)


# ---------------------------------------------------------------------------------------------
# 3. optimise_geodesic: endpoints, shapes, a model that is NaN from the start

def _nan_model(x, lam):
    return x * NAN


def _mutated():
    cfg = GeodesicConfig(**FAST_GEO)
    cfg.lam_end = NAN
    return cfg


GEODESIC_CASES = [
    ("start_nan", lambda: optimise_geodesic(gauss(), torch.tensor([NAN, 0.0]), B64, GeodesicConfig(**FAST_GEO),
                                            progress=False), ValueError, r"x_start contains 1 NaN/inf.*finite"),
    ("end_inf", lambda: optimise_geodesic(gauss(), A64, torch.tensor([INF, 0.0]), GeodesicConfig(**FAST_GEO),
                                          progress=False), ValueError, r"x_end contains 1 NaN/inf"),
    ("avoid_nan", lambda: optimise_geodesic(gauss(), A64, B64, GeodesicConfig(mode="avoid", **FAST_GEO),
                                            avoid=torch.tensor([4.0, NAN, 0.0]), progress=False),
     ValueError, r"avoid contains 1 NaN/inf.*finite"),
    ("avoid_lam_1000", lambda: optimise_geodesic(gauss(), A64, B64, GeodesicConfig(mode="avoid", **FAST_GEO),
                                                 avoid=torch.tensor([1000.0, 0.0, 0.0]), progress=False),
     ValueError, r"log-SNR of avoid.*sigmoid saturates"),
    ("avoid_shape", lambda: optimise_geodesic(gauss(), A64, B64, GeodesicConfig(mode="avoid", **FAST_GEO),
                                              avoid=torch.tensor([4.0, 0.0]), progress=False),
     ValueError, r"avoid has shape \(2,\).*of shape \(3,\)"),
    ("start_end_dims", lambda: optimise_geodesic(gauss(), A64, torch.zeros(3, dtype=torch.float64),
                                                 GeodesicConfig(**FAST_GEO), progress=False),
     ValueError, r"x_start has shape \(2,\) but x_end has shape \(3,\).*same model coordinates"),
    ("batch_sizes", lambda: optimise_geodesic(gauss(), torch.zeros(2, 2), torch.ones(3, 2),
                                              GeodesicConfig(**FAST_GEO), progress=False),
     ValueError, r"\(2, 2\) and x_end \(3, 2\).*equal numbers"),
    ("start_3d", lambda: optimise_geodesic(gauss(), torch.zeros(1, 2, 2), B64, GeodesicConfig(**FAST_GEO),
                                           progress=False), ValueError, r"x_start must have shape \(D,\) or \(B, D\)"),
    ("denoiser_dim", lambda: optimise_geodesic(Denoiser(DenoiserConfig(dim=2, **TINY)), torch.zeros(3), torch.ones(3),
                                               GeodesicConfig(**FAST_GEO), progress=False),
     ValueError, r"endpoints have shape \(1, 3\) \(D = 3\) but the denoiser expects D = 2.*model's coordinates"),
    ("callable_dim", lambda: optimise_geodesic(gauss(), torch.zeros(3), torch.ones(3), GeodesicConfig(**FAST_GEO),
                                               progress=False), ValueError, r"denoiser.*D = 3.*denoiser's dimension"),
    ("config_dict", lambda: optimise_geodesic(gauss(), A64, B64, {"steps": 2}, progress=False),
     TypeError, r"config must be a GeodesicConfig"),
    ("mutated_config", lambda: optimise_geodesic(gauss(), A64, B64, _mutated(), progress=False),
     ValueError, r"lam_end is nan"),
    ("nan_from_step0", lambda: optimise_geodesic(_nan_model, A64, B64, GeodesicConfig(**FAST_GEO), progress=False),
     FloatingPointError, r"no finite curve exists.*NaN/inf at these endpoints.*lam_end \(4\).*trained log-SNR range"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in GEODESIC_CASES], ids=[c[0] for c in GEODESIC_CASES])
def test_bad_geodesic_inputs(call, exc, pattern):
    check(call, exc, pattern)


def test_valid_geodesic_unchanged_by_checks():
    geo = optimise_geodesic(gauss(), A64, B64, GeodesicConfig(**FAST_GEO), progress=False)
    assert geo.curve.shape == (1, 8, 3) and torch.isfinite(geo.curve).all() and geo.message == ""


# ---------------------------------------------------------------------------------------------
# 4. langevin, annealed_langevin, tilt_schedule

C2 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
K2 = torch.tensor([5.0, 5.0])


def al(**kw):
    args = dict(U=quadratic, centres=C2, stiffness=K2, start=torch.zeros(2), n_paths=3, steps_per_point=2, ds=1e-2,
                device="cpu", progress=False)
    args.update(kw)
    return lambda: annealed_langevin(**args)


LANGEVIN_CASES = [
    ("y0_nan", lambda: langevin(quadratic, torch.tensor([[NAN, 0.0]]), 5, 1e-2), ValueError, r"y0 contains 1 NaN/inf"),
    ("y0_numpy", lambda: langevin(quadratic, np.zeros((2, 2)), 5, 1e-2), TypeError, r"torch\.as_tensor"),
    ("y0_int", lambda: langevin(quadratic, torch.zeros(2, 2, dtype=torch.long), 5, 1e-2), TypeError,
     r"floating-point.*float"),
    ("lv_ds0", lambda: langevin(quadratic, torch.zeros(2, 2), 5, 0.0), ValueError, r"ds \(0\.0\) must be > 0"),
    ("lv_ds_nan", lambda: langevin(quadratic, torch.zeros(2, 2), 5, NAN), ValueError, r"ds is nan"),
    ("lv_kT0", lambda: langevin(quadratic, torch.zeros(2, 2), 5, 1e-2, kT=0.0), ValueError, r"kT \(0\.0\) must be > 0"),
    ("lv_kT_inf", lambda: langevin(quadratic, torch.zeros(2, 2), 5, 1e-2, kT=INF), ValueError, r"kT is inf"),
    ("lv_steps-1", lambda: langevin(quadratic, torch.zeros(2, 2), -1, 1e-2), ValueError,
     r"n_steps \(-1\) must be >= 0"),
    ("lv_record-1", lambda: langevin(quadratic, torch.zeros(2, 2), 5, 1e-2, record_every=-1), ValueError,
     r"record_every \(-1\) must be >= 0"),
    ("centres_nan", al(centres=torch.tensor([[0.0, NAN], [1.0, 1.0]])), ValueError,
     r"centres contains 1 NaN/inf.*tilt_schedule"),
    ("stiffness_nan", al(stiffness=torch.tensor([NAN, 1.0])), ValueError, r"stiffness contains 1 NaN/inf"),
    ("stiffness_neg", al(stiffness=torch.tensor([-1.0, 1.0])), ValueError, r"stiffness has 1 negative.*tilt_schedule"),
    ("start_inf", al(start=torch.tensor([INF, 0.0])), ValueError, r"start contains 1 NaN/inf.*finite point"),
    ("kT0", al(kT=0.0), ValueError, r"kT \(0\.0\) must be > 0.*thermal energy"),
    ("kT_nan", al(kT=NAN), ValueError, r"kT is nan"),
    ("ds0", al(ds=0.0), ValueError, r"ds \(0\.0\) must be > 0.*small positive step"),
    ("ds_neg", al(ds=-1e-3), ValueError, r"ds \(-0\.001\) must be > 0"),
    ("ds_inf", al(ds=INF), ValueError, r"ds is inf"),
    ("paths0", al(n_paths=0), ValueError, r"n_paths \(0\) must be >= 1.*at least one path"),
    ("k0", al(steps_per_point=0), ValueError, r"steps_per_point \(0\) must be >= 1"),
    ("paths_float", al(n_paths=2.0), TypeError, r"n_paths must be an integer"),
    ("stiffness_len", al(stiffness=torch.ones(3)), ValueError, r"centres has shape \(2, 2\) but stiffness \(3,\)"),
    ("start_dim", al(start=torch.zeros(3)), ValueError, r"start has shape \(3,\) but centres have D = 2"),
    ("start_rows", al(start=torch.zeros(2, 2)), ValueError, r"one start point \(2,\) or one per path \(3, 2\)"),
    ("centres_1d", al(centres=torch.zeros(2)), ValueError, r"centres must have shape \(N, D\)"),
    ("U_shape", al(U=lambda y: (y**2).sum()), ValueError, r"one energy per walker.*reduce over the last axis"),
    ("U_nan", al(U=lambda y: (y**2).sum(-1) * NAN), ValueError, r"NaN/inf at the start point"),
    ("tilt_dim", lambda: tilt_schedule(torch.zeros(4, 2), Normalizer.identity(2)), ValueError,
     r"curve must have shape \(N, 1 \+ D\) = \(N, 3\).*got \(4, 2\)"),
    ("tilt_1d", lambda: tilt_schedule(torch.zeros(3), Normalizer.identity(2)), ValueError, r"\(N, 1 \+ D\)"),
    ("tilt_nan", lambda: tilt_schedule(torch.tensor([[4.0, NAN, 0.0]]), Normalizer.identity(2)), ValueError,
     r"curve contains 1 NaN/inf.*re-run the geodesic"),
    ("tilt_norm", lambda: tilt_schedule(torch.zeros(4, 3), None), TypeError, r"normalizer must be a Normalizer"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in LANGEVIN_CASES], ids=[c[0] for c in LANGEVIN_CASES])
def test_bad_sampler_inputs(call, exc, pattern):
    check(call, exc, pattern)


# ---------------------------------------------------------------------------------------------
# 5. samples and the normaliser

SAMPLE_CASES = [
    ("identical_fit", lambda: Normalizer.fit(np.ones((10, 3))), ValueError,
     r"all training samples are \(nearly\) identical \(spread 0\); need samples of the basins"),
    ("identical_offset", lambda: check_samples(np.full((10, 2), 1e6)), ValueError, r"\(nearly\) identical"),
    ("nearly_identical", lambda: check_samples(1e3 + 1e-10 * np.arange(8.0)[:, None] * np.ones(2)), ValueError,
     r"identical.*not one structure repeated"),
    ("identical_train", lambda: train(np.zeros((20, 2)), progress=False, device="cpu"), ValueError, r"identical"),
    ("nan", lambda: check_samples(np.array([[0.0, NAN], [1.0, 2.0]])), ValueError, r"NaN or inf; drop those frames"),
    ("one_row", lambda: check_samples(np.zeros((1, 2))), ValueError, r"n_samples >= 2"),
    ("strings", lambda: check_samples([["a", "b"], ["c", "d"]]), TypeError, r"array of numbers"),
    ("no_features", lambda: check_samples(np.zeros((5, 0))), ValueError, r"no features"),
    ("scale0", lambda: Normalizer(np.zeros(2), 0.0), ValueError, r"Normalizer\.scale \(0\.0\) must be > 0"),
    ("scale_nan", lambda: Normalizer(np.zeros(2), NAN), ValueError, r"Normalizer\.scale is nan"),
    ("mean_nan", lambda: Normalizer(np.array([0.0, NAN]), 1.0), ValueError, r"mean contains NaN/inf.*Normalizer\.fit"),
    ("mean_2d", lambda: Normalizer(np.zeros((2, 2)), 1.0), ValueError, r"non-empty 1-D array"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in SAMPLE_CASES], ids=[c[0] for c in SAMPLE_CASES])
def test_bad_samples_and_normalisers(call, exc, pattern):
    check(call, exc, pattern)


def test_distinct_samples_far_from_the_origin_still_fit():
    x = 1e3 + samples()  # large mean, ordinary spread
    assert Normalizer.fit(x).scale == pytest.approx(np.sqrt(((x - x.mean(0)) ** 2).mean()))


# ---------------------------------------------------------------------------------------------
# 6. train: checkpoint paths

def test_checkpoint_directory_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    check(lambda: train(samples(), DenoiserConfig(dim=2, **TINY), TrainConfig(steps=2, batch_size=8),
                        checkpoint=blocker / "sub" / "m.pt", progress=False, device="cpu"),
          ValueError, r"cannot write the checkpoint .*cannot be created or written.*writable directory")
    check(lambda: train(samples(), DenoiserConfig(dim=2, **TINY), TrainConfig(steps=2, batch_size=8),
                        checkpoint=tmp_path, progress=False, device="cpu"),
          ValueError, r"is a directory; give a file path such as .*model\.pt")
    check(lambda: train(samples()[:1], progress=False, device="cpu"), ValueError, r"n_samples >= 2")
    # a missing but creatable directory is fine
    train(samples(), DenoiserConfig(dim=2, **TINY), TrainConfig(steps=2, batch_size=8),
          checkpoint=tmp_path / "new" / "dir" / "m.pt", progress=False, device="cpu")
    assert (tmp_path / "new" / "dir" / "m.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == ["m.pt"]  # no probe file left


FULL_DISK = """
import resource, signal, sys
import numpy as np
from tps_diffusion.core.denoiser import DenoiserConfig
from tps_diffusion.core.training import TrainConfig, train
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
x = np.random.default_rng(0).normal(size=(64, 2))
try:
    train(x, DenoiserConfig(dim=2, hidden=8, depth=1, n_freq=2, lam_freq=2), TrainConfig(steps=2, batch_size=8),
          checkpoint=sys.argv[1], progress=False, device="cpu")
except OSError as exc:
    print(type(exc).__name__, exc)
"""


def test_checkpoint_on_a_full_disk_is_one_line_and_leaves_no_file(tmp_path):
    """torch.save fails on a real size limit (RLIMIT_FSIZE): one OSError line, no partial file."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "m.pt")], capture_output=True, text=True,
                         timeout=120)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and len(lines) == 1, (out.stdout, out.stderr[-2000:])
    assert re.match(r"OSError writing m\.pt failed \(.*\); is the disk full\? free space", lines[0]), lines[0]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# 7. benchmarks and JSON output

def test_bench_aldp2d_rejects_zero_paths_before_any_work(tmp_path):
    from tps_diffusion.bench.aldp2d import Recipe, check_recipe, run

    out = tmp_path / "r.json"
    check(lambda: run(out, n_paths=0, quick=True, device="cpu", progress=False), ValueError,
          r"n_paths \(--paths\) \(0\) must be >= 1; sample at least one path")
    assert not out.exists()
    for kw, pattern in [(dict(n_chains=1), r"n_chains \(1\) must be >= 2"),
                        (dict(chain_steps=100, chain_burn_in=100), r"leaves no recorded frame"),
                        (dict(steps_per_point=0), r"steps_per_point \(0\) must be >= 1"),
                        (dict(ds_constrained=NAN), r"ds_constrained is nan"),
                        (dict(hidden=0), r"hidden \(0\) must be >= 1")]:
        check(lambda kw=kw: check_recipe(Recipe(**kw)), ValueError, pattern)
    for kw, pattern in [(dict(geodesic_steps=0), r"GeodesicConfig\.steps \(0\)"),
                        (dict(n_points=2), r"n_points \(2\) must be >= 3"),
                        (dict(lam_end=NAN), r"lam_end is nan"), (dict(train_steps=0), r"TrainConfig\.steps \(0\)"),
                        (dict(rho_var=5.0), r"lower rho_var or raise lam_end")]:
        check(lambda kw=kw: run(tmp_path / "q.json", device="cpu", progress=False, recipe=Recipe(**kw)), ValueError,
              pattern)
    assert not (tmp_path / "q.json").exists()


def test_bench_aldp_and_kernel_reject_bad_counts(tmp_path):
    pytest.importorskip("openmm")
    from tps_diffusion.bench import aldp, kernel

    check(lambda: aldp.run(tmp_path / "a.json", n_paths=0, quick=True, device="cpu", progress=False), ValueError,
          r"n_paths \(--paths\) \(0\) must be >= 1")
    check(lambda: aldp.run(tmp_path / "a.json", quick=True, device="cpu", progress=False,
                           recipe=aldp.Recipe(baseline_runs=0)), ValueError, r"baseline_runs \(0\) must be >= 1")
    check(lambda: aldp.check_recipe(aldp.Recipe(write_paths=0)), ValueError, r"write_paths \(0\) must be >= 1")
    check(lambda: aldp.check_recipe(aldp.Recipe(n_points=1)), ValueError, r"n_points \(1\) must be >= 3")
    check(lambda: aldp.check_recipe(aldp.Recipe(avoid_lam=NAN)), ValueError, r"avoid_lam is nan")
    check(lambda: aldp.check_recipe(aldp.Recipe(mode_steps_per_point={"avoid": 0})), ValueError,
          r"mode_steps_per_point\['avoid'\] \(0\) must be >= 1")
    check(lambda: kernel.run(tmp_path / "k.json", device="cpu", progress=False,
                             recipe=kernel.KernelRecipe(batch_sizes=(1, 0))), ValueError,
          r"batch_sizes\[1\] \(0\) must be >= 1")
    check(lambda: kernel.run(tmp_path / "k.json", device="cpu", progress=False, threads=0), ValueError,
          r"threads \(0\) must be >= 1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("obj, where", [
    ({"a": NAN}, r"\['a'\] is nan"), ({"m": {"x": [1.0, INF]}}, r"\['x'\]\[1\] is inf"),
    ([1.0, -INF], r"\[1\] is -inf"), (NAN, r"the value is nan"), ({"v": np.float64("nan")}, r"\['v'\] is nan"),
])
def test_write_json_refuses_non_finite_numbers(tmp_path, obj, where):
    path = tmp_path / "out.json"
    check(lambda: write_json(path, obj), ValueError,
          rf"refusing to write .*out\.json: .*{where}, which is not valid JSON")
    check(lambda: write_json(path, obj), ValueError, r"store undefined values as None")
    assert not path.exists()


def test_write_json_unchanged_for_finite_data(tmp_path):
    obj = {"a": 1.5, "b": [1, None, "x"], "c": {"d": 1e300, "e": True}}
    write_json(tmp_path / "ok.json", obj)
    assert (tmp_path / "ok.json").read_text() == json.dumps(obj, indent=2, sort_keys=False) + "\n"


# ---------------------------------------------------------------------------------------------
# 8. path metrics

P3 = torch.zeros(2, 4, 2, dtype=torch.float64)
GRID = np.arange(16.0).reshape(4, 4)
METRIC_CASES = [
    ("max_e_nan", lambda: max_energy(quadratic, torch.tensor([[[0.0, NAN]]])), ValueError,
     r"paths contain NaN/inf in 1 of 1 paths; drop those paths"),
    ("max_e_empty_paths", lambda: max_energy(quadratic, torch.zeros(0, 4, 2)), ValueError, r"empty"),
    ("max_e_empty_frames", lambda: max_energy(quadratic, np.zeros((3, 0, 2))), ValueError, r"empty"),
    ("max_e_U_nan", lambda: max_energy(lambda y: (y * NAN).sum(-1), P3), ValueError,
     r"U returned NaN on 2 of 2 paths; check the potential"),
    ("max_e_points", lambda: max_energy(quadratic, P3, max_points=0), ValueError, r"max_points \(0\) must be >= 1"),
    ("hit_nan", lambda: hit_rate(np.array([[0.0, NAN]]), np.zeros(2)), ValueError,
     r"final_points contains 1 NaN/inf.*drop the paths"),
    ("hit_target_nan", lambda: hit_rate(np.zeros((3, 2)), np.array([NAN, 0.0])), ValueError, r"target contains 1 NaN"),
    ("hit_empty", lambda: hit_rate(np.zeros((0, 2)), np.zeros(2)), ValueError, r"final_points is empty"),
    ("hit_radius", lambda: hit_rate(np.zeros((3, 2)), np.zeros(2), radius=NAN), ValueError, r"radius is nan"),
    ("minimax_nan", lambda: minimax_bound(np.where(GRID == 5, NAN, GRID), np.zeros(2), np.ones(2)), ValueError,
     r"grid_values contain 1 NaN.*np\.inf for forbidden cells"),
    ("minimax_empty", lambda: minimax_bound(np.zeros((0, 0)), np.zeros(2), np.ones(2)), ValueError, r"empty"),
    ("minimax_start_nan", lambda: minimax_bound(GRID, np.array([NAN, 0.0]), np.ones(2)), ValueError,
     r"start/end contains 1 NaN/inf"),
    ("minimax_period", lambda: minimax_bound(GRID, np.zeros(2), np.ones(2), period=0.0), ValueError,
     r"period \(0\.0\) must be > 0"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in METRIC_CASES], ids=[c[0] for c in METRIC_CASES])
def test_bad_metric_inputs(call, exc, pattern):
    check(call, exc, pattern)


# ---------------------------------------------------------------------------------------------
# property-based layer

SPECIAL = [0, -1, 1, 2, 0.0, -0.0, -1.0, 0.5, 1.0, 1e-300, 1e300, NAN, INF, -INF, True, None, "1", 2**70]
ANY_NUMBER = st.one_of(st.sampled_from(SPECIAL), st.integers(-3, 50), st.floats(allow_nan=True, allow_infinity=True))
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(call):
    """Run ``call``: its result, or the ValueError/TypeError it raised (checked to be one line)."""
    try:
        return call(), None
    except (ValueError, TypeError) as exc:
        assert_one_line(exc, r"\w")
        return None, exc


def _finite_field(v) -> bool:
    return v is None or isinstance(v, str) or (not isinstance(v, bool) and math.isfinite(v))


@FUZZ
@given(field=st.sampled_from(["steps", "batch_size", "lr", "warmup", "ema_decay", "lam_min", "lam_max", "n_lam_bins",
                              "checkpoint_every", "seed"]), value=ANY_NUMBER)
def test_fuzz_train_config(field, value):
    cfg, exc = _outcome(lambda: TrainConfig(**{field: value}))
    if exc is None:  # accepted: every field is usable
        assert all(_finite_field(v) for v in vars(cfg).values())
        assert cfg.steps >= 1 and cfg.batch_size >= 1 and cfg.lr > 0 and cfg.checkpoint_every >= 1
        assert 0 <= cfg.ema_decay < 1 and -30 <= cfg.lam_min < cfg.lam_max <= 30


@FUZZ
@given(field=st.sampled_from(["lam_end", "n_points", "n_nodes", "steps", "lr", "rho_var", "w_var", "rho_kl", "w_kl",
                              "sharpness", "margin", "n_probes", "tol", "seed"]), value=ANY_NUMBER,
       mode=st.sampled_from(["unconstrained", "low_variance", "avoid"]))
def test_fuzz_geodesic_config(field, value, mode):
    cfg, exc = _outcome(lambda: GeodesicConfig(mode=mode, **{field: value}))
    if exc is None:
        assert all(_finite_field(v) for v in vars(cfg).values())
        assert cfg.n_points >= 3 and cfg.n_nodes >= 1 and cfg.steps >= 1 and cfg.lr > 0 and cfg.sharpness > 0
        assert abs(cfg.lam_end) <= 30 and cfg.margin >= 0 and cfg.tol >= 0


@FUZZ
@given(field=st.sampled_from(["dim", "hidden", "depth", "n_freq", "lam_freq", "sigma_data"]), value=ANY_NUMBER)
def test_fuzz_denoiser_config(field, value):
    kw = {"dim": 2, field: value}
    cfg, exc = _outcome(lambda: DenoiserConfig(**kw))
    if exc is None and cfg.dim <= 4 and cfg.hidden <= 64 and cfg.depth <= 3 and cfg.n_freq <= 16 \
            and cfg.lam_freq <= 16:
        out = Denoiser(cfg)(torch.zeros(3, cfg.dim), torch.zeros(3))
        assert torch.isfinite(out).all()


def _small(lo, hi):
    """Valid values in a numerically sane range, or the special/invalid ones."""
    return st.one_of(st.floats(lo, hi), st.sampled_from([0.0, -1.0, NAN, INF, -INF, "x", None, True]))


@FUZZ
@given(ds=_small(1e-4, 0.05), kT=_small(0.1, 10.0), k=_small(0.0, 50.0), x=_small(-3.0, 3.0),
       n_paths=st.integers(-1, 3), steps=st.integers(-1, 3))
def test_fuzz_annealed_langevin(ds, kT, k, x, n_paths, steps):
    def call():
        return annealed_langevin(quadratic, torch.tensor([[0.0, 0.0], [x, 1.0]]) if _is_real(x) else x,
                                 torch.tensor([1.0, k]) if _is_real(k) else k, torch.zeros(2), n_paths, steps, ds,
                                 kT=kT, device="cpu", progress=False)

    sample, exc = _outcome(call)
    if exc is None:
        assert sample.paths.shape == (n_paths, 2 * steps, 2)
        assert torch.isfinite(sample.paths).all() and torch.isfinite(sample.energies).all()


def _is_real(v) -> bool:
    return isinstance(v, float)


@FUZZ
@given(a=_small(-3.0, 3.0), b=_small(-3.0, 3.0), lam_end=_small(-8.0, 8.0),
       dims=st.sampled_from([(2, 2), (2, 3), (3, 3)]))
def test_fuzz_geodesic_endpoints(a, b, lam_end, dims):
    def call():
        start = torch.full((dims[0],), a, dtype=torch.float64) if _is_real(a) else a
        end = torch.full((dims[1],), b, dtype=torch.float64) if _is_real(b) else b
        return optimise_geodesic(GaussianDenoiser([0.0] * dims[0], 1.0), start, end,
                                 GeodesicConfig(lam_end=lam_end, **FAST_GEO), progress=False)

    geo, exc = _outcome(call)
    if exc is None:
        assert torch.isfinite(geo.curve).all() and torch.isfinite(geo.energy).all()
