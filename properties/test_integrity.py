"""The call contract, beyond the numbers (see :mod:`fastconv.testing.integrity`): results follow the values
and not the addresses, repeated calls agree, work stays on the caller's stream, and inputs whose samples lie
2**31 elements apart are read with 64-bit offsets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv.testing import (
    ConvCase,
    ConvImpl,
    Watch,
    assert_conv_close,
    check_fresh_values,
    check_repeatable,
    check_streams,
)
from fastconv.testing.strategies import ShapeLimits, examples, impl_cases

from .harness import DEVICE, call, context, reference, require_flag

pytestmark = pytest.mark.property


@settings(max_examples=examples("integrity"))
@given(data=st.data())
def test_results_follow_values_not_addresses(conv_impl, data):
    case, precision = data.draw(impl_cases(conv_impl, allow_unbatched=False), label="case, precision")
    caps = conv_impl.capabilities
    layouts = [lay for lay in caps.layouts if lay != case.layout]
    other_layout = data.draw(st.sampled_from(layouts), label="other layout") if layouts else None
    others = [p for p in conv_impl.precision_choices(case.geometry.dtype) if p != precision]
    other_precision = data.draw(st.sampled_from(others), label="other precision") if (
        others and conv_impl.takes_precision) else None
    check_fresh_values(conv_impl, case, precision, DEVICE, other_layout=other_layout, other_precision=other_precision)


@settings(max_examples=examples("integrity"))
@given(data=st.data())
def test_repeated_calls_agree(conv_impl, data):
    case, precision = data.draw(impl_cases(conv_impl), label="case, precision")
    check_repeatable(conv_impl, case, precision, DEVICE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="streams exist on CUDA only (the CPU watch checks "
                    "for work still running after return instead)")
@settings(max_examples=examples("integrity"))
@given(data=st.data())
def test_work_stays_on_the_callers_stream(conv_impl, data):
    case, precision = data.draw(impl_cases(conv_impl), label="case, precision")
    check_streams(conv_impl, case, precision, DEVICE)


# ----------------------------------------------------------------------------------------------------------
# 64-bit offsets: a batch whose samples lie 2**30 elements apart in a sparse buffer (only the pages of the
# three samples are touched), so sample 2 starts 2**31 elements in: an offset computed in int32 wraps.
SAMPLE_STRIDE = 2**30


def far_apart(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) copied into a view whose samples lie :data:`SAMPLE_STRIDE` elements apart."""
    n = x.shape[0]
    sample = x[0].numel()
    big = torch.empty((n - 1) * SAMPLE_STRIDE + sample, dtype=x.dtype, device=x.device)
    per_sample = x[0].stride() if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last) else \
        x[0].contiguous().stride()
    view = big.as_strided(x.shape, (SAMPLE_STRIDE, *per_sample))
    view.copy_(x)
    return view


def check_large_offsets(impl: ConvImpl, case: ConvCase, precision: str | None) -> None:
    x0, w, b = case.make_inputs(DEVICE)
    x = far_apart(x0)
    with Watch(guard_bands=False) as watch:
        y = call(watch, impl, case, precision, x, w, b, what="samples 2**30 elements apart")
    assert_conv_close(y, x, w, b, **case.conv_kwargs(), precision=precision, reference=reference(case, x, w, b),
                      **context(impl, case, precision))


@settings(max_examples=examples("offsets"))
@given(data=st.data())
def test_offsets_past_two_to_the_31(conv_impl, data):
    require_flag(conv_impl, "large_offsets", "inputs with offsets of 2**31 elements or more")
    if "strided" not in conv_impl.capabilities.layouts:
        pytest.skip(f"{conv_impl.name} does not claim strided inputs (the far-apart batch is a strided view)")
    dtypes = [d for d in ("float16", "bfloat16", "float32") if d in conv_impl.capabilities.dtypes]
    if not dtypes:
        pytest.skip(f"{conv_impl.name} claims none of float16, bfloat16, float32")
    small = ShapeLimits(max_batch=3, max_groups=2, max_channels=4, max_kernel=3, max_spatial=4, max_stride=2,
                        max_dilation=2, max_padding=1)
    case, precision = data.draw(impl_cases(conv_impl, min_batch=3, allow_unbatched=False, dtypes=dtypes[:1],
                                           layouts=("strided",), limits=small.__dict__), label="case, precision")
    check_large_offsets(conv_impl, case.replace(layout="nchw"), precision)
