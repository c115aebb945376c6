"""Smoke test of the kernel benchmark (quick grid on the CPU)."""

import json
import math

import pytest

from tps_diffusion.bench.kernel import run


def test_kernel_benchmark_quick(tmp_path):
    out = tmp_path / "k.json"
    report = run(out, device="cpu", quick=True, progress=False)
    on_disk = json.loads(out.read_text())
    for key in ("benchmark", "machine", "recipe", "kernel", "caps", "target", "precision", "compile", "sampler",
                "memory_method", "table", "versions", "seconds_total"):
        assert key in on_disk, key
    assert on_disk["benchmark"] == "kernel" and on_disk["quick"] is True
    for key in ("device", "device_name", "threads", "torch", "loadavg_start", "loadavg_end"):
        assert key in on_disk["machine"], key
    assert on_disk["machine"]["device"] == "cpu"

    kernel = on_disk["kernel"]
    assert {(r["D"], r["divergence"]) for r in kernel} == {(2, "exact"), (66, "exact"), (66, "hutchinson"),
                                                            (300, "hutchinson")}
    for r in kernel:
        assert math.isfinite(r["curve_points_per_s"]) and r["curve_points_per_s"] > 0
        assert r["seconds"] > 0 and r["peak_memory_bytes"] >= 0
        if r["B"] > 1:
            assert math.isfinite(r["speedup_batched_vs_loop"]) and r["speedup_batched_vs_loop"] > 0

    assert len(on_disk["precision"]) == 4
    for p in on_disk["precision"]:
        assert p["rel_diff_energy"] is not None and p["rel_diff_energy"] < 1e-4

    rows_2d = on_disk["sampler"]["aldp2d"]["rows"]
    assert rows_2d and all(math.isfinite(r["walker_steps_per_s"]) and r["walker_steps_per_s"] > 0 for r in rows_2d)
    ani = on_disk["sampler"]["ani"]
    if ani.get("available"):
        assert all(r["walker_steps_per_s"] > 0 for r in ani["rows"])
    else:
        assert ani["reason"]  # the report says why ANI was not timed

    assert isinstance(report["table"], str) and "points/s" in report["table"]
    assert on_disk["compile"]["enabled"] is False

    with pytest.raises(FileExistsError):
        run(out, device="cpu", quick=True, progress=False)
