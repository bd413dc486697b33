"""Correctness of a benchmarked output under the project's one tolerance model, at benchmark sizes.

:mod:`fastconv.testing.tolerance` defines the error model (its table ``ERROR_MODELS``, the ``SAFETY``
factor, elementwise and norm-wise bounds built from the fp64 reference ``r``, the magnitude
``M = |x| (*) |w| + |b|`` and ``Q = x^2 (*) w^2 + b^2``).  Its reference is computed on the CPU, which is
right for test-sized problems but not for KernelBench's (hundreds of GFLOP, outputs of GiBs).  This
module evaluates *the same bounds* on the output's device, in fp64, a few samples at a time, keeping only
running sums: the number of elements outside the elementwise bound, non-finite outputs, and the norms that
make the norm-wise bound.  Multi-stage cases (KernelBench #86) are checked stage by stage, each against
the reference of the input that stage actually received.

Reported error: the norm-wise relative error ``||y - r|| / ||r||`` (as the reference anchors' ``*_err``),
with its bound; ``ok`` also requires every element within its elementwise bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..precision import resolve_precision
from ..testing.impl import ConvImpl
from ..testing.tolerance import SAFETY, error_model
from .problems import BenchCase, BenchInputs, BenchProblem, cudnn_precision, run_impl

__all__ = ["Check", "check_stage", "check_impl", "impl_precision"]


@dataclass
class Check:
    """Outcome of one check: norm-wise relative error and bound, elementwise violations, a message."""

    error: float
    tol: float
    n_bad: int = 0
    n: int = 0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.n_bad == 0 and self.error <= self.tol

    def to_json(self) -> dict:
        return {"rel_error": self.error, "tolerance": self.tol, "elements_outside_bound": self.n_bad,
                "elements": self.n, "ok": self.ok, "message": self.message}


def impl_precision(case: BenchCase, impl: str | ConvImpl) -> str:
    """The arithmetic ``impl`` uses on ``case`` (what its error model is): cuDNN per
    :func:`cudnn_precision`; the seed's kernel computes exact fp32 products; fastconv the case's; an
    implementation under test the first float32 precision it claims (None: torch's default on a GPU)."""
    if case.dtype != "float32":
        return case.resolved_precision  # one arithmetic per dtype: "native" for halves, "ieee" for float64
    if isinstance(impl, ConvImpl):
        claimed = impl.capabilities.precisions[0]
        return case.resolved_precision if impl.takes_precision else resolve_precision("float32", claimed, "cuda")
    if impl == "cudnn":
        return cudnn_precision(case)
    if impl == "direct":
        return "ieee"
    return case.resolved_precision


def _chunk(batch: int, per_sample_bytes: int, budget: int = 1 << 30) -> int:
    return max(1, min(batch, budget // max(1, per_sample_bytes)))


def check_stage(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, y: torch.Tensor, stride, padding,
                dilation, groups: int, precision: str) -> Check:
    """Check ``y = conv2d(x, w, b, ...)`` under the error model of ``(x.dtype, precision)``, on ``y``'s
    device in fp64, chunked over the batch.  ``x``/``y``: ``(N, C, H, W)``."""
    model = error_model(x.dtype, precision)
    meta = torch.device("meta")
    expected_shape = F.conv2d(torch.empty((1, *x.shape[1:]), device=meta), torch.empty(w.shape, device=meta),
                              None, stride, padding, dilation, groups).shape[1:]
    if tuple(y.shape) != (x.shape[0], *expected_shape) or y.dtype != x.dtype:
        return Check(math.inf, 0.0, message=f"output {list(y.shape)} {y.dtype}, expected "
                                            f"{[x.shape[0], *expected_shape]} {x.dtype}")
    k = w.shape[1] * w.shape[2] * w.shape[3] + (b is not None)
    k_acc = model.passes * k
    lin = 2 * model.u_op + k_acc * model.u_acc
    floor = SAFETY * (model.u_out * model.tiny_out + k_acc * model.u_acc * model.tiny_acc)
    big = float(torch.finfo(y.dtype).max)
    w64, b64 = w.double(), (None if b is None else b.double())
    wa, ba = w64.abs(), (None if b64 is None else b64.abs())
    w2, b2 = w64 * w64, (None if b64 is None else b64 * b64)
    args = (stride, padding, dilation, groups)
    per_sample = 8 * (x[0].numel() * 3 + y[0].numel() * 5)
    step = _chunk(x.shape[0], per_sample)
    err2 = r2 = m2 = q1 = 0.0
    n_bad = 0
    with torch.no_grad():
        for lo in range(0, x.shape[0], step):
            xc = x[lo:lo + step].double()
            r = F.conv2d(xc, w64, b64, *args)
            m = F.conv2d(xc.abs(), wa, ba, *args)
            q = F.conv2d(xc * xc, w2, b2, *args)
            yc = y[lo:lo + step].double()
            fin_y, fin_r = torch.isfinite(yc), torch.isfinite(r)
            both = fin_y & fin_r
            diff = torch.where(both, yc - r, torch.zeros_like(r)).abs()
            ok = both & (diff <= SAFETY * (lin * m + model.u_out * r.abs()) + floor)
            ok |= ~fin_r & ((yc == r) | (torch.isnan(yc) & torch.isnan(r)))
            ok |= fin_r & (r.abs() > big) & torch.isinf(yc) & (torch.sign(yc) == torch.sign(r))
            n_bad += int((~ok).sum())
            err2 += float((diff * diff).sum())
            r2 += float((torch.where(both, r, torch.zeros_like(r)) ** 2).sum())
            m2 += float((m * m).sum())
            q1 += float(q.sum())
            del xc, r, m, q, yc, diff, ok
    n = y.numel()
    norm_bound = SAFETY * ((2 * model.u_op + model.u_out) * math.sqrt(r2) + 2 * model.u_op * math.sqrt(q1)
                           + k_acc * model.u_acc * math.sqrt(m2)) + math.sqrt(n) * floor
    rn = math.sqrt(r2)
    error = math.sqrt(err2) / rn if rn > 0 else math.sqrt(err2)
    tol = norm_bound / rn if rn > 0 else norm_bound
    msg = "" if n_bad == 0 else f"{n_bad} of {n} elements outside the elementwise bound"
    return Check(error, tol, n_bad, n, msg)


def check_impl(case: BenchCase, inputs: BenchInputs, impl: str | ConvImpl, package=None) -> Check:
    """Run ``impl`` on ``case`` stage by stage and check each stage; returns the worst stage's check
    (a failing one first, else the one with the largest error relative to its bound)."""
    precision = impl_precision(case, impl)
    y = inputs.x
    worst: Check | None = None
    for i, (s, w, b) in enumerate(zip(case.stages, inputs.weights, inputs.biases)):
        one = BenchCase(BenchProblem(case.name, case.problem.group, (case.problem.stages[i],)), case.dtype,
                        case.layout, case.precision)
        out = run_impl(impl, one, BenchInputs(y, [w], [b]), package)
        c = check_stage(y, w, b, out, (s.stride_h, s.stride_w), s.torch_padding, (s.dil_h, s.dil_w), s.groups,
                        precision)
        if len(case.stages) > 1 and c.message:
            c.message = f"stage {i + 1}: {c.message}"
        if worst is None or (not c.ok and worst.ok) or (c.ok == worst.ok and c.error / max(c.tol, 1e-300) >
                                                        worst.error / max(worst.tol, 1e-300)):
            worst = c
        y = out
    return worst
