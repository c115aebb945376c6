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

from ._openmm import default_platform, get_platform, in_units
from .limits import openmm_errors
from .solvent import Solvent, solute_atoms
from .states import CollectiveVariable, Dihedral, StateDefinition
from .structure import ForceFieldSettings, Structure, parametrise, read_structure
from .topology import as_positions

__all__ = ["MolecularSystem", "minimize_with_fixed_torsions", "minimize_with_held_atoms"]


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
    states : dict name -> State or Region (a :class:`~tps_diffusion.molecular.states.StateDefinition`)
    state_positions : dict state name -> (n_atoms, 3) representative (e.g. minimised) structure, nm
    platform : str or None (None: :func:`default_platform`)
    timestep : float or None, ps (None: :meth:`default_timestep` chooses from the constraints)
    model_atoms : str, mdtraj selection (or a name of ``SELECTIONS``) of the atoms a model sees by default
    name, info : free-form description (force field, solvent, provenance)
    """

    def __init__(self, topology: app.Topology, system: openmm.System, positions, temperature: float = 300.0,
                 cvs: Mapping[str, CollectiveVariable] | Iterable[CollectiveVariable] | None = None,
                 states: Mapping[str, StateDefinition] | Iterable[StateDefinition] | None = None,
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
        self.timestep: float | None = None
        self.model_atoms = "heavy"
        self.name = name
        self.info = dict(info or {})
        self._energy_context: openmm.Context | None = None

    # ----- constructors

    @classmethod
    def from_pdb(cls, pdb: str | os.PathLike, forcefield: Sequence[str] | str = ("amber99sbildn.xml",),
                 implicit_solvent: str | None = None, nonbonded_method: str | None = None,
                 nonbonded_cutoff: float = 1.0,
                 constraints: str | None = None, rigid_water: bool = True, hydrogen_mass: float | None = None,
                 temperature: float = 300.0, **kwargs) -> "MolecularSystem":
        """Build from a PDB (or PDBx/mmCIF) file and OpenMM force-field XML files, in vacuum or
        implicit solvent (for explicit water and other file formats see :meth:`from_files`).

        ``implicit_solvent``: None (vacuum), ``"obc2"`` (native GBSAOBCForce, see :func:`add_obc2`),
        ``"gbn2"``, ``"obc1"``, ``"hct"``, ``"gbn"`` or an OpenMM implicit XML file.
        ``nonbonded_method``: None (NoCutoff), ``"CutoffNonPeriodic"``; nonbonded_cutoff in nm.
        ``constraints``: None (flexible, default), ``"HBonds"``, ``"AllBonds"``, ``"HAngles"``.
        Remaining keyword arguments go to the constructor (cvs, states, state_positions, platform, name, info).
        """
        forcefield = (str(forcefield),) if isinstance(forcefield, (str, os.PathLike)) else tuple(forcefield)
        implicit = [f for f in forcefield if "implicit/" in str(f)]
        if implicit and implicit_solvent is None:  # an implicit XML among the force-field files
            implicit_solvent = implicit[0]
        forcefield = tuple(f for f in forcefield if f not in implicit)
        solvent = Solvent("vacuum") if implicit_solvent is None else Solvent("implicit", implicit=implicit_solvent)
        settings = ForceFieldSettings(forcefield, nonbonded_method, nonbonded_cutoff, constraints, rigid_water,
                                      hydrogen_mass)
        return cls.from_files({"pdb": pdb}, settings, solvent, temperature=temperature, **kwargs)

    @classmethod
    def from_files(cls, structure: Mapping[str, str | os.PathLike] | Structure,
                   forcefield: ForceFieldSettings | None = None, solvent: Solvent | None = None,
                   temperature: float = 300.0, other_conformations: Sequence[np.ndarray] = (),
                   base_dir: str | os.PathLike | None = None, **kwargs) -> "MolecularSystem":
        """Build from structure files (see :func:`~tps_diffusion.molecular.structure.read_structure`:
        PDB/PDBx + force-field XML files, AMBER prmtop + inpcrd, CHARMM psf + crd + params, GROMACS
        top + gro), in ``solvent`` (vacuum, implicit or explicit water; default vacuum).

        ``other_conformations``: further solute conformations ``(n_solute, 3)`` nm that must fit into
        the box when a PDB solute is solvated here. Remaining keyword arguments go to the
        constructor (cvs, states, state_positions, platform, name, info).
        """
        forcefield = forcefield or ForceFieldSettings()
        solvent = solvent or Solvent()
        if not isinstance(structure, Structure):
            structure = read_structure(structure, base_dir)
        topology, system, positions = parametrise(structure, forcefield, solvent, list(other_conformations))
        first = next(iter(structure.files.values()))
        periodic = solvent.kind == "explicit"
        info = {"source": str(first) if len(structure.files) == 1 else structure.files,
                "forcefield": list(forcefield.files), "solvent": solvent.describe(),
                "implicit_solvent": solvent.implicit if solvent.kind == "implicit" else None,
                "nonbonded_method": forcefield.nonbonded_method or ("PME" if periodic else "NoCutoff"),
                "constraints": forcefield.constraints}
        info.update(kwargs.pop("info", None) or {})
        kwargs.setdefault("name", Path(first).stem)
        return cls(topology, system, positions, temperature=temperature, info=info, **kwargs)

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides) -> "MolecularSystem":
        """Build from a system file (TOML; the format is in ``docs/systems.md``). ``overrides``:
        temperature (K), platform."""
        from .system_file import load_system_file

        return load_system_file(path, **overrides)

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

    @property
    def solute_indices(self) -> np.ndarray:
        """Indices of the atoms that are not water or ions ``(n_solute,)``."""
        return solute_atoms(self.topology)

    @property
    def box(self) -> np.ndarray | None:
        """Periodic box vectors ``(3, 3)`` nm, or None for a non-periodic system."""
        if not self.openmm_system.usesPeriodicBoundaryConditions():
            return None
        vectors = self.openmm_system.getDefaultPeriodicBoxVectors()
        return np.array([[float(c) for c in v.value_in_unit(unit.nanometer)] for v in vectors])

    def default_timestep(self) -> float:
        """``timestep`` (ps) when set, else 2 fs when every X-H bond of the solute is constrained, else
        1 fs; rigid waters do not count."""
        if self.timestep is not None:
            return self.timestep
        solute = set(self.solute_indices.tolist())
        xh = {frozenset((a.index, b.index)) for a, b in self.topology.bonds()
              if a.index in solute and "H" in (getattr(a.element, "symbol", None), getattr(b.element, "symbol", None))}
        constrained = {frozenset(self.openmm_system.getConstraintParameters(i)[:2])
                       for i in range(self.n_constraints)}
        return 0.002 if xh and xh <= constrained else 0.001

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
        """An ``mdtraj.Trajectory`` with this topology (and the periodic box of the system, if any)."""
        xyz = self.check_positions(positions)
        return self.with_box(mdtraj.Trajectory(xyz.astype(np.float32), self.md_topology, time=time))

    def with_box(self, traj: mdtraj.Trajectory) -> mdtraj.Trajectory:
        """``traj`` with the system's periodic box on every frame (NVT: the box is constant); unchanged
        for a non-periodic system."""
        box = self.box
        if box is not None:
            traj.unitcell_vectors = np.broadcast_to(box.astype(np.float32), (traj.n_frames, 3, 3)).copy()
        return traj

    def adopt(self, traj: mdtraj.Trajectory, what: str = "the trajectory") -> mdtraj.Trajectory:
        """``traj`` (from any program) as frames of this system: atoms checked by residue and atom
        name, molecules made whole where it has a unit cell, a solute-only trajectory placed into
        the solvated system (the solvent at the reference positions), and the system's box set.

        Raises ``ValueError`` (one line, naming the fix) for other atoms, or bonds of the solute
        longer than 0.3 nm after making molecules whole (a per-atom wrapped trajectory without a
        unit cell).
        """
        solute = self.solute_indices
        if traj.n_atoms == self.n_atoms:
            target = np.arange(self.n_atoms)
        elif traj.n_atoms == len(solute) < self.n_atoms:
            target = solute
        else:
            raise ValueError(f"{what} has {traj.n_atoms} atoms but {self.name} has {self.n_atoms} atoms ({len(solute)} "
                             "solute); give the trajectory of this system (--top TOPOLOGY for coordinate-only files) "
                             "or the system file of the molecule (--system FILE.toml)")
        mine = [a.name for a in self.md_topology.atoms]
        theirs = [a.name for a in traj.topology.atoms]
        bad = next((i for i, name in enumerate(theirs) if name != mine[target[i]]), None)
        if bad is not None:
            atom = self.md_topology.atom(int(target[bad]))
            raise ValueError(f"atom {bad} of {what} is {traj.topology.atom(bad)} but atom {target[bad]} of {self.name} "
                             f"is {atom}; give a trajectory with the system's atom order (or the matching --top)")
        periodic = self.box is not None
        if periodic and traj.unitcell_vectors is not None and traj.topology.n_bonds:
            traj = traj.make_molecules_whole(inplace=False)
        in_solute = np.isin(target, solute)
        bonds = np.array([[a.index, b.index] for a, b in traj.topology.bonds
                          if in_solute[a.index] and in_solute[b.index]])
        if len(bonds):
            longest = float(mdtraj.compute_distances(traj, bonds, periodic=False).max())
            if longest > 0.3:
                raise ValueError(f"{what} has solute bonds up to {longest:.2f} nm: molecules split across the periodic "
                                 "box; give a trajectory with its unit cell (dcd/xtc/trr/nc/h5) or unwrap it first "
                                 "(gmx trjconv -pbc mol, cpptraj autoimage)")
        if traj.n_atoms == self.n_atoms:
            return traj if traj.unitcell_vectors is not None else self.with_box(traj)
        xyz = np.broadcast_to(self.positions.astype(np.float32), (traj.n_frames, self.n_atoms, 3)).copy()
        xyz[:, solute] = traj.xyz
        return self.with_box(mdtraj.Trajectory(xyz, self.md_topology, time=traj.time))

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
            d = s.depth(traj)  # <= 1 inside; overlapping states: the one whose centre is nearest
            take = (d <= 1.0) & (d < best)
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
    force = openmm.CustomTorsionForce("k_fix*(1-cos(theta-theta0))")
    force.addGlobalParameter("k_fix", k)
    force.addPerTorsionParameter("theta0")
    traj = mol.to_trajectory(pos)
    for cv in torsions:
        force.addTorsion(*map(int, cv.atom_indices(mol.md_topology)), [float(cv.compute(traj)[0])])
    return _minimize_with(mol, pos, force, "Reference" if mol.box is None else mol.platform_name(),
                          "minimising at fixed torsions")


def minimize_with_held_atoms(mol: MolecularSystem, pos: np.ndarray, atoms: Sequence[int],
                             k: float = 1e5) -> np.ndarray:
    """Minimise ``pos`` ``(n_atoms, 3)`` nm with harmonic restraints (``k`` kJ/mol/nm^2) holding
    ``atoms`` at their positions: relaxes the solvent around a given solute conformation, nm."""
    force = openmm.CustomExternalForce("0.5*k_hold*periodicdistance(x, y, z, x0, y0, z0)^2"
                                       if mol.box is not None else "0.5*k_hold*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    force.addGlobalParameter("k_hold", k)
    for name in ("x0", "y0", "z0"):
        force.addPerParticleParameter(name)
    for i in atoms:
        force.addParticle(int(i), [float(c) for c in pos[i]])
    return _minimize_with(mol, pos, force, mol.platform_name(), "relaxing the solvent around the solute")


def _minimize_with(mol: MolecularSystem, pos: np.ndarray, force: openmm.Force, platform: str, doing: str) -> np.ndarray:
    """Minimise with ``force`` added: to convergence (1e-3 kJ/mol/nm) without solvent; with explicit
    solvent for at most 1000 iterations (enough to remove clashes before MD equilibrates the water)."""
    system = openmm.XmlSerializer.deserialize(mol.system_xml())
    system.addForce(force)
    periodic = mol.box is not None
    with openmm_errors(doing):
        ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), get_platform(platform, mol.n_atoms))
        ctx.setPositions(pos)
        openmm.LocalEnergyMinimizer.minimize(ctx, 10.0 if periodic else 1e-3, 1000 if periodic else 0)
        return ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
