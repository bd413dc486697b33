"""Everything torch rejects, fastconv rejects: same exception type, a message naming the argument, and
nothing launched."""

from __future__ import annotations

import contextlib
from unittest import mock

import pytest
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
    message = str(info.value).lower()
    assert call.keyword in message, f"{call.kind}: the message does not name {call.keyword!r}: {info.value}"
