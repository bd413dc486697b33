"""Compile worker processes (``python -m fastconv.static.compile_worker``, with ``TRITON_INTERPRET`` off), and
the pool the gate hands jobs to.

Protocol (one JSON object per line): the parent writes a job to the worker's stdin, the worker answers on its
protocol channel (its original stdout; anything the compiler prints goes to stderr):

- ``{"op": "describe", "ref": [provider, args]}`` -> ``{"variants": [description, ...]}``;
- ``{"op": "compile", "ref": [provider, args], "fingerprint": str, "overrides": {...}, "maxnreg": int|null,
  "target": "sm_89"}`` -> ``{"report": {...}}``;
- any failure -> ``{"error": "traceback"}``.

The worker rebuilds variants itself from ``ref`` (a provider function, e.g. the registry's
``static_variants``) and finds one by ``fingerprint``: kernels are imported in the worker with the
interpreter off, so they are real ``JITFunction`` objects and describe their GPU variants.

:class:`WorkerPool` keeps up to ``size`` workers alive for the life of the parent process (so a test
session starts them once) and hands out jobs as workers become free.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

__all__ = ["WorkerPool", "get_pool", "job_timeout"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that holds the fastconv package


class _Worker:
    def __init__(self):
        env = dict(os.environ)
        env["TRITON_INTERPRET"] = "0"
        env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastconv.static.compile_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, text=True, bufsize=1, cwd=_PACKAGE_ROOT,
        )

    def ask(self, job: dict, timeout: float) -> dict:
        timer = threading.Timer(timeout, self.proc.kill)  # a hung compilation must not hang the gate
        timer.start()
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        finally:
            timer.cancel()
        if not line:
            code = self.proc.wait()
            why = f"killed after {timeout:.0f} s" if code == -9 else f"exited with code {code} (see stderr)"
            return {"error": f"compile worker {why}", "dead": True}
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def job_timeout() -> float:
    """Seconds one job may take before its worker is killed: ``$FASTCONV_STATIC_TIMEOUT`` (default 600)."""
    return float(os.environ.get("FASTCONV_STATIC_TIMEOUT", 600))


class WorkerPool:
    """Up to ``size`` compile workers, started on demand and reused across :meth:`map` calls."""

    def __init__(self, size: int):
        self.size = max(1, int(size))
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self.started = 0  # workers started so far (a cold start costs an interpreter + torch + triton import)

    def _take(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self.started += 1
        return _Worker()

    def _give(self, w: _Worker) -> None:
        with self._lock:
            self._idle.append(w)

    def map(self, jobs: list[dict]) -> list[dict]:
        """Run every job; results in the order of ``jobs``."""
        results: list[dict | None] = [None] * len(jobs)
        timeout = job_timeout()
        todo: queue.Queue[int] = queue.Queue()
        for i in range(len(jobs)):
            todo.put(i)

        def drive():
            w = self._take()
            try:
                while True:
                    try:
                        i = todo.get_nowait()
                    except queue.Empty:
                        return
                    res = w.ask(jobs[i], timeout)
                    results[i] = res
                    if res.get("dead"):
                        w = _Worker()  # the compiler crashed the worker: replace it and go on
                        with self._lock:
                            self.started += 1
            finally:
                self._give(w)

        threads = [threading.Thread(target=drive, daemon=True) for _ in range(min(self.size, len(jobs)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            workers, self._idle = self._idle, []
        for w in workers:
            w.close()


_POOL: WorkerPool | None = None


def get_pool(size: int) -> WorkerPool:
    """The process-wide pool (grown if a larger ``size`` is asked for); closed at exit."""
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool(size)
        atexit.register(_POOL.close)
    _POOL.size = max(_POOL.size, size)
    return _POOL
