"""Annealed Langevin with a moving harmonic restraint under OpenMM."""

import numpy as np
import openmm
import pytest

from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.featurizer import CartesianFeaturizer
from tps_diffusion.molecular.restrained import RESTRAINT_K, add_restraint, restraint_schedule, sample_paths, tilt_energy
from tps_diffusion.molecular.superpose import superpose


@pytest.fixture(scope="module")
def featurizer(aldp):
    rng = np.random.default_rng(0)
    xyz = np.stack([aldp.positions_of(n) for n in ("C5", "C7eq", "C7ax")] * 4) + 0.01 * rng.normal(size=(12, 22, 3))
    return CartesianFeaturizer(aldp, selection="all").fit(xyz)


def straight_targets(featurizer, aldp, a, b, n):
    A = featurizer.align(aldp.positions_of(a))[0]
    B = featurizer.align(aldp.positions_of(b))[0]
    s = np.linspace(0.0, 1.0, n)[:, None, None]
    return (1 - s) * A + s * B


def test_restraint_energy_in_context_equals_formula(aldp):
    """State energy with the restraint minus without = 0.5 k |x - target|^2 (selected atoms)."""
    rng = np.random.default_rng(5)
    system = openmm.XmlSerializer.deserialize(aldp.system_xml())
    idx = np.array([0, 4, 6, 8, 14, 16, 21])
    force, group = add_restraint(system, idx)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    x = aldp.positions_of("C7eq") + 0.02 * rng.normal(size=(22, 3))
    targets = x[idx] + 0.1 * rng.normal(size=(len(idx), 3))
    for j, i in enumerate(idx):
        force.setParticleParameters(j, int(i), list(map(float, targets[j])))
    force.updateParametersInContext(ctx)
    k = 1234.5
    ctx.setParameter(RESTRAINT_K, k)
    ctx.setPositions(x)
    e_all = ctx.getState(getEnergy=True).getPotentialEnergy()._value
    e_ff = ctx.getState(getEnergy=True, groups=set(range(32)) - {group}).getPotentialEnergy()._value
    expected = 0.5 * k * np.sum((x[idx] - targets) ** 2)
    assert e_all - e_ff == pytest.approx(expected, rel=1e-9)
    assert tilt_energy(x[idx], targets, k) == pytest.approx(expected, rel=1e-12)
    assert e_ff == pytest.approx(aldp.potential_energy(x), abs=1e-8)


def test_tilt_energy_align_removes_rigid_motion():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = x @ q + 3.0
    assert tilt_energy(x, moved, 10.0) > 1.0
    assert tilt_energy(x, moved, 10.0, align=True) == pytest.approx(0.0, abs=1e-20)


def test_tilt_schedule_matches_feature_space_tilt(aldp, featurizer):
    """0.5 k |y - T|^2 in nm equals kT alpha^2/(2 sigma^2) |y_feat - x/alpha|^2 in features."""
    rng = np.random.default_rng(3)
    y_nm = featurizer.align(aldp.positions_of("C7eq"))  # (1, 22, 3), aligned frame
    y_feat = featurizer.transform(y_nm)
    x_feat = rng.normal(size=(3, featurizer.n_features))
    lam = np.array([-2.0, 0.5, 4.0])
    targets, k = restraint_schedule(featurizer, x_feat, lam, aldp.kT)
    a2 = 1 / (1 + np.exp(-lam))
    s2 = 1 - a2
    expected = aldp.kT * a2 / (2 * s2) * ((y_feat - x_feat / np.sqrt(a2)[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(tilt_energy(y_nm, targets, k), expected, rtol=1e-10)


def test_stiff_restraint_reaches_final_target(aldp, featurizer):
    N, K = 4, 100
    targets = straight_targets(featurizer, aldp, "C5", "C7eq", N)
    # high friction: each jump of the target (~0.045 nm RMSD here) injects ~0.5*k*|dT|^2 into the
    # walker; at 1/ps that energy rings for ~1 ps, at 50/ps it is damped within a block
    ps = sample_paths(aldp, featurizer, targets, np.full(N, 1e5), aldp.positions_of("C5"), n_paths=2,
                      steps_per_point=K, dynamics=Dynamics(seed=3, friction=50.0), progress=False)
    assert len(ps) == 2 and ps.n_force_evaluations == 2 * N * K
    assert ps.trajectories[0].n_frames == N * K and ps.energies.shape == (2, N * K)
    np.testing.assert_array_equal(ps.point_index, np.repeat(np.arange(N), K))
    final = featurizer.align(ps.final_frames())
    rmsd = np.sqrt(((superpose(final, targets[-1]) - targets[-1]) ** 2).sum(-1).mean(-1))
    start_rmsd = np.sqrt(((superpose(targets[0], targets[-1]) - targets[-1]) ** 2).sum(-1).mean())
    assert (rmsd < 0.02).all() and start_rmsd > 0.13, (rmsd, start_rmsd)
    assert list(aldp.assign_states(ps.final_frames())) == ["C7eq", "C7eq"]
    # reported energies are the force field only (restraint excluded) of the stored frames
    np.testing.assert_allclose(aldp.potential_energy(ps.joined()), ps.energies.ravel(), atol=1e-2)
    assert np.all(ps.tilt_energies >= 0) and ps.max_energy().shape == (2,)


def test_reproducible_parallel_and_record_interval(aldp, featurizer):
    N, K = 3, 20
    targets = straight_targets(featurizer, aldp, "C5", "C7ax", N)
    kw = dict(n_paths=2, steps_per_point=K, progress=False)
    serial = sample_paths(aldp, featurizer, targets, 500.0, "C5", dynamics=Dynamics(seed=9), **kw)
    parallel = sample_paths(aldp, featurizer, targets, 500.0, "C5", dynamics=Dynamics(seed=9, n_workers=2), **kw)
    for a, b in zip(serial.trajectories, parallel.trajectories):
        np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(serial.energies, parallel.energies)
    assert not np.array_equal(serial[0].xyz, serial[1].xyz)  # independent noise per path
    sparse = sample_paths(aldp, featurizer, targets, 500.0, "C5", dynamics=Dynamics(seed=9), record_interval=5, **kw)
    assert sparse[0].n_frames == N * K // 5
    np.testing.assert_array_equal(sparse[0].xyz, serial[0].xyz[4::5])  # same dynamics, every 5th frame


def test_sampler_input_errors(aldp, featurizer):
    targets = straight_targets(featurizer, aldp, "C5", "C7eq", 2)
    with pytest.raises(ValueError, match="divide steps_per_point"):
        sample_paths(aldp, featurizer, targets, 1.0, "C5", 1, 10, record_interval=3, progress=False)
    with pytest.raises(ValueError, match=r"targets_nm must be \(N, 22, 3\)"):
        sample_paths(aldp, featurizer, targets[:, :5], 1.0, "C5", 1, 10, progress=False)
    with pytest.raises(ValueError, match="stiffness"):
        sample_paths(aldp, featurizer, targets, [-1.0, 1.0], "C5", 1, 10, progress=False)
    bad = targets.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sample_paths(aldp, featurizer, bad, 1.0, "C5", 1, 10, progress=False)


def test_too_stiff_restraint_warns_and_blow_up_is_reported(aldp, featurizer):
    targets = straight_targets(featurizer, aldp, "C5", "C7eq", 2)
    with pytest.warns(RuntimeWarning, match="omega\\*dt"):
        with pytest.raises(RuntimeError, match="NaN coordinates"):
            sample_paths(aldp, featurizer, targets, 1e9, "C5", 1, 200, dynamics=Dynamics(seed=0), progress=False)
