"""Restraint variants on chignolin (OBC2), one model, 16 paths each: the experiment behind the
RestraintSettings defaults of ``bench chignolin`` (docs/method.md, section 5).

    python benchmarks/chignolin_restraints.py WORKDIR VARIANT

appends one JSON line to benchmarks/chignolin_ablation/restraints.jsonl. The first call runs the MD
data (2 x 2 x 25,000 steps), trains the convex denoiser (2,000 steps) and the geodesic, and caches
them in WORKDIR (the settings of benchmarks/chignolin_ablation/convex.json). VARIANT:

- ``base``: the paper's targets ``x_n / alpha_n`` and stiffness ``kT exp(lam_n) / scale^2``;
- ``capK``: the stiffness capped at K kJ/mol/nm^2;
- ``pm``: posterior-mean targets ``D(x_n, lam_n)``;
- ``pm_LO_HI``: posterior-mean targets, stiffness clamped to [LO, HI];
- ``pmr_LO_HI``: the same respaced to equal restraint kicks (targets and log-stiffness interpolated);
- ``pmrhH_LO_HI``: respaced over N - H blocks, the last H blocks held at the end target;
- ``pmrb_LO_HI``: half equal-kick, half the geodesic's spacing;
- ``pmtC_LO_HI``: equal thermodynamic length per block, the stiffening counted with weight C * D / 2
  (C = 1: the ``spacing="thermodynamic"`` of RestraintSettings); ``pmtsC_LO_HI``: softening counted too;
- ``<variant>_xK``: every target minimised under the force field, restrained with K kJ/mol/nm^2;
- ``strain_<variant>``: no metrics; the paths' mean energy at blocks 40, 60, 80 next to the same frames
  continued for 2 ps with the target held and with no restraint (how much of the excess relaxes).

ETS (TPS-DPS's protocol, bench.path_metrics) is reported minus -1019.8 kJ/mol, the thermal max of
benchmarks/chignolin_ablation/convex.json (same system and MD settings). ``e_profile_blocks``: the
path-mean energy's maximum over every 5th block. Seconds are wall times on the shared 2-core machine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import openmm
import openmm.unit as unit
import torch

from tps_diffusion.bench.path_metrics import path_metrics
from tps_diffusion.molecular.catalogue import get_system
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.geodesic import MolecularGeodesic, molecular_geodesic
from tps_diffusion.molecular.md import run_md
from tps_diffusion.molecular.model import SELECTIONS, MolecularModel, train_on_samples
from tps_diffusion.molecular.paths import path_targets
from tps_diffusion.molecular.restrained import RESTRAINT_K, add_restraint, sample_paths
from tps_diffusion.molecular.superpose import superpose

OUT = Path(__file__).resolve().parent / "chignolin_ablation" / "restraints.jsonl"
THERMAL_MAX = -1019.8  # kJ/mol, benchmarks/chignolin_ablation/convex.json
KT = 2.494  # kJ/mol at 300 K
SEED = 0


def dynamics(system, seed: int) -> Dynamics:
    return Dynamics(temperature=300.0, timestep=system.default_timestep(), friction=1.0, seed=seed, n_workers=2)


def model_and_geodesic(system, work: Path) -> tuple[MolecularModel, MolecularGeodesic]:
    if not (work / "model.pt").exists():
        md = run_md(system, ["unfolded", "folded"], 25000, report_interval=50, dynamics=dynamics(system, SEED),
                    n_runs_per_start=2, progress=False)
        model = train_on_samples(system, md, "heavy",
                                 model_config=dict(hidden=256, depth=4, sigma_data=0.25, architecture="convex"),
                                 train_config=dict(steps=2000, batch_size=512, lr=2e-3, lam_sampling="importance",
                                                   seed=SEED), device="cpu", progress=False)
        model.save(work / "model.pt")
        geo = molecular_geodesic(model, system, "unfolded", "folded", mode="unconstrained", lam_end=4.0,
                                 n_points=100, n_nodes=2, steps=300, lr=0.1, seed=SEED, progress=False)
        geo.save(work / "geo.pt")
    return MolecularModel.load(work / "model.pt", system, device="cpu"), MolecularGeodesic.load(work / "geo.pt")


def respaced(targets: np.ndarray, k: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """Equal ``sqrt(k) |dT|`` per block (optionally blended with the geodesic's spacing, or with a hold), or
    equal thermodynamic length (``pmtC``: the stiffening counted with weight C * D / 2, ``pmtsC``: softening too)."""
    n = len(targets)
    step = np.sqrt(np.sqrt(k[1:] * k[:-1])) * np.linalg.norm((targets[1:] - targets[:-1]).reshape(n - 1, -1), axis=1)
    if variant.startswith("pmt"):
        symmetric = variant.startswith("pmts")
        weight = float(variant.split("_")[0][3 + symmetric:]) * targets[0].size / 2
        rise = np.diff(np.log(k)) if symmetric else np.maximum(np.diff(np.log(k)), 0.0)
        step = np.sqrt(step**2 / KT + weight * rise**2)
    arc = np.concatenate([[0.0], np.cumsum(step + 1e-9 * step.mean())])
    arc /= arc[-1]
    if variant.startswith("pmrb"):
        arc = 0.5 * arc + 0.5 * np.linspace(0, 1, n)
    hold = int(variant.split("_")[0][4:]) if variant.startswith("pmrh") else 0
    want = np.concatenate([np.linspace(0, 1, n - hold), np.ones(hold)])
    i = np.clip(np.searchsorted(arc, want, side="right"), 1, n - 1)
    w = np.clip((want - arc[i - 1]) / (arc[i] - arc[i - 1]), 0, 1)
    return (targets[i - 1] + w[:, None, None] * (targets[i] - targets[i - 1]),
            np.exp(np.log(k[i - 1]) + w * (np.log(k[i]) - np.log(k[i - 1]))))


def schedule(model: MolecularModel, geo: MolecularGeodesic, targets: np.ndarray, k: np.ndarray,
             variant: str) -> tuple[np.ndarray, np.ndarray]:
    if variant.startswith("cap"):
        return targets, np.minimum(k, float(variant[3:]))
    if not variant.startswith("pm"):
        return targets, k
    curve = (geo.curve[0] if geo.curve.ndim == 3 else geo.curve).double()
    dtype = next(model.denoiser.parameters()).dtype
    with torch.no_grad():
        x0 = model.denoiser(curve[:, 1:].to(dtype), curve[:, 0].to(dtype))
    targets = model.featurizer.normalizer.inverse(x0.double()).numpy().reshape(targets.shape)
    parts = variant.split("_x")[0].split("_")
    if len(parts) == 3:
        k = np.clip(k, float(parts[1]), float(parts[2]))
    if variant.startswith(("pmr", "pmt")):
        targets, k = respaced(targets, k, variant)
    return targets, k


def relaxed(system, atom_indices, targets: np.ndarray, k_relax: float, start: np.ndarray) -> np.ndarray:
    """Every target minimised under the force field with a restraint ``k_relax`` (kJ/mol/nm^2) on the
    restrained atoms, each from the previous minimised structure; returned in the targets' frame."""
    omm = openmm.XmlSerializer.deserialize(system.system_xml())
    force, _ = add_restraint(omm, atom_indices)
    context = openmm.Context(omm, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setParameter(RESTRAINT_K, k_relax)
    current, out = np.array(start), []
    for target in targets:
        for j, (i, xyz) in enumerate(zip(atom_indices, superpose(target, current[atom_indices]))):
            force.setParticleParameters(j, int(i), [float(v) for v in xyz])
        force.updateParametersInContext(context)
        context.setPositions(current)
        openmm.LocalEnergyMinimizer.minimize(context, 1.0, 200)
        current = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        out.append(superpose(current[atom_indices], target))
    return np.array(out)


def strain(system, model: MolecularModel, geo: MolecularGeodesic, targets: np.ndarray, k: np.ndarray) -> dict:
    """Mean energy of 4 paths at blocks 40, 60, 80 next to the same frames continued for 2 ps with the
    target held (stiffness of the block) and with no restraint: how much of the excess relaxes."""
    K, dyn = 25, dynamics(system, SEED + 1)
    ps = sample_paths(system, model.featurizer, targets, k, geo.start().positions, 4, K, dynamics=dyn,
                      record_interval=1, progress=False)
    out = {}
    for b in (40, 60, 80):
        row = {"path": float(ps.energies[:, (b - 1) * K:b * K].mean())}
        for name, kk in (("held", k[b]), ("free", 0.0)):
            e = np.array([sample_paths(system, model.featurizer, np.repeat(targets[b][None], 40, 0), np.full(40, kk),
                                       t.xyz[b * K - 1], 1, K, dynamics=dyn, record_interval=5,
                                       progress=False).energies[0] for t in ps.trajectories])
            row[f"{name}_first_ps"], row[f"{name}_second_ps"] = float(e[:, :100].mean()), float(e[:, 100:].mean())
        out[f"block_{b}"] = row
    return out


def main(work: Path, variant: str) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    system = get_system("chignolin_obc2", temperature=300.0)
    top = system.md_topology
    heavy, ca = top.select(SELECTIONS["heavy"]), top.select("name CA")
    model, geo = model_and_geodesic(system, work)
    if variant.startswith("strain_"):  # strain_<restraint variant>
        res = {"variant": variant, **strain(system, model, geo, *schedule(model, geo, *path_targets(system, model, geo),
                                                                          variant[7:]))}
        with open(OUT, "a") as f:
            f.write(json.dumps(res) + "\n")
        return res
    targets, k = schedule(model, geo, *path_targets(system, model, geo), variant)
    if "_x" in variant:
        targets = relaxed(system, model.featurizer.atom_indices, targets, float(variant.split("_x")[1]),
                          geo.start().positions)
    t0 = time.time()
    ps = sample_paths(system, model.featurizer, targets, k, geo.start().positions, 16, 25,
                      dynamics=dynamics(system, SEED + 1), record_interval=1, progress=False)
    m = path_metrics(ps.trajectories, ps.energies, system.positions_of("folded"), heavy, ca, 1.0,
                     system.default_timestep())
    ets = m["ets_kj_mol_mean"]
    res = {"variant": variant, "hit": m["hit_percent"], "rmsd": m["rmsd_angstrom_mean"], "ets": ets,
           "ets_minus_thermal(-1019.8)": None if ets is None else ets - THERMAL_MAX,
           "emax_mean": float(ps.energies.max(1).mean()), "seconds": time.time() - t0,
           "e_profile_blocks": [float(x) for x in ps.energies.mean(0).reshape(len(targets), -1).max(1)[::5]]}
    with open(OUT, "a") as f:
        f.write(json.dumps(res) + "\n")
    return res


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), sys.argv[2])))
