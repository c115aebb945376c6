"""File hashes for manifests: ``sha256`` of the bytes, and ``content_sha256`` of what a file holds.

Trajectory writers stamp dates into their files (DCD remarks, HDF5 and PDB headers), so two runs
with the same seed give different bytes for the same coordinates. ``content_sha256`` hashes the
content instead: coordinates, box and time of a trajectory; tensors of a checkpoint; arrays of an
``.npz`` and values of a ``.json`` file (timings left out). Equal content hashes mean equal results
(``tps-diffusion verify`` compares them).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["sha256", "content_sha256"]

#: suffixes whose content hash is taken from the trajectory data
TRAJECTORY_SUFFIXES = (".dcd", ".xtc", ".h5", ".pdb")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _update(h, *arrays) -> None:
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())


def _trajectory(path: Path, h) -> None:
    import mdtraj

    suffix = path.suffix.lower()
    if suffix == ".dcd":
        with mdtraj.formats.DCDTrajectoryFile(str(path)) as fh:
            xyz, lengths, angles = fh.read()
        _update(h, xyz, lengths, angles)
    elif suffix == ".xtc":
        with mdtraj.formats.XTCTrajectoryFile(str(path)) as fh:
            xyz, time, step, box = fh.read()
        _update(h, xyz, time, step, box)
    else:
        traj = mdtraj.load(str(path))
        _update(h, traj.xyz, traj.unitcell_vectors, traj.time)
        h.update(str([(a.name, a.residue.name, a.residue.resSeq) for a in traj.topology.atoms]).encode())


def _checkpoint(path: Path, h) -> None:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    for key in ("ema_state", "model_state"):
        for name, tensor in sorted((ckpt.get(key) or {}).items()):
            h.update(f"{key}.{name}".encode())
            _update(h, tensor.numpy())
    h.update(str(ckpt.get("step")).encode())


#: ``.npz`` entries and JSON keys that record how long something took, not what it computed
TIMING_KEYS = ("seconds", "wall_time_s")


def _npz(path: Path, h) -> None:
    with np.load(path, allow_pickle=False) as z:
        for name in sorted(z.files):
            if name in TIMING_KEYS:
                continue
            h.update(name.encode())
            _update(h, z[name])


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _json(path: Path, h) -> None:
    h.update(json.dumps(_without_timings(json.loads(path.read_text())), sort_keys=True).encode())


def content_sha256(path: str | os.PathLike) -> str | None:
    """sha256 of the content of a trajectory, checkpoint (``.pt``), ``.npz`` or ``.json`` file; None for other
    files (their ``sha256`` is the content hash) or a file that cannot be read as its suffix says."""
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {**{s: _trajectory for s in TRAJECTORY_SUFFIXES}, ".pt": _checkpoint, ".npz": _npz, ".json": _json}
    if suffix not in readers:
        return None
    h = hashlib.sha256()
    try:
        readers[suffix](path, h)
    except Exception:  # noqa: BLE001 - the byte hash still identifies the file; no content hash then
        return None
    return h.hexdigest()
