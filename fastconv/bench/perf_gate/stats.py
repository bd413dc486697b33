"""The performance gate's statistics: is a candidate slower than its baseline beyond the noise?

Per problem the statistic is the median of per-round ratios candidate/baseline (interleaved rounds), with a
bootstrap 95% confidence interval; the *spread* is the larger of the interval's half-width and half the range
of the per-block medians (the run-to-run variation).  A problem fails only if its slowdown exceeds the
threshold, the spread and an absolute floor (:func:`decide_paired`).  Against a saved run (no interleaving
possible) the medians are compared with the spreads of both runs combined (:func:`decide_unpaired`).
Pure Python + numpy: unit-tested on synthetic timings.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from ...tuning.timing import quantile

__all__ = ["Decision", "decide_paired", "decide_unpaired", "Summary", "summarize", "parse_threshold"]


@dataclass
class Decision:
    """Candidate vs baseline on one problem.  ``ratio`` = candidate time / baseline time (> 1: slower)."""

    ratio: float
    ci: tuple[float, float]
    spread: float  # relative run-to-run spread the slowdown must exceed
    threshold: float
    n: int
    base_ms: float = math.nan  # baseline median, for the absolute floor
    min_abs_ms: float = 0.0  # a slowdown must also exceed this many ms (launch/timer jitter floor)

    @property
    def slowdown(self) -> float:
        return self.ratio - 1.0

    @property
    def above_floor(self) -> bool:
        return not (self.slowdown * self.base_ms <= self.min_abs_ms)  # NaN base: no floor

    @property
    def failed(self) -> bool:
        """A slowdown beyond the threshold AND beyond the measured spread AND beyond the absolute floor."""
        return self.slowdown > self.threshold and self.slowdown > self.spread and self.above_floor

    @property
    def verdict(self) -> str:
        if self.failed:
            return "SLOWER"
        if self.slowdown > self.threshold:
            return "slower within noise" if self.above_floor else "slower, under floor"
        if -self.slowdown > max(self.threshold, self.spread):
            return "faster"
        return "ok"

    def to_json(self) -> dict:
        return {"ratio": self.ratio, "ci95": list(self.ci), "spread": self.spread,
                "threshold": self.threshold, "n": self.n, "verdict": self.verdict, "failed": self.failed}


def _bootstrap_median(values, n_boot: int, seed: int):
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    return np.median(v[idx], axis=1)


def decide_paired(base_ms, cand_ms, threshold: float, *, blocks: list[int] | None = None, n_boot: int = 2000,
                  seed: int = 0, min_abs_ms: float = 0.0) -> Decision:
    """Decide on interleaved measurements: ``base_ms[i]`` and ``cand_ms[i]`` come from the same round.

    ``blocks`` gives the number of rounds of each repeat (consecutive), for the run-to-run spread.
    """
    if len(base_ms) != len(cand_ms) or not base_ms:
        raise ValueError("paired timings must have the same, non-zero length")
    r = np.asarray(cand_ms, dtype=float) / np.asarray(base_ms, dtype=float)
    ratio = float(np.median(r))
    boot = _bootstrap_median(r, n_boot, seed)
    lo, hi = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    spread = (hi - lo) / 2
    if blocks:
        meds, start = [], 0
        for n in blocks:
            meds.append(float(np.median(r[start:start + n])))
            start += n
        spread = max(spread, (max(meds) - min(meds)) / 2)
    return Decision(ratio, (lo, hi), spread, threshold, len(r), float(np.median(base_ms)), min_abs_ms)


def _median_halfwidth(median: float, q1: float, q3: float, n: int) -> float:
    """Half-width of the ~95% confidence interval of a median from its IQR (McGill et al.'s notch)."""
    return 1.57 * (q3 - q1) / math.sqrt(max(n, 1))


@dataclass
class Summary:
    """A saved run's timing of one case: median, quartiles, rounds, and the raw times when saved."""

    median: float
    q1: float
    q3: float
    n: int
    times: list[float] | None = None


def summarize(times_ms) -> Summary:
    s = sorted(times_ms)
    return Summary(quantile(s, 0.5), quantile(s, 0.25), quantile(s, 0.75), len(s), list(times_ms))


def decide_unpaired(base: Summary, cand: Summary, threshold: float, *, n_boot: int = 2000, seed: int = 0,
                    min_abs_ms: float = 0.0) -> Decision:
    """Decide against a saved run: ratio of medians; spread = both runs' median uncertainties combined
    (bootstrap when raw times exist, else the IQR notch)."""
    ratio = cand.median / base.median
    if base.times and cand.times:
        bb = _bootstrap_median(base.times, n_boot, seed)
        bc = _bootstrap_median(cand.times, n_boot, seed + 1)
        lo, hi = (float(x) for x in np.percentile(bc / bb, [2.5, 97.5]))
        spread = (hi - lo) / 2
    else:
        rel_b = _median_halfwidth(base.median, base.q1, base.q3, base.n) / base.median
        rel_c = _median_halfwidth(cand.median, cand.q1, cand.q3, cand.n) / cand.median
        spread = ratio * math.hypot(rel_b, rel_c)
        lo, hi = ratio - spread, ratio + spread
    return Decision(ratio, (lo, hi), spread, threshold, min(base.n, cand.n), base.median, min_abs_ms)


def parse_threshold(text: str) -> float:
    """``"5%"`` or ``"0.05"`` -> 0.05."""
    t = str(text).strip()
    value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    if not 0 <= value < 10:
        raise argparse.ArgumentTypeError(f"threshold {text!r} out of range")
    return value
