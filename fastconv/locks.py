"""Locks between processes of one machine (``fcntl.flock``): parallel test workers (pytest-xdist), CI jobs
and users share fastconv's caches and GPUs.

- :class:`FileLock`: one lock file, held shared or exclusive, with a timeout (a lock the kernel releases when
  its process dies: a crashed worker never leaves a stale lock behind).
- :class:`ReadersWriterLock`: many readers or one writer, the writer served first: readers pass a gate file
  that a waiting writer holds, so a stream of readers (tests on a GPU) cannot starve a writer (a benchmark
  that needs the GPU to itself).

Where ``fcntl`` does not exist (Windows, which Triton does not support) the locks do nothing.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["FileLock", "ReadersWriterLock", "LockTimeout"]

_POLL_S = 0.02


class LockTimeout(TimeoutError):
    """A lock was not granted within its timeout."""


class FileLock:
    """``flock`` on ``path`` (created, with its directory, on first use), through one open file of its own.

    Two :class:`FileLock` objects on one path conflict even inside one process (each has its own open file);
    one object converts between shared and exclusive.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._fd: int | None = None
        self.mode: str | None = None  # None, "shared" or "exclusive"

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except PermissionError:  # another user's lock file: flock needs only a descriptor
                self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def acquire(self, mode: str = "exclusive", timeout: float | None = None) -> None:
        """Hold the lock ``mode`` (``"shared"`` / ``"exclusive"``); :class:`LockTimeout` after ``timeout`` s."""
        if mode not in ("shared", "exclusive"):
            raise ValueError(f"lock mode must be 'shared' or 'exclusive', not {mode!r}")
        if fcntl is None:
            self.mode = mode
            return
        op = fcntl.LOCK_SH if mode == "shared" else fcntl.LOCK_EX
        fd = self._open()
        if timeout is None:
            fcntl.flock(fd, op)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, op | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self.release()  # a failed conversion may have dropped what was held: hold nothing
                        raise LockTimeout(f"{self.path}: not granted {mode} within {timeout:g} s") from None
                    time.sleep(_POLL_S)
        self.mode = mode

    def release(self) -> None:
        if fcntl is not None and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.mode = None

    @contextmanager
    def held(self, mode: str = "exclusive", timeout: float | None = None):
        self.acquire(mode, timeout)
        try:
            yield self
        finally:
            self.release()

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ReadersWriterLock:
    """Many readers or one writer across processes, a waiting writer first (``path`` and ``path.gate``).

    A reader passes the gate (shared, for an instant) and then holds ``path`` shared; a writer holds the
    gate exclusive, so no new reader enters, waits for the readers inside to leave and holds ``path``
    exclusive.  A process that reads and then writes (a test that times a benchmark) steps out as a reader
    while it writes and comes back in afterwards.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._gate = FileLock(self.path.with_name(self.path.name + ".gate"))
        self._lock = FileLock(self.path)
        self._readers = 0

    def _enter_reading(self, timeout: float | None) -> None:
        with self._gate.held("shared", timeout):
            self._lock.acquire("shared", timeout)

    @contextmanager
    def reading(self, timeout: float | None = None):
        if self._readers == 0:
            self._enter_reading(timeout)
        self._readers += 1
        try:
            yield self
        finally:
            self._readers -= 1
            if self._readers == 0:
                self._lock.release()

    @contextmanager
    def writing(self, timeout: float | None = None):
        if self._lock.mode == "exclusive":
            raise RuntimeError(f"{self.path}: already held for writing by this process")
        if self._readers:
            self._lock.release()  # step out as a reader: the writer waits for the others only
        try:
            with self._gate.held("exclusive", timeout):
                self._lock.acquire("exclusive", timeout)
                try:
                    yield self
                finally:
                    self._lock.release()
        finally:
            if self._readers:
                self._enter_reading(None)  # back in (after any writer already waiting)
