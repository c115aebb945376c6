"""Input limits of the molecular and hand-off layers: checked counts, memory of recorded frames,
writable outputs and one-line errors for failures inside OpenMM or a file writer.

Every check here runs before any long work starts and raises with one line that names the fix:
``ValueError`` for a bad value, ``OSError`` for an output that cannot be written.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import openmm

from ..utils.files import first_line

__all__ = ["as_count", "available_memory", "check_frame_memory", "nonfinite_frames",
           "check_output_dir", "openmm_errors"]

GIB = 1024**3


def _shown(value) -> str:
    return f"{value}" if isinstance(value, numbers.Number) else repr(value)


def as_count(value, name: str, minimum: int = 1, maximum: int | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``.

    Integral floats (``1e12`` from a command line or a config file) are accepted; NaN, inf,
    fractions, booleans, non-numbers and values out of range raise ``ValueError`` naming ``name``.
    """
    v = None
    if not isinstance(value, (bool, np.bool_)):
        if isinstance(value, numbers.Integral):
            v = int(value)
        elif isinstance(value, numbers.Real):
            f = float(value)
            v = int(f) if math.isfinite(f) and f.is_integer() else None
        else:
            try:
                v = operator.index(value)
            except TypeError:
                v = None
    in_range = v is not None and v >= minimum and (maximum is None or v <= maximum)
    if not in_range:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {bound}; got {_shown(value)}{hint}")
    return v


def available_memory() -> int | None:
    """Bytes of memory available to new allocations: ``MemAvailable`` of ``/proc/meminfo``, else
    ``psutil.virtual_memory().available`` if psutil is installed, else None (unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    try:
        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - an unsupported platform: memory unknown, skip the check
        return None


def check_frame_memory(n_runs: int, n_frames: int, n_atoms: int, n_copies: int = 1,
                       per_frame_extra: int = 8, fix: str = "record fewer frames (larger report/record interval) or "
                                                               "fewer runs/paths") -> int:
    """Refuse a run whose recorded frames do not fit into the available memory.

    The frames take ``n_runs * n_frames * (n_atoms * 3 * 4 + per_frame_extra)`` bytes (float32
    positions plus float64 energies); ``n_copies`` of them are held at once at the peak (2 when
    the runs are joined into one array). Returns the recorded bytes; raises ``ValueError`` when the
    peak exceeds :func:`available_memory` (no check when it is unknown).
    """
    n_bytes = int(n_runs) * int(n_frames) * (int(n_atoms) * 3 * 4 + int(per_frame_extra))
    avail = available_memory()
    if avail is not None and n_bytes * n_copies > avail:
        peak = f" (about {n_copies * n_bytes / GIB:.3g} GiB at the peak)" if n_copies > 1 else ""
        raise ValueError(f"this run would record {n_bytes / GIB:.3g} GiB of frames{peak} but only "
                         f"{avail / GIB:.3g} GiB are available; {fix}")
    return n_bytes


def nonfinite_frames(xyz: np.ndarray, limit: int = 10) -> str | None:
    """None if every coordinate is finite, else the bad frame indices as text (at most ``limit``)."""
    xyz = np.asarray(xyz)
    if np.isfinite(np.sum(xyz, dtype=np.float64)) or np.all(np.isfinite(xyz)):  # the sum: no copy of big arrays
        return None
    bad = np.unique(np.nonzero(~np.isfinite(xyz.reshape(len(xyz), -1)))[0])
    more = f" ... ({len(bad)} frames)" if len(bad) > limit else ""
    return f"{bad[:limit].tolist()}{more}"


def _existing_ancestor(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(directory: str | os.PathLike, what: str = "output", fix: str = "choose another directory") -> Path:
    """Raise a one-line ``OSError`` unless files can be created in ``directory`` (which is created
    later if missing: then its nearest existing ancestor must be a writable directory).

    The check creates and removes an empty temporary file, so read-only file systems and
    permissions are caught, not only the mode bits. Returns ``directory`` as a Path.
    """
    directory = Path(directory)
    base = _existing_ancestor(directory)
    if not base.is_dir():
        raise NotADirectoryError(f"cannot write {what} to {directory}: {base} is a file, not a directory; {fix}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".tps_probe_", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"cannot write {what} to {directory}: {exc.strerror or first_line(exc)} in {base}; "
                      f"{fix}") from None
    return directory


def _openmm_fix(message: str) -> str:
    low = message.lower()
    if "nan" in low or "infinit" in low:
        return "the simulation blew up: reduce the time step or fix the structure (clashing or NaN positions)"
    if any(k in low for k in ("platform", "cuda", "opencl", "device", "driver", "hip", "kernel")):
        return "choose another OpenMM platform (Dynamics(platform='CPU' or 'Reference'), CLI --platform)"
    if "wrong number" in low or "particles" in low:
        return "positions and system must have the same atoms"
    return "check the system, positions and platform"


@contextmanager
def openmm_errors(doing: str) -> Iterator[None]:
    """Re-raise an ``openmm.OpenMMException`` from the body as a one-line ``RuntimeError`` saying
    what was being done and the likely fix (platform, time step, structure)."""
    try:
        yield
    except openmm.OpenMMException as exc:
        msg = first_line(exc) or "OpenMMException"
        raise RuntimeError(f"OpenMM failed while {doing} ({msg}); {_openmm_fix(msg)}") from None
