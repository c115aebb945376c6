"""Sampler throughput of the kernel benchmark: walker-steps per second of annealed Langevin.

On the 2-D alanine dipeptide (phi, psi) surface and, when the offline parameters are installed,
with ANI-1x on all-atom alanine dipeptide (22 atoms, vacuum).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch

from .kernel_setup import KernelRecipe, log
from .timing import free, loadavg

__all__ = ["sampler_2d", "sampler_ani"]

KT_300K = 2.494338785  # kJ/mol at 300 K


def _time_sampler(call: Callable[[], object], n_walker_steps: int, recipe: KernelRecipe) -> dict:
    """Seconds (as reported by the sampler) of up to ``sampler_repeats`` runs after a warm-up run."""
    first = call().seconds
    n = max(1, min(recipe.sampler_repeats, int(recipe.sampler_budget_s // max(first, 1e-9))))
    times = [call().seconds for _ in range(n)]
    sec = statistics.median(times)
    return {"seconds": sec, "times": [round(t, 6) for t in times], "warmup_seconds": round(first, 6),
            "walker_steps_per_s": n_walker_steps / sec}


def sampler_2d(recipe: KernelRecipe, dev: torch.device, seed: int, progress: bool) -> dict:
    from ..core.langevin import annealed_langevin
    from ..potentials.surfaces import load_aldp_surface
    from .aldp2d import X_END, X_START

    U = load_aldp_surface().to(dev)
    n_pts, k = recipe.sampler_2d_schedule
    a, b = torch.tensor(X_START, dtype=torch.float64), torch.tensor(X_END, dtype=torch.float64)
    s = torch.linspace(0.0, 1.0, n_pts, dtype=torch.float64)[:, None]
    centres = a + s * (b - a)
    stiffness = torch.full((n_pts,), math.exp(recipe.lam_end), dtype=torch.float64)
    rows = []
    for p in recipe.sampler_2d_walkers:
        def call(p=p):
            return annealed_langevin(U, centres, stiffness, a, n_paths=p, steps_per_point=k, ds=recipe.sampler_2d_ds,
                                     seed=seed, device=dev, progress=False)
        load = loadavg()
        row = {"walkers": p, "steps": n_pts * k, **_time_sampler(call, p * n_pts * k, recipe), "loadavg": load}
        rows.append(row)
        log(progress, f"sampler aldp2d walkers={p}: {row['walker_steps_per_s']:.0f} walker-steps/s")
    return {"potential": "aldp 2-D (phi, psi) surface (periodic B-spline, load_aldp_surface)", "kT": 1.0,
            "schedule": {"curve_points": n_pts, "steps_per_point": k, "ds": recipe.sampler_2d_ds,
                         "stiffness": math.exp(recipe.lam_end)}, "rows": rows}


def sampler_ani(recipe: KernelRecipe, dev: torch.device, seed: int, progress: bool) -> dict:
    from ..core.langevin import annealed_langevin
    from ..utils.systems_dir import systems_dir

    pdb = systems_dir() / "alanine_dipeptide" / "C5_min.pdb"
    info: dict = {"potential": "ANI-1x (8-model ensemble), all-atom alanine dipeptide in vacuum", "pdb": str(pdb)}
    try:
        import mdtraj

        from ..potentials.ani import ANIPotential

        traj = mdtraj.load(str(pdb))
        t0 = time.perf_counter()
        U = ANIPotential(traj.topology, model="ANI-1x", device=dev, dtype=torch.float32)
        info["load_seconds"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - missing module/parameters: the report says why
        info.update(available=False, reason=f"{type(exc).__name__}: {exc}"[:800])
        log(progress, f"sampler ANI skipped: {info['reason']}")
        return info
    info.update(available=True, n_atoms=int(traj.n_atoms), dtype="float32", kT_kJ_per_mol=KT_300K)
    n_pts, k = recipe.ani_schedule
    x0 = torch.tensor(traj.xyz[0].reshape(-1), dtype=torch.float64)
    centres = x0.expand(n_pts, -1).clone()
    stiffness = torch.full((n_pts,), recipe.ani_tilt / KT_300K, dtype=torch.float64)
    info["schedule"] = {"curve_points": n_pts, "steps_per_point": k, "ds_nm2": recipe.ani_ds,
                        "tilt_kJ_per_mol_nm2": recipe.ani_tilt, "centre": "start structure (C5_min.pdb)"}
    rows = []
    for p in recipe.ani_walkers:
        def call(p=p):
            return annealed_langevin(U, centres, stiffness, x0, n_paths=p, steps_per_point=k, ds=recipe.ani_ds,
                                     kT=KT_300K, seed=seed, device=dev, progress=False)
        load = loadavg()
        try:
            row = {"walkers": p, "steps": n_pts * k, **_time_sampler(call, p * n_pts * k, recipe), "loadavg": load}
        except Exception as exc:  # noqa: BLE001 - a failing ANI backend is reported, not fatal
            free(dev)
            row = {"walkers": p, "error": f"{type(exc).__name__}: {exc}"[:500]}
        rows.append(row)
        log(progress, f"sampler ANI-1x walkers={p}: {row.get('walker_steps_per_s', float('nan')):.1f} walker-steps/s")
    info["rows"] = rows
    return info
