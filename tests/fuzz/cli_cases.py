"""The hostile-user case list of the CLI fuzz, replayed in-process on tiny inputs, and its classifier.

Each case is a command line (``{name}`` fields are filled with the paths of :func:`make_inputs`) and
the expected outcome: ``"error"`` (a one-line error naming the fix, exit 1 or 2, nothing written) or
``"ok"``. :func:`classify` runs one case and returns ``clean error`` / ``ok`` / ``traceback`` /
``wrong`` (exit 0 where an error was due, or an error where success was due) / ``corrupted`` (a run
directory given as input changed). ``benchmarks/fuzz_table.py`` prints the table over all cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import mdtraj
import numpy as np

from tps_diffusion.cli import main

SIM = ["simulate", "--states", "C5", "C7ax", "--steps", "600", "--report-interval", "10", "--seed", "1"]
TRAIN = ["--steps", "30", "--batch-size", "32", "--hidden", "16", "--depth", "1", "--device", "cpu"]
GEO = ["--start", "C5", "--end", "C7ax", "--points", "6", "--steps", "3", "--device", "cpu", "--no-check"]
PATHS = ["--paths", "{sample}/paths.dcd", "--top", "{sample}/paths.pdb"]
DATA = ["--data", "{sim}/samples.dcd", "--top", "{sim}/samples.pdb"]

#: (name, command line without --run-dir, expected)
CASES: list[tuple[str, list[str], str]] = [
    # simulate
    ("simulate steps 0", [*SIM, "--steps", "0"], "error"),
    ("simulate steps 1e12 (memory)", [*SIM, "--steps", "1e12", "--report-interval", "1"], "error"),
    ("simulate negative temperature", [*SIM, "--temperature", "-300"], "error"),
    ("simulate timestep 0", [*SIM, "--timestep", "0"], "error"),
    ("simulate negative friction", [*SIM, "--friction", "-1"], "error"),
    ("simulate platform Bogus", [*SIM, "--platform", "Bogus"], "error"),
    ("simulate unknown system", [*SIM, "--system", "no_such_molecule"], "error"),
    ("simulate unknown state", [*SIM, "--states", "alpha_R"], "error"),
    ("simulate workers 0", [*SIM, "--workers", "0"], "error"),
    ("simulate report-interval 0", [*SIM, "--report-interval", "0"], "error"),
    ("simulate report-interval > steps", [*SIM, "--steps", "5", "--report-interval", "10"], "error"),
    ("simulate steps nan", [*SIM, "--steps", "nan"], "error"),
    ("simulate malformed scheduler address", [*SIM, "--scheduler", "not::an::address"], "error"),
    ("simulate missing scheduler file", [*SIM, "--scheduler", "{tmp}/missing.json"], "error"),
    ("simulate jobs without cluster", [*SIM, "--jobs", "2"], "error"),
    ("simulate scheduler and cluster", [*SIM, "--scheduler", "tcp://127.0.0.1:1", "--cluster", "local"], "error"),
    ("simulate missing cluster config", [*SIM, "--cluster", "slurm", "--cluster-config", "{tmp}/missing.toml"],
     "error"),
    ("simulate cluster config not TOML", [*SIM, "--cluster", "pbs", "--cluster-config", "{garbage_npz}"], "error"),
    # train
    ("train missing data", ["train", "--data", "{tmp}/missing.dcd", *TRAIN], "error"),
    ("train truncated DCD", ["train", "--data", "{truncated}", "--top", "{sim}/samples.pdb", *TRAIN], "error"),
    ("train NaN DCD", ["train", "--data", "{nan}", "--top", "{sim}/samples.pdb", *TRAIN], "error"),
    ("train identical frames", ["train", "--data", "{identical}", *TRAIN], "error"),
    ("train topology mismatch", ["train", "--data", "{sim}/samples.dcd", "--top", "{small_pdb}", *TRAIN], "error"),
    ("train hidden 0", ["train", *DATA, *TRAIN, "--hidden", "0"], "error"),
    ("train depth -1", ["train", *DATA, *TRAIN, "--depth", "-1"], "error"),
    ("train lam-min >= lam-max", ["train", *DATA, *TRAIN, "--lam-min", "3", "--lam-max", "-1"], "error"),
    ("train lam-max 1000", ["train", *DATA, *TRAIN, "--lam-max", "1000"], "error"),
    ("train checkpoint-every 0", ["train", *DATA, *TRAIN, "--checkpoint-every", "0"], "error"),
    ("train steps 0", ["train", *DATA, *TRAIN, "--steps", "0"], "error"),
    ("train batch-size 0", ["train", *DATA, *TRAIN, "--batch-size", "0"], "error"),
    ("train lr nan", ["train", *DATA, *TRAIN, "--lr", "nan"], "error"),
    ("train resume without run-dir", ["train", *DATA, *TRAIN, "--resume"], "error"),
    ("train resume into a simulate run", ["train", *DATA, *TRAIN, "--resume", "--run-dir", "{sim}"], "error"),
    ("train unknown selection", ["train", *DATA, *TRAIN, "--selection", "name XYZ"], "error"),
    # geodesic
    ("geodesic lam-end nan", ["geodesic", "--model", "{train}/model.pt", *GEO, "--lam-end", "nan"], "error"),
    ("geodesic lam-end 1000", ["geodesic", "--model", "{train}/model.pt", *GEO, "--lam-end", "1000"], "error"),
    ("geodesic points 0", ["geodesic", "--model", "{train}/model.pt", *GEO, "--points", "0"], "error"),
    ("geodesic points 1", ["geodesic", "--model", "{train}/model.pt", *GEO, "--points", "1"], "error"),
    ("geodesic nodes 0", ["geodesic", "--model", "{train}/model.pt", *GEO, "--nodes", "0"], "error"),
    ("geodesic lr -1", ["geodesic", "--model", "{train}/model.pt", *GEO, "--lr", "-1"], "error"),
    ("geodesic probes -1", ["geodesic", "--model", "{train}/model.pt", *GEO, "--probes", "-1"], "error"),
    ("geodesic avoid without region", ["geodesic", "--model", "{train}/model.pt", *GEO, "--mode", "avoid"], "error"),
    ("geodesic unknown state", ["geodesic", "--model", "{train}/model.pt", *GEO, "--end", "alpha_R"], "error"),
    ("geodesic missing model", ["geodesic", "--model", "{tmp}/missing.pt", *GEO], "error"),
    ("geodesic corrupt model", ["geodesic", "--model", "{garbage_pt}", *GEO], "error"),
    # sample
    ("sample paths 0", ["sample", "--geodesic", "{geo}/geodesic.npz", "--paths", "0"], "error"),
    ("sample paths 1e11 (memory)", ["sample", "--geodesic", "{geo}/geodesic.npz", "--paths", "1e11"], "error"),
    ("sample steps-per-point 0", ["sample", "--geodesic", "{geo}/geodesic.npz", "--steps-per-point", "0"], "error"),
    ("sample record-interval not dividing", ["sample", "--geodesic", "{geo}/geodesic.npz", "--steps-per-point", "4",
                                            "--record-interval", "3"], "error"),
    ("sample negative temperature", ["sample", "--geodesic", "{geo}/geodesic.npz", "--temperature", "-300"], "error"),
    ("sample corrupt geodesic", ["sample", "--geodesic", "{garbage_npz}"], "error"),
    ("sample missing geodesic", ["sample", "--geodesic", "{tmp}/missing.npz"], "error"),
    ("sample resume without run-dir", ["sample", "--geodesic", "{geo}/geodesic.npz", "--resume"], "error"),
    ("sample resume into a simulate run", ["sample", "--geodesic", "{geo}/geodesic.npz", "--resume", "--run-dir",
                                           "{sim}"], "error"),
    # export
    ("export nothing", ["export", *PATHS], "error"),
    ("export frames 100000", ["export", *PATHS, "--plumed", "--frames", "100000"], "error"),
    ("export frames 0", ["export", *PATHS, "--plumed", "--frames", "0"], "error"),
    ("export smooth 0", ["export", *PATHS, "--plumed", "--frames", "4", "--smooth", "0"], "error"),
    ("export smooth -4", ["export", *PATHS, "--plumed", "--frames", "4", "--smooth", "-4"], "error"),
    ("export smooth 1e5", ["export", *PATHS, "--plumed", "--frames", "4", "--smooth", "1e5"], "error"),
    ("export velocity temperature -5", ["export", *PATHS, "--state-xml", "0", "--velocity-temperature", "-5"],
     "error"),
    ("export state-xml frame out of range", ["export", *PATHS, "--state-xml", "100000"], "error"),
    ("export plumed outside run dir", ["export", *PATHS, "--plumed", "../../x", "--frames", "4"], "error"),
    ("export path-index out of range", ["export", *PATHS, "--plumed", "--frames", "4", "--path-index", "99"], "error"),
    ("export frames-per-path not dividing", ["export", *PATHS, "--plumed", "--frames", "4", "--frames-per-path", "7"],
     "error"),
    ("export truncated DCD", ["export", "--paths", "{truncated}", "--top", "{sim}/samples.pdb", "--plumed"], "error"),
    # analyze
    ("analyze shots 0", ["analyze", *PATHS, "--shots", "0"], "error"),
    ("analyze max-steps 0", ["analyze", *PATHS, "--max-steps", "0"], "error"),
    ("analyze tse-tol 2", ["analyze", *PATHS, "--tse-tol", "2"], "error"),
    ("analyze unknown state", ["analyze", *PATHS, "--state-a", "bogus", "--shots", "1"], "error"),
    # shoot
    ("shoot shots 0", ["shoot", "--paths", "{sample}", "--shots", "0"], "error"),
    ("shoot max-ps 0", ["shoot", "--paths", "{sample}", "--max-ps", "0"], "error"),
    ("shoot unknown state", ["shoot", "--paths", "{sample}", "--state-a", "bogus"], "error"),
    ("shoot same state A and B", ["shoot", "--paths", "{sample}", "--state-a", "C7ax"], "error"),
    ("shoot paths of simulate", ["shoot", "--paths", "{sim}/samples.dcd"], "error"),
    # run, bench, verify
    ("run missing config", ["run", "--config", "{tmp}/missing.toml"], "error"),
    ("run unknown key set to false", ["run", "--config", "{config_unknown_false}"], "error"),
    ("run bad value in a late stage", ["run", "--config", "{config_bad_late}"], "error"),
    ("bench aldp2d paths 0", ["bench", "aldp2d", "--out", "{tmp}/r.json", "--paths", "0"], "error"),
    ("verify a missing run", ["verify", "{sim}", "{tmp}/missing"], "error"),
    # valid inputs stay accepted
    ("export plumed (valid)", ["export", *PATHS, "--plumed", "--frames", "4"], "ok"),
    ("verify a run with itself (valid)", ["verify", "{sim}", "{sim}"], "ok"),
]

NO_RUN_DIR = ("bench", "verify")


def _sha_tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def make_inputs(tmp: Path) -> dict[str, str]:
    """Valid runs (simulate, train, geodesic, sample) and broken files, in ``tmp``."""
    d = {name: tmp / name for name in ("sim", "train", "geo", "sample")}

    def ok(argv):
        rc = main([*argv, "--quiet"])
        assert rc == 0, argv

    ok([*SIM, "--format", "dcd", "--run-dir", str(d["sim"])])
    ok(["train", "--data", str(d["sim"] / "samples.dcd"), "--top", str(d["sim"] / "samples.pdb"), *TRAIN,
        "--run-dir", str(d["train"])])
    ok(["geodesic", "--model", str(d["train"] / "model.pt"), *GEO, "--run-dir", str(d["geo"])])
    ok(["sample", "--geodesic", str(d["geo"] / "geodesic.npz"), "--paths", "2", "--steps-per-point", "4",
        "--workers", "1", "--run-dir", str(d["sample"])])
    files = tmp / "files"
    files.mkdir()
    traj = mdtraj.load(str(d["sim"] / "samples.dcd"), top=str(d["sim"] / "samples.pdb"))
    raw = (d["sim"] / "samples.dcd").read_bytes()
    (files / "truncated.dcd").write_bytes(raw[: len(raw) // 2])
    bad = traj[:20]
    bad.xyz[5, 3] = np.nan
    bad.save_dcd(str(files / "nan.dcd"))
    same = mdtraj.join([traj[0]] * 50)
    same.save_hdf5(str(files / "identical.h5"))
    traj[0].atom_slice(range(5)).save_pdb(str(files / "small.pdb"))
    (files / "garbage.pt").write_bytes(b"\x00garbage" * 100)
    (files / "garbage.npz").write_bytes(b"PK\x03\x04garbage" * 100)
    base = ('system = "alanine_dipeptide"\n[simulate]\nstates = ["C5"]\nsteps = 100\nreport-interval = 10\n'
            '[train]\nsteps = 5\n')
    (files / "unknown_false.toml").write_text(base + "bogus = false\n")
    (files / "bad_late.toml").write_text(base + "[export]\nplumed = \"plumed\"\nframes = 0\n")
    fields = {k: str(v) for k, v in d.items()}
    fields.update(tmp=str(tmp), truncated=str(files / "truncated.dcd"), nan=str(files / "nan.dcd"),
                  identical=str(files / "identical.h5"), small_pdb=str(files / "small.pdb"),
                  garbage_pt=str(files / "garbage.pt"), garbage_npz=str(files / "garbage.npz"),
                  config_unknown_false=str(files / "unknown_false.toml"),
                  config_bad_late=str(files / "bad_late.toml"))
    return fields


def classify(case: tuple[str, list[str], str], fields: dict[str, str], run_dir: Path) -> tuple[str, str]:
    """Run one case in-process; ``(outcome, stderr's last line)``."""
    name, argv, expected = case
    argv = [a.format(**fields) for a in argv]
    if argv[0] not in NO_RUN_DIR and "--run-dir" not in argv and "without run-dir" not in name:
        argv += ["--run-dir", str(run_dir)]
    inputs = {k: _sha_tree(Path(fields[k])) for k in ("sim", "train", "geo", "sample")}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main([*argv, "--quiet"])
    except SystemExit as exc:  # argparse's own exits (should not happen)
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - an escaping exception is a traceback for the user
        return "traceback", f"{type(exc).__name__}: {exc}".splitlines()[0]
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if any(inputs[k] != _sha_tree(Path(fields[k])) for k in inputs):
        return "corrupted", lines[-1] if lines else ""
    errors = [line for line in lines if line.startswith("tps-diffusion: error:")]
    if expected == "ok":
        return ("ok" if rc == 0 else "wrong"), (errors or lines or [""])[-1]
    if rc == 0:
        return "wrong", "exit 0"
    if len(errors) != 1:
        return "traceback", (lines or [""])[-1]
    if run_dir.exists() and any(run_dir.iterdir()):
        return "corrupted", f"{run_dir} written by a failed command"
    return "clean error", errors[0]
