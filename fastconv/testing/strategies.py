"""Hypothesis strategies for conv2d problems: valid ones under a size budget, and invalid ones for error tests.

- :func:`conv_problems` draws :class:`~fastconv.testing.ConvCase` s that torch accepts: batch, channels,
  groups that divide them (plain, grouped, depthwise), sizes, kernel, stride, padding (explicit, ``"valid"``,
  ``"same"``), dilation, bias, dtype, input/weight layout (contiguous, channels_last, a sliced view), unbatched
  3-D input, optional zero batch, and values of varied scale, sign and distribution from a seed.  Every
  parameter is drawn after the ones it depends on, with bounds that keep the problem inside the budget with
  the rest at their minimum: nothing is filtered or rejected, and each integer shrinks toward its minimum,
  so failures shrink toward small problems.
- :func:`impl_cases` draws ``(case, precision)`` pairs that an implementation under test
  (:class:`~fastconv.testing.ConvImpl`) claims in its :class:`~fastconv.testing.Capabilities`: use it in your
  own tests as ``case, precision = data.draw(impl_cases(my_impl))``.
- :func:`budget_for` gives the budget of the Hypothesis profile in force (``dev``, ``ci``, ``gpu``,
  ``nightly``) for a budget key (``ConvImpl.budget``): the CPU interpreter runs each Triton program in Python,
  so the ``direct`` and ``depthwise`` kernels (a program per output row or pixel block) get smaller problems.

This module needs Hypothesis (``pip install fastconv[hypothesis]``); the rest of :mod:`fastconv.testing` does
not.
- :func:`invalid_conv_problems` draws :class:`InvalidCall` s: a valid problem with one thing broken.
  :meth:`InvalidCall.torch_error` runs torch itself (on the CPU) to tell what it raises.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from .. import vocab
from ..precision import precisions_of
from ..problem import ConvProblem
from .cases import DISTRIBUTIONS, LAYOUTS, SIGNS, WEIGHT_LAYOUTS, ConvCase, same_padding, value_range
from .impl import ConvImpl

__all__ = ["ShapeLimits", "Budget", "PROFILE_BUDGETS", "budget_for", "EXAMPLE_CAPS", "examples", "conv_problems",
           "precisions", "impl_cases",
           "InvalidCall", "INVALID_KINDS", "invalid_conv_problems", "DTYPES", "PADDING_MODES", "GROUP_MODES"]

DTYPES = tuple(vocab.DTYPES)
# where kernels run in this session: precision defaults depend on the device (exact float32 on the CPU)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PADDING_MODES = ("explicit", "valid", "same")
GROUP_MODES = ("plain", "grouped", "depthwise")


# ==========================================================================================================
# Budgets
# ==========================================================================================================
@dataclass(frozen=True)
class ShapeLimits:
    """Upper bounds of each drawn size (channels are per group; ``max_spatial`` bounds the input H and W
    beyond what the kernel extent needs)."""

    max_batch: int = 3
    max_groups: int = 3
    max_channels: int = 6
    max_kernel: int = 5
    max_spatial: int = 12
    max_stride: int = 3
    max_dilation: int = 3
    max_padding: int = 3

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgument(f"ShapeLimits.{f.name} must be an int >= 1, got {v!r}")


@dataclass(frozen=True)
class Budget:
    """The size of drawn problems: elements (input + weight + bias + output), flops, and per-size limits."""

    max_elements: int
    max_flops: int
    limits: ShapeLimits = ShapeLimits()


# igemm, pointwise and others: tiles of 64-256 output pixels; 18 channels per group reach the per-tap K order
_CPU_FAST = Budget(8_000, 1_000_000, ShapeLimits(max_batch=2, max_groups=3, max_channels=18, max_kernel=4,
                                                 max_spatial=14, max_dilation=2, max_padding=2))
# direct: one program per (sample, output channel, 64 pixels), looping over C_in/groups * KH * KW in Python
_CPU_DIRECT = Budget(400, 4_000, ShapeLimits(max_batch=2, max_groups=2, max_channels=2, max_kernel=3,
                                             max_spatial=5, max_stride=2, max_dilation=2, max_padding=1))
# depthwise: one program per output row (and channel block)
_CPU_ROWS = Budget(600, 8_000, ShapeLimits(max_batch=2, max_groups=3, max_channels=3, max_kernel=3,
                                           max_spatial=6, max_stride=2, max_dilation=2, max_padding=1))
# kernels up to 5x5 (plus the regression cases): each (KH, KW) is another compiled specialisation on a GPU
_GPU = Budget(2_000_000, 400_000_000, ShapeLimits(max_batch=4, max_groups=4, max_channels=48, max_kernel=5,
                                                  max_spatial=48, max_stride=3, max_dilation=3, max_padding=3))
_NIGHTLY = Budget(8_000_000, 2_000_000_000, ShapeLimits(max_batch=8, max_groups=8, max_channels=96,
                                                        max_kernel=9, max_spatial=96, max_stride=4,
                                                        max_dilation=4, max_padding=4))

# profile -> backend -> budget ("default" for every other backend).  The CPU profiles (dev, ci) are sized so
# the whole CPU suite stays well inside 10 minutes on 2 cores; gpu/nightly assume a CUDA device.
PROFILE_BUDGETS: dict[str, dict[str, Budget]] = {
    "dev": {"default": _CPU_FAST, "direct": _CPU_DIRECT, "depthwise": _CPU_ROWS, "auto": _CPU_ROWS},
    "ci": {"default": _CPU_FAST, "direct": _CPU_DIRECT, "depthwise": _CPU_ROWS, "auto": _CPU_ROWS},
    "gpu": {"default": _GPU},
    "nightly": {"default": _NIGHTLY},
}
PROFILE_BUDGETS["mutate"] = PROFILE_BUDGETS["ci"]  # fastconv mutate: ci's problems, failures not shrunk


# profile -> kind of test -> examples per test (None or absent: the profile's max_examples).  A config sweep
# runs every config per example; an invalid call runs no kernel (cheap); on a GPU nearly every drawn problem
# is a new Triton specialisation to compile, so the gpu profile caps what its 150 examples would cost.
EXAMPLE_CAPS: dict[str, dict[str, int]] = {
    "dev": {"configs": 3, "invalid": 100, "integrity": 4, "offsets": 2},
    "ci": {"configs": 5, "invalid": 100, "integrity": 5, "offsets": 2},
    "gpu": {"reference": 40, "metamorphic": 10, "configs": 3, "invalid": 300, "integrity": 10, "offsets": 3},
    "nightly": {"configs": 300, "offsets": 20},
}
EXAMPLE_CAPS["mutate"] = EXAMPLE_CAPS["ci"]
_ABSOLUTE = {"invalid"}  # kinds whose count is absolute (at most 10x the profile's max_examples)


def examples(kind: str) -> int:
    """How many examples a test of ``kind`` ("reference", "metamorphic", "configs", "invalid", "integrity",
    "offsets") draws under the Hypothesis profile in force (use as
    ``@settings(max_examples=examples("..."))``)."""
    n = settings.default.max_examples
    cap = EXAMPLE_CAPS.get(settings.get_current_profile_name(), {}).get(kind)
    if cap is None:
        return n
    return min(cap, 10 * n) if kind in _ABSOLUTE else min(n, cap)


def budget_for(backend: str | None = None, *, profile: str | None = None) -> Budget:
    """The budget of ``profile`` (default: the Hypothesis profile in force) for ``backend``.

    Without CUDA the CPU budgets apply whatever the profile (``gpu`` sizes would take hours in the
    interpreter).
    """
    name = profile if profile is not None else settings.get_current_profile_name()
    if not torch.cuda.is_available() and name not in ("dev", "ci", "mutate"):
        name = "ci"
    table = PROFILE_BUDGETS.get(name, PROFILE_BUDGETS["dev"])
    return table.get(backend or "default", table["default"])


# ==========================================================================================================
# Valid problems
# ==========================================================================================================
@dataclass(frozen=True)
class _Spec:
    max_elements: int | None
    max_flops: int | None
    limits: ShapeLimits | None
    backend: str | None
    dtypes: tuple[str, ...]
    layouts: tuple[str, ...]
    weight_layouts: tuple[str, ...]
    padding_modes: tuple[str, ...]
    group_modes: tuple[str, ...]
    allow_bias: bool
    allow_unbatched: bool
    allow_empty_batch: bool
    min_batch: int
    min_stride: int
    min_padding: int
    distributions: tuple[str, ...]
    signs: tuple[str, ...]

    def budget(self) -> tuple[int, int, ShapeLimits]:
        b = budget_for(self.backend)
        return (self.max_elements if self.max_elements is not None else b.max_elements,
                self.max_flops if self.max_flops is not None else b.max_flops,
                self.limits if self.limits is not None else b.limits)


def _choose(draw, lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """Draw from the values in [lo, hi] that keep the problem within budget (shrinks toward lo)."""
    values = [v for v in range(lo, max(lo, hi) + 1) if ok(v)]
    if not values:  # the caller guarantees lo fits; this is a bug in the strategy
        raise AssertionError(f"conv_problems: no value in [{lo}, {hi}] fits the budget")
    if values == list(range(values[0], values[-1] + 1)):  # a range: integers() also tries its ends
        return draw(st.integers(values[0], values[-1]))
    return draw(st.sampled_from(values))


class _Draft:
    """The problem being drawn, as plain ints: cheap to vary while each size is bounded by the budget."""

    def __init__(self, max_elements: int, max_flops: int, **sizes: int):
        self.max_elements, self.max_flops = max_elements, max_flops
        self.v = dict(batch=1, groups=1, cin_g=1, cout_g=1, kh=1, kw=1, dh=1, dw=1, sh=1, sw=1,
                      ph=0, ph_end=0, pw=0, pw_end=0, h=None, w=None, bias=0)
        self.v.update(sizes)

    def fits(self, **changes: int) -> bool:
        """Whether the draft with ``changes`` (input size at its minimum while not yet drawn) is in budget."""
        v = {**self.v, **changes}
        ext_h, ext_w = v["dh"] * (v["kh"] - 1) + 1, v["dw"] * (v["kw"] - 1) + 1
        h = v["h"] if v["h"] is not None else max(1, ext_h - v["ph"] - v["ph_end"])
        w = v["w"] if v["w"] is not None else max(1, ext_w - v["pw"] - v["pw_end"])
        oh = (h + v["ph"] + v["ph_end"] - ext_h) // v["sh"] + 1
        ow = (w + v["pw"] + v["pw_end"] - ext_w) // v["sw"] + 1
        b, g, k = v["batch"], v["groups"], v["cin_g"] * v["kh"] * v["kw"]
        c_out = g * v["cout_g"]
        elements = b * g * v["cin_g"] * h * w + c_out * k + c_out * v["bias"] + b * c_out * oh * ow
        return elements <= self.max_elements and 2 * b * oh * ow * c_out * k <= self.max_flops

    def min_extent(self) -> tuple[int, int]:
        v = self.v
        return (max(1, v["dh"] * (v["kh"] - 1) + 1 - v["ph"] - v["ph_end"]),
                max(1, v["dw"] * (v["kw"] - 1) + 1 - v["pw"] - v["pw_end"]))


@st.composite
def _conv_cases(draw, spec: _Spec) -> ConvCase:
    max_elements, max_flops, lim = spec.budget()
    group_modes = [m for m in spec.group_modes if m == "plain" or lim.max_groups >= 2] or ["plain"]

    # -- what the call looks like ------------------------------------------------------------------------
    dtype = draw(st.sampled_from(spec.dtypes))
    has_bias = spec.allow_bias and draw(st.booleans())
    unbatched = spec.allow_unbatched and spec.min_batch <= 1 and draw(st.booleans())
    min_b = 1 if unbatched else spec.min_batch
    d = _Draft(max_elements, max_flops, batch=min_b, bias=int(has_bias))
    if not d.fits():
        raise InvalidArgument(f"conv_problems: the smallest problem (batch {min_b}, 1 channel, 1x1) exceeds the "
                              f"budget max_elements={max_elements}, max_flops={max_flops}")

    def choose(name: str, lo: int, hi: int, **also: int) -> int:
        value = _choose(draw, lo, hi, lambda x: d.fits(**{name: x}, **also))
        d.v.update({name: value}, **also)
        return value

    # -- channels and groups (the rest at its minimum: 1x1 kernel, 1x1 input) ------------------------------
    mode = draw(st.sampled_from(group_modes))
    if mode != "plain":
        choose("groups", 2, max(2, lim.max_groups if mode == "grouped" else lim.max_groups * lim.max_channels))
    if mode != "depthwise":
        choose("cin_g", 1, lim.max_channels)
    choose("cout_g", 1, 2 if mode == "depthwise" else lim.max_channels)

    # -- kernel and dilation (input just large enough) ------------------------------------------------------
    choose("kh", 1, lim.max_kernel)
    choose("kw", 1, lim.max_kernel)
    choose("dh", 1, lim.max_dilation if d.v["kh"] > 1 else 1)
    choose("dw", 1, lim.max_dilation if d.v["kw"] > 1 else 1)

    # -- stride and padding ---------------------------------------------------------------------------------
    top = max(spec.min_stride, lim.max_stride)
    d.v["sh"] = draw(st.integers(1, top))
    d.v["sw"] = draw(st.integers(spec.min_stride if d.v["sh"] < spec.min_stride else 1, top))
    same = dict(zip(("ph", "ph_end"), same_padding(d.v["kh"], d.v["dh"])))
    same.update(zip(("pw", "pw_end"), same_padding(d.v["kw"], d.v["dw"])))
    modes = [m for m in spec.padding_modes
             if m != "same" or ((d.v["sh"], d.v["sw"]) == (1, 1) and d.fits(**same))]
    pad_mode = draw(st.sampled_from(modes or ["explicit"]))  # none left: only "same" allowed, stride > 1
    # Explicit pads are drawn whatever the mode: Hypothesis shrinks toward *fewer* choices first, and a mode
    # that skipped them would look simpler than explicit padding.
    lo = min(spec.min_padding, lim.max_padding)
    ph = _choose(draw, lo, lim.max_padding, lambda x: d.fits(ph=x, ph_end=x))
    pw = _choose(draw, lo, lim.max_padding, lambda x: d.fits(ph=ph, ph_end=ph, pw=x, pw_end=x))
    if pad_mode == "explicit":
        d.v.update(ph=ph, ph_end=ph, pw=pw, pw_end=pw)
    elif pad_mode == "same":
        d.v.update(same)

    # -- input size (from the smallest that gives an output), batch ----------------------------------------------
    h0, w0 = d.min_extent()
    choose("h", h0, h0 + lim.max_spatial - 1, w=w0)
    choose("w", w0, w0 + lim.max_spatial - 1)
    batch = choose("batch", min_b, lim.max_batch)  # drawn even if unused, for the same reason as the pads
    if unbatched:
        batch = 1
    elif spec.allow_empty_batch and draw(st.booleans()):
        batch = 0

    v = d.v
    p = ConvProblem(batch=batch, c_in=v["groups"] * v["cin_g"], h=v["h"], w=v["w"], c_out=v["groups"] * v["cout_g"],
                    kh=v["kh"], kw=v["kw"], stride_h=v["sh"], stride_w=v["sw"], pad_h=v["ph"], pad_w=v["pw"],
                    pad_h_end=v["ph_end"], pad_w_end=v["pw_end"], dil_h=v["dh"], dil_w=v["dw"], groups=v["groups"],
                    dtype=dtype, has_bias=has_bias)

    # -- layouts, spelling, values ------------------------------------------------------------------------------
    layout = draw(st.sampled_from(spec.layouts))
    weight_layout = draw(st.sampled_from(spec.weight_layouts))
    compact = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    distribution = draw(st.sampled_from(spec.distributions))
    x_exp, w_exp = draw(_exponents(dtype, p.gemm_k, value_range(distribution)))
    signs = draw(st.sampled_from(spec.signs))
    return ConvCase(p, padding=None if pad_mode == "explicit" else pad_mode, layout=layout,
                    weight_layout=weight_layout, unbatched=unbatched, compact=compact, seed=seed, x_exp=x_exp,
                    w_exp=w_exp, distribution=distribution, signs=signs)


def _exponents(dtype: str, k: int, log2_max: int = 2) -> st.SearchStrategy[tuple[int, int]]:
    """Power-of-two scales of input and weight that keep the output finite and normal in ``dtype``, for values
    of magnitude up to ``2**log2_max`` before scaling (:func:`~fastconv.testing.cases.value_range`).

    float32/bfloat16/float64: scales up to 2^40 each (products to 2^92, far from float32's 2^128; down to
    2^-92, far above its smallest normal 2^-126): large-magnitude values are drawn as well as unit ones.
    float16 (largest 65504 = 2^16): ``4 K 2^(x_exp + w_exp + 2 log2_max) <= 2^15`` keeps every partial sum
    finite, and ``x_exp, w_exp >= -4`` keeps the inputs (mostly) normal.
    """
    if dtype != "float16":
        return st.tuples(st.integers(-40, 40), st.integers(-40, 40))
    room = 15 - 2 * log2_max - math.ceil(math.log2(max(k, 1) + 1))
    return st.integers(-4, 4).flatmap(lambda xe: st.tuples(st.just(xe), st.integers(-4, max(-4, min(4, room - xe)))))


def _check_choices(name: str, values, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidArgument(f"{name} must be a non-empty sequence of {allowed}, got {values!r}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise InvalidArgument(f"{name}: unknown {bad}; choose from {allowed}")
    return tuple(dict.fromkeys(values))


def _check_int(name: str, value, lo: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise InvalidArgument(f"{name} must be an int >= {lo}{' or None' if optional else ''}, got {value!r}")


def conv_problems(
    *,
    max_elements: int | None = None,
    max_flops: int | None = None,
    limits: ShapeLimits | None = None,
    backend: str | None = None,
    dtypes: Sequence[str] = DTYPES,
    layouts: Sequence[str] = LAYOUTS,
    weight_layouts: Sequence[str] = WEIGHT_LAYOUTS,
    padding_modes: Sequence[str] = PADDING_MODES,
    group_modes: Sequence[str] = GROUP_MODES,
    allow_bias: bool = True,
    allow_unbatched: bool = True,
    allow_empty_batch: bool = False,
    min_batch: int = 1,
    min_stride: int = 1,
    min_padding: int = 0,
    distributions: Sequence[str] = DISTRIBUTIONS,
    signs: Sequence[str] = SIGNS,
) -> st.SearchStrategy[ConvCase]:
    """Valid conv2d problems as :class:`~fastconv.testing.ConvCase` s.

    Args:
        max_elements: bound on input + weight + bias + output elements; None: the profile's budget.
        max_flops: bound on ``2 * N * OH * OW * C_out * C_in/groups * KH * KW``; None: the profile's budget.
        limits: bound of each size; None: the profile's.
        backend: whose profile budget applies (``budget_for(backend)``) where the above are None.
        dtypes, layouts (input), weight_layouts, padding_modes (``"explicit"``, ``"valid"``, ``"same"``;
            ``"same"`` is only drawn with stride 1), group_modes (``"plain"``, ``"grouped"``,
            ``"depthwise"``), distributions, signs: the choices to draw from (the first is what shrinking
            goes to).
        allow_bias, allow_unbatched: whether bias / a 3-D input may be drawn.
        allow_empty_batch: whether a zero batch may be drawn (off by default: it tests nothing numerical).
        min_batch: smallest batch (e.g. 2 for batch properties; no unbatched input then).
        min_stride: at least one of the two strides is at least this (e.g. 2 for stride properties).
        min_padding: smallest explicit padding (e.g. 1 for padding properties).
    """
    _check_int("max_elements", max_elements, 16, optional=True)
    _check_int("max_flops", max_flops, 64, optional=True)
    _check_int("min_batch", min_batch, 1)
    _check_int("min_stride", min_stride, 1)
    _check_int("min_padding", min_padding, 0)
    if limits is not None and not isinstance(limits, ShapeLimits):
        raise InvalidArgument(f"limits must be a ShapeLimits or None, got {limits!r}")
    if backend is not None and not isinstance(backend, str):
        raise InvalidArgument(f"backend must be a backend name or None, got {backend!r}")
    for name, flag in (("allow_bias", allow_bias), ("allow_unbatched", allow_unbatched),
                       ("allow_empty_batch", allow_empty_batch)):
        if not isinstance(flag, bool):
            raise InvalidArgument(f"{name} must be a bool, got {flag!r}")
    if limits is not None and min_stride > limits.max_stride:
        raise InvalidArgument(f"min_stride={min_stride} exceeds limits.max_stride={limits.max_stride}")
    group_modes = _check_choices("group_modes", group_modes, GROUP_MODES)
    if limits is not None and limits.max_groups < 2 and set(group_modes) - {"plain"}:
        raise InvalidArgument(f"group_modes {group_modes} need limits.max_groups >= 2, got {limits.max_groups}")
    spec = _Spec(
        max_elements, max_flops, limits, backend,
        _check_choices("dtypes", dtypes, DTYPES), _check_choices("layouts", layouts, LAYOUTS),
        _check_choices("weight_layouts", weight_layouts, WEIGHT_LAYOUTS),
        _check_choices("padding_modes", padding_modes, PADDING_MODES),
        group_modes, allow_bias, allow_unbatched, allow_empty_batch, min_batch, min_stride, min_padding,
        _check_choices("distributions", distributions, DISTRIBUTIONS), _check_choices("signs", signs, SIGNS),
    )
    return _conv_cases(spec)


def precisions(dtype: str) -> st.SearchStrategy[str | None]:
    """The ``precision`` argument to pass with a ``dtype`` input to fastconv: None (the default) or a mode."""
    return st.sampled_from((None, *precisions_of(dtype)))


def impl_cases(impl: ConvImpl, *, limits: dict | None = None, budget: Budget | None = None,
               **kwargs) -> st.SearchStrategy[tuple[ConvCase, str | None]]:
    """``(case, precision)`` pairs that ``impl`` claims (its :class:`~fastconv.testing.Capabilities`), under
    the profile's budget for ``impl.budget``.

    ``budget`` replaces the profile's (e.g. ``PROFILE_BUDGETS["gpu"]["default"]`` to see a GPU run's draws
    on a CPU, as ``scripts/count_variants.py --property-profile`` does).
    ``limits`` tightens fields of the budget's :class:`ShapeLimits` (e.g. ``{"max_stride": 1}``); other
    keyword arguments go to :func:`conv_problems` and must lie within what ``impl`` claims (a choice outside
    it leaves nothing to draw: InvalidArgument).  Call it inside a test (``st.data()``), where the Hypothesis
    profile is the one in force.
    """
    budget = budget if budget is not None else budget_for(impl.budget)
    caps = impl.capabilities.strategy_kwargs()
    cap_limits = caps.pop("limits")
    lim = budget.limits
    changes = {k: min(v, getattr(lim, k)) for k, v in {**cap_limits, **(limits or {})}.items()}
    for k, v in cap_limits.items():
        changes[k] = min(changes[k], v)
    lim = dataclasses.replace(lim, **changes)
    for key, value in kwargs.items():  # narrow the claimed choices, never widen them
        if key in caps and isinstance(value, (tuple, list)):
            narrowed = tuple(v for v in value if v in caps[key])
            if not narrowed:
                raise InvalidArgument(f"{impl.name} claims none of {key}={value!r} (it claims {caps[key]!r})")
            caps[key] = narrowed
        elif key in caps and isinstance(value, bool):
            caps[key] = caps[key] and value
        else:
            caps[key] = value
    cases = conv_problems(max_elements=budget.max_elements, max_flops=budget.max_flops, limits=lim, **caps)

    def claimed(case_precision) -> bool:
        why = impl.unsupported_case(*case_precision)
        if why is not None:  # counted in --hypothesis-show-statistics; a test where nothing is claimed errors
            event(f"{impl.name}: draw not claimed ({why})")
        return why is None

    return cases.flatmap(lambda c: st.tuples(st.just(c), st.sampled_from(impl.precision_choices(c.geometry.dtype)))
                         ).filter(claimed)


# ==========================================================================================================
# Invalid problems
# ==========================================================================================================
@dataclass(frozen=True)
class InvalidCall:
    """A ``conv2d`` call torch rejects: shapes, dtypes and raw arguments, and what is wrong (``kind``).

    ``keyword`` is the word (the argument's name) fastconv's error message must contain.
    """

    kind: str
    keyword: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    bias_shape: tuple[int, ...] | None
    input_dtype: str = "float32"
    weight_dtype: str = "float32"
    bias_dtype: str = "float32"
    stride: object = 1
    padding: object = 0
    dilation: object = 1
    groups: object = 1

    def make(self, device: torch.device | str = "cpu") -> tuple[tuple, dict]:
        """``(args, kwargs)`` for ``conv2d(*args, **kwargs)``."""
        gen = torch.Generator().manual_seed(0)

        def t(shape, dtype):
            return torch.randn(shape, generator=gen).to(device=device, dtype=getattr(torch, dtype))

        bias = None if self.bias_shape is None else t(self.bias_shape, self.bias_dtype)
        args = (t(self.input_shape, self.input_dtype), t(self.weight_shape, self.weight_dtype), bias)
        return args, dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def torch_error(self) -> type[BaseException] | None:
        """The exception type ``torch.nn.functional.conv2d`` raises for this call on the CPU (None: accepted)."""
        args, kwargs = self.make("cpu")
        try:
            F.conv2d(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - we want exactly what torch raises
            return type(exc)
        return None


INVALID_KINDS = (
    "input_rank", "weight_rank", "channels", "groups_divide", "groups_nonpositive", "stride_nonpositive",
    "dilation_nonpositive", "padding_negative", "param_length", "kernel_too_large", "same_strided",
    "padding_string", "bias_size", "bias_rank", "weight_dtype", "bias_dtype", "zero_spatial", "kernel_zero",
    "out_channels_zero", "arg_type",
)


@st.composite
def _invalid(draw, kinds: tuple[str, ...]) -> InvalidCall:
    small = ShapeLimits(max_batch=2, max_groups=3, max_channels=3, max_kernel=3, max_spatial=6, max_padding=2)
    case = draw(conv_problems(max_elements=2_000, max_flops=100_000, limits=small, layouts=("nchw",),
                              weight_layouts=("nchw",), allow_unbatched=False, padding_modes=("explicit",)))
    g = case.geometry
    kind = draw(st.sampled_from(kinds))
    xs, ws = list(g.input_shape), list(g.weight_shape)
    bs = (g.c_out,) if g.has_bias else None
    kw = dict(stride=(g.stride_h, g.stride_w), padding=(g.pad_h, g.pad_w), dilation=(g.dil_h, g.dil_w),
              groups=g.groups)
    dts = dict(input_dtype=g.dtype, weight_dtype=g.dtype, bias_dtype=g.dtype)
    keyword = kind
    others = [d for d in DTYPES if d != g.dtype]

    if kind == "input_rank":
        xs = draw(st.sampled_from([xs[2:], [1, *xs]]))
        keyword = "input"
    elif kind == "weight_rank":
        ws = draw(st.sampled_from([ws[:2] + [ws[2] * ws[3]], [*ws, 1]]))
        keyword = "weight"
    elif kind == "channels":
        xs[1] += draw(st.integers(1, 3))
    elif kind == "groups_divide":
        groups = draw(st.integers(2, 4))
        xs[1] = groups * ws[1]
        ws[0] = groups * draw(st.integers(1, 2)) + draw(st.integers(1, groups - 1))
        kw["groups"] = groups
        bs = (ws[0],) if bs is not None else None
        keyword = "groups"
    elif kind == "groups_nonpositive":
        kw["groups"] = draw(st.integers(-2, 0))
        keyword = "groups"
    elif kind in ("stride_nonpositive", "dilation_nonpositive", "padding_negative"):
        name = kind.split("_")[0]
        bad = draw(st.integers(-2, 0) if name != "padding" else st.integers(-3, -1))
        pair = list(kw[name])
        pair[draw(st.integers(0, 1))] = bad
        kw[name] = tuple(pair)
        keyword = name
    elif kind == "param_length":
        keyword = draw(st.sampled_from(["stride", "padding", "dilation"]))
        kw[keyword] = (*kw[keyword], 1)
    elif kind == "kernel_too_large":
        dim = draw(st.integers(0, 1))
        d, p = kw["dilation"][dim], kw["padding"][dim]
        ws[2 + dim] = (xs[2 + dim] + 2 * p - 1) // d + 2 + draw(st.integers(0, 1))
        keyword = "kernel"
    elif kind == "same_strided":
        kw["padding"] = "same"
        kw["stride"] = draw(st.sampled_from([(2, 1), (1, 2), (2, 2), (3, 3)]))
        keyword = "same"
    elif kind == "padding_string":
        kw["padding"] = draw(st.sampled_from(["full", "SAME", "Valid", "", "circular"]))
        keyword = "padding"
    elif kind == "bias_size":
        bs = (g.c_out + draw(st.sampled_from([1, 2] + ([-1] if g.c_out > 1 else []))),)
        keyword = "bias"
    elif kind == "bias_rank":
        bs = draw(st.sampled_from([(), (g.c_out, 1), (1, g.c_out)]))
        keyword = "bias"
    elif kind == "weight_dtype":
        dts["weight_dtype"] = draw(st.sampled_from(others))
        keyword = "weight"
    elif kind == "bias_dtype":
        bs = (g.c_out,)
        dts["bias_dtype"] = draw(st.sampled_from(others))
        keyword = "bias"
    elif kind == "zero_spatial":
        xs[2 + draw(st.integers(0, 1))] = 0
        keyword = "input"
    elif kind == "kernel_zero":
        ws[2 + draw(st.integers(0, 1))] = 0
        keyword = "weight"
    elif kind == "out_channels_zero":
        ws[0] = 0
        bs = None
        keyword = "weight"
    elif kind == "arg_type":
        keyword = draw(st.sampled_from(["stride", "padding", "dilation", "groups"]))
        kw[keyword] = draw(st.sampled_from([1.5, "2", None, True] if keyword != "padding" else [1.5, None, True]))
    else:  # pragma: no cover - INVALID_KINDS and this chain are kept in step by tests/test_strategies.py
        raise AssertionError(kind)
    return InvalidCall(kind, keyword, tuple(xs), tuple(ws), bs, **dts, **kw)


def invalid_conv_problems(*, kinds: Sequence[str] = INVALID_KINDS) -> st.SearchStrategy[InvalidCall]:
    """Calls that torch rejects, one broken thing each (``kinds``: a subset of :data:`INVALID_KINDS`)."""
    return _invalid(_check_choices("kinds", kinds, INVALID_KINDS))
