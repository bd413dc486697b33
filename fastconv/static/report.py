"""What a compiled kernel uses, read from its cubin, and the gate that checks it against a target GPU.

Everything here is pure text processing and arithmetic (no Triton, no GPU), so it is unit-tested on its own:

- :func:`parse_resource_usage` reads ``cuobjdump --dump-resource-usage`` (registers, stack frame, local and
  static shared memory per function);
- :func:`parse_sass` reads ``cuobjdump -sass`` into an opcode histogram (``STL``/``LDL`` = local-memory
  traffic, i.e. spills in Triton code; ``HMMA``/``HGMMA`` = tensor cores; ``FFMA`` = the scalar fallback);
- :class:`ResourceReport` holds those facts for one (variant, target) compilation (this is what is cached);
- :func:`occupancy` turns registers, shared memory and warps into resident blocks and warps per SM;
- :func:`evaluate` is the gate: the list of reasons a report does not fit a :class:`TargetLimits`.

Shared memory: Triton allocates its shared memory dynamically, so the cubin's ``SHARED`` (static shared
memory) is normally 0 and the real amount is the ``shared`` field of Triton's compilation metadata, the
value the launcher requests (and that Triton's own launch-time check compares with the device limit).  The
report keeps both and the gate checks their sum.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from ..gpus import TargetLimits

__all__ = [
    "ResourceReport", "Occupancy", "parse_resource_usage", "parse_sass", "occupancy", "evaluate",
    "tensor_core_opcodes", "max_blocks_per_sm", "REG_ALLOC_UNIT", "SHARED_RESERVED_PER_BLOCK",
]

# Registers are allocated per warp in units of 256 (i.e. per-thread counts rounded up to a multiple of 8).
REG_ALLOC_UNIT = 256
# The driver reserves 1 KB of shared memory per resident block (sm_80 and later).
SHARED_RESERVED_PER_BLOCK = 1024
def max_blocks_per_sm(target: TargetLimits) -> int:
    """Resident blocks per SM (``TargetLimits.max_blocks_per_sm``, from the GPU table :mod:`fastconv.gpus`)."""
    return int(target.extra.get("max_blocks_per_sm", target.max_blocks_per_sm))


def tensor_core_opcodes(target: TargetLimits) -> tuple[str, ...]:
    """SASS opcodes that prove a tensor-core path: ``HMMA`` (mma.sync, Volta..Ada; also the fallback on
    Hopper) and ``HGMMA`` (Hopper's warpgroup wgmma)."""
    return ("HGMMA", "HMMA") if target.capability >= 90 else ("HMMA",)


# --------------------------------------------------------------------------------------------------------
# Parsing cuobjdump output
# --------------------------------------------------------------------------------------------------------

_FUNC_RE = re.compile(r"^\s*Function\s+(\S+?):\s*$")
_FIELD_RE = re.compile(r"([A-Z_]+(?:\[\d+\])?):(\d+)")


def parse_resource_usage(text: str) -> dict[str, dict[str, int]]:
    """``cuobjdump --dump-resource-usage`` -> ``{function: {"REG": n, "STACK": n, "SHARED": n, ...}}``.

    Example input (one cubin, one kernel)::

        Resource usage:
         Common:
          GLOBAL:0
         Function direct_conv2d_kernel:
          REG:214 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:504 TEXTURE:0 SURFACE:0 SAMPLER:0
    """
    out: dict[str, dict[str, int]] = {}
    current: str | None = None
    for line in text.splitlines():
        m = _FUNC_RE.match(line)
        if m:
            current = m.group(1)
            out[current] = {}
            continue
        if current is not None and "REG:" in line:
            out[current].update({k: int(v) for k, v in _FIELD_RE.findall(line)})
            current = None
    return out


# "        /*0350*/              @!P5 IMAD.IADD R3, R3, 0x1, -R12 ;    /* 0x000000010303d824 */"
_SASS_RE = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P(?:\d+|T)\s+)?([A-Z][A-Z0-9_]*)")


def parse_sass(text: str) -> Counter:
    """``cuobjdump -sass`` (or ``nvdisasm``) text -> histogram of base opcodes (``HMMA.16816.F32``: ``HMMA``)."""
    return Counter(m.group(1) for m in map(_SASS_RE.match, text.splitlines()) if m)


# --------------------------------------------------------------------------------------------------------
# The facts of one compilation
# --------------------------------------------------------------------------------------------------------


@dataclass
class ResourceReport:
    """Resources of one kernel compiled for one target, as read from the cubin (plus Triton's metadata)."""

    function: str
    arch: str  # the cubin's architecture as Triton names it ("sm89", "sm90a")
    num_warps: int
    num_stages: int
    registers: int  # per thread (cubin REG)
    stack_bytes: int  # per-thread stack frame (cubin STACK): where ptxas puts spilled registers
    local_bytes: int  # per-thread local memory outside the stack (cubin LOCAL)
    static_shared_bytes: int  # cubin SHARED (static __shared__), 0 for Triton kernels
    dynamic_shared_bytes: int  # Triton's metadata "shared": what the launcher requests per block
    spill_stores: int  # STL instructions in the SASS
    spill_loads: int  # LDL instructions in the SASS
    opcodes: dict[str, int] = field(default_factory=dict)  # SASS opcode histogram
    maxnreg: int | None = None
    compile_seconds: float = 0.0
    triton_version: str = ""

    @property
    def shared_bytes(self) -> int:
        """Shared memory per block: static + dynamic."""
        return self.static_shared_bytes + self.dynamic_shared_bytes

    @property
    def spills(self) -> bool:
        """Any local-memory use: a stack frame, local arrays, or STL/LDL instructions."""
        return bool(self.stack_bytes or self.local_bytes or self.spill_stores or self.spill_loads)

    @property
    def instructions(self) -> int:
        return sum(self.opcodes.values())

    def count(self, *opcodes: str) -> int:
        return sum(self.opcodes.get(op, 0) for op in opcodes)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ResourceReport:
        return cls(**d)

    @classmethod
    def from_cuobjdump(cls, resource_text: str, sass_text: str, *, function: str, arch: str, num_warps: int,
                       num_stages: int, dynamic_shared_bytes: int, maxnreg: int | None = None,
                       compile_seconds: float = 0.0, triton_version: str = "") -> ResourceReport:
        usage = parse_resource_usage(resource_text)
        if function not in usage:
            raise ValueError(f"cuobjdump reports no function {function!r} (found {sorted(usage)})")
        u = usage[function]
        ops = parse_sass(sass_text)
        if not ops:
            raise ValueError(f"no SASS instructions found for {function!r}")
        return cls(
            function=function, arch=arch, num_warps=num_warps, num_stages=num_stages,
            registers=u.get("REG", 0), stack_bytes=u.get("STACK", 0), local_bytes=u.get("LOCAL", 0),
            static_shared_bytes=u.get("SHARED", 0), dynamic_shared_bytes=int(dynamic_shared_bytes),
            spill_stores=ops.get("STL", 0), spill_loads=ops.get("LDL", 0), opcodes=dict(sorted(ops.items())),
            maxnreg=maxnreg, compile_seconds=compile_seconds, triton_version=triton_version,
        )


# --------------------------------------------------------------------------------------------------------
# Occupancy and the gate
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occupancy:
    """Resident blocks per SM and what limits them (the CUDA occupancy calculator's rules)."""

    blocks_per_sm: int
    warps_per_sm: int
    max_warps_per_sm: int
    limiter: str  # "warps", "registers", "shared", "blocks"
    by_warps: int
    by_registers: int
    by_shared: int
    by_blocks: int

    @property
    def fraction(self) -> float:
        return self.warps_per_sm / self.max_warps_per_sm


def occupancy(*, registers: int, shared_bytes: int, num_warps: int, target: TargetLimits) -> Occupancy:
    """Resident blocks per SM = min(by warps, by registers, by shared memory, by the block limit).

    - registers are allocated per warp, ``registers * 32`` rounded up to :data:`REG_ALLOC_UNIT`;
    - each block also takes :data:`SHARED_RESERVED_PER_BLOCK` of shared memory;
    - a limit of 0 means the block cannot launch at all.
    """
    if num_warps < 1:
        raise ValueError(f"num_warps must be >= 1, got {num_warps}")
    by_warps = target.max_warps_per_sm // num_warps
    regs_per_warp = math.ceil(registers * 32 / REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    by_registers = (target.registers_per_sm // regs_per_warp) // num_warps if regs_per_warp else by_warps
    by_shared = target.shared_per_sm // (shared_bytes + SHARED_RESERVED_PER_BLOCK)
    if shared_bytes > target.max_shared_bytes:
        by_shared = 0
    by_blocks = max_blocks_per_sm(target)
    limits = {"warps": by_warps, "registers": by_registers, "shared": by_shared, "blocks": by_blocks}
    limiter = min(limits, key=lambda k: limits[k])  # first minimal one, in this order
    blocks = limits[limiter]
    return Occupancy(blocks, blocks * num_warps, target.max_warps_per_sm, limiter,
                     by_warps, by_registers, by_shared, by_blocks)


def evaluate(report: ResourceReport, target: TargetLimits, *, tensor_core: bool) -> list[str]:
    """The gate: every reason ``report`` does not fit ``target`` (empty list = passes).

    Checks: no local memory (spills), registers within the per-thread limit, threads per block, shared
    memory within the per-block limit, at least one resident block per SM (the register file holds the
    block), and for ``tensor_core`` variants at least one tensor-core instruction in the SASS.
    """
    bad = []
    if report.spills:
        bad.append(f"spills: {report.stack_bytes} B stack, {report.local_bytes} B local, "
                   f"{report.spill_stores} STL / {report.spill_loads} LDL")
    if report.registers > target.max_registers_per_thread:
        bad.append(f"registers {report.registers} > {target.max_registers_per_thread}")
    threads = report.num_warps * 32
    if threads > target.max_threads_per_block:
        bad.append(f"{threads} threads per block > {target.max_threads_per_block}")
    if report.shared_bytes > target.max_shared_bytes:
        bad.append(f"shared memory {report.shared_bytes} B ({report.shared_bytes / 1024:.1f} KB) > "
                   f"{target.max_shared_bytes} B ({target.max_shared_bytes // 1024} KB) per block")
    occ = occupancy(registers=report.registers, shared_bytes=report.shared_bytes, num_warps=report.num_warps,
                    target=target)
    if occ.blocks_per_sm == 0 and occ.limiter != "shared":  # shared already reported above
        bad.append(f"cannot launch: 0 blocks per SM (limited by {occ.limiter})")
    if tensor_core:
        ops = tensor_core_opcodes(target)
        if report.count(*ops) == 0:
            ffma = report.count("FFMA")
            bad.append(f"no tensor-core instructions ({' / '.join(ops)}) in the SASS: {ffma} FFMA "
                       f"(fell back to FMA)")
    return bad
