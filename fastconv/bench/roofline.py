"""The roofline that benchmark results are placed on: the ceilings of a GPU, and where a result sits.

The GPUs and their recorded ceilings are the one GPU table, :mod:`fastconv.gpus`.  Every ceiling carries its
source, because a "% of peak" is only as honest as the peak: ``measured`` (recorded in the table), ``datasheet``,
or ``measured now`` on the GPU in this process (:func:`measure_ceilings`, cached per process).

:func:`ceilings_for` prefers, for each precision, a measurement recorded here, then (on the GPU itself)
a measurement made now, then the datasheet.  An unknown GPU works: every ceiling is measured at run time.

Precision classes (what the roofline's compute ceiling is for):
``"tf32"`` (float32 on tensor cores), ``"fp32"`` (exact float32, CUDA cores: fastconv's ``"ieee"``),
``"tf32x3"`` (three TF32 products per multiply-add: a third of the TF32 ceiling), ``"bf16"``, ``"fp16"``,
``"fp64"``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..gpus import lookup
from ..vocab import DTYPES

__all__ = ["Ceilings", "ceilings_for", "measure_ceilings", "precision_class", "roofline", "Roofline",
           "PRECISION_CLASSES"]

PRECISION_CLASSES = ("tf32", "fp32", "tf32x3", "bf16", "fp16", "fp64")


def precision_class(dtype: str, precision: str) -> str:
    """The roofline precision class of a call, e.g. ``("float32", "ieee") -> "fp32"``."""
    if dtype != "float32":
        return DTYPES[dtype].short
    return {"tf32": "tf32", "ieee": "fp32", "tf32x3": "tf32x3"}[precision]


@dataclass(frozen=True)
class Ceilings:
    """The ceilings a result is judged against: TFLOP/s per precision class and GB/s, each with its source."""

    device_name: str
    known: bool
    tflops: dict[str, float]
    bw_gbs: float | None
    sources: dict[str, str]  # "tf32", ..., "bw" -> "measured (...)" / "datasheet (...)" / "measured now"

    def peak(self, pclass: str) -> float | None:
        if pclass == "tf32x3":
            base = self.tflops.get("tf32")
            return None if base is None else base / 3.0
        return self.tflops.get(pclass)

    def source(self, key: str) -> str:
        if key == "tf32x3":
            return f"tf32 / 3 ({self.sources.get('tf32', 'unknown')})"
        return self.sources.get(key, "unknown")

    def to_json(self) -> dict:
        return {"device": self.device_name, "known": self.known, "tflops": dict(self.tflops),
                "bw_gbs": self.bw_gbs, "sources": dict(self.sources)}


@dataclass(frozen=True)
class Roofline:
    """Where one measurement sits: achieved rates, the roofline bound at its intensity, and the fraction."""

    tflops: float
    gbs: float
    intensity: float  # flops per byte of the minimal traffic
    bound_tflops: float | None  # min(peak, bw * intensity)
    limiter: str | None  # "compute" or "memory"
    fraction: float | None  # tflops / bound_tflops

    def to_json(self) -> dict:
        return dict(vars(self))


def roofline(flops: float, min_bytes: float, seconds: float, ceilings: Ceilings | None, pclass: str
             ) -> Roofline:
    """Achieved TFLOP/s and GB/s of a run of ``seconds``, and its fraction of the roofline bound.

    The bound at arithmetic intensity ``I = flops / min_bytes`` is ``min(peak[pclass], bw * I)``: a
    compute-bound problem is judged against the compute peak, a memory-bound one against the bandwidth.
    """
    intensity = flops / min_bytes
    if not seconds > 0:  # no measurement
        return Roofline(math.nan, math.nan, intensity, None, None, None)
    tflops = flops / seconds / 1e12
    gbs = min_bytes / seconds / 1e9
    peak = ceilings.peak(pclass) if ceilings is not None else None
    bw = ceilings.bw_gbs if ceilings is not None else None
    if peak is None or bw is None:
        return Roofline(tflops, gbs, intensity, None, None, None)
    mem_bound = bw * intensity / 1e3  # GB/s * flop/byte = GFLOP/s -> TFLOP/s
    bound = min(peak, mem_bound)
    limiter = "compute" if peak <= mem_bound else "memory"
    return Roofline(tflops, gbs, intensity, bound, limiter, tflops / bound)


# ----------------------------------------------------------------------------------------------------------
# Measuring ceilings on the card (for unknown GPUs, and for precisions a known GPU has no measurement of).
# ----------------------------------------------------------------------------------------------------------
def _time_ms(fn, reps: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


@functools.cache
def measure_ceilings(device_index: int = 0, which: tuple[str, ...] = ("tf32", "fp32", "bf16", "fp16", "fp64", "bw")
                     ) -> dict[str, float]:
    """Measure ceilings on the GPU now (median of 10): matmuls for TFLOP/s, a device copy for GB/s.

    TF32/BF16/FP16 use an 8192^3 matmul; exact fp32 a 4096^3 one (CUDA cores are ~10x slower); the copy
    moves 1 GiB (counted as bytes read + written).  Cached per process and device.
    """
    dev = torch.device("cuda", device_index)
    out: dict[str, float] = {}
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        with torch.cuda.device(dev):
            for key in which:
                if key == "bw":
                    src = torch.empty(1 << 28, dtype=torch.float32, device=dev).normal_()
                    dst = torch.empty_like(src)
                    ms = _time_ms(lambda src=src, dst=dst: dst.copy_(src))
                    out["bw"] = 2 * src.numel() * 4 / (ms * 1e-3) / 1e9
                    del src, dst
                    continue
                n = 4096 if key in ("fp32", "fp64") else 8192
                dtype = {"tf32": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
                         "fp16": torch.float16, "fp64": torch.float64}[key]
                torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
                a = torch.randn(n, n, device=dev, dtype=dtype)
                b = torch.randn(n, n, device=dev, dtype=dtype)
                ms = _time_ms(lambda a=a, b=b: torch.matmul(a, b))
                out[key] = 2 * n**3 / (ms * 1e-3) / 1e12
                del a, b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
        torch.cuda.empty_cache()
    return out


def ceilings_for(device_name: str, *, device_index: int | None = None, measure: bool = True) -> Ceilings:
    """The ceilings for ``device_name``.

    For a known GPU: recorded measurements first, then (if ``measure`` and ``device_index`` is the GPU
    itself) measurements made now for the precisions not recorded, then the datasheet.  For an unknown GPU
    everything is measured now (nothing is invented: without a GPU to measure, the ceilings stay empty).
    """
    spec = lookup(device_name)
    tflops: dict[str, float] = {}
    sources: dict[str, str] = {}
    keys = ("tf32", "fp32", "bf16", "fp16", "fp64", "bw")
    if spec is not None:
        for key in keys:
            if key in spec.measured:
                tflops[key], sources[key] = spec.measured[key], f"measured ({spec.measured_source})"
    missing = tuple(k for k in keys if k not in tflops)
    if missing and measure and device_index is not None:
        for key, value in measure_ceilings(device_index, missing).items():
            tflops[key], sources[key] = value, "measured now on this GPU"
    if spec is not None:
        for key in keys:
            if key not in tflops and key in spec.datasheet:
                tflops[key], sources[key] = spec.datasheet[key], f"datasheet ({spec.datasheet_source})"
    bw = tflops.pop("bw", None)
    return Ceilings(device_name=spec.name if spec is not None else device_name, known=spec is not None,
                    tflops=tflops, bw_gbs=bw, sources=sources)
