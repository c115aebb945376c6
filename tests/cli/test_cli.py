"""The ``tps-diffusion`` command line: help texts, one-line errors, run directories and manifests,
and a tiny simulate -> train -> geodesic -> sample -> export (-> analyze) chain on alanine dipeptide."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tps_diffusion.cli import main

# tiny settings: seconds per command on one busy core
SIM = ["--states", "C5", "C7ax", "--steps", "2000", "--report-interval", "10", "--seed", "1"]
TRAIN = ["--steps", "40", "--batch-size", "64", "--hidden", "32", "--depth", "2", "--checkpoint-every", "20",
         "--device", "cpu"]
GEO = ["--start", "C5", "--end", "C7ax", "--mode", "low_variance", "--points", "8", "--steps", "5", "--device", "cpu"]
SAMPLE = ["--paths", "2", "--steps-per-point", "4", "--workers", "1"]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def manifest(run_dir) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def run_ok(args, capsys=None):
    rc = main([*args, "--quiet"])
    if rc != 0 and capsys is not None:
        print(capsys.readouterr().err)
    assert rc == 0, args
    return rc


def check_manifest(run_dir, command):
    m = manifest(run_dir)
    assert m["command"] == command and m["status"] == "ok"
    assert m["command_line"][:2] == ["tps-diffusion", command]
    assert m["wall_time_s"] > 0 and m["versions"]["tps_diffusion"] and m["versions"]["openmm"]
    for entry in m["outputs"].values():
        assert not Path(entry["path"]).is_absolute()  # outputs are recorded relative to their run directory
        assert (run_dir / entry["path"]).is_file() and entry["sha256"] == sha(run_dir / entry["path"])
    for entry in m["inputs"].values():
        for e in entry if isinstance(entry, list) else [entry]:
            if "sha256" in e:
                assert e["sha256"] == sha(e["path"])
    return m


# ------------------------------------------------------------------------------------ help


UNITS = {
    "simulate": ["K", "ps", "1/ps", "kJ/mol", "nm"],
    "train": ["nm", "log-SNR"],
    "geodesic": ["log-SNR", "nats", "nm"],
    "sample": ["K", "ps", "1/ps", "kJ/mol", "rad"],
    "export": ["nm", "Angstrom", "nm^-2", "K", "ps", "1/ps"],
    "analyze": ["K", "ps", "1/ps", "nm"],
    "shoot": ["K", "ps", "1/ps", "nm", "kJ/mol"],
    "run": ["units"],
    "bench": ["kJ/mol", "kT"],
}


@pytest.mark.parametrize("command", sorted(UNITS))
def test_help_lists_units(command, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for unit in UNITS[command]:
        assert unit in text, (command, unit)
    for common in ("--quiet", "--debug"):
        assert common in text
    if command != "bench":
        assert "--run-dir" in text and "--overwrite" in text


def test_help_quotes_library_defaults(capsys):
    from tps_diffusion.molecular.geodesic import MOLECULAR_GEODESIC
    from tps_diffusion.molecular.model import MOLECULAR_TRAINING

    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"optimiser steps (default: {MOLECULAR_TRAINING['train']['steps']})" in text
    assert f"width of the MLP (default: {MOLECULAR_TRAINING['model']['hidden']})" in text
    assert main(["geodesic", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"spline nodes (default: {MOLECULAR_GEODESIC['n_nodes']})" in text
    assert f"(default: {MOLECULAR_GEODESIC['rho_kl']})" in text


def test_installed_console_script_help():
    exe = Path(sys.executable).with_name("tps-diffusion")
    cmd = [str(exe)] if exe.exists() else ["tps-diffusion"]
    out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("bench", "simulate", "train", "geodesic", "sample", "shoot", "export", "analyze", "run"):
        assert command in out.stdout


# ------------------------------------------------------------------------------------ errors


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tps-diffusion: error: "), err
    return lines[0]


def test_unknown_system(tmp_path, capsys):
    rc = main(["simulate", "--system", "no_such_molecule", "--steps", "10", "--run-dir", str(tmp_path / "r")])
    assert rc == 1
    assert "unknown system 'no_such_molecule'" in one_line_error(capsys)
    assert not (tmp_path / "r").exists()  # a failed command leaves no empty run directory


def test_missing_file(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "missing.h5"), "--run-dir", str(tmp_path / "r")])
    assert rc == 1
    assert "missing.h5" in one_line_error(capsys)
    rc = main(["run", "--config", str(tmp_path / "nope.toml"), "--run-dir", str(tmp_path / "r")])
    assert rc == 1
    assert "config file not found" in one_line_error(capsys)


def test_bad_options(capsys):
    assert main(["simulate", "--no-such-option", "3"]) == 2
    assert "simulate --help" in one_line_error(capsys)
    assert main(["simulate", "--steps", "many"]) == 2
    assert "--steps" in one_line_error(capsys)
    assert main(["geodesic", "--model", "m.pt", "--start", "C5", "--end", "C7ax", "--mode", "sideways"]) == 2
    assert "sideways" in one_line_error(capsys)
    assert main(["bench", "no_such_benchmark", "--out", "x.json"]) == 2
    one_line_error(capsys)


def test_debug_shows_traceback(tmp_path):
    with pytest.raises(ValueError, match="unknown system"):
        main(["simulate", "--system", "no_such_molecule", "--steps", "10", "--run-dir", str(tmp_path / "r"), "--debug"])


# ------------------------------------------------------------------------------------ chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """simulate -> train -> geodesic -> sample -> export -> analyze in tmp run directories."""
    root = tmp_path_factory.mktemp("cli_chain")
    d = {k: root / k for k in ("sim", "train", "geo", "sample", "export", "analyze")}
    run_ok(["simulate", *SIM, "--format", "dcd", "--run-dir", str(d["sim"])])
    run_ok(["train", "--data", str(d["sim"] / "samples.dcd"), "--top", str(d["sim"] / "samples.pdb"), *TRAIN,
            "--run-dir", str(d["train"])])
    run_ok(["geodesic", "--model", str(d["train"] / "model.pt"), *GEO, "--run-dir", str(d["geo"])])
    run_ok(["sample", "--model", str(d["train"] / "model.pt"), "--geodesic", str(d["geo"] / "geodesic.npz"), *SAMPLE,
            "--run-dir", str(d["sample"])])
    paths = str(d["sample"] / "paths.dcd")
    run_ok(["export", "--paths", paths, "--top", str(d["sample"] / "paths.pdb"), "--path-index", "1", "--plumed",
            "--frames", "5", "--images", "4", "--state-xml", "0", "-1", "--run-dir", str(d["export"])])
    run_ok(["analyze", "--paths", paths, "--state-a", "C5", "--state-b", "C7ax", "--frames", "0", "-1", "--shots", "2",
            "--max-steps", "20", "--run-dir", str(d["analyze"])])
    return d


def test_simulate_outputs(chain):
    import mdtraj

    m = check_manifest(chain["sim"], "simulate")
    assert m["settings"]["states"] == ["C5", "C7ax"] and m["settings"]["steps"] == 2000
    traj = mdtraj.load(str(chain["sim"] / "samples.dcd"), top=str(chain["sim"] / "samples.pdb"))
    assert traj.n_atoms == 22 and traj.n_frames == 2 * 2000 // 10 == m["results"]["n_frames"]
    with np.load(chain["sim"] / "samples.npz") as z:
        assert z["potential_energy_kJ_mol"].shape == (traj.n_frames,)


def test_train_outputs(chain):
    m = check_manifest(chain["train"], "train")
    assert m["inputs"]["data"][0]["sha256"] == sha(chain["sim"] / "samples.dcd")
    assert m["results"]["train_config"]["steps"] == 40 and m["results"]["n_selected_atoms"] == 10  # heavy atoms
    from tps_diffusion.molecular.model import MolecularModel

    model = MolecularModel.load(chain["train"] / "model.pt")
    assert model.data_recipe["simulate"]["states"] == ["C5", "C7ax"]  # provenance of the samples


def test_geodesic_outputs(chain):
    m = check_manifest(chain["geo"], "geodesic")
    assert m["inputs"]["model"]["sha256"] == sha(chain["train"] / "model.pt")
    with np.load(chain["geo"] / "geodesic.npz") as z:
        lam, x, cfg = z["lam"], z["x"], json.loads(str(z["config"]))
        assert z["start_positions_nm"].shape == (22, 3)
    assert lam.shape == (1, 8) and x.shape == (1, 8, 30)
    assert cfg["mode"] == "low_variance" and cfg["n_points"] == 8
    assert lam[0, 0] == pytest.approx(cfg["lam_end"]) and lam.min() == pytest.approx(m["results"]["min_lambda"])
    assert (chain["geo"] / "geodesic.png").stat().st_size > 1000


def test_sample_outputs(chain):
    import mdtraj

    m = check_manifest(chain["sample"], "sample")
    info = json.loads((chain["sample"] / "paths.json").read_text())
    assert info["n_paths"] == 2 and info["frames_per_path"] == 8 * 4
    traj = mdtraj.load(str(chain["sample"] / "paths.dcd"), top=str(chain["sample"] / "paths.pdb"))
    assert traj.n_frames == 2 * 8 * 4 and traj.n_atoms == 22
    with np.load(chain["sample"] / "paths.npz") as z:
        e = z["energies_kJ_mol"]
    assert e.shape == (2, 32) and np.isfinite(e).all()
    assert m["results"]["max_energy_kJ_mol"]["mean"] == pytest.approx(e.max(1).mean())
    assert (chain["sample"] / "paths.png").stat().st_size > 1000


def test_sample_restraint_options(chain, tmp_path):
    """--targets/--spacing/--min-stiffness reach the sampler: the run records them, and the stiffness floor holds."""
    run_dir = tmp_path / "thermo"
    run_ok(["sample", "--model", str(chain["train"] / "model.pt"), "--geodesic", str(chain["geo"] / "geodesic.npz"),
            *SAMPLE, "--targets", "denoised", "--spacing", "thermodynamic", "--min-stiffness", "150",
            "--run-dir", str(run_dir)])
    info = json.loads((run_dir / "paths.json").read_text())
    text = json.dumps(info)
    assert '"spacing": "thermodynamic"' in text and '"targets": "denoised"' in text and '"min_stiffness": 150.0' in text
    assert main(["sample", "--model", str(chain["train"] / "model.pt"), "--geodesic",
                 str(chain["geo"] / "geodesic.npz"), *SAMPLE, "--spacing", "fisher", "--run-dir",
                 str(tmp_path / "bad")]) == 2  # argparse: invalid choice


def test_export_outputs(chain):
    import mdtraj

    m = check_manifest(chain["export"], "export")
    dat = (chain["export"] / "plumed" / "plumed.dat").read_text()
    assert "PATHMSD REFERENCE=path_msd.pdb" in dat
    assert (chain["export"] / "plumed" / "path_msd.pdb").read_text().count("END") >= 5
    images = mdtraj.load(str(chain["export"] / "images.pdb"))
    assert images.n_frames == 4
    assert sorted(p.name for p in (chain["export"] / "states").iterdir()) == ["state_00000.xml", "state_00031.xml"]
    assert m["results"]["plumed"]["lambda_per_nm2"] > 0


def test_analyze_outputs(chain):
    check_manifest(chain["analyze"], "analyze")
    report = json.loads((chain["analyze"] / "committor.json").read_text())
    assert report["frames"] == [0, 31] and len(report["p_B"]) == 2 and len(report["ci_low"]) == 2
    assert "frames" in report["transition_state_ensemble"]
    assert (chain["analyze"] / "committor.png").is_file()


def test_rerun_refuses_without_overwrite(chain, capsys):
    before = sha(chain["sim"] / "samples.dcd")
    rc = main(["simulate", *SIM, "--format", "dcd", "--run-dir", str(chain["sim"]), "--quiet"])
    assert rc == 1
    assert "already holds outputs" in one_line_error(capsys)
    assert sha(chain["sim"] / "samples.dcd") == before
    # export into its own directory again: same refusal, and --overwrite replaces
    args = ["export", "--paths", str(chain["sample"] / "paths.dcd"), "--plumed", "--frames", "5",
            "--run-dir", str(chain["export"])]
    assert main([*args, "--quiet"]) == 1
    assert "--overwrite" in one_line_error(capsys)
    run_ok([*args, "--overwrite"])
    assert manifest(chain["export"])["settings"]["overwrite"] is True


def test_train_resume(chain, tmp_path):
    import torch

    base = ["train", "--data", str(chain["sim"] / "samples.dcd"), *TRAIN[2:], "--run-dir", str(tmp_path / "t")]
    run_ok([*base, "--steps", "20"])
    run_ok([*base, "--steps", "40", "--resume"])  # continues from step 20 in the same run directory
    assert torch.load(tmp_path / "t" / "model.pt", weights_only=False)["step"] == 40
    m = manifest(tmp_path / "t")
    assert m["settings"]["resume"] is True and m["results"]["train_config"]["steps"] == 40


def test_run_config(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    q = lambda v: json.dumps(v)  # noqa: E731 - TOML and JSON agree on strings, numbers and lists
    config.write_text(
        'system = "alanine_dipeptide"\nseed = 3\n'
        f'[simulate]\nstates = {q(SIM[1:3])}\nsteps = 2000\nreport-interval = 10\n'
        '[train]\nsteps = 20\nbatch_size = 64\nhidden = 16\ndepth = 1\ndevice = "cpu"\n'
        '[geodesic]\nstart = "C5"\nend = "C7ax"\npoints = 6\nsteps = 3\ndevice = "cpu"\n'
        '[sample]\npaths = 1\nsteps-per-point = 2\n'
        # the tiny path stays near C5: shots from it between C7eq and C7ax end undecided after 20 steps
        '[shoot]\nstate-a = ["C7eq"]\nstate-b = ["C7ax"]\nper-path = 1\nshots = 1\nmax-ps = 0.02\n'
        '[export]\nplumed = "plumed"\nframes = 4\n'
    )
    run_dir = tmp_path / "run"
    run_ok(["run", "--config", str(config), "--run-dir", str(run_dir)])
    m = check_manifest(run_dir, "run")
    assert [s["stage"] for s in m["results"]["stages"]] == ["simulate", "train", "geodesic", "sample", "shoot",
                                                            "export"]
    shoot = manifest(run_dir / "shoot")
    assert shoot["inputs"]["paths"]["path"] == str((run_dir / "sample" / "paths.dcd").resolve())
    assert shoot["results"]["n_shots"] == 1 and (run_dir / "shoot" / "shooting.json").is_file()
    assert m["inputs"]["config"]["sha256"] == sha(config)
    assert manifest(run_dir / "train")["settings"]["seed"] == 3  # top-level keys reach every stage
    assert (manifest(run_dir / "train")["inputs"]["data"][0]["path"]
            == str((run_dir / "simulate" / "samples.h5").resolve()))
    assert (run_dir / "export" / "plumed" / "plumed.dat").is_file()
    assert (run_dir / "sample" / "paths.dcd").is_file()
    # a config with an unknown key fails with one line naming the section
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": {"data": "x.h5", "no_such_key": 1}}))
    capsys.readouterr()  # what the good run printed (its tiny paths warn that they lag the targets)
    assert main(["run", "--config", str(bad), "--run-dir", str(tmp_path / "bad")]) == 1
    assert "[train]" in one_line_error(capsys)


def test_bench_dispatch(tmp_path, monkeypatch, capsys):
    """bench passes its options to <module>.run (fake modules: the real benchmarks take minutes)."""
    import types

    calls = {}

    def run_paths(out, n_paths=None, seed=0, quick=False, device="auto", overwrite=False, progress=True):
        calls["aldp"] = dict(out=out, n_paths=n_paths, seed=seed, quick=quick, device=device, overwrite=overwrite,
                             progress=progress)

    def run_kernel(out, device="auto", quick=False, overwrite=False, progress=True):
        calls["kernel"] = dict(out=out, device=device, quick=quick)

    monkeypatch.setitem(sys.modules, "tps_diffusion.bench.aldp", types.SimpleNamespace(run=run_paths))
    monkeypatch.setitem(sys.modules, "tps_diffusion.bench.kernel", types.SimpleNamespace(run=run_kernel))
    out = tmp_path / "r.json"
    assert main(["bench", "aldp", "--out", str(out), "--paths", "7", "--seed", "2", "--quick", "--device", "cpu",
                 "--quiet"]) == 0
    assert calls["aldp"] == dict(out=out, n_paths=7, seed=2, quick=True, device="cpu", overwrite=False, progress=False)
    assert main(["bench", "kernel", "--out", str(out), "--quick", "--quiet"]) == 0
    assert calls["kernel"] == dict(out=out, device="auto", quick=True)
    assert main(["bench", "kernel", "--out", str(out), "--paths", "3"]) == 1
    assert "--paths" in one_line_error(capsys)


def test_sample_interrupted_resumes_to_the_same_run(chain, tmp_path, monkeypatch):
    from tps_diffusion.cli.verify import compare_runs
    from tps_diffusion.molecular.pathstore import PathStore

    base = ["sample", "--model", str(chain["train"] / "model.pt"), "--geodesic", str(chain["geo"] / "geodesic.npz"),
            "--paths", "5", "--steps-per-point", "4", "--workers", "1", "--quiet"]
    run_ok([*base, "--run-dir", str(tmp_path / "whole")])
    write, calls = PathStore.write, []

    def interrupted(self, *args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[0])
        return write(self, *args)

    monkeypatch.setattr(PathStore, "write", interrupted)
    assert main([*base, "--run-dir", str(tmp_path / "r")]) == 130  # Ctrl-C after 3 paths: they are kept
    monkeypatch.setattr(PathStore, "write", write)
    staging = tmp_path / ".r.staging"
    assert len(list((staging / "paths.store").glob("path_*.npz"))) == 3
    run_ok([*base, "--run-dir", str(tmp_path / "r"), "--resume"])
    assert not (tmp_path / "r" / "paths.store").exists() and not staging.exists()
    rows = compare_runs(tmp_path / "whole", tmp_path / "r")
    assert rows and all(verdict == "same" for _, verdict in rows), rows
    assert main([*base, "--run-dir", str(tmp_path / "r"), "--resume"]) == 1  # a complete run: nothing to resume
