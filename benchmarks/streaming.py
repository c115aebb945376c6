"""Peak memory of path sampling, 500 vs 5,000 tiny paths, streamed into a store or held in memory.

    python benchmarks/streaming.py [--out benchmarks/streaming.json] [--paths 500 5000]

Each case runs in a fresh Python process (so ``ru_maxrss`` is its own peak resident set size):
``sample_paths`` on alanine dipeptide in vacuum (Reference platform, in-process, seed 0) along a
straight C5 -> C7ax restraint schedule of 4 points x 25 steps (100 frames a path, all recorded: 26 kB of
coordinates), with
``store=DIR`` (every path written to DIR as it finishes, the returned PathSet reading them back on
access) or without (the list of trajectories in memory). After sampling, the case touches every
path once (the last frame of each: ``PathSet.final_frames``), as the CLI does. The target of issue 13:
peak memory with 5,000 paths within 10 % of that with 500 when streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASE = """
import json, resource, sys, time
import numpy as np
from tps_diffusion.molecular.catalogue import alanine_dipeptide
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.featurizer import CartesianFeaturizer
from tps_diffusion.molecular.restrained import sample_paths

n_paths, store = int(sys.argv[1]), (sys.argv[2] if sys.argv[2] != "-" else None)
aldp = alanine_dipeptide()
featurizer = CartesianFeaturizer(aldp, selection="all").fit(
    np.stack([aldp.positions_of(s) for s in ("C5", "C7eq", "C7ax")]))
a, b = (featurizer.align(aldp.positions_of(s))[0] for s in ("C5", "C7ax"))
targets = np.stack([a + (b - a) * s for s in np.linspace(0.0, 1.0, 4)])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
ps = sample_paths(aldp, featurizer, targets, 500.0, "C5", n_paths=n_paths, steps_per_point=25,
                  dynamics=Dynamics(seed=0), progress=False, store=store)
sampled = time.perf_counter() - t0
last = ps.final_frames()
print(json.dumps({"n_paths": n_paths, "streamed": store is not None, "frames_per_path": ps[0].n_frames,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_sampling_mb": before / 1024, "sampling_s": sampled,
                  "total_s": time.perf_counter() - t0, "final_frames": last.n_frames}))
"""


def run_case(n_paths: int, streamed: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store") if streamed else "-"
        out = subprocess.run([sys.executable, "-c", CASE, str(n_paths), store], capture_output=True, text=True,
                             check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("streaming.json"))
    p.add_argument("--paths", type=int, nargs=2, default=[500, 5000], metavar=("SMALL", "LARGE"))
    args = p.parse_args()
    t0 = time.perf_counter()
    rows = [run_case(n, streamed) for streamed in (True, False) for n in args.paths]
    by = {(r["streamed"], r["n_paths"]): r for r in rows}
    small, large = args.paths
    report = {
        "command": "python benchmarks/streaming.py " + " ".join(sys.argv[1:]),
        "cases": rows,
        "peak_rss_ratio_streamed": by[True, large]["peak_rss_mb"] / by[True, small]["peak_rss_mb"],
        "peak_rss_ratio_in_memory": by[False, large]["peak_rss_mb"] / by[False, small]["peak_rss_mb"],
        "target": "streamed: peak RSS with the large count within 10 % of the small count",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_start": os.getloadavg()},
        "wall_time_s": time.perf_counter() - t0,
        "maxrss_of_this_process_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(f"{'streamed' if r['streamed'] else 'in memory':>9}  {r['n_paths']:>5} paths  peak RSS "
              f"{r['peak_rss_mb']:7.1f} MB  sampling {r['sampling_s']:6.1f} s")
    print(f"ratio {large}/{small}: streamed {report['peak_rss_ratio_streamed']:.3f}, in memory "
          f"{report['peak_rss_ratio_in_memory']:.3f} -> {args.out}")


if __name__ == "__main__":
    main()
