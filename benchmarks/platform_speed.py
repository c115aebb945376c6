"""Steps per second of one Langevin trajectory on OpenMM's Reference and CPU (one thread) platforms: the figures
behind ``REFERENCE_MAX_ATOMS`` in tps_diffusion/molecular/_openmm.py.

    python benchmarks/platform_speed.py

prints one line per (system, platform): LangevinMiddleIntegrator, 300 K, 1/ps, 2 fs, 1,000 steps after 50 warm-up
steps, from a minimised state. Run it on an otherwise idle machine; the figures quoted in _openmm.py were taken
while a 2-worker benchmark was running, so they are ratios, not absolute speeds.
"""

import time

import openmm

from tps_diffusion.molecular.catalogue import get_system

CASES = (("alanine_dipeptide", "C5"), ("alanine_dipeptide_obc2", "C5"), ("chignolin_obc2", "folded"),
         ("chignolin_gbn2", "folded"))

for name, state in CASES:
    system = get_system(name)
    for platform, properties in (("Reference", {}), ("CPU", {"Threads": "1"})):
        integrator = openmm.LangevinMiddleIntegrator(300, 1, 0.002)
        context = openmm.Context(openmm.XmlSerializer.deserialize(system.system_xml()), integrator,
                                 openmm.Platform.getPlatformByName(platform), properties)
        context.setPositions(system.positions_of(state))
        context.setVelocitiesToTemperature(300)
        integrator.step(50)
        t0 = time.perf_counter()
        integrator.step(1000)
        print(f"{name:24s} {system.n_atoms:4d} atoms  {platform:9s} {1000 / (time.perf_counter() - t0):8.0f} steps/s")
