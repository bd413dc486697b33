"""Kernel launch configurations: the :class:`KernelConfig` value type, and the config tables kept as data.

We do not use ``@triton.autotune``: under ``TRITON_INTERPRET=1`` an autotuned kernel with several configs
crashes, and tests must be able to run every config on its own.  Each kernel's tuned configs live in a JSON
table in ``fastconv/kernels/tables/<kernel>.json`` (read with :func:`table`), the kernel module turns the
rows that apply to a problem into configs, :mod:`fastconv.tuning` picks one per problem, and the static gate
(:mod:`fastconv.static`) compiles every one of them for each target GPU.  ``tables/toolchains.json`` records,
per Triton version and target, the configs that the static gate found spilling or not fitting there
(:mod:`fastconv.kernels.fitness` reads it; the tuner never offers them).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

__all__ = ["KernelConfig", "table", "configs_of"]


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
        """A compact stable name, e.g. ``BLOCK_K32_BLOCK_M128_BLOCK_N64_w4_s3``."""
        return "_".join(f"{k}{v}" for k, v in self.blocks) + f"_w{self.num_warps}_s{self.num_stages}"

    def without(self, *names: str) -> KernelConfig:
        """The config with the named blocks removed (e.g. a wrapper-level choice that is not a constexpr)."""
        return KernelConfig(tuple((k, v) for k, v in self.blocks if k not in names), self.num_warps,
                            self.num_stages)

    def to_json(self) -> dict:
        return {"blocks": dict(self.blocks), "num_warps": self.num_warps, "num_stages": self.num_stages}

    @classmethod
    def from_json(cls, d: dict) -> KernelConfig:
        return cls.of(num_warps=d["num_warps"], num_stages=d["num_stages"], **d["blocks"])

    def __str__(self) -> str:
        return self.name()


@functools.cache
def table(name: str) -> dict:
    """The JSON table ``fastconv/kernels/tables/<name>.json`` (parsed once per process; do not mutate)."""
    text = resources.files(__package__).joinpath("tables", f"{name}.json").read_text()
    return json.loads(text)


def configs_of(rows: list[dict]) -> list[KernelConfig]:
    """Table rows ``{"num_warps": w, "num_stages": s, "BLOCK_M": ..., ...}`` (keys starting with ``_`` are
    comments) -> configs, in table order."""
    out = []
    for row in rows:
        blocks = {k: v for k, v in row.items() if not k.startswith("_") and k not in ("num_warps", "num_stages")}
        out.append(KernelConfig.of(num_warps=row["num_warps"], num_stages=row["num_stages"], **blocks))
    return out
