"""Many transitions at once: geodesics of several endpoint pairs optimised in one batch, each curve as if
optimised alone (each stops on its own; equal to rounding, not bitwise: vectorised kernels round the
elements of a batch and of one curve differently, ~1e-16 in float64, ~1e-6 for the float32 network),
and the paths of every pair, whose random streams derive from the seed and the pair's name, so that a
pair's paths are bitwise the same (Reference platform) whether it is sampled alone or with other pairs,
in this process or on an executor."""

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch
from closed_forms import GaussianDenoiser

from tps_diffusion.core.geodesic import GeodesicConfig, optimise_geodesic
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.geodesic import MolecularGeodesic, endpoint_pairs, molecular_geodesic
from tps_diffusion.molecular.md import run_md
from tps_diffusion.molecular.model import train_on_samples
from tps_diffusion.molecular.paths import (
    PairPaths,
    pair_directory,
    pair_seed,
    sample_molecular_paths,
    sample_pair_paths,
)

GEO = dict(n_points=6, steps=4)
PAIRS = [("C7eq", "C7ax"), ("C5", "C7ax")]


@pytest.fixture(scope="module")
def model(aldp):
    md = run_md(aldp, ["C5", "C7eq", "C7ax"], n_steps=1000, report_interval=20, dynamics=Dynamics(seed=3),
                progress=False)
    return train_on_samples(aldp, md, "heavy", model_config=dict(hidden=32, depth=2, n_freq=2, lam_freq=4),
                            train_config=dict(steps=40, batch_size=64, warmup=10), device="cpu", progress=False)


@pytest.fixture(scope="module")
def geo(aldp, model):
    return molecular_geodesic(model, aldp, pairs=PAIRS, check=False, progress=False, **GEO)


def test_each_curve_of_a_batch_stops_on_its_own():
    """Per-curve convergence: the batch gives each pair's curve alone to rounding (float64, closed-form denoiser);
    with one convergence test for the whole batch the curve that converges first would run on and differ by 5e-4."""
    denoiser = GaussianDenoiser([0.0, 0.0], 0.5)
    starts = torch.tensor([[-2.0, 1.0], [0.5, 0.5]], dtype=torch.float64)
    ends = torch.tensor([[2.0, -1.0], [0.6, 0.4]], dtype=torch.float64)
    cfg = GeodesicConfig(steps=300, n_points=6, n_nodes=2, lr=0.1, tol=1e-2)  # they stop at steps 151 and 101
    batch = optimise_geodesic(denoiser, starts, ends, cfg, progress=False)
    alone = [optimise_geodesic(denoiser, starts[i], ends[i], cfg, progress=False) for i in range(2)]
    assert batch.curve_steps == [a.steps_done for a in alone] == [151, 101] and batch.steps_done == 151
    for i in range(2):
        torch.testing.assert_close(batch.curve[i], alone[i].curve[0], rtol=0, atol=1e-12)
        torch.testing.assert_close(batch.energy[i], alone[i].energy[0], rtol=1e-12, atol=0)


def test_batched_pairs_match_each_pair_alone(aldp, model, geo, tmp_path):
    assert geo.pair_names == ["C7eq:C7ax", "C5:C7ax"] and geo.curve.shape == (2, 6, 31)
    assert [e.label for e in geo.starts] == ["C7eq", "C5"] and geo.curve_index(("C5", "C7ax")) == 1
    for i, pair in enumerate(PAIRS):
        alone = molecular_geodesic(model, aldp, *pair, check=False, progress=False, **GEO)
        assert alone.pair_names == [":".join(pair)]
        # the float32 network's batched matrix products round differently from one curve's: equal to rounding
        torch.testing.assert_close(geo.curve[i], alone.curve[0], rtol=0, atol=1e-4)
        torch.testing.assert_close(geo.geodesic.energy[i], alone.geodesic.energy[0], rtol=1e-4, atol=1e-4)
        assert geo.geodesic.curve_steps[i] == alone.geodesic.steps_done
    again = MolecularGeodesic.load(geo.save(tmp_path / "pairs.npz"))
    assert again.pair_names == geo.pair_names and again.geodesic.curve_steps == geo.geodesic.curve_steps
    for i in range(2):
        assert again.start(i).label == geo.start(i).label
        np.testing.assert_array_equal(again.start(i).positions, geo.start(i).positions)
        np.testing.assert_array_equal(again.end(i).positions, geo.end(i).positions)
    with pytest.raises(ValueError, match="no pair 'C5:C7eq'; its pairs: C7eq:C7ax, C5:C7ax"):
        geo.curve_index("C5:C7eq")


def test_all_pairs_and_bad_pairs(aldp, model):
    assert list(endpoint_pairs(aldp, "all")) == ["C5:C7eq", "C5:C7ax", "C7eq:C7ax"]
    frame = aldp.positions_of("C5") + 0.01
    named = list(endpoint_pairs(aldp, [(frame, "C7ax")]))
    assert len(named) == 1 and named[0].startswith("positions@") and named[0].endswith(":C7ax")
    assert named == list(endpoint_pairs(aldp, [("C5", "C7eq"), (frame, "C7ax")]))[1:]  # named by content
    assert list(endpoint_pairs(aldp, {"mine": (frame, "C7ax")})) == ["mine"]
    for pairs, message in (([], "no endpoint pairs given"), ([("C5", "C5")], "'C5:C5' starts where it ends"),
                           ([("C5", "C8")], "unknown state 'C8'.*known states: C5, C7ax, C7eq"),
                           ([("C5", "C7ax"), ("C5", "C7ax")], "'C5:C7ax' is given twice"),
                           ("every", "pairs must be 'all'"), ([("C5",)], r"each pair must be \(start, end\)")):
        with pytest.raises(ValueError, match=message):
            molecular_geodesic(model, aldp, pairs=pairs, progress=False, **GEO)
    with pytest.raises(ValueError, match="not both"):
        molecular_geodesic(model, aldp, "C5", "C7ax", pairs=PAIRS, progress=False)
    with pytest.raises(ValueError, match="give the endpoints"):
        molecular_geodesic(model, aldp, progress=False)
    assert pair_directory("C5:C7ax") == "C5_to_C7ax" and pair_directory("../x y:12") == "__x_y_to_12"


def paths_of(ps) -> np.ndarray:
    return np.stack([t.xyz for t in ps.trajectories])


def test_pair_paths_do_not_depend_on_the_other_pairs(aldp, model, geo, tmp_path):
    kw = dict(n_paths=2, steps_per_point=2, progress=False)
    alone = sample_pair_paths(aldp, model, geo, pairs=["C5:C7ax"], dynamics=Dynamics(seed=5), **kw)
    seen = []
    with ProcessPoolExecutor(2) as pool:  # both pairs at once on one executor
        both = sample_pair_paths(aldp, model, geo, dynamics=Dynamics(seed=5), executor=pool,
                                 callback=lambda info: seen.append(info["pair"]), store=tmp_path / "store", **kw)
    assert isinstance(both, PairPaths) and list(both) == ["C7eq:C7ax", "C5:C7ax"] and both.n_paths == 4
    assert sorted(seen) == ["C5:C7ax"] * 2 + ["C7eq:C7ax"] * 2
    one, other = alone["C5:C7ax"], both["C5", "C7ax"]
    np.testing.assert_array_equal(paths_of(one), paths_of(other))  # bitwise (Reference platform)
    np.testing.assert_array_equal(one.energies, other.energies)
    assert one.seeds == other.seeds and one.settings["seed"] == pair_seed(5, "C5:C7ax")
    assert other.settings["pair"] == "C5:C7ax" and other.settings["curve_index"] == 1
    assert not set(both["C7eq:C7ax"].seeds) & set(other.seeds)  # independent streams per pair
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["C5_to_C7ax", "C7eq_to_C7ax"]
    # a store holding every path: nothing is sampled again, the same paths come back
    again = sample_pair_paths(aldp, model, geo, dynamics=Dynamics(seed=5), store=tmp_path / "store",
                              callback=lambda info: seen.append(info["pair"]), **kw)
    assert len(seen) == 4
    np.testing.assert_array_equal(paths_of(again["C5:C7ax"]), paths_of(other))
    # the paths of one curve alone take the seed as given
    plain = sample_molecular_paths(aldp, model, geo, curve_index=1, dynamics=Dynamics(seed=5), **kw)
    assert plain.settings["pair"] == "C5:C7ax" and plain.settings["seed"] == 5


def test_a_failing_pair_stops_the_call(aldp, model, geo):
    def fail(info):
        raise RuntimeError(f"no room for {info['pair']}")

    with ProcessPoolExecutor(2) as pool, pytest.raises(RuntimeError, match="no room for"):
        sample_pair_paths(aldp, model, geo, n_paths=2, steps_per_point=2, dynamics=Dynamics(seed=5), executor=pool,
                          callback=fail, progress=False)


def test_bad_pair_names_fail_before_sampling(aldp, model, geo):
    kw = dict(n_paths=1, steps_per_point=2, progress=False)
    with pytest.raises(ValueError, match="no pair 'C5:C7eq'"):
        sample_pair_paths(aldp, model, geo, pairs=["C7eq:C7ax", "C5:C7eq"], **kw)
    with pytest.raises(ValueError, match="no pairs to sample"):
        sample_pair_paths(aldp, model, geo, pairs=[], **kw)
    with pytest.raises(ValueError, match="given twice"):
        sample_pair_paths(aldp, model, geo, pairs=["C5:C7ax", ("C5", "C7ax")], **kw)
