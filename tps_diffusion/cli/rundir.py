"""Run directories: every command writes its outputs and ``manifest.json`` (inputs with sha256,
settings, versions, outputs with sha256 and content hashes, wall time, command line) into one
directory, as one transaction (:mod:`.transaction`): refused if it already holds outputs unless
``--overwrite``, refused while another command holds it, published only when complete."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import openmm

from ..utils.files import write_json
from ..utils.provenance import jsonable
from ..utils.provenance import versions as provenance_versions
from .content import content_sha256, sha256
from .transaction import RunDirectory, foreign_staging, published_path

PROG = "tps-diffusion"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tps_diffusion.manifest/1"

#: errors reported as one line (exit 1) instead of a traceback
USER_ERRORS = (OSError, ValueError, TypeError, RuntimeError, KeyError, IndexError, ImportError, ArithmeticError,
               openmm.OpenMMException)


def file_entry(path: str | os.PathLike, root: Path | None = None) -> dict:
    """``{"path", "bytes", "sha256"[, "content_sha256"]}`` of a file (``path`` relative to ``root``
    when given: outputs are recorded relative to their run directory), or of every file of a folder."""
    p = Path(path)
    name = str(p.relative_to(root)) if root is not None else str(published_path(p.resolve()))
    if p.is_dir():
        return {"path": name, "files": [file_entry(f, root) for f in sorted(p.rglob("*")) if f.is_file()]}
    entry = {"path": name, "sha256": sha256(p), "bytes": p.stat().st_size}
    content = content_sha256(p)
    if content is not None:
        entry["content_sha256"] = content
    return entry


def versions() -> dict:
    """Versions recorded in every manifest."""
    return provenance_versions("torch", "openmm", "mdtraj")


def default_run_dir(command: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{command}-{stamp}"
    d, i = base, 1
    while d.exists():
        i += 1
        d = base.with_name(f"{base.name}-{i}")
    return d


class Run:
    """One command in its run directory: the transaction, the collected inputs/outputs and the manifest.

    Outputs go to :meth:`path` (inside the private staging directory until :meth:`publish`).
    """

    def __init__(self, command: str, args: argparse.Namespace, argv: Sequence[str]):
        self.command = command
        self.args = args
        self.argv = list(argv)
        self.overwrite = bool(getattr(args, "overwrite", False))
        self.resume = bool(getattr(args, "resume", False))
        self.progress = not args.quiet
        self.dir = Path(args.run_dir) if args.run_dir is not None else default_run_dir(command)
        self.transaction = RunDirectory(self.dir, command, overwrite=self.overwrite, resume=self.resume)
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.t0 = time.perf_counter()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def __enter__(self) -> Run:
        self.transaction.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.transaction.__exit__(exc_type, exc, tb)

    @property
    def staging(self) -> Path:
        return self.transaction.staging

    @property
    def resumed(self) -> bool:
        """True when this command continues the unpublished outputs of an interrupted one."""
        return self.transaction.resumed_staging

    def path(self, name: str | os.PathLike) -> Path:
        """Where output ``name`` (relative to the run directory) is written; refuses names outside it."""
        p = Path(name)
        target = Path(os.path.normpath(self.staging / p))
        if p.is_absolute() or not target.is_relative_to(self.staging) or target == self.staging:
            raise ValueError(f"output name {str(name)!r} must be a relative path inside the run directory "
                             f"({self.dir}); give a plain name such as 'plumed' or 'images.pdb'")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def final_path(self, name: str | os.PathLike) -> Path:
        """Where output ``name`` will be once the run is published."""
        return self.dir / self.path(name).relative_to(self.staging)

    def input(self, key: str, path) -> None:
        paths = list(path) if isinstance(path, (list, tuple)) else [path]
        for p in paths:
            staging = foreign_staging(p)
            if staging is not None:
                raise ValueError(f"{p} lies in the unpublished outputs of an interrupted command ({staging}); "
                                 f"finish that command (--resume) or use a published run directory")
        entries = [file_entry(p) for p in paths]
        self.inputs[key] = entries if isinstance(path, (list, tuple)) else entries[0]

    def output(self, key: str, path) -> None:
        self.outputs[key] = file_entry(path, self.staging)

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

    def write_manifest(self, status: str) -> dict:
        manifest = self.manifest(status)
        write_json(self.staging / MANIFEST, manifest, overwrite=True)
        return manifest

    def publish(self) -> dict:
        """Write the complete manifest and publish the run directory atomically."""
        manifest = self.write_manifest("ok")
        self.transaction.publish()
        return manifest

    def keep_unpublished(self, status: str) -> None:
        """Leave the outputs in the staging directory with a manifest of ``status`` (for --resume)."""
        self.write_manifest(status)
        self.transaction.keep()


def read_json(path: Path) -> dict | None:
    try:
        with open(path) as fh:
            d = json.load(fh)
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def producer_manifest(path: Path) -> dict | None:
    """The manifest.json of the run that wrote ``path`` (same directory), if any, checked: a run
    directory whose manifest is incomplete, or whose manifest lists ``path`` with another sha256,
    is refused with a one-line error."""
    path = Path(path)
    staging = foreign_staging(path)
    if staging is not None:
        raise ValueError(f"{path} lies in the unpublished outputs of an interrupted command ({staging}); finish that "
                         f"command (--resume) or use a published run directory")
    manifest_path = path.parent / MANIFEST
    if not manifest_path.exists():
        return None
    manifest = read_json(manifest_path)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT or manifest.get("status") != "ok":
        raise ValueError(f"{manifest_path} is not the manifest of a complete run (status "
                         f"{(manifest or {}).get('status', 'unreadable')!r}); rerun the command that makes {path.name}")
    for entry in manifest.get("outputs", {}).values():
        if isinstance(entry, dict) and entry.get("path") == path.name and entry.get("sha256") != sha256(path):
            raise ValueError(f"{path} differs from the file its run recorded ({manifest_path}): it was changed after "
                             f"the run; rerun that command or restore the file")
    return manifest


def one_line(exc: BaseException) -> str:
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename and not str(msg).strip():
        msg = f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    lines = [line.strip() for line in str(msg).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__
