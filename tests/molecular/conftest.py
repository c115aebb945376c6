"""Fixtures shared by the molecular tests: alanine dipeptide and straight restraint targets C5 -> C7ax."""

import numpy as np
import pytest

from tps_diffusion.molecular.catalogue import alanine_dipeptide
from tps_diffusion.molecular.featurizer import CartesianFeaturizer


@pytest.fixture(scope="module")
def aldp():
    return alanine_dipeptide()


@pytest.fixture(scope="module")
def straight_targets(aldp):
    """An all-atom featurizer fitted to jittered copies of the three minima, and 3 targets ``(3, 22, 3)`` nm on
    the straight line C5 -> C7ax in its aligned frame (cheap paths for tests of the machinery, not of the method)."""
    rng = np.random.default_rng(0)
    xyz = np.stack([aldp.positions_of(n) for n in ("C5", "C7eq", "C7ax")] * 4) + 0.01 * rng.normal(size=(12, 22, 3))
    featurizer = CartesianFeaturizer(aldp, selection="all").fit(xyz)
    a, b = (featurizer.align(aldp.positions_of(s))[0] for s in ("C5", "C7ax"))
    s = np.linspace(0.0, 1.0, 3)[:, None, None]
    return featurizer, (1 - s) * a + s * b
