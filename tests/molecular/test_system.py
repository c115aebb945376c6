"""Molecular systems: minimised alanine-dipeptide endpoints, OBC2, CVs, states, errors."""

import pickle

import numpy as np
import openmm
import openmm.app as app
import pytest

from tps_diffusion.molecular.catalogue import alanine_dipeptide, get_system, known_systems
from tps_diffusion.molecular.states import Dihedral, Distance, State
from tps_diffusion.molecular.system import MolecularSystem
from tps_diffusion.utils.systems_dir import systems_dir

ALDP_DIR = systems_dir() / "alanine_dipeptide"

# kJ/mol, published minima (docs/method.md, section 8)
PUBLISHED_MINIMA = {"C7eq": -90.94, "C5": -88.45, "C7ax": -85.00}


def test_minimised_energies_match_published(aldp):
    for name, e_ref in PUBLISHED_MINIMA.items():
        e = aldp.potential_energy(aldp.positions_of(name))
        assert abs(e - e_ref) < 0.5, (name, e)


def test_minima_are_minima_and_in_their_states(aldp):
    for name in PUBLISHED_MINIMA:
        pos = aldp.positions_of(name)
        relaxed = aldp.minimize(pos, tolerance=1e-3)
        assert aldp.potential_energy(relaxed) > aldp.potential_energy(pos) - 0.05
        assert list(aldp.assign_states(relaxed)) == [name]
        assert list(aldp.assign_states(pos)) == [name]
        assert aldp.states[name].contains(aldp.to_trajectory(pos))[0]


def test_phi_psi_against_numpy_dihedral(aldp):
    # independent dihedral formula (IUPAC sign convention) on the C7ax minimum
    pos = aldp.positions_of("C7ax")
    traj = aldp.to_trajectory(pos)

    def dihedral(p):
        b0, b1, b2 = p[0] - p[1], p[2] - p[1], p[3] - p[2]
        b1n = b1 / np.linalg.norm(b1)
        v = b0 - b0 @ b1n * b1n
        w = b2 - b2 @ b1n * b1n
        return np.arctan2(np.cross(b1n, v) @ w, v @ w)

    for cv, centre in zip((aldp.cvs["phi"], aldp.cvs["psi"]), np.deg2rad([60.0, -41.0])):
        idx = cv.atom_indices(aldp.md_topology)
        ref = dihedral(pos[idx])
        assert cv.compute(traj)[0] == pytest.approx(ref, abs=1e-5)
        assert abs(ref - centre) < 0.1
    names = [aldp.md_topology.atom(i).name for i in aldp.cvs["phi"].atom_indices(aldp.md_topology)]
    assert names == ["C", "N", "CA", "C"]
    assert aldp.md_topology.atom(aldp.cvs["phi"].atom_indices(aldp.md_topology)[0]).residue.name == "ACE"
    assert aldp.md_topology.atom(aldp.cvs["psi"].atom_indices(aldp.md_topology)[3]).residue.name == "NME"


def test_state_periodic_distance_and_distance_cv(aldp):
    phi, psi = aldp.cvs["phi"], aldp.cvs["psi"]
    s = State("edge", (phi, psi), [np.pi - 0.1, 0.0], 0.3)
    assert s.distance_cv([-np.pi + 0.1, 0.0]) == pytest.approx(0.2)
    assert s.distance_cv([[np.pi - 0.1, 0.25]]) == pytest.approx([0.25])
    d = Distance("N-C", ("resname ALA and name N", "resname ALA and name C"), aldp.md_topology)
    traj = aldp.to_trajectory(aldp.positions_of("C5"))
    i, j = d.atom_indices(aldp.md_topology)
    assert d.compute(traj)[0] == pytest.approx(np.linalg.norm(traj.xyz[0, i] - traj.xyz[0, j]), rel=1e-6)
    assert not d.periodic and phi.periodic


def test_cv_selection_errors(aldp):
    with pytest.raises(ValueError, match=r"'name C' matched 3 atoms.*ACE1-C"):
        Dihedral("bad", ("name C", "name N", "name CA", "name CB"), aldp.md_topology)
    with pytest.raises(ValueError, match=r"'name XYZ' matched 0 atoms"):
        Distance("bad", ("name XYZ", "name CA"), aldp.md_topology)
    with pytest.raises(ValueError, match=r"invalid atom selection 'name =='"):
        Distance("bad", ("name ==", "name CA"), aldp.md_topology)
    with pytest.raises(ValueError, match="needs 4 atom selections"):
        Dihedral("bad", ("name CA",))


def test_obc2_native_force_matches_customgb_obc2(aldp):
    obc = alanine_dipeptide(solvent="obc2")
    kinds = {type(f).__name__ for f in obc.openmm_system.getForces()}
    assert "GBSAOBCForce" in kinds and "CustomGBForce" not in kinds
    # independent reference: OpenMM's implicit/obc2.xml (CustomGBForce, Amber igb=5)
    ff = app.ForceField("amber99sbildn.xml", "implicit/obc2.xml")
    ref = MolecularSystem.from_openmm(obc.topology, ff.createSystem(obc.topology, nonbondedMethod=app.NoCutoff),
                                      obc.positions)
    xyz = np.stack([aldp.positions_of(n) for n in PUBLISHED_MINIMA])
    np.testing.assert_allclose(obc.potential_energy(xyz), ref.potential_energy(xyz), atol=1e-3)
    np.testing.assert_allclose(obc.forces(xyz), ref.forces(xyz), atol=1e-2)
    # OBC2 state structures stay in their vacuum basins
    for name in PUBLISHED_MINIMA:
        assert list(obc.assign_states(obc.positions_of(name))) == [name]


def test_energy_api_shapes_and_pickle(aldp):
    xyz = np.stack([aldp.positions_of("C5"), aldp.positions_of("C7eq")])
    e = aldp.potential_energy(xyz)
    assert e.shape == (2,)
    assert isinstance(aldp.potential_energy(xyz[0]), float)
    np.testing.assert_allclose(aldp.potential_energy(aldp.to_trajectory(xyz)), e, atol=1e-4)  # float32 round trip
    clone = pickle.loads(pickle.dumps(aldp))
    np.testing.assert_allclose(clone.potential_energy(xyz), e, atol=1e-9)
    assert aldp.kT == pytest.approx(2.494, abs=1e-3)
    assert aldp.default_timestep() == 0.001


def test_clear_errors(aldp, tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        pos = aldp.positions_of("C5")
        pos[3, 1] = np.nan
        aldp.potential_energy(pos)
    with pytest.raises(ValueError, match="21 atoms but the topology has 22"):
        aldp.potential_energy(aldp.positions[:21])
    with pytest.raises(FileNotFoundError, match="nothere.pdb"):
        MolecularSystem.from_pdb(tmp_path / "nothere.pdb")
    with pytest.raises(ValueError, match="unknown force-field file 'amber_nonexistent.xml'"):
        MolecularSystem.from_pdb(ALDP_DIR / "C5_min.pdb", forcefield=("amber_nonexistent.xml",))
    with pytest.raises(ValueError, match=r"unknown system 'ala2'.*alanine_dipeptide"):
        get_system("ala2")
    with pytest.raises(ValueError, match="particles but the topology has"):
        sys2 = openmm.System()
        sys2.addParticle(1.0)
        MolecularSystem.from_openmm(aldp.topology, sys2, aldp.positions)
    with pytest.raises(KeyError, match="alpha_R"):
        aldp.positions_of("alpha_R")


def test_registry_and_from_pdb():
    assert "alanine_dipeptide" in known_systems()
    m = get_system("alanine_dipeptide")
    assert m.n_atoms == 22 and m.temperature == 300.0 and set(m.states) == {"C5", "C7eq", "C7ax"}
    raw = MolecularSystem.from_pdb(ALDP_DIR / "alanine_dipeptide_C5.pdb")
    assert raw.potential_energy(raw.positions) > m.potential_energy(m.positions_of("C5")) + 1.0
    hb = MolecularSystem.from_pdb(ALDP_DIR / "C5_min.pdb", constraints="HBonds")
    assert hb.n_constraints == 12 and hb.default_timestep() == 0.002
