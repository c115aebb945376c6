"""Command line interface ``tps-diffusion <command> ...``, a thin layer over the Python API.

Commands::

    bench     benchmarks (aldp2d, aldp, kernel) -> one JSON report
    simulate  Langevin MD from named states          -> samples.h5 (or .dcd + .pdb)
    train     denoiser on MD samples                 -> model.pt (resumable)
    geodesic  spacetime geodesic between two states  -> geodesic.npz + geodesic.png
    sample    annealed Langevin paths under OpenMM   -> paths.dcd + paths.pdb + paths.npz/json + paths.png
    shoot     two-way shooting (and TPS) from paths  -> shooting.json + reactive/*.dcd + committor.json + tse.pdb
    export    PLUMED PATHMSD / string images / OpenMM State XML / OpenPathSampling
    analyze   committor of frames of a path          -> committor.json + committor.png
    run       simulate -> train -> geodesic -> sample (-> shoot) -> export (-> analyze) from one config
    verify    do two run directories hold the same results (content hashes)?

Every command except ``bench`` writes into a run directory (``--run-dir``, default
``runs/<command>-<timestamp>``) together with ``manifest.json`` (:mod:`.rundir`), as one
transaction (:mod:`.transaction`). Relative output
names given to a command (``--plumed DIR``, ``--images-out FILE``) are placed inside the run
directory. Library errors are reported as one line ``tps-diffusion: error: <message>`` (exit 1;
usage errors exit 2); ``--debug`` shows the traceback instead.

Modules: :mod:`.parser` (options and their units), :mod:`.commands` (one function per command),
:mod:`.inputs` (what commands read), :mod:`.rundir` (run directories and manifests),
:mod:`.config` (the ``run`` pipeline), :mod:`.transaction` (locking, staging, atomic publication),
:mod:`.content` (content hashes), :mod:`.verify` (comparing runs), :mod:`.main` (entry point and errors).
"""

import sys

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")  # the commands write figures to files; no display needed

from .main import main  # noqa: E402

__all__ = ["main"]
