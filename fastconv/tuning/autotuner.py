"""Per-problem config choice: chosen without timing by default, timed on demand, cached in memory and on disk.

The key is everything the choice may depend on: kernel name, the full :class:`ConvProblem` (shapes, conv
parameters, groups, dtype, bias, output layout), the precision, the input's memory layout, and the GPU.

Where a choice comes from (:class:`Choice`'s ``source``, reported by :func:`fastconv.plan`):

- ``"forced"``: a :class:`forced_config` block (tests);
- ``"memory"`` / ``"disk"`` / ``"loaded"``: tuned before, in this process, by an earlier process (the cache
  ``$FASTCONV_CACHE_DIR``, default ``~/.cache/fastconv``, one file per GPU name and Triton version), or from a
  tuning file (:func:`load_tuning`, ``$FASTCONV_TUNING_FILE``);
- ``"timed"``: tuned now.  Only on request: ``FASTCONV_AUTOTUNE=1``, or inside :func:`fastconv.tune`
  (:func:`tune_job`).  Every candidate is compiled (in parallel threads where Triton can) and timed on the
  device; a candidate whose binary spills registers is dropped;
- ``"heuristic"``: the default on a GPU: picked without timing by :mod:`fastconv.tuning.heuristic` (nearest
  measured problems of this GPU architecture, or the analytic rule where none were measured), so a first
  forward compiles one binary per shape instead of timing a dozen;
- ``"default"``: the first candidate (Triton's interpreter, where nothing is timed and tests rely on it; or a
  single candidate).

``FASTCONV_TUNE_RECORD=path`` (or :func:`record_to`) appends one JSON line per timed problem with *every*
candidate's device time, the problem's features, kernel, precision, layout, GPU and Triton: the data
``scripts/fit_heuristic.py`` fits the heuristic from.  The time tuning costs is in :data:`TUNING_LOG`
(:func:`tuning_report`), because it is a cost the user sees.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ..env import cache_dir, triton_version
from ..kernels import fitness
from ..kernels.config import KernelConfig
from ..kernels.launch import warmup_launches, watch_spills
from ..problem import ConvProblem
from . import heuristic, timing

__all__ = ["choose_config", "candidates", "Choice", "tuning_report", "TUNING_LOG", "PRUNED_AT_RUNTIME",
           "clear_cache", "cache_path", "forced_config", "config_forced", "tuning_requested", "TuneJob",
           "TuneResult", "tune_job", "capture_jobs", "record_to", "record_path", "save_tuning", "load_tuning",
           "TuningFileMismatch", "device_name", "tuning_session", "compile_parallel", "time_on_device",
           "TUNING_FILE_FORMAT", "heuristic_pick", "untimed_choice"]


@dataclass
class TuningRecord:
    kernel: str
    problem: str
    precision: str
    config: str
    seconds: float
    candidates: int
    source: str  # "timed"
    compile_seconds: float = 0.0


TUNING_LOG: list[TuningRecord] = []
_MEMORY: dict[tuple, tuple[KernelConfig, str]] = {}  # (cache file, key) -> (config, "disk"|"memory"|"loaded")
# (kernel, problem, precision, config, spilled registers) of candidates dropped because their binary spilled
PRUNED_AT_RUNTIME: list[tuple] = []
_LOCK = threading.RLock()
_DISK_LOADED: set[Path] = set()
_ENV_FILES_LOADED: set[str] = set()
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


def device_name(device: torch.device) -> str:
    """The GPU's name (``"NVIDIA H200"``); ``"interpreter"`` for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "interpreter"


def cache_path(device: torch.device) -> Path:
    root = cache_dir()
    safe = "".join(c if c.isalnum() else "_" for c in device_name(device))
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
        _MEMORY.setdefault((str(path), k), (KernelConfig.from_json(v), "disk"))


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
    """Forget tuned and loaded choices (in memory; and the disk files too when ``disk``)."""
    with _LOCK:
        if disk:
            for path in list(_DISK_LOADED):
                path.unlink(missing_ok=True)
        _MEMORY.clear()
        _DISK_LOADED.clear()
        _ENV_FILES_LOADED.clear()
        _TIMERS.clear()
        TUNING_LOG.clear()


class Choice(NamedTuple):
    """A config choice and where it came from (see the module's docstring): ``"forced"``, ``"memory"``,
    ``"disk"``, ``"loaded"``, ``"timed"``, ``"heuristic"`` or ``"default"``."""

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


# ----------------------------------------------------------------------------------------------------------
# When to time
# ----------------------------------------------------------------------------------------------------------
_SESSION: contextvars.ContextVar[bool] = contextvars.ContextVar("fastconv_tuning_session", default=False)


@contextlib.contextmanager
def tuning_session():
    """Inside the block, choices not tuned before are timed (as with ``FASTCONV_AUTOTUNE=1``)."""
    token = _SESSION.set(True)
    try:
        yield
    finally:
        _SESSION.reset(token)


def tuning_requested() -> bool:
    """Whether a choice not tuned before is timed: ``FASTCONV_AUTOTUNE=1`` or inside :func:`tuning_session`."""
    return _SESSION.get() or os.environ.get("FASTCONV_AUTOTUNE", "0") == "1"


# ----------------------------------------------------------------------------------------------------------
# Capturing what a model would tune (fastconv.tune)
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TuneJob:
    """One choice to tune: ``run(config)`` launches the kernel once with ``config`` on the call's tensors."""

    kernel: Any
    problem: ConvProblem
    precision: str
    layout: str
    device: torch.device
    run: Callable[[KernelConfig], None]

    @property
    def key(self) -> str:
        return _key_str(self.kernel.name, self.problem, str(self.precision), self.layout)

    def describe(self) -> str:
        return f"{self.kernel.name} {self.problem.short()} {self.precision} {self.layout}"


_CAPTURE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("fastconv_capture", default=None)


@contextlib.contextmanager
def capture_jobs():
    """Collect, in call order and without duplicates, a :class:`TuneJob` for every config choice made inside
    the block (the calls still run, with untimed choices).  Yields the ``{key: job}`` dict."""
    jobs: dict[str, TuneJob] = {}
    token = _CAPTURE.set(jobs)
    try:
        yield jobs
    finally:
        _CAPTURE.reset(token)


# ----------------------------------------------------------------------------------------------------------
# The choice
# ----------------------------------------------------------------------------------------------------------
def _tuned(kernel_name: str, problem: ConvProblem, precision: str, layout: str, device: torch.device
           ) -> Choice | None:
    """A choice tuned before: this process, the disk cache (GPU only), or a loaded tuning file."""
    path = cache_path(device)
    key = _key_str(kernel_name, problem, precision, layout)
    env_file = os.environ.get("FASTCONV_TUNING_FILE")
    if env_file and env_file not in _ENV_FILES_LOADED:
        load_tuning(env_file, device)  # raises TuningFileMismatch for another GPU or Triton (at every call)
        _ENV_FILES_LOADED.add(env_file)
    with _LOCK:
        if device.type == "cuda":  # the interpreter's choices are deterministic: no disk cache there
            _load_disk(path)
        hit = _MEMORY.get((str(path), key))
    return None if hit is None else Choice(*hit)


def _sm_count(device: torch.device) -> int:
    try:
        return int(torch.cuda.get_device_properties(device).multi_processor_count)
    except Exception:  # a fake device in tests
        return 132


def heuristic_pick(kernel_name: str, problem: ConvProblem, precision: str, layout: str,
                   configs: Sequence[KernelConfig], arch: str | None, sm_count: int) -> KernelConfig:
    """The heuristic's pick among ``configs`` on a GPU of architecture ``arch`` with ``sm_count`` SMs: the
    packaged model of that architecture, or the rule where it has no data (:mod:`fastconv.tuning.heuristic`)."""
    model = heuristic.default_heuristic(arch) if arch else None
    group = heuristic.group_of(kernel_name, problem.dtype, str(precision), layout)
    cfg = model.choose(group, problem, configs) if model is not None else None
    return cfg if cfg is not None else heuristic.rule_choice(problem, configs, sm_count)


def untimed_choice(kernel, problem: ConvProblem, precision: str, layout: str, device: torch.device,
                   configs: Sequence[KernelConfig]) -> Choice:
    """The choice without timing: the first candidate in the interpreter (or when alone), else the
    heuristic's (:func:`heuristic_pick`)."""
    if device.type != "cuda" or len(configs) == 1:
        return Choice(configs[0], "default")
    return Choice(heuristic_pick(kernel.name, problem, precision, layout, configs, fitness.device_target(device),
                                 _sm_count(device)), "heuristic")


def choose_config(kernel, problem: ConvProblem, precision: str, layout: str, run, device: torch.device
                  ) -> Choice:
    """Pick the config ``kernel`` uses for ``problem`` (see the module's docstring for the order).

    ``run(config)`` launches the kernel once with that config (into a scratch output; None: nothing may be
    launched, so nothing is timed).
    """
    forced = _forced(kernel.name)
    if forced is not None:
        return Choice(forced, "forced")
    precision = str(precision)
    capture = _CAPTURE.get()
    if capture is not None and run is not None:
        job = TuneJob(kernel, problem, precision, layout, device, run)
        capture.setdefault(job.key, job)
    hit = _tuned(kernel.name, problem, precision, layout, device)
    if hit is not None:
        return hit
    configs = candidates(kernel, problem, precision, device)
    if capture is None and run is not None and device.type == "cuda" and len(configs) > 1 and tuning_requested():
        result = tune_job(TuneJob(kernel, problem, precision, layout, device, run), configs=configs)
        return Choice(result.config, "timed")
    return untimed_choice(kernel, problem, precision, layout, device, configs)


# ----------------------------------------------------------------------------------------------------------
# Tuning one job: compile every candidate (in parallel), time each on the device, keep the fastest
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TuneResult:
    """What :func:`tune_job` found: the chosen config, every candidate's device time (ms; None: spilled or
    failed), and the seconds spent compiling and in all."""

    job: TuneJob
    config: KernelConfig
    times_ms: dict[str, float | None]
    configs: list[KernelConfig]
    compile_seconds: float = 0.0
    seconds: float = 0.0
    untimed: KernelConfig | None = None  # what the untimed choice would have been (for the progress line)
    notes: list[str] = field(default_factory=list)


def _default_jobs() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def compile_parallel(job: TuneJob, configs: Sequence[KernelConfig], jobs: int | None = None) -> None:
    """Compile ``job``'s binary for every config in ``jobs`` threads, without launching anything: each
    launch site turns into ``JITFunction.warmup`` (:func:`fastconv.kernels.launch.warmup_launches`) inside
    Triton's ``AsyncCompileMode``, which runs each compilation on the thread pool (Triton's C++ passes and the
    ``ptxas`` subprocess run without the GIL).  Errors are left for the timed launches to report.  A Triton
    without ``AsyncCompileMode`` compiles at the first timed launch instead (serially)."""
    try:
        from triton.runtime._async_compile import AsyncCompileMode  # Triton >= 3.4; on use (fastconv.env)
    except ImportError:
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs or _default_jobs()) as pool, \
            AsyncCompileMode(pool, ignore_errors=True), warmup_launches():
        for cfg in configs:
            with contextlib.suppress(Exception):  # reported by the timed launch of that config
                job.run(cfg)


def _resource_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "resources" in text or "shared memory" in text


_TIMERS: dict[tuple, timing.TimingBackend] = {}


def _timer(device: torch.device) -> timing.TimingBackend:
    """One CUDA-events backend per device (its L2-flush buffer is allocated once); keyed by the backend's
    factory too, so a test's stand-in for ``timing.CudaEvents`` is never reused after the test."""
    key = (device, timing.CudaEvents)
    if key not in _TIMERS:
        _TIMERS[key] = timing.CudaEvents(device)
    return _TIMERS[key]


def time_on_device(job: TuneJob, configs: Sequence[KernelConfig]) -> dict[str, float | None]:
    """Device time (ms, median) of each config on ``job``, the host kept ahead of the device
    (:mod:`fastconv.tuning.timing`); None for a config whose binary spills (never chosen) and ``inf`` for one
    that does not fit the device.

    (``triton.testing.do_bench`` records its start event right after an L2 clear and then calls, so a call
    whose host dispatch outlasts the clear is timed partly on the host; on a 13 us problem two processes
    picked configs 27% apart: H100 gate run, 2026-11-25, NOTES.md.)"""
    timer = _timer(job.device)
    out: dict[str, float | None] = {}
    for cfg in configs:
        try:
            with watch_spills() as spills:
                job.run(cfg)  # compiled already (compile_parallel), or compiles now
            if any(n > 0 for n in spills):
                PRUNED_AT_RUNTIME.append((job.kernel.name, job.problem.short(), job.precision, cfg.name(),
                                          max(spills)))
                out[cfg.name()] = None
                continue
            out[cfg.name()] = timing.measure({"config": lambda cfg=cfg: job.run(cfg)}, timer, budget_s=0.02,
                                             min_rounds=10, max_rounds=50, warmup=2,
                                             first_call=False)["config"].median_ms
        except Exception as exc:  # a config that does not fit (out of resources) is skipped
            if not _resource_error(exc):
                raise
            out[cfg.name()] = float("inf")
    return out


Compiler = Callable[[TuneJob, Sequence[KernelConfig], "int | None"], None]
Timer = Callable[[TuneJob, Sequence[KernelConfig]], dict]


def tune_job(job: TuneJob, *, configs: Sequence[KernelConfig] | None = None, compile: Compiler | None = None,
             timer: Timer | None = None, jobs: int | None = None, commit: bool = True) -> TuneResult:
    """Tune one job: compile its candidates (``compile``, default :func:`compile_parallel`), time them
    (``timer``, default :func:`time_on_device`), keep the fastest.  With ``commit`` the choice goes into
    memory, the disk cache and :data:`TUNING_LOG`; the times go to the record file when one is set
    (:func:`record_path`), committed or not."""
    configs = list(configs) if configs is not None else candidates(job.kernel, job.problem, job.precision,
                                                                   job.device)
    untimed = untimed_choice(job.kernel, job.problem, job.precision, job.layout, job.device, configs).config
    t0 = time.perf_counter()
    (compile or compile_parallel)(job, configs, jobs)
    t1 = time.perf_counter()
    times = (timer or time_on_device)(job, configs)
    ok = [(ms, i) for i, cfg in enumerate(configs) if (ms := times.get(cfg.name())) is not None and ms == ms]
    if not ok:  # every candidate spilled: the first (the static gate fails such a toolchain)
        best = configs[0]
    else:
        best_ms, best_i = min(ok)
        if best_ms == float("inf"):
            raise RuntimeError(f"fastconv: no config of {job.kernel.name} could run {job.problem.short()}")
        best = configs[best_i]
    result = TuneResult(job, best, {c.name(): times.get(c.name()) for c in configs}, configs, t1 - t0,
                        time.perf_counter() - t0, untimed)
    if commit:
        _commit(result)
    _record(result)
    return result


def _commit(result: TuneResult) -> None:
    job = result.job
    path = cache_path(job.device)
    with _LOCK:
        _MEMORY[(str(path), job.key)] = (result.config, "memory")
        if job.device.type == "cuda":
            _save_disk(path, job.key, result.config)
        TUNING_LOG.append(TuningRecord(job.kernel.name, job.problem.short(), job.precision, result.config.name(),
                                       result.seconds, len(result.configs), "timed", result.compile_seconds))


# ----------------------------------------------------------------------------------------------------------
# The record of every candidate's time (what the heuristic is fitted from)
# ----------------------------------------------------------------------------------------------------------
_RECORD: contextvars.ContextVar[Path | None] = contextvars.ContextVar("fastconv_tune_record", default=None)


def record_path() -> Path | None:
    """Where timed problems are recorded: :func:`record_to`'s path, else ``$FASTCONV_TUNE_RECORD``, else None."""
    p = _RECORD.get()
    if p is not None:
        return p
    env = os.environ.get("FASTCONV_TUNE_RECORD")
    return Path(env) if env else None


@contextlib.contextmanager
def record_to(path: str | os.PathLike):
    """Inside the block, every timed problem appends one JSON line to ``path`` (see :func:`record`)."""
    token = _RECORD.set(Path(path))
    try:
        yield Path(path)
    finally:
        _RECORD.reset(token)


def record(result: TuneResult) -> dict:
    """The JSON record of one tuned problem: ``kernel``, ``problem`` (every :class:`ConvProblem` field),
    ``features`` (:func:`fastconv.tuning.heuristic.features`), ``precision``, ``layout``, ``gpu``, ``arch``,
    ``triton``, ``times_ms`` (every candidate: median device ms; null = spilled; Infinity = did not fit),
    ``configs`` (each candidate's JSON), ``best``, ``untimed`` (the untimed choice), ``seconds``,
    ``compile_seconds``."""
    job = result.job
    return {
        "kernel": job.kernel.name, "problem": dataclasses.asdict(job.problem),
        "features": dict(zip(heuristic.FEATURES, heuristic.features(job.problem))),
        "precision": job.precision, "layout": job.layout, "gpu": device_name(job.device),
        "arch": fitness.device_target(job.device) or "interpreter", "triton": triton_version(),
        "times_ms": result.times_ms, "configs": {c.name(): c.to_json() for c in result.configs},
        "best": result.config.name(), "untimed": result.untimed.name() if result.untimed else None,
        "seconds": round(result.seconds, 3), "compile_seconds": round(result.compile_seconds, 3),
    }


def _record(result: TuneResult) -> None:
    path = record_path()
    if path is None:
        return
    line = json.dumps(record(result)) + "\n"
    with _LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(line)


# ----------------------------------------------------------------------------------------------------------
# Tuning files: tuned choices shipped to another machine with the same GPU and Triton
# ----------------------------------------------------------------------------------------------------------
TUNING_FILE_FORMAT = "fastconv-tuning/1"


class TuningFileMismatch(RuntimeError):
    """A tuning file made on another GPU model or under another Triton version."""


def save_tuning(path: str | os.PathLike, device: torch.device, keys: Sequence[str] | None = None) -> dict:
    """Write the tuned choices of ``device``'s GPU (those of ``keys``, default all in memory) to ``path``:
    ``{"format", "gpu", "triton", "torch", "choices": {key: config}}``.  Returns what was written."""
    prefix = str(cache_path(device))
    with _LOCK:
        mine = {k: cfg for (p, k), (cfg, _) in _MEMORY.items() if p == prefix}
    if keys is not None:
        mine = {k: mine[k] for k in keys if k in mine}
    data = {"format": TUNING_FILE_FORMAT, "gpu": device_name(device), "triton": triton_version(),
            "torch": torch.__version__, "choices": {k: cfg.to_json() for k, cfg in sorted(mine.items())}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1))
    return data


def load_tuning(path: str | os.PathLike, device: torch.device | None = None) -> int:
    """Load a tuning file (:func:`save_tuning`) for ``device`` (default: the current GPU, else the
    interpreter).  Raises :class:`TuningFileMismatch` when it was made on another GPU model or Triton version,
    ``ValueError`` when it is not a tuning file.  Returns the number of choices loaded; they take precedence
    over the disk cache and are reported as ``"loaded"``."""
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else \
            torch.device("cpu")
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise ValueError(f"fastconv.load_tuning: {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != TUNING_FILE_FORMAT:
        raise ValueError(f"fastconv.load_tuning: {path} is not a fastconv tuning file "
                         f"(format {TUNING_FILE_FORMAT!r})")
    here = {"gpu": device_name(device), "triton": triton_version()}
    wrong = [f"{what} {data.get(what)!r} (here: {here[what]!r})" for what in ("gpu", "triton")
             if data.get(what) != here[what]]
    if wrong:
        raise TuningFileMismatch(
            f"fastconv.load_tuning: {path} was tuned for another machine: {', '.join(wrong)}.  Configs are only "
            "valid for the GPU model and Triton version they were timed with; tune again here "
            "(fastconv.tune or `python -m fastconv tune`).")
    prefix = str(cache_path(device))
    with _LOCK:
        for k, v in data["choices"].items():
            _MEMORY[(prefix, k)] = (KernelConfig.from_json(v), "loaded")
    return len(data["choices"])


def tuning_report() -> list[dict]:
    """What tuning cost so far in this process: one row per tuned problem."""
    return [vars(r).copy() for r in TUNING_LOG]
