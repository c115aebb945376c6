"""Independent OpenMM tasks on any ``concurrent.futures.Executor``: the executor abstraction of the
molecular layer, used by :func:`~tps_diffusion.molecular.md.run_md`,
:func:`~tps_diffusion.molecular.restrained.sample_paths`,
:func:`~tps_diffusion.molecular.committor.committor` and
:func:`~tps_diffusion.molecular.shooting.two_way_shooting` (docs/distributed.md).

    from dask.distributed import Client
    client = Client("tcp://10.0.0.5:8786")                      # or LocalCluster(), SLURMCluster(...)
    paths = sample_paths(..., dynamics=Dynamics(seed=1), executor=client)   # or client.get_executor()

How a call runs. The sampler cuts its work into *tasks* (one MD run, path, shot or TPS chain), each
with its own seed (:func:`~tps_diffusion.utils.seeds.spawn_seeds`), and ships them in *batches*: one
``executor.submit(run_batch, setup, batch, payload, tasks)`` per batch, a bounded number in flight.

* The *payload* is what all tasks of the call share (the OpenMM System as XML, the
  :class:`~tps_diffusion.molecular.dynamics.Dynamics`, restraint targets, state tests), pickled once and
  keyed by its SHA-256. A worker unpickles it and runs ``setup`` on it (deserialise the System, add the
  restraint force) once, and keeps the result in a module-level cache keyed by ``(setup, key)``: later
  batches of the call on that worker skip both. A Dask client scatters the payload once (each worker
  fetches it once); other executors send the bytes with each batch.
* A batch builds one OpenMM Context; every task re-seeds its integrator (``setRandomNumberSeed`` +
  ``Context.reinitialize``: OpenMM reads the seed only when the Context is (re)initialised) and so starts
  from exactly the state a fresh Context would. Results therefore do not depend on the executor, the
  number of workers, the batch size or the order in which batches finish (bitwise on the Reference
  platform).
* A process runs one batch at a time (a lock): the Reference platform draws its Langevin noise from one
  process-wide generator, and the cached setup (the System with its restraint force) is modified by each
  task. Dask workers should therefore have one thread each (``dask worker --nthreads 1``); OpenMM's CPU
  and GPU platforms use their own threads.

Without an executor, ``Dynamics.n_workers == 1`` runs the tasks in this process (no pickling: state
tests may be closures) and ``n_workers > 1`` uses a local ``ProcessPoolExecutor`` of that many
processes (start method: :func:`~tps_diffusion.molecular._openmm.mp_context`), created for the call.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import sys
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import openmm

from ._openmm import get_platform, mp_context

__all__ = ["as_executor", "executor_workers", "run_batches", "run_batch", "batch_size_for", "BatchContext", "Payload",
           "runs_here", "BATCHES_PER_WORKER", "MAX_BATCH_SIZE", "MAX_BATCH_BYTES"]

#: batches per worker a call is cut into (load balance) ...
BATCHES_PER_WORKER = 4
#: ... with at most this many tasks each (granularity of streaming, progress and resumption) ...
MAX_BATCH_SIZE = 32
#: ... and results of at most about this many bytes (a worker holds a batch's results until it returns them)
MAX_BATCH_BYTES = 256 * 2**20
#: prepared payloads a worker keeps
_CACHE_SIZE = 4

#: a setup: the payload (a dict) -> what the tasks of a batch need (the System deserialised, ...)
Setup = Callable[[dict], Any]
#: a batch: (setup result, tasks, progress callback or None) -> one result per task, in order
Batch = Callable[[Any, Sequence, Callable[[int], Any] | None], Iterable]


@dataclass(frozen=True)
class Payload:
    """The pickled payload of a call and its SHA-256 (the workers' cache key)."""

    key: str
    data: bytes

    @classmethod
    def of(cls, payload: dict) -> Payload:
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        return cls(hashlib.sha256(data).hexdigest(), data)


# ---------------------------------------------------------------------------------------------
# worker side

_PREPARED: OrderedDict[tuple[str, str], Any] = OrderedDict()
_BATCH_LOCK = threading.RLock()


def _prepared(setup: Setup, payload: Payload) -> Any:
    key = (f"{setup.__module__}.{setup.__qualname__}", payload.key)
    if key in _PREPARED:
        _PREPARED.move_to_end(key)
        return _PREPARED[key]
    state = setup(pickle.loads(payload.data))
    _PREPARED[key] = state
    while len(_PREPARED) > _CACHE_SIZE:
        _PREPARED.popitem(last=False)
    return state


def run_batch(setup: Setup, batch: Batch, payload: Payload, tasks: Sequence) -> list:
    """Worker entry point: the results of ``batch(setup(payload), tasks)`` (setup cached per payload)."""
    with _BATCH_LOCK:
        return list(batch(_prepared(setup, payload), tasks, None))


class BatchContext:
    """The one OpenMM Context of a batch, re-seeded for every task.

    ``start(positions, seed)`` gives the Context and integrator in the state a fresh
    ``Dynamics.start_context(system, positions, seed)`` has (positions set, constraints applied,
    Maxwell-Boltzmann velocities drawn with ``seed``, integrator noise seeded with ``seed``);
    ``reseed(seed)`` only re-seeds (positions and velocities are the caller's).
    """

    def __init__(self, dynamics, system: openmm.System, properties: dict[str, str] | None = None):
        self.dynamics, self.system, self.properties = dynamics, system, dict(properties or {})
        self.context: openmm.Context | None = None
        self.integrator: openmm.Integrator | None = None

    def reseed(self, seed: int) -> tuple[openmm.Context, openmm.Integrator]:
        if self.context is None:
            self.integrator = self.dynamics.integrator(seed)
            platform = get_platform(self.dynamics.platform, self.system.getNumParticles())  # None: this worker's best
            self.context = openmm.Context(self.system, self.integrator, platform, self.properties)
        else:
            self.integrator.setRandomNumberSeed(int(seed))
            self.context.reinitialize()  # a new seed takes effect only on (re)initialisation
        return self.context, self.integrator

    def start(self, positions, seed: int) -> tuple[openmm.Context, openmm.Integrator]:
        ctx, integ = self.reseed(seed)
        ctx.setPositions(positions)
        ctx.applyConstraints(1e-6)
        ctx.setVelocitiesToTemperature(self.dynamics.temperature, int(seed))
        return ctx, integ

    def close(self) -> None:
        self.context = self.integrator = None


# ---------------------------------------------------------------------------------------------
# client side


def as_executor(executor) -> Executor | None:
    """``executor`` as a ``concurrent.futures.Executor``: None stays None (the local default), a
    ``dask.distributed.Client`` becomes ``client.get_executor()``; anything else must be an Executor."""
    if executor is None or isinstance(executor, Executor):
        return executor
    if "distributed" in sys.modules:
        from distributed import Client

        if isinstance(executor, Client):
            ex = executor.get_executor()
            hint = getattr(executor, "tps_workers", None)
            if hint:
                ex.tps_workers = hint
            return ex
    raise TypeError(f"executor must be a concurrent.futures.Executor (e.g. a dask.distributed Client's "
                    f"get_executor()) or a dask.distributed.Client; got {type(executor).__name__}")


def _dask_client(executor):
    """The ``distributed.Client`` behind a Dask ClientExecutor, else None."""
    if "distributed" not in sys.modules:
        return None
    from distributed.cfexecutor import ClientExecutor

    return executor._client if isinstance(executor, ClientExecutor) else None


def executor_workers(executor: Executor) -> int:
    """How many tasks ``executor`` runs at once, as far as it can tell (at least 1).

    A process or thread pool: its size; a Dask executor: the workers connected now, or the
    ``tps_workers`` hint set on it (jobs not started yet, see :mod:`tps_diffusion.cluster`)."""
    n = getattr(executor, "_max_workers", None)
    client = _dask_client(executor)
    if client is not None:
        try:
            n = len(client.nthreads())  # one request to the scheduler
        except Exception:  # noqa: BLE001 - a scheduler that is going away: use the hint
            n = 0
    return max(1, int(n or 0), int(getattr(executor, "tps_workers", 0) or 0))


def runs_here(executor, n_workers: int) -> bool:
    """True when the tasks run in this process (no executor and one worker)."""
    return executor is None and n_workers == 1


def batch_size_for(n_tasks: int, n_workers: int, task_bytes: int = 0) -> int:
    """Tasks per batch: about :data:`BATCHES_PER_WORKER` batches per worker, at most :data:`MAX_BATCH_SIZE`
    tasks and (``task_bytes``: the size of one task's result) :data:`MAX_BATCH_BYTES` of results."""
    size = min(MAX_BATCH_SIZE, math.ceil(n_tasks / (BATCHES_PER_WORKER * max(1, n_workers))))
    if task_bytes > 0:
        size = min(size, MAX_BATCH_BYTES // int(task_bytes))
    return max(1, size)


def _batch_ranges(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[i:i + size]) for i in range(0, len(indices), size)]


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop a local pool's processes now (after an error or an interrupt)."""
    stop = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if stop is not None:
        stop()
        return
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        p.terminate()


def run_batches(setup: Setup, batch: Batch, payload: dict, tasks: Sequence, *, executor: Executor | None = None,
                n_workers: int = 1, start_method: str | None = None, platform: str = "Reference", bar=None,
                on_result: Callable[[int, Any], None] | None = None, keep: bool = True,
                batch_size: int | None = None, task_bytes: int = 0) -> list | None:
    """Run ``tasks`` in batches; returns the results in task order (``keep``) or None.

    ``setup(payload)`` prepares what the tasks share (once per worker and payload), ``batch(state,
    tasks, progress)`` yields one result per task (both module-level functions: they travel by name).
    ``executor``: any ``concurrent.futures.Executor`` (a Dask ``Client``'s ``get_executor()``) or a
    ``dask.distributed.Client``; None: this process when ``n_workers == 1``, else a local process pool
    (``start_method``: see :func:`~tps_diffusion.molecular._openmm.mp_context`, for ``platform``).
    ``on_result(i, result)`` is called in this process as task ``i`` finishes (in the order batches
    finish). ``bar`` (tqdm) advances by the tasks of each finished batch, or, in this process, by what
    ``batch`` reports through its ``progress`` argument; it is closed at the end. ``batch_size``: tasks per
    batch (default :func:`batch_size_for`, given ``task_bytes``, the size of one task's result).
    """
    executor = as_executor(executor)
    results: list | None = [None] * len(tasks) if keep else None

    def deliver(i: int, r: Any) -> None:
        if results is not None:
            results[i] = r
        if on_result is not None:
            on_result(i, r)

    try:
        if runs_here(executor, n_workers):
            with _BATCH_LOCK:
                for i, r in enumerate(batch(setup(payload), tasks, None if bar is None else bar.update)):
                    deliver(i, r)
            return results
        _run_remote(setup, batch, payload, tasks, executor, n_workers, start_method, platform, bar, deliver,
                    batch_size, task_bytes)
    finally:
        if bar is not None:
            bar.close()
    return results


def _run_remote(setup, batch, payload, tasks, executor, n_workers, start_method, platform, bar, deliver,
                batch_size, task_bytes) -> None:
    if not tasks:
        return
    own = executor is None
    if own:
        executor = ProcessPoolExecutor(n_workers, mp_context=mp_context(start_method, platform))
    pending: dict[Future, list[int]] = {}
    failed = True
    shipped = None
    try:
        packed = Payload.of(payload)
        client = _dask_client(executor)
        if client is not None:  # each worker fetches the payload once instead of receiving it with every batch
            name = f"tps-payload-{packed.key[:16]}-{uuid.uuid4().hex}"  # a key of its own: no race with a release
            shipped = client.scatter({name: packed}, hash=False)[name]
        capacity, asked = executor_workers(executor), time.monotonic()  # workers may come and go (jobs)
        size = batch_size or batch_size_for(len(tasks), capacity, task_bytes)
        batches = iter(_batch_ranges(range(len(tasks)), size))

        def submit() -> bool:
            idx = next(batches, None)
            if idx is None:
                return False
            pending[executor.submit(run_batch, setup, batch, shipped if shipped is not None else packed,
                                    [tasks[i] for i in idx])] = idx
            return True

        while len(pending) < 2 * capacity + 1 and submit():  # a bounded number in flight
            pass
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in done:
                idx = pending.pop(f)
                for i, r in zip(idx, f.result(), strict=True):  # a worker's error is raised here
                    deliver(i, r)
                if bar is not None:
                    bar.update(len(idx))
            if time.monotonic() - asked > 5.0:
                capacity, asked = executor_workers(executor), time.monotonic()
            while len(pending) < 2 * capacity + 1 and submit():
                pass
        failed = False
    finally:
        for f in pending:
            f.cancel()
        if own:
            if failed:
                _terminate(executor)
            executor.shutdown(wait=True, cancel_futures=True)
        if shipped is not None:
            shipped.release()

