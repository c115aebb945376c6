"""Wall time of every stage for the built-in system files at the example settings of the README.

    python benchmarks/system_stages.py [--systems chignolin_obc2 chignolin_gbn2 alanine_dipeptide_tip3p]
                                       [--out benchmarks/system_stages.json]

For each system: loading the system file with an empty cache (solvation, state minimisation) and
again from the cache, then the CLI chain simulate -> train -> geodesic -> sample -> export in a
temporary folder, each stage's ``wall_time_s`` read from its manifest, plus the MD speed (steps/s)
and the end-state hit rate of the paths. Settings are small (minutes per system on 2 cores):
they time the machinery, they do not make converged models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import openmm
import torch

EXAMPLES = {
    "chignolin_obc2": dict(states=("unfolded", "folded"), md_steps=10_000, train_steps=1000),
    "chignolin_gbn2": dict(states=("unfolded", "folded"), md_steps=4_000, train_steps=1000),
    "alanine_dipeptide_tip3p": dict(states=("C5", "C7ax"), md_steps=5_000, train_steps=1000),
}


def run_chain(name: str, recipe: dict, root: Path) -> dict:
    from tps_diffusion.cli import main
    from tps_diffusion.molecular.catalogue import get_system

    os.environ["TPS_DIFFUSION_CACHE"] = str(root / "cache")
    t0 = time.perf_counter()
    system = get_system(name)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    get_system(name)
    warm = time.perf_counter() - t0
    a, b = recipe["states"]
    d = {k: root / name / k for k in ("simulate", "train", "geodesic", "sample", "export")}
    steps = [
        ["simulate", "--system", name, "--states", a, b, "--steps", str(recipe["md_steps"]),
         "--report-interval", "20", "--workers", "2", "--seed", "0"],
        ["train", "--data", str(d["simulate"] / "samples.h5"), "--steps", str(recipe["train_steps"]),
         "--device", "cpu"],
        ["geodesic", "--model", str(d["train"] / "model.pt"), "--start", a, "--end", b, "--points", "32", "--steps",
         "200", "--device", "cpu"],
        ["sample", "--geodesic", str(d["geodesic"] / "geodesic.npz"), "--paths", "4", "--steps-per-point", "16",
         "--workers", "2", "--seed", "1"],
        ["export", "--paths", str(d["sample"] / "paths.dcd"), "--plumed", "--frames", "10"],
    ]
    stages = {}
    for argv in steps:
        stage = argv[0]
        rc = main([*argv, "--run-dir", str(d[stage]), "--quiet"])
        if rc != 0:
            raise RuntimeError(f"{name}: stage {stage} failed (exit {rc})")
        m = json.loads((d[stage] / "manifest.json").read_text())
        stages[stage] = {"wall_time_s": round(m["wall_time_s"], 2), "command_line": m["command_line"]}
        stages[stage].update({k: m["results"].get(k) for k in ("steps_per_second", "n_frames", "n_features",
                                                              "end_state_hit_rate", "min_lambda") if k in m["results"]})
    return {"system": name, "n_atoms": system.n_atoms, "solvent": system.info.get("solvent"),
            "platform": system.platform_name(), "load_s": {"cold_cache": round(cold, 2), "cached": round(warm, 3)},
            "stages": stages, "total_s": round(cold + sum(s["wall_time_s"] for s in stages.values()), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", nargs="+", default=list(EXAMPLES), choices=list(EXAMPLES))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("system_stages.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems:
            row = run_chain(name, EXAMPLES[name], Path(tmp))
            rows.append(row)
            walls = ", ".join(f"{k} {v['wall_time_s']:.1f} s" for k, v in row["stages"].items())
            print(f"{name}: {row['n_atoms']} atoms, {row['solvent']}, {row['platform']}; load "
                  f"{row['load_s']['cold_cache']} s (cached {row['load_s']['cached']} s); {walls}; MD "
                  f"{row['stages']['simulate'].get('steps_per_second', float('nan')):.0f} steps/s", flush=True)
    report = {"benchmark": "system_stages", "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                        "openmm": openmm.__version__, "torch": torch.__version__},
              "settings": EXAMPLES, "systems": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
