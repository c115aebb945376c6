"""Committor analysis against independent truth: a particle in a symmetric double well (double_well.py).

States A: x < -a/2 and B: x > a/2. Truths: p_B(0) = 1/2 and p_B(x) + p_B(-x) = 1 by symmetry; near
A/B p_B -> 0/1; and in the high-friction limit p_B(x) is the 1-D overdamped committor.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from double_well import T, configs, double_well_system, in_A, in_B, overdamped_committor

from tps_diffusion.molecular.committor import (
    OUTCOME_A,
    OUTCOME_B,
    OUTCOME_UNDECIDED,
    CommittorResult,
    committor,
    transition_state_ensemble,
    wilson_interval,
)
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.plotting import plot_committor

# ------------------------------------------------------------------------------- Wilson


def test_wilson_interval_hand_computed():
    # 7 successes out of 20, 95%: z = 1.959964, p = 0.35, z^2/n = 0.1920730,
    # centre = (0.35 + 0.0960365) / 1.192073 = 0.374174,
    # half = 1.959964/1.192073 * sqrt(0.35*0.65/20 + 3.841459/1600) = 0.192983
    low, high = wilson_interval(7, 20)
    assert float(low) == pytest.approx(0.181192, abs=2e-6)
    assert float(high) == pytest.approx(0.567146, abs=2e-6)


def test_wilson_interval_is_score_test_inversion():
    # independent definition: the interval is {p : |k/n - p| <= z sqrt(p(1-p)/n)}; find its ends
    # by bisection on the score statistic
    z = 1.959963984540054
    for k, n in [(3, 17), (50, 100), (1, 200), (199, 200)]:
        phat = k / n

        def inside(p):
            return abs(phat - p) <= z * math.sqrt(p * (1 - p) / n)

        def edge(lo, hi):  # lo outside, hi inside (or reversed)
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if inside(mid) == inside(hi):
                    hi = mid
                else:
                    lo = mid
            return 0.5 * (lo + hi)

        low, high = wilson_interval(k, n)
        assert float(low) == pytest.approx(edge(0.0, phat), abs=1e-9)
        assert float(high) == pytest.approx(edge(1.0, phat), abs=1e-9)


def test_wilson_interval_edges():
    low, high = wilson_interval([0, 10, 0], [10, 10, 0])
    assert low[0] == 0.0 and 0 < high[0] < 0.35
    assert high[1] == 1.0 and 0.65 < low[1] < 1
    assert (low[2], high[2]) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


# ------------------------------------------------------------------------------- shooting

XS = np.array([-0.045, -0.02, 0.0, 0.02, 0.045])


@pytest.fixture(scope="module")
def well_result() -> CommittorResult:
    return committor(
        double_well_system(), configs(XS), in_A, in_B,
        n_shots=200, max_steps=20_000, check_interval=5,
        dynamics=Dynamics(temperature=T, timestep=0.002, friction=5.0, seed=11), progress=False,
    )  # fmt: skip


def test_committor_double_well_symmetry(well_result):
    r = well_result
    p, (low, high) = r.p_B, r.ci
    assert r.n_undecided.sum() == 0
    assert np.all(r.n_A + r.n_B == 200)
    # barrier top: consistent with 1/2
    assert low[2] <= 0.5 <= high[2]
    # next to A ~ 0, next to B ~ 1
    assert p[0] < 0.1 and high[0] < 0.15
    assert p[-1] > 0.9 and low[-1] > 0.85
    # monotone along x
    assert np.all(np.diff(p) > 0)
    # symmetry p(x) + p(-x) = 1: the intervals of p(x) and 1 - p(-x) overlap
    for i in range(len(XS)):
        j = len(XS) - 1 - i
        assert low[i] <= 1 - low[j] and 1 - high[j] <= high[i]
    # bookkeeping: one force evaluation per step, steps are multiples of check_interval
    assert r.n_force_evaluations == r.steps.sum() > 0
    assert np.all(r.steps % 5 == 0)
    # transition-state ensemble: the barrier top is in, the configurations next to A/B are not
    tse = transition_state_ensemble(r, tol=0.1)
    assert 2 in tse and 0 not in tse and 4 not in tse


def test_committor_high_friction_matches_overdamped_formula():
    xs = np.array([-0.015, 0.015])
    r = committor(
        double_well_system(), configs(xs), in_A, in_B,
        n_shots=300, max_steps=50_000, check_interval=1,
        dynamics=Dynamics(temperature=T, timestep=0.004, friction=200.0, seed=5), progress=False,
    )  # fmt: skip
    # 99.9% interval: the finite friction (gamma / barrier frequency ~ 9) leaves a small bias
    low, high = wilson_interval(r.n_B, r.n_decided, 0.999)
    for i, x in enumerate(xs):
        truth = overdamped_committor(x)
        assert low[i] <= truth <= high[i], (x, truth, r.p_B[i], low[i], high[i])


def test_committor_reproducible_and_bookkeeping():
    system = double_well_system()
    kw = dict(n_shots=10, max_steps=5000, check_interval=5, progress=False)

    def dyn(seed):
        return Dynamics(temperature=T, timestep=0.002, friction=5.0, seed=seed)

    r1 = committor(system, configs([0.0, 0.01]), in_A, in_B, dynamics=dyn(3), **kw)
    r2 = committor(system, configs([0.0, 0.01]), in_A, in_B, dynamics=dyn(3), **kw)
    r3 = committor(system, configs([0.0, 0.01]), in_A, in_B, dynamics=dyn(4), **kw)
    np.testing.assert_array_equal(r1.outcomes, r2.outcomes)
    np.testing.assert_array_equal(r1.steps, r2.steps)
    assert not np.array_equal(r1.steps, r3.steps)

    # starting inside a state: committed at once, no force evaluations
    r = committor(system, configs([-0.08, 0.08]), in_A, in_B, dynamics=dyn(1), **kw)
    np.testing.assert_array_equal(r.p_B, [0.0, 1.0])
    assert r.n_force_evaluations == 0

    # too short to commit: undecided, p_B undefined, excluded from the transition-state ensemble
    r = committor(system, configs([0.0]), in_A, in_B, n_shots=5, max_steps=3, check_interval=2, dynamics=dyn(1),
                  progress=False)
    assert r.n_undecided[0] == 5 and np.isnan(r.p_B[0])
    assert r.n_force_evaluations == 5 * 3
    assert transition_state_ensemble(r).size == 0

    with pytest.raises(ValueError, match="both"):
        committor(system, configs([0.0]), lambda p: p[:, 0, 0] < 1, lambda p: p[:, 0, 0] > -1, dynamics=dyn(1), **kw)


def test_transition_state_ensemble_and_save(tmp_path):
    n = 200
    outcomes = np.full((4, n), OUTCOME_A)
    outcomes[1, :100] = OUTCOME_B  # p = 0.5
    outcomes[2, :116] = OUTCOME_B  # p = 0.58, 95% CI ~ (0.511, 0.645) excludes 0.5
    outcomes[3, :] = OUTCOME_UNDECIDED  # undefined
    r = CommittorResult(outcomes=outcomes, steps=np.ones((4, n), dtype=int))
    assert r.ci_low[2] > 0.5
    np.testing.assert_array_equal(transition_state_ensemble(r, tol=0.05), [1])
    np.testing.assert_array_equal(transition_state_ensemble(r, tol=0.1), [1, 2])
    path = r.save(tmp_path / "c.json")
    back = CommittorResult.load(path)
    np.testing.assert_array_equal(back.outcomes, r.outcomes)
    with pytest.raises(FileExistsError):
        r.save(tmp_path / "c.json")


def test_plot_committor(well_result):
    import matplotlib.pyplot as plt

    ax = plot_committor(well_result)
    assert ax.get_xlabel() == "frame index"
    assert len(ax.containers) == 1
    plt.close(ax.figure)
