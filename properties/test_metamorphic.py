"""Relations between outputs of one backend: batch independence, stride as subsampling, padding as F.pad,
linearity in the input, bitwise determinism.

Two outputs that both approximate (parts of) the same fp64 reference may differ by the sum of their error
bounds (:class:`~fastconv.testing.ErrorBound` adds), so none of these tests needs a tolerance of its own.
Each property is a ``check_*`` function of one case (``tests/test_tolerance.py`` shows each one failing on
a planted bug) and a Hypothesis test that draws the cases.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastconv.testing import ConvCase, ErrorBound, assert_within, conv_error_bound, with_layout

from .harness import BACKENDS, DEVICE, PADDED_BACKENDS, STRIDED_BACKENDS, context, conv, model, reference
from .strategies import backend_cases, examples, supported

pytestmark = pytest.mark.property


# ----------------------------------------------------------------------------------------------------------
def check_batch_independence(backend: str, case: ConvCase, precision: str | None) -> None:
    """Each sample alone gives the rows it has in the batched output (no cross-sample reads or writes)."""
    x, w, b = case.make_inputs(DEVICE)
    y = conv(backend, case, precision, x, w, b)
    ref, m = reference(case, x, w, b), model(case, precision)
    for i in range(x.shape[0]):
        y_i = conv(backend, case, precision, x[i:i + 1], w, b)  # a view: the batch's offsets and strides
        bound = conv_error_bound(ref[i:i + 1], m)
        assert_within(y_i, y[i:i + 1], bound + bound, what=f"batch independence (sample {i} alone)", model=m,
                      out_dtype=y.dtype, **context(backend, case, precision))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_batch_independence(backend, data):
    case, precision = data.draw(backend_cases(backend, min_batch=2), label="case, precision")
    check_batch_independence(backend, case, precision)


# ----------------------------------------------------------------------------------------------------------
def check_stride_is_subsampling(backend: str, case: ConvCase, precision: str | None, stride: tuple[int, int]):
    """Stride ``(sh, sw)`` gives the stride-1 output of ``case`` subsampled: ``y_s == y_1[..., ::sh, ::sw]``."""
    x, w, b = case.make_inputs(DEVICE)
    y1 = conv(backend, case, precision, x, w, b)
    ys = conv(backend, case, precision, x, w, b, stride=stride)
    sub = (..., slice(None, None, stride[0]), slice(None, None, stride[1]))
    m = model(case, precision)
    bound = conv_error_bound(reference(case, x, w, b)[sub], m)
    assert_within(ys, y1[sub], bound + bound, what=f"stride {stride} vs stride 1 subsampled", model=m,
                  out_dtype=y1.dtype, **context(backend, case, precision))


@pytest.mark.parametrize("backend", STRIDED_BACKENDS)
@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_stride_is_subsampling(backend, data):
    case, precision = data.draw(
        backend_cases(backend, limits={"max_stride": 1}, padding_modes=("explicit", "valid")),
        label="stride-1 case, precision")
    stride = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)).filter(lambda s: max(s) > 1),
                       label="stride")
    strided = case.replace(geometry=case.geometry.replace(stride_h=stride[0], stride_w=stride[1]))
    assume(supported(backend, strided, precision))
    check_stride_is_subsampling(backend, case, precision, stride)


# ----------------------------------------------------------------------------------------------------------
def unpadded(case: ConvCase) -> ConvCase:
    """``case`` on its zero-padded input, with padding 0."""
    g = case.geometry
    return case.replace(padding=None, geometry=g.replace(
        h=g.h + g.pad_h + g.pad_h_end, w=g.w + g.pad_w + g.pad_w_end, pad_h=0, pad_w=0, pad_h_end=0, pad_w_end=0))


def check_padding_is_zero_padding(backend: str, case: ConvCase, precision: str | None) -> None:
    """Explicit (or "same") padding equals ``F.pad`` of the input with zeros, then padding 0."""
    g = case.geometry
    x, w, b = case.make_inputs(DEVICE)
    y = conv(backend, case, precision, x, w, b)
    x_pad = with_layout(F.pad(x, (g.pad_w, g.pad_w_end, g.pad_h, g.pad_h_end)), case.layout)
    y_pad = conv(backend, case, precision, x_pad, w, b, padding=0)
    m = model(case, precision)
    bound = conv_error_bound(reference(case, x, w, b), m)
    assert_within(y_pad, y, bound + bound, what="F.pad then padding 0 vs padding", model=m, out_dtype=y.dtype,
                  **context(backend, case, precision))


@pytest.mark.parametrize("backend", PADDED_BACKENDS)
@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_padding_is_zero_padding_of_the_input(backend, data):
    case, precision = data.draw(backend_cases(backend, min_padding=1, padding_modes=("explicit", "same")),
                                label="case, precision")
    assume(supported(backend, unpadded(case), precision))
    check_padding_is_zero_padding(backend, case, precision)


# ----------------------------------------------------------------------------------------------------------
def check_linearity(backend: str, case: ConvCase, precision: str | None, log2_c: int) -> None:
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
    y = conv(backend, case, precision, xc, w, b)
    y1 = conv(backend, case, precision, x1, w, b)
    y2 = conv(backend, case, precision, x2, w, None)
    m = model(case, precision)
    r, r1, r2 = reference(case, xc, w, b), reference(case, x1, w, b), reference(case, x2, w, None)
    d = r.value - r1.value - c * r2.value  # nonzero only where c * x2 rounded
    b2 = conv_error_bound(r2, m)
    bound = (conv_error_bound(r, m) + conv_error_bound(r1, m) + ErrorBound(c * b2.elementwise, c * b2.norm)
             + ErrorBound(d.abs(), float(torch.linalg.vector_norm(d))))
    expected = y1.double().cpu() + c * y2.double().cpu()
    assert_within(y, expected, bound, what=f"linearity (c = {c})", model=m, out_dtype=y.dtype,
                  **context(backend, case, precision))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_linear_in_the_input(backend, data):
    case, precision = data.draw(backend_cases(backend), label="case, precision")
    check_linearity(backend, case, precision, data.draw(st.integers(-1, 1), label="log2 c"))


# ----------------------------------------------------------------------------------------------------------
def check_bitwise_deterministic(backend: str, case: ConvCase, precision: str | None) -> None:
    """Two runs of the same call give the same bits (no atomics or races in the reduction)."""
    x, w, b = case.make_inputs(DEVICE)
    y1 = conv(backend, case, precision, x, w, b)
    y2 = conv(backend, case, precision, x, w, b)
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[y1.element_size()]
    same = y1.view(bits) == y2.view(bits)
    if not bool(same.all()):
        first = tuple(int(i) for i in (~same).nonzero()[0])
        raise AssertionError(f"{int((~same).sum())} of {same.numel()} elements differ between two runs, first at "
                             f"{first}\n  {context(backend, case, precision)}")


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=examples("metamorphic"))
@given(data=st.data())
def test_bitwise_deterministic(backend, data):
    case, precision = data.draw(backend_cases(backend), label="case, precision")
    check_bitwise_deterministic(backend, case, precision)
