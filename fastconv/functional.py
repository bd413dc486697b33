"""``fastconv.conv2d``: the semantics of ``torch.nn.functional.conv2d`` on fastconv's Triton kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dispatch import resolve_precision, select_kernel
from .problem import ConvProblem
from .tuning.autotuner import choose_config
from .validation import normalize_conv2d_args

__all__ = ["conv2d"]


def _layout(x: torch.Tensor) -> str:
    if x.is_contiguous():
        return "nchw"
    if x.is_contiguous(memory_format=torch.channels_last):
        return "nhwc"
    return "strided"


def _forward(x, weight, bias, p: ConvProblem, precision: str, backend: str | None) -> torch.Tensor:
    """Allocate the output in torch's memory format, pick kernel and config, launch."""
    fmt = torch.channels_last if p.channels_last else torch.contiguous_format
    out = torch.empty(p.output_shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    if bias is not None:
        bias = bias.contiguous()  # kernels index the bias as b_ptr + channel (torch accepts any strides)
    kernel = select_kernel(p, precision, backend)

    def run(cfg):  # one launch into a scratch buffer, for timing candidate configs
        kernel(x, weight, bias, p, precision, torch.empty_like(out), cfg)

    config = choose_config(kernel, p, precision, _layout(x), run, x.device)
    return kernel(x, weight, bias, p, precision, out, config)


class _Conv2dFunction(torch.autograd.Function):
    """Forward on fastconv's kernels; backward through torch's own conv2d gradient (recomputed)."""

    @staticmethod
    def forward(ctx, x, weight, bias, p, precision, backend):
        ctx.save_for_backward(x, weight, bias)
        ctx.problem = p
        return _forward(x, weight, bias, p, precision, backend)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias = ctx.saved_tensors
        p: ConvProblem = ctx.problem
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(t.requires_grad) for t in (x, weight)]
            b = bias.detach().requires_grad_(bias.requires_grad) if bias is not None else None
            y = F.conv2d(leaves[0], leaves[1], b, (p.stride_h, p.stride_w), p.torch_padding,
                         (p.dil_h, p.dil_w), p.groups)
            wanted = [t for t in (*leaves, b) if t is not None and t.requires_grad]
            grads = iter(torch.autograd.grad(y, wanted, grad_out)) if wanted else iter(())
        out = [next(grads) if t is not None and t.requires_grad else None for t in (*leaves, b)]
        return out[0], out[1], out[2], None, None, None


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
        precision: float32 arithmetic, ``"tf32"`` / ``"ieee"`` / ``"tf32x3"``; default follows
            ``torch.backends.cudnn.allow_tf32`` like ``F.conv2d`` does.

    Returns:
        ``(N, C_out, H_out, W_out)`` (or ``(C_out, H_out, W_out)``) in the dtype and memory format torch gives.
    """
    x, unbatched, p = normalize_conv2d_args(input, weight, bias, stride, padding, dilation, groups)
    prec = resolve_precision(p.dtype, precision)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (input, weight, bias))
    if needs_grad:
        out = _Conv2dFunction.apply(x, weight, bias, p, prec, backend)
    else:
        out = _forward(x, weight, bias, p, prec, backend)
    return out.squeeze(0) if unbatched else out
