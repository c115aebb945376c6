"""Safe file output: every result is written to a temporary file and renamed into place.

A crash therefore never leaves a half-written trajectory, checkpoint or JSON file, and an
existing file is only replaced when the caller asks for it (``overwrite=True``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def first_line(text) -> str:
    """The first non-empty line of ``str(text)`` (stripped), or ``""``."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def writer_failed(path: str | os.PathLike, exc: BaseException) -> OSError:
    """The one-line ``OSError`` for a writer that failed on ``path`` (full disk is the usual cause)."""
    reason = first_line(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    if isinstance(exc, PermissionError):
        hint = "you may not write there: choose another --run-dir or output path"
    else:
        hint = "is the disk full? free space or choose another --run-dir"
    return OSError(f"writing {Path(path).name} failed ({type(exc).__name__}: {reason}); {hint}")


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn any failure of the writer called inside into :func:`writer_failed`.

    Wrap only the call of the writer (inside :func:`atomic_path`, which
    removes the partial file), so that validation errors before it keep their own type.
    """
    try:
        yield
    except FileExistsError:
        raise
    except Exception as exc:  # noqa: BLE001 - any writer failure (mdtraj raises TypeError on a full disk)
        raise writer_failed(path, exc) from None


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Return ``path`` as a Path; raise if it exists and ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) or choose another path")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary name keeps the suffix of ``path`` so that writers that dispatch on the
    extension (mdtraj, matplotlib) behave as for the final name. On error the temporary file
    is removed and ``path`` is untouched.
    """
    path = check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers such as mdtraj refuse to write onto an existing file
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, overwrite: bool = False) -> Path:
    """Atomically write ``obj`` as indented JSON to ``path``.

    NaN and +-inf are refused (they are not valid JSON: ``json.dumps`` would write bare ``NaN``):
    the ValueError names the file and the first offending entry; store undefined values as None.
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        found = _first_non_finite(obj)
        if found is None:
            raise
        where, value = found
        raise ValueError(f"refusing to write {path}: {where} is {value}, which is not valid JSON; store undefined "
                         "values as None (null) or fix the computation that produced it") from None
    return write_text(path, text + "\n", overwrite)


def _first_non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """``(location, value)`` of the first NaN/inf float in nested dicts/lists/tuples, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (f"entry {where}" if where else "the value", obj)
    if isinstance(obj, dict):
        items = ((f"{where}[{str(k)!r}]", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for w, v in items:
        found = _first_non_finite(v, w)
        if found is not None:
            return found
    return None
