"""tps_diffusion: transition paths from spacetime geodesics of diffusion models.

Pipeline (one module per step)::

    data -> model -> training -> geometry -> curves -> geodesic -> sampler -> export
"""

__version__ = "0.1.0"
