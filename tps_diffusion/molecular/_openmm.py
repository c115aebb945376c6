"""OpenMM plumbing shared by the molecular layer: units, platforms, start methods of local worker processes.

Private to :mod:`tps_diffusion.molecular` (as ``openmm.app.internal`` is to OpenMM's app layer).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

import numpy as np
import openmm
import openmm.unit as unit


def in_units(value, unit_) -> float | np.ndarray:
    """Value in ``unit_`` as float/array; plain numbers are taken to be in ``unit_`` already."""
    if unit.is_quantity(value):
        value = value.value_in_unit(unit_)
    return value


def quantity_value(q: unit.Quantity, u: unit.Unit) -> Any:
    """Magnitude of ``q`` in unit ``u`` (fast path when it is already in ``u``)."""
    return q._value if q.unit is u else q.value_in_unit(u)


def platform_available(name: str) -> bool:
    try:
        openmm.Platform.getPlatformByName(name)
        return True
    except Exception:  # noqa: BLE001 - OpenMM raises a bare Exception for an unknown platform
        return False


#: below this many atoms the default platform is Reference: alanine dipeptide (22 atoms) steps 6x faster there than on
#: one CPU thread, chignolin (138 atoms) 1.4x (OBC2) and 1.7x (GBn2's custom GB force) slower (measured on the 2-core
#: development machine, LangevinMiddleIntegrator, 2 fs; python benchmarks/platform_speed.py, run while the machine
#: was also busy with a benchmark, so read them as ratios)
REFERENCE_MAX_ATOMS = 100


def default_platform(n_atoms: int) -> str:
    """Reference below :data:`REFERENCE_MAX_ATOMS` atoms (fastest for tiny systems), else CUDA if available, else
    CPU."""
    if n_atoms < REFERENCE_MAX_ATOMS:
        return "Reference"
    for name in ("CUDA", "OpenCL", "CPU"):
        if platform_available(name):
            return name
    return "Reference"


def get_platform(name: str | None, n_atoms: int) -> openmm.Platform:
    """The OpenMM platform called ``name`` (``None``: :func:`default_platform`), clear error if missing."""
    name = name or default_platform(n_atoms)
    try:
        return openmm.Platform.getPlatformByName(name)
    except Exception:  # noqa: BLE001 - OpenMM raises a bare Exception for an unknown platform
        known = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        raise ValueError(f"OpenMM platform {name!r} is not available; available: {known}") from None


def mp_context(method: str | None, platform: str):
    """``multiprocessing`` context of the worker pool (``method``: a start method, or None to choose).

    None: ``fork`` for the single-threaded Reference platform (fast start, no
    ``if __name__ == "__main__"`` guard needed); ``forkserver`` for the CPU platform, whose worker
    threads in this process (any CPU-platform Context: an energy, a minimisation) may hold locks
    that a forked child would wait on for ever; ``spawn`` for GPU platforms and where neither is
    available. Scripts that use the CPU or GPU platforms with workers need the ``__main__`` guard.
    """
    if method is None:
        methods = mp.get_all_start_methods()
        if platform == "Reference" and "fork" in methods:
            method = "fork"
        elif platform == "CPU" and "forkserver" in methods:
            method = "forkserver"
        else:
            method = "spawn"
    return mp.get_context(method)


def platform_properties(platform: str, n_workers: int) -> dict[str, str]:
    """Platform properties for one of ``n_workers`` processes (the CPU platform shares the cores)."""
    if platform == "CPU" and n_workers > 1:
        return {"Threads": str(max(1, (os.cpu_count() or 1) // n_workers))}
    return {}
