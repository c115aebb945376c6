"""Regenerate the minimised alanine-dipeptide endpoints C5_min.pdb, C7eq_min.pdb, C7ax_min.pdb.

    python systems/alanine_dipeptide/make_minimized.py [--overwrite]

amber99sbildn, vacuum, NoCutoff, flexible bonds, OpenMM Reference platform.
* C5   : alanine_dipeptide_C5.pdb minimised.
* C7ax : alanine_dipeptide_C7ax.pdb minimised.
* C7eq : no input structure; the C5 minimum is dragged in (phi, psi) to (-78, 54) deg by
         restrained minimisations (flat-bottom-free cosine torsion restraints, targets moved in
         10 steps), then minimised without restraints.
Every minimum is re-read from the written PDB (3-decimal Angstrom) and its energy and
(phi, psi) printed; the script fails if a minimum left its basin (0.75 rad state ball) or its
energy differs from the reference minima of docs/method.md, section 8 (C7eq -90.94, C5 -88.45,
C7ax -85.00 kJ/mol) by more than 0.5 kJ/mol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from tps_diffusion.utils.files import atomic_path

HERE = Path(__file__).resolve().parent
EXPECTED = {"C5": -88.45, "C7eq": -90.94, "C7ax": -85.00}  # kJ/mol, docs/method.md, section 8
CENTRES_DEG = {"C5": (-150.0, 160.0), "C7eq": (-78.0, 54.0), "C7ax": (60.0, -41.0)}
PHI_SEL = ("resname ACE and name C", "resname ALA and name N", "resname ALA and name CA", "resname ALA and name C")
PSI_SEL = ("resname ALA and name N", "resname ALA and name CA", "resname ALA and name C", "resname NME and name N")


def torsion_indices(topology: app.Topology):
    top = mdtraj.Topology.from_openmm(topology)
    return [int(top.select(s)[0]) for s in PHI_SEL], [int(top.select(s)[0]) for s in PSI_SEL]


def phi_psi_deg(topology: app.Topology, pos_nm: np.ndarray) -> tuple[float, float]:
    traj = mdtraj.Trajectory(np.asarray(pos_nm, dtype=np.float32)[None], mdtraj.Topology.from_openmm(topology))
    phi, psi = torsion_indices(topology)
    ang = np.rad2deg(mdtraj.compute_dihedrals(traj, [phi, psi])[0])
    return float(ang[0]), float(ang[1])


def minimise(context: openmm.Context, pos_nm) -> np.ndarray:
    context.setPositions(pos_nm)
    openmm.LocalEnergyMinimizer.minimize(context, 1e-4, 0)
    return context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def energy(context: openmm.Context, pos_nm) -> float:
    context.setPositions(pos_nm)
    return context.getState(getEnergy=True, groups={0}).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overwrite", action="store_true", help="replace existing *_min.pdb files")
    args = ap.parse_args(argv)

    raw = {name: app.PDBFile(str(HERE / f"alanine_dipeptide_{name}.pdb")) for name in ("C5", "C7ax")}
    topology = raw["C5"].topology
    ff = app.ForceField("amber99sbildn.xml")
    system = ff.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None)
    for f in system.getForces():
        f.setForceGroup(0)
    # restraint on (phi, psi) in force group 1: k * (1 - cos(theta - theta0))
    restraint = openmm.CustomTorsionForce("k_res*(1-cos(theta-theta0))")
    restraint.addGlobalParameter("k_res", 0.0)
    restraint.addPerTorsionParameter("theta0")
    phi_idx, psi_idx = torsion_indices(topology)
    restraint.addTorsion(*phi_idx, [0.0])
    restraint.addTorsion(*psi_idx, [0.0])
    restraint.setForceGroup(1)
    system.addForce(restraint)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

    minima = {name: minimise(ctx, pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
              for name, pdb in raw.items()}

    # C7eq from the C5 minimum: move the restraint centre from C5 to C7eq in 10 stages
    pos = minima["C5"].copy()
    start = np.deg2rad(phi_psi_deg(topology, pos))
    goal = np.deg2rad(CENTRES_DEG["C7eq"])
    ctx.setParameter("k_res", 500.0)
    for t in np.linspace(0.0, 1.0, 11)[1:]:
        target = start + t * (((goal - start) + np.pi) % (2 * np.pi) - np.pi)
        restraint.setTorsionParameters(0, *phi_idx, [float(target[0])])
        restraint.setTorsionParameters(1, *psi_idx, [float(target[1])])
        restraint.updateParametersInContext(ctx)
        pos = minimise(ctx, pos)
    ctx.setParameter("k_res", 0.0)
    minima["C7eq"] = minimise(ctx, pos)

    ok = True
    for name in ("C5", "C7eq", "C7ax"):
        out = HERE / f"{name}_min.pdb"
        with atomic_path(out, overwrite=args.overwrite) as tmp:
            with open(tmp, "w") as fh:
                app.PDBFile.writeFile(topology, minima[name] * unit.nanometer, fh, keepIds=True)
        # re-read what was written and check it
        back = app.PDBFile(str(out)).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        e = energy(ctx, back)
        phi, psi = phi_psi_deg(topology, back)
        delta = (np.deg2rad(np.subtract((phi, psi), CENTRES_DEG[name])) + np.pi) % (2 * np.pi) - np.pi
        d = np.rad2deg(np.hypot(*delta))
        good = abs(e - EXPECTED[name]) < 0.5 and d < np.rad2deg(0.75)
        ok &= good
        print(f"{name:5s} E = {e:8.3f} kJ/mol (reference {EXPECTED[name]:.2f})  phi/psi = {phi:7.1f} {psi:7.1f} deg  "
              f"distance to centre {d:5.1f} deg  {'ok' if good else 'FAILED'}  -> {out.name}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
