"""Two-way shooting and TPS against independent truth: a particle in a symmetric double well (double_well.py).

Truths used: p_B(0) = 1/2 by symmetry and the overdamped committor formula at high friction; at high
friction the two halves of a shot are independent, so a shot from the barrier top is reactive with
probability 2 p (1 - p) = 1/2; with inertia, the reversed velocities make it reactive with probability
E[f^2 + (1 - f)^2] > 1/2 (f(v): forward commitment to B given the velocity v; the backward half with -v
reaches A with probability f(v) by mirror symmetry); a basin behind a 16 kT barrier is never left
towards B; reactive trajectories are continuous (no frame-to-frame jump beyond what one check
interval of dynamics allows, also where the reversed backward half meets the forward half).
"""

from __future__ import annotations

import json

import mdtraj
import numpy as np
import pytest
from double_well import A_NM, KT, MASS, Side, T, configs, double_well_system, in_A, in_B, overdamped_committor

from tps_diffusion.molecular.committor import OUTCOME_A, OUTCOME_B, wilson_interval
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.restrained import PathSet
from tps_diffusion.molecular.shooting import (
    CheckpointMismatch,
    ShootingResult,
    remove_checkpoint,
    shooting_frames,
    two_way_shooting,
)
from tps_diffusion.utils.seeds import MAX_SEED, spawn_seeds

DT, CI = 0.002, 5  # ps, steps between frames


def dyn(seed=1, friction=5.0, workers=1, timestep=DT):
    return Dynamics(temperature=T, timestep=timestep, friction=friction, seed=seed, n_workers=workers)


def shoot(xs, n_shots, friction=5.0, workers=1, seed=1, eb=None, states=(in_A, in_B), **kw):
    system = double_well_system() if eb is None else double_well_system(eb)
    kw.setdefault("max_steps", 20_000)
    return two_way_shooting(system, configs(xs), *states, n_shots=n_shots, check_interval=CI,
                            dynamics=dyn(seed, friction, workers, kw.pop("timestep", DT)), progress=False, **kw)


@pytest.fixture(scope="module")
def inertial() -> ShootingResult:
    """Friction 5/ps (below the barrier frequency 22/ps): the barrier top, one side, inside A; with TPS."""
    return shoot([0.0, 0.02, -0.08], n_shots=100, tps_moves=4)


# ------------------------------------------------------------------------------- truth


def test_barrier_top_overdamped_committor_and_reactive_fraction():
    """gamma = 200/ps: halves independent; p_B(0) = 1/2, p_B(0.015) from the overdamped formula, and
    half the shots from the barrier top are reactive."""
    r = shoot([0.0, 0.015], n_shots=100, friction=200.0, timestep=0.004, max_steps=50_000)
    c = r.committor
    assert c.n_undecided.sum() == 0 and c.outcomes.shape == (2, 200)
    low, high = wilson_interval(c.n_B, c.n_decided, 0.999)
    assert low[0] <= 0.5 <= high[0]
    truth = overdamped_committor(0.015)
    assert low[1] <= truth <= high[1], (truth, c.p_B[1])
    top = r.reactive[:100]
    lo, hi = wilson_interval(top.sum(), top.size, 0.999)
    assert lo <= 0.5 <= hi, top.mean()


def test_inertia_makes_reversed_halves_anticorrelated(inertial):
    """With reversed velocities the barrier-top shots are reactive more often than not (E[f^2 + (1-f)^2] > 1/2);
    the same velocities for both halves would give 2 E[f (1-f)] <= 1/2."""
    top = inertial.reactive[:100]
    lo, _ = wilson_interval(top.sum(), top.size, 0.999)
    assert lo > 0.5, top.mean()
    c = inertial.committor
    low, high = c.ci
    assert low[0] <= 0.5 <= high[0] and c.p_B[1] > 0.5  # symmetric top; x > 0 leans to B


def test_inside_a_state_costs_nothing_and_is_never_reactive(inertial):
    shots = [s for s in inertial.shots if s.start == 2]
    assert all(s.forward == s.backward == OUTCOME_A and s.steps == 0 and not s.reactive for s in shots)
    assert inertial.committor.p_B[2] == 0.0 and 2 not in inertial.tse()


def test_basin_behind_high_barrier_is_never_left_towards_b():
    """16 kT barrier, states just beyond the minima: every half from the basin bottom commits to A."""
    r = shoot([-A_NM], n_shots=40, eb=40.0, states=(Side(-1, 1.05 * A_NM), Side(+1, 1.05 * A_NM)))
    assert r.n_reactive == 0 and r.trajectories == []
    assert all(s.forward == s.backward == OUTCOME_A and s.steps > 0 for s in r.shots)


# ------------------------------------------------------------------------------- trajectories


def test_reactive_trajectories_are_continuous_and_oriented(inertial):
    sigma = np.sqrt(KT / MASS) * CI * DT  # nm: thermal displacement per axis in one check interval
    force = 300.0 / MASS * (CI * DT) ** 2  # nm: |U'| < 300 kJ/mol/nm inside |x| < 0.12 nm
    bound = 7 * sigma + force  # a reversal bug jumps >= 0.05 nm (to the other end of a half)
    assert bound < 0.04
    starts = inertial.frames.trajectory.xyz[:, 0, 0]
    assert len(inertial.trajectories) == inertial.n_reactive > 30
    for shot, t in zip((s for s in inertial.shots if s.reactive), inertial.trajectories):
        x = t.xyz[:, 0, 0]
        assert x[0] < -A_NM / 2 and x[-1] > A_NM / 2  # A -> B
        assert np.all(np.abs(x[1:-1]) <= A_NM / 2)  # interior outside both states
        assert t.n_frames == (shot.steps // CI) + 1
        np.testing.assert_allclose(t.time, np.arange(t.n_frames) * CI * DT)
        junction = np.flatnonzero(x == starts[shot.start])
        assert len(junction) == 1  # the start frame, once
        jumps = np.linalg.norm(np.diff(t.xyz[:, 0], axis=0), axis=1)
        assert jumps.max() < bound, (jumps.max(), bound)
        k = junction[0]
        backward_first = shot.backward_steps // CI if shot.forward == OUTCOME_B else shot.forward_steps // CI
        assert k == backward_first  # the A-side half comes first, reversed


def test_tps_chains(inertial):
    tps = inertial.tps
    assert tps.n_chains == inertial.n_reactive and len(tps.moves) == 4 * tps.n_chains
    assert 0 < tps.acceptance < 1
    for t in tps.trajectories:
        x = t.xyz[:, 0, 0]
        assert x[0] < -A_NM / 2 and x[-1] > A_NM / 2 and np.all(np.abs(x[1:-1]) <= A_NM / 2)
    # the documented rule, replayed from the documented seeds: shooting frame uniform over the interior,
    # accepted iff the trial is reactive and u < min(1, (L_old - 2) / (L_new - 2))
    seeds = {s.index: s.seed for s in inertial.shots}
    for c, shot_index in enumerate(tps.seed_shots):
        rng = np.random.default_rng(spawn_seeds(seeds[shot_index], 1)[0])
        n = inertial.trajectories[c].n_frames
        for m in (m for m in tps.moves if m.chain == c):
            k, _, u = int(rng.integers(1, n - 1)), int(rng.integers(1, MAX_SEED + 1)), float(rng.random())
            assert m.shooting_frame == k and m.n_frames_old == n
            reactive = {m.forward, m.backward} == {OUTCOME_A, OUTCOME_B}
            assert (m.n_frames_new > 0) == reactive
            assert m.accepted == (reactive and u < min(1.0, (n - 2) / (m.n_frames_new - 2)))
            n = m.n_frames_new if m.accepted else n
        assert tps.trajectories[c].n_frames == n
    assert inertial.n_force_evaluations == sum(s.steps for s in inertial.shots) + tps.n_force_evaluations


def test_summary_save_and_load(inertial, tmp_path):
    d = inertial.as_dict()
    assert d["n_shots"] == 300 and d["n_reactive"] == inertial.n_reactive
    assert d["reactive_fraction"] == pytest.approx(inertial.n_reactive / 300)
    assert d["n_tse_frames"] == len(inertial.tse()) >= 1 and 0 in inertial.tse()
    assert d["mean_path_ps"] == pytest.approx(np.mean([(t.n_frames - 1) * CI * DT for t in inertial.trajectories]))
    assert d["n_force_evaluations"] == inertial.n_force_evaluations > 0 and d["tps"]["n_chains"] > 0
    out = inertial.save(tmp_path / "r")
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"shooting.json", "shots.json", "committor.json", "tps.json", "frames.dcd", "topology.pdb", "tse.pdb",
            "reactive/path_0000.dcd", "tps/path_0000.dcd"} <= names
    assert json.loads((out / "shooting.json").read_text())["n_reactive"] == inertial.n_reactive
    back = ShootingResult.load(out)
    assert back.shots == inertial.shots and back.settings == inertial.settings
    np.testing.assert_array_equal(back.committor.outcomes, inertial.committor.outcomes)
    for a, b in zip(back.trajectories + back.tps.trajectories, inertial.trajectories + inertial.tps.trajectories):
        np.testing.assert_allclose(a.xyz, b.xyz, atol=1e-6)
        np.testing.assert_allclose(a.time, b.time)
    assert back.tps.moves == inertial.tps.moves and back.as_dict()["tps"] == d["tps"]
    with pytest.raises(FileExistsError):
        inertial.save(out)


# ------------------------------------------------------------------------------- reproducibility


def test_bitwise_reproducible_with_one_or_two_workers():
    one = shoot([0.0, 0.01], n_shots=6, seed=7, tps_moves=2)
    two = shoot([0.0, 0.01], n_shots=6, seed=7, tps_moves=2, workers=2)
    other = shoot([0.0, 0.01], n_shots=6, seed=8)
    assert one.shots == two.shots and one.n_reactive > 0
    for a, b in zip(one.trajectories + one.tps.trajectories, two.trajectories + two.tps.trajectories):
        np.testing.assert_array_equal(a.xyz, b.xyz)
    assert one.tps.moves == two.tps.moves
    assert [s.steps for s in one.shots] != [s.steps for s in other.shots]


def test_checkpoint_resumes_where_it_stopped(tmp_path):
    ck = tmp_path / "ck"
    full = shoot([0.0, 0.01], n_shots=5, seed=3, tps_moves=1)
    seen = []

    def stop_after_four(shot, traj):
        seen.append(shot.index)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        shoot([0.0, 0.01], n_shots=5, seed=3, tps_moves=1, checkpoint=ck, callback=stop_after_four)
    assert len(list(ck.glob("shot_*.npz"))) == 4
    ran = []
    resumed = shoot([0.0, 0.01], n_shots=5, seed=3, tps_moves=1, checkpoint=ck, callback=lambda s, t: ran.append(s))
    assert len(ran) == 6 and {s.index for s in ran}.isdisjoint(seen[:4])
    assert resumed.shots == full.shots and resumed.tps.moves == full.tps.moves
    for a, b in zip(resumed.ensemble, full.ensemble):
        np.testing.assert_array_equal(a.xyz, b.xyz)
    with pytest.raises(CheckpointMismatch, match="n_shots"):
        shoot([0.0, 0.01], n_shots=4, seed=3, tps_moves=1, checkpoint=ck)
    remove_checkpoint(ck)
    assert not ck.exists()


# ------------------------------------------------------------------------------- frame selection


def toy_pathset(xs: np.ndarray, energies: np.ndarray) -> PathSet:
    """Paths of the double-well particle along x ``(n_paths, n_frames)`` nm with energies (kJ/mol)."""
    top = mdtraj.Topology()
    top.add_atom("P", mdtraj.element.virtual, top.add_residue("UNK", top.add_chain()))
    trajs = []
    for x in xs:
        trajs.append(mdtraj.Trajectory(configs(x).astype(np.float32), top, time=np.arange(len(x)) * 0.001))
    n = xs.shape[1]
    return PathSet(trajectories=trajs, energies=energies, tilt_energies=np.zeros_like(energies),
                   point_index=np.arange(n), n_force_evaluations=0, n_energy_evaluations=0, seeds=[0] * len(xs),
                   settings={})


def test_shooting_frames_use_the_transition_segment():
    x = np.linspace(-0.1, 0.1, 41)  # frames 0..9 in A (x < -0.05), 10..30 between, 31..40 in B
    e = -np.abs(x - 0.01)  # peak at x = 0.01: frame 22
    e[[5, 35]] = 10.0  # higher energies inside A and B are not shooting frames
    stuck = np.full(41, -0.09)  # a path that never leaves A
    ps = toy_pathset(np.stack([x, stuck]), np.stack([e, e]))
    f = shooting_frames(ps, in_A, in_B)  # max_energy, 5 per path, spacing 21 // 10 = 2
    assert f.frame.tolist() == [18, 20, 22, 24, 26] and f.path.tolist() == [0] * 5
    np.testing.assert_allclose(f.trajectory.xyz[:, 0, 0], x[18:27:2], atol=1e-7)
    assert shooting_frames(ps, in_A, in_B, per_path=3, spacing=1).frame.tolist() == [21, 22, 23]
    assert shooting_frames(ps, in_A, in_B, per_path=4, spacing=9).frame.tolist() == [13, 22]  # clipped to 10..30
    assert shooting_frames(ps, in_A, in_B, select="uniform", per_path=3).frame.tolist() == [10, 20, 30]
    assert shooting_frames(ps, in_A, in_B, select="all").frame.tolist() == list(range(10, 31))
    with pytest.raises(ValueError, match="none of the 1 paths"):
        shooting_frames(toy_pathset(stuck[None], e[None]), in_A, in_B)
    with pytest.raises(ValueError, match="no energies"):
        shooting_frames(toy_pathset(x[None], np.full((1, 41), np.nan)), in_A, in_B)
    with pytest.raises(ValueError, match="unknown frame selection"):
        shooting_frames(ps, in_A, in_B, select="middle")


def test_pathset_shoot_records_paths_and_frames():
    x = np.linspace(-0.1, 0.1, 41)
    stuck = np.full(41, -0.09)
    ps = toy_pathset(np.stack([stuck, x]), np.stack([-np.abs(x), -np.abs(x)]))
    r = ps.shoot(double_well_system(), in_A, in_B, per_path=3, spacing=2, n_shots=2, check_interval=CI,
                 dynamics=dyn(seed=2), progress=False)
    assert r.frames.path.tolist() == [1, 1, 1] and r.frames.frame.tolist() == [18, 20, 22]
    assert [(s.path, s.frame) for s in r.shots] == [(1, 18), (1, 18), (1, 20), (1, 20), (1, 22), (1, 22)]


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("change,error,text", [
    (dict(xs=[np.nan]), ValueError, "NaN"),
    (dict(n_shots=0), ValueError, "n_shots"),
    (dict(max_steps=12), ValueError, "multiple of check_interval"),
    (dict(states=(Side(-1, -1.0), Side(+1, -1.0))), ValueError, "overlap"),
    (dict(states=(in_A, 3)), TypeError, "in_B"),
    (dict(states=("C5", "C7ax")), TypeError, "MolecularSystem"),
    (dict(tse_tol=0.7), ValueError, "tse_tol"),
])
def test_bad_input_fails_in_one_line_before_md(change, error, text):
    kw = {"xs": [0.0], "n_shots": 2, **change}
    with pytest.raises(error, match=text) as info:
        shoot(kw.pop("xs"), kw.pop("n_shots"), **kw)
    assert "\n" not in str(info.value)


def test_atom_count_mismatch():
    with pytest.raises(ValueError, match="2 atoms, the system 1") as info:
        two_way_shooting(double_well_system(), np.zeros((1, 2, 3)), in_A, in_B, dynamics=dyn(), progress=False)
    assert "\n" not in str(info.value)
