"""``fastconv.conv2d``: the semantics of ``torch.nn.functional.conv2d`` on fastconv's Triton kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import backend_name, current_precision, registry_generation, resolve_precision, select_kernel
from .problem import ConvProblem
from .tuning.autotuner import choose_config, config_forced
from .validation import normalize_conv2d_args

__all__ = ["conv2d"]


def _layout(x: torch.Tensor) -> str:
    if x.is_contiguous():
        return "nchw"
    if x.is_contiguous(memory_format=torch.channels_last):
        return "nhwc"
    return "strided"


class _Plan:
    """What one call signature resolves to: validated problem, kernel, and (once chosen) config.

    Validation, kernel choice and config choice depend only on shapes, strides, dtypes, devices, the conv
    arguments, the backend and the precision, so a call whose signature was seen before skips them: that
    keeps the host cost of a small convolution near the launch cost.
    """

    __slots__ = ("unbatched", "problem", "precision", "kernel", "config", "launch")

    def __init__(self, unbatched: bool, problem: ConvProblem, precision: str, kernel):
        self.unbatched, self.problem, self.precision, self.kernel = unbatched, problem, precision, kernel
        self.config = None
        self.launch = None  # kernel.launcher(problem, precision, config), once the config is chosen


_PLANS: dict[tuple, _Plan] = {}
_MAX_PLANS = 4096


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def _plan_key(input, weight, bias, stride, padding, dilation, groups, backend, precision) -> tuple | None:
    if not (isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor)
            and (bias is None or isinstance(bias, torch.Tensor))):
        return None
    key = (input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.stride(), weight.dtype,
           weight.device, None if bias is None else (bias.shape, bias.stride(), bias.dtype, bias.device),
           _hashable(stride), _hashable(padding), _hashable(dilation), groups,
           backend if backend is not None else backend_name(), precision, current_precision(),
           # the float32 default depends on input.device (above) and, on CUDA, on this flag
           torch.backends.cudnn.allow_tf32, registry_generation())
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _run(x, weight, bias, plan: _Plan, backend: str | None) -> torch.Tensor:
    """Allocate the output in torch's memory format, pick the config (once per plan), launch."""
    p, kernel, precision = plan.problem, plan.kernel, plan.precision
    fmt = torch.channels_last if p.channels_last else torch.contiguous_format
    out = torch.empty(p.output_shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    if bias is not None:
        bias = bias.contiguous()  # kernels index the bias as b_ptr + channel (torch accepts any strides)
    launch = plan.launch if not config_forced() else None
    if launch is None:
        def run(cfg):  # one launch into a scratch buffer, for timing candidate configs
            kernel(x, weight, bias, p, precision, torch.empty_like(out), cfg)

        config = choose_config(kernel, p, precision, _layout(x), run, x.device)
        launch = kernel.launcher(p, precision, config)
        if not config_forced():
            plan.config, plan.launch = config, launch
    launch(x, weight, bias, out)
    return out


def _forward(x, weight, bias, p: ConvProblem, precision: str, backend: str | None) -> torch.Tensor:
    """Run a validated problem (``x`` 4-D): choose kernel and config, launch."""
    return _run(x, weight, bias, _Plan(False, p, precision, select_kernel(p, precision, backend)), backend)


class _Conv2dFunction(torch.autograd.Function):
    """Forward on fastconv's kernels; backward through torch's own conv2d gradient kernel
    (``aten.convolution_backward``, what ``F.conv2d``'s autograd calls; no forward recomputed)."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan, backend):
        ctx.save_for_backward(x, weight)
        ctx.problem = plan.problem
        return _run(x, weight, bias, plan, backend)

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
        return gx, gw, gb, None, None


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    *,
    backend: str | None = None,
    precision: str | None = None,
) -> torch.Tensor:
    """2-D convolution with the semantics of :func:`torch.nn.functional.conv2d`.

    Args:
        input: ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``; float32, float16 or bfloat16; any strides.
        weight: ``(C_out, C_in / groups, kH, kW)``.
        bias: optional ``(C_out,)``.
        stride, dilation: int or pair of ints, >= 1.
        padding: int or pair of ints >= 0, or ``"valid"`` / ``"same"`` (stride 1 only), as torch.
        groups: divides ``C_in`` and ``C_out``.
        backend: kernel name (``"direct"``, ``"igemm"``, ...) or ``"auto"``; default from :func:`use_backend`.
        precision: float32 arithmetic, ``"tf32"`` / ``"ieee"`` / ``"tf32x3"``; default as ``F.conv2d``
            computes: ``"ieee"`` for CPU tensors, ``torch.backends.cudnn.allow_tf32`` on CUDA.

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)``) in the dtype and memory format torch gives.
    """
    key = _plan_key(input, weight, bias, stride, padding, dilation, groups, backend, precision)
    plan = _PLANS.get(key) if key is not None else None
    if plan is None:
        x, unbatched, p = normalize_conv2d_args(input, weight, bias, stride, padding, dilation, groups)
        prec = resolve_precision(p.dtype, precision, input.device)
        plan = _Plan(unbatched, p, prec, select_kernel(p, prec, backend))
        if key is not None:
            if len(_PLANS) >= _MAX_PLANS:
                _PLANS.clear()
            _PLANS[key] = plan
    else:
        x = input.unsqueeze(0) if plan.unbatched else input
    unbatched = plan.unbatched
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, weight, bias))
    if needs_grad:
        out = _Conv2dFunction.apply(x, weight, bias, plan, backend)
    else:
        out = _run(x, weight, bias, plan, backend)
    return out.squeeze(0) if unbatched else out
