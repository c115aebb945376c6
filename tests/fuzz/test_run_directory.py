"""Run directories as transactions: concurrent commands, failed and interrupted --overwrite, kills at
random points, --resume, readers that refuse incomplete or altered runs (the data-loss cases of the
CLI fuzz). Tiny sizes: each command takes seconds."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tps_diffusion.cli import main
from tps_diffusion.cli.transaction import RunDirectory
from tps_diffusion.utils.seeds import spawn_seeds

SIM = ["simulate", "--states", "C5", "C7ax", "--steps", "400", "--report-interval", "10"]
TRAIN = ["--steps", "30", "--batch-size", "32", "--hidden", "16", "--depth", "1", "--checkpoint-every", "5",
         "--device", "cpu"]
CLI = [sys.executable, "-m", "tps_diffusion"]


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(run_dir: Path) -> dict[str, str]:
    """sha256 of every file below ``run_dir`` (relative names)."""
    return {str(p.relative_to(run_dir)): sha(p) for p in sorted(run_dir.rglob("*")) if p.is_file()}


def assert_complete(run_dir: Path) -> dict:
    """The run directory holds exactly one complete run: manifest ok and every listed output intact."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    for entry in manifest["outputs"].values():
        for e in entry.get("files", [entry]):
            path = run_dir / e["path"]
            assert path.is_file() and sha(path) == e["sha256"], e["path"]
    return manifest


def error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tps-diffusion: error:")]
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("samples") / "sim"
    assert main([*SIM, "--seed", "1", "--format", "dcd", "--run-dir", str(d), "--quiet"]) == 0
    return d


# ---------------------------------------------------------------------------------------------- locking


def test_second_command_on_a_held_run_directory_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "same"
    with RunDirectory(run_dir, "sample"):
        assert main([*SIM, "--seed", "2", "--run-dir", str(run_dir), "--quiet"]) == 1
    assert "is in use by pid" in error_line(capsys)
    assert not run_dir.exists()


def test_two_concurrent_commands_never_mix(tmp_path):
    """Both start at once on one directory: one publishes, the other is refused; the directory holds
    the outputs of exactly one seed, consistent with its manifest."""
    run_dir = tmp_path / "same"
    procs = [subprocess.Popen([*CLI, *SIM, "--seed", str(seed), "--run-dir", str(run_dir), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    codes = [p.wait(timeout=300) for p in procs]
    errors = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 1], errors
    assert any("in use by" in e or "already holds outputs" in e for e in errors)
    manifest = assert_complete(run_dir)
    with np.load(run_dir / "samples.npz") as z:
        assert list(z["seeds"]) == spawn_seeds(manifest["settings"]["seed"], 2)


# --------------------------------------------------------------------------------------------- overwrite


def test_failed_overwrite_keeps_the_earlier_run(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "sim"
    assert main([*SIM, "--seed", "1", "--run-dir", str(run_dir), "--quiet"]) == 0
    before = snapshot(run_dir)
    import tps_diffusion.cli.commands as commands

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(commands, "write_json", broken)  # fails after the trajectory was written
    monkeypatch.setattr(commands.np, "savez", broken)
    assert main([*SIM, "--seed", "2", "--run-dir", str(run_dir), "--overwrite", "--quiet"]) == 1
    assert "No space left" in error_line(capsys)
    assert snapshot(run_dir) == before
    assert not (tmp_path / ".sim.staging").exists()


def test_overwrite_replaces_the_whole_run(samples, tmp_path):
    """export --overwrite with fewer outputs leaves none of the earlier files behind."""
    run_dir = tmp_path / "export"
    paths = ["--paths", str(samples / "samples.dcd"), "--top", str(samples / "samples.pdb"), "--frames-per-path", "40"]
    assert main(["export", *paths, "--plumed", "--frames", "4", "--images", "3", "--run-dir", str(run_dir),
                 "--quiet"]) == 0
    assert (run_dir / "images.pdb").exists()
    assert main(["export", *paths, "--plumed", "--frames", "4", "--run-dir", str(run_dir), "--overwrite",
                 "--quiet"]) == 0
    assert not (run_dir / "images.pdb").exists()
    manifest = assert_complete(run_dir)
    listed = {"manifest.json"} | {e["path"] for e in manifest["outputs"].values()}
    assert {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()} == listed


def test_outputs_outside_the_run_directory_are_refused(samples, tmp_path, capsys):
    paths = ["--paths", str(samples / "samples.dcd"), "--top", str(samples / "samples.pdb")]
    for bad in ("../../x", str(tmp_path / "abs")):
        assert main(["export", *paths, "--plumed", bad, "--run-dir", str(tmp_path / "e"), "--quiet"]) == 1
        assert "must be a relative path inside the run directory" in error_line(capsys)
    assert not (tmp_path / "x").exists() and not (tmp_path / "abs").exists() and not (tmp_path / "e").exists()


# ------------------------------------------------------------------------------------------------ resume


def test_resume_needs_a_run_dir_of_a_training(samples, tmp_path, capsys):
    data = ["--data", str(samples / "samples.dcd"), "--top", str(samples / "samples.pdb")]
    assert main(["train", *data, *TRAIN, "--resume", "--quiet"]) == 2
    assert "--resume needs --run-dir" in capsys.readouterr().err
    before = snapshot(samples)
    assert main(["train", *data, *TRAIN, "--resume", "--run-dir", str(samples), "--quiet"]) == 1
    assert "holds a 'simulate' run, not a training run" in error_line(capsys)
    assert snapshot(samples) == before


def test_resume_with_other_data_is_refused(samples, tmp_path, capsys):
    data = ["--data", str(samples / "samples.dcd"), "--top", str(samples / "samples.pdb")]
    run_dir = tmp_path / "train"
    assert main(["train", *data, *TRAIN, "--run-dir", str(run_dir), "--quiet"]) == 0
    other = tmp_path / "other"
    assert main([*SIM, "--seed", "5", "--format", "dcd", "--run-dir", str(other), "--quiet"]) == 0
    assert main(["train", "--data", str(other / "samples.dcd"), "--top", str(other / "samples.pdb"), *TRAIN,
                 "--steps", "40", "--resume", "--run-dir", str(run_dir), "--quiet"]) == 1
    assert "--resume with other training data" in error_line(capsys)


def test_readers_refuse_incomplete_or_altered_runs(samples, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in samples.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    data = ["--data", str(copy / "samples.dcd"), "--top", str(copy / "samples.pdb"), *TRAIN]
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    assert main(["train", *data, "--run-dir", str(tmp_path / "t1"), "--quiet"]) == 1
    assert "is not the manifest of a complete run" in error_line(capsys)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with open(copy / "samples.dcd", "r+b") as fh:  # same size, other bytes
        fh.seek(-8, os.SEEK_END)
        fh.write(b"\x00" * 8)
    assert main(["train", *data, "--run-dir", str(tmp_path / "t2"), "--quiet"]) == 1
    assert "differs from the file its run recorded" in error_line(capsys)
    staged = tmp_path / ".unpublished.staging"
    staged.mkdir()
    (staged / "samples.dcd").write_bytes((samples / "samples.dcd").read_bytes())
    assert main(["train", "--data", str(staged / "samples.dcd"), "--top", str(samples / "samples.pdb"), *TRAIN,
                 "--run-dir", str(tmp_path / "t3"), "--quiet"]) == 1
    assert "unpublished outputs of an interrupted command" in error_line(capsys)


# --------------------------------------------------------------------------------------------- run/config


def config_file(tmp_path, **extra) -> Path:
    text = ('system = "alanine_dipeptide"\nseed = 1\n[simulate]\nstates = ["C5", "C7ax"]\nsteps = 400\n'
            'report-interval = 10\n[train]\nsteps = 20\nbatch-size = 32\nhidden = 16\ndepth = 1\n'
            '[geodesic]\nstart = "C5"\nend = "C7ax"\npoints = 6\nsteps = 2\nno-check = true\n'
            '[sample]\npaths = 1\nsteps-per-point = 2\n')
    for section, body in extra.items():
        text += f"[{section}]\n{body}\n"
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_config_is_checked_before_the_first_stage(tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = config_file(tmp_path, export="frames = 0\nplumed = \"plumed\"\nbogus = false")
    assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--quiet"]) == 1
    assert "unknown key(s) ['bogus'] in [export]" in error_line(capsys)
    cfg = config_file(tmp_path, export="points = 0")
    assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--quiet"]) == 1
    assert "[export]" in error_line(capsys)
    cfg.write_text(cfg.read_text().replace("[sample]\npaths = 1", "[sample]\npaths = 0"))
    assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--quiet"]) == 1
    assert "config [sample]" in error_line(capsys)
    assert not run_dir.exists() and not (tmp_path / ".run.staging").exists()  # nothing ran


def test_failed_run_overwrite_keeps_the_earlier_run_and_resumes(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    cfg = config_file(tmp_path)
    assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--quiet"]) == 0
    before = snapshot(run_dir)
    import tps_diffusion.cli.commands as commands

    real = commands.sample_molecular_paths
    monkeypatch.setattr(commands, "sample_molecular_paths", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("simulated failure")))
    cfg.write_text(cfg.read_text().replace("seed = 1", "seed = 2"))
    assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--overwrite", "--quiet"]) == 1
    line = error_line(capsys)
    assert "stage sample: simulated failure" in line and "--resume" in line
    assert snapshot(run_dir) == before  # the earlier complete run, untouched
    staging = tmp_path / ".run.staging"
    assert (staging / "train" / "manifest.json").exists() and not (staging / "sample").exists()
    assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--quiet"]) == 1
    assert ".run.staging" in error_line(capsys)  # debris is named, never silently reused
    monkeypatch.setattr(commands, "sample_molecular_paths", real)
    kept = snapshot(staging / "train")
    assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
    manifest = assert_complete(run_dir)
    assert [s["stage"] for s in manifest["results"]["stages"]] == ["simulate", "train", "geodesic", "sample"]
    assert json.loads((run_dir / "simulate" / "manifest.json").read_text())["settings"]["seed"] == 2
    assert snapshot(run_dir / "train") == kept  # unchanged stages are kept, not re-run
    assert not staging.exists() and not list(run_dir.rglob(".*.lock"))
    # the sample stage found its model through the published tree (relative link)
    assert assert_complete(run_dir / "sample")["inputs"]["model"]["path"] == str((run_dir / "train" / "model.pt"))


# ----------------------------------------------------------------------------------------------- kill -9


def killed(cmd: list[str], when: Path, after: float) -> int:
    """Run ``cmd``, SIGKILL it ``after`` seconds after ``when`` appears (or when it ends); its exit code."""
    proc = subprocess.Popen([*CLI, *cmd, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not when.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_during_overwrite_leaves_one_complete_run(samples, tmp_path, seed):
    """SIGKILL at a random point of 'train --overwrite': the directory is the earlier complete run or
    the new complete run; 'train --resume' then finishes and equals an uninterrupted training."""
    data = ["--data", str(samples / "samples.dcd"), "--top", str(samples / "samples.pdb"), *TRAIN, "--steps", "200"]
    run_dir = tmp_path / "train"
    assert main(["train", *data, "--seed", "7", "--run-dir", str(run_dir), "--quiet"]) == 0
    before = snapshot(run_dir)
    code = killed(["train", *data, "--seed", "3", "--run-dir", str(run_dir), "--overwrite"],
                  when=tmp_path / ".train.staging" / "model.pt", after=random.Random(seed).uniform(0.0, 0.8))
    after = snapshot(run_dir)
    assert after == before or assert_complete(run_dir)["settings"]["seed"] == 3
    if after == before:  # killed before publishing: the kill is resumable, and resuming gives what an
        assert code != 0 and (tmp_path / ".train.staging").exists()  # uninterrupted training gives
        assert main(["train", *data, "--seed", "3", "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
        reference = tmp_path / "reference"
        assert main(["train", *data, "--seed", "3", "--run-dir", str(reference), "--quiet"]) == 0
        assert main(["verify", str(run_dir), str(reference), "--quiet"]) == 0
    else:  # published (perhaps killed while deleting the earlier run): the next command tidies up
        assert main(["verify", str(run_dir), str(run_dir), "--quiet"]) == 0
        with RunDirectory(run_dir, "check", resume=True):
            pass
    assert not (tmp_path / ".train.staging").exists() and not (run_dir / ".publishing").exists()


@pytest.fixture(scope="module")
def geodesic(samples, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("geodesic")
    assert main(["train", "--data", str(samples / "samples.dcd"), "--top", str(samples / "samples.pdb"), *TRAIN,
                 "--run-dir", str(root / "train"), "--quiet"]) == 0
    assert main(["geodesic", "--model", str(root / "train" / "model.pt"), "--start", "C5", "--end", "C7ax",
                 "--points", "8", "--steps", "2", "--no-check", "--device", "cpu", "--run-dir", str(root / "geo"),
                 "--quiet"]) == 0
    return root / "geo" / "geodesic.npz"


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_kill_during_sample_overwrite(geodesic, tmp_path, delay):
    run_dir = tmp_path / "paths"
    sample = ["sample", "--geodesic", str(geodesic), "--paths", "4", "--steps-per-point", "40", "--workers", "1"]
    assert main([*sample, "--seed", "1", "--run-dir", str(run_dir), "--quiet"]) == 0
    before = snapshot(run_dir)
    killed([*sample, "--seed", "2", "--run-dir", str(run_dir), "--overwrite"], when=tmp_path / ".paths.staging",
           after=delay)
    after = snapshot(run_dir)
    assert after == before or assert_complete(run_dir)["settings"]["seed"] == 2
    assert main(["export", "--paths", str(run_dir / "paths.dcd"), "--plumed", "--frames", "4",
                 "--run-dir", str(tmp_path / "export"), "--quiet"]) == 0  # the survivor is a readable run


def test_kill_during_run_then_resume(tmp_path):
    run_dir = tmp_path / "run"
    cfg = config_file(tmp_path)
    killed(["run", "--config", str(cfg), "--run-dir", str(run_dir)],
           when=tmp_path / ".run.staging" / "train" / "manifest.json", after=random.Random(2).uniform(0.0, 2.0))
    assert not run_dir.exists() or assert_complete(run_dir)
    if not run_dir.exists():
        assert main(["run", "--config", str(cfg), "--run-dir", str(run_dir), "--resume", "--quiet"]) == 0
    assert_complete(run_dir)
    assert not (tmp_path / ".run.staging").exists()


def test_same_seed_reruns_verify_equal(samples, tmp_path, capsys):
    again = tmp_path / "again"
    seed = json.loads((samples / "manifest.json").read_text())["settings"]["seed"]
    time.sleep(1.0)  # a different time stamp in the trajectory files
    assert main([*SIM, "--seed", str(seed), "--format", "dcd", "--run-dir", str(again), "--quiet"]) == 0
    assert main(["verify", str(samples), str(again)]) == 0
    other = tmp_path / "other"
    assert main([*SIM, "--seed", str(seed + 1), "--format", "dcd", "--run-dir", str(other), "--quiet"]) == 0
    assert main(["verify", str(samples), str(other)]) == 1
    assert "differ in" in capsys.readouterr().err
