"""Print the measured benchmark figures as Markdown tables (used for README.md).

    python benchmarks/report.py benchmarks/aldp2d.json [benchmarks/aldp.json ...]
"""

import argparse
import json
import sys


def aldp2d(r: dict) -> str:
    rows = ["| mode | MaxEnergy (kT) | hit rate | min log-SNR | frames in region "
            "| energy evals sampling / training data | geodesic s | sampling s |",
            "|---|---|---|---|---|---|---|---|"]
    for mode, m in r["modes"].items():
        rows.append(f"| {mode} | {m['max_energy_mean']:.2f} +- {m['max_energy_std']:.2f} | "
                    f"{100 * m['hit_rate']:.1f} % | "
                    f"{m['min_lambda']:.2f} | {100 * m['frac_frames_in_region']:.3f} % | "
                    f"{m['energy_evals_sampling'] / 1e6:.2f} M / {m['energy_evals_training_data'] / 1e6:.2f} M | "
                    f"{m['geodesic_seconds']:.1f} | {m['sampling_seconds']:.1f} |")
    first = next(iter(r["modes"].values()))
    rows.append("")
    rows.append(f"Lower bound (minimax on the grid): {r['lower_bound']:.2f}. "
                f"Training {first['training_seconds']:.0f} s; "
                f"whole run {r.get('total_seconds', float('nan')):.0f} s on {r['machine']['processor']} "
                f"({r['machine']['device']}, {r['machine']['cpu_count']} torch threads).")
    return "\n".join(rows)


def chignolin(r: dict) -> str:
    """One row per method of a chignolin report: TPS-DPS's metrics, ETS over the thermal max, the metric check."""
    rec, check = r["recipe"], r["metric_check"]
    thermal = r["thermal_baseline"]["thermal_max_kj_mol"]
    rows = []
    for name, m in r["methods"].items():
        ets = m["ets_kj_mol_mean"]
        ets_txt = "-" if ets is None else f"{ets:.0f} +- {m['ets_kj_mol_std'] or 0:.0f} ({ets - thermal:+.0f})"
        steps = rec["steps_per_point"] * rec["n_points"]
        floor = rec.get("min_stiffness")
        targets = rec.get("targets", "tilt") + ("" if floor is None else f", k >= {floor:g}")
        rows.append(f"| {r['solvent']} | {rec['selection']} | {rec.get('architecture', 'mlp')} | {rec['mode']} | "
                    f"{targets} | {rec.get('spacing', 'geodesic')} | {steps} | {name} | "
                    f"{m['n_paths']} | {m['hit_percent']:.0f} % | {m['rmsd_angstrom_mean']:.2f} | "
                    f"{m['ca_rmsd_angstrom_mean']:.2f} | {ets_txt} | "
                    f"{100 * check['negative_mass']:.0f} % | {r['energy_evals']['total'] / 1e6:.2f} M |")
    return "\n".join(rows)


CHIGNOLIN_HEADER = ("| solvent | restrained atoms | denoiser | geodesic mode | targets | spacing | steps per path "
                    "| method "
                    "| paths | hit | heavy-atom RMSD at cut (A) | C-alpha RMSD at cut (A) "
                    "| ETS kJ/mol (minus thermal max) | metric negative mass | force evaluations (MD + paths) |\n"
                    + "|---" * 15 + "|")


def generic(r: dict) -> str:
    keys = [k for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return "\n".join(["| figure | value |", "|---|---|"] + [f"| {k} | {r[k]:.4g} |" for k in keys])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", metavar="JSON",
                    help="report of 'tps-diffusion bench NAME --out FILE' (e.g. benchmarks/aldp2d.json)")
    args = ap.parse_args(argv)
    reports = []
    for path in args.reports:
        with open(path) as fh:
            reports.append((path, json.load(fh)))
    chig = [r for _, r in reports if r.get("benchmark") == "chignolin"]
    if chig:  # one table for all chignolin reports (an ablation)
        print(CHIGNOLIN_HEADER)
        print("\n".join(chignolin(r) for r in chig))
        print()
    for path, report in reports:
        if report.get("benchmark") == "chignolin":
            continue
        print(f"### {path}\n")
        print(aldp2d(report) if report.get("benchmark") == "aldp2d" else generic(report))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
