"""pytest plugin for GPU benchmarks on top of pytest-benchmark (load with ``-p fastconv.bench.pytest_bench``
or ``pytest_plugins = ["fastconv.bench.pytest_bench"]``).

Fixtures:

- ``gpu_benchmark``: times any GPU callable with CUDA events (first call and warm-up excluded, L2 flushed
  before every timed call, optionally interleaved with a reference callable for a same-run speedup) and
  hands the *device* times to pytest-benchmark, so ``--benchmark-save`` / ``--benchmark-compare`` /
  ``--benchmark-compare-fail`` work on them.  How: items using it get ``@pytest.mark.benchmark(timer=
  device_clock)``; :func:`device_clock` is a clock that only advances by measured device time, and the
  fixture replays each measured round through ``benchmark.pedantic``, so every pytest-benchmark round *is*
  one CUDA-event measurement (the saved JSON names the timer ``device_clock``).
- ``conv_bench``: one catalogue case (``bench_case``, parametrised by this plugin) with one implementation
  (``fastconv``, ``cudnn``, ``direct``); fills ``benchmark.extra_info`` with the problem, dtype,
  precision, kernel and config, TFLOP/s, GB/s, roofline fraction and the speedup over ``F.conv2d``
  measured in the same rounds, and fails if the output is wrong against the fp64 reference.

Without a GPU (or under ``TRITON_INTERPRET=1``) nothing is timed: ``bench_case`` is parametrised with the
tiny ``SMOKE`` problems, each case runs once in Triton's interpreter and is checked against fp64, its
``extra_info`` says ``timed: False``, and pytest-benchmark records no statistics for it.

Options: ``--bench-quick``, ``--bench-problems NAMES``, ``--bench-dtype``, ``--bench-layout``,
``--bench-precision``, ``--bench-gpu-wait``.  A machine-info hook adds GPU, driver, CUDA, cuDNN, torch and
triton versions.

One GPU, one timing at a time: every test holds its GPU shared (a per-GPU
:class:`~fastconv.locks.ReadersWriterLock` under ``$FASTCONV_LOCK_DIR``, default ``<tmp>/fastconv-gpu-locks``,
so it spans every pytest process of the machine), and a benchmark case holds it exclusively from its first
call to its last timed round: nothing else of these sessions runs on that GPU while it is timed, and two
pytest-xdist workers pinned to one GPU take turns.

Under pytest-xdist (one worker per GPU, see :mod:`fastconv.testing.pytest_conv`) pytest-benchmark switches
itself off; this plugin switches its device-timed cases back on in each worker, and keeps every worker's
results apart: ``--benchmark-json PATH`` becomes ``PATH.<worker>-gpu<N>.json``, ``--benchmark-save NAME``
saves ``NNNN_NAME-<worker>-gpu<N>.json``, ``machine_info["fastconv"]["xdist"]`` names the worker and GPU,
and each worker compares with ``--benchmark-compare`` on its own GPU.  The controller prints each worker's
table and fails the run (exit 1) on a regression that ``--benchmark-compare-fail`` finds on any GPU.  In any
run, ``--benchmark-compare`` uses only the saved runs of this GPU's model when it matched several models.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import torch

from ..env import interpreter_enabled
from ..locks import LockTimeout, ReadersWriterLock
from ..precision import FLOAT32_PRECISIONS
from ..testing.impl import ConvImpl
from ..testing.integrity import Watch
from ..testing.pytest_conv import impls_under_test
from ..tuning.timing import CudaEvents, measure
from ..vocab import DTYPES
from .case_runner import bench_case
from .case_runner import machine_info as info
from .problems import BENCH_LAYOUTS, IMPLS, SMOKE, impl_name, layouts_of, select
from .roofline import ceilings_for, roofline

__all__ = ["device_clock", "GpuBenchmark"]

# one xdist worker per GPU (the workers' pinning, -n auto) comes with fastconv.testing's plugin
pytest_plugins = ["fastconv.testing.pytest_conv"]

_CLOCK = [0.0]


def device_clock() -> float:
    """pytest-benchmark timer (seconds) that advances only by device time measured with CUDA events."""
    return _CLOCK[0]


# ----------------------------------------------------------------------------------------------------------
# Options, parametrisation, markers
# ----------------------------------------------------------------------------------------------------------
def pytest_addoption(parser):
    group = parser.getgroup("fastconv-bench", "fastconv GPU benchmarks")
    group.addoption("--bench-quick", action="store_true", default=False,
                    help="benchmark only the quick subset of the catalogue")
    group.addoption("--bench-problems", default=None, metavar="NAMES",
                    help="comma-separated problem names or groups (kernelbench, resnet50, latency, quick, "
                         "gate)")
    group.addoption("--bench-dtype", default="float32", choices=list(DTYPES))
    group.addoption("--bench-layout", default="both", choices=[*BENCH_LAYOUTS, "both"],
                    help="input layout, each against cuDNN in the same layout (default: both)")
    group.addoption("--bench-precision", default=None, choices=list(FLOAT32_PRECISIONS),
                    help="float32 arithmetic of fastconv (default: PyTorch's default flags, i.e. tf32)")
    group.addoption("--bench-gpu-wait", type=float, default=1800.0, metavar="SECONDS",
                    help="how long a benchmark waits for its GPU to be free of other tests and benchmarks "
                         "before it fails (default 1800)")


def _timed_device():
    """The CUDA device benchmarks are timed on, or None (no GPU, or Triton's interpreter is on)."""
    if not torch.cuda.is_available() or interpreter_enabled():
        return None
    return torch.device("cuda", torch.cuda.current_device())


def _timed_setup():
    """(device, backend, ceilings) when timing is possible, else None.  Built on first use (not during
    collection): unknown ceilings are measured on the GPU then."""
    device = _timed_device()
    return None if device is None else _cuda_setup(device.index)


@functools.cache
def _cuda_setup(index: int):
    device = torch.device("cuda", index)
    return device, CudaEvents(device), ceilings_for(torch.cuda.get_device_name(device), device_index=index)


def _cases(config):
    dtype, layout = config.getoption("bench_dtype"), config.getoption("bench_layout")
    precision = config.getoption("bench_precision")
    asked = config.getoption("bench_problems")
    if _timed_device() is None:
        # the interpreter runs only tiny problems: the smoke set, or the tiny ones among those asked for
        tiny = [p for p in select(asked) if p.group in ("smoke", "gate-correctness")] if asked else []
        problems = tiny or list(SMOKE)
    else:
        problems = select(asked, quick=config.getoption("bench_quick"))
    return [p.case(dtype, lay, precision) for p in problems for lay in layouts_of(layout)]


def pytest_generate_tests(metafunc):
    if "bench_case" in metafunc.fixturenames:
        cases = _cases(metafunc.config)
        metafunc.parametrize("bench_case", cases, ids=[c.id for c in cases])
    if "bench_impl" in metafunc.fixturenames:
        # --conv-impl: the implementations under test, each timed against cuDNN; else fastconv, cuDNN, direct
        user = impls_under_test(metafunc.config) if metafunc.config.getoption("conv_impl", default=[]) else []
        impls = [*user, "cudnn"] if user else list(IMPLS)
        metafunc.parametrize("bench_impl", impls, ids=[impl_name(i) for i in impls])


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's
def pytest_collection_modifyitems(config, items):
    """Give every item that uses ``gpu_benchmark`` the device clock, and group conv cases by problem.  In an
    xdist worker whose benchmarks all time here, drop pytest-benchmark's note that xdist disabled them."""
    bs = getattr(config, "_benchmarksession", None)
    if config._fastconv_worker_tag is not None and bs is not None and all(
            "gpu_benchmark" in getattr(i, "fixturenames", ()) for i in items
            if "benchmark" in getattr(i, "fixturenames", ())):
        bs.xdist_benchmark_found = False
    for item in items:
        if "gpu_benchmark" not in getattr(item, "fixturenames", ()):
            continue
        marker = item.get_closest_marker("benchmark")
        kwargs = dict(marker.kwargs) if marker is not None else {}
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("bench_case") if callspec is not None else None
        if case is not None:
            kwargs.setdefault("group", case.id)
        kwargs["timer"] = device_clock
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastconv"] = dict(_machine())
    tag = getattr(config, "_fastconv_worker_tag", None)
    if tag is not None:
        machine_info["fastconv"]["xdist"] = _worker_info(config)


# ----------------------------------------------------------------------------------------------------------
# One GPU, one timing at a time
# ----------------------------------------------------------------------------------------------------------
def _gpu_key(device: torch.device) -> str:
    """What names a physical GPU on this machine, whatever ``CUDA_VISIBLE_DEVICES`` a process has: its UUID.
    (A device that is not a GPU, as a test's simulated timing device, is named by its type.)"""
    if device.type != "cuda":
        return device.type
    uuid = getattr(torch.cuda.get_device_properties(device), "uuid", None)
    return f"gpu-{uuid}" if uuid is not None else f"gpu-{torch.cuda.get_device_name(device)}-{device.index}"


def _lock_dir() -> Path:
    return Path(os.environ.get("FASTCONV_LOCK_DIR") or Path(tempfile.gettempdir()) / "fastconv-gpu-locks")


@functools.cache
def _gpu_lock(key: str) -> ReadersWriterLock:
    root = _lock_dir()
    if not root.exists():
        root.mkdir(parents=True, exist_ok=True)
        with suppress(OSError):
            root.chmod(0o1777)  # every user's sessions lock the machine's GPUs here (as in /tmp)
    return ReadersWriterLock(root / ("".join(c if c.isalnum() or c in "-_" else "_" for c in key) + ".lock"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Every test (setup, call, teardown) holds its GPU shared: a benchmark being timed holds it exclusively."""
    device = _timed_device()
    if device is None:
        return (yield)
    try:
        reading = _gpu_lock(_gpu_key(device)).reading()
        reading.__enter__()
    except OSError as exc:  # no lock file we may open: run, and say that timings are not protected
        item.warn(pytest.PytestWarning(f"fastconv: cannot lock the GPU under {_lock_dir()} ({exc}); set "
                                       "FASTCONV_LOCK_DIR: benchmarks of other sessions may overlap this test"))
        return (yield)
    try:
        return (yield)
    finally:
        reading.__exit__(None, None, None)


@contextmanager
def _exclusive_gpu(config, device: torch.device):
    """The GPU to this process alone; fails the test after ``--bench-gpu-wait`` s of waiting for it."""
    wait = float(config.getoption("bench_gpu_wait"))
    try:
        held = _gpu_lock(_gpu_key(device)).writing(timeout=wait)
        held.__enter__()
    except LockTimeout as exc:
        pytest.fail(f"benchmark: GPU {_gpu_key(device)} stayed busy for {wait:g} s (another test or benchmark "
                    f"held it; --bench-gpu-wait): {exc}", pytrace=False)
    except OSError as exc:
        pytest.fail(f"benchmark: cannot lock GPU {_gpu_key(device)} under {_lock_dir()} ({exc}): a timing must "
                    "have its GPU to itself; set FASTCONV_LOCK_DIR to a directory you may write", pytrace=False)
    try:
        yield
    finally:
        held.__exit__(None, None, None)


# ----------------------------------------------------------------------------------------------------------
# pytest-xdist: results per worker and GPU
# ----------------------------------------------------------------------------------------------------------
@functools.cache
def _machine() -> dict:
    """This process's :func:`machine_info`, asked once (it starts an ``nvidia-smi``); copy before changing."""
    return info()


def _this_gpu() -> tuple[str | None, str | None]:
    """The model and UUID of the GPU this process times on (None, None without one): what a saved run must
    match."""
    return _machine().get("gpu"), _machine().get("gpu_uuid")


def worker_tag(worker: str) -> str:
    """``gw0-gpu1``: the worker and the GPU it is pinned to (``CUDA_VISIBLE_DEVICES``; ``cpu`` without CUDA)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        gpu = "gpu" if torch.cuda.is_available() else "cpu"
    else:
        gpu = "gpu" + "".join(c if c.isalnum() or c in "-_." else "_" for c in visible)
    return f"{worker}-{gpu}"


def _worker_info(config) -> dict:
    return {"worker": config.workerinput["workerid"], "workers": config.workerinput.get("workercount"),
            "tag": config._fastconv_worker_tag, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _saved_gpu(bs, path) -> tuple[str | None, str | None]:
    """The GPU model and UUID a saved run was recorded on (None where it does not say, or is not a file we
    can read)."""
    p = Path(path)
    for candidate in (p, Path(getattr(bs.storage, "path", "")) / p):
        try:
            saved = json.loads(candidate.read_text()).get("machine_info", {}).get("fastconv") or {}
        except (OSError, ValueError):
            continue
        return saved.get("gpu"), saved.get("gpu_uuid")
    return None, None


def same_gpu_baselines(bs, gpu: str | None, uuid: str | None = None) -> list[str]:
    """Keep in pytest-benchmark's comparison only the saved runs of this GPU: those recorded on this very GPU
    (``uuid``) where there are any, else those of ``gpu``'s model, when the runs it loaded name GPU models and
    ``gpu`` is known; returns what was dropped.  With none of this model, nothing is compared (and
    ``--benchmark-compare-fail`` has nothing to fail on): said in the returned list.  So on a machine with
    several GPUs of one model, per-GPU baselines (``--benchmark-save`` under xdist) are compared per GPU."""
    mapping = getattr(bs, "compared_mapping", None) or {}
    if gpu is None or not mapping:
        return []
    saved = {path: _saved_gpu(bs, path) for path in mapping}
    if not any(model for model, _ in saved.values()):
        return []
    mine = {path for path, (model, saved_uuid) in saved.items() if model == gpu and uuid and saved_uuid == uuid}
    keep = mine or {path for path, (model, _) in saved.items() if model == gpu}
    dropped = [f"{path} ({model})" if model != gpu else f"{path} (another {model}: {saved_uuid})"
               for path, (model, saved_uuid) in saved.items() if path not in keep]
    bs.compared_mapping = {path: m for path, m in mapping.items() if path in keep}
    if not bs.compared_mapping:
        bs.compare_fail = []
        dropped.append(f"no saved run of {gpu}: NOT compared")
    return dropped


def _xdist_controller(config) -> bool:
    """The process that hands tests to xdist workers (and runs none itself)."""
    return not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no" and \
        bool(config.getoption("tx", None))


def pytest_configure(config):
    config._fastconv_bench_counts = {"timed": 0, "smoke": 0}
    config._fastconv_worker_tag = None
    config._fastconv_bench_workers = {}
    config._fastconv_compare_dropped = []


def _off_for_xdist(config, bs) -> bool:
    """Whether pytest-benchmark switched itself off only because this is an xdist worker.  5.2+ says so in
    ``xdist_warning``; older releases (4.x-5.1, e.g. the GPU machine's) just set ``disabled``, which
    ``--benchmark-disable`` also sets."""
    flag = getattr(bs, "xdist_warning", None)
    if flag is not None:
        return bool(flag)
    asked_off = config.getoption("benchmark_disable", False) and not config.getoption("benchmark_enable", False)
    return bool(bs.disabled and not asked_off and not getattr(bs, "skip", False))


def pytest_sessionstart(session):
    """(After every pytest_configure: pytest-benchmark makes its session in its own, a trylast one.)"""
    config = session.config
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or _xdist_controller(config):
        return
    if hasattr(config, "workerinput") and _off_for_xdist(config, bs):
        tag = config._fastconv_worker_tag = worker_tag(config.workerinput["workerid"])
        if bs.json:
            bs.json = Path(bs.json).with_name(f"{Path(bs.json).stem}.{tag}{Path(bs.json).suffix or '.json'}")
        if bs.save:
            bs.save = f"{bs.save}-{tag}"
        if bs.autosave:
            bs.autosave = f"{bs.autosave}-{tag}"
    gpu, uuid = _this_gpu()
    config._fastconv_compare_dropped = same_gpu_baselines(bs, gpu, uuid)
    for line in config._fastconv_compare_dropped:
        bs.logger.warning(f"fastconv: --benchmark-compare on {gpu} leaves out {line}")


class _Lines:
    """A stand-in terminal that keeps what pytest-benchmark writes (a worker's table goes to the controller)."""

    def __init__(self):
        self.parts: list[str] = []

    def write(self, text, **markup):
        self.parts.append(str(text))

    def write_line(self, line, **markup):
        self.parts.append(str(line) + "\n")

    def ensure_newline(self):
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def section(self, title, sep="=", **markup):
        self.write_line(f" {title} ".center(80, sep))

    def text(self) -> str:
        return "".join(self.parts)


def pytest_sessionfinish(session):
    """A worker sends its counts, results and regressions to the controller; the controller fails the run
    on a regression of any worker."""
    config = session.config
    if hasattr(config, "workerinput"):
        bs = getattr(config, "_benchmarksession", None)
        out = {"counts": config._fastconv_bench_counts, "tag": config._fastconv_worker_tag}
        if bs is not None and config._fastconv_worker_tag is not None:
            # pytest-benchmark compared and saved in its own sessionfinish, which runs first
            out["regressions"] = [list(r) for r in bs.performance_regressions]
            bs.performance_regressions = []  # reported by the controller: a worker must not raise them
            table = _Lines()
            try:
                if bs.groups:
                    bs.display(table)
            except Exception as exc:  # pytest-benchmark's own complaints: the controller fails the run on them
                out["error"] = f"{type(exc).__name__}: {exc}"
            out.update(table=table.text(), gpu=_this_gpu()[0], json=str(bs.json) if bs.json else None,
                       dropped=config._fastconv_compare_dropped, timed_here=len(bs.benchmarks))
        config.workeroutput["fastconv_bench"] = json.dumps(out)
    elif any(w.get("regressions") or w.get("error") for w in config._fastconv_bench_workers.values()):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    out = getattr(node, "workeroutput", {}).get("fastconv_bench")
    if out:
        node.config._fastconv_bench_workers[node.gateway.id] = json.loads(out)


def _worker_summary(tr, workers: dict) -> None:
    for wid in sorted(workers, key=lambda w: (len(w), w)):
        w = workers[wid]
        if w.get("tag") is None or not (w.get("timed_here") or w.get("regressions") or w.get("dropped")
                                        or w.get("error")):
            continue
        where = f"{w['tag']} ({w.get('gpu') or 'no GPU'})"
        tr.write_line(f"{where}: {w['timed_here']} case(s) timed" + (f", results in {w['json']}" if w.get("json")
                                                                        else ""))
        for line in w.get("dropped") or []:
            tr.write_line(f"  --benchmark-compare leaves out {line}", yellow=True)
        if w.get("table"):
            tr.write(w["table"])
        for name, why in w.get("regressions") or []:
            tr.write_line(f"{where}: PERFORMANCE REGRESSED: {name} - {why}", red=True, bold=True)
        if w.get("error"):
            tr.write_line(f"{where}: pytest-benchmark: {w['error']}", red=True, bold=True)


def pytest_terminal_summary(terminalreporter, config):
    counts = dict(getattr(config, "_fastconv_bench_counts", None) or {"timed": 0, "smoke": 0})
    workers = getattr(config, "_fastconv_bench_workers", {})
    for w in workers.values():
        for k in counts:
            counts[k] += w["counts"].get(k, 0)
    if not (counts["timed"] or counts["smoke"]):
        return
    tr = terminalreporter
    tr.section("fastconv benchmarks")
    _worker_summary(tr, workers)
    if counts["smoke"]:
        tr.write_line(f"{counts['smoke']} case(s) ran as smoke tests in Triton's interpreter: checked "
                      "against the fp64 reference, NOT TIMED (no GPU) - no timing was recorded.", yellow=True)
    if counts["timed"]:
        tr.write_line(f"{counts['timed']} case(s) timed on the GPU: pytest-benchmark's figures are "
                      "CUDA-event device times per call (L2 flushed before each; first call and warm-up "
                      "excluded).")


# ----------------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------------
class GpuBenchmark:
    """Callable wrapper of pytest-benchmark's fixture that times on the device (see the module docs)."""

    def __init__(self, benchmark, config):
        self.benchmark = benchmark
        self.config = config
        self.setup = _timed_setup()
        self.extra_info = benchmark.extra_info
        if config._fastconv_worker_tag is not None and self.setup is not None:
            benchmark.disabled = False  # xdist switched pytest-benchmark off; this worker times its GPU alone

    def exclusive(self):
        """The GPU to this test alone while it is timed (other tests and benchmarks wait)."""
        return _exclusive_gpu(self.config, self.setup[0])

    @property
    def timed(self) -> bool:
        return self.setup is not None and not self.benchmark.disabled

    def _budget(self) -> tuple[float, int]:
        max_time = float(self.config.getoption("benchmark_max_time", 1.0) or 1.0)
        min_rounds = int(self.config.getoption("benchmark_min_rounds", 5) or 5)
        return max_time, max(10, min_rounds)

    def record(self, times_ms: list[float], check=None):
        """Hand measured device times (ms) to pytest-benchmark, one round each; ``check()`` runs first
        (inside pytest-benchmark's call, so a failure marks the benchmark as errored and unsaved)."""
        it = iter(times_ms)
        pending = [check]

        def replay():
            if pending[0] is not None:
                fn, pending[0] = pending[0], None
                fn()
            _CLOCK[0] += next(it) * 1e-3

        self.benchmark.pedantic(replay, rounds=len(times_ms), iterations=1, warmup_rounds=0)

    def __call__(self, fn, *, reference=None, flops: float | None = None, min_bytes: float | None = None,
                 pclass: str = "tf32"):
        """Time ``fn`` (and ``reference``, interleaved) on the GPU and record ``fn``'s device times.

        ``flops`` / ``min_bytes`` add TFLOP/s, GB/s and the roofline fraction to ``extra_info`` (``pclass``
        picks the compute ceiling); ``reference`` adds ``speedup_vs_reference``.  Without a GPU ``fn``
        runs once and nothing is timed.
        """
        if not self.timed:
            self.extra_info["timed"] = False
            self.benchmark.disabled = True
            return self.benchmark.pedantic(fn, rounds=1)
        device, backend, ceilings = self.setup
        fns = {"fn": fn} if reference is None else {"fn": fn, "reference": reference}
        budget, min_rounds = self._budget()
        with self.exclusive():
            t = measure(fns, backend, budget_s=budget, min_rounds=min_rounds)
        info = self.extra_info
        info.update(timed=True, timing=backend.describe(), rounds=t["fn"].rounds,
                    first_call_s=t["fn"].first_call_s, median_ms=t["fn"].median_ms,
                    host_enqueue_us_median=t["fn"].host_us_median, hold_us=t["fn"].hold_us)
        if reference is not None:
            info["reference_median_ms"] = t["reference"].median_ms
            info["speedup_vs_reference"] = t["reference"].median_ms / t["fn"].median_ms
        if flops is not None and min_bytes is not None:
            info.update(roofline(flops, min_bytes, t["fn"].median_ms * 1e-3, ceilings, pclass).to_json())
        self.record(t["fn"].times_ms)
        return t


@pytest.fixture
def gpu_benchmark(benchmark, request):
    """pytest-benchmark's ``benchmark`` timing on the GPU with CUDA events (see :class:`GpuBenchmark`)."""
    return GpuBenchmark(benchmark, request.config)


def _watched_first_stage(impl: ConvImpl, case) -> None:
    """One call of an implementation under test on the case's first stage, through a
    :class:`~fastconv.testing.Watch`: a timer that stops on the caller's stream must not miss work it left
    running (or an output it rewrites later)."""
    device = _timed_device() or torch.device("cpu")
    inputs = case.make_inputs(device)
    s = case.stages[0]
    with Watch(guard_bands=False) as watch:
        watch.call(impl, inputs.x, inputs.weights[0], inputs.biases[0], (s.stride_h, s.stride_w), s.torch_padding,
                   (s.dil_h, s.dil_w), s.groups, precision=case.fastconv_precision if impl.takes_precision else None,
                   what=f"benchmark {case.id}")


@pytest.fixture
def conv_bench(gpu_benchmark, request):
    """``conv_bench(case, impl)``: benchmark one catalogue case with ``"fastconv"``, ``"cudnn"`` or
    ``"direct"`` (fastconv and direct interleaved with cuDNN for the speedup), check it against fp64."""
    counts = request.config._fastconv_bench_counts

    def run(case, impl):
        info = gpu_benchmark.extra_info
        info.update(problem=case.name, group=case.problem.group, source=case.problem.source,
                    shape=case.problem.short(), dtype=case.dtype, layout=case.layout,
                    precision=case.resolved_precision, impl=impl_name(impl))
        if isinstance(impl, ConvImpl):
            _watched_first_stage(impl, case)
        impls = [impl] if impl == "cudnn" else [impl, "cudnn"]
        name = impl_name(impl)
        if not gpu_benchmark.timed:
            device = gpu_benchmark.setup[0] if gpu_benchmark.setup else torch.device("cpu")
            holder = {}

            def once():
                holder["r"] = bench_case(case, [impl], device, None, None)

            info["note"] = "NOT TIMED: correctness smoke test" + (" in Triton's interpreter" if device.type ==
                                                                    "cpu" else " (--benchmark-disable)")
            gpu_benchmark(once)
            r = holder["r"].impls[name]
            if r.skipped:
                pytest.skip(r.skipped)
            if r.error:
                pytest.fail(f"{case.id} {impl} raised {r.error}")
            info.update(kernels=r.kernels, rel_error=r.check.error, tolerance=r.check.tol)
            counts["smoke"] += 1
            assert r.check.ok, f"{case.id} {impl}: relative error {r.check.error:.3g} > {r.check.tol:.3g}"
            return holder["r"]
        device, backend, ceilings = gpu_benchmark.setup
        budget, min_rounds = gpu_benchmark._budget()
        with gpu_benchmark.exclusive():  # first call (compile, autotune) to last round: the GPU to itself
            res = bench_case(case, impls, device, backend, ceilings, budget_s=budget, min_rounds=min_rounds)
        r = res.impls[name]
        if r.skipped:
            pytest.skip(r.skipped)
        if r.error:
            pytest.fail(f"{case.id} {impl} raised {r.error}")
        t = r.timing
        info.update(timed=True, timing=backend.describe(), kernels=r.kernels, rounds=t.rounds,
                    median_ms=t.median_ms, first_call_s=t.first_call_s, precision_class=res.pclass,
                    host_enqueue_us_median=t.host_us_median, hold_us=t.hold_us,
                    ceiling_source=ceilings.source(res.pclass) if ceilings else None,
                    rel_error=r.check.error, tolerance=r.check.tol, **(r.roof or {}))
        if impl != "cudnn":
            info["cudnn_median_ms"] = res.impls["cudnn"].median_ms
            info["speedup_vs_cudnn"] = res.speedup(name)
        counts["timed"] += 1

        def check():
            assert r.check.ok, f"{case.id} {impl}: relative error {r.check.error:.3g} > {r.check.tol:.3g}"
            assert all(math.isfinite(v) for v in t.times_ms)

        gpu_benchmark.record(t.times_ms, check)
        return res

    return run
