"""The fp64 reference of a conv2d call, with the magnitudes the tolerance model needs.

The reference convolves the *same* low-precision values the kernel saw, converted exactly to float64 on the
CPU, with ``torch.nn.functional.conv2d``.  So the reference has no input rounding to forgive: every
difference between a kernel's output and it comes from the kernel's own arithmetic (operand rounding such as
TF32, fp32 accumulation, the final rounding to the output dtype) or from a bug.

Besides the value ``r = x (*) w + b`` it keeps, per output element,

- ``magnitude = |x| (*) |w| + |b|``: the sum of the absolute terms of the reduction (worst-case bounds scale
  with it, and it is large compared with ``|r|`` exactly where the reduction cancels);
- ``square = x^2 (*) w^2 + b^2``: the sum of the squared terms (random rounding errors grow with its root).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ConvReference", "reference_conv2d"]


@dataclass(frozen=True)
class ConvReference:
    """fp64 reference of one conv2d call.

    ``value``, ``magnitude`` and ``square`` have the output's shape (``(N, C_out, OH, OW)``, or
    ``(C_out, OH, OW)`` for an unbatched input), dtype float64, on the CPU.  ``reduction_length`` is the
    number of terms summed per output element: ``C_in/groups * KH * KW``, plus one for the bias.
    ``out_dtype`` is the dtype the kernel's output has (the input's).
    """

    value: torch.Tensor
    magnitude: torch.Tensor
    square: torch.Tensor
    reduction_length: int
    out_dtype: torch.dtype

    def __getitem__(self, index) -> ConvReference:
        """The reference of a slice of the output (e.g. one sample, or a strided subsample)."""
        return ConvReference(self.value[index], self.magnitude[index], self.square[index],
                             self.reduction_length, self.out_dtype)


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(device="cpu", dtype=torch.float64)


def reference_conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                     padding=0, dilation=1, groups: int = 1) -> ConvReference:
    """fp64 reference of ``F.conv2d(input, weight, bias, stride, padding, dilation, groups)``.

    Arguments as :func:`torch.nn.functional.conv2d`; tensors of any dtype, device and strides (they are
    converted exactly to float64 on the CPU).  Invalid arguments raise what ``F.conv2d`` raises.
    """
    x, w, b = _f64(input), _f64(weight), _f64(bias)
    args = (stride, padding, dilation, groups)
    value = F.conv2d(x, w, b, *args)
    magnitude = F.conv2d(x.abs(), w.abs(), None if b is None else b.abs(), *args)
    square = F.conv2d(x * x, w * w, None if b is None else b * b, *args)
    k = weight.shape[1] * weight.shape[2] * weight.shape[3] + (bias is not None)
    return ConvReference(value, magnitude, square, int(k), input.dtype)
