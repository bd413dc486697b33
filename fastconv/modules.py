"""``fastconv.Conv2d`` (a drop-in for ``torch.nn.Conv2d``) and ``fastconv.ModelNew`` (KernelBench's interface)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops import conv2d

__all__ = ["Conv2d", "ModelNew"]


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` computed by fastconv.

    Same constructor, parameters and initialisation as ``nn.Conv2d`` (it *is* one, with another forward), so
    under the same ``torch.manual_seed`` its weight and bias equal ``nn.Conv2d``'s bit for bit, and state
    dicts load both ways.  Extra keyword-only arguments ``backend`` and ``precision`` go to
    :func:`fastconv.conv2d`.  Non-zero ``padding_mode`` s pad with ``F.pad`` first, exactly as torch does.
    """

    def __init__(self, *args, backend: str | None = None, precision: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend
        self.precision = precision

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                      backend=self.backend, precision=self.precision)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        if self.precision is not None:
            s += f", precision={self.precision!r}"
        return s


class ModelNew(nn.Module):
    """The seed's KernelBench interface (level 1, problem 80 and its siblings).

    KernelBench's reference ``Model`` holds ``self.conv2d = nn.Conv2d(...)`` and seeds the RNG before building
    each model; ``ModelNew`` holds a :class:`Conv2d` built with the same arguments, so its parameters are
    created in the same order from the same RNG stream and equal the reference's bit for bit.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: int = 1, padding=(0, 0),
                 dilation=(1, 1), bias: bool = False):
        super().__init__()
        self.conv2d = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                             dilation=dilation, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(x)
