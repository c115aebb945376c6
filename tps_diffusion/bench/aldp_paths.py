"""Path sampling and path statistics of the all-atom alanine dipeptide benchmark, per geodesic mode.

:func:`sample_mode` samples annealed Langevin paths along one geodesic in chunks and reduces
each chunk to what the report needs (MaxEnergy, hits, final and crossing dihedrals, state
visits, relaxed crossing energies, a few tracks and trajectories, the frames to shoot from for
:mod:`tps_diffusion.bench.aldp_shooting`); :func:`mode_entry` turns
that into the JSON entry of the mode. :func:`crossing_analysis` finds where each path first
reaches phi > 0 after leaving the start state (see :mod:`tps_diffusion.bench.aldp`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import mdtraj
import numpy as np

from ..molecular.catalogue import ALDP_STATE_RADIUS
from ..molecular.dynamics import Dynamics
from ..molecular.paths import path_targets, sample_molecular_paths
from ..molecular.restrained import PathSet
from ..molecular.shooting import NoShootingFrames, ShootingFrames, in_states, shooting_frames
from ..molecular.system import minimize_with_fixed_torsions
from ..utils.angles import wrap

if TYPE_CHECKING:
    from .aldp import Recipe

__all__ = ["END", "START", "chunk_dynamics", "crossing_analysis", "dihedrals", "mode_entry", "sample_mode",
           "target_dihedrals"]

START, END = "C5", "C7ax"


def crossing_analysis(phi: np.ndarray, psi: np.ndarray, start_centre, radius: float = ALDP_STATE_RADIUS) -> dict:
    """Where each path first reaches phi > 0 after leaving the start state for good.

    ``phi``, ``psi``: ``(P, T)`` rad along the paths (start structure not included; it counts as
    inside the start ball). Returns ``index (P,)`` (-1: no crossing), ``phi``/``psi`` at the
    crossing frame (NaN if none) and ``near_zero (P,)`` (crossing phi < pi/2).
    """
    d = np.stack([phi - start_centre[0], psi - start_centre[1]], -1)
    d = wrap(d)
    inside = np.sqrt((d**2).sum(-1)) <= radius
    P, T = phi.shape
    t = np.arange(T)
    last_in = np.where(inside, t, -1).max(1)  # -1: left at once (the start is inside)
    after = (t[None] > last_in[:, None]) & (phi > 0)
    has = after.any(1)
    index = np.where(has, after.argmax(1), -1)
    rows = np.arange(P)
    cphi = np.where(has, phi[rows, np.maximum(index, 0)], np.nan)
    cpsi = np.where(has, psi[rows, np.maximum(index, 0)], np.nan)
    return {"index": index, "phi": cphi, "psi": cpsi, "near_zero": has & (cphi < np.pi / 2)}


def dihedrals(system, traj: mdtraj.Trajectory) -> tuple[np.ndarray, np.ndarray]:
    return system.cvs["phi"].compute(traj), system.cvs["psi"].compute(traj)


def target_dihedrals(system, feat, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(phi, psi) of the restraint targets (phi/psi atoms are heavy atoms: present in any selection
    containing them; other atoms filled from the reference structure)."""
    full = np.repeat(system.positions[None], len(targets), 0)
    full[:, feat.atom_indices] = targets
    return dihedrals(system, system.to_trajectory(full))


def chunk_dynamics(recipe: Recipe, seed: int, chunk: int) -> Dynamics:
    """The sampler settings of chunk ``chunk`` of a mode sampled with ``seed`` (:func:`sample_mode`)."""
    return Dynamics(temperature=recipe.temperature, timestep=recipe.timestep, friction=recipe.friction,
                    seed=seed * 100_003 + chunk, n_workers=recipe.n_workers)


def sample_mode(system, model, geo, recipe: Recipe, n_paths: int, steps_per_point: int, seed: int, e0: float,
                keep_traj: int, n_plot: int, progress: bool, n_shoot: int = 0,
                on_chunk: Callable[[PathSet], None] | None = None) -> dict:
    """Sample ``n_paths`` in chunks; reduce each chunk to the statistics (bounded memory). The
    shooting frames of the first ``n_shoot`` paths (:func:`~tps_diffusion.molecular.shooting.
    shooting_frames`, ``recipe.shoot_per_path`` per path) are kept as ``"shoot_frames"``.
    ``on_chunk``: called with every chunk's PathSet (e.g. to score it another way) before it is dropped."""
    centre = system.states[START].centre
    target = system.states[END]
    max_e, hit, fin, cross, visits = [], [], [], [], []
    plot_tracks, kept, cross_xyz, seconds, n_force, n_energy = [], [], [], 0.0, 0, 0
    in_a, in_b = in_states(system, *recipe.shoot_state_a), in_states(system, *recipe.shoot_state_b)
    shoot_parts = []
    done, chunk = 0, 0
    while done < n_paths:
        n = min(recipe.chunk_paths, n_paths - done)
        dyn = chunk_dynamics(recipe, seed, chunk)
        ps = sample_molecular_paths(system, model, geo, n, steps_per_point, dynamics=dyn, progress=progress)
        if on_chunk is not None:
            on_chunk(ps)
        seconds += ps.wall_time_s
        n_force += ps.n_force_evaluations
        n_energy += ps.n_energy_evaluations
        joined = ps.joined()
        phi, psi = (a.reshape(n, -1) for a in dihedrals(system, joined))
        max_e.append(ps.max_energy() - e0)
        hit.append(target.contains(ps.final_frames()))
        fin.append(np.stack([phi[:, -1], psi[:, -1]], 1))
        c = crossing_analysis(phi, psi, centre, recipe.hit_radius)
        cross.append(c)
        pp = np.stack([phi, psi], -1)
        visits.append({name: (st.distance_cv(pp) <= st.radius).any(1) for name, st in system.states.items()})
        for i in range(n):
            if c["index"][i] >= 0 and len(cross_xyz) < recipe.n_relaxed:
                cross_xyz.append(np.asarray(ps[i].xyz[c["index"][i]], dtype=np.float64))
            if len(plot_tracks) < n_plot:
                plot_tracks.append(np.stack([phi[i], psi[i]], 1).astype(np.float32))
            if len(kept) < keep_traj:
                kept.append(ps[i][recipe.write_stride - 1::recipe.write_stride])
        if done < n_shoot:
            try:
                f = shooting_frames(ps, in_a, in_b, per_path=recipe.shoot_per_path)
            except NoShootingFrames:  # no path of this chunk leaves A: nothing to shoot from
                f = None
            if f is not None:
                keep = np.flatnonzero(f.path < n_shoot - done)
                shoot_parts.append(ShootingFrames(f.trajectory[keep], f.path[keep] + done, f.frame[keep]))
        done += n
        chunk += 1
        del ps, joined
    max_e, hit, fin = np.concatenate(max_e), np.concatenate(hit), np.concatenate(fin)
    cr = {k: np.concatenate([c[k] for c in cross]) for k in cross[0]}
    has = cr["index"] >= 0
    visit = {name: np.concatenate([v[name] for v in visits]) for name in visits[0]}
    torsions = [system.cvs["phi"], system.cvs["psi"]]
    relaxed = np.array([system.potential_energy(minimize_with_fixed_torsions(system, x, torsions)) - e0
                        for x in cross_xyz])
    return {"max_e": max_e, "hit": hit, "final": fin, "crossing": cr, "has_crossing": has, "visit": visit,
            "tracks": plot_tracks,
            "relaxed": relaxed,
            "kept": kept, "seconds": seconds, "n_force": n_force, "n_energy": n_energy, "shoot_frames": shoot_parts}


def mode_entry(s: dict, geo, geo_seconds: float, n_paths: int, system, model, timestep: float,
               steps_per_point: int) -> dict:
    cr, has = s["crossing"], s["has_crossing"]
    check, core = geo.metric_check[0], geo.geodesic
    _, k = path_targets(system, model, geo)
    return {
        "n_paths": n_paths,
        "n_points": int(geo.curve.shape[1]),
        "steps_per_point": int(steps_per_point),
        "hit_rate": float(s["hit"].mean()),
        "max_energy_mean": float(s["max_e"].mean()),
        "max_energy_std": float(s["max_e"].std()),
        "max_energy_median": float(np.median(s["max_e"])),
        "max_energy_mean_hits": float(s["max_e"][s["hit"]].mean()) if s["hit"].any() else None,
        "crossing_near_phi0_fraction": float(cr["near_zero"][has].mean()) if has.any() else None,
        "crossing_fraction": float(has.mean()),
        "crossing_phi_deg_mean": float(np.degrees(cr["phi"][has]).mean()) if has.any() else None,
        "crossing_psi_deg_mean": float(np.degrees(np.arctan2(np.sin(cr["psi"][has]).mean(),
                                                             np.cos(cr["psi"][has]).mean())))
        if has.any() else None,
        "crossing_time_ps_mean": float(cr["index"][has].mean() + 1) * timestep if has.any() else None,
        "hits_crossing_near_phi0_fraction": float(cr["near_zero"][s["hit"]].mean()) if s["hit"].any() else None,
        "visit_fraction": {name: float(v.mean()) for name, v in s["visit"].items()},
        "crossing_relaxed_energy_mean": float(s["relaxed"].mean()) if len(s["relaxed"]) else None,
        "crossing_relaxed_energy_std": float(s["relaxed"].std()) if len(s["relaxed"]) else None,
        "crossing_relaxed_energy_n": int(len(s["relaxed"])),
        "energy_evals_sampling": int(s["n_force"]),
        "energy_evals_analysis": int(s["n_energy"]),
        "sampling_seconds": s["seconds"],
        "geodesic_seconds": geo_seconds,
        "geodesic_steps": core.steps_done,
        "curve_energy": float(core.energy[0]),
        "curve_length": float(core.length[0]),
        "min_lambda": float(core.min_lambda[0]),
        "stiffness_min_kj_mol_nm2": float(k.min()),
        "stiffness_max_kj_mol_nm2": float(k.max()),
        "metric_negative_mass": check.negative_mass,
        "metric_negative_fraction": check.negative_fraction,
        **({"min_kl_nats": float(core.kl.min())} if core.kl is not None else {}),
        **({"geodesic_message": core.message} if core.message else {}),
    }
