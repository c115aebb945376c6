"""The ``run`` command: the whole pipeline from one TOML or JSON config, one stage after another,
each stage's inputs wired from the previous stages' manifests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from .commands import say
from .parser import STAGES, UsageError, build_parser
from .rundir import MANIFEST, PROG, USER_ERRORS, Run, file_entry, one_line

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
                raise ImportError("TOML configs need Python >= 3.11 (tomllib) or 'pip install tomli'; "
                                  "or use a .json config") from None
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


def run_config(args, run: Run, execute: Callable[[argparse.Namespace, list[str]], dict]) -> None:
    """The ``run`` command: each stage of the config as its own command (``execute``) in RUN_DIR/<stage>/."""
    cfg = _load_config(args.config)
    run.input("config", args.config)
    top = {_norm_key(k): v for k, v in cfg.items() if not isinstance(v, dict)}
    sections = {k: v for k, v in cfg.items() if isinstance(v, dict)}
    unknown = set(sections) - set(STAGES)
    if unknown:
        raise ValueError(f"{args.config}: unknown section(s) {sorted(unknown)}; sections: {', '.join(STAGES)}")
    bad = set(top) - set(_GLOBAL_KEYS) - {"run-dir", "overwrite", "quiet"}
    if bad:
        raise ValueError(f"{args.config}: unknown top-level key(s) {sorted(bad)}; "
                         f"allowed: {', '.join(_GLOBAL_KEYS)}, run-dir, overwrite, quiet")
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
        sub_actions = {dest.replace("_", "-") for dest in parser.commands[stage].option_dests}
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
            manifest = execute(sub_args, argv)
        except USER_ERRORS as exc:
            raise RuntimeError(f"stage {stage}: {one_line(exc)}") from exc
        produced[stage] = manifest
        stages_done.append({"stage": stage, "run_dir": manifest["run_dir"], "command_line": manifest["command_line"],
                            "wall_time_s": manifest["wall_time_s"]})
        run.outputs[f"{stage}_manifest"] = file_entry(run.path(stage) / MANIFEST)
    run.results = {"stages": stages_done, "config": cfg}
    say(args, f"run: {len(stages_done)} stages -> {run.dir}")


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
