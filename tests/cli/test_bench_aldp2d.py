"""The 2-D benchmark runs end to end (quick settings) and reports every figure the issue names."""

import json

import pytest

from tps_diffusion.bench.aldp2d import run

KEYS = {"max_energy_mean", "max_energy_std", "hit_rate", "n_paths", "energy_evals_sampling",
        "energy_evals_training_data", "training_seconds", "geodesic_seconds", "sampling_seconds", "min_lambda",
        "frac_frames_in_region"}


def test_quick_benchmark_writes_json_and_plots(tmp_path):
    out = tmp_path / "r.json"
    report = run(out, n_paths=20, quick=True, device="cpu", progress=False)
    on_disk = json.loads(out.read_text())
    assert on_disk["lower_bound"] == pytest.approx(36.34, abs=0.01)
    assert set(on_disk["modes"]) == {"unconstrained", "low_variance", "avoid"}
    for mode, m in on_disk["modes"].items():
        assert KEYS <= set(m), mode
        assert m["n_paths"] == 20 and 0.0 <= m["hit_rate"] <= 1.0
        assert m["energy_evals_sampling"] == 20 * (32 * 32 + 1)
        assert (tmp_path / f"r_{mode}.png").stat().st_size > 0
    assert on_disk["modes"]["low_variance"]["min_lambda"] >= report["recipe"]["rho_var"]
    with pytest.raises(FileExistsError):
        run(out, n_paths=20, quick=True, device="cpu", progress=False)
