"""Kernel launch configurations: one small value type and the per-kernel config factories.

We do not use ``@triton.autotune``: under ``TRITON_INTERPRET=1`` an autotuned kernel with several configs
crashes, and tests must be able to run every config on its own.  Instead each kernel declares its configs
here, :mod:`fastconv.tuning.autotuner` picks one per problem (by timing on a GPU, deterministically in the
interpreter), and the static gate (:mod:`fastconv.static`) compiles every one of them for each target GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["KernelConfig", "TargetLimits", "TARGETS"]


@dataclass(frozen=True)
class KernelConfig:
    """Meta-parameters of one launch: the kernel's UPPER-case constexpr blocks plus warps and stages."""

    blocks: tuple[tuple[str, int], ...]
    num_warps: int = 4
    num_stages: int = 2

    @classmethod
    def of(cls, num_warps: int = 4, num_stages: int = 2, **blocks: int) -> KernelConfig:
        return cls(tuple(sorted(blocks.items())), num_warps, num_stages)

    @property
    def kwargs(self) -> dict[str, int]:
        """The constexpr keyword arguments to pass to the kernel launch."""
        return dict(self.blocks)

    def __getitem__(self, name: str) -> int:
        return self.kwargs[name]

    def name(self) -> str:
        """A compact stable name, e.g. ``BLOCK_M128_BLOCK_N64_BLOCK_K32_w4_s3``."""
        return "_".join(f"{k}{v}" for k, v in self.blocks) + f"_w{self.num_warps}_s{self.num_stages}"

    def to_json(self) -> dict:
        return {"blocks": dict(self.blocks), "num_warps": self.num_warps, "num_stages": self.num_stages}

    @classmethod
    def from_json(cls, d: dict) -> KernelConfig:
        return cls.of(num_warps=d["num_warps"], num_stages=d["num_stages"], **d["blocks"])

    def __str__(self) -> str:
        return self.name()


@dataclass(frozen=True)
class TargetLimits:
    """Per-block resource limits of a GPU target, used to prune configs and by the static gate."""

    name: str
    capability: int  # e.g. 89, 90
    max_shared_bytes: int  # per block (opt-in maximum)
    shared_per_sm: int
    max_registers_per_thread: int = 255
    registers_per_sm: int = 65536
    max_warps_per_sm: int = 48
    max_threads_per_block: int = 1024
    extra: dict = field(default_factory=dict, compare=False)


TARGETS: dict[str, TargetLimits] = {
    # The seed's GPU (RTX 4090, Ada): 99 KB per block, 100 KB per SM, 48 warps per SM.
    "sm_89": TargetLimits("sm_89", 89, max_shared_bytes=99 * 1024, shared_per_sm=100 * 1024, max_warps_per_sm=48),
    # H100 / H200 (Hopper): 227 KB per block, 228 KB per SM, 64 warps per SM.
    "sm_90": TargetLimits("sm_90", 90, max_shared_bytes=227 * 1024, shared_per_sm=228 * 1024, max_warps_per_sm=64),
    # A100 (Ampere): 163 KB per block, 164 KB per SM, 64 warps per SM.
    "sm_80": TargetLimits("sm_80", 80, max_shared_bytes=163 * 1024, shared_per_sm=164 * 1024, max_warps_per_sm=64),
}
