"""Structure files in, OpenMM Topology + System out: PDB/PDBx with OpenMM force-field XML files,
AMBER prmtop + inpcrd, CHARMM psf + crd/pdb + parameter files, GROMACS top + gro.

    structure = read_structure({"pdb": "folded.pdb"})
    topology, system, positions = parametrise(structure, ForceFieldSettings(("amber14-all.xml",)), Solvent())

Units: nm (positions, box, cutoff), amu (hydrogen mass), molar (ionic strength).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from ..utils.files import first_line
from .solvent import IMPLICIT_MODELS, Solvent, add_obc2, is_solvent, solvate
from .topology import CONSTRAINTS, NONBONDED_METHODS, load_forcefield

__all__ = ["Structure", "ForceFieldSettings", "read_structure", "parametrise", "STRUCTURE_KINDS"]

#: The keys that name a structure, by kind (the first key of each is required; the rest optional).
STRUCTURE_KINDS = {
    "pdb": ("pdb",),
    "amber": ("prmtop", "inpcrd"),
    "charmm": ("psf", "crd", "params"),
    "gromacs": ("top", "gro", "include_dir"),
}


@dataclass
class Structure:
    """A topology with coordinates as read from files (before any solvent is added).

    ``positions`` ``(n_atoms, 3)`` nm; ``box`` ``(3, 3)`` nm (periodic box vectors) or None;
    ``kind``: a key of :data:`STRUCTURE_KINDS`; ``source``: the file that holds the force field
    (prmtop, psf, top) or None for PDB/PDBx, which need force-field XML files.
    """

    kind: str
    topology: app.Topology
    positions: np.ndarray
    box: np.ndarray | None
    files: dict[str, str]
    source: object = field(default=None, repr=False)


@dataclass(frozen=True)
class ForceFieldSettings:
    """How the OpenMM System is made: force-field XML files (PDB input only; ``openmmforcefields``
    adds ``amber/protein.ff14SBonlysc.xml`` and friends), nonbonded method (None: NoCutoff, or PME
    when periodic), cutoff (nm), constraints (None, "HBonds", "AllBonds", "HAngles"), rigid water,
    hydrogen mass (amu; None keeps the masses)."""

    files: tuple[str, ...] = ()
    nonbonded_method: str | None = None
    cutoff: float = 1.0
    constraints: str | None = None
    rigid_water: bool = True
    hydrogen_mass: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "files", tuple(str(f) for f in ([self.files] if isinstance(self.files, str)
                                                                  else self.files)))
        if self.nonbonded_method is not None and self.nonbonded_method not in NONBONDED_METHODS:
            raise ValueError(f"unknown nonbonded_method {self.nonbonded_method!r}; known: {list(NONBONDED_METHODS)}")
        if self.constraints not in CONSTRAINTS:
            raise ValueError(f"unknown constraints {self.constraints!r}; known: None, HBonds, AllBonds, HAngles")
        if not (np.isfinite(self.cutoff) and self.cutoff > 0):
            raise ValueError(f"cutoff must be > 0 nm; got {self.cutoff}")
        if self.hydrogen_mass is not None and not (np.isfinite(self.hydrogen_mass) and 0.5 <= self.hydrogen_mass <= 5):
            raise ValueError(f"hydrogen_mass must be in [0.5, 5] amu (4 for hydrogen mass repartitioning); got "
                             f"{self.hydrogen_mass}")

    def kwargs(self, periodic: bool) -> dict:
        """Keyword arguments of the ``createSystem`` methods of OpenMM's file readers."""
        method = self.nonbonded_method or ("PME" if periodic else "NoCutoff")
        if periodic != (method in ("PME", "CutoffPeriodic", "Ewald", "LJPME")):
            raise ValueError(f"nonbonded_method {method} does not fit a {'periodic' if periodic else 'non-periodic'} "
                             f"system; use {'PME' if periodic else 'NoCutoff or CutoffNonPeriodic'}")
        kw = {"nonbondedMethod": NONBONDED_METHODS[method], "constraints": CONSTRAINTS[self.constraints],
              "rigidWater": self.rigid_water}
        if method != "NoCutoff":
            kw["nonbondedCutoff"] = self.cutoff * unit.nanometer
        if self.hydrogen_mass is not None:
            kw["hydrogenMass"] = self.hydrogen_mass * unit.amu
        return kw


def _file(files: Mapping[str, str | os.PathLike], key: str, base: Path | None) -> Path:
    path = Path(files[key])
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise FileNotFoundError(f"{key} file not found: {path}; fix the path (relative paths are read from the "
                                "system file's directory)")
    if path.stat().st_size == 0:
        raise ValueError(f"{key} file {path} is empty; re-copy or regenerate it")
    return path


def _reading(path: Path):
    return lambda exc: ValueError(f"cannot read {path} ({type(exc).__name__}: {first_line(exc)[:200]}); the file is "
                                  "truncated, malformed or of another format: re-copy or regenerate it")


def _nm(positions) -> np.ndarray:
    return np.asarray(positions.value_in_unit(unit.nanometer), dtype=np.float64)


def _box(vectors) -> np.ndarray | None:
    if vectors is None:
        return None
    return np.array([[float(c) for c in v.value_in_unit(unit.nanometer)] for v in vectors])


def read_structure(files: Mapping[str, str | os.PathLike], base_dir: str | os.PathLike | None = None) -> Structure:
    """Read a structure given by the keys of one kind of :data:`STRUCTURE_KINDS`.

    ``{"pdb": "x.pdb"}`` (or .cif/.pdbx), ``{"prmtop": ..., "inpcrd": ...}``, ``{"psf": ..., "crd": ...
    (or "pdb": ...), "params": [files]}``, ``{"top": ..., "gro": ..., "include_dir": ...}``. Relative
    paths are taken from ``base_dir``. One-line errors for missing, empty or unreadable files.
    """
    base = None if base_dir is None else Path(base_dir)
    keys = set(files)
    kinds = [k for k, names in STRUCTURE_KINDS.items() if names[0] in keys and k != "pdb"]
    if not kinds and "pdb" in keys:
        kinds = ["pdb"]
    if len(kinds) != 1:
        raise ValueError(f"give exactly one structure: pdb, prmtop + inpcrd, psf + crd + params, or top + gro; got "
                         f"keys {sorted(keys)}")
    kind = kinds[0]
    needed = {"amber": ("inpcrd",), "gromacs": ("gro",), "charmm": ("params",)}.get(kind, ())
    if kind == "charmm" and not keys & {"crd", "pdb"}:
        needed = ("crd",)
    missing = [k for k in needed if k not in keys]
    if missing:
        raise ValueError(f"the {kind} structure also needs {' and '.join(missing)} (coordinates/parameters)")
    allowed = set(STRUCTURE_KINDS[kind]) | ({"pdb"} if kind == "charmm" else set())
    if keys - allowed:
        raise ValueError(f"unexpected structure key(s) {sorted(keys - allowed)} for the {kind} structure; allowed: "
                         f"{sorted(allowed)}")
    used = {k: str(v if base is None or Path(v).is_absolute() else base / v) for k, v in files.items()
            if k not in ("params", "include_dir")}
    if kind == "pdb":
        path = _file(files, "pdb", base)
        try:
            pdb = app.PDBxFile(str(path)) if path.suffix.lower() in (".cif", ".pdbx") else app.PDBFile(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenMM's readers raise many types for a bad file
            raise _reading(path)(exc) from None
        top, pos, source = pdb.topology, _nm(pdb.getPositions(asNumpy=True)), None
        box = _box(top.getPeriodicBoxVectors())
    elif kind == "amber":
        prmtop, inpcrd = _file(files, "prmtop", base), _file(files, "inpcrd", base)
        try:
            source = app.AmberPrmtopFile(str(prmtop))
        except Exception as exc:  # noqa: BLE001
            raise _reading(prmtop)(exc) from None
        try:
            crd = app.AmberInpcrdFile(str(inpcrd))
        except Exception as exc:  # noqa: BLE001
            raise _reading(inpcrd)(exc) from None
        top, pos, box = source.topology, _nm(crd.getPositions(asNumpy=True)), _box(crd.boxVectors)
    elif kind == "charmm":
        psf = _file(files, "psf", base)
        coords = _file(files, "crd" if "crd" in files else "pdb", base)
        params = files.get("params") or []
        params = [params] if isinstance(params, (str, os.PathLike)) else list(params)
        if not params:
            raise ValueError("a CHARMM structure needs params = [the .prm/.rtf/.str files]")
        param_paths = [_file({"params": p}, "params", base) for p in params]
        used["params"] = [str(p) for p in param_paths]
        try:
            source = app.CharmmPsfFile(str(psf))
        except Exception as exc:  # noqa: BLE001
            raise _reading(psf)(exc) from None
        try:
            crd = app.CharmmCrdFile(str(coords)) if coords.suffix.lower() != ".pdb" else app.PDBFile(str(coords))
            source.parameters = app.CharmmParameterSet(*map(str, param_paths))
        except Exception as exc:  # noqa: BLE001
            raise _reading(coords)(exc) from None
        is_pdb = isinstance(crd, app.PDBFile)
        top, pos = source.topology, _nm(crd.getPositions(asNumpy=True) if is_pdb else crd.positions)
        box = _box(crd.topology.getPeriodicBoxVectors()) if is_pdb else None
    else:
        gro = _file(files, "gro", base)
        topfile = _file(files, "top", base)
        try:
            g = app.GromacsGroFile(str(gro))
        except Exception as exc:  # noqa: BLE001
            raise _reading(gro)(exc) from None
        inc = files.get("include_dir")
        try:
            source = app.GromacsTopFile(str(topfile), periodicBoxVectors=g.getPeriodicBoxVectors(),
                                        includeDir=None if inc is None else str(inc))
        except Exception as exc:  # noqa: BLE001
            raise _reading(topfile)(exc) from None
        top, pos, box = source.topology, _nm(g.getPositions(asNumpy=True)), _box(g.getPeriodicBoxVectors())
    if top.getNumAtoms() == 0:
        raise ValueError(f"the structure {used} holds no atoms; the file is empty, truncated or not of its format")
    if len(pos) != top.getNumAtoms():
        raise ValueError(f"the coordinates have {len(pos)} atoms but the topology has {top.getNumAtoms()}; give files "
                         "of the same system")
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"the coordinates of {used} contain NaN/inf; regenerate the file")
    return Structure(kind, top, pos, box, used, source)


def parametrise(structure: Structure, forcefield: ForceFieldSettings, solvent: Solvent,
                extra_solute: list[np.ndarray] | None = None) -> tuple[app.Topology, openmm.System, np.ndarray]:
    """The OpenMM ``(topology, system, positions nm)`` of ``structure`` in ``solvent``.

    PDB input is parametrised with ``forcefield.files`` (and solvated here for an explicit
    solvent without waters, in a box that also holds the solute conformations ``extra_solute``);
    AMBER, CHARMM and GROMACS input carry their force field and must be solvated already for
    explicit water. Implicit solvent: ``"obc2"`` adds a native ``GBSAOBCForce`` (fast); GBn2, OBC1,
    HCT, GBn and any OpenMM implicit XML are CustomGBForces (several times slower on CPU).
    """
    has_water = any(is_solvent(r) for r in structure.topology.residues())
    top, pos, box = structure.topology, structure.positions, structure.box
    implicit_xml: tuple[str, ...] = ()
    if solvent.kind == "implicit" and solvent.implicit != "obc2":
        warnings.warn(f"implicit solvent {solvent.implicit} is an OpenMM CustomGBForce: several times slower than "
                      "native OBC2 on the CPU and Reference platforms; use implicit = 'obc2' where speed matters",
                      RuntimeWarning, stacklevel=2)
        if structure.kind == "pdb":
            implicit_xml = (IMPLICIT_MODELS.get(solvent.implicit, solvent.implicit),)
    if solvent.kind == "explicit" and not has_water:
        if structure.kind != "pdb":
            raise ValueError(f"explicit water needs a solvated {structure.kind} structure (solvate it with your setup "
                             "tool: tleap, CHARMM-GUI, gmx solvate) or a PDB + force-field files, which are solvated "
                             "here")
        ff = load_forcefield(forcefield.files + solvent.water_files(forcefield.files))
        top, pos, box = solvate(top, pos, ff, solvent, extra_solute or [])
    elif solvent.kind != "explicit" and has_water:
        raise ValueError(f"the structure contains water or ions but solvent = {solvent.kind!r}; strip them (a "
                         "solute-only PDB) or use solvent = 'explicit'")
    periodic = solvent.kind == "explicit"
    if periodic and box is None:
        raise ValueError("an explicit-water structure needs a periodic box (CRYST1 in the PDB, a box line in the "
                         "inpcrd/gro); give box or padding")
    kw = forcefield.kwargs(periodic)
    if structure.kind == "pdb":
        if not forcefield.files:
            raise ValueError("a PDB structure needs force-field files, e.g. files = ['amber14-all.xml']")
        files = forcefield.files + implicit_xml
        if periodic:
            files = files + solvent.water_files(forcefield.files)
        ff = load_forcefield(files)
        top.setPeriodicBoxVectors(None if box is None or not periodic else [openmm.Vec3(*v) for v in box])

        def create():
            return ff.createSystem(top, **kw)
    else:
        if forcefield.files:
            raise ValueError(f"the {structure.kind} structure carries its own force field; remove forcefield files "
                             f"{list(forcefield.files)}")
        if structure.kind == "charmm" and periodic:
            structure.source.setBox(*np.diag(box))
        if solvent.kind == "implicit" and solvent.implicit != "obc2":
            kw["implicitSolvent"] = _implicit_for_files(structure, solvent)
        args = (structure.source.parameters,) if structure.kind == "charmm" else ()

        def create():
            return structure.source.createSystem(*args, **kw)
    try:
        system = create()
    except Exception as exc:  # noqa: BLE001 - createSystem raises ValueError or a bare Exception for templates
        names = ", ".join(Path(str(f)).name for v in structure.files.values()
                          for f in ([v] if isinstance(v, str) else v))
        raise ValueError(f"the force field cannot parametrise {names} ({first_line(exc)[:300]}); check that the file "
                         "is complete (not truncated) and that the force field covers every residue") from None
    if solvent.kind == "implicit" and solvent.implicit == "obc2":
        add_obc2(system, top)
    return top, system, pos


def _implicit_for_files(structure: Structure, solvent: Solvent):
    """OpenMM's ``implicitSolvent`` argument for AMBER/CHARMM input (checked: GB radii present)."""
    if structure.kind == "gromacs":
        raise ValueError("GROMACS topologies take implicit = 'obc2' only (native GBSAOBCForce)")
    names = {"gbn2": "GBn2", "gbn": "GBn", "obc1": "OBC1", "hct": "HCT"}
    model = getattr(app, names.get(solvent.implicit, "?"), None)
    if model is None:
        raise ValueError(f"implicit = {solvent.implicit!r} is an XML file: use it with a PDB structure; for "
                         "AMBER/CHARMM input use obc2, gbn2, obc1, hct or gbn")
    raw = getattr(getattr(structure.source, "_prmtop", None), "_raw_data", {})  # the prmtop's flags
    radii = [float(r) for r in raw.get("RADII", [])] if structure.kind == "amber" else [1.0]
    if not radii or min(radii) <= 0:
        raise ValueError(f"{structure.files['prmtop']} has no GB radii (RADII <= 0) for implicit = "
                         f"{solvent.implicit!r}; set them in tleap (set default PBradii mbondi3 for gbn2, mbondi2 for "
                         "obc1/hct) or with ParmEd changeRadii, or use implicit = 'obc2'")
    return model
