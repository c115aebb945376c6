"""Collective variables on mdtraj atom selections, and metastable states defined on them.

CVs: :class:`Dihedral` (rad, periodic, ``(-pi, pi]``), :class:`Angle` (rad, ``[0, pi]``),
:class:`Distance` (nm) and :class:`RMSD` (nm, to a reference structure after optimal superposition).

States (all :class:`StateDefinition`, with ``contains(traj)``, ``depth(traj)``, ``cvs``, ``name``,
``to_dict()``): :class:`State`, a ball around a centre in CV space, and :class:`Region`, a box of
per-CV intervals, each side optional (``RMSD to folded > 0.5 nm`` is ``Region("unfolded", [(rmsd, 0.5, None)])``).

:func:`cv_from_dict` and :func:`state_from_dict` parse the plain-dict (TOML) forms.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import mdtraj
import numpy as np

from ..utils.angles import wrap
from .superpose import superposed_msd
from .topology import as_md_topology, as_positions

__all__ = ["CollectiveVariable", "Dihedral", "Angle", "Distance", "RMSD", "StateDefinition", "State",
           "Region", "cv_from_dict", "state_from_dict"]

_TWO_PI = 2 * math.pi


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


class Angle(CollectiveVariable):
    """Bond angle (rad, in ``[0, pi]``, not periodic) at the middle one of three atoms.

    Uses the minimum-image vectors when the trajectory has a unit cell.
    """

    n_atoms_required = 3
    periodic = False
    units = "rad"

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """Angle ``(n_frames,)`` in rad."""
        idx = self.atom_indices(traj.topology)
        a = mdtraj.compute_angles(traj, idx[None, :], periodic=traj.unitcell_vectors is not None)
        return a[:, 0].astype(np.float64)


class Distance(CollectiveVariable):
    """Distance (nm) between two atoms (minimum image when the trajectory has a unit cell)."""

    n_atoms_required = 2
    periodic = False
    units = "nm"

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:
        idx = self.atom_indices(traj.topology)
        d = mdtraj.compute_distances(traj, idx[None, :], periodic=traj.unitcell_vectors is not None)
        return d[:, 0].astype(np.float64)


class RMSD(CollectiveVariable):
    """RMSD (nm) of the atoms of one mdtraj selection to a reference structure, after optimal superposition.

    The optimal rotation and translation (Kabsch) is found per frame, in float64. Coordinates are
    used as given: make molecules whole first (``traj.image_molecules()``) for periodic trajectories.

    Parameters
    ----------
    name : str
        Name of the CV.
    reference : mdtraj.Trajectory, array (n_atoms, 3) nm, or str / PathLike
        Reference structure: a trajectory (first frame used), the positions of the full system
        (same atom order as the trajectories this CV is computed on), or a structure file read
        with ``mdtraj.load`` (PDB, ...).
    selection : str
        mdtraj selection of the superposed and compared atoms, e.g. ``"name CA"`` or
        ``"protein and not element H"``. It is resolved against the trajectory's topology at
        compute time, and against the reference's own topology when it has one (trajectory or
        file); the two selections must match the same number of atoms, paired in index order.
    topology : optional
        Topology of the system (mdtraj/OpenMM Topology, Trajectory, MolecularSystem) to check
        the selection against now rather than at the first ``compute``.

    Attributes
    ----------
    reference_xyz : ndarray (n_reference_atoms, 3)
        Reference positions, nm, float64.
    reference_path : str or None
        The structure file the reference was read from.
    """

    periodic = False
    units = "nm"

    def __init__(self, name: str, reference, selection: str = "name CA", topology=None):
        if not isinstance(selection, str) or not selection.strip():
            raise ValueError(f"RMSD {name!r}: selection must be a non-empty mdtraj selection string, e.g. 'name CA'; "
                             f"got {selection!r}")
        self.name = name
        self.selection = selection
        self.atoms = (selection,)
        self.reference_path: str | None = None
        if isinstance(reference, (str, os.PathLike)):
            path = Path(reference).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"RMSD {name!r}: reference structure file not found: {path}")
            try:
                reference = mdtraj.load(str(path))
            except Exception as exc:  # noqa: BLE001 - mdtraj raises many types for unreadable files
                msg = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                raise ValueError(f"RMSD {name!r}: cannot read reference structure {path}: {msg}") from None
            self.reference_path = str(path)
        ref_top = None
        if isinstance(reference, mdtraj.Trajectory):
            if reference.n_frames == 0:
                raise ValueError(f"RMSD {name!r}: reference trajectory has no frames")
            ref_top = reference.topology
            xyz = as_positions(reference.xyz[:1], what=f"RMSD {name!r} reference")[0]
        else:
            xyz = as_positions(reference, what=f"RMSD {name!r} reference")
            if len(xyz) != 1:
                raise ValueError(f"RMSD {name!r}: reference array must be one structure (n_atoms, 3) nm; got "
                                 f"{len(xyz)} frames")
            xyz = xyz[0]
        self.reference_xyz = np.ascontiguousarray(xyz, dtype=np.float64)
        self._ref_indices: np.ndarray | None = None
        self._ref_elements: tuple | None = None
        if ref_top is not None:
            self._ref_indices = self._select(ref_top, "the reference")
            self._ref_elements = tuple(_element(ref_top.atom(int(i))) for i in self._ref_indices)
        if topology is not None:
            self.atom_indices(topology)  # fail early

    def _select(self, top: mdtraj.Topology, where: str) -> np.ndarray:
        try:
            idx = top.select(self.selection)
        except Exception as exc:  # noqa: BLE001 - mdtraj raises several types for bad selections
            msg = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise ValueError(f"RMSD {self.name!r}: invalid atom selection {self.selection!r}: {msg}") from None
        if len(idx) == 0:
            raise ValueError(f"RMSD {self.name!r}: selection {self.selection!r} matched no atoms in {where}; "
                             "choose a selection that exists (e.g. 'name CA' or 'not element H')")
        return np.asarray(idx, dtype=int)

    def _resolve(self, top: mdtraj.Topology) -> np.ndarray:
        idx = self._select(top, "the trajectory topology")
        if self._ref_indices is None:
            if top.n_atoms != len(self.reference_xyz):
                raise ValueError(f"RMSD {self.name!r}: the reference array has {len(self.reference_xyz)} atoms but the "
                                 f"topology has {top.n_atoms}; pass full-system reference positions or a structure "
                                 "file / trajectory with its own topology")
            return idx
        if len(idx) != len(self._ref_indices):
            raise ValueError(f"RMSD {self.name!r}: selection {self.selection!r} matches {len(idx)} atoms in the "
                             f"trajectory but {len(self._ref_indices)} in the reference; use a selection that matches "
                             "the same atoms in both (e.g. restrict it by resid/chain)")
        for k, (i, e_ref) in enumerate(zip(idx, self._ref_elements)):
            e = _element(top.atom(int(i)))
            if e is not None and e_ref is not None and e != e_ref:
                raise ValueError(f"RMSD {self.name!r}: selected atom {k} is {_atom_label(top.atom(int(i)))} ({e}) in "
                                 f"the trajectory but element {e_ref} in the reference; the atoms must be in the same "
                                 "order in both structures")
        return idx

    def reference_indices(self, topology) -> np.ndarray:
        """Indices ``(n_selected,)`` into :attr:`reference_xyz` paired with :meth:`atom_indices` of ``topology``."""
        idx = self.atom_indices(topology)
        return idx if self._ref_indices is None else self._ref_indices.copy()

    def compute(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """RMSD ``(n_frames,)`` in nm after optimal superposition of each frame onto the reference."""
        idx = self.atom_indices(traj.topology)
        ref = self.reference_xyz[self.reference_indices(traj.topology)]
        return np.sqrt(np.maximum(superposed_msd(np.asarray(traj.xyz, dtype=np.float64)[:, idx], ref), 0.0))

    def to_dict(self) -> dict:
        return {"type": "RMSD", "name": self.name, "selection": self.selection,
                "reference": self.reference_path if self.reference_path is not None else "array"}

    def __repr__(self) -> str:
        ref = self.reference_path if self.reference_path is not None else f"array of {len(self.reference_xyz)} atoms"
        return f"RMSD({self.name!r}, reference={ref!r}, selection={self.selection!r})"


def _element(atom) -> str | None:
    el = getattr(atom, "element", None)
    return getattr(el, "symbol", None) if el is not None else None


def _consistent_depth(raw: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``raw`` clipped so that it is ``<= 1`` exactly where ``inside`` (guards rounding at the boundary)."""
    raw = np.asarray(raw, dtype=float)
    return np.where(inside, np.minimum(raw, 1.0), np.maximum(raw, np.nextafter(1.0, 2.0)))


class StateDefinition:
    """What every kind of state offers, so that frames can be assigned without knowing the kind.

    Subclasses set ``name`` (str) and ``cvs`` (tuple of :class:`CollectiveVariable`) and implement
    :meth:`contains_cv`, :meth:`depth_cv` and :meth:`to_dict`.

    ``depth`` is a dimensionless measure of how far inside a frame is: ``<= 1`` exactly for the frames
    that :meth:`contains` accepts, ``> 1`` outside, growing with the distance from the state (for
    choosing between overlapping states take the smallest depth).
    """

    name: str
    cvs: tuple[CollectiveVariable, ...]

    def cv_values(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """CV values ``(n_frames, n_cvs)`` in CV units (rad, nm)."""
        return np.stack([cv.compute(traj) for cv in self.cvs], axis=1)

    def contains_cv(self, values) -> np.ndarray:  # pragma: no cover - abstract
        """Boolean ``(...)`` from CV values ``(..., n_cvs)``."""
        raise NotImplementedError

    def depth_cv(self, values) -> np.ndarray:  # pragma: no cover - abstract
        """Depth ``(...)`` (``<= 1`` inside, ``> 1`` outside) from CV values ``(..., n_cvs)``."""
        raise NotImplementedError

    def contains(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """Boolean array ``(n_frames,)``: frame lies in the state."""
        return self.contains_cv(self.cv_values(traj))

    def depth(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """Depth ``(n_frames,)``, dimensionless: ``<= 1`` exactly where :meth:`contains` is True."""
        return self.depth_cv(self.cv_values(traj))

    def to_dict(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class State(StateDefinition):
    """A metastable state: ball of ``radius`` around ``centre`` in the space of ``cvs``.

    Distances use the CV units (rad for angles, nm for distances) and the periodic
    (minimum-image) difference for periodic CVs. ``depth = distance / radius``.
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

    def contains_cv(self, values) -> np.ndarray:
        """Boolean ``(...)``: CV values ``(..., n_cvs)`` lie within ``radius`` of the centre."""
        return self.distance_cv(values) <= self.radius

    def depth_cv(self, values) -> np.ndarray:
        """``distance / radius`` ``(...)`` from CV values ``(..., n_cvs)`` (``<= 1`` exactly inside)."""
        d = self.distance_cv(values)
        return _consistent_depth(d / self.radius, d <= self.radius)

    def depth(self, traj: mdtraj.Trajectory) -> np.ndarray:
        """``distance / radius`` ``(n_frames,)``, dimensionless (``<= 1`` exactly where :meth:`contains`)."""
        return self.depth_cv(self.cv_values(traj))

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": "ball", "cvs": [cv.name for cv in self.cvs],
                "centre": self.centre.tolist(), "radius": self.radius}



def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


class Region(StateDefinition):
    """A metastable state bounded by per-CV intervals (a box in CV space; any side may be open).

    Parameters
    ----------
    name : str
        Name of the state.
    bounds : sequence of (CollectiveVariable, lower, upper)
        ``lower`` / ``upper`` in the CV's units (rad, nm), or ``None`` for an open side; at least
        one bound, each with at least one side. A frame is inside when every CV lies in its
        interval, ends included. For periodic CVs (dihedrals) the interval runs from ``lower``
        upwards to ``upper``, so ``lower > upper`` wraps through ``+-pi`` (``(2.5, -2.5)`` is the
        arc of width ``2*pi - 5`` around ``pi``), and a one-sided bound (in ``(-pi, pi)``) means the
        arc up to ``pi`` / from ``-pi``. For other CVs ``lower < upper``.

    Notes
    -----
    ``depth`` is the maximum over the bounds of a normalised position: ``|v - mid| / half_width``
    for two-sided bounds (periodic difference for periodic CVs); for one-sided bounds, with
    ``x`` the signed distance outside the bound over ``s = |bound|`` (the CV unit when the bound
    is 0), ``1 + x`` outside and ``1 / (1 - x)`` inside. It is ``<= 1`` exactly where
    :meth:`contains` is True.

    Examples
    --------
    >>> unfolded = Region("unfolded", [(rmsd_to_folded, 0.5, None)])        # doctest: +SKIP
    >>> beta = Region("beta", [(phi, -np.pi, -1.0), (psi, 2.0, -2.8)])      # doctest: +SKIP
    """

    def __init__(self, name: str, bounds: Sequence[tuple[CollectiveVariable, float | None, float | None]]):
        self.name = name
        try:
            bounds = list(bounds)
        except TypeError:
            raise ValueError(f"state {name!r}: bounds must be a sequence of (cv, lower, upper) triples; got "
                             f"{type(bounds).__name__}") from None
        if not bounds:
            raise ValueError(f"state {name!r}: a region needs at least one (cv, lower, upper) bound")
        out, spec, seen = [], [], set()
        for k, b in enumerate(bounds):
            if isinstance(b, (str, bytes)) or not isinstance(b, Sequence) or len(b) != 3:
                raise ValueError(f"state {name!r}: bound {k} must be a (cv, lower, upper) triple; got {b!r}")
            cv, lo, hi = b
            if not isinstance(cv, CollectiveVariable):
                raise ValueError(f"state {name!r}: bound {k} must start with a CollectiveVariable; got "
                                 f"{type(cv).__name__}")
            if cv.name in seen:
                raise ValueError(f"state {name!r}: CV {cv.name!r} is bounded twice; give one (lower, upper) per CV")
            seen.add(cv.name)
            lo, hi = (self._side(cv, x, side) for x, side in ((lo, "lower"), (hi, "upper")))
            spec.append(self._spec(cv, lo, hi))
            out.append((cv, lo, hi))
        self.bounds: tuple[tuple[CollectiveVariable, float | None, float | None], ...] = tuple(out)
        self.cvs = tuple(b[0] for b in out)
        self._specs = tuple(spec)

    def _side(self, cv: CollectiveVariable, x, side: str) -> float | None:
        if x is None:
            return None
        if not _is_number(x) or not math.isfinite(float(x)):
            raise ValueError(f"state {self.name!r}: {side} bound of CV {cv.name!r} must be a finite number "
                             f"({cv.units or 'CV units'}) or None for an open side; got {x!r}")
        return float(x)

    def _spec(self, cv: CollectiveVariable, lo: float | None, hi: float | None) -> tuple:
        """Precomputed ``(kind, a, b)`` of one bound: ``("arc", start, width)``, ``("interval", lo, hi)``,
        ``("lower", lo, scale)`` or ``("upper", hi, scale)``."""
        where = f"state {self.name!r}: bound on CV {cv.name!r}"
        if lo is None and hi is None:
            raise ValueError(f"{where} has neither lower nor upper; give at least one (None = open side)")
        if cv.periodic:
            if lo is None or hi is None:
                x = hi if lo is None else lo
                if not -math.pi < x < math.pi:
                    raise ValueError(f"{where}: a one-sided bound on a periodic CV must lie in (-pi, pi) rad, got "
                                     f"{x:g}; give both lower and upper for a wrapped interval")
                lo, hi = (-math.pi, hi) if lo is None else (lo, math.pi)
            width = (hi - lo) % _TWO_PI
            if abs(hi - lo) >= _TWO_PI or width == 0.0:
                raise ValueError(f"{where}: lower {lo:g} and upper {hi:g} rad span no arc or a full turn; give an "
                                 "interval shorter than 2*pi (lower > upper wraps through +-pi)")
            if not width / 2 > 0:
                raise ValueError(f"{where}: interval ({lo:g}, {hi:g}) rad is too narrow; widen it")
            return ("arc", float(wrap(lo)), width)
        if lo is not None and hi is not None:
            if not lo < hi:
                raise ValueError(f"{where}: lower {lo:g} must be < upper {hi:g} ({cv.units or 'CV units'}); swap "
                                 "them, or drop one side for an open interval")
            if not (hi - lo) / 2 > 0:
                raise ValueError(f"{where}: interval ({lo:g}, {hi:g}) is too narrow; widen it")
            return ("interval", lo, hi)
        if hi is None:
            return ("lower", lo, abs(lo) if lo != 0 else 1.0)
        return ("upper", hi, abs(hi) if hi != 0 else 1.0)

    @staticmethod
    def _bound_inside_raw(spec: tuple, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kind, a, b = spec
        with np.errstate(over="ignore", divide="ignore"):  # very narrow intervals: inf outside the centre
            return Region._inside_raw(kind, a, b, v)

    @staticmethod
    def _inside_raw(kind: str, a: float, b: float, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if kind == "arc":
            inside = (v - a) % _TWO_PI <= b
            raw = np.abs(wrap(v - (a + b / 2))) / (b / 2)
        elif kind == "interval":
            inside = (v >= a) & (v <= b)
            raw = np.abs(v - (a + b) / 2) / ((b - a) / 2)
        else:
            x = (a - v) / b if kind == "lower" else (v - a) / b  # signed distance outside, in units of scale
            inside = v >= a if kind == "lower" else v <= a
            raw = np.where(x >= 0, 1.0 + np.maximum(x, 0.0), 1.0 / (1.0 - np.minimum(x, 0.0)))
        return inside, raw

    def _values(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.shape[-1:] != (len(self.cvs),):
            raise ValueError(f"state {self.name!r}: CV values must have shape (..., {len(self.cvs)}); got "
                             f"{values.shape}")
        return values

    def contains_cv(self, values) -> np.ndarray:
        """Boolean ``(...)``: CV values ``(..., n_cvs)`` (CV units) lie within every bound."""
        values = self._values(values)
        out = np.ones(values.shape[:-1], dtype=bool)
        for i, spec in enumerate(self._specs):
            out &= self._bound_inside_raw(spec, values[..., i])[0]
        return out

    def depth_cv(self, values) -> np.ndarray:
        """Depth ``(...)``, dimensionless, from CV values ``(..., n_cvs)``: max over the bounds (see Notes)."""
        values = self._values(values)
        out = np.full(values.shape[:-1], -np.inf)
        for i, spec in enumerate(self._specs):
            inside, raw = self._bound_inside_raw(spec, values[..., i])
            out = np.maximum(out, _consistent_depth(raw, inside))
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": "region",
                "bounds": [{"cv": cv.name, "lower": lo, "upper": hi} for cv, lo, hi in self.bounds]}

    def __repr__(self) -> str:
        b = ", ".join(f"({cv.name}, {lo}, {hi})" for cv, lo, hi in self.bounds)
        return f"Region({self.name!r}, [{b}])"


# ----- plain-dict (TOML) forms

_CV_TYPES: dict[str, type[CollectiveVariable]] = {"angle": Angle, "dihedral": Dihedral, "distance": Distance,
                                                  "rmsd": RMSD}


def _check_keys(d: Mapping, allowed: Sequence[str], where: str) -> None:
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}")


def cv_from_dict(d: Mapping[str, Any], topology=None, base_dir: str | os.PathLike | None = None, *,
                 name: str | None = None) -> CollectiveVariable:
    """A collective variable from its plain-dict (TOML table) form.

    Parameters
    ----------
    d : mapping
        ``{"type": "dihedral" | "angle" | "distance", "atoms": [selection or index, ...]}`` (4, 3
        and 2 atoms; each selection must match exactly one atom), or ``{"type": "rmsd",
        "reference": "path/to/structure.pdb", "selection": "name CA"}`` (``selection`` optional,
        default ``"name CA"``). ``type`` is case-insensitive (so ``CollectiveVariable.to_dict()``
        output parses); an optional ``"name"`` key names the CV.
    topology : optional
        mdtraj/OpenMM Topology, Trajectory or MolecularSystem to check the selections against now.
    base_dir : str or PathLike, optional
        Directory that a relative RMSD ``reference`` path is relative to (the system file's folder).
    name : str, optional
        Name of the CV (the TOML table key); needed unless ``d`` has ``"name"``.

    Returns
    -------
    CollectiveVariable

    Raises
    ------
    ValueError
        One line, for a missing name or type, an unknown type or key, or bad atoms / selection.
    FileNotFoundError
        For an RMSD reference file that does not exist.
    """
    label = f"CV {name!r}" if name is not None else "CV"
    if not isinstance(d, Mapping):
        raise ValueError(f"{label}: expected a table/dict with 'type', got {type(d).__name__}")
    d_name = d.get("name")
    if d_name is not None and (not isinstance(d_name, str) or (name is not None and d_name != name)):
        raise ValueError(f"{label}: 'name' {d_name!r} does not match the CV name {name!r}; drop it or make them agree")
    name = name if name is not None else d_name
    if not isinstance(name, str) or not name:
        raise ValueError("CV definition has no name; give 'name' (or define it under a named table)")
    label = f"CV {name!r}"
    types = ", ".join(sorted(_CV_TYPES))
    typ = d.get("type")
    if not isinstance(typ, str) or typ.lower() not in _CV_TYPES:
        what = "missing 'type'" if typ is None else f"unknown type {typ!r}"
        raise ValueError(f"{label}: {what}; allowed types: {types}")
    cls = _CV_TYPES[typ.lower()]
    if cls is RMSD:
        _check_keys(d, ("type", "name", "reference", "selection"), label)
        ref = d.get("reference")
        if not isinstance(ref, (str, os.PathLike)) or ref == "array" or not str(ref):
            raise ValueError(f"{label}: 'reference' must be the path of a structure file (PDB, ...); got {ref!r}")
        path = Path(ref).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        selection = d.get("selection", "name CA")
        if not isinstance(selection, str):
            raise ValueError(f"{label}: 'selection' must be an mdtraj selection string; got {selection!r}")
        return RMSD(name, path, selection=selection, topology=topology)
    _check_keys(d, ("type", "name", "atoms"), label)
    atoms = d.get("atoms")
    n = cls.n_atoms_required
    if (isinstance(atoms, (str, bytes)) or not isinstance(atoms, Sequence)
            or not all(isinstance(a, str) or (_is_number(a) and float(a).is_integer()) for a in atoms)):
        raise ValueError(f"{label}: 'atoms' must be a list of {n} mdtraj selections (or atom indices); got {atoms!r}")
    atoms = [a if isinstance(a, str) else int(a) for a in atoms]
    return cls(name, atoms, topology)


def _numbers(x, where: str, n: int | None = None) -> list[float]:
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence) or not all(_is_number(v) for v in x):
        raise ValueError(f"{where} must be a list of numbers; got {x!r}")
    if n is not None and len(x) != n:
        raise ValueError(f"{where} has {len(x)} values for {n} CVs; give one per CV")
    return [float(v) for v in x]


def _number(x, where: str) -> float:
    if not _is_number(x):
        raise ValueError(f"{where} must be a number; got {x!r}")
    return float(x)


def _require_rad(cvs: Sequence[CollectiveVariable], where: str, key: str) -> None:
    bad = [f"{cv.name!r} ({cv.units or 'no units'})" for cv in cvs if cv.units != "rad"]
    if bad:
        raise ValueError(f"{where}: {key!r} (degrees) is only for angle CVs, not {', '.join(bad)}; use "
                         f"{key[:-4]!r} in CV units")


def _pick(d: Mapping, key: str, where: str, required: bool = True):
    """``(value, in_degrees)`` of ``key`` or ``key_deg`` (exactly one of them)."""
    has, has_deg = key in d, f"{key}_deg" in d
    if has and has_deg:
        raise ValueError(f"{where}: give either {key!r} or '{key}_deg', not both")
    if not (has or has_deg):
        if required:
            raise ValueError(f"{where}: missing {key!r} (CV units) or '{key}_deg' (degrees)")
        return None, False
    return (d[f"{key}_deg"], True) if has_deg else (d[key], False)


_BALL_KEYS = ("name", "kind", "cvs", "centre", "centre_deg", "radius", "radius_deg")
_REGION_KEYS = ("name", "kind", "bounds")
_BOUND_KEYS = ("min", "max", "min_deg", "max_deg")
_BOUND_LIST_KEYS = ("cv", "lower", "upper")


def state_from_dict(name: str, d: Mapping[str, Any], cvs: Mapping[str, CollectiveVariable]) -> State | Region:
    """A state from its plain-dict (TOML table) form.

    Parameters
    ----------
    name : str
        Name of the state.
    d : mapping
        Ball: ``{"cvs": [cv names], "centre": [..] | "centre_deg": [..], "radius": x | "radius_deg": x}``.
        Region: ``{"bounds": {cv name: {"min": x, "max": y}}}``, either side optional, or
        ``"min_deg"`` / ``"max_deg"`` instead for angle CVs; for periodic CVs ``min > max`` wraps
        through +-180 degrees. Values are in CV units (rad, nm) unless the key ends in ``_deg``
        (allowed only when the CVs concerned are angles). Optional keys: ``"kind"`` (``"ball"`` or
        ``"region"``, otherwise inferred) and ``"name"`` (must equal ``name``). The output of
        ``State.to_dict()`` / ``Region.to_dict()`` parses too (region ``bounds`` as a list of
        ``{"cv", "lower", "upper"}``, ``None`` for an open side).
    cvs : mapping str -> CollectiveVariable
        The CVs the state may refer to by name.

    Returns
    -------
    State or Region

    Raises
    ------
    ValueError
        One line naming the state, for unknown keys or CV names, a missing or doubled value, degrees
        on a non-angle CV, or an invalid centre/radius/bound.
    """
    where = f"state {name!r}"
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: expected a table/dict, got {type(d).__name__}")
    if "name" in d and d["name"] != name:
        raise ValueError(f"{where}: 'name' {d['name']!r} does not match the state name; drop it or make them agree")
    kind = d.get("kind")
    if kind is None:
        ball = any(k in d for k in _BALL_KEYS[2:])
        if ball and "bounds" in d:
            raise ValueError(f"{where}: give either centre/radius/cvs (a ball) or bounds (a region), not both")
        if not ball and "bounds" not in d:
            raise ValueError(f"{where}: define a ball ({', '.join(_BALL_KEYS[2:])}) or a region (bounds); got keys "
                             f"{sorted(d)}")
        kind = "ball" if ball else "region"
    if kind not in ("ball", "region"):
        raise ValueError(f"{where}: unknown kind {kind!r}; allowed: ball, region")

    def lookup(cv_name) -> CollectiveVariable:
        if not isinstance(cv_name, str) or cv_name not in cvs:
            raise ValueError(f"{where}: unknown CV {cv_name!r}; defined CVs: {', '.join(cvs) or '(none)'}")
        return cvs[cv_name]

    if kind == "ball":
        _check_keys(d, _BALL_KEYS, where)
        names = d.get("cvs")
        if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not names:
            raise ValueError(f"{where}: 'cvs' must be a non-empty list of CV names; defined CVs: "
                             f"{', '.join(cvs) or '(none)'}")
        ball_cvs = tuple(lookup(n) for n in names)
        centre, deg = _pick(d, "centre", where)
        centre = _numbers(centre, f"{where}: '{'centre_deg' if deg else 'centre'}'", len(ball_cvs))
        if deg:
            _require_rad(ball_cvs, where, "centre_deg")
            centre = np.deg2rad(centre)
        radius, rdeg = _pick(d, "radius", where)
        radius = _number(radius, f"{where}: '{'radius_deg' if rdeg else 'radius'}'")
        if rdeg:
            _require_rad(ball_cvs, where, "radius_deg")
            radius = math.radians(radius)
        return State(name, ball_cvs, centre, radius)

    _check_keys(d, _REGION_KEYS, where)
    raw = d.get("bounds")
    triples = []
    if isinstance(raw, Mapping):
        for cv_name, b in raw.items():
            cv = lookup(cv_name)
            bw = f"{where}: bounds of {cv_name!r}"
            if not isinstance(b, Mapping):
                raise ValueError(f"{bw} must be a table like {{min = 0.1, max = 0.3}}; got {b!r}")
            _check_keys(b, _BOUND_KEYS, bw)
            sides = []
            for key in ("min", "max"):
                v, deg = _pick(b, key, bw, required=False)
                if v is not None:
                    v = _number(v, f"{bw}: '{key}_deg'" if deg else f"{bw}: {key!r}")
                    if deg:
                        _require_rad([cv], bw, f"{key}_deg")
                        v = math.radians(v)
                sides.append(v)
            triples.append((cv, *sides))
    elif isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)):
        for k, b in enumerate(raw):
            bw = f"{where}: bound {k}"
            if not isinstance(b, Mapping):
                raise ValueError(f"{bw} must be a dict with 'cv', 'lower', 'upper'; got {b!r}")
            _check_keys(b, _BOUND_LIST_KEYS, bw)
            sides = [None if b.get(key) is None else _number(b[key], f"{bw}: {key!r}") for key in ("lower", "upper")]
            triples.append((lookup(b.get("cv")), *sides))
    else:
        raise ValueError(f"{where}: 'bounds' must be a table {{cv name = {{min = .., max = ..}}}}; got {raw!r}")
    return Region(name, triples)
