"""Run directories: every command writes its outputs and ``manifest.json`` (inputs with sha256,
settings, versions, outputs, wall time, command line) into one directory, refused if it already
holds outputs unless ``--overwrite``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from ..utils.files import write_json
from ..utils.provenance import jsonable
from ..utils.provenance import versions as provenance_versions

PROG = "tps-diffusion"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tps_diffusion.manifest/1"

#: errors reported as one line (exit 1) instead of a traceback
USER_ERRORS = (OSError, ValueError, RuntimeError, KeyError, IndexError, ImportError, ArithmeticError)


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(path: str | os.PathLike) -> dict:
    p = Path(path)
    if p.is_dir():
        return {"path": str(p.resolve()), "files": [file_entry(f) for f in sorted(p.rglob("*")) if f.is_file()]}
    return {"path": str(p.resolve()), "sha256": sha256(p), "bytes": p.stat().st_size}


def versions() -> dict:
    """Versions recorded in every manifest."""
    return provenance_versions("torch", "openmm", "mdtraj")


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
            old = read_json(self.dir / MANIFEST) or {}
            hint = (" (or --resume to continue the interrupted training)"
                    if old.get("status") == "interrupted" and command == "train" else "")
            raise FileExistsError(f"run directory {self.dir} already holds outputs; "
                                  f"pass --overwrite to replace them{hint} or choose another --run-dir")
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
            self.inputs[key] = [file_entry(p) for p in path]
        else:
            self.inputs[key] = file_entry(path)

    def output(self, key: str, path) -> None:
        self.outputs[key] = file_entry(path)

    def manifest(self, status: str = "ok") -> dict:
        settings = {k: v for k, v in vars(self.args).items() if k not in ("func", "manifest", "debug", "quiet")}
        return jsonable({
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
            "versions": versions(),
        })

    def finish(self, status: str = "ok") -> dict:
        manifest = self.manifest(status)
        write_json(self.path(MANIFEST), manifest, overwrite=True)  # the directory was checked on entry
        return manifest

    def cleanup_if_empty(self) -> None:
        if self.created and self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()


def read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            d = json.load(fh)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def producer_manifest(path: Path) -> dict | None:
    """The manifest.json of the run that wrote ``path`` (same directory), if any."""
    return read_json(Path(path).parent / MANIFEST)


def one_line(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename and not str(msg).strip():
        msg = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    lines = [line.strip() for line in str(msg).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__
