"""Per-problem config choice: timed on a GPU, deterministic in the interpreter, cached in memory and on disk.

The key is everything the choice may depend on: kernel name, the full :class:`ConvProblem` (shapes, conv
parameters, groups, dtype, bias, output layout), the precision, the input's memory layout, and the GPU.
Choices persist as JSON in ``$FASTCONV_CACHE_DIR`` (default ``~/.cache/fastconv``), one file per GPU name and
Triton version, so a new process reuses them; ``FASTCONV_AUTOTUNE=0`` skips timing and takes the default
config.  The time the first call spends tuning is recorded in :data:`TUNING_LOG` (and returned by
:func:`tuning_report`), because it is a cost the user sees.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from ..env import cache_dir, triton_version
from ..kernels import fitness
from ..kernels.config import KernelConfig
from ..kernels.launch import watch_spills
from ..problem import ConvProblem
from . import timing

__all__ = ["choose_config", "candidates", "Choice", "tuning_report", "TUNING_LOG", "PRUNED_AT_RUNTIME",
           "clear_cache", "cache_path", "forced_config", "config_forced"]


@dataclass
class TuningRecord:
    kernel: str
    problem: str
    precision: str
    config: str
    seconds: float
    candidates: int
    source: str  # "timed", "disk", "default"


TUNING_LOG: list[TuningRecord] = []
_MEMORY: dict[tuple, tuple[KernelConfig, str]] = {}  # (cache file, key) -> (config, "disk" | "memory")
# (kernel, problem, precision, config, spilled registers) of candidates dropped because their binary spilled
PRUNED_AT_RUNTIME: list[tuple] = []
_LOCK = threading.Lock()
_DISK_LOADED: set[Path] = set()
_FORCED = threading.local()


class forced_config:
    """Context manager that makes every launch of ``kernel`` use ``config`` (tests run each config this way)."""

    def __init__(self, kernel: str, config: KernelConfig):
        self.kernel, self.config = kernel, config

    def __enter__(self):
        stack = getattr(_FORCED, "stack", None)
        if stack is None:
            stack = _FORCED.stack = []
        stack.append((self.kernel, self.config))
        return self.config

    def __exit__(self, *exc):
        _FORCED.stack.pop()


def config_forced() -> bool:
    """Whether a :class:`forced_config` is active (then no choice is memoised)."""
    return bool(getattr(_FORCED, "stack", None))


def _forced(kernel: str) -> KernelConfig | None:
    for name, cfg in reversed(getattr(_FORCED, "stack", [])):
        if name == kernel:
            return cfg
    return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "interpreter"


def cache_path(device: torch.device) -> Path:
    root = cache_dir()
    safe = "".join(c if c.isalnum() else "_" for c in _device_name(device))
    return root / f"tuning-{safe}-triton{triton_version()}.json"


def _key_str(kernel: str, problem: ConvProblem, precision: str, layout: str) -> str:
    return json.dumps([kernel, list(problem.key()), precision, layout])


def _load_disk(path: Path) -> None:
    if path in _DISK_LOADED:
        return
    _DISK_LOADED.add(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    for k, v in data.items():
        _MEMORY[(str(path), k)] = (KernelConfig.from_json(v), "disk")


def _save_disk(path: Path, key: str, cfg: KernelConfig) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[key] = cfg.to_json()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:  # a read-only home must not break a conv call
        pass


def clear_cache(disk: bool = False) -> None:
    """Forget tuned choices (in memory; and the disk files too when ``disk``)."""
    with _LOCK:
        if disk:
            for path in list(_DISK_LOADED):
                path.unlink(missing_ok=True)
        _MEMORY.clear()
        _DISK_LOADED.clear()
        TUNING_LOG.clear()


class Choice(NamedTuple):
    """A config choice and where it came from: ``"forced"``, ``"memory"`` / ``"disk"`` (tuned before),
    ``"timed"`` (tuned now), ``"default"`` (untimed: interpreter, ``FASTCONV_AUTOTUNE=0``, one candidate)."""

    config: KernelConfig
    source: str


def candidates(kernel, problem: ConvProblem, precision: str, device: torch.device) -> list[KernelConfig]:
    """``kernel.configs(problem, precision)`` minus the configs that spill or do not fit under the installed
    Triton on ``device``'s architecture (:func:`fastconv.kernels.fitness.pruned`)."""
    configs = kernel.configs(problem, precision)
    if not configs:
        raise RuntimeError(f"fastconv: kernel {kernel.name} has no config that fits {problem.short()}")
    target = fitness.device_target(device)
    if target is None:
        return configs
    kept = [c for c in configs if fitness.pruned(kernel.name, problem.dtype, precision, c, target) is None]
    return kept or configs[:1]  # the static gate fails a toolchain that leaves a mode without a config


def choose_config(kernel, problem: ConvProblem, precision: str, layout: str, run, device: torch.device
                  ) -> Choice:
    """Pick the config ``kernel`` uses for ``problem``.

    ``run(config)`` launches the kernel once with that config (into a scratch output; None: nothing may be
    launched).  Under the interpreter, or with ``FASTCONV_AUTOTUNE=0``, the first candidate is taken:
    deterministic, and tests cover the others by forcing each one (:class:`forced_config`).  On a GPU every
    candidate is timed; one whose compiled binary spills registers is dropped, never chosen.
    """
    forced = _forced(kernel.name)
    if forced is not None:
        return Choice(forced, "forced")
    timed = device.type == "cuda" and run is not None and os.environ.get("FASTCONV_AUTOTUNE", "1") != "0"
    if timed:
        path = cache_path(device)
        key = _key_str(kernel.name, problem, precision, layout)
        with _LOCK:
            fresh = path not in _DISK_LOADED
            _load_disk(path)
            hit = _MEMORY.get((str(path), key))
        if hit is not None:
            return Choice(hit[0], "disk" if hit[1] == "disk" or fresh else "memory")
    configs = candidates(kernel, problem, precision, device)
    if not timed or len(configs) == 1:
        return Choice(configs[0], "default")

    # Device time of each config, with the host kept ahead of the device (fastconv.tuning.timing).
    # triton.testing.do_bench records its start event right after an L2 clear and then calls, so a call whose
    # host dispatch outlasts the clear is timed partly on the host; on a 13 us problem two processes picked
    # configs 27% apart (H100 gate run, 2026-11-25; see NOTES.md).

    timer = timing.CudaEvents(device)
    t0 = time.perf_counter()
    timings = []
    for cfg in configs:
        try:
            with watch_spills() as spills:
                run(cfg)  # compiles: a binary that spills under this Triton is never chosen
            if any(n > 0 for n in spills):
                PRUNED_AT_RUNTIME.append((kernel.name, problem.short(), str(precision), cfg.name(), max(spills)))
                continue
            ms = timing.measure({"config": lambda cfg=cfg: run(cfg)}, timer, budget_s=0.02, min_rounds=10,
                                max_rounds=50, warmup=2, first_call=False)["config"].median_ms
        except Exception as exc:  # a config that fails to compile or launch (out of resources) is skipped
            if "resources" not in str(exc).lower() and "shared memory" not in str(exc).lower():
                raise
            ms = float("inf")
        timings.append((ms, cfg))
    if not timings:  # every candidate spilled: the first (the static gate fails such a toolchain)
        timings.append((float("nan"), configs[0]))
    best_ms, best = min(timings, key=lambda t: (t[0] != t[0], t[0]))
    if best_ms == float("inf"):
        raise RuntimeError(f"fastconv: no config of {kernel.name} could run {problem.short()}")
    seconds = time.perf_counter() - t0
    with _LOCK:
        _MEMORY[(str(path), key)] = (best, "memory")
        _save_disk(path, key, best)
        TUNING_LOG.append(TuningRecord(kernel.name, problem.short(), str(precision), best.name(), seconds,
                                       len(configs), "timed"))
    return Choice(best, "timed")


def tuning_report() -> list[dict]:
    """What tuning cost so far in this process: one row per tuned problem."""
    return [vars(r).copy() for r in TUNING_LOG]
