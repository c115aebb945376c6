"""One rule for deriving many reproducible seeds from one user seed."""

from __future__ import annotations

import numpy as np

#: OpenMM reads a random-number seed of 0 as "pick one at random"; seeds are drawn from 1 .. MAX_SEED
MAX_SEED = 2**30 - 1


def spawn_seeds(seed: int | None, n: int) -> list[int]:
    """``n`` independent seeds in ``1 .. MAX_SEED`` derived from ``seed`` (None: fresh entropy).

    Used for OpenMM integrators and velocity draws (MD runs, paths, committor shots, State XML),
    so the same ``seed`` gives the same streams whatever the number of worker processes.
    """
    if n < 0:
        raise ValueError(f"cannot derive {n} seeds; n must be >= 0")
    state = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
    return [int(s) for s in state % MAX_SEED + 1]
