"""Built-in systems, by name: ``get_system("alanine_dipeptide")`` (files in ``systems/``).

    system = alanine_dipeptide()            # 22 atoms, amber99sbildn, vacuum, 300 K
    system = get_system("alanine_dipeptide", solvent="obc2")
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import openmm.app as app
import openmm.unit as unit

from ..utils.systems_dir import systems_dir
from .states import Dihedral, State
from .system import MolecularSystem, minimize_with_fixed_torsions

__all__ = ["alanine_dipeptide", "alanine_dipeptide_cvs", "get_system", "register_system", "known_systems",
           "ALDP_STATE_RADIUS", "ALDP_STATE_CENTRES_DEG"]

#: Radius (rad) of the alanine dipeptide states in (phi, psi), periodic Euclidean distance.
#: 0.75 rad (43 deg) is the paper's hit criterion (docs/method.md, section 8); it keeps the three
#: vacuum basins C5, C7eq and C7ax disjoint (C5-C7eq centres are 1.98 rad apart, C7eq-C7ax 2.56 rad).
ALDP_STATE_RADIUS = 0.75
ALDP_STATE_CENTRES_DEG = {"C5": (-150.0, 160.0), "C7eq": (-78.0, 54.0), "C7ax": (60.0, -41.0)}


def alanine_dipeptide_cvs(topology=None) -> tuple[Dihedral, Dihedral]:
    """phi = C(ACE)-N-CA-C, psi = N-CA-C-N(NME)."""
    phi = Dihedral("phi", ("resname ACE and name C", "resname ALA and name N", "resname ALA and name CA",
                           "resname ALA and name C"), topology)
    psi = Dihedral("psi", ("resname ALA and name N", "resname ALA and name CA", "resname ALA and name C",
                           "resname NME and name N"), topology)
    return phi, psi


def alanine_dipeptide(solvent: str = "vacuum", temperature: float = 300.0, constraints: str | None = None,
                      platform: str | None = None) -> MolecularSystem:
    """Alanine dipeptide (ACE-ALA-NME, 22 atoms), amber99sbildn, NoCutoff, flexible bonds.

    ``solvent``: ``"vacuum"`` (default) or ``"obc2"`` (native GBSAOBCForce). States C5, C7eq,
    C7ax on (phi, psi), balls of radius :data:`ALDP_STATE_RADIUS` = 0.75 rad (periodic
    distance). ``state_positions`` hold the minimised vacuum structures of
    ``systems/alanine_dipeptide``; with OBC2 (or constraints) they are relaxed on construction
    with (phi, psi) held fixed -- they are not OBC2 minima: free OBC2 minimisation moves C7eq
    to psi ~ -13 deg (alpha_R side) and C7ax to (54, 29) deg, outside the vacuum state balls.
    Reference positions: the C5 minimum.
    """
    if solvent not in ("vacuum", "obc2"):
        raise ValueError(f"unknown solvent {solvent!r} for alanine dipeptide; use 'vacuum' or 'obc2'")
    files = {name: systems_dir() / "alanine_dipeptide" / f"{name}_min.pdb" for name in ALDP_STATE_CENTRES_DEG}
    for f in files.values():
        if not f.is_file():
            raise FileNotFoundError(f"{f} missing; run systems/alanine_dipeptide/make_minimized.py")
    phi, psi = alanine_dipeptide_cvs()
    states = [State(n, (phi, psi), np.deg2rad(c), ALDP_STATE_RADIUS) for n, c in ALDP_STATE_CENTRES_DEG.items()]
    mol = MolecularSystem.from_pdb(files["C5"], forcefield=("amber99sbildn.xml",),
                                   implicit_solvent=None if solvent == "vacuum" else "obc2",
                                   constraints=constraints, temperature=temperature, cvs=(phi, psi), states=states,
                                   platform=platform, name=f"alanine_dipeptide_{solvent}")
    pos = {n: app.PDBFile(str(f)).getPositions(asNumpy=True).value_in_unit(unit.nanometer) for n, f in files.items()}
    if solvent != "vacuum" or constraints is not None:
        # not minima of this Hamiltonian: relax everything except (phi, psi), which stay at the
        # vacuum minimum (a free OBC2 minimisation slides C7eq/C7ax out of their vacuum basins)
        pos = {n: minimize_with_fixed_torsions(mol, p, [phi, psi]) for n, p in pos.items()}
    mol.state_positions = {n: np.asarray(p, dtype=float) for n, p in pos.items()}
    mol.positions = mol.state_positions["C5"].copy()
    mol.info.update({"molecule": "alanine dipeptide (ACE-ALA-NME)", "solvent": solvent,
                     "state_radius_rad": ALDP_STATE_RADIUS, "state_centres_deg": ALDP_STATE_CENTRES_DEG})
    return mol


_REGISTRY: dict[str, Callable[..., MolecularSystem]] = {
    "alanine_dipeptide": alanine_dipeptide,
    "alanine_dipeptide_vacuum": lambda **kw: alanine_dipeptide(solvent="vacuum", **kw),
    "alanine_dipeptide_obc2": lambda **kw: alanine_dipeptide(solvent="obc2", **kw),
}


def register_system(name: str, factory: Callable[..., MolecularSystem]) -> None:
    """Make ``get_system(name)`` call ``factory(**kwargs)``."""
    _REGISTRY[name] = factory


def known_systems() -> list[str]:
    return sorted(_REGISTRY)


def get_system(name: str, **kwargs) -> MolecularSystem:
    """A registered molecular system by name (e.g. ``"alanine_dipeptide"``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown system {name!r}; known systems: {', '.join(known_systems())}")
    return _REGISTRY[name](**kwargs)
