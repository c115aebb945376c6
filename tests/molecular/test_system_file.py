"""System files (TOML): built-in systems against OpenMM built by hand, user files with bounded and
RMSD states, GBn2, explicit water (one solvated box, periodic cells, solute-only data), errors."""

import re
import time
import warnings
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest

from tps_diffusion.molecular import MolecularSystem, get_system, known_systems
from tps_diffusion.molecular.formats import write_trajectory
from tps_diffusion.molecular.system_file import load_system_file

ALDP = Path(__file__).resolve().parents[2] / "systems" / "alanine_dipeptide"
CHIG = Path(__file__).resolve().parents[2] / "systems" / "chignolin"


def openmm_energy(xml_files, positions, **kw) -> float:
    pdb = app.PDBFile(str(ALDP / "C5_min.pdb"))
    system = app.ForceField(*xml_files).createSystem(pdb.topology, **kw)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(positions)
    return ctx.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def write(tmp_path, text, name="sys.toml") -> Path:
    path = tmp_path / name
    path.write_text(text.replace("ALDP", str(ALDP)))
    return path


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TPS_DIFFUSION_CACHE", str(tmp_path / "cache"))


def test_builtin_systems_are_files_and_match_openmm():
    assert {"alanine_dipeptide", "alanine_dipeptide_obc2", "alanine_dipeptide_tip3p", "chignolin_gbn2",
            "chignolin_obc2"} <= set(known_systems())
    s = get_system("alanine_dipeptide")
    assert s.info["system_file"].endswith("alanine_dipeptide/vacuum.toml") and s.box is None
    for name, x in s.state_positions.items():
        assert s.potential_energy(x) == pytest.approx(openmm_energy(["amber99sbildn.xml"], x), abs=1e-6)
        assert s.assign_states(s.to_trajectory(x))[0] == name
    assert s.default_timestep() == 0.001  # flexible X-H bonds


USER = """
name = "user"
[structure]
pdb = "ALDP/C5_min.pdb"
[forcefield]
files = ["amber99sbildn.xml"]
[cvs.phi]
type = "dihedral"
atoms = ["resname ACE and name C", "resname ALA and name N", "resname ALA and name CA", "resname ALA and name C"]
[cvs.to_c5]
type = "rmsd"
reference = "ALDP/C5_min.pdb"
selection = "not element H"
[states.C5like]
structures = ["ALDP/C5_min.pdb"]
minimize = false
bounds = { to_c5 = { max = 0.02 } }
[states.positive_phi]
structures = ["ALDP/C7ax_min.pdb"]
bounds = { phi = { min_deg = 0.0 } }
"""


def test_user_file_with_rmsd_and_one_sided_states(tmp_path):
    s = load_system_file(write(tmp_path, USER))
    c5 = app.PDBFile(str(ALDP / "C5_min.pdb")).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    c7ax = app.PDBFile(str(ALDP / "C7ax_min.pdb")).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.array_equal(s.state_positions["C5like"], c5)  # minimize = false: as given
    assert s.potential_energy(s.state_positions["positive_phi"]) <= s.potential_energy(c7ax) + 1e-6  # minimised
    labels = s.assign_states(s.to_trajectory(np.stack([c5, c7ax, 0.5 * (c5 + c7ax)])))
    assert labels.tolist() == ["C5like", "positive_phi", labels[2]] and labels[2] != "C5like"
    assert s.to_trajectory(c5).unitcell_vectors is None


def test_gbn2_is_accepted_and_equals_openmm(tmp_path):
    with pytest.warns(RuntimeWarning, match="slower than native OBC2"):
        s = MolecularSystem.from_pdb(ALDP / "C5_min.pdb", forcefield=("amber99sbildn.xml", "implicit/gbn2.xml"))
    x = s.positions
    assert s.potential_energy(x) == pytest.approx(openmm_energy(["amber99sbildn.xml", "implicit/gbn2.xml"], x),
                                                  abs=1e-6)
    with pytest.warns(RuntimeWarning):
        g = MolecularSystem.from_pdb(ALDP / "C5_min.pdb", implicit_solvent="gbn2")
    assert g.potential_energy(x) == pytest.approx(s.potential_energy(x), abs=1e-9)


WATER = """
name = "aldp_water"
[structure]
pdb = "ALDP/C5_min.pdb"
[forcefield]
files = ["amber99sbildn.xml", "tip3p.xml"]
cutoff = 0.7
constraints = "CONSTRAINTS"
[solvent]
kind = "explicit"
padding = 0.45
[cvs.phi]
type = "dihedral"
atoms = ["resname ACE and name C", "resname ALA and name N", "resname ALA and name CA", "resname ALA and name C"]
[states.C5]
structures = ["ALDP/C5_min.pdb"]
minimize = false
bounds = { phi = { max_deg = -100.0 } }
[states.C7ax]
structures = ["ALDP/C7ax_min.pdb"]
minimize = false
bounds = { phi = { min_deg = 0.0 } }
"""


@pytest.fixture(scope="module")
def water(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("water")
    import os

    os.environ["TPS_DIFFUSION_CACHE"] = str(tmp / "cache")
    try:
        path = write(tmp, WATER.replace("CONSTRAINTS", "HBonds"))
        t0 = time.perf_counter()
        s = load_system_file(path)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = load_system_file(path)
        second = time.perf_counter() - t0
    finally:
        del os.environ["TPS_DIFFUSION_CACHE"]
    return s, again, first, second, tmp


def test_explicit_water_is_one_periodic_system(water):
    s, again, first, second, _ = water
    n_water = sum(r.name == "HOH" for r in s.topology.residues())
    assert n_water > 100 and s.n_atoms == 22 + 3 * n_water and len(s.solute_indices) == 22
    assert s.box is not None and np.allclose(s.box, np.diag(np.diag(s.box)))
    assert s.default_timestep() == 0.002  # every solute X-H bond constrained (the rigid waters do not decide)
    assert len(s.md_topology.select("not element H and not water")) == 10
    # every state shares the one box; the solute of C7ax was placed into it, waters relaxed around it
    assert set(s.state_positions) == {"C5", "C7ax"}
    assert s.assign_states(s.to_trajectory(np.stack(list(s.state_positions.values())))).tolist() == ["C5", "C7ax"]
    assert np.isfinite(s.potential_energy(s.state_positions["C7ax"]))
    # the second load comes from the cache: the same waters, bitwise
    assert second < first and np.array_equal(again.positions, s.positions)
    assert all(np.array_equal(again.state_positions[k], v) for k, v in s.state_positions.items())


def test_explicit_water_trajectories_carry_the_box(water, tmp_path):
    s, *_ = water
    traj = s.to_trajectory(np.stack([s.positions, s.positions]))
    assert traj.unitcell_vectors is not None and np.allclose(traj.unitcell_vectors[0], s.box, atol=1e-6)
    write_trajectory(traj, tmp_path / "w.dcd", topology_pdb=True)
    assert "CRYST1" in (tmp_path / "w.pdb").read_text()
    back = mdtraj.load(str(tmp_path / "w.dcd"), top=str(tmp_path / "w.pdb"))
    assert np.allclose(back.unitcell_vectors, traj.unitcell_vectors, atol=1e-4)
    back.image_molecules()  # a unit cell is defined: imaging works


def test_solute_only_and_wrapped_data_are_adopted(water):
    s, *_ = water
    solute = mdtraj.load(str(ALDP / "C7ax_min.pdb"))
    full = s.adopt(solute)
    assert full.n_atoms == s.n_atoms and full.unitcell_vectors is not None
    assert np.allclose(full.xyz[0, s.solute_indices], solute.xyz[0])
    # one atom wrapped into the next image: made whole again with the unit cell
    wrapped = s.to_trajectory(s.positions)
    wrapped.xyz[0, 5] += s.box[0].astype(np.float32)
    whole = s.adopt(wrapped)
    assert np.allclose(whole.xyz[0, :22] - whole.xyz[0, :22].mean(0), s.positions[:22] - s.positions[:22].mean(0),
                       atol=1e-4)
    # without a unit cell the broken bond is refused with the fix
    wrapped.unitcell_vectors = None
    with pytest.raises(ValueError, match=r"molecules split across the periodic box.*unwrap"):
        s.adopt(wrapped)
    with pytest.raises(ValueError, match=r"has 5 atoms but aldp_water has \d+ atoms \(22 solute\)"):
        s.adopt(solute.atom_slice(range(5)))


def test_flexible_solute_in_rigid_water_takes_1_fs(tmp_path):
    s = load_system_file(write(tmp_path, WATER.replace("CONSTRAINTS", "None").replace("[states.C7ax]", "[x]")
                                         .split("[x]")[0]))
    assert s.n_constraints > 0 and s.default_timestep() == 0.001


@pytest.mark.parametrize("text, pattern", [
    ("name = 'x'\n", r"no \[structure\] table"),
    ("bogus = 1\n[structure]\npdb = 'ALDP/C5_min.pdb'\n", r"unknown key\(s\) \['bogus'\] in the top level"),
    ("[structure]\npdb = 'ALDP/C5_min.pdb'\n[solvent]\nkind = 'water'\n", r"unknown solvent 'water'"),
    ("[structure]\npdb = 'ALDP/C5_min.pdb'\n[solvent]\nkind = 'implicit'\nimplicit = 'gb9'\n",
     r"unknown implicit solvent 'gb9'"),
    ("[structure]\npdb = 'ALDP/nothere.pdb'\n", r"pdb file not found"),
    ("[structure]\npdb = 'ALDP/C5_min.pdb'\n[forcefield]\nfiles = ['amber99sbildn.xml']\n[model]\natoms = 'name XX'\n",
     r"selects 0 atoms"),
    ("[structure]\npdb = 'ALDP/C5_min.pdb'\n[forcefield]\nfiles = ['amber99sbildn.xml']\n[states.A]\n"
     "bounds = { nope = { max = 1.0 } }\n", r"nope"),
    ("[structure\npdb = 1\n", r"is not valid TOML"),
    ("[structure]\npdb = 'ALDP/C5_min.pdb'\n", r"needs force-field files"),
])
def test_bad_system_files_are_one_line_errors(tmp_path, text, pattern):
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_system_file(write(tmp_path, text))
    msg = str(info.value)
    assert "\n" not in msg and re.search(pattern, msg), msg


def test_chignolin_states_by_calpha_rmsd(tmp_path):
    s = load_system_file(CHIG / "obc2.toml")
    assert s.n_atoms == 138 and s.default_timestep() == 0.002
    heavy = [a.index for a in s.md_topology.atoms if a.element.symbol != "H"]
    assert s.md_topology.select(s.model_atoms if s.model_atoms != "heavy" else "not element H").tolist() == heavy
    assert min(s.potential_energy(x) for x in s.state_positions.values()) < -1600  # minimised (raw PDB: ~25 higher)
    traj = s.to_trajectory(np.stack([s.state_positions["folded"], s.state_positions["unfolded"]]))
    assert s.assign_states(traj).tolist() == ["folded", "unfolded"]
    rmsd = s.cvs["rmsd_folded"].compute(traj)
    ref = mdtraj.load(str(CHIG / "folded.pdb"))
    ca = ref.topology.select("name CA")
    assert rmsd[1] == pytest.approx(mdtraj.rmsd(traj[1], ref, atom_indices=ca)[0], abs=1e-4)


def test_path_cv_exports_never_hold_solvent(water, tmp_path):
    from tps_diffusion.handoff import write_plumed_path

    s, *_ = water
    path = s.to_trajectory(np.stack([s.state_positions["C5"], s.state_positions["C7ax"]] * 2))
    with pytest.warns(RuntimeWarning, match=r"dropped \d+ water/ion atoms"):
        out = write_plumed_path(path, tmp_path / "p", n_frames=3, atom_indices=np.arange(40))
    ref = mdtraj.load(str(out["pdb"]))
    assert ref.n_atoms == 22 and not any(r.is_water for r in ref.topology.residues)
    out = write_plumed_path(path, tmp_path / "q", n_frames=3)  # default: the solute
    assert mdtraj.load(str(out["pdb"])).n_atoms == 22
