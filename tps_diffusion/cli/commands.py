"""The pipeline commands: each reads its inputs, calls the library and records outputs in its run
directory (:class:`~tps_diffusion.cli.rundir.Run`). ``bench`` writes a JSON report instead."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from ..core.training import DiffusionModel
from ..handoff import OPS_INSTALL, write_ops_storage, write_plumed_path, write_state_xml, write_string_images
from ..molecular.committor import committor, transition_state_ensemble
from ..molecular.dynamics import Dynamics
from ..molecular.formats import check_writable_trajectory_path, load_samples, write_dcd_stream, write_trajectory
from ..molecular.geodesic import MolecularGeodesic, molecular_geodesic
from ..molecular.limits import check_output_dir
from ..molecular.md import run_md
from ..molecular.model import MolecularModel, train_on_samples
from ..molecular.paths import RestraintSettings, pair_directory, sample_molecular_paths, sample_pair_paths
from ..molecular.pathstore import StoreMismatch
from ..molecular.restrained import PathSet
from ..molecular.shooting import CheckpointMismatch, as_state_test, remove_checkpoint, shooting_frames, two_way_shooting
from ..plotting import plot_committor, plot_cv_paths, plot_log_snr, plot_path_energies, save_figure
from ..utils.files import atomic_path, write_json
from ..utils.provenance import jsonable
from .content import sha256
from .executors import executor_for, executor_spec
from .inputs import (
    atom_selection,
    geodesic_pairs,
    load_path,
    load_pathset,
    load_system,
    spec_input,
    structure,
    system_info,
    system_ref,
)
from .parser import UsageError
from .rundir import MANIFEST, PROG, Run, producer_manifest, read_json

PATHS_FORMAT = "tps_diffusion.paths/1"
#: where 'sample' streams its paths while it runs (inside the unpublished run directory; removed at the end)
PATH_STORE = "paths.store"

#: manifest keys of the files 'shoot' writes (ShootingResult.save), when present
SHOOT_OUTPUTS = {"summary": "shooting.json", "shots": "shots.json", "committor": "committor.json",
                 "frames": "frames.dcd", "topology": "topology.pdb", "tse": "tse.pdb", "tps_moves": "tps.json",
                 "reactive": "reactive", "tps_paths": "tps"}


# ---------------------------------------------------------------------------------------------
# output and options


def say(args, msg: str) -> None:
    if not args.quiet:
        print(msg, flush=True)


def given(args, names: dict[str, str]) -> dict:
    """``{library_name: value}`` for the options in ``names`` that were given (not None)."""
    return {key: getattr(args, opt) for opt, key in names.items() if getattr(args, opt) is not None}


def trajectory_bytes(n_frames: int, n_atoms: int) -> int:
    """Rough size of a trajectory file in bytes (float32 coordinates), for the free-space check."""
    return int(n_frames) * int(n_atoms) * 12


def dynamics(args, **fixed) -> Dynamics:
    """The :class:`Dynamics` of the options temperature, timestep, friction, platform, seed, workers given."""
    names = {"temperature": "temperature", "timestep": "timestep", "friction": "friction", "platform": "platform",
             "seed": "seed", "workers": "n_workers"}
    return Dynamics(**{**given(args, {k: v for k, v in names.items() if hasattr(args, k)}), **fixed})


# ---------------------------------------------------------------------------------------------
# commands


def cmd_bench(args, argv) -> None:
    module = args.benchmark.replace("-", "_")  # muller-brown -> bench/muller_brown.py
    try:
        mod = importlib.import_module(f"..bench.{module}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith(f"bench.{module}"):
            raise RuntimeError(f"benchmark {args.benchmark!r} is not available in this installation "
                               f"(tps_diffusion/bench/{module}.py missing)") from None
        raise
    params = inspect.signature(mod.run).parameters
    kw = dict(out=args.out, quick=args.quick, device=args.device, overwrite=args.overwrite, progress=not args.quiet)
    if "seed" in params:
        kw["seed"] = args.seed
    if args.paths is not None:
        if "n_paths" not in params:
            raise ValueError(f"--paths does not apply to bench {args.benchmark}")
        kw["n_paths"] = args.paths
    for option in ("solvent", "cache"):
        if getattr(args, option, None) is not None:
            if option not in params:
                raise ValueError(f"--{option} does not apply to bench {args.benchmark}")
            kw[option] = getattr(args, option)
    mod.run(**{k: v for k, v in kw.items() if k in params})
    say(args, f"bench {args.benchmark}: wrote {args.out}")


def cmd_simulate(args, run: Run) -> None:
    system = load_system(args.system, args.temperature)
    states = args.states or sorted(system.state_positions)
    if not states:
        raise ValueError(f"system {system.name} has no state structures; cannot start MD from states")
    traj_path = run.path(f"samples.{args.format}")
    n_frames = len(states) * args.runs_per_state * (args.steps // args.report_interval)
    check_writable_trajectory_path(traj_path, run.overwrite, trajectory_bytes(n_frames, system.n_atoms))
    with executor_for(args) as executor:
        md = run_md(system, list(states), n_steps=args.steps, report_interval=args.report_interval,
                    dynamics=dynamics(args), n_runs_per_start=args.runs_per_state, n_equilibration=args.equilibration,
                    progress=run.progress, executor=executor)
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
    run.inputs["system"] = system_info(system)
    energy = md.potential_energy
    run.results = {"n_frames": md.trajectory.n_frames, "n_runs": md.n_runs, "start_states": states,
                   "state_occupancy": occupancy, "n_force_evaluations": md.n_force_evaluations,
                   "steps_per_second": md.steps_per_second, "md_wall_time_s": md.wall_time_s,
                   "potential_energy_kJ_mol": {"mean": float(energy.mean()), "min": float(energy.min()),
                                               "max": float(energy.max())},
                   "md_settings": md.settings}
    say(args, f"simulate: {md.trajectory.n_frames} frames from {md.n_runs} runs -> {traj_path}")


def cmd_train(args, run: Run) -> None:
    for f in args.data:
        if not Path(f).is_file():
            raise FileNotFoundError(f"--data file not found: {f}")
    producer = producer_manifest(args.data[0]) or {}
    sim_settings = producer.get("settings", {}) if producer.get("command") == "simulate" else {}
    produced_by = producer.get("inputs", {}).get("system", {}).get("ref") or sim_settings.get("system")
    if args.system is None and not produced_by and args.top is not None:
        raise ValueError("--data with --top needs --system NAME|FILE.toml: the molecule the samples belong to "
                         "(write a system file for it, docs/systems.md)")
    system = load_system(args.system or produced_by, sim_settings.get("temperature"))
    traj = load_samples(args.data, top=args.top if args.top is not None else system)
    traj = system.adopt(traj, "--data")
    run.input("data", args.data)
    if args.top is not None:
        run.input("top", args.top)
    run.inputs["system"] = system_info(system)
    recipe = {"files": [str(Path(f).resolve()) for f in args.data], "files_sha256": [sha256(f) for f in args.data],
              "n_frames": traj.n_frames}
    if sim_settings:
        recipe["simulate"] = {**sim_settings, "md_settings": producer.get("results", {}).get("md_settings")}
    model_cfg = given(args, {"hidden": "hidden", "depth": "depth", "architecture": "architecture"})
    train_cfg = given(args, {"steps": "steps", "batch_size": "batch_size", "lr": "lr", "warmup": "warmup",
                             "lam_min": "lam_min", "lam_max": "lam_max", "lam_sampling": "lam_sampling",
                             "checkpoint_every": "checkpoint_every", "seed": "seed"})
    ckpt = run.path("model.pt")
    if args.resume:
        check_resumable(run, ckpt, recipe["files_sha256"])
    try:
        model = train_on_samples(system, traj, args.selection or system.model_atoms, model_config=model_cfg,
                                 train_config=train_cfg,
                                 checkpoint=ckpt, overwrite=True, resume=args.resume, data_recipe=recipe,
                                 device=args.device, progress=run.progress)
    except KeyboardInterrupt:
        if ckpt.is_file():
            run.output("checkpoint", ckpt)
            run.keep_unpublished("interrupted")
            raise KeyboardInterrupt(f"training interrupted; continue from the last checkpoint with: "
                                    f"{PROG} train ... --run-dir {run.dir} --resume") from None
        raise
    run.output("checkpoint", ckpt)
    feat = model.featurizer
    assigned = system.assign_states(traj)
    run.results = {"n_samples": traj.n_frames, "n_features": feat.n_features, "n_selected_atoms": feat.n_selected,
                   "frames_per_state": {name or "none": int(np.sum(assigned == name)) for name in [*system.states, ""]},
                   "feature_scale_nm": feat.scale, "train_seconds": model.train_seconds,
                   "train_config": vars(model.train_config), "model_config": model.denoiser.config.to_dict()}
    say(args, f"train: {traj.n_frames} samples x {feat.n_features} features -> {ckpt}")


def check_resumable(run: Run, ckpt: Path, data_sha256: list[str]) -> None:
    """Refuse ``train --resume`` on a run directory of another command or with other training data."""
    manifest = read_json(run.staging / MANIFEST) if run.resumed else None
    if manifest is not None and manifest.get("command") != "train":
        raise ValueError(f"{run.dir} holds a '{manifest.get('command')}' run, not a training run: --resume continues "
                         f"training only; give the run directory of the interrupted 'train'")
    if not ckpt.is_file():
        say(run.args, f"train: no checkpoint in {run.dir} yet; starting from scratch")
        return
    saved = DiffusionModel.load(ckpt, device="cpu").metadata.get("data_recipe", {}).get("files_sha256")
    if saved is not None and saved != data_sha256:
        raise ValueError(f"--resume with other training data: the checkpoint in {run.dir} was trained on files with "
                         f"other contents than --data; give the same --data, or train into a new --run-dir")


def cmd_geodesic(args, run: Run) -> None:
    if args.mode == "avoid" and args.avoid is None:
        raise ValueError("--mode avoid needs --avoid STATE|FILE (the forbidden region)")
    model = MolecularModel.load(args.model, None, device=args.device)
    system = load_system(args.system or (model.system_info or {}).get("system_file") or model.system_name)
    model.check_system(system)
    pairs = geodesic_pairs(args, system)
    run.input("model", args.model)
    for key in ("start", "end", "avoid"):
        spec_input(run, key, getattr(args, key))
    for key in ("pairs_file", "trajectory"):
        if getattr(args, key) is not None:
            run.input(key, getattr(args, key))
    run.inputs["system"] = system_info(system)
    avoid = None if args.avoid is None else structure(system, args.avoid)
    overrides = given(args, {"rho_var": "rho_var", "rho_kl": "rho_kl", "lam_end": "lam_end", "points": "n_points",
                             "nodes": "n_nodes", "steps": "steps", "lr": "lr", "probes": "n_probes", "seed": "seed"})
    geo = molecular_geodesic(model, system, pairs=pairs, mode=args.mode, avoid=avoid if args.mode == "avoid" else None,
                             avoid_lam=args.avoid_lam, check=not args.no_check, progress=run.progress, **overrides)
    # the model is recorded relative to this run directory, so that moving (publishing) a tree of runs keeps the link
    model_link = os.path.relpath(Path(args.model).resolve(), run.dir.resolve())
    geo.labels.update(system=system_ref(system), model=model_link, model_sha256=sha256(Path(args.model)))
    if args.start is not None:
        geo.labels.update(start=str(args.start), end=str(args.end))
    out = run.path("geodesic.npz")
    geo.save(out, run.overwrite)
    run.output("geodesic", out)

    cfg, core = geo.config, geo.geodesic
    one = geo.n_curves == 1
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, name in enumerate(geo.pair_names):
        plot_log_snr(core.lam[i].detach().cpu().numpy(), ax=ax,
                     threshold=cfg.rho_var if cfg.mode != "unconstrained" and i == 0 else None,
                     label=f"geodesic ({cfg.mode})" if one else name)
    ax.set_title(f"{system.name}: {args.start} -> {args.end}" if args.start is not None
                 else f"{system.name}: {geo.pair_names[0] if one else f'{geo.n_curves} pairs'} ({cfg.mode})")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    png = save_figure(fig, run.path("geodesic.png"), run.overwrite)
    run.output("plot", png)
    per_pair = {name: {"min_lambda": float(core.min_lambda[i]), "curve_energy": float(core.energy[i]),
                       "curve_length": float(core.length[i]), "steps_done": core.curve_steps[i],
                       "min_kl_nats": None if core.kl is None else float(core.kl[i].min())}
                for i, name in enumerate(geo.pair_names)}
    run.results = {"min_lambda": float(core.min_lambda.min()), "steps_done": core.steps_done, "seconds": core.seconds,
                   "message": core.message, "config": cfg.to_dict(),
                   "min_kl_nats": None if core.kl is None else float(core.kl.min()), "pairs": per_pair}
    if one:  # the figures of the one curve
        run.results.update(curve_energy=per_pair[geo.pair_names[0]]["curve_energy"],
                           curve_length=per_pair[geo.pair_names[0]]["curve_length"])
    if core.message:
        print(f"{PROG}: warning: {core.message}", file=sys.stderr)
    pairs_note = "" if one else f"{geo.n_curves} pairs, "
    say(args, f"geodesic: {pairs_note}{cfg.mode}, min log-SNR {float(core.min_lambda.min()):.3g} -> {out}")


def cmd_sample(args, run: Run) -> None:
    previous = read_json(run.staging / MANIFEST) if run.resumed else None
    if previous is not None and (previous.get("command") != "sample" or previous.get("status") == "ok"):
        command = previous.get("command")
        what = "a complete 'sample' run" if command == "sample" else f"a '{command}' run"
        raise ValueError(f"{run.dir} holds {what}: nothing to resume; use --overwrite to sample again, or give the "
                         f"--run-dir of an interrupted 'sample'")
    geo = MolecularGeodesic.load(args.geodesic)
    names = geo.pair_names if args.pair is None else [geo.pair_names[geo.curve_index(args.pair)]]
    if args.start is not None and geo.n_curves > 1:
        raise UsageError(f"--start applies to a geodesic of one pair; {args.geodesic} holds {geo.n_curves} pairs, "
                         f"each sampled from its own start (see '{PROG} sample --help')")
    model_path = args.model if args.model is not None else Path(args.geodesic).parent / geo.labels["model"]
    model = MolecularModel.load(model_path, None, device="cpu")
    if sha256(model_path) != geo.labels.get("model_sha256"):
        warnings.warn(f"{model_path} is not the model the geodesic was made with", RuntimeWarning, stacklevel=1)
    temperature = args.temperature if args.temperature is not None else model.temperature
    system = load_system(args.system or geo.labels.get("system"), temperature)
    model.check_system(system)
    run.input("geodesic", args.geodesic)
    run.input("model", model_path)
    spec_input(run, "start", args.start)
    run.inputs["system"] = system_info(system)
    start = None
    if args.start is not None:
        s = structure(system, args.start)
        start = s if isinstance(s, str) else np.asarray(s.xyz[0], dtype=float)
    # one pair: its files in the run directory; several: in a directory per pair
    folders = {name: "" if len(names) == 1 else f"{pair_directory(name)}/" for name in names}
    n_frames = args.paths * geo.curve.shape[-2] * (args.steps_per_point // args.record_interval)
    for folder in folders.values():
        check_writable_trajectory_path(run.path(f"{folder}paths.dcd"), run.overwrite or run.resumed,
                                       trajectory_bytes(2 * n_frames * len(names), system.n_atoms))
    store = run.path(PATH_STORE)  # paths stream here as they finish; an interrupted sample resumes from it
    settings = dict(n_paths=args.paths, steps_per_point=args.steps_per_point, dynamics=dynamics(args),
                    record_interval=args.record_interval, progress=run.progress, store=store,
                    restraint=RestraintSettings(targets=args.targets, spacing=args.spacing,
                                                min_stiffness=args.min_stiffness, max_stiffness=args.max_stiffness))

    def draw(executor) -> dict[str, PathSet]:
        if geo.n_curves == 1:  # the seed as given
            return {names[0]: sample_molecular_paths(system, model, geo, start=start, executor=executor, **settings)}
        return dict(sample_pair_paths(system, model, geo, pairs=names, executor=executor, **settings))

    try:
        with executor_for(args) as executor:
            try:
                drawn = draw(executor)
            except StoreMismatch:
                if not run.resumed:
                    raise
                say(args, "sample: the interrupted paths were sampled with other settings; starting again")
                shutil.rmtree(store)
                drawn = draw(executor)
    except KeyboardInterrupt:
        run.keep_unpublished("interrupted")
        raise KeyboardInterrupt(f"sampling interrupted; the finished paths are kept: continue with the same command "
                                f"plus --run-dir {run.dir} --resume") from None
    results = {name: write_paths(args, run, system, geo, name, ps, folders[name]) for name, ps in drawn.items()}
    shutil.rmtree(store)  # every output is written: the per-path files are not needed any more
    if len(names) == 1:
        run.results = results[names[0]]
        return
    run.results = {"pairs": results, "n_paths": sum(r["n_paths"] for r in results.values()),
                   "n_force_evaluations": sum(r["n_force_evaluations"] for r in results.values()),
                   "sampling_wall_time_s": sum(r["sampling_wall_time_s"] for r in results.values())}


def write_paths(args, run: Run, system, geo: MolecularGeodesic, name: str, ps: PathSet, folder: str) -> dict:
    """Write the paths of pair ``name`` (paths.dcd + .pdb, .npz, .json, .png) into ``folder`` of the run
    directory ("" or "START_to_END/"), record them as outputs and return the pair's results."""
    index = geo.curve_index(name)
    overwrite = run.overwrite or run.resumed
    dcd = run.path(f"{folder}paths.dcd")
    write_dcd_stream(ps.trajectories, dcd, overwrite=overwrite, topology_pdb=True)  # path by path
    run.output(f"{folder}paths", dcd)
    run.output(f"{folder}topology", dcd.with_suffix(".pdb"))
    npz = run.path(f"{folder}paths.npz")
    with atomic_path(npz, overwrite) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, energies_kJ_mol=ps.energies, tilt_energies_kJ_mol=ps.tilt_energies, point_index=ps.point_index,
                 time_ps=ps.trajectories[0].time)
    run.output(f"{folder}energies", npz)

    end = geo.end(index)
    end_label = geo.labels.get("end", end.label)
    if end_label not in system.states and end.positions is not None:  # an end given as a file: its state
        end_label = system.assign_states(system.to_trajectory(end.positions))[0] or end_label
    reached = system.states[end_label].contains(ps.final_frames()).tolist() if end_label in system.states else None
    max_e = ps.max_energy()
    frames_per_path = ps.trajectories[0].n_frames
    info = {"format": PATHS_FORMAT, "system": system_ref(system), "pair": name, "n_paths": ps.n_paths,
            "frames_per_path": frames_per_path,
            "trajectory": dcd.name, "topology": dcd.with_suffix(".pdb").name, "energies": npz.name,
            "start": geo.labels.get("start", geo.start(index).label) if args.start is None else args.start,
            "end": end_label, "end_state_reached": reached, "max_energy_kJ_mol": max_e,
            "n_force_evaluations": ps.n_force_evaluations, "n_energy_evaluations": ps.n_energy_evaluations,
            "seeds": ps.seeds, "settings": ps.settings, "wall_time_s": ps.wall_time_s}
    if ps.lag is not None:  # how far the walkers trail the restraint targets, in restraint widths (docs/method.md)
        info["lag_restraint_widths"] = {"last_point": float(ps.lag[-1]), "max": float(np.max(ps.lag)),
                                        "per_point": ps.lag, "final_distance_mean": float(np.mean(ps.final_distance))}
    js = run.path(f"{folder}paths.json")
    write_json(js, jsonable(info), overwrite)
    run.output(f"{folder}summary", js)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    plot_cv_paths(system, ps.trajectories, ax=ax1)
    ax1.set_title(f"{ps.n_paths} paths, {system.name}" + (f", {name}" if geo.n_curves > 1 else ""))
    plot_path_energies(ps.energies, ax=ax2, n_show=50)
    ax2.set_title("force-field energy along the paths")
    fig.tight_layout()
    run.output(f"{folder}plot", save_figure(fig, run.path(f"{folder}paths.png"), overwrite))
    finite = max_e[np.isfinite(max_e)]
    summary = ({"mean": float(finite.mean()), "std": float(finite.std()), "min": float(finite.min())} if len(finite)
               else {"mean": None, "std": None, "min": None})
    hits = "" if reached is None else f", {np.mean(reached):.0%} end in {end_label}"
    which = f"{name}: " if geo.n_curves > 1 else ""
    say(args, f"sample: {which}{ps.n_paths} paths x {frames_per_path} frames{hits} -> {dcd}")
    return {"n_paths": ps.n_paths, "frames_per_path": frames_per_path, "max_energy_kJ_mol": summary,
            "end_state": end_label, "end_state_hit_rate": None if reached is None else float(np.mean(reached)),
            "n_force_evaluations": ps.n_force_evaluations, "sampling_wall_time_s": ps.wall_time_s,
            "sampler_settings": ps.settings}


def cmd_shoot(args, run: Run) -> None:
    check_output_dir(run.staging, "the shooting results", "choose another --run-dir")
    if args.ops and importlib.util.find_spec("openpathsampling") is None:
        raise ImportError(f"--ops needs openpathsampling: {OPS_INSTALL}")
    previous = read_json(run.staging / MANIFEST) if run.resumed else None
    if previous is not None and (previous.get("command") != "shoot" or previous.get("status") == "ok"):
        what = "a complete 'shoot' run" if previous.get("command") == "shoot" else f"a '{previous.get('command')}' run"
        raise ValueError(f"{run.dir} holds {what}: nothing to resume; use --overwrite to shoot again, or give the "
                         f"--run-dir of an interrupted 'shoot'")
    ps, side, dcd = load_pathset(args.paths)
    run.input("paths", dcd)
    sampled = side.get("settings", {})
    temperature = args.temperature if args.temperature is not None else sampled.get("temperature")
    system = load_system(args.system or side.get("system"), temperature)
    run.inputs["system"] = system_info(system)
    if ps[0].n_atoms != system.n_atoms:
        raise ValueError(f"the paths have {ps[0].n_atoms} atoms, system {system.name} has {system.n_atoms}; give the "
                         f"--system the paths were sampled with")
    names_a, names_b = args.state_a or [side.get("start")], args.state_b or [side.get("end")]
    for names, given_, which, opt in ((names_a, args.state_a, "start", "--state-a"),
                                      (names_b, args.state_b, "end", "--state-b")):
        if given_ is None and names[0] not in system.states:
            raise ValueError(f"the paths' {which} {names[0]!r} is not a state of {system.name}; name it with {opt} "
                             f"(known: {', '.join(system.states)})")
    if set(names_a) & set(names_b):
        raise ValueError(f"states A {names_a} and B {names_b} share {sorted(set(names_a) & set(names_b))}; give "
                         f"disjoint --state-a/--state-b")
    in_a, in_b = as_state_test(system, names_a, "--state-a"), as_state_test(system, names_b, "--state-b")
    fixed = {k: sampled[k] for k in ("timestep", "friction") if getattr(args, k) is None and sampled.get(k)}
    dyn = dynamics(args, **fixed).for_system(system, check_platform=executor_spec(args) is None)
    max_steps = max(1, math.ceil(args.max_ps / dyn.timestep / args.check_interval)) * args.check_interval
    frames = shooting_frames(ps, in_a, in_b, select=args.frames, per_path=args.per_path, spacing=args.spacing)
    checkpoint = run.path("checkpoint")

    def shoot():
        return two_way_shooting(system, frames, in_a, in_b, n_shots=args.shots, max_steps=max_steps,
                                check_interval=args.check_interval, dynamics=dyn, tps_moves=args.tps_moves,
                                tse_tol=args.tse_tol, checkpoint=checkpoint, progress=run.progress, executor=executor)

    try:
        with executor_for(args) as executor:
            try:
                res = shoot()
            except CheckpointMismatch:
                if not run.resumed:
                    raise
                say(args, "shoot: the interrupted shots were made with other settings; starting again")
                remove_checkpoint(checkpoint)
                res = shoot()
    except KeyboardInterrupt:
        run.keep_unpublished("interrupted")
        raise KeyboardInterrupt(f"shooting interrupted; continue with the same command plus --run-dir {run.dir} "
                                "--resume") from None
    overwrite = run.overwrite or run.resumed
    res.save(run.staging, overwrite)
    remove_checkpoint(checkpoint)
    for key, name in SHOOT_OUTPUTS.items():
        if (run.staging / name).exists():
            run.output(key, run.staging / name)
    ensemble = res.ensemble
    handoff = {"path": None}
    if ensemble:
        first = ensemble[0]
        n = min(args.plumed_frames, first.n_frames)
        out = write_plumed_path(first, run.path("plumed"), n_frames=n,
                                atom_indices=atom_selection(first.topology, args.selection), overwrite=overwrite,
                                smooth=max(1, first.n_frames // n))
        run.output("plumed_reference", out["pdb"])
        run.output("plumed_input", out["plumed"])
        handoff = {"path": "tps/path_0000.dcd" if res.tps is not None else "reactive/path_0000.dcd",
                   "plumed": {"n_frames": n, "lambda_per_nm2": out["lambda"]}}
        if args.ops:
            ops = write_ops_storage(first, system, run.path("ops.nc"), temperature=dyn.temperature,
                                    timestep=dyn.timestep, friction=dyn.friction, n_steps_per_frame=args.check_interval,
                                    overwrite=overwrite)
            run.output("ops_storage", ops)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    if ensemble:
        plot_cv_paths(system, ensemble, ax=ax1)
        ax1.set_title(f"{len(ensemble)} unbiased reactive trajectories")
    else:
        ax1.set_visible(False)
    p_b = res.committor.p_B
    ax2.hist(p_b[np.isfinite(p_b)], bins=np.linspace(0, 1, 11), color="C0")
    ax2.set(xlabel="committor $p_B$ of the frames shot from", ylabel="frames",
            title=f"{res.n_reactive}/{res.n_shots} shots reactive")
    fig.tight_layout()
    run.output("plot", save_figure(fig, run.path("shooting.png"), overwrite))
    summary = res.as_dict()
    run.results = {**{k: v for k, v in summary.items() if k != "settings"}, "state_a": names_a, "state_b": names_b,
                   "n_paths": ps.n_paths, "frame_selection": args.frames, "handoff": handoff,
                   "shooting_settings": summary["settings"]}
    mean = "" if res.mean_path_ps is None else f", mean path {res.mean_path_ps:.3g} ps"
    say(args, f"shoot: {res.n_shots} shots from {len(res.frames)} frames of {ps.n_paths} paths: {res.n_reactive} "
              f"reactive ({res.reactive_fraction:.0%}){mean} -> {run.dir}")


def smoothing(args, path, n_out: int) -> int:
    """Window of the running mean applied before equal-RMSD spacing (``--smooth``, else automatic)."""
    return args.smooth if args.smooth is not None else max(1, path.n_frames // n_out)


def cmd_export(args, run: Run) -> None:
    if not (args.plumed or args.images or args.state_xml or args.ops):
        raise ValueError("nothing to export: give --plumed [DIR], --images N, --state-xml FRAME ... and/or --ops")
    check_output_dir(run.staging, "the exported files", "choose another --run-dir")
    path, side, n_paths, fpp = load_path(args)
    run.input("paths", args.paths)
    if args.top is not None:
        run.input("top", args.top)
    idx = atom_selection(path.topology, args.selection)
    run.results = {"path_index": args.path_index, "n_paths_in_file": n_paths, "frames_per_path": fpp,
                   "n_atoms_selected": len(idx)}
    system = None
    if args.state_xml or args.ops:
        system = load_system(args.system or side.get("system"))
        run.inputs["system"] = system_info(system)
    temperature = args.velocity_temperature if args.velocity_temperature is not None else (
        system.temperature if system else None)
    if args.plumed:
        res = write_plumed_path(path, run.path(args.plumed), n_frames=args.frames, atom_indices=idx,
                                overwrite=run.overwrite, smooth=smoothing(args, path, args.frames))
        run.output("plumed_reference", res["pdb"])
        run.output("plumed_input", res["plumed"])
        run.results["plumed"] = {"n_frames": res["n_frames"], "lambda_per_nm2": res["lambda"],
                                 "mean_msd_nm2": res["mean_msd"]}
    if args.images:
        res = write_string_images(path, run.path(args.images_out), args.images, run.overwrite, atom_indices=idx,
                                  smooth=smoothing(args, path, args.images))
        run.output("images", res["images"])
        if res["topology"] is not None:
            run.output("images_topology", res["topology"])
        run.results["images"] = {"n_images": args.images}
    if args.state_xml:
        files = write_state_xml(system, path, args.state_xml, run.path("states"), temperature=temperature,
                                overwrite=run.overwrite, seed=args.seed)
        for f, p in zip(args.state_xml, files):
            run.output(f"state_xml_{f}", p)
        run.results["state_xml"] = {"frames": args.state_xml, "velocity_temperature_K": temperature}
    if args.ops:
        out = write_ops_storage(path, system, run.path("ops.nc"), temperature=temperature, timestep=args.ops_timestep,
                                friction=args.ops_friction, n_steps_per_frame=args.ops_steps_per_frame,
                                overwrite=run.overwrite)
        run.output("ops_storage", out)
        run.results["ops"] = {"temperature_K": temperature, "timestep_ps": args.ops_timestep,
                              "friction_per_ps": args.ops_friction, "n_steps_per_frame": args.ops_steps_per_frame}
    say(args, f"export: path {args.path_index} ({fpp} frames) -> {run.dir}")


def cmd_analyze(args, run: Run) -> None:
    check_output_dir(run.staging, "the committor results", "choose another --run-dir")
    path, side, n_paths, fpp = load_path(args)
    run.input("paths", args.paths)
    if args.top is not None:
        run.input("top", args.top)
    system = load_system(args.system or side.get("system"), args.temperature)
    run.inputs["system"] = system_info(system)
    if path.n_atoms != system.n_atoms:
        raise ValueError(f"the path has {path.n_atoms} atoms, system {system.name} has {system.n_atoms}")
    assigned = system.assign_states(path[[0, -1]])
    a = args.state_a or assigned[0]
    b = args.state_b or assigned[1]
    for which, name, opt in (("first", a, "--state-a"), ("last", b, "--state-b")):
        if not name:
            raise ValueError(f"the path's {which} frame lies in no state; name the state with {opt} "
                             f"(known: {', '.join(system.states)})")
        if name not in system.states:
            raise ValueError(f"unknown state {name!r} for {system.name}; known states: {', '.join(system.states)}")
    if a == b:
        raise ValueError(f"states A and B are both {a!r}; pass different --state-a/--state-b")
    frames = (args.frames if args.frames
              else sorted(set(np.linspace(0, fpp - 1, min(10, fpp)).round().astype(int).tolist())))
    for f in frames:
        if not -fpp <= f < fpp:
            raise IndexError(f"frame {f} out of range for a path of {fpp} frames")
    frames = [int(f) % fpp for f in frames]
    in_a, in_b = as_state_test(system, a, "--state-a"), as_state_test(system, b, "--state-b")  # picklable
    with executor_for(args) as executor:
        res = committor(system, path.xyz[frames], in_a, in_b, n_shots=args.shots, max_steps=args.max_steps,
                        check_interval=args.check_interval, dynamics=dynamics(args), progress=run.progress,
                        executor=executor)
    tse = transition_state_ensemble(res, tol=args.tse_tol)
    report = {"state_a": a, "state_b": b, "path_index": args.path_index, "frames": frames,
              "transition_state_ensemble": {"frames": [frames[i] for i in tse], "indices": tse.tolist(),
                                            "tol": args.tse_tol},
              **res.as_dict()}
    js = run.path("committor.json")
    write_json(js, jsonable(report), run.overwrite)
    run.output("committor", js)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    plot_committor(res, ax=ax, x=np.asarray(frames))
    ax.set_xlabel(f"frame of path {args.path_index}")
    ax.set_title(f"committor to {b} (from {a})")
    fig.tight_layout()
    png = save_figure(fig, run.path("committor.png"), run.overwrite)
    run.output("plot", png)
    run.results = {"state_a": a, "state_b": b, "frames": frames, "p_B": report["p_B"], "ci_low": report["ci_low"],
                   "ci_high": report["ci_high"], "tse_frames": report["transition_state_ensemble"]["frames"],
                   "n_force_evaluations": res.n_force_evaluations}
    say(args, f"analyze: committor of {len(frames)} frames ({args.shots} shots each) -> {js}")
