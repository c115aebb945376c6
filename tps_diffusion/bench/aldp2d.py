"""The paper's Table 1: transition paths on the 2-D alanine dipeptide (phi, psi) surface.

Pipeline: Langevin training data on the surface (kT = 1) -> denoiser -> geodesics in three
modes -> annealed Langevin paths -> MaxEnergy, hit rate, cost. See docs/method.md, section 4.
The unconstrained geodesic is also refined (:func:`~tps_diffusion.core.refinement.refine_curve`,
docs/method.md, section 11) within the paper's sampling budget and within a quarter of it
(``refined`` in the report). Every mode is reported next to a steered-MD baseline
(:func:`steered_baseline`): the same sampler on straight-line centres with the mode's whole
force-evaluation budget.
"""

from __future__ import annotations

import math
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
from ..core.refinement import RefineConfig, Refinement, refine_curve
from ..core.schedule import alpha_sigma
from ..core.training import TrainConfig, train
from ..potentials.metrics import hit_rate, minimax_bound
from ..potentials.surfaces import load_aldp_surface
from ..utils.angles import periodic_distance, wrap
from ..utils.files import check_writable, write_json
from ..utils.provenance import versions

X_START = (-2.55, 2.70)
X_END = (0.95, -0.40)
FORBIDDEN = (4.0, -0.8, -0.1)  # z* = (log-SNR, phi, psi)
# The forbidden region: two posterior standard deviations (sigma / alpha = exp(-lam / 2)) around z*.
REGION_RADIUS = 2.0 * math.exp(-FORBIDDEN[0] / 2)


@dataclass
class Recipe:
    """Every setting of the benchmark (written to the JSON)."""

    n_chains: int = 1000
    chain_steps: int = 4000
    chain_ds: float = 1e-3
    chain_burn_in: int = 500
    chain_record_every: int = 10
    train_steps: int = 6000
    batch_size: int = 1024
    hidden: int = 256
    depth: int = 4
    geodesic_steps: int = 600
    n_points: int = 128
    steps_per_point: int = 128
    ds_unconstrained: float = 4e-4
    ds_constrained: float = 1e-4
    lam_end: float = 3.75  # log-SNR of the endpoints (reference code: 4; 3.75 measured better, see README)
    rho_var: float = 2.0
    avoid_rho_var: float = 3.5
    rho_kl: float = 20.0  # nats
    hit_radius: float = 0.75
    n_paths: int = 1000
    pilot_paths: int = 100  # refinement (docs/method.md, section 11)
    pilot_steps_per_point: int = 32
    n_candidates: int = 5
    string_step: float = 1e-3
    string_iterations: int = 2000
    string_tol: float = 1e-3
    lam_floor: float | None = None  # None: the geodesic's end log-SNR (lam_end)
    quarter_steps_per_point: int = 32  # the second budget: n_paths (N * 32 + 1), a quarter of the paper's

    @classmethod
    def quick(cls) -> "Recipe":
        return cls(n_chains=200, chain_steps=1500, chain_burn_in=300, train_steps=1500, hidden=128, depth=3,
                   geodesic_steps=100, n_points=32, steps_per_point=32, n_paths=100, pilot_paths=10,
                   pilot_steps_per_point=4, n_candidates=1, string_iterations=50, quarter_steps_per_point=8)

    def refine_config(self) -> RefineConfig:
        return RefineConfig(pilot_paths=self.pilot_paths, pilot_steps_per_point=self.pilot_steps_per_point,
                            n_candidates=self.n_candidates, step=self.string_step,
                            max_iterations=self.string_iterations, tol=self.string_tol, lam_floor=self.lam_floor)


def check_recipe(recipe: Recipe) -> None:
    """One-line ValueError/TypeError for a recipe setting that cannot work (before any long work)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be an aldp2d Recipe, got {type(recipe).__name__}; pass Recipe(...)")
    check_int(recipe.n_chains, "Recipe.n_chains", 2, "run at least 2 chains (one per endpoint basin)")
    check_int(recipe.chain_steps, "Recipe.chain_steps", 1, "run the chains for at least one step")
    check_int(recipe.chain_burn_in, "Recipe.chain_burn_in", 0, "use 0 or more burn-in steps")
    check_int(recipe.chain_record_every, "Recipe.chain_record_every", 1, "record every N >= 1 steps")
    if recipe.chain_steps - recipe.chain_burn_in < recipe.chain_record_every:
        raise ValueError(f"Recipe.chain_steps ({recipe.chain_steps}) leaves no recorded frame after "
                         f"chain_burn_in ({recipe.chain_burn_in}) with chain_record_every "
                         f"({recipe.chain_record_every}); raise chain_steps or lower the burn-in / interval")
    check_real(recipe.chain_ds, "Recipe.chain_ds", low=0.0, low_open=True, fix="use a small positive step (rad^2)")
    check_int(recipe.hidden, "Recipe.hidden", 1, "use a layer width such as 256")
    check_int(recipe.depth, "Recipe.depth", 0, "use a number of hidden layers such as 4")
    for name in ("ds_unconstrained", "ds_constrained"):
        check_real(getattr(recipe, name), f"Recipe.{name}", low=0.0, low_open=True,
                   fix="use a small positive step (rad^2), e.g. 1e-4")
    check_real(recipe.hit_radius, "Recipe.hit_radius", low=0.0, low_open=True, fix="use a radius such as 0.75 rad")
    check_int(recipe.steps_per_point, "Recipe.steps_per_point", 1, "run at least one Langevin step per curve point")
    check_int(recipe.n_paths, "Recipe.n_paths (--paths)", 1, "sample at least one path")
    check_int(recipe.quarter_steps_per_point, "Recipe.quarter_steps_per_point", 1,
              "use at least one step per point for the second budget")
    worst = recipe.refine_config().max_energy_evals(recipe.n_points)  # checks the refinement settings
    quarter = recipe.n_paths * (recipe.n_points * min(recipe.steps_per_point, recipe.quarter_steps_per_point) + 1)
    steps_within(quarter - worst, recipe.n_paths, recipe.n_points)  # the refinement must fit in both budgets


def training_data(U, recipe: Recipe, seed: int) -> tuple[np.ndarray, int]:
    """Langevin chains at kT = 1 started in both endpoint basins, wrapped to [-pi, pi).

    Returns samples ``(n, 2)`` and the number of energy evaluations.
    """
    starts = torch.tensor([X_START, X_END], dtype=torch.float64).repeat_interleave(recipe.n_chains // 2, 0)
    y, _ = langevin(U, starts, recipe.chain_burn_in, recipe.chain_ds, seed=seed)
    _, frames = langevin(U, y, recipe.chain_steps - recipe.chain_burn_in, recipe.chain_ds, seed=seed + 1,
                         record_every=recipe.chain_record_every)
    samples = wrap(frames.reshape(-1, 2).numpy())
    return samples, len(starts) * recipe.chain_steps


def steps_within(budget: int, n_paths: int, n_points: int) -> int:
    """The most steps per point ``K`` with which ``n_paths`` paths of ``n_points`` points cost at most
    ``budget`` energy evaluations (``n_paths (n_points K + 1)``, :func:`annealed_langevin`)."""
    steps = (budget // n_paths - 1) // n_points
    if steps < 1:
        raise ValueError(f"a budget of {budget} energy evaluations does not pay for one step per point of "
                         f"{n_paths} paths of {n_points} points; raise the budget or lower the refinement's cost")
    return steps


@dataclass
class SteeredBaseline:
    """Straight-line steered MD: the paths and the constant stiffness used (kT / data-unit^2)."""

    sample: PathSample
    stiffness: float


def steered_baseline(U, first: Tensor, last: Tensor, stiffness: float, start: Tensor, budget: int, n_paths: int,
                     n_points: int, ds: float, kT: float = 1.0, seed: int = 0, device: str | torch.device = "auto",
                     progress: bool = False) -> SteeredBaseline:
    """Steered MD with a given force-evaluation budget (issue 14): the annealed Langevin sampler on
    ``n_points`` centres equally spaced on the straight line from ``first`` to ``last`` ``(D,)`` (data units)
    at one constant ``stiffness`` (kT / data-unit^2), walkers from ``start``.

    The budget (energy evaluations: a method's training data + refinement + sampling) is spent on
    ``n_paths`` paths with ``K = steps_within(budget, n_paths, n_points)`` steps per point, so the baseline
    costs at most ``budget`` and less than ``n_paths * n_points`` below it.
    """
    steps = steps_within(budget, n_paths, n_points)
    s = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)[:, None]
    first, last = first.detach().cpu().double(), last.detach().cpu().double()
    centres = first + s * (last - first)
    sample = annealed_langevin(U, centres, torch.full((n_points,), float(stiffness), dtype=torch.float64), start,
                               n_paths, steps, ds, kT=kT, seed=seed, device=device, progress=progress)
    return SteeredBaseline(sample, float(stiffness))


def run(out: str | Path, n_paths: int | None = None, seed: int = 0, quick: bool = False, device: str = "auto",
        overwrite: bool = False, progress: bool = True, recipe: Recipe | None = None) -> dict:
    """Run the whole benchmark; write ``out`` (JSON) and one PNG per mode next to it.

    ``recipe`` overrides every setting (default: :class:`Recipe`, or :meth:`Recipe.quick` with ``quick``);
    ``n_paths`` overrides its number of paths. Every setting is checked before any work starts.
    """
    out = check_writable(out, overwrite)
    recipe = recipe or (Recipe.quick() if quick else Recipe())
    if n_paths is not None:
        recipe.n_paths = n_paths
    check_seed(seed, "seed")
    check_recipe(recipe)
    # every setting is checked here, before the long work (training data, training)
    tcfg = TrainConfig(steps=recipe.train_steps, batch_size=recipe.batch_size, seed=seed)
    common = dict(steps=recipe.geodesic_steps, n_points=recipe.n_points, lam_end=recipe.lam_end, seed=seed)
    modes = {
        "unconstrained": (GeodesicConfig(mode="unconstrained", **common), recipe.ds_unconstrained),
        "low_variance": (GeodesicConfig(mode="low_variance", rho_var=recipe.rho_var, **common), recipe.ds_constrained),
        "avoid": (GeodesicConfig(mode="avoid", rho_var=recipe.avoid_rho_var, rho_kl=recipe.rho_kl, **common),
                  recipe.ds_constrained),
    }
    dev = resolve_device(device)
    torch.manual_seed(seed)
    U = load_aldp_surface()

    t_start = t0 = time.perf_counter()
    samples, data_evals = training_data(U, recipe, seed)
    data_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = train(
        samples,
        DenoiserConfig(dim=2, periodic=[True, True], sigma_data=float(samples.std()), hidden=recipe.hidden,
                       depth=recipe.depth),
        tcfg,
        normalizer=Normalizer.identity(2),  # raw angles (radians), as the paper
        device=dev, progress=progress,
    )
    training_seconds = time.perf_counter() - t0

    x_a, x_b = torch.tensor(X_START), torch.tensor(X_END)
    U_dev = U.to(dev)
    paper_budget = recipe.n_paths * (recipe.n_points * recipe.steps_per_point + 1)
    results, curves = {}, {}
    for i, (mode, (gcfg, ds)) in enumerate(modes.items()):
        geo = optimise_geodesic(model.denoiser, x_a.to(dev), x_b.to(dev), gcfg,
                                avoid=torch.tensor(FORBIDDEN, device=dev), progress=progress)
        centres, stiffness = tilt_schedule(geo.curve[0], model.normalizer)
        sample = annealed_langevin(U_dev, centres, stiffness, x_a, recipe.n_paths, recipe.steps_per_point, ds,
                                   seed=seed + 100 + i, device=dev, progress=progress)
        entry = _summary(sample, recipe)
        entry.update({
            "energy_evals_training_data": data_evals,
            "energy_evals_total": data_evals + sample.energy_evals,
            "training_seconds": training_seconds,
            "geodesic_seconds": geo.seconds,
            "min_lambda": float(geo.min_lambda.item()),
            "curve_energy": float(geo.energy.item()),
            "curve_length": float(geo.length.item()),
            "geodesic_steps": geo.steps_done,
            "ds": ds,
        })
        if geo.message:
            entry["geodesic_message"] = geo.message
        if mode == "avoid":
            entry["min_kl_nats"] = float(geo.kl.min().item())
        entry["steered_baseline"] = _steered(U_dev, centres, stiffness, x_a, entry["energy_evals_total"], ds, recipe,
                                             seed + 200 + i, dev, progress)
        results[mode] = entry
        curves[mode] = geo.curve[0].detach().cpu().double()
        _plot(U, geo.curve[0], sample.paths.cpu().numpy(), mode, out.with_name(f"{out.stem}_{mode}.png"), recipe,
              overwrite)

    # the unconstrained geodesic, refined (docs/method.md, section 11); pilot + strings paid out of the budget
    ds = recipe.ds_unconstrained
    refined = refine_curve(U_dev, curves["unconstrained"], model.normalizer, x_a, _hits(recipe.hit_radius), ds,
                           config=recipe.refine_config(), seed=seed + 300, device=dev, progress=progress)
    budgets = {"unconstrained+string": paper_budget,
               "unconstrained+string_quarter": recipe.n_paths * (recipe.n_points * recipe.quarter_steps_per_point + 1)}
    refined_results = {}
    for i, (mode, budget) in enumerate(budgets.items()):
        steps = steps_within(budget - refined.energy_evals, recipe.n_paths, recipe.n_points)
        sample = annealed_langevin(U_dev, refined.centres, refined.stiffness, x_a, recipe.n_paths, steps, ds,
                                   seed=seed + 400 + i, device=dev, progress=progress)
        entry = _summary(sample, recipe)
        entry.update({
            "energy_evals_training_data": data_evals,
            "energy_evals_refinement": refined.energy_evals,
            "energy_evals_sampling_and_refinement": refined.energy_evals + sample.energy_evals,
            "energy_evals_total": data_evals + refined.energy_evals + sample.energy_evals,
            "sampling_budget": budget,
            "steps_per_point": steps,
            "ds": ds,
            "min_stiffness": float(refined.stiffness.min()),
            "refinement": _refinement_info(refined, recipe),
        })
        entry["steered_baseline"] = _steered(U_dev, refined.centres, refined.stiffness, x_a,
                                             entry["energy_evals_total"], ds, recipe, seed + 500 + i, dev, progress)
        refined_results[mode] = entry
        _plot(U, refined.curve, sample.paths.cpu().numpy(), mode, out.with_name(f"{out.stem}_{mode}.png"), recipe,
              overwrite)

    report = {
        "benchmark": "aldp2d",
        "lower_bound": minimax_bound(U.grid_values, np.array(X_START), np.array(X_END)),
        "forbidden_point": FORBIDDEN,
        "region_radius_rad": REGION_RADIUS,
        "modes": results,
        "refined": refined_results,
        "refined_what": "the unconstrained geodesic refined by tps_diffusion.core.refinement.refine_curve (pilot "
                        "paths, string relaxation, stiffness floor; docs/method.md, section 11), its pilot and "
                        "strings paid out of a sampling budget: the paper's (n_paths (N K + 1)) or a quarter of it "
                        "(K = quarter_steps_per_point); the final paths get the steps per point that fit",
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
    write_json(out, report, overwrite)
    return report


def _hits(radius: float):
    """``(P, 2)`` final frames -> ``(P,)`` bool: within ``radius`` (rad, periodic) of ``X_END``."""
    def is_hit(final: Tensor) -> Tensor:
        return torch.as_tensor(periodic_distance(final.double().cpu().numpy(), np.array(X_END)) <= radius)
    return is_hit


def _summary(sample: PathSample, recipe: Recipe) -> dict:
    """MaxEnergy (mean, std over all paths, kT), hit rate, cost and forbidden-region statistics of paths."""
    paths, energies = sample.paths.cpu().numpy(), sample.energies.cpu().numpy()
    max_e = energies.max(1)
    dist = periodic_distance(paths, np.array(FORBIDDEN[1:]))
    return {
        "max_energy_mean": float(max_e.mean()),
        "max_energy_std": float(max_e.std()),
        "hit_rate": hit_rate(paths[:, -1], np.array(X_END), recipe.hit_radius),
        "n_paths": int(len(paths)),
        "energy_evals_sampling": sample.energy_evals,
        "sampling_seconds": sample.seconds,
        "lag_last_point_widths": float(sample.lag[-1]),
        "frac_frames_in_region": float((dist < REGION_RADIUS).mean()),
        "frac_paths_through_region": float((dist < REGION_RADIUS).any(1).mean()),
        "frac_frames_within_0.5rad": float((dist < 0.5).mean()),
    }


def _steered(U, centres: Tensor, stiffness: Tensor, start: Tensor, budget: int, ds: float, recipe: Recipe, seed: int,
             device, progress: bool) -> dict:
    """The steered-MD baseline of a method (its first and last centre, its last stiffness, its budget)."""
    line = steered_baseline(U, centres[0], centres[-1], float(stiffness[-1]), start, budget, recipe.n_paths,
                            len(centres), ds, seed=seed, device=device, progress=progress)
    return {**_summary(line.sample, recipe), "energy_evals_total": line.sample.energy_evals,
            "steps_per_point": int(line.sample.paths.shape[1] // len(centres)), "stiffness": line.stiffness, "ds": ds,
            "what": "steered MD: the same annealed Langevin sampler and number of paths on straight-line centres from "
                    "the method's first to its last centre, at the constant stiffness the method's curve ends with "
                    "(kT / rad^2), with the method's whole force-evaluation budget (training data + refinement + "
                    "sampling) spent on sampling: more steps per point"}


def _refinement_info(refined: Refinement, recipe: Recipe) -> dict:
    return {"pilot_paths": recipe.pilot_paths, "pilot_steps_per_point": recipe.pilot_steps_per_point,
            "pilot_hit_rate": refined.pilot_hit_rate, "energy_evals_pilot": refined.evals_pilot,
            "energy_evals_string": refined.evals_string, "candidate_barriers": refined.barriers.tolist(),
            "chosen_candidate": refined.chosen, "barrier": float(refined.energies.max()),
            "string_iterations": refined.iterations, "string_converged": refined.converged,
            "seconds": refined.seconds,
            "what": "candidate 0 is the geodesic's own centres, then the pilot hits by rising MaxEnergy; each relaxed "
                    "by the string method, the lowest barrier (kT) kept"}


def _plot(U, curve: Tensor, paths: np.ndarray, mode: str, path: Path, recipe: Recipe, overwrite: bool) -> None:
    """Paths over the surface with the curve (``(N, 1 + 2)``; its centres ``x / alpha``), and its log-SNR."""
    import matplotlib.pyplot as plt

    from ..plotting import plot_log_snr, plot_paths, plot_surface, save_figure

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    plot_surface(U.grid_values, U.grid_axes, ax=ax1, vmax=60.0, label="U (kT)")
    plot_paths(paths, ax=ax1, n_show=30)
    curve = curve.detach().cpu()
    refined = "+string" in mode
    trace = (curve[:, 1:] / alpha_sigma(curve[:, 0])[0][:, None] if refined else curve[:, 1:]).numpy()
    ax1.plot(*wrap(trace).T, "r.", ms=2, label="restraint centres" if refined else "geodesic x(s)")
    if mode == "avoid":
        ax1.add_patch(plt.Circle(FORBIDDEN[1:], REGION_RADIUS, color="r", fill=False, ls="--"))
    ax1.set(xlabel="phi (rad)", ylabel="psi (rad)", title=f"aldp2d, {mode}")
    ax1.legend(loc="lower left", fontsize=7)
    threshold = {"low_variance": recipe.rho_var, "avoid": recipe.avoid_rho_var}.get(mode)
    plot_log_snr(curve[:, 0].numpy(), ax=ax2, threshold=threshold)
    ax2.set_title("log-SNR along the " + ("refined curve" if refined else "geodesic"))
    fig.tight_layout()
    save_figure(fig, path, overwrite)
