"""The lag diagnostic of sample_paths (docs/method.md, section 5, "Lag diagnostic") on a tiny OpenMM system.

Three free carbon atoms (no force field) restrained to an equilateral triangle whose size grows block by
block. Along this breathing mode every atom's radial coordinate is a particle in the harmonic restraint
with friction, and since the noise has mean zero, its mean follows the LangevinMiddle update without
noise (``v += dt F/m; x += dt/2 v; v *= exp(-gamma dt); x += dt/2 v``): :func:`mean_lag` integrates
that in numpy, independently of OpenMM and of the diagnostic. The projection of the three radial lags
``e`` onto the unit tangent is ``sqrt(3) e``, in widths ``sqrt(3 k / kT) e``.
"""

import warnings

import numpy as np
import openmm
import openmm.app as app
import pytest

from tps_diffusion.core.langevin import LAG_WARN_WIDTHS
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.restrained import sample_paths
from tps_diffusion.molecular.system import MolecularSystem

MASS = 12.0  # amu
K_NM = 2000.0  # kJ/mol/nm^2: width sqrt(kT / k) = 0.035 nm at 300 K
GAMMA, DT = 20.0, 0.002  # 1/ps, ps


def triangle(r: float) -> np.ndarray:
    """Equilateral triangle of circumradius ``r`` nm in the xy plane, ``(3, 3)``."""
    ang = np.deg2rad([90.0, 210.0, 330.0])
    return np.stack([r * np.cos(ang), r * np.sin(ang), np.zeros(3)], 1)


@pytest.fixture(scope="module")
def system():
    top = app.Topology()
    res = top.addResidue("TRI", top.addChain())
    omm = openmm.System()
    for i in range(3):
        top.addAtom(f"C{i}", app.element.carbon, res)
        omm.addParticle(MASS)
    return MolecularSystem(top, omm, triangle(1.0), temperature=300.0, platform="Reference")


def radii(n_points: int) -> np.ndarray:
    return np.linspace(1.0, 1.6, n_points)


def sample(system, n_points, K, n_paths=16, targets=None, **kw):
    targets = np.stack([triangle(r) for r in radii(n_points)]) if targets is None else targets
    kw.setdefault("dynamics", Dynamics(seed=4, friction=GAMMA, timestep=DT))
    return sample_paths(system, None, targets, K_NM, triangle(1.0), n_paths, K, record_interval=K,
                        compute_energies=False, progress=False, **kw)


def mean_lag(system, n_points, K) -> np.ndarray:
    """Lag (widths) of the mean radial coordinate at the end of each block, by the noise-free update."""
    x, v, out = 1.0, 0.0, []
    for r in radii(n_points):
        for _ in range(K):
            v += DT * (-K_NM / MASS * (x - r))
            x += 0.5 * DT * v
            v *= np.exp(-GAMMA * DT)
            x += 0.5 * DT * v
        out.append(r - x)
    return np.sqrt(3 * K_NM / system.kT) * np.array(out)


def test_fast_targets_warn_and_lag_follows_the_mean_dynamics(system):
    """10 steps per block of 0.02 nm: the walkers trail by ~5.5 widths; measured = truth within 10 %
    (noise ~0.25 widths per point for 16 paths) and the last point warns, naming the fix."""
    N, K = 30, 10
    truth = mean_lag(system, N, K)
    assert truth[-1] > LAG_WARN_WIDTHS + 1
    with pytest.warns(RuntimeWarning, match=r"sample_paths: .* raise steps_per_point \(now 10\) or the time step "
                                            r"\(now 0.002 ps"):
        ps = sample(system, N, K)
    assert ps.lag.shape == (N,) and ps.final_distance.shape == (16,)
    steady = slice(N // 2, None)
    assert abs(ps.lag[steady].mean() / truth[steady].mean() - 1) < 0.1, (ps.lag, truth)
    assert np.abs(ps.lag[steady] - truth[steady]).max() < 1.5
    assert ps.final_distance.mean() > 1.5  # ~1 in equilibrium; the lag adds 5.5^2 / 9 to its square


def test_jumping_targets_warn(system):
    """Five blocks of 10 steps for a 0.6 nm stretch: far behind (~25 widths) at the end."""
    with pytest.warns(RuntimeWarning, match="did not follow"):
        ps = sample(system, 5, 10, n_paths=4, dynamics=Dynamics(seed=1, friction=1.0, timestep=DT))
    assert ps.lag[-1] > 5 * LAG_WARN_WIDTHS


def test_slow_targets_small_lag_and_round_trip(system, tmp_path):
    """200 steps per block: the walkers keep up (truth ~0.04 widths), no warning, the final frames sit
    in the last restraint's thermal cloud; PathSet.save writes the lag."""
    N, K = 30, 200
    truth = mean_lag(system, N, K)
    assert np.abs(truth).max() < 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ps = sample(system, N, K)
    assert np.abs(ps.lag).max() < 1.25 and abs(ps.lag.mean()) < 0.3, ps.lag
    assert 0.5 < ps.final_distance.mean() < 1.3
    ps.save(tmp_path / "out")
    with np.load(tmp_path / "out" / "energies.npz") as z:
        np.testing.assert_array_equal(z["lag"], ps.lag)
        np.testing.assert_array_equal(z["final_distance"], ps.final_distance)


@pytest.mark.filterwarnings("ignore:sample_paths.*did not follow:RuntimeWarning")
def test_lag_ignores_rigid_placement_and_is_the_same_from_a_store(system, tmp_path):
    """Targets given each in its own rigid placement give the same lag (the restraint is re-superposed,
    and so are the neighbours in the tangent); a store filled in two runs gives the lag of one run."""
    N, K = 12, 10
    plain = sample(system, N, K, n_paths=4)
    rng = np.random.default_rng(0)
    moved = []
    for r in radii(N):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        moved.append(triangle(r) @ (q * np.sign(np.linalg.det(q))) + rng.normal(size=3))
    placed = sample(system, N, K, n_paths=4, targets=np.stack(moved))
    np.testing.assert_allclose(placed.lag, plain.lag, atol=1e-3)
    sample(system, N, K, n_paths=2, store=tmp_path / "store")
    stored = sample(system, N, K, n_paths=4, store=tmp_path / "store")
    np.testing.assert_allclose(stored.lag, plain.lag, rtol=1e-12, atol=1e-12)  # a sum over paths: rounding only
    np.testing.assert_array_equal(stored.final_distance, plain.final_distance)
