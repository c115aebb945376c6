"""Command line interface: ``tps-diffusion <command> ...`` (a thin layer over the Python API).

Commands::

    bench     benchmarks (aldp2d, aldp, kernel) -> one JSON report
    simulate  Langevin MD from named states          -> samples.h5 (or .dcd + .pdb)
    train     denoiser on MD samples                 -> model.pt (resumable)
    geodesic  spacetime geodesic between two states  -> geodesic.npz + geodesic.png
    sample    annealed Langevin paths under OpenMM   -> paths.dcd + paths.pdb + paths.npz/json + paths.png
    export    PLUMED PATHMSD / string images / OpenMM State XML / OpenPathSampling
    analyze   committor of frames of a path          -> committor.json + committor.png
    run       simulate -> train -> geodesic -> sample -> export (-> analyze) from one config file

Every command except ``bench`` writes into a run directory (``--run-dir``, default
``runs/<command>-<timestamp>``) together with ``manifest.json``: inputs (paths and sha256),
settings, versions, outputs (paths and sha256), wall time and the command line. A run directory
that already holds files is refused unless ``--overwrite``. Relative output names given to a
command (``--plumed DIR``, ``--images-out FILE``) are placed inside the run directory.

Library errors are reported as one line ``tps-diffusion: error: <message>`` (exit 1; usage
errors exit 2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

PROG = "tps-diffusion"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tps_diffusion.manifest/1"
PATHS_FORMAT = "tps_diffusion.paths/1"
STAGES = ("simulate", "train", "geodesic", "sample", "export", "analyze")
BENCHMARKS = ("aldp2d", "aldp", "kernel")
#: errors of the library that are reported as one line (anything else is a bug: traceback)
USER_ERRORS = (OSError, ValueError, RuntimeError, KeyError, IndexError, ImportError, ArithmeticError)

#: library defaults quoted in --help (kept equal to pipeline.MOLECULAR_TRAINING / TrainConfig and
#: pipeline.MOLECULAR_GEODESIC by tests/test_cli.py; the CLI passes nothing when an option is omitted)
TRAIN_DEFAULTS = dict(steps=6000, batch_size=512, lr=2e-3, warmup=200, hidden=256, depth=4, lam_min=-10.0, lam_max=10.0,
                      lam_sampling="importance", checkpoint_every=1000)
GEODESIC_DEFAULTS = dict(lam_end=4.0, n_points=64, n_nodes=2, steps=300, lr=0.1, rho_var=1.0, rho_kl=150.0)


# ---------------------------------------------------------------------------------------------
# argument parsing


class UsageError(Exception):
    """Bad command line (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message, and no SystemExit
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action):  # show defaults, but not "(default: None)" / for flags
        text = action.help or ""
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS or "%(default)" in text:
            return text
        return text + " (default: %(default)s)"


def _common(p: argparse.ArgumentParser, run_dir: bool = True) -> None:
    g = p.add_argument_group("common options")
    if run_dir:
        g.add_argument("--run-dir", type=Path, metavar="DIR",
                       help="output directory with manifest.json (default: runs/<command>-<timestamp>)")
        g.add_argument("--overwrite", action="store_true", help="write into a run directory that already holds outputs, replacing them")
    g.add_argument("--quiet", action="store_true", help="no progress bars and no summary lines")
    g.add_argument("--debug", action="store_true", help="show the full traceback of errors")


def _system_arg(p, required=False, help_extra=""):
    p.add_argument("--system", metavar="NAME", required=required,
                   help=f"registered molecular system, e.g. alanine_dipeptide, alanine_dipeptide_obc2{help_extra}")


def _path_args(p) -> None:
    p.add_argument("--paths", type=Path, required=True, metavar="FILE",
                   help="path trajectory written by 'sample' (paths.dcd; any format mdtraj reads; positions in nm)")
    p.add_argument("--top", type=Path, metavar="PDB",
                   help="topology for coordinate-only formats (default: <paths stem>.pdb next to the file)")
    p.add_argument("--path-index", type=int, default=0, metavar="I", help="which path of the file (0-based)")
    p.add_argument("--frames-per-path", type=int, metavar="T",
                   help="frames per path in the file (default: from <paths stem>.json written by 'sample', else the whole file is one path)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, formatter_class=_Formatter,
                     description="Transition paths between metastable states from spacetime geodesics of diffusion models, "
                                 "sampled under a real force field (OpenMM). Units: nm, ps, K, kJ/mol; log-SNR in nats of SNR.",
                     epilog=f"'{PROG} <command> --help' lists the options of a command with their units.")
    from . import __version__

    T, G = TRAIN_DEFAULTS, GEODESIC_DEFAULTS

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)
    sub.required = True

    def add(name, help_, description):
        p = sub.add_parser(name, help=help_, description=description, formatter_class=_Formatter)
        return p

    # ----- bench
    p = add("bench", "run a benchmark and write a JSON report",
            "Benchmarks: aldp2d (2-D alanine dipeptide surface, Table 1), aldp (all-atom alanine dipeptide under "
            "OpenMM), kernel (throughput of the geodesic energy and samplers). Energies in the reports: kT for aldp2d, "
            "kJ/mol for aldp; times in s.")
    p.add_argument("benchmark", choices=BENCHMARKS, help="which benchmark")
    p.add_argument("--out", type=Path, required=True, metavar="JSON", help="report file (figures go next to it)")
    p.add_argument("--paths", type=int, metavar="N", help="transition paths per mode (aldp2d, aldp; default: the recipe's)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="reduced recipe (minutes on a CPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    _common(p, run_dir=False)
    p.set_defaults(func=cmd_bench, manifest=False)

    # ----- simulate
    p = add("simulate", "Langevin MD samples started from named states",
            "Independent Langevin runs (OpenMM LangevinMiddleIntegrator) started from the structures of named "
            "metastable states; every frame is written to one trajectory (samples.h5, or samples.dcd + samples.pdb) "
            "with the potential energies (kJ/mol) in samples.npz.")
    _system_arg(p, help_extra=" (default: alanine_dipeptide)")
    p.add_argument("--states", nargs="+", metavar="STATE", help="start states, e.g. C5 C7ax (default: every state with a structure)")
    p.add_argument("--steps", type=int, default=10_000, metavar="N", help="production steps per run (one step = --timestep ps)")
    p.add_argument("--temperature", type=float, metavar="K", help="temperature in K (default: the system's, 300 K)")
    p.add_argument("--timestep", type=float, metavar="PS", help="time step in ps (default: 0.001 ps with flexible X-H bonds, 0.002 ps constrained)")
    p.add_argument("--friction", type=float, metavar="1/PS", help="Langevin friction in 1/ps (default: 1/ps)")
    p.add_argument("--runs-per-state", type=int, default=1, metavar="R", help="independent runs (seeds) per start state")
    p.add_argument("--report-interval", type=int, default=100, metavar="STEPS", help="record a frame every this many steps")
    p.add_argument("--equilibration", type=int, default=0, metavar="STEPS", help="unrecorded steps before production")
    p.add_argument("--seed", type=int, default=0, help="random seed (velocities and Langevin noise)")
    p.add_argument("--platform", metavar="NAME", help="OpenMM platform: Reference, CPU, CUDA, OpenCL (default: Reference below 200 atoms)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="parallel processes (one run each)")
    p.add_argument("--format", default="h5", choices=("h5", "dcd", "xtc"),
                   help="trajectory format (h5 carries the topology; dcd/xtc get samples.pdb; positions in nm)")
    _common(p)
    p.set_defaults(func=cmd_simulate)

    # ----- train
    p = add("train", "train the Cartesian denoiser on MD samples",
            "Featurise MD samples (selected atoms Kabsch-aligned, centred, scaled by one length in nm) and train the "
            "denoiser on them; writes model.pt, checkpointed every --checkpoint-every steps. After an interruption "
            "continue with the same command plus --run-dir DIR --resume.")
    p.add_argument("--data", type=Path, nargs="+", required=True, metavar="TRAJ",
                   help="MD samples: .h5 / .pdb, or .dcd / .xtc with --top (positions in nm); several files are concatenated")
    p.add_argument("--top", type=Path, metavar="PDB", help="topology for coordinate-only formats (default: the system's topology)")
    _system_arg(p, help_extra=" (default: the system of the simulate run that wrote --data, else alanine_dipeptide)")
    p.add_argument("--selection", default="heavy", metavar="SEL",
                   help="atoms of the model: heavy, all, backbone or an mdtraj selection string")
    p.add_argument("--steps", type=int, metavar="N", help=f"optimiser steps (default: {T['steps']})")
    p.add_argument("--batch-size", type=int, metavar="B", help=f"samples per step (default: {T['batch_size']})")
    p.add_argument("--lr", type=float, help=f"peak learning rate of Adam (default: {T['lr']})")
    p.add_argument("--warmup", type=int, metavar="N", help=f"linear warm-up steps (default: {T['warmup']})")
    p.add_argument("--hidden", type=int, metavar="H", help=f"width of the MLP (default: {T['hidden']})")
    p.add_argument("--depth", type=int, metavar="L", help=f"hidden layers of the MLP (default: {T['depth']})")
    p.add_argument("--lam-min", type=float, metavar="LAMBDA", help=f"lowest training log-SNR (default: {T['lam_min']})")
    p.add_argument("--lam-max", type=float, metavar="LAMBDA", help=f"highest training log-SNR (default: {T['lam_max']})")
    p.add_argument("--lam-sampling", choices=("uniform", "importance"), help=f"how training log-SNR values are drawn (default: {T['lam_sampling']})")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help=f"save model.pt every N steps (default: {T['checkpoint_every']})")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training from DIR/model.pt (needs --run-dir DIR)")
    _common(p)
    p.set_defaults(func=cmd_train)

    # ----- geodesic
    p = add("geodesic", "optimise a spacetime geodesic between two endpoints",
            "Geodesic in the model's spacetime (log-SNR lambda, features x) between two endpoints at log-SNR "
            "--lam-end; writes geodesic.npz (lam, x, config, endpoints) and geodesic.png (log-SNR along the curve).")
    p.add_argument("--model", type=Path, required=True, metavar="CKPT", help="checkpoint written by 'train' (model.pt)")
    _system_arg(p, help_extra=" (default: the model's)")
    p.add_argument("--start", required=True, metavar="STATE|FILE", help="start: state name (e.g. C5) or a structure file (first frame; nm)")
    p.add_argument("--end", required=True, metavar="STATE|FILE", help="end: state name (e.g. C7ax) or a structure file (first frame; nm)")
    p.add_argument("--mode", default="unconstrained", choices=("unconstrained", "low_variance", "avoid"),
                   help="unconstrained; low_variance keeps log-SNR >= --rho-var; avoid also keeps KL from --avoid >= --rho-kl")
    p.add_argument("--avoid", metavar="STATE|FILE", help="forbidden region for --mode avoid: state name or structure file")
    p.add_argument("--avoid-lam", type=float, metavar="LAMBDA", help="log-SNR of the forbidden spacetime point (default: --lam-end)")
    p.add_argument("--rho-var", type=float, metavar="LAMBDA", help=f"lowest allowed log-SNR for low_variance/avoid (default: {G['rho_var']})")
    p.add_argument("--rho-kl", type=float, metavar="NATS", help=f"smallest allowed KL divergence from the forbidden point, in nats (default: {G['rho_kl']})")
    p.add_argument("--lam-end", type=float, metavar="LAMBDA", help=f"log-SNR of the endpoints (default: {G['lam_end']})")
    p.add_argument("--points", type=int, metavar="N", help=f"points on the curve (default: {G['n_points']})")
    p.add_argument("--nodes", type=int, metavar="M", help=f"spline nodes (default: {G['n_nodes']})")
    p.add_argument("--steps", type=int, metavar="N", help=f"Adam steps (default: {G['steps']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default: {G['lr']})")
    p.add_argument("--probes", type=int, metavar="P", help="Hutchinson probes for the divergence (default: exact divergence)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-check", action="store_true", help="skip the check that the endpoints lie inside the training data")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    _common(p)
    p.set_defaults(func=cmd_geodesic)

    # ----- sample
    p = add("sample", "annealed Langevin transition paths under the force field",
            "Transition paths along a geodesic: for every curve point --steps-per-point Langevin steps under the force "
            "field with a harmonic restraint (kJ/mol/nm^2) towards the point's target structure. Writes paths.dcd + "
            "paths.pdb (all paths, one after another), paths.npz (energies in kJ/mol), paths.json and paths.png "
            "(paths in CV space, e.g. phi/psi in rad, and energy along the paths).")
    p.add_argument("--model", type=Path, metavar="CKPT", help="checkpoint written by 'train' (default: the one the geodesic was made with)")
    p.add_argument("--geodesic", type=Path, required=True, metavar="NPZ", help="curve written by 'geodesic' (geodesic.npz)")
    _system_arg(p, help_extra=" (default: the geodesic's)")
    p.add_argument("--paths", type=int, default=10, metavar="P", help="number of paths")
    p.add_argument("--steps-per-point", type=int, default=32, metavar="K", help="Langevin steps per curve point (each path makes N*K steps)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="parallel processes")
    p.add_argument("--friction", type=float, metavar="1/PS", help="Langevin friction in 1/ps (default: 1/ps)")
    p.add_argument("--timestep", type=float, metavar="PS", help="time step in ps (default: 0.001 ps with flexible X-H bonds, 0.002 ps constrained)")
    p.add_argument("--temperature", type=float, metavar="K",
                   help="temperature in K; also sets kT of the restraint (default: that of the model's training data)")
    p.add_argument("--record-interval", type=int, default=1, metavar="STEPS", help="record a frame every this many steps (must divide K)")
    p.add_argument("--start", metavar="STATE|FILE", help="start structure (default: the geodesic's start)")
    p.add_argument("--platform", metavar="NAME", help="OpenMM platform (default: Reference below 200 atoms)")
    _common(p)
    p.set_defaults(func=cmd_sample)

    # ----- export
    p = add("export", "hand a path to PLUMED, string/NEB methods, OpenMM or OpenPathSampling",
            "Export one path of a trajectory: PLUMED PATHMSD reference (PDB in Angstrom, LAMBDA in nm^-2), "
            "string/NEB images equally spaced in RMSD (nm), OpenMM State XML files, or an OpenPathSampling "
            "initial trajectory and engine.")
    _path_args(p)
    _system_arg(p, help_extra=" for --state-xml/--ops (default: from <paths stem>.json)")
    p.add_argument("--selection", default="heavy", metavar="SEL",
                   help="atoms for the RMSD (nm) and the PATHMSD reference: heavy, all, backbone or an mdtraj selection")
    p.add_argument("--plumed", nargs="?", const="plumed", metavar="DIR", help="write path_msd.pdb + plumed.dat into DIR (inside the run dir)")
    p.add_argument("--frames", type=int, default=20, metavar="M", help="PATHMSD reference frames, equally spaced in RMSD (nm)")
    p.add_argument("--images", type=int, metavar="N", help="write N string/NEB images equally spaced in RMSD (nm)")
    p.add_argument("--smooth", type=int, metavar="FRAMES",
                   help="average the aligned path over this many frames before spacing (default: path frames / output frames; 1 = raw)")
    p.add_argument("--images-out", default="images.pdb", metavar="FILE", help="images file (.pdb, .h5, .dcd, .xtc; inside the run dir)")
    p.add_argument("--state-xml", type=int, nargs="+", metavar="FRAME", help="write OpenMM State XML files (positions nm, velocities nm/ps) of these frames")
    p.add_argument("--velocity-temperature", type=float, metavar="K",
                   help="Maxwell-Boltzmann velocities of the State XML / temperature of the OPS engine in K (default: the system's)")
    p.add_argument("--ops", action="store_true", help="write an OpenPathSampling storage (ops.nc) with the path and an OpenMM engine")
    p.add_argument("--ops-timestep", type=float, default=0.001, metavar="PS", help="time step of the OPS engine in ps")
    p.add_argument("--ops-friction", type=float, default=1.0, metavar="1/PS", help="friction of the OPS engine in 1/ps")
    p.add_argument("--ops-steps-per-frame", type=int, default=10, metavar="STEPS", help="MD steps per saved OPS frame")
    p.add_argument("--seed", type=int, default=0, help="random seed (State XML velocities)")
    _common(p)
    p.set_defaults(func=cmd_export)

    # ----- analyze
    p = add("analyze", "committor of chosen frames of a path",
            "Committor p_B of frames of a path by unbiased Langevin shooting (OpenMM): every shot gets fresh "
            "Maxwell-Boltzmann velocities and runs until it enters state A or B (or --max-steps). Writes committor.json "
            "(p_B with Wilson confidence interval per frame, transition-state-ensemble frames) and committor.png.")
    _path_args(p)
    _system_arg(p, help_extra=" (default: from <paths stem>.json)")
    p.add_argument("--frames", type=int, nargs="+", metavar="FRAME", help="frames of the path (default: 10 evenly spaced)")
    p.add_argument("--state-a", metavar="STATE", help="state A (default: the state of the path's first frame)")
    p.add_argument("--state-b", metavar="STATE", help="state B (default: the state of the path's last frame)")
    p.add_argument("--shots", type=int, default=20, metavar="M", help="shots per frame")
    p.add_argument("--max-steps", type=int, default=10_000, metavar="STEPS", help="a shot still in neither state after this many steps is undecided")
    p.add_argument("--check-interval", type=int, default=10, metavar="STEPS", help="test for A/B every this many steps")
    p.add_argument("--temperature", type=float, metavar="K", help="temperature in K (default: the system's, 300 K)")
    p.add_argument("--timestep", type=float, metavar="PS", help="time step in ps (default: 0.001 ps with flexible X-H bonds)")
    p.add_argument("--friction", type=float, default=1.0, metavar="1/PS", help="Langevin friction in 1/ps")
    p.add_argument("--tse-tol", type=float, default=0.1, metavar="P", help="frames with |p_B - 0.5| < P form the transition-state ensemble")
    p.add_argument("--platform", metavar="NAME", help="OpenMM platform (default: Reference below 200 atoms)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    _common(p)
    p.set_defaults(func=cmd_analyze)

    # ----- run
    p = add("run", "the whole pipeline from one config file",
            "simulate -> train -> geodesic -> sample -> export (-> analyze) from one JSON or TOML file. Sections "
            "[simulate], [train], [geodesic], [sample], [export], [analyze] take the long options of those commands "
            "(steps-per-point = 16 or steps_per_point = 16; units as in their --help); top-level keys system, seed, "
            "device, platform, run-dir, overwrite apply to every section. Inputs of a stage default to the outputs "
            "of the previous one; each stage writes into RUN_DIR/<stage>/. See examples/aldp_small.toml.")
    p.add_argument("--config", type=Path, required=True, metavar="FILE", help="pipeline config (.toml or .json)")
    _common(p)
    p.set_defaults(func=cmd_run)
    return parser


# ---------------------------------------------------------------------------------------------
# run directories and manifests


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_entry(path: str | os.PathLike) -> dict:
    p = Path(path)
    if p.is_dir():
        return {"path": str(p.resolve()), "files": [_file_entry(f) for f in sorted(p.rglob("*")) if f.is_file()]}
    return {"path": str(p.resolve()), "sha256": sha256(p), "bytes": p.stat().st_size}


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    return str(obj)


def _versions() -> dict:
    from .training import versions

    out = versions()
    for mod in ("openmm", "mdtraj"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional information
            pass
    return out


class Run:
    """A run directory: checks it is free, collects inputs/outputs, writes ``manifest.json``."""

    def __init__(self, command: str, args: argparse.Namespace, argv: Sequence[str], allow_existing: bool = False):
        self.command = command
        self.args = args
        self.argv = list(argv)
        self.overwrite = bool(getattr(args, "overwrite", False))
        self.progress = not args.quiet
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        if args.run_dir is None:
            base = Path("runs") / f"{command}-{stamp}"
            d, i = base, 1
            while d.exists():
                i += 1
                d = base.with_name(f"{base.name}-{i}")
            self.dir = d
        else:
            self.dir = Path(args.run_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise FileExistsError(f"--run-dir {self.dir} exists and is not a directory")
        if self.dir.is_dir() and any(self.dir.iterdir()) and not (self.overwrite or allow_existing):
            old = _read_json(self.dir / MANIFEST) or {}
            hint = " (or --resume to continue the interrupted training)" if old.get("status") == "interrupted" and command == "train" else ""
            raise FileExistsError(f"run directory {self.dir} already holds outputs; pass --overwrite to replace them{hint} or choose another --run-dir")
        self.created = not self.dir.exists()
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def path(self, name: str | os.PathLike) -> Path:
        """``name`` inside the run directory (absolute paths are kept); creates the directory."""
        self.dir.mkdir(parents=True, exist_ok=True)
        p = Path(name)
        return p if p.is_absolute() else self.dir / p

    def input(self, key: str, path) -> None:
        if isinstance(path, (list, tuple)):
            self.inputs[key] = [_file_entry(p) for p in path]
        else:
            self.inputs[key] = _file_entry(path)

    def output(self, key: str, path) -> None:
        self.outputs[key] = _file_entry(path)

    def manifest(self, status: str = "ok") -> dict:
        settings = {k: v for k, v in vars(self.args).items() if k not in ("func", "manifest", "debug", "quiet")}
        return _jsonable({
            "format": MANIFEST_FORMAT,
            "command": self.command,
            "command_line": [PROG, *self.argv],
            "cwd": os.getcwd(),
            "status": status,
            "started": self.started,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": time.perf_counter() - self.t0,
            "run_dir": str(self.dir.resolve()),
            "settings": settings,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "results": self.results,
            "versions": _versions(),
        })

    def finish(self, status: str = "ok") -> dict:
        from .io import write_json

        manifest = self.manifest(status)
        write_json(self.path(MANIFEST), manifest, overwrite=True)  # the directory was checked on entry
        return manifest

    def cleanup_if_empty(self) -> None:
        if self.created and self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()


def _say(args, msg: str) -> None:
    if not args.quiet:
        print(msg, flush=True)


def _given(args, names: dict[str, str]) -> dict:
    """``{library_name: value}`` for the options in ``names`` that were given (not None)."""
    out = {}
    for opt, key in names.items():
        v = getattr(args, opt)
        if v is not None:
            out[key] = v
    return out


def _save_figure(fig, path: Path, overwrite: bool) -> None:
    import matplotlib.pyplot as plt

    from .io import atomic_path

    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------------------------
# shared helpers: systems, structures, paths


def _get_system(name: str | None, temperature: float | None = None):
    from .molecule import get_system

    name = name or "alanine_dipeptide"
    if temperature is None:
        return get_system(name)
    try:
        return get_system(name, temperature=float(temperature))
    except TypeError:  # a registered factory without a temperature argument
        system = get_system(name)
        system.temperature = float(temperature)
        return system


def _read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            d = json.load(fh)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _producer_manifest(path: Path) -> dict | None:
    """The manifest.json of the run that wrote ``path`` (same directory), if any."""
    return _read_json(Path(path).parent / MANIFEST)


def _system_info(system) -> dict:
    return {"name": system.name, "n_atoms": system.n_atoms, "temperature_K": system.temperature,
            "states": sorted(system.states), "info": system.info}


def _structure(system, spec: str):
    """A state name (returned as is) or the first frame of a structure file (mdtraj frame)."""
    if spec in system.state_positions:
        return spec
    p = Path(spec)
    if p.exists() or p.suffix.lower() in (".pdb", ".h5", ".dcd", ".xtc", ".gro", ".cif", ".mol2"):
        from .export import load_trajectory

        return load_trajectory(p, top=system)[0]
    return spec  # the library names the known states


def _spec_input(run: Run, key: str, spec: str | None) -> None:
    if spec is not None and Path(spec).is_file():
        run.input(key, spec)


def _load_path(args) -> tuple[Any, dict, int, int]:
    """(path trajectory, sidecar dict, n_paths, frames_per_path) of ``--paths``/``--path-index``."""
    from .export import load_trajectory

    traj = load_trajectory(args.paths, args.top)
    side = _read_json(Path(args.paths).with_suffix(".json")) or {}
    fpp = args.frames_per_path or side.get("frames_per_path") or traj.n_frames
    fpp = int(fpp)
    if fpp < 1 or traj.n_frames % fpp:
        raise ValueError(f"{args.paths} has {traj.n_frames} frames, not a multiple of --frames-per-path {fpp}")
    n_paths = traj.n_frames // fpp
    i = args.path_index
    if not 0 <= i < n_paths:
        raise IndexError(f"--path-index {i} out of range: {args.paths} holds {n_paths} path(s) of {fpp} frames")
    return traj[i * fpp:(i + 1) * fpp], side, n_paths, fpp


def _atom_selection(top, selection: str):
    from .pipeline import resolve_selection

    try:
        idx = top.select(resolve_selection(selection))
    except Exception as exc:  # noqa: BLE001 - mdtraj raises several types for bad selections
        raise ValueError(f"invalid atom selection {selection!r}: {exc}".splitlines()[0]) from None
    if len(idx) == 0:
        raise ValueError(f"atom selection {selection!r} matched no atoms")
    return idx


# ---------------------------------------------------------------------------------------------
# commands


def cmd_bench(args, argv) -> dict | None:
    import importlib
    import inspect

    try:
        mod = importlib.import_module(f".bench.{args.benchmark}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(f"bench.{args.benchmark}"):
            raise RuntimeError(f"benchmark {args.benchmark!r} is not available in this installation (tps_diffusion/bench/{args.benchmark}.py missing)") from None
        raise
    params = inspect.signature(mod.run).parameters
    kw = dict(out=args.out, quick=args.quick, device=args.device, overwrite=args.overwrite, progress=not args.quiet)
    if "seed" in params:
        kw["seed"] = args.seed
    if args.paths is not None:
        if "n_paths" not in params:
            raise ValueError(f"--paths does not apply to bench {args.benchmark}")
        kw["n_paths"] = args.paths
    mod.run(**{k: v for k, v in kw.items() if k in params})
    _say(args, f"bench {args.benchmark}: wrote {args.out}")
    return None


def cmd_simulate(args, run: Run) -> None:
    import numpy as np

    from .export import write_trajectory
    from .io import atomic_path
    from .md import run_md

    system = _get_system(args.system, args.temperature)
    states = args.states or sorted(system.state_positions)
    if not states:
        raise ValueError(f"system {system.name} has no state structures; cannot start MD from states")
    kw = _given(args, {"temperature": "temperature", "timestep": "timestep", "friction": "friction", "platform": "platform"})
    md = run_md(system, list(states), n_steps=args.steps, report_interval=args.report_interval, seed=args.seed,
                n_runs_per_start=args.runs_per_state, n_equilibration=args.equilibration, n_workers=args.workers,
                progress=run.progress, **kw)
    traj_path = run.path(f"samples.{args.format}")
    write_trajectory(md.trajectory, traj_path, overwrite=run.overwrite, topology_pdb=args.format in ("dcd", "xtc"))
    run.output("trajectory", traj_path)
    if args.format in ("dcd", "xtc"):
        run.output("topology", traj_path.with_suffix(".pdb"))
    npz = run.path("samples.npz")
    with atomic_path(npz, run.overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, potential_energy_kJ_mol=md.potential_energy, run_index=md.run_index, time_ps=md.trajectory.time,
                 seeds=np.asarray(md.seeds), start_states=np.repeat(np.asarray(states), args.runs_per_state))
    run.output("energies", npz)
    assigned = system.assign_states(md.trajectory)
    occupancy = {name: float(np.mean(assigned == name)) for name in system.states}
    occupancy["none"] = float(np.mean(assigned == ""))
    run.inputs["system"] = _system_info(system)
    run.results = {"n_frames": md.trajectory.n_frames, "n_runs": md.n_runs, "start_states": states,
                   "state_occupancy": occupancy, "n_force_evaluations": md.n_force_evaluations,
                   "steps_per_second": md.steps_per_second, "md_wall_time_s": md.wall_time_s,
                   "potential_energy_kJ_mol": {"mean": float(md.potential_energy.mean()), "min": float(md.potential_energy.min()),
                                               "max": float(md.potential_energy.max())},
                   "md_settings": md.settings}
    _say(args, f"simulate: {md.trajectory.n_frames} frames from {md.n_runs} runs -> {traj_path}")


def cmd_train(args, run: Run) -> None:
    from dataclasses import asdict

    from .md import load_samples
    from .pipeline import train_on_samples

    for f in args.data:
        if not Path(f).is_file():
            raise FileNotFoundError(f"--data file not found: {f}")
    producer = _producer_manifest(args.data[0]) or {}
    sim_settings = producer.get("settings", {}) if producer.get("command") == "simulate" else {}
    system = _get_system(args.system or sim_settings.get("system"), sim_settings.get("temperature"))
    traj = load_samples(args.data, top=args.top if args.top is not None else system)
    run.input("data", args.data)
    if args.top is not None:
        run.input("top", args.top)
    run.inputs["system"] = _system_info(system)
    recipe = {"files": [str(Path(f).resolve()) for f in args.data], "n_frames": traj.n_frames}
    if sim_settings:
        recipe["simulate"] = {**sim_settings, "md_settings": producer.get("results", {}).get("md_settings")}
    model_cfg = _given(args, {"hidden": "hidden", "depth": "depth"})
    train_cfg = _given(args, {"steps": "steps", "batch_size": "batch_size", "lr": "lr", "warmup": "warmup",
                              "lam_min": "lam_min", "lam_max": "lam_max", "lam_sampling": "lam_sampling",
                              "checkpoint_every": "checkpoint_every", "seed": "seed"})
    ckpt = run.path("model.pt")
    if args.resume and not ckpt.is_file():
        _say(args, f"train: no checkpoint in {run.dir} yet; starting from scratch")
    try:
        model = train_on_samples(system, traj, args.selection, model_config=model_cfg, train_config=train_cfg,
                                 checkpoint=ckpt, overwrite=run.overwrite, resume=args.resume, data_recipe=recipe,
                                 device=args.device, progress=run.progress)
    except KeyboardInterrupt:
        if ckpt.is_file():
            run.output("checkpoint", ckpt)
            run.finish("interrupted")
            raise KeyboardInterrupt(f"training interrupted; continue from the last checkpoint with: "
                                    f"{PROG} train ... --run-dir {run.dir} --resume") from None
        raise
    run.output("checkpoint", ckpt)
    feat = model.featurizer
    run.results = {"n_samples": traj.n_frames, "n_features": feat.n_features, "n_selected_atoms": feat.n_selected,
                   "feature_scale_nm": feat.scale, "train_seconds": model.metadata.get("seconds"),
                   "train_config": asdict(model.train_config), "model_config": model.denoiser.config.to_dict()}
    _say(args, f"train: {traj.n_frames} samples x {feat.n_features} features -> {ckpt}")


def cmd_geodesic(args, run: Run) -> None:
    from . import pipeline

    if args.mode == "avoid" and args.avoid is None:
        raise ValueError("--mode avoid needs --avoid STATE|FILE (the forbidden region)")
    model = pipeline.load_model(args.model, None, device=args.device)
    system = _get_system(args.system or model.metadata.get("system"))
    pipeline.get_featurizer(model, system)
    run.input("model", args.model)
    for key in ("start", "end", "avoid"):
        _spec_input(run, key, getattr(args, key))
    run.inputs["system"] = _system_info(system)
    start, end = _structure(system, args.start), _structure(system, args.end)
    avoid = None if args.avoid is None else _structure(system, args.avoid)
    overrides = _given(args, {"rho_var": "rho_var", "rho_kl": "rho_kl", "lam_end": "lam_end", "points": "n_points",
                              "nodes": "n_nodes", "steps": "steps", "lr": "lr", "probes": "n_probes", "seed": "seed"})
    geo = pipeline.molecular_geodesic(model, system, start, end, mode=args.mode, avoid=avoid if args.mode == "avoid" else None,
                                      avoid_lam=args.avoid_lam, check=not args.no_check, progress=run.progress, **overrides)
    label = lambda s: s if isinstance(s, str) else "frame"  # noqa: E731
    out = run.path("geodesic.npz")
    pipeline.save_geodesic(out, geo, run.overwrite, system=system.name, model=str(Path(args.model).resolve()),
                           model_sha256=sha256(Path(args.model)),
                           start_label=args.start if isinstance(start, str) else str(args.start),
                           end_label=args.end if isinstance(end, str) else str(args.end))
    run.output("geodesic", out)

    plt = _pyplot()
    from .plotting import plot_log_snr

    cfg = geo.config
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_log_snr(geo.lam[0].detach().cpu().numpy(), ax=ax, threshold=cfg.rho_var if cfg.mode != "unconstrained" else None,
                 label=f"geodesic ({cfg.mode})")
    ax.set_title(f"{system.name}: {label(start)} -> {label(end)}")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    png = run.path("geodesic.png")
    _save_figure(fig, png, run.overwrite)
    run.output("plot", png)
    run.results = {"min_lambda": float(geo.min_lambda.min()), "curve_energy": float(geo.energy[0]),
                   "curve_length": float(geo.length[0]), "steps_done": geo.steps_done, "seconds": geo.seconds,
                   "message": geo.message, "config": cfg.to_dict(),
                   "min_kl_nats": None if geo.kl is None else float(geo.kl.min())}
    if geo.message:
        print(f"{PROG}: warning: {geo.message}", file=sys.stderr)
    _say(args, f"geodesic: {cfg.mode}, min log-SNR {float(geo.min_lambda.min()):.3g} -> {out}")


def _cv_plot(ax, system, trajectories):
    import numpy as np

    from .plotting import plot_paths

    cvs = list(system.cvs.values())[:2]
    if len(cvs) < 2:
        ax.set_visible(False)
        return
    values = np.stack([np.stack([cv.compute(t) for cv in cvs], -1) for t in trajectories])
    periodic = all(cv.periodic for cv in cvs)
    plot_paths(values, ax=ax, n_show=50, periodic=periodic, color="C0", alpha=0.5)
    for s in system.states.values():
        if [cv.name for cv in s.cvs] == [cv.name for cv in cvs]:
            ax.add_patch(_state_circle(s.centre, s.radius))
            ax.annotate(s.name, s.centre, ha="center", va="center", fontsize=8)
    if periodic:
        ax.set_xlim(-np.pi, np.pi)
        ax.set_ylim(-np.pi, np.pi)
        ax.set_aspect("equal")
    ax.set_xlabel(f"{cvs[0].name} ({cvs[0].units})")
    ax.set_ylabel(f"{cvs[1].name} ({cvs[1].units})")


def _state_circle(centre, radius):
    import matplotlib.patches as mpatches

    return mpatches.Circle(tuple(centre), radius, fill=False, ls="--", color="k", lw=0.8)


def cmd_sample(args, run: Run) -> None:
    import numpy as np

    from . import pipeline
    from .export import write_trajectory
    from .io import atomic_path, write_json

    geo, stored = pipeline.load_geodesic(args.geodesic)
    model_path = args.model if args.model is not None else Path(str(stored["model"]))
    model = pipeline.load_model(model_path, None, device="cpu")
    if sha256(model_path) != str(stored["model_sha256"]):
        warnings.warn(f"{model_path} is not the model the geodesic was made with", RuntimeWarning, stacklevel=1)
    temperature = args.temperature if args.temperature is not None else model.metadata.get("temperature")
    system = _get_system(args.system or str(stored["system"]), temperature)
    pipeline.get_featurizer(model, system)
    run.input("geodesic", args.geodesic)
    run.input("model", model_path)
    _spec_input(run, "start", args.start)
    run.inputs["system"] = _system_info(system)
    start = None
    if args.start is not None:
        s = _structure(system, args.start)
        start = s if isinstance(s, str) else np.asarray(s.xyz[0], dtype=float)
    kw = _given(args, {"friction": "friction", "timestep": "timestep", "temperature": "temperature", "platform": "platform"})
    ps = pipeline.sample_molecular_paths(system, model, geo, n_paths=args.paths, steps_per_point=args.steps_per_point,
                                         seed=args.seed, n_workers=args.workers, start=start,
                                         record_interval=args.record_interval, progress=run.progress, **kw)
    dcd = run.path("paths.dcd")
    write_trajectory(ps.joined(), dcd, overwrite=run.overwrite, topology_pdb=True)
    run.output("paths", dcd)
    run.output("topology", dcd.with_suffix(".pdb"))
    npz = run.path("paths.npz")
    with atomic_path(npz, run.overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, energies_kJ_mol=ps.energies, tilt_energies_kJ_mol=ps.tilt_energies, point_index=ps.point_index,
                 time_ps=ps.trajectories[0].time)
    run.output("energies", npz)

    end_label = geo.molecular["end"][0][1]
    reached = None
    if end_label in system.states:
        reached = system.states[end_label].contains(ps.final_frames()).tolist()
    max_e = ps.max_energy()
    frames_per_path = ps.trajectories[0].n_frames
    info = {"format": PATHS_FORMAT, "system": system.name, "n_paths": ps.n_paths, "frames_per_path": frames_per_path,
            "trajectory": dcd.name, "topology": dcd.with_suffix(".pdb").name, "energies": npz.name,
            "start": geo.molecular["start"][0][1] if start is None else args.start, "end": end_label,
            "end_state_reached": reached, "max_energy_kJ_mol": max_e, "n_force_evaluations": ps.n_force_evaluations,
            "n_energy_evaluations": ps.n_energy_evaluations, "seeds": ps.seeds, "settings": ps.settings,
            "wall_time_s": ps.wall_time_s}
    js = run.path("paths.json")
    write_json(js, _jsonable(info), run.overwrite)
    run.output("summary", js)

    plt = _pyplot()
    from .plotting import plot_path_energies

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    _cv_plot(ax1, system, ps.trajectories)
    ax1.set_title(f"{ps.n_paths} paths, {system.name}")
    plot_path_energies(ps.energies, ax=ax2, n_show=50)
    ax2.set_title("force-field energy along the paths")
    fig.tight_layout()
    png = run.path("paths.png")
    _save_figure(fig, png, run.overwrite)
    run.output("plot", png)
    finite = max_e[np.isfinite(max_e)]
    run.results = {"n_paths": ps.n_paths, "frames_per_path": frames_per_path,
                   "max_energy_kJ_mol": {"mean": float(finite.mean()) if len(finite) else None,
                                         "std": float(finite.std()) if len(finite) else None,
                                         "min": float(finite.min()) if len(finite) else None},
                   "end_state": end_label, "end_state_hit_rate": None if reached is None else float(np.mean(reached)),
                   "n_force_evaluations": ps.n_force_evaluations, "sampling_wall_time_s": ps.wall_time_s,
                   "sampler_settings": ps.settings}
    hits = "" if reached is None else f", {np.mean(reached):.0%} end in {end_label}"
    _say(args, f"sample: {ps.n_paths} paths x {frames_per_path} frames{hits} -> {dcd}")


def _smoothing(args, path, n_out: int) -> int:
    """Window of the running mean applied before equal-RMSD spacing (``--smooth``, else automatic)."""
    return args.smooth if args.smooth is not None else max(1, path.n_frames // n_out)


def cmd_export(args, run: Run) -> None:
    from . import pathcv

    if not (args.plumed or args.images or args.state_xml or args.ops):
        raise ValueError("nothing to export: give --plumed [DIR], --images N, --state-xml FRAME ... and/or --ops")
    path, side, n_paths, fpp = _load_path(args)
    run.input("paths", args.paths)
    if args.top is not None:
        run.input("top", args.top)
    idx = _atom_selection(path.topology, args.selection)
    run.results = {"path_index": args.path_index, "n_paths_in_file": n_paths, "frames_per_path": fpp, "n_atoms_selected": len(idx)}
    system = None
    if args.state_xml or args.ops:
        system = _get_system(args.system or side.get("system"))
        run.inputs["system"] = _system_info(system)
    temperature = args.velocity_temperature if args.velocity_temperature is not None else (system.temperature if system else None)
    if args.plumed:
        res = pathcv.write_plumed_path(path, run.path(args.plumed), n_frames=args.frames, atom_indices=idx, overwrite=run.overwrite,
                                       smooth=_smoothing(args, path, args.frames))
        run.output("plumed_reference", res["pdb"])
        run.output("plumed_input", res["plumed"])
        run.results["plumed"] = {"n_frames": res["n_frames"], "lambda_per_nm2": res["lambda"], "mean_msd_nm2": res["mean_msd"]}
    if args.images:
        res = pathcv.write_string_images(path, run.path(args.images_out), args.images, run.overwrite, atom_indices=idx,
                                         smooth=_smoothing(args, path, args.images))
        run.output("images", res["images"])
        if res["topology"] is not None:
            run.output("images_topology", res["topology"])
        run.results["images"] = {"n_images": args.images}
    if args.state_xml:
        files = pathcv.write_state_xml(system.system, path, args.state_xml, run.path("states"), temperature=temperature,
                                       overwrite=run.overwrite, seed=args.seed)
        for f, p in zip(args.state_xml, files):
            run.output(f"state_xml_{f}", p)
        run.results["state_xml"] = {"frames": args.state_xml, "velocity_temperature_K": temperature}
    if args.ops:
        out = run.path("ops.nc")
        _write_ops(path, system, out, temperature, args, run.overwrite)
        run.output("ops_storage", out)
        run.results["ops"] = {"temperature_K": temperature, "timestep_ps": args.ops_timestep, "friction_per_ps": args.ops_friction,
                              "n_steps_per_frame": args.ops_steps_per_frame}
    _say(args, f"export: path {args.path_index} ({fpp} frames) -> {run.dir}")


def _write_ops(path, system, out: Path, temperature: float, args, overwrite: bool) -> None:
    from .io import atomic_path
    from .pathcv import to_openpathsampling

    handoff = to_openpathsampling(path, system.system, temperature=temperature, timestep=args.ops_timestep,
                                  friction=args.ops_friction, n_steps_per_frame=args.ops_steps_per_frame)
    import openpathsampling as ops

    with atomic_path(out, overwrite) as tmp:
        storage = ops.Storage(str(tmp), "w")
        try:
            storage.save(handoff.engine)
            storage.save(handoff.trajectory)
            storage.tags["initial_trajectory"] = handoff.trajectory
            storage.tags["engine"] = handoff.engine
        finally:
            storage.close()


def cmd_analyze(args, run: Run) -> None:
    import numpy as np

    from .committor import committor, plot_committor, transition_state_ensemble

    path, side, n_paths, fpp = _load_path(args)
    run.input("paths", args.paths)
    if args.top is not None:
        run.input("top", args.top)
    system = _get_system(args.system or side.get("system"), args.temperature)
    run.inputs["system"] = _system_info(system)
    if path.n_atoms != system.n_atoms:
        raise ValueError(f"the path has {path.n_atoms} atoms, system {system.name} has {system.n_atoms}")
    assigned = system.assign_states(path[[0, -1]])
    a = args.state_a or assigned[0]
    b = args.state_b or assigned[1]
    for which, name, opt in (("first", a, "--state-a"), ("last", b, "--state-b")):
        if not name:
            raise ValueError(f"the path's {which} frame lies in no state; name the state with {opt} (known: {', '.join(system.states)})")
        if name not in system.states:
            raise ValueError(f"unknown state {name!r} for {system.name}; known states: {', '.join(system.states)}")
    if a == b:
        raise ValueError(f"states A and B are both {a!r}; pass different --state-a/--state-b")
    frames = args.frames if args.frames else sorted(set(np.linspace(0, fpp - 1, min(10, fpp)).round().astype(int).tolist()))
    for f in frames:
        if not -fpp <= f < fpp:
            raise IndexError(f"frame {f} out of range for a path of {fpp} frames")
    frames = [int(f) % fpp for f in frames]
    sa, sb = system.states[a], system.states[b]
    in_a = lambda x: sa.contains(system.to_trajectory(x))  # noqa: E731
    in_b = lambda x: sb.contains(system.to_trajectory(x))  # noqa: E731
    timestep = args.timestep if args.timestep is not None else system.default_timestep()
    res = committor(system.system, path.xyz[frames], in_a, in_b, n_shots=args.shots, max_steps=args.max_steps,
                    check_interval=args.check_interval, temperature=system.temperature, timestep=timestep,
                    friction=args.friction, platform=system.platform_name(args.platform), seed=args.seed,
                    progress=run.progress)
    tse = transition_state_ensemble(res, tol=args.tse_tol)
    report = {"state_a": a, "state_b": b, "path_index": args.path_index, "frames": frames,
              "transition_state_ensemble": {"frames": [frames[i] for i in tse], "indices": tse.tolist(), "tol": args.tse_tol},
              **res.as_dict()}
    from .io import write_json

    js = run.path("committor.json")
    write_json(js, _jsonable(report), run.overwrite)
    run.output("committor", js)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_committor(res, ax=ax, x=np.asarray(frames))
    ax.set_xlabel(f"frame of path {args.path_index}")
    ax.set_title(f"committor to {b} (from {a})")
    fig.tight_layout()
    png = run.path("committor.png")
    _save_figure(fig, png, run.overwrite)
    run.output("plot", png)
    run.results = {"state_a": a, "state_b": b, "frames": frames, "p_B": report["p_B"], "ci_low": report["ci_low"],
                   "ci_high": report["ci_high"], "tse_frames": report["transition_state_ensemble"]["frames"],
                   "n_force_evaluations": res.n_force_evaluations}
    _say(args, f"analyze: committor of {len(frames)} frames ({args.shots} shots each) -> {js}")


# ----- run (the whole pipeline)

#: top-level config keys and the stages that take them as options
_GLOBAL_KEYS = ("system", "seed", "device", "platform")


def _load_config(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON: {exc}") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError:
                raise ImportError("TOML configs need Python >= 3.11 (tomllib) or 'pip install tomli'; or use a .json config") from None
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: invalid TOML: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the config must be a table/object of sections")
    return cfg


def _norm_key(key: str) -> str:
    return key.replace("_", "-")


def _section_argv(section: dict, stage: str) -> list[str]:
    argv = []
    for key, value in section.items():
        if isinstance(value, dict):
            raise ValueError(f"config [{stage}]: key {key!r} is a table; use plain values")
        opt = f"--{_norm_key(key)}"
        if value is None or value is False:
            continue
        if value is True:
            argv.append(opt)
        elif isinstance(value, list):
            argv += [opt, *map(str, value)]
        else:
            argv += [opt, str(value)]
    return argv


def cmd_run(args, run: Run) -> None:
    cfg = _load_config(args.config)
    run.input("config", args.config)
    top = {_norm_key(k): v for k, v in cfg.items() if not isinstance(v, dict)}
    sections = {k: v for k, v in cfg.items() if isinstance(v, dict)}
    unknown = set(sections) - set(STAGES)
    if unknown:
        raise ValueError(f"{args.config}: unknown section(s) {sorted(unknown)}; sections: {', '.join(STAGES)}")
    bad = set(top) - set(_GLOBAL_KEYS) - {"run-dir", "overwrite", "quiet"}
    if bad:
        raise ValueError(f"{args.config}: unknown top-level key(s) {sorted(bad)}; allowed: {', '.join(_GLOBAL_KEYS)}, run-dir, overwrite, quiet")
    if not sections:
        raise ValueError(f"{args.config}: no stage sections; give some of [{'], ['.join(STAGES)}]")
    parser = build_parser()
    quiet = args.quiet or bool(top.get("quiet"))
    produced: dict[str, dict] = {}
    stages_done = []
    for stage in STAGES:
        if stage not in sections:
            continue
        section = {_norm_key(k): v for k, v in sections[stage].items()}
        if "run-dir" in section:
            raise ValueError(f"config [{stage}]: run-dir is set per stage automatically (RUN_DIR/{stage})")
        sub_actions = {a.dest.replace("_", "-") for a in parser._subparsers._group_actions[0].choices[stage]._actions}  # noqa: SLF001
        for key in _GLOBAL_KEYS:
            if key in top and key not in section and key in sub_actions:
                section[key] = top[key]
        _wire_inputs(stage, section, produced)
        argv = [stage, *_section_argv(section, stage), "--run-dir", str(run.path(stage))]
        if run.overwrite:
            argv.append("--overwrite")
        if quiet:
            argv.append("--quiet")
        try:
            sub_args = parser.parse_args(argv)
        except UsageError as exc:
            msg = str(exc).replace(f"(see '{PROG} --help')", f"(see '{PROG} {stage} --help')")
            raise ValueError(f"config [{stage}]: {msg} (keys are the long options)") from None
        if not quiet:
            print(f"== {stage}: {PROG} {' '.join(argv)}", flush=True)
        try:
            manifest = _execute(sub_args, argv)
        except USER_ERRORS as exc:
            raise RuntimeError(f"stage {stage}: {_one_line(exc)}") from exc
        produced[stage] = manifest
        stages_done.append({"stage": stage, "run_dir": manifest["run_dir"], "command_line": manifest["command_line"],
                            "wall_time_s": manifest["wall_time_s"]})
        run.outputs[f"{stage}_manifest"] = _file_entry(run.path(stage) / MANIFEST)
    run.results = {"stages": stages_done, "config": cfg}
    _say(args, f"run: {len(stages_done)} stages -> {run.dir}")


def _out(manifest: dict, key: str) -> str:
    return manifest["outputs"][key]["path"]


def _wire_inputs(stage: str, section: dict, produced: dict) -> None:
    """Fill a stage's inputs from the outputs of earlier stages (unless the config gives them)."""
    if stage == "train" and "data" not in section and "simulate" in produced:
        section["data"] = [_out(produced["simulate"], "trajectory")]
        if "topology" in produced["simulate"]["outputs"] and "top" not in section:
            section["top"] = _out(produced["simulate"], "topology")
    if stage == "geodesic" and "model" not in section and "train" in produced:
        section["model"] = _out(produced["train"], "checkpoint")
    if stage == "sample":
        if "geodesic" not in section and "geodesic" in produced:
            section["geodesic"] = _out(produced["geodesic"], "geodesic")
        if "model" not in section and "train" in produced:
            section["model"] = _out(produced["train"], "checkpoint")
    if stage in ("export", "analyze") and "paths" not in section and "sample" in produced:
        section["paths"] = _out(produced["sample"], "paths")
        section.setdefault("top", _out(produced["sample"], "topology"))


# ---------------------------------------------------------------------------------------------
# entry point


def _one_line(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename and not str(msg).strip():
        msg = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    lines = [line.strip() for line in str(msg).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__


def _execute(args, argv: Sequence[str]) -> dict | None:
    """Run one parsed command; returns its manifest (None for bench)."""
    if not getattr(args, "manifest", True):
        return args.func(args, argv)
    run = Run(args.command, args, argv, allow_existing=getattr(args, "resume", False))
    try:
        args.func(args, run)
    except BaseException:
        run.cleanup_if_empty()
        raise
    manifest = run.finish()
    _say(args, f"{args.command}: manifest {run.dir / MANIFEST}")
    return manifest


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"{PROG}: warning: {_one_line(message) if isinstance(message, BaseException) else str(message).splitlines()[0]}",
          file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tps-diffusion``; returns the exit code (0 ok, 1 error, 2 usage error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        msg = str(exc)
        cmd = next((a for a in argv if not a.startswith("-")), None)
        if cmd in (*STAGES, "run", "bench"):  # unrecognized arguments are reported by the top-level parser
            msg = msg.replace(f"(see '{PROG} --help')", f"(see '{PROG} {cmd} --help')")
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _show_warning
        try:
            _execute(args, argv)
        except KeyboardInterrupt as exc:
            if debug:
                raise
            print(f"{PROG}: {exc.args[0] if exc.args else 'interrupted'}", file=sys.stderr)
            return 130
        except UsageError as exc:
            if debug:
                raise
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        except USER_ERRORS as exc:
            if debug:
                raise
            print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
