"""Many transitions from the command line: ``geodesic --pairs all|A:B,...`` / ``--pairs-file`` (state names or
frame indices of ``--trajectory``) makes one curve per pair in one file, ``sample`` writes every pair's
paths into its own directory (or one pair, ``--pair``, as a one-pair run, with the same paths), and bad
pairs fail with one line before any long work. Tiny alanine dipeptide runs: seconds each."""

import hashlib
import json
import re
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from tps_diffusion.cli import main
from tps_diffusion.cli.inputs import load_pathset
from tps_diffusion.molecular.geodesic import MolecularGeodesic

SIM = ["--states", "C5", "C7eq", "C7ax", "--steps", "1000", "--report-interval", "10", "--seed", "1"]
TRAIN = ["--steps", "30", "--batch-size", "64", "--hidden", "32", "--depth", "2", "--device", "cpu"]
GEO = ["--points", "6", "--steps", "3", "--device", "cpu", "--no-check"]
SAMPLE = ["--paths", "2", "--steps-per-point", "2", "--workers", "1", "--seed", "4"]
ALL = ["C5:C7eq", "C5:C7ax", "C7eq:C7ax"]


def run_ok(args) -> dict:
    assert main([*args, "--quiet"]) == 0, args
    run_dir = Path(args[args.index("--run-dir") + 1])
    m = json.loads((run_dir / "manifest.json").read_text())
    for entry in m["outputs"].values():  # every output is there, as recorded
        assert hashlib.sha256((run_dir / entry["path"]).read_bytes()).hexdigest() == entry["sha256"]
    return m


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs_cli")
    run_ok(["simulate", *SIM, "--run-dir", str(root / "sim")])
    run_ok(["train", "--data", str(root / "sim" / "samples.h5"), *TRAIN, "--run-dir", str(root / "train")])
    return root


def geodesic(root: Path, run_dir: Path, *pairs: str) -> list[str]:
    return ["geodesic", "--model", str(root / "train" / "model.pt"), *GEO, *pairs, "--run-dir", str(run_dir)]


@pytest.fixture(scope="module")
def all_pairs(trained) -> dict:
    """The manifest of 'geodesic --pairs all'."""
    return run_ok(geodesic(trained, trained / "geo_all", "--pairs", "all"))


def test_all_pairs_geodesic_and_their_paths(trained, all_pairs):
    root, m = trained, all_pairs
    geo = MolecularGeodesic.load(root / "geo_all" / "geodesic.npz")
    assert geo.pair_names == ALL and geo.curve.shape == (3, 6, 31)
    assert list(m["results"]["pairs"]) == ALL and "curve_energy" not in m["results"]
    assert all(r["steps_done"] == 3 for r in m["results"]["pairs"].values())

    npz = str(root / "geo_all" / "geodesic.npz")
    m = run_ok(["sample", "--geodesic", npz, *SAMPLE, "--run-dir", str(root / "paths_all")])
    assert list(m["results"]["pairs"]) == ALL and m["results"]["n_paths"] == 6
    assert not (root / "paths_all" / "paths.dcd").exists() and not (root / "paths_all" / "paths.store").exists()
    for name in ALL:
        folder = name.replace(":", "_to_")
        assert {f"{folder}/{key}" for key in ("paths", "topology", "energies", "summary", "plot")} <= set(m["outputs"])
        ps, side, _ = load_pathset(root / "paths_all" / folder)  # what 'shoot --paths DIR' reads
        assert side["pair"] == name and side["start"] == name.split(":")[0] and side["end"] == name.split(":")[1]
        assert ps.n_paths == 2 and ps[0].n_frames == 6 * 2
    # one pair of the file: written as a one-pair run, with the same paths it got among all pairs
    m = run_ok(["sample", "--geodesic", npz, *SAMPLE, "--pair", "C5:C7ax", "--run-dir", str(root / "paths_one")])
    assert "pairs" not in m["results"] and m["results"]["sampler_settings"]["pair"] == "C5:C7ax"
    one = mdtraj.load(str(root / "paths_one" / "paths.dcd"), top=str(root / "paths_one" / "paths.pdb"))
    among = mdtraj.load(str(root / "paths_all" / "C5_to_C7ax" / "paths.dcd"),
                        top=str(root / "paths_all" / "C5_to_C7ax" / "paths.pdb"))
    np.testing.assert_array_equal(one.xyz, among.xyz)


def test_pairs_of_states_and_frames(trained, tmp_path):
    root = trained
    run_ok(geodesic(root, tmp_path / "geo_two", "--pairs", "C7eq:C7ax, C5:C7ax"))
    assert MolecularGeodesic.load(tmp_path / "geo_two" / "geodesic.npz").pair_names == ["C7eq:C7ax", "C5:C7ax"]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# start end: state names or frames of --trajectory\n0 C7ax\n\n 150:250  # C7eq -> C7ax\n")
    samples = root / "sim" / "samples.h5"
    m = run_ok(geodesic(root, tmp_path / "geo_frames", "--pairs-file", str(pairs), "--trajectory", str(samples)))
    geo = MolecularGeodesic.load(tmp_path / "geo_frames" / "geodesic.npz")
    assert geo.pair_names == ["0:C7ax", "150:250"] and [e.label for e in geo.starts] == ["frame", "frame"]
    traj = mdtraj.load(str(samples))
    np.testing.assert_allclose(geo.start(1).positions, traj.xyz[150], atol=1e-6)
    np.testing.assert_allclose(geo.end(1).positions, traj.xyz[250], atol=1e-6)
    assert {"pairs_file", "trajectory"} <= set(m["inputs"])


@pytest.mark.parametrize("extra, code, message", [
    (["--pairs", "C5:C8"], 1, "unknown state 'C8' for alanine_dipeptide_vacuum; known states: C5, C7eq, C7ax"),
    (["--pairs", "C5:C5"], 1, "'C5:C5' starts where it ends"),
    (["--pairs", "C5:C7ax,C5:C7ax"], 1, "'C5:C7ax' is given twice"),
    (["--pairs", "C5"], 1, "'C5' is not a pair; write START:END"),
    (["--pairs", ""], 1, "--pairs gives no pairs"),
    (["--pairs", "3:C7ax"], 1, "frame index 3 needs --trajectory"),
    (["--pairs", "300:C7ax", "--trajectory", "{samples}"], 1, "frame 300 is out of range: .* has 300 frames"),
    (["--pairs", "C5:C7ax", "--start", "C5", "--end", "C7ax"], 2, "give the endpoints as --start and --end, --pairs"),
    ([], 2, "give the endpoints as --start and --end, --pairs or --pairs-file \\(got none\\)"),
    (["--start", "C5", "--end", "C7ax", "--trajectory", "{samples}"], 2, "--trajectory applies to --pairs"),
])
def test_bad_pairs_fail_in_one_line_before_any_work(trained, tmp_path, capsys, extra, code, message):
    extra = [a.replace("{samples}", str(trained / "sim" / "samples.h5")) for a in extra]
    assert main([*geodesic(trained, tmp_path / "r", *extra), "--quiet"]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "r").exists()


def test_sample_refuses_unknown_pair_and_start_with_pairs(trained, all_pairs, tmp_path, capsys):
    npz = str(trained / "geo_all" / "geodesic.npz")
    assert main(["sample", "--geodesic", npz, "--pair", "C7ax:C5", "--run-dir", str(tmp_path / "a"), "--quiet"]) == 1
    assert "no pair 'C7ax:C5'; its pairs: C5:C7eq, C5:C7ax, C7eq:C7ax" in capsys.readouterr().err
    assert main(["sample", "--geodesic", npz, "--start", "C5", "--run-dir", str(tmp_path / "b"), "--quiet"]) == 2
    assert "--start applies to a geodesic of one pair" in capsys.readouterr().err
