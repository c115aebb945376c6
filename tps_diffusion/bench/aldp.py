"""All-atom alanine dipeptide C5 -> C7ax under the real force field (OpenMM), vacuum, 300 K.

Pipeline (:mod:`tps_diffusion.molecular`; docs/method.md, sections 5-7): plain MD started in the C5 and C7ax
minima (basins only) -> Cartesian features (Kabsch-aligned, normalised heavy atoms) ->
denoiser -> geodesic C5 -> C7ax in diffusion spacetime -> annealed Langevin under
amber99sbildn with a harmonic restraint towards the geodesic's targets -> hit rate, MaxEnergy
(raw force-field potential, kJ/mol, relative to the minimised C5 energy), where the paths cross
phi = 0 or phi = pi, and the cost in energy evaluations.

Main figures: the low-variance geodesic (log-SNR kept above ``rho_var`` = 1). Why not the
unconstrained one: with basin-only data the unconstrained geodesic dips to log-SNR ~ -1 between
the basins, where the targets ``x/alpha`` are blurred averages of C5 and C7ax (their phi runs
through +-pi) and the restraint is soft (~400 kJ/mol/nm^2); the force field then picks the phi ~ 0
route by itself, but the restraint stiffens again only near C7ax and drags the molecule over the
barrier late, which costs ~45 kJ/mol of MaxEnergy over the low-variance paths and needs twice the
steps per point (K = 32 vs 16) for >= 95 % hits. The low-variance geodesic keeps the posterior
sharp, so its targets stay near real structures and run C5 -> C7eq -> phi ~ 0 -> C7ax, the
physical route. The other modes (unconstrained with K = 32; avoiding the C7eq state, which
forces the phi ~ pi route) run with fewer paths and are reported under ``modes``.

Crossing: for every path, the frames after its last frame inside the C5 ball (radius 0.75 rad
in periodic (phi, psi); the start structure counts as inside) are scanned for the first frame
with phi > 0. A path that left C5 towards C7eq and rotated phi through 0 arrives there with
phi just above 0; one that rotated the other way (through phi = +-pi, over the phi ~ 120 deg
barrier) arrives with phi near +pi. ``crossing_near_phi0_fraction`` counts crossings with
phi < pi/2 among paths that have one. ``crossing_relaxed_energy_*``: the crossing frames
minimised with (phi, psi) held fixed, i.e. the adiabatic energy where the paths cross, to compare
with the lowest relaxed barrier (~33.9 kJ/mol at phi ~ 0).

Shooting (report section ``shooting``, :mod:`tps_diffusion.bench.aldp_shooting`): two-way shots
under the unbiased force field from the highest-energy frames of the first ``shoot_paths``
generated paths give unbiased reactive trajectories (C5 + C7eq -> C7ax): the reactive fraction,
the committor histogram of the transition-state ensemble, the unbiased crossings and their relaxed
energy, the transition path time and the cost; optionally a few TPS moves per trajectory.

TPS-DPS's protocol (report section ``tpsdps_protocol``, :mod:`tps_diffusion.bench.aldp_tpsdps`):
the main mode's paths and a steered-MD baseline with the same budget (the same sampler, start,
N, K and seeds on straight-line targets between the geodesic's first and last targets, with a
constant stiffness equal to the geodesic's largest) scored the way TPS-DPS (Seong et al., arXiv
2405.19961) scores its paths: cut at the frame closest to the target, heavy-atom RMSD there,
hit by their (phi, psi) criterion there, and ETS with energies re-evaluated under their set-up
(amber99sbildn, PME 1 nm, 2.558 nm box, HBonds) next to ours; published anchors are copied in.
"""


from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mdtraj
import numpy as np
import torch

from ..core.checks import check_int, check_lam, check_real, check_seed
from ..core.device import resolve_device
from ..core.geodesic import GeodesicConfig
from ..core.training import TrainConfig
from ..molecular.catalogue import ALDP_STATE_RADIUS, alanine_dipeptide
from ..molecular.dynamics import Dynamics
from ..molecular.formats import write_trajectory
from ..molecular.geodesic import molecular_geodesic
from ..molecular.md import run_md
from ..molecular.model import train_on_samples
from ..molecular.paths import path_targets
from ..molecular.restrained import sample_paths
from ..molecular.shooting import in_states
from ..plotting import plot_log_snr, plot_paths, save_figure
from ..utils.files import check_writable, write_json
from ..utils.provenance import versions
from .aldp_paths import (
    END,
    START,
    chunk_dynamics,
    crossing_analysis,
    dihedrals,
    mode_entry,
    sample_mode,
    target_dihedrals,
)
from .aldp_shooting import join_frames, shooting_section
from .aldp_tpsdps import TPSDPS_BOX_NM, ProtocolScorer, heavy_atoms, protocol_section, run_steered, tpsdps_system
from .path_metrics import straight_targets

__all__ = ["Recipe", "check_recipe", "crossing_analysis", "output_paths", "run"]



@dataclass
class Recipe:
    """Every setting of the benchmark (written to the JSON). Times in ps, temperatures in K."""

    # MD training data: independent runs from the basin minima (no transition data)
    md_starts: tuple[str, ...] = ("C5", "C7ax")
    md_runs_per_start: int = 4
    md_steps: int = 50_000
    md_equilibration: int = 0
    md_report_interval: int = 50
    md_temperature: float = 300.0
    md_timestep: float = 0.001
    md_friction: float = 1.0
    # features and model
    selection: str = "heavy"
    hidden: int = 256
    depth: int = 4
    sigma_data: float = 0.25
    train_steps: int = 6000
    batch_size: int = 512
    lr: float = 2e-3
    lam_sampling: str = "importance"
    # geodesics
    mode: str = "low_variance"  # the main figures (see the module docstring)
    other_modes: tuple[str, ...] = ("unconstrained", "avoid")
    lam_end: float = 4.0
    n_points: int = 64  # N: curve points = restraint blocks
    n_nodes: int = 2
    geodesic_steps: int = 300
    geodesic_lr: float = 0.1
    rho_var: float = 1.0  # low_variance and avoid: log-SNR kept above this
    avoid_state: str = "C7eq"
    avoid_lam: float = 4.0  # log-SNR of the forbidden point z* = (avoid_lam, features of the avoid_state minimum)
    rho_kl: float = 150.0  # avoid: KL (nats) from the forbidden point's posterior kept above this
    # annealed Langevin under the force field
    steps_per_point: int = 16  # K
    mode_steps_per_point: dict = field(default_factory=lambda: {"unconstrained": 32})  # K where a mode needs another
    timestep: float = 0.001
    friction: float = 1.0
    temperature: float = 300.0
    n_paths: int = 1000
    n_paths_other_modes: int = 100
    n_workers: int = 2
    chunk_paths: int = 100  # paths per sampler call (bounds memory: frames are reduced per chunk)
    # analysis and output
    hit_radius: float = ALDP_STATE_RADIUS
    n_relaxed: int = 200  # crossing frames minimised with (phi, psi) held fixed: relaxed energy where paths cross
    baseline_runs: int = 20  # unbiased MD segments as long as a path, for the thermal MaxEnergy baseline
    baseline_equilibration: int = 2000
    write_paths: int = 50  # paths written to the DCD (all frames / write_stride)
    write_stride: int = 4
    plot_paths: int = 30
    # two-way shooting from the main mode's paths (tps_diffusion.bench.aldp_shooting)
    shoot_paths: int = 100  # the first paths of the main mode
    shoot_state_a: tuple[str, ...] = ("C5", "C7eq")  # the phi < 0 basins (see aldp_shooting)
    shoot_state_b: tuple[str, ...] = ("C7ax",)
    shoot_per_path: int = 5  # the highest-energy frame between A and B and 4 around it
    shoot_shots: int = 4  # two-way shots per frame (8 committor shots per frame)
    shoot_max_ps: float = 10.0  # a half still in neither state after this is undecided
    shoot_check_interval: int = 10  # steps between state tests = frame spacing of the trajectories
    shoot_tps_moves: int = 2  # TPS moves per reactive trajectory (0: none)
    shoot_tse_tol: float = 0.1  # TSE: |p_B - 1/2| < tol
    tse_check_frames: int = 50  # TSE frames given independent committor shots
    tse_check_shots: int = 20
    # TPS-DPS's protocol (tps_diffusion.bench.aldp_tpsdps) on the main mode's paths and a steered baseline
    tpsdps_box_nm: float = TPSDPS_BOX_NM  # periodic box edge of their PME set-up
    tpsdps_margin: float = 4.0  # kJ/mol: PME energies of every frame within this of a path's highest screen energy
    tpsdps_exact_paths: int = 8  # hitting paths per method also evaluated under PME on every frame up to the cut

    @classmethod
    def quick(cls) -> "Recipe":
        """Small settings for a CI smoke test (< 90 s on one loaded core)."""
        return cls(md_runs_per_start=2, md_steps=10_000, hidden=64, depth=3, train_steps=400, batch_size=256,
                   n_points=24, geodesic_steps=40, steps_per_point=12, mode_steps_per_point={}, n_paths=8,
                   n_paths_other_modes=4, n_workers=1, chunk_paths=8, baseline_runs=2, baseline_equilibration=100,
                   write_paths=4, write_stride=2, plot_paths=8, n_relaxed=4, shoot_paths=4, shoot_per_path=2,
                   shoot_shots=1, shoot_max_ps=2.0, shoot_tps_moves=1, tse_check_frames=2, tse_check_shots=4,
                   tpsdps_exact_paths=1)

    def k_of(self, mode: str) -> int:
        """Steps per curve point (K) used for ``mode``."""
        return int(self.mode_steps_per_point.get(mode, self.steps_per_point))

    @property
    def frames_per_path(self) -> int:
        """Frames (= steps) of one path of the main mode."""
        return self.n_points * self.k_of(self.mode)


def check_recipe(recipe: Recipe) -> None:
    """One-line ValueError/TypeError for a recipe setting that cannot work, before any long work (MD, training)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be an aldp Recipe, got {type(recipe).__name__}; pass Recipe(...)")
    if not recipe.md_starts or any(not isinstance(s, str) for s in recipe.md_starts):
        raise ValueError(f"Recipe.md_starts must name at least one state (e.g. ('C5', 'C7ax')), got "
                         f"{recipe.md_starts!r}")
    counts = {  # field: (minimum, fix)
        "md_runs_per_start": (1, "run at least one MD run per start"),
        "md_steps": (1, "run the MD for at least one step"),
        "md_equilibration": (0, "use 0 or more equilibration steps"),
        "md_report_interval": (1, "record every N >= 1 steps"),
        "hidden": (1, "use a layer width such as 256"),
        "depth": (0, "use a number of hidden layers such as 4"),
        "steps_per_point": (1, "run at least one Langevin step per curve point"),
        "n_paths": (1, "sample at least one path (--paths)"),
        "n_paths_other_modes": (1, "sample at least one path per other mode"),
        "n_workers": (1, "use at least one worker process"),
        "chunk_paths": (1, "sample at least one path per chunk"),
        "n_relaxed": (0, "use 0 or more relaxed crossing frames"),
        "baseline_runs": (1, "run at least one thermal-baseline segment"),
        "baseline_equilibration": (0, "use 0 or more equilibration steps"),
        "write_paths": (1, "write at least one path to the DCD"),
        "write_stride": (1, "write every N >= 1 frames"),
        "plot_paths": (0, "plot 0 or more paths"),
        "shoot_paths": (0, "shoot from 0 (no shooting) or more paths"),
        "shoot_per_path": (1, "shoot from at least one frame per path"),
        "shoot_shots": (1, "make at least one two-way shot per frame"),
        "shoot_check_interval": (1, "test for the states every N >= 1 steps"),
        "shoot_tps_moves": (0, "use 0 or more TPS moves"),
        "tse_check_frames": (0, "check 0 or more TSE frames"),
        "tse_check_shots": (1, "make at least one committor shot per TSE frame"),
        "tpsdps_exact_paths": (0, "check 0 or more paths on every frame"),
    }
    for name, (minimum, fix) in counts.items():
        check_int(getattr(recipe, name), f"Recipe.{name}", minimum, fix)
    if recipe.md_report_interval > recipe.md_steps:
        raise ValueError(f"Recipe.md_report_interval ({recipe.md_report_interval}) exceeds md_steps "
                         f"({recipe.md_steps}), so no MD frame is recorded; lower the interval or run longer")
    for mode, k in recipe.mode_steps_per_point.items():
        check_int(k, f"Recipe.mode_steps_per_point[{mode!r}]", 1, "run at least one Langevin step per curve point")
    positive = {"md_temperature": "K", "md_timestep": "ps", "temperature": "K", "timestep": "ps",
                "sigma_data": "model units", "hit_radius": "rad", "shoot_max_ps": "ps"}
    for name, unit in positive.items():
        check_real(getattr(recipe, name), f"Recipe.{name}", low=0.0, low_open=True,
                   fix=f"use a positive value ({unit})")
    for name in ("md_friction", "friction"):
        check_real(getattr(recipe, name), f"Recipe.{name}", low=0.0, fix="use a friction >= 0 (1/ps), e.g. 1")
    check_real(recipe.tpsdps_box_nm, "Recipe.tpsdps_box_nm", low=2.0, low_open=True,
               fix="use a box edge above twice the 1 nm cutoff, e.g. 2.558 (nm)")
    check_real(recipe.tpsdps_margin, "Recipe.tpsdps_margin", low=0.0, low_open=True,
               fix="use a positive margin (kJ/mol), e.g. 4")
    check_real(recipe.shoot_tse_tol, "Recipe.shoot_tse_tol", low=0.0, high=0.5, low_open=True,
               fix="use a tolerance in (0, 0.5], e.g. 0.1")
    check_lam(recipe.avoid_lam, "Recipe.avoid_lam")
    TrainConfig(steps=recipe.train_steps, batch_size=recipe.batch_size, lr=recipe.lr, lam_sampling=recipe.lam_sampling)
    for mode in (recipe.mode, *recipe.other_modes):
        kw = dict(lam_end=recipe.lam_end, n_points=recipe.n_points, n_nodes=recipe.n_nodes,
                  steps=recipe.geodesic_steps, lr=recipe.geodesic_lr)
        if mode in ("low_variance", "avoid"):
            kw["rho_var"] = recipe.rho_var
        if mode == "avoid":
            kw["rho_kl"] = recipe.rho_kl
        GeodesicConfig(mode=mode, **kw)


def output_paths(out: Path) -> dict[str, Path]:
    """Files written next to the JSON ``out``."""
    return {"png": out.with_name(f"{out.stem}_paths.png"), "dcd": out.with_name(f"{out.stem}_paths.dcd"),
            "pdb": out.with_name(f"{out.stem}_paths.pdb")}


# ---------------------------------------------------------------------------------------------
# the benchmark


def run(out: str | Path, n_paths: int | None = None, seed: int = 0, quick: bool = False, device: str = "auto",
        overwrite: bool = False, progress: bool = True, recipe: Recipe | None = None) -> dict:
    """Run the whole benchmark; write ``out`` (JSON), ``<stem>_paths.png`` and the first
    ``recipe.write_paths`` paths as ``<stem>_paths.dcd`` + ``<stem>_paths.pdb`` next to it."""
    t_start = time.perf_counter()
    out = check_writable(out, overwrite)
    files = output_paths(out)
    for f in files.values():
        check_writable(f, overwrite)
    recipe = recipe or (Recipe.quick() if quick else Recipe())
    if n_paths is not None:
        check_int(n_paths, "n_paths (--paths)", 1, "sample at least one path")
        recipe.n_paths = int(n_paths)
    check_seed(seed, "seed")
    check_recipe(recipe)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    system = alanine_dipeptide(temperature=recipe.temperature)
    in_states(system, *recipe.shoot_state_a, *recipe.shoot_state_b)  # unknown state names fail here, before MD
    e0 = float(system.potential_energy(system.positions_of(START)))
    # TPS-DPS's set-up: both end structures minimised under it (as their simulations do when built)
    setup = tpsdps_system(system, recipe.tpsdps_box_nm)
    tpsdps_target = setup.minimize(system.positions_of(END), tolerance=10.0)
    e_min_tpsdps = {s: float(setup.potential_energy(setup.minimize(system.positions_of(s), tolerance=10.0)))
                    for s in (START, END)}
    heavy_mass = heavy_atoms(system)  # TPS-DPS's heavy atoms (mass > 1.1 Da)

    # 1. MD samples in the basins
    md_dynamics = Dynamics(temperature=recipe.md_temperature, timestep=recipe.md_timestep, friction=recipe.md_friction,
                           seed=seed, n_workers=recipe.n_workers)
    md = run_md(system, list(recipe.md_starts), recipe.md_steps, report_interval=recipe.md_report_interval,
                dynamics=md_dynamics, n_runs_per_start=recipe.md_runs_per_start,
                n_equilibration=recipe.md_equilibration, progress=progress)
    md_states = system.assign_states(md.trajectory)
    md_phi, md_psi = dihedrals(system, md.trajectory)
    start_of_frame = np.repeat(np.array(recipe.md_starts), recipe.md_runs_per_start)[md.run_index]
    # a frame "left its basin side" if its phi sign differs from its run's start basin (C5: phi < 0, C7ax: phi > 0)
    start_sign = np.array([np.sign(system.states[s].centre[0]) for s in start_of_frame])
    crossed = np.sign(md_phi) != start_sign
    # phi = +-pi is inside the C5 basin (C5 sits at -150 deg): count only frames out of every state ball
    crossed &= md_states == ""

    # 2. features + denoiser
    t0 = time.perf_counter()
    data_recipe = {"temperature_K": recipe.md_temperature, "starts": list(recipe.md_starts),
                   "runs_per_start": recipe.md_runs_per_start, "steps_per_run": recipe.md_steps,
                   "equilibration_steps": recipe.md_equilibration, "report_interval": recipe.md_report_interval,
                   "timestep_ps": recipe.md_timestep, "friction_per_ps": recipe.md_friction, "seed": seed,
                   "integrator": "LangevinMiddleIntegrator", "platform": md.settings["platform"]}
    model = train_on_samples(
        system, md, recipe.selection,
        model_config=dict(hidden=recipe.hidden, depth=recipe.depth, sigma_data=recipe.sigma_data),
        train_config=dict(steps=recipe.train_steps, batch_size=recipe.batch_size, lr=recipe.lr,
                          lam_sampling=recipe.lam_sampling, seed=seed),
        data_recipe=data_recipe, device=dev, progress=progress)
    training_seconds = time.perf_counter() - t0
    feat = model.featurizer

    # 3. geodesics and 4. paths, per mode
    modes = [recipe.mode] + [m for m in recipe.other_modes if m != recipe.mode]
    results, samples, geos = {}, {}, {}
    main_seed = seed + 1
    scorers = {}
    for i, mode in enumerate(modes):
        kw = dict(lam_end=recipe.lam_end, n_points=recipe.n_points, n_nodes=recipe.n_nodes, steps=recipe.geodesic_steps,
                  lr=recipe.geodesic_lr, seed=seed)
        if mode in ("low_variance", "avoid"):
            kw["rho_var"] = recipe.rho_var
        if mode == "avoid":
            kw["rho_kl"] = recipe.rho_kl
        t0 = time.perf_counter()
        geo = molecular_geodesic(model, system, START, END, mode=mode,
                                 avoid=recipe.avoid_state if mode == "avoid" else None, avoid_lam=recipe.avoid_lam,
                                 progress=progress, **kw)
        geo_seconds = time.perf_counter() - t0
        n = recipe.n_paths if i == 0 else recipe.n_paths_other_modes
        k = recipe.k_of(mode)
        on_chunk = None
        if i == 0:  # TPS-DPS's metrics of the main mode's paths
            scorers["geodesic"] = _scorer(system, setup, tpsdps_target, _start_of(system, geo), heavy_mass, recipe)
            on_chunk = lambda ps: scorers["geodesic"].add(ps.trajectories, ps.energies)  # noqa: E731
        s = sample_mode(system, model, geo, recipe, n, k, main_seed + i, e0, recipe.write_paths if i == 0 else 0,
                        recipe.plot_paths, progress, n_shoot=min(recipe.shoot_paths, n) if i == 0 else 0,
                        on_chunk=on_chunk)
        results[mode] = mode_entry(s, geo, geo_seconds, n, system, model, recipe.timestep, k)
        samples[mode], geos[mode] = s, geo

    main = results[recipe.mode]

    # steered-MD baseline with the main mode's budget, scored by TPS-DPS's protocol too
    tpsdps = _tpsdps_protocol(system, model, geos[recipe.mode], recipe, main_seed, e0, setup, tpsdps_target,
                              e_min_tpsdps, heavy_mass, scorers, main, progress)

    # thermal baseline: unbiased MD in C5, segments as long as one path
    base_dynamics = Dynamics(temperature=recipe.temperature, timestep=recipe.timestep, friction=recipe.friction,
                             seed=seed + 99, n_workers=recipe.n_workers)
    base = run_md(system, START, recipe.frames_per_path, report_interval=1, dynamics=base_dynamics,
                  n_runs_per_start=recipe.baseline_runs, n_equilibration=recipe.baseline_equilibration, progress=False)
    base_max = base.potential_energy.reshape(recipe.baseline_runs, -1).max(1) - e0

    # two-way shooting from the main mode's paths
    frames = join_frames(samples[recipe.mode]["shoot_frames"])
    shooting = None if frames is None else shooting_section(
        system, frames, recipe, min(recipe.shoot_paths, recipe.n_paths), seed + 7, e0, progress)

    # 5. outputs
    kept = samples[recipe.mode]["kept"]
    joined = mdtraj.join(kept, check_topology=False)
    write_trajectory(joined, files["dcd"], overwrite=overwrite, topology_pdb=files["pdb"])
    _plot(system, feat, model, md_phi, md_psi, samples, geos, files["png"], recipe, overwrite)

    md_evals = md.n_force_evaluations
    sampling_all = sum(r["energy_evals_sampling"] for r in results.values())
    report = {
        "benchmark": "aldp",
        "system": system.name,
        "transition": f"{START} -> {END}",
        "main_mode": recipe.mode,
        "n_paths": recipe.n_paths,
        "hit_rate": main["hit_rate"],
        "max_energy_mean": main["max_energy_mean"],
        "max_energy_std": main["max_energy_std"],
        "max_energy_reference": "raw force-field potential (amber99sbildn, vacuum) of every recorded frame, kJ/mol, "
                                "minus the minimised C5 energy",
        "e_c5_min_kj_mol": e0,
        "max_energy_thermal_baseline_mean": float(base_max.mean()),
        "max_energy_thermal_baseline_std": float(base_max.std()),
        "crossing_near_phi0_fraction": main["crossing_near_phi0_fraction"],
        "crossing_phi_deg_mean": main["crossing_phi_deg_mean"],
        "crossing_relaxed_energy_mean": main["crossing_relaxed_energy_mean"],
        "crossing_relaxed_energy_std": main["crossing_relaxed_energy_std"],
        "crossing_relaxed_energy_note": "crossing frames minimised with phi and psi held fixed (cosine restraints), "
                                        "force-field energy minus the C5 minimum; the lowest relaxed C5 -> C7ax "
                                        "barrier (phi ~ 0) is ~33.9 kJ/mol (docs/method.md, section 8)",
        "crossing_psi_deg_mean": main["crossing_psi_deg_mean"],
        "crossing_definition": "first frame with phi > 0 after the path's last frame inside the C5 ball (0.75 rad, "
                               "periodic phi/psi); near phi ~ 0 if that frame has phi < pi/2, else near phi ~ pi",
        "energy_evals_md_data": int(md_evals),
        "energy_evals_sampling": main["energy_evals_sampling"],
        "energy_evals_total": int(md_evals + main["energy_evals_sampling"]),
        "energy_evals_total_all_modes": int(md_evals + sampling_all),
        "energy_evals_analysis": int(sum(r["energy_evals_analysis"] for r in results.values()) + md.n_energy_evaluations
                                     + base.n_force_evaluations + base.n_energy_evaluations),
        "energy_evals_note": "MD data and sampling count integration steps (one force evaluation each); "
                             "energy_evals_analysis counts the extra evaluations made only to report energies "
                             "(every recorded path and MD frame, and the thermal-baseline MD; the minimisations of "
                             "crossing frames are not counted), not needed by the method",
        "md_seconds": md.wall_time_s,
        "training_seconds": training_seconds,
        "geodesic_seconds": main["geodesic_seconds"],
        "sampling_seconds": main["sampling_seconds"],
        "total_seconds": None,
        "md_data": {"n_frames": int(md.trajectory.n_frames),
                    "frames_per_state": {k: int((md_states == k).sum()) for k in [*system.states, ""]},
                    "frames_crossed_to_other_phi_side": int(crossed.sum()), "recipe": data_recipe},
        "model": {"dim": model.dim, "n_selected_atoms": feat.n_selected, "feature_scale_nm": feat.scale,
                  "endpoint_nn_q99": model.endpoint_check.nn_q99},
        "modes": results,
        "shooting": shooting,
        "tpsdps_protocol": tpsdps,
        "outputs": {"json": out.name, "png": files["png"].name, "dcd": files["dcd"].name, "pdb": files["pdb"].name,
                    "paths_written": len(kept), "frame_stride": recipe.write_stride,
                    "frames_per_written_path": int(kept[0].n_frames) if kept else 0,
                    "dcd_bytes": os.path.getsize(files["dcd"])},
        "recipe": asdict(recipe),
        "seed": seed,
        "quick": quick,
        "machine": {"device": str(dev), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(), "openmm_platform": md.settings["platform"],
                    "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None},
        "versions": versions("torch", "openmm", "mdtraj"),
    }
    report["total_seconds"] = time.perf_counter() - t_start
    write_json(out, report, overwrite)
    return report


def _start_of(system, geo) -> np.ndarray:
    """The full-atom start structure of the main mode's paths (what the sampler starts from)."""
    first = geo.start()
    return np.asarray(first.positions if first.positions is not None else system.positions_of(START), dtype=float)


def _scorer(system, setup, target: np.ndarray, start: np.ndarray, heavy, recipe: Recipe) -> ProtocolScorer:
    return ProtocolScorer(system, setup, target, start, float(system.potential_energy(start)), heavy,
                          recipe.tpsdps_margin, recipe.tpsdps_exact_paths)


def _tpsdps_protocol(system, model, geo, recipe: Recipe, main_seed: int, e0: float, setup, target: np.ndarray,
                     e_min_tpsdps: dict, heavy, scorers: dict, main: dict, progress: bool) -> dict:
    """Sample the steered baseline (the main mode's sampler, start, N, K and chunk seeds on straight-line
    targets with the geodesic's largest stiffness) and build the ``tpsdps_protocol`` section."""
    t0 = time.perf_counter()
    targets, stiffness = path_targets(system, model, geo)
    line = straight_targets(targets[0], targets[-1], len(targets))
    k_line = np.full(len(targets), float(stiffness.max()))
    start = _start_of(system, geo)
    k = recipe.k_of(recipe.mode)
    scorers["steered"] = steered = _scorer(system, setup, target, start, heavy, recipe)
    acc = {"hit": [], "max_e": [], "seconds": 0.0, "n_force": 0, "n_energy": 0}

    def sample(n: int, chunk: int):
        return sample_paths(system, model.featurizer, line, k_line, start, n, k,
                            dynamics=chunk_dynamics(recipe, main_seed, chunk), progress=progress)

    def consume(ps) -> None:
        steered.add(ps.trajectories, ps.energies)
        acc["hit"].append(system.states[END].contains(ps.final_frames()))
        acc["max_e"].append(ps.max_energy() - e0)
        acc["seconds"] += ps.wall_time_s
        acc["n_force"] += ps.n_force_evaluations
        acc["n_energy"] += ps.n_energy_evaluations

    run_steered(sample, recipe.n_paths, recipe.chunk_paths, consume)
    hit_ours, max_e = np.concatenate(acc["hit"]), np.concatenate(acc["max_e"])
    frame_ps = recipe.timestep  # one recorded frame per step
    common = {"n_points": len(targets), "steps_per_point": k}
    methods = {
        "geodesic": {**scorers["geodesic"].summary(frame_ps, e_min_tpsdps[START], e0), **common,
                     "what": f"the main mode's paths ({recipe.mode} geodesic)",
                     "n_force_evaluations": main["energy_evals_sampling"],
                     "stiffness_min_kj_mol_nm2": float(stiffness.min()),
                     "stiffness_max_kj_mol_nm2": float(stiffness.max()),
                     "hit_rate_our_criterion": main["hit_rate"], "max_energy_mean": main["max_energy_mean"]},
        "steered": {**steered.summary(frame_ps, e_min_tpsdps[START], e0), **common,
                    "what": "steered MD: the same sampler, start, N, K and seeds (the same force-evaluation budget) on "
                            "straight-line targets between the geodesic's first and last targets (aligned heavy-atom "
                            "frame) with a constant stiffness equal to the geodesic's largest",
                    "n_force_evaluations": int(acc["n_force"]), "n_energy_evaluations_analysis": int(acc["n_energy"]),
                    "stiffness_min_kj_mol_nm2": float(k_line.min()), "stiffness_max_kj_mol_nm2": float(k_line.max()),
                    "hit_rate_our_criterion": float(hit_ours.mean()), "max_energy_mean": float(max_e.mean()),
                    "max_energy_std": float(max_e.std()), "sampling_seconds": acc["seconds"]},
    }
    differences = (f"our paths: sampled in vacuum without cutoff and with flexible X-H bonds (LangevinMiddle, "
                   f"{recipe.timestep * 1000:g} fs, friction {recipe.friction:g}/ps, {recipe.temperature:g} K) from "
                   f"our vacuum C5 minimum, {len(targets)} x {k} steps = {len(targets) * k * recipe.timestep:g} ps "
                   f"(theirs 1 ps), {recipe.n_paths} paths per method (theirs 64); only the scoring energies use "
                   "their set-up")
    out = protocol_section(setup, target, methods, e_min_tpsdps[START], e_min_tpsdps[END],
                           system.positions_of(END), heavy, differences)
    out["seconds"] = time.perf_counter() - t0
    return out


def _plot(system, feat, model, md_phi, md_psi, samples: dict, geos: dict, path: Path, recipe: Recipe,
          overwrite: bool) -> None:
    import matplotlib.pyplot as plt

    modes = list(samples)
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(4.6 * (len(modes) + 1), 4.2))
    bins = np.linspace(-np.pi, np.pi, 73)
    for ax, mode in zip(axes, modes):
        h, _, _ = np.histogram2d(md_phi, md_psi, bins=[bins, bins])
        ax.pcolormesh(bins, bins, np.log1p(h).T, cmap="Greys", shading="flat")
        plot_paths(np.array(samples[mode]["tracks"]), ax=ax, n_show=recipe.plot_paths, color="C0", alpha=0.3)
        targets, _ = path_targets(system, model, geos[mode])
        tphi, tpsi = target_dihedrals(system, feat, targets)
        ax.plot(tphi, tpsi, "r.", ms=3, label="geodesic targets x/alpha")
        for name, st in system.states.items():
            ax.add_patch(plt.Circle(st.centre, st.radius, color="k", fill=False, ls="--", lw=0.8))
            ax.annotate(name, st.centre, fontsize=8, ha="center")
        r = samples[mode]
        ax.set(xlim=(-np.pi, np.pi), ylim=(-np.pi, np.pi), xlabel="phi (rad)", ylabel="psi (rad)",
               title=f"{mode}: hit {r['hit'].mean():.0%}, {len(r['hit'])} paths")
        ax.legend(loc="lower left", fontsize=7)
    for mode in modes:
        plot_log_snr(geos[mode].geodesic.lam[0].cpu().numpy(), ax=axes[-1], label=mode)
    axes[-1].set_title("log-SNR along the geodesics")
    axes[-1].legend(fontsize=7)
    fig.suptitle("alanine dipeptide C5 -> C7ax (amber99sbildn, vacuum, 300 K); grey: training data (log counts)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, overwrite)
