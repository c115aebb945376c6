"""The ``tps-diffusion`` argument parser: one sub-command per pipeline stage, options with their units.

Defaults quoted in ``--help`` are the library's own (:data:`~tps_diffusion.molecular.model.MOLECULAR_TRAINING`,
:class:`~tps_diffusion.core.training.TrainConfig`, :data:`~tps_diffusion.molecular.geodesic.MOLECULAR_GEODESIC`);
the CLI passes nothing for an option that was omitted.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from ..cluster import CLUSTERS
from ..core.training import TrainConfig
from ..molecular.geodesic import MOLECULAR_GEODESIC
from ..molecular.model import MOLECULAR_TRAINING
from .rundir import PROG

STAGES = ("simulate", "train", "geodesic", "sample", "shoot", "export", "analyze")
BENCHMARKS = ("aldp2d", "aldp", "chignolin", "kernel", "muller-brown")

#: library defaults quoted in --help
TRAIN_DEFAULTS = {**asdict(TrainConfig()), **MOLECULAR_TRAINING["train"], **MOLECULAR_TRAINING["model"]}
GEODESIC_DEFAULTS = dict(MOLECULAR_GEODESIC)


class UsageError(Exception):
    """Bad command line (exit code 2)."""


#: allowed ranges of the numeric options: "command --option" or "--option" -> (lowest, lowest is allowed,
#: highest); ints have no other limits, floats must be finite. Options not listed take any int / finite float.
LIMITS = {
    "export --frames": (2, True, None), "bench --paths": (1, True, None),
    "--steps": (1, True, None), "--paths": (1, True, None), "--runs-per-state": (1, True, None),
    "--report-interval": (1, True, None), "--equilibration": (0, True, None), "--workers": (1, True, 256),
    "--batch-size": (1, True, None), "--warmup": (0, True, None), "--hidden": (1, True, None),
    "--depth": (1, True, None),
    "--checkpoint-every": (1, True, None), "--points": (3, True, None), "--nodes": (1, True, None),
    "--probes": (0, True, None), "--steps-per-point": (1, True, None), "--record-interval": (1, True, None),
    "--path-index": (0, True, None), "--frames-per-path": (1, True, None), "--images": (2, True, None),
    "--smooth": (1, True, None), "--ops-steps-per-frame": (1, True, None), "--shots": (1, True, None),
    "--max-steps": (1, True, None), "--check-interval": (1, True, None), "--seed": (0, True, 2**32 - 1),
    "--temperature": (0.0, False, None), "--timestep": (0.0, False, 0.01), "--friction": (0.0, True, None),
    "--lr": (0.0, False, None), "--velocity-temperature": (0.0, False, None), "--ops-timestep": (0.0, False, 0.01),
    "--ops-friction": (0.0, True, None), "--min-stiffness": (0.0, False, None), "--max-stiffness": (0.0, False, None),
    "--tse-tol": (0.0, False, 0.5), "--lam-min": (-30.0, True, 30.0),
    "--lam-max": (-30.0, True, 30.0), "--lam-end": (-30.0, True, 30.0), "--avoid-lam": (-30.0, True, 30.0),
    "--rho-var": (-30.0, True, 30.0), "--rho-kl": (0.0, True, None), "--max-ps": (0.0, False, None),
    "--tps-moves": (0, True, None), "--per-path": (1, True, None), "--spacing": (1, True, None),
    "--plumed-frames": (2, True, None), "--jobs": (1, True, 100_000),
}


def checked(kind: type, option: str, command: str = ""):
    """An argparse ``type`` that reads an int (``1e6`` is fine when integral) or a finite float and
    checks :data:`LIMITS`, with a message naming the allowed range."""
    low, inclusive, high = LIMITS.get(f"{command} {option}", LIMITS.get(option, (None, True, None)))

    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if kind is int:
            if value != int(value):
                raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
            value = int(value)
        if low is not None and (value < low or (value == low and not inclusive)):
            raise argparse.ArgumentTypeError(f"{text} is too small: must be {'>=' if inclusive else '>'} {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text} is too large: must be <= {high}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises :class:`UsageError` (one line) instead of exiting, and records
    the destinations of its options (``option_dests``) so that the config runner can tell which
    top-level config keys a command takes."""

    def __init__(self, *args, **kwargs):
        self.option_dests: set[str] = set()
        self.commands: dict[str, Parser] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        if kwargs.get("type") in (int, float):
            kwargs["type"] = checked(kwargs["type"], args[0], self.prog.split()[-1])
        action = super().add_argument(*args, **kwargs)
        self.option_dests.add(action.dest)
        return action

    def error(self, message):  # one line instead of usage + message, and no SystemExit
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action):  # show defaults, but not "(default: None)" / for flags
        text = action.help or ""
        if (action.default is None or action.default is False or action.default == argparse.SUPPRESS
                or "%(default)" in text):
            return text
        return text + " (default: %(default)s)"


def _common(p: Parser, run_dir: bool = True) -> None:
    g = p.add_argument_group("common options")
    actions = []
    if run_dir:
        actions.append(g.add_argument("--run-dir", type=Path, metavar="DIR",
                                      help="output directory with manifest.json (default: runs/<command>-<timestamp>)"))
        actions.append(g.add_argument("--overwrite", action="store_true",
                                      help="write into a run directory that already holds outputs, replacing them"))
    actions.append(g.add_argument("--quiet", action="store_true", help="no progress bars and no summary lines"))
    actions.append(g.add_argument("--debug", action="store_true", help="show the full traceback of errors"))
    p.option_dests.update(a.dest for a in actions)


def _executor_options(p) -> None:
    g = p.add_argument_group("distributed execution (Dask; docs/distributed.md)")
    actions = [
        g.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the parallel work on the workers of a running Dask scheduler: its address "
                            "(tcp://HOST:8786) or scheduler file (.json)"),
        g.add_argument("--cluster", choices=CLUSTERS,
                       help="start a Dask cluster for this command: local (worker processes on this machine), slurm "
                            "or pbs (batch jobs through dask-jobqueue)"),
        g.add_argument("--cluster-config", type=Path, metavar="FILE",
                       help="TOML of cluster keywords: for slurm/pbs dask-jobqueue's (queue, account, cores, memory, "
                            "walltime, job_extra_directives, job_script_prologue, ...; examples/cluster_slurm.toml)"),
        g.add_argument("--jobs", type=checked(int, "--jobs"), metavar="N",
                       help="--cluster local: worker processes (default: one per core); slurm/pbs: batch jobs to "
                            "submit (default 1)"),
    ]
    p.option_dests.update(a.dest for a in actions)


def _system_arg(p, required=False, help_extra=""):
    p.add_argument("--system", metavar="NAME|FILE.toml", required=required,
                   help="a system file (TOML: structure, force field, solvent, states; docs/systems.md) or a built-in "
                        f"name: alanine_dipeptide[_obc2|_tip3p], chignolin[_obc2|_gbn2]{help_extra}")


def _path_args(p) -> None:
    p.add_argument("--paths", type=Path, required=True, metavar="FILE",
                   help="path trajectory written by 'sample' (paths.dcd; any format mdtraj reads; positions in nm)")
    p.add_argument("--top", type=Path, metavar="PDB",
                   help="topology for coordinate-only formats (default: <paths stem>.pdb next to the file)")
    p.add_argument("--path-index", type=int, default=0, metavar="I", help="which path of the file (0-based)")
    p.add_argument("--frames-per-path", type=int, metavar="T",
                   help="frames per path in the file (default: from <paths stem>.json written by 'sample', "
                        "else the whole file is one path)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, formatter_class=_Formatter,
                     description="Transition paths between metastable states from spacetime geodesics of diffusion "
                                 "models, sampled under a real force field (OpenMM). Units: nm, ps, K, kJ/mol; "
                                 "log-SNR in nats of SNR.",
                     epilog=f"'{PROG} <command> --help' lists the options of a command with their units.")
    T, G = TRAIN_DEFAULTS, GEODESIC_DEFAULTS

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=Parser)
    sub.required = True

    def add(name, help_, description):
        p = sub.add_parser(name, help=help_, description=description, formatter_class=_Formatter)
        parser.commands[name] = p
        return p

    # ----- bench
    p = add("bench", "run a benchmark and write a JSON report",
            "Benchmarks: aldp2d (2-D alanine dipeptide surface, Table 1), aldp (all-atom alanine dipeptide under "
            "OpenMM), chignolin (unfolded -> folded in implicit water, scored with the TPS-DPS protocol), kernel "
            "(throughput of the geodesic energy and samplers). Energies in the reports: kT for aldp2d, kJ/mol for aldp "
            "and chignolin; times in s.")
    p.add_argument("benchmark", choices=BENCHMARKS, help="which benchmark")
    p.add_argument("--out", type=Path, required=True, metavar="JSON", help="report file (figures go next to it)")
    p.add_argument("--paths", type=int, metavar="N",
                   help="transition paths per mode (aldp2d, aldp) or per method (chignolin); default: the recipe's")
    p.add_argument("--solvent", choices=("gbn2", "obc2"),
                   help="chignolin: implicit water model (default gbn2, as published; obc2 is several times faster on "
                        "a CPU)")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="chignolin: keep the MD data, model and geodesic in DIR and reuse them when a later run has "
                        "the same settings for those stages (e.g. to try path settings; stage seconds are those "
                        "measured when they were made)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--quick", action="store_true", help="reduced recipe (minutes on a CPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    _common(p, run_dir=False)
    p.set_defaults(manifest=False)

    # ----- simulate
    p = add("simulate", "Langevin MD samples started from named states",
            "Independent Langevin runs (OpenMM LangevinMiddleIntegrator) started from the structures of named "
            "metastable states; every frame is written to one trajectory (samples.h5, or samples.dcd + samples.pdb) "
            "with the potential energies (kJ/mol) in samples.npz.")
    _system_arg(p, help_extra=" (default: alanine_dipeptide)")
    p.add_argument("--states", nargs="+", metavar="STATE",
                   help="start states, e.g. C5 C7ax (default: every state with a structure)")
    p.add_argument("--steps", type=int, default=10_000, metavar="N",
                   help="production steps per run (one step = --timestep ps)")
    p.add_argument("--temperature", type=float, metavar="K", help="temperature in K (default: the system's, 300 K)")
    p.add_argument("--timestep", type=float, metavar="PS",
                   help="time step in ps (default: 0.001 ps with flexible X-H bonds, 0.002 ps constrained)")
    p.add_argument("--friction", type=float, metavar="1/PS", help="Langevin friction in 1/ps (default: 1/ps)")
    p.add_argument("--runs-per-state", type=int, default=1, metavar="R",
                   help="independent runs (seeds) per start state")
    p.add_argument("--report-interval", type=int, default=100, metavar="STEPS",
                   help="record a frame every this many steps")
    p.add_argument("--equilibration", type=int, default=0, metavar="STEPS", help="unrecorded steps before production")
    p.add_argument("--seed", type=int, default=0, help="random seed (velocities and Langevin noise)")
    p.add_argument("--platform", metavar="NAME",
                   help="OpenMM platform: Reference, CPU, CUDA, OpenCL (default: Reference below 100 atoms)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="parallel processes (one run each)")
    p.add_argument("--format", default="h5", choices=("h5", "dcd", "xtc"),
                   help="trajectory format (h5 carries the topology; dcd/xtc get samples.pdb; positions in nm)")
    _executor_options(p)
    _common(p)

    # ----- train
    p = add("train", "train the Cartesian denoiser on MD samples",
            "Featurise MD samples (selected atoms Kabsch-aligned, centred, scaled by one length in nm) and train the "
            "denoiser on them; writes model.pt, checkpointed every --checkpoint-every steps. After an interruption "
            "continue with the same command plus --run-dir DIR --resume.")
    p.add_argument("--data", type=Path, nargs="+", required=True, metavar="TRAJ",
                   help="MD samples: .h5 / .pdb, or .dcd / .xtc with --top (positions in nm); "
                        "several files are concatenated")
    p.add_argument("--top", type=Path, metavar="PDB",
                   help="topology of --data (any file mdtraj or OpenMM reads; needed for coordinate-only formats; "
                        "default: the system's). Solute-only data are placed into a solvated system")
    _system_arg(p, help_extra=" (default: the system of the simulate run that wrote --data; needed otherwise)")
    p.add_argument("--selection", metavar="SEL",
                   help="atoms of the model: heavy (solute heavy atoms, never water or ions), solute, all, backbone or "
                        "an mdtraj selection string (default: the system file's [model] atoms, else heavy)")
    p.add_argument("--steps", type=int, metavar="N", help=f"optimiser steps (default: {T['steps']})")
    p.add_argument("--batch-size", type=int, metavar="B", help=f"samples per step (default: {T['batch_size']})")
    p.add_argument("--lr", type=float, help=f"peak learning rate of Adam (default: {T['lr']})")
    p.add_argument("--warmup", type=int, metavar="N", help=f"linear warm-up steps (default: {T['warmup']})")
    p.add_argument("--hidden", type=int, metavar="H", help=f"width of the MLP (default: {T['hidden']})")
    p.add_argument("--depth", type=int, metavar="L", help=f"hidden layers of the MLP (default: {T['depth']})")
    p.add_argument("--architecture", choices=("mlp", "convex"),
                   help="denoiser network: 'mlp' (default) or 'convex', the gradient of a potential convex in the "
                        "coordinates, whose Jacobian (the posterior covariance) is positive semi-definite by "
                        "construction, so the learned metric cannot go negative along x (docs/method.md, section 2)")
    p.add_argument("--lam-min", type=float, metavar="LAMBDA", help=f"lowest training log-SNR (default: {T['lam_min']})")
    p.add_argument("--lam-max", type=float, metavar="LAMBDA",
                   help=f"highest training log-SNR (default: {T['lam_max']})")
    p.add_argument("--lam-sampling", choices=("uniform", "importance"),
                   help=f"how training log-SNR values are drawn (default: {T['lam_sampling']})")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help=f"save model.pt every N steps (default: {T['checkpoint_every']})")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted training from DIR/model.pt (needs --run-dir DIR)")
    _common(p)

    # ----- geodesic
    p = add("geodesic", "optimise spacetime geodesics between pairs of endpoints",
            "Geodesic in the model's spacetime (log-SNR lambda, features x) between two endpoints at log-SNR "
            "--lam-end, or one per pair of endpoints (--pairs, --pairs-file), all optimised in one batch; writes "
            "geodesic.npz (lam, x, config, endpoints, pair names) and geodesic.png (log-SNR along the curves).")
    p.add_argument("--model", type=Path, required=True, metavar="CKPT", help="checkpoint written by 'train' (model.pt)")
    _system_arg(p, help_extra=" (default: the model's)")
    p.add_argument("--start", metavar="STATE|FILE",
                   help="start: state name (e.g. C5) or a structure file (first frame; nm); or give --pairs")
    p.add_argument("--end", metavar="STATE|FILE",
                   help="end: state name (e.g. C7ax) or a structure file (first frame; nm)")
    p.add_argument("--pairs", metavar="all|A:B,...",
                   help="several transitions at once, one curve each: 'all' (every pair of the system's states, each "
                        "once, e.g. C5:C7eq,C5:C7ax,C7eq:C7ax) or comma-separated START:END pairs of state names or "
                        "frame indices of --trajectory, e.g. C5:C7ax,C7eq:C7ax (docs/distributed.md)")
    p.add_argument("--pairs-file", type=Path, metavar="FILE",
                   help="the pairs in a text file, one a line: START END (or START:END), state names or frame "
                        "indices of --trajectory; '#' starts a comment")
    p.add_argument("--trajectory", type=Path, metavar="TRAJ",
                   help="trajectory (read with the system's topology; positions in nm) whose frames the integer "
                        "endpoints of --pairs/--pairs-file index, 0-based")
    p.add_argument("--mode", default="unconstrained", choices=("unconstrained", "low_variance", "avoid"),
                   help="unconstrained; low_variance keeps log-SNR >= --rho-var; "
                        "avoid also keeps KL from --avoid >= --rho-kl")
    p.add_argument("--avoid", metavar="STATE|FILE",
                   help="forbidden region for --mode avoid: state name or structure file")
    p.add_argument("--avoid-lam", type=float, metavar="LAMBDA",
                   help="log-SNR of the forbidden spacetime point (default: --lam-end)")
    p.add_argument("--rho-var", type=float, metavar="LAMBDA",
                   help=f"lowest allowed log-SNR for low_variance/avoid (default: {G['rho_var']})")
    p.add_argument("--rho-kl", type=float, metavar="NATS",
                   help=f"smallest allowed KL divergence from the forbidden point, in nats (default: {G['rho_kl']})")
    p.add_argument("--lam-end", type=float, metavar="LAMBDA",
                   help=f"log-SNR of the endpoints (default: {G['lam_end']})")
    p.add_argument("--points", type=int, metavar="N", help=f"points on the curve (default: {G['n_points']})")
    p.add_argument("--nodes", type=int, metavar="M", help=f"spline nodes (default: {G['n_nodes']})")
    p.add_argument("--steps", type=int, metavar="N", help=f"Adam steps (default: {G['steps']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default: {G['lr']})")
    p.add_argument("--probes", type=int, metavar="P",
                   help="Hutchinson probes for the divergence; 0 = exact (default: exact up to 96 model features, "
                        "8 probes above: the exact divergence costs one backward pass per feature)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--no-check", action="store_true",
                   help="skip the check that the endpoints lie inside the training data")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    _common(p)

    # ----- sample
    p = add("sample", "annealed Langevin transition paths under the force field",
            "Transition paths along a geodesic: for every curve point --steps-per-point Langevin steps under the force "
            "field with a harmonic restraint (kJ/mol/nm^2) towards the point's target structure. Writes paths.dcd + "
            "paths.pdb (all paths, one after another), paths.npz (energies in kJ/mol), paths.json and paths.png "
            "(paths in CV space, e.g. phi/psi in rad, and energy along the paths). A geodesic of several pairs "
            "(geodesic --pairs): --paths paths for every pair, each in its own directory START_to_END/ with these "
            "files (pair seeds derive from --seed and the pair's name), or only --pair NAME, written as for one pair.")
    p.add_argument("--model", type=Path, metavar="CKPT",
                   help="checkpoint written by 'train' (default: the one the geodesic was made with)")
    p.add_argument("--geodesic", type=Path, required=True, metavar="NPZ",
                   help="curve written by 'geodesic' (geodesic.npz)")
    _system_arg(p, help_extra=" (default: the geodesic's)")
    p.add_argument("--paths", type=int, default=10, metavar="P", help="number of paths")
    p.add_argument("--steps-per-point", type=int, default=32, metavar="K",
                   help="Langevin steps per curve point (each path makes N*K steps)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="parallel processes")
    p.add_argument("--friction", type=float, metavar="1/PS", help="Langevin friction in 1/ps (default: 1/ps)")
    p.add_argument("--timestep", type=float, metavar="PS",
                   help="time step in ps (default: 0.001 ps with flexible X-H bonds, 0.002 ps constrained)")
    p.add_argument("--temperature", type=float, metavar="K",
                   help="temperature in K; also sets kT of the restraint (default: that of the model's training data)")
    p.add_argument("--record-interval", type=int, default=1, metavar="STEPS",
                   help="record a frame every this many steps (must divide K)")
    p.add_argument("--spacing", choices=("geodesic", "tilt", "thermodynamic"), default="geodesic",
                   help="curve points as the geodesic has them, 'tilt': respaced so that every block moves the "
                        "restraint centre by the same number of restraint widths (more MD time where the restraint is "
                        "stiff), or 'thermodynamic': the same with the stiffening counted too (time for the restraint "
                        "to tighten at the end; docs/method.md, section 5)")
    p.add_argument("--targets", choices=("tilt", "denoised"), default="tilt",
                   help="restraint targets: 'tilt' x_n/alpha_n (the paper's algorithm) or 'denoised', the model's "
                        "posterior mean D(x_n, lam_n) (smooth at every noise level; use with --min-stiffness)")
    p.add_argument("--min-stiffness", type=float, metavar="KJ/MOL/NM2",
                   help="lower bound on the restraint stiffness, kJ/mol/nm^2 (default: none)")
    p.add_argument("--max-stiffness", type=float, metavar="KJ/MOL/NM2",
                   help="upper bound on the restraint stiffness, kJ/mol/nm^2 (default: none)")
    p.add_argument("--start", metavar="STATE|FILE",
                   help="start structure (default: the geodesic's start; one pair only)")
    p.add_argument("--pair", metavar="START:END",
                   help="of a geodesic of several pairs, sample only this pair (its paths are those it gets when all "
                        "pairs are sampled)")
    p.add_argument("--platform", metavar="NAME", help="OpenMM platform (default: Reference below 100 atoms)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sample in --run-dir DIR: the paths already written are kept (same "
                        "results)")
    _executor_options(p)
    _common(p)

    # ----- shoot
    p = add("shoot", "unbiased reactive trajectories by two-way shooting from the sampled paths",
            "Two-way shooting under the unbiased force field (OpenMM LangevinMiddleIntegrator, no restraint) from "
            "frames of the paths written by 'sample': Maxwell-Boltzmann velocities, forward and, with the velocities "
            "reversed, backward until a state or --max-ps; a shot whose halves end in different states is an unbiased "
            "reactive trajectory (A -> B). Optionally transition path sampling (--tps-moves). Writes shooting.json "
            "(summary: n_shots, n_reactive, reactive_fraction, n_tse_frames, mean_path_ps, n_force_evaluations), "
            "shots.json (per-shot records), committor.json (p_B with Wilson intervals per frame), frames.dcd + "
            "topology.pdb (the frames shot from), reactive/path_XXXX.dcd (positions in nm, unit cell kept), tse.pdb "
            "(transition-state ensemble), with TPS tps/path_XXXX.dcd + tps.json, shooting.png, and the PLUMED PATHMSD "
            "hand-off of the first ensemble path (plumed/; --ops: an OpenPathSampling storage). After an "
            "interruption continue with the same command plus --resume. See docs/shooting.md.")
    p.add_argument("--paths", type=Path, required=True, metavar="DIR|FILE",
                   help="run directory of 'sample' (or its paths.dcd, with paths.json and paths.npz next to it)")
    _system_arg(p, help_extra=" (default: the sample's)")
    p.add_argument("--state-a", nargs="+", metavar="STATE",
                   help="state A; several names: their union, e.g. C5 C7eq for alanine dipeptide (default: the "
                        "paths' start state)")
    p.add_argument("--state-b", nargs="+", metavar="STATE", help="state B (default: the paths' end state)")
    p.add_argument("--frames", default="max_energy", choices=("max_energy", "uniform", "all"),
                   help="frames to shoot from, on each path between leaving A and entering B: the highest-energy "
                        "frame (kJ/mol) and frames around it, --per-path evenly spread frames, or all")
    p.add_argument("--per-path", type=int, default=5, metavar="K", help="frames per path (max_energy, uniform)")
    p.add_argument("--spacing", type=int, metavar="FRAMES",
                   help="frames between the max_energy picks (default: the segment's length / (2 K))")
    p.add_argument("--shots", type=int, default=2, metavar="N", help="two-way shots per frame")
    p.add_argument("--max-ps", type=float, default=10.0, metavar="PS",
                   help="a half still in neither state after this time (ps) is undecided")
    p.add_argument("--check-interval", type=int, default=10, metavar="STEPS",
                   help="test for A/B every this many steps (= frame spacing of the trajectories)")
    p.add_argument("--tps-moves", type=int, default=0, metavar="M",
                   help="two-way shooting Monte Carlo moves per reactive trajectory (transition path sampling)")
    p.add_argument("--tse-tol", type=float, default=0.1, metavar="P",
                   help="frames with |p_B - 0.5| < P form the transition-state ensemble")
    p.add_argument("--temperature", type=float, metavar="K", help="temperature in K (default: the sample's)")
    p.add_argument("--timestep", type=float, metavar="PS", help="time step in ps (default: the sample's)")
    p.add_argument("--friction", type=float, metavar="1/PS", help="Langevin friction in 1/ps (default: the sample's)")
    p.add_argument("--platform", metavar="NAME", help="OpenMM platform (default: Reference below 100 atoms)")
    p.add_argument("--seed", type=int, default=0, help="random seed (velocities and Langevin noise of every shot)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="parallel processes (one shot each)")
    p.add_argument("--selection", default="heavy", metavar="SEL",
                   help="atoms of the PLUMED PATHMSD reference (RMSD in nm): heavy, all, backbone or an mdtraj "
                        "selection")
    p.add_argument("--plumed-frames", type=int, default=20, metavar="M", help="PATHMSD reference frames")
    p.add_argument("--ops", action="store_true",
                   help="also write an OpenPathSampling storage (ops.nc) with the first ensemble path and an engine "
                        "with these dynamics (needs openpathsampling)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted shoot in --run-dir DIR: shots already done are kept (same results)")
    _executor_options(p)
    _common(p)

    # ----- export
    p = add("export", "hand a path to PLUMED, string/NEB methods, OpenMM or OpenPathSampling",
            "Export one path of a trajectory: PLUMED PATHMSD reference (PDB in Angstrom, LAMBDA in nm^-2), "
            "string/NEB images equally spaced in RMSD (nm), OpenMM State XML files, or an OpenPathSampling "
            "initial trajectory and engine.")
    _path_args(p)
    _system_arg(p, help_extra=" for --state-xml/--ops (default: from <paths stem>.json)")
    p.add_argument("--selection", default="heavy", metavar="SEL",
                   help="atoms for the RMSD (nm) and the PATHMSD reference: heavy, all, backbone "
                        "or an mdtraj selection")
    p.add_argument("--plumed", nargs="?", const="plumed", metavar="DIR",
                   help="write path_msd.pdb + plumed.dat into DIR (inside the run dir)")
    p.add_argument("--frames", type=int, default=20, metavar="M",
                   help="PATHMSD reference frames, equally spaced in RMSD (nm)")
    p.add_argument("--images", type=int, metavar="N", help="write N string/NEB images equally spaced in RMSD (nm)")
    p.add_argument("--smooth", type=int, metavar="FRAMES",
                   help="average the aligned path over this many frames before spacing "
                        "(default: path frames / output frames; 1 = raw)")
    p.add_argument("--images-out", default="images.pdb", metavar="FILE",
                   help="images file (.pdb, .h5, .dcd, .xtc; inside the run dir)")
    p.add_argument("--state-xml", type=int, nargs="+", metavar="FRAME",
                   help="write OpenMM State XML files (positions nm, velocities nm/ps) of these frames")
    p.add_argument("--velocity-temperature", type=float, metavar="K",
                   help="Maxwell-Boltzmann velocities of the State XML / temperature of the OPS engine in K "
                        "(default: the system's)")
    p.add_argument("--ops", action="store_true",
                   help="write an OpenPathSampling storage (ops.nc) with the path and an OpenMM engine")
    p.add_argument("--ops-timestep", type=float, default=0.001, metavar="PS", help="time step of the OPS engine in ps")
    p.add_argument("--ops-friction", type=float, default=1.0, metavar="1/PS", help="friction of the OPS engine in 1/ps")
    p.add_argument("--ops-steps-per-frame", type=int, default=10, metavar="STEPS", help="MD steps per saved OPS frame")
    p.add_argument("--seed", type=int, default=0, help="random seed (State XML velocities)")
    _common(p)

    # ----- analyze
    p = add("analyze", "committor of chosen frames of a path",
            "Committor p_B of frames of a path by unbiased Langevin shooting (OpenMM): every shot gets fresh "
            "Maxwell-Boltzmann velocities and runs until it enters state A or B (or --max-steps). Writes "
            "committor.json (p_B with Wilson confidence interval per frame, transition-state-ensemble frames) "
            "and committor.png.")
    _path_args(p)
    _system_arg(p, help_extra=" (default: from <paths stem>.json)")
    p.add_argument("--frames", type=int, nargs="+", metavar="FRAME",
                   help="frames of the path (default: 10 evenly spaced)")
    p.add_argument("--state-a", metavar="STATE", help="state A (default: the state of the path's first frame)")
    p.add_argument("--state-b", metavar="STATE", help="state B (default: the state of the path's last frame)")
    p.add_argument("--shots", type=int, default=20, metavar="M", help="shots per frame")
    p.add_argument("--max-steps", type=int, default=10_000, metavar="STEPS",
                   help="a shot still in neither state after this many steps is undecided")
    p.add_argument("--check-interval", type=int, default=10, metavar="STEPS", help="test for A/B every this many steps")
    p.add_argument("--temperature", type=float, metavar="K", help="temperature in K (default: the system's, 300 K)")
    p.add_argument("--timestep", type=float, metavar="PS",
                   help="time step in ps (default: 0.001 ps with flexible X-H bonds)")
    p.add_argument("--friction", type=float, default=1.0, metavar="1/PS", help="Langevin friction in 1/ps")
    p.add_argument("--tse-tol", type=float, default=0.1, metavar="P",
                   help="frames with |p_B - 0.5| < P form the transition-state ensemble")
    p.add_argument("--platform", metavar="NAME", help="OpenMM platform (default: Reference below 100 atoms)")
    p.add_argument("--seed", type=int, default=0, help="random seed (velocities and Langevin noise of every shot)")
    p.add_argument("--workers", type=int, default=1, metavar="W", help="parallel processes (shots)")
    _executor_options(p)
    _common(p)

    # ----- run
    p = add("run", "the whole pipeline from one config file",
            "simulate -> train -> geodesic -> sample (-> shoot) -> export (-> analyze) from one JSON or TOML file. "
            "Sections [simulate], [train], [geodesic], [sample], [shoot], [export], [analyze] take the long options "
            "of those commands "
            "(steps-per-point = 16 or steps_per_point = 16; units as in their --help); top-level keys system, seed, "
            "device, platform, run-dir, overwrite apply to every section. Inputs of a stage default to the outputs "
            "of the previous one; each stage writes into RUN_DIR/<stage>/. See examples/aldp_small.toml.")
    p.add_argument("--config", type=Path, required=True, metavar="FILE", help="pipeline config (.toml or .json)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted or failed run in --run-dir DIR: stages whose options and inputs are "
                        "unchanged are kept, the others run again")
    _executor_options(p)
    _common(p)

    # ----- verify
    p = add("verify", "do two run directories hold the same results?",
            "Compare the outputs of two run directories by content (trajectory coordinates, checkpoint tensors, "
            ".npz arrays; bytes otherwise), ignoring dates and timings: two runs with the same seed on the "
            "Reference platform are identical. Exit 0 when every output is the same, 1 otherwise.")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="a run directory (with manifest.json)")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="another run directory")
    _common(p, run_dir=False)
    return parser
