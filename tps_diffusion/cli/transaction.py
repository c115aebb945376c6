"""A run directory written as one transaction.

A command never writes into its run directory ``D`` directly. It takes an exclusive lock
(``fcntl.flock`` on ``.D.lock`` next to ``D``; the kernel drops it when the process dies, even by
SIGKILL), writes everything into the private staging directory ``.D.staging`` next to ``D``, and
publishes by one atomic rename: ``.D.staging -> D`` when ``D`` is new, or an atomic exchange of the
two directories (Linux ``renameat2(RENAME_EXCHANGE)``) when an earlier run is replaced with
``--overwrite``; the earlier run is deleted only after the exchange. So a reader sees the earlier
complete run or the new complete run, never a mixture, whatever happens to the writer.

Left behind by a crash, kill or full disk: ``.D.staging`` (unpublished outputs: named in the next
command's error, continued by ``--resume`` where that is natural, discarded by ``--overwrite``) and,
on file systems without ``RENAME_EXCHANGE``, ``.D.old`` between the two renames of the fallback
(restored automatically by the next command on ``D``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import shutil
import time
from pathlib import Path

__all__ = ["RunBusyError", "RunDirectory", "staging_of", "foreign_staging", "published_path"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100

#: marker file inside a run being published (see RunDirectory.publish)
PUBLISHING = ".publishing"

#: staging directories of the transactions open in this process (a 'run' and its stages)
_ACTIVE: set[Path] = set()


class RunBusyError(OSError):
    """Another command holds the run directory."""


def staging_of(final: Path) -> Path:
    return final.parent / f".{final.name}.staging"


def foreign_staging(path: str | os.PathLike) -> Path | None:
    """The staging directory of another (unfinished or crashed) command that ``path`` lies in, or None.

    Files there are unpublished: a reader must not take them for results.
    """
    for parent in Path(os.path.abspath(path)).parents:
        if parent.name.startswith(".") and parent.name.endswith(".staging") and parent not in _ACTIVE:
            return parent
    return None


def published_path(path: str | os.PathLike) -> Path:
    """Where ``path`` (absolute) will be once the open transactions of this process are published:
    a file written into ``.D.staging/...`` is recorded as ``D/...``."""
    parts = Path(os.path.abspath(path)).parts
    out = list(parts)
    for i in range(1, len(parts)):
        if Path(*parts[:i + 1]) in _ACTIVE:
            out[i] = parts[i][1:-len(".staging")]
    return Path(*out)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories; False where the kernel or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot publish {a} as {b}: {os.strerror(err)}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunDirectory:
    """The transaction of one command on the run directory ``final``.

    ``with RunDirectory(final, "train", overwrite=..., resume=...) as rd:`` locks, checks and
    prepares ``rd.staging``; :meth:`publish` makes it the run directory; leaving the block without
    publishing removes the staging directory unless :meth:`keep` was called (interrupted training,
    a failed ``run`` whose finished stages ``--resume`` can reuse).
    """

    def __init__(self, final: str | os.PathLike, command: str, overwrite: bool = False, resume: bool = False):
        self.final = Path(final)
        self.command = command
        self.overwrite = overwrite
        self.resume = resume
        self.staging = staging_of(self.final)
        self.lock_path = self.final.parent / f".{self.final.name}.lock"
        self.old = self.final.parent / f".{self.final.name}.old"
        self.resumed_staging = False
        self._fd: int | None = None
        self._keep = False
        self._published = False

    # ----- locking

    def _acquire(self) -> None:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunBusyError(f"run directory {self.final} is in use by {holder}; wait for it to finish or choose "
                               f"another --run-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({self.command}, since {time.strftime('%Y-%m-%d %H:%M:%S')})".encode())
        self._fd = fd

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the lock file stays (unlinking it would race with waiters)
            self._fd = None

    # ----- entering

    def __enter__(self) -> RunDirectory:
        self._acquire()
        try:
            self._recover()
            self._check()
            self._prepare()
        except BaseException:
            self._release()
            raise
        _ACTIVE.add(Path(os.path.abspath(self.staging)))
        return self

    def _recover(self) -> None:
        """Finish or undo the publication of a writer that died in the middle of it."""
        if self.old.exists():
            if self.final.exists():
                shutil.rmtree(self.old)  # the new run is in place; the earlier one was being deleted
            else:
                os.rename(self.old, self.final)  # died between the two renames of the fallback: undo
        if (self.final / PUBLISHING).exists():  # the new run is in place
            if self.staging.exists() and not (self.staging / PUBLISHING).exists():
                shutil.rmtree(self.staging)  # the earlier run, swapped out by the exchange
            (self.final / PUBLISHING).unlink()
        elif (self.staging / PUBLISHING).exists():  # died before the rename: still an unpublished run
            (self.staging / PUBLISHING).unlink()

    def _check(self) -> None:
        if self.final.exists() and not self.final.is_dir():
            raise FileExistsError(f"--run-dir {self.final} exists and is not a directory; choose another --run-dir")
        if self.staging.exists() and not (self.overwrite or self.resume):
            what = _describe(self.staging)
            raise FileExistsError(f"{self.final} has the unpublished outputs of an interrupted command ({self.staging}"
                                  f"{what}); pass --resume to continue it (train, sample, shoot, run), --overwrite to "
                                  f"discard it, or remove it")
        if self.final.is_dir() and any(self.final.iterdir()) and not (self.overwrite or self.resume):
            raise FileExistsError(f"run directory {self.final} already holds outputs; pass --overwrite to replace them "
                                  f"or choose another --run-dir")

    def _prepare(self) -> None:
        if self.staging.exists() and self.resume:
            self.resumed_staging = True
            for debris in self.staging.rglob(".*"):  # temporary files of writes the dead command never renamed
                if debris.is_file() and not debris.name.endswith(".lock"):
                    debris.unlink()
        elif self.resume and self.final.is_dir() and any(self.final.iterdir()):
            if self.staging.exists():
                shutil.rmtree(self.staging)
            shutil.copytree(self.final, self.staging, symlinks=True)
            self.resumed_staging = True
        else:
            if self.staging.exists():
                shutil.rmtree(self.staging)
            self.staging.mkdir()

    # ----- leaving

    def keep(self) -> None:
        """Leave the staging directory in place when the block ends unpublished."""
        self._keep = True

    def publish(self) -> None:
        """Make the staging directory the run directory, atomically.

        The staging directory carries the marker ``.publishing`` through the exchange, so that a
        writer killed right after it is recognised: a run directory with the marker was published and
        whatever is left at the staging path is the replaced earlier run (see :meth:`_recover`).
        """
        for lock in self.staging.glob(".*.lock"):  # locks of nested runs (stages of 'run'); we hold the outer one
            lock.unlink()
        marker = self.staging / PUBLISHING
        marker.touch()
        _fsync_dir(self.staging)
        if self.final.exists() and self.final.is_dir() and not any(self.final.iterdir()):
            self.final.rmdir()
        if not self.final.exists():
            os.rename(self.staging, self.final)
        elif _exchange(self.staging, self.final):
            os.rename(self.staging, self.old)  # the earlier run
            shutil.rmtree(self.old)
        else:
            os.rename(self.final, self.old)
            os.rename(self.staging, self.final)
            shutil.rmtree(self.old)
        (self.final / PUBLISHING).unlink()
        _fsync_dir(self.final.parent)
        self._published = True

    def __exit__(self, exc_type, exc, tb) -> None:
        _ACTIVE.discard(Path(os.path.abspath(self.staging)))
        try:
            if not self._published and not self._keep and self.staging.exists():
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._release()


def _describe(staging: Path) -> str:
    """``", 'train' interrupted at 12:03"``-style details from a staging directory's manifest, if any."""
    try:
        manifest = json.loads((staging / "manifest.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(manifest, dict):
        return ""
    return f", '{manifest.get('command', '?')}' {manifest.get('status', '?')} at {manifest.get('finished', '?')}"
