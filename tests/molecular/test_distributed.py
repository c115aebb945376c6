"""The executor abstraction with real components: the same seed gives bitwise the same MD runs, paths,
committor shots and two-way shots (Reference platform, alanine dipeptide in vacuum) in this process, in the
local process pool, on a ``dask.distributed.LocalCluster`` (2 worker processes, 1 thread each) and on a scheduler
and 2 workers started as separate ``dask scheduler`` / ``dask worker`` processes; the CLI's --scheduler gives the
same run directory as the local pool; a SLURM job script carries the configured keywords (nothing submitted);
bad cluster options fail in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tps_diffusion.cli import main
from tps_diffusion.cli.verify import compare_runs
from tps_diffusion.cluster import dask_executor, job_script, load_cluster_config
from tps_diffusion.molecular import parallel
from tps_diffusion.molecular.committor import committor
from tps_diffusion.molecular.dynamics import Dynamics
from tps_diffusion.molecular.formats import load_trajectory
from tps_diffusion.molecular.md import run_md
from tps_diffusion.molecular.restrained import sample_paths
from tps_diffusion.molecular.shooting import in_states, two_way_shooting

distributed = pytest.importorskip("distributed")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def case(aldp, straight_targets):
    featurizer, targets = straight_targets
    # frames between the states: from a C5 -> C7ax path of the aldp benchmark
    path = load_trajectory(BENCH / "aldp_paths.dcd", BENCH / "aldp_paths.pdb")[[110, 179, 181, 182]]
    assert not aldp.assign_states(path).any()
    return featurizer, targets, path


def everything(aldp, case, executor=None, n_workers=1) -> dict[str, np.ndarray]:
    """Paths, MD runs, committor shots and two-way shots + a TPS move: every sampler, a few tasks each."""
    featurizer, targets, _ = case
    dyn = Dynamics(seed=9, n_workers=n_workers)
    ps = sample_paths(aldp, featurizer, targets, 500.0, "C5", n_paths=6, steps_per_point=10, dynamics=dyn,
                      progress=False, executor=executor)
    md = run_md(aldp, ["C5", "C7ax"], n_steps=40, report_interval=10, n_runs_per_start=2, dynamics=dyn,
                progress=False, executor=executor)
    in_a, in_b = in_states(aldp, "C5", "C7eq"), in_states(aldp, "C7ax")
    frames = case[2]
    c = committor(aldp, frames, in_a, in_b, n_shots=3, max_steps=100, check_interval=10, dynamics=dyn,
                  progress=False, executor=executor)
    shots = two_way_shooting(aldp, frames, in_a, in_b, n_shots=2, max_steps=1000, check_interval=10, dynamics=dyn,
                             tps_moves=2, progress=False, executor=executor)
    assert c.n_decided.sum() < c.n_configs * c.n_shots  # shots ran (frames outside the states)
    return {"paths": np.stack([t.xyz for t in ps.trajectories]), "energies": ps.energies, "tilt": ps.tilt_energies,
            "md": md.trajectory.xyz, "md_energy": md.potential_energy, "committor": c.outcomes, "steps": c.steps,
            "shots": np.array([[s.forward, s.backward, s.forward_steps, s.backward_steps] for s in shots.shots]),
            "reactive": np.concatenate([t.xyz.ravel() for t in shots.trajectories] or [np.zeros(0)]),
            "tps": np.array([[m.shooting_frame, m.n_frames_new, m.accepted] for m in shots.tps.moves]
                            if shots.tps is not None else np.zeros((0, 3)))}


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # bitwise (NaN == NaN here)


@pytest.fixture(scope="module")
def reference(aldp, case):
    return everything(aldp, case)


def test_local_pool_matches_this_process(aldp, case, reference):
    assert_identical(reference, everything(aldp, case, n_workers=2))
    assert not np.array_equal(reference["paths"][0], reference["paths"][1])  # one stream per path


def test_local_cluster_matches_the_local_pool(aldp, case, reference):
    from distributed import LocalCluster

    with dask_executor(cluster="local", jobs=2) as ex:  # what --cluster local --jobs 2 starts
        client = ex._client
        assert isinstance(client.cluster, LocalCluster) and client.cluster.processes
        assert sorted(w["nthreads"] for w in client.scheduler_info()["workers"].values()) == [1, 1]
        assert_identical(reference, everything(aldp, case, executor=ex))
        assert_identical(reference, everything(aldp, case, executor=client))  # a Client is taken as well


@pytest.fixture(scope="module")
def external_scheduler(tmp_path_factory):
    """``dask scheduler`` and ``dask worker --nworkers 2 --nthreads 1`` as separate processes on localhost."""
    d = tmp_path_factory.mktemp("dask")
    file = d / "scheduler.json"
    dask = shutil.which("dask")
    cmd = [dask] if dask else [sys.executable, "-m", "dask"]
    log = open(d / "log.txt", "w")
    procs = [subprocess.Popen([*cmd, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(file)], stdout=log, stderr=subprocess.STDOUT, cwd=d,
                              start_new_session=True)]
    try:
        for _ in range(300):
            if file.is_file() and file.stat().st_size:
                break
            time.sleep(0.1)
        procs.append(subprocess.Popen([*cmd, "worker", "--scheduler-file", str(file), "--nworkers", "2",
                                       "--nthreads", "1", "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT,
                                      cwd=d, start_new_session=True))
        from distributed import Client

        with Client(scheduler_file=str(file), timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield file
    finally:  # each started in its own session: kill it with the nannies and workers it started
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=20)
        log.close()


def test_external_scheduler_matches_the_local_pool(aldp, case, reference, external_scheduler):
    address = json.loads(external_scheduler.read_text())["address"]
    with dask_executor(scheduler=address) as ex:
        assert ex.tps_workers == 0 and parallel.executor_workers(ex) == 2
        assert_identical(reference, everything(aldp, case, executor=ex))


def test_cli_scheduler_option_gives_the_local_run(tmp_path, external_scheduler):
    argv = ["simulate", "--system", "alanine_dipeptide", "--steps", "40", "--report-interval", "10",
            "--runs-per-state", "2", "--seed", "3", "--quiet"]
    assert main([*argv, "--run-dir", str(tmp_path / "local"), "--workers", "2"]) == 0
    assert main([*argv, "--run-dir", str(tmp_path / "dask"), "--scheduler", str(external_scheduler)]) == 0
    rows = compare_runs(tmp_path / "local", tmp_path / "dask")
    assert rows and all(verdict == "same" for _, verdict in rows), rows
    # 'run' with the scheduler as a top-level key: its stages run there, with the same results
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'scheduler = "{external_scheduler}"\nsystem = "alanine_dipeptide"\nseed = 3\n[simulate]\n'
                   'steps = 40\nreport-interval = 10\nruns-per-state = 2\n')
    assert main(["run", "--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "run" / "simulate" / "manifest.json").read_text())
    assert "--scheduler" in manifest["command_line"]
    rows = compare_runs(tmp_path / "local", tmp_path / "run" / "simulate")
    assert rows and all(verdict == "same" for _, verdict in rows), rows


# ------------------------------------------------------------------------------- the batch driver


def _setup(payload: dict) -> dict:
    _setup.calls += 1
    return {"offset": payload["offset"]}


_setup.calls = 0


def _batch(state: dict, tasks, progress):
    for t in tasks:
        time.sleep(0.002 * (t % 4))  # batches finish out of order
        if t == 13:
            raise RuntimeError("task 13 failed")
        yield state["offset"] + t


def test_batches_keep_task_order_and_set_up_once_per_payload():
    seen = []
    with ThreadPoolExecutor(3) as pool:
        out = parallel.run_batches(_setup, _batch, {"offset": 100}, list(range(12)), executor=pool, batch_size=2,
                                   on_result=lambda i, r: seen.append(i))
        again = parallel.run_batches(_setup, _batch, {"offset": 100}, list(range(5)), executor=pool)
        with pytest.raises(RuntimeError, match="task 13 failed"):
            parallel.run_batches(_setup, _batch, {"offset": 1}, list(range(20)), executor=pool, batch_size=3)
    assert out == [100 + t for t in range(12)] and sorted(seen) == list(range(12))
    assert again == [100, 101, 102, 103, 104]
    assert _setup.calls == 2  # one payload set up once for both calls, the other once
    assert parallel.batch_size_for(1000, 2) == 32 and parallel.batch_size_for(10, 2) == 2
    assert parallel.batch_size_for(1000, 2, task_bytes=100 * 2**20) == 2  # a batch returns <= 256 MiB
    assert parallel.batch_size_for(3, 8, task_bytes=2**40) == 1


def test_executor_argument_is_checked(aldp, case):
    featurizer, targets, _ = case
    with pytest.raises(TypeError, match="concurrent.futures.Executor"):
        sample_paths(aldp, featurizer, targets, 1.0, "C5", 1, 10, progress=False, executor="tcp://x:1")


# ------------------------------------------------------------------------------- cluster configs


def test_slurm_job_script_has_the_configured_keywords(tmp_path):
    pytest.importorskip("dask_jobqueue")
    cfg = tmp_path / "cluster.toml"
    cfg.write_text('[slurm]\nqueue = "gpu"\naccount = "chem42"\ncores = 4\nmemory = "16GB"\nwalltime = "02:30:00"\n'
                   'job_extra_directives = ["--gres=gpu:1", "--constraint=a100"]\n'
                   'job_script_prologue = ["module load cuda", "export OPENMM_CPU_THREADS=1"]\n')
    script = job_script("slurm", cfg)
    for line in ("#SBATCH -p gpu", "#SBATCH -A chem42", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=15G",
                 "#SBATCH -t 02:30:00", "#SBATCH --gres=gpu:1", "#SBATCH --constraint=a100", "module load cuda",
                 "export OPENMM_CPU_THREADS=1"):
        assert line in script, (line, script)
    assert "--nthreads 1" in script and "--nworkers 4" in script  # one single-threaded worker per core
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'job_extra' \(did you mean 'job_extra_directives'\?\)"):
        load_cluster_config({"queue": "q", "job_extra": ["-x"]}, "slurm")
    examples = BENCH.parent / "examples"
    assert "#SBATCH -p compute" in job_script("slurm", examples / "cluster_slurm.toml")
    assert "#PBS -l select=1:ncpus=24:mem=48GB" in job_script("pbs", examples / "cluster_pbs.toml")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("tps-diffusion: error: "), err
    return err


@pytest.mark.parametrize("extra,code,message", [
    (["--scheduler", "nonsense::address"], 1, "cannot connect to the Dask scheduler at 'nonsense::address'"),
    (["--scheduler", "missing.json"], 1, "scheduler file not found: missing.json"),
    (["--scheduler", "tcp://127.0.0.1:1", "--cluster", "local"], 2, "give --scheduler"),
    (["--jobs", "2"], 2, "--jobs needs --cluster"),
    (["--cluster", "local", "--workers", "2"], 2, "--workers sets local processes"),
    (["--cluster", "slurm", "--cluster-config", "CFG"], 1, "unknown key(s) 'queu' (did you mean 'queue'?)"),
])
def test_cli_cluster_errors_are_one_line(tmp_path, capsys, extra, code, message):
    (tmp_path / "bad.toml").write_text('queu = "x"\ncores = 1\n')
    extra = [str(tmp_path / "bad.toml") if e == "CFG" else e for e in extra]
    argv = ["simulate", "--system", "alanine_dipeptide", "--steps", "10", "--report-interval", "10", "--quiet",
            "--run-dir", str(tmp_path / "r")]
    assert main([*argv, *extra]) == code
    assert message in one_line_error(capsys)


def test_cli_without_dask_jobqueue_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails as if not installed
    argv = ["simulate", "--system", "alanine_dipeptide", "--steps", "10", "--report-interval", "10", "--quiet",
            "--run-dir", str(tmp_path / "r")]
    assert main([*argv, "--cluster", "pbs"]) == 1
    assert "--cluster pbs needs dask-jobqueue: pip install dask-jobqueue" in one_line_error(capsys)


def test_run_config_takes_the_cluster_keys(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('jobs = 2\n[simulate]\nsteps = 10\nreport-interval = 10\n')
    assert main(["run", "--config", str(cfg), "--run-dir", str(tmp_path / "r"), "--quiet"]) == 1
    assert "--jobs needs --cluster" in one_line_error(capsys)


def test_workers_choose_their_own_platform_when_none_is_named(aldp, monkeypatch):
    """With an executor and no platform named, the platform is picked on the worker (CUDA on a GPU
    worker), not on the client: the client's resolution leaves it None and BatchContext asks
    default_platform on the worker with the System it received."""
    from tps_diffusion.molecular import _openmm

    dyn = Dynamics(seed=1).for_system(aldp, check_platform=False)
    assert dyn.platform is None and dyn.temperature == aldp.temperature
    assert Dynamics(seed=1, platform="Reference").for_system(aldp, check_platform=False).platform == "Reference"
    assert Dynamics(seed=1).for_system(aldp).platform == "Reference"  # no executor: resolved here (22 atoms)
    asked = []

    def worker_default(n_atoms):  # stands in for a GPU worker's answer
        asked.append(n_atoms)
        return "Reference"

    monkeypatch.setattr(_openmm, "default_platform", worker_default)
    context = parallel.BatchContext(dyn, aldp.openmm_system)
    ctx, _ = context.start(aldp.positions_of("C5"), 3)
    assert asked == [aldp.n_atoms] and ctx.getPlatform().getName() == "Reference"
