"""tps_diffusion: transition paths from spacetime geodesics of diffusion models (docs/method.md).

Layers, each importing only the ones before it::

    utils       atomic files, seeds, provenance, angles (standard library + numpy)
    core        the method in torch: schedule, denoiser, training, geometry, geodesics, annealed Langevin
    potentials  differentiable torch potentials: 2-D surfaces, TorchANI, 2-D path metrics
    molecular   OpenMM + mdtraj: systems and states, MD, features, model, geodesic, restrained paths, committor
    handoff     files for other programs: PLUMED, string/NEB images, OpenMM State XML, OpenPathSampling
    cli         the ``tps-diffusion`` command (``bench`` runs the benchmarks in :mod:`tps_diffusion.bench`)
"""

__version__ = "0.1.0"
