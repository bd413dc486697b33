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
``--bench-precision``.  A machine-info hook adds GPU, driver, CUDA, cuDNN, torch and triton versions.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from ..env import interpreter_enabled
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


def pytest_collection_modifyitems(config, items):
    """Give every item that uses ``gpu_benchmark`` the device clock, and group conv cases by problem."""
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
    machine_info["fastconv"] = info()


def pytest_configure(config):
    config._fastconv_bench_counts = {"timed": 0, "smoke": 0}


def pytest_terminal_summary(terminalreporter, config):
    counts = getattr(config, "_fastconv_bench_counts", None)
    if not counts or not (counts["timed"] or counts["smoke"]):
        return
    tr = terminalreporter
    tr.section("fastconv benchmarks")
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
