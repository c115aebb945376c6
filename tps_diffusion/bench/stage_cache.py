"""A benchmark's expensive first stages kept on disk: MD data, model and geodesic (``bench ... --cache DIR``).

A benchmark that is rerun to try a different path stage (restraint settings, more paths) need not
repeat the basin MD and the training. :class:`StageCache` keeps them in ``DIR/<key>/``, where the
key is a hash of everything that shaped them (the benchmark, the recipe fields of those stages, the
seed, the torch device type and the library versions); a run with other settings gets another
entry, so a cached stage is only ever reused for the settings that made it. An entry is written
into a temporary directory and renamed in one step when complete, so a crash leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mdtraj
import numpy as np

from ..molecular.geodesic import MolecularGeodesic
from ..molecular.md import MDResult
from ..molecular.model import MolecularModel
from ..molecular.system import MolecularSystem
from ..utils.provenance import versions

__all__ = ["CachedStages", "StageCache"]

_MD_H5, _MD_NPZ, _INFO, _MODEL, _GEODESIC = "md.h5", "md.npz", "stages.json", "model.pt", "geodesic.npz"


@dataclass
class CachedStages:
    """What one cache entry holds: the MD data, the model, the geodesic and the seconds each stage took
    when it was made (``seconds``: ``md``, ``training``, ``geodesic``)."""

    md: MDResult
    model: MolecularModel
    geodesic: MolecularGeodesic
    seconds: dict[str, float]


class StageCache:
    """The cache entry of one set of settings under ``directory``.

    Parameters
    ----------
    directory : path
        The cache directory (made when the first entry is written).
    settings : dict
        JSON-serialisable settings that determine the cached stages; their hash names the entry
        (the library versions are added).
    """

    def __init__(self, directory: str | os.PathLike, settings: dict):
        self.settings = {**settings, "versions": versions("torch", "openmm", "mdtraj")}
        text = json.dumps(self.settings, sort_keys=True, default=str)
        self.key = hashlib.sha256(text.encode()).hexdigest()[:16]
        self.root = Path(directory)
        self.path = self.root / self.key

    def exists(self) -> bool:
        """True when a complete entry for these settings is on disk."""
        return (self.path / _INFO).is_file()

    def load(self, system: MolecularSystem, device=None) -> CachedStages:
        """The stages of the entry (the model on ``device``)."""
        if not self.exists():
            raise FileNotFoundError(f"no cache entry {self.path}; run the benchmark once with this cache to make it")
        info = json.loads((self.path / _INFO).read_text())
        with np.load(self.path / _MD_NPZ) as z:
            run_index, energy = z["run_index"], z["potential_energy"]
        md = MDResult(trajectory=mdtraj.load_hdf5(str(self.path / _MD_H5)), run_index=run_index,
                      potential_energy=energy, **info["md"])
        model = MolecularModel.load(self.path / _MODEL, system, device=device)
        return CachedStages(md, model, MolecularGeodesic.load(self.path / _GEODESIC), info["seconds"])

    def save(self, stages: CachedStages) -> Path:
        """Write the entry (complete or not at all); an existing entry of the same settings is kept."""
        if self.exists():
            return self.path
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.key}.", dir=self.root))
        try:
            md = stages.md
            md.trajectory.save_hdf5(str(tmp / _MD_H5))
            with open(tmp / _MD_NPZ, "wb") as fh:
                np.savez(fh, run_index=md.run_index, potential_energy=md.potential_energy)
            stages.model.save(tmp / _MODEL)
            stages.geodesic.save(tmp / _GEODESIC)
            info = {"settings": self.settings, "seconds": stages.seconds,
                    "md": {"n_force_evaluations": int(md.n_force_evaluations),
                           "n_energy_evaluations": int(md.n_energy_evaluations), "seeds": [int(s) for s in md.seeds],
                           "settings": md.settings, "wall_time_s": float(md.wall_time_s)}}
            (tmp / _INFO).write_text(json.dumps(info, indent=2, default=str))
            os.replace(tmp, self.path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.exists():  # not merely another run that wrote the same entry first
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.path
