"""System files: one TOML file describes a molecule for every command (format: ``docs/systems.md``).

    system = load_system_file("chignolin_gbn2.toml")        # = MolecularSystem.from_toml(...)

Tables: top-level ``name``, ``temperature`` (K), ``platform``; ``[structure]`` (pdb | prmtop +
inpcrd | psf + crd + params | top + gro); ``[forcefield]`` (files, nonbonded_method, cutoff nm,
constraints, rigid_water, hydrogen_mass amu); ``[solvent]`` (kind vacuum | implicit | explicit,
implicit, water, padding nm, box nm, ionic_strength molar, neutralize); ``[dynamics]`` (timestep
ps); ``[model]`` (atoms: an mdtraj selection, default solute heavy atoms); ``[cvs.NAME]``
(type dihedral | angle | distance | rmsd); ``[states.NAME]`` (structures, minimize, and either
bounds on CVs or a ball). Relative paths are read from the file's directory.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import tomllib

from ..utils.files import atomic_path
from .model import resolve_selection
from .solvent import Solvent, is_solvent
from .states import Dihedral, cv_from_dict, state_from_dict
from .structure import STRUCTURE_KINDS, ForceFieldSettings, Structure, read_structure
from .superpose import superpose
from .system import MolecularSystem, minimize_with_fixed_torsions, minimize_with_held_atoms

__all__ = ["load_system_file", "SYSTEM_FILE_KEYS"]

#: Allowed keys per table of a system file.
SYSTEM_FILE_KEYS = {
    "": {"name", "description", "temperature", "platform", "structure", "forcefield", "solvent", "dynamics", "model",
         "cvs", "states"},
    "structure": {k for keys in STRUCTURE_KINDS.values() for k in keys},
    "forcefield": {"files", "nonbonded_method", "cutoff", "constraints", "rigid_water", "hydrogen_mass"},
    "solvent": {"kind", "implicit", "water", "padding", "box", "ionic_strength", "neutralize"},
    "dynamics": {"timestep"},
    "model": {"atoms"},
    "state": {"structures", "minimize", "bounds", "cvs", "centre", "centre_deg", "radius", "radius_deg"},
}


def _check_keys(where: str, table: Any, allowed: set[str], path: Path) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"{path}: {where or 'the file'} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)} in {where or 'the top level'}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    return table


def _read(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"system file not found: {path}; give a TOML system file (see docs/systems.md) or a "
                                "built-in system name")
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML ({exc}); fix the syntax (see docs/systems.md)") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text (UTF-8) TOML file; give a system file") from None


def _structure_positions(spec: str, base: Path) -> np.ndarray:
    """``(n_atoms, 3)`` nm of a structure given as ``file`` or ``file:frame`` (any format mdtraj reads alone)."""
    name, _, frame = spec.partition(":") if not Path(base / spec).is_file() else (spec, "", "")
    path = Path(name) if Path(name).is_absolute() else base / name
    if not path.is_file():
        raise FileNotFoundError(f"state structure not found: {path}; fix the path in the system file")
    try:
        if path.suffix.lower() == ".pdb" and not frame:  # OpenMM's reader: full float64 precision of the text
            return np.asarray(app.PDBFile(str(path)).getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        traj = mdtraj.load(str(path))
        return np.asarray(traj.xyz[int(frame) if frame else 0], dtype=np.float64)
    except (IndexError, ValueError) as exc:
        raise ValueError(f"cannot read state structure {spec} ({exc}".splitlines()[0] + "); give a PDB file or "
                         "file:frame") from None


def place_solute(system: MolecularSystem, solute_xyz: np.ndarray, what: str) -> np.ndarray:
    """Full-system positions ``(n_atoms, 3)`` nm: the system's reference positions with the solute
    atoms replaced by ``solute_xyz`` (superposed onto the reference solute), then the solvent
    relaxed around the held solute (for explicit water; a no-op in vacuum/implicit)."""
    solute = system.solute_indices
    if len(solute_xyz) == system.n_atoms:
        return solute_xyz
    if len(solute_xyz) != len(solute):
        raise ValueError(f"{what} has {len(solute_xyz)} atoms; the system has {system.n_atoms} atoms of which "
                         f"{len(solute)} are solute: give the whole system or the solute only")
    full = system.positions.copy()
    full[solute] = superpose(solute_xyz, system.positions[solute])
    return minimize_with_held_atoms(system, full, solute)


def load_system_file(path: str | os.PathLike, temperature: float | None = None,
                     platform: str | None = None) -> MolecularSystem:
    """The :class:`MolecularSystem` of a TOML system file (``temperature`` K and ``platform`` override the file's)."""
    path = Path(path)
    cfg = _check_keys("", _read(path), SYSTEM_FILE_KEYS[""], path)
    base = path.parent
    for table in ("structure", "forcefield", "solvent", "dynamics", "model"):
        _check_keys(f"[{table}]", cfg.get(table, {}), SYSTEM_FILE_KEYS[table], path)
    if "structure" not in cfg:
        raise ValueError(f"{path}: no [structure] table; give e.g. [structure] pdb = \"my.pdb\"")
    try:
        forcefield = ForceFieldSettings(**{k: tuple(v) if k == "files" else v
                                           for k, v in cfg.get("forcefield", {}).items()})
        solvent = Solvent(**{k: tuple(v) if k == "box" and isinstance(v, list) else v
                             for k, v in cfg.get("solvent", {}).items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    states_cfg = cfg.get("states", {})
    _check_keys("[states]", states_cfg, set(states_cfg), path)
    structure = read_structure(cfg["structure"], base)
    cache = cache_dir() / f"{path.stem}-{_cache_key(path, cfg, base)}.npz"
    cached = _read_cache(cache) or {}
    if "solvated_pdb" in cached:
        structure = _solvated_structure(structure, cached)
    solvated_here = solvent.kind == "explicit" and "solvated_pdb" not in cached and not any(
        is_solvent(r) for r in structure.topology.residues())
    conformations = {}
    for name, st in states_cfg.items():
        _check_keys(f"[states.{name}]", st, SYSTEM_FILE_KEYS["state"], path)
        files = st.get("structures", [])
        files = [files] if isinstance(files, str) else list(files)
        conformations[name] = [_structure_positions(f, base) for f in files]
    solute_confs = [x for xs in conformations.values() for x in xs if len(x) != len(structure.positions)]
    system = MolecularSystem.from_files(structure, forcefield, solvent,
                                        cfg.get("temperature", 300.0) if temperature is None else temperature,
                                        other_conformations=solute_confs, name=str(cfg.get("name", path.stem)),
                                        platform=cfg.get("platform"))
    if platform is not None:
        system.platform = platform
    timestep = cfg.get("dynamics", {}).get("timestep")
    if timestep is not None:
        if not (isinstance(timestep, (int, float)) and 0 < timestep <= 0.01):
            raise ValueError(f"{path}: [dynamics] timestep must be in (0, 0.01] ps; got {timestep}")
        system.timestep = float(timestep)
    system.model_atoms = str(cfg.get("model", {}).get("atoms", "heavy"))
    try:
        n_model = len(system.md_topology.select(resolve_selection(system.model_atoms)))
    except ValueError as exc:
        raise ValueError(f"{path}: [model] atoms {system.model_atoms!r} is not a valid mdtraj selection "
                         f"({str(exc).splitlines()[0]})") from None
    if n_model < 3:
        raise ValueError(f"{path}: [model] atoms {system.model_atoms!r} selects {n_model} atoms; select at least 3")
    try:
        cvs = {name: cv_from_dict(d, system.md_topology, base, name=name) for name, d in cfg.get("cvs", {}).items()}
        states = [state_from_dict(name, {k: v for k, v in st.items() if k not in ("structures", "minimize")}, cvs)
                  for name, st in states_cfg.items()]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    system.cvs = cvs
    system.states = {s.name: s for s in states}
    new_cache = {}
    if solvated_here:
        text = io.StringIO()
        app.PDBFile.writeFile(system.topology, system.positions * unit.nanometer, text, keepIds=True)
        new_cache.update(solvated_pdb=np.array(text.getvalue()), solvated_positions=system.positions,
                         solvated_box=system.box)
    for name, xs in conformations.items():
        if not xs:
            continue
        if f"state:{name}" in cached:
            system.state_positions[name] = np.asarray(cached[f"state:{name}"], dtype=np.float64)
            continue
        x = place_solute(system, xs[0], f"the structure of state {name!r}")
        how = states_cfg[name].get("minimize", True)
        if how == "fixed-dihedrals":
            x = minimize_with_fixed_torsions(system, x, [cv for cv in system.states[name].cvs
                                                         if isinstance(cv, Dihedral)])
        elif how is True:
            periodic = system.box is not None  # explicit water: remove clashes, MD equilibrates the rest
            x = system.minimize(x, tolerance=10.0 if periodic else 1.0, max_iterations=1000 if periodic else 0)
        elif how is not False:
            raise ValueError(f"{path}: [states.{name}] minimize must be true, false or \"fixed-dihedrals\"; got "
                             f"{how!r}")
        system.state_positions[name] = new_cache[f"state:{name}"] = x
        inside = system.states[name].contains(system.to_trajectory(x))[0]
        if not inside:
            warnings.warn(f"{path}: the (minimised) structure of state {name!r} lies outside the state's definition; "
                          "widen the bounds or give another structure", RuntimeWarning, stacklevel=2)
    if new_cache:
        _write_cache(cache, {**{k: v for k, v in cached.items()}, **new_cache})
    if system.state_positions:
        system.positions = next(iter(system.state_positions.values())).copy()
    system.info.update({"system_file": str(path.resolve()), "description": cfg.get("description", "")})
    return system


#: Bump when the preparation (solvation, placement, minimisation) changes: old cache entries are then ignored.
PREPARATION_FORMAT = 2


def cache_dir() -> Path:
    """Where prepared systems are cached: ``$TPS_DIFFUSION_CACHE/systems`` or ``~/.cache/tps_diffusion/systems``."""
    root = os.environ.get("TPS_DIFFUSION_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
        "tps_diffusion"
    return Path(root) / "systems"


def _cache_key(path: Path, cfg: dict, base: Path) -> str:
    """sha256 of the system file, every file it names, the OpenMM version and :data:`PREPARATION_FORMAT`."""
    h = hashlib.sha256(path.read_bytes())
    h.update(f"{openmm.__version__}/{PREPARATION_FORMAT}".encode())
    names = [v for table in ("structure", "cvs", "states") for v in _strings(cfg.get(table, {}))]
    for name in sorted(set(names)):
        f = Path(name.partition(":")[0]) if not (base / name).is_file() else Path(name)
        f = f if f.is_absolute() else base / f
        if f.is_file():
            h.update(name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:32]


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _read_cache(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # missing or damaged: prepare again


def _write_cache(path: Path, arrays: dict) -> None:
    try:
        with atomic_path(path, overwrite=True) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    except OSError as exc:  # a read-only home: work without the cache
        warnings.warn(f"cannot cache the prepared system in {path.parent} ({exc}); set TPS_DIFFUSION_CACHE to a "
                      "writable directory to load it faster next time", RuntimeWarning, stacklevel=3)


def _solvated_structure(structure: Structure, cached: dict) -> Structure:
    """``structure`` with the cached solvated topology and positions (no new solvation: same waters every time)."""
    pdb = app.PDBFile(io.StringIO(str(cached["solvated_pdb"])))
    box = np.asarray(cached["solvated_box"], dtype=np.float64)
    pdb.topology.setPeriodicBoxVectors([openmm.Vec3(*v) for v in box])
    return Structure("pdb", pdb.topology, np.asarray(cached["solvated_positions"], dtype=np.float64), box,
                     structure.files)
