"""Kernel benchmark: throughput of the geodesic energy + gradient and of the samplers.

Measured, written to one JSON file (:func:`run`):

* ``kernel``: curve energy (:func:`tps_diffusion.geometry.curve_energy` of ``eta`` and ``mu``)
  plus its gradient w.r.t. the curve points, for B curves of N points in D dimensions, with a
  :class:`tps_diffusion.model.Denoiser` of a realistic size (untrained, seeded weights: the
  cost does not depend on the weights). Exact divergence (one JVP per dimension) and
  Hutchinson's estimate with a few Rademacher probes. Throughput is curve points per second
  (``B * N / seconds per call``, median over repeats after one warm-up call), peak memory per
  call, and the speedup of one batched call over a loop of single-curve calls.
* ``precision``: float32 vs float64 curve energy (and gradient) on the same curves, weights
  and probes.
* ``compile`` (``compile=True``): ``torch.compile`` of the denoiser and of the whole energy.
* ``sampler``: walker-steps per second of :func:`tps_diffusion.sampler.annealed_langevin` on
  the 2-D alanine dipeptide surface and, when the offline parameters are installed, with
  ANI-1x on all-atom alanine dipeptide (22 atoms).

Sizes that would take too long (or too much memory) are skipped, and every skip is listed
under ``caps`` with the reason; a prediction is the last measured batch scaled linearly in B.

CPU peak memory is the growth of the process's resident set: the kernel's high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident set before the call
(after ``gc`` and ``malloc_trim``); where the reset is not allowed, the growth of
``getrusage().ru_maxrss`` (a lower bound: only new process-wide peaks count). Both include
allocator effects and are approximate (+-30 % between identical calls is usual). On CUDA it
is ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..core.denoiser import Denoiser, DenoiserConfig
from ..core.device import resolve_device
from ..core.geometry import curve_energy, curve_energy_and_grad, expectation_params, natural_params, rademacher
from ..utils.files import check_writable, write_json
from ..utils.provenance import versions

__all__ = ["KernelRecipe", "run"]

EXACT, HUTCHINSON = "exact", "hutchinson"
KT_300K = 2.494338785  # kJ/mol at 300 K


@dataclass
class KernelRecipe:
    """Every setting of the kernel benchmark (written to the JSON)."""

    n_points: int = 128
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
    configs: tuple[tuple[int, str], ...] = ((2, EXACT), (66, EXACT), (66, HUTCHINSON), (300, HUTCHINSON))
    n_probes: int = 4
    hidden: int = 256
    depth: int = 4
    lam_end: float = 4.0  # curve endpoints' log-SNR
    lam_min: float = -2.0  # log-SNR at the middle of the test curves
    repeats: int = 5  # timed calls after the warm-up (fewer when a call is slow, see repeat_budget_s)
    repeat_budget_s: float = 15.0  # time allowed for the timed repeats of one measurement
    max_call_s: dict[str, float] = field(default_factory=lambda: {"cpu": 8.0, "cuda": 30.0})
    target: tuple[int, int] = (66, 256)  # (D, B) of the headline batched-vs-loop figure
    target_max_call_s: dict[str, float] = field(default_factory=lambda: {"cpu": 45.0, "cuda": 120.0})
    max_loop_s: float = 20.0  # longer single-curve loops are timed on a prefix and extrapolated
    curve_chunk: int = 16  # also time B > curve_chunk as a loop over chunks of this many curves (0: off)
    memory_fraction: dict[str, float] = field(default_factory=lambda: {"cpu": 0.25, "cuda": 0.85})
    precision_batch: int = 2
    compile_batch: int = 16
    sampler_2d_walkers: tuple[int, ...] = (1, 1000, 10000)
    sampler_2d_schedule: tuple[int, int] = (32, 16)  # (curve points, Langevin steps per point)
    sampler_2d_ds: float = 4e-4
    ani_walkers: tuple[int, ...] = (1, 64, 256)
    ani_schedule: tuple[int, int] = (4, 4)
    ani_ds: float = 1e-6  # nm^2 per step (overdamped, in units of kT)
    ani_tilt: float = 1000.0  # kJ/mol/nm^2, harmonic restraint towards the start structure
    sampler_repeats: int = 3
    sampler_budget_s: float = 20.0

    @classmethod
    def quick(cls) -> KernelRecipe:
        """A reduced grid for smoke tests (well under a minute on two busy cores)."""
        return cls(n_points=32, batch_sizes=(1, 4), target=(66, 4), repeats=2, repeat_budget_s=2.0,
                   max_call_s={"cpu": 4.0, "cuda": 10.0}, target_max_call_s={"cpu": 8.0, "cuda": 20.0},
                   max_loop_s=4.0, curve_chunk=2, compile_batch=4, sampler_2d_walkers=(1000,), sampler_2d_schedule=(8, 8),
                   ani_walkers=(1, 8), ani_schedule=(2, 2), sampler_repeats=1, sampler_budget_s=2.0)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# machine, timing and memory helpers
# --------------------------------------------------------------------------------------------
def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo_bytes(key: str) -> int | None:
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


class _PeakMemory:
    """Peak extra memory of the code run between :meth:`start` and :meth:`stop` (bytes)."""

    def __init__(self, dev: torch.device):
        self.dev = dev
        if dev.type == "cuda":
            self.method = "torch.cuda.max_memory_allocated minus torch.cuda.memory_allocated before the call"
        elif self._can_reset_hwm():
            self.method = ("process resident set high-water mark (VmHWM, reset via /proc/self/clear_refs) minus the "
                           "resident set before the call (after gc + malloc_trim); approximate, includes allocator effects")
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


def _timed(fn: Callable[[], object], dev: torch.device) -> float:
    _sync(dev)
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - t0


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(k in msg for k in ("out of memory", "can't allocate", "not enough memory"))


def _free(dev: torch.device) -> None:
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[bench kernel] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------------------------
def _make_model(dim: int, recipe: KernelRecipe, dev: torch.device, seed: int) -> Denoiser:
    """A seeded, frozen denoiser (the global RNG state of the caller is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + dim)
        model = Denoiser(DenoiserConfig(dim=dim, periodic=[True] * dim if dim == 2 else [],
                                        hidden=recipe.hidden, depth=recipe.depth))
    return model.requires_grad_(False).eval().to(dev)


def _test_curves(n_curves: int, n_points: int, dim: int, recipe: KernelRecipe, seed: int) -> Tensor:
    """Smooth spacetime curves ``(B, N, 1 + D)`` (float64, CPU), like geodesics in the making.

    Random endpoints at log-SNR ``lam_end``, a straight line between them plus three smooth
    sine modes, and a log-SNR dip to ``lam_min`` in the middle.
    """
    gen = torch.Generator().manual_seed(seed)
    s = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    xa = torch.randn(n_curves, 1, dim, generator=gen, dtype=torch.float64)
    xb = torch.randn(n_curves, 1, dim, generator=gen, dtype=torch.float64)
    amp = 0.3 * torch.randn(n_curves, 3, dim, generator=gen, dtype=torch.float64)
    modes = torch.sin(math.pi * torch.arange(1, 4, dtype=torch.float64)[:, None] * s)  # (3, N)
    x = xa + s[None, :, None] * (xb - xa) + torch.einsum("kn,bkd->bnd", modes, amp)
    lam = recipe.lam_end - (recipe.lam_end - recipe.lam_min) * torch.sin(math.pi * s)
    return torch.cat([lam.expand(n_curves, n_points)[..., None], x], dim=-1)


def _probes(mode: str, dim: int, recipe: KernelRecipe, like: Tensor, seed: int) -> Tensor | None:
    if mode == EXACT:
        return None
    return rademacher(recipe.n_probes, dim, like, torch.Generator().manual_seed(seed + 7))


def _energy_and_grad(denoiser, z: Tensor, probes: Tensor | None) -> tuple[Tensor, Tensor]:
    """Curve energies ``(B,)`` and their gradient w.r.t. the curve points: the library kernel."""
    return curve_energy_and_grad(denoiser, z, probes)


def _measure(fn: Callable[[], object], dev: torch.device, recipe: KernelRecipe, mem: _PeakMemory) -> dict:
    """One warm-up call, then up to ``recipe.repeats`` timed calls within ``repeat_budget_s`` (at least one).

    On CPU also the kernel (system) CPU time and minor page faults per timed call: large
    freshly mmap'ed buffers are zero-filled by the OS on every call, which shows up there.
    """
    mem.start()
    t_warm = _timed(fn, dev)
    n = max(1, min(recipe.repeats, int(recipe.repeat_budget_s // max(t_warm, 1e-9))))
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    times = [_timed(fn, dev) for _ in range(n)]
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = mem.stop()
    res = {"seconds": statistics.median(times), "times": [round(t, 6) for t in times],
           "warmup_seconds": round(t_warm, 6), "peak_memory_bytes": peak}
    if dev.type == "cpu":
        res["sys_seconds_per_call"] = (ru1.ru_stime - ru0.ru_stime) / n
        res["minor_page_faults_per_call"] = (ru1.ru_minflt - ru0.ru_minflt) / n
    return res


def _kernel_config(dim: int, mode: str, recipe: KernelRecipe, dev: torch.device, seed: int, mem: _PeakMemory,
                   max_call: float, target_max_call: float, mem_limit: int, progress: bool) -> tuple[list, list]:
    """Rows (one per measured B) and caps (skipped B with the reasons)."""
    model = _make_model(dim, recipe, dev, seed)
    probes = _probes(mode, dim, recipe, torch.empty(0, device=dev), seed)
    n = recipe.n_points
    rows: list[dict] = []
    caps: list[dict] = []
    last: dict | None = None
    t_single: float | None = None
    stop_reason: str | None = None
    for b in recipe.batch_sizes:
        is_target = (dim, b) == tuple(recipe.target)
        limit = target_max_call if is_target else max_call
        reason = stop_reason
        if reason is None and last is not None:
            scale = b / last["B"]
            pred_t = last["seconds"] * scale
            pred_m = last["peak_memory_bytes"] * scale
            if pred_t > limit:
                reason = (f"predicted {pred_t:.1f} s per call > limit {limit:g} s on {dev.type} "
                          f"(linear in B from B={last['B']})")
            elif pred_m > mem_limit:
                reason = (f"predicted peak memory {pred_m / 2**30:.2f} GiB > limit {mem_limit / 2**30:.2f} GiB "
                          f"(linear in B from B={last['B']})")
        if reason is not None:
            caps.append({"D": dim, "divergence": mode, "B": b, "N": n, "reason": reason})
            _log(progress, f"D={dim} {mode} B={b}: skipped ({reason})")
            continue
        z = _test_curves(b, n, dim, recipe, seed + 1000 * dim + b).to(device=dev, dtype=torch.float32)
        load = _loadavg()
        try:
            res = _measure(lambda z=z: _energy_and_grad(model, z, probes), dev, recipe, mem)
        except Exception as exc:  # out of memory is recorded, anything else re-raised
            if not _is_oom(exc):
                raise
            _free(dev)
            stop_reason = f"out of memory at B={b}: {type(exc).__name__}"
            caps.append({"D": dim, "divergence": mode, "B": b, "N": n, "reason": stop_reason})
            _log(progress, f"D={dim} {mode} B={b}: {stop_reason}")
            continue
        row = {"D": dim, "divergence": mode, "n_probes": recipe.n_probes if mode == HUTCHINSON else None,
               "B": b, "N": n, **res, "curve_points_per_s": b * n / res["seconds"],
               "curves_per_s": b / res["seconds"], "loadavg": load}
        if b == 1:
            t_single = res["seconds"]
        if b > 1:
            row.update(_loop(model, z, probes, dev, recipe, t_single))
            row["speedup_batched_vs_loop"] = row["loop_seconds"] / res["seconds"]
        if recipe.curve_chunk and b > recipe.curve_chunk:
            c = recipe.curve_chunk
            row["chunked_seconds"] = _timed(lambda z=z, c=c: [_energy_and_grad(model, zc, probes) for zc in z.split(c)],
                                            dev)
            row["chunk_curves"] = c
            row["speedup_chunked_vs_batched"] = res["seconds"] / row["chunked_seconds"]
        rows.append(row)
        last = row
        _log(progress, f"D={dim} {mode} B={b} N={n}: {res['seconds']:.4f} s/call, "
                       f"{row['curve_points_per_s']:.0f} points/s, peak {res['peak_memory_bytes'] / 2**20:.0f} MiB"
                       + (f", loop speedup {row['speedup_batched_vs_loop']:.1f}x" if b > 1 else ""))
        _free(dev)
    return rows, caps


def _loop(model, z: Tensor, probes, dev: torch.device, recipe: KernelRecipe, t_single: float | None) -> dict:
    """Time one-curve-at-a-time calls over the B curves of ``z`` (a prefix if that would take too long)."""
    b = z.shape[0]
    if t_single is None:  # B = 1 not in the grid: warm up and time one single-curve call
        _energy_and_grad(model, z[:1], probes)
        t_single = _timed(lambda: _energy_and_grad(model, z[:1], probes), dev)
    k = b if t_single * b <= recipe.max_loop_s else max(1, min(b, int(recipe.max_loop_s // max(t_single, 1e-9))))

    def loop():
        for i in range(k):
            _energy_and_grad(model, z[i:i + 1], probes)

    seconds = _timed(loop, dev)
    return {"loop_seconds": seconds * b / k, "loop_curves_timed": k, "loop_extrapolated": k < b}


# --------------------------------------------------------------------------------------------
# precision and compile
# --------------------------------------------------------------------------------------------
def _precision(dim: int, mode: str, recipe: KernelRecipe, dev: torch.device, seed: int) -> dict:
    """float32 vs float64 energy and gradient, same curves, weights and probes."""
    model32 = _make_model(dim, recipe, dev, seed)
    model64 = copy.deepcopy(model32).double()
    z64 = _test_curves(recipe.precision_batch, recipe.n_points, dim, recipe, seed + 99).to(dev)
    probes64 = _probes(mode, dim, recipe, z64, seed)
    e64, g64 = _energy_and_grad(model64, z64, probes64)
    e32, g32 = _energy_and_grad(model32, z64.float(), None if probes64 is None else probes64.float())
    rel_e = ((e32.double() - e64).abs() / e64.abs()).max().item()
    rel_g = ((g32.double() - g64).norm() / g64.norm()).item()
    return {"D": dim, "divergence": mode, "B": recipe.precision_batch, "N": recipe.n_points,
            "energy_float64": e64.tolist(), "energy_float32": e32.double().tolist(),
            "rel_diff_energy": _finite(rel_e), "rel_diff_grad": _finite(rel_g)}


def _compile(dim: int, mode: str, b: int, recipe: KernelRecipe, dev: torch.device, seed: int, progress: bool) -> dict:
    """Eager vs ``torch.compile(denoiser)`` vs ``torch.compile`` of the whole energy (grad outside)."""
    import torch._dynamo

    try:
        from torch._dynamo.utils import counters
    except ImportError:  # private API; only used to count captured graphs
        counters = None
    model = _make_model(dim, recipe, dev, seed)
    z = _test_curves(b, recipe.n_points, dim, recipe, seed + 1000 * dim + b).to(device=dev, dtype=torch.float32)
    probes = _probes(mode, dim, recipe, z, seed)
    e_ref = _energy_and_grad(model, z, probes)[0]
    out = {"D": dim, "divergence": mode, "B": b, "N": recipe.n_points}

    def energy_fn(zz):
        return curve_energy(natural_params(zz), expectation_params(model, zz, probes))

    def make_eager():
        return lambda: _energy_and_grad(model, z, probes)

    def make_compile_denoiser():  # torch.compile(denoiser) used inside the vmap/jvp of geometry.py
        compiled = torch.compile(model)
        return lambda: _energy_and_grad(compiled, z, probes)

    def make_compile_energy():  # the whole energy compiled as one graph, gradient by autograd outside
        compiled = torch.compile(energy_fn)

        def call():
            zz = z.detach().requires_grad_(True)
            with torch.enable_grad():
                e = compiled(zz)
                (g,) = torch.autograd.grad(e.sum(), zz)
            return e.detach(), g
        return call

    variants = {"eager": make_eager, "compile_denoiser": make_compile_denoiser, "compile_energy": make_compile_energy}
    for name, make in variants.items():
        torch._dynamo.reset()
        if counters is not None:
            counters.clear()
        entry: dict = {}
        try:
            call = make()
            entry["first_call_seconds"] = _timed(call, dev)  # includes compilation
            times = [_timed(call, dev) for _ in range(max(1, min(recipe.repeats, 3)))]
            entry["seconds"] = statistics.median(times)
            entry["curve_points_per_s"] = b * recipe.n_points / entry["seconds"]
            e = call()[0]
            entry["rel_diff_energy_vs_eager"] = _finite(((e - e_ref).abs() / e_ref.abs()).max().item())
            if counters is not None and name != "eager":
                entry["graphs_captured"] = int(counters["stats"].get("unique_graphs", 0))
                entry["graph_breaks"] = int(sum(counters["graph_break"].values()))
                if entry["graphs_captured"] == 0:
                    entry["note"] = "no graph captured: ran eagerly"
        except Exception as exc:  # noqa: BLE001 - a failed compile is a result
            entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        out[name] = entry
        _log(progress, f"compile D={dim} {mode} B={b} {name}: {entry}")
    eager = out["eager"].get("seconds")
    for name in ("compile_denoiser", "compile_energy"):
        if eager and out[name].get("seconds"):
            out[name]["speedup_vs_eager"] = eager / out[name]["seconds"]
    torch._dynamo.reset()
    return out


_WORKER_TAG = "KERNEL-COMPILE-RESULT "


def _compile_isolated(dim: int, mode: str, b: int, recipe: KernelRecipe, dev: torch.device, seed: int,
                      progress: bool, timeout_s: float = 900.0) -> dict:
    """:func:`_compile` in a fresh Python process, so that a crash of compiled code is a result.

    (torch 2.13's CPU inductor backward segfaults for some of these graphs, e.g. D=2 exact.)
    """
    import json
    import subprocess

    args = {"dim": dim, "mode": mode, "b": b, "recipe": recipe.to_dict(), "device": str(dev), "seed": seed,
            "threads": torch.get_num_threads()}
    code = "from tps_diffusion.bench.kernel import _compile_worker; _compile_worker()"
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(args), capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"D": dim, "divergence": mode, "B": b, "N": recipe.n_points,
                "error": f"compile worker timed out after {timeout_s:g} s"}
    logs = [ln for ln in proc.stderr.splitlines() if ln.startswith("[bench kernel]")]
    if progress:
        print("\n".join(logs), file=sys.stderr, flush=True)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith(_WORKER_TAG):
            res = json.loads(line[len(_WORKER_TAG):])
            res["worker_seconds"] = time.perf_counter() - t0
            return res
    # the worker died: say how, and which variants it finished (they are logged to stderr)
    how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
    done = [ln.split(": {", 1)[0].rsplit(" ", 1)[-1] for ln in logs if ln.startswith("[bench kernel] compile")]
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
    res = {"D": dim, "divergence": mode, "B": b, "N": recipe.n_points,
           "error": f"compile worker crashed ({how}) after finishing {done or 'no variant'}", "stderr_tail": tail}
    _log(progress, f"compile D={dim} {mode} B={b}: {res['error']}")
    return res


def _compile_worker() -> None:
    """Entry point of :func:`_compile_isolated`'s child process (arguments as JSON on stdin)."""
    import json

    args = json.loads(sys.stdin.read())
    torch.set_num_threads(args["threads"])
    fields = KernelRecipe.__dataclass_fields__
    rd = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
          for k, v in args["recipe"].items() if k in fields}
    res = _compile(args["dim"], args["mode"], args["b"], KernelRecipe(**rd), torch.device(args["device"]), args["seed"],
                   progress=True)
    print(_WORKER_TAG + json.dumps(res), flush=True)


# --------------------------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------------------------
def _time_sampler(call: Callable[[], object], n_walker_steps: int, recipe: KernelRecipe) -> dict:
    """Seconds (as reported by the sampler) of up to ``sampler_repeats`` runs after a warm-up run."""
    first = call().seconds
    n = max(1, min(recipe.sampler_repeats, int(recipe.sampler_budget_s // max(first, 1e-9))))
    times = [call().seconds for _ in range(n)]
    sec = statistics.median(times)
    return {"seconds": sec, "times": [round(t, 6) for t in times], "warmup_seconds": round(first, 6),
            "walker_steps_per_s": n_walker_steps / sec}


def _sampler_2d(recipe: KernelRecipe, dev: torch.device, seed: int, progress: bool) -> dict:
    from ..core.langevin import annealed_langevin
    from ..potentials.surfaces import load_aldp_surface
    from .aldp2d import X_END, X_START

    U = load_aldp_surface().to(dev)
    n_pts, k = recipe.sampler_2d_schedule
    a, b = torch.tensor(X_START, dtype=torch.float64), torch.tensor(X_END, dtype=torch.float64)
    s = torch.linspace(0.0, 1.0, n_pts, dtype=torch.float64)[:, None]
    centres = a + s * (b - a)
    stiffness = torch.full((n_pts,), math.exp(recipe.lam_end), dtype=torch.float64)
    rows = []
    for p in recipe.sampler_2d_walkers:
        def call(p=p):
            return annealed_langevin(U, centres, stiffness, a, n_paths=p, steps_per_point=k, ds=recipe.sampler_2d_ds,
                                     seed=seed, device=dev, progress=False)
        load = _loadavg()
        row = {"walkers": p, "steps": n_pts * k, **_time_sampler(call, p * n_pts * k, recipe), "loadavg": load}
        rows.append(row)
        _log(progress, f"sampler aldp2d walkers={p}: {row['walker_steps_per_s']:.0f} walker-steps/s")
    return {"potential": "aldp 2-D (phi, psi) surface (periodic B-spline, load_aldp_surface)", "kT": 1.0,
            "schedule": {"curve_points": n_pts, "steps_per_point": k, "ds": recipe.sampler_2d_ds,
                         "stiffness": math.exp(recipe.lam_end)}, "rows": rows}


def _sampler_ani(recipe: KernelRecipe, dev: torch.device, seed: int, progress: bool) -> dict:
    from ..core.langevin import annealed_langevin
    from ..utils.systems_dir import systems_dir

    pdb = systems_dir() / "alanine_dipeptide" / "C5_min.pdb"
    info: dict = {"potential": "ANI-1x (8-model ensemble), all-atom alanine dipeptide in vacuum", "pdb": str(pdb)}
    try:
        import mdtraj

        from ..potentials.ani import ANIPotential

        traj = mdtraj.load(str(pdb))
        t0 = time.perf_counter()
        U = ANIPotential(traj.topology, model="ANI-1x", device=dev, dtype=torch.float32)
        info["load_seconds"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - missing module/parameters: the report says why
        info.update(available=False, reason=f"{type(exc).__name__}: {exc}"[:800])
        _log(progress, f"sampler ANI skipped: {info['reason']}")
        return info
    info.update(available=True, n_atoms=int(traj.n_atoms), dtype="float32", kT_kJ_per_mol=KT_300K)
    n_pts, k = recipe.ani_schedule
    x0 = torch.tensor(traj.xyz[0].reshape(-1), dtype=torch.float64)
    centres = x0.expand(n_pts, -1).clone()
    stiffness = torch.full((n_pts,), recipe.ani_tilt / KT_300K, dtype=torch.float64)
    info["schedule"] = {"curve_points": n_pts, "steps_per_point": k, "ds_nm2": recipe.ani_ds,
                        "tilt_kJ_per_mol_nm2": recipe.ani_tilt, "centre": "start structure (C5_min.pdb)"}
    rows = []
    for p in recipe.ani_walkers:
        def call(p=p):
            return annealed_langevin(U, centres, stiffness, x0, n_paths=p, steps_per_point=k, ds=recipe.ani_ds,
                                     kT=KT_300K, seed=seed, device=dev, progress=False)
        load = _loadavg()
        try:
            row = {"walkers": p, "steps": n_pts * k, **_time_sampler(call, p * n_pts * k, recipe), "loadavg": load}
        except Exception as exc:  # noqa: BLE001 - a failing ANI backend is reported, not fatal
            _free(dev)
            row = {"walkers": p, "error": f"{type(exc).__name__}: {exc}"[:500]}
        rows.append(row)
        _log(progress, f"sampler ANI-1x walkers={p}: {row.get('walker_steps_per_s', float('nan')):.1f} walker-steps/s")
    info["rows"] = rows
    return info


# --------------------------------------------------------------------------------------------
# threads, summary table, run
# --------------------------------------------------------------------------------------------
def _choose_threads(threads, dev: torch.device, recipe: KernelRecipe, seed: int, progress: bool) -> dict:
    """Set torch's intra-op thread count; ``"auto"`` probes 1 vs the default on a small kernel (CPU).

    The probe alternates the candidates (three rounds, median per candidate) and keeps more
    than one thread only when that is at least ``1.5x`` faster: on a shared machine a
    multi-threaded kernel slows down badly (up to tens of times) whenever another job takes a
    core, while a single thread degrades gracefully.
    """
    default = torch.get_num_threads()
    if threads is None or (threads == "auto" and dev.type != "cpu"):
        return {"threads": default, "threads_default": default, "choice": "torch default"}
    if threads != "auto":
        torch.set_num_threads(int(threads))
        return {"threads": int(threads), "threads_default": default, "choice": "given"}
    if default == 1:
        return {"threads": 1, "threads_default": 1, "choice": "only one thread available"}
    dim = recipe.target[0]
    model = _make_model(dim, recipe, dev, seed)
    z = _test_curves(4, recipe.n_points, dim, recipe, seed).to(device=dev, dtype=torch.float32)
    probes = _probes(HUTCHINSON, dim, recipe, z, seed)
    def call():
        return _energy_and_grad(model, z, probes)

    call()  # one-time initialisation, not part of the probe
    times: dict[int, list[float]] = {1: [], default: []}
    for _ in range(3):
        for c, t in times.items():
            torch.set_num_threads(c)
            t.append(_timed(call, dev))
    rate = {str(c): 4 * recipe.n_points / statistics.median(t) for c, t in times.items()}
    best = default if rate[str(default)] >= 1.5 * rate["1"] else 1
    torch.set_num_threads(best)
    _log(progress, f"threads: probe (points/s) {rate} -> {best}")
    return {"threads": best, "threads_default": default,
            "choice": f"auto: {default} threads only if >= 1.5x faster than 1 in the probe",
            "probe_points_per_s": rate,
            "probe": f"D={dim} hutchinson B=4 N={recipe.n_points}, candidates alternated 3 times, median"}


def _table(report: dict) -> str:
    lines = [(f"kernel benchmark on {report['machine']['device_name']} ({report['machine']['device']}, "
              f"{report['machine']['threads']} threads, load {report['machine']['loadavg_start']})"),
             (f"{'D':>4} {'div':<11} {'B':>5} {'N':>4} {'s/call':>9} {'points/s':>10} {'peak MiB':>9} "
              f"{'sys s':>6} {'loop s':>9} {'vs loop':>8} {'chunked':>8}")]
    for r in report["kernel"]:
        div = "exact" if r["divergence"] == EXACT else f"hutch({r['n_probes']})"
        loop = f"{r['loop_seconds']:9.3f}" + ("*" if r.get("loop_extrapolated") else " ") if "loop_seconds" in r else " " * 10
        speed = f"{r['speedup_batched_vs_loop']:7.1f}x" if "speedup_batched_vs_loop" in r else " " * 8
        chunk = f" {r['speedup_chunked_vs_batched']:6.2f}x" if "speedup_chunked_vs_batched" in r else ""
        sys_s = f"{r['sys_seconds_per_call']:6.2f}" if "sys_seconds_per_call" in r else " " * 6
        lines.append(f"{r['D']:>4} {div:<11} {r['B']:>5} {r['N']:>4} {r['seconds']:9.4f} {r['curve_points_per_s']:10.0f} "
                     f"{r['peak_memory_bytes'] / 2**20:9.0f} {sys_s} {loop}{speed}{chunk}")
    lines.append("  vs loop: speedup of one batched call over B single-curve calls; chunked: speedup of B/"
                 f"{report['recipe']['curve_chunk']} calls of {report['recipe']['curve_chunk']} curves over one batched "
                 "call; sys s: kernel CPU time per call (page faults)")
    if any(r.get("loop_extrapolated") for r in report["kernel"]):
        lines.append("  * loop time extrapolated from a prefix of the curves")
    for c in report["caps"]:
        lines.append(f"  skipped D={c['D']} {c['divergence']} B={c['B']}: {c['reason']}")
    t = report["target"]
    lines.append(f"target D={t['D']} B={t['B']} N={t['N']}: " + "; ".join(
        f"{m}: " + (f"speedup {v['speedup_batched_vs_loop'] or float('nan'):.1f}x ({v['curve_points_per_s']:.0f} points/s)"
                    if v.get("measured") else f"not measured ({v.get('reason', '')})")
        for m, v in t["by_divergence"].items()))
    for p in report["precision"]:
        lines.append(f"float32 vs float64 D={p['D']} {p['divergence']}: rel. diff energy {p['rel_diff_energy']:.2e}, "
                     f"grad {p['rel_diff_grad']:.2e}")
    c = report["compile"]
    if c.get("enabled"):
        for e in c["results"]:
            if "error" in e:
                lines.append(f"compile D={e['D']} {e['divergence']} B={e['B']}: {e['error']}")
                continue
            parts = []
            for name in ("compile_denoiser", "compile_energy"):
                v = e[name]
                parts.append(f"{name}: " + (f"error {v['error'][:60]}" if "error" in v else
                                            f"{v.get('speedup_vs_eager', float('nan')):.2f}x, first call "
                                            f"{v['first_call_seconds']:.1f} s" + (f" ({v['note']})" if "note" in v else "")))
            lines.append(f"compile D={e['D']} {e['divergence']} B={e['B']}: " + "; ".join(parts))
    else:
        lines.append("compile: not run (compile=False)")
    s2 = report["sampler"]["aldp2d"]
    for r in s2.get("rows", []):
        lines.append(f"sampler aldp2d walkers={r['walkers']:>6}: {r['walker_steps_per_s']:12.0f} walker-steps/s")
    if "error" in s2:
        lines.append(f"sampler aldp2d failed: {s2['error'][:120]}")
    ani = report["sampler"]["ani"]
    if ani.get("available"):
        for r in ani["rows"]:
            val = f"{r['walker_steps_per_s']:12.1f} walker-steps/s" if "walker_steps_per_s" in r else r.get("error", "")
            lines.append(f"sampler ANI-1x walkers={r['walkers']:>6}: {val}")
    else:
        lines.append(f"sampler ANI-1x: not available ({(ani.get('reason') or ani.get('error', ''))[:120]})")
    lines.append(f"total {report['seconds_total']:.0f} s, load at end {report['machine']['loadavg_end']}")
    return "\n".join(lines)


def _target_summary(rows: list[dict], caps: list[dict], recipe: KernelRecipe) -> dict:
    d, b = recipe.target
    by_div = {}
    for dim, mode in recipe.configs:
        if dim != d:
            continue
        row = next((r for r in rows if r["D"] == d and r["B"] == b and r["divergence"] == mode), None)
        if row is not None:
            by_div[mode] = {"measured": True, "speedup_batched_vs_loop": row.get("speedup_batched_vs_loop"),
                            "curve_points_per_s": row["curve_points_per_s"], "seconds": row["seconds"],
                            "loop_extrapolated": row.get("loop_extrapolated")}
            continue
        cap = next((c for c in caps if c["D"] == d and c["B"] == b and c["divergence"] == mode), None)
        measured = [r for r in rows if r["D"] == d and r["divergence"] == mode and r["B"] > 1]
        entry = {"measured": False, "reason": cap["reason"] if cap else "B not in the grid"}
        if measured:
            big = max(measured, key=lambda r: r["B"])
            entry["largest_measured"] = {"B": big["B"], "speedup_batched_vs_loop": big["speedup_batched_vs_loop"],
                                         "curve_points_per_s": big["curve_points_per_s"]}
        by_div[mode] = entry
    return {"D": d, "B": b, "N": recipe.n_points, "by_divergence": by_div}


def run(out: str | Path, device: str = "auto", quick: bool = False, overwrite: bool = False, progress: bool = True,
        compile: bool = False, threads: int | str | None = "auto", seed: int = 0,
        recipe: KernelRecipe | None = None) -> dict:
    """Run the kernel benchmark, write the JSON report to ``out`` and return it.

    ``device``: ``"auto"``, ``"cpu"`` or ``"cuda"``. ``quick``: the reduced grid of
    :meth:`KernelRecipe.quick`. ``compile``: also time ``torch.compile`` variants (slow to
    compile on CPU, so there only for the target configuration). ``threads``: torch intra-op
    threads on CPU; ``"auto"`` uses torch's default only where a short probe finds it at
    least 1.5x faster than one thread (on a busy machine one thread is often much faster, and
    always more stable), ``None`` leaves torch's setting. ``recipe`` overrides every
    size (see :class:`KernelRecipe`). The thread count is restored on return.
    The report's ``"table"`` is also printed to stdout.
    """
    out = check_writable(out, overwrite)
    recipe = recipe or (KernelRecipe.quick() if quick else KernelRecipe())
    dev = resolve_device(device)
    t_start = time.perf_counter()
    threads_before = torch.get_num_threads()
    machine = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "loadavg_start": _loadavg(),
        "mem_available_bytes": _meminfo_bytes("MemAvailable"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        machine.update(_choose_threads(threads, dev, recipe, seed, progress))
        mem = _PeakMemory(dev)
        kind = "cuda" if dev.type == "cuda" else "cpu"
        if dev.type == "cuda":
            mem_limit = int(recipe.memory_fraction[kind] * torch.cuda.get_device_properties(dev).total_memory)
        else:
            mem_limit = int(recipe.memory_fraction[kind] * (_meminfo_bytes("MemAvailable") or 8 * 2**30))

        rows, caps = [], []
        for dim, mode in recipe.configs:
            r, c = _kernel_config(dim, mode, recipe, dev, seed, mem, recipe.max_call_s[kind],
                                  recipe.target_max_call_s[kind], mem_limit, progress)
            rows += r
            caps += c

        precision = []
        for dim, mode in recipe.configs:
            precision.append(_precision(dim, mode, recipe, dev, seed))
            _log(progress, f"precision D={dim} {mode}: rel diff energy {precision[-1]['rel_diff_energy']:.2e}")

        if compile:
            todo = list(recipe.configs)
            if dev.type != "cuda":  # about a minute of compilation per configuration on CPU
                todo = [c for c in todo if c == (recipe.target[0], HUTCHINSON)][:1] or todo[:1]
            results = []
            for dim, mode in todo:
                measured = [r["B"] for r in rows if r["D"] == dim and r["divergence"] == mode]
                b = min(recipe.compile_batch, max(measured) if measured else 1)
                results.append(_compile_isolated(dim, mode, b, recipe, dev, seed, progress))
            compile_info = {"enabled": True, "results": results,
                            "note": ("each configuration runs in a fresh process; first_call_seconds includes "
                                     "compilation, which inductor's on-disk cache can shorten on later runs"),
                            "scope": "all configurations" if dev.type == "cuda"
                            else "target divergence mode only on CPU (compilation takes about a minute per configuration)"}
        else:
            compile_info = {"enabled": False, "note": "run(..., compile=True) times torch.compile variants"}

        sampler = {}
        for name, fn in (("aldp2d", _sampler_2d), ("ani", _sampler_ani)):
            try:
                sampler[name] = fn(recipe, dev, seed, progress)
            except Exception as exc:  # noqa: BLE001 - keep the kernel figures measured so far
                sampler[name] = {"available": False, "error": f"{type(exc).__name__}: {exc}"[:800]}
                _log(progress, f"sampler {name} failed: {sampler[name]['error']}")
        machine["threads"] = torch.get_num_threads()
        machine["loadavg_end"] = _loadavg()
        report = {
            "benchmark": "kernel",
            "quick": quick,
            "seed": seed,
            "machine": machine,
            "recipe": recipe.to_dict(),
            "model": {"class": "tps_diffusion.model.Denoiser", "hidden": recipe.hidden, "depth": recipe.depth,
                      "weights": "untrained, seeded (cost does not depend on the weights)", "dtype": "float32",
                      "requires_grad": False},
            "what": ("seconds per call of curve_energy(natural_params(z), expectation_params(denoiser, z, probes)) for B "
                     "curves of N points plus torch.autograd.grad w.r.t. z; curve_points_per_s = B * N / seconds "
                     "(median of the timed calls after one warm-up); loop = the same B curves one call each"),
            "memory_method": mem.method,
            "kernel": rows,
            "caps": caps,
            "target": _target_summary(rows, caps, recipe),
            "precision": precision,
            "compile": compile_info,
            "sampler": sampler,
            "versions": versions("torch"),
        }
        report["seconds_total"] = time.perf_counter() - t_start
        report["table"] = _table(report)
        write_json(out, report, overwrite)
        print(report["table"], flush=True)
        return report
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":  # python -m tps_diffusion.bench.kernel OUT [--quick] [--device D] [--overwrite] ...
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", default="auto", help="'auto', 'default' (torch's setting) or a number")
    a = ap.parse_args()
    n_threads = {"auto": "auto", "default": None}[a.threads] if a.threads in ("auto", "default") else int(a.threads)
    run(a.out, device=a.device, quick=a.quick, overwrite=a.overwrite, compile=a.compile, threads=n_threads)
