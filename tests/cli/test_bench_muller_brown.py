"""The Müller–Brown benchmark: its lower bound against the literature saddle, and a quick run through the CLI
that reports both methods next to their steered baselines with honest evaluation counts."""

import json

import pytest

from tps_diffusion.bench.muller_brown import Recipe, check_recipe, minimax_barrier
from tps_diffusion.cli.main import main
from tps_diffusion.potentials.surfaces import MullerBrown


def test_minimax_barrier_is_the_a_c_saddle():
    """The A/C saddle of Müller–Brown is at -40.66 (Müller and Brown 1979; the C/B saddle, -72.25, is lower),
    so the bottleneck of the best grid path from A to B must be -40.66."""
    assert minimax_barrier(MullerBrown(), 0.005) == pytest.approx(-40.66, abs=0.05)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the quick recipe lags and does not converge: a smoke test
def test_quick_bench_through_the_cli_reports_both_methods_and_baselines(tmp_path):
    out = tmp_path / "mb.json"
    argv = ["bench", "muller-brown", "--out", str(out), "--quick", "--device", "cpu", "--paths", "20", "--quiet"]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert (tmp_path / "mb.png").stat().st_size > 0
    assert report["benchmark"] == "muller_brown" and report["kT"] == 10.0 and report["quick"] is True
    assert report["minimax_barrier"] == pytest.approx(-40.66, abs=0.05)
    assert 0.0 <= report["training_frames_dropped_fraction"] < 0.5
    methods = report["methods"]
    assert set(methods) == {"geodesic", "geodesic+string"}
    recipe = report["recipe"]
    n, points = recipe["n_paths"], recipe["n_points"]
    paper_sampling = n * (points * recipe["steps_per_point"] + 1)
    assert n == 20 and methods["geodesic"]["energy_evals_sampling"] == paper_sampling
    for name, m in methods.items():
        assert 0.0 <= m["hit_rate"] <= 1.0 and m["n_paths"] == n, name
        total = m["energy_evals_training_data"] + m["energy_evals_refinement"] + m["energy_evals_sampling"]
        assert m["energy_evals_total"] == total, name
        assert m["energy_evals_refinement"] + m["energy_evals_sampling"] <= paper_sampling, name  # the same budget
        base = m["steered_baseline"]
        assert total - n * points < base["energy_evals_total"] <= total, name  # the method's whole budget
        assert base["steps_per_point"] > m["steps_per_point"] and base["n_paths"] == n
        assert 0.0 <= base["hit_rate"] <= 1.0
    refine = methods["geodesic+string"]["refinement"]
    assert methods["geodesic+string"]["energy_evals_refinement"] == refine["energy_evals_pilot"] + \
        refine["energy_evals_string"] > 0
    assert refine["candidate_barriers"][refine["chosen_candidate"]] == min(refine["candidate_barriers"])
    assert methods["geodesic+string"]["max_energy_of_centres"] == pytest.approx(min(refine["candidate_barriers"]))
    assert main(argv) == 1  # the report exists: no overwrite without --overwrite


def test_bad_recipe_fails_in_one_line_before_any_work():
    with pytest.raises(ValueError, match="Recipe.n_paths"):
        check_recipe(Recipe(n_paths=0))
    with pytest.raises(ValueError, match="RefineConfig.n_candidates"):
        check_recipe(Recipe(n_candidates=0))


def test_steered_baseline_spends_the_budget_on_a_straight_line():
    """The shared baseline (bench.aldp2d.steered_baseline): K = steps_within(budget) steps per point, at most
    the budget and less than one step per point of every path below it; on a flat surface the walkers end
    at the last centre (mean within a few restraint widths / sqrt(P))."""
    import torch

    from tps_diffusion.bench.aldp2d import steered_baseline, steps_within

    assert steps_within(10 * (8 * 5 + 1), 10, 8) == 5 and steps_within(10 * (8 * 5 + 1) + 79, 10, 8) == 5
    with pytest.raises(ValueError, match="does not pay"):
        steps_within(10 * 8, 10, 8)
    flat = lambda y: 0.0 * y.sum(-1)  # noqa: E731
    first, last = torch.tensor([0.0, 0.0]), torch.tensor([1.0, -2.0])
    line = steered_baseline(flat, first, last, 400.0, first, 10_000, 50, 8, 1e-3, seed=0, device="cpu")
    assert line.stiffness == 400.0 and line.sample.paths.shape == (50, 8 * 24, 2)
    assert 10_000 - 50 * 8 < line.sample.energy_evals <= 10_000
    torch.testing.assert_close(line.sample.paths[:, -1].mean(0), last, atol=0.05, rtol=0)
