"""A conv2d test case as a value: geometry, argument spelling, tensor layouts, and seeded values.

A :class:`ConvCase` is what the Hypothesis strategies draw and what a failure report prints: its ``repr`` is
a Python expression, so ``run_case(<repr>, backend=..., precision=...)`` replays a failure in one line.
The tensors are made on the CPU from a seeded ``torch.Generator`` (the same values on every device), with a
power-of-two scale (exact in every dtype) and a sign pattern, then given their layout on the target device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..functional import conv2d
from ..problem import ConvProblem, same_padding  # noqa: F401  (re-exported by fastconv.testing)
from ..validation import output_channels_last
from ..vocab import DTYPES, LAYOUTS
from .tolerance import assert_conv_close

__all__ = ["ConvCase", "LAYOUTS", "WEIGHT_LAYOUTS", "DISTRIBUTIONS", "SIGNS", "with_layout", "make_values",
           "value_range", "run_case", "same_padding"]

WEIGHT_LAYOUTS = LAYOUTS
# "uniform" with "positive" signs is KernelBench's torch.rand in [0, 1); "heavy" spans 2^-6..2^6 in one
# tensor (log-normal magnitudes): a kernel right only on well-scaled data fails there.
DISTRIBUTIONS = ("normal", "uniform", "integer", "heavy")
SIGNS = ("mixed", "positive", "negative")
_HEAVY_LOG2 = 6


def value_range(distribution: str) -> int:
    """``log2`` of the largest magnitude :func:`make_values` draws from ``distribution`` at exponent 0 (a
    normal sample beyond 4 is rare enough to be covered by the float16 scale rule's margin)."""
    return _HEAVY_LOG2 if distribution == "heavy" else 2


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t`` (values unchanged) in a memory layout.

    - ``"nchw"``: row-major;
    - ``"nhwc"``: channels innermost (4-D: ``torch.channels_last``; 3-D ``(C, H, W)``: HWC storage);
    - ``"strided"``: a view into a larger NaN-filled buffer, offset by one element in every dimension but the
      first and with stride 2 along channels and width: not contiguous in any format, and a kernel that reads
      outside the view reads NaN.
    """
    if layout == "nchw":
        return t.contiguous()
    if layout == "nhwc":
        if t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        if t.dim() == 3:
            return t.permute(1, 2, 0).contiguous().permute(2, 0, 1)
        return t.contiguous()
    if layout == "strided":
        if t.dim() == 1:
            big = torch.full((2 * t.shape[0] + 1,), float("nan"), dtype=t.dtype, device=t.device)
            view = big[1::2]
        else:
            lead, (c, h, w) = t.shape[:-3], t.shape[-3:]
            big = torch.full((*lead, 2 * c + 1, h + 1, 2 * w + 1), float("nan"), dtype=t.dtype, device=t.device)
            view = big[..., 1::2, 1:, 1::2]
        view.copy_(t)
        return view
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")


def make_values(shape: tuple[int, ...], generator: torch.Generator, *, distribution: str, signs: str,
                exponent: int) -> torch.Tensor:
    """float32 CPU values of ``shape``: ``distribution`` (normal, uniform in [-1, 1), integers in [-4, 4], or
    heavy: random signs times ``2**clamp(2 z, -6, 6)`` with ``z`` standard normal), ``signs`` (mixed, positive,
    negative), times ``2**exponent``; never all zero."""
    if distribution == "normal":
        v = torch.randn(shape, generator=generator)
    elif distribution == "uniform":
        v = torch.rand(shape, generator=generator) * 2 - 1
    elif distribution == "integer":
        v = torch.randint(-4, 5, shape, generator=generator).to(torch.float32)
    elif distribution == "heavy":
        mag = torch.exp2((2 * torch.randn(shape, generator=generator)).clamp(-_HEAVY_LOG2, _HEAVY_LOG2))
        v = torch.where(torch.rand(shape, generator=generator) < 0.5, -mag, mag)
    else:
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")
    if signs == "positive":
        v = v.abs()
    elif signs == "negative":
        v = -v.abs()
    elif signs != "mixed":
        raise ValueError(f"unknown signs {signs!r}; choose one of {SIGNS}")
    v = torch.ldexp(v, torch.tensor(exponent, dtype=torch.int32))
    if v.numel() and not bool(v.any()):
        v.view(-1)[0] = -(2.0 ** exponent) if signs == "negative" else 2.0 ** exponent
    return v


@dataclass(frozen=True)
class ConvCase:
    """One ``conv2d`` call to test.

    ``geometry`` holds sizes, conv parameters (padding resolved, as torch resolves ``"same"``), dtype and
    bias; its ``channels_last`` is ignored (:attr:`problem` derives it from the layouts, as torch does).
    ``padding`` is the string passed for ``"same"``/``"valid"`` (None: the explicit pads of ``geometry``).
    ``compact`` passes ints for equal pairs (``stride=2`` rather than ``(2, 2)``).  Input ``(N, C_in, H, W)``,
    or ``(C_in, H, W)`` when ``unbatched`` (then ``geometry.batch == 1``).  Values: see :func:`make_values`,
    with input scale ``2**x_exp``, weight ``2**w_exp`` and bias ``2**(x_exp + w_exp)``, all from ``seed``.
    """

    geometry: ConvProblem
    padding: str | None = None
    layout: str = "nchw"
    weight_layout: str = "nchw"
    unbatched: bool = False
    compact: bool = False
    seed: int = 0
    x_exp: int = 0
    w_exp: int = 0
    distribution: str = "normal"
    signs: str = "mixed"

    def __post_init__(self):
        g = self.geometry
        if self.layout not in LAYOUTS or self.weight_layout not in WEIGHT_LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}/{self.weight_layout!r}; choose from {LAYOUTS}")
        if self.distribution not in DISTRIBUTIONS or self.signs not in SIGNS:
            raise ValueError(f"unknown distribution/signs {self.distribution!r}/{self.signs!r}")
        if self.padding not in (None, "same", "valid"):
            raise ValueError(f"padding must be None, 'same' or 'valid', got {self.padding!r}")
        if self.unbatched and g.batch != 1:
            raise ValueError(f"an unbatched case has batch 1, got {g.batch}")
        if g.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {g.dtype!r}; choose one of {tuple(DTYPES)}")

    # ------------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.geometry.dtype].torch

    @property
    def input_shape(self) -> tuple[int, ...]:
        s = self.geometry.input_shape
        return s[1:] if self.unbatched else s

    def conv_kwargs(self) -> dict:
        """``stride``, ``padding``, ``dilation``, ``groups`` as passed to ``conv2d``."""
        g = self.geometry

        def arg(a: int, b: int):
            return a if self.compact and a == b else (a, b)

        padding = self.padding if self.padding is not None else arg(g.pad_h, g.pad_w)
        return dict(stride=arg(g.stride_h, g.stride_w), padding=padding, dilation=arg(g.dil_h, g.dil_w),
                    groups=g.groups)

    def make_inputs(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(input, weight, bias)`` on ``device`` in the case's dtype and layouts (bias None without one)."""
        g = self.geometry
        gen = torch.Generator().manual_seed(self.seed)
        kw = dict(distribution=self.distribution, signs=self.signs)
        x = make_values(self.input_shape, gen, exponent=self.x_exp, **kw)
        w = make_values(g.weight_shape, gen, exponent=self.w_exp, **kw)
        b = make_values((g.c_out,), gen, exponent=self.x_exp + self.w_exp, **kw) if g.has_bias else None
        x = with_layout(x.to(device=device, dtype=self.dtype), self.layout)
        w = with_layout(w.to(device=device, dtype=self.dtype), self.weight_layout)
        if b is not None:
            b_layout = "strided" if self.layout == "strided" else "nchw"
            b = with_layout(b.to(device=device, dtype=self.dtype), b_layout)
        return x, w, b

    @property
    def problem(self) -> ConvProblem:
        """The :class:`ConvProblem` fastconv builds for this call (output memory format derived as torch does)."""
        x = with_layout(torch.empty(self.input_shape, device="meta", dtype=self.dtype), self.layout)
        w = with_layout(torch.empty(self.geometry.weight_shape, device="meta", dtype=self.dtype), self.weight_layout)
        x4 = x.unsqueeze(0) if self.unbatched else x
        return self.geometry.replace(channels_last=output_channels_last(x4, w))

    def replace(self, **changes) -> ConvCase:
        return dataclasses.replace(self, **changes)

    def short(self) -> str:
        tags = [self.layout if self.weight_layout == "nchw" else f"{self.layout}/w:{self.weight_layout}"]
        if self.padding is not None:
            tags.append(f"padding={self.padding!r}")
        if self.unbatched:
            tags.append("unbatched")
        tags.append(f"{self.distribution} {self.signs} x2^{self.x_exp} w2^{self.w_exp} seed {self.seed}")
        return f"{self.problem.short()} [{', '.join(tags)}]"

    def repro(self, *, backend: str | None = None, precision: str | None = None, device: str = "cpu") -> str:
        """A shell line that replays this case through :func:`run_case`."""
        env = "TRITON_INTERPRET=1 " if device == "cpu" else ""
        return (f'{env}python -c "from fastconv.testing import *; '
                f'run_case({self!r}, backend={backend!r}, precision={precision!r}, device={device!r})"')


def run_case(case: ConvCase, *, backend: str | None = None, precision: str | None = None,
             device: str | torch.device | None = None) -> torch.Tensor:
    """Run ``case`` through :func:`fastconv.conv2d` and assert it against the fp64 reference; return the output."""

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    x, w, b = case.make_inputs(device)
    kwargs = case.conv_kwargs()
    y = conv2d(x, w, b, **kwargs, backend=backend, precision=precision)
    assert_conv_close(y, x, w, b, **kwargs, precision=precision, problem=case.short(), seed=case.seed,
                      repro=case.repro(backend=backend, precision=precision, device=torch.device(device).type))
    return y
