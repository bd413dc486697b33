"""The tolerance model on its own, and the property checks against planted bugs.

1. The table: one model per (dtype, precision), constants derived from ``torch.finfo``; the default
   precision is what ``fastconv.conv2d`` uses on the device ("ieee" on the CPU, ``cudnn.allow_tf32`` on CUDA).
2. It accepts rounding-level noise: emulations of each arithmetic (fp32, TF32 rounded to nearest *and*
   truncated, the tf32x3 split, fp16/bf16 with fp32 accumulation) on drawn problems.
3. It rejects planted errors: one element off by a few dozen roundoffs, all zeros (also for a tiny
   reference, and where cancellation makes the elementwise bound loose), NaN/Inf, a scaled output.
4. The property checks of ``properties/`` fail on kernels with planted bugs (a registered mutant that
   wraps a correct kernel): each property can fail, and fails for the bug it is about.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings

from fastconv.kernels import REGISTRY, ConvKernel
from fastconv.precision import FLOAT32_PRECISIONS
from fastconv.problem import ConvProblem
from fastconv.testing import (
    ERROR_MODELS,
    SAFETY,
    ConvCase,
    ErrorBound,
    assert_conv_close,
    check_conv,
    check_repeatable,
    check_within,
    conv_error_bound,
    error_model,
    fastconv_impl,
    reference_conv2d,
)
from fastconv.testing.strategies import conv_problems
from properties import test_metamorphic as metamorphic
from properties.test_reference import check_case


def rn_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 rounded to nearest TF32 (ties away from zero), as cvt.rna.tf32.f32."""
    return ((t.contiguous().view(torch.int32) + 0x1000) & -8192).view(torch.float32)


def trunc_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 truncated to TF32, as a tensor core reading raw float32 registers."""
    return (t.contiguous().view(torch.int32) & -8192).view(torch.float32)


# ==========================================================================================================
# 1. the table
# ==========================================================================================================
def test_every_mode_has_one_model():
    for p in FLOAT32_PRECISIONS:
        assert ERROR_MODELS[("float32", p)].u_out == torch.finfo(torch.float32).eps / 2
    for dt in (torch.float16, torch.bfloat16):
        m = error_model(dt)
        assert (m.precision, m.u_op, m.u_out) == ("native", 0.0, torch.finfo(dt).eps / 2)
    assert error_model(torch.float32, "tf32").u_op == 2.0 ** -11
    assert error_model("float32", "tf32x3").passes == 3


def test_default_precision_follows_allow_tf32_on_cuda_and_is_ieee_on_cpu():
    torch.backends.cudnn.allow_tf32 = True  # the autouse fixture of conftest.py restores it
    assert error_model(torch.float32).precision == "tf32"
    assert error_model(torch.float32, device="cuda").precision == "tf32"
    assert error_model(torch.float32, device="cpu").precision == "ieee"
    torch.backends.cudnn.allow_tf32 = False
    assert error_model(torch.float32).precision == "ieee"
    assert error_model(torch.float32, device="cuda").precision == "ieee"


@pytest.mark.parametrize("dtype, precision", [(torch.int32, None), ("float32", "fp8"), ("float16", "tf32"),
                                              ("float64", "tf32")])
def test_unknown_modes_raise(dtype, precision):
    with pytest.raises(ValueError):
        error_model(dtype, precision)


def test_bounds_add():
    a = ErrorBound(torch.tensor([1.0, 2.0]), 3.0)
    s = a + ErrorBound(torch.tensor([0.5, 0.5]), 1.0)
    assert s.elementwise.tolist() == [1.5, 2.5] and s.norm == 4.0


# ==========================================================================================================
# 2. accepts rounding-level noise
# ==========================================================================================================
def _emulations(x, w, b, kw):
    """(precision, output) pairs: each arithmetic emulated with torch on the CPU."""
    if x.dtype == torch.float64:
        yield "ieee", F.conv2d(x, w, b, **kw)  # fp64 products and accumulation
        return
    if x.dtype != torch.float32:
        yield "native", F.conv2d(x, w, b, **kw)  # CPU half conv: fp32 accumulation, one final rounding
        return
    yield "ieee", F.conv2d(x, w, b, **kw)
    yield "tf32", F.conv2d(rn_tf32(x), rn_tf32(w), b, **kw)
    yield "tf32", F.conv2d(trunc_tf32(x), trunc_tf32(w), b, **kw)  # hardware truncation: within the safety
    xh, wh = rn_tf32(x), rn_tf32(w)
    xl, wl = trunc_tf32(x - xh), trunc_tf32(w - wh)
    yield "tf32x3", F.conv2d(xh, wh, b, **kw) + F.conv2d(xh, wl, None, **kw) + F.conv2d(xl, wh, None, **kw)


@settings(max_examples=50)
@given(case=conv_problems(max_elements=20_000, max_flops=2_000_000, layouts=("nchw",),
                          weight_layouts=("nchw",)))
def test_accepts_emulated_rounding_on_drawn_problems(case: ConvCase):
    x, w, b = case.make_inputs("cpu")
    kw = case.conv_kwargs()
    ref = reference_conv2d(x, w, b, **kw)
    for precision, y in _emulations(x, w, b, kw):
        chk = check_conv(y, ref, error_model(x.dtype, precision))
        assert chk.passed, f"{precision}: {case.short()}\n{chk.summary()}"


@pytest.mark.parametrize("c_in, k, signs", [(64, 5, "mixed"), (64, 5, "positive"), (256, 3, "positive")])
def test_accepts_emulated_rounding_at_long_reductions(c_in, k, signs):
    """K = 1600-2300, and one-signed data, where truncation errors do not cancel."""
    case = ConvCase(ConvProblem.make(1, c_in, 4, 8, 8, k, padding=k // 2, has_bias=True), signs=signs, seed=7)
    x, w, b = case.make_inputs("cpu")
    kw = case.conv_kwargs()
    ref = reference_conv2d(x, w, b, **kw)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        scale = 2.0 ** -6 if dtype == torch.float16 else 1.0  # keep K * |x| * |w| inside fp16's range
        xd, wd, bd = (x * scale).to(dtype), (w * scale).to(dtype), (b * scale * scale).to(dtype)
        ref = reference_conv2d(xd, wd, bd, **kw)
        for precision, y in _emulations(xd, wd, bd, kw):
            chk = check_conv(y, ref, error_model(dtype, precision))
            assert chk.passed, f"{dtype}/{precision}\n{chk.summary()}"
            assert chk.worst_ratio < 0.6, chk.summary()  # margin: half the bound or better


# ==========================================================================================================
# 3. rejects planted errors
# ==========================================================================================================
MODES = [("float32", p) for p in FLOAT32_PRECISIONS] + [("float16", "native"), ("bfloat16", "native")]


def _good_output(dtype: str, precision: str, *, scale_exp: int = 0, seed: int = 3):
    """An honest output of ``precision`` (emulated) for a small problem, its inputs and reference."""
    case = ConvCase(ConvProblem.make(2, 6, 5, 7, 7, 3, padding=1, dtype=dtype, has_bias=True), seed=seed,
                    x_exp=scale_exp, w_exp=scale_exp)
    x, w, b = case.make_inputs("cpu")
    kw = case.conv_kwargs()
    y = dict(_emulations(x, w, b, kw))[precision]
    return y, (x, w, b, kw), reference_conv2d(x, w, b, **kw)


@pytest.mark.parametrize("dtype, precision", MODES)
def test_rejects_one_planted_element(dtype, precision):
    """An error of 32 roundoffs of the mode (``2 u_op + passes K u_acc + u_out``, relative) at one element
    is rejected, and the message locates it; the honest output passes."""
    y, (x, w, b, kw), ref = _good_output(dtype, precision)
    model = error_model(dtype, precision)
    assert check_conv(y, ref, model).passed
    i = int(ref.value.abs().argmax())
    idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), y.shape))
    bad = y.clone()
    unit = 2 * model.u_op + model.passes * ref.reduction_length * model.u_acc + model.u_out
    bad[idx] = (y[idx].double() * (1 + 32 * unit)).to(y.dtype)
    chk = check_conv(bad, ref, model)
    assert not chk.passed and chk.n_bad == 1 and chk.first_bad == idx
    with pytest.raises(AssertionError) as info:
        assert_conv_close(bad, x, w, b, **kw, precision=precision, seed=123, repro="python -c 'repro()'")
    msg = str(info.value)
    for part in ("mismatches: 1 of", f"first at index {idx}", "max abs error", "max rel error", "norm-wise",
                 "seed    : 123", "repro()", "input [2, 6, 7, 7]"):
        assert part in msg, (part, msg)


@pytest.mark.parametrize("dtype, precision", MODES)
@pytest.mark.parametrize("corruption", ["zeros", "nan", "inf", "-inf", "scaled", "no_bias", "shifted"])
def test_rejects_wrong_outputs(dtype, precision, corruption):
    y, (x, w, b, kw), ref = _good_output(dtype, precision)
    model = error_model(dtype, precision)
    bad = y.clone()
    if corruption == "zeros":
        bad.zero_()
    elif corruption in ("nan", "inf", "-inf"):
        bad[0, 1, 2, 3] = float(corruption)
    elif corruption == "scaled":  # 3%: well above every mode's resolution
        bad = (y.double() * (1 + 2.0 ** -5)).to(y.dtype)
    elif corruption == "no_bias":
        bad = (y.double() - b.double()[None, :, None, None]).to(y.dtype)
    elif corruption == "shifted":  # off by one pixel along W
        bad = torch.roll(y, 1, dims=3)
    chk = check_conv(bad, ref, model)
    assert not chk.passed, chk.summary()
    if corruption in ("nan", "inf", "-inf"):
        assert chk.n_nonfinite == 1


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rejects_zeros_for_a_tiny_reference(dtype):
    """Inputs scaled by 2^-40 each: |reference| ~ 1e-24, far below any sloppy absolute tolerance."""
    y, _, ref = _good_output(dtype, "ieee" if dtype == "float32" else "native", scale_exp=-40)
    assert 0 < float(ref.value.abs().max()) < 1e-20
    model = error_model(dtype, "ieee" if dtype == "float32" else "native")
    assert check_conv(y, ref, model).passed
    chk = check_conv(torch.zeros_like(y), ref, model)
    assert not chk.passed and chk.n_bad > 0


def test_norm_check_rejects_zeros_where_cancellation_hides_them_elementwise():
    """x ~ 1 with a small ripple, w in +a/-a pairs: every output cancels (median M/|r| ~ 9000), so the TF32
    elementwise bound exceeds |r| and admits an all-zero output; the norm-wise bound does not."""
    g = torch.Generator().manual_seed(0)
    x = 1 + 2.0 ** -8 * torch.randn(1, 64, 6, 6, generator=g)
    half = torch.randn(4, 32, 3, 3, generator=g)
    w = torch.stack([half, -half], dim=2).reshape(4, 64, 3, 3)
    ref = reference_conv2d(x, w)
    model = error_model("float32", "tf32")
    honest = check_conv(F.conv2d(rn_tf32(x), rn_tf32(w)), ref, model)
    assert honest.passed, honest.summary()
    zeros = check_conv(torch.zeros_like(ref.value, dtype=torch.float32), ref, model)
    assert zeros.n_bad == 0 and not zeros.norm_ok, zeros.summary()


def test_overflow_to_inf_is_accepted_only_beyond_the_range():
    x = torch.full((1, 1, 1, 4), 200.0, dtype=torch.float16)
    w = torch.full((1, 1, 1, 4), 200.0, dtype=torch.float16)  # 4 * 40000 > 65504
    ref = reference_conv2d(x, w)
    model = error_model(torch.float16)
    assert check_conv(torch.full((1, 1, 1, 1), float("inf"), dtype=torch.float16), ref, model).passed
    assert not check_conv(torch.full((1, 1, 1, 1), -float("inf"), dtype=torch.float16), ref, model).passed


def test_shape_and_dtype_mismatches_fail():
    ref = reference_conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))
    model = error_model("float32", "ieee")
    assert not check_conv(torch.full((1, 1, 2, 3), 4.0), ref, model).passed
    assert not check_conv(torch.full((1, 1, 2, 2), 4.0, dtype=torch.float64), ref, model).passed
    assert check_conv(torch.full((1, 1, 2, 2), 4.0), ref, model).passed
    empty = check_within(torch.empty(0, 3), torch.empty(0, 3), ErrorBound(torch.empty(0, 3), 0.0))
    assert empty.passed


def test_floor_is_half_a_subnormal_spacing():
    """Underflow is the only absolute term: S * (u_out * tiny_out + K * u_acc * tiny_fp32)."""
    ref = reference_conv2d(torch.zeros(1, 1, 1, 1, dtype=torch.float16), torch.zeros(1, 1, 1, 1, dtype=torch.float16))
    m = error_model(torch.float16)
    floor = float(conv_error_bound(ref, m).elementwise)
    assert floor == SAFETY * (2.0 ** -25 + 2.0 ** -24 * 2.0 ** -126)


# ==========================================================================================================
# 4. the property checks catch planted kernel bugs
# ==========================================================================================================
_MUTANTS = itertools.count()
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _first_config(monkeypatch):
    """No config timing on a GPU: a mutant is compiled and run once per call, like the kernel it wraps."""
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "0")


def _register(monkeypatch, launch, base: str = "igemm"):
    """Register a kernel under a fresh name (fastconv memoises each call signature's kernel by name); returns
    it as an implementation under test."""
    good = REGISTRY[base]
    name = f"mutant{next(_MUTANTS)}"
    monkeypatch.setitem(REGISTRY, name, ConvKernel.from_launch(name, good.supports, good.configs, launch))
    return fastconv_impl(name)


def _mutant(monkeypatch, corrupt, base: str = "igemm"):
    """Register a kernel: ``base`` followed by ``corrupt(out, x, problem)`` (in place)."""
    good = REGISTRY[base]

    def launch(x, weight, bias, p, precision, out, config):
        good.launch(x, weight, bias, p, precision, out, config)
        corrupt(out, x, p)

    return _register(monkeypatch, launch, base)


CASE = ConvCase(ConvProblem.make(2, 4, 3, 6, 7, 3, padding=1, has_bias=True), layout="nhwc", seed=11)
CASE_S1 = ConvCase(ConvProblem.make(2, 4, 3, 7, 7, 3, padding=1), seed=12)
_UP = 1 + 2.0 ** -5


def test_the_mutant_harness_passes_a_correct_kernel(monkeypatch):
    name = _mutant(monkeypatch, lambda out, x, p: None)
    check_case(name, CASE, None)
    metamorphic.check_batch_independence(name, CASE, None)
    metamorphic.check_stride_is_subsampling(name, CASE_S1, None, (2, 1))
    metamorphic.check_padding_is_zero_padding(name, CASE, None)
    metamorphic.check_linearity(name, CASE, None, 1)
    check_repeatable(name, CASE, None, DEVICE)


def _skip_last_element(out, x, p):
    """Leave one element as the allocation left it (NaN under poisoning)."""
    out[-1, -1, -1, -1] = torch.empty((), dtype=out.dtype, device=out.device)


def _write_nchw_into_any_layout(out, x, p):
    """Write the values in NCHW order into the output's storage, whatever its strides."""
    vals = out.contiguous().view(-1).clone()
    torch.as_strided(out, (out.numel(),), (1,)).copy_(vals)


@pytest.mark.parametrize("bug, corrupt", [
    ("unwritten element", _skip_last_element),
    ("ignores output strides", _write_nchw_into_any_layout),
    ("scaled", lambda out, x, p: out.mul_(_UP)),
    ("swapped channels", lambda out, x, p: out.copy_(out[:, [1, 0, *range(2, out.shape[1])]])),
])
def test_reference_check_catches(monkeypatch, bug, corrupt):
    name = _mutant(monkeypatch, corrupt)
    with pytest.raises(AssertionError):
        check_case(name, CASE, None)


def test_reference_check_catches_a_dropped_bias(monkeypatch):
    good = REGISTRY["igemm"]

    def launch(x, weight, bias, p, precision, out, config):
        good.launch(x, weight, None, p.replace(has_bias=False), precision, out, config)

    name = _register(monkeypatch, launch)
    with pytest.raises(AssertionError):
        check_case(name, CASE, None)


def test_batch_check_catches_cross_sample_errors(monkeypatch):
    name = _mutant(monkeypatch, lambda out, x, p: out[1:].mul_(_UP))  # samples after the first are off
    with pytest.raises(AssertionError, match="batch independence"):
        metamorphic.check_batch_independence(name, CASE, None)


def test_stride_check_catches_stride_only_errors(monkeypatch):
    name = _mutant(monkeypatch, lambda out, x, p: out.mul_(_UP) if p.stride_w > 1 else None)
    with pytest.raises(AssertionError, match="stride"):
        metamorphic.check_stride_is_subsampling(name, CASE_S1, None, (1, 2))


def test_padding_check_catches_padding_only_errors(monkeypatch):
    name = _mutant(monkeypatch, lambda out, x, p: out.mul_(_UP) if p.pad_h > 0 else None)
    with pytest.raises(AssertionError, match="F.pad"):
        metamorphic.check_padding_is_zero_padding(name, CASE, None)


def test_linearity_check_catches_an_affine_kernel(monkeypatch):
    name = _mutant(monkeypatch, lambda out, x, p: out.add_(2.0 ** -4))
    with pytest.raises(AssertionError, match="linearity"):
        metamorphic.check_linearity(name, CASE, None, 1)


def test_determinism_check_catches_a_one_ulp_race(monkeypatch):
    """A last-bit difference on every other call: within the error model, but not deterministic."""
    calls = itertools.count()

    def flip(out, x, p):
        if next(calls) % 2:
            out.view(torch.int32)[0, 0, 0, 0] ^= 1

    name = _mutant(monkeypatch, flip)
    check_case(name, CASE, None)  # the reference check cannot see it
    with pytest.raises(AssertionError, match="declares itself deterministic"):
        check_repeatable(name, CASE, None, DEVICE)
