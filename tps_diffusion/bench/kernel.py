"""Kernel benchmark: throughput of the geodesic energy + gradient and of the samplers.

Measured, written to one JSON file (:func:`run`):

* ``kernel``: curve energy (:func:`tps_diffusion.core.geometry.curve_energy` of ``eta`` and ``mu``)
  plus its gradient w.r.t. the curve points, for B curves of N points in D dimensions, with a
  :class:`tps_diffusion.core.denoiser.Denoiser` of a realistic size (untrained, seeded weights: the
  cost does not depend on the weights). Exact divergence (one JVP per dimension) and
  Hutchinson's estimate with a few Rademacher probes. Throughput is curve points per second
  (``B * N / seconds per call``, median over repeats after one warm-up call), peak memory per
  call, and the speedup of one batched call over a loop of single-curve calls.
* ``precision``: float32 vs float64 curve energy (and gradient) on the same curves, weights
  and probes.
* ``compile`` (``compile=True``): ``torch.compile`` of the denoiser and of the whole energy.
* ``sampler``: walker-steps per second of :func:`tps_diffusion.core.langevin.annealed_langevin` on
  the 2-D alanine dipeptide surface and, when the offline parameters are installed, with
  ANI-1x on all-atom alanine dipeptide (22 atoms).

Modules: settings and test problem in :mod:`.kernel_setup`, precision and compile in
:mod:`.kernel_compile`, samplers in :mod:`.kernel_samplers`, the text table in
:mod:`.kernel_report`, machine/timing/memory helpers in :mod:`.timing`.

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

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..core.checks import check_int, check_lam, check_real, check_seed
from ..core.device import resolve_device
from ..utils.files import check_writable, write_json
from ..utils.provenance import versions
from .kernel_compile import compile_isolated, measure_precision
from .kernel_report import summary_table, target_summary
from .kernel_samplers import sampler_2d, sampler_ani
from .kernel_setup import EXACT, HUTCHINSON, KernelRecipe, energy_and_grad, log, make_curves, make_model, make_probes
from .timing import PeakMemory, cpu_model, free, is_oom, loadavg, meminfo_bytes, timed

__all__ = ["KernelRecipe", "check_recipe", "run"]


# --------------------------------------------------------------------------------------------
# the kernel
# --------------------------------------------------------------------------------------------
def _measure(fn: Callable[[], object], dev: torch.device, recipe: KernelRecipe, mem: PeakMemory) -> dict:
    """One warm-up call, then up to ``recipe.repeats`` timed calls within ``repeat_budget_s`` (at least one).

    On CPU also the kernel (system) CPU time and minor page faults per timed call: large
    freshly mmap'ed buffers are zero-filled by the OS on every call, which shows up there.
    """
    mem.start()
    t_warm = timed(fn, dev)
    n = max(1, min(recipe.repeats, int(recipe.repeat_budget_s // max(t_warm, 1e-9))))
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    times = [timed(fn, dev) for _ in range(n)]
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = mem.stop()
    res = {"seconds": statistics.median(times), "times": [round(t, 6) for t in times],
           "warmup_seconds": round(t_warm, 6), "peak_memory_bytes": peak}
    if dev.type == "cpu":
        res["sys_seconds_per_call"] = (ru1.ru_stime - ru0.ru_stime) / n
        res["minor_page_faults_per_call"] = (ru1.ru_minflt - ru0.ru_minflt) / n
    return res


def _kernel_config(dim: int, mode: str, recipe: KernelRecipe, dev: torch.device, seed: int, mem: PeakMemory,
                   max_call: float, target_max_call: float, mem_limit: int, progress: bool) -> tuple[list, list]:
    """Rows (one per measured B) and caps (skipped B with the reasons)."""
    model = make_model(dim, recipe, dev, seed)
    probes = make_probes(mode, dim, recipe, torch.empty(0, device=dev), seed)
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
            log(progress, f"D={dim} {mode} B={b}: skipped ({reason})")
            continue
        z = make_curves(b, n, dim, recipe, seed + 1000 * dim + b).to(device=dev, dtype=torch.float32)
        load = loadavg()
        try:
            res = _measure(lambda z=z: energy_and_grad(model, z, probes), dev, recipe, mem)
        except Exception as exc:  # out of memory is recorded, anything else re-raised
            if not is_oom(exc):
                raise
            free(dev)
            stop_reason = f"out of memory at B={b}: {type(exc).__name__}"
            caps.append({"D": dim, "divergence": mode, "B": b, "N": n, "reason": stop_reason})
            log(progress, f"D={dim} {mode} B={b}: {stop_reason}")
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
            row["chunked_seconds"] = timed(lambda z=z, c=c: [energy_and_grad(model, zc, probes) for zc in z.split(c)],
                                           dev)
            row["chunk_curves"] = c
            row["speedup_chunked_vs_batched"] = res["seconds"] / row["chunked_seconds"]
        rows.append(row)
        last = row
        log(progress, f"D={dim} {mode} B={b} N={n}: {res['seconds']:.4f} s/call, "
                      f"{row['curve_points_per_s']:.0f} points/s, peak {res['peak_memory_bytes'] / 2**20:.0f} MiB"
                      + (f", loop speedup {row['speedup_batched_vs_loop']:.1f}x" if b > 1 else ""))
        free(dev)
    return rows, caps


def _loop(model, z: Tensor, probes, dev: torch.device, recipe: KernelRecipe, t_single: float | None) -> dict:
    """Time one-curve-at-a-time calls over the B curves of ``z`` (a prefix if that would take too long)."""
    b = z.shape[0]
    if t_single is None:  # B = 1 not in the grid: warm up and time one single-curve call
        energy_and_grad(model, z[:1], probes)
        t_single = timed(lambda: energy_and_grad(model, z[:1], probes), dev)
    k = b if t_single * b <= recipe.max_loop_s else max(1, min(b, int(recipe.max_loop_s // max(t_single, 1e-9))))

    def loop():
        for i in range(k):
            energy_and_grad(model, z[i:i + 1], probes)

    seconds = timed(loop, dev)
    return {"loop_seconds": seconds * b / k, "loop_curves_timed": k, "loop_extrapolated": k < b}


def check_recipe(recipe: KernelRecipe) -> None:
    """One-line ValueError/TypeError for a recipe setting that cannot work, before any measurement."""
    if not isinstance(recipe, KernelRecipe):
        raise TypeError(f"recipe must be a KernelRecipe, got {type(recipe).__name__}; pass KernelRecipe(...)")
    check_int(recipe.n_points, "KernelRecipe.n_points", 2, "use at least 2 curve points (e.g. 128)")
    for name, minimum in (("n_probes", 1), ("hidden", 1), ("depth", 0), ("repeats", 1), ("curve_chunk", 0),
                          ("precision_batch", 1), ("compile_batch", 1), ("sampler_repeats", 1)):
        check_int(getattr(recipe, name), f"KernelRecipe.{name}", minimum)
    for name in ("batch_sizes", "sampler_2d_walkers", "ani_walkers", "sampler_2d_schedule", "ani_schedule",
                 "target"):
        values = tuple(getattr(recipe, name))
        if not values:
            raise ValueError(f"KernelRecipe.{name} is empty; give at least one value")
        for i, v in enumerate(values):
            check_int(v, f"KernelRecipe.{name}[{i}]", 1)
    if not recipe.configs:
        raise ValueError("KernelRecipe.configs is empty; give at least one (D, divergence) pair, e.g. (2, 'exact')")
    for i, (dim, mode) in enumerate(recipe.configs):
        check_int(dim, f"KernelRecipe.configs[{i}] D", 1)
        if mode not in (EXACT, HUTCHINSON):
            raise ValueError(f"unknown divergence {mode!r} in KernelRecipe.configs[{i}]; use {EXACT!r} or "
                             f"{HUTCHINSON!r}")
    check_lam(recipe.lam_end, "KernelRecipe.lam_end")
    check_lam(recipe.lam_min, "KernelRecipe.lam_min")
    for name in ("sampler_2d_ds", "ani_ds"):
        check_real(getattr(recipe, name), f"KernelRecipe.{name}", low=0.0, low_open=True,
                   fix="use a small positive step")
    for name in ("repeat_budget_s", "max_loop_s", "sampler_budget_s", "ani_tilt"):
        check_real(getattr(recipe, name), f"KernelRecipe.{name}", low=0.0)


# --------------------------------------------------------------------------------------------
# threads and run
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
    model = make_model(dim, recipe, dev, seed)
    z = make_curves(4, recipe.n_points, dim, recipe, seed).to(device=dev, dtype=torch.float32)
    probes = make_probes(HUTCHINSON, dim, recipe, z, seed)
    def call():
        return energy_and_grad(model, z, probes)

    call()  # one-time initialisation, not part of the probe
    times: dict[int, list[float]] = {1: [], default: []}
    for _ in range(3):
        for c, t in times.items():
            torch.set_num_threads(c)
            t.append(timed(call, dev))
    rate = {str(c): 4 * recipe.n_points / statistics.median(t) for c, t in times.items()}
    best = default if rate[str(default)] >= 1.5 * rate["1"] else 1
    torch.set_num_threads(best)
    log(progress, f"threads: probe (points/s) {rate} -> {best}")
    return {"threads": best, "threads_default": default,
            "choice": f"auto: {default} threads only if >= 1.5x faster than 1 in the probe",
            "probe_points_per_s": rate,
            "probe": f"D={dim} hutchinson B=4 N={recipe.n_points}, candidates alternated 3 times, median"}


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
    check_recipe(recipe)
    check_seed(seed, "seed")
    if threads is not None and threads != "auto":
        check_int(threads, "threads", 1, "use 'auto', None (torch's setting) or a thread count >= 1")
    dev = resolve_device(device)
    t_start = time.perf_counter()
    threads_before = torch.get_num_threads()
    machine = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "loadavg_start": loadavg(),
        "mem_available_bytes": meminfo_bytes("MemAvailable"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        machine.update(_choose_threads(threads, dev, recipe, seed, progress))
        mem = PeakMemory(dev)
        kind = "cuda" if dev.type == "cuda" else "cpu"
        if dev.type == "cuda":
            mem_limit = int(recipe.memory_fraction[kind] * torch.cuda.get_device_properties(dev).total_memory)
        else:
            mem_limit = int(recipe.memory_fraction[kind] * (meminfo_bytes("MemAvailable") or 8 * 2**30))

        rows, caps = [], []
        for dim, mode in recipe.configs:
            r, c = _kernel_config(dim, mode, recipe, dev, seed, mem, recipe.max_call_s[kind],
                                  recipe.target_max_call_s[kind], mem_limit, progress)
            rows += r
            caps += c

        precision = []
        for dim, mode in recipe.configs:
            precision.append(measure_precision(dim, mode, recipe, dev, seed))
            log(progress, f"precision D={dim} {mode}: rel diff energy {precision[-1]['rel_diff_energy']:.2e}")

        if compile:
            todo = list(recipe.configs)
            if dev.type != "cuda":  # about a minute of compilation per configuration on CPU
                todo = [c for c in todo if c == (recipe.target[0], HUTCHINSON)][:1] or todo[:1]
            results = []
            for dim, mode in todo:
                measured = [r["B"] for r in rows if r["D"] == dim and r["divergence"] == mode]
                b = min(recipe.compile_batch, max(measured) if measured else 1)
                results.append(compile_isolated(dim, mode, b, recipe, dev, seed, progress))
            compile_info = {"enabled": True, "results": results,
                            "note": ("each configuration runs in a fresh process; first_call_seconds includes "
                                     "compilation, which inductor's on-disk cache can shorten on later runs"),
                            "scope": "all configurations" if dev.type == "cuda"
                            else "target divergence mode only on CPU (compilation takes about a minute per "
                                 "configuration)"}
        else:
            compile_info = {"enabled": False, "note": "run(..., compile=True) times torch.compile variants"}

        sampler = {}
        for name, fn in (("aldp2d", sampler_2d), ("ani", sampler_ani)):
            try:
                sampler[name] = fn(recipe, dev, seed, progress)
            except Exception as exc:  # noqa: BLE001 - keep the kernel figures measured so far
                sampler[name] = {"available": False, "error": f"{type(exc).__name__}: {exc}"[:800]}
                log(progress, f"sampler {name} failed: {sampler[name]['error']}")
        machine["threads"] = torch.get_num_threads()
        machine["loadavg_end"] = loadavg()
        report = {
            "benchmark": "kernel",
            "quick": quick,
            "seed": seed,
            "machine": machine,
            "recipe": recipe.to_dict(),
            "model": {"class": "tps_diffusion.core.denoiser.Denoiser", "hidden": recipe.hidden, "depth": recipe.depth,
                      "weights": "untrained, seeded (cost does not depend on the weights)", "dtype": "float32",
                      "requires_grad": False},
            "what": ("seconds per call of curve_energy(natural_params(z), expectation_params(denoiser, z, probes)) "
                     "for B curves of N points plus torch.autograd.grad w.r.t. z; curve_points_per_s = B * N / seconds "
                     "(median of the timed calls after one warm-up); loop = the same B curves one call each"),
            "memory_method": mem.method,
            "kernel": rows,
            "caps": caps,
            "target": target_summary(rows, caps, recipe),
            "precision": precision,
            "compile": compile_info,
            "sampler": sampler,
            "versions": versions("torch"),
        }
        report["seconds_total"] = time.perf_counter() - t_start
        report["table"] = summary_table(report)
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
