"""A molecular system: topology, OpenMM System, reference positions, temperature and named states.

Units at every boundary: nm, kJ/mol, kelvin, ps; angles in radians. Plain floats are read in
those units; ``openmm.unit.Quantity`` objects are converted.

    system = MolecularSystem.from_pdb("x.pdb", forcefield=("amber99sbildn.xml",), implicit_solvent="obc2")
    e = system.potential_energy(xyz)        # (n_frames, n_atoms, 3) nm -> (n_frames,) kJ/mol
    system.states["C7eq"].contains(traj)    # bool per frame
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

from ..utils.files import first_line
from ._openmm import default_platform, get_platform, in_units
from .limits import openmm_errors
from .solvent import add_obc2
from .states import CollectiveVariable, Dihedral, State
from .topology import CONSTRAINTS, NONBONDED_METHODS, as_positions, load_forcefield

__all__ = ["MolecularSystem", "minimize_with_fixed_torsions"]


class MolecularSystem:
    """Topology + OpenMM System + reference positions + temperature + named states.

    Attributes
    ----------
    topology : openmm.app.Topology
    md_topology : mdtraj.Topology (same atom order)
    openmm_system : openmm.System
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
        if not isinstance(system, openmm.System):
            raise TypeError(f"system must be an openmm.System, got {type(system).__name__}")
        if topology.getNumAtoms() == 0:
            raise ValueError("the topology has no atoms; give a structure with atoms (a complete PDB file)")
        if system.getNumParticles() != topology.getNumAtoms():
            raise ValueError(f"the OpenMM System has {system.getNumParticles()} particles but the topology has "
                             f"{topology.getNumAtoms()} atoms")
        self.topology = topology
        self.md_topology = mdtraj.Topology.from_openmm(topology)
        self.openmm_system = system
        self.positions = as_positions(positions, self.n_atoms, "reference positions")[0]
        self.temperature = float(in_units(temperature, unit.kelvin))
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be finite and > 0 K; got {self.temperature}")
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
        self.state_positions = {k: as_positions(v, self.n_atoms, f"positions of state {k!r}")[0]
                                for k, v in (state_positions or {}).items()}
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
            raise ValueError("pass implicit_solvent='obc2' instead of an implicit/*.xml file (native GBSAOBCForce, "
                             "~40x faster)")
        if nonbonded_method not in NONBONDED_METHODS:
            raise ValueError(f"unknown nonbonded_method {nonbonded_method!r}; known: {list(NONBONDED_METHODS)}")
        if constraints not in CONSTRAINTS:
            raise ValueError(f"unknown constraints {constraints!r}; known: {list(CONSTRAINTS)}")
        if path.stat().st_size == 0:
            raise ValueError(f"structure file {path} is empty; re-copy or regenerate it")
        try:
            structure = app.PDBxFile(str(path)) if path.suffix.lower() in (".cif", ".pdbx") else app.PDBFile(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenMM's readers raise many types for a bad file
            raise ValueError(f"cannot read structure {path} ({type(exc).__name__}: {first_line(exc)[:200]}); the file "
                             "is truncated or malformed: re-copy or regenerate it") from None
        if structure.topology.getNumAtoms() == 0:
            raise ValueError(f"structure {path} holds no atoms; the file is empty, truncated or not a PDB/PDBx file: "
                             "re-copy or regenerate it")
        ff = load_forcefield(forcefield)
        try:
            system = ff.createSystem(structure.topology, nonbondedMethod=NONBONDED_METHODS[nonbonded_method],
                                     nonbondedCutoff=nonbonded_cutoff * unit.nanometer,
                                     constraints=CONSTRAINTS[constraints], rigidWater=rigid_water,
                                     hydrogenMass=None if hydrogen_mass is None else hydrogen_mass * unit.amu)
        except Exception as exc:  # noqa: BLE001 - createSystem raises a bare Exception for templates
            raise ValueError(f"force field {forcefield} cannot parametrise {path.name} ({first_line(exc)[:300]}); "
                             "check that the file is complete (not truncated) and that the force field covers every "
                             "residue") from None
        if implicit_solvent is not None:
            add_obc2(system, structure.topology)
        info = {"source": str(path), "forcefield": list(forcefield), "implicit_solvent": implicit_solvent,
                "nonbonded_method": nonbonded_method, "constraints": constraints}
        info.update(kwargs.pop("info", None) or {})
        kwargs.setdefault("name", path.stem)
        return cls(structure.topology, system, structure.getPositions(asNumpy=True), temperature=temperature, info=info,
                   **kwargs)

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
        kT = unit.MOLAR_GAS_CONSTANT_R * self.temperature * unit.kelvin
        return float(kT.value_in_unit(unit.kilojoule_per_mole))

    @property
    def n_constraints(self) -> int:
        return self.openmm_system.getNumConstraints()

    def default_timestep(self) -> float:
        """2 fs when every X-H bond is constrained, else 1 fs (ps)."""
        n_h = sum(1 for a, b in self.topology.bonds()
                  if "H" in (getattr(a.element, "symbol", None), getattr(b.element, "symbol", None)))
        return 0.002 if self.n_constraints >= n_h > 0 else 0.001

    def platform_name(self, platform: str | None = None) -> str:
        return platform or self.platform or default_platform(self.n_atoms)

    def system_xml(self) -> str:
        return openmm.XmlSerializer.serialize(self.openmm_system)

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
        pos = self.positions if positions is None else self.check_positions(positions)[0]
        with openmm_errors(f"creating a context on the {plat.getName()} platform"):
            ctx = openmm.Context(self.openmm_system, integrator, plat, dict(properties or {}))
            ctx.setPositions(pos)
        return ctx

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
        single = not isinstance(positions, mdtraj.Trajectory) and np.ndim(in_units(positions, unit.nanometer)) == 2
        xyz = self.check_positions(positions)
        boxes = positions.unitcell_vectors if isinstance(positions, mdtraj.Trajectory) else None
        ctx = self._context()
        kw = {} if groups is None else {"groups": groups}
        out = np.empty(len(xyz))
        with openmm_errors("computing potential energies"):
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
        with openmm_errors("computing forces"):
            for i, x in enumerate(xyz):
                ctx.setPositions(x)
                forces = ctx.getState(getForces=True).getForces(asNumpy=True)
                out[i] = forces.value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
        return out

    def minimize(self, positions=None, tolerance: float = 0.01, max_iterations: int = 0) -> np.ndarray:
        """Local energy minimisation (L-BFGS) of each frame; returns the same shape, nm.

        ``tolerance``: RMS force criterion in kJ/mol/nm; ``max_iterations`` 0 = until converged.
        """
        raw = self.positions if positions is None else positions
        single = not isinstance(raw, mdtraj.Trajectory) and np.ndim(in_units(raw, unit.nanometer)) == 2
        xyz = self.check_positions(raw)
        ctx = self._context()
        out = np.empty_like(xyz)
        with openmm_errors("minimising"):
            for i, x in enumerate(xyz):
                ctx.setPositions(x)
                openmm.LocalEnergyMinimizer.minimize(ctx, tolerance, max_iterations)
                out[i] = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return out[0] if single else out


def minimize_with_fixed_torsions(mol: MolecularSystem, pos: np.ndarray, torsions: Sequence[Dihedral],
                                 k: float = 5000.0) -> np.ndarray:
    """Minimise ``pos`` ``(n_atoms, 3)`` nm with stiff cosine restraints (``k`` kJ/mol) holding ``torsions``
    at their values in ``pos``: the relaxed (adiabatic) structure at fixed dihedrals, nm."""
    system = openmm.XmlSerializer.deserialize(mol.system_xml())
    force = openmm.CustomTorsionForce("k_fix*(1-cos(theta-theta0))")
    force.addGlobalParameter("k_fix", k)
    force.addPerTorsionParameter("theta0")
    traj = mol.to_trajectory(pos)
    for cv in torsions:
        force.addTorsion(*map(int, cv.atom_indices(mol.md_topology)), [float(cv.compute(traj)[0])])
    system.addForce(force)
    with openmm_errors("minimising at fixed torsions"):
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        ctx.setPositions(pos)
        openmm.LocalEnergyMinimizer.minimize(ctx, 1e-3, 0)
        return ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
