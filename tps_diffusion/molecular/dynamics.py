"""Langevin dynamics settings shared by MD sampling, restrained path sampling, committors and two-way shooting.

One :class:`Dynamics` object replaces the temperature / time step / friction / platform / seed /
worker keywords that :func:`~tps_diffusion.molecular.md.run_md`,
:func:`~tps_diffusion.molecular.restrained.sample_paths`,
:func:`~tps_diffusion.molecular.committor.committor` and
:func:`~tps_diffusion.molecular.shooting.two_way_shooting` share. Every run integrates with
``openmm.LangevinMiddleIntegrator``; one step is one force evaluation.

    dyn = Dynamics(timestep=0.001, seed=1, n_workers=2)       # ps; the rest from the system
    md = run_md(system, ["C5", "C7ax"], n_steps=50_000, dynamics=dyn)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import openmm
import openmm.unit as unit

from ._openmm import get_platform, in_units

if TYPE_CHECKING:
    from .system import MolecularSystem

__all__ = ["Dynamics", "INTEGRATOR"]

#: the integrator every sampler uses
INTEGRATOR = "LangevinMiddleIntegrator"


@dataclass(frozen=True)
class Dynamics:
    """Langevin settings; ``None`` fields are filled from the system by :meth:`for_system`.

    Parameters
    ----------
    temperature : float or Quantity, optional
        Kelvin; None: the system's temperature.
    timestep : float or Quantity, optional
        ps; None: :meth:`MolecularSystem.default_timestep` (1 fs with flexible X-H bonds, 2 fs
        when every X-H bond is constrained).
    friction : float or Quantity
        Collision rate, 1/ps.
    platform : str, optional
        OpenMM platform name; None: the system's (Reference below 100 atoms, else CUDA/OpenCL/CPU;
        with an executor, chosen on each worker).
    seed : int, optional
        Root of all random streams (integrator noise, initial velocities); per-run seeds are
        derived from it (:func:`tps_diffusion.utils.seeds.spawn_seeds`), so results do not depend
        on ``n_workers`` (bitwise on the Reference platform). None: fresh entropy.
    n_workers : int
        Local processes running independent trajectories; 1 runs in this process. The samplers'
        ``executor`` argument (any ``concurrent.futures.Executor``, a Dask cluster) replaces them.
    mp_context : str, optional
        ``multiprocessing`` start method; None: ``fork`` on Linux for the Reference platform,
        ``forkserver`` for CPU (a fork after the parent used the CPU platform can hang), else
        ``spawn``; except with ``fork`` the calling script needs ``if __name__ == "__main__":``.
    """

    temperature: float | None = None
    timestep: float | None = None
    friction: float = 1.0
    platform: str | None = None
    seed: int | None = None
    n_workers: int = 1
    mp_context: str | None = None

    def __post_init__(self):
        for name, unit_ in (("temperature", unit.kelvin), ("timestep", unit.picosecond),
                            ("friction", unit.picosecond**-1)):
            value = getattr(self, name)
            if value is None:
                continue
            value = float(in_units(value, unit_))
            if not math.isfinite(value) or value < 0 or (value == 0 and name != "friction"):
                limit = ">= 0" if name == "friction" else "> 0"
                raise ValueError(f"Dynamics {name} must be finite and {limit}; got {value}")
            object.__setattr__(self, name, value)
        if int(self.n_workers) < 1:
            raise ValueError(f"Dynamics n_workers must be >= 1; got {self.n_workers}")
        object.__setattr__(self, "n_workers", int(self.n_workers))
        if self.mp_context not in (None, "fork", "spawn", "forkserver"):
            raise ValueError(f"unknown mp_context {self.mp_context!r}; use 'fork', 'spawn', 'forkserver' or None")

    def for_system(self, system: MolecularSystem, check_platform: bool = True) -> Dynamics:
        """A copy with temperature, time step and platform filled from ``system`` where None
        (the platform is checked to exist here unless ``check_platform`` is False: work sent to
        other machines, e.g. CUDA workers of a cluster whose login node has no GPU). With
        ``check_platform=False`` and no platform named here or by the system, the platform stays None:
        each worker then picks its own (:func:`~tps_diffusion.molecular._openmm.default_platform`: CUDA
        on a GPU worker, CPU or Reference elsewhere)."""
        if check_platform:
            platform = system.platform_name(self.platform)
            get_platform(platform, system.n_atoms)
        else:
            platform = self.platform or system.platform
        return replace(self, temperature=system.temperature if self.temperature is None else self.temperature,
                       timestep=system.default_timestep() if self.timestep is None else self.timestep,
                       platform=platform)

    def with_workers(self, n_tasks: int) -> Dynamics:
        """A copy with ``n_workers`` capped at the number of independent tasks."""
        return replace(self, n_workers=max(1, min(self.n_workers, int(n_tasks))))

    def integrator(self, seed: int) -> openmm.LangevinMiddleIntegrator:
        """A ``LangevinMiddleIntegrator`` with these settings and random seed ``seed`` (resolved settings only)."""
        if self.temperature is None or self.timestep is None:
            raise ValueError("call Dynamics.for_system(system) first: temperature and timestep are not set")
        integ = openmm.LangevinMiddleIntegrator(self.temperature, self.friction, self.timestep)
        integ.setRandomNumberSeed(int(seed))
        return integ

    def start_context(self, system: openmm.System, positions, seed: int,
                      properties: dict[str, str] | None = None) -> tuple[openmm.Context, openmm.Integrator]:
        """A Context on ``system`` at ``positions`` (nm; constraints applied) with Maxwell-Boltzmann
        velocities, and its integrator, both seeded with ``seed`` (resolved settings only)."""
        integ = self.integrator(seed)
        platform = get_platform(self.platform, system.getNumParticles())  # None: the best one here
        ctx = openmm.Context(system, integ, platform, dict(properties or {}))
        ctx.setPositions(positions)
        ctx.applyConstraints(1e-6)
        ctx.setVelocitiesToTemperature(self.temperature, int(seed))
        return ctx, integ

    def to_dict(self) -> dict[str, Any]:
        """Settings with their units in the keys' documentation (K, ps, 1/ps), plus the integrator name."""
        return {**asdict(self), "integrator": INTEGRATOR}
