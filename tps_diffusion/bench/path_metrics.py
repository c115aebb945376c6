"""Path metrics of the TPS-DPS protocol (Seong et al., arXiv 2405.19961) for folding paths.

Every path is scored against one target structure (e.g. the minimised folded state):

1. the **cut**: the frame of the path closest to the target by heavy-atom RMSD after optimal
   superposition (Kabsch) -- a path may reach the target and then leave it again, so it is
   scored where it came closest (:func:`cut_index`);
2. **RMSD**: that heavy-atom RMSD at the cut, in Angstrom (:func:`rmsd_at_cut_angstrom`),
   reported as mean +- std over all paths;
3. **hit**: the C-alpha RMSD to the target at the cut frame is <= 1 Angstrom (:func:`is_hit`);
   the hit percentage is over all paths;
4. **ETS** (energy of the transition state): for each hitting path the maximum potential energy
   (kJ/mol) along the path up to and including its cut frame (:func:`max_energy_to_cut`),
   averaged over the hitting paths (:func:`ets`); undefined (None) when no path hits.

All RMSDs are unweighted, superpose with proper rotations only (no reflection) and are computed
in float64 with :func:`tps_diffusion.molecular.superpose.superposed_msd`. Standard deviations use
``ddof=1`` (the sample standard deviation, as ``torch.std`` in the TPS-DPS code); they are None
for fewer than two values. :func:`path_metrics` applies all of this to a set of paths.
"""

from __future__ import annotations

from typing import Sequence

import mdtraj
import numpy as np

from ..molecular.superpose import superposed_msd

__all__ = ["HIT_THRESHOLD_ANGSTROM", "NM_TO_ANGSTROM", "cut_index", "ets", "is_hit", "kabsch_rmsd", "straight_targets",
           "max_energy_to_cut", "path_metrics", "rmsd_at_cut_angstrom"]

#: hit threshold of the protocol: C-alpha RMSD to the target at the cut frame, Angstrom (inclusive)
HIT_THRESHOLD_ANGSTROM = 1.0
NM_TO_ANGSTROM = 10.0


def _xyz(path) -> np.ndarray:
    """``(T, n_atoms, 3)`` float64 nm from an mdtraj.Trajectory or an array ``(T, n_atoms, 3)`` / ``(n_atoms, 3)``."""
    xyz = np.asarray(path.xyz if isinstance(path, mdtraj.Trajectory) else path, dtype=np.float64)
    if xyz.ndim == 2:
        xyz = xyz[None]
    if xyz.ndim != 3 or xyz.shape[-1] != 3 or xyz.shape[0] < 1:
        raise ValueError(f"a path must be (n_frames >= 1, n_atoms, 3) nm; got shape {xyz.shape}")
    return xyz


def _target(target, n_atoms: int) -> np.ndarray:
    t = np.asarray(target.xyz[0] if isinstance(target, mdtraj.Trajectory) else target, dtype=np.float64)
    if t.shape != (n_atoms, 3):
        raise ValueError(f"the target must be ({n_atoms}, 3) nm (the path's atoms); got shape {t.shape}")
    return t


def _indices(atom_indices, n_atoms: int) -> np.ndarray:
    idx = np.arange(n_atoms) if atom_indices is None else np.asarray(atom_indices, dtype=int).reshape(-1)
    if len(idx) < 3 or idx.min() < 0 or idx.max() >= n_atoms:
        raise ValueError(f"atom_indices must select at least 3 atoms in [0, {n_atoms}); got {len(idx)} indices")
    return idx


def kabsch_rmsd(path, target, atom_indices: Sequence[int] | None = None) -> np.ndarray:
    """RMSD of every frame to ``target`` after optimal rigid superposition.

    Parameters
    ----------
    path : mdtraj.Trajectory or array ``(T, n_atoms, 3)`` (or ``(n_atoms, 3)``), nm
    target : array ``(n_atoms, 3)`` nm (or a one-frame Trajectory), same atom order as ``path``
    atom_indices : atoms that are superposed and compared (None: all)

    Returns
    -------
    ndarray ``(T,)``, nm
    """
    xyz = _xyz(path)
    idx = _indices(atom_indices, xyz.shape[1])
    t = _target(target, xyz.shape[1])
    return np.sqrt(np.maximum(superposed_msd(xyz[:, idx], t[idx]), 0.0))


def cut_index(traj, target, atom_indices: Sequence[int] | None) -> int:
    """The cut frame: the frame of ``traj`` closest to ``target`` by Kabsch RMSD over ``atom_indices``
    (the heavy atoms in the protocol); the first such frame on ties.

    Parameters
    ----------
    traj : mdtraj.Trajectory or array ``(T, n_atoms, 3)`` nm
    target : ``(n_atoms, 3)`` nm
    atom_indices : the atoms compared (heavy atoms)

    Returns
    -------
    int in ``[0, T)``
    """
    return int(np.argmin(kabsch_rmsd(traj, target, atom_indices)))


def rmsd_at_cut_angstrom(traj, target, atom_indices: Sequence[int] | None, cut: int | None = None) -> float:
    """Kabsch RMSD (Angstrom) over ``atom_indices`` between frame ``cut`` of ``traj`` and ``target``.

    ``cut`` None: the cut frame of ``atom_indices`` itself (:func:`cut_index`), i.e. the smallest
    RMSD along the path. ``traj``: Trajectory or ``(T, n_atoms, 3)`` nm; ``target`` ``(n_atoms, 3)`` nm.
    """
    xyz = _xyz(traj)
    if cut is None:
        cut = cut_index(xyz, target, atom_indices)
    if not -xyz.shape[0] <= int(cut) < xyz.shape[0]:
        raise IndexError(f"cut {cut} is outside the path's {xyz.shape[0]} frames")
    return float(kabsch_rmsd(xyz[int(cut)], target, atom_indices)[0] * NM_TO_ANGSTROM)


def is_hit(ca_rmsd_angstrom, threshold_angstrom: float = HIT_THRESHOLD_ANGSTROM):
    """Hit: C-alpha RMSD at the cut frame ``<= threshold_angstrom`` (inclusive). Scalar or array in,
    bool or bool array out."""
    hit = np.asarray(ca_rmsd_angstrom, dtype=np.float64) <= float(threshold_angstrom)
    return bool(hit) if hit.ndim == 0 else hit


def max_energy_to_cut(energies, cuts) -> np.ndarray:
    """Maximum potential energy of each path over frames ``0..cut`` (the cut frame included).

    Parameters
    ----------
    energies : ``(P, T)`` kJ/mol, the potential energy of every frame of every path
    cuts : ``(P,)`` int, the cut frame of each path

    Returns
    -------
    ndarray ``(P,)`` kJ/mol
    """
    e = np.asarray(energies, dtype=np.float64)
    c = np.asarray(cuts, dtype=int).reshape(-1)
    if e.ndim != 2 or e.shape[0] != len(c):
        raise ValueError(f"energies must be (P, T) with P = len(cuts) = {len(c)}; got shape {e.shape}")
    if len(c) and (c.min() < 0 or c.max() >= e.shape[1]):
        raise IndexError(f"cut frames must lie in [0, {e.shape[1]}); got {c.min()} .. {c.max()}")
    upto = np.arange(e.shape[1])[None, :] <= c[:, None]
    if np.isnan(e[upto]).any():
        raise ValueError("energies contain NaN up to a cut frame: sample the paths with compute_energies=True")
    return np.where(upto, e, -np.inf).max(1)


def _mean_std(values: np.ndarray) -> tuple[float | None, float | None]:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def ets(energies, cuts, hits) -> tuple[float | None, float | None]:
    """ETS (kJ/mol): mean and std (ddof=1) over the hitting paths of :func:`max_energy_to_cut`.

    ``energies`` ``(P, T)`` kJ/mol, ``cuts`` ``(P,)`` frames, ``hits`` ``(P,)`` bool. Returns
    ``(None, None)`` when no path hits, ``(mean, None)`` when one does.
    """
    h = np.asarray(hits, dtype=bool).reshape(-1)
    m = max_energy_to_cut(energies, cuts)
    if len(h) != len(m):
        raise ValueError(f"hits has {len(h)} entries for {len(m)} paths")
    return _mean_std(m[h])


def path_metrics(trajectories, energies, target, heavy_indices: Sequence[int], ca_indices: Sequence[int],
                 threshold_angstrom: float = HIT_THRESHOLD_ANGSTROM, timestep_ps: float | None = None) -> dict:
    """All protocol metrics of a set of paths (JSON-ready).

    Parameters
    ----------
    trajectories : list of P paths, each an mdtraj.Trajectory or array ``(T, n_atoms, 3)`` nm (a
        :class:`~tps_diffusion.molecular.restrained.PathSet`'s ``trajectories``); all of equal length
    energies : ``(P, T)`` kJ/mol, potential energy of every frame (``PathSet.energies``)
    target : ``(n_atoms, 3)`` nm, the target structure
    heavy_indices : atoms of the cut and of the RMSD (heavy atoms)
    ca_indices : atoms of the hit criterion (C-alpha)
    threshold_angstrom : hit threshold on the C-alpha RMSD at the cut (inclusive)
    timestep_ps : time between recorded frames; when given, the mean cut time is reported

    Returns
    -------
    dict with summary values (``n_paths``, ``n_hits``, ``hit_fraction``, ``hit_percent``,
    ``rmsd_angstrom_mean``/``_std``, ``ets_kj_mol_mean``/``_std``, ...) and per-path lists
    (``cut_index``, ``rmsd_angstrom``, ``ca_rmsd_angstrom``, ``hit``, ``max_energy_to_cut_kj_mol``).
    """
    trajectories = list(trajectories)
    if not trajectories:
        raise ValueError("no paths to score")
    e = np.asarray(energies, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] != len(trajectories):
        raise ValueError(f"energies must be (P, T) with P = {len(trajectories)} paths; got shape {e.shape}")
    cuts, rmsd, ca = [], [], []
    for t in trajectories:  # one path at a time in float64 (bounded memory)
        xyz = _xyz(t)
        if xyz.shape[0] != e.shape[1]:
            raise ValueError(f"a path has {xyz.shape[0]} frames but energies {e.shape[1]} per path")
        c = cut_index(xyz, target, heavy_indices)
        cuts.append(c)
        rmsd.append(rmsd_at_cut_angstrom(xyz, target, heavy_indices, c))
        ca.append(rmsd_at_cut_angstrom(xyz, target, ca_indices, c))
    cuts, rmsd, ca = np.array(cuts, dtype=int), np.array(rmsd), np.array(ca)
    hit = np.atleast_1d(is_hit(ca, threshold_angstrom))
    peak = max_energy_to_cut(e, cuts)
    rmsd_mean, rmsd_std = _mean_std(rmsd)
    ets_mean, ets_std = _mean_std(peak[hit])
    out = {
        "n_paths": len(trajectories),
        "n_hits": int(hit.sum()),
        "hit_fraction": float(hit.mean()),
        "hit_percent": float(100.0 * hit.mean()),
        "rmsd_angstrom_mean": rmsd_mean,
        "rmsd_angstrom_std": rmsd_std,
        "ca_rmsd_angstrom_mean": float(ca.mean()),
        "ca_rmsd_angstrom_std": _mean_std(ca)[1],
        "ets_kj_mol_mean": ets_mean,
        "ets_kj_mol_std": ets_std,
        "max_energy_to_cut_all_paths_kj_mol_mean": float(peak.mean()),
        "cut_frame_mean": float(cuts.mean()),
        "cut_time_ps_mean": None if timestep_ps is None else float((cuts.mean() + 1) * timestep_ps),
        "hit_threshold_angstrom": float(threshold_angstrom),
        "cut_index": cuts.tolist(),
        "rmsd_angstrom": rmsd.tolist(),
        "ca_rmsd_angstrom": ca.tolist(),
        "hit": hit.tolist(),
        "max_energy_to_cut_kj_mol": peak.tolist(),
    }
    return out


def straight_targets(first: np.ndarray, last: np.ndarray, n_points: int) -> np.ndarray:
    """``n_points`` targets ``(N, n_sel, 3)`` nm on the straight line from ``first`` to ``last``
    (both ``(n_sel, 3)`` nm in one frame), endpoints included."""
    s = np.linspace(0.0, 1.0, int(n_points))[:, None, None]
    first, last = np.asarray(first, dtype=np.float64), np.asarray(last, dtype=np.float64)
    return first[None] + s * (last - first)[None]
