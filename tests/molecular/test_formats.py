"""Trajectory/State output: round trips, atomic writes, energies of re-loaded frames."""

import os

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import pytest

from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.featurizer import CartesianFeaturizer
from tps_diffusion.molecular.formats import load_trajectory, openmm_positions, write_trajectory
from tps_diffusion.molecular.restrained import sample_paths


@pytest.fixture(scope="module")
def traj(aldp):
    rng = np.random.default_rng(4)
    xyz = np.stack([aldp.positions_of(n) for n in ("C5", "C7eq", "C7ax")]) + 0.02 * rng.normal(size=(3, 22, 3))
    return aldp.to_trajectory(xyz, time=np.array([0.0, 0.5, 1.0]))


@pytest.mark.parametrize("ext,atol", [(".h5", 0.0), (".dcd", 1e-6), (".pdb", 5.1e-5), (".xtc", 5.1e-4)])
def test_round_trip_keeps_coordinates(aldp, traj, tmp_path, ext, atol):
    path = write_trajectory(traj, tmp_path / f"t{ext}", topology_pdb=ext in (".dcd", ".xtc"))
    back = load_trajectory(path, top=None if ext in (".h5", ".pdb") else aldp)
    assert back.n_frames == 3 and back.n_atoms == 22
    np.testing.assert_allclose(back.xyz, traj.xyz, atol=atol, rtol=0)
    if ext in (".dcd", ".xtc"):  # companion topology PDB is found without top=
        np.testing.assert_allclose(load_trajectory(path).xyz, back.xyz)
    assert [a.name for a in back.topology.atoms] == [a.name for a in traj.topology.atoms]


def test_no_overwrite_unless_asked(traj, tmp_path):
    path = tmp_path / "t.h5"
    write_trajectory(traj, path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        write_trajectory(traj[:1], path)
    assert path.read_bytes() == before
    write_trajectory(traj[:1], path, overwrite=True)
    assert mdtraj.load(str(path)).n_frames == 1
    with pytest.raises(FileExistsError):  # companion PDB checked before anything is written
        (tmp_path / "u.pdb").write_text("x")
        write_trajectory(traj, tmp_path / "u.dcd", topology_pdb=True)
    assert not (tmp_path / "u.dcd").exists()


def test_failing_writer_leaves_no_partial_file(traj, tmp_path, monkeypatch):
    def broken(self, filename, *a, **k):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mdtraj.Trajectory, "save_dcd", broken)
    with pytest.raises(OSError, match="disk full"):
        write_trajectory(traj, tmp_path / "t.dcd")
    assert os.listdir(tmp_path) == []
    (tmp_path / "old.dcd").write_bytes(b"old")
    with pytest.raises(OSError):
        write_trajectory(traj, tmp_path / "old.dcd", overwrite=True)
    assert (tmp_path / "old.dcd").read_bytes() == b"old" and os.listdir(tmp_path) == ["old.dcd"]
    with pytest.raises(ValueError, match="unsupported extension '.gro'"):
        write_trajectory(traj, tmp_path / "t.gro")
    assert sorted(os.listdir(tmp_path)) == ["old.dcd"]


def test_load_errors(aldp, traj, tmp_path):
    write_trajectory(traj, tmp_path / "t.dcd")
    with pytest.raises(ValueError, match="has no topology"):
        load_trajectory(tmp_path / "t.dcd")
    with pytest.raises(ValueError, match="22 atoms but the topology has 20"):
        load_trajectory(tmp_path / "t.dcd", top=aldp.md_topology.subset(range(20)))
    with pytest.raises(FileNotFoundError):
        load_trajectory(tmp_path / "none.h5")


def test_openmm_positions_set_a_simulation(aldp, traj):
    sim = app.Simulation(aldp.topology, aldp.openmm_system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    sim.context.setPositions(openmm_positions(traj, 1))
    e = sim.context.getState(getEnergy=True).getPotentialEnergy()._value
    assert e == pytest.approx(aldp.potential_energy(traj)[1], abs=1e-6)


def test_sampler_energies_survive_export(aldp, tmp_path):
    f = CartesianFeaturizer(aldp).fit(np.stack([aldp.positions_of(n) for n in ("C5", "C7eq", "C7ax")]))
    targets = np.stack([f.align(aldp.positions_of(n))[0] for n in ("C5", "C7eq")])
    ps = sample_paths(aldp, f, targets, 1000.0, "C5", n_paths=1, steps_per_point=20, dynamics=Dynamics(seed=1),
                      progress=False)
    for ext in (".dcd", ".h5"):
        path = write_trajectory(ps[0], tmp_path / f"p{ext}")
        back = load_trajectory(path, top=aldp)
        np.testing.assert_allclose(aldp.potential_energy(back), ps.energies[0], atol=1e-2)
    out = ps.save(tmp_path / "paths", fmt="dcd")
    assert sorted(os.listdir(out)) == ["energies.npz", "path_0000.dcd", "pathset.json", "topology.pdb"]
    np.testing.assert_allclose(aldp.potential_energy(load_trajectory(out / "path_0000.dcd", top=out / "topology.pdb")),
                               np.load(out / "energies.npz")["energies"][0], atol=1e-2)
