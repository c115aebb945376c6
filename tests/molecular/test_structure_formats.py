"""AMBER, GROMACS and CHARMM input (tps_diffusion.molecular.structure) against OpenMM's own PDB route.

The reference is alanine dipeptide (C5_min.pdb) parametrised by OpenMM with amber99sbildn.xml. ParmEd
converts that System into prmtop/inpcrd, a self-contained GROMACS top + gro and CHARMM psf/crd/par
files; reading them back through ``read_structure`` + ``parametrise`` must give the same molecule
and the same energy. Energies are compared at the reference positions (the gro file rounds
coordinates to 1e-3 nm, which alone moves the energy by 0.7 kJ/mol), on the Reference platform
(double precision). The files carry parameters to >= 6 significant digits; the AMBER and GROMACS
routes agree to ~1e-8 relative, so 1e-5 is a tight bound that still leaves room for the rounding.

CHARMM files cannot carry this AMBER force field exactly (see ``test_charmm_energy_differs_as_predicted``);
for them the difference is predicted term by term instead.
"""

from pathlib import Path

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import parmed
import parmed.tools
import pytest

from tps_diffusion.molecular.solvent import Solvent
from tps_diffusion.molecular.structure import ForceFieldSettings, parametrise, read_structure
from tps_diffusion.molecular.system import MolecularSystem

PDB = Path(__file__).resolve().parents[2] / "systems" / "alanine_dipeptide" / "C5_min.pdb"
REL = 1e-5  # relative energy tolerance of the exact conversions (observed ~1e-8)
VACUUM, FF = Solvent("vacuum"), ForceFieldSettings()


def energy(system: openmm.System, xyz: np.ndarray, kinds: tuple = ()) -> float:
    """Potential energy (kJ/mol) on the Reference platform, of the forces of types ``kinds`` (default all)."""
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    for f in system.getForces():
        f.setForceGroup(1 if not kinds or isinstance(f, kinds) else 2)
    ctx = openmm.Context(system, openmm.VerletIntegrator(1e-3), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(xyz)
    return ctx.getState(getEnergy=True, groups={1}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def terms(system: openmm.System, xyz: np.ndarray) -> dict[str, float]:
    """Energy by force class (the classes both force fields share)."""
    classes = (openmm.HarmonicBondForce, openmm.HarmonicAngleForce, openmm.PeriodicTorsionForce, openmm.NonbondedForce)
    return {c.__name__: energy(system, xyz, (c,)) for c in classes}


def force_system(force: openmm.Force, n: int) -> openmm.System:
    system = openmm.System()
    for _ in range(n):
        system.addParticle(1.0)
    system.addForce(openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(force)))  # a copy
    return system


@pytest.fixture(scope="module")
def ref():
    """The OpenMM reference: PDB topology, positions (nm), System and energy."""
    pdb = app.PDBFile(str(PDB))
    system = app.ForceField("amber99sbildn.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff,
                                                              constraints=None, rigidWater=False)
    xyz = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return {"topology": pdb.topology, "xyz": np.asarray(xyz), "system": system, "energy": energy(system, xyz),
            "names": [a.name for a in pdb.topology.atoms()],
            "residues": [r.name for r in pdb.topology.residues()]}


@pytest.fixture(scope="module")
def files(ref, tmp_path_factory):
    """ParmEd's AMBER, GROMACS and CHARMM files of the reference System, in one directory."""
    d = tmp_path_factory.mktemp("formats")
    struct = parmed.openmm.load_topology(ref["topology"], ref["system"], xyz=ref["xyz"] * unit.nanometer)
    # GB radii: OpenMM Systems hold none (ParmEd writes RADII = 0); mbondi3 is the set AMBER's GBn2 expects
    parmed.tools.changeRadii(struct, "mbondi3").execute()
    struct.save(str(d / "x.prmtop"))
    struct.save(str(d / "x.inpcrd"))  # no box line: the vacuum/implicit-solvent case
    rst = parmed.amber.Rst7(natom=len(struct.atoms))
    rst.coordinates, rst.box = struct.coordinates, [30.0, 30.0, 30.0, 90.0, 90.0, 90.0]
    rst.write(str(d / "box.inpcrd"))  # the same coordinates with a (3 nm) box line
    # GROMACS: ParmEd's defaults (parameters="inline", no #include) make a standalone top that OpenMM reads
    # without a GROMACS installation; [ pairs ] carry the AMBER-scaled 1-4 LJ, fudgeQQ = 1/1.2
    struct.save(str(d / "x.top"), format="gromacs")
    struct.save(str(d / "x.gro"))
    struct.save(str(d / "x.psf"))
    struct.save(str(d / "x.crd"), format="charmmcrd")
    parmed.charmm.CharmmParameterSet.from_structure(struct).write(par=str(d / "x.par"))
    return d


def amber_files(d: Path, box: bool) -> dict:
    return {"prmtop": str(d / "x.prmtop"), "inpcrd": str(d / ("box.inpcrd" if box else "x.inpcrd"))}


def check_molecule(structure, ref, atol_nm: float):
    names = [a.name for a in structure.topology.atoms()]
    assert len(names) == len(ref["names"]) == 22
    assert names == ref["names"]
    assert [r.name for r in structure.topology.residues()] == ref["residues"]
    assert [a.element.symbol for a in structure.topology.atoms()] == [a.element.symbol for a in
                                                                      ref["topology"].atoms()]
    np.testing.assert_allclose(structure.positions, ref["xyz"], atol=atol_nm, rtol=0)


def check_energy(system, ref):
    assert system.getNumParticles() == 22
    assert energy(system, ref["xyz"]) == pytest.approx(ref["energy"], rel=REL)
    got, want = terms(system, ref["xyz"]), terms(ref["system"], ref["xyz"])
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=REL, abs=1e-6), name


# ------------------------------------------------------------------------------------------------- AMBER


@pytest.mark.parametrize("box", [False, True], ids=["inpcrd-without-box", "inpcrd-with-box"])
def test_amber_matches_reference(files, ref, box):
    structure = read_structure(amber_files(files, box))
    assert structure.kind == "amber"
    check_molecule(structure, ref, atol_nm=1e-6)  # inpcrd: 1e-7 Angstrom
    if box:
        np.testing.assert_allclose(structure.box, 3.0 * np.eye(3))
    else:
        assert structure.box is None
    top, system, xyz = parametrise(structure, FF, VACUUM)
    assert not any(isinstance(f, (openmm.GBSAOBCForce, openmm.CustomGBForce)) for f in system.getForces())
    np.testing.assert_array_equal(xyz, structure.positions)
    check_energy(system, ref)


@pytest.mark.parametrize("box", [False, True], ids=["inpcrd-without-box", "inpcrd-with-box"])
def test_amber_obc2_matches_pdb_route(files, ref, box):
    structure = read_structure(amber_files(files, box))
    top, system, xyz = parametrise(structure, FF, Solvent("implicit", implicit="obc2"))
    gb = [f for f in system.getForces() if isinstance(f, openmm.GBSAOBCForce)]
    assert len(gb) == 1 and gb[0].getNumParticles() == 22
    pdb_route = MolecularSystem.from_pdb(PDB, forcefield=("amber99sbildn.xml",), implicit_solvent="obc2",
                                         platform="Reference")
    want = pdb_route.potential_energy(ref["xyz"])
    # the same charges and the same element/bond-based mbondi2 radii: equal to rounding (observed ~1e-6 kJ/mol)
    assert energy(system, ref["xyz"]) == pytest.approx(want, abs=1e-2)
    assert abs(want - ref["energy"]) > 1.0  # the solvation term is really there


@pytest.mark.parametrize("box", [False, True], ids=["inpcrd-without-box", "inpcrd-with-box"])
def test_amber_gbn2_is_amber_customgb(files, ref, box):
    structure = read_structure(amber_files(files, box))
    with pytest.warns(RuntimeWarning, match="CustomGBForce"):
        top, system, xyz = parametrise(structure, FF, Solvent("implicit", implicit="gbn2"))
    assert any(isinstance(f, openmm.CustomGBForce) for f in system.getForces())
    assert not any(isinstance(f, openmm.GBSAOBCForce) for f in system.getForces())
    # AMBER's GBn2 (implicitSolvent=app.GBn2, prmtop mbondi3 radii) == OpenMM's implicit/gbn2.xml on the PDB
    with pytest.warns(RuntimeWarning, match="CustomGBForce"):
        pdb_route = MolecularSystem.from_pdb(PDB, forcefield=("amber99sbildn.xml",), implicit_solvent="gbn2",
                                             platform="Reference")
    assert energy(system, ref["xyz"]) == pytest.approx(pdb_route.potential_energy(ref["xyz"]), abs=1e-2)


def test_from_files_with_base_dir(files, ref):
    system = MolecularSystem.from_files({"prmtop": "x.prmtop", "inpcrd": "box.inpcrd"}, base_dir=files,
                                        platform="Reference")
    assert system.n_atoms == 22
    assert system.potential_energy(ref["xyz"]) == pytest.approx(ref["energy"], rel=REL)


# ----------------------------------------------------------------------------------------------- GROMACS


def test_gromacs_matches_reference(files, ref):
    structure = read_structure({"top": "x.top", "gro": "x.gro"}, base_dir=files)
    assert structure.kind == "gromacs"
    check_molecule(structure, ref, atol_nm=1e-3)  # gro: 3 decimals in nm (error <= 5e-4 nm)
    top, system, xyz = parametrise(structure, FF, VACUUM)
    check_energy(system, ref)


def test_gromacs_obc2_matches_amber_obc2(files, ref):
    gmx = parametrise(read_structure({"top": "x.top", "gro": "x.gro"}, base_dir=files), FF,
                      Solvent("implicit", implicit="obc2"))[1]
    amber = parametrise(read_structure(amber_files(files, box=True)), FF, Solvent("implicit", implicit="obc2"))[1]
    assert any(isinstance(f, openmm.GBSAOBCForce) for f in gmx.getForces())
    assert energy(gmx, ref["xyz"]) == pytest.approx(energy(amber, ref["xyz"]), rel=REL)


# ------------------------------------------------------------------------------------------------ CHARMM


@pytest.mark.parametrize("coords", ["x.crd", str(PDB)], ids=["crd", "pdb"])
def test_charmm_reads_the_molecule(files, ref, coords):
    key = "pdb" if coords.endswith(".pdb") else "crd"
    structure = read_structure({"psf": "x.psf", key: coords, "params": ["x.par"]}, base_dir=files)
    assert structure.kind == "charmm"
    check_molecule(structure, ref, atol_nm=1e-6)
    top, system, xyz = parametrise(structure, FF, VACUUM)
    assert system.getNumParticles() == 22


def test_charmm_energy_differs_as_predicted(files, ref):
    """ParmEd's CHARMM files of an AMBER force field lose two things, so the energy is not the reference's:

    1. 1-4 scaling: the par file says ``e14fac 1.0`` and gives 1-4 LJ = full LJ, where AMBER scales 1-4
       electrostatics by 1/1.2 and 1-4 LJ by 1/2 (here +51.8 kJ/mol);
    2. impropers: AMBER's periodic k(1 + cos(2 phi - 180)) is written to IMPROPERS as ``k 2 180`` and
       OpenMM's CharmmParameterSet reads IMPROPERS as harmonic k (phi - 180)^2 (the multiplicity column is
       ignored), a CustomTorsionForce (here 0.040 instead of 0.081 kJ/mol).

    Everything else (bonds, angles, proper torsions, charges, LJ) must be the reference's; the energy
    predicted from the reference System with exactly these two changes must match.
    """
    structure = read_structure({"psf": "x.psf", "crd": "x.crd", "params": ["x.par"]}, base_dir=files)
    system = parametrise(structure, FF, VACUUM)[1]
    xyz, n = ref["xyz"], 22
    got = {c.__name__: energy(system, xyz, (c,)) for c in (openmm.HarmonicBondForce, openmm.HarmonicAngleForce,
                                                           openmm.PeriodicTorsionForce, openmm.CustomTorsionForce,
                                                           openmm.NonbondedForce)}
    want = terms(ref["system"], xyz)
    # par file: 4 decimals of kcal/mol and 6 of charges: 1e-5 relative is still far below the effects tested
    assert got["HarmonicBondForce"] == pytest.approx(want["HarmonicBondForce"], rel=REL)
    assert got["HarmonicAngleForce"] == pytest.approx(want["HarmonicAngleForce"], rel=REL)
    # split the reference torsions into proper (a chain of three bonds) and improper ones
    bonds = {frozenset((a.index, b.index)) for a, b in ref["topology"].bonds()}
    torsions = next(f for f in ref["system"].getForces() if isinstance(f, openmm.PeriodicTorsionForce))
    proper, harmonic = openmm.PeriodicTorsionForce(), openmm.CustomTorsionForce("k*min(d, 2*pi-d)^2; d=abs(theta-t0); "
                                                                                "pi=3.141592653589793")
    harmonic.addPerTorsionParameter("k")
    harmonic.addPerTorsionParameter("t0")
    periodic_impropers = openmm.PeriodicTorsionForce()
    for i in range(torsions.getNumTorsions()):
        a, b, c, d, per, phase, k = torsions.getTorsionParameters(i)
        if all(frozenset(p) in bonds for p in ((a, b), (b, c), (c, d))):
            proper.addTorsion(a, b, c, d, per, phase, k)
        else:
            assert per == 2 and phase.value_in_unit(unit.radian) == pytest.approx(np.pi)
            periodic_impropers.addTorsion(a, b, c, d, per, phase, k)
            harmonic.addTorsion(a, b, c, d, [k.value_in_unit(unit.kilojoule_per_mole), np.pi])
    assert proper.getNumTorsions() == 38 and harmonic.getNumTorsions() == 4
    assert got["PeriodicTorsionForce"] == pytest.approx(energy(force_system(proper, n), xyz), rel=REL)
    e_harmonic = energy(force_system(harmonic, n), xyz)
    # OpenMM's CHARMM improper expression has pi = 3.141593 (6 decimals): 3e-5 relative here
    assert got["CustomTorsionForce"] == pytest.approx(e_harmonic, rel=1e-3)
    assert e_harmonic != pytest.approx(energy(force_system(periodic_impropers, n), xyz), rel=0.1)
    # 1-4 exceptions unscaled: chargeProd * 1.2, epsilon * 2
    nb = next(f for f in ref["system"].getForces() if isinstance(f, openmm.NonbondedForce))
    nb = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(nb))
    for i in range(nb.getNumExceptions()):
        a, b, q, sigma, eps = nb.getExceptionParameters(i)
        if q.value_in_unit(unit.elementary_charge**2) != 0 or eps.value_in_unit(unit.kilojoule_per_mole) != 0:
            nb.setExceptionParameters(i, a, b, q * 1.2, sigma, eps * 2.0)
    e_nb = energy(force_system(nb, n), xyz)
    assert got["NonbondedForce"] == pytest.approx(e_nb, rel=REL)
    assert abs(e_nb - want["NonbondedForce"]) > 10.0
    predicted = (ref["energy"] - want["PeriodicTorsionForce"] - want["NonbondedForce"]
                 + energy(force_system(proper, n), xyz) + e_harmonic + e_nb)
    assert energy(system, xyz) == pytest.approx(predicted, rel=REL, abs=1e-5)


# ------------------------------------------------------------------------------------------- error paths


def raises_one_line(call, match: str):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_prmtop_without_inpcrd(files):
    raises_one_line(lambda: read_structure({"prmtop": "x.prmtop"}, base_dir=files), r"also needs inpcrd")


def test_truncated_prmtop(files, tmp_path):
    text = (files / "x.prmtop").read_text()
    (tmp_path / "half.prmtop").write_text(text[: len(text) // 2])
    raises_one_line(lambda: read_structure({"prmtop": tmp_path / "half.prmtop", "inpcrd": files / "box.inpcrd"}),
                    r"cannot read .*half\.prmtop .*truncated, malformed or of another format")


def test_empty_gro(files, tmp_path):
    (tmp_path / "empty.gro").touch()
    raises_one_line(lambda: read_structure({"top": files / "x.top", "gro": tmp_path / "empty.gro"}),
                    r"gro file .*empty\.gro is empty")


def test_psf_without_params(files):
    raises_one_line(lambda: read_structure({"psf": "x.psf", "crd": "x.crd"}, base_dir=files), r"also needs params")
    raises_one_line(lambda: read_structure({"psf": "x.psf", "crd": "x.crd", "params": []}, base_dir=files),
                    r"needs params = \[")


def test_keys_of_two_kinds(files):
    # a pdb next to a prmtop: the AMBER kind is taken, then the pdb key is refused
    raises_one_line(lambda: read_structure({"pdb": str(PDB), **amber_files(files, box=True)}),
                    r"unexpected structure key\(s\) \['pdb'\] for the amber structure")
    raises_one_line(lambda: read_structure({"pdb": str(PDB), "prmtop": "x.prmtop"}, base_dir=files),
                    r"also needs inpcrd")
    # two force-field formats at once
    raises_one_line(lambda: read_structure({**amber_files(files, box=True), "top": "x.top", "gro": "x.gro"},
                                           base_dir=files), r"give exactly one structure")


def test_forcefield_files_with_prmtop(files):
    structure = read_structure(amber_files(files, box=True))
    raises_one_line(lambda: parametrise(structure, ForceFieldSettings(("amber99sbildn.xml",)), VACUUM),
                    r"carries its own force field; remove forcefield files \['amber99sbildn\.xml'\]")


def test_explicit_solvent_for_unsolvated_prmtop(files):
    structure = read_structure(amber_files(files, box=True))
    raises_one_line(lambda: parametrise(structure, FF, Solvent("explicit")),
                    r"explicit water needs a solvated amber structure \(solvate it with your setup tool: tleap")
