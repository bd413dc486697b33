"""The description of one conv2d problem, shared by validation, kernels, tuning, tests and benchmarks.

A :class:`ConvProblem` is what remains of a ``conv2d`` call once its arguments are validated and
normalised: every size is an int, padding is explicit (``"same"`` resolved, possibly asymmetric), and the
output size is computed by the one helper :func:`conv_output_size`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .vocab import DTYPES

__all__ = ["ConvProblem", "conv_output_size", "same_padding"]


def conv_output_size(in_size: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> int:
    """Output length of one spatial dimension: floor((in + pads - dilation*(kernel-1) - 1) / stride) + 1."""
    return (in_size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(kernel: int, dilation: int) -> tuple[int, int]:
    """Torch's split of ``padding="same"``: ``dilation * (kernel - 1)`` in all, the odd element after."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class ConvProblem:
    """A normalised conv2d problem.

    Shapes: input ``(batch, c_in, h, w)``, weight ``(c_out, c_in // groups, kh, kw)``,
    output ``(batch, c_out, oh, ow)``.  ``pad_h``/``pad_w`` are the top/left paddings; the bottom/right
    paddings (``pad_h_end``/``pad_w_end``) differ from them only for ``padding="same"`` with an even
    effective kernel extent.  ``channels_last`` is the memory format of the output torch would give.
    """

    batch: int
    c_in: int
    h: int
    w: int
    c_out: int
    kh: int
    kw: int
    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    pad_h_end: int = 0
    pad_w_end: int = 0
    dil_h: int = 1
    dil_w: int = 1
    groups: int = 1
    dtype: str = "float32"
    has_bias: bool = False
    channels_last: bool = False

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def make(
        cls,
        batch: int,
        c_in: int,
        c_out: int,
        h: int,
        w: int,
        kernel: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        dtype: str = "float32",
        has_bias: bool = False,
        channels_last: bool = False,
    ) -> ConvProblem:
        """Build a problem from torch-style (int-or-pair) arguments with symmetric padding."""

        def pair(v):
            return (v, v) if isinstance(v, int) else tuple(v)

        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pair(kernel), pair(stride), pair(padding), pair(dilation)
        return cls(batch, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, ph, pw, dh, dw, groups, dtype, has_bias,
                   channels_last)

    # ----------------------------------------------------------------------------------------------
    @property
    def oh(self) -> int:
        return conv_output_size(self.h, self.kh, self.stride_h, self.pad_h, self.pad_h_end, self.dil_h)

    @property
    def ow(self) -> int:
        return conv_output_size(self.w, self.kw, self.stride_w, self.pad_w, self.pad_w_end, self.dil_w)

    @property
    def c_in_per_group(self) -> int:
        return self.c_in // self.groups

    @property
    def c_out_per_group(self) -> int:
        return self.c_out // self.groups

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.c_in and self.groups > 1 and self.c_in_per_group == 1

    @property
    def is_pointwise(self) -> bool:
        return (self.kh, self.kw) == (1, 1) and (self.pad_h, self.pad_w, self.pad_h_end, self.pad_w_end) == (0,) * 4

    @property
    def gemm_m(self) -> int:
        """Rows of the implicit GEMM: output pixels."""
        return self.batch * self.oh * self.ow

    @property
    def gemm_n(self) -> int:
        """Columns of the implicit GEMM (per group): output channels."""
        return self.c_out_per_group

    @property
    def gemm_k(self) -> int:
        """Reduction length (per group): c_in/groups * kh * kw."""
        return self.c_in_per_group * self.kh * self.kw

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.c_in, self.h, self.w)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in_per_group, self.kh, self.kw)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.c_out, self.oh, self.ow)

    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 flops (bias not counted)."""
        return 2 * self.gemm_m * self.c_out * self.gemm_k

    @property
    def element_size(self) -> int:
        return DTYPES[self.dtype].itemsize

    @property
    def min_bytes(self) -> int:
        """Fewest bytes any implementation moves: each input, weight, bias read once, output written once."""
        n_in = self.batch * self.c_in * self.h * self.w
        n_w = self.c_out * self.c_in_per_group * self.kh * self.kw
        n_out = self.batch * self.c_out * self.oh * self.ow
        return self.element_size * (n_in + n_w + n_out + (self.c_out if self.has_bias else 0))

    @property
    def torch_padding(self) -> tuple[int, int] | str:
        """The padding argument that gives this problem to ``F.conv2d`` ("same" when asymmetric)."""
        if (self.pad_h, self.pad_w) == (self.pad_h_end, self.pad_w_end):
            return (self.pad_h, self.pad_w)
        return "same"

    def key(self) -> tuple:
        """Everything a kernel's choice may depend on (the autotuning key)."""
        return dataclasses.astuple(self)

    def replace(self, **changes) -> ConvProblem:
        return dataclasses.replace(self, **changes)

    def short(self) -> str:
        """A one-line human description, e.g. ``8x32x512x512 -> 64, k5x9 s1x1 p2x4 d2x3 g1 float32``."""
        pads = f"p{self.pad_h}x{self.pad_w}"
        if (self.pad_h, self.pad_w) != (self.pad_h_end, self.pad_w_end):
            pads += f"/{self.pad_h_end}x{self.pad_w_end}"
        return (
            f"{self.batch}x{self.c_in}x{self.h}x{self.w} -> {self.c_out}, k{self.kh}x{self.kw} "
            f"s{self.stride_h}x{self.stride_w} {pads} d{self.dil_h}x{self.dil_w} g{self.groups} {self.dtype}"
            f"{' bias' if self.has_bias else ''}{' NHWC' if self.channels_last else ''}"
        )
