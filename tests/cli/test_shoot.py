"""``tps-diffusion shoot``: two-way shooting from the paths of a sample run (alanine dipeptide in vacuum).

The sample run is two paths of ``benchmarks/aldp_paths.dcd`` (C5 -> C7ax, from ``bench aldp``) written in the
layout of 'sample' (paths.dcd + paths.pdb + paths.npz + paths.json), so the test needs no training.
"""

import importlib.util
import json
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from tps_diffusion.cli import main
from tps_diffusion.cli.transaction import staging_of
from tps_diffusion.cli.verify import compare_runs
from tps_diffusion.molecular import shooting
from tps_diffusion.molecular.catalogue import alanine_dipeptide
from tps_diffusion.molecular.formats import load_trajectory, write_trajectory

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
ARGS = ["--state-a", "C5", "C7eq", "--per-path", "3", "--shots", "2", "--max-ps", "2", "--seed", "1", "--quiet"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """Paths 0 and 1 of the benchmark's written paths as a 'sample' run directory."""
    out = tmp_path_factory.mktemp("sample")
    src = load_trajectory(BENCH / "aldp_paths.dcd", BENCH / "aldp_paths.pdb")
    info = json.loads((BENCH / "aldp.json").read_text())["outputs"]
    fpp = info["frames_per_written_path"]
    paths = src[:2 * fpp]
    energies = alanine_dipeptide().potential_energy(paths).reshape(2, fpp)
    write_trajectory(paths, out / "paths.dcd", topology_pdb=True)
    np.savez(out / "paths.npz", energies_kJ_mol=energies, tilt_energies_kJ_mol=np.zeros_like(energies),
             point_index=np.arange(fpp), time_ps=np.arange(1, fpp + 1) * 0.004)
    (out / "paths.json").write_text(json.dumps({
        "system": "alanine_dipeptide", "n_paths": 2, "frames_per_path": fpp, "trajectory": "paths.dcd",
        "topology": "paths.pdb", "energies": "paths.npz", "start": "C5", "end": "C7ax",
        "settings": {"temperature": 300.0, "timestep": 0.001, "friction": 1.0}}))
    return out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("tps-diffusion: error: "), err
    return err


@pytest.fixture(scope="module")
def shot(sample, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("shoot") / "r"
    assert main(["shoot", "--paths", str(sample), *ARGS, "--tps-moves", "1", "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_shoot_outputs(sample, shot):
    m = json.loads((shot / "manifest.json").read_text())
    assert m["command"] == "shoot" and m["status"] == "ok"
    assert m["inputs"]["paths"]["path"].endswith("paths.dcd")
    summary = json.loads((shot / "shooting.json").read_text())
    for key in ("n_shots", "n_reactive", "reactive_fraction", "n_tse_frames", "mean_path_ps", "n_force_evaluations",
                "settings", "versions"):
        assert key in summary
    assert summary["n_shots"] == 2 * 3 * 2 == m["results"]["n_shots"]
    assert summary["settings"]["state_a"] == "C5+C7eq" and summary["settings"]["timestep"] == 0.001
    assert summary["settings"]["max_steps"] == 2000 and summary["n_reactive"] >= 1
    assert summary["reactive_fraction"] == pytest.approx(summary["n_reactive"] / 12)
    records = json.loads((shot / "shots.json").read_text())["shots"]
    assert len(records) == 12 and {r["path"] for r in records} == {0, 1}
    assert sum(r["reactive"] for r in records) == summary["n_reactive"]
    committor = json.loads((shot / "committor.json").read_text())
    assert len(committor["p_B"]) == 6 == len(committor["frame"])
    system = alanine_dipeptide()
    a, b = system.states["C5"], system.states["C7eq"]
    reactive = sorted((shot / "reactive").glob("path_*.dcd"))
    assert len(reactive) == summary["n_reactive"]
    for f in reactive:
        t = mdtraj.load(str(f), top=str(shot / "topology.pdb"))
        assert t.n_atoms == 22
        assert a.contains(t[0])[0] or b.contains(t[0])[0]
        assert system.states["C7ax"].contains(t[-1])[0]
    assert len(list((shot / "tps").glob("path_*.dcd"))) == summary["tps"]["n_chains"] == summary["n_reactive"]
    assert "PATHMSD REFERENCE=path_msd.pdb" in (shot / "plumed" / "plumed.dat").read_text()
    assert (shot / "shooting.png").stat().st_size > 1000 and not (shot / "checkpoint").exists()
    assert m["outputs"]["reactive"]["files"][0]["path"] == "reactive/path_0000.dcd"


def test_interrupted_shoot_resumes_to_the_same_result(sample, shot, tmp_path, monkeypatch):
    run_dir = tmp_path / "r"
    save = shooting._Checkpoint.save_shot
    calls = []

    def interrupt_after_five(self, *args):
        save(self, *args)
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(shooting._Checkpoint, "save_shot", interrupt_after_five)
    cmd = ["shoot", "--paths", str(sample / "paths.dcd"), *ARGS, "--tps-moves", "1", "--run-dir", str(run_dir)]
    assert main(cmd) == 130
    assert len(list((staging_of(run_dir) / "checkpoint").glob("shot_*.npz"))) == 5 and not run_dir.exists()
    monkeypatch.setattr(shooting._Checkpoint, "save_shot", save)
    assert main([*cmd, "--resume"]) == 0
    assert compare_runs(shot, run_dir) == [(key, "same") for key, _ in compare_runs(shot, shot)]
    assert main([*cmd, "--resume"]) == 1  # a complete run: nothing to resume


def test_shoot_errors(sample, tmp_path, capsys):
    base = ["shoot", "--paths", str(sample), "--quiet"]
    assert main([*base, "--state-a", "alpha_L", "--run-dir", str(tmp_path / "a")]) == 1
    assert "unknown state" in one_line_error(capsys) and not (tmp_path / "a").exists()
    assert main([*base, "--state-a", "C7ax", "--run-dir", str(tmp_path / "b")]) == 1
    assert "disjoint" in one_line_error(capsys)
    assert main(["shoot", "--paths", str(tmp_path), "--run-dir", str(tmp_path / "c"), "--quiet"]) == 1
    assert "paths.json" in one_line_error(capsys)
    assert main([*base, "--shots", "0", "--run-dir", str(tmp_path / "d")]) == 2
    assert "--shots" in capsys.readouterr().err
    if importlib.util.find_spec("openpathsampling") is None:
        assert main([*base, "--ops", "--run-dir", str(tmp_path / "e")]) == 1
        assert "pip install openpathsampling" in one_line_error(capsys)
