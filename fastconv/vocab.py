"""fastconv's vocabulary: the one table of dtypes and the one set of layout names.

Every layer (validation, kernels, the tolerance model, strategies, benchmarks, CLI choices) takes its dtype
and layout names from here; nothing else keeps a dtype table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DType", "DTYPES", "dtype_info", "dtype_name", "LAYOUTS", "layout_of", "memory_format_of"]


@dataclass(frozen=True)
class DType:
    """One floating-point dtype fastconv computes in.

    ``accumulator`` is the dtype a kernel sums in (float32 for every type narrower than float64);
    ``short`` is the label tables use (``fp32``, ``bf16``...).
    """

    name: str
    torch: torch.dtype
    short: str
    accumulator: str

    @property
    def itemsize(self) -> int:
        return self.torch.itemsize

    @property
    def unit_roundoff(self) -> float:
        return float(torch.finfo(self.torch).eps) / 2

    @property
    def tiny(self) -> float:
        return float(torch.finfo(self.torch).tiny)

    @property
    def is_half(self) -> bool:
        return self.itemsize == 2


# The dtypes fastconv computes in (in the order CLI choices and strategies list them).
DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("float32", torch.float32, "fp32", "float32"),
        DType("float16", torch.float16, "fp16", "float32"),
        DType("bfloat16", torch.bfloat16, "bf16", "float32"),
        DType("float64", torch.float64, "fp64", "float64"),
    )
}
_BY_TORCH = {d.torch: d for d in DTYPES.values()}


def dtype_info(dtype: torch.dtype | str) -> DType | None:
    """The table entry of a torch dtype or a dtype name, None if fastconv does not compute in it."""
    return DTYPES.get(dtype) if isinstance(dtype, str) else _BY_TORCH.get(dtype)


def dtype_name(dtype: torch.dtype | str) -> str:
    """``torch.float32 -> "float32"``; raises ValueError for a dtype outside :data:`DTYPES`."""
    info = dtype_info(dtype)
    if info is None:
        raise ValueError(f"unsupported dtype {dtype}; fastconv computes in {list(DTYPES)}")
    return info.name


# Memory layouts of a 4-D (N, C, H, W) tensor: "nchw" = contiguous, "nhwc" = channels_last, "strided" = any
# other strides (a sliced view, a permutation).  Benchmarks and CLI choices use the first two.
LAYOUTS: tuple[str, ...] = ("nchw", "nhwc", "strided")


def layout_of(x: torch.Tensor) -> str:
    """The layout name of a 4-D tensor (a tensor both contiguous and channels_last counts as ``"nchw"``)."""
    if x.is_contiguous():
        return "nchw"
    if x.is_contiguous(memory_format=torch.channels_last):
        return "nhwc"
    return "strided"


def memory_format_of(layout: str) -> torch.memory_format:
    """The torch memory format that makes a dense tensor of ``layout`` (``"strided"`` has none)."""
    try:
        return {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}[layout]
    except KeyError:
        raise ValueError(f"layout {layout!r} has no memory format; choose one of {LAYOUTS[:2]}") from None
