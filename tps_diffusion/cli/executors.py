"""``--scheduler`` / ``--cluster`` / ``--cluster-config`` / ``--jobs``: where a command's parallel work runs.

Without these options the work runs in local processes (``--workers``). A cluster opened by ``run``
is shared by its stages (one cluster for the whole pipeline).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..cluster import dask_executor, describe
from .parser import UsageError
from .rundir import PROG

__all__ = ["DASK_OPTIONS", "executor_for", "executor_spec"]

#: option destinations of the executor options (not part of what a stage's result depends on)
DASK_OPTIONS = ("scheduler", "cluster", "cluster_config", "jobs")

#: executors open in this process, by spec (a 'run' opens one and its stages use it)
_OPEN: dict[tuple, object] = {}


def executor_spec(args) -> tuple | None:
    """``(scheduler, cluster, cluster_config, jobs)`` of the options given, None for the local pool;
    a :class:`UsageError` for contradictory options."""
    scheduler, cluster = getattr(args, "scheduler", None), getattr(args, "cluster", None)
    config, jobs = getattr(args, "cluster_config", None), getattr(args, "jobs", None)
    cmd = getattr(args, "command", "")
    if scheduler is not None and cluster is not None:
        raise UsageError(f"give --scheduler (a running Dask scheduler) or --cluster (start one), not both (see "
                         f"'{PROG} {cmd} --help')")
    if cluster is None and (config is not None or jobs is not None):
        opt = "--cluster-config" if config is not None else "--jobs"
        raise UsageError(f"{opt} needs --cluster local|slurm|pbs (see '{PROG} {cmd} --help')")
    if scheduler is None and cluster is None:
        return None
    if (getattr(args, "workers", None) or 1) > 1:
        raise UsageError(f"--workers sets local processes; with --scheduler/--cluster the Dask workers run the work "
                         f"(size a started cluster with --jobs) (see '{PROG} {cmd} --help')")
    return scheduler, cluster, None if config is None else str(Path(config).resolve()), jobs


@contextmanager
def executor_for(args) -> Iterator:
    """The Dask executor of the command's options (None: the local pool), opened for the command
    (or shared with the 'run' that opened the same one) and closed at its end."""
    spec = executor_spec(args)
    if spec is None:
        yield None
        return
    if spec in _OPEN:
        yield _OPEN[spec]
        return
    scheduler, cluster, config, jobs = spec
    with dask_executor(scheduler=scheduler, cluster=cluster, config=config, jobs=jobs) as ex:
        _OPEN[spec] = ex
        if not getattr(args, "quiet", False):
            print(f"{getattr(args, 'command', PROG)}: {describe(ex)}", flush=True)
        try:
            yield ex
        finally:
            _OPEN.pop(spec, None)
