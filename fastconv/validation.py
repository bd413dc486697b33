"""Argument checking and normalisation for :func:`fastconv.conv2d`.

Everything ``torch.nn.functional.conv2d`` rejects is rejected here, before any kernel is compiled or
launched, with the exception type torch raises (``RuntimeError`` for bad values and shapes, ``TypeError``
for arguments of the wrong Python type), torch's message, and in the order torch checks (torch 2.13 on the
CPU: ATen's ``conv2d`` / ``conv2d_padding``, ``convolution_same``, ``_convolution``, ``check_shape_forward``,
then the CPU backend's own checks), so that a call with several faults reports the one torch reports.

Where torch's wording depends on the backend it picks (zero dilation and a weight of another dtype: oneDNN
and the slow CPU kernel word them differently) the slow kernel's wording is used.  ``TypeError`` messages
name the argument in fastconv's words (torch's argument parser lists every overload).  What torch computes
but fastconv does not (integer and complex dtypes, zero in-channels, empty kernels, zero dilation, a bias
of another dtype with a string padding) raises ``NotImplementedError`` (a ``RuntimeError``, as torch's
own "not implemented for" errors) or torch's dtype message, after all of torch's checks.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch

from .env import interpreter_enabled
from .problem import ConvProblem, same_padding
from .vocab import DTYPES, dtype_info

__all__ = ["normalize_conv2d_args", "output_channels_last", "check_arg_types", "conv_pair", "conv_padding"]


def _as_int(v) -> int | None:
    """``v`` as an int if torch takes it as one (ints, numpy ints, integer 0-d tensors; not bools)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    # Not operator.index on what is plainly no int: under torch.compile, torch 2.11's Dynamo turns the TypeError
    # it raises into an InternalTorchDynamoError instead of letting the except below see it.
    if isinstance(v, (Sequence, float, complex, str, type(None))):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


def _int_list(name: str, value) -> list[int]:
    """``value`` as the int list torch's argument parser makes of it (an int ``v`` is ``[v, v]``; a sequence keeps
    its length, checked later as torch does); anything else is a ``TypeError``, as torch's parser raises."""
    single = _as_int(value)
    if single is not None:
        return [single, single]
    if isinstance(value, (Sequence, torch.Size)) and not isinstance(value, str):
        vals = [_as_int(v) for v in value]
        if all(v is not None for v in vals):
            return vals
    raise TypeError(f"conv2d(): argument '{name}' must be an int or a tuple of 2 ints, not {value!r}")


# torch's names of dtypes in its messages.  caffe2's type names ("Input type (float) and bias type (double)"):
# torch has no Python accessor for them, so they are listed (tests/test_torch_semantics.py checks each against
# torch's own message); an unlisted dtype falls back to its Python name.
_TYPE_META_NAMES = {
    torch.float32: "float", torch.float64: "double", torch.float16: "c10::Half", torch.bfloat16: "c10::BFloat16",
    torch.int64: "long int", torch.int32: "int", torch.int16: "short int", torch.int8: "signed char",
    torch.uint8: "unsigned char", torch.bool: "bool", torch.complex32: "c10::complex<c10::Half>",
    torch.complex64: "c10::complex<float>", torch.complex128: "c10::complex<double>",
    **{getattr(torch, n): f"c10::{n.capitalize()}" for n in ("float8_e5m2", "float8_e4m3fn", "float8_e5m2fnuz",
                                                            "float8_e4m3fnuz") if hasattr(torch, n)},
}


def _type_meta_name(dtype: torch.dtype) -> str:
    return _TYPE_META_NAMES.get(dtype, str(dtype))


def _scalar_type_name(dtype: torch.dtype) -> str:
    """c10's ScalarType name ("Float", "Half", "ComplexDouble"): the core of the legacy tensor type name."""
    try:
        legacy = torch.empty(0, dtype=dtype).type()  # "torch.FloatTensor"
    except Exception:  # pragma: no cover - a dtype without a legacy type
        return str(dtype)
    return legacy.removeprefix("torch.").removesuffix("Tensor")


def _expand(name: str, values: list[int], dim: int) -> list[int]:
    """torch's ``expand_param_if_needed``: one value serves every spatial dimension, else exactly ``dim``."""
    if len(values) == 1:
        return values * dim
    if len(values) != dim:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {dim} values to match the "
                           f"convolution dimensions, but got {name}={values}")
    return values


def _same_pads(kernel: int, dilation: int) -> tuple[int, int]:
    """torch's split of ``padding="same"`` with C++ integer division (truncation), so that invalid dilations
    reach the checks torch reports them in; for valid ones this is :func:`same_padding`."""
    total = dilation * (kernel - 1)
    if total >= 0:
        return same_padding(kernel, dilation)
    left = -((-total) // 2)
    return left, total - left


def check_arg_types(input, weight, bias, groups) -> int:
    """The Python types of ``conv2d``'s tensor arguments and ``groups`` (TypeError with torch's message);
    returns ``groups`` as an int."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"conv2d(): argument 'input' must be a Tensor, not {type(input).__name__}")
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"conv2d(): argument 'weight' must be a Tensor, not {type(weight).__name__}")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"conv2d(): argument 'bias' must be a Tensor or None, not {type(bias).__name__}")
    g = _as_int(groups)
    if g is None:
        raise TypeError(f"conv2d(): argument 'groups' must be an int, not {groups!r}")
    return g


def conv_pair(name: str, value) -> tuple[int, int]:
    """``stride``/``dilation``/``padding`` (an int or 1-2 ints) as a pair; its values are checked with the shapes
    (:func:`normalize_conv2d_args`, in torch's order).  TypeError or RuntimeError with torch's messages."""
    vals = _expand(name, _int_list(name, value), 2)
    return vals[0], vals[1]


def conv_padding(padding, stride: tuple[int, int], kernel: tuple[int, int],
                 dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """``padding`` (an int, 1-2 ints, ``"valid"`` or ``"same"``) as ``(top, left, bottom, right)``; ``"same"``
    splits as torch does (the odd element after) and needs stride 1.  RuntimeError with torch's messages."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if tuple(stride) != (1, 1):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            (ph, ph_end), (pw, pw_end) = _same_pads(kernel[0], dilation[0]), _same_pads(kernel[1], dilation[1])
            return ph, pw, ph_end, pw_end
        raise RuntimeError(f"Invalid padding string: '{padding}'")
    ph, pw = conv_pair("padding", padding)
    return ph, pw, ph, pw


def output_channels_last(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether torch returns a channels_last output for these operands: when the input or the weight suggests
    it, except for float64 on CUDA, where ATen's cuDNN path keeps float64 in NCHW
    (``cudnn_conv_suggest_memory_format``; its other CUDA paths for float64 write contiguous outputs too)."""
    if input.device.type == "cuda" and torch.float64 in (input.dtype, weight.dtype):
        return False

    def suggests_cl(t: torch.Tensor) -> bool:
        if t.dim() != 4:
            return False
        try:
            from torch._prims_common import suggest_memory_format
        except ImportError:  # pragma: no cover - older torch
            return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
        return suggest_memory_format(t) == torch.channels_last

    return suggests_cl(input) or suggests_cl(weight)


def normalize_conv2d_args(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride,
    padding,
    dilation,
    groups,
) -> tuple[torch.Tensor, bool, ConvProblem]:
    """Validate ``F.conv2d``-style arguments.

    Returns ``(input4d, unbatched, problem)``: the input as a 4-D ``(N, C, H, W)`` view (a 3-D unbatched
    input gets a batch dimension of 1), whether it was unbatched, and the normalised :class:`ConvProblem`.
    """
    groups = check_arg_types(input, weight, bias, groups)

    string_padding = isinstance(padding, str)
    stride = _int_list("stride", stride)
    dilation = _int_list("dilation", dilation)
    if not string_padding:
        padding = _int_list("padding", padding)

    # --- torch's checks, in torch's order (ATen's conv2d / conv2d_padding, convolution_same, _convolution,
    # check_shape_forward, then the CPU backend's own checks), each with torch's message ------------------
    if not string_padding and bias is not None and bias.dtype != input.dtype:
        raise RuntimeError(f"Input type ({_type_meta_name(input.dtype)}) and bias type "
                           f"({_type_meta_name(bias.dtype)}) should be the same")
    if input.dim() not in (3, 4):
        raise RuntimeError(
            f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: {list(input.shape)}"
        )
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    in_shape = list(x.shape)  # the input as torch's checks see it ("same" may pad it at the end first)

    same_pads = None
    if string_padding:
        if padding == "same":
            k = weight.dim()
            if k <= 2:
                raise RuntimeError("weight should have at least three dimensions")
            if groups <= 0:
                raise RuntimeError("non-positive groups is not supported")
            if k != x.dim():
                raise RuntimeError(f"Expected {k}-dimensional input for {k}-dimensional weight{list(weight.shape)}, "
                                   f"but got {x.dim()}-dimensional input of size {in_shape} instead")
            for name, values in (("stride", stride), ("dilation", dilation)):
                if len(values) not in (1, k - 2):
                    raise RuntimeError(f"{name} cannot broadcast to {k - 2} dimensions")
            if any(s != 1 for s in stride):
                raise RuntimeError("padding='same' is not supported for strided convolutions")
            dil = _expand("dilation", dilation, k - 2)
            same_pads = [_same_pads(weight.shape[2 + i], dil[i]) for i in range(k - 2)]
            # torch pads the odd element at the end of the input, then convolves with the leading padding
            in_shape = in_shape[:2] + [n + right - left for n, (left, right) in zip(in_shape[2:], same_pads)]
            padding = [left for left, _ in same_pads]
        elif padding == "valid":
            padding = [0]
        else:
            raise RuntimeError(f"Invalid padding string: '{padding}'")

    if weight.dim() < 3:
        raise RuntimeError("weight should have at least three dimensions")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    dim = weight.dim() - 2
    stride = _expand("stride", stride, dim)
    padding = _expand("padding", padding, dim)
    dilation = _expand("dilation", dilation, dim)
    if not string_padding and dim != 2:  # ATen's conv2d passes output_padding [0, 0] (the string paths [0])
        _expand("output_padding", [0, 0], dim)

    if min(padding) < 0:
        raise RuntimeError("negative padding is not supported")
    if min(stride) <= 0:
        raise RuntimeError("non-positive stride is not supported")
    if min(dilation) < 0:
        raise RuntimeError("dilation should be greater than zero")
    w_shape = list(weight.shape)
    if weight.dim() != x.dim():
        raise RuntimeError(f"Expected {weight.dim()}-dimensional input for {weight.dim()}-dimensional weight "
                           f"{w_shape}, but got {x.dim()}-dimensional input of size {in_shape} instead")
    c_out, c_in_g, kh, kw = w_shape
    n, c_in = in_shape[:2]
    if c_out < groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be at least {groups} at dimension 0, "
                           f"but got weight of size {w_shape} instead")
    if c_out % groups != 0:  # torch prints this shape in double brackets
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size [{w_shape}] instead")
    if c_in != c_in_g * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {w_shape}, expected input{in_shape} to have "
            f"{c_in_g * groups} channels, but got {c_in} channels instead"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != c_out):
        raise RuntimeError(
            f"Given weight of size {w_shape}, expected bias to be 1-dimensional with {c_out} elements, "
            f"but got bias of size {list(bias.shape)} instead"
        )
    padded = [size + 2 * pad for size, pad in zip(in_shape[2:], padding)]
    extent = [d * (k - 1) + 1 for d, k in zip(dilation, (kh, kw))]
    if any(p < e for p, e in zip(padded, extent)):
        raise RuntimeError(
            f"Calculated padded input size per channel: ({padded[0]} x {padded[1]}). Kernel size: "
            f"({extent[0]} x {extent[1]}). Kernel size can't be greater than actual input size"
        )
    # CPU backend checks (torch returns an empty or bias-only result for zero batch/channels before them)
    if n > 0 and c_in > 0:
        if math.prod(in_shape) == 0:  # padding can make an empty image "large enough": torch still refuses
            raise RuntimeError(
                f"Only zero batch or zero channel inputs are supported, but got input shape: {in_shape}"
            )
        if kh < 1 or kw < 1:  # torch's dilated kernel (any dilation != 1) and its plain one word it apart
            raise RuntimeError("kernel size should be greater than zero, but got " + (
                f"{[kh, kw]}" if dilation != [1, 1] else f"kernel_height: {kh} kernel_width: {kw}"))
        if min(dilation) < 1:
            raise RuntimeError(f"dilation should be greater than zero, but got {dilation}")
    if weight.dtype != input.dtype:
        raise RuntimeError(f"expected scalar type {_scalar_type_name(input.dtype)} but found "
                           f"{_scalar_type_name(weight.dtype)}")

    # --- what fastconv computes (torch computes more: these are fastconv's own refusals) ---------------------
    if dtype_info(input.dtype) is None:
        raise NotImplementedError(
            f"fastconv.conv2d: input dtype {input.dtype} is not supported ({', '.join(DTYPES)} are)"
        )
    if bias is not None and bias.dtype != input.dtype:  # torch accepts it with a string padding; fastconv not
        raise RuntimeError(f"Input type ({_type_meta_name(input.dtype)}) and bias type "
                           f"({_type_meta_name(bias.dtype)}) should be the same")
    if c_in_g < 1 or kh < 1 or kw < 1 or min(dilation) < 1:
        raise NotImplementedError(f"fastconv.conv2d: weight of size {w_shape} with dilation={dilation}: "
                                  f"zero in-channels per group, an empty kernel or a zero dilation are not supported")
    if weight.device != input.device:
        raise RuntimeError(
            f"Input and weight should be on the same device, but got input on {input.device} "
            f"and weight on {weight.device}"
        )
    if bias is not None and bias.device != input.device:
        raise RuntimeError(
            f"Input and bias should be on the same device, but got input on {input.device} and bias on {bias.device}"
        )
    for name, t in (("input", input), ("weight", weight), ("bias", bias)):
        if t is not None and t.layout != torch.strided:
            raise RuntimeError(f"fastconv.conv2d: {name} must be a dense strided tensor, got layout {t.layout}")

    # --- where it can run ---------------------------------------------------------------------------
    if input.device.type == "cpu" and not interpreter_enabled():
        raise RuntimeError(
            "fastconv.conv2d runs Triton kernels: pass CUDA tensors, or run on the CPU in Triton's interpreter "
            "by setting TRITON_INTERPRET=1 in the environment before fastconv (and triton) are imported"
        )
    if input.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"fastconv.conv2d: unsupported device {input.device} (cuda, or cpu with TRITON_INTERPRET=1)")

    sh, sw = stride
    dh, dw = dilation
    h, w = x.shape[2:]
    if same_pads is not None:
        (ph, ph_end), (pw, pw_end) = same_pads
    else:
        ph, pw = padding
        ph_end, pw_end = ph, pw

    problem = ConvProblem(
        batch=n, c_in=c_in, h=h, w=w, c_out=c_out, kh=kh, kw=kw,
        stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, pad_h_end=ph_end, pad_w_end=pw_end,
        dil_h=dh, dil_w=dw, groups=groups, dtype=dtype_info(input.dtype).name, has_bias=bias is not None,
        channels_last=output_channels_last(x, weight),
    )
    return x, unbatched, problem
