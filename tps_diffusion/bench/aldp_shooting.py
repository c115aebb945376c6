"""Two-way shooting from the generated alanine dipeptide paths: the ``shooting`` section of ``bench aldp``
(docs/shooting.md).

From the first ``recipe.shoot_paths`` paths of the main mode, :func:`~tps_diffusion.molecular.shooting.
shooting_frames` picks each path's highest-energy frame between leaving A and entering B and frames
around it; every frame gets ``recipe.shoot_shots`` two-way shots under the unbiased force field
(amber99sbildn, vacuum, the bench's temperature, time step and friction). Reported: the reactive fraction
of the shots, the histogram of the frames' two-way committor, the transition-state ensemble (TSE:
frames with ``|p_B - 1/2| < tse_tol``) checked with independent one-way committor shots (its
histogram should peak at 1/2), the unbiased crossings, their relaxed energy, the transition path
time and the cost in force evaluations.

States: A = C5 + C7eq (the phi < 0 basins), B = C7ax. The generated paths run C5 -> C7eq -> phi ~ 0
-> C7ax; C5 and C7eq interconvert within picoseconds, while the barrier at phi ~ 0 separates both
from C7ax. With A = C5 alone a half that relaxes into C7eq must still wait for C7eq -> C5: on the
benchmark's written paths that cost ~16x more steps per shot and left a sixth of the halves
undecided after 10 ps (12 % instead of 33 % reactive shots, 3 frames on each of 20 paths).

Crossing: the same definition as for the generated paths (:func:`~tps_diffusion.bench.aldp_paths.
crossing_analysis`): on each reactive trajectory, the first frame with phi > 0 after its last
frame inside the C5 ball (a trajectory that starts in C7eq: its first frame with phi > 0), near
phi ~ 0 if phi < pi/2 there. Relaxed crossing energy: that frame minimised with phi and psi held
fixed, minus the C5 minimum (compare with the lowest relaxed barrier, ~33.9 kJ/mol).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import mdtraj
import numpy as np

from ..molecular.committor import committor, wilson_interval
from ..molecular.dynamics import Dynamics
from ..molecular.shooting import ShootingFrames, in_states, two_way_shooting
from ..molecular.system import minimize_with_fixed_torsions
from .aldp_paths import START, crossing_analysis, dihedrals

if TYPE_CHECKING:
    from .aldp import Recipe

__all__ = ["join_frames", "shooting_section"]

P_B_BINS = np.round(np.linspace(0.0, 1.0, 11), 2)


def join_frames(parts: list[ShootingFrames]) -> ShootingFrames | None:
    """The frames of several :class:`ShootingFrames` (path indices already global) as one; None if none."""
    if not parts:
        return None
    return ShootingFrames(mdtraj.join([p.trajectory for p in parts], check_topology=False),
                          np.concatenate([p.path for p in parts]), np.concatenate([p.frame for p in parts]))


def _histogram(p_b: np.ndarray) -> dict:
    p_b = p_b[np.isfinite(p_b)]
    counts = np.histogram(p_b, P_B_BINS)[0]
    peak = int(counts.argmax())
    return {"bin_edges": P_B_BINS.tolist(), "counts": counts.tolist(),
            "peak_bin": [float(P_B_BINS[peak]), float(P_B_BINS[peak + 1])] if len(p_b) else None,
            "mean": float(p_b.mean()) if len(p_b) else None, "n": int(len(p_b))}


def shooting_section(system, frames: ShootingFrames, recipe: Recipe, n_paths: int, seed: int, e0: float,
                     progress: bool) -> dict:
    """Shoot from ``frames`` (taken from the first ``n_paths`` paths of the main mode) and reduce the
    result to the report's ``shooting`` section; ``e0``: the minimised C5 energy (kJ/mol)."""
    generation_evals = n_paths * recipe.frames_per_path  # one force evaluation per step of each path
    in_a, in_b = in_states(system, *recipe.shoot_state_a), in_states(system, *recipe.shoot_state_b)
    dyn = Dynamics(temperature=recipe.temperature, timestep=recipe.timestep, friction=recipe.friction, seed=seed,
                   n_workers=recipe.n_workers)
    ci = recipe.shoot_check_interval
    max_steps = max(1, math.ceil(recipe.shoot_max_ps / recipe.timestep / ci)) * ci
    res = two_way_shooting(system, frames, in_a, in_b, n_shots=recipe.shoot_shots, max_steps=max_steps,
                           check_interval=ci, dynamics=dyn, tps_moves=recipe.shoot_tps_moves,
                           tse_tol=recipe.shoot_tse_tol, progress=progress)
    summary = res.as_dict()

    # TSE check: independent one-way committor shots from the TSE frames
    tse = res.tse()[:recipe.tse_check_frames]
    check = None
    if len(tse):
        check = committor(system, frames.trajectory[tse], in_a, in_b, n_shots=recipe.tse_check_shots,
                          max_steps=max_steps, check_interval=ci, dynamics=replace(dyn, seed=seed + 1, n_workers=1),
                          progress=progress)

    # unbiased crossings
    centre = system.states[START].centre
    cross_phi, cross_psi, near, cross_xyz = [], [], [], []
    for t in res.trajectories:
        phi, psi = dihedrals(system, t)
        c = crossing_analysis(phi[None], psi[None], centre, recipe.hit_radius)
        if c["index"][0] >= 0:
            cross_phi.append(c["phi"][0])
            cross_psi.append(c["psi"][0])
            near.append(bool(c["near_zero"][0]))
            if len(cross_xyz) < recipe.n_relaxed:
                cross_xyz.append(np.asarray(t.xyz[c["index"][0]], dtype=np.float64))
    torsions = [system.cvs["phi"], system.cvs["psi"]]
    relaxed = np.array([system.potential_energy(minimize_with_fixed_torsions(system, x, torsions)) - e0
                        for x in cross_xyz])
    cross_phi, cross_psi = np.array(cross_phi), np.array(cross_psi)
    path_ps = res.path_ps
    low, high = wilson_interval(res.n_reactive, res.n_shots)
    shots_evals = summary["n_force_evaluations_shots"]
    tps = res.tps.as_dict() if res.tps is not None else None
    return {
        "state_a": "+".join(recipe.shoot_state_a), "state_b": "+".join(recipe.shoot_state_b),
        "n_paths": n_paths, "n_paths_with_frames": int(len(np.unique(frames.path))), "n_frames": len(frames),
        "frame_selection": "max_energy",
        "frames_per_path": recipe.shoot_per_path, "shots_per_frame": recipe.shoot_shots,
        "max_ps": max_steps * recipe.timestep, "frame_interval_ps": res.frame_interval_ps,
        "n_shots": res.n_shots, "n_reactive": res.n_reactive, "reactive_fraction": res.reactive_fraction,
        "reactive_fraction_ci95": [float(low), float(high)], "n_undecided_halves": summary["n_undecided_halves"],
        "frame_p_B_histogram": _histogram(res.committor.p_B),
        "committor_note": "two-way p_B per frame from both halves of its shots (2 x shots_per_frame committor shots)",
        "tse_tol": res.tse_tol, "n_tse_frames": int(len(res.tse())),
        "tse_check": None if check is None else {
            "n_frames": int(len(tse)), "shots_per_frame": recipe.tse_check_shots, **_histogram(check.p_B),
            "n_force_evaluations": check.n_force_evaluations},
        "crossing_fraction": float(len(cross_phi) / res.n_reactive) if res.n_reactive else None,
        "crossing_near_phi0_fraction": float(np.mean(near)) if near else None,
        "crossing_phi_deg_mean": float(np.degrees(cross_phi).mean()) if len(cross_phi) else None,
        "crossing_psi_deg_mean": float(np.degrees(np.arctan2(np.sin(cross_psi).mean(), np.cos(cross_psi).mean())))
        if len(cross_psi) else None,
        "crossing_relaxed_energy_mean": float(relaxed.mean()) if len(relaxed) else None,
        "crossing_relaxed_energy_std": float(relaxed.std()) if len(relaxed) else None,
        "crossing_relaxed_energy_n": int(len(relaxed)),
        "crossing_definition": "on each reactive trajectory the first frame with phi > 0 after its last frame inside "
                               "the C5 ball (as for the generated paths); relaxed: minimised with phi and psi held, "
                               "minus the C5 minimum (kJ/mol)",
        "mean_path_ps": res.mean_path_ps, "path_ps_std": float(path_ps.std()) if len(path_ps) else None,
        "path_ps_median": float(np.median(path_ps)) if len(path_ps) else None,
        "path_time_note": "transition path time: first frame (in A) to last frame (in B) of each reactive "
                          "trajectory, resolution frame_interval_ps",
        "tps": tps,
        "energy_evals_generation": int(generation_evals),
        "energy_evals_shots": int(shots_evals),
        "energy_evals_reactive_total": int(generation_evals + shots_evals),
        "energy_evals_tps": tps["n_force_evaluations"] if tps else 0,
        "energy_evals_tse_check": check.n_force_evaluations if check is not None else 0,
        "seconds": res.wall_time_s,
    }
