"""The chignolin benchmark: the TPS-DPS path metrics against hand-made truth, and the quick mode through the CLI."""

import json
import math

import mdtraj
import numpy as np
import pytest
import torch

from tps_diffusion.bench.chignolin import PUBLISHED, Recipe, _stage_settings, check_recipe, output_paths
from tps_diffusion.bench.path_metrics import (
    cut_index,
    ets,
    is_hit,
    kabsch_rmsd,
    max_energy_to_cut,
    path_metrics,
    rmsd_at_cut_angstrom,
    straight_targets,
)
from tps_diffusion.bench.stage_cache import StageCache
from tps_diffusion.cli import main


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _structure(rng, n=12) -> np.ndarray:
    x = rng.normal(scale=0.5, size=(n, 3))
    return x - x.mean(0)


def test_rigid_copy_has_zero_rmsd():
    rng = np.random.default_rng(0)
    target = _structure(rng)
    moved = target @ _rotation(rng).T + np.array([1.0, -2.0, 0.5])
    assert kabsch_rmsd(moved, target)[0] == pytest.approx(0.0, abs=1e-9)
    assert rmsd_at_cut_angstrom(moved[None], target, None, cut=0) == pytest.approx(0.0, abs=1e-8)


def test_rmsd_of_a_scaled_copy_is_known():
    # a centred structure scaled by (1 + s) is already optimally superposed: RMSD = s * rms radius
    rng = np.random.default_rng(1)
    target = _structure(rng)
    radius = math.sqrt((target**2).sum(1).mean())
    s = 0.05 / radius  # 0.05 nm = 0.5 A
    assert rmsd_at_cut_angstrom((1 + s) * target, target, None, cut=0) == pytest.approx(0.5, rel=1e-9)


def test_cut_is_where_the_path_comes_closest():
    rng = np.random.default_rng(2)
    target = _structure(rng)
    radius = math.sqrt((target**2).sum(1).mean())
    rmsd_nm = 0.03 + 0.01 * np.abs(np.arange(15) - 6)  # approaches the target, closest at frame 6, then leaves
    # every frame a scaled copy (RMSD = s * rms radius), then rotated and moved at random: the cut must superpose
    path = np.stack([((1 + d / radius) * target) @ _rotation(rng).T + rng.normal(size=3) for d in rmsd_nm])
    np.testing.assert_allclose(kabsch_rmsd(path, target), rmsd_nm, rtol=1e-9)
    assert cut_index(path, target, np.arange(len(target))) == 6
    assert rmsd_at_cut_angstrom(path, target, None) == pytest.approx(0.3)
    assert rmsd_at_cut_angstrom(path, target, None, cut=0) == pytest.approx(0.9)


def test_hit_threshold_is_inclusive_at_one_angstrom():
    assert is_hit(1.0) is True
    assert is_hit(np.nextafter(1.0, 2.0)) is False
    assert is_hit(0.0) is True
    np.testing.assert_array_equal(is_hit(np.array([0.99, 1.0, 1.01])), [True, True, False])
    # geometrically: C-alpha RMSD just under / over 1 A at the cut
    rng = np.random.default_rng(3)
    target = _structure(rng)
    radius = math.sqrt((target**2).sum(1).mean())
    for rmsd_a, hit in ((0.999, True), (1.001, False)):
        frame = (1 + rmsd_a / 10 / radius) * target
        assert is_hit(rmsd_at_cut_angstrom(frame, target, None, cut=0)) is hit


def test_ets_by_hand():
    energies = np.array([[1.0, 5.0, 2.0, 9.0],   # cut 2: max(1, 5, 2) = 5 (the 9 after the cut does not count)
                         [3.0, 1.0, 4.0, 1.0],   # cut 3: 4
                         [0.0, 0.0, 0.0, 10.0]])  # cut 0: 0, not a hit
    cuts, hits = [2, 3, 0], [True, True, False]
    np.testing.assert_array_equal(max_energy_to_cut(energies, cuts), [5.0, 4.0, 0.0])
    mean, std = ets(energies, cuts, hits)
    assert mean == pytest.approx(4.5) and std == pytest.approx(math.sqrt(0.5))  # ddof = 1
    assert ets(energies, cuts, [False, False, False]) == (None, None)
    assert ets(energies, cuts, [False, False, True]) == (0.0, None)
    with pytest.raises(IndexError):
        max_energy_to_cut(energies, [0, 4, 0])


def test_path_metrics_on_synthetic_paths():
    rng = np.random.default_rng(4)
    target = _structure(rng, n=10)
    radius = math.sqrt((target**2).sum(1).mean())
    ca = np.arange(0, 10, 2)
    # scaled copies (heavy-atom RMSD = s * rms radius), rotated at random. Path 0 comes to 0.5 A at frame 3 and
    # leaves; path 1 never comes closer than 3 A (at frame 4)
    rmsd0 = np.array([0.3, 0.2, 0.1, 0.05, 0.1, 0.2])
    rmsd1 = np.array([0.6, 0.5, 0.4, 0.35, 0.3, 0.32])
    paths = [np.stack([((1 + d / radius) * target) @ _rotation(rng).T for d in r]) for r in (rmsd0, rmsd1)]
    ca_radius = math.sqrt(((target[ca] - target[ca].mean(0))**2).sum(1).mean())
    energies = np.array([[0.0, 2.0, 7.0, 3.0, 50.0, 60.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    m = path_metrics(paths, energies, target, np.arange(10), ca, timestep_ps=0.5)
    assert m["cut_index"] == [3, 4] and m["hit"] == [True, False] and m["n_hits"] == 1
    assert m["hit_fraction"] == 0.5 and m["hit_percent"] == 50.0
    assert m["rmsd_angstrom"] == pytest.approx([0.5, 3.0])
    assert m["rmsd_angstrom_mean"] == pytest.approx(1.75) and m["rmsd_angstrom_std"] == pytest.approx(2.5 / 2**0.5)
    assert m["ca_rmsd_angstrom"] == pytest.approx([0.5 * ca_radius / radius, 3.0 * ca_radius / radius])
    assert m["ets_kj_mol_mean"] == 7.0 and m["ets_kj_mol_std"] is None  # max(0, 2, 7, 3): frames after the cut ignored
    assert m["cut_time_ps_mean"] == pytest.approx((3.5 + 1) * 0.5)
    json.dumps(m)


def test_recipe_defaults_and_checks():
    r = Recipe()
    assert r.solvent == "gbn2" and r.n_paths == 64 and r.steps_per_path * 0.002 == pytest.approx(5.0)
    md = 2 * r.md_runs_per_start * r.md_steps
    assert md + r.n_paths * r.steps_per_path <= 2_000_000  # the budget: MD data + 64 paths
    assert r.architecture == "convex"
    assert Recipe.quick().steps_per_path * 0.002 == pytest.approx(5.0)
    check_recipe(r)
    check_recipe(Recipe.quick())
    with pytest.raises(ValueError, match="solvent"):
        check_recipe(Recipe(solvent="tip3p"))
    with pytest.raises(ValueError, match="record_interval"):
        check_recipe(Recipe(steps_per_point=25, record_interval=2))
    with pytest.raises(TypeError):
        check_recipe(object())
    line = straight_targets(np.zeros((2, 3)), np.ones((2, 3)), 5)
    assert line.shape == (5, 2, 3) and line[2, 0, 0] == 0.5 and line[-1, 1, 2] == 1.0


def test_quick_benchmark_through_the_cli(tmp_path):
    out = tmp_path / "chig.json"
    argv = ["bench", "chignolin", "--out", str(out), "--quick", "--solvent", "obc2", "--device", "cpu", "--quiet",
            "--cache", str(tmp_path / "cache")]
    assert main(argv) == 0
    rep = json.loads(out.read_text())
    assert rep["stages_from_cache"] is False and (tmp_path / "cache" / rep["cache"]["key"] / "model.pt").is_file()
    r = rep["recipe"]
    assert rep["benchmark"] == "chignolin" and rep["solvent"] == r["solvent"] == "obc2" and rep["quick"] is True
    assert rep["system"] == "chignolin_obc2" and rep["n_paths"] == r["n_paths"]
    for key in ("protocol", "methods", "ets_minus_thermal_max_kj_mol", "thermal_baseline", "energy_evals",
                "metric_check", "seconds", "published", "md_data", "model", "outputs", "machine", "versions"):
        assert key in rep, key
    assert rep["protocol"]["path_length_ps"] == pytest.approx(5.0)
    steps = r["n_points"] * r["steps_per_point"]
    frames = steps // r["record_interval"]
    for name in ("geodesic", "steered"):
        m = rep["methods"][name]
        assert m["n_paths"] == r["n_paths"] and len(m["hit"]) == len(m["cut_index"]) == r["n_paths"]
        assert 0.0 <= m["hit_fraction"] <= 1.0 and m["n_hits"] == sum(m["hit"])
        assert m["hit_percent"] == pytest.approx(100 * m["hit_fraction"])
        assert all(0 <= c < frames for c in m["cut_index"])
        assert m["rmsd_angstrom_mean"] > 0 and all(x > 0 for x in m["rmsd_angstrom"])
        assert m["hit"] == [x <= 1.0 for x in m["ca_rmsd_angstrom"]]
        if m["n_hits"]:
            assert isinstance(m["ets_kj_mol_mean"], float)
            assert rep["ets_minus_thermal_max_kj_mol"][name] == pytest.approx(
                m["ets_kj_mol_mean"] - rep["thermal_baseline"]["thermal_max_kj_mol"])
        else:
            assert m["ets_kj_mol_mean"] is None and rep["ets_minus_thermal_max_kj_mol"][name] is None
        assert m["n_force_evaluations"] == r["n_paths"] * steps
    g, s = rep["methods"]["geodesic"], rep["methods"]["steered"]
    assert s["n_force_evaluations"] == g["n_force_evaluations"]  # same budget
    assert s["n_points"] == g["n_points"] and s["steps_per_point"] == g["steps_per_point"]
    k_max = g["stiffness_max_kj_mol_nm2"]
    assert s["stiffness_min_kj_mol_nm2"] == s["stiffness_max_kj_mol_nm2"] == pytest.approx(k_max)
    ev = rep["energy_evals"]
    assert ev["md_data"] == 2 * r["md_runs_per_start"] * (r["md_steps"] + r["md_equilibration"])
    assert ev["sampling"] == g["n_force_evaluations"] and ev["total"] == ev["md_data"] + ev["sampling"]
    assert ev["steered_baseline_sampling"] == s["n_force_evaluations"]
    tb = rep["thermal_baseline"]
    for state in ("folded", "unfolded"):
        assert tb[state]["energy_mean_kj_mol"] <= tb[state]["window_max_kj_mol_mean"] <= tb[state]["max_kj_mol"]
    assert tb["thermal_max_kj_mol"] == max(tb["folded"]["window_max_kj_mol_mean"],
                                           tb["unfolded"]["window_max_kj_mol_mean"])
    mc = rep["metric_check"]
    assert 0.0 <= mc["negative_mass"] <= 1.0 and 0.0 <= mc["negative_fraction"] <= 1.0
    assert all(v >= 0 for k, v in rep["seconds"].items()) and rep["seconds"]["total"] > 0
    assert rep["published"] == json.loads(json.dumps(PUBLISHED)) and "not measured" in rep["published"]["note"]
    files = output_paths(out)
    assert all(f.is_file() for f in files.values())
    traj = mdtraj.load(str(files["dcd"]), top=str(files["pdb"]))
    o = rep["outputs"]
    assert traj.n_atoms == 138 and traj.n_frames == o["paths_written"] * o["frames_per_written_path"]
    assert main(argv) == 1  # the report exists: refused without --overwrite

    # a rerun with the cache loads MD data, model and geodesic and gives the same paths and figures
    assert main([*argv, "--overwrite"]) == 0
    again = json.loads(out.read_text())
    assert again["stages_from_cache"] is True and again["cache"] == rep["cache"]
    for name in ("geodesic", "steered"):
        a, b = dict(again["methods"][name]), dict(rep["methods"][name])
        a.pop("sampling_seconds"), b.pop("sampling_seconds")
        assert a == b, name
    assert again["energy_evals"] == rep["energy_evals"] and again["md_data"] == rep["md_data"]
    assert {k: again["seconds"][k] for k in ("md", "training", "geodesic")} == {
        k: rep["seconds"][k] for k in ("md", "training", "geodesic")}  # as measured when made
    assert main(["bench", "aldp", "--out", str(tmp_path / "a.json"), "--cache", str(tmp_path / "cache")]) == 1


def test_cache_key_follows_the_first_stages_only(tmp_path):
    cpu = torch.device("cpu")

    def key(recipe, seed=0, platform="Reference"):
        return StageCache(tmp_path, _stage_settings(recipe, seed, cpu, platform)).key

    base = key(Recipe())
    assert key(Recipe()) == base  # deterministic
    for changed in (Recipe(train_steps=10), Recipe(solvent="obc2"), Recipe(md_steps=10), Recipe(n_points=50)):
        assert key(changed) != base
    assert key(Recipe(), seed=1) != base and key(Recipe(), platform="CPU") != base
    # the path stage does not enter: restraint settings and path counts reuse the entry
    assert key(Recipe(min_stiffness=50.0, spacing="tilt", n_paths=4, steps_per_point=10)) == base
