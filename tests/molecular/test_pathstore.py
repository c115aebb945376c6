"""Paths streamed into a store as they finish: a run killed with SIGKILL mid-way resumes to the result of an
uninterrupted run (bitwise, Reference platform), a store can be extended, a store of other settings is refused;
``sample --resume`` continues an interrupted CLI run to the same run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.pathstore import PathStore, StoredTrajectories, StoreMismatch
from tps_diffusion.molecular.restrained import sample_paths

N_PATHS = 24


@pytest.fixture(scope="module")
def case(straight_targets):
    return straight_targets


def sample(aldp, case, n_paths=N_PATHS, **kw):
    featurizer, targets = case
    kw.setdefault("dynamics", Dynamics(seed=5))
    return sample_paths(aldp, featurizer, targets, 500.0, "C5", n_paths=n_paths, steps_per_point=10, progress=False,
                        **kw)


@pytest.fixture(scope="module")
def uninterrupted(aldp, case):
    return sample(aldp, case)


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a.trajectories, b.trajectories):
        np.testing.assert_array_equal(x.xyz, y.xyz)
        np.testing.assert_array_equal(x.time, y.time)
    np.testing.assert_array_equal(a.energies, b.energies)
    np.testing.assert_array_equal(a.tilt_energies, b.tilt_energies)
    assert a.seeds == b.seeds and a.n_force_evaluations == b.n_force_evaluations


KILLED = """
import sys, time
import numpy as np
sys.path.insert(0, {tests!r})
from conftest import straight_targets
from test_pathstore import sample
from tps_diffusion.molecular.catalogue import alanine_dipeptide
from tps_diffusion.molecular.dynamics import Dynamics
if __name__ == "__main__":
    aldp = alanine_dipeptide()
    sample(aldp, straight_targets.__wrapped__(aldp), store={store!r}, dynamics=Dynamics(seed=5, n_workers=2),
           callback=lambda info: time.sleep(0.1))   # slow enough to be killed half-way
    print("finished")
"""


def test_killed_run_resumes_to_the_uninterrupted_result(aldp, case, uninterrupted, tmp_path):
    store = tmp_path / "store"
    script = tmp_path / "killed.py"
    script.write_text(KILLED.format(tests=os.path.dirname(__file__), store=str(store)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own process group: the kill takes its workers too
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if store.is_dir() and len(list(store.glob("path_*.npz"))) >= 6:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9, mid-write or not
        proc.communicate()
    before = {int(f.stem.split("_")[1]) for f in store.glob("path_*.npz")}
    assert 6 <= len(before) < N_PATHS
    written = []
    resumed = sample(aldp, case, store=store, callback=lambda info: written.append(info["path"]))
    assert sorted(written) == sorted(set(range(N_PATHS)) - before)  # only the missing paths were sampled
    assert isinstance(resumed.trajectories, StoredTrajectories)
    assert_same(uninterrupted, resumed)
    index = json.loads((store / "index.json").read_text())
    assert index["n_done"] == N_PATHS and index["done"] == [[0, N_PATHS - 1]]
    assert not [f for f in os.listdir(store) if f.startswith(".")]  # no debris of the killed writes


def test_store_extends_and_refuses_other_settings(aldp, case, uninterrupted, tmp_path):
    store = tmp_path / "s"
    first = sample(aldp, case, n_paths=10, store=store)
    assert_same(first, sample(aldp, case, n_paths=10))  # the same paths as without a store
    more = sample(aldp, case, store=store)  # the first 10 paths are kept, 14 more sampled
    assert_same(uninterrupted, more)
    assert more[3].n_frames == 30 and more.final_frames().n_frames == N_PATHS and more[-1].n_frames == 30
    with pytest.raises(StoreMismatch, match="other seed"):
        sample(aldp, case, store=store, dynamics=Dynamics(seed=6))
    with pytest.raises(ValueError, match="needs a seed"):
        sample(aldp, case, store=tmp_path / "t", dynamics=Dynamics())
    (store / ".path_000003.x1y2.npz").write_bytes(b"half a file")  # what a kill mid-write leaves
    assert 3 in PathStore(store, json.loads((store / "store.json").read_text())).done
    assert not (store / ".path_000003.x1y2.npz").exists()
