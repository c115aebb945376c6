"""Chignolin unfolded -> folded under ff14SBonlysc in implicit water, scored with the TPS-DPS protocol.

The measuring stick of the chignolin issue: how good are the method's folding paths, judged the
way TPS-DPS (Seong et al., arXiv 2405.19961) and Blessing et al. (arXiv 2508.12511, Table 1)
judge theirs, at a stated cost in force evaluations. Nothing here tunes the method.

Stages (``systems/chignolin/{gbn2,obc2}.toml``; 138 atoms, states by C-alpha RMSD to the folded
hairpin):

1. basin-only MD: independent Langevin runs from the minimised unfolded and folded structures
   (no transition data);
2. training: Cartesian features of the 77 solute heavy atoms (231 features) -> denoiser (the convex
   architecture by default: a Jacobian that is positive semi-definite by construction);
3. geodesic unfolded -> folded in diffusion spacetime (mode ``unconstrained``; above 96 features
   the divergence uses 8 Hutchinson probes);
4. paths: annealed Langevin under the force field with a harmonic restraint towards the
   geodesic's targets, N points x K steps x dt = 5 ps (TPS-DPS's path length), started from the
   unfolded minimum;
5. steered-MD baseline: the same sampler, start, N, K and seeds (so the same force-evaluation
   budget) on straight-line targets between the geodesic's first and last targets (both in the
   featurizer's aligned frame) with a constant stiffness equal to the geodesic's largest;
6. thermal baseline: unbiased MD windows as long as one path from the folded and the unfolded
   minimum: the mean and the maximum potential energy a 5-ps window sees without any transition;
7. metrics (:mod:`tps_diffusion.bench.path_metrics`): per path the cut frame (closest to the
   minimised folded structure by heavy-atom Kabsch RMSD), the heavy-atom RMSD there (Angstrom),
   a hit when the C-alpha RMSD there is <= 1 Angstrom, and ETS = the mean over hitting paths of
   the largest potential energy up to the cut.

Published anchors (Blessing et al., Table 1: GBn2 + ff14SBonlysc, 64 paths of 5,000 x 1 fs steps)
are copied into the report under ``published``; they are not measured here. This benchmark runs
5 ps paths as 2,500 x 2 fs steps (X-H bonds constrained, the system's time step).
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import mdtraj
import numpy as np
import torch

from ..core.checks import check_int, check_real, check_seed
from ..core.device import resolve_device
from ..core.geodesic import GeodesicConfig
from ..core.training import TrainConfig
from ..molecular.catalogue import get_system
from ..molecular.dynamics import Dynamics
from ..molecular.formats import write_trajectory
from ..molecular.geodesic import molecular_geodesic
from ..molecular.md import run_md
from ..molecular.model import SELECTIONS, train_on_samples
from ..molecular.paths import RestraintSettings, path_targets
from ..molecular.restrained import sample_paths
from ..plotting import save_figure
from ..utils.files import check_writable, write_json
from ..utils.provenance import versions
from .path_metrics import NM_TO_ANGSTROM, kabsch_rmsd, path_metrics, straight_targets
from .stage_cache import CachedStages, StageCache

__all__ = ["PUBLISHED", "SOLVENTS", "Recipe", "check_recipe", "output_paths", "run"]

START, END = "unfolded", "folded"
#: --solvent -> built-in system
SOLVENTS = {"gbn2": "chignolin_gbn2", "obc2": "chignolin_obc2"}

#: Published values (NOT measured by this benchmark): Blessing et al., arXiv 2508.12511, Table 1.
PUBLISHED = {
    "note": "published values copied from the literature, not measured by this benchmark",
    "source": "Blessing et al., arXiv 2508.12511, Table 1 (chignolin unfolded -> folded)",
    "protocol": "GBn2 implicit water + amber ff14SBonlysc, 300 K; 64 paths of 5,000 x 1 fs steps (5 ps); cut at the "
                "frame closest to the folded structure (heavy-atom RMSD), hit = C-alpha RMSD <= 1 Angstrom there, "
                "ETS = mean over hitting paths of the largest potential energy up to the cut (TPS-DPS protocol, "
                "Seong et al., arXiv 2405.19961)",
    "methods": {
        "TPS-DPS": {"rmsd_angstrom_mean": 1.06, "rmsd_angstrom_std": 0.08, "hit_percent": 25.0,
                    "ets_kj_mol_mean": -189.9, "ets_kj_mol_std": 23.0},
        "TR-LV": {"rmsd_angstrom_mean": 0.90, "rmsd_angstrom_std": 0.01, "hit_percent": 44.0,
                  "ets_kj_mol_mean": None, "ets_kj_mol_std": None},
        "steered MD": {"rmsd_angstrom_mean": 0.85, "rmsd_angstrom_std": None, "hit_percent": 34.4,
                       "ets_kj_mol_mean": 179.5, "ets_kj_mol_std": None},
    },
}


@dataclass(frozen=True)
class Recipe:
    """Every setting of the benchmark (written to the JSON). Times in ps, temperatures in K, stiffness kJ/mol/nm^2.

    Defaults: the real run, 0.56 M force evaluations for the method (MD data 2 x 4 x 50,000 =
    400,000 steps + 64 paths x 100 x 25 = 160,000 steps); the steered baseline adds the same
    160,000 and the thermal baseline 2 x 4 x 2,500 steps (analysis). The denoiser is the convex
    architecture (docs/method.md, section 2): with the free MLP two thirds of the geodesic's metric
    mass was negative on this system.
    """

    solvent: str = "gbn2"  # "gbn2" (the published protocol) or "obc2" (several times faster on CPU)
    temperature: float = 300.0
    timestep: float | None = None  # ps; None: the system's (2 fs: X-H bonds constrained)
    friction: float = 1.0  # 1/ps
    platform: str | None = None  # OpenMM platform; None: the system's (Reference below 100 atoms)
    n_workers: int = 2
    # MD training data: independent runs from the two minima (no transition data)
    md_runs_per_start: int = 4
    md_steps: int = 50_000
    md_report_interval: int = 50
    md_equilibration: int = 0
    # features and model
    selection: str = "heavy"
    architecture: str = "convex"  # denoiser: "convex" (a Jacobian that is PSD by construction) or "mlp"
    hidden: int = 256
    depth: int = 4
    sigma_data: float = 0.25
    train_steps: int = 3000
    batch_size: int = 512
    lr: float = 2e-3
    lam_sampling: str = "importance"
    # geodesic
    mode: str = "unconstrained"
    lam_end: float = 4.0
    n_points: int = 100  # N: curve points = restraint blocks
    n_nodes: int = 2
    geodesic_steps: int = 300
    geodesic_lr: float = 0.1
    # paths (geodesic and steered baseline alike): N * K * dt = 100 * 25 * 2 fs = 5 ps
    steps_per_point: int = 25  # K
    # restraint (paths.RestraintSettings): posterior-mean targets held with a stiffness floor, respaced to equal
    # restraint kicks per block (benchmarks/chignolin_ablation: the paper's x/alpha targets with the geodesic's
    # spacing left the walkers behind while the restraint was soft and yanked them in over the last ~1 ps)
    targets: str = "denoised"  # "tilt": x_n / alpha_n (the paper's Algorithm 1)
    spacing: str = "thermodynamic"  # "tilt": equal kicks only; "geodesic": the curve's own points
    min_stiffness: float | None = 200.0  # kJ/mol/nm^2
    max_stiffness: float | None = None
    n_paths: int = 64
    record_interval: int = 1  # steps between recorded frames (cut, RMSD and energies are taken on these)
    # analysis and output
    hit_threshold_angstrom: float = 1.0
    thermal_windows: int = 4  # unbiased MD windows as long as a path, per start (folded, unfolded)
    write_paths: int = 64  # geodesic paths written to the DCD
    write_stride: int = 25  # every this many recorded frames
    plot_paths: int = 64

    @classmethod
    def quick(cls) -> "Recipe":
        """Small settings for a smoke test (about a minute with OBC2 on two cores); paths stay 5 ps."""
        return cls(md_runs_per_start=1, md_steps=3000, md_report_interval=20, hidden=64, depth=2, train_steps=150,
                   batch_size=128, n_points=25, steps_per_point=100, geodesic_steps=20, n_paths=2, record_interval=10,
                   thermal_windows=1, write_paths=2, write_stride=10, plot_paths=2)

    @property
    def steps_per_path(self) -> int:
        """Integration steps (= force evaluations) of one path: N * K."""
        return self.n_points * self.steps_per_point


def check_recipe(recipe: Recipe) -> None:
    """One-line ValueError/TypeError for a recipe setting that cannot work, before any long work (MD, training)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a chignolin Recipe, got {type(recipe).__name__}; pass Recipe(...)")
    if recipe.solvent not in SOLVENTS:
        raise ValueError(f"Recipe.solvent must be one of {', '.join(SOLVENTS)} (--solvent); got {recipe.solvent!r}")
    counts = {  # field: (minimum, fix)
        "n_workers": (1, "use at least one worker process"),
        "md_runs_per_start": (1, "run at least one MD run per start"),
        "md_steps": (1, "run the MD for at least one step"),
        "md_report_interval": (1, "record every N >= 1 steps"),
        "md_equilibration": (0, "use 0 or more equilibration steps"),
        "hidden": (1, "use a layer width such as 256"),
        "depth": (0, "use a number of hidden layers such as 4"),
        "steps_per_point": (1, "run at least one Langevin step per curve point"),
        "n_paths": (1, "sample at least one path (--paths)"),
        "record_interval": (1, "record every N >= 1 steps"),
        "thermal_windows": (1, "run at least one thermal-baseline window per start"),
        "write_paths": (1, "write at least one path to the DCD"),
        "write_stride": (1, "write every N >= 1 frames"),
        "plot_paths": (0, "plot 0 or more paths"),
    }
    for name, (minimum, fix) in counts.items():
        check_int(getattr(recipe, name), f"Recipe.{name}", minimum, fix)
    if recipe.md_report_interval > recipe.md_steps:
        raise ValueError(f"Recipe.md_report_interval ({recipe.md_report_interval}) exceeds md_steps "
                         f"({recipe.md_steps}), so no MD frame is recorded; lower the interval or run longer")
    if recipe.steps_per_point % recipe.record_interval:
        raise ValueError(f"Recipe.record_interval ({recipe.record_interval}) must divide steps_per_point "
                         f"({recipe.steps_per_point})")
    check_real(recipe.temperature, "Recipe.temperature", low=0.0, low_open=True, fix="use a positive value (K)")
    if recipe.timestep is not None:
        check_real(recipe.timestep, "Recipe.timestep", low=0.0, high=0.01, low_open=True,
                   fix="use a time step in (0, 0.01] ps, or None for the system's")
    check_real(recipe.friction, "Recipe.friction", low=0.0, fix="use a friction >= 0 (1/ps), e.g. 1")
    check_real(recipe.sigma_data, "Recipe.sigma_data", low=0.0, low_open=True, fix="use a positive value")
    check_real(recipe.hit_threshold_angstrom, "Recipe.hit_threshold_angstrom", low=0.0, low_open=True,
               fix="use a positive threshold (Angstrom), e.g. 1")
    TrainConfig(steps=recipe.train_steps, batch_size=recipe.batch_size, lr=recipe.lr, lam_sampling=recipe.lam_sampling)
    restraint_settings(recipe)
    GeodesicConfig(mode=recipe.mode, lam_end=recipe.lam_end, n_points=recipe.n_points, n_nodes=recipe.n_nodes,
                   steps=recipe.geodesic_steps, lr=recipe.geodesic_lr)


def restraint_settings(recipe: Recipe) -> RestraintSettings:
    """The recipe's restraint settings (targets, spacing, stiffness bounds)."""
    return RestraintSettings(targets=recipe.targets, spacing=recipe.spacing, min_stiffness=recipe.min_stiffness,
                             max_stiffness=recipe.max_stiffness)


#: recipe fields that shape the MD data, the model and the geodesic (with the seed and device: a cache entry's key)
FIRST_STAGE_FIELDS = ("solvent", "temperature", "timestep", "friction", "platform", "md_runs_per_start", "md_steps",
                      "md_report_interval", "md_equilibration", "selection", "architecture", "hidden", "depth",
                      "sigma_data", "train_steps", "batch_size", "lr", "lam_sampling", "mode", "lam_end", "n_points",
                      "n_nodes", "geodesic_steps", "geodesic_lr")


def _stage_settings(recipe: Recipe, seed: int, dev: torch.device, resolved_platform: str) -> dict:
    """What a cache entry of the first three stages depends on (``resolved_platform``: the OpenMM platform the MD
    runs on, also when the recipe leaves it to the system)."""
    return {"benchmark": "chignolin", "seed": seed, "device": dev.type, "openmm_platform": resolved_platform,
            **{name: getattr(recipe, name) for name in FIRST_STAGE_FIELDS}}


def _first_stages(system, recipe: Recipe, seed: int, dev: torch.device, dynamics: Dynamics,
                  progress: bool) -> CachedStages:
    """Stages 1-3: basin MD from the two minima, the denoiser trained on it, the geodesic."""
    md = run_md(system, [START, END], recipe.md_steps, report_interval=recipe.md_report_interval,
                dynamics=dynamics, n_runs_per_start=recipe.md_runs_per_start,
                n_equilibration=recipe.md_equilibration, progress=progress)
    t0 = time.perf_counter()
    model = train_on_samples(
        system, md, recipe.selection,
        model_config=dict(hidden=recipe.hidden, depth=recipe.depth, sigma_data=recipe.sigma_data,
                          architecture=recipe.architecture),
        train_config=dict(steps=recipe.train_steps, batch_size=recipe.batch_size, lr=recipe.lr,
                          lam_sampling=recipe.lam_sampling, seed=seed),
        device=dev, progress=progress)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    geo = molecular_geodesic(model, system, START, END, mode=recipe.mode, lam_end=recipe.lam_end,
                             n_points=recipe.n_points, n_nodes=recipe.n_nodes, steps=recipe.geodesic_steps,
                             lr=recipe.geodesic_lr, seed=seed, progress=progress)
    return CachedStages(md, model, geo, {"md": md.wall_time_s, "training": t_train,
                                         "geodesic": time.perf_counter() - t0})


def output_paths(out: Path) -> dict[str, Path]:
    """Files written next to the JSON ``out``."""
    out = Path(out)
    return {"png": out.with_name(f"{out.stem}_paths.png"), "dcd": out.with_name(f"{out.stem}_paths.dcd"),
            "pdb": out.with_name(f"{out.stem}_paths.pdb")}


# ---------------------------------------------------------------------------------------------
# the benchmark


def run(out: str | Path, n_paths: int | None = None, seed: int = 0, quick: bool = False, device: str = "auto",
        overwrite: bool = False, progress: bool = True, solvent: str | None = None,
        recipe: Recipe | None = None, cache: str | Path | None = None) -> dict:
    """Run the whole benchmark; write ``out`` (JSON), ``<stem>_paths.png`` and the geodesic paths as
    ``<stem>_paths.dcd`` + ``<stem>_paths.pdb`` next to it. ``solvent``: ``"gbn2"`` or ``"obc2"``
    (default: the recipe's, GBn2); ``n_paths``: paths per method (default: the recipe's).
    ``cache``: a directory keeping the MD data, model and geodesic (:class:`~.stage_cache.StageCache`,
    keyed by the recipe fields of those stages, the seed and the device type): a rerun with the same
    settings loads them, and the report gives the seconds they took when made under ``cached_seconds``."""
    t_start = time.perf_counter()
    out = check_writable(out, overwrite)
    files = output_paths(out)
    for f in files.values():
        check_writable(f, overwrite)
    recipe = recipe or (Recipe.quick() if quick else Recipe())
    if not isinstance(recipe, Recipe):
        check_recipe(recipe)  # raises the TypeError
    changes = {}
    if n_paths is not None:
        check_int(n_paths, "n_paths (--paths)", 1, "sample at least one path")
        changes["n_paths"] = int(n_paths)
    if solvent is not None:
        changes["solvent"] = solvent
    recipe = replace(recipe, **changes)
    check_seed(seed, "seed")
    check_recipe(recipe)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    seconds = {}

    t0 = time.perf_counter()
    system = get_system(SOLVENTS[recipe.solvent], temperature=recipe.temperature)
    seconds["load_system"] = time.perf_counter() - t0
    dt = float(recipe.timestep if recipe.timestep is not None else system.default_timestep())
    top = system.md_topology
    heavy = top.select(SELECTIONS["heavy"])
    ca = top.select("name CA")
    target = system.positions_of(END)
    e_min = {s: float(system.potential_energy(system.positions_of(s))) for s in (START, END)}

    def dynamics(s: int) -> Dynamics:
        return Dynamics(temperature=recipe.temperature, timestep=dt, friction=recipe.friction,
                        platform=recipe.platform, seed=s, n_workers=recipe.n_workers)

    # 1.-3. MD samples in the two basins, features + denoiser, geodesic unfolded -> folded
    settings = _stage_settings(recipe, seed, dev, system.platform_name(recipe.platform))
    store = None if cache is None else StageCache(cache, settings)
    from_cache = store is not None and store.exists()
    if from_cache:
        stages = store.load(system, device=dev)
    else:
        stages = _first_stages(system, recipe, seed, dev, dynamics(seed), progress)
        if store is not None:
            store.save(stages)
    md, model, geo = stages.md, stages.model, stages.geodesic
    seconds.update(stages.seconds)  # as measured when the stages ran (from_cache: in an earlier run)
    md_states = system.assign_states(md.trajectory)
    feat = model.featurizer
    targets, stiffness = path_targets(system, model, geo, restraint=restraint_settings(recipe))
    start = geo.start().positions if geo.start().positions is not None else system.positions_of(START)

    # 4. paths along the geodesic and 5. the steered baseline: same sampler, start, N, K and seeds
    line = straight_targets(targets[0], targets[-1], len(targets))
    k_line = np.full(len(targets), float(stiffness.max()))
    frame_ps = recipe.record_interval * dt
    methods, reduced = {}, {}
    for name, tg, k in (("geodesic", targets, stiffness), ("steered", line, k_line)):
        ps = sample_paths(system, feat, tg, k, start, recipe.n_paths, recipe.steps_per_point,
                          dynamics=dynamics(seed + 1), record_interval=recipe.record_interval, progress=progress)
        seconds[f"paths_{name}"] = ps.wall_time_s
        t0 = time.perf_counter()
        m = path_metrics(ps.trajectories, ps.energies, target, heavy, ca, recipe.hit_threshold_angstrom, frame_ps)
        methods[name] = {**m, "n_force_evaluations": int(ps.n_force_evaluations),
                         "n_energy_evaluations_analysis": int(ps.n_energy_evaluations),
                         "n_points": len(tg), "steps_per_point": recipe.steps_per_point,
                         "stiffness_min_kj_mol_nm2": float(np.min(k)), "stiffness_max_kj_mol_nm2": float(np.max(k)),
                         "sampling_seconds": ps.wall_time_s}
        stride = recipe.write_stride
        reduced[name] = {"frames": [t[stride - 1::stride] for t in ps.trajectories],
                         "energy_mean": ps.energies.mean(0), "cuts": np.array(m["cut_index"]),
                         "hit": np.array(m["hit"])}
        seconds[f"metrics_{name}"] = time.perf_counter() - t0
        del ps

    # 6. thermal baseline: unbiased windows as long as one path, from each minimum
    base = run_md(system, [END, START], recipe.steps_per_path, report_interval=recipe.record_interval,
                  dynamics=dynamics(seed + 2), n_runs_per_start=recipe.thermal_windows, progress=False)
    seconds["thermal_baseline"] = base.wall_time_s
    windows = base.potential_energy.reshape(2 * recipe.thermal_windows, -1)
    thermal = {}
    for i, s in enumerate((END, START)):
        w = windows[i * recipe.thermal_windows:(i + 1) * recipe.thermal_windows]
        thermal[s] = {"n_windows": recipe.thermal_windows, "energy_mean_kj_mol": float(w.mean()),
                      "window_max_kj_mol_mean": float(w.max(1).mean()), "max_kj_mol": float(w.max())}
    thermal_max = max(v["window_max_kj_mol_mean"] for v in thermal.values())
    thermal.update(
        steps_per_window=recipe.steps_per_path, record_interval=recipe.record_interval,
        thermal_max_kj_mol=thermal_max,
        definition="unbiased Langevin MD from the minimised folded / unfolded structure (Maxwell-Boltzmann velocities, "
                   "no equilibration), windows as long as one path, energies on the same frame spacing as the paths; "
                   "thermal_max_kj_mol = the larger of the two states' mean per-window maximum")
    ets_minus = {name: (None if m["ets_kj_mol_mean"] is None else m["ets_kj_mol_mean"] - thermal_max)
                 for name, m in methods.items()}

    # 7. outputs
    t0 = time.perf_counter()
    kept = reduced["geodesic"]["frames"][:recipe.write_paths]
    joined = mdtraj.join(kept, check_topology=False)
    write_trajectory(joined, files["dcd"], overwrite=overwrite, topology_pdb=files["pdb"])
    _plot(system, feat, md.trajectory, targets, line, reduced, methods, target, heavy, ca, thermal_max, frame_ps,
          recipe, files["png"], overwrite)
    seconds["outputs"] = time.perf_counter() - t0

    md_evals = int(md.n_force_evaluations)
    check = geo.metric_check[0]
    core = geo.geodesic
    report = {
        "benchmark": "chignolin",
        "system": system.name,
        "solvent": recipe.solvent,
        "transition": f"{START} -> {END}",
        "n_paths": recipe.n_paths,
        "protocol": {
            "timestep_ps": dt,
            "steps_per_path": recipe.steps_per_path,
            "path_length_ps": recipe.steps_per_path * dt,
            "frame_spacing_ps": frame_ps,
            "target": "the minimised folded structure (system.state_positions['folded'])",
            "cut": "per path, the recorded frame with the smallest heavy-atom Kabsch RMSD to the target",
            "rmsd": "heavy-atom Kabsch RMSD at the cut, Angstrom; mean and std (ddof=1) over all paths",
            "hit": f"C-alpha Kabsch RMSD at the cut <= {recipe.hit_threshold_angstrom} Angstrom",
            "ets": "mean (std ddof=1) over hitting paths of the largest force-field potential energy (restraint "
                   "excluded) of the frames up to and including the cut, kJ/mol, absolute (not relative to a minimum)",
            "differences_from_published": "time step 2 fs x 2,500 steps (X-H bonds constrained) instead of "
                                          "1 fs x 5,000; start: the minimised unfolded structure"
                                          + ("; OBC2 instead of GBn2" if recipe.solvent == "obc2" else ""),
        },
        "methods": methods,
        "ets_minus_thermal_max_kj_mol": ets_minus,
        "thermal_baseline": thermal,
        "e_minimised_kj_mol": e_min,
        "energy_evals": {
            "md_data": md_evals,
            "sampling": methods["geodesic"]["n_force_evaluations"],
            "total": md_evals + methods["geodesic"]["n_force_evaluations"],
            "steered_baseline_sampling": methods["steered"]["n_force_evaluations"],
            "analysis": int(md.n_energy_evaluations + sum(m["n_energy_evaluations_analysis"] for m in methods.values())
                            + base.n_force_evaluations + base.n_energy_evaluations),
            "note": "integration steps = force evaluations: total = MD data + the geodesic paths (the method's cost); "
                    "the steered baseline needs no MD data and samples as many steps as the geodesic paths; analysis "
                    "counts the energy evaluations made only to report energies (every recorded MD and path frame) "
                    "and the thermal-baseline MD",
        },
        "metric_check": {"negative_mass": check.negative_mass, "negative_fraction": check.negative_fraction,
                         "n_negative": check.n_negative, "n_probes": geo.config.n_probes},
        "geodesic": {"steps_done": core.steps_done, "curve_energy": float(core.energy[0]),
                     "curve_length": float(core.length[0]), "min_lambda": float(core.min_lambda[0]),
                     "n_points": int(geo.curve.shape[-2]), "message": core.message or None},
        "seconds": {**seconds, "total": None},
        "stages_from_cache": from_cache,
        "cache": None if store is None else {"directory": str(store.root), "key": store.key},
        "md_data": {"n_frames": int(md.trajectory.n_frames),
                    "frames_per_state": {k or "none": int((md_states == k).sum()) for k in [*system.states, ""]},
                    "energy_mean_kj_mol": float(md.potential_energy.mean()),
                    "energy_max_kj_mol": float(md.potential_energy.max()),
                    "platform": md.settings["platform"]},
        "model": {"dim": model.dim, "n_selected_atoms": feat.n_selected, "feature_scale_nm": feat.scale,
                  "endpoint_nn_q99": model.endpoint_check.nn_q99, "train_seconds": model.train_seconds},
        "published": PUBLISHED,
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
    report["seconds"]["total"] = time.perf_counter() - t_start
    write_json(out, report, overwrite)
    return report


def _ca_rmsd_rg(traj: mdtraj.Trajectory, target: np.ndarray, heavy, ca) -> tuple[np.ndarray, np.ndarray]:
    """C-alpha RMSD to ``target`` (Angstrom) and heavy-atom radius of gyration (nm) of every frame."""
    return kabsch_rmsd(traj, target, ca) * NM_TO_ANGSTROM, mdtraj.compute_rg(traj.atom_slice(heavy))


def _plot(system, feat, md_traj, targets, line, reduced: dict, methods: dict, target, heavy, ca, thermal_max: float,
          frame_ps: float, recipe: Recipe, path: Path, overwrite: bool) -> None:
    import matplotlib.pyplot as plt

    def full(sel_xyz: np.ndarray) -> mdtraj.Trajectory:  # selected-atom targets -> full frames (others: reference)
        xyz = np.repeat(system.positions[None], len(sel_xyz), 0)
        xyz[:, feat.atom_indices] = sel_xyz
        return system.to_trajectory(xyz)

    data_r, data_g = _ca_rmsd_rg(md_traj, target, heavy, ca)
    fig, axes = plt.subplots(1, 3, figsize=(14.4, 4.3))
    for ax, (name, tg) in zip(axes, (("geodesic", targets), ("steered", line))):
        ax.hist2d(data_r, data_g, bins=60, cmap="Greys", norm="log")
        r = reduced[name]
        for i, fr in enumerate(r["frames"][:recipe.plot_paths]):
            pr, pg = _ca_rmsd_rg(fr, target, heavy, ca)
            ax.plot(pr, pg, color="C2" if r["hit"][i] else "C0", alpha=0.5, lw=0.8)
        tr, tg_rg = _ca_rmsd_rg(full(tg), target, heavy, ca)
        ax.plot(tr, tg_rg, "r.", ms=3, label="restraint targets")
        ax.axvline(recipe.hit_threshold_angstrom, color="k", ls="--", lw=0.8, label="hit threshold")
        m = methods[name]
        ax.set(xlabel="C-alpha RMSD to folded (Angstrom)", ylabel="heavy-atom radius of gyration (nm)",
               title=f"{name}: hit {m['hit_percent']:.0f} % of {m['n_paths']}, RMSD {m['rmsd_angstrom_mean']:.2f} A")
        ax.legend(loc="upper left", fontsize=7)
    ax = axes[2]
    for name, color in (("geodesic", "C0"), ("steered", "C1")):
        e = reduced[name]["energy_mean"]
        ax.plot((np.arange(len(e)) + 1) * frame_ps, e, color=color, lw=1, label=f"{name} (mean over paths)")
    ax.axhline(thermal_max, color="k", ls="--", lw=0.8, label="thermal max (5-ps MD in a basin)")
    ax.set(xlabel="time (ps)", ylabel="potential energy (kJ/mol)", title="force-field energy along the paths")
    ax.legend(fontsize=7)
    fig.suptitle(f"chignolin unfolded -> folded ({system.name}, {recipe.temperature:g} K); grey: training data "
                 "(log counts); green: hitting paths", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, overwrite)
