"""What the pytest fixture, ``fastconv bench`` and ``fastconv gate`` share: machine info, the kernel and
config a call uses, whether the seed's kernel is worth running, and one benchmarked case end to end."""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import torch

import fastconv

from ..env import interpreter_enabled, triton_version
from ..tuning.autotuner import tuning_session
from ..tuning.timing import Timing, TimingBackend, measure
from .accuracy import Check, check_impl
from .problems import BenchCase, BenchInputs, impl_name, run_impl
from .roofline import Ceilings, precision_class, roofline

__all__ = ["machine_info", "stage_plans", "direct_skip_reason", "CaseResult", "bench_case", "ImplResult",
           "DIRECT_MAX_SECONDS", "DIRECT_TFLOPS_ESTIMATE"]

# The seed's kernel is skipped where one call would take longer than this.
DIRECT_MAX_SECONDS = 1.0
# Its speed for that estimate: the H100 reference run measured it at 2.2-5.3 TFLOP/s (anchors-h100.json,
# seed_ms); 2 TFLOP/s errs on the side of skipping.
DIRECT_TFLOPS_ESTIMATE = 2.0


def _nvidia_driver() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def machine_info(device: torch.device | str | None = None) -> dict:
    """GPU name, driver, CUDA, cuDNN, torch and triton versions (``gpu`` is None without a GPU)."""
    info = {"torch": torch.__version__, "triton": triton_version(), "cuda": torch.version.cuda,
            "gpu": None, "driver": None, "cudnn": None, "interpreter": interpreter_enabled()}
    if torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
        props = torch.cuda.get_device_properties(dev)
        info.update(
            gpu=props.name,
            gpu_uuid=str(props.uuid) if getattr(props, "uuid", None) is not None else None,
            capability=f"{props.major}.{props.minor}",
            sm_count=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
            l2_mib=round(getattr(props, "L2_cache_size", 0) / 2**20, 1) or None,
            driver=_nvidia_driver(),
            cuda_driver_api=getattr(torch._C, "_cuda_getDriverVersion", lambda: None)(),
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def stage_plans(case: BenchCase, inputs: BenchInputs, impl: str, package=None) -> list[dict]:
    """Per stage: the kernel, config and precision ``impl`` runs, as ``package``'s :func:`fastconv.plan`
    reports it (after a warm-up call the choice is the cached one).  Errors are reported, never raised."""
    if impl == "cudnn":
        return [{"kernel": "cudnn", "precision": case.label}]
    if not isinstance(impl, str):  # an implementation under test: what runs inside is its own business
        return [{"kernel": impl_name(impl)}]
    package = package if package is not None else fastconv
    out = []
    try:
        y = inputs.x
        backend = "direct" if impl == "direct" else "auto"
        precision = case.fastconv_precision
        for s, w, b in zip(case.stages, inputs.weights, inputs.biases):
            args = (y, w, b, (s.stride_h, s.stride_w), s.torch_padding, (s.dil_h, s.dil_w), s.groups)
            plan = package.plan(*args, backend=backend, precision=precision)
            out.append({"kernel": plan.kernel, "config": str(plan.config), "precision": str(plan.precision),
                        "config_source": plan.config_source, "layout_passes": list(plan.layout_passes)})
            y = package.conv2d(*args, backend=backend, precision=precision)
    except Exception as exc:  # the table must still print if a package lacks plan() or its internals moved
        out.append({"kernel": "?", "error": f"{type(exc).__name__}: {exc}"})
    return out


def direct_skip_reason(case: BenchCase, device: torch.device) -> str | None:
    """Why the seed's kernel is not run on ``case`` (too slow, or would not fit in memory), else None."""
    est = case.flops / (DIRECT_TFLOPS_ESTIMATE * 1e12)
    if device.type == "cuda" and est > DIRECT_MAX_SECONDS:
        return f"skipped: ~{est:.1f} s per call estimated (> {DIRECT_MAX_SECONDS:g} s)"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if 3 * case.min_bytes > free:
            return f"skipped: needs ~{3 * case.min_bytes / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
    return None


@dataclass
class ImplResult:
    """One implementation on one case: timing (None when not timed), correctness, kernel choice."""

    impl: str
    timing: Timing | None = None
    check: Check | None = None
    kernels: list[dict] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None  # the implementation raised (counts as a wrong result)
    first_call_s: float | None = None
    roof: dict | None = None

    @property
    def median_ms(self) -> float:
        return self.timing.median_ms if self.timing is not None else math.nan

    def to_json(self) -> dict:
        d = {"impl": self.impl, "skipped": self.skipped, "error": self.error, "kernels": self.kernels,
             "first_call_s": self.first_call_s, "check": self.check.to_json() if self.check else None,
             "roofline": self.roof}
        if self.timing is not None:
            d["timing"] = self.timing.summary()
        return d


@dataclass
class CaseResult:
    case: BenchCase
    impls: dict[str, ImplResult]
    timed: bool
    pclass: str
    ceilings: Ceilings | None

    def speedup(self, impl: str = "fastconv", over: str = "cudnn") -> float:
        a, b = self.impls.get(over), self.impls.get(impl)
        if a is None or b is None or a.timing is None or b.timing is None:
            return math.nan
        return a.median_ms / b.median_ms

    def to_json(self) -> dict:
        c = self.case
        return {
            "problem": c.name, "group": c.problem.group, "source": c.problem.source, "note": c.problem.note,
            "shape": c.problem.short(), "dtype": c.dtype, "layout": c.layout,
            "precision": c.resolved_precision,
            "label": c.label, "id": c.id, "flops": c.flops, "min_bytes": c.min_bytes,
            "intensity": c.flops / c.min_bytes, "precision_class": self.pclass, "timed": self.timed,
            "speedup_vs_cudnn": self.speedup() if self.timed else None,
            "impls": {k: v.to_json() for k, v in self.impls.items()},
        }


def bench_case(
    case: BenchCase,
    impls: list,
    device: torch.device,
    backend: TimingBackend | None,
    ceilings: Ceilings | None,
    *,
    budget_s: float = 1.0,
    min_rounds: int = 10,
    max_rounds: int = 500,
    rounds: int | None = None,
    check: bool = True,
    package=None,
    on_round=None,
    tune: bool = True,
) -> CaseResult:
    """Benchmark ``impls`` (names, or :class:`fastconv.testing.ConvImpl` s, keyed by their names) on ``case``:
    inputs on ``device``, interleaved timing with ``backend`` (None: not timed, each impl runs once),
    correctness against fp64, kernel choices, roofline position.

    ``tune``: fastconv's first call tunes its config on the device (:func:`fastconv.tuning.autotuner
    .tuning_session`), so the timed rounds run the fastest config it has; False times the untimed default
    choice (what a model's first forward gets)."""
    with tuning_session() if tune else contextlib.nullcontext():
        return _bench_case(case, impls, device, backend, ceilings, budget_s=budget_s, min_rounds=min_rounds,
                           max_rounds=max_rounds, rounds=rounds, check=check, package=package, on_round=on_round)


def _bench_case(case, impls, device, backend, ceilings, *, budget_s, min_rounds, max_rounds, rounds, check,
                package, on_round) -> CaseResult:
    inputs = case.make_inputs(device)
    results: dict[str, ImplResult] = {}
    runnable = []
    for impl in impls:
        reason = direct_skip_reason(case, device) if impl == "direct" else None
        results[impl_name(impl)] = ImplResult(impl_name(impl), skipped=reason)
        if reason is None:
            runnable.append(impl)
    fns = {impl_name(impl): (lambda impl=impl: run_impl(impl, case, inputs, package)) for impl in runnable}
    # -- first call of each, on its own: compilation and autotuning, and any error, stay out of the rounds --
    for impl in list(runnable):
        name = impl_name(impl)
        try:
            if backend is not None:
                backend.synchronize()
            t0 = time.perf_counter()
            fns[name]()
            if backend is not None:
                backend.synchronize()
            results[name].first_call_s = time.perf_counter() - t0
        except Exception as exc:  # reported in the table (and as a wrong result), the other impls still run
            results[name].error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            runnable.remove(impl)
            del fns[name]
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if backend is not None and fns:
        try:
            timings = measure(fns, backend, rounds=rounds, budget_s=budget_s, min_rounds=min_rounds,
                              max_rounds=max_rounds, on_round=on_round, first_call=False)
        except torch.cuda.OutOfMemoryError as exc:
            raise RuntimeError(f"{case.id}: out of GPU memory while timing {list(fns)}: {exc}") from exc
        for name, t in timings.items():
            t.first_call_s = results[name].first_call_s
            results[name].timing = t
    pclass = precision_class(case.dtype, case.resolved_precision)
    for impl in runnable:
        r = results[impl_name(impl)]
        r.kernels = stage_plans(case, inputs, impl, package)
        if check:
            r.check = check_impl(case, inputs, impl, package)
        if r.timing is not None:
            seconds = r.timing.median_ms * 1e-3
            r.roof = roofline(case.flops, case.min_bytes, seconds, ceilings, pclass).to_json()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return CaseResult(case, results, backend is not None, pclass, ceilings)
