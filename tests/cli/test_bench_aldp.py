"""Smoke test of the all-atom alanine dipeptide benchmark (quick settings)."""

import json

import mdtraj
import numpy as np
import pytest

from tps_diffusion.bench.aldp import crossing_analysis, output_paths, run


def test_quick_benchmark_writes_outputs(tmp_path):
    out = tmp_path / "aldp.json"
    report = run(out, quick=True, device="cpu", progress=False)
    saved = json.loads(out.read_text())
    keys = {"hit_rate", "max_energy_mean", "max_energy_std", "energy_evals_md_data", "energy_evals_sampling",
            "energy_evals_total", "md_seconds", "training_seconds", "geodesic_seconds", "sampling_seconds",
            "total_seconds", "crossing_near_phi0_fraction", "recipe", "machine", "versions", "modes", "md_data"}
    assert keys <= set(saved)
    assert saved["hit_rate"] == report["hit_rate"] and 0.0 <= saved["hit_rate"] <= 1.0
    assert set(saved["modes"]) == {"unconstrained", "low_variance", "avoid"}
    assert saved["energy_evals_total"] == saved["energy_evals_md_data"] + saved["energy_evals_sampling"]
    r = saved["recipe"]
    assert saved["energy_evals_sampling"] == r["n_paths"] * r["n_points"] * r["steps_per_point"]
    assert saved["energy_evals_md_data"] == len(r["md_starts"]) * r["md_runs_per_start"] * r["md_steps"]
    assert saved["md_data"]["recipe"]["temperature_K"] == 300.0 and {"torch", "openmm"} <= set(saved["versions"])
    sh = saved["shooting"]  # two-way shooting from the first paths' highest-energy frames
    assert sh["state_a"] == "C5+C7eq" and sh["n_frames"] <= r["shoot_paths"] * r["shoot_per_path"]
    assert sh["n_shots"] == sh["n_frames"] * r["shoot_shots"] and 0 <= sh["n_reactive"] <= sh["n_shots"]
    assert sh["reactive_fraction"] == pytest.approx(sh["n_reactive"] / sh["n_shots"])
    assert sh["energy_evals_generation"] == sh["n_paths"] * r["n_points"] * r["steps_per_point"]
    assert sh["energy_evals_reactive_total"] == sh["energy_evals_generation"] + sh["energy_evals_shots"] > 0
    assert sum(sh["frame_p_B_histogram"]["counts"]) == sh["n_frames"]
    assert (sh["mean_path_ps"] is None) == (sh["n_reactive"] == 0) and "tps" in sh and "tse_check" in sh
    files = output_paths(out)
    assert all(f.is_file() for f in files.values())
    traj = mdtraj.load(str(files["dcd"]), top=str(files["pdb"]))
    assert (traj.n_atoms == 22
            and traj.n_frames == saved["outputs"]["paths_written"] * saved["outputs"]["frames_per_written_path"])
    with pytest.raises(FileExistsError):
        run(out, quick=True, device="cpu", progress=False)


def test_crossing_analysis():
    c5 = np.deg2rad([-150.0, 160.0])
    deg = np.deg2rad
    # path 0: C5 -> C7eq -> through phi = 0 -> C7ax; path 1: C5 -> through phi = pi; path 2: stays in C5
    phi = np.array([deg([-150, -100, -60, -10, 5, 60]), deg([-150, -170, 175, 150, 100, 60]),
                    deg([-150, -140, -160, -150, -145, -150])])
    psi = np.array([deg([160, 100, 60, 0, -20, -40]), deg([160, 150, 120, 60, 0, -40]),
                    deg([160, 150, 170, 160, 165, 160])])
    c = crossing_analysis(phi, psi, c5)
    assert c["index"].tolist() == [4, 2, -1]
    assert c["near_zero"].tolist() == [True, False, False]
    np.testing.assert_allclose(c["phi"][:2], deg([5, 175]))
