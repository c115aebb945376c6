"""Cartesian featurizer and Kabsch alignment against known rotations."""

import json

import numpy as np
import pytest

from tps_diffusion.molecular.featurizer import CartesianFeaturizer
from tps_diffusion.molecular.superpose import kabsch_rotation, superpose


def random_rotation(rng, n=None):
    shape = (3, 3) if n is None else (n, 3, 3)
    q, r = np.linalg.qr(rng.normal(size=shape))
    q = q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
    det = np.linalg.det(q)
    q[..., :, 0] *= np.sign(det)[..., None]  # proper rotations only
    return q


@pytest.fixture(scope="module")
def samples(aldp):
    rng = np.random.default_rng(1)
    base = np.stack([aldp.positions_of(n) for n in ("C5", "C7eq", "C7ax")])
    xyz = np.repeat(base, 10, axis=0) + 0.01 * rng.normal(size=(30, 22, 3))
    rot = random_rotation(rng, 30)
    return xyz @ rot + rng.normal(size=(30, 1, 3))  # random rigid motions


def test_kabsch_recovers_known_rotation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    r_true = random_rotation(rng)
    y = x @ r_true + np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(kabsch_rotation(x, y), r_true, atol=1e-12)
    np.testing.assert_allclose(superpose(x, y), y, atol=1e-12)
    # batched, broadcasting one target over frames
    rs = random_rotation(rng, 7)
    xs = (x - x.mean(0)) @ np.swapaxes(rs, -1, -2)  # x_i = x R_i^T, so the aligning rotation is R_i
    np.testing.assert_allclose(kabsch_rotation(xs, x - x.mean(0)), rs, atol=1e-12)
    np.testing.assert_allclose(superpose(xs, x), np.broadcast_to(x, xs.shape), atol=1e-12)


def test_kabsch_never_reflects():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 3))
    mirror = x * np.array([-1.0, 1.0, 1.0])
    r = kabsch_rotation(x, mirror)
    assert np.linalg.det(r) == pytest.approx(1.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


def test_transform_inverse_exact_and_rigid_invariance(aldp, samples):
    f = CartesianFeaturizer(aldp.md_topology, reference=aldp.positions).fit(samples)
    x = f.transform(samples)
    assert x.shape == (30, f.n_features) and f.n_features == 66
    np.testing.assert_allclose(f.inverse(x), f.align(samples), atol=1e-12)
    # normalisation: zero mean, unit average variance per feature
    assert np.abs(x.mean(0)).max() < 1e-10
    assert np.mean(x**2) == pytest.approx(1.0)
    # features do not depend on the rigid placement of the input
    rng = np.random.default_rng(7)
    moved = samples @ random_rotation(rng) + 5.0
    np.testing.assert_allclose(f.transform(moved), x, atol=1e-9)
    # aligned frame: reference centred at the origin, aligned samples superposed on it
    ref = f.align(aldp.positions)[0]
    np.testing.assert_allclose(ref, aldp.positions - aldp.positions.mean(0), atol=1e-12)


def test_selection_and_serialisation(aldp, samples):
    f = CartesianFeaturizer(aldp, selection="not element H").fit(aldp.to_trajectory(samples))
    assert f.n_selected == 10 and f.n_features == 30
    x = f.transform(samples)
    np.testing.assert_allclose(f.transform(samples[:, f.atom_indices]), x, atol=1e-12)  # selected-only input
    d = json.loads(json.dumps(f.to_dict()))
    g = CartesianFeaturizer.from_dict(d, topology=aldp.md_topology)
    np.testing.assert_array_equal(g.transform(samples), x)
    np.testing.assert_array_equal(g.inverse(x), f.inverse(x))
    assert g.scale == f.scale and g.selection == "not element H"


def test_errors(aldp, samples):
    with pytest.raises(ValueError, match=r"'name XYZ' matched no atoms"):
        CartesianFeaturizer(aldp, selection="name XYZ")
    with pytest.raises(ValueError, match=r"invalid atom selection 'resname =='"):
        CartesianFeaturizer(aldp, selection="resname ==")
    f = CartesianFeaturizer(aldp, selection="name CA CB")
    with pytest.raises(RuntimeError, match="not fitted"):
        f.transform(samples)
    f.fit(samples)
    with pytest.raises(ValueError, match="5 atoms; expected 22"):
        f.transform(samples[:, :5])
    with pytest.raises(ValueError, match="expected 6"):
        f.inverse(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="different topology"):
        CartesianFeaturizer.from_dict(f.to_dict(), topology=aldp.md_topology.subset(range(20)))
    with pytest.raises(ValueError, match="NaN"):
        bad = samples.copy()
        bad[0, f.atom_indices[0], 0] = np.nan
        f.transform(bad)
