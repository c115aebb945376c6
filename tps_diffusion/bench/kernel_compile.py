"""Precision and ``torch.compile`` measurements of the kernel benchmark.

* float32 vs float64 curve energy and gradient on the same curves, weights and probes.
* eager vs ``torch.compile(denoiser)`` vs ``torch.compile`` of the whole energy, each
  configuration in a fresh Python process (:func:`compile_isolated`), so that a crash of
  compiled code is recorded as a result.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time

import torch

from ..core.geometry import curve_energy, expectation_params, natural_params
from .kernel_setup import KernelRecipe, energy_and_grad, log, make_curves, make_model, make_probes
from .timing import timed

__all__ = ["compile_isolated", "compile_worker", "measure_precision"]


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def measure_precision(dim: int, mode: str, recipe: KernelRecipe, dev: torch.device, seed: int) -> dict:
    """float32 vs float64 energy and gradient, same curves, weights and probes."""
    model32 = make_model(dim, recipe, dev, seed)
    model64 = copy.deepcopy(model32).double()
    z64 = make_curves(recipe.precision_batch, recipe.n_points, dim, recipe, seed + 99).to(dev)
    probes64 = make_probes(mode, dim, recipe, z64, seed)
    e64, g64 = energy_and_grad(model64, z64, probes64)
    e32, g32 = energy_and_grad(model32, z64.float(), None if probes64 is None else probes64.float())
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
    model = make_model(dim, recipe, dev, seed)
    z = make_curves(b, recipe.n_points, dim, recipe, seed + 1000 * dim + b).to(device=dev, dtype=torch.float32)
    probes = make_probes(mode, dim, recipe, z, seed)
    e_ref = energy_and_grad(model, z, probes)[0]
    out = {"D": dim, "divergence": mode, "B": b, "N": recipe.n_points}

    def energy_fn(zz):
        return curve_energy(natural_params(zz), expectation_params(model, zz, probes))

    def make_eager():
        return lambda: energy_and_grad(model, z, probes)

    def make_compile_denoiser():  # torch.compile(denoiser) used inside the vmap/jvp of geometry.py
        compiled = torch.compile(model)
        return lambda: energy_and_grad(compiled, z, probes)

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
            entry["first_call_seconds"] = timed(call, dev)  # includes compilation
            times = [timed(call, dev) for _ in range(max(1, min(recipe.repeats, 3)))]
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
        log(progress, f"compile D={dim} {mode} B={b} {name}: {entry}")
    eager = out["eager"].get("seconds")
    for name in ("compile_denoiser", "compile_energy"):
        if eager and out[name].get("seconds"):
            out[name]["speedup_vs_eager"] = eager / out[name]["seconds"]
    torch._dynamo.reset()
    return out


_WORKER_TAG = "KERNEL-COMPILE-RESULT "


def compile_isolated(dim: int, mode: str, b: int, recipe: KernelRecipe, dev: torch.device, seed: int,
                     progress: bool, timeout_s: float = 900.0) -> dict:
    """:func:`_compile` in a fresh Python process, so that a crash of compiled code is a result.

    (torch 2.13's CPU inductor backward segfaults for some of these graphs, e.g. D=2 exact.)
    """
    import json
    import subprocess

    args = {"dim": dim, "mode": mode, "b": b, "recipe": recipe.to_dict(), "device": str(dev), "seed": seed,
            "threads": torch.get_num_threads()}
    code = "from tps_diffusion.bench.kernel_compile import compile_worker; compile_worker()"
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
    log(progress, f"compile D={dim} {mode} B={b}: {res['error']}")
    return res


def compile_worker() -> None:
    """Entry point of :func:`compile_isolated`'s child process (arguments as JSON on stdin)."""
    import json

    args = json.loads(sys.stdin.read())
    torch.set_num_threads(args["threads"])
    fields = KernelRecipe.__dataclass_fields__
    rd = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
          for k, v in args["recipe"].items() if k in fields}
    res = _compile(args["dim"], args["mode"], args["b"], KernelRecipe(**rd), torch.device(args["device"]), args["seed"],
                   progress=True)
    print(_WORKER_TAG + json.dumps(res), flush=True)
