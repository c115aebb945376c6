"""``tps-diffusion verify RUN_A RUN_B``: do two run directories hold the same results?

Outputs are compared by their content hash (coordinates of trajectories, tensors of checkpoints,
arrays of ``.npz`` files; bytes for everything else), so two same-seed runs compare equal even
though trajectory writers stamp dates into the files. Timings, dates and paths are not compared.
"""

from __future__ import annotations

from pathlib import Path

from .rundir import MANIFEST, MANIFEST_FORMAT, read_json

__all__ = ["compare_runs"]


def _outputs(run_dir: Path) -> dict[str, str]:
    manifest = read_json(run_dir / MANIFEST)
    if manifest is None or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{run_dir} is not a run directory (no readable {MANIFEST}); give the --run-dir of a command")
    if manifest.get("status") != "ok":
        raise ValueError(f"{run_dir / MANIFEST} records an incomplete run (status {manifest.get('status')!r}); "
                         f"compare complete runs only")
    out = {}
    for key, entry in manifest.get("outputs", {}).items():
        entries = entry.get("files", [entry]) if isinstance(entry, dict) else []
        for e in entries:
            name = key if "files" not in entry else f"{key}/{e['path']}"
            out[name] = e.get("content_sha256") or e.get("sha256")
    return out


def compare_runs(a: str | Path, b: str | Path) -> list[tuple[str, str]]:
    """``[(output, "same" | "differs" | "only in A" | "only in B")]`` for two run directories."""
    oa, ob = _outputs(Path(a)), _outputs(Path(b))
    rows = []
    for key in sorted(set(oa) | set(ob)):
        if key not in ob:
            rows.append((key, "only in A"))
        elif key not in oa:
            rows.append((key, "only in B"))
        else:
            rows.append((key, "same" if oa[key] == ob[key] else "differs"))
    return rows
