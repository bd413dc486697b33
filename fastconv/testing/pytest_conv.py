"""pytest plugin of :mod:`fastconv.testing` (the repository's ``conftest.py`` loads it; elsewhere use
``-p fastconv.testing.pytest_conv``).

- a report header line: the device kernels run on (a GPU, or Triton's interpreter), the Hypothesis profile;
- tests marked ``gpu`` are skipped, with the reason, where no CUDA device is present;
- fixtures: ``conv_device`` (where kernel tests put their tensors), ``poisoned`` (NaN-filled
  ``torch.empty`` for the test, see :func:`~fastconv.testing.poisoned_allocations`) and ``tuning_sandbox``
  (a private, empty tuning cache; environment and caches restored afterwards);
- under pytest-xdist, one worker per GPU: ``-n auto`` starts as many workers as there are GPUs (the CPU
  count without one; ``$PYTEST_XDIST_AUTO_NUM_WORKERS`` still wins), and every worker is pinned to one GPU,
  round robin over the GPUs the session sees, through ``CUDA_VISIBLE_DEVICES`` set in the worker's
  environment before its Python starts (so before any CUDA call: torch reads the variable once, at its first
  device query).  A worker then sees one GPU, ``cuda:0``, and cannot touch another.  A ``--tx`` spec that sets
  ``CUDA_VISIBLE_DEVICES`` itself is left alone.
- ``conv_impl``: every test that takes it runs once per implementation under test: ``--conv-impl SPEC``
  (repeatable; see :func:`fastconv.testing.loader.load_impl`: ``pkg.module:conv2d``, ``path/to/solution.py``,
  ``fastconv:igemm``, ``inductor``...), with ``--conv-cap KEY=VALUE`` overriding what it claims; by default
  fastconv's dispatcher and each of its kernels.  The summary lists, per implementation, what it does not
  claim (so not tested);
- ``--conv-max-examples N`` caps every Hypothesis test's examples (e.g. for a short GPU run);
- ``--times-log PATH`` appends one JSON line per test as it finishes (node id, outcome, seconds of setup, call
  and teardown, xdist worker), so a run stopped by a time limit (``timeout``, a CI job's) still shows where its
  time went; ``--durations`` only prints at the end of a run that ends.
"""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from ..tuning import autotuner
from .impl import ConvImpl, fastconv_impls
from .loader import load_impl
from .memory import poisoned_allocations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("fastconv-verify", "fastconv: the implementation under test")
    group.addoption("--conv-impl", action="append", default=[], metavar="SPEC",
                    help="conv2d implementation to test (repeatable): pkg.module:ATTR, path/to/file.py[:ATTR], "
                         "fastconv[:BACKEND], torch, inductor, inductor-triton, jax (default: fastconv's own)")
    group.addoption("--conv-cap", action="append", default=[], metavar="KEY=VALUE",
                    help="override what the implementation claims, e.g. dtypes=float32,float16 dilation=false")
    group.addoption("--conv-max-examples", type=int, default=None, metavar="N",
                    help="cap every Hypothesis test at N examples")
    group.addoption("--times-log", default=None, metavar="PATH",
                    help="append a JSON line per finished test (node id, outcome, seconds, worker) to PATH")


def impls_under_test(config) -> list[ConvImpl]:
    """The implementations of ``--conv-impl`` (loaded once per session), else fastconv's own."""
    impls = getattr(config, "_fastconv_impls", None)
    if impls is None:
        specs = config.getoption("conv_impl", default=[]) or []
        caps = config.getoption("conv_cap", default=[]) or []
        try:
            impls = [load_impl(s, caps) for s in specs] if specs else fastconv_impls()
        except Exception as exc:  # a spec that does not load is a usage error, with its reason
            raise pytest.UsageError(f"--conv-impl: {type(exc).__name__}: {exc}") from exc
        config._fastconv_impls = impls
    return impls


def pytest_generate_tests(metafunc) -> None:
    if "conv_impl" in metafunc.fixturenames:
        impls = impls_under_test(metafunc.config)
        metafunc.parametrize("conv_impl", impls, ids=[i.name for i in impls])


class TimesLog:
    """``--times-log``: one JSON line per test as its teardown is reported, appended to ``path``.  Registered
    only in the process that reports (a plain run, or xdist's controller, as the workers' results arrive)."""

    def __init__(self, path: str):
        self.path = path
        self.pending: dict[str, tuple[float, str]] = {}  # node id -> (seconds so far, outcome so far)

    def pytest_runtest_logreport(self, report) -> None:
        seconds, outcome = self.pending.pop(report.nodeid, (0.0, "passed"))
        seconds += report.duration
        if outcome == "passed":  # the first phase that did not pass names the test's outcome
            outcome = report.outcome
        if report.when != "teardown":
            self.pending[report.nodeid] = (seconds, outcome)
            return
        node = getattr(report, "node", None)
        line = {"nodeid": report.nodeid, "outcome": outcome, "seconds": round(seconds, 3),
                "worker": getattr(getattr(node, "gateway", None), "id", None), "finished": round(time.time(), 1)}
        with open(self.path, "a") as f:  # one short write per line: lines of one run never interleave
            f.write(json.dumps(line) + "\n")


@pytest.hookimpl(trylast=True)
def pytest_configure(config) -> None:
    path = config.getoption("times_log", default=None)
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(TimesLog(path), "fastconv-times-log")
    cap = config.getoption("conv_max_examples", default=None)
    if cap:
        try:
            from hypothesis import settings
        except ImportError:  # pragma: no cover - the option is for Hypothesis tests
            return
        name = settings.get_current_profile_name()
        settings.register_profile(name, parent=settings.get_profile(name), max_examples=cap)
        settings.load_profile(name)


def pytest_terminal_summary(terminalreporter, config) -> None:
    impls = getattr(config, "_fastconv_impls", None)
    if not impls or not config.getoption("conv_impl", default=[]):
        return
    tr = terminalreporter
    tr.section("fastconv verify: implementations under test")
    for impl in impls:
        tr.write_line(f"{impl.name}: {impl.description or impl.fn}")
        untested = impl.capabilities.untested()
        tr.write_line("  not claimed, so NOT tested: " + ("; ".join(untested) if untested else "nothing"))
        if impl.report is not None:
            tr.write_line(f"  {impl.report()}")


def _device_line() -> str:
    if torch.cuda.is_available():
        return f"CUDA ({torch.cuda.get_device_name()})"
    interp = os.environ.get("TRITON_INTERPRET", "")
    return f"CPU, Triton interpreter {'on' if interp not in ('', '0') else 'OFF (kernels cannot run)'}"


def pytest_report_header(config) -> list[str]:
    try:  # Hypothesis is optional for this plugin
        from hypothesis import settings

        profile = settings.get_current_profile_name()
    except ImportError:  # pragma: no cover - hypothesis is a test dependency
        profile = "n/a"
    return [f"fastconv: kernels on {_device_line()}; hypothesis profile {profile!r}"]


def visible_gpus() -> list[str]:
    """The GPUs this process sees, in ``CUDA_VISIBLE_DEVICES``'s own notation (indices, ``GPU-<uuid>`` or MIG
    ids), so a worker's ``CUDA_VISIBLE_DEVICES`` can name exactly one of them.  Empty without CUDA."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [d.strip() for d in listed.split(",") if d.strip()][:count]  # CUDA stops at the first bad entry


def gpu_assignment(worker_ids: list[str], gpus: list[str]) -> dict[str, str]:
    """``{worker id: GPU}``: round robin, so workers share GPUs only when there are more workers than GPUs."""
    return {w: gpus[n % len(gpus)] for n, w in enumerate(worker_ids)} if gpus else {}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config) -> int | None:
    """``-n auto`` / ``-n logical``: one worker per GPU where there are GPUs (else xdist's CPU count)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return len(visible_gpus()) or None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs) -> None:
    """Pin each worker to its GPU (in the controller, before the workers start)."""
    assignment = gpu_assignment([spec.id for spec in specs], visible_gpus())
    pinned = {}
    for spec in specs:
        if spec.id in assignment and "CUDA_VISIBLE_DEVICES" not in spec.env:
            spec.env["CUDA_VISIBLE_DEVICES"] = pinned[spec.id] = assignment[spec.id]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if pinned and reporter is not None:
        shared = len(set(pinned.values())) < len(pinned)
        reporter.write_line("fastconv: workers pinned to GPUs (CUDA_VISIBLE_DEVICES) "
                            + ", ".join(f"{w}->{g}" for w, g in pinned.items())
                            + ("; GPUs are SHARED by workers" if shared else ""))


def pytest_collection_modifyitems(config, items) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marked gpu)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def conv_device() -> torch.device:
    """``cuda`` where a GPU is present, else ``cpu`` (kernels then run in Triton's interpreter)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture
def poisoned():
    """Inside the test, ``torch.empty``/``empty_like``/``empty_strided`` return NaN-filled tensors."""
    with poisoned_allocations():
        yield


@pytest.fixture
def tuning_sandbox(tmp_path, monkeypatch):
    """A private tuning cache directory (``$FASTCONV_CACHE_DIR``) with the in-memory choices cleared."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "tuning"))
    autotuner.clear_cache()
    yield tmp_path / "tuning"
    autotuner.clear_cache()
