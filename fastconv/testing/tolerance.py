"""The one tolerance model of fastconv: an error bound per dtype and precision mode, derived, not pasted.

A conv2d output element is a reduction ``y = sum_k x_k w_k (+ b)`` of ``K = C_in/groups * KH * KW`` products
(``K + 1`` terms with a bias).  Against the fp64 reference ``r`` of the *same* low-precision inputs
(:mod:`.reference`), three roundings can make the computed ``y`` differ:

1. operand rounding, relative ``u_op`` per operand, so ``<= 2 u_op |x_k w_k|`` per product (TF32 rounds both
   operands; separate fp32 multiplies round each product once);
2. accumulation in float32 (``u_acc = 2^-24``): each of the ``passes * K`` additions (FMA or tensor-core
   accumulate) errs by at most ``u_acc`` times the running sum, which is at most ``M = sum_k |x_k w_k|``; so
   ``<= passes * K * u_acc * M`` (Higham's worst-case ``gamma_K``, which holds for any summation order);
3. the final rounding to the output dtype, ``<= u_out |r|``.

Elementwise bound (per output element; ``M = |x| (*) |w| + |b|`` from the reference)::

    |y - r| <= S * ((2 u_op + passes K u_acc) M + u_out |r|) + floor
    floor    = S * (u_out tiny_out + passes K u_acc tiny_fp32)        # underflow: half a subnormal spacing

Why worst case ``K`` and not the probabilistic ``sqrt(K)``: tensor cores truncate when they accumulate, and
TF32/fp32 data of one sign make truncation errors add up linearly; a ``sqrt(K)`` bound with a small safety
factor fails there for ``K`` of a few hundred.  ``K`` still catches real bugs: a dropped or doubled term errs
by about ``M / K``, which exceeds the bound ``S K u_acc M = K 2^-23 M`` while ``K < ~2900`` (fp32 "ieee", half
types), and ``S 2 u_op M = 2^-9 M`` (TF32) while ``K < ~500``; a wrong index, a wrong sample or channel, a
missing bias or an unwritten element err by ``O(|r|)`` or ``O(M)``.

Norm-wise bound (over the whole output, absolute; checked as well, because where the reduction cancels
(``M >> |r|``) the elementwise bound is loose enough to admit an all-zero or a scaled output)::

    ||y - r||_2 <= S * ((2 u_op + u_out) ||r|| + 2 u_op ||sqrt(Q)|| + passes K u_acc ||M|| + sqrt(n) floor)

with ``Q = x^2 (*) w^2 + b^2``.  Operand rounding to nearest errs like independent random variables, whose
sum over ``k`` has a standard deviation of at most ``(sqrt(2/3) u_op) sqrt(Q)``; ``2 u_op sqrt(Q)`` is about
2.4 of those (times ``S``: ~5 standard deviations) and ``2 u_op ||r||`` allows a fully correlated (biased)
rounding, e.g. constant data.  The accumulation term stays worst-case for the reason above.

``S = 2`` (:data:`SAFETY`) covers arithmetic that truncates instead of rounding to nearest (tensor-core
accumulation; TF32 conversion by the hardware), which doubles each rounding error.

Assumptions: inputs are normal numbers (no subnormal operands, which TF32 tensor cores may flush to zero)
and the reference stays within the output dtype's range (overflow to ``inf`` is accepted where ``|r|``
exceeds the dtype's largest finite value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..problem import DTYPE_NAMES, ConvProblem
from .reference import ConvReference, reference_conv2d

__all__ = ["ErrorModel", "ERROR_MODELS", "SAFETY", "error_model", "register_error_model", "ErrorBound",
           "conv_error_bound", "ConvCheck", "check_within", "check_conv", "assert_conv_close",
           "assert_within"]

SAFETY = 2.0
U_FP32 = 2.0 ** -24  # unit roundoff of float32 (finfo.eps / 2)


@dataclass(frozen=True)
class ErrorModel:
    """Roundoff constants of one (dtype, precision) mode; see the module docstring for the bound they give."""

    dtype: str
    precision: str
    u_op: float  # relative rounding of each product's operands (0: products exact)
    u_out: float  # unit roundoff of the output dtype
    tiny_out: float  # smallest normal number of the output dtype
    passes: int = 1  # accumulations per product (tf32x3 accumulates three partial products)
    u_acc: float = U_FP32  # unit roundoff of the float32 accumulator
    tiny_acc: float = field(default=float(torch.finfo(torch.float32).tiny))
    why: str = ""

    def describe(self) -> str:
        def p2(v: float) -> str:
            return "0" if v == 0 else f"2^{math.log2(v):.4g}"

        return (f"{self.dtype}/{self.precision}: u_op={p2(self.u_op)}, u_acc={p2(self.u_acc)} x{self.passes}, "
                f"u_out={p2(self.u_out)}, safety {SAFETY:g}")


def _u(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) / 2


def _tiny(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).tiny)


_F32 = dict(u_out=_u(torch.float32), tiny_out=_tiny(torch.float32))

# The one table.  Keys: (dtype name, precision as resolved by fastconv.resolve_precision).
ERROR_MODELS: dict[tuple[str, str], ErrorModel] = {
    ("float32", "ieee"): ErrorModel(
        "float32", "ieee", u_op=U_FP32, **_F32,
        why="fp32 products: exact inside an FMA, rounded once (u = 2^-24) when multiplied separately"),
    ("float32", "tf32"): ErrorModel(
        "float32", "tf32", u_op=2.0 ** -11, **_F32,
        why="both operands rounded to TF32 (10 explicit mantissa bits, to nearest: u = 2^-11); the product of "
            "two TF32 values is exact in fp32.  Hardware truncation (2^-10) is covered by the safety factor"),
    ("float32", "tf32x3"): ErrorModel(
        "float32", "tf32x3", u_op=2.0 ** -21, passes=3, **_F32,
        why="a = hi + lo with hi = tf32(a): lo is rounded to TF32 (|lo| <= 2^-11 |a|, so 2^-22 |a| to nearest, "
            "2^-21 truncated) and lo*lo is dropped (2^-22 |ab|): at most 5 * 2^-22 per product, within "
            "2 * S * 2^-21; three products are accumulated per term (passes = 3)"),
    ("float16", "native"): ErrorModel(
        "float16", "native", u_op=0.0, u_out=_u(torch.float16), tiny_out=_tiny(torch.float16),
        why="fp16 x fp16 products are exact in fp32 (11 + 11 significant bits <= 24); fp32 accumulation; "
            "the output is rounded to fp16 (u = 2^-11)"),
    ("bfloat16", "native"): ErrorModel(
        "bfloat16", "native", u_op=0.0, u_out=_u(torch.bfloat16), tiny_out=_tiny(torch.bfloat16),
        why="bf16 x bf16 products are exact in fp32 (8 + 8 significant bits); fp32 accumulation; the output "
            "is rounded to bf16 (u = 2^-8)"),
}


def register_error_model(model: ErrorModel) -> ErrorModel:
    """Add (or replace) the model of a (dtype, precision) mode, e.g. for a user kernel's own arithmetic."""
    ERROR_MODELS[(model.dtype, model.precision)] = model
    return model


def _dtype_name(dtype: torch.dtype | str) -> str:
    if isinstance(dtype, str):
        return dtype
    try:
        return DTYPE_NAMES[dtype]
    except KeyError:
        raise ValueError(f"no error model for dtype {dtype}; known: {sorted({k[0] for k in ERROR_MODELS})}") from None


def error_model(dtype: torch.dtype | str, precision: str | None = None,
                device: torch.device | str | None = None) -> ErrorModel:
    """The model of ``dtype`` computed in ``precision``.

    ``precision=None`` means what :func:`fastconv.conv2d` would use now on ``device``
    (:func:`fastconv.resolve_precision`: float32 is "ieee" on the CPU, and TF32 on CUDA (or with no device)
    while ``torch.backends.cudnn.allow_tf32`` is set; "native" for half types).
    """
    from ..dispatch import resolve_precision

    name = _dtype_name(dtype)
    if name in DTYPE_NAMES.values():
        precision = resolve_precision(name, precision, device)
    try:
        return ERROR_MODELS[(name, precision)]
    except KeyError:
        raise ValueError(f"no error model for {name}/{precision}; known: {sorted(ERROR_MODELS)}") from None


# ----------------------------------------------------------------------------------------------------------
# Bounds
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorBound:
    """An elementwise bound (tensor, fp64, the output's shape) and a bound on the 2-norm of the error.

    Bounds add: if ``a`` is within ``A`` of ``r`` and ``b`` within ``B`` of ``r``, then ``a`` is within
    ``A + B`` of ``b`` (used to compare two computed outputs, e.g. a sample alone against the batch).
    """

    elementwise: torch.Tensor
    norm: float

    def __add__(self, other: ErrorBound) -> ErrorBound:
        return ErrorBound(self.elementwise + other.elementwise, self.norm + other.norm)


def conv_error_bound(ref: ConvReference, model: ErrorModel) -> ErrorBound:
    """The model's elementwise and norm-wise bounds on ``|y - ref.value|`` (see the module docstring)."""
    k_acc = model.passes * ref.reduction_length
    lin = 2 * model.u_op + k_acc * model.u_acc
    floor = SAFETY * (model.u_out * model.tiny_out + k_acc * model.u_acc * model.tiny_acc)
    r_abs = ref.value.abs()
    elementwise = SAFETY * (lin * ref.magnitude + model.u_out * r_abs) + floor
    n = ref.value.numel()
    if n == 0:
        return ErrorBound(elementwise, 0.0)
    r_norm = float(torch.linalg.vector_norm(ref.value))
    q_norm = float(torch.linalg.vector_norm(ref.square.sqrt()))
    m_norm = float(torch.linalg.vector_norm(ref.magnitude))
    norm = SAFETY * ((2 * model.u_op + model.u_out) * r_norm + 2 * model.u_op * q_norm
                     + k_acc * model.u_acc * m_norm) + math.sqrt(n) * floor
    return ErrorBound(elementwise, norm)


# ----------------------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ConvCheck:
    """The outcome of comparing an output with an expected one under a bound; ``message()`` explains it."""

    passed: bool
    shape: tuple
    expected_shape: tuple
    n: int = 0
    n_bad: int = 0
    first_bad: tuple | None = None
    first_bad_values: tuple[float, float, float] | None = None  # actual, expected, bound at first_bad
    n_nonfinite: int = 0  # NaN/Inf where the expected value is finite
    max_abs: float = 0.0
    max_abs_index: tuple | None = None
    max_rel: float = 0.0
    worst_ratio: float = 0.0  # max |error| / bound
    norm_err: float = 0.0
    norm_bound: float = 0.0
    rel_norm: float = 0.0  # ||error|| / ||expected||
    rel_norm_bound: float = 0.0
    norm_ok: bool = True
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.shape != self.expected_shape:
            return f"shape {list(self.shape)} != expected {list(self.expected_shape)}"
        lines = [f"mismatches: {self.n_bad} of {self.n} elements"]
        if self.first_bad is not None:
            a, e, b = self.first_bad_values
            lines[-1] += f" (first at index {self.first_bad}: actual {a:.9g}, expected {e:.9g}, bound {b:.3g})"
        if self.n_nonfinite:
            lines.append(f"non-finite: {self.n_nonfinite} NaN/Inf where the expected value is finite")
        lines.append(f"max abs error {self.max_abs:.3g} at {self.max_abs_index}, max rel error {self.max_rel:.3g}, "
                     f"worst error/bound {self.worst_ratio:.3g}")
        lines.append(f"norm-wise: ||error|| / ||expected|| = {self.rel_norm:.3g} (bound {self.rel_norm_bound:.3g})"
                     + ("" if self.norm_ok else "  <-- FAILS"))
        lines.extend(self.notes)
        return "\n".join(lines)


def _index(flat: int, shape: tuple) -> tuple:
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), shape)) if shape else ()


def check_within(actual: torch.Tensor, expected: torch.Tensor, bound: ErrorBound,
                 out_dtype: torch.dtype | None = None) -> ConvCheck:
    """Compare ``actual`` with ``expected`` (any dtypes/devices; compared in fp64 on the CPU) under ``bound``.

    Fails where ``|actual - expected| > bound.elementwise``, where ``actual`` is NaN/Inf but ``expected`` is
    finite, where ``expected`` is NaN/Inf but ``actual`` is not the same, and when the error's 2-norm exceeds
    ``bound.norm``.  With ``out_dtype``, an infinite ``actual`` is accepted where ``|expected|`` exceeds that
    dtype's range (with the same sign).
    """
    a = actual.detach().to(device="cpu", dtype=torch.float64)
    e = expected.detach().to(device="cpu", dtype=torch.float64)
    if a.shape != e.shape:
        return ConvCheck(False, tuple(a.shape), tuple(e.shape))
    n = a.numel()
    if n == 0:
        return ConvCheck(True, tuple(a.shape), tuple(e.shape))
    fin_e, fin_a = torch.isfinite(e), torch.isfinite(a)
    diff = torch.where(fin_e & fin_a, (a - e).abs(), torch.zeros_like(a))
    ok = fin_e & fin_a & (diff <= bound.elementwise)
    ok |= ~fin_e & ((a == e) | (torch.isnan(a) & torch.isnan(e)))  # the same special value
    if out_dtype is not None and out_dtype.is_floating_point:
        big = float(torch.finfo(out_dtype).max)
        ok |= fin_e & (e.abs() > big) & torch.isinf(a) & (torch.sign(a) == torch.sign(e))
    bad = ~ok
    nonfinite = fin_e & ~fin_a & bad

    chk = ConvCheck(True, tuple(a.shape), tuple(e.shape), n=n, n_bad=int(bad.sum()), n_nonfinite=int(nonfinite.sum()))
    if chk.n_bad:
        first = int(bad.flatten().nonzero()[0])
        chk.first_bad = _index(first, a.shape)
        chk.first_bad_values = (float(a.flatten()[first]), float(e.flatten()[first]),
                                float(bound.elementwise.flatten()[first]))
    flat_diff = diff.flatten()
    i_max = int(flat_diff.argmax())
    chk.max_abs, chk.max_abs_index = float(flat_diff[i_max]), _index(i_max, a.shape)
    nz = fin_e & (e != 0)
    if bool(nz.any()):
        chk.max_rel = float((diff[nz] / e[nz].abs()).max())
    chk.worst_ratio = float((diff / bound.elementwise.clamp_min(torch.finfo(torch.float64).tiny)).max())

    both = fin_e & fin_a
    chk.norm_err = float(torch.linalg.vector_norm(diff[both]))
    e_norm = float(torch.linalg.vector_norm(e[both]))
    chk.norm_bound = bound.norm
    chk.rel_norm = chk.norm_err / e_norm if e_norm > 0 else (0.0 if chk.norm_err == 0 else math.inf)
    chk.rel_norm_bound = bound.norm / e_norm if e_norm > 0 else math.inf
    chk.norm_ok = chk.norm_err <= bound.norm
    chk.passed = chk.n_bad == 0 and chk.norm_ok
    return chk


def check_conv(actual: torch.Tensor, ref: ConvReference, model: ErrorModel) -> ConvCheck:
    """Compare a conv output with its fp64 reference under the model's bounds (see :func:`check_within`)."""
    chk = check_within(actual, ref.value, conv_error_bound(ref, model), out_dtype=ref.out_dtype)
    if actual.dtype != ref.out_dtype:
        chk.passed = False
        chk.notes.append(f"dtype {actual.dtype} != expected {ref.out_dtype}")
    return chk


def _fail(chk: ConvCheck, title: str, *, model: ErrorModel | None, problem: ConvProblem | str | None,
          seed: int | None, repro: str | None) -> None:
    lines = [title]
    if problem is not None:
        lines.append(f"  problem : {problem.short() if isinstance(problem, ConvProblem) else problem}")
    if model is not None:
        lines.append(f"  model   : {model.describe()}")
    lines.extend("  " + line for line in chk.summary().splitlines())
    if seed is not None:
        lines.append(f"  seed    : {seed}")
    if repro:
        lines.append(f"  repro   : {repro}")
    raise AssertionError("\n".join(lines))


def _describe_call(input, weight, bias, stride, padding, dilation, groups) -> str:
    return (f"input {list(input.shape)} {input.dtype} strides {input.stride()}, weight {list(weight.shape)}, "
            f"bias {None if bias is None else list(bias.shape)}, stride={stride}, padding={padding!r}, "
            f"dilation={dilation}, groups={groups}")


def assert_conv_close(
    actual: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    *,
    precision: str | None = None,
    problem: ConvProblem | str | None = None,
    seed: int | None = None,
    repro: str | None = None,
    reference: ConvReference | None = None,
) -> ConvCheck:
    """Assert that ``actual`` is ``F.conv2d(input, weight, bias, stride, padding, dilation, groups)`` within
    the error model of ``input.dtype`` computed in ``precision`` (default: what ``fastconv.conv2d`` uses now on
    ``input``'s device).

    On failure the ``AssertionError`` gives the max abs/rel error, the number and first index of mismatches,
    the norm-wise error, the problem (``problem`` or the call's shapes), the ``seed`` and the ``repro`` line.
    Returns the :class:`ConvCheck` when it passes.
    """
    ref = reference if reference is not None else reference_conv2d(
        input, weight, bias, stride, padding, dilation, groups)
    model = error_model(input.dtype, precision, input.device)
    chk = check_conv(actual, ref, model)
    if not chk.passed:
        if problem is None:
            problem = _describe_call(input, weight, bias, stride, padding, dilation, groups)
        _fail(chk, "conv2d output differs from the fp64 reference beyond the error model",
              model=model, problem=problem, seed=seed, repro=repro)
    return chk


def assert_within(actual: torch.Tensor, expected: torch.Tensor, bound: ErrorBound, *, what: str,
                  model: ErrorModel | None = None, problem: ConvProblem | str | None = None,
                  seed: int | None = None, repro: str | None = None,
                  out_dtype: torch.dtype | None = None) -> ConvCheck:
    """Assert :func:`check_within`; ``what`` names the property (e.g. "batch independence")."""
    chk = check_within(actual, expected, bound, out_dtype=out_dtype)
    if not chk.passed:
        _fail(chk, f"{what}: outputs differ beyond the error model", model=model, problem=problem, seed=seed,
              repro=repro)
    return chk
