"""Sampled paths streamed to disk as they complete, and a resumable run (``sample_paths(store=...)``).

A store is a directory::

    store.json          what the paths depend on (settings, SHA-256 of the System, targets, starts);
                        a store written with other settings is refused (:class:`StoreMismatch`)
    path_000123.npz     one file per finished path: ``xyz`` (n_frames, n_atoms, 3) float32 nm,
                        ``energies`` and ``tilt_energies`` (n_frames,) kJ/mol
    index.json          the paths done (as ranges), rewritten atomically at most once a second while
                        paths arrive, and at the end (:meth:`PathStore.flush`)

Every file is written to a temporary name and renamed into place, so a file is complete or absent
whatever happens to the writer (``kill -9`` included). A path counts as done when its file exists;
the index (for readers of a store being written: which paths are there) is reconciled with the files
when the store is opened, so a kill between the rename of a path file and the next index update
loses nothing. Memory does not grow with the number of paths: each
path is written when it arrives and read back only when asked for
(:class:`StoredTrajectories`); the per-frame energies of all paths (16 bytes a frame) are the only
arrays the final :class:`~tps_diffusion.molecular.restrained.PathSet` holds.

Seeds per path come from ``spawn_seeds(seed, n_paths)``, whose first ``n`` values do not depend on
``n_paths``: a store can be resumed with the same number of paths, or extended with more.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import mdtraj
import numpy as np

from ..utils.files import atomic_path, write_json, writing
from .limits import check_output_dir

__all__ = ["PathStore", "StoreMismatch", "StoredTrajectories", "STORE_FORMAT"]

STORE_FORMAT = "tps_diffusion.pathstore/1"
#: seconds between index rewrites while paths arrive (a rewrite costs a few ms: not after every tiny path)
INDEX_INTERVAL_S = 1.0
_PATH_FILE = re.compile(r"^path_(\d{6,})\.npz$")


class StoreMismatch(ValueError):
    """The path store was written by a run with other settings, System, targets or starts."""


class _Ranges:
    """A set of ints kept as closed ranges ``[start, end]``, with O(1) insertion."""

    def __init__(self, values: Sequence[int] = ()):
        self.start_of: dict[int, int] = {}  # end -> start
        self.end_of: dict[int, int] = {}  # start -> end
        for v in sorted(set(values)):
            self.add(v)

    def add(self, v: int) -> None:
        """Add ``v``, a value not in the set yet."""
        lo = self.start_of.pop(v - 1, None)  # a range ending at v - 1
        hi = self.end_of.pop(v + 1, None)  # a range starting at v + 1
        start = v if lo is None else lo
        end = v if hi is None else hi
        if lo is not None:
            del self.end_of[lo]
        if hi is not None:
            del self.start_of[hi]
        self.end_of[start], self.start_of[end] = end, start

    def as_list(self) -> list[list[int]]:
        return [[s, e] for s, e in sorted(self.end_of.items())]


class PathStore:
    """A directory of finished paths (see the module docstring); ``key``: what the paths depend on."""

    def __init__(self, directory: str | os.PathLike, key: dict):
        self.dir = Path(check_output_dir(directory, "the path store", "choose another store directory or --run-dir"))
        self.dir.mkdir(parents=True, exist_ok=True)
        key = json.loads(json.dumps({"format": STORE_FORMAT, **key}))  # as it reads back
        saved = self.dir / "store.json"
        if saved.is_file():
            old = json.loads(saved.read_text())
            diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
            if diff:
                raise StoreMismatch(f"path store {self.dir} was written by a run with other {', '.join(diff)}; use "
                                    "the same settings, or another store (or delete this one)")
        else:
            with writing(saved):
                write_json(saved, key)
        for f in os.listdir(self.dir):  # temporary files of writes a kill interrupted
            if f.startswith((".path_", ".index.")):
                (self.dir / f).unlink(missing_ok=True)
        done = [int(m.group(1)) for f in os.listdir(self.dir) if (m := _PATH_FILE.match(f))]
        self._done = set(done)
        self._ranges = _Ranges(done)
        self._write_index()

    # ----- writing

    def file(self, i: int) -> Path:
        return self.dir / f"path_{int(i):06d}.npz"

    def write(self, i: int, xyz: np.ndarray, energies: np.ndarray, tilt_energies: np.ndarray) -> None:
        """Write path ``i`` (atomically); the index follows within :data:`INDEX_INTERVAL_S`."""
        path = self.file(i)
        with atomic_path(path, overwrite=True) as tmp, writing(path), open(tmp, "wb") as fh:
            np.savez(fh, xyz=np.asarray(xyz, dtype=np.float32), energies=energies, tilt_energies=tilt_energies)
        if int(i) not in self._done:
            self._done.add(int(i))
            self._ranges.add(int(i))
        if time.monotonic() - self._indexed >= INDEX_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        """Rewrite the index (atomically) now."""
        self._write_index()

    def _write_index(self) -> None:
        self._indexed = time.monotonic()
        with writing(self.dir / "index.json"):
            write_json(self.dir / "index.json", {"format": STORE_FORMAT, "n_done": len(self._done),
                                                 "done": self._ranges.as_list()}, overwrite=True)

    # ----- reading

    @property
    def done(self) -> set[int]:
        """Indices of the finished paths."""
        return set(self._done)

    def read(self, i: int, *names: str) -> dict[str, np.ndarray]:
        """Arrays of path ``i`` (all, or ``names``: ``xyz``, ``energies``, ``tilt_energies``)."""
        if int(i) not in self._done:
            raise KeyError(f"path {i} is not in the store {self.dir} (done: {len(self._done)} paths)")
        with np.load(self.file(i)) as z:
            return {k: z[k] for k in (names or z.files)}


class StoredTrajectories(Sequence):
    """The paths of a :class:`PathStore` as a sequence of ``mdtraj.Trajectory``, read from disk on access.

    ``make(xyz)`` turns the coordinates of one path into its trajectory (topology, time, box)."""

    def __init__(self, store: PathStore, n: int, make: Callable[[np.ndarray], mdtraj.Trajectory]):
        self.store, self.n, self.make = store, int(n), make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        i = int(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"path {i} out of range for {self.n} paths")
        return self.make(self.store.read(i % self.n, "xyz")["xyz"])

    def __iter__(self) -> Iterator[mdtraj.Trajectory]:
        for i in range(self.n):
            yield self[i]

    def __repr__(self) -> str:
        return f"StoredTrajectories({self.n} paths in {self.store.dir})"
