"""Smoke test of the all-atom alanine dipeptide benchmark (quick settings)."""

import json

import mdtraj
import numpy as np
import openmm.app as app
import pytest

from tps_diffusion.bench.aldp import crossing_analysis, output_paths, run
from tps_diffusion.bench.aldp_tpsdps import (
    PUBLISHED,
    ProtocolScorer,
    dihedral_angles,
    heavy_atoms,
    periodic_difference,
    tpsdps_angles,
    tpsdps_hit,
    tpsdps_system,
    xh_bond_energy,
)
from tps_diffusion.bench.path_metrics import kabsch_rmsd
from tps_diffusion.molecular.catalogue import alanine_dipeptide
from tps_diffusion.molecular.system import MolecularSystem


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
    tp = saved["tpsdps_protocol"]  # TPS-DPS's metrics, their way, for our paths and the steered baseline
    assert {"protocol", "setup", "energies", "target", "e_c5_min_kj_mol", "methods", "targets", "published"} <= set(tp)
    assert (tp["setup"]["box_nm"], tp["setup"]["nonbonded"], tp["setup"]["constraints"]) == (2.558, "PME", "HBonds")
    assert tp["setup"]["n_constraints"] == 12 and any("sjeong9760/tps-dps" in k for k in tp["protocol"]["sources"])
    assert tp["published"] == json.loads(json.dumps(PUBLISHED)) and "not measured" in tp["published"]["note"]
    assert tp["published"]["methods"]["TPS-DPS"] == {"rmsd_angstrom_mean": 0.47, "hit_percent": 39.6,
                                                     "ets_kj_mol_mean": 46.3}
    assert tp["target"]["phi_tpsdps_deg"] == pytest.approx(57.2, abs=3) and tp["target"]["psi_deg"] == pytest.approx(
        -40.8, abs=3)
    n_frames = r["n_points"] * r["steps_per_point"]
    for name in ("geodesic", "steered"):
        m = tp["methods"][name]
        assert m["n_paths"] == r["n_paths"] and 0 <= m["n_hits"] <= m["n_paths"]
        assert m["hit_percent"] == pytest.approx(100 * m["n_hits"] / m["n_paths"])
        assert m["n_force_evaluations"] == r["n_paths"] * n_frames  # the same budget for both
        assert (m["ets_kj_mol_mean"] is None) == (m["n_hits"] == 0) and 0 <= m["cut_frame_mean"] <= n_frames
        assert m["rmsd_angstrom_mean"] >= 0 and m["energy_screening"]["certified"]
        if m["n_hits"]:
            assert m["ets_kj_mol_mean"] > tp["e_c5_min_kj_mol"]
            assert m["ets_above_c5_min_kj_mol_mean"] == pytest.approx(m["ets_kj_mol_mean"] - tp["e_c5_min_kj_mol"])
    assert tp["methods"]["steered"]["stiffness_min_kj_mol_nm2"] == tp["methods"]["geodesic"]["stiffness_max_kj_mol_nm2"]
    assert tp["methods"]["geodesic"]["hit_rate_our_criterion"] == saved["hit_rate"]
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


# ---------------------------------------------------------------------------------------------
# TPS-DPS's protocol (tps_diffusion.bench.aldp_tpsdps)

ACE_SIDE = [0, 1, 2, 3, 4, 5, 7]  # atoms moved by a rotation about N(6)-CA(8): changes phi only
NME_SIDE = [15, 16, 17, 18, 19, 20, 21]  # atoms moved by a rotation about CA(8)-C(14): changes psi only


def _rotate(xyz, a: int, b: int, moving, theta: float) -> np.ndarray:
    """``xyz`` with the atoms ``moving`` rotated by ``theta`` about the axis through atoms ``a`` and ``b``."""
    out = np.array(xyz, dtype=np.float64)
    k = (out[b] - out[a]) / np.linalg.norm(out[b] - out[a])
    v = out[moving] - out[a]
    rot = v * np.cos(theta) + np.cross(k, v) * np.sin(theta) + np.outer(v @ k, k) * (1 - np.cos(theta))  # Rodrigues
    out[moving] = out[a] + rot
    return out


def _turn(xyz, dphi: float, dpsi: float) -> np.ndarray:
    return _rotate(_rotate(xyz, 6, 8, ACE_SIDE, dphi), 8, 14, NME_SIDE, dpsi)


def test_dihedral_angles_closed_form():
    for theta in (-2.5, -0.3, 0.0, 1.0, 3.0):
        x = np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [np.cos(theta), np.sin(theta), 1]])
        assert dihedral_angles(x, (0, 1, 2, 3)) == pytest.approx(theta, abs=1e-12)
    system = alanine_dipeptide()
    xyz = np.stack([system.positions_of(s) for s in ("C5", "C7eq", "C7ax")])
    for quad in ((1, 6, 8, 14), (6, 8, 14, 16)):  # TPS-DPS's phi and psi: mdtraj's convention
        ref = mdtraj.compute_dihedrals(system.to_trajectory(xyz), [quad])[:, 0]
        np.testing.assert_allclose(dihedral_angles(xyz, quad), ref, atol=1e-5)
    assert periodic_difference(3.0, -3.0) == pytest.approx(2 * np.pi - 6.0)


def test_tpsdps_hit_closed_form():
    """Rotations by (a, b) about the N-CA and CA-C bonds move TPS-DPS's phi by a and psi by b exactly,
    so the hit is a^2 + b^2 < 0.75^2 (periodic, strict)."""
    target = alanine_dipeptide().positions_of("C7ax")
    cases = [(0.5, 0.5, True), (0.55, 0.5, True), (0.6, 0.5, False), (0.74, 0.0, True), (0.76, 0.0, False),
             (-0.7, 0.2, True), (2 * np.pi - 0.3, 0.3, True), (np.pi, 0.0, False), (0.0, -0.8, False),
             (0.0, 0.0, True)]
    frames = np.stack([_turn(target, a, b) for a, b, _ in cases])
    phi, psi = tpsdps_angles(frames)
    tphi, tpsi = tpsdps_angles(target)
    fold = [min(abs(a) % (2 * np.pi), 2 * np.pi - abs(a) % (2 * np.pi)) for a, _, _ in cases]
    np.testing.assert_allclose(periodic_difference(phi, tphi), fold, atol=1e-9)
    np.testing.assert_allclose(periodic_difference(psi, tpsi), [abs(b) for _, b, _ in cases], atol=1e-9)
    assert tpsdps_hit(frames, target).tolist() == [h for _, _, h in cases]
    assert tpsdps_hit(frames[0], target) is True and tpsdps_hit(frames[2], target) is False


def test_tpsdps_setup_and_screen_energy():
    system = alanine_dipeptide()
    setup = tpsdps_system(system)
    assert setup.n_atoms == 22 and setup.n_constraints == 12 and setup.platform_name() == "Reference"
    np.testing.assert_allclose(np.diag(setup.box), 2.558)
    assert heavy_atoms(system).tolist() == [1, 4, 5, 6, 8, 10, 14, 15, 16, 18]
    frames = system.positions_of("C5")[None] + np.random.default_rng(0).normal(0, 0.004, (4, 22, 3))
    # the screen energy (vacuum energy minus the X-H stretch terms) is the same force field with HBonds, no cutoff
    nc = app.ForceField("amber99sbildn.xml").createSystem(system.topology, nonbondedMethod=app.NoCutoff,
                                                          constraints=app.HBonds)
    screen = system.potential_energy(frames) - xh_bond_energy(system, frames)
    no_cutoff = MolecularSystem(system.topology, nc, system.positions, platform="Reference").potential_energy(frames)
    np.testing.assert_allclose(screen, no_cutoff, atol=1e-6)
    # the periodic images of the neutral dipeptide shift the energy by well under 1 kJ/mol
    assert np.abs(setup.potential_energy(frames) - screen).max() < 1.0


def test_protocol_scorer_hand_made_paths():
    system = alanine_dipeptide()
    setup = tpsdps_system(system)
    target = setup.minimize(system.positions_of("C7ax"), tolerance=10.0)
    start = system.positions_of("C5")
    c, s = np.cos(0.4), np.sin(0.4)
    moved = target @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + 0.3  # the target itself, rigidly moved
    hit_path = np.stack([_turn(target, 1.2, 0.0), _turn(target, 0.6, 0.3), moved, _turn(target, 0.9, 0.0)])
    miss_path = np.stack([_turn(target, 1.5, 0.0), _turn(target, 1.1, 0.0), _turn(target, 0.8, 0.0),
                          _turn(target, 1.2, 0.0)])
    paths = np.stack([hit_path, miss_path])
    energies = np.stack([system.potential_energy(p) for p in paths])
    e_start = system.potential_energy(start)
    scorer = ProtocolScorer(system, setup, target, start, e_start, heavy_atoms(system), margin=4.0, exact_paths=2)
    scorer.add(paths, energies)
    heavy = heavy_atoms(system)
    full = [np.concatenate([start[None], p]) for p in paths]
    expected_cut = [int(np.argmin(kabsch_rmsd(f, target, heavy))) for f in full]
    assert scorer.cut == expected_cut and expected_cut[0] == 3  # the rigidly moved target (frame 0 = the start)
    assert scorer.hit == [True, False]  # dphi = 0.8 at the second path's cut: 0.64 > 0.5625
    assert scorer.rmsd[0] == pytest.approx(0.0, abs=1e-5)
    summary = scorer.summary(0.001, -88.5, e_start)
    assert (summary["n_paths"], summary["n_hits"], summary["hit_percent"]) == (2, 1, 50.0)
    assert summary["ets_kj_mol_mean"] == pytest.approx(setup.potential_energy(full[0][:4]).max(), abs=1e-9)
    assert summary["ets_ours_kj_mol_mean"] == pytest.approx(max(e_start, *energies[0][:3]))
    assert summary["ets_kj_mol_std"] is None and summary["rmsd_angstrom_mean"] == pytest.approx(
        np.mean(scorer.rmsd))
    assert summary["energy_screening"]["certified"] and summary["energy_screening"]["exact_check_paths"] == 1
    assert summary["energy_screening"]["exact_check_max_abs_difference_kj_mol"] == 0.0
