"""The strategies themselves: every drawn problem is valid for torch and within its budget, every invalid
one is rejected by torch, arguments are checked up front, and failures shrink toward small problems."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from fastconv.problem import ConvProblem
from fastconv.testing import ConvCase, fastconv_impl, memory_format, run_case, with_layout
from fastconv.testing.strategies import (
    DEVICE,
    EXAMPLE_CAPS,
    INVALID_KINDS,
    PROFILE_BUDGETS,
    InvalidCall,
    ShapeLimits,
    budget_for,
    conv_problems,
    examples,
    impl_cases,
    invalid_conv_problems,
)

LIMITS = ShapeLimits(max_batch=3, max_groups=3, max_channels=4, max_kernel=4, max_spatial=6)


def _elements(p: ConvProblem) -> int:
    return (p.batch * p.c_in * p.h * p.w + p.c_out * p.c_in_per_group * p.kh * p.kw
            + p.c_out * p.has_bias + p.batch * p.c_out * p.oh * p.ow)


@settings(max_examples=100)
@given(case=conv_problems(max_elements=3_000, max_flops=60_000, limits=LIMITS, allow_empty_batch=True))
def test_every_drawn_problem_is_valid_for_torch_and_within_budget(case: ConvCase):
    p = case.problem
    x, w, b = case.make_inputs("cpu")
    y = F.conv2d(x, w, b, **case.conv_kwargs())  # raises if the strategy drew an invalid problem
    assert y.shape == (p.output_shape[1:] if case.unbatched else p.output_shape)
    fmt = memory_format(y.unsqueeze(0) if case.unbatched else y)
    if fmt != "both" and y.numel():  # where size-1 dims make both formats hold, either is torch's
        assert (fmt == "nhwc") == p.channels_last, case
    assert _elements(p) <= 3_000 and p.flops <= 60_000
    lim = LIMITS
    assert p.batch <= lim.max_batch and p.kh <= lim.max_kernel and p.kw <= lim.max_kernel
    assert p.c_in_per_group <= lim.max_channels and max(p.stride_h, p.stride_w) <= lim.max_stride
    assert (p.h - max(1, p.dil_h * (p.kh - 1) + 1 - p.pad_h - p.pad_h_end)) < lim.max_spatial
    if case.padding == "same":
        assert (p.stride_h, p.stride_w) == (1, 1)


@settings(max_examples=60)
@given(case=conv_problems(dtypes=("float16",), max_elements=50_000, max_flops=5_000_000,
                          limits=ShapeLimits(max_channels=32, max_kernel=5)))
def test_float16_scales_keep_outputs_finite(case: ConvCase):
    x, w, b = case.make_inputs("cpu")
    y = F.conv2d(x.float(), w.float(), None if b is None else b.float(), **case.conv_kwargs())
    assert float(y.abs().max()) < 2.0 ** 15


@settings(max_examples=40)
@given(data=st.data())
def test_options_are_honoured(data):
    dtypes = data.draw(st.sets(st.sampled_from(["float32", "float16", "bfloat16"]), min_size=1))
    layouts = data.draw(st.sets(st.sampled_from(["nchw", "nhwc", "strided"]), min_size=1))
    case = data.draw(conv_problems(dtypes=sorted(dtypes), layouts=sorted(layouts), weight_layouts=["strided"],
                                   group_modes=["depthwise"], allow_bias=False, allow_unbatched=False,
                                   min_batch=2, min_stride=2, padding_modes=["explicit"], min_padding=1,
                                   max_elements=5_000, max_flops=100_000, limits=LIMITS))
    p = case.geometry
    assert p.dtype in dtypes and case.layout in layouts and case.weight_layout == "strided"
    assert p.is_depthwise and not p.has_bias and not case.unbatched and p.batch >= 2
    assert max(p.stride_h, p.stride_w) >= 2 and min(p.pad_h, p.pad_w) >= 1 and case.padding is None


# find() under a derandomized profile returns its first hit unshrunk: search like a failing test would
FIND = settings(max_examples=500, database=None, derandomize=False, deadline=None)


def test_shrinks_toward_small_problems():
    """Everything but what the condition needs shrinks to its minimum (plain, explicit padding, batched,
    contiguous, float32, no bias, seed 0)."""
    case = find(conv_problems(), lambda c: c.geometry.kh >= 3, settings=FIND)
    assert case.short() == "1x1x3x1 -> 1, k3x1 s1x1 p0x0 d1x1 g1 float32 [nchw, normal mixed x2^0 w2^0 seed 0]"


@pytest.mark.parametrize("kwargs", [
    dict(max_elements=-1), dict(max_flops=1.5), dict(max_elements=True), dict(dtypes=["int8"]),
    dict(dtypes="float32"), dict(dtypes=[]), dict(layouts=["channels_last"]), dict(weight_layouts=["x"]),
    dict(padding_modes=["full"]), dict(group_modes=["grouped"], limits=ShapeLimits(max_groups=1)),
    dict(min_stride=0), dict(min_stride=4, limits=ShapeLimits(max_stride=3)), dict(min_padding=-1),
    dict(min_batch=0), dict(allow_bias="yes"), dict(limits={"max_batch": 2}), dict(backend=3),
    dict(distributions=["cauchy"]), dict(signs=["zero"]),
])
def test_bad_arguments_fail_up_front(kwargs):
    with pytest.raises(InvalidArgument):
        conv_problems(**kwargs)  # raised when the strategy is built, not when it is drawn from


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ShapeLimits)])
def test_limits_are_checked(field):
    with pytest.raises(InvalidArgument):
        ShapeLimits(**{field: 0})


def test_a_budget_below_the_smallest_problem_is_reported():
    with pytest.raises(InvalidArgument, match="exceeds the budget"):
        find(conv_problems(max_elements=16, max_flops=64, min_batch=8), lambda c: True, settings=FIND)


# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", INVALID_KINDS)
@settings(max_examples=8)
@given(data=st.data())
def test_every_invalid_kind_is_rejected_by_torch(kind, data):
    call: InvalidCall = data.draw(invalid_conv_problems(kinds=[kind]))
    assert call.kind == kind and call.keyword
    assert call.torch_error() is not None, call


def test_invalid_kinds_are_checked():
    with pytest.raises(InvalidArgument):
        invalid_conv_problems(kinds=["typo"])


# ----------------------------------------------------------------------------------------------------------
def test_values_are_seeded_scaled_and_never_all_zero():
    case = ConvCase(ConvProblem.make(2, 3, 4, 5, 5, 3, has_bias=True), seed=5, x_exp=-3, w_exp=4)
    x1, w1, b1 = case.make_inputs()
    x2, w2, b2 = case.make_inputs()
    assert torch.equal(x1, x2) and torch.equal(w1, w2) and torch.equal(b1, b2)
    assert not torch.equal(x1, case.replace(seed=6).make_inputs()[0])
    ints = case.replace(distribution="integer", signs="positive", x_exp=2).make_inputs()[0]
    assert bool((ints >= 0).all()) and bool((torch.remainder(ints, 4) == 0).all())
    tiny = ConvCase(ConvProblem.make(1, 1, 1, 1, 1, 1), distribution="integer", seed=0)
    for seed in range(20):  # a single integer value is often 0: the generator then sets it
        assert bool(tiny.replace(seed=seed).make_inputs()[0].any())


def test_layouts():
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    cl, sl = with_layout(t, "nhwc"), with_layout(t, "strided")
    assert memory_format(cl) == "nhwc" and torch.equal(cl, t)
    assert memory_format(sl) == "strided" and torch.equal(sl, t) and sl.storage_offset() > 0
    assert torch.isnan(torch.as_strided(sl, (1,), (1,), sl.storage_offset() - 1)).all()  # NaN around it
    u = with_layout(t[0], "nhwc")
    assert u.stride() == (1, 5 * 3, 3) and torch.equal(u, t[0])


def test_case_repr_replays():
    case = ConvCase(ConvProblem.make(1, 2, 3, 5, 5, 3, padding=1), layout="strided", seed=9)
    assert eval(repr(case), {"ConvCase": ConvCase, "ConvProblem": ConvProblem}) == case
    assert f"seed={case.seed}" in case.repro(backend="direct") and "run_case(" in case.repro()
    run_case(case, backend="igemm")


# ----------------------------------------------------------------------------------------------------------
def test_budgets_per_profile_and_backend():
    for profile, table in PROFILE_BUDGETS.items():
        assert "default" in table, profile
    assert budget_for("direct", profile="ci").max_flops < budget_for("igemm", profile="ci").max_flops
    if not torch.cuda.is_available():  # GPU sizes would take hours in the interpreter
        assert budget_for(profile="gpu") == budget_for(profile="ci")
    assert budget_for("a-new-kernel", profile="ci") == PROFILE_BUDGETS["ci"]["default"]


def test_example_counts_follow_the_profile():
    n = settings.default.max_examples
    for kind in ("reference", "metamorphic", "configs"):
        assert 1 <= examples(kind) <= n
    assert examples("invalid") == EXAMPLE_CAPS.get(settings.get_current_profile_name(), {}).get("invalid", n)


@settings(max_examples=30)
@given(data=st.data())
def test_impl_cases_are_claimed_and_supported_by_their_kernel(data):
    from fastconv.kernels import REGISTRY
    from fastconv.precision import resolve_precision

    name = data.draw(st.sampled_from(sorted(REGISTRY)))
    impl = fastconv_impl(name)
    case, precision = data.draw(impl_cases(impl))
    assert impl.unsupported_case(case, precision) is None
    assert REGISTRY[name].supports(case.problem, resolve_precision(case.geometry.dtype, precision, DEVICE))
    b = budget_for(impl.budget)
    assert _elements(case.problem) <= b.max_elements and case.problem.flops <= b.max_flops
    assert math.isfinite(case.problem.flops)
