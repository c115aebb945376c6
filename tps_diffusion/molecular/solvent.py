"""Solvent: the :class:`Solvent` settings (vacuum, implicit, explicit water), a native
``openmm.GBSAOBCForce`` with the Amber OBC2 (igb=5) parameters, and explicit solvation.

Units: nm (padding, box), molar (ionic strength).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

__all__ = ["Solvent", "IMPLICIT_MODELS", "WATER_MODELS", "is_solvent", "solute_atoms", "solvate", "obc2_parameters",
           "add_obc2"]

#: Implicit-solvent models by name: ``obc2`` is the native GBSAOBCForce (fast); the others are
#: OpenMM's CustomGBForce XML files (any other ``implicit/*.xml`` or file path is accepted too).
IMPLICIT_MODELS = {"obc2": None, "gbn2": "implicit/gbn2.xml", "gbn": "implicit/gbn.xml", "obc1": "implicit/obc1.xml",
                   "hct": "implicit/hct.xml"}
#: Water models: (force-field file added when the force field has none, OpenMM Modeller model).
WATER_MODELS = {"tip3p": ("amber14/tip3p.xml", "tip3p"), "tip3pfb": ("amber14/tip3pfb.xml", "tip3p"),
                "spce": ("amber14/spce.xml", "spce"), "tip4pew": ("amber14/tip4pew.xml", "tip4pew"),
                "opc": ("amber14/opc.xml", "tip4pew")}
_WATER_FILE_HINTS = ("tip3p", "tip4p", "tip5p", "spce", "opc", "water")
_WATER_NAMES = {"HOH", "WAT", "TIP3", "TIP3P", "SOL", "T3P", "T4P", "TIP4", "SPC", "OPC"}
_ION_ELEMENTS = {"Li", "Na", "K", "Rb", "Cs", "Mg", "Ca", "Zn", "F", "Cl", "Br", "I"}


@dataclass(frozen=True)
class Solvent:
    """Where the molecule lives.

    ``kind``: ``"vacuum"``, ``"implicit"`` (model ``implicit``: a key of :data:`IMPLICIT_MODELS`
    or an OpenMM implicit XML file) or ``"explicit"`` (``water`` model, a cubic box of the
    solute's largest extent + 2 ``padding`` nm or an explicit ``box`` (3 edge lengths, nm),
    ``ionic_strength`` molar of NaCl, ``neutralize``).
    """

    kind: str = "vacuum"
    implicit: str = "obc2"
    water: str = "tip3p"
    padding: float = 1.0
    box: tuple[float, float, float] | None = None
    ionic_strength: float = 0.0
    neutralize: bool = True

    def __post_init__(self):
        if self.kind not in ("vacuum", "implicit", "explicit"):
            raise ValueError(f"unknown solvent {self.kind!r}; use vacuum, implicit or explicit")
        name = str(self.implicit)
        if name.lower() in IMPLICIT_MODELS:
            name = name.lower()
        elif name.endswith("obc2.xml"):
            name = "obc2"  # the native force computes the same energy, ~40x faster
        elif not name.endswith(".xml"):
            raise ValueError(f"unknown implicit solvent {self.implicit!r}; use one of {', '.join(IMPLICIT_MODELS)} or "
                             "an OpenMM implicit XML file (implicit/gbn2.xml)")
        object.__setattr__(self, "implicit", name)
        if self.water not in WATER_MODELS:
            raise ValueError(f"unknown water model {self.water!r}; use one of {', '.join(WATER_MODELS)}")
        if not (np.isfinite(self.padding) and self.padding > 0):
            raise ValueError(f"padding must be > 0 nm; got {self.padding}")
        if self.box is not None:
            box = tuple(float(b) for b in np.broadcast_to(np.asarray(self.box, dtype=float), (3,)))
            if not all(np.isfinite(b) and b > 0 for b in box):
                raise ValueError(f"box must be 3 edge lengths > 0 nm; got {self.box}")
            object.__setattr__(self, "box", box)
        if not (np.isfinite(self.ionic_strength) and 0 <= self.ionic_strength <= 5):
            raise ValueError(f"ionic_strength must be in [0, 5] molar; got {self.ionic_strength}")

    def water_files(self, forcefield_files: tuple[str, ...]) -> tuple[str, ...]:
        """The water force-field file to add, unless ``forcefield_files`` already hold a water model."""
        if any(h in str(f).lower() for f in forcefield_files for h in _WATER_FILE_HINTS):
            return ()
        return (WATER_MODELS[self.water][0],)

    def describe(self) -> str:
        if self.kind == "implicit":
            return f"implicit ({self.implicit})"
        if self.kind == "explicit":
            return f"explicit ({self.water})"
        return "vacuum"


def is_solvent(residue) -> bool:
    """True for water and monatomic ions (the atoms never in a model or an export by default);
    ``residue``: an OpenMM or mdtraj residue."""
    if residue.name.upper() in _WATER_NAMES:
        return True
    atoms = list(residue.atoms() if callable(residue.atoms) else residue.atoms)
    return len(atoms) == 1 and atoms[0].element is not None and atoms[0].element.symbol in _ION_ELEMENTS


def solute_atoms(topology) -> np.ndarray:
    """Indices ``(n,)`` of the atoms not in water or monatomic ions (an OpenMM or mdtraj Topology)."""
    residues = topology.residues() if callable(topology.residues) else topology.residues
    return np.asarray([a.index for r in residues if not is_solvent(r)
                       for a in (r.atoms() if callable(r.atoms) else r.atoms)], dtype=int)


def solvate(topology: app.Topology, positions: np.ndarray, forcefield: app.ForceField, solvent: Solvent,
            other_conformations: list[np.ndarray] = ()) -> tuple[app.Topology, np.ndarray, np.ndarray]:
    """Solvate the solute ``positions`` ``(n, 3)`` nm: ``(topology, positions nm, box (3, 3) nm)``.

    Without an explicit ``solvent.box`` the box is cubic, of edge 2 ``padding`` plus the largest
    diameter of the solute over ``positions`` and ``other_conformations`` (so that every state's
    conformation fits into the one solvated system, in any orientation).
    """
    if solvent.box is not None:
        edges = solvent.box
    else:
        diameter = max(2.0 * float(np.linalg.norm(x - x.mean(0), axis=1).max())
                       for x in [positions, *other_conformations])
        edges = (diameter + 2.0 * solvent.padding,) * 3
    modeller = app.Modeller(topology, positions * unit.nanometer)
    modeller.addSolvent(forcefield, model=WATER_MODELS[solvent.water][1], boxSize=openmm.Vec3(*edges) * unit.nanometer,
                        ionicStrength=solvent.ionic_strength * unit.molar, neutralize=solvent.neutralize)
    pos = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer), dtype=np.float64)
    box = np.array([[float(c) for c in v.value_in_unit(unit.nanometer)]
                    for v in modeller.topology.getPeriodicBoxVectors()])
    return modeller.topology, pos, box

# mbondi2 intrinsic radii (nm) and Hawkins-Cramer-Truhlar screening factors by element, the
# Amber parameter set for OBC2 (igb=5). GBSAOBCForce implements the OBC2 Born radii
# (alpha, beta, gamma) = (1, 0.8, 4.85) with a 0.009 nm dielectric offset and the ACE
# non-polar term (2.25936 kJ/mol/nm^2, probe 0.14 nm).
_MBONDI2_RADIUS = {"N": 0.155, "O": 0.15, "F": 0.15, "Si": 0.21, "P": 0.185, "S": 0.18, "Cl": 0.17, "C": 0.17}
_OBC_SCREEN = {"H": 0.85, "C": 0.72, "N": 0.79, "O": 0.85, "F": 0.88, "P": 0.86, "S": 0.96}
_DEFAULT_RADIUS, _DEFAULT_SCREEN = 0.15, 0.8


def obc2_parameters(topology: app.Topology, system: openmm.System | None = None) -> list[tuple[float, float]]:
    """Per-atom ``(radius_nm, scale)``: mbondi2 radii and OBC screening factors.

    Hydrogen radii depend on the bonded heavy atom (0.13 nm on N, else 0.12 nm); bonds come
    from the topology, or from the HarmonicBondForce of ``system`` where the topology has none.
    """
    atoms = list(topology.atoms())
    partner: dict[int, list[int]] = {a.index: [] for a in atoms}
    for a, b in topology.bonds():
        partner[a.index].append(b.index)
        partner[b.index].append(a.index)
    if system is not None and not any(partner.values()):
        for f in system.getForces():
            if isinstance(f, openmm.HarmonicBondForce):
                for i in range(f.getNumBonds()):
                    a, b, *_ = f.getBondParameters(i)
                    partner[a].append(b)
                    partner[b].append(a)
    out = []
    for atom in atoms:
        sym = atom.element.symbol if atom.element is not None else None
        if sym in ("H", "D"):
            bonded = [atoms[j].element.symbol for j in partner[atom.index] if atoms[j].element is not None]
            radius = 0.13 if bonded and bonded[0] == "N" else 0.12
            scale = _OBC_SCREEN["H"]
        else:
            radius = _MBONDI2_RADIUS.get(sym, _DEFAULT_RADIUS)
            scale = _OBC_SCREEN.get(sym, _DEFAULT_SCREEN)
        out.append((radius, scale))
    return out


def add_obc2(system: openmm.System, topology: app.Topology, solvent_dielectric: float = 78.5,
             solute_dielectric: float = 1.0) -> openmm.GBSAOBCForce:
    """Add a native ``openmm.GBSAOBCForce`` (OBC2, Amber igb=5 parameters) to ``system``.

    Charges are taken from the system's single NonbondedForce; the cutoff treatment follows it.
    Equivalent to ``implicit/obc2.xml`` (a CustomGBForce) but ~40x faster.
    """
    nbs = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    if len(nbs) != 1:
        raise ValueError(f"OBC2 needs exactly one NonbondedForce in the system, found {len(nbs)}")
    nb = nbs[0]
    nb.setReactionFieldDielectric(1.0)
    gb = openmm.GBSAOBCForce()
    gb.setSolventDielectric(solvent_dielectric)
    gb.setSoluteDielectric(solute_dielectric)
    method = nb.getNonbondedMethod()
    if method == openmm.NonbondedForce.NoCutoff:
        gb.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    elif method == openmm.NonbondedForce.CutoffNonPeriodic:
        gb.setNonbondedMethod(openmm.GBSAOBCForce.CutoffNonPeriodic)
        gb.setCutoffDistance(nb.getCutoffDistance())
    else:
        gb.setNonbondedMethod(openmm.GBSAOBCForce.CutoffPeriodic)
        gb.setCutoffDistance(nb.getCutoffDistance())
    for i, (radius, scale) in enumerate(obc2_parameters(topology, system)):
        charge = nb.getParticleParameters(i)[0]
        gb.addParticle(charge, radius, scale)
    system.addForce(gb)
    return gb
