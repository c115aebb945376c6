"""A user's own molecule from a system file (TOML) through the whole CLI chain: simulate -> train ->
geodesic -> sample -> export, with states defined by bounds on a dihedral and no built-in name anywhere."""

import json
import shutil
from pathlib import Path

import mdtraj
import numpy as np
import pytest

from tps_diffusion.cli import main

ALDP = Path(__file__).resolve().parents[2] / "systems" / "alanine_dipeptide"

USER_TOML = """
name = "my_dipeptide"
temperature = 310.0  # K

[structure]
pdb = "start.pdb"

[forcefield]
files = ["amber99sbildn.xml"]

[solvent]
kind = "vacuum"

[cvs.phi]
type = "dihedral"
atoms = ["resname ACE and name C", "resname ALA and name N", "resname ALA and name CA", "resname ALA and name C"]

[states.left]
structures = ["left.pdb"]
bounds = { phi = { min_deg = -180.0, max_deg = -100.0 } }

[states.right]
structures = ["right.pdb"]
bounds = { phi = { min_deg = 20.0, max_deg = 100.0 } }
"""


def run(args, capsys):
    rc = main([*args, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0, (args, err)
    return err


@pytest.fixture(scope="module")
def user_chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("user_system")
    mol = root / "molecule"
    mol.mkdir()
    shutil.copy(ALDP / "C5_min.pdb", mol / "start.pdb")
    shutil.copy(ALDP / "C5_min.pdb", mol / "left.pdb")
    shutil.copy(ALDP / "C7ax_min.pdb", mol / "right.pdb")
    (mol / "my_dipeptide.toml").write_text(USER_TOML)
    return root, mol / "my_dipeptide.toml"


def test_user_system_through_the_cli(user_chain, capsys):
    root, toml = user_chain
    d = {k: root / k for k in ("sim", "train", "geo", "sample", "export")}
    run(["simulate", "--system", str(toml), "--states", "left", "right", "--steps", "1000", "--report-interval", "10",
         "--seed", "1", "--format", "dcd", "--run-dir", str(d["sim"])], capsys)
    sim = json.loads((d["sim"] / "manifest.json").read_text())
    assert sim["inputs"]["system"]["name"] == "my_dipeptide" and sim["inputs"]["system"]["temperature_K"] == 310.0
    occupancy = sim["results"]["state_occupancy"]
    assert set(occupancy) == {"left", "right", "none"} and occupancy["left"] > 0.2 and occupancy["right"] > 0.2

    # train finds the system through the simulate run (no --system), and says nothing about a default
    err = run(["train", "--data", str(d["sim"] / "samples.dcd"), "--top", str(d["sim"] / "samples.pdb"), "--steps",
               "30", "--batch-size", "64", "--hidden", "32", "--depth", "2", "--device", "cpu", "--run-dir",
               str(d["train"])], capsys)
    assert "note: no --system" not in err
    trained = json.loads((d["train"] / "manifest.json").read_text())["results"]
    assert trained["n_selected_atoms"] == 10
    assert trained["frames_per_state"]["left"] == round(occupancy["left"] * trained["n_samples"])
    run(["geodesic", "--model", str(d["train"] / "model.pt"), "--start", "left", "--end",
         str(toml.parent / "right.pdb"), "--points", "8",
         "--steps", "5", "--device", "cpu", "--run-dir", str(d["geo"])], capsys)
    run(["sample", "--geodesic", str(d["geo"] / "geodesic.npz"), "--paths", "2", "--steps-per-point", "4",
         "--workers", "1", "--run-dir", str(d["sample"])], capsys)
    info = json.loads((d["sample"] / "paths.json").read_text())
    assert info["system"] == str(toml.resolve()) and info["end"] == "right"  # the end file lies in state right
    assert info["end_state_reached"] is not None and len(info["end_state_reached"]) == 2
    run(["export", "--paths", str(d["sample"] / "paths.dcd"), "--plumed", "--frames", "4", "--state-xml", "0",
         "--run-dir", str(d["export"])], capsys)
    ref = mdtraj.load(str(d["export"] / "plumed" / "path_msd.pdb"))
    assert ref.n_atoms == 10 and ref.n_frames == 4  # heavy atoms only
    paths = mdtraj.load(str(d["sample"] / "paths.dcd"), top=str(d["sample"] / "paths.pdb"))
    assert paths.n_atoms == 22 and np.all(np.isfinite(paths.xyz))


def test_foreign_trajectory_needs_its_system(user_chain, tmp_path, capsys):
    """--top with data from another program and no --system: refused with the fix, no silent default."""
    root, toml = user_chain
    traj = mdtraj.load(str(ALDP / "C5_min.pdb"))
    traj.save_dcd(str(tmp_path / "mine.dcd"))
    rc = main(["train", "--data", str(tmp_path / "mine.dcd"), "--top", str(ALDP / "C5_min.pdb"), "--run-dir",
               str(tmp_path / "t"), "--quiet"])
    assert rc == 1 and "needs --system NAME|FILE.toml" in capsys.readouterr().err


def test_a_missing_system_is_announced(tmp_path, capsys):
    """Without --system the built-in default is used, and the command says so."""
    rc = main(["simulate", "--states", "C5", "--steps", "20", "--report-interval", "10", "--run-dir",
               str(tmp_path / "s"), "--quiet"])
    assert rc == 0 and "using the built-in alanine_dipeptide" in capsys.readouterr().err


def test_run_config_takes_a_system_file(user_chain, tmp_path, capsys):
    """``system = "FILE.toml"`` at the top of a run config reaches every stage."""
    _, toml = user_chain
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'system = "{toml}"\nseed = 3\n[simulate]\nstates = ["left"]\nsteps = 40\nreport-interval = 10\n'
                   "[train]\nsteps = 5\nbatch-size = 16\nhidden = 16\ndepth = 1\ndevice = \"cpu\"\n")
    run(["run", "--config", str(cfg), "--run-dir", str(tmp_path / "all")], capsys)
    sim = json.loads((tmp_path / "all" / "simulate" / "manifest.json").read_text())
    train = json.loads((tmp_path / "all" / "train" / "manifest.json").read_text())
    assert sim["inputs"]["system"]["name"] == train["inputs"]["system"]["name"] == "my_dipeptide"
