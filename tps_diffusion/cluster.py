"""Dask clusters for the samplers: connect to a running scheduler, or start a local cluster or a SLURM/PBS
one (dask-jobqueue), and hand back a ``concurrent.futures.Executor`` (docs/distributed.md).

    from tps_diffusion.cluster import dask_executor
    with dask_executor(cluster="slurm", config="examples/cluster_slurm.toml", jobs=4) as ex:
        paths = sample_molecular_paths(system, model, geo, n_paths=10_000, steps_per_point=32, executor=ex)

Only the standard library is imported here; Dask is imported when a cluster is asked for.
"""

from __future__ import annotations

import difflib
import inspect
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import tomllib

__all__ = ["CLUSTERS", "JOBQUEUE_INSTALL", "cluster_keys", "dask_executor", "describe", "job_script",
           "load_cluster_config"]

#: kinds of cluster :func:`dask_executor` starts
CLUSTERS = ("local", "slurm", "pbs")
JOBQUEUE_INSTALL = "pip install dask-jobqueue (or pip install 'tps-diffusion[cluster]')"

#: LocalCluster keywords a cluster config may set (workers get one thread each unless threads_per_worker says)
_LOCAL_KEYS = ("n_workers", "threads_per_worker", "memory_limit", "local_directory", "dashboard_address", "host",
               "scheduler_port", "interface", "protocol")
#: dask-jobqueue keywords that a config must not set (managed here, internal, or deprecated names)
_JOBQUEUE_HIDDEN = {"self", "scheduler", "loop", "asynchronous", "job_cls", "scheduler_cls", "n_workers", "config_name",
                    "extra", "job_extra", "env_extra", "header_skip", "base_class_kwargs", "job_kwargs",
                    "dashboard_address"}
#: dask-jobqueue's deprecated keywords and their current names
_RENAMED = {"job_extra": "job_extra_directives", "env_extra": "job_script_prologue", "extra": "worker_extra_args",
            "header_skip": "job_directives_skip", "dashboard_address": "scheduler_options"}


def _jobqueue_class(kind: str):
    try:
        import dask_jobqueue
    except ImportError:
        raise ImportError(f"--cluster {kind} needs dask-jobqueue: {JOBQUEUE_INSTALL}") from None
    return {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}[kind]


def cluster_keys(kind: str) -> list[str]:
    """The keywords a cluster config of ``kind`` may set (for SLURM/PBS: dask-jobqueue's, e.g. queue,
    account, cores, memory, processes, walltime, job_extra_directives, job_script_prologue)."""
    _check_kind(kind)
    if kind == "local":
        return sorted(_LOCAL_KEYS)
    cls = _jobqueue_class(kind)
    from dask_jobqueue.core import Job

    keys = set()
    for fn in (cls.__init__, cls.job_cls.__init__, Job.__init__):
        keys |= {p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD}
    return sorted(keys - _JOBQUEUE_HIDDEN)


def _check_kind(kind: str) -> None:
    if kind not in CLUSTERS:
        raise ValueError(f"unknown cluster {kind!r}; choose one of {', '.join(CLUSTERS)}")


def load_cluster_config(config, kind: str) -> dict[str, Any]:
    """The keywords of a cluster config: a TOML file (top-level keys, or a ``[slurm]`` / ``[pbs]`` /
    ``[local]`` table for ``kind``), a dict, or None; unknown keys raise a one-line ValueError."""
    _check_kind(kind)
    source = "the cluster config"
    if config is None:
        cfg: dict = {}
    elif isinstance(config, dict):
        cfg = dict(config)
    else:
        path = Path(config)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"cluster config file not found: {path}")
        try:
            cfg = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: invalid TOML: {exc}") from None
    if isinstance(cfg.get(kind), dict):  # one file for several kinds of cluster
        cfg = cfg[kind]
    cfg = {k.replace("-", "_"): v for k, v in cfg.items() if not (k in CLUSTERS and isinstance(v, dict))}
    known = cluster_keys(kind)
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        hints = []
        for k in unknown:
            m = [_RENAMED[k]] if k in _RENAMED else difflib.get_close_matches(k, known, 1)
            hints.append(f"{k!r} (did you mean {m[0]!r}?)" if m else repr(k))
        raise ValueError(f"{source}: unknown key(s) {', '.join(hints)} for a {kind} cluster; known: {', '.join(known)}")
    return cfg


def _start_cluster(kind: str, cfg: dict, jobs: int | None):
    """(cluster, expected workers) of ``kind``; SLURM/PBS jobs are submitted by ``scale`` (not here)."""
    if kind == "local":
        from distributed import LocalCluster

        cfg = {"threads_per_worker": 1, "dashboard_address": None, **cfg}
        n = int(jobs or cfg.pop("n_workers", None) or os.cpu_count() or 1)
        cfg.pop("n_workers", None)
        return LocalCluster(n_workers=n, processes=True, **cfg), n
    cls = _jobqueue_class(kind)
    if "cores" in cfg and "processes" not in cfg:
        cfg["processes"] = cfg["cores"]  # one single-threaded worker per core (a process runs one batch at a time)
    try:
        cluster = cls(**cfg)
    except ValueError as exc:  # e.g. "You must specify how many cores to use per job like ``cores=8``"
        raise ValueError(f"{kind} cluster: {str(exc).splitlines()[0]}; set it in --cluster-config") from None
    per_job = getattr(getattr(cluster, "_dummy_job", None), "worker_processes", None) or cfg.get("processes") or 1
    return cluster, int(jobs or 1) * int(per_job)


def job_script(kind: str, config=None) -> str:
    """The batch script dask-jobqueue would submit for one job of a SLURM/PBS cluster config (nothing is
    submitted): check queue, cores, memory, walltime and directives before a run."""
    if kind == "local":
        raise ValueError("a local cluster submits no job script; use slurm or pbs")
    cfg = load_cluster_config(config, kind)
    cfg["scheduler_options"] = {"dashboard_address": ":0", **cfg.get("scheduler_options", {})}  # any free port
    cluster, _ = _start_cluster(kind, cfg, None)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _connect(address: str, timeout: float):
    from distributed import Client

    path = Path(address)
    try:
        if address.endswith(".json") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"scheduler file not found: {address}")
            return Client(scheduler_file=str(path), timeout=timeout)
        return Client(address, timeout=timeout)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, TypeError) as exc:  # timeouts are OSErrors; a malformed address a ValueError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OSError(f"cannot connect to the Dask scheduler at {address!r} ({reason}); start one with 'dask "
                      f"scheduler' and give the address it prints (tcp://HOST:8786) or its --scheduler-file") from None


def describe(executor) -> str:
    """One line about a Dask executor: scheduler address and workers."""
    client = getattr(executor, "_client", None)
    if client is None:
        return type(executor).__name__
    workers = len(client.nthreads())
    return f"dask scheduler {client.scheduler.address}, {workers} worker(s) connected"


@contextmanager
def dask_executor(scheduler: str | None = None, cluster: str | None = None, config=None, jobs: int | None = None,
                  timeout: float = 10.0) -> Iterator:
    """A ``concurrent.futures.Executor`` on Dask, closed (with the cluster it started) at the end.

    ``scheduler``: address of a running scheduler (``tcp://host:8786``) or its scheduler file
    (``.json``); or ``cluster``: ``"local"`` (a LocalCluster of ``jobs`` single-threaded worker
    processes, default one per core), ``"slurm"`` or ``"pbs"`` (dask-jobqueue; ``jobs`` batch jobs,
    default 1, each with the ``config`` keywords: queue, account, cores, memory, walltime,
    job_extra_directives, ...; ``processes`` defaults to ``cores``: single-threaded workers).
    ``config``: a TOML file or dict (:func:`load_cluster_config`).
    """
    if (scheduler is None) == (cluster is None):
        raise ValueError("give either a scheduler address or a cluster kind (local, slurm, pbs)")
    if jobs is not None and int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1; got {jobs}")
    started = None
    if scheduler is not None:
        if config is not None or jobs is not None:
            raise ValueError("a cluster config and jobs apply to a cluster started here (local, slurm, pbs), not to a "
                             "running scheduler")
        client = _connect(str(scheduler), timeout)
        expected = 0
    else:
        cfg = load_cluster_config(config, cluster)
        started, expected = _start_cluster(cluster, cfg, jobs)
        from distributed import Client

        try:
            if cluster != "local":
                started.scale(jobs=int(jobs or 1))
            client = Client(started, timeout=timeout)
        except BaseException:
            started.close()
            raise
    try:
        executor = client.get_executor()
        executor.tps_workers = expected  # batch sizing before the jobs have started
        yield executor
    finally:
        client.close()
        if started is not None:
            started.close()
