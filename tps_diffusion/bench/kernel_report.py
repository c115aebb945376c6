"""Text report of the kernel benchmark: the summary table and the headline target figure."""

from __future__ import annotations

from .kernel_setup import EXACT, KernelRecipe

__all__ = ["summary_table", "target_summary"]


def summary_table(report: dict) -> str:
    lines = [(f"kernel benchmark on {report['machine']['device_name']} ({report['machine']['device']}, "
              f"{report['machine']['threads']} threads, load {report['machine']['loadavg_start']})"),
             (f"{'D':>4} {'div':<11} {'B':>5} {'N':>4} {'s/call':>9} {'points/s':>10} {'peak MiB':>9} "
              f"{'sys s':>6} {'loop s':>9} {'vs loop':>8} {'chunked':>8}")]
    for r in report["kernel"]:
        div = "exact" if r["divergence"] == EXACT else f"hutch({r['n_probes']})"
        mark = "*" if r.get("loop_extrapolated") else " "
        loop = f"{r['loop_seconds']:9.3f}" + mark if "loop_seconds" in r else " " * 10
        speed = f"{r['speedup_batched_vs_loop']:7.1f}x" if "speedup_batched_vs_loop" in r else " " * 8
        chunk = f" {r['speedup_chunked_vs_batched']:6.2f}x" if "speedup_chunked_vs_batched" in r else ""
        sys_s = f"{r['sys_seconds_per_call']:6.2f}" if "sys_seconds_per_call" in r else " " * 6
        lines.append(f"{r['D']:>4} {div:<11} {r['B']:>5} {r['N']:>4} {r['seconds']:9.4f} "
                     f"{r['curve_points_per_s']:10.0f} "
                     f"{r['peak_memory_bytes'] / 2**20:9.0f} {sys_s} {loop}{speed}{chunk}")
    lines.append("  vs loop: speedup of one batched call over B single-curve calls; chunked: speedup of B/"
                 f"{report['recipe']['curve_chunk']} calls of {report['recipe']['curve_chunk']} curves over one "
                 "batched call; sys s: kernel CPU time per call (page faults)")
    if any(r.get("loop_extrapolated") for r in report["kernel"]):
        lines.append("  * loop time extrapolated from a prefix of the curves")
    for c in report["caps"]:
        lines.append(f"  skipped D={c['D']} {c['divergence']} B={c['B']}: {c['reason']}")
    t = report["target"]
    lines.append(f"target D={t['D']} B={t['B']} N={t['N']}: " + "; ".join(
        f"{m}: " + (f"speedup {v['speedup_batched_vs_loop'] or float('nan'):.1f}x "
                    f"({v['curve_points_per_s']:.0f} points/s)"
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
                                            f"{v['first_call_seconds']:.1f} s"
                                            + (f" ({v['note']})" if "note" in v else "")))
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


def target_summary(rows: list[dict], caps: list[dict], recipe: KernelRecipe) -> dict:
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
