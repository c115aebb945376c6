"""Collective variables on mdtraj atom selections, and metastable states as balls in CV space.

Units: rad for angles (periodic, wrapped into ``[-pi, pi)``), nm for distances.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence

import mdtraj
import numpy as np

from ..utils.angles import wrap
from .topology import as_md_topology

__all__ = ["CollectiveVariable", "Dihedral", "Distance", "State"]


def _atom_label(atom) -> str:
    return f"{atom.residue}-{atom.name}"


class CollectiveVariable:
    """A collective variable defined by mdtraj atom selections, each selecting exactly one atom.

    ``atoms`` are mdtraj selection strings (``"resname ALA and name CA"``) or atom indices.
    ``compute(traj)`` returns an array ``(n_frames,)`` in rad (angles) or nm (distances).
    ``periodic`` is True for angles (period ``2*pi``).
    """

    n_atoms_required = 0
    periodic = False
    units = ""

    def __init__(self, name: str, atoms: Sequence[str | int], topology=None):
        atoms = tuple(atoms)
        if len(atoms) != self.n_atoms_required:
            raise ValueError(
                f"{type(self).__name__} {name!r} needs {self.n_atoms_required} atom selections, got {len(atoms)}: "
                f"{atoms}"
            )
        self.name = name
        self.atoms = atoms
        if topology is not None:
            self.atom_indices(topology)  # fail early

    def atom_indices(self, topology) -> np.ndarray:
        """Resolve the selections against ``topology`` (mdtraj/openmm Topology or Trajectory)."""
        top = as_md_topology(topology)
        cache = self.__dict__.setdefault("_cache", {})
        hit = cache.get(id(top))
        if hit is not None and hit[0]() is top and hit[1] == top.n_atoms:
            return hit[2].copy()
        out = self._resolve(top)
        try:
            cache[id(top)] = (weakref.ref(top), top.n_atoms, out)
        except TypeError:  # pragma: no cover - not weak-referenceable
            pass
        return out.copy()

    def __getstate__(self):
        d = self.__dict__.copy()
        d.pop("_cache", None)
        return d

    def _resolve(self, top: mdtraj.Topology) -> np.ndarray:
        out = []
        for sel in self.atoms:
            if isinstance(sel, (int, np.integer)):
                if not 0 <= int(sel) < top.n_atoms:
                    raise ValueError(f"CV {self.name!r}: atom index {sel} out of range (topology has {top.n_atoms} "
                                     "atoms)")
                out.append(int(sel))
                continue
            try:
                idx = top.select(sel)
            except Exception as exc:  # noqa: BLE001 - mdtraj raises several types for bad selections
                msg = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                raise ValueError(f"CV {self.name!r}: invalid atom selection {sel!r}: {msg}") from None
            if len(idx) != 1:
                found = ", ".join(_atom_label(top.atom(i)) for i in idx[:6]) + (" ..." if len(idx) > 6 else "")
                raise ValueError(
                    f"CV {self.name!r}: selection {sel!r} matched {len(idx)} atoms"
                    f"{' (' + found + ')' if len(idx) else ''}; need exactly one"
                )
            out.append(int(idx[0]))
        return np.array(out, dtype=int)

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def difference(self, a, b) -> np.ndarray:
        """``a - b``, wrapped into ``[-pi, pi)`` for periodic CVs."""
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        if self.periodic:
            d = wrap(d)
        return d

    def to_dict(self) -> dict:
        atoms = [a if isinstance(a, str) else int(a) for a in self.atoms]
        return {"type": type(self).__name__, "name": self.name, "atoms": atoms}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {list(self.atoms)})"


class Dihedral(CollectiveVariable):
    """Torsion angle (rad, in ``(-pi, pi]``) of four atoms."""

    n_atoms_required = 4
    periodic = True
    units = "rad"

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:
        idx = self.atom_indices(traj.topology)
        return mdtraj.compute_dihedrals(traj, idx[None, :], periodic=False)[:, 0].astype(np.float64)


class Distance(CollectiveVariable):
    """Distance (nm) between two atoms (minimum image when the trajectory has a unit cell)."""

    n_atoms_required = 2
    periodic = False
    units = "nm"

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:
        idx = self.atom_indices(traj.topology)
        d = mdtraj.compute_distances(traj, idx[None, :], periodic=traj.unitcell_vectors is not None)
        return d[:, 0].astype(np.float64)


@dataclass
class State:
    """A metastable state: ball of ``radius`` around ``centre`` in the space of ``cvs``.

    Distances use the CV units (rad for dihedrals, nm for distances) and the periodic
    (minimum-image) difference for periodic CVs.
    """

    name: str
    cvs: tuple[CollectiveVariable, ...]
    centre: np.ndarray
    radius: float

    def __post_init__(self):
        self.cvs = tuple(self.cvs)
        self.centre = np.asarray(self.centre, dtype=float).reshape(-1)
        if len(self.centre) != len(self.cvs):
            raise ValueError(f"state {self.name!r}: centre has {len(self.centre)} values for {len(self.cvs)} CVs")
        self.radius = float(self.radius)
        if not (np.all(np.isfinite(self.centre)) and np.isfinite(self.radius) and self.radius > 0):
            raise ValueError(f"state {self.name!r}: centre must be finite and radius finite and > 0 (CV units); got "
                             f"centre {self.centre.tolist()}, radius {self.radius}")

    def cv_values(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """CV values ``(n_frames, n_cvs)``."""
        return np.stack([cv.compute(traj) for cv in self.cvs], axis=1)

    def distance_cv(self, values) -> np.ndarray:
        """Distance from CV values ``(..., n_cvs)`` to the centre."""
        values = np.asarray(values, dtype=float)
        d = np.stack([cv.difference(values[..., i], self.centre[i]) for i, cv in enumerate(self.cvs)], axis=-1)
        return np.sqrt((d**2).sum(-1))

    def distance(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """Distance ``(n_frames,)`` of every frame to the state centre (CV units)."""
        return self.distance_cv(self.cv_values(traj))

    def contains(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """Boolean array ``(n_frames,)``: frame lies within ``radius`` of the centre."""
        return self.distance(traj) <= self.radius

    def to_dict(self) -> dict:
        return {"name": self.name, "cvs": [cv.name for cv in self.cvs], "centre": self.centre.tolist(),
                "radius": self.radius}
