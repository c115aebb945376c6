"""Molecule-level pipeline on alanine dipeptide: MD -> features -> model -> geodesic -> OpenMM paths."""

from types import SimpleNamespace

import mdtraj
import numpy as np
import pytest
import torch

from tps_diffusion.core.langevin import interpolate_curve, kick_positions
from tps_diffusion.core.schedule import alpha_sigma
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.geodesic import MetricCheck, MolecularGeodesic, molecular_geodesic
from tps_diffusion.molecular.md import run_md
from tps_diffusion.molecular.model import MolecularModel, featurize_samples, train_on_samples
from tps_diffusion.molecular.paths import RestraintSettings, path_targets, sample_molecular_paths
from tps_diffusion.molecular.restrained import restraint_schedule

TINY_MODEL = dict(hidden=32, depth=2, n_freq=2, lam_freq=4)
TINY_TRAIN = dict(steps=60, batch_size=64, warmup=10)
GEO = dict(n_points=6, steps=3)


@pytest.fixture(scope="module")
def md(aldp):
    return run_md(aldp, ["C5", "C7ax"], n_steps=2000, report_interval=20, dynamics=Dynamics(seed=3), progress=False)


@pytest.fixture(scope="module")
def trained(aldp, md, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "aldp.pt"
    model = train_on_samples(aldp, md, "heavy", model_config=TINY_MODEL, train_config=TINY_TRAIN, checkpoint=path,
                             device="cpu", progress=False)
    return model, path


def test_featurize_samples_selections(aldp, md):
    feat, x = featurize_samples(aldp, md, "heavy")
    assert feat.n_selected == 10 and x.shape == (md.trajectory.n_frames, 30)
    assert all(not label.split("-")[1].startswith("H") for label in feat.atom_labels)
    feat_all, x_all = featurize_samples(aldp, [md.run(0), md.run(1)], "all")
    assert x_all.shape == (md.trajectory.n_frames, 66)
    # the featurizer's Normalizer is the same affine map as transform/inverse (one source of truth)
    aligned = feat.align(md.trajectory).reshape(len(x), -1)
    np.testing.assert_allclose(feat.normalizer.forward(aligned), x, atol=1e-12)
    np.testing.assert_allclose(feat.normalizer.inverse(x), aligned, atol=1e-12)
    with pytest.raises(ValueError, match="matched no atoms"):
        featurize_samples(aldp, md, "name XYZ")


def test_end_to_end_paths_have_openmm_energies(aldp, trained):
    model, _ = trained
    norm = model.diffusion.normalizer
    assert isinstance(norm.scale, float) and norm.scale == 1.0 and not norm.mean.any()
    geo = molecular_geodesic(model, aldp, "C5", "C7ax", progress=False, **GEO)
    assert geo.curve.shape == (1, 6, 31)
    z = geo.curve[0]
    np.testing.assert_allclose(z[[0, -1], 0].numpy(), [4.0, 4.0])
    np.testing.assert_allclose(z[0, 1:].double().numpy(), model.endpoint(aldp, "C5").numpy(), atol=1e-6)
    # targets are the curve points mapped back to nm exactly: featurizer.inverse(x / alpha)
    targets, k = path_targets(aldp, model, geo)
    alpha, _ = alpha_sigma(z[:, 0].double())
    np.testing.assert_allclose(targets, model.featurizer.inverse((z[:, 1:].double() / alpha[:, None]).numpy()),
                               atol=1e-12)
    np.testing.assert_allclose(k, aldp.kT * np.exp(z[:, 0].double().numpy()) / model.featurizer.scale**2, rtol=1e-12)

    paths = sample_molecular_paths(aldp, model, geo, n_paths=2, steps_per_point=4, dynamics=Dynamics(seed=1),
                                   progress=False)
    assert len(paths) == 2 and all(isinstance(t, mdtraj.Trajectory) for t in paths.trajectories)
    assert paths[0].n_frames == 24 and paths[0].n_atoms == 22
    assert paths.n_force_evaluations == 2 * 6 * 4
    np.testing.assert_allclose(aldp.potential_energy(paths.joined()), paths.energies.ravel(), atol=1e-2)
    assert (paths.settings["geodesic"]["n_points"] == 6
            and paths.settings["min_lambda"] == pytest.approx(float(z[:, 0].min())))

    # respaced targets: same endpoints and stiffness range, equal restraint kicks sqrt(k) |T_{n+1} - T_n| (kT units)
    t_tilt, k_tilt = path_targets(aldp, model, geo, restraint=RestraintSettings(spacing="tilt"))
    np.testing.assert_allclose(t_tilt[[0, -1]], targets[[0, -1]], atol=1e-12)
    np.testing.assert_allclose(k_tilt[[0, -1]], k[[0, -1]], rtol=1e-12)
    kicks = (k_tilt[1:] * k_tilt[:-1] / aldp.kT**2) ** 0.25 * np.linalg.norm((t_tilt[1:] - t_tilt[:-1]).reshape(5, -1),
                                                                              axis=1)
    kicks_geo = (k[1:] * k[:-1] / aldp.kT**2) ** 0.25 * np.linalg.norm((targets[1:] - targets[:-1]).reshape(5, -1),
                                                                        axis=1)
    assert kicks.std() / kicks.mean() < kicks_geo.std() / kicks_geo.mean()
    # thermodynamic spacing: the same ends, and the curve resampled where kick_positions puts the points when the
    # stiffening counts with weight D/2 (D: restrained coordinates), on the stiffness in kT/nm^2
    t_th, k_th = path_targets(aldp, model, geo, restraint=RestraintSettings(spacing="thermodynamic"))
    np.testing.assert_allclose(t_th[[0, -1]], targets[[0, -1]], atol=1e-12)
    where = kick_positions(torch.as_tensor(targets.reshape(6, -1)), torch.as_tensor(k / aldp.kT),
                           stiffening_weight=targets[0].size / 2)
    c = interpolate_curve(z.double(), where).numpy()
    by_hand = restraint_schedule(model.featurizer, c[:, 1:], c[:, 0], aldp.kT)
    np.testing.assert_allclose(t_th, by_hand[0], atol=1e-9)
    np.testing.assert_allclose(k_th, by_hand[1], rtol=1e-9)
    with pytest.raises(ValueError, match="spacing"):
        path_targets(aldp, model, geo, restraint=RestraintSettings(spacing="uniform"))


def test_checkpoint_round_trip_rebuilds_featurizer(aldp, md, trained):
    model, path = trained
    loaded = MolecularModel.load(path, aldp, device="cpu")
    feat, feat2 = model.featurizer, loaded.featurizer
    np.testing.assert_array_equal(feat2.atom_indices, feat.atom_indices)
    np.testing.assert_array_equal(feat2.transform(md.trajectory), feat.transform(md.trajectory))
    assert feat2.scale == feat.scale
    meta = loaded.metadata()
    assert meta["system"] == aldp.name and meta["selection"] == "heavy" and meta["featurizer"] == feat.to_dict()
    assert meta["data_recipe"]["n_steps"] == 2000 and meta["data_recipe"]["n_samples"] == md.trajectory.n_frames
    np.testing.assert_array_equal(loaded.endpoint(aldp, "C7ax"), model.endpoint(aldp, "C7ax"))
    x = torch.tensor(feat.transform(md.trajectory[:5]), dtype=torch.float32)
    lam = torch.full((5,), 1.0)
    torch.testing.assert_close(loaded.denoiser(x, lam), model.denoiser(x, lam))
    saved = MolecularModel.load(model.save(path.with_name("saved.pt")), aldp, device="cpu")
    torch.testing.assert_close(saved.denoiser(x, lam), model.denoiser(x, lam))
    assert saved.metadata() == model.metadata() and np.isfinite(saved.train_seconds)
    with pytest.raises(FileExistsError):
        model.save(path.with_name("saved.pt"))
    with pytest.raises(ValueError, match="cannot be resumed"):
        train_on_samples(aldp, md, "heavy", model_config=TINY_MODEL, train_config=TINY_TRAIN,
                         checkpoint=path.with_name("saved.pt"), resume=True, device="cpu", progress=False)
    with pytest.raises(ValueError, match="different topology"):
        MolecularModel.load(path, SimpleNamespace(md_topology=aldp.md_topology.subset(range(20)), n_atoms=20,
                                                  name="other"))


def test_endpoint_outside_training_data_raises(aldp, md):
    c5_only = md.run(0)
    model = train_on_samples(aldp, c5_only, "heavy", model_config=TINY_MODEL, train_config=dict(steps=2, batch_size=8),
                             device="cpu", progress=False)
    model.endpoint(aldp, "C5")  # inside: fine
    with pytest.raises(ValueError, match=r"endpoint 'C7ax' lies outside the training data.*add MD samples"):
        model.endpoint(aldp, "C7ax")
    x = model.endpoint(aldp, "C7ax", check=False)
    assert x.shape == (30,)
    with pytest.raises(ValueError, match="outside the training data"):
        molecular_geodesic(model, aldp, "C5", aldp.positions_of("C7ax"), progress=False, **GEO)


def test_endpoint_specs_and_errors(aldp, md, trained):
    model, _ = trained
    frame = md.trajectory[3]
    from_frame = model.endpoint(aldp, frame)
    np.testing.assert_allclose(from_frame, model.endpoint(aldp, frame.xyz[0]), atol=1e-12)
    np.testing.assert_allclose(from_frame, model.endpoint(aldp, frame.xyz[0][model.featurizer.atom_indices]),
                               atol=1e-12)
    with pytest.raises(ValueError,
                       match=r"unknown state 'alpha_R' for alanine_dipeptide_vacuum; known states: C5, C7ax, C7eq"):
        model.endpoint(aldp, "alpha_R")
    with pytest.raises(ValueError, match="unknown state 'C8'"):
        molecular_geodesic(model, aldp, "C5", "C8", progress=False, **GEO)
    with pytest.raises(ValueError, match="single frame"):
        model.endpoint(aldp, md.trajectory[:2])
    with pytest.raises(ValueError, match="expected 22"):
        model.endpoint(aldp, np.zeros((7, 3)))


def test_geodesic_modes_and_batch(aldp, md, trained):
    model, _ = trained
    with pytest.raises(ValueError, match="needs the forbidden region"):
        molecular_geodesic(model, aldp, "C5", "C7ax", mode="avoid", progress=False, **GEO)
    geo = molecular_geodesic(model, aldp, "C5", "C7ax", mode="avoid", avoid="C7eq", progress=False, **GEO)
    assert geo.geodesic.kl is not None and geo.geodesic.kl.shape == (1, 6) and geo.avoid == "C7eq"
    assert geo.z_star[0] == pytest.approx(4.0)
    low = molecular_geodesic(model, aldp, "C5", "C7ax", mode="low_variance", rho_var=2.0, progress=False, **GEO)
    assert low.config.rho_var == 2.0 and low.config.mode == "low_variance"
    batch = molecular_geodesic(model, aldp, ["C5", md.trajectory[0]], ["C7ax", "C7ax"], progress=False, **GEO)
    assert batch.curve.shape == (2, 6, 31) and len(batch.metric_check) == 2
    assert all(isinstance(c, MetricCheck) for c in batch.metric_check)
    assert [e.label for e in batch.starts] == ["C5", "frame"] and batch.start(1).positions.shape == (22, 3)
    paths = sample_molecular_paths(aldp, model, batch, n_paths=1, steps_per_point=2, curve_index=1,
                                   dynamics=Dynamics(seed=0), progress=False)
    assert paths.settings["curve_index"] == 1 and paths[0].n_frames == 12
    with pytest.raises(ValueError, match="unknown GeodesicConfig settings"):
        molecular_geodesic(model, aldp, "C5", "C7ax", progress=False, bogus=1)


def test_geodesic_file_round_trip(aldp, trained, tmp_path):
    model, _ = trained
    geo = molecular_geodesic(model, aldp, "C5", "C7ax", check=False, progress=False, **GEO)
    geo.labels["model"] = "aldp.pt"
    path = geo.save(tmp_path / "g.npz")
    again = MolecularGeodesic.load(path)
    torch.testing.assert_close(again.curve, geo.curve.double())
    assert again.labels == {"system": aldp.name, "model": "aldp.pt"} and again.config == geo.config
    np.testing.assert_allclose(again.start().positions, geo.start().positions)
    assert again.end().label == "C7ax" and again.metric_check == geo.metric_check
    with pytest.raises(FileExistsError):
        geo.save(path)
    (tmp_path / "bad.npz").write_text("nope")
    with pytest.raises(ValueError, match="not a readable geodesic file"):
        MolecularGeodesic.load(tmp_path / "bad.npz")


def test_denoised_targets_and_stiffness_bounds(aldp, trained):
    """RestraintSettings(targets="denoised") gives the featurizer's inverse of the denoiser's output
    D(x_n, lam_n) at every curve point, and the bounds clamp the stiffness kT exp(lam) / scale^2."""
    model, _ = trained
    geo = molecular_geodesic(model, aldp, "C5", "C7ax", progress=False, **GEO)
    targets, k = path_targets(aldp, model, geo)
    c = geo.curve[0] if geo.curve.ndim == 3 else geo.curve
    den = model.denoiser
    dtype = next(den.parameters()).dtype
    with torch.no_grad():
        x0 = den(c[:, 1:].to(dtype), c[:, 0].to(dtype)).double().numpy()
    want = model.featurizer.inverse(x0)  # (N, n_sel, 3) nm, aligned frame
    lo, hi = float(np.quantile(k, 0.3)), float(np.quantile(k, 0.7))
    t_d, k_d = path_targets(aldp, model, geo, restraint=RestraintSettings(targets="denoised", min_stiffness=lo,
                                                                           max_stiffness=hi))
    np.testing.assert_allclose(t_d, np.asarray(want).reshape(t_d.shape), atol=1e-6)
    np.testing.assert_allclose(k_d, np.clip(k, lo, hi), rtol=1e-12)
    assert not np.allclose(t_d, targets, atol=1e-3)  # x / alpha is not the posterior mean
    # equal kicks computed on the targets and stiffnesses chosen
    t_s, k_s = path_targets(aldp, model, geo, restraint=RestraintSettings(targets="denoised", spacing="tilt",
                                                                           min_stiffness=lo))
    kicks = (k_s[1:] * k_s[:-1] / aldp.kT**2) ** 0.25 * np.linalg.norm((t_s[1:] - t_s[:-1]).reshape(5, -1), axis=1)
    t0, k0 = path_targets(aldp, model, geo, restraint=RestraintSettings(targets="denoised", min_stiffness=lo))
    kicks0 = (k0[1:] * k0[:-1] / aldp.kT**2) ** 0.25 * np.linalg.norm((t0[1:] - t0[:-1]).reshape(5, -1), axis=1)
    assert kicks.std() / kicks.mean() < kicks0.std() / kicks0.mean()
    for bad, match in ((dict(targets="mean"), "targets"), (dict(min_stiffness=-1.0), "min_stiffness"),
                       (dict(min_stiffness=10.0, max_stiffness=1.0), "swap")):
        with pytest.raises(ValueError, match=match):
            RestraintSettings(**bad)
