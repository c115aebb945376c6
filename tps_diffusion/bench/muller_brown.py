"""Müller–Brown A -> B from basin-only data: the paper's algorithm, the string-refined geodesic, steered MD.

Set-up (issue 14): the Müller–Brown surface (:class:`~tps_diffusion.potentials.surfaces.MullerBrown`,
energies in its own units) at kT = 10; A = (-0.558, 1.442), the global minimum, and B = (0.623, 0.028).
The training data are Langevin chains started in A and B; frames that left their basin (closer to the
intermediate minimum C = (-0.050, 0.467) than to their own start) are dropped, so the model sees the two
end basins only. The minimum-energy path runs A -> A/C saddle (-40.66) -> C -> C/B saddle (-72.25) -> B,
a curved channel; the straight line from A to B climbs to +12.7.

Methods, each sampled with the same annealed Langevin sampler (docs/method.md, section 5) and reported with
its force-evaluation budget (training data + refinement + sampling):

* ``geodesic``: the paper's algorithm, unchanged (unconstrained geodesic -> tilt schedule -> paths);
* ``geodesic+string``: the same geodesic refined by :func:`~tps_diffusion.core.refinement.refine_curve`
  (pilot paths, string relaxation, stiffness floor; docs/method.md, section 11). Its pilot and strings are
  paid out of the paper's sampling budget: the final paths get ``K`` steps per point such that pilot +
  strings + paths cost at most what the paper's paths cost;
* next to each, ``steered_baseline``: the same sampler on straight-line centres from the method's first to
  its last centre, at the constant stiffness the method's curve ends with, spending the method's whole budget
  on sampling (more steps per point, same number of paths).

A path hits when its last frame lies within ``hit_radius`` (0.3) of B: the disk holds 94 % of the
B-basin frames of the training chains and stops 0.19 short of the C/B saddle (0.49 from B). MaxEnergy
is the largest energy over a path's frames, mean and standard deviation over the hits. The minimax barrier
(the lower bound on MaxEnergy) is computed from the surface by
:func:`~tps_diffusion.potentials.metrics.minimax_bound` on a fine grid.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..core.checks import check_int, check_real, check_seed
from ..core.denoiser import DenoiserConfig
from ..core.device import resolve_device
from ..core.geodesic import GeodesicConfig, optimise_geodesic
from ..core.langevin import PathSample, annealed_langevin, langevin, tilt_schedule
from ..core.normalizer import Normalizer
from ..core.refinement import RefineConfig, refine_curve
from ..core.training import TrainConfig, train
from ..potentials.metrics import minimax_bound
from ..potentials.surfaces import MullerBrown
from ..utils.files import check_writable, write_json
from ..utils.provenance import versions
from .aldp2d import steered_baseline, steps_within

__all__ = ["KT", "Recipe", "X_A", "X_B", "X_C", "check_recipe", "minimax_barrier", "run", "training_data"]

X_A = (-0.558, 1.442)  # global minimum (-146.70)
X_B = (0.623, 0.028)  # minimum (-108.17)
X_C = (-0.050, 0.467)  # intermediate minimum (-80.77), kept out of the training data
KT = 10.0  # in the units of the potential
#: the grid of the minimax search: x and y in [GRID_LOWER, GRID_LOWER + GRID_EXTENT)
GRID_LOWER, GRID_EXTENT = -1.5, 4.0


@dataclass
class Recipe:
    """Every setting of the benchmark (written to the JSON); lengths in the surface's units, steps in units^2."""

    n_chains: int = 1000
    chain_steps: int = 4000
    chain_ds: float = 1e-4
    chain_burn_in: int = 500
    chain_record_every: int = 10
    train_steps: int = 6000
    batch_size: int = 1024
    hidden: int = 256
    depth: int = 4
    lam_end: float = 4.0
    geodesic_steps: int = 600
    n_points: int = 128
    steps_per_point: int = 128
    ds: float = 1e-4
    pilot_paths: int = 100
    pilot_steps_per_point: int = 32
    n_candidates: int = 5
    string_step: float = 1e-3
    string_iterations: int = 2000
    string_tol: float = 1e-3
    lam_floor: float | None = None  # None: the geodesic's end log-SNR (lam_end)
    hit_radius: float = 0.3
    grid_spacing: float = 0.005
    n_paths: int = 300

    @classmethod
    def quick(cls) -> "Recipe":
        """Seconds on a CPU: a smoke test of the pipeline, not a measurement."""
        return cls(n_chains=40, chain_steps=600, chain_burn_in=100, chain_record_every=5, train_steps=100,
                   batch_size=256, hidden=64, depth=2, geodesic_steps=10, n_points=16, steps_per_point=16, ds=1e-3,
                   pilot_paths=10, pilot_steps_per_point=4, n_candidates=1, string_iterations=50, grid_spacing=0.02,
                   n_paths=50)

    def refine_config(self) -> RefineConfig:
        return RefineConfig(pilot_paths=self.pilot_paths, pilot_steps_per_point=self.pilot_steps_per_point,
                            n_candidates=self.n_candidates, step=self.string_step,
                            max_iterations=self.string_iterations, tol=self.string_tol, lam_floor=self.lam_floor)


def check_recipe(recipe: Recipe) -> None:
    """One-line ValueError/TypeError for a recipe setting that cannot work (before any long work)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a muller_brown Recipe, got {type(recipe).__name__}; pass Recipe(...)")
    check_int(recipe.n_chains, "Recipe.n_chains", 2, "run at least 2 chains (one per end basin)")
    check_int(recipe.chain_steps, "Recipe.chain_steps", 1, "run the chains for at least one step")
    check_int(recipe.chain_burn_in, "Recipe.chain_burn_in", 0, "use 0 or more burn-in steps")
    check_int(recipe.chain_record_every, "Recipe.chain_record_every", 1, "record every N >= 1 steps")
    if recipe.chain_steps - recipe.chain_burn_in < recipe.chain_record_every:
        raise ValueError(f"Recipe.chain_steps ({recipe.chain_steps}) leaves no recorded frame after "
                         f"chain_burn_in ({recipe.chain_burn_in}) with chain_record_every "
                         f"({recipe.chain_record_every}); raise chain_steps or lower the burn-in / interval")
    for name in ("chain_ds", "ds", "hit_radius", "grid_spacing"):
        check_real(getattr(recipe, name), f"Recipe.{name}", low=0.0, low_open=True, fix="use a small positive value")
    check_int(recipe.hidden, "Recipe.hidden", 1, "use a layer width such as 256")
    check_int(recipe.depth, "Recipe.depth", 0, "use a number of hidden layers such as 4")
    check_int(recipe.steps_per_point, "Recipe.steps_per_point", 1, "run at least one Langevin step per curve point")
    check_int(recipe.n_paths, "Recipe.n_paths (--paths)", 1, "sample at least one path")
    worst = recipe.refine_config().max_energy_evals(recipe.n_points)  # checks the refinement settings
    steps_within(recipe.n_paths * (recipe.n_points * recipe.steps_per_point + 1) - worst, recipe.n_paths,
                 recipe.n_points)  # the refinement must fit in the paper's sampling budget


def training_data(U, recipe: Recipe, seed: int) -> tuple[np.ndarray, int, float]:
    """Langevin chains at kT = 10 started in A and B; frames that left their start basin are dropped.

    A frame has left its basin when it lies closer to C than to its chain's start minimum. Returns the
    samples ``(n, 2)``, the energy evaluations (every chain step, burn-in included) and the fraction of
    recorded frames dropped.
    """
    homes = torch.tensor([X_A, X_B], dtype=torch.float64).repeat_interleave(recipe.n_chains // 2, 0)
    y, _ = langevin(U, homes, recipe.chain_burn_in, recipe.chain_ds, kT=KT, seed=seed)
    _, frames = langevin(U, y, recipe.chain_steps - recipe.chain_burn_in, recipe.chain_ds, kT=KT, seed=seed + 1,
                         record_every=recipe.chain_record_every)
    frames = frames.numpy()
    keep = np.linalg.norm(frames - homes.numpy()[:, None], axis=-1) < np.linalg.norm(frames - np.array(X_C), axis=-1)
    return frames[keep], len(homes) * recipe.chain_steps, float(1.0 - keep.mean())


def minimax_barrier(U, spacing: float) -> float:
    """The minimax (bottleneck) energy between A and B on a square grid of node spacing ``spacing`` over
    ``[GRID_LOWER, GRID_LOWER + GRID_EXTENT)^2`` (not periodic): no path from A to B has a lower MaxEnergy,
    up to the grid resolution. A spacing of 0.005 gives -40.667; the A/C saddle is at -40.665."""
    n = int(round(GRID_EXTENT / spacing))
    axis = GRID_LOWER + GRID_EXTENT * np.arange(n) / n
    with torch.no_grad():
        values = U(torch.as_tensor(np.stack(np.meshgrid(axis, axis, indexing="ij"), -1))).numpy()
    return minimax_bound(values, np.array(X_A), np.array(X_B), lower=GRID_LOWER, period=GRID_EXTENT, periodic=False)


def reached_b(final: Tensor, radius: float) -> Tensor:
    """``(P,)`` bool: the final frames ``(P, 2)`` within ``radius`` of B."""
    return (final.double() - torch.tensor(X_B, dtype=torch.float64, device=final.device)).norm(dim=-1) <= radius


def path_summary(sample: PathSample, recipe: Recipe) -> dict:
    """Hit rate, MaxEnergy (mean and std over hits; mean over all paths) and cost of a :class:`PathSample`."""
    hits = reached_b(sample.paths[:, -1], recipe.hit_radius).cpu().numpy()
    max_e = sample.energies.max(1).values.double().cpu().numpy()
    return {
        "hit_rate": float(hits.mean()),
        "max_energy_mean": float(max_e[hits].mean()) if hits.any() else None,
        "max_energy_std": float(max_e[hits].std()) if hits.any() else None,
        "max_energy_mean_all_paths": float(max_e.mean()),
        "n_paths": int(len(hits)),
        "steps_per_point": int(sample.paths.shape[1] // len(sample.lag)),
        "energy_evals_sampling": sample.energy_evals,
        "sampling_seconds": sample.seconds,
        "lag_last_point_widths": float(sample.lag[-1]),
    }


def run(out: str | Path, n_paths: int | None = None, seed: int = 0, quick: bool = False, device: str = "auto",
        overwrite: bool = False, progress: bool = True, recipe: Recipe | None = None) -> dict:
    """Run the whole benchmark; write ``out`` (JSON) and ``<out stem>.png`` next to it.

    ``recipe`` overrides every setting (default: :class:`Recipe`, or :meth:`Recipe.quick` with ``quick``);
    ``n_paths`` overrides its number of paths. Every setting is checked before any work starts.
    """
    out = check_writable(out, overwrite)
    recipe = recipe or (Recipe.quick() if quick else Recipe())
    if n_paths is not None:
        recipe.n_paths = n_paths
    check_seed(seed, "seed")
    check_recipe(recipe)
    png = check_writable(out.with_suffix(".png"), overwrite)
    tcfg = TrainConfig(steps=recipe.train_steps, batch_size=recipe.batch_size, seed=seed)
    gcfg = GeodesicConfig(mode="unconstrained", steps=recipe.geodesic_steps, n_points=recipe.n_points,
                          lam_end=recipe.lam_end, seed=seed)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    U = MullerBrown()
    U_dev, start = U.to(dev), torch.tensor(X_A)

    t_start = t0 = time.perf_counter()
    barrier = minimax_barrier(U, recipe.grid_spacing)
    barrier_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    samples, data_evals, dropped = training_data(U, recipe, seed)
    data_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    norm = Normalizer.fit(samples)
    model = train(samples, DenoiserConfig(dim=2, sigma_data=float(norm.forward(samples).std()), hidden=recipe.hidden,
                                          depth=recipe.depth), tcfg, normalizer=norm, device=dev, progress=progress)
    training_seconds = time.perf_counter() - t0

    x_a, x_b = (torch.as_tensor(norm.forward(np.array(p)), dtype=torch.float32, device=dev) for p in (X_A, X_B))
    geo = optimise_geodesic(model.denoiser, x_a, x_b, gcfg, progress=progress)
    curve = geo.curve[0].detach().cpu().double()
    refined = refine_curve(U_dev, curve, norm, start, lambda final: reached_b(final, recipe.hit_radius), recipe.ds,
                           kT=KT, config=recipe.refine_config(), seed=seed + 300, device=dev, progress=progress)
    paper_budget = recipe.n_paths * (recipe.n_points * recipe.steps_per_point + 1)
    plans = {  # name: (centres, stiffness, refinement evaluations, steps per point)
        "geodesic": (*tilt_schedule(curve, norm), 0, recipe.steps_per_point),
        "geodesic+string": (refined.centres, refined.stiffness, refined.energy_evals,
                            steps_within(paper_budget - refined.energy_evals, recipe.n_paths, recipe.n_points)),
    }
    common = {"energy_evals_training_data": data_evals, "training_seconds": training_seconds,
              "geodesic_seconds": geo.seconds, "geodesic_min_lambda": float(geo.min_lambda.item()),
              "curve_energy": float(geo.energy.item())}
    methods, shown = {}, {}
    for i, (name, (centres, stiffness, extra, steps)) in enumerate(plans.items()):
        sample = annealed_langevin(U_dev, centres, stiffness, start, recipe.n_paths, steps, recipe.ds, kT=KT,
                                   seed=seed + 100 + i, device=dev, progress=progress)
        entry = path_summary(sample, recipe)
        budget = data_evals + extra + sample.energy_evals
        entry.update(common)
        entry.update({"energy_evals_refinement": extra, "energy_evals_total": budget,
                      "max_energy_of_centres": float(U(centres.cpu().double()).max()),
                      "min_stiffness": float(stiffness.min())})
        if name == "geodesic+string":
            entry["refinement"] = {
                "pilot_paths": recipe.pilot_paths, "pilot_hit_rate": refined.pilot_hit_rate,
                "energy_evals_pilot": refined.evals_pilot, "energy_evals_string": refined.evals_string,
                "candidate_barriers": refined.barriers.tolist(), "chosen_candidate": refined.chosen,
                "string_iterations": refined.iterations, "string_converged": refined.converged,
                "seconds": refined.seconds,
                "what": "candidate 0 is the geodesic's own centres, then the pilot hits by rising MaxEnergy; each "
                        "relaxed by the string method, the lowest barrier kept (docs/method.md, section 11)"}
        line = steered_baseline(U_dev, centres[0], centres[-1], float(stiffness[-1]), start, budget, recipe.n_paths,
                                recipe.n_points, recipe.ds, kT=KT, seed=seed + 200 + i, device=dev,
                                progress=progress)
        base = path_summary(line.sample, recipe)
        base.update({"energy_evals_total": line.sample.energy_evals, "stiffness": line.stiffness,
                     "what": "steered MD: the same annealed Langevin sampler and number of paths on straight-line "
                             "centres from the method's first to its last centre, at the constant stiffness the "
                             "method's curve ends with (kT / unit^2), with the method's whole force-evaluation "
                             "budget (training data + refinement + sampling) spent on sampling: more steps per "
                             "point"})
        entry["steered_baseline"] = base
        methods[name] = entry
        shown[name] = (centres.cpu().numpy(), sample.paths.cpu().numpy(), line.sample.paths.cpu().numpy())

    report = {
        "benchmark": "muller_brown",
        "kT": KT,
        "x_a": X_A,
        "x_b": X_B,
        "hit_region": f"last frame within {recipe.hit_radius:g} of x_b (the C/B saddle is 0.49 from x_b)",
        "minimax_barrier": barrier,
        "minimax_barrier_seconds": barrier_seconds,
        "target_max_energy": barrier + KT,
        "training_frames": int(len(samples)),
        "training_frames_dropped_fraction": dropped,
        "methods": methods,
        "training_data_seconds": data_seconds,
        "total_seconds": time.perf_counter() - t_start,
        "recipe": asdict(recipe),
        "seed": seed,
        "quick": quick,
        "machine": {"device": str(dev), "cpu_count": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None},
        "versions": versions("torch"),
    }
    _plot(U, shown, methods, barrier, png, overwrite)
    write_json(out, report, overwrite)
    return report


def _plot(U, shown: dict, methods: dict, barrier: float, path: Path, overwrite: bool) -> None:
    """One panel per method (30 of its paths and its restraint centres) and one for the steered baseline
    next to the paper's algorithm."""
    import matplotlib.pyplot as plt

    from ..plotting import plot_paths, plot_surface, save_figure

    axes = np.linspace(-1.5, 1.2, 271), np.linspace(-0.4, 2.0, 241)
    with torch.no_grad():
        values = U(torch.as_tensor(np.stack(np.meshgrid(*axes, indexing="ij"), -1))).numpy()
    panels = [(name, centres, paths, methods[name]) for name, (centres, paths, _) in shown.items()]
    centres, _, line = shown["geodesic"]
    panels.append(("steered MD (straight line, budget of geodesic)", centres[[0, -1]], line,
                   methods["geodesic"]["steered_baseline"]))
    fig, row = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4))
    for ax, (title, centres, paths, m) in zip(row, panels):
        plot_surface(values, axes, ax=ax, vmax=50.0, label="U")
        plot_paths(paths, ax=ax, n_show=30, periodic=False)
        ax.plot(*centres.T, "r.-", ms=2, lw=0.6, label="restraint centres")
        ax.plot(*np.array([X_A, X_B]).T, "k*", ms=8)
        score = "no hits" if m["max_energy_mean"] is None else \
            f"{m['max_energy_mean']:.1f} +- {m['max_energy_std']:.1f}"
        ax.set(xlabel="x", ylabel="y", xlim=axes[0][[0, -1]], ylim=axes[1][[0, -1]])
        ax.set_title(f"{title}\nMaxEnergy {score}, hits {100 * m['hit_rate']:.0f} % (bound {barrier:.2f})",
                     fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, overwrite)
