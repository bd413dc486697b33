"""Planted cheating implementations, each rejected by the check meant for it (and an honest one accepted).

KernelBench's own checker (``torch.rand`` inputs, ``allclose`` at 1e-2) is fooled by the cheats its
maintainers list: inputs mutated in place, outputs cached across calls, work hidden on a side stream.
Each cheat below computes the right numbers for the call a naive checker makes and breaks the contract in
one way; the test names the check of :mod:`fastconv.testing.integrity` (or the reference check with the
strategies' value distributions) that rejects it.  Side streams need CUDA: on the CPU the same escape (the
result written after the call returned) is planted with a thread.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, find, settings
from hypothesis.errors import NoSuchExample

from fastconv.problem import ConvProblem
from fastconv.testing import (
    Capabilities,
    ConvCase,
    ConvImpl,
    IntegrityError,
    Watch,
    check_fresh_values,
    check_repeatable,
    check_streams,
    load_impl,
)
from fastconv.testing.strategies import impl_cases
from properties.test_reference import check_case

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASE = ConvCase(ConvProblem.make(2, 3, 3, 6, 6, 3, padding=1, has_bias=True), seed=3)
HONEST = load_impl("torch")


def _impl(fn, name: str, **caps) -> ConvImpl:
    return ConvImpl(fn, name, Capabilities(**caps))


def honest(x, w, b, stride, padding, dilation, groups):
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


def test_the_honest_implementation_passes_every_check():
    check_case(HONEST, CASE, None)
    check_fresh_values(HONEST, CASE, None, DEVICE, other_layout="nhwc")
    check_repeatable(HONEST, CASE, None, DEVICE)
    with Watch(settle=0.05) as watch:
        watch.call(HONEST, *CASE.make_inputs(DEVICE), **CASE.conv_kwargs())


# ----------------------------------------------------------------------------------------------------------
# 1. inputs or weights modified in place
# ----------------------------------------------------------------------------------------------------------
def relu_input_in_place(x, w, b, stride, padding, dilation, groups):
    """Uses the input as scratch (a fused activation left behind)."""
    y = honest(x, w, b, stride, padding, dilation, groups)
    x.relu_()
    return y


def rounds_weight_behind_autograd(x, w, b, stride, padding, dilation, groups):
    """Pre-rounds the weight for the next call through ``.data`` (no version bump): only the bytes tell."""
    y = honest(x, w, b, stride, padding, dilation, groups)
    w.data.copy_(w.data.half().float())
    return y


@pytest.mark.parametrize("cheat, message", [
    (relu_input_in_place, "input"),
    (rounds_weight_behind_autograd, "weight was modified in place"),
])
def test_inputs_modified_in_place_are_rejected_by_the_watch(cheat, message):
    with pytest.raises(IntegrityError, match=message):
        check_case(_impl(cheat, cheat.__name__), CASE, None)


# ----------------------------------------------------------------------------------------------------------
# 2. outputs cached by the input's address or shape
# ----------------------------------------------------------------------------------------------------------
def cached_by(key):
    cache = {}

    def fn(x, w, b, stride, padding, dilation, groups):
        k = key(x, w)
        if k not in cache:
            cache[k] = honest(x, w, b, stride, padding, dilation, groups)
        return cache[k].clone()  # a fresh tensor each call: only the values are stale

    return fn


@pytest.mark.parametrize("name, key", [
    ("cached by address", lambda x, w: (x.data_ptr(), w.data_ptr())),
    ("cached by shape", lambda x, w: (tuple(x.shape), tuple(w.shape))),
])
def test_outputs_cached_across_calls_are_rejected_by_fresh_values(name, key):
    impl = _impl(cached_by(key), name)
    check_case(impl, CASE, None)  # one call: a checker that calls once sees nothing
    with pytest.raises(AssertionError, match="new values in the same buffers"):
        check_fresh_values(impl, CASE, None, DEVICE)


# ----------------------------------------------------------------------------------------------------------
# 3. work left running after the call returns (side stream on CUDA, a thread on the CPU)
# ----------------------------------------------------------------------------------------------------------
def finishes_later(x, w, b, stride, padding, dilation, groups):
    y = torch.full_like(honest(x, w, b, stride, padding, dilation, groups), float("nan"))
    if x.device.type == "cuda":
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            torch.cuda._sleep(50_000_000)  # ~25-50 ms of device time before the result lands
            y.copy_(honest(x, w, b, stride, padding, dilation, groups))
    else:
        def work():
            time.sleep(0.1)  # well after the caller's snapshot, well before the watch looks again
            y.copy_(honest(x, w, b, stride, padding, dilation, groups))

        threading.Thread(target=work, daemon=True).start()
    return y


def test_work_left_running_after_return_is_rejected_by_the_watch():
    impl = _impl(finishes_later, "finishes later")
    with pytest.raises(IntegrityError, match="changed after the call returned"):
        check_repeatable(impl, CASE, None, DEVICE, settle=0.5)


@pytest.mark.gpu
def test_side_stream_work_is_rejected_by_the_stream_check():
    with pytest.raises(IntegrityError, match="not the caller's stream"):
        check_streams(_impl(finishes_later, "side stream"), CASE, None, DEVICE)
    check_streams(HONEST, CASE, None, DEVICE)


# ----------------------------------------------------------------------------------------------------------
# 4. outputs that alias an input or a previous output
# ----------------------------------------------------------------------------------------------------------
def writes_into_the_input(x, w, b, stride, padding, dilation, groups):
    y = honest(x, w, b, stride, padding, dilation, groups)
    if y.numel() > x.numel() or not x.is_contiguous():
        return y
    out = x.view(-1)[:y.numel()].view(y.shape)
    out.copy_(y)
    return out


def one_buffer_per_shape():
    buffers = {}

    def fn(x, w, b, stride, padding, dilation, groups):
        y = honest(x, w, b, stride, padding, dilation, groups)
        buf = buffers.setdefault(tuple(y.shape), torch.empty_like(y))
        buf.copy_(y)
        return buf

    return fn


def test_an_output_aliasing_the_input_is_rejected_by_the_watch():
    with pytest.raises(IntegrityError, match="input"):
        check_case(_impl(writes_into_the_input, "writes into the input"), CASE, None)


def test_an_output_buffer_reused_across_calls_is_rejected_by_the_watch():
    impl = _impl(one_buffer_per_shape(), "one buffer per shape")
    check_case(impl, CASE, None)
    with pytest.raises(IntegrityError, match="buffer reused across calls"):
        check_repeatable(impl, CASE, None, DEVICE)


# ----------------------------------------------------------------------------------------------------------
# 5. lazy / fake tensors
# ----------------------------------------------------------------------------------------------------------
class LazyConv(torch.Tensor):
    """A tensor subclass that could compute (or fake) its values when something looks at them."""


def returns_a_subclass(x, w, b, stride, padding, dilation, groups):
    return torch.Tensor._make_subclass(LazyConv, honest(x, w, b, stride, padding, dilation, groups))


def returns_a_fake_tensor(x, w, b, stride, padding, dilation, groups):
    from torch._subclasses.fake_tensor import FakeTensorMode

    return FakeTensorMode().from_tensor(honest(x, w, b, stride, padding, dilation, groups))


def returns_a_broadcast(x, w, b, stride, padding, dilation, groups):
    y = honest(x, w, b, stride, padding, dilation, groups)
    return y.mean().reshape(1, 1, 1, 1).expand(y.shape)


@pytest.mark.parametrize("cheat, message", [
    (returns_a_subclass, "not a plain torch.Tensor"),
    (returns_a_fake_tensor, "not a plain torch.Tensor"),
    (returns_a_broadcast, "share memory"),
])
def test_lazy_fake_or_broadcast_outputs_are_rejected_by_the_watch(cheat, message):
    with pytest.raises(IntegrityError, match=message):
        check_case(_impl(cheat, cheat.__name__), CASE, None)


# ----------------------------------------------------------------------------------------------------------
# 6. nondeterminism
# ----------------------------------------------------------------------------------------------------------
def drifts(scale: float, every: int):
    calls = itertools.count()

    def fn(x, w, b, stride, padding, dilation, groups):
        y = honest(x, w, b, stride, padding, dilation, groups)
        if next(calls) % every:
            if scale:
                y = y * (1 + scale)
            else:
                y.view(torch.int32).view(-1)[0] ^= 1  # the last bit of one element
        return y

    return fn


def test_nondeterminism_beyond_the_tolerance_is_rejected_by_repeated_calls():
    def impl():
        return _impl(drifts(2.0 ** -5, 2), "right on the first call only", deterministic=False)

    check_case(impl(), CASE, None)
    with pytest.raises(AssertionError, match="call 2 of 3"):
        check_repeatable(impl(), CASE, None, DEVICE)


def test_a_last_bit_race_is_rejected_when_determinism_is_claimed():
    impl = _impl(drifts(0.0, 2), "one-ulp race")
    check_case(impl, CASE, None)  # within the error model: the reference check cannot see it
    with pytest.raises(IntegrityError, match="declares itself deterministic"):
        check_repeatable(impl, CASE, None, DEVICE)
    check_repeatable(impl.with_capabilities(deterministic=False), CASE, None, DEVICE)  # honest declaration


# ----------------------------------------------------------------------------------------------------------
# 7. right only on the data KernelBench draws (torch.rand in [0, 1))
# ----------------------------------------------------------------------------------------------------------
def drops_the_sign(x, w, b, stride, padding, dilation, groups):
    """A fused ReLU left in front of the convolution: exact for non-negative inputs."""
    return honest(x.clamp(min=0), w, b, stride, padding, dilation, groups)


def computes_in_half(x, w, b, stride, padding, dilation, groups):
    """float16 inside: within 1e-2 on unit-scale data, overflows on large values."""
    return honest(x.half(), w.half(), None if b is None else b.half(), stride, padding, dilation,
                  groups).to(x.dtype)


def kernelbench_style_check(impl: ConvImpl, tol: float = 1e-2) -> bool:
    """KernelBench's check: ``torch.rand`` input, ``nn.Conv2d``-initialised weights, ``allclose`` at ``tol``."""
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(8, 16, 3, padding=1).to(DEVICE)
    x = torch.rand(2, 8, 12, 12, device=DEVICE)
    with torch.no_grad():
        y = impl(x, ref.weight, ref.bias, 1, 1, 1, 1)
        return torch.allclose(y, ref(x), atol=tol, rtol=tol)


@pytest.mark.parametrize("cheat", [drops_the_sign, computes_in_half])
def test_right_only_on_kernelbench_data_is_rejected_with_the_full_distributions(cheat):
    impl = _impl(cheat, cheat.__name__, dtypes=("float32",))
    assert kernelbench_style_check(impl)  # KernelBench's checker passes it

    def fails(case_precision) -> bool:
        try:
            check_case(impl, *case_precision)
        except AssertionError:
            return True
        return False

    search = settings(max_examples=200, database=None, derandomize=True, deadline=None,
                      suppress_health_check=list(HealthCheck))
    try:
        case, _ = find(impl_cases(impl), fails, settings=search)
    except NoSuchExample:  # pragma: no cover - the assertion below explains
        pytest.fail(f"{cheat.__name__}: no drawn problem rejected it")
    assert case.signs != "positive" or case.distribution == "heavy" or max(case.x_exp, case.w_exp) > 0, case
