"""Machine, timing and memory helpers for the benchmarks.

Machine facts (load average, CPU model, available memory), a wall-clock timer that waits for
the device, the peak extra memory of a call (:class:`PeakMemory`), and the out-of-memory test
and clean-up used to record a too-large size as a result instead of a failure.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["PeakMemory", "cpu_model", "free", "is_oom", "loadavg", "meminfo_bytes", "timed"]


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def meminfo_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _proc_status_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak extra memory of the code run between :meth:`start` and :meth:`stop` (bytes)."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        if dev.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated minus torch.cuda.memory_allocated before the call"
        elif self._can_reset_hwm():
            self.method = ("process resident set high-water mark (VmHWM, reset via /proc/self/clear_refs) minus the "
                           "resident set before the call (after gc + malloc_trim); approximate, includes allocator "
                           "effects")
        else:
            self.method = ("growth of getrusage(RUSAGE_SELF).ru_maxrss during the call (lower bound: only new "
                           "process-wide peaks count)")
        self._base = 0

    @staticmethod
    def _can_reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _proc_status_bytes("VmHWM") is not None and _proc_status_bytes("VmRSS") is not None
        except OSError:
            return False

    def start(self) -> None:
        gc.collect()
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.dev)
            self._base = torch.cuda.memory_allocated(self.dev)
        elif self.method.startswith("process resident"):
            _malloc_trim()
            self._base = _proc_status_bytes("VmRSS") or 0
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        else:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def stop(self) -> int:
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            peak = torch.cuda.max_memory_allocated(self.dev)
        elif self.method.startswith("process resident"):
            peak = _proc_status_bytes("VmHWM") or 0
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, peak - self._base)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn: Callable[[], object], dev: torch.device) -> float:
    _sync(dev)
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - t0


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(k in msg for k in ("out of memory", "can't allocate",
                                                                    "not enough memory"))


def free(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
