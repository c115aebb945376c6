"""Molecular systems: topology, OpenMM force field, collective variables and metastable states.

Units at every boundary: nm, kJ/mol, kelvin, ps; angles in radians. Plain floats are read in
those units; ``openmm.unit.Quantity`` objects are converted.

Main entry points::

    system = alanine_dipeptide()            # 22 atoms, amber99sbildn, vacuum, 300 K
    system = get_system("alanine_dipeptide", solvent="obc2")
    system = MolecularSystem.from_pdb("x.pdb", forcefield=("amber99sbildn.xml",), implicit_solvent="obc2")
    e = system.potential_energy(xyz)        # (n_frames, n_atoms, 3) nm -> (n_frames,) kJ/mol
    system.states["C7eq"].contains(traj)    # bool per frame
"""

from __future__ import annotations

import functools
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

__all__ = [
    "CollectiveVariable",
    "Dihedral",
    "Distance",
    "State",
    "MolecularSystem",
    "add_obc2",
    "obc2_parameters",
    "default_platform",
    "get_platform",
    "as_positions",
    "alanine_dipeptide",
    "get_system",
    "register_system",
    "known_systems",
    "SYSTEMS_DIR",
    "ALDP_STATE_RADIUS",
]

#: folder with the shipped molecular systems (``systems/`` at the repository root);
#: override with the environment variable ``TPS_DIFFUSION_SYSTEMS``.
SYSTEMS_DIR = Path(os.environ.get("TPS_DIFFUSION_SYSTEMS", Path(__file__).resolve().parent.parent / "systems"))

#: Radius (rad) of the alanine dipeptide states in (phi, psi), periodic Euclidean distance.
#: 0.75 rad (43 deg) is the hit criterion of SPEC section 4; it keeps the three vacuum basins
#: C5, C7eq and C7ax disjoint (C5-C7eq centres are 1.98 rad apart, C7eq-C7ax 2.56 rad).
ALDP_STATE_RADIUS = 0.75


# --------------------------------------------------------------------------------------------
# small helpers


def _strip(value, unit_) -> float | np.ndarray:
    """Value in ``unit_`` as float/array; plain numbers are taken to be in ``unit_`` already."""
    if unit.is_quantity(value):
        value = value.value_in_unit(unit_)
    return value


def as_positions(positions, n_atoms: int | None = None, what: str = "positions") -> np.ndarray:
    """Positions as a float64 array ``(n_frames, n_atoms, 3)`` in nm.

    Accepts an ``mdtraj.Trajectory``, an ``openmm.unit.Quantity`` (list of Vec3 or array), or
    an array ``(n_atoms, 3)`` / ``(n_frames, n_atoms, 3)`` in nm. Raises ``ValueError`` for a
    wrong shape, an atom-count mismatch with ``n_atoms`` or non-finite values.
    """
    if isinstance(positions, mdtraj.Trajectory):
        xyz = np.asarray(positions.xyz, dtype=np.float64)
    else:
        if unit.is_quantity(positions):
            positions = positions.value_in_unit(unit.nanometer)
        xyz = np.asarray(positions, dtype=np.float64)
        if xyz.ndim == 2:
            xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (n_atoms, 3) or (n_frames, n_atoms, 3); got {xyz.shape}")
    if n_atoms is not None and xyz.shape[1] != n_atoms:
        raise ValueError(f"{what} have {xyz.shape[1]} atoms but the topology has {n_atoms}")
    if not np.all(np.isfinite(xyz)):
        bad = np.unique(np.nonzero(~np.isfinite(xyz))[0])
        raise ValueError(f"{what} contain NaN/inf values (frames {bad[:10].tolist()}{' ...' if len(bad) > 10 else ''}); drop those frames (e.g. traj[mask]) or regenerate them")
    return xyz


def _platform_available(name: str) -> bool:
    try:
        openmm.Platform.getPlatformByName(name)
        return True
    except Exception:
        return False


def default_platform(n_atoms: int) -> str:
    """Reference below 200 atoms (fastest for tiny systems), else CUDA if available, else CPU."""
    if n_atoms < 200:
        return "Reference"
    for name in ("CUDA", "OpenCL", "CPU"):
        if _platform_available(name):
            return name
    return "Reference"


def get_platform(name: str | None, n_atoms: int) -> openmm.Platform:
    """The OpenMM platform called ``name`` (``None``: :func:`default_platform`), clear error if missing."""
    name = name or default_platform(n_atoms)
    try:
        return openmm.Platform.getPlatformByName(name)
    except Exception:
        known = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"OpenMM platform {name!r} is not available; available: {known}") from None


# --------------------------------------------------------------------------------------------
# collective variables


def _atom_label(atom) -> str:
    return f"{atom.residue}-{atom.name}"


class CollectiveVariable:
    """A collective variable defined by mdtraj atom selections, each selecting exactly one atom.

    ``atoms`` are mdtraj selection strings (``"resname ALA and name CA"``) or atom indices.
    ``compute(traj)`` returns an array ``(n_frames,)`` in rad (angles) or nm (distances).
    ``periodic`` is True for angles (period ``2*pi``).
    """

    n_atoms_required = 0
    periodic = False
    units = ""

    def __init__(self, name: str, atoms: Sequence[str | int], topology=None):
        atoms = tuple(atoms)
        if len(atoms) != self.n_atoms_required:
            raise ValueError(
                f"{type(self).__name__} {name!r} needs {self.n_atoms_required} atom selections, got {len(atoms)}: {atoms}"
            )
        self.name = name
        self.atoms = atoms
        if topology is not None:
            self.atom_indices(topology)  # fail early

    def atom_indices(self, topology) -> np.ndarray:
        """Resolve the selections against ``topology`` (mdtraj/openmm Topology or Trajectory)."""
        top = as_md_topology(topology)
        cache = self.__dict__.setdefault("_cache", {})
        hit = cache.get(id(top))
        if hit is not None and hit[0]() is top and hit[1] == top.n_atoms:
            return hit[2].copy()
        out = self._resolve(top)
        try:
            cache[id(top)] = (weakref.ref(top), top.n_atoms, out)
        except TypeError:  # pragma: no cover - not weak-referenceable
            pass
        return out.copy()

    def __getstate__(self):
        d = self.__dict__.copy()
        d.pop("_cache", None)
        return d

    def _resolve(self, top: mdtraj.Topology) -> np.ndarray:
        out = []
        for sel in self.atoms:
            if isinstance(sel, (int, np.integer)):
                if not 0 <= int(sel) < top.n_atoms:
                    raise ValueError(f"CV {self.name!r}: atom index {sel} out of range (topology has {top.n_atoms} atoms)")
                out.append(int(sel))
                continue
            try:
                idx = top.select(sel)
            except Exception as exc:
                raise ValueError(f"CV {self.name!r}: invalid atom selection {sel!r}: {exc}") from None
            if len(idx) != 1:
                found = ", ".join(_atom_label(top.atom(i)) for i in idx[:6]) + (" ..." if len(idx) > 6 else "")
                raise ValueError(
                    f"CV {self.name!r}: selection {sel!r} matched {len(idx)} atoms"
                    f"{' (' + found + ')' if len(idx) else ''}; need exactly one"
                )
            out.append(int(idx[0]))
        return np.array(out, dtype=int)

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def difference(self, a, b) -> np.ndarray:
        """``a - b``, wrapped into ``[-pi, pi)`` for periodic CVs."""
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        if self.periodic:
            d = (d + np.pi) % (2 * np.pi) - np.pi
        return d

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, "name": self.name, "atoms": [a if isinstance(a, str) else int(a) for a in self.atoms]}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {list(self.atoms)})"


class Dihedral(CollectiveVariable):
    """Torsion angle (rad, in ``(-pi, pi]``) of four atoms."""

    n_atoms_required = 4
    periodic = True
    units = "rad"

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:
        idx = self.atom_indices(traj.topology)
        return mdtraj.compute_dihedrals(traj, idx[None, :], periodic=False)[:, 0].astype(np.float64)


class Distance(CollectiveVariable):
    """Distance (nm) between two atoms (minimum image when the trajectory has a unit cell)."""

    n_atoms_required = 2
    periodic = False
    units = "nm"

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:
        idx = self.atom_indices(traj.topology)
        return mdtraj.compute_distances(traj, idx[None, :], periodic=traj.unitcell_vectors is not None)[:, 0].astype(np.float64)


_CV_TYPES = {"Dihedral": Dihedral, "Distance": Distance}


def cv_from_dict(d: Mapping) -> CollectiveVariable:
    try:
        cls = _CV_TYPES[d["type"]]
    except KeyError:
        raise ValueError(f"unknown collective-variable type {d.get('type')!r}; known: {sorted(_CV_TYPES)}") from None
    return cls(d["name"], d["atoms"])


# --------------------------------------------------------------------------------------------
# metastable states


@dataclass
class State:
    """A metastable state: ball of ``radius`` around ``centre`` in the space of ``cvs``.

    Distances use the CV units (rad for dihedrals, nm for distances) and the periodic
    (minimum-image) difference for periodic CVs.
    """

    name: str
    cvs: tuple[CollectiveVariable, ...]
    centre: np.ndarray
    radius: float

    def __post_init__(self):
        self.cvs = tuple(self.cvs)
        self.centre = np.asarray(self.centre, dtype=float).reshape(-1)
        if len(self.centre) != len(self.cvs):
            raise ValueError(f"state {self.name!r}: centre has {len(self.centre)} values for {len(self.cvs)} CVs")
        self.radius = float(self.radius)

    def cv_values(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """CV values ``(n_frames, n_cvs)``."""
        return np.stack([cv.compute(traj) for cv in self.cvs], axis=1)

    def distance_cv(self, values) -> np.ndarray:
        """Distance from CV values ``(..., n_cvs)`` to the centre."""
        values = np.asarray(values, dtype=float)
        d = np.stack([cv.difference(values[..., i], self.centre[i]) for i, cv in enumerate(self.cvs)], axis=-1)
        return np.sqrt((d**2).sum(-1))

    def distance(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """Distance ``(n_frames,)`` of every frame to the state centre (CV units)."""
        return self.distance_cv(self.cv_values(traj))

    def contains(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """Boolean array ``(n_frames,)``: frame lies within ``radius`` of the centre."""
        return self.distance(traj) <= self.radius

    def to_dict(self) -> dict:
        return {"name": self.name, "cvs": [cv.name for cv in self.cvs], "centre": self.centre.tolist(), "radius": self.radius}


# --------------------------------------------------------------------------------------------
# implicit solvent (native GBSAOBCForce with Amber igb=5 / OBC2 parameters)

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


# --------------------------------------------------------------------------------------------
# molecular system


def as_md_topology(top) -> mdtraj.Topology:
    """mdtraj Topology from an mdtraj/OpenMM Topology, a Trajectory, a MolecularSystem or a structure file."""
    if isinstance(top, mdtraj.Topology):
        return top
    if isinstance(top, mdtraj.Trajectory):
        return top.topology
    if isinstance(top, app.Topology):
        return mdtraj.Topology.from_openmm(top)
    if isinstance(top, MolecularSystem):
        return top.md_topology
    if isinstance(top, (str, os.PathLike)):
        path = Path(top)
        if not path.is_file():
            raise FileNotFoundError(f"topology file not found: {path}; pass a PDB (or any file mdtraj reads) of the system")
        return mdtraj.load_topology(str(path))
    raise TypeError(f"expected an mdtraj/openmm Topology, Trajectory, MolecularSystem or structure file, got {type(top).__name__}")


@functools.lru_cache(maxsize=16)
def _forcefield(files: tuple[str, ...]) -> app.ForceField:
    """Parsed (cached) ``openmm.app.ForceField``; one-line error naming an unknown file."""
    for f in files:
        if not Path(f).is_file() and not any((Path(d) / f).is_file() for d in _ff_data_dirs()):
            raise ValueError(f"unknown force-field file {f!r} (neither a file nor part of OpenMM's data directories)")
    try:
        return app.ForceField(*files)
    except Exception as exc:
        raise ValueError(f"cannot load force field {list(files)}: {exc}".splitlines()[0]) from None


def _ff_data_dirs() -> list[str]:
    dirs = [os.path.join(os.path.dirname(app.__file__), "data")]
    try:  # plugins (e.g. openmmforcefields) register further data directories
        from openmm.app.forcefield import _getDataDirectories

        dirs = list(_getDataDirectories())
    except Exception:
        pass
    return dirs


_NONBONDED = {"NoCutoff": app.NoCutoff, "CutoffNonPeriodic": app.CutoffNonPeriodic, "CutoffPeriodic": app.CutoffPeriodic, "PME": app.PME}
_CONSTRAINTS = {None: None, "None": None, "HBonds": app.HBonds, "AllBonds": app.AllBonds, "HAngles": app.HAngles}


class MolecularSystem:
    """Topology + OpenMM System + reference positions + temperature + named states.

    Attributes
    ----------
    topology : openmm.app.Topology
    md_topology : mdtraj.Topology (same atom order)
    system : openmm.System
    positions : (n_atoms, 3) float64 reference positions, nm
    temperature : float, K
    cvs : dict name -> CollectiveVariable
    states : dict name -> State
    state_positions : dict state name -> (n_atoms, 3) representative (e.g. minimised) structure, nm
    platform : str or None (None: :func:`default_platform`)
    name, info : free-form description (force field, solvent, provenance)
    """

    def __init__(self, topology: app.Topology, system: openmm.System, positions, temperature: float = 300.0,
                 cvs: Mapping[str, CollectiveVariable] | Iterable[CollectiveVariable] | None = None,
                 states: Mapping[str, State] | Iterable[State] | None = None,
                 state_positions: Mapping[str, np.ndarray] | None = None, platform: str | None = None,
                 name: str = "system", info: Mapping | None = None):
        if not isinstance(topology, app.Topology):
            raise TypeError(f"topology must be an openmm.app.Topology, got {type(topology).__name__}")
        if system.getNumParticles() != topology.getNumAtoms():
            raise ValueError(f"the OpenMM System has {system.getNumParticles()} particles but the topology has {topology.getNumAtoms()} atoms")
        self.topology = topology
        self.md_topology = mdtraj.Topology.from_openmm(topology)
        self.system = system
        self.positions = as_positions(positions, self.n_atoms, "reference positions")[0]
        self.temperature = float(_strip(temperature, unit.kelvin))
        if isinstance(cvs, Mapping):
            cvs = list(cvs.values())
        self.cvs = {cv.name: cv for cv in (cvs or [])}
        for cv in self.cvs.values():
            cv.atom_indices(self.md_topology)
        if isinstance(states, Mapping):
            states = list(states.values())
        self.states = {s.name: s for s in (states or [])}
        for s in self.states.values():
            for cv in s.cvs:
                cv.atom_indices(self.md_topology)
        self.state_positions = {k: as_positions(v, self.n_atoms, f"positions of state {k!r}")[0] for k, v in (state_positions or {}).items()}
        self.platform = platform
        self.name = name
        self.info = dict(info or {})
        self._energy_context: openmm.Context | None = None

    # ----- constructors

    @classmethod
    def from_pdb(cls, pdb: str | os.PathLike, forcefield: Sequence[str] | str = ("amber99sbildn.xml",),
                 implicit_solvent: str | None = None, nonbonded_method: str = "NoCutoff", nonbonded_cutoff: float = 1.0,
                 constraints: str | None = None, rigid_water: bool = True, hydrogen_mass: float | None = None,
                 temperature: float = 300.0, **kwargs) -> "MolecularSystem":
        """Build from a PDB (or PDBx/mmCIF) file and OpenMM force-field XML files.

        ``implicit_solvent``: None (vacuum) or ``"obc2"`` (native GBSAOBCForce, see :func:`add_obc2`).
        ``nonbonded_method``: ``"NoCutoff"`` (default), ``"CutoffNonPeriodic"``, ``"CutoffPeriodic"``, ``"PME"``.
        ``constraints``: None (flexible, default), ``"HBonds"``, ``"AllBonds"``, ``"HAngles"``.
        Remaining keyword arguments go to the constructor (cvs, states, state_positions, platform, name, info).
        """
        path = Path(pdb)
        if not path.is_file():
            raise FileNotFoundError(f"structure file not found: {path}")
        if isinstance(forcefield, (str, os.PathLike)):
            forcefield = (str(forcefield),)
        forcefield = tuple(str(f) for f in forcefield)
        if implicit_solvent not in (None, "obc2", "OBC2"):
            raise ValueError(f"unknown implicit_solvent {implicit_solvent!r}; use None (vacuum) or 'obc2'")
        if any("implicit/" in f for f in forcefield):
            raise ValueError("pass implicit_solvent='obc2' instead of an implicit/*.xml file (native GBSAOBCForce, ~40x faster)")
        if nonbonded_method not in _NONBONDED:
            raise ValueError(f"unknown nonbonded_method {nonbonded_method!r}; known: {list(_NONBONDED)}")
        if constraints not in _CONSTRAINTS:
            raise ValueError(f"unknown constraints {constraints!r}; known: {list(_CONSTRAINTS)}")
        try:
            structure = app.PDBxFile(str(path)) if path.suffix.lower() in (".cif", ".pdbx") else app.PDBFile(str(path))
        except Exception as exc:
            raise ValueError(f"cannot read structure {path}: {exc}") from None
        ff = _forcefield(forcefield)
        try:
            system = ff.createSystem(structure.topology, nonbondedMethod=_NONBONDED[nonbonded_method],
                                     nonbondedCutoff=nonbonded_cutoff * unit.nanometer, constraints=_CONSTRAINTS[constraints],
                                     rigidWater=rigid_water, hydrogenMass=None if hydrogen_mass is None else hydrogen_mass * unit.amu)
        except Exception as exc:
            raise ValueError(f"force field {forcefield} cannot parametrise {path.name}: {exc}") from None
        if implicit_solvent is not None:
            add_obc2(system, structure.topology)
        info = {"source": str(path), "forcefield": list(forcefield), "implicit_solvent": implicit_solvent,
                "nonbonded_method": nonbonded_method, "constraints": constraints}
        info.update(kwargs.pop("info", None) or {})
        kwargs.setdefault("name", path.stem)
        return cls(structure.topology, system, structure.getPositions(asNumpy=True), temperature=temperature, info=info, **kwargs)

    @classmethod
    def from_openmm(cls, topology: app.Topology, system: openmm.System, positions, temperature: float = 300.0,
                    **kwargs) -> "MolecularSystem":
        """Wrap an existing OpenMM Topology/System and positions (nm or Quantity)."""
        return cls(topology, system, positions, temperature=temperature, **kwargs)

    # ----- basic properties

    @property
    def n_atoms(self) -> int:
        return self.topology.getNumAtoms()

    @property
    def kT(self) -> float:
        """Thermal energy at the system temperature, kJ/mol."""
        return float((unit.MOLAR_GAS_CONSTANT_R * self.temperature * unit.kelvin).value_in_unit(unit.kilojoule_per_mole))

    @property
    def n_constraints(self) -> int:
        return self.system.getNumConstraints()

    def default_timestep(self) -> float:
        """2 fs when every X-H bond is constrained, else 1 fs (ps)."""
        n_h = sum(1 for a, b in self.topology.bonds() if "H" in (getattr(a.element, "symbol", None), getattr(b.element, "symbol", None)))
        return 0.002 if self.n_constraints >= n_h > 0 else 0.001

    def platform_name(self, platform: str | None = None) -> str:
        return platform or self.platform or default_platform(self.n_atoms)

    def system_xml(self) -> str:
        return openmm.XmlSerializer.serialize(self.system)

    def __repr__(self) -> str:
        return (f"MolecularSystem({self.name!r}, {self.n_atoms} atoms, T={self.temperature:g} K, "
                f"states={list(self.states)}, info={self.info})")

    def __getstate__(self):
        d = self.__dict__.copy()
        d["_energy_context"] = None
        return d

    # ----- positions / trajectories

    def check_positions(self, positions, what: str = "positions") -> np.ndarray:
        """``(n_frames, n_atoms, 3)`` float64 nm; clear errors for shape, atom count, NaN."""
        return as_positions(positions, self.n_atoms, what)

    def to_trajectory(self, positions, time=None) -> mdtraj.Trajectory:
        """An ``mdtraj.Trajectory`` with this topology."""
        xyz = self.check_positions(positions)
        return mdtraj.Trajectory(xyz.astype(np.float32), self.md_topology, time=time)

    def positions_of(self, state: str) -> np.ndarray:
        """Representative structure ``(n_atoms, 3)`` nm of a named state."""
        if state not in self.state_positions:
            raise KeyError(f"no structure for state {state!r} in {self.name}; known: {sorted(self.state_positions)}")
        return self.state_positions[state].copy()

    def cv_values(self, traj) -> dict[str, np.ndarray]:
        """All CVs of ``traj`` (trajectory or positions)."""
        traj = traj if isinstance(traj, mdtraj.Trajectory) else self.to_trajectory(traj)
        return {name: cv.compute(traj) for name, cv in self.cvs.items()}

    def assign_states(self, traj) -> np.ndarray:
        """Name of the state containing each frame (``""`` for none), array of str ``(n_frames,)``."""
        traj = traj if isinstance(traj, mdtraj.Trajectory) else self.to_trajectory(traj)
        out = np.full(traj.n_frames, "", dtype=object)
        best = np.full(traj.n_frames, np.inf)
        for name, s in self.states.items():
            d = s.distance(traj)
            take = (d <= s.radius) & (d < best)
            out[take] = name
            best[take] = d[take]
        return out

    # ----- OpenMM objects

    def make_context(self, integrator: openmm.Integrator | None = None, platform: str | None = None,
                     positions=None, properties: Mapping[str, str] | None = None) -> openmm.Context:
        """A new ``openmm.Context`` (default integrator: VerletIntegrator(1 fs)) at ``positions``."""
        integrator = integrator or openmm.VerletIntegrator(0.001)
        plat = get_platform(self.platform_name(platform), self.n_atoms)
        ctx = openmm.Context(self.system, integrator, plat, dict(properties or {}))
        pos = self.positions if positions is None else self.check_positions(positions)[0]
        ctx.setPositions(pos)
        return ctx

    def make_simulation(self, integrator: openmm.Integrator | None = None, platform: str | None = None,
                        positions=None, properties: Mapping[str, str] | None = None) -> app.Simulation:
        """An ``openmm.app.Simulation``; default integrator LangevinMiddle(T, 1/ps, default_timestep)."""
        integrator = integrator or openmm.LangevinMiddleIntegrator(self.temperature, 1.0, self.default_timestep())
        plat = get_platform(self.platform_name(platform), self.n_atoms)
        sim = app.Simulation(self.topology, self.system, integrator, plat, dict(properties or {}))
        pos = self.positions if positions is None else self.check_positions(positions)[0]
        sim.context.setPositions(pos)
        return sim

    def _context(self) -> openmm.Context:
        if self._energy_context is None:
            self._energy_context = self.make_context()
        return self._energy_context

    def potential_energy(self, positions, groups: int | set | None = None) -> np.ndarray | float:
        """Potential energy (kJ/mol) of every frame.

        ``positions``: ``(n_frames, n_atoms, 3)`` nm, a Trajectory or a Quantity -> array
        ``(n_frames,)``; a single ``(n_atoms, 3)`` frame -> float. ``groups``: OpenMM force-group
        mask or set (default: all).
        """
        single = not isinstance(positions, mdtraj.Trajectory) and np.ndim(_strip(positions, unit.nanometer)) == 2
        xyz = self.check_positions(positions)
        boxes = positions.unitcell_vectors if isinstance(positions, mdtraj.Trajectory) else None
        ctx = self._context()
        kw = {} if groups is None else {"groups": groups}
        out = np.empty(len(xyz))
        for i, x in enumerate(xyz):
            if boxes is not None:
                ctx.setPeriodicBoxVectors(*[openmm.Vec3(*map(float, v)) for v in boxes[i]])
            ctx.setPositions(x)
            out[i] = ctx.getState(getEnergy=True, **kw).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        return float(out[0]) if single else out

    def forces(self, positions) -> np.ndarray:
        """Forces ``(n_frames, n_atoms, 3)`` in kJ/mol/nm."""
        xyz = self.check_positions(positions)
        ctx = self._context()
        out = np.empty_like(xyz)
        for i, x in enumerate(xyz):
            ctx.setPositions(x)
            out[i] = ctx.getState(getForces=True).getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        return out

    def minimize(self, positions=None, tolerance: float = 0.01, max_iterations: int = 0) -> np.ndarray:
        """Local energy minimisation (L-BFGS) of each frame; returns the same shape, nm.

        ``tolerance``: RMS force criterion in kJ/mol/nm; ``max_iterations`` 0 = until converged.
        """
        raw = self.positions if positions is None else positions
        single = not isinstance(raw, mdtraj.Trajectory) and np.ndim(_strip(raw, unit.nanometer)) == 2
        xyz = self.check_positions(raw)
        ctx = self._context()
        out = np.empty_like(xyz)
        for i, x in enumerate(xyz):
            ctx.setPositions(x)
            openmm.LocalEnergyMinimizer.minimize(ctx, tolerance, max_iterations)
            out[i] = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return out[0] if single else out


# --------------------------------------------------------------------------------------------
# alanine dipeptide and the system registry

ALDP_DIR = SYSTEMS_DIR / "alanine_dipeptide"
ALDP_STATE_CENTRES_DEG = {"C5": (-150.0, 160.0), "C7eq": (-78.0, 54.0), "C7ax": (60.0, -41.0)}


def alanine_dipeptide_cvs(topology=None) -> tuple[Dihedral, Dihedral]:
    """phi = C(ACE)-N-CA-C, psi = N-CA-C-N(NME)."""
    phi = Dihedral("phi", ("resname ACE and name C", "resname ALA and name N", "resname ALA and name CA", "resname ALA and name C"), topology)
    psi = Dihedral("psi", ("resname ALA and name N", "resname ALA and name CA", "resname ALA and name C", "resname NME and name N"), topology)
    return phi, psi


def _minimize_fixed_torsions(mol: MolecularSystem, pos: np.ndarray, torsions: Sequence[Dihedral], k: float = 5000.0) -> np.ndarray:
    """Minimise with stiff cosine restraints holding ``torsions`` at their values in ``pos``."""
    system = openmm.XmlSerializer.deserialize(mol.system_xml())
    force = openmm.CustomTorsionForce("k_fix*(1-cos(theta-theta0))")
    force.addGlobalParameter("k_fix", k)
    force.addPerTorsionParameter("theta0")
    traj = mol.to_trajectory(pos)
    for cv in torsions:
        force.addTorsion(*map(int, cv.atom_indices(mol.md_topology)), [float(cv.compute(traj)[0])])
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos)
    openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 0)
    return ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)


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
    files = {name: ALDP_DIR / f"{name}_min.pdb" for name in ALDP_STATE_CENTRES_DEG}
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
        pos = {n: _minimize_fixed_torsions(mol, p, [phi, psi]) for n, p in pos.items()}
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
