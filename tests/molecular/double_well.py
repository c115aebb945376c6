"""A particle in a symmetric double well under OpenMM, with closed-form truths (shared by the committor
and shooting tests).

One particle (10 amu) in ``U = eb*((x/a)^2 - 1)^2 + k/2 (y^2 + z^2)``; states A: ``x < -edge`` and
B: ``x > edge``. Truths: ``p_B(0) = 1/2`` and ``p_B(x) + p_B(-x) = 1`` by symmetry; in the
high-friction limit ``p_B(x)`` is the 1-D overdamped committor (:func:`overdamped_committor`).
"""

from __future__ import annotations

import numpy as np
import openmm

A_NM = 0.1  # well positions +-a (nm)
EB = 12.5  # barrier (kJ/mol), ~5 kT at 300 K
K_YZ = 2000.0  # kJ/mol/nm^2
MASS = 10.0  # amu
T = 300.0
KT = 0.0083144626 * T


def double_well_system(eb: float = EB) -> openmm.System:
    system = openmm.System()
    system.addParticle(MASS)
    force = openmm.CustomExternalForce("eb*((x/a)^2-1)^2 + 0.5*kyz*(y^2+z^2)")
    for name, value in (("eb", eb), ("a", A_NM), ("kyz", K_YZ)):
        force.addGlobalParameter(name, value)
    force.addParticle(0, [])
    system.addForce(force)
    return system


class Side:
    """Picklable state test ``x < -edge`` (``sign = -1``) or ``x > edge`` (``sign = +1``) on positions (n, 1, 3) nm."""

    def __init__(self, sign: int, edge: float = A_NM / 2):
        self.sign, self.edge = sign, edge

    def __call__(self, pos):
        return self.sign * np.asarray(pos)[:, 0, 0] > self.edge


in_A, in_B = Side(-1), Side(+1)


def configs(xs) -> np.ndarray:
    """Positions (n, 1, 3) nm at x = xs, y = z = 0."""
    pos = np.zeros((len(xs), 1, 3))
    pos[:, 0, 0] = xs
    return pos


def overdamped_committor(x: float, eb: float = EB, edge: float = A_NM / 2) -> float:
    """``int_{-edge}^{x} exp(U/kT) / int_{-edge}^{edge} exp(U/kT)`` by quadrature."""
    grid = np.linspace(-edge, edge, 20001)
    w = np.exp(eb * ((grid / A_NM) ** 2 - 1) ** 2 / KT)
    c = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]))])
    return float(np.interp(x, grid, c / c[-1]))
