"""Known GPUs, their compute and bandwidth ceilings, and the roofline that benchmark results are placed on.

Every ceiling carries its source, because a "% of peak" is only as honest as the peak:

- ``measured``: measured on that card model and recorded here (H100 80GB HBM3: the reference run in
  ``shared/reference/anchors-h100.json``: TF32 and BF16 8192^3 matmul, device-to-device copy counting bytes
  read + written);
- ``datasheet``: the vendor's dense (no sparsity) figure, or the seed's figure for the RTX 4090;
- ``measured now``: measured on the GPU in this process (:func:`measure_ceilings`), cached per process.

:func:`ceilings_for` prefers, for each precision, a measurement recorded here, then (on the GPU itself)
a measurement made now, then the datasheet.  An unknown GPU works: every ceiling is measured at run time.

Precision classes (what the roofline's compute ceiling is for):
``"tf32"`` (float32 on tensor cores), ``"fp32"`` (exact float32, CUDA cores: fastconv's ``"ieee"``),
``"tf32x3"`` (three TF32 products per multiply-add: a third of the TF32 ceiling), ``"bf16"``, ``"fp16"``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

__all__ = ["GpuSpec", "Ceilings", "KNOWN_GPUS", "lookup", "ceilings_for", "measure_ceilings",
           "precision_class", "roofline", "Roofline", "PRECISION_CLASSES"]

PRECISION_CLASSES = ("tf32", "fp32", "tf32x3", "bf16", "fp16")


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model.  ``tflops`` maps precision class -> dense TFLOP/s; ``bw_gbs`` is DRAM GB/s.

    ``datasheet`` holds vendor (or seed) figures; ``measured`` holds figures measured on that model,
    with ``measured_source`` saying where.  Missing entries are measured at run time on the card itself.
    """

    name: str
    pattern: str  # regex matched (case-insensitive) against torch.cuda.get_device_name()
    sm_count: int
    smem_per_block_kb: int
    l2_mb: float | None
    datasheet: dict[str, float]
    datasheet_source: str
    measured: dict[str, float] = field(default_factory=dict)
    measured_source: str = ""

    def matches(self, device_name: str) -> bool:
        return re.search(self.pattern, device_name, flags=re.IGNORECASE) is not None


KNOWN_GPUS: tuple[GpuSpec, ...] = (
    GpuSpec(
        name="NVIDIA GeForce RTX 4090",
        pattern=r"RTX 4090",
        sm_count=128, smem_per_block_kb=99, l2_mb=72,
        datasheet={"tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "bw": 1008.0},
        datasheet_source="the seed's target-GPU sheet (shared/seed), dense tensor-core figures",
    ),
    GpuSpec(
        name="NVIDIA H100 80GB HBM3",
        pattern=r"H100.*(HBM3|SXM)",
        sm_count=132, smem_per_block_kb=227, l2_mb=50,
        datasheet={"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp32": 66.9, "bw": 3350.0},
        datasheet_source="NVIDIA H100 SXM datasheet, dense",
        measured={"tf32": 379.0, "bf16": 683.0, "bw": 3020.0},
        measured_source="anchors-h100.json: 8192^3 matmul (TF32, BF16) and device copy (read + write)",
    ),
    GpuSpec(
        name="NVIDIA H200",
        pattern=r"H200",
        sm_count=132, smem_per_block_kb=227, l2_mb=None,
        datasheet={"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp32": 66.9, "bw": 4800.0},
        datasheet_source="NVIDIA H200 SXM datasheet, dense",
        measured={"bf16": 790.0, "bw": 4300.0},
        measured_source="approximate figures from the lead's run on a lent H200 (bf16 matmul, device copy)",
    ),
    GpuSpec(
        name="NVIDIA A100-SXM4-80GB",
        pattern=r"A100.*SXM.*80",
        sm_count=108, smem_per_block_kb=163, l2_mb=40,
        datasheet={"tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "fp32": 19.5, "bw": 2039.0},
        datasheet_source="NVIDIA A100 80GB SXM datasheet, dense",
    ),
)


def lookup(device_name: str) -> GpuSpec | None:
    """The known GPU whose pattern matches ``device_name`` (e.g. ``"NVIDIA H100 80GB HBM3"``), else None."""
    for spec in KNOWN_GPUS:
        if spec.matches(device_name):
            return spec
    return None


def precision_class(dtype: str, precision: str) -> str:
    """The roofline precision class of a call, e.g. ``("float32", "ieee") -> "fp32"``."""
    if dtype == "bfloat16":
        return "bf16"
    if dtype == "float16":
        return "fp16"
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
    import torch

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
def measure_ceilings(device_index: int = 0, which: tuple[str, ...] = ("tf32", "fp32", "bf16", "fp16", "bw")
                     ) -> dict[str, float]:
    """Measure ceilings on the GPU now (median of 10): matmuls for TFLOP/s, a device copy for GB/s.

    TF32/BF16/FP16 use an 8192^3 matmul; exact fp32 a 4096^3 one (CUDA cores are ~10x slower); the copy
    moves 1 GiB (counted as bytes read + written).  Cached per process and device.
    """
    import torch

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
                n = 4096 if key == "fp32" else 8192
                dtype = {"tf32": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16,
                         "fp16": torch.float16}[key]
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
    keys = ("tf32", "fp32", "bf16", "fp16", "bw")
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
