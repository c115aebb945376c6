"""Worker pools that cannot hang: after the parent has used OpenMM's multi-threaded CPU platform,
workers are not forked from it (a fork can inherit a lock held by one of its threads)."""

import subprocess
import sys

from tps_diffusion.molecular._openmm import mp_context

SCRIPT = """
from tps_diffusion.molecular.catalogue import alanine_dipeptide
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.md import run_md
if __name__ == "__main__":
    system = alanine_dipeptide(platform="CPU")
    system.minimize()                              # CPU-platform threads now exist in this process
    system.potential_energy(system.positions)
    md = run_md(system, ["C5", "C7ax"], n_steps=40, report_interval=10, n_runs_per_start=2,
                dynamics=Dynamics(platform="CPU", n_workers=2, seed=1), progress=False)
    print("frames", md.trajectory.n_frames)
"""


def test_start_methods():
    assert mp_context(None, "Reference").get_start_method() == "fork"
    assert mp_context(None, "CPU").get_start_method() == "forkserver"
    assert mp_context(None, "CUDA").get_start_method() == "spawn"
    assert mp_context("spawn", "Reference").get_start_method() == "spawn"


def test_workers_after_cpu_platform_use_in_the_parent_finish(tmp_path):
    """Fails by timeout (a hang) if the pool forks a process whose CPU-platform threads hold a lock."""
    script = tmp_path / "workers.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "frames 16"
