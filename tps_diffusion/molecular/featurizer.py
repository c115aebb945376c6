"""Cartesian features for the diffusion model: Kabsch-aligned, centred, scaled coordinates.

Frame convention ("aligned frame"): the selected atoms of every structure are rigidly
superposed (unweighted Kabsch, rotation + translation, no reflection) onto the reference
structure's selected atoms, which are centred at the origin. Features are

    x_feat = (x_aligned - mean) / scale        (flattened, atom-major: x0 y0 z0 x1 ...)

with ``mean`` the average aligned structure of the fitted samples and ``scale`` one scalar
(nm): the per-coordinate RMS deviation from the mean, ``sqrt(mean((x_aligned - mean)^2))`` over
frames, atoms and axes (= structural RMSD from the mean / sqrt(3)); features then have unit
variance on average. :meth:`CartesianFeaturizer.inverse` maps features back to nm in the
aligned frame.
"""

from __future__ import annotations

from typing import Sequence

import mdtraj
import numpy as np

from ..core.normalizer import Normalizer
from .limits import nonfinite_frames
from .superpose import kabsch_rotation
from .system import MolecularSystem
from .topology import as_md_topology

__all__ = ["CartesianFeaturizer", "MIN_SCALE_NM"]

#: smallest accepted RMS spread (nm) of the fitted samples: below it the samples are one structure
#: repeated (rounding noise only) and the features would be noise amplified by 1/scale
MIN_SCALE_NM = 1e-6


class CartesianFeaturizer:
    """Aligned, centred and scaled Cartesian coordinates of an atom selection.

    Parameters
    ----------
    topology : mdtraj/openmm Topology, Trajectory or MolecularSystem
    selection : mdtraj selection string (``"all"``, ``"not element H"``, ...) or atom indices
    reference : positions ``(n_atoms, 3)`` nm (full system) or ``(n_sel, 3)``, or a Trajectory
        (first frame); None: the MolecularSystem's reference positions, else the first frame
        given to :meth:`fit`.
    """

    def __init__(self, topology, selection: str | Sequence[int] = "all", reference=None):
        top = as_md_topology(topology)
        self.n_atoms = top.n_atoms
        if isinstance(selection, str):
            try:
                idx = top.select(selection)
            except Exception as exc:  # noqa: BLE001 - mdtraj raises several types for bad selections
                raise ValueError(f"invalid atom selection {selection!r}: {exc}".splitlines()[0]) from None
            if len(idx) == 0:
                raise ValueError(f"atom selection {selection!r} matched no atoms (topology has {top.n_atoms} atoms)")
            self.selection = selection
        else:
            idx = np.asarray(selection, dtype=int).reshape(-1)
            if len(idx) == 0 or idx.min() < 0 or idx.max() >= top.n_atoms or len(np.unique(idx)) != len(idx):
                raise ValueError(f"atom indices must be unique and in [0, {top.n_atoms}); got {idx.tolist()[:10]}")
            self.selection = None
        self.atom_indices = np.asarray(idx, dtype=int)
        self.atom_labels = [f"{top.atom(i).residue}-{top.atom(i).name}" for i in self.atom_indices]
        if reference is None:
            if isinstance(topology, MolecularSystem):
                reference = topology.positions
            elif isinstance(topology, mdtraj.Trajectory):
                reference = topology.xyz[0]
        self.reference = None if reference is None else self._centre(self._select(reference)[0])
        self.mean: np.ndarray | None = None
        self.scale: float | None = None

    # ----- helpers

    @property
    def n_selected(self) -> int:
        return len(self.atom_indices)

    @property
    def n_features(self) -> int:
        return 3 * self.n_selected

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @staticmethod
    def _centre(x: np.ndarray) -> np.ndarray:
        return x - x.mean(-2, keepdims=True)

    def _select(self, positions) -> np.ndarray:
        """``(n_frames, n_sel, 3)`` float64 from a Trajectory or full / selected positions."""
        if isinstance(positions, mdtraj.Trajectory):
            if positions.n_atoms != self.n_atoms:
                raise ValueError(f"trajectory has {positions.n_atoms} atoms, the featurizer topology {self.n_atoms}")
            xyz = np.asarray(positions.xyz, dtype=np.float64)
        else:
            xyz = np.asarray(positions, dtype=np.float64)
            if xyz.ndim == 2:
                xyz = xyz[None]
        if xyz.ndim != 3 or xyz.shape[-1] != 3:
            raise ValueError(f"positions must be (n_frames, n_atoms, 3); got shape {xyz.shape}")
        if xyz.shape[1] == self.n_atoms:
            xyz = xyz[:, self.atom_indices]
        elif xyz.shape[1] != self.n_selected:
            raise ValueError(f"positions have {xyz.shape[1]} atoms; expected {self.n_atoms} (all) or {self.n_selected} "
                             "(selected)")
        bad = nonfinite_frames(xyz)
        if bad is not None:
            raise ValueError(f"positions contain NaN/inf (frames {bad}); drop those frames (traj[mask]) or regenerate "
                             "them")
        return xyz

    def _require_fit(self):
        if not self.fitted:
            raise RuntimeError("CartesianFeaturizer is not fitted; call fit(traj) or load with from_dict()")

    # ----- API

    def align(self, positions) -> np.ndarray:
        """Selected atoms superposed onto the (centred) reference: ``(n_frames, n_sel, 3)`` nm."""
        if self.reference is None:
            raise RuntimeError("no reference structure; pass reference= or call fit() first")
        xyz = self._select(positions)
        xc = self._centre(xyz)
        return xc @ kabsch_rotation(xc, self.reference, centred=True)

    def fit(self, traj) -> "CartesianFeaturizer":
        """Mean aligned structure and scalar scale from samples (Trajectory or positions)."""
        xyz = self._select(traj)
        if self.reference is None:
            self.reference = self._centre(xyz[0])
        aligned = self.align(xyz)
        mean = aligned.mean(0)
        scale = float(np.sqrt(np.mean((aligned - mean) ** 2)))
        if not scale >= MIN_SCALE_NM:
            raise ValueError(f"all samples are (nearly) identical after alignment (RMS spread {scale:.3g} nm): give MD "
                             "samples of the basins, not one structure repeated")
        self.mean, self.scale = mean, scale
        return self

    def transform(self, traj) -> np.ndarray:
        """Features ``(n_frames, 3*n_sel)`` float64: align, subtract the mean, divide by scale."""
        self._require_fit()
        return ((self.align(traj) - self.mean) / self.scale).reshape(-1, self.n_features)

    def fit_transform(self, traj) -> np.ndarray:
        return self.fit(traj).transform(traj)

    @property
    def normalizer(self):
        """The feature scaling as a :class:`tps_diffusion.core.normalizer.Normalizer` on flattened aligned nm.

        ``normalizer.forward(align(x).reshape(n, -1)) == transform(x)`` and
        ``normalizer.inverse(features) == inverse(features).reshape(n, -1)``; derived from
        ``mean``/``scale`` (the single source of truth), so a model trained on these features
        keeps an identity normaliser of its own.
        """
        self._require_fit()
        return Normalizer(self.mean.reshape(-1).copy(), float(self.scale))

    def inverse(self, x) -> np.ndarray:
        """Positions ``(n, n_sel, 3)`` nm in the aligned frame from features ``(n, 3*n_sel)`` (or ``(3*n_sel,)``)."""
        self._require_fit()
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.n_features:
            raise ValueError(f"features have last dimension {x.shape[-1]}, expected {self.n_features}")
        return x.reshape(-1, self.n_selected, 3) * self.scale + self.mean

    def to_dict(self) -> dict:
        """JSON-able state (exact float round trip through ``json``)."""
        self._require_fit()
        return {
            "type": "CartesianFeaturizer",
            "version": 1,
            "n_atoms": int(self.n_atoms),
            "selection": self.selection,
            "atom_indices": self.atom_indices.tolist(),
            "atom_labels": list(self.atom_labels),
            "reference_nm": self.reference.tolist(),
            "mean_nm": self.mean.tolist(),
            "scale_nm": float(self.scale),
        }

    @classmethod
    def from_dict(cls, d: dict, topology=None) -> "CartesianFeaturizer":
        """Rebuild from :meth:`to_dict`; with ``topology`` the atoms are checked against it."""
        if d.get("type") != "CartesianFeaturizer":
            raise ValueError(f"not a CartesianFeaturizer dict (type={d.get('type')!r})")
        self = cls.__new__(cls)
        self.n_atoms = int(d["n_atoms"])
        self.selection = d.get("selection")
        self.atom_indices = np.asarray(d["atom_indices"], dtype=int)
        self.atom_labels = list(d.get("atom_labels", []))
        self.reference = np.asarray(d["reference_nm"], dtype=np.float64)
        self.mean = np.asarray(d["mean_nm"], dtype=np.float64)
        self.scale = float(d["scale_nm"])
        if topology is not None:
            top = as_md_topology(topology)
            labels = [f"{top.atom(i).residue}-{top.atom(i).name}" for i in self.atom_indices if i < top.n_atoms]
            if top.n_atoms != self.n_atoms or (self.atom_labels and labels != self.atom_labels):
                raise ValueError(f"featurizer was fitted on a different topology ({self.n_atoms} atoms) than the one "
                                 f"given ({top.n_atoms} atoms)")
        return self

    def __repr__(self) -> str:
        state = f"scale={self.scale:.4g} nm" if self.fitted else "unfitted"
        return f"CartesianFeaturizer(selection={self.selection!r}, n_selected={self.n_selected}, {state})"
