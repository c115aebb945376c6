"""The table of the CLI fuzz replay: tried / clean error / ok / traceback / wrong / corrupted.

    python benchmarks/fuzz_table.py [--json out.json]

Runs every case of ``tests/fuzz/cli_cases.py`` in-process on tiny inputs made in a temporary folder
(about a minute) and prints one line per case and the counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

from cli_cases import CASES, classify, make_inputs  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the table as JSON")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        fields = make_inputs(Path(tmp))
        rows = []
        for i, case in enumerate(CASES):
            outcome, line = classify(case, fields, Path(tmp) / f"out{i}")
            rows.append({"case": case[0], "expected": case[2], "outcome": outcome, "message": line})
            print(f"{outcome:>12}  {case[0]:45s} {line[:110]}")
    counts = collections.Counter(r["outcome"] for r in rows)
    summary = {"tried": len(rows), **{k: counts.get(k, 0) for k in ("clean error", "ok", "traceback", "wrong",
                                                                      "corrupted")}}
    print(" | ".join(f"{k}: {v}" for k, v in summary.items()))
    print(f"{time.perf_counter() - t0:.0f} s on {platform.machine()} ({platform.processor() or 'cpu'})")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "cases": rows}, indent=2) + "\n")
    return 0 if summary["tried"] == summary["clean error"] + summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
