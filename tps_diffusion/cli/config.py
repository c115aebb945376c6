"""The ``run`` command: the whole pipeline from one TOML or JSON config, one stage after another,
each stage's inputs wired from the previous stages' manifests."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Callable

import tomllib

from ..utils.files import write_json
from .commands import say
from .content import sha256
from .executors import executor_for, executor_spec
from .parser import STAGES, UsageError, build_parser
from .rundir import MANIFEST, PROG, USER_ERRORS, Run, one_line, read_json
from .transaction import staging_of

#: top-level config keys and the stages that take them as options
_GLOBAL_KEYS = ("system", "seed", "device", "platform")
#: top-level keys (and options of 'run') that say where the stages' parallel work runs: one Dask cluster for the
#: whole run; not part of what a stage's result depends on (the results are the same wherever the work runs)
_EXECUTOR_KEYS = ("scheduler", "cluster", "cluster-config", "jobs")


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


def _stage_key(options: dict) -> str:
    """What a stage's result depends on: its options, with every input file replaced by its sha256
    (where the work runs, :data:`_EXECUTOR_KEYS`, is left out)."""
    keyed = {}
    for key, value in options.items():
        if key in _EXECUTOR_KEYS:
            continue
        values = value if isinstance(value, list) else [value]
        paths = [Path(str(v)) for v in values]
        is_file = bool(paths) and all(isinstance(v, (str, Path)) and p.is_file() for v, p in zip(values, paths))
        keyed[key] = [sha256(p) for p in paths] if is_file else value
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()


def _check_keys(path: Path, stage: str, section: dict, parser) -> None:
    known = {dest.replace("_", "-") for dest in parser.commands[stage].option_dests}
    unknown = sorted(set(section) - known - {"help"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} in [{stage}]; the keys are the long options of "
                         f"'{PROG} {stage}' (see '{PROG} {stage} --help')")


def _parse(parser, stage: str, argv: list[str]):
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        msg = str(exc).replace(f"(see '{PROG} --help')", f"(see '{PROG} {stage} --help')")
        raise ValueError(f"config [{stage}]: {msg} (keys are the long options)") from None


def run_config(args, run: Run, execute: Callable[[argparse.Namespace, list[str]], dict]) -> None:
    """The ``run`` command: each stage of the config as its own command (``execute``) in RUN_DIR/<stage>/.

    The whole config is checked (sections, keys, every stage's options) before the first stage
    starts. With ``--resume`` a stage is skipped when its directory holds a complete run made from
    the same options and the same input files; the stages after a re-run stage run again.
    """
    cfg = _load_config(args.config)
    run.input("config", args.config)
    top = {_norm_key(k): v for k, v in cfg.items() if not isinstance(v, dict)}
    sections = {k: v for k, v in cfg.items() if isinstance(v, dict)}
    unknown = set(sections) - set(STAGES)
    if unknown:
        raise ValueError(f"{args.config}: unknown section(s) {sorted(unknown)}; sections: {', '.join(STAGES)}")
    bad = set(top) - set(_GLOBAL_KEYS) - set(_EXECUTOR_KEYS) - {"run-dir", "overwrite", "quiet"}
    if bad:
        raise ValueError(f"{args.config}: unknown top-level key(s) {sorted(bad)}; "
                         f"allowed: {', '.join(_GLOBAL_KEYS + _EXECUTOR_KEYS)}, run-dir, overwrite, quiet")
    for key in _EXECUTOR_KEYS:  # the command line wins over the config
        value = getattr(args, key.replace("-", "_"), None)
        if value is not None:
            top[key] = str(value) if isinstance(value, Path) else value
    where = argparse.Namespace(command="run", quiet=args.quiet, workers=None,
                               **{k.replace("-", "_"): top.get(k) for k in _EXECUTOR_KEYS})
    if where.cluster_config is not None:
        where.cluster_config = Path(where.cluster_config)
    try:
        executor_spec(where)
    except UsageError as exc:
        raise ValueError(f"{args.config}: {str(exc).split(' (see ')[0]} (top-level keys {', '.join(_EXECUTOR_KEYS)} "
                         "or the options of 'run')") from None
    if not sections:
        raise ValueError(f"{args.config}: no stage sections; give some of [{'], ['.join(STAGES)}]")
    parser = build_parser()
    quiet = args.quiet or bool(top.get("quiet"))
    plan = []
    for stage in STAGES:
        if stage not in sections:
            continue
        section = {_norm_key(k): v for k, v in sections[stage].items()}
        if "run-dir" in section:
            raise ValueError(f"config [{stage}]: run-dir is set per stage automatically (RUN_DIR/{stage})")
        _check_keys(args.config, stage, section, parser)
        sub_actions = {dest.replace("_", "-") for dest in parser.commands[stage].option_dests}
        for key in _GLOBAL_KEYS + _EXECUTOR_KEYS:
            if key in top and key not in section and key in sub_actions:
                section[key] = top[key]
        placeholders = _wire_inputs(stage, dict(section), {s: Path(f"<{s}>") for s, _ in plan}, None)
        parsed = _parse(parser, stage, [stage, *_section_argv(placeholders, stage), "--run-dir", "<check>"])
        try:
            executor_spec(parsed)
        except UsageError as exc:
            raise ValueError(f"config [{stage}]: {str(exc).split(' (see ')[0]}") from None
        plan.append((stage, section))

    keys_file = run.staging / "stages.json"
    keys = (read_json(keys_file) or {}) if run.resumed else {}
    produced: dict[str, Path] = {}
    stages_done = []
    try:
        with executor_for(where):  # one Dask cluster (if any) for all stages: they find it open
            _run_stages(args, run, execute, plan, parser, keys, keys_file, quiet, produced, stages_done)
    except BaseException:
        run.keep_unpublished("failed")
        raise
    run.results = {"stages": stages_done, "config": cfg}
    say(args, f"run: {len(stages_done)} stages -> {run.dir}")


def _run_stages(args, run: Run, execute, plan, parser, keys: dict, keys_file: Path, quiet: bool,
                produced: dict[str, Path], stages_done: list) -> None:
    rerun = False
    for stage, section in plan:
        stage_dir = run.path(stage)
        wired = _wire_inputs(stage, dict(section), produced, read_json)
        key = _stage_key(wired)
        manifest = read_json(stage_dir / MANIFEST) if stage_dir.is_dir() else None
        if not rerun and manifest and manifest.get("status") == "ok" and keys.get(stage) == key:
            say(args, f"== {stage}: unchanged since the interrupted run, kept")
        else:
            rerun = True
            argv = [stage, *_section_argv(wired, stage), "--run-dir", str(stage_dir)]
            if stage in ("train", "sample", "shoot") and staging_of(stage_dir).exists():
                argv.append("--resume")  # continue the interrupted training / paths / shots from what they wrote
            elif stage_dir.exists() or staging_of(stage_dir).exists():
                argv.append("--overwrite")
            if quiet:
                argv.append("--quiet")
            sub_args = _parse(parser, stage, argv)
            if not quiet:
                print(f"== {stage}: {PROG} {' '.join(argv)}", flush=True)
            try:
                manifest = execute(sub_args, argv)
            except USER_ERRORS as exc:
                raise RuntimeError(f"stage {stage}: {one_line(exc)}; the finished stages are kept: fix the cause "
                                   f"and rerun with --resume (or --overwrite to start again)") from exc
            keys[stage] = key
            write_json(keys_file, keys, overwrite=True)
        produced[stage] = stage_dir
        stages_done.append({"stage": stage, "run_dir": stage, "command_line": manifest["command_line"],
                            "wall_time_s": manifest["wall_time_s"]})
        run.output(f"{stage}_manifest", stage_dir / MANIFEST)


def _out(stage_dir: Path, key: str, read) -> str:
    if read is None:  # checking the config: the stage has not run yet
        return str(stage_dir / key)
    return str(stage_dir / read(stage_dir / MANIFEST)["outputs"][key]["path"])


def _wire_inputs(stage: str, section: dict, produced: dict[str, Path], read) -> dict:
    """``section`` with a stage's inputs filled from the outputs of earlier stages (unless the config gives them)."""
    if stage == "train" and "data" not in section and "simulate" in produced:
        section["data"] = [_out(produced["simulate"], "trajectory", read)]
        topology = read is not None and "topology" in read(produced["simulate"] / MANIFEST)["outputs"]
        if (topology or read is None) and "top" not in section:
            section["top"] = _out(produced["simulate"], "topology", read)
    if stage == "geodesic" and "model" not in section and "train" in produced:
        section["model"] = _out(produced["train"], "checkpoint", read)
    if stage == "sample":
        if "geodesic" not in section and "geodesic" in produced:
            section["geodesic"] = _out(produced["geodesic"], "geodesic", read)
        if "model" not in section and "train" in produced:
            section["model"] = _out(produced["train"], "checkpoint", read)
    if stage in ("shoot", "export", "analyze") and "paths" not in section and "sample" in produced:
        section["paths"] = _out(produced["sample"], "paths", read)
        if stage != "shoot":  # shoot reads the topology, energies and settings next to paths.dcd
            section.setdefault("top", _out(produced["sample"], "topology", read))
    return section
