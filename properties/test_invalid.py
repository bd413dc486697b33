"""Everything torch rejects, an implementation that claims ``raises_like_torch`` rejects with the same
exception type and a message naming the argument; fastconv gives torch's message itself, and launches
nothing.

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

from fastconv.kernels import REGISTRY
from fastconv.testing.strategies import InvalidCall, examples, invalid_conv_problems

from .harness import DEVICE, require_flag

pytestmark = pytest.mark.property


def _no_launch(*args, **kwargs):
    raise AssertionError("a kernel was launched for an invalid problem")


@settings(max_examples=examples("invalid"))
@given(call=invalid_conv_problems())
def test_invalid_problems_raise_what_torch_raises(conv_impl, call: InvalidCall):
    require_flag(conv_impl, "raises_like_torch", "torch's exceptions for invalid arguments")
    if conv_impl.name.startswith("fastconv:") and conv_impl.name != "fastconv:auto":
        pytest.skip("fastconv's kernels share one validation, tested through fastconv:auto")
    expected = call.torch_error()
    assert expected is not None, f"the strategy drew a call torch accepts: {call}"
    args, kwargs = call.make(DEVICE)
    with contextlib.ExitStack() as stack:
        for kernel in REGISTRY.values():
            for method in ("launch", "launcher"):
                stack.enter_context(mock.patch.object(kernel, method, _no_launch))
        with pytest.raises(expected) as info:
            conv_impl(*args, **kwargs)
    assert type(info.value) is expected
    message = str(info.value)
    if call.kind == "arg_type" or conv_impl.name != "fastconv:auto":
        assert call.keyword in message.lower(), f"{call.kind}: the message does not name {call.keyword!r}: {message}"
        return
    cpu_args, cpu_kwargs = call.make("cpu")
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with pytest.raises(expected) as torch_info:
            F.conv2d(*cpu_args, **cpu_kwargs)
    finally:
        torch.backends.mkldnn.enabled = saved
    assert message == str(torch_info.value), f"{call.kind}: not torch's message"
