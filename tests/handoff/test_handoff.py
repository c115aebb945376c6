"""Hand-off files for enhanced sampling, checked against independent readers and recomputation.

The path is synthetic: alanine dipeptide linearly interpolated (after alignment) from C5 to C7ax
with non-uniform speed, every frame then moved by a random rigid-body motion.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import openmm.app as app
import pytest
from openmm import unit

from tps_diffusion import handoff

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
if not DATA.exists():  # CI clones main with shared/ beside it
    DATA = Path("/work/shared/data")
C5 = DATA / "alanine_dipeptide_C5.pdb"
C7AX = DATA / "alanine_dipeptide_C7ax.pdb"


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@pytest.fixture(scope="module")
def path() -> mdtraj.Trajectory:
    a = mdtraj.load(str(C5))
    b = mdtraj.load(str(C7AX))
    b.superpose(a)
    t = np.linspace(0.0, 1.0, 41) ** 2  # slow start, fast end
    xyz = (1 - t)[:, None, None] * a.xyz[0] + t[:, None, None] * b.xyz[0]
    rng = np.random.default_rng(0)
    for k in range(len(xyz)):
        xyz[k] = (xyz[k] - xyz[k].mean(0)) @ _random_rotation(rng).T + rng.normal(scale=0.5, size=3)
    return mdtraj.Trajectory(xyz.astype(np.float32), a.topology, time=np.arange(len(xyz), dtype=float))


@pytest.fixture(scope="module")
def system() -> openmm.System:
    pdb = app.PDBFile(str(C5))
    ff = app.ForceField("amber99sbildn.xml")
    return ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=None)


def pairwise_consecutive_rmsd(traj: mdtraj.Trajectory, atom_indices=None) -> np.ndarray:
    """Consecutive RMSD with mdtraj's own (independent) implementation, nm (on a copy: mdtraj.rmsd
    centres its arguments in place)."""
    traj = mdtraj.Trajectory(traj.xyz.copy(), traj.topology)
    return np.array(
        [mdtraj.rmsd(traj[k + 1], traj, k, atom_indices=atom_indices)[0] for k in range(traj.n_frames - 1)]
    )


def max_deviation_after_fit(a: mdtraj.Trajectory, b: mdtraj.Trajectory) -> float:
    """Largest atom displacement (nm) between single frames a and b after superposing a onto b."""
    a = mdtraj.Trajectory(a.xyz.copy(), a.topology).superpose(mdtraj.Trajectory(b.xyz.copy(), b.topology))
    return float(np.abs(a.xyz[0] - b.xyz[0]).max())


def parse_pdb_frames(text: str):
    """Minimal independent reader: ATOM/HETATM records, frames ended by END; Angstrom."""
    frames, serials, occ, beta, cur, cur_serials = [], None, [], [], [], []
    for line in text.splitlines():
        rec = line[:6].strip()
        if rec in ("ATOM", "HETATM"):
            cur.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
            cur_serials.append(int(line[6:11]))
            occ.append(float(line[54:60]))
            beta.append(float(line[60:66]))
        elif rec == "END":
            frames.append(cur)
            if serials is None:
                serials = cur_serials
            assert cur_serials == serials
            cur, cur_serials = [], []
    assert not cur, "atoms after the last END"
    return np.array(frames), np.array(serials), np.array(occ), np.array(beta)


# ------------------------------------------------------------------------------ spacing


def test_input_path_is_nonuniform(path):
    d = pairwise_consecutive_rmsd(path)
    assert d.max() / d.min() > 10


def test_equally_spaced_frames_interpolated(path):
    frames = handoff.equally_spaced_frames(path, 12)
    assert frames.n_frames == 12 and frames.topology == path.topology
    d = pairwise_consecutive_rmsd(frames)
    assert d.std() / d.mean() < 1e-3
    # endpoints are the path's endpoints (up to a rigid motion)
    np.testing.assert_array_equal(frames.xyz[0], path.xyz[0])
    assert max_deviation_after_fit(frames[-1], path[-1]) < 1e-5
    # total: 11 equal steps cover the (straight) path's end-to-end RMSD
    end_to_end = pairwise_consecutive_rmsd(path[[0, -1]])[0]
    assert d.sum() == pytest.approx(end_to_end, rel=1e-3)


def test_equally_spaced_frames_on_curved_path(path):
    # a bent path C5 -> C7ax -> C5 displaced: spacing must still be equal in chord RMSD
    rng = np.random.default_rng(1)
    third = path.xyz[0] + rng.normal(scale=0.03, size=path.xyz[0].shape).astype(np.float32)
    bent = mdtraj.Trajectory(np.concatenate([path.xyz, third[None]]), path.topology)
    heavy = bent.topology.select("not element H")
    frames = handoff.equally_spaced_frames(bent, 15, atom_indices=heavy)
    d = pairwise_consecutive_rmsd(frames, heavy)
    assert d.std() / d.mean() < 1e-3


def test_equally_spaced_frames_pick(path):
    picked = handoff.equally_spaced_frames(path, 6, interpolate=False)
    # picked frames are untouched input frames
    for f in range(picked.n_frames):
        assert any(np.array_equal(picked.xyz[f], path.xyz[k]) for k in range(path.n_frames))
    d = pairwise_consecutive_rmsd(picked)
    assert d.std() / d.mean() < 0.3  # as even as the input's resolution allows
    with pytest.raises(ValueError):
        handoff.equally_spaced_frames(path[:1], 3)
    with pytest.raises(ValueError):
        handoff.equally_spaced_frames(path, 1)


# ------------------------------------------------------------------------------ PLUMED


def test_write_plumed_path(path, tmp_path):
    heavy = path.topology.select("not element H")
    out = handoff.write_plumed_path(path, tmp_path, n_frames=10, atom_indices=heavy)
    pdb_path, dat_path = Path(out["pdb"]), Path(out["plumed"])
    expected = handoff.equally_spaced_frames(path, 10, atom_indices=heavy)

    # our own reader: Angstrom, serials = 1-based atom indices, occupancy/beta = 1
    xyz_A, serials, occ, beta = parse_pdb_frames(pdb_path.read_text())
    assert xyz_A.shape == (10, heavy.size, 3)
    np.testing.assert_allclose(xyz_A, expected.xyz[:, heavy] * 10.0, atol=6e-4)
    np.testing.assert_array_equal(serials, heavy + 1)
    assert np.all(occ == 1.0) and np.all(beta == 1.0)

    # mdtraj reads the same frames (nm), atom names and residues intact
    back = mdtraj.load(str(pdb_path))
    assert back.n_frames == 10 and back.n_atoms == heavy.size
    np.testing.assert_allclose(back.xyz, expected.xyz[:, heavy], atol=6e-5)
    assert [a.name for a in back.topology.atoms] == [path.topology.atom(i).name for i in heavy]

    # equal spacing and LAMBDA = 2.3 / mean MSD (nm^2), recomputed from the file
    d = pairwise_consecutive_rmsd(back)
    assert d.std() / d.mean() < 2e-3
    lam = 2.3 / np.mean(d.astype(np.float64) ** 2)
    assert out["lambda"] == pytest.approx(lam, rel=2e-3)

    dat = dat_path.read_text()
    m = re.search(r"^(\w+): PATHMSD REFERENCE=(\S+) LAMBDA=(\S+)", dat, re.M)
    assert m, dat
    assert m.group(2) == pdb_path.name and (dat_path.parent / m.group(2)) == pdb_path
    assert float(m.group(3)) == pytest.approx(out["lambda"], rel=1e-6)
    assert re.search(rf"^PRINT ARG={m.group(1)}\.sss,{m.group(1)}\.zzz ", dat, re.M)


def test_write_plumed_path_no_overwrite_and_atomic(path, tmp_path, monkeypatch):
    out = handoff.write_plumed_path(path, tmp_path, n_frames=5)
    before = {p: p.read_bytes() for p in (out["pdb"], out["plumed"])}
    with pytest.raises(FileExistsError):
        handoff.write_plumed_path(path, tmp_path, n_frames=7)
    assert {p: p.read_bytes() for p in before} == before
    out2 = handoff.write_plumed_path(path, tmp_path, n_frames=7, overwrite=True)
    assert parse_pdb_frames(Path(out2["pdb"]).read_text())[0].shape[0] == 7

    # a failure while writing leaves neither file nor temporary behind
    fresh = tmp_path / "fresh"

    def boom(self, *args, **kwargs):
        if self.suffix == ".dat":
            raise OSError("disk full")
        return original(self, *args, **kwargs)

    original = Path.write_text
    monkeypatch.setattr(Path, "write_text", boom)
    with pytest.raises(OSError, match="disk full"):
        handoff.write_plumed_path(path, fresh, n_frames=5)
    monkeypatch.undo()
    assert not fresh.exists() or list(fresh.iterdir()) == []


# ------------------------------------------------------------------------------ string images


def test_write_string_images(path, tmp_path):
    out = handoff.write_string_images(path, tmp_path / "images.dcd", 8)
    images = mdtraj.load(str(out["images"]), top=str(out["topology"]))
    assert images.n_frames == 8
    d = pairwise_consecutive_rmsd(images)
    assert d.std() / d.mean() < 2e-3
    out = handoff.write_string_images(path, tmp_path / "images.pdb", 5)
    assert out["topology"] is None and mdtraj.load(str(out["images"])).n_frames == 5
    with pytest.raises(FileExistsError):
        handoff.write_string_images(path, tmp_path / "images.pdb", 5)


# ------------------------------------------------------------------------------ OpenMM states


def test_write_state_xml_roundtrip(path, system, tmp_path):
    frames = [0, 20, 40]
    files = handoff.write_state_xml(system, path, frames, tmp_path, temperature=300.0, seed=7)
    assert [f.name for f in files] == ["state_00000.xml", "state_00020.xml", "state_00040.xml"]

    ref_context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    for f, file in zip(frames, files):
        # independent reference energy of the trajectory frame
        ref_context.setPositions(path.xyz[f].astype(np.float64))
        e_ref = ref_context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)

        # load into a fresh Simulation via loadState
        pdb = app.PDBFile(str(C5))
        sim = app.Simulation(
            pdb.topology, system, openmm.LangevinMiddleIntegrator(300, 1, 0.001),
            openmm.Platform.getPlatformByName("Reference"),
        )  # fmt: skip
        sim.loadState(str(file))
        st = sim.context.getState(getPositions=True, getVelocities=True, getEnergy=True)
        pos = st.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        np.testing.assert_allclose(pos, path.xyz[f], atol=1e-6)
        e = st.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        assert e == pytest.approx(e_ref, rel=1e-6, abs=1e-6)
        v = st.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        assert np.abs(v).max() > 0
        assert st.getTime().value_in_unit(unit.picosecond) == pytest.approx(path.time[f])

    # same seed, same velocities; without a temperature, zero velocities
    again = handoff.write_state_xml(system, path, frames, tmp_path / "again", temperature=300.0, seed=7)
    assert again[1].read_text() == files[1].read_text()
    cold = handoff.write_state_xml(system, path, [20], tmp_path / "cold")
    state = openmm.XmlSerializer.deserialize(cold[0].read_text())
    assert np.all(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond) == 0)
    with pytest.raises(FileExistsError):
        handoff.write_state_xml(system, path, [20], tmp_path / "cold")


def test_maxwell_boltzmann_temperature(path, system, tmp_path):
    # kinetic temperature over 41 draws ~ 300 K (66 - 3 dof: the system has a CMMotionRemover), also
    # for the strained interpolated frames (velocities must not be leapfrog-shifted by the forces)
    files = handoff.write_state_xml(system, path, range(0, 41), tmp_path, temperature=300.0, seed=1)
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])
    ke = []
    for file in files:
        v = openmm.XmlSerializer.deserialize(file.read_text()).getVelocities(asNumpy=True)
        v = v.value_in_unit(unit.nanometer / unit.picosecond)
        ke.append(0.5 * np.sum(masses[:, None] * v**2))
    dof = 3 * system.getNumParticles() - 3
    t_kin = 2 * np.mean(ke) / (dof * 0.0083144626)
    assert t_kin == pytest.approx(300.0, rel=0.1)


# ------------------------------------------------------------------------------ OpenPathSampling


def test_to_openpathsampling(path, system):
    try:
        import openpathsampling  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install openpathsampling"):
            handoff.to_openpathsampling(path)
        return
    traj, engine = handoff.to_openpathsampling(path, system, n_steps_per_frame=5)
    assert len(traj) == path.n_frames
    np.testing.assert_allclose(traj[3].xyz, path.xyz[3], atol=1e-6)
    assert engine.n_steps_per_frame == 5


def test_smoothing_makes_a_noisy_thermal_path_usable(path):
    """A path with thermal noise folds back on itself; averaging first gives equal spacing."""
    rng = np.random.default_rng(0)
    dense = handoff.equally_spaced_frames(path, 400)
    noisy = dense[:]
    noisy.xyz = dense.xyz + rng.normal(scale=0.01, size=dense.xyz.shape).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="equal RMSD spacing not reached"):
        handoff.equally_spaced_frames(noisy, 10, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smooth = handoff.equally_spaced_frames(noisy, 10, smooth=20)
    gaps = handoff.consecutive_rmsd(smooth)
    assert gaps.max() - gaps.min() < 1e-3 * gaps.mean()
    np.testing.assert_allclose(smooth.xyz[0], noisy.xyz[0], atol=1e-6)  # endpoints kept
