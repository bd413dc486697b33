"""The performance gate's A/B run: baseline and candidate on the same inputs, interleaved, and the verdict.

Every gate problem gets the same inputs for both; they run *interleaved* (A B, B A, ... with the L2 flushed
before every call) for ``repeats`` blocks of ``rounds`` rounds, decided by :mod:`.stats`.  Correctness: the
candidate's output on every timed problem and on the ragged ``GATE_CORRECTNESS`` problems is checked against
the fp64 reference (:mod:`fastconv.bench.accuracy`); any failure fails the gate.  Without a GPU only
correctness is checked (nothing is timed in the interpreter).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass, field

import torch

from ...tuning.timing import measure
from ..accuracy import check_impl
from ..case_runner import stage_plans
from ..problems import run_impl
from .stats import Decision, decide_paired, decide_unpaired, summarize

__all__ = ["GateResult", "ab_compare", "run_cases", "verdict", "EXIT_PASS", "EXIT_SLOWER", "EXIT_USAGE",
           "EXIT_WRONG"]

EXIT_PASS, EXIT_SLOWER, EXIT_USAGE, EXIT_WRONG = 0, 1, 2, 3


@dataclass
class GateResult:
    id: str
    base_ms: float | None = None
    cand_ms: float | None = None
    decision: Decision | None = None
    cand_error: float | None = None
    base_error: float | None = None
    tol: float | None = None
    failure: str | None = None  # a correctness failure or crash of the candidate
    candidate_times_ms: list[float] = field(default_factory=list)
    baseline_times_ms: list[float] = field(default_factory=list)
    candidate_kernels: str | None = None  # kernel and config per stage, as each side's tuner chose
    baseline_kernels: str | None = None

    @property
    def configs(self) -> str:
        """Whether both sides ran the same kernels and configs: a timing difference between different configs
        may be the tuner's choice, not the code change."""
        if self.candidate_kernels is None or self.baseline_kernels is None:
            return "-"
        return "same" if self.candidate_kernels == self.baseline_kernels else "DIFFER"

    def to_json(self) -> dict:
        return {"id": self.id, "baseline_ms": self.base_ms, "candidate_ms": self.cand_ms,
                "decision": self.decision.to_json() if self.decision else None,
                "candidate_rel_error": self.cand_error, "baseline_rel_error": self.base_error,
                "tolerance": self.tol, "failure": self.failure,
                "candidate_kernels": self.candidate_kernels, "baseline_kernels": self.baseline_kernels,
                "candidate_times_ms": self.candidate_times_ms, "baseline_times_ms": self.baseline_times_ms}


def _kernels(case, inputs, package) -> str:
    """Kernel and config per stage, as ``package``'s own :func:`fastconv.plan` reports them."""
    return " + ".join(f"{k.get('kernel', '?')} {k.get('config') or ''}".strip() if "error" not in k else
                      f"error: {k['error']}" for k in stage_plans(case, inputs, "fastconv", package))


def _check(case, inputs, package, label: str) -> tuple[float | None, float | None, str | None]:
    try:
        c = check_impl(case, inputs, "fastconv", package)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        return None, None, f"{label} raised {type(exc).__name__}: {first}"
    if not c.ok:
        return c.error, c.tol, (f"relative error {c.error:.3g} (bound {c.tol:.3g})"
                                + (f"; {c.message}" if c.message else ""))
    return c.error, c.tol, None


def ab_compare(baseline, candidate, backend, *, rounds: int, repeats: int, threshold: float,
               min_abs_ms: float = 0.0):
    """Time two callables interleaved (``repeats`` blocks of ``rounds`` rounds) and decide.
    Returns ``(baseline_times_ms, candidate_times_ms, Decision)``."""
    base_ms: list[float] = []
    cand_ms: list[float] = []
    for _ in range(repeats):
        t = measure({"baseline": baseline, "candidate": candidate}, backend, rounds=rounds, first_call=False)
        base_ms += t["baseline"].times_ms
        cand_ms += t["candidate"].times_ms
    return base_ms, cand_ms, decide_paired(base_ms, cand_ms, threshold, blocks=[rounds] * repeats,
                                           min_abs_ms=min_abs_ms)


@contextlib.contextmanager
def _autotune(enabled: bool):
    """``FASTCONV_AUTOTUNE=1`` inside when ``enabled`` (both sides tuned, as a user who cares about speed
    runs them), else ``0`` (the untimed choice); every package version's tuner reads it on each choice."""
    saved = os.environ.get("FASTCONV_AUTOTUNE")
    os.environ["FASTCONV_AUTOTUNE"] = "1" if enabled else "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("FASTCONV_AUTOTUNE", None)
        else:
            os.environ["FASTCONV_AUTOTUNE"] = saved



def run_cases(cases, device, base, cand, saved, backend, *, rounds: int, repeats: int, threshold: float,
              min_abs_ms: float) -> list[GateResult]:
    """Check (and, for cases marked timed, time) each ``(case, timed)``: candidate against the baseline
    package ``base`` interleaved, or against the ``saved`` run's summaries when ``base`` is None."""
    results: list[GateResult] = []
    for i, (case, do_time) in enumerate(cases, 1):
        print(f"[{i}/{len(cases)}] {case.id}", file=sys.stderr, flush=True)
        res = GateResult(case.id)
        results.append(res)
        inputs = case.make_inputs(device)
        # correctness-only problems take each kernel's default config: autotuning them would compile every
        # config of every kernel for shapes nobody times
        with _autotune(do_time):
            res.cand_error, res.tol, res.failure = _check(case, inputs, cand, "candidate")
            res.candidate_kernels = _kernels(case, inputs, cand)
            base_failure = None
            if base is not None:
                res.base_error, _, base_failure = _check(case, inputs, base, "baseline")
                res.baseline_kernels = _kernels(case, inputs, base)
        if not do_time or res.failure:
            continue
        if base_failure is not None and res.base_error is None:  # the baseline raised: nothing to time against
            print(f"gate: {case.id}: baseline {base_failure}; not timed", file=sys.stderr)
            continue
        fc = lambda case=case, inputs=inputs: run_impl("fastconv", case, inputs, cand)
        if base is not None:
            fb = lambda case=case, inputs=inputs: run_impl("fastconv", case, inputs, base)
            res.baseline_times_ms, res.candidate_times_ms, res.decision = ab_compare(
                fb, fc, backend, rounds=rounds, repeats=repeats, threshold=threshold, min_abs_ms=min_abs_ms)
            res.base_ms = summarize(res.baseline_times_ms).median
        else:
            ref = saved.get(case.id)
            if ref is None:
                print(f"gate: {case.id} is not in the saved run; timed for the record only", file=sys.stderr)
            t = measure({"candidate": fc}, backend, rounds=rounds * repeats, first_call=False)
            res.candidate_times_ms = t["candidate"].times_ms
            if ref is not None:
                res.decision = decide_unpaired(ref, summarize(res.candidate_times_ms), threshold,
                                               min_abs_ms=min_abs_ms)
                res.base_ms = ref.median
        res.cand_ms = summarize(res.candidate_times_ms).median
        del inputs
        torch.cuda.empty_cache()
    return results


def verdict(results: list[GateResult], timed: bool, threshold: float) -> tuple[int, str, float | None]:
    """``(exit status, the one-line verdict, geomean ratio)`` of a gate run."""
    wrong = [r for r in results if r.failure]
    slower = [r for r in results if r.decision is not None and r.decision.failed]
    ratios = [r.decision.ratio for r in results if r.decision is not None]
    geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None
    if wrong:
        r = wrong[0]
        return EXIT_WRONG, (f"gate: FAIL (correctness): candidate wrong on {r.id}: {r.failure}"
                            + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else "")), geo
    if slower:
        r = max(slower, key=lambda r: r.decision.slowdown)
        d = r.decision
        return EXIT_SLOWER, (
            f"gate: FAIL (performance): {r.id} is {100 * d.slowdown:.1f}% slower (95% CI {d.ci[0]:.3f}.."
            f"{d.ci[1]:.3f}), beyond threshold {100 * d.threshold:.1f}% and spread {100 * d.spread:.1f}%"
            + (f"; {len(slower)} problems slower" if len(slower) > 1 else "")), geo
    if timed and ratios:
        return EXIT_PASS, (f"gate: PASS: no slowdown beyond {100 * threshold:.1f}% and the spread on "
                           f"{len(ratios)} problems (geomean ratio {geo:.3f}); candidate correct on {len(results)} "
                           "problems"), geo
    return EXIT_PASS, f"gate: PASS (correctness only, NOT TIMED): candidate correct on {len(results)} problems", geo
