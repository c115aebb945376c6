"""Hand-off of transition paths to enhanced-sampling and path-sampling tools.

Everything here takes an :class:`mdtraj.Trajectory` (full topology, positions in nm) and writes
files that other programs read:

* :func:`equally_spaced_frames` -- frames equally spaced in RMSD along the path;
* :func:`write_plumed_path` -- a PLUMED ``PATHMSD`` reference PDB plus a ``plumed.dat`` snippet;
* :func:`write_string_images` -- string-method / NEB images (PDB, DCD, XTC or HDF5);
* :func:`write_state_xml` -- OpenMM ``State`` XML files for ``Simulation.loadState``;
* :func:`to_openpathsampling` -- an initial trajectory (and engine) for OpenPathSampling.

Units at the API: nm, ps, kelvin, kJ/mol. The PLUMED PDB is the one exception, because PLUMED's
PDB reader expects Angstrom (it multiplies by 0.1 to get its internal nm).

Every file goes through :mod:`tps_diffusion.io`: written to a temporary file and renamed into
place, and an existing file is only replaced with ``overwrite=True``.
"""

from __future__ import annotations

import os
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import mdtraj
import numpy as np

from .io import atomic_path, check_writable, write_text

__all__ = [
    "LAMBDA_FACTOR",
    "consecutive_rmsd",
    "equally_spaced_frames",
    "write_plumed_path",
    "write_string_images",
    "write_state_xml",
    "to_openpathsampling",
    "OPSHandoff",
]

#: PATHMSD smoothing rule of the PLUMED documentation/tutorials: LAMBDA = 2.3 / <MSD between
#: consecutive reference frames>, so that exp(-LAMBDA * MSD) of the neighbouring frame is ~0.1.
LAMBDA_FACTOR = 2.3


# --------------------------------------------------------------------------------------------
# optimal superposition (Kabsch), float64, batched
# --------------------------------------------------------------------------------------------


def _atom_indices(traj: mdtraj.Trajectory, atom_indices) -> np.ndarray:
    if atom_indices is None:
        return np.arange(traj.n_atoms)
    idx = np.asarray(atom_indices, dtype=int).ravel()
    if idx.size == 0:
        raise ValueError("atom_indices is empty")
    if idx.min() < 0 or idx.max() >= traj.n_atoms:
        raise ValueError(f"atom_indices out of range for a trajectory with {traj.n_atoms} atoms")
    if np.unique(idx).size != idx.size:
        raise ValueError("atom_indices contains duplicates")
    return idx


def _pair_msd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean-square deviation after optimal superposition, for stacks (k, n, 3) of pairs."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    h = np.einsum("kni,knj->kij", a, b)
    u, s, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    s[:, 2] *= np.where(d == 0, 1.0, d)
    msd = (np.sum(a * a, axis=(1, 2)) + np.sum(b * b, axis=(1, 2)) - 2.0 * s.sum(axis=1)) / a.shape[1]
    return np.maximum(msd, 0.0)


def _superpose(mobile: np.ndarray, target: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rigidly move all atoms of ``mobile`` (n, 3) so that ``mobile[idx]`` best fits ``target[idx]``."""
    p, q = mobile[idx], target[idx]
    pc, qc = p.mean(axis=0), q.mean(axis=0)
    u, _, vt = np.linalg.svd((p - pc).T @ (q - qc))
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rot = u @ np.diag([1.0, 1.0, d]) @ vt  # row vectors: x_aligned = (x - pc) @ rot + qc
    return (mobile - pc) @ rot + qc


def consecutive_rmsd(traj: mdtraj.Trajectory, atom_indices=None) -> np.ndarray:
    """RMSD (nm) between frames k and k+1 after optimal superposition on ``atom_indices``."""
    idx = _atom_indices(traj, atom_indices)
    x = traj.xyz[:, idx].astype(np.float64)
    if len(x) < 2:
        return np.zeros(0)
    return np.sqrt(_pair_msd(x[:-1], x[1:]))


# --------------------------------------------------------------------------------------------
# equal spacing
# --------------------------------------------------------------------------------------------


def _chain_aligned(traj: mdtraj.Trajectory, idx: np.ndarray) -> np.ndarray:
    """All frames (float64), each superposed onto the previous (already aligned) one."""
    x = traj.xyz.astype(np.float64)
    out = np.empty_like(x)
    out[0] = x[0]
    for k in range(1, len(x)):
        out[k] = _superpose(x[k], out[k - 1], idx)
    return out


def _running_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` frames (shrinking at the ends), endpoints kept."""
    half = window // 2
    c = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)])
    k = np.arange(len(x))
    lo, hi = np.maximum(k - half, 0), np.minimum(k + half + 1, len(x))
    out = (c[hi] - c[lo]) / (hi - lo)[:, None, None]
    out[0], out[-1] = x[0], x[-1]
    return out


def _on_polyline(x: np.ndarray, s: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Points at arc length ``sigma`` on the piecewise-linear curve through ``x`` (knots at ``s``)."""
    k = np.clip(np.searchsorted(s, sigma, side="right") - 1, 0, len(s) - 2)
    seg = s[k + 1] - s[k]
    t = np.divide(sigma - s[k], seg, out=np.zeros_like(sigma), where=seg > 0)
    t = np.clip(t, 0.0, 1.0)[:, None, None]
    return (1.0 - t) * x[k] + t * x[k + 1]


def equally_spaced_frames(
    traj: mdtraj.Trajectory,
    n_frames: int,
    atom_indices=None,
    *,
    interpolate: bool = True,
    rtol: float = 1e-4,
    max_iter: int = 100,
    smooth: int = 1,
) -> mdtraj.Trajectory:
    """``n_frames`` frames equally spaced in RMSD along the path ``traj``.

    The path is first made rotation/translation free: every frame is superposed onto the previous
    one (optimal Kabsch fit on ``atom_indices``; all atoms are moved), so the result lies in the
    frame of reference of ``traj[0]``. The arc length is the cumulative RMSD between consecutive
    frames (on ``atom_indices``, default all atoms).

    ``interpolate=True`` (default): frames are **interpolated** linearly (all atoms, Cartesian)
    between the two bracketing aligned input frames. Their positions start at equal arc length and
    are then refined (fixed-point iteration, at most ``max_iter`` steps, to relative spread
    ``rtol``) until the RMSDs between *consecutive output frames* are equal -- which is what
    PLUMED's ``PATHMSD`` and the string method want. First and last frames are the path's
    endpoints. Interpolated frames are not MD configurations (bond lengths are slightly off where
    the input path is coarse).

    ``interpolate=False``: the input frame nearest to each equal-arc-length target is **picked**
    (unaligned, exactly as in ``traj``); spacing is then only as even as the input allows.

    ``smooth > 1``: the aligned path is first averaged over a centred window of that many frames
    (endpoints kept). Use it for raw thermal paths, whose arc length is otherwise dominated by
    fluctuations that fold the path back on itself.
    """
    n_frames = int(n_frames)
    if n_frames < 2:
        raise ValueError("n_frames must be at least 2")
    if traj.n_frames < 2:
        raise ValueError("the path needs at least 2 frames")
    idx = _atom_indices(traj, atom_indices)
    x = _chain_aligned(traj, idx)
    if smooth > 1:
        x = _running_mean(x, int(smooth))
    seg = np.sqrt(_pair_msd(x[:-1, idx], x[1:, idx]))
    s = np.concatenate([[0.0], np.cumsum(seg)])
    length = s[-1]
    if not length > 0:
        raise ValueError("the path has zero RMSD length (all frames identical)")
    sigma = np.linspace(0.0, length, n_frames)

    if not interpolate:
        picks = np.abs(s[None, :] - sigma[:, None]).argmin(axis=1)
        return traj[picks]

    for _ in range(max_iter):
        y = _on_polyline(x, s, sigma)
        chord = np.sqrt(_pair_msd(y[:-1, idx], y[1:, idx]))
        if chord.max() - chord.min() <= rtol * chord.mean():
            break
        c = np.concatenate([[0.0], np.cumsum(chord)])
        sigma = np.interp(np.linspace(0.0, c[-1], n_frames), c, sigma)
        sigma[0], sigma[-1] = 0.0, length
    else:
        y = _on_polyline(x, s, sigma)
        chord = np.sqrt(_pair_msd(y[:-1, idx], y[1:, idx]))
        warnings.warn(
            f"equal RMSD spacing not reached in {max_iter} iterations: consecutive RMSD spread "
            f"{(chord.max() - chord.min()) / chord.mean():.2%} of the mean (path folds back on itself?)",
            RuntimeWarning,
            stacklevel=2,
        )

    time = np.interp(sigma, s, traj.time) if traj.time is not None else None
    out = mdtraj.Trajectory(y.astype(np.float32), traj.topology, time=time)
    if traj.unitcell_vectors is not None:
        out.unitcell_vectors = np.repeat(traj.unitcell_vectors[:1], n_frames, axis=0)
    return out


# --------------------------------------------------------------------------------------------
# PLUMED PATHMSD
# --------------------------------------------------------------------------------------------

_H36_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _serial(n: int) -> str:
    """5-character PDB atom serial; hybrid-36 (which PLUMED decodes) beyond 99999."""
    if n < 100000:
        return f"{n:5d}"
    v = n - 100000 + 10 * 36**4
    if v >= 36**5:
        raise ValueError(f"atom serial {n} too large for a PDB file")
    digits = ""
    for _ in range(5):
        v, r = divmod(v, 36)
        digits = _H36_DIGITS[r] + digits
    return digits


def _atom_name(atom) -> str:
    name = atom.name[:4]
    element = atom.element.symbol if atom.element is not None else ""
    if len(name) < 4 and len(element) == 1:
        return f" {name:<3s}"
    return f"{name:<4s}"


def _plumed_pdb_text(frames: mdtraj.Trajectory, idx: np.ndarray, align_w: float, disp_w: float) -> str:
    """Multi-frame PDB in PLUMED's format: Angstrom, occupancy = align, beta = displace, END."""
    atoms = [frames.topology.atom(int(i)) for i in idx]
    chains = {}
    for c in frames.topology.chains:
        cid = getattr(c, "chain_id", None)
        chains[c.index] = (cid or "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[c.index % 26])[:1]
    xyz = frames.xyz[:, idx].astype(np.float64) * 10.0  # nm -> Angstrom
    if np.abs(xyz).max() >= 1000.0:
        raise ValueError("coordinates beyond the PDB format's range (|x| >= 1000 Angstrom)")
    lines = []
    for f in range(frames.n_frames):
        for j, (i, a) in enumerate(zip(idx, atoms)):
            res = a.residue
            el = a.element.symbol if a.element is not None else ""
            x, y, z = xyz[f, j]
            lines.append(
                f"ATOM  {_serial(int(i) + 1)} {_atom_name(a)} {res.name[:3]:>3s} "
                f"{chains[res.chain.index]}{res.resSeq % 10000:4d}    "
                f"{x:8.3f}{y:8.3f}{z:8.3f}{align_w:6.2f}{disp_w:6.2f}          {el:>2s}"
            )
        lines.append("END")
    return "\n".join(lines) + "\n"


def write_plumed_path(
    traj: mdtraj.Trajectory,
    directory: str | os.PathLike,
    n_frames: int = 20,
    atom_indices=None,
    overwrite: bool = False,
    *,
    pdb_name: str = "path_msd.pdb",
    plumed_name: str = "plumed.dat",
    label: str = "p",
    print_stride: int = 100,
    colvar_file: str = "COLVAR",
    smooth: int = 1,
) -> dict[str, Any]:
    """Write a PLUMED ``PATHMSD`` reference (``pdb_name``) and input snippet (``plumed_name``).

    Reference PDB: ``n_frames`` frames from :func:`equally_spaced_frames` (interpolated, equal
    RMSD between neighbours), only the atoms ``atom_indices`` (default all), each frame closed by
    ``END``. Coordinates are in **Angstrom** (PLUMED's PDB reader multiplies by 0.1 to get nm).
    Atom serials are the 1-based indices in the full topology, i.e. they must match the MD
    engine's atom numbering. Occupancy (alignment weight) and beta (displacement weight) are 1.00
    for every atom, so PATHMSD aligns and measures on the same atoms with equal weights.

    LAMBDA: PATHMSD evaluates ``exp(-LAMBDA * MSD)`` with MSD the mean-square deviation after
    optimal alignment in PLUMED's internal unit nm^2. Following the PLUMED documentation
    ``LAMBDA = 2.3 / <MSD between consecutive reference frames>`` in **nm^-2** (divide by 100 if
    the PLUMED input sets ``UNITS LENGTH=A``).

    ``plumed.dat`` refers to the PDB by its bare file name: run PLUMED in ``directory`` or edit
    the path. Both files are written atomically; if either exists and ``overwrite`` is False,
    nothing is written.

    Returns ``{"pdb": Path, "plumed": Path, "lambda": float (nm^-2), "msd": array (nm^2, between
    consecutive frames), "mean_msd": float (nm^2), "n_frames": int, "atom_indices": array}``.
    ``smooth``: running-mean window (frames) for raw thermal paths, see :func:`equally_spaced_frames`.
    """
    directory = Path(directory)
    pdb_path = check_writable(directory / pdb_name, overwrite)
    dat_path = check_writable(directory / plumed_name, overwrite)
    idx = _atom_indices(traj, atom_indices)
    frames = equally_spaced_frames(traj, n_frames, idx, smooth=smooth)
    pdb_text = _plumed_pdb_text(frames, idx, 1.0, 1.0)

    msd = _pair_msd(frames.xyz[:-1, idx].astype(np.float64), frames.xyz[1:, idx].astype(np.float64))
    mean_msd = float(msd.mean())
    lam = LAMBDA_FACTOR / mean_msd
    dat_text = (
        "# PATHMSD path collective variable, written by tps_diffusion.pathcv.write_plumed_path\n"
        f"# reference {pdb_name}: {n_frames} frames x {idx.size} atoms, Angstrom, equal RMSD spacing;\n"
        "#   atom serials = 1-based atom indices of the MD topology; occupancy = alignment weight,\n"
        "#   beta = displacement weight (all 1.00).\n"
        f"# LAMBDA = {LAMBDA_FACTOR} / <MSD between consecutive frames> = {LAMBDA_FACTOR} / {mean_msd:.6g} nm^2\n"
        f"#        = {lam:.6g} nm^-2 (consecutive RMSD {np.sqrt(mean_msd):.6g} nm); with UNITS LENGTH=A use {lam / 100:.6g}.\n"
        f"# sss runs from 1 (first frame) to {n_frames} (last frame); zzz is in nm^2.\n"
        f"{label}: PATHMSD REFERENCE={pdb_name} LAMBDA={lam:.8g}\n"
        f"PRINT ARG={label}.sss,{label}.zzz STRIDE={int(print_stride)} FILE={colvar_file}\n"
    )
    with ExitStack() as stack:
        tmp_pdb = stack.enter_context(atomic_path(pdb_path, overwrite))
        tmp_dat = stack.enter_context(atomic_path(dat_path, overwrite))
        tmp_pdb.write_text(pdb_text)
        tmp_dat.write_text(dat_text)
    return {
        "pdb": pdb_path,
        "plumed": dat_path,
        "lambda": lam,
        "msd": msd,
        "mean_msd": mean_msd,
        "n_frames": n_frames,
        "atom_indices": idx,
    }


# --------------------------------------------------------------------------------------------
# string / NEB images
# --------------------------------------------------------------------------------------------

_NEEDS_TOPOLOGY = {".dcd", ".xtc", ".trr", ".nc"}


def write_string_images(
    traj: mdtraj.Trajectory,
    path: str | os.PathLike,
    n_images: int,
    overwrite: bool = False,
    *,
    atom_indices=None,
    smooth: int = 1,
) -> dict[str, Path | None]:
    """Write ``n_images`` images equally spaced in RMSD (see :func:`equally_spaced_frames`).

    The format follows the suffix of ``path``: ``.pdb`` (multi-model), ``.h5`` (with topology), or
    ``.dcd``/``.xtc``/``.trr``/``.nc`` plus a topology PDB (first image) next to it, named
    ``<stem>_top.pdb``. Returns ``{"images": Path, "topology": Path or None}``.
    ``smooth``: running-mean window (frames), see :func:`equally_spaced_frames`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _NEEDS_TOPOLOGY | {".pdb", ".h5"}:
        raise ValueError(f"unsupported image format {suffix!r}: use .pdb, .h5, .dcd, .xtc, .trr or .nc")
    top_path = path.with_name(path.stem + "_top.pdb") if suffix in _NEEDS_TOPOLOGY else None
    check_writable(path, overwrite)
    if top_path is not None:
        check_writable(top_path, overwrite)
    images = equally_spaced_frames(traj, n_images, atom_indices, smooth=smooth)
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(path, overwrite))
        images.save(str(tmp))
        if top_path is not None:
            tmp_top = stack.enter_context(atomic_path(top_path, overwrite))
            images[0].save_pdb(str(tmp_top))
    return {"images": path, "topology": top_path}


# --------------------------------------------------------------------------------------------
# OpenMM states
# --------------------------------------------------------------------------------------------


def _seeds(seed, n: int) -> list[int]:
    """n OpenMM-compatible (non-zero 31-bit) seeds from one seed (None: fresh entropy)."""
    raw = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    return [int(v % (2**31 - 2)) + 1 for v in raw]


def write_state_xml(
    system,
    traj: mdtraj.Trajectory,
    frames: Sequence[int],
    directory: str | os.PathLike,
    temperature: float | None = None,
    overwrite: bool = False,
    *,
    seed: int | None = None,
    prefix: str = "state",
    platform: str = "Reference",
) -> list[Path]:
    """One OpenMM ``State`` XML per frame index in ``frames`` (``<prefix>_<frame:05d>.xml``).

    Each state holds the frame's positions (nm, as in ``traj``; constraints are *not* applied),
    the box of the frame if ``traj`` has one, time (ps), the context's global parameters and
    velocities: drawn from Maxwell-Boltzmann at ``temperature`` (K; via
    ``Context.setVelocitiesToTemperature``, reproducible with ``seed``; on-step velocities, not
    shifted by half a leapfrog step) or zero when ``temperature`` is None. Serialised with ``openmm.XmlSerializer``; load with
    ``simulation.loadState(path)`` or ``context.setState(XmlSerializer.deserialize(text))``.
    Nothing is written if any target exists and ``overwrite`` is False; on an error the files
    already written by this call are removed.
    """
    import openmm
    from openmm import unit

    if system.getNumParticles() != traj.n_atoms:
        raise ValueError(f"system has {system.getNumParticles()} particles, trajectory {traj.n_atoms} atoms")
    frames = [int(f) for f in np.atleast_1d(frames)]
    for f in frames:
        if not -traj.n_frames <= f < traj.n_frames:
            raise IndexError(f"frame {f} out of range for {traj.n_frames} frames")
    directory = Path(directory)
    paths = [directory / f"{prefix}_{f % traj.n_frames:05d}.xml" for f in frames]
    if len(set(paths)) != len(paths):
        raise ValueError("frames contains duplicates")
    for p in paths:
        check_writable(p, overwrite)

    seeds = _seeds(seed, len(frames))
    # A CustomIntegrator has no velocity time offset: setVelocitiesToTemperature then stores plain
    # Maxwell-Boltzmann velocities. A leapfrog integrator (Verlet, LangevinMiddle) would shift them
    # by -dt/2 F/m, which is huge on strained (e.g. interpolated) frames.
    integrator = openmm.CustomIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    zeros = np.zeros((traj.n_atoms, 3))
    written: list[Path] = []
    try:
        for f, p, s in zip(frames, paths, seeds):
            if traj.unitcell_vectors is not None:
                a, b, c = (openmm.Vec3(*v) * unit.nanometer for v in traj.unitcell_vectors[f].astype(float))
                context.setPeriodicBoxVectors(a, b, c)
            context.setPositions(traj.xyz[f].astype(np.float64) * unit.nanometer)
            if traj.time is not None:
                context.setTime(float(traj.time[f]) * unit.picosecond)
            if temperature is not None:
                context.setVelocitiesToTemperature(float(temperature) * unit.kelvin, s)
            else:
                context.setVelocities(zeros * unit.nanometer / unit.picosecond)
            state = context.getState(getPositions=True, getVelocities=True, getEnergy=True, getParameters=True)
            write_text(p, openmm.XmlSerializer.serialize(state), overwrite)
            written.append(p)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    finally:
        del context, integrator
    return paths


# --------------------------------------------------------------------------------------------
# OpenPathSampling
# --------------------------------------------------------------------------------------------


class OPSHandoff(NamedTuple):
    """What :func:`to_openpathsampling` returns."""

    trajectory: Any  #: ``openpathsampling.Trajectory``
    engine: Any  #: ``openpathsampling.engines.openmm.Engine`` or None (no system given)


OPS_INSTALL = "pip install openpathsampling"


def to_openpathsampling(
    traj: mdtraj.Trajectory,
    system=None,
    *,
    temperature: float = 300.0,
    timestep: float = 0.002,
    friction: float = 1.0,
    n_steps_per_frame: int = 10,
    n_frames_max: int = 5000,
    velocities: np.ndarray | None = None,
    platform: str | None = None,
) -> OPSHandoff:
    """Initial trajectory for OpenPathSampling (e.g. two-way shooting), and an OpenMM engine.

    ``traj`` becomes an ``openpathsampling.Trajectory`` (positions nm; ``velocities`` (n_frames,
    n_atoms, 3) nm/ps, or zero -- two-way shooting redraws them anyway). With ``system`` an
    ``openpathsampling.engines.openmm.Engine`` is built too: Langevin (``LangevinMiddleIntegrator``,
    ``temperature`` K, ``friction`` 1/ps, ``timestep`` ps), one saved frame every
    ``n_steps_per_frame`` steps, at most ``n_frames_max`` frames per trajectory; ``platform``
    (name) initialises it, else OPS picks the fastest platform lazily. The input path should be
    a reactive trajectory saved at the same ``n_steps_per_frame * timestep`` spacing for a
    correct path ensemble; an interpolated geodesic path is only a starting point to decorrelate.

    Needs ``openpathsampling`` (optional; else ImportError naming ``pip install
    openpathsampling``). Note: openpathsampling 1.7.0 declares ``numpy<2`` and a plain install
    downgrades numpy; the calls used here work with numpy 2.
    """
    try:
        import openpathsampling  # noqa: F401
        from openpathsampling.engines import openmm as ops_openmm
        from openpathsampling.engines.topology import MDTrajTopology
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"to_openpathsampling needs openpathsampling: {OPS_INSTALL}") from exc

    trajectory = ops_openmm.trajectory_from_mdtraj(traj, velocities=velocities)
    engine = None
    if system is not None:
        import openmm
        from openmm import unit

        integrator = openmm.LangevinMiddleIntegrator(
            temperature * unit.kelvin, friction / unit.picosecond, timestep * unit.picosecond
        )
        engine = ops_openmm.Engine(
            MDTrajTopology(traj.topology),
            system,
            integrator,
            options={"n_steps_per_frame": int(n_steps_per_frame), "n_frames_max": int(n_frames_max)},
        )
        if platform is not None:
            engine.initialize(platform)
    return OPSHandoff(trajectory, engine)
