"""``fastconv.conv2d``: the semantics of ``torch.nn.functional.conv2d`` on fastconv's Triton kernels, and
``fastconv.plan``: what such a call runs (problem, kernel, config, precision, layout passes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .dispatch import backend_name, registry_generation, select_kernel
from .kernels.config import KernelConfig
from .precision import Precision, cudnn_conv_allows_tf32, current_override, resolve_precision
from .problem import ConvProblem
from .tuning.autotuner import choose_config, config_forced
from .validation import normalize_conv2d_args
from .vocab import layout_of

__all__ = ["conv2d", "plan", "ConvPlan", "forget_plans"]


@dataclass(frozen=True)
class ConvPlan:
    """What one ``fastconv.conv2d`` call signature runs (returned by :func:`plan`).

    - ``problem``: the validated, normalised :class:`~fastconv.ConvProblem`;
    - ``kernel``, ``config``: the kernel's name and the launch config it uses (``config_source``:
      ``"heuristic"`` untimed, the default on a GPU; ``"timed"`` by the autotuner now (``FASTCONV_AUTOTUNE=1``
      or :func:`fastconv.tune`); ``"memory"`` / ``"disk"`` / ``"loaded"`` tuned before, in this process, in an
      earlier one, or in a tuning file; ``"default"`` the first candidate (interpreter, or a single
      candidate); ``"forced"``; see :mod:`fastconv.tuning.autotuner`);
    - ``precision``: the arithmetic (:class:`~fastconv.precision.Precision`);
    - ``input_layout``: ``"nchw"``, ``"nhwc"`` or ``"strided"``;
    - ``layout_passes``: extra passes over the input before the kernel (e.g. an NHWC / TF32-rounding copy);
    - ``cached``: whether the plan was already memoised in this process (a later call skips validation,
      kernel and config choice).
    """

    problem: ConvProblem
    kernel: str
    precision: Precision
    config: KernelConfig
    config_source: str
    input_layout: str
    layout_passes: tuple[str, ...]
    cached: bool

    def to_json(self) -> dict:
        return {"problem": self.problem.short(), "kernel": self.kernel, "precision": str(self.precision),
                "config": str(self.config), "config_source": self.config_source, "input_layout": self.input_layout,
                "layout_passes": list(self.layout_passes), "cached": self.cached}

    def __str__(self) -> str:
        passes = " + ".join(self.layout_passes) if self.layout_passes else "none"
        return (f"{self.problem.short()}: {self.kernel} {self.config} ({self.config_source}), precision "
                f"{self.precision}, input {self.input_layout}, layout passes: {passes}")


class _Plan:
    """A memoised call signature: validated problem, precision, kernel and (once chosen) config and launcher.

    Validation, kernel choice and config choice depend only on shapes, strides, dtypes, devices, the conv
    arguments, the backend and the precision, so a call whose signature was seen before skips them: that
    keeps the host cost of a small convolution near the launch cost.
    """

    __slots__ = ("unbatched", "problem", "precision", "kernel", "input_layout", "config", "config_source",
                 "launch")

    def __init__(self, unbatched: bool, problem: ConvProblem, precision: Precision, kernel, input_layout: str):
        self.unbatched, self.problem, self.precision, self.kernel = unbatched, problem, precision, kernel
        self.input_layout = input_layout
        self.config: KernelConfig | None = None
        self.config_source = ""
        self.launch = None  # kernel.launcher(problem, precision, config), once the config is chosen

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """An uninitialised output in the memory format torch would return."""
        p = self.problem
        fmt = torch.channels_last if p.channels_last else torch.contiguous_format
        return torch.empty(p.output_shape, dtype=x.dtype, device=x.device, memory_format=fmt)

    def launcher(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        """The launch callable ``(x, weight, bias, out)``: choose the config once per plan (the tuner may time
        candidates with these tensors), bind it; a forced config (tests) is never memoised."""
        forced = config_forced()
        if self.launch is not None and not forced:
            return self.launch
        p, kernel, precision = self.problem, self.kernel, self.precision
        scratch = self.output(x)

        def run(cfg):  # one launch into a scratch buffer, for timing candidate configs
            kernel(x, weight, bias, p, precision, scratch, cfg)

        choice = choose_config(kernel, p, precision, self.input_layout, run, x.device)
        launch = kernel.launcher(p, precision, choice.config)
        if not forced:
            self.config, self.config_source, self.launch = choice.config, choice.source, launch
        return launch


_PLANS: dict[tuple, _Plan] = {}
_MAX_PLANS = 4096


def forget_plans() -> None:
    """Drop every memoised plan, so the next call of each signature chooses its config again (after
    :func:`fastconv.tune` or :func:`fastconv.load_tuning` changed the choices)."""
    _PLANS.clear()


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def _plan_key(input, weight, bias, stride, padding, dilation, groups, backend, precision) -> tuple | None:
    """The memo key of a call, or None when its arguments cannot key one (validation then decides)."""
    try:
        key = (input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.stride(), weight.dtype,
               weight.device, None if bias is None else (bias.shape, bias.stride(), bias.dtype, bias.device),
               _hashable(stride), _hashable(padding), _hashable(dilation), groups,
               backend if backend is not None else backend_name(), precision, current_override(),
               cudnn_conv_allows_tf32(), registry_generation())
        hash(key)
    except (AttributeError, TypeError):
        return None
    return key


def _make_plan(input, weight, bias, stride, padding, dilation, groups, backend, precision) -> _Plan:
    x, unbatched, p = normalize_conv2d_args(input, weight, bias, stride, padding, dilation, groups)
    prec = resolve_precision(p.dtype, precision, x.device)
    return _Plan(unbatched, p, prec, select_kernel(p, prec, backend), layout_of(x))


def _lookup(input, weight, bias, stride, padding, dilation, groups, backend, precision) -> tuple[_Plan, bool]:
    """The plan of a call signature (memoised) and whether it was memoised already."""
    key = _plan_key(input, weight, bias, stride, padding, dilation, groups, backend, precision)
    plan = _PLANS.get(key) if key is not None else None
    if plan is not None:
        return plan, True
    plan = _make_plan(input, weight, bias, stride, padding, dilation, groups, backend, precision)
    if key is not None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan, False


def _run(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, plan: _Plan) -> torch.Tensor:
    """Allocate the output in torch's memory format and launch (``x`` 4-D)."""
    out = plan.output(x)
    if out.numel() == 0:
        return out
    if bias is not None:
        bias = bias.contiguous()  # kernels index the bias as b_ptr + channel (torch accepts any strides)
    plan.launcher(x, weight, bias)(x, weight, bias, out)
    return out


class _Conv2dFunction(torch.autograd.Function):
    """Forward on fastconv's kernels; backward through torch's own conv2d gradient kernel
    (``aten.convolution_backward``, what ``F.conv2d``'s autograd calls; no forward recomputed)."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan):
        ctx.save_for_backward(x, weight)
        ctx.problem = plan.problem
        return _run(x, weight, bias, plan)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        p: ConvProblem = ctx.problem
        padding = [p.pad_h, p.pad_w]
        asymmetric = (p.pad_h, p.pad_w) != (p.pad_h_end, p.pad_w_end)
        if asymmetric:  # "same" with an even extent: pad explicitly, as F.conv2d itself does
            x = F.pad(x, (p.pad_w, p.pad_w_end, p.pad_h, p.pad_h_end))
            padding = [0, 0]
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], p.has_bias and ctx.needs_input_grad[2]]
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad_out, x, weight, [p.c_out] if p.has_bias else None, [p.stride_h, p.stride_w], padding,
            [p.dil_h, p.dil_w], False, [0, 0], p.groups, mask)
        if asymmetric and gx is not None:
            gx = gx[:, :, p.pad_h:p.pad_h + p.h, p.pad_w:p.pad_w + p.w]
        return gx, gw, gb, None


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1, *, backend: str | None = None, precision: str | None = None) -> torch.Tensor:
    """2-D convolution with the semantics of :func:`torch.nn.functional.conv2d`.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; float32, float16, bfloat16 (or float64);
            any strides.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride, dilation: int or pair of ints, >= 1.
        padding: int or pair of ints >= 0, or ``"valid"`` / ``"same"`` (stride 1 only), as torch.
        groups: divides ``C_in`` and ``C_out``.
        backend: kernel name (``"direct"``, ``"igemm"``, ...) or ``"auto"``; default from :func:`use_backend`.
        precision: float32 arithmetic, ``"tf32"`` / ``"ieee"`` / ``"tf32x3"``; default: what torch computes
            on the input's device (see :mod:`fastconv.precision`).

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)``) in the dtype and memory format torch gives.
    """
    plan, _ = _lookup(input, weight, bias, stride, padding, dilation, groups, backend, precision)
    x = input.unsqueeze(0) if plan.unbatched else input
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, weight, bias))
    if needs_grad:
        out = _Conv2dFunction.apply(x, weight, bias, plan)
    else:
        out = _run(x, weight, bias, plan)
    return out.squeeze(0) if plan.unbatched else out


def plan(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
         dilation=1, groups: int = 1, *, backend: str | None = None, precision: str | None = None) -> ConvPlan:
    """What ``fastconv.conv2d`` with these arguments runs, as a :class:`ConvPlan`, without computing it.

    The plan is made (and memoised) exactly as a call makes it: the arguments are validated (the same
    exceptions), the kernel chosen, and the config chosen, which on a GPU may time candidate configs on
    these tensors as a first call would.
    """
    p, cached = _lookup(input, weight, bias, stride, padding, dilation, groups, backend, precision)
    x = input.unsqueeze(0) if p.unbatched else input
    if p.launch is None or config_forced():
        p.launcher(x, weight, bias.contiguous() if bias is not None else None)
    config = p.config if p.config is not None else choose_config(
        p.kernel, p.problem, p.precision, p.input_layout, None, x.device).config  # forced: never timed
    return ConvPlan(p.problem, p.kernel.name, p.precision, config, p.config_source or "forced", p.input_layout,
                    p.kernel.layout_passes(p.problem, p.precision, config, p.input_layout), cached)
