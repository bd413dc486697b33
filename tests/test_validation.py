"""Argument normalisation and bad input: every case the issue lists, against what torch itself does.

Each bad call must raise the exception type and the message torch raises for it (checked by running torch on
the same arguments; OWN_WORDING lists where fastconv words it its own way), before any kernel is launched.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import fastconv
from fastconv.kernels import REGISTRY
from fastconv.validation import normalize_conv2d_args

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def t(*shape, dtype=torch.float32, device=DEVICE):
    return torch.randn(shape, generator=torch.Generator().manual_seed(len(shape))).to(device=device, dtype=dtype)


X, W, B = (2, 4, 6, 6), (8, 4, 3, 3), (8,)


@contextlib.contextmanager
def no_launch():
    def boom(*args, **kwargs):
        raise AssertionError("a kernel was launched for an invalid call")

    with contextlib.ExitStack() as stack:
        for kernel in REGISTRY.values():
            stack.enter_context(mock.patch.object(kernel, "launch", boom))
        yield


# ----------------------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, fields", [
    (dict(stride=2, padding=1, dilation=3), dict(stride_h=2, stride_w=2, pad_h=1, pad_w=1, dil_h=3, dil_w=3)),
    (dict(stride=(1, 2), padding=[0, 1], dilation=(2,)), dict(stride_w=2, pad_w=1, pad_w_end=1, dil_h=2, dil_w=2)),
    (dict(padding="valid"), dict(pad_h=0, pad_w=0, pad_h_end=0, pad_w_end=0)),
    (dict(padding="same"), dict(pad_h=1, pad_w=1, pad_h_end=1, pad_w_end=1)),
    (dict(padding="same", dilation=(1, 2)), dict(pad_h=1, pad_w=2, pad_h_end=1, pad_w_end=2)),
    (dict(stride=torch.Size([2, 1])), dict(stride_h=2, stride_w=1)),
])
def test_arguments_normalise(kwargs, fields):
    args = {**dict(stride=1, padding=0, dilation=1, groups=1), **kwargs}
    x, unbatched, p = normalize_conv2d_args(t(*X), t(*W), t(*B), **args)
    for name, value in fields.items():
        assert getattr(p, name) == value, name
    y = F.conv2d(t(*X), t(*W), t(*B), **args)
    assert p.output_shape == tuple(y.shape) and not unbatched and p.has_bias


@pytest.mark.parametrize("kernel, dilation", [((4, 2), (1, 1)), ((2, 3), (3, 2)), ((1, 6), (1, 1))])
def test_same_padding_splits_like_torch(kernel, dilation):
    """Even effective extents pad one more after than before, as torch does; the output keeps H x W."""
    x, w = t(1, 2, 7, 8), t(3, 2, *kernel)
    _, _, p = normalize_conv2d_args(x, w, None, 1, "same", dilation, 1)
    total_h, total_w = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
    assert (p.pad_h, p.pad_h_end) == (total_h // 2, total_h - total_h // 2)
    assert (p.pad_w, p.pad_w_end) == (total_w // 2, total_w - total_w // 2)
    assert p.output_shape == tuple(F.conv2d(x, w, None, 1, "same", dilation).shape) == (1, 3, 7, 8)
    y = fastconv.conv2d(x, w, None, 1, "same", dilation)
    assert y.shape == (1, 3, 7, 8)
    fastconv.testing.assert_conv_close(y, x, w, None, 1, "same", dilation)


def test_integer_like_arguments_are_taken_as_torch_takes_them():
    """numpy integers and integer 0-d tensors are ints to torch (``__index__``); bools and floats are not."""
    np = pytest.importorskip("numpy")
    x, w = t(1, 4, 7, 7), t(4, 2, 3, 3)
    kwargs = dict(stride=np.int64(2), padding=(np.int32(1), 0), dilation=torch.tensor(1), groups=np.int64(2))
    y = fastconv.conv2d(x, w, None, **kwargs)
    assert y.shape == F.conv2d(x, w, None, **kwargs).shape
    fastconv.testing.assert_conv_close(y, x, w, None, **kwargs)


def test_unbatched_and_groups():
    x, unbatched, p = normalize_conv2d_args(t(4, 5, 5), t(6, 2, 3, 3), None, 1, 0, 1, 2)
    assert unbatched and x.shape == (1, 4, 5, 5) and (p.groups, p.c_in_per_group, p.c_out_per_group) == (2, 2, 3)
    _, _, dw = normalize_conv2d_args(t(1, 4, 5, 5), t(4, 1, 3, 3), None, 1, 0, 1, 4)
    assert dw.is_depthwise


def test_channels_last_detection_matches_torch():
    cl = torch.channels_last
    for x, w in [(t(*X), t(*W)), (t(*X).to(memory_format=cl), t(*W)), (t(*X), t(*W).to(memory_format=cl)),
                 (t(*X)[:, :, ::2], t(*W))]:
        _, _, p = normalize_conv2d_args(x, w, None, 1, 0, 1, 1)
        assert p.channels_last == F.conv2d(x, w).is_contiguous(memory_format=cl) and not (
            p.channels_last and F.conv2d(x, w).is_contiguous())


# ----------------------------------------------------------------------------------------------------------
# bad input: (id, call) -> torch decides the exception type and the message (as torch words it on the CPU);
# fastconv must raise the same.  The keyword is checked only where fastconv keeps its own wording (OWN_WORDING).
# ----------------------------------------------------------------------------------------------------------
BAD = {
    "input rank 2": (lambda: (t(6, 6), t(*W)), {}, "input"),
    "input rank 5": (lambda: (t(1, *X), t(*W)), {}, "input"),
    "weight rank 3": (lambda: (t(*X), t(8, 4, 9)), {}, "weight"),
    "channel mismatch": (lambda: (t(2, 3, 6, 6), t(*W)), {}, "channels"),
    "groups do not divide out-channels": (lambda: (t(2, 4, 6, 6), t(7, 2, 3, 3)), dict(groups=2), "groups"),
    "groups do not divide in-channels": (lambda: (t(2, 5, 6, 6), t(8, 2, 3, 3)), dict(groups=2), "channels"),
    "groups 0": (lambda: (t(*X), t(*W)), dict(groups=0), "groups"),
    "groups -1": (lambda: (t(*X), t(*W)), dict(groups=-1), "groups"),
    "stride 0": (lambda: (t(*X), t(*W)), dict(stride=0), "stride"),
    "stride (1, -1)": (lambda: (t(*X), t(*W)), dict(stride=(1, -1)), "stride"),
    "dilation 0": (lambda: (t(*X), t(*W)), dict(dilation=(0, 1)), "dilation"),
    "dilation -1": (lambda: (t(*X), t(*W)), dict(dilation=(1, -1)), "dilation"),
    "negative padding": (lambda: (t(*X), t(*W)), dict(padding=(1, -1)), "padding"),
    "negative padding before channel mismatch": (lambda: (t(2, 3, 6, 6), t(*W)), dict(padding=-1), "padding"),
    "stride before channel mismatch": (lambda: (t(2, 3, 6, 6), t(*W)), dict(stride=0), "stride"),
    "weight rank 3, same": (lambda: (t(*X), t(8, 4, 9)), dict(padding="same"), "weight"),
    "weight rank 2": (lambda: (t(*X), t(8, 4)), {}, "weight"),
    "bias dtype before input rank": (lambda: (t(6, 6), t(*W), t(8, dtype=torch.float16)), {}, "bias"),
    "unbatched channel mismatch": (lambda: (t(3, 6, 6), t(*W)), {}, "channels"),
    "same: channel mismatch on the padded input": (lambda: (t(2, 3, 6, 6), t(8, 4, 2, 2)), dict(padding="same"),
                                                   "channels"),
    "same: stride of 3 values": (lambda: (t(*X), t(*W)), dict(padding="same", stride=(1, 1, 1)), "stride"),
    "padding of 3 values": (lambda: (t(*X), t(*W)), dict(padding=(1, 1, 1)), "padding"),
    "stride of 0 values": (lambda: (t(*X), t(*W)), dict(stride=()), "stride"),
    "kernel larger than padded input": (lambda: (t(1, 4, 2, 2), t(*W)), {}, "kernel"),
    "dilated kernel larger than input": (lambda: (t(1, 4, 6, 6), t(*W)), dict(dilation=3), "kernel"),
    "empty image": (lambda: (t(2, 4, 0, 6), t(*W)), dict(padding=2), "input"),
    "zero-size kernel": (lambda: (t(*X), t(8, 4, 0, 3)), {}, "weight"),
    "zero out-channels": (lambda: (t(*X), t(0, 4, 3, 3)), {}, "weight"),
    "same with stride 2": (lambda: (t(*X), t(*W)), dict(padding="same", stride=(1, 2)), "same"),
    "unknown padding string": (lambda: (t(*X), t(*W)), dict(padding="full"), "padding"),
    "padding string case": (lambda: (t(*X), t(*W)), dict(padding="SAME"), "padding"),
    "bias size": (lambda: (t(*X), t(*W), t(7)), {}, "bias"),
    "bias rank": (lambda: (t(*X), t(*W), t(8, 1)), {}, "bias"),
    "weight dtype": (lambda: (t(*X), t(*W, dtype=torch.float16)), {}, "weight"),
    "bias dtype": (lambda: (t(*X), t(*W), t(8, dtype=torch.bfloat16)), {}, "bias"),
    "half input, float weight": (lambda: (t(*X, dtype=torch.float16), t(*W)), {}, "weight"),
    "float stride": (lambda: (t(*X), t(*W)), dict(stride=1.5), "stride"),
    "bool groups": (lambda: (t(*X), t(*W)), dict(groups=True), "groups"),
    "None padding": (lambda: (t(*X), t(*W)), dict(padding=None), "padding"),
    "input not a tensor": (lambda: (X, t(*W)), {}, "input"),
}


# Where fastconv words the error its own way, and why.
OWN_WORDING = {
    **dict.fromkeys(("float stride", "bool groups", "None padding", "input not a tensor"),
                    "torch's argument parser lists every overload of conv2d; fastconv names the argument"),
}


def torch_error(*args, **kwargs) -> BaseException:
    """What ``F.conv2d`` raises for these arguments on the CPU.  The message is taken with oneDNN off: where
    torch's CPU wording depends on the backend it picks (oneDNN or its portable kernel, by dtype, sizes and
    thread count: zero dilation, an empty kernel, a weight of another dtype), fastconv words it as the portable
    kernel does.  The exception type is the same either way (checked)."""
    with pytest.raises(Exception) as default:
        F.conv2d(*args, **kwargs)
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with pytest.raises(Exception) as portable:
            F.conv2d(*args, **kwargs)
    finally:
        torch.backends.mkldnn.enabled = saved
    assert type(default.value) is type(portable.value)
    return portable.value


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_what_torch_raises(case):
    make, kwargs, keyword = BAD[case]
    args = make()
    cpu_args = [a.cpu() if isinstance(a, torch.Tensor) else a for a in args]
    expected = torch_error(*cpu_args, **kwargs)
    with no_launch(), pytest.raises(type(expected)) as info:
        fastconv.conv2d(*args, **kwargs)
    assert type(info.value) is type(expected)
    if case in OWN_WORDING:
        assert keyword in str(info.value).lower(), f"message does not name {keyword!r}: {info.value}"
    else:
        assert str(info.value) == str(expected)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int8, torch.bool, torch.complex64])
def test_unsupported_dtypes_are_refused_clearly(dtype):
    """torch computes some of these (integers on the CPU); fastconv does not: NotImplementedError
    (a RuntimeError, as torch's own "not implemented for" errors), naming the dtype and the supported ones."""
    x, w = t(*X).to(dtype), t(*W).to(dtype)
    with no_launch(), pytest.raises(NotImplementedError) as info:
        fastconv.conv2d(x, w)
    assert str(dtype) in str(info.value) and "float32" in str(info.value)


@pytest.mark.gpu
def test_device_mismatch_raises_what_torch_raises():
    for args in [(t(*X), t(*W, device="cpu")), (t(*X), t(*W), t(8, device="cpu"))]:
        with pytest.raises(RuntimeError) as torch_info:
            F.conv2d(*args)
        with no_launch(), pytest.raises(type(torch_info.value), match="device|same"):
            fastconv.conv2d(*args)


def test_bad_input_to_modules():
    m = fastconv.Conv2d(4, 8, 3)
    with no_launch(), pytest.raises(RuntimeError, match="channels"):
        m(t(1, 3, 6, 6, device="cpu"))
    with pytest.raises(ValueError):
        fastconv.Conv2d(4, 8, 3, padding="same", stride=2)  # nn.Conv2d's own check
