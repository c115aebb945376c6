"""Scaling of path sampling on Dask: 1 vs 2 workers on this machine, and the terms of the cost model.

    python benchmarks/dask_scaling.py [--out benchmarks/dask_scaling.json] [--paths 200] [--repeats 2]

Workload: alanine dipeptide in vacuum (amber99sbildn, Reference platform, 300 K, 1 fs, friction
1/ps), ``sample_paths`` along a straight C5 -> C7ax restraint schedule with the ``bench aldp``
sizes: N = 64 curve points x K = 16 steps (1,024 steps a path, every frame recorded with its force-
field energy), heavy atoms restrained at 20,000 kJ/mol/nm^2, seed 0. Timed: the sampling call only,
on an already started cluster whose workers have run a 4-path warm-up call (imports, payload); the
cold costs (cluster start, warm-up) are reported separately. Cases: this process; the local pool of
2 processes; one Dask LocalCluster of 2 single-threaded worker processes, used whole (2 workers) or
with every batch sent to one of its workers (``client.get_executor(workers=[one])``: 1 worker). The
cases compared are run alternately, ``--repeats`` times (medians and per-pair ratios are reported):
this shared 2-core VM's speed drifts by 20-40 % over minutes. Every case must give bitwise the same
paths. Also measured: the per-task and per-batch terms of the cost model (docs/distributed.md,
section 6). The load average before and after is recorded: other work on the machine slows the
2-worker cases more than the 1-worker ones.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np


def workload():
    from tps_diffusion.molecular.catalogue import alanine_dipeptide
    from tps_diffusion.molecular.featurizer import CartesianFeaturizer

    aldp = alanine_dipeptide()
    feat = CartesianFeaturizer(aldp, selection="not element H").fit(
        np.stack([aldp.positions_of(s) for s in ("C5", "C7eq", "C7ax")]))
    a, b = (feat.align(aldp.positions_of(s))[0] for s in ("C5", "C7ax"))
    s = np.linspace(0.0, 1.0, 64)[:, None, None]
    return aldp, feat, (1 - s) * a + s * b


def sample(aldp, feat, targets, n_paths, n_workers=1, executor=None):
    from tps_diffusion.molecular.dynamics import Dynamics
    from tps_diffusion.molecular.restrained import sample_paths

    t0 = time.perf_counter()
    ps = sample_paths(aldp, feat, targets, 20_000.0, "C5", n_paths=n_paths, steps_per_point=16,
                      dynamics=Dynamics(seed=0, timestep=0.001, n_workers=n_workers), progress=False,
                      executor=executor)
    return time.perf_counter() - t0, ps


def _noop_setup(payload):
    return None


def _noop_batch(state, tasks, progress):
    return [None for _ in tasks]


def cost_terms(aldp, feat, targets, executor) -> dict:
    """Per-task and per-batch costs (seconds) of the model, measured in this process and on ``executor``."""
    import openmm

    from tps_diffusion.molecular import restrained
    from tps_diffusion.molecular.dynamics import Dynamics
    from tps_diffusion.molecular.parallel import BatchContext, Payload, run_batches

    dyn = Dynamics(seed=0, timestep=0.001).for_system(aldp)
    xml = aldp.system_xml()
    payload = dict(system_xml=xml, atom_indices=np.asarray(feat.atom_indices), targets=targets)
    t = time.perf_counter()
    for _ in range(20):
        w = restrained._setup(payload)
    setup = (time.perf_counter() - t) / 20
    start = aldp.positions_of("C5")
    t = time.perf_counter()
    for i in range(20):
        BatchContext(dyn, w["system"]).start(start, i + 1)
    new_context = (time.perf_counter() - t) / 20
    ctx = BatchContext(dyn, w["system"])
    ctx.start(start, 1)
    t = time.perf_counter()
    for i in range(50):
        ctx.start(start, i + 2)
    reseed = (time.perf_counter() - t) / 50
    ctx, integ = ctx.start(start, 1)
    t = time.perf_counter()
    integ.step(2000)
    step = (time.perf_counter() - t) / 2000
    t = time.perf_counter()
    for _ in range(500):
        ctx.getState(getPositions=True, getEnergy=True)
    record = (time.perf_counter() - t) / 500
    n_batches = 60
    t = time.perf_counter()
    run_batches(_noop_setup, _noop_batch, {"x": 1}, list(range(n_batches)), executor=executor, batch_size=1)
    batch = (time.perf_counter() - t) / n_batches
    return {"system_setup_s": setup, "new_context_s": new_context, "reseed_per_task_s": reseed,
            "step_s": step, "record_frame_s": record, "dask_round_trip_per_batch_s": batch,
            "payload_bytes": len(Payload.of(dict(payload, dynamics=dyn)).data),
            "system_xml_bytes": len(xml), "result_bytes_per_frame": aldp.n_atoms * 12 + 16,
            "openmm": openmm.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("dask_scaling.json"))
    p.add_argument("--paths", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from distributed import Client, LocalCluster

    load_before = os.getloadavg()
    aldp, feat, targets = workload()
    cases, reference = {}, None

    def timed(name, call):
        nonlocal reference
        dt, ps = call()
        xyz = np.stack([t.xyz for t in ps.trajectories])
        if reference is None:
            reference = xyz
        assert np.array_equal(reference, xyz), f"{name}: other paths than the first case"
        cases.setdefault(name, {"wall_s": []})["wall_s"].append(dt)
        print(f"{name:>24}: {dt:.2f} s", flush=True)
        return dt

    # the machine's speed drifts over minutes (a shared VM): the cases compared are run alternately
    for _ in range(args.repeats):
        timed("this process", lambda: sample(aldp, feat, targets, args.paths))
        timed("local pool, 2 processes", lambda: sample(aldp, feat, targets, args.paths, n_workers=2))
    t = time.perf_counter()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        started = time.perf_counter() - t
        warm, _ = sample(aldp, feat, targets, 4, executor=client)
        cold = {"cluster_start_2_workers_s": started, "first_call_4_paths_s": warm}
        one_worker = client.get_executor(workers=[sorted(client.nthreads())[0]])  # all batches to one worker
        pairs = []
        for _ in range(args.repeats):
            t1 = timed("dask, 1 worker(s)", lambda: sample(aldp, feat, targets, args.paths, executor=one_worker))
            t2 = timed("dask, 2 worker(s)", lambda: sample(aldp, feat, targets, args.paths, executor=client))
            pairs.append(t1 / t2)
        terms = cost_terms(aldp, feat, targets, client.get_executor())
    for c in cases.values():
        c["best_s"], c["median_s"] = min(c["wall_s"]), float(np.median(c["wall_s"]))
    one, two = cases["dask, 1 worker(s)"]["median_s"], cases["dask, 2 worker(s)"]["median_s"]
    report = {
        "command": "python benchmarks/dask_scaling.py " + " ".join(sys.argv[1:]),
        "workload": {"system": "alanine_dipeptide (vacuum, amber99sbildn)", "platform": "Reference",
                     "n_paths": args.paths, "n_points": 64, "steps_per_point": 16, "steps_per_path": 1024,
                     "timestep_ps": 0.001, "record_interval": 1, "stiffness_kJ_mol_nm2": 20_000.0, "seed": 0},
        "cases": cases,
        "speedup_dask_2_vs_1": one / two,
        "speedup_dask_2_vs_1_per_pair": pairs,
        "speedup_dask_2_vs_this_process": cases["this process"]["median_s"] / two,
        "speedup_local_pool_2_vs_this_process": cases["this process"]["median_s"] / cases["local pool, 2 processes"][
            "median_s"],
        "target": "speedup_dask_2_vs_1 >= 1.8",
        "cold_costs": cold,
        "cost_terms": terms,
        "identical_paths_in_every_case": True,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "payload_pickle_protocol": pickle.HIGHEST_PROTOCOL,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"speed-up 2 vs 1 Dask workers (medians): {report['speedup_dask_2_vs_1']:.2f}x, per pair "
          f"{', '.join(f'{p:.2f}' for p in pairs)} (load average before "
          f"{load_before[0]:.2f}, after {report['machine']['load_average_after'][0]:.2f}) -> {args.out}")


if __name__ == "__main__":
    main()
