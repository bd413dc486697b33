"""fastconv as a PyTorch operator, ``torch.ops.fastconv.conv2d``, and ``fastconv.conv2d``, which reaches it where
PyTorch needs an operator.

Why an operator.  ``fastconv.conv2d``'s eager path (:mod:`fastconv.functional`: a memoised plan, a direct launch)
is Python that launches Triton kernels on raw pointers: ``torch.compile`` cannot trace it (graph breaks, or
``fullgraph=True`` fails), ``torch.export`` cannot capture it, and autocast never sees it (autocast acts in the
dispatcher, on operators).  Registered with :mod:`torch.library`, the convolution is one opaque operator with

- a fake implementation (shapes, dtype and torch's output memory format, symbolic shapes included), which also
  validates the arguments with torch's exception types, so tracing fails as the call would;
- autograd: the forward saves input and weight; the backward is torch's own ``aten.convolution_backward``
  (as the eager path's), so it is traceable and ``torch.compile`` compiles it;
- autocast rules (CPU and CUDA): under ``torch.autocast`` the op casts its floating-point operands to
  autocast's dtype exactly as ``F.conv2d`` is cast (float64 and tensors on another device are left alone) and
  runs with autocast off, so the output dtype is ``F.conv2d``'s.  A float32 ``precision`` request (``"tf32"``,
  ``"ieee"``, ``"tf32x3"``) no longer applies once autocast made the operands half: it is dropped there.

Its schema, with every argument explicit and normalised::

    fastconv::conv2d(Tensor input, Tensor weight, Tensor? bias, SymInt[2] stride, SymInt[4] padding,
                     SymInt[2] dilation, int groups, str? backend, str? precision) -> Tensor

``input`` is 4-D (the wrapper handles unbatched input); ``padding`` is ``(top, left, bottom, right)`` (the
bottom/right ones differ only as ``padding="same"`` splits an even extent).  ``backend`` and ``precision`` are
what the caller asked for, ``None`` when nothing was: the op resolves them when it runs, from the same state the
eager path reads (:func:`fastconv.use_backend`, ``$FASTCONV_BACKEND``, torch's TF32 flags).  So a compiled
graph does not bake in the TF32 setting of the moment it was traced: flipping
``torch.backends.cudnn.conv.fp32_precision`` (or ``allow_tf32``) later changes what the op computes, without a
recompile, exactly as it changes what torch's own convolution computes inside a compiled graph.

When :func:`conv2d` uses the op.  A plain eager call (real tensors, no autocast, no dispatch mode, not under
``torch.compile`` / ``torch.export``) keeps the eager path: the op would add dispatcher and Python-op cost to
every call, and a small convolution is bound by host cost (``scripts/host_overhead.py``).  Everything else goes
through the op.  Both compute the same thing: the op's implementation runs the very plan the eager path runs.
Under ``torch.compile`` with Inductor the op is opaque (Inductor fuses around it, not into it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import functional
from .dispatch import available_backends
from .precision import FLOAT32_PRECISIONS, resolve_precision
from .problem import ConvProblem, same_padding
from .validation import check_arg_types, conv_padding, conv_pair, normalize_conv2d_args

__all__ = ["conv2d", "conv2d_op", "op_arguments"]

_SCHEMA = ("(Tensor input, Tensor weight, Tensor? bias, SymInt[2] stride, SymInt[4] padding, SymInt[2] dilation, "
           "int groups, str? backend, str? precision) -> Tensor")


# ----------------------------------------------------------------------------------------------------------
# Arguments: from F.conv2d's forms to the op's, and back to what the eager plan machinery takes
# ----------------------------------------------------------------------------------------------------------
def op_arguments(input: Tensor, weight: Tensor, bias, stride, padding, dilation, groups) -> tuple:
    """``F.conv2d``-style ``stride``, ``padding``, ``dilation``, ``groups`` as the op takes them:
    ``((sh, sw), (top, left, bottom, right), (dh, dw), groups)``, with torch's exceptions for bad types and
    values.  (Shape checks are the op's: its fake and real implementations both run them.)"""
    g = check_arg_types(input, weight, bias, groups)
    try:
        sh, sw = conv_pair("stride", stride)
        dh, dw = conv_pair("dilation", dilation)
        # "same" needs the kernel's extent; a weight that is not 4-D is refused by the op itself
        kernel = (weight.shape[-2], weight.shape[-1]) if weight.dim() == 4 else (1, 1)
        pads = conv_padding(padding, (sh, sw), kernel, (dh, dw))
    except RuntimeError:  # a bad call: report what torch reports first, in torch's order of checks
        normalize_conv2d_args(input, weight, bias, stride, padding, dilation, groups)
        raise
    return (sh, sw), pads, (dh, dw), g


def _padding_argument(padding, weight: Tensor, stride, dilation):
    """The op's four paddings as ``F.conv2d``'s ``padding`` argument: a pair when symmetric, else ``"same"`` (the
    only asymmetric padding ``F.conv2d`` has).  Other asymmetric paddings raise RuntimeError."""
    if len(padding) != 4:
        raise RuntimeError(f"fastconv::conv2d: expected 4 paddings (top, left, bottom, right), got {list(padding)}")
    ph, pw, ph_end, pw_end = padding
    if (ph, pw) == (ph_end, pw_end):
        return ph, pw
    if weight.dim() == 4 and tuple(stride) == (1, 1) and len(dilation) == 2:
        same = (*same_padding(weight.shape[2], dilation[0]), *same_padding(weight.shape[3], dilation[1]))
        if (ph, ph_end, pw, pw_end) == same:
            return "same"
    raise RuntimeError(
        f"fastconv::conv2d: asymmetric padding {list(padding)} (top, left, bottom, right) is supported only as "
        "padding='same' splits an even kernel extent (stride 1)")


def _check(input, weight, bias, stride, padding, dilation, groups, backend, precision) -> ConvProblem:
    """Everything ``fastconv.conv2d`` checks, for the op's (4-D) arguments: torch's exception types."""
    pad = _padding_argument(padding, weight, stride, dilation)
    x, unbatched, p = normalize_conv2d_args(input, weight, bias, stride, pad, dilation, groups)
    if unbatched:
        raise RuntimeError(f"fastconv::conv2d: expected a 4-D (batched) input, got input of size {list(input.shape)}"
                           " (fastconv.conv2d takes unbatched input)")
    if backend is not None and backend not in available_backends():
        raise ValueError(f"fastconv: unknown backend {backend!r}; choose one of {available_backends()}")
    resolve_precision(p.dtype, precision, x.device)  # ValueError for a precision the dtype does not have
    return p


# ----------------------------------------------------------------------------------------------------------
# The operator
# ----------------------------------------------------------------------------------------------------------
# The op's namespace is the package's import name: ``fastconv``.  A second copy imported side by side under
# another name (the performance gate's baseline, ``fastconv_<ref>``) registers its own op instead of
# replacing this one in torch's process-wide registry (whose implementation would then run the copy's code).
_NAMESPACE = __name__.partition(".")[0]


@torch.library.custom_op(f"{_NAMESPACE}::conv2d", mutates_args=(), schema=_SCHEMA)
def conv2d_op(input, weight, bias, stride, padding, dilation, groups, backend, precision):
    """The op's implementation (CPU under Triton's interpreter, CUDA): the eager path's memoised plan."""
    pad = _padding_argument(padding, weight, stride, dilation)
    plan, _ = functional._lookup(input, weight, bias, stride, pad, dilation, groups, backend, precision)
    if plan.unbatched:
        _check(input, weight, bias, stride, padding, dilation, groups, backend, precision)  # raises
    return functional._run(input, weight, bias, plan)


@conv2d_op.register_fake
def _conv2d_fake(input, weight, bias, stride, padding, dilation, groups, backend, precision):
    """Shape, dtype and torch's memory format of the output (symbolic shapes welcome), after the same checks."""
    p = _check(input, weight, bias, stride, padding, dilation, groups, backend, precision)
    return functional.empty_output(p, input)


def _setup_context(ctx, inputs, output):
    input, weight, bias, stride, padding, dilation, groups, _backend, _precision = inputs
    ctx.save_for_backward(input, weight)
    ctx.conv = (stride, padding, dilation, groups, bias is not None)


def _backward(ctx, grad_out):
    x, weight = ctx.saved_tensors
    stride, padding, dilation, groups, has_bias = ctx.conv
    gx, gw, gb = functional.conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups, has_bias,
                                            ctx.needs_input_grad[:3])
    return gx, gw, gb, None, None, None, None, None, None


conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def _autocast_kernel(device_type: str):
    """The op's kernel under autocast on ``device_type``: cast as autocast casts ``F.conv2d`` (floating-point
    tensors on this device, float64 excepted, to autocast's dtype), then run with autocast off."""
    key = getattr(torch._C.DispatchKey, "Autocast" + torch._C._dispatch_key_for_device(device_type))
    excluded = torch._C.DispatchKeySet(key)

    def cast(t, dtype):
        if t is not None and t.is_floating_point() and t.device.type == device_type and t.dtype != torch.float64:
            return t.to(dtype)
        return t

    def kernel(_keyset, input, weight, bias, stride, padding, dilation, groups, backend, precision):
        dtype = torch.get_autocast_dtype(device_type)
        input, weight, bias = cast(input, dtype), cast(weight, dtype), cast(bias, dtype)
        if precision in FLOAT32_PRECISIONS and input.dtype in (torch.float16, torch.bfloat16):
            precision = None  # a float32 precision does not apply to the half operands autocast made
        with torch._C._ExcludeDispatchKeyGuard(excluded):
            return conv2d_op._opoverload(input, weight, bias, stride, padding, dilation, groups, backend, precision)

    return kernel


_LIB = torch.library.Library(_NAMESPACE, "FRAGMENT")  # kept alive with the module: the autocast registrations
for _device in ("cpu", "cuda"):
    _LIB.impl("conv2d", _autocast_kernel(_device), "Autocast" + torch._C._dispatch_key_for_device(_device),
              with_keyset=True)

_OP = conv2d_op._opoverload  # torch.ops.fastconv.conv2d.default


# ----------------------------------------------------------------------------------------------------------
# fastconv.conv2d
# ----------------------------------------------------------------------------------------------------------
_PLAIN = (Tensor, torch.nn.Parameter)
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None) or (
    lambda: torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled())  # torch < 2.4 has no one-call check
_dispatch_modes = torch._C._len_torch_dispatch_stack


def _eager(input, weight, bias) -> bool:
    """Whether a call can take the eager path: not traced by torch.compile / torch.export, no autocast, no
    dispatch mode (fake tensors, make_fx, functionalization, a FlopCounter...), no tensor subclass (fake and
    functional tensors are subclasses).  A few C calls: the eager path keeps its host cost."""
    if torch.compiler.is_compiling() or _any_autocast() or _dispatch_modes():
        return False  # is_compiling first: under Dynamo it is a constant and nothing after it is traced
    return ((type(input) in _PLAIN or not isinstance(input, Tensor))
            and (type(weight) in _PLAIN or not isinstance(weight, Tensor))
            and (bias is None or type(bias) in _PLAIN or not isinstance(bias, Tensor)))


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1, *, backend: str | None = None, precision: str | None = None) -> Tensor:
    """2-D convolution with the semantics of :func:`torch.nn.functional.conv2d`, under ``torch.compile``,
    ``torch.export``, autocast and CUDA graphs too.

    Arguments, shapes and result as :func:`fastconv.functional.conv2d` (input ``(N, C_in, H, W)`` or
    ``(C_in, H, W)``, weight ``(C_out, C_in / groups, kH, kW)``, bias ``(C_out,)``; output
    ``(N, C_out, H_out, W_out)`` in the dtype and memory format torch gives), except that under autocast the
    inputs are cast and the output has autocast's dtype, as with ``F.conv2d``.

    A plain eager call runs :func:`fastconv.functional.conv2d` (the memoised plan and its direct launch);
    under tracing, autocast, a dispatch mode or with tensor subclasses the call goes through the
    ``torch.ops.fastconv.conv2d`` operator (see :mod:`fastconv.ops`).
    """
    if _eager(input, weight, bias):
        return functional.conv2d(input, weight, bias, stride, padding, dilation, groups, backend=backend,
                                 precision=precision)
    stride, padding, dilation, groups = op_arguments(input, weight, bias, stride, padding, dilation, groups)
    unbatched = input.dim() == 3
    out = _OP(input.unsqueeze(0) if unbatched else input, weight, bias, stride, padding, dilation, groups, backend,
              precision)
    return out.squeeze(0) if unbatched else out
