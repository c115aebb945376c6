"""Plain MD runs and sample loading."""

import numpy as np
import pytest

from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.formats import load_samples, write_trajectory
from tps_diffusion.molecular.md import run_md


@pytest.fixture(scope="module")
def result(aldp):
    return run_md(aldp, ["C5", "C7eq"], n_steps=400, report_interval=50, dynamics=Dynamics(seed=11), progress=False)


def test_run_md_shapes_counts_energies(aldp, result):
    traj = result.trajectory
    assert traj.n_frames == 16 and traj.n_atoms == 22
    assert result.n_force_evaluations == 800 and result.n_energy_evaluations == 16
    assert result.settings["timestep"] == 0.001 and result.settings["platform"] == "Reference"
    np.testing.assert_array_equal(result.run_index, np.repeat([0, 1], 8))
    np.testing.assert_allclose(traj.time[:8], np.arange(1, 9) * 0.05)
    # reported energies = OpenMM energies of the stored (float32) frames
    np.testing.assert_allclose(aldp.potential_energy(traj), result.potential_energy, atol=1e-2)
    # 0.4 ps from a minimum: still in the starting basin, energy above the minimum
    states = aldp.assign_states(traj)
    assert (states[:8] == "C5").all() and (states[8:] == "C7eq").all()
    assert (result.potential_energy > -91).all()
    assert result.run(1).n_frames == 8


def test_run_md_reproducible_and_parallel(aldp, result):
    again = run_md(aldp, ["C5", "C7eq"], n_steps=400, report_interval=50, progress=False,
                   dynamics=Dynamics(seed=11, n_workers=2, mp_context="spawn"))
    np.testing.assert_array_equal(again.trajectory.xyz, result.trajectory.xyz)
    other = run_md(aldp, aldp.positions_of("C5"), n_steps=100, report_interval=50, dynamics=Dynamics(seed=12),
                   progress=False)
    assert not np.allclose(other.trajectory.xyz[0], result.trajectory.xyz[0])
    assert other.n_runs == 1


def test_run_md_errors(aldp):
    with pytest.raises(KeyError, match="alpha_R"):
        run_md(aldp, ["alpha_R"], n_steps=10, progress=False)
    with pytest.raises(ValueError, match="no frame would be recorded"):
        run_md(aldp, "C5", n_steps=10, report_interval=100, progress=False)
    bad = aldp.positions_of("C5")
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_md(aldp, bad, n_steps=10, report_interval=5, progress=False)


def test_load_samples(aldp, result, tmp_path):
    write_trajectory(result.run(0), tmp_path / "a.dcd", topology_pdb=True)
    write_trajectory(result.run(1), tmp_path / "b.h5")
    both = load_samples([tmp_path / "a.dcd", tmp_path / "b.h5"], top=aldp)
    np.testing.assert_allclose(both.xyz, result.trajectory.xyz, atol=1e-6)  # DCD: float32 Angstrom
    np.testing.assert_array_equal(both.xyz[8:], result.trajectory.xyz[8:])  # HDF5: float32 nm, lossless
    assert load_samples(tmp_path / "a.dcd").n_frames == 8  # companion a.pdb
    small = aldp.md_topology.subset(range(21))
    with pytest.raises(ValueError, match="22 atoms but the topology has 21"):
        load_samples(tmp_path / "a.dcd", top=small)
    with pytest.raises(ValueError, match="topology mismatch"):
        load_samples(tmp_path / "b.h5", top=small)
    with pytest.raises(FileNotFoundError):
        load_samples(tmp_path / "missing.dcd", top=aldp)
