"""What the commands read: systems by name, structures given as a state name or a file, one path
of a multi-path trajectory, atom selections."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..molecular.catalogue import get_system
from ..molecular.formats import load_trajectory
from ..molecular.model import resolve_selection
from ..molecular.system import MolecularSystem
from .rundir import PROG, Run, read_json

DEFAULT_SYSTEM = "alanine_dipeptide"


def load_system(name: str | None, temperature: float | None = None) -> MolecularSystem:
    """The system of ``--system`` (a built-in name or a system file); the default system with a note."""
    if name is None:
        name = DEFAULT_SYSTEM
        print(f"{PROG}: note: no --system given; using the built-in {name} (give --system NAME|FILE.toml for your "
              "molecule)", file=sys.stderr)
    if temperature is None:
        return get_system(name)
    try:
        return get_system(name, temperature=float(temperature))
    except TypeError:  # a registered factory without a temperature argument
        system = get_system(name)
        system.temperature = float(temperature)
        return system


def system_ref(system: MolecularSystem) -> str:
    """What ``--system`` later commands are given for ``system``: its system file (absolute path), else its name."""
    return system.info.get("system_file") or system.name


def system_info(system: MolecularSystem) -> dict:
    return {"name": system.name, "ref": system_ref(system), "n_atoms": system.n_atoms,
            "temperature_K": system.temperature, "states": sorted(system.states), "info": system.info}


def structure(system: MolecularSystem, spec: str):
    """A state name (returned as is) or the first frame of a structure file (mdtraj frame)."""
    if spec in system.state_positions:
        return spec
    p = Path(spec)
    if p.exists() or p.suffix.lower() in (".pdb", ".h5", ".dcd", ".xtc", ".gro", ".cif", ".mol2"):
        return load_trajectory(p, top=system)[0]
    return spec  # the library names the known states


def spec_input(run: Run, key: str, spec: str | None) -> None:
    if spec is not None and Path(spec).is_file():
        run.input(key, spec)


def load_path(args) -> tuple[Any, dict, int, int]:
    """(path trajectory, sidecar dict, n_paths, frames_per_path) of ``--paths``/``--path-index``."""
    traj = load_trajectory(args.paths, args.top)
    side = read_json(Path(args.paths).with_suffix(".json")) or {}
    fpp = int(args.frames_per_path or side.get("frames_per_path") or traj.n_frames)
    if fpp < 1 or traj.n_frames % fpp:
        raise ValueError(f"{args.paths} has {traj.n_frames} frames, not a multiple of --frames-per-path {fpp}")
    n_paths = traj.n_frames // fpp
    i = args.path_index
    if not 0 <= i < n_paths:
        raise IndexError(f"--path-index {i} out of range: {args.paths} holds {n_paths} path(s) of {fpp} frames")
    return traj[i * fpp:(i + 1) * fpp], side, n_paths, fpp


def atom_selection(top, selection: str) -> np.ndarray:
    try:
        idx = top.select(resolve_selection(selection))
    except Exception as exc:  # noqa: BLE001 - mdtraj raises several types for bad selections
        raise ValueError(f"invalid atom selection {selection!r}: {exc}".splitlines()[0]) from None
    if len(idx) == 0:
        raise ValueError(f"atom selection {selection!r} matched no atoms")
    return idx
