"""Argument checking and normalisation for :func:`fastconv.conv2d`.

Everything ``torch.nn.functional.conv2d`` rejects is rejected here, before any kernel is compiled or
launched, with the exception type torch raises (``RuntimeError`` for bad values and shapes, ``TypeError``
for arguments of the wrong Python type) and a message that names the argument and its value.  Unsupported
dtypes raise ``NotImplementedError`` (a ``RuntimeError``, as torch's own "not implemented for" errors).
"""

from __future__ import annotations

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
    try:
        return operator.index(v)
    except TypeError:
        return None


def _pair(name: str, value, *, allow_zero: bool) -> tuple[int, int]:
    """An int or a sequence of 1 or 2 ints -> a pair of ints, with torch's messages."""
    single = _as_int(value)
    if single is None and not isinstance(value, (Sequence, torch.Size)) or isinstance(value, str):
        raise TypeError(f"conv2d(): argument '{name}' must be an int or a tuple of 2 ints, not {value!r}")
    vals = [single] if single is not None else [_as_int(v) for v in value]
    if any(v is None for v in vals):
        raise TypeError(f"conv2d(): argument '{name}' must be an int or a tuple of 2 ints, not {value!r}")
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise RuntimeError(
            f"expected {name} to be a single integer value or a list of 2 values to match the convolution "
            f"dimensions, but got {name}={list(value)}"
        )
    if allow_zero and min(vals) < 0:
        raise RuntimeError(f"negative {name} is not supported, got {name}={tuple(vals)}")
    if not allow_zero and min(vals) < 1:
        raise RuntimeError(f"non-positive {name} is not supported, got {name}={tuple(vals)}")
    return vals[0], vals[1]


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
    """``stride`` or ``dilation`` (an int or 1-2 ints, each >= 1) as a pair, with torch's exceptions."""
    return _pair(name, value, allow_zero=False)


def conv_padding(padding, stride: tuple[int, int], kernel: tuple[int, int],
                 dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """``padding`` (an int, 1-2 ints >= 0, ``"valid"`` or ``"same"``) as ``(top, left, bottom, right)``, with
    torch's exceptions; ``"same"`` splits as torch does (the odd element after) and needs stride 1."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if tuple(stride) != (1, 1):
                raise RuntimeError(
                    f"padding='same' is not supported for strided convolutions, got stride={tuple(stride)}"
                )
            (ph, ph_end), (pw, pw_end) = same_padding(kernel[0], dilation[0]), same_padding(kernel[1], dilation[1])
            return ph, pw, ph_end, pw_end
        raise RuntimeError(f"Invalid padding string: {padding!r}, should be one of 'valid' or 'same'")
    ph, pw = _pair("padding", padding, allow_zero=True)
    return ph, pw, ph, pw


def output_channels_last(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether torch returns a channels_last output for these operands (input or weight suggests it)."""
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

    # --- ranks --------------------------------------------------------------------------------------
    if input.dim() not in (3, 4):
        raise RuntimeError(
            f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: {list(input.shape)}"
        )
    if weight.dim() != 4:
        raise RuntimeError(f"Expected 4D weight (out_channels, in_channels/groups, kH, kW) for conv2d, "
                           f"but got weight of size: {list(weight.shape)}")
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input

    # --- dtypes and devices -------------------------------------------------------------------------
    if dtype_info(input.dtype) is None:
        raise NotImplementedError(
            f"fastconv.conv2d: input dtype {input.dtype} is not supported ({', '.join(DTYPES)} are)"
        )
    if weight.dtype != input.dtype:
        raise RuntimeError(
            f"Input type ({input.dtype}) and weight type ({weight.dtype}) should be the same"
        )
    if bias is not None and bias.dtype != input.dtype:
        raise RuntimeError(f"Input type ({input.dtype}) and bias type ({bias.dtype}) should be the same")
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

    # --- conv parameters ----------------------------------------------------------------------------
    sh, sw = conv_pair("stride", stride)
    dh, dw = conv_pair("dilation", dilation)
    if groups < 1:
        raise RuntimeError(f"non-positive groups is not supported, got groups={groups}")

    c_out, c_in_g, kh, kw = weight.shape
    n, c_in, h, w = x.shape
    if c_out < 1 or c_out % groups != 0:
        raise RuntimeError(
            f"Given groups={groups}, expected weight to be at least 1 and divisible by {groups} at dimension 0, "
            f"but got weight of size {list(weight.shape)} instead"
        )
    if c_in_g < 1 or kh < 1 or kw < 1:
        raise RuntimeError(f"Expected weight to have non-zero in_channels/groups and kernel size, "
                           f"but got weight of size {list(weight.shape)}")
    if c_in != c_in_g * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected input{list(x.shape)} to have "
            f"{c_in_g * groups} channels, but got {c_in} channels instead"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != c_out):
        raise RuntimeError(
            f"Given weight of size {list(weight.shape)}, expected bias to be 1-dimensional with {c_out} elements, "
            f"but got bias of size {list(bias.shape)} instead"
        )

    ph, pw, ph_end, pw_end = conv_padding(padding, (sh, sw), (kh, kw), (dh, dw))

    eff_kh, eff_kw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    padded_h, padded_w = h + ph + ph_end, w + pw + pw_end
    if padded_h < eff_kh or padded_w < eff_kw:
        raise RuntimeError(
            f"Calculated padded input size per channel: ({padded_h} x {padded_w}). Kernel size: "
            f"({eff_kh} x {eff_kw}). Kernel size can't be greater than actual input size"
        )
    if n > 0 and (h == 0 or w == 0):  # padding can make an empty image "large enough": torch still refuses
        raise RuntimeError(
            f"Only zero batch or zero channel inputs are supported, but got input shape: {list(x.shape)}"
        )

    # --- where it can run ---------------------------------------------------------------------------
    if input.device.type == "cpu" and not interpreter_enabled():
        raise RuntimeError(
            "fastconv.conv2d runs Triton kernels: pass CUDA tensors, or run on the CPU in Triton's interpreter "
            "by setting TRITON_INTERPRET=1 in the environment before fastconv (and triton) are imported"
        )
    if input.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"fastconv.conv2d: unsupported device {input.device} (cuda, or cpu with TRITON_INTERPRET=1)")

    problem = ConvProblem(
        batch=n, c_in=c_in, h=h, w=w, c_out=c_out, kh=kh, kw=kw,
        stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, pad_h_end=ph_end, pad_w_end=pw_end,
        dil_h=dh, dil_w=dw, groups=groups, dtype=dtype_info(input.dtype).name, has_bias=bias is not None,
        channels_last=output_channels_last(x, weight),
    )
    return x, unbatched, problem
