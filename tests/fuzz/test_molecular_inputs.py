"""Bad inputs to the molecular and hand-off layers: one-line errors naming the fix, before any long work.

Each case replays an input a fuzz found (truncated/corrupt trajectories, NaN frames, repeated
structures, non-ASCII paths, full disks, absurd sizes, bad temperatures, committor callables,
hand-off frame counts, malformed PDBs, OpenMM exceptions) on alanine dipeptide with a few MD steps
on the Reference platform. A small hypothesis layer truncates and flips bytes of a DCD and an HDF5
file: loading either returns the original frames or raises a one-line ValueError/OSError.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import mdtraj
import numpy as np
import openmm
import pytest
import tables
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tps_diffusion import handoff
from tps_diffusion.molecular import limits
from tps_diffusion.molecular.catalogue import alanine_dipeptide
from tps_diffusion.molecular.committor import CommittorResult, committor
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.featurizer import CartesianFeaturizer
from tps_diffusion.molecular.formats import (
    check_writable_trajectory_path,
    load_samples,
    load_trajectory,
    write_trajectory,
)
from tps_diffusion.molecular.md import run_md
from tps_diffusion.molecular.paths import sample_molecular_paths
from tps_diffusion.molecular.restrained import restraint_schedule, sample_paths
from tps_diffusion.molecular.system import MolecularSystem

REF = Dynamics(platform="Reference", seed=1)


def one_line_error(exc_type, pattern: str, fn, *args, **kwargs) -> str:
    """Call ``fn``; assert it raises ``exc_type`` with a one-line message matching ``pattern``."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert msg and "\n" not in msg.strip(), f"not one line: {msg!r}"
    assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    return msg


@pytest.fixture(scope="module")
def aldp() -> MolecularSystem:
    return alanine_dipeptide()


@pytest.fixture(scope="module")
def traj(aldp) -> mdtraj.Trajectory:
    rng = np.random.default_rng(0)
    xyz = aldp.positions[None] + 0.01 * rng.normal(size=(10, aldp.n_atoms, 3))
    return aldp.to_trajectory(xyz, time=np.arange(10.0))


@pytest.fixture(scope="module")
def path(aldp) -> mdtraj.Trajectory:
    """A 10-frame path C5 -> C7ax (linear interpolation of the minimised structures)."""
    a, b = aldp.positions_of("C5"), aldp.positions_of("C7ax")
    t = np.linspace(0.0, 1.0, 10)[:, None, None]
    return aldp.to_trajectory((1 - t) * a + t * b, time=np.arange(10.0))


@pytest.fixture(scope="module")
def featurizer(aldp, traj) -> CartesianFeaturizer:
    return CartesianFeaturizer(aldp, "not element H").fit(traj)


# ------------------------------------------------------------------ 1. truncated trajectory files


@pytest.mark.parametrize("ext", [".dcd", ".xtc", ".h5"])
def test_truncated_trajectory_is_refused(aldp, traj, tmp_path, ext):
    full = write_trajectory(traj, tmp_path / f"full{ext}")
    raw = full.read_bytes()
    cut = tmp_path / f"cut{ext}"
    # XTC has no frame count: a cut exactly between frames cannot be told from a shorter file, so cut mid-frame
    cut.write_bytes(raw[: len(raw) // 2 + (50 if ext == ".xtc" else 0)])
    pattern = (r"cut\.dcd is truncated or corrupt \(header says 10 frames, [45] readable\); re-copy or regenerate it"
               if ext == ".dcd" else r"cut\.\w+ .*truncated or corrupt.*re-copy or regenerate it")
    one_line_error(ValueError, pattern, load_trajectory, cut, top=aldp)
    one_line_error(ValueError, pattern, load_samples, [full, cut], top=aldp)


def test_dcd_header_promising_fewer_frames_is_refused(aldp, traj, tmp_path):
    """A DCD whose header frame count was lowered (bit flip) would otherwise be read short."""
    raw = bytearray(write_trajectory(traj, tmp_path / "t.dcd").read_bytes())
    raw[8:12] = np.array([7], dtype="<i4").tobytes()  # NSET: 10 -> 7
    (tmp_path / "fewer.dcd").write_bytes(bytes(raw))
    one_line_error(ValueError, r"header says 7 frames, 10 readable", load_trajectory, tmp_path / "fewer.dcd", top=aldp)


# ------------------------------------------------------------------ 2. NaN frames, repeated structures


def test_nan_frames_in_a_file_are_named(aldp, traj, tmp_path):
    bad = traj[:]
    bad.xyz = traj.xyz.copy()
    bad.xyz[[2, 4], 3] = np.nan
    bad.save_hdf5(str(tmp_path / "nan.h5"))  # mdtraj itself writes it; write_trajectory refuses
    one_line_error(ValueError, r"nan\.h5 contains NaN/inf coordinates \(frames \[2, 4\]\); drop those frames",
                   load_trajectory, tmp_path / "nan.h5")
    one_line_error(ValueError, r"refusing to write .*frames \[2, 4\]", write_trajectory, bad, tmp_path / "n.dcd")
    one_line_error(ValueError, r"frames \[2, 4\]", CartesianFeaturizer(aldp, "all").fit, bad.xyz)


@pytest.mark.parametrize("jitter", [0.0, 1e-9])
def test_one_structure_repeated_is_refused(aldp, jitter):
    rng = np.random.default_rng(1)
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    xyz = np.repeat(aldp.positions[None], 50, axis=0) + jitter * rng.normal(size=(50, aldp.n_atoms, 3))
    xyz[1::2] = xyz[1::2] @ rot.T + 0.3  # rigid copies: identical after alignment
    feat = CartesianFeaturizer(aldp, "not element H")
    one_line_error(ValueError, r"all samples are \(nearly\) identical after alignment \(RMS spread .* nm\): give MD "
                   r"samples of the basins, not one structure repeated", feat.fit, xyz)
    assert not feat.fitted


# ------------------------------------------------------------------ 3. non-ASCII paths, fail-fast output checks


@pytest.mark.parametrize("ext", [".dcd", ".xtc", ".h5", ".pdb"])
def test_non_ascii_paths_round_trip(aldp, traj, tmp_path, ext):
    folder = tmp_path / "runs" / "dä"
    out = check_writable_trajectory_path(folder / f"tö{ext}")
    write_trajectory(traj, out, topology_pdb=ext in (".dcd", ".xtc"))
    back = load_trajectory(out, top=aldp)
    atol = {".dcd": 1e-6, ".xtc": 5.1e-4, ".h5": 0.0, ".pdb": 5.1e-5}[ext]
    np.testing.assert_allclose(back.xyz, traj.xyz, atol=atol, rtol=0)
    assert back.n_frames == traj.n_frames
    ascii_copy = tmp_path / f"plain{ext}"
    shutil.copy(out, ascii_copy)
    np.testing.assert_array_equal(load_trajectory(ascii_copy, top=aldp).xyz, back.xyz)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"tö{ext}"] + (["tö.pdb"] if ext in (".dcd", ".xtc")
                                                                                else []))


def test_non_ascii_string_images(path, tmp_path):
    out = handoff.write_string_images(path, tmp_path / "bilder" / "für.dcd", 4)
    images = load_trajectory(out["images"], top=out["topology"])
    assert images.n_frames == 4


def test_check_writable_trajectory_path(traj, tmp_path):
    one_line_error(ValueError, r"unsupported extension '\.gro'", check_writable_trajectory_path, tmp_path / "t.gro")
    write_trajectory(traj, tmp_path / "t.dcd")
    one_line_error(FileExistsError, r"already exists; pass overwrite=True", check_writable_trajectory_path,
                   tmp_path / "t.dcd")
    assert check_writable_trajectory_path(tmp_path / "t.dcd", overwrite=True) == tmp_path / "t.dcd"
    (tmp_path / "afile").write_text("x")
    one_line_error(OSError, r"afile is a file, not a directory; choose another", check_writable_trajectory_path,
                   tmp_path / "afile" / "sub" / "t.dcd")
    one_line_error(OSError, r"afile is a file, not a directory; choose another", write_trajectory, traj,
                   tmp_path / "afile" / "t.h5")
    (tmp_path / "dir.h5").mkdir()
    one_line_error(OSError, r"it is a directory", check_writable_trajectory_path, tmp_path / "dir.h5")
    one_line_error(OSError, r"needs about .* MiB but only .* MiB are free; free space", check_writable_trajectory_path,
                   tmp_path / "new" / "big.h5", n_bytes=2**62)
    assert not (tmp_path / "new").exists()
    assert sorted(os.listdir(tmp_path)) == ["afile", "dir.h5", "t.dcd"]  # the probe left nothing


# ------------------------------------------------------------------ 4. full disk


def _full_disk(self, filename, *args, **kwargs):
    with open(filename, "wb") as fh:
        fh.write(b"partial")
    raise TypeError("'dict' object is not callable")  # what mdtraj's DCD writer raises on a full disk


@pytest.mark.parametrize("method,ext", [("save_dcd", ".dcd"), ("save_hdf5", ".h5"), ("save_xtc", ".xtc")])
def test_full_disk_writer_failure(traj, tmp_path, monkeypatch, method, ext):
    monkeypatch.setattr(mdtraj.Trajectory, method, _full_disk)
    one_line_error(OSError, rf"writing t{re.escape(ext)} failed \(TypeError: 'dict' object is not callable\); is the "
                   r"disk full\? free space or choose another --run-dir", write_trajectory, traj, tmp_path / f"t{ext}")
    assert os.listdir(tmp_path) == []


def test_full_disk_hand_off_and_results(aldp, path, tmp_path, monkeypatch):
    monkeypatch.setattr(mdtraj.Trajectory, "save_dcd", _full_disk)
    one_line_error(OSError, r"writing images\.dcd failed .*is the disk full", handoff.write_string_images, path,
                   tmp_path / "img" / "images.dcd", 3)
    assert list((tmp_path / "img").iterdir()) == []
    monkeypatch.undo()

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    one_line_error(OSError, r"writing plumed\.dat failed|writing path_msd\.pdb failed", handoff.write_plumed_path,
                   path, tmp_path / "plumed", n_frames=4)
    one_line_error(OSError, r"writing state_00001\.xml failed \(OSError: No space left on device\); is the disk full",
                   handoff.write_state_xml, aldp, path, [1], tmp_path / "states")
    result = CommittorResult(np.zeros((1, 2), int), np.zeros((1, 2), np.int64))
    one_line_error(OSError, r"writing pB\.json failed", result.save, tmp_path / "pB.json")
    for sub in ("plumed", "states"):
        assert not (tmp_path / sub).exists() or list((tmp_path / sub).iterdir()) == []
    assert not (tmp_path / "pB.json").exists()


# ------------------------------------------------------------------ 5. absurd sizes, counts


def test_absurd_sizes_refused_before_allocating(aldp, featurizer, monkeypatch):
    if limits.available_memory() is not None:  # the real /proc/meminfo (or psutil)
        one_line_error(ValueError, r"this run would record .* GiB of frames .*but only .* GiB are available; record "
                       r"fewer frames \(larger report/record interval\) or fewer runs/paths", run_md, aldp, "C5",
                       n_steps=1e12, report_interval=1, dynamics=REF, progress=False)
    monkeypatch.setattr(limits, "available_memory", lambda: 2**30)  # 1 GiB
    one_line_error(ValueError, r"would record 2\.53 GiB of frames \(about 5\.07 GiB at the peak\) but only 1 GiB",
                   run_md, aldp, "C5", n_steps=10**7, report_interval=1, dynamics=REF, progress=False)
    targets = np.repeat(featurizer.inverse(np.zeros((1, featurizer.n_features))), 4, axis=0)
    one_line_error(ValueError, r"would record .* GiB of frames but only 1 GiB are available", sample_paths, aldp,
                   featurizer, targets, 1.0, "C5", n_paths=1e11, steps_per_point=2, dynamics=REF, progress=False)
    one_line_error(ValueError, r"would record .* GiB of frames .* but only 1 GiB are available", run_md, aldp, "C5",
                   n_steps=2, report_interval=1, n_runs_per_start=1e11, dynamics=REF, progress=False)


BAD_COUNTS = [float("nan"), float("inf"), -5, 0, 2.5, "10", True, None]


@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("name", ["n_steps", "report_interval", "n_runs_per_start", "n_equilibration"])
def test_run_md_counts(aldp, name, value):
    if name == "n_equilibration" and value == 0:
        value = -1
    kwargs = dict(n_steps=4, report_interval=2, n_runs_per_start=1, n_equilibration=0)
    kwargs[name] = value
    one_line_error(ValueError, rf"{name} must be an integer >= {0 if name == 'n_equilibration' else 1}; got",
                   run_md, aldp, "C5", dynamics=REF, progress=False, **kwargs)


@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
@pytest.mark.parametrize("name", ["n_paths", "steps_per_point", "record_interval"])
def test_path_sampling_counts(aldp, featurizer, name, value):
    kwargs = dict(n_paths=1, steps_per_point=2, record_interval=1)
    kwargs[name] = value
    targets = featurizer.inverse(np.zeros((2, featurizer.n_features)))
    one_line_error(ValueError, rf"{name} must be an integer >= 1; got", sample_paths, aldp, featurizer, targets, 1.0,
                   "C5", dynamics=REF, progress=False, **kwargs)
    # checked before the model and geodesic are touched
    one_line_error(ValueError, rf"{name} must be an integer >= 1; got", sample_molecular_paths, aldp, None, None,
                   dynamics=REF, progress=False, **kwargs)


def test_integral_floats_from_a_command_line_are_counts(aldp):
    assert limits.as_count(1e12, "n") == 10**12 and limits.as_count(np.int64(3), "n") == 3
    md = run_md(aldp, "C5", n_steps=4.0, report_interval=2.0, dynamics=REF, progress=False)
    assert md.trajectory.n_frames == 2 and md.settings["n_steps"] == 4


# ------------------------------------------------------------------ 6. temperatures and curves


def test_restraint_schedule_rejects_bad_temperature_and_curves(featurizer):
    x, lam = np.zeros((3, featurizer.n_features)), np.array([4.0, 0.0, 4.0])
    for kT in (-2.49, 0.0, float("nan"), float("inf")):
        one_line_error(ValueError, r"kT must be finite and > 0 kJ/mol; got .* \(the temperature must be > 0 K\)",
                       restraint_schedule, featurizer, x, lam, kT)
    bad = x.copy()
    bad[1, 0] = np.nan
    one_line_error(ValueError, r"geodesic curve contains NaN/inf at points \[1\]: the geodesic file is corrupt",
                   restraint_schedule, featurizer, bad, lam, 2.49)
    one_line_error(ValueError, r"NaN/inf at points \[2\]", restraint_schedule, featurizer, x, [4.0, 0.0, np.inf], 2.49)
    one_line_error(ValueError, r"overflows \(largest log-SNR 1e\+04\).*smaller lam_end", restraint_schedule,
                   featurizer, x, [4.0, 1e4, 4.0], 2.49)
    one_line_error(ValueError, r"the geodesic was made with another model", restraint_schedule, featurizer, x[:, :5],
                   lam, 2.49)


@pytest.mark.parametrize("temperature", [-300.0, 0.0, float("nan")])
def test_negative_temperatures(aldp, featurizer, temperature):
    one_line_error(ValueError, r"temperature must be finite and > 0 K", alanine_dipeptide, temperature=temperature)
    one_line_error(ValueError, r"Dynamics temperature must be finite and > 0", Dynamics, temperature=temperature)
    targets = featurizer.inverse(np.zeros((2, featurizer.n_features)))
    one_line_error(ValueError, r"stiffness must be finite and >= 0 .*temperature <= 0 K or a corrupt geodesic",
                   sample_paths, aldp, featurizer, targets, [-1.0, 1.0], "C5", 1, 2, dynamics=REF, progress=False)


# ------------------------------------------------------------------ 7. committor


def test_committor_inputs(aldp, path):
    never = lambda x: np.zeros(len(x), bool)  # noqa: E731
    kw = dict(n_shots=1, max_steps=2, check_interval=1, dynamics=REF, progress=False)
    bad = path.xyz[:3].astype(float)
    bad[1, 5] = np.nan
    one_line_error(ValueError, r"NaN/inf values \(frames \[1\]\)", committor, aldp, bad, never, never, **kw)
    one_line_error(ValueError, r"in_A must map positions \(n_frames, n_atoms, 3\) nm to a bool array \(n_frames,\); "
                   r"for one frame it returned shape \(3,\)", committor, aldp, path.xyz[:1],
                   lambda x: np.zeros(3, bool), never, **kw)
    one_line_error(ValueError, r"in_B must return booleans", committor, aldp, path.xyz[:1], never,
                   lambda x: np.full(len(x), 0.5), **kw)
    one_line_error(TypeError, r"in_A and in_B must be callables", committor, aldp, path.xyz[:1], "C5", never, **kw)
    for name in ("n_shots", "max_steps", "check_interval"):
        one_line_error(ValueError, rf"{name} must be an integer >= 1", committor, aldp, path.xyz[:1], never, never,
                       **{**kw, name: float("nan")})
    one_line_error(ValueError, r"confidence must be in \(0, 1\)", committor, aldp, path.xyz[:1], never, never,
                   confidence=1.5, **kw)
    one_line_error(ValueError, r"box_vectors must be finite", committor, aldp, path.xyz[:1], never, never,
                   box_vectors=np.eye(2), **kw)
    res = committor(aldp, path.xyz[:1], never, never, **kw)  # valid input still works
    assert res.n_undecided[0] == 1 and res.n_force_evaluations == 2


# ------------------------------------------------------------------ 8. hand-off


def test_state_xml_inputs(aldp, path, tmp_path):
    bad = path[:]
    bad.xyz = path.xyz.copy()
    bad.xyz[3, 0, 0] = np.nan
    one_line_error(ValueError, r"frames \[3\] of the path have NaN/inf coordinates", handoff.write_state_xml, aldp,
                   bad, [0, 3], tmp_path / "s")
    handoff.write_state_xml(aldp, bad, [0, 4], tmp_path / "ok")  # other frames are fine
    for t in (-1.0, 0.0, float("nan"), float("inf"), "hot"):
        one_line_error(ValueError, r"velocity temperature must be > 0 K, or None for zero velocities",
                       handoff.write_state_xml, aldp, path, [0], tmp_path / "s", temperature=t)
    one_line_error(IndexError, r"frame 10 out of range for 10 frames", handoff.write_state_xml, aldp, path, [10],
                   tmp_path / "s")
    one_line_error(ValueError, r"frames contains duplicates", handoff.write_state_xml, aldp, path, [1, -9],
                   tmp_path / "s")
    one_line_error(ValueError, r"frames must be integer frame indices", handoff.write_state_xml, aldp, path, [1.5],
                   tmp_path / "s")
    (tmp_path / "afile").write_text("x")
    one_line_error(OSError, r"afile is a file, not a directory", handoff.write_state_xml, aldp, path, [0],
                   tmp_path / "afile" / "states")
    one_line_error(ValueError, r"OpenMM platform 'NoSuchPlatform' is not available", handoff.write_state_xml, aldp,
                   path, [0], tmp_path / "s", platform="NoSuchPlatform")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("writer", ["plumed", "images", "frames"])
def test_hand_off_frame_counts(path, tmp_path, writer):
    def call(n, **kw):
        if writer == "plumed":
            return handoff.write_plumed_path(path, tmp_path / "plumed", n_frames=n, **kw)
        if writer == "images":
            return handoff.write_string_images(path, tmp_path / "images.pdb", n, **kw)
        return handoff.equally_spaced_frames(path, n, interpolate=False, **kw)

    name = "n_images" if writer == "images" else "n_frames"
    one_line_error(ValueError, r"asked for 100000 frames but the path has only 10; use at most 10", call, 100000)
    one_line_error(ValueError, r"asked for 11 frames but the path has only 10", call, 11)
    for n in (1, 0, -3, float("nan"), 2.5):
        one_line_error(ValueError, rf"{name} must be an integer >= 2; got", call, n)
    for smooth in (0, -4, 1e5, 2.5, 11):
        one_line_error(ValueError, r"smooth \(running-mean window, frames\) must be an integer in \[1, 10\]; got .* "
                       r"\(the path has 10 frames; 1 = no smoothing\)", call, 4, smooth=smooth)
    bad = path[:]
    bad.xyz = path.xyz.copy()
    bad.xyz[[2, 7]] = np.inf
    with_nan = {"plumed": lambda: handoff.write_plumed_path(bad, tmp_path / "p2", 4),
                "images": lambda: handoff.write_string_images(bad, tmp_path / "i2.pdb", 4),
                "frames": lambda: handoff.equally_spaced_frames(bad, 4)}[writer]
    one_line_error(ValueError, r"NaN/inf coordinates \(frames \[2, 7\]\); drop those frames", with_nan)
    assert not (tmp_path / "plumed").exists() and not (tmp_path / "images.pdb").exists()
    out = call(10, smooth=10)  # the limits themselves are valid
    assert (out.n_frames if writer == "frames" else out["n_frames"] if writer == "plumed" else
            mdtraj.load(str(out["images"])).n_frames) == 10


def test_plumed_lambda_stays_sane_and_outputs_checked(path, tmp_path):
    res = handoff.write_plumed_path(path, tmp_path / "p", n_frames=10)
    assert res["lambda"] < 1e4  # the fuzz got 2.3e11 from 100000 frames of a 256-frame path
    (tmp_path / "afile").write_text("x")
    one_line_error(OSError, r"cannot write the PLUMED files to .*afile is a file", handoff.write_plumed_path, path,
                   tmp_path / "afile" / "p", 4)
    (tmp_path / "imgs.pdb").mkdir()
    one_line_error(OSError, r"it is a directory", handoff.write_string_images, path, tmp_path / "imgs.pdb", 4)
    one_line_error(ValueError, r"label must be a PLUMED label", handoff.write_plumed_path, path, tmp_path / "q", 4,
                   label="a b")
    one_line_error(ValueError, r"print_stride must be an integer >= 1", handoff.write_plumed_path, path,
                   tmp_path / "q", 4, print_stride=0)


def test_interpolated_frames_still_densify_but_not_absurdly(path, monkeypatch):
    assert handoff.equally_spaced_frames(path, 25).n_frames == 25  # interpolation may add frames
    monkeypatch.setattr(limits, "available_memory", lambda: 2**30)
    one_line_error(ValueError, r"would record .* GiB of frames .* but only 1 GiB are available; ask for fewer frames",
                   handoff.equally_spaced_frames, path, 10**8)


# ------------------------------------------------------------------ 9. structures


@pytest.fixture(scope="module")
def pdb_text(aldp) -> str:
    return Path(aldp.info["source"]).read_text()


@pytest.mark.parametrize("damage,pattern", [
    (lambda t: t[: len(t) * 3 // 10], r"cannot read .*bad\.pdb \(ValueError: .*\); the file is truncated, "
                                      r"malformed or of another format: re-copy or regenerate it"),
    (lambda t: t[: len(t) * 8 // 10], r"cannot parametrise bad\.pdb .*check that the file is complete"),
    (lambda t: t.replace("ATOM  ", "ATOM  x", 3), r"cannot read .*bad\.pdb \(.*Misaligned.*\); the file"),
    (lambda t: "", r"pdb file .*bad\.pdb is empty; re-copy or regenerate it"),
    (lambda t: "REMARK nothing here\nEND\n", r"bad\.pdb .*re-copy or regenerate it"),
    (lambda t: "\x00\xff" * 500, r"bad\.pdb"),
], ids=["cut30", "cut80", "misaligned", "empty", "no_atoms", "binary"])
def test_malformed_pdb(tmp_path, pdb_text, damage, pattern):
    (tmp_path / "bad.pdb").write_text(damage(pdb_text), errors="surrogateescape")
    one_line_error(ValueError, pattern, MolecularSystem.from_pdb, tmp_path / "bad.pdb")


def test_system_constructors_check_positions(aldp):
    pos = aldp.positions.copy()
    pos[4, 1] = np.nan
    one_line_error(ValueError, r"reference positions contain NaN/inf values \(frames \[0\]\)", MolecularSystem,
                   aldp.topology, aldp.openmm_system, pos)
    one_line_error(ValueError, r"positions of state 'X' contain NaN/inf", MolecularSystem.from_openmm, aldp.topology,
                   aldp.openmm_system, aldp.positions, state_positions={"X": pos})
    one_line_error(TypeError, r"system must be an openmm\.System", MolecularSystem, aldp.topology, "sys", pos)


# ------------------------------------------------------------------ 10. OpenMM exceptions


def test_openmm_exceptions_become_one_line_errors(aldp, monkeypatch):
    def nan_step(self, n):
        raise openmm.OpenMMException("Particle coordinate is NaN.  For more information, see\nhttps://openmm.org")

    monkeypatch.setattr(openmm.LangevinMiddleIntegrator, "step", nan_step)
    one_line_error(RuntimeError, r"OpenMM failed while running MD \(seed \d+, after 0 steps\) \(Particle coordinate is "
                   r"NaN.*\); the simulation blew up: reduce the time step", run_md, aldp, "C5", n_steps=2,
                   report_interval=1, dynamics=REF, progress=False)
    monkeypatch.undo()

    class NoDevice:
        def __init__(self, *args, **kwargs):
            raise openmm.OpenMMException("Error initializing CUDA: CUDA_ERROR_NO_DEVICE (100) at cuda.cpp:100")

    monkeypatch.setattr(openmm, "Context", NoDevice)
    one_line_error(RuntimeError, r"OpenMM failed while creating a context on the Reference platform .*CUDA_ERROR_NO_"
                   r"DEVICE.*choose another OpenMM platform", aldp.make_context)
    one_line_error(RuntimeError, r"starting MD .*choose another OpenMM platform", run_md, aldp, "C5", n_steps=2,
                   report_interval=1, dynamics=REF, progress=False)
    never = lambda x: np.zeros(len(x), bool)  # noqa: E731
    one_line_error(RuntimeError, r"creating the committor context", committor, aldp, aldp.positions, never, never,
                   n_shots=1, max_steps=1, dynamics=REF, progress=False)
    monkeypatch.undo()
    one_line_error(ValueError, r"OpenMM platform 'NoSuchPlatform' is not available", committor, aldp.openmm_system,
                   aldp.positions, never, never, dynamics=Dynamics(temperature=300, timestep=0.001,
                                                                   platform="NoSuchPlatform"), progress=False)


# ------------------------------------------------------------------ hypothesis: corrupt files


@pytest.fixture(scope="module")
def small_files(aldp, tmp_path_factory):
    """A 4-frame DCD and HDF5 written by write_trajectory, their clean reads and their layouts."""
    d = tmp_path_factory.mktemp("corrupt")
    rng = np.random.default_rng(3)
    t = aldp.to_trajectory(aldp.positions[None] + 0.02 * rng.normal(size=(4, aldp.n_atoms, 3)))
    files = {}
    for ext in (".dcd", ".h5"):
        p = write_trajectory(t, d / f"small{ext}")
        files[ext] = dict(raw=p.read_bytes(), clean=load_trajectory(p, top=aldp).xyz)
    n = aldp.n_atoms  # DCD without unit cell: header, then per frame 3 records (4 + 4n + 4 bytes)
    header = len(files[".dcd"]["raw"]) - 4 * 3 * (8 + 4 * n)
    files[".dcd"]["payload"] = [(header + f * 3 * (8 + 4 * n) + a * (8 + 4 * n) + 4,
                                 header + f * 3 * (8 + 4 * n) + a * (8 + 4 * n) + 4 + 4 * n)
                                for f in range(4) for a in range(3)]
    with tables.open_file(str(d / "small.h5")) as h5:
        chunks = [h5.root.coordinates.chunk_info((0, 0, 0)), h5.root.time.chunk_info((0,))]
        top_size = h5.root.topology.dtype.itemsize
    raw = files[".h5"]["raw"]
    top = raw.find(b'{"chains"')
    # data ranges only: HDF5 metadata (object headers, B-trees) carries no checksum in mdtraj's files, and a
    # flipped byte there can crash libhdf5 itself (in C) or change the datatype; truncations cover all of it
    files[".h5"]["data"] = [(c.offset, c.offset + c.size) for c in chunks] + [(top, top + top_size)]
    return d, files


def _load_corrupt(aldp, d: Path, ext: str, data: bytes, clean: np.ndarray) -> np.ndarray | None:
    """Load the corrupt file: None when refused (one-line ValueError/OSError), else the frames read."""
    p = d / f"corrupt{ext}"
    p.write_bytes(data)
    try:
        return load_trajectory(p, top=aldp).xyz
    except (ValueError, OSError) as exc:
        assert "\n" not in str(exc).strip(), repr(str(exc))
        return None


CORRUPT = settings(max_examples=30, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])


@CORRUPT
@given(ext=st.sampled_from([".dcd", ".h5"]), fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_never_load_short(aldp, small_files, ext, fraction):
    d, files = small_files
    raw = files[ext]["raw"]
    xyz = _load_corrupt(aldp, d, ext, raw[: int(fraction * len(raw))], files[ext]["clean"])
    assert xyz is None or np.array_equal(xyz, files[ext]["clean"])


@CORRUPT
@given(data=st.data())
def test_flipped_dcd_bytes(aldp, small_files, data):
    d, files = small_files
    f = files[".dcd"]
    pos = data.draw(st.integers(0, len(f["raw"]) - 1))
    mask = data.draw(st.integers(1, 255))
    raw = bytearray(f["raw"])
    raw[pos] ^= mask
    xyz = _load_corrupt(aldp, d, ".dcd", bytes(raw), f["clean"])
    if xyz is None:
        return
    assert xyz.shape == f["clean"].shape  # never silently fewer frames
    if not any(lo <= pos < hi for lo, hi in f["payload"]):  # DCD has no checksum: a flipped coordinate is a value
        np.testing.assert_array_equal(xyz, f["clean"])


@CORRUPT
@given(data=st.data())
def test_flipped_hdf5_data_bytes(aldp, small_files, data):
    d, files = small_files
    f = files[".h5"]
    lo, hi = data.draw(st.sampled_from(f["data"]))
    pos = data.draw(st.integers(lo, hi - 1))
    raw = bytearray(f["raw"])
    raw[pos] ^= data.draw(st.integers(1, 255))
    xyz = _load_corrupt(aldp, d, ".h5", bytes(raw), f["clean"])
    assert xyz is None or np.array_equal(xyz, f["clean"])
