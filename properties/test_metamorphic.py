"""Relations between outputs of one implementation: batch independence, stride as subsampling, padding as
F.pad, linearity in the input.

Two outputs that both approximate (parts of) the same fp64 reference may differ by the sum of their error
bounds (:class:`~fastconv.testing.ErrorBound` adds), so none of these tests needs a tolerance of its own.
Each property is a ``check_*`` function of one case (``tests/test_tolerance.py`` shows each one failing on
a planted bug) and a Hypothesis test that draws the cases.  Every call goes through a
:class:`~fastconv.testing.Watch` (no input modified, no output aliased or changed after its call).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastconv.testing import ConvCase, ConvImpl, ErrorBound, Watch, assert_within, conv_error_bound, with_layout
from fastconv.testing.strategies import examples, impl_cases

from .harness import DEVICE, PADDED_PROBES, STRIDED_PROBES, UNPADDED_PROBES, call, context, model, reference, require

pytestmark = pytest.mark.property


# ----------------------------------------------------------------------------------------------------------
def check_batch_independence(impl: ConvImpl, case: ConvCase, precision: str | None) -> None:
    """Each sample alone gives the rows it has in the batched output (no cross-sample reads or writes)."""
    x, w, b = case.make_inputs(DEVICE)
    ref, m = reference(case, x, w, b), model(case, precision)
    with Watch() as watch:
        y = call(watch, impl, case, precision, x, w, b, what="batch")
        for i in range(x.shape[0]):
            y_i = call(watch, impl, case, precision, x[i:i + 1], w, b, what=f"sample {i}")  # a view of the batch
            bound = conv_error_bound(ref[i:i + 1], m)
            assert_within(y_i, y[i:i + 1], bound + bound, what=f"batch independence (sample {i} alone)", model=m,
                          out_dtype=y.dtype, **context(impl, case, precision))


@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_batch_independence(conv_impl, data):
    case, precision = data.draw(impl_cases(conv_impl, min_batch=2, allow_unbatched=False), label="case, precision")
    check_batch_independence(conv_impl, case, precision)


# ----------------------------------------------------------------------------------------------------------
def check_stride_is_subsampling(impl: ConvImpl, case: ConvCase, precision: str | None, stride: tuple[int, int]):
    """Stride ``(sh, sw)`` gives the stride-1 output of ``case`` subsampled: ``y_s == y_1[..., ::sh, ::sw]``."""
    x, w, b = case.make_inputs(DEVICE)
    with Watch() as watch:
        y1 = call(watch, impl, case, precision, x, w, b, what="stride 1")
        ys = call(watch, impl, case, precision, x, w, b, what=f"stride {stride}", stride=stride)
    sub = (..., slice(None, None, stride[0]), slice(None, None, stride[1]))
    m = model(case, precision)
    bound = conv_error_bound(reference(case, x, w, b)[sub], m)
    assert_within(ys, y1[sub], bound + bound, what=f"stride {stride} vs stride 1 subsampled", model=m,
                  out_dtype=y1.dtype, **context(impl, case, precision))


@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_stride_is_subsampling(conv_impl, data):
    require(conv_impl, "strided convolutions", STRIDED_PROBES)
    case, precision = data.draw(
        impl_cases(conv_impl, limits={"max_stride": 1}, padding_modes=("explicit", "valid")),
        label="stride-1 case, precision")
    stride = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)).filter(lambda s: max(s) > 1),
                       label="stride")
    strided = case.replace(geometry=case.geometry.replace(stride_h=stride[0], stride_w=stride[1]))
    assume(conv_impl.unsupported_case(strided, precision) is None)
    check_stride_is_subsampling(conv_impl, case, precision, stride)


# ----------------------------------------------------------------------------------------------------------
def unpadded(case: ConvCase) -> ConvCase:
    """``case`` on its zero-padded input, with padding 0."""
    g = case.geometry
    return case.replace(padding=None, geometry=g.replace(
        h=g.h + g.pad_h + g.pad_h_end, w=g.w + g.pad_w + g.pad_w_end, pad_h=0, pad_w=0, pad_h_end=0, pad_w_end=0))


def check_padding_is_zero_padding(impl: ConvImpl, case: ConvCase, precision: str | None) -> None:
    """Explicit (or "same") padding equals ``F.pad`` of the input with zeros, then padding 0."""
    g = case.geometry
    x, w, b = case.make_inputs(DEVICE)
    x_pad = with_layout(F.pad(x, (g.pad_w, g.pad_w_end, g.pad_h, g.pad_h_end)), case.layout)
    with Watch() as watch:
        y = call(watch, impl, case, precision, x, w, b, what="padded")
        y_pad = call(watch, impl, case, precision, x_pad, w, b, what="F.pad, padding 0", padding=0)
    m = model(case, precision)
    bound = conv_error_bound(reference(case, x, w, b), m)
    assert_within(y_pad, y, bound + bound, what="F.pad then padding 0 vs padding", model=m, out_dtype=y.dtype,
                  **context(impl, case, precision))


@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_padding_is_zero_padding_of_the_input(conv_impl, data):
    require(conv_impl, "padded convolutions", PADDED_PROBES)
    require(conv_impl, "unpadded convolutions", UNPADDED_PROBES)
    case, precision = data.draw(impl_cases(conv_impl, min_padding=1, padding_modes=("explicit", "same")),
                                label="case, precision")
    assume(conv_impl.unsupported_case(unpadded(case), precision) is None)
    check_padding_is_zero_padding(conv_impl, case, precision)


# ----------------------------------------------------------------------------------------------------------
def check_linearity(impl: ConvImpl, case: ConvCase, precision: str | None, log2_c: int) -> None:
    """``conv(x1 + c x2) == conv(x1) + c conv(x2)`` (bias counted once), ``c = 2**log2_c``.

    ``x1`` and ``x2`` split ``x`` along a random mask, so ``x1 + c x2`` has no rounding of its own; where
    ``c x2`` is not exact in the dtype (subnormals) the exact discrepancy of the fp64 references is added to
    the bound.
    """
    c = 2.0 ** log2_c
    x, w, b = case.make_inputs(DEVICE)
    mask = (torch.rand(x.shape, generator=torch.Generator().manual_seed(case.seed + 1)) < 0.5).to(DEVICE)
    zero = torch.zeros((), dtype=x.dtype, device=DEVICE)
    x1 = with_layout(torch.where(mask, x, zero), case.layout)
    x2 = with_layout(torch.where(mask, zero, x), case.layout)
    xc = with_layout(torch.where(mask, x, x * c), case.layout)
    with Watch() as watch:
        y = call(watch, impl, case, precision, xc, w, b, what="x1 + c x2")
        y1 = call(watch, impl, case, precision, x1, w, b, what="x1")
        y2 = call(watch, impl, case, precision, x2, w, None, what="x2 without bias")
    m = model(case, precision)
    r, r1, r2 = reference(case, xc, w, b), reference(case, x1, w, b), reference(case, x2, w, None)
    d = r.value - r1.value - c * r2.value  # nonzero only where c * x2 rounded
    b2 = conv_error_bound(r2, m)
    bound = (conv_error_bound(r, m) + conv_error_bound(r1, m) + ErrorBound(c * b2.elementwise, c * b2.norm)
             + ErrorBound(d.abs(), float(torch.linalg.vector_norm(d))))
    expected = y1.double().cpu() + c * y2.double().cpu()
    assert_within(y, expected, bound, what=f"linearity (c = {c})", model=m, out_dtype=y.dtype,
                  **context(impl, case, precision))


@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_linear_in_the_input(conv_impl, data):
    case, precision = data.draw(impl_cases(conv_impl), label="case, precision")
    check_linearity(conv_impl, case, precision, data.draw(st.integers(-1, 1), label="log2 c"))
