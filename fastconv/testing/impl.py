"""Implementations under test: any conv2d with ``torch.nn.functional.conv2d``'s signature, what it declares it
supports, and the loaders that turn a name into one.

A :class:`ConvImpl` is a callable ``fn(input, weight, bias, stride, padding, dilation, groups)`` (positional,
as ``F.conv2d``) with a name and :class:`Capabilities`: the dtypes, layouts, padding modes, group modes,
precisions... it claims.  The Hypothesis strategies (:mod:`fastconv.testing.strategies`) draw only what an
implementation claims; what it does not claim is listed by :meth:`Capabilities.untested` and reported, never
silently counted as passed.  A claim is a promise: a drawn call it rejects fails the test.

fastconv's own kernels are implementations like any other (:func:`fastconv_impls`).
:func:`fastconv.testing.loader.load_impl` makes one from a spec string:

- ``fastconv`` / ``fastconv:<backend>``: fastconv (automatic kernel choice) or one of its kernels;
- ``torch``: ``torch.nn.functional.conv2d`` itself;
- ``inductor`` / ``inductor-triton``: ``torch.compile`` of ``F.conv2d`` (see :mod:`.adapters`);
  ``jax``: ``jax.lax.conv_general_dilated`` through DLPack;
- ``pkg.module:attr`` or ``path/to/file.py[:attr]``: a ``ConvImpl``, a function with ``F.conv2d``'s signature
  (its module may define ``CAPABILITIES``, a :class:`Capabilities` or a dict), or a KernelBench-style
  ``nn.Module`` class (``ModelNew``; the default attribute when the module has one), adapted by
  :func:`kernelbench_impl`.

Capabilities can be overridden with ``key=value`` strings (:func:`parse_capabilities`), e.g.
``dtypes=float32,float16``, ``dilation=false``, ``max_kernel=3``, ``precisions=tf32``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..functional import conv2d as fastconv_conv2d
from ..kernels import registry
from ..precision import FLOAT32_PRECISIONS, precisions_of, resolve_precision
from ..problem import ConvProblem
from ..vocab import DTYPES, LAYOUTS

__all__ = ["Capabilities", "ConvImpl", "PADDING_MODES", "GROUP_MODES", "LIMIT_NAMES", "TUPLE_FIELDS", "group_mode",
           "padding_mode", "fastconv_impl", "fastconv_impls", "kernelbench_impl"]

PADDING_MODES = ("explicit", "valid", "same")
GROUP_MODES = ("plain", "grouped", "depthwise")
# the per-size bounds a capability may set (the fields of fastconv.testing.strategies.ShapeLimits)
LIMIT_NAMES = ("max_batch", "max_groups", "max_channels", "max_kernel", "max_spatial", "max_stride",
               "max_dilation", "max_padding")
OUTPUT_FORMATS = ("torch", "any")


def group_mode(p: ConvProblem) -> str:
    """``"plain"`` (groups 1), ``"depthwise"`` (one input channel per group) or ``"grouped"``."""
    return "plain" if p.groups == 1 else ("depthwise" if p.c_in_per_group == 1 else "grouped")


def padding_mode(padding) -> str:
    """``"valid"``/``"same"`` for those strings, else ``"explicit"``."""
    return padding if padding in ("valid", "same") else "explicit"


TUPLE_FIELDS = {"dtypes": tuple(DTYPES), "layouts": LAYOUTS, "weight_layouts": LAYOUTS, "padding_modes": PADDING_MODES,
           "group_modes": GROUP_MODES, "precisions": (None, *FLOAT32_PRECISIONS)}


@dataclass(frozen=True)
class Capabilities:
    """What an implementation claims to compute, as the strategies and checks read it.

    - ``dtypes``, ``layouts`` (input), ``weight_layouts``, ``padding_modes`` (explicit / "valid" / "same"),
      ``group_modes`` (plain / grouped / depthwise): the choices drawn;
    - ``precisions``: the float32 arithmetic it is checked in (names of
      :data:`fastconv.precision.FLOAT32_PRECISIONS`; None: what torch's ``F.conv2d`` uses on the device, i.e.
      TF32 on CUDA at PyTorch's defaults, exact float32 on the CPU); an implementation that ``takes_precision``
      is called with each, others are only checked against its error model;
    - ``stride``, ``dilation``, ``bias``, ``unbatched`` (3-D input): whether drawn at all;
    - ``large_offsets``: reads inputs whose elements lie 2**31 or more elements apart (64-bit offsets);
    - ``output_format``: ``"torch"`` (the memory format ``F.conv2d`` returns) or ``"any"`` dense layout;
    - ``raises_like_torch``: invalid arguments raise torch's exception types (the error-input tests);
    - ``deterministic``: identical calls give identical bits (else: within the error model of each other);
    - ``side_streams``: may run work on CUDA streams other than the caller's (joined before it returns);
    - ``tf32_to_nearest``: in ``"tf32"`` it rounds both operands to TF32 to nearest and accumulates in float32
      (tensor cores), or computes in plain float32: checked to float32's accuracy against both, not only
      within the looser TF32 error model (which a rounded accumulator or truncated operands can pass);
    - ``limits``: bounds on sizes (``max_kernel``, ``max_stride``... see :data:`LIMIT_NAMES`);
    - ``supports``: an optional predicate ``(problem, precision) -> bool`` for what the fields cannot say.
    """

    dtypes: tuple[str, ...] = tuple(DTYPES)
    precisions: tuple[str | None, ...] = (None,)
    layouts: tuple[str, ...] = LAYOUTS
    weight_layouts: tuple[str, ...] = LAYOUTS
    padding_modes: tuple[str, ...] = PADDING_MODES
    group_modes: tuple[str, ...] = GROUP_MODES
    stride: bool = True
    dilation: bool = True
    bias: bool = True
    unbatched: bool = True
    large_offsets: bool = True
    output_format: str = "torch"
    raises_like_torch: bool = True
    deterministic: bool = True
    side_streams: bool = False
    tf32_to_nearest: bool = False
    limits: Mapping[str, int] = field(default_factory=dict)
    supports: Callable[[ConvProblem, str | None], bool] | None = field(default=None, compare=False)

    def __post_init__(self):
        for name, allowed in TUPLE_FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence) or not value:
                raise ValueError(f"Capabilities.{name} must be a non-empty sequence of {allowed}, got {value!r}")
            bad = [v for v in value if v not in allowed]
            if bad:
                raise ValueError(f"Capabilities.{name}: unknown {bad}; choose from {allowed}")
            object.__setattr__(self, name, tuple(dict.fromkeys(value)))
        if self.output_format not in OUTPUT_FORMATS:
            raise ValueError(f"Capabilities.output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}")
        for k, v in self.limits.items():
            if k not in LIMIT_NAMES or isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Capabilities.limits: {k}={v!r}; keys {LIMIT_NAMES}, values ints >= 1")
        object.__setattr__(self, "limits", dict(self.limits))

    def replace(self, **changes) -> Capabilities:
        return dataclasses.replace(self, **changes)

    def strategy_kwargs(self) -> dict:
        """Keyword arguments of :func:`fastconv.testing.strategies.conv_problems` that draw only what this
        claims (``limits`` as a dict of ShapeLimits fields; the predicate is applied as a filter)."""
        limits = dict(self.limits)
        if not self.stride:
            limits["max_stride"] = 1
        if not self.dilation:
            limits["max_dilation"] = 1
        if set(self.group_modes) == {"plain"}:
            limits["max_groups"] = 1
        return dict(dtypes=self.dtypes, layouts=self.layouts, weight_layouts=self.weight_layouts,
                    padding_modes=self.padding_modes, group_modes=self.group_modes, allow_bias=self.bias,
                    allow_unbatched=self.unbatched, limits=limits)

    def untested(self) -> list[str]:
        """What the suite does not draw for this implementation (reported in the test summary)."""
        out = []
        for name, allowed in TUPLE_FIELDS.items():
            missing = [str(v) for v in allowed if v not in getattr(self, name) and v is not None]
            if missing and name != "precisions":
                out.append(f"{name}: {', '.join(missing)}")
        if self.large_offsets and "strided" not in self.layouts:
            out.append("offsets >= 2**31 elements (tested through strided views, not claimed)")
        for flag in ("stride", "dilation", "bias", "unbatched", "large_offsets", "raises_like_torch"):
            if not getattr(self, flag):
                out.append({"unbatched": "unbatched (3-D) input", "large_offsets": "offsets >= 2**31 elements",
                            "raises_like_torch": "error-input tests"}.get(flag, flag))
        if self.output_format != "torch":
            out.append("output memory format (any dense layout accepted)")
        if self.limits:
            out.append("sizes beyond " + ", ".join(f"{k}={v}" for k, v in sorted(self.limits.items())))
        if self.supports is not None:
            out.append("problems its supports() predicate rejects")
        return out

    def unsupported(self, problem: ConvProblem, *, padding=None, layout: str = "nchw", weight_layout: str = "nchw",
                    unbatched: bool = False, precision: str | None = None) -> str | None:
        """Why this does not claim a call (None: it does)."""
        p = problem
        checks = [
            (p.dtype in self.dtypes, f"dtype {p.dtype}"),
            (layout in self.layouts, f"input layout {layout}"),
            (weight_layout in self.weight_layouts, f"weight layout {weight_layout}"),
            (padding_mode(padding) in self.padding_modes, f"padding {padding_mode(padding)}"),
            (group_mode(p) in self.group_modes, f"groups ({group_mode(p)})"),
            (self.stride or (p.stride_h, p.stride_w) == (1, 1), "stride"),
            (self.dilation or (p.dil_h, p.dil_w) == (1, 1), "dilation"),
            (self.bias or not p.has_bias, "bias"),
            (self.unbatched or not unbatched, "unbatched input"),
            (p.dtype != "float32" or precision in self.precisions, f"precision {precision}"),
        ]
        sizes = dict(max_batch=p.batch, max_groups=p.groups, max_channels=max(p.c_in_per_group, p.c_out_per_group),
                     max_kernel=max(p.kh, p.kw), max_stride=max(p.stride_h, p.stride_w),
                     max_dilation=max(p.dil_h, p.dil_w),
                     max_padding=max(p.pad_h, p.pad_w, p.pad_h_end, p.pad_w_end))
        checks += [(sizes[k] <= v, f"{k}={v}") for k, v in self.limits.items() if k in sizes]
        for ok, why in checks:
            if not ok:
                return why
        if self.supports is not None and not self.supports(p, precision):
            return "its supports() predicate"
        return None


@dataclass(frozen=True)
class ConvImpl:
    """An implementation under test: ``fn(input, weight, bias, stride, padding, dilation, groups)``.

    ``takes_precision``: ``fn`` also takes ``precision=`` (fastconv's own kernels); ``budget``: the key of the
    strategies' size budgets (``fastconv.testing.strategies.PROFILE_BUDGETS``; interpreted kernels with a
    program per output row need smaller problems); ``report``: an optional callable that returns a line for
    the test summary (e.g. which kernels an adapter found running).
    """

    fn: Callable[..., torch.Tensor]
    name: str
    capabilities: Capabilities = Capabilities()
    takes_precision: bool = False
    budget: str = "default"
    description: str = ""
    report: Callable[[], str] | None = field(default=None, compare=False)

    def __call__(self, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                 precision: str | None = None):
        if self.takes_precision:
            return self.fn(input, weight, bias, stride, padding, dilation, groups, precision=precision)
        return self.fn(input, weight, bias, stride, padding, dilation, groups)

    def precision_choices(self, dtype: str) -> tuple[str | None, ...]:
        """The ``precision`` values drawn with a ``dtype`` input."""
        if dtype == "float32":
            return self.capabilities.precisions
        return (None, *precisions_of(dtype)) if self.takes_precision else (None,)

    def unsupported_case(self, case, precision: str | None = None) -> str | None:
        """Why this does not claim a :class:`~fastconv.testing.ConvCase` in ``precision`` (None: it does)."""
        return self.capabilities.unsupported(case.problem, padding=case.padding, layout=case.layout,
                                             weight_layout=case.weight_layout, unbatched=case.unbatched,
                                             precision=precision)

    def with_capabilities(self, **changes) -> ConvImpl:
        return dataclasses.replace(self, capabilities=self.capabilities.replace(**changes))

    def __repr__(self) -> str:
        return f"ConvImpl({self.name!r})"


# ----------------------------------------------------------------------------------------------------------
# fastconv's own kernels
# ----------------------------------------------------------------------------------------------------------
def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _kernel_supports(name: str):
    def supports(p: ConvProblem, precision: str | None) -> bool:
        return registry()[name].supports(p, resolve_precision(p.dtype, precision, _device()))

    return supports


# Shapes the narrow kernels accept, declared up front so the strategies draw them directly; each kernel's own
# supports() stays the ground truth (applied as the predicate).
_KERNEL_HINTS: dict[str, dict] = {
    "pointwise": dict(limits={"max_kernel": 1, "max_stride": 1}),
    "depthwise": dict(group_modes=("grouped", "depthwise")),
}
# size budgets of the strategies: kernels with a program per output row or pixel block get smaller problems
_KERNEL_BUDGETS = {"direct": "direct", "depthwise": "depthwise"}


def fastconv_impl(backend: str = "auto") -> ConvImpl:
    """fastconv as an implementation under test: ``"auto"`` (the dispatcher's choice) or one kernel."""
    if backend != "auto" and backend not in registry():
        raise ValueError(f"unknown fastconv backend {backend!r}; choose one of {['auto', *sorted(registry())]}")

    def fn(input, weight, bias, stride, padding, dilation, groups, *, precision=None):
        return fastconv_conv2d(input, weight, bias, stride, padding, dilation, groups, backend=backend,
                               precision=precision)

    caps = Capabilities(precisions=(None, *FLOAT32_PRECISIONS), tf32_to_nearest=True, **_KERNEL_HINTS.get(backend, {}),
                        supports=None if backend == "auto" else _kernel_supports(backend))
    budget = "auto" if backend == "auto" else _KERNEL_BUDGETS.get(backend, "default")
    return ConvImpl(fn, f"fastconv:{backend}", caps, takes_precision=True, budget=budget,
                    description="fastconv.conv2d" + ("" if backend == "auto" else f" on its {backend!r} kernel"))


def fastconv_impls() -> list[ConvImpl]:
    """fastconv's dispatcher and every registered kernel (kernels registered later are picked up)."""
    return [fastconv_impl("auto"), *(fastconv_impl(k) for k in sorted(registry()))]


# ----------------------------------------------------------------------------------------------------------
# KernelBench modules
# ----------------------------------------------------------------------------------------------------------
_KB_PARAMS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias")


def kernelbench_impl(model_cls: type, name: str | None = None, capabilities: Capabilities | None = None) -> ConvImpl:
    """A KernelBench-style module class (``ModelNew(in_channels, out_channels, kernel_size, stride=...,
    padding=..., dilation=..., groups=..., bias=...)``) as a function with ``F.conv2d``'s signature.

    Each call builds (once per constructor arguments, device and dtype, then reuses, as KernelBench reuses
    its model across calls) the module, copies the weight and bias into its parameters (found by shape) and
    calls it on the input.  Default capabilities follow KernelBench: float32, contiguous NCHW input, explicit
    padding, and stride / dilation / groups / bias only where the constructor takes them.
    """
    params = inspect.signature(model_cls.__init__).parameters
    names = [n for n in params if n != "self"]
    required = [n for n in names if params[n].default is inspect.Parameter.empty
                and params[n].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    unknown = [n for n in required if n not in _KB_PARAMS]
    if unknown:
        raise TypeError(f"{model_cls.__name__}.__init__ requires {unknown}, which a conv2d call does not give "
                        f"(known: {_KB_PARAMS})")
    if capabilities is None:
        capabilities = Capabilities(
            dtypes=("float32",), layouts=("nchw",), weight_layouts=("nchw",), padding_modes=("explicit",),
            group_modes=GROUP_MODES if "groups" in names else ("plain",), stride="stride" in names,
            dilation="dilation" in names, bias="bias" in names, unbatched=False, raises_like_torch=False)
    models: dict[tuple, torch.nn.Module] = {}

    def pair(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    def fn(input, weight, bias, stride, padding, dilation, groups):
        args = dict(in_channels=input.shape[-3], out_channels=weight.shape[0],
                    kernel_size=(weight.shape[2], weight.shape[3]), stride=pair(stride),
                    padding=padding if isinstance(padding, str) else pair(padding), dilation=pair(dilation),
                    groups=groups, bias=bias is not None)
        kwargs = {k: v for k, v in args.items() if k in names}
        key = (tuple(sorted(kwargs.items())), input.device, input.dtype)
        model = models.get(key)
        if model is None:
            model = models[key] = model_cls(**kwargs).to(device=input.device, dtype=input.dtype)
        found = {p.shape: p for p in model.parameters()}
        with torch.no_grad():
            for t in (weight, bias):
                if t is not None:
                    if t.shape not in found:
                        raise TypeError(f"{model_cls.__name__} has no parameter of shape {list(t.shape)} to take "
                                        f"the {'weight' if t is weight else 'bias'}")
                    found[t.shape].copy_(t)
            return model(input)

    return ConvImpl(fn, name or model_cls.__name__, capabilities, description=f"KernelBench module {model_cls}")
