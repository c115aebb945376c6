"""What the commands read: systems by name, structures given as a state name or a file, pairs of
endpoints, one path of a multi-path trajectory, atom selections."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..molecular.catalogue import get_system
from ..molecular.formats import load_trajectory
from ..molecular.geodesic import ALL_PAIRS, PAIR_SEPARATOR, endpoint_pairs
from ..molecular.model import resolve_selection
from ..molecular.restrained import PathSet
from ..molecular.system import MolecularSystem
from .parser import UsageError
from .rundir import PROG, Run, producer_manifest, read_json

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


def geodesic_pairs(args, system: MolecularSystem) -> dict[str, tuple[Any, Any]]:
    """The endpoint pairs of 'geodesic' as ``{name: (start, end)}``: ``--start``/``--end`` (one pair,
    named ``START:END`` as given), ``--pairs all|START:END,...`` or ``--pairs-file FILE`` (one pair a line,
    ``START END`` or ``START:END``; ``#`` starts a comment). An endpoint of ``--pairs``/``--pairs-file`` is a
    state name or a 0-based frame index of ``--trajectory`` (the pair is named as written, e.g. ``12:C7ax``).

    Raises
    ------
    UsageError
        Contradictory or missing options.
    ValueError, IndexError
        One line naming the fix, before any long work: no pairs, an unknown state, a frame index out of
        range or without ``--trajectory``, a pair whose start is its end, a pair given twice.
    """
    ways = [opt for opt, value in (("--start/--end", args.start is not None or args.end is not None),
                                   ("--pairs", args.pairs is not None), ("--pairs-file", args.pairs_file is not None))
            if value]
    if len(ways) != 1:
        what = "got " + " and ".join(ways) if ways else "got none"
        raise UsageError(f"give the endpoints as --start and --end, --pairs or --pairs-file ({what}) (see "
                         f"'{PROG} geodesic --help')")
    if ways[0] == "--start/--end":
        if args.start is None or args.end is None:
            raise UsageError(f"--start and --end go together (see '{PROG} geodesic --help')")
        if args.trajectory is not None:
            raise UsageError(f"--trajectory applies to --pairs/--pairs-file (see '{PROG} geodesic --help')")
        return endpoint_pairs(system, {f"{args.start}{PAIR_SEPARATOR}{args.end}": (structure(system, args.start),
                                                                               structure(system, args.end))})
    if args.pairs == ALL_PAIRS:
        return endpoint_pairs(system, ALL_PAIRS)
    if args.pairs is not None:
        items = [("--pairs", item.strip()) for item in args.pairs.split(",") if item.strip()]
    else:
        try:
            lines = Path(args.pairs_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read --pairs-file {args.pairs_file}: {exc}") from None
        items = [(f"{args.pairs_file}:{n}", line.split("#", 1)[0].strip()) for n, line in enumerate(lines, 1)]
        items = [(where, item) for where, item in items if item]
    if not items:
        raise ValueError(f"{ways[0]} gives no pairs; give START{PAIR_SEPARATOR}END pairs of state names or frame "
                         f"indices, e.g. --pairs C5{PAIR_SEPARATOR}C7ax, or --pairs {ALL_PAIRS}")
    frames = None  # --trajectory, read when a frame index asks for it

    def endpoint(token: str, where: str):
        nonlocal frames
        if token in system.state_positions:
            return token
        if not re.fullmatch(r"[+-]?\d+", token):
            raise ValueError(f"{where}: unknown state {token!r} for {system.name}; known states: "
                             f"{', '.join(system.state_positions) or 'none'}, or a frame index of --trajectory")
        if args.trajectory is None:
            raise ValueError(f"{where}: frame index {token} needs --trajectory TRAJ (the trajectory it indexes)")
        frames = load_trajectory(args.trajectory, top=system) if frames is None else frames
        i = int(token)
        if not 0 <= i < frames.n_frames:
            raise IndexError(f"{where}: frame {i} is out of range: {args.trajectory} has {frames.n_frames} frames "
                             f"(0 .. {frames.n_frames - 1})")
        return frames[i]

    named: dict[str, tuple[Any, Any]] = {}
    for where, item in items:
        tokens = re.split(rf"\s*{re.escape(PAIR_SEPARATOR)}\s*|\s+", item)
        if len(tokens) != 2 or not all(tokens):
            raise ValueError(f"{where}: {item!r} is not a pair; write START{PAIR_SEPARATOR}END (state names or frame "
                             f"indices of --trajectory)")
        name = PAIR_SEPARATOR.join(tokens)
        if name in named:
            raise ValueError(f"{where}: pair {name!r} is given twice; give each pair once")
        named[name] = (endpoint(tokens[0], where), endpoint(tokens[1], where))
    return endpoint_pairs(system, named)


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


def load_pathset(spec: str | Path) -> tuple[PathSet, dict, Path]:
    """The paths written by 'sample' (its run directory or its ``paths.dcd``) as a PathSet, with the
    ``paths.json`` record and the trajectory file; one-line errors for missing or changed files."""
    spec = Path(spec)
    dcd = spec / "paths.dcd" if spec.is_dir() else spec
    side = read_json(dcd.with_suffix(".json"))
    if side is None or not {"frames_per_path", "n_paths", "energies"} <= set(side):
        raise FileNotFoundError(f"{dcd.with_suffix('.json')} (written by 'sample' next to its paths) is missing or "
                                f"incomplete; give --paths the run directory of '{PROG} sample'")
    producer_manifest(dcd)
    traj = load_trajectory(dcd, dcd.with_name(side.get("topology", dcd.with_suffix(".pdb").name)))
    fpp, n_paths = int(side["frames_per_path"]), int(side["n_paths"])
    if traj.n_frames != fpp * n_paths:
        raise ValueError(f"{dcd} has {traj.n_frames} frames, not {n_paths} paths x {fpp} frames as {dcd.stem}.json "
                         f"says; the files do not belong together: rerun '{PROG} sample'")
    with np.load(dcd.with_name(side["energies"])) as z:
        energies, tilt, point_index, time = (z["energies_kJ_mol"], z["tilt_energies_kJ_mol"], z["point_index"],
                                             z["time_ps"])
    trajectories = [traj[i * fpp:(i + 1) * fpp] for i in range(n_paths)]
    for t in trajectories:
        t.time = time
    ps = PathSet(trajectories=trajectories, energies=energies, tilt_energies=tilt, point_index=point_index,
                 n_force_evaluations=int(side.get("n_force_evaluations", 0)),
                 n_energy_evaluations=int(side.get("n_energy_evaluations", 0)), seeds=side.get("seeds", []),
                 settings=side.get("settings", {}), wall_time_s=float(side.get("wall_time_s", 0.0)))
    return ps, side, dcd


def atom_selection(top, selection: str) -> np.ndarray:
    try:
        idx = top.select(resolve_selection(selection))
    except Exception as exc:  # noqa: BLE001 - mdtraj raises several types for bad selections
        raise ValueError(f"invalid atom selection {selection!r}: {exc}".splitlines()[0]) from None
    if len(idx) == 0:
        raise ValueError(f"atom selection {selection!r} matched no atoms")
    return idx
