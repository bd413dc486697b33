"""The one table of GPUs: per-block resource limits (what configs must fit) and roofline ceilings.

Each :class:`GpuSpec` row is one GPU model; its :class:`TargetLimits` are those of its architecture (the
static gate's *targets* are architectures: ``sm_89`` = the seed's RTX 4090, ``sm_90`` = H100 / H200,
``sm_80`` = A100).  Ceilings carry their source, because a "% of peak" is only as honest as the peak:

- ``measured``: measured on that card model and recorded here (H100 and H200: ``shared/reference``'s anchor
  runs: TF32 and BF16 8192^3 matmul, device-to-device copy counting bytes read + written);
- ``datasheet``: the vendor's dense (no sparsity) figure, or the seed's figure for the RTX 4090.

Measuring ceilings on the card at run time, and the roofline itself, are in :mod:`fastconv.bench.roofline`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["TargetLimits", "GpuSpec", "KNOWN_GPUS", "TARGETS", "lookup", "target_of_capability"]


@dataclass(frozen=True)
class TargetLimits:
    """Per-block and per-SM resource limits of one GPU architecture (CUDA Programming Guide, "Technical
    Specifications per Compute Capability")."""

    name: str  # "sm_89"
    capability: int  # 89
    max_shared_bytes: int  # per block (opt-in maximum)
    shared_per_sm: int
    max_warps_per_sm: int
    max_blocks_per_sm: int
    max_registers_per_thread: int = 255
    registers_per_sm: int = 65536
    max_threads_per_block: int = 1024
    extra: dict = field(default_factory=dict, compare=False)


_SM89 = TargetLimits("sm_89", 89, max_shared_bytes=99 * 1024, shared_per_sm=100 * 1024, max_warps_per_sm=48,
                     max_blocks_per_sm=24)
_SM90 = TargetLimits("sm_90", 90, max_shared_bytes=227 * 1024, shared_per_sm=228 * 1024, max_warps_per_sm=64,
                     max_blocks_per_sm=32)
_SM80 = TargetLimits("sm_80", 80, max_shared_bytes=163 * 1024, shared_per_sm=164 * 1024, max_warps_per_sm=64,
                     max_blocks_per_sm=32)


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model.  ``datasheet`` / ``measured`` map a precision class (``tf32``, ``fp32``, ``bf16``,
    ``fp16``, ``fp64``) to dense TFLOP/s and ``bw`` to DRAM GB/s; missing entries are measured at run time."""

    name: str
    pattern: str  # regex matched (case-insensitive) against torch.cuda.get_device_name()
    limits: TargetLimits
    sm_count: int
    l2_mb: float | None
    datasheet: dict[str, float]
    datasheet_source: str
    measured: dict[str, float] = field(default_factory=dict)
    measured_source: str = ""

    @property
    def arch(self) -> str:
        return self.limits.name

    def matches(self, device_name: str) -> bool:
        return re.search(self.pattern, device_name, flags=re.IGNORECASE) is not None


KNOWN_GPUS: tuple[GpuSpec, ...] = (
    GpuSpec(
        name="NVIDIA GeForce RTX 4090", pattern=r"RTX 4090", limits=_SM89, sm_count=128, l2_mb=72,
        datasheet={"tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp64": 1.29, "bw": 1008.0},
        datasheet_source="the seed's target-GPU sheet (shared/seed), dense tensor-core figures",
    ),
    GpuSpec(
        name="NVIDIA H100 80GB HBM3", pattern=r"H100.*(HBM3|SXM)", limits=_SM90, sm_count=132, l2_mb=50,
        datasheet={"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp32": 66.9, "fp64": 66.9, "bw": 3350.0},
        datasheet_source="NVIDIA H100 SXM datasheet, dense",
        measured={"tf32": 379.0, "bf16": 683.0, "bw": 3020.0},
        measured_source="anchors-h100.json: 8192^3 matmul (TF32, BF16) and device copy (read + write)",
    ),
    GpuSpec(
        name="NVIDIA H200", pattern=r"H200", limits=_SM90, sm_count=132, l2_mb=60,
        datasheet={"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp32": 66.9, "fp64": 66.9, "bw": 4800.0},
        datasheet_source="NVIDIA H200 SXM datasheet, dense",
        measured={"tf32": 359.9, "bf16": 671.0, "bw": 4241.0},
        measured_source="anchors-h200.json (2026-12-04): 8192^3 matmul (TF32, BF16) and device copy",
    ),
    GpuSpec(
        name="NVIDIA A100-SXM4-80GB", pattern=r"A100.*SXM.*80", limits=_SM80, sm_count=108, l2_mb=40,
        datasheet={"tf32": 156.0, "bf16": 312.0, "fp16": 312.0, "fp32": 19.5, "fp64": 19.5, "bw": 2039.0},
        datasheet_source="NVIDIA A100 80GB SXM datasheet, dense",
    ),
)

# Architectures the static gate compiles for, by name (the first GPU of each architecture gives its limits).
TARGETS: dict[str, TargetLimits] = {}
for _spec in KNOWN_GPUS:
    TARGETS.setdefault(_spec.arch, _spec.limits)


def lookup(device_name: str) -> GpuSpec | None:
    """The known GPU whose pattern matches ``device_name`` (e.g. ``"NVIDIA H200"``), else None."""
    for spec in KNOWN_GPUS:
        if spec.matches(device_name):
            return spec
    return None


def target_of_capability(major: int, minor: int) -> TargetLimits | None:
    """The limits of the architecture ``sm_<major><minor>``, if it is in the table."""
    return TARGETS.get(f"sm_{major}{minor}")
