"""Each implementation under test matches the fp64 reference within the error model, writes every output
element, and returns torch's shape, dtype and memory format (when it claims to): drawn problems and
regression cases."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from hypothesis import Phase, assume, example, given, settings
from hypothesis import strategies as st

from fastconv.precision import round_tf32_torch
from fastconv.problem import ConvProblem
from fastconv.testing import (
    ConvCase,
    ConvImpl,
    Watch,
    assert_conv_close,
    check_conv,
    error_model,
    layout_mismatch,
    poisoned_allocations,
)
from fastconv.testing.strategies import conv_problems, examples, impl_cases

from .harness import DEVICE, call, context, reference, require_flag

pytestmark = pytest.mark.property


def check_case(impl: ConvImpl, case: ConvCase, precision: str | None) -> None:
    """The contract, on one case: run into NaN-poisoned memory, compare with torch and the fp64 reference."""
    x, w, b = case.make_inputs(DEVICE)
    with poisoned_allocations(), Watch() as watch:  # an element the kernel does not write stays NaN
        y = call(watch, impl, case, precision, x, w, b)
    expected = F.conv2d(x, w, b, **case.conv_kwargs())
    why = layout_mismatch(y, expected)
    if why is not None and impl.capabilities.output_format == "any":
        why = layout_mismatch(y.contiguous(), expected.contiguous())
    assert why is None, f"{why}\n  problem: {case.short()} impl={impl.name}"
    assert_conv_close(y, x, w, b, **case.conv_kwargs(), precision=precision,
                      reference=reference(case, x, w, b), **context(impl, case, precision))


@settings(max_examples=examples("reference"))
@given(data=st.data())
def test_matches_reference_in_poisoned_memory(conv_impl, data):
    case, precision = data.draw(impl_cases(conv_impl), label="case, precision")
    check_case(conv_impl, case, precision)


@settings(max_examples=examples("reference"))
@given(data=st.data())
def test_tf32_rounds_the_operands_to_nearest_and_nothing_else(conv_impl, data):
    """TF32 is a rounding of the two operands, nothing more: in ``"tf32"`` the output is the float32
    convolution of the operands rounded to TF32 (to nearest; their products are exact in float32), or, where
    the implementation computes in plain float32, of the operands themselves, each within float32's
    accumulation error ("ieee" model).  The TF32 error model alone (2 * 2^-11 of sum |x w|) also passes a
    rounded accumulator, truncated operands or one operand left unrounded when the other is rounded."""
    require_flag(conv_impl, "tf32_to_nearest", "TF32 operands rounded to nearest")
    if "tf32" not in conv_impl.precision_choices("float32"):
        pytest.skip(f"{conv_impl.name} takes no precision 'tf32'")
    case, _ = data.draw(impl_cases(conv_impl, dtypes=("float32",)), label="case")
    assume(conv_impl.unsupported_case(case, "tf32") is None)
    x, w, b = case.make_inputs(DEVICE)
    with Watch() as watch:
        y = call(watch, conv_impl, case, "tf32", x, w, b)
    fp32 = error_model("float32", "ieee", DEVICE)
    checks = {operands: check_conv(y, reference(case, *xw, b), fp32) for operands, xw in (
        ("rounded to TF32", (round_tf32_torch(x), round_tf32_torch(w))), ("as given (float32)", (x, w)))}
    assert any(c.passed for c in checks.values()), "\n".join(
        ["'tf32' output is neither float32 arithmetic on TF32-rounded operands nor on the operands "
         f"({fp32.describe()})",
         f"  problem : {case.short()} impl={conv_impl.name}"]
        + [f"  against operands {k}:\n" + "\n".join("    " + ln for ln in c.summary().splitlines())
           for k, c in checks.items()])


def _case(batch, c_in, c_out, h, w, kernel, stride=1, padding=0, dilation=1, groups=1, **kw) -> ConvCase:
    geometry_kw = {k: kw.pop(k) for k in ("dtype", "has_bias") if k in kw}
    geometry = ConvProblem.make(batch, c_in, c_out, h, w, kernel, stride, padding, dilation, groups, **geometry_kw)
    return ConvCase(geometry, seed=kw.pop("seed", 1234), **kw)


def _same(batch, c_in, c_out, h, w, kernel, dilation, **kw) -> ConvCase:
    """A ``padding="same"`` case: pads split as torch splits them (the odd one after)."""
    from fastconv.testing import same_padding

    (ph, ph_end), (pw, pw_end) = same_padding(kernel[0], dilation[0]), same_padding(kernel[1], dilation[1])
    c = _case(batch, c_in, c_out, h, w, kernel, 1, 0, dilation, **kw)
    return c.replace(geometry=c.geometry.replace(pad_h=ph, pad_h_end=ph_end, pad_w=pw, pad_w_end=pw_end),
                     padding="same")


# Hand-picked regression cases, run for every implementation that claims them.
REGRESSION = {
    # the seed's problem (KernelBench L1 #80: 8x32 -> 64, 512x512, k5x9, p2x4, d2x3) at a reduced size
    "seed_reduced": _case(1, 3, 4, 9, 20, (5, 9), 1, (2, 4), (2, 3)),
    "pointwise_1x1": _case(2, 8, 6, 5, 5, 1, has_bias=True),
    "depthwise": _case(2, 4, 4, 6, 6, 3, 1, 1, 1, groups=4, has_bias=True),
    "stride2_pad1": _case(1, 3, 4, 7, 7, 3, 2, 1),
    "same_even_kernel": _same(1, 2, 3, 6, 5, (4, 2), (1, 2)),
    "channels_last_input_contiguous_weight": _case(2, 3, 4, 5, 5, 3, layout="nhwc"),
    "sliced_view": _case(2, 3, 4, 6, 5, (2, 3), 1, (1, 0), layout="strided", weight_layout="strided",
                         has_bias=True),
    "unbatched_3d": _case(1, 3, 2, 5, 6, 3, unbatched=True, has_bias=True),
    "zero_batch": _case(0, 3, 4, 5, 5, 3),
    "float16_grouped_bias": _case(1, 4, 6, 5, 5, 3, 1, 1, groups=2, dtype="float16", has_bias=True),
    "bfloat16_channels_last": _case(1, 4, 4, 5, 5, 3, 1, 1, dtype="bfloat16", layout="nhwc"),
    # per-axis confusions: dilation only along W with padding only along W (a W mask computed with the H
    # dilation reads past the row), and the same along H; 16 channels per group take igemm's per-tap K loop,
    # 3 its flat one; stride only along H with padding only along H
    "dilation_w_padding_w": _case(1, 16, 4, 5, 7, (2, 3), 1, (0, 2), (1, 2), seed=5),
    "dilation_h_padding_h": _case(1, 16, 4, 7, 5, (3, 2), 1, (2, 0), (2, 1), seed=6),
    "flat_dilation_w_padding_w": _case(1, 3, 4, 5, 7, (2, 3), 1, (0, 2), (1, 2), seed=9),
    "stride_h_padding_h": _case(1, 2, 3, 7, 6, 3, (2, 1), (1, 0), seed=7, layout="nhwc"),
    # across block boundaries: 129 output pixels (one past a 128-row tile), 65 output channels (one past a
    # 64-column tile), 17 input channels (a partial K block)
    "block_plus_one": _case(1, 17, 65, 3, 43, 1, has_bias=True, seed=8),
    # 24 channels per group, 96 in all: a K loop that skips the channel mask because 96 is a multiple of the
    # block reads the next group
    "grouped_ragged_channels": _case(1, 96, 8, 4, 4, 3, 1, 1, groups=4, has_bias=True, seed=10),
    "depthwise_multiplier": _case(1, 3, 6, 5, 5, 3, 1, 1, groups=3, seed=11),
    "bfloat16_small_groups": _case(1, 8, 8, 6, 6, 3, 1, 1, groups=2, dtype="bfloat16", seed=12),
    "strided_1x1": _case(2, 4, 6, 6, 7, 1, 2, seed=13),
}


def _examples(fn):
    for case in REGRESSION.values():
        fn = example(case=case, precision=None)(fn)
    return example(case=REGRESSION["seed_reduced"], precision="ieee")(fn)


@settings(phases=[Phase.explicit])  # only the @examples; test_matches_reference_in_poisoned_memory draws
@_examples
@given(case=conv_problems(), precision=st.none())
def test_regression_cases(conv_impl, case, precision):
    precision = precision if precision in conv_impl.precision_choices(case.geometry.dtype) else \
        conv_impl.precision_choices(case.geometry.dtype)[0]
    assume(conv_impl.unsupported_case(case, precision) is None)  # e.g. "pointwise" has no 5x9 kernel
    check_case(conv_impl, case, precision)
