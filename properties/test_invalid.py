"""Everything torch rejects, fastconv rejects: same exception type, torch's message, and nothing launched.

torch's message is taken on the CPU with oneDNN off: where its wording depends on the CPU backend it picks,
fastconv words the error as torch's portable kernel does.  Wrong Python argument types keep fastconv's own
message naming the argument (torch's argument parser lists every overload)."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

import fastconv
from fastconv.kernels import REGISTRY

from .harness import DEVICE
from .strategies import InvalidCall, examples, invalid_conv_problems

pytestmark = pytest.mark.property


def _no_launch(*args, **kwargs):
    raise AssertionError("a kernel was launched for an invalid problem")


@settings(max_examples=examples("invalid"))
@given(call=invalid_conv_problems())
def test_invalid_problems_raise_what_torch_raises(call: InvalidCall):
    expected = call.torch_error()
    assert expected is not None, f"the strategy drew a call torch accepts: {call}"
    args, kwargs = call.make(DEVICE)
    with contextlib.ExitStack() as stack:
        for kernel in REGISTRY.values():
            stack.enter_context(mock.patch.object(kernel, "launch", _no_launch))
        with pytest.raises(expected) as info:
            fastconv.conv2d(*args, **kwargs)
    assert type(info.value) is expected
    if call.kind == "arg_type":
        message = str(info.value).lower()
        assert call.keyword in message, f"{call.kind}: the message does not name {call.keyword!r}: {info.value}"
        return
    cpu_args, cpu_kwargs = call.make("cpu")
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with pytest.raises(expected) as torch_info:
            F.conv2d(*cpu_args, **cpu_kwargs)
    finally:
        torch.backends.mkldnn.enabled = saved
    assert str(info.value) == str(torch_info.value), f"{call.kind}: not torch's message"
