"""Device-side timing: warm-up outside the numbers, L2 flushed before every timed call, CUDA events, medians.

:func:`measure` times several callables *interleaved*: every round runs each of them once, in an order
that alternates between rounds (``A B``, ``B A``, ...), so slow drifts of the GPU (clocks, temperature,
other tenants) hit all of them alike and per-round ratios pair up measurements taken a few milliseconds
apart (what the A/B gate needs).  Before each timed call the L2 cache is flushed by writing a buffer
larger than it (256 MB, or twice the L2 size if larger), so every call starts cold, like
``triton.testing.do_bench``; optionally inputs rotate over several sets too.

Before the rounds each callable runs once on its own, synchronised and timed on the host: the *first call*
(compilation, autotuning, weight packing), reported separately and never mixed into the statistics.
Then ``warmup`` untimed calls.

The host is kept ahead of the device.  A call's events bracket what the *device* does, but when the device is
idle and the host takes longer to enqueue the call than the device takes to run it (a 15 us convolution behind
~100 us of Python), the bracket measures the host: its speed, its jitter, other processes on its cores.  An
unchanged kernel then "regresses" by 100% on a busier runner (measured on an H100: cuDNN's own 16 us latency
case read 35 us).  So before each timed call the device is given a spin of its own (``torch.cuda._sleep``) long
enough to cover the host's enqueue time measured in the warm-up (twice it, plus 50 us, at most 2 ms): the call's
kernels then run back to back, as they do in a busy stream.  What the host costs per call is not lost: it is
recorded per round (``host_us``) and reported beside the device time.  ``hold=False`` turns this off.

The clock is a :class:`TimingBackend`; :class:`CudaEvents` is the real one.  There is deliberately no
CPU backend: under Triton's interpreter nothing is timed (tests use a synthetic backend).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["TimingBackend", "CudaEvents", "Timing", "measure", "rounds_for_budget", "quantile",
           "default_backend", "hold_for"]


class TimingBackend:
    """What :func:`measure` needs from a device: markers with elapsed times, a sync and an L2 flush."""

    name = "abstract"

    def marker(self):  # pragma: no cover - interface
        raise NotImplementedError

    def elapsed_ms(self, start, end) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def synchronize(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def flush_l2(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def hold(self, us: float) -> None:
        """Keep the device busy for ``us`` microseconds from when it reaches this point (no-op if it can't)."""

    def host_clock(self) -> float:
        """Host seconds, for the enqueue times (a synthetic backend may simulate them)."""
        return time.perf_counter()

    def describe(self) -> str:
        return self.name


HOLD_MARGIN_US = 50.0
HOLD_CAP_US = 2000.0


def hold_for(host_us: Sequence[float]) -> float:
    """Device spin (us) that covers enqueue times like ``host_us``: twice the largest, plus a margin, capped."""
    return min(HOLD_CAP_US, 2.0 * max(host_us, default=0.0) + HOLD_MARGIN_US)


class CudaEvents(TimingBackend):
    """``torch.cuda.Event`` pairs on the current stream; the L2 flush zeroes a buffer larger than L2."""

    name = "cuda-events"

    def __init__(self, device=None, flush_bytes: int | None = None):
        self.torch = torch
        if device is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = torch.device(device)
        props = torch.cuda.get_device_properties(self.device)
        l2 = int(getattr(props, "L2_cache_size", 0) or 0)
        self.flush_bytes = flush_bytes or max(256 * 1024 * 1024, 2 * l2)
        self._buf = torch.empty(self.flush_bytes // 4, dtype=torch.int32, device=self.device)
        self._cycles: float | None = None

    def marker(self):
        ev = self.torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def elapsed_ms(self, start, end) -> float:
        return float(start.elapsed_time(end))

    def synchronize(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def flush_l2(self) -> None:
        self._buf.zero_()

    def hold(self, us: float) -> None:
        self.torch.cuda._sleep(max(1, int(us * self._cycles_per_us())))

    def _cycles_per_us(self) -> float:
        """SM clock cycles per microsecond of ``torch.cuda._sleep``, measured once (after a spin to raise clocks)."""
        if self._cycles is None:
            self.torch.cuda._sleep(2_000_000)
            start = self.marker()
            self.torch.cuda._sleep(2_000_000)
            end = self.marker()
            end.synchronize()
            self._cycles = 2_000_000 / (self.elapsed_ms(start, end) * 1e3)
        return self._cycles

    def describe(self) -> str:
        return (f"CUDA events, L2 flushed ({self.flush_bytes >> 20} MB written) before every timed call, "
                "host kept ahead of the device")


def default_backend(device) -> TimingBackend | None:
    """The timing backend for ``device``: CUDA events on a GPU, None (not timed) elsewhere."""
    device = torch.device(device)
    if device.type == "cuda":
        return CudaEvents(device)
    return None


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (numpy's default method)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class Timing:
    """Per-call device times (ms) of one callable, in round order, and its first-call host time (s)."""

    label: str
    times_ms: list[float] = field(default_factory=list)
    first_call_s: float | None = None
    host_us: list[float] = field(default_factory=list)  # host time to enqueue each timed call
    hold_us: float = 0.0  # device spin before each timed call (see the module's docstring)

    @property
    def rounds(self) -> int:
        return len(self.times_ms)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else math.nan

    @property
    def q1_ms(self) -> float:
        return quantile(sorted(self.times_ms), 0.25)

    @property
    def q3_ms(self) -> float:
        return quantile(sorted(self.times_ms), 0.75)

    @property
    def iqr_ms(self) -> float:
        return self.q3_ms - self.q1_ms

    @property
    def host_us_median(self) -> float | None:
        return statistics.median(self.host_us) if self.host_us else None

    @property
    def min_ms(self) -> float:
        return min(self.times_ms) if self.times_ms else math.nan

    def summary(self) -> dict:
        return {"median_ms": self.median_ms, "q1_ms": self.q1_ms, "q3_ms": self.q3_ms, "min_ms": self.min_ms,
                "rounds": self.rounds, "first_call_s": self.first_call_s,
                "host_enqueue_us_median": self.host_us_median,
                "hold_us": self.hold_us,
                "times_ms": list(self.times_ms)}


def rounds_for_budget(per_round_ms: float, budget_s: float, min_rounds: int, max_rounds: int) -> int:
    """How many rounds fit in ``budget_s`` when one round takes ``per_round_ms``, clamped."""
    if per_round_ms <= 0 or not math.isfinite(per_round_ms):
        return max_rounds
    return int(min(max_rounds, max(min_rounds, budget_s * 1e3 // per_round_ms)))


def measure(
    fns: dict[str, Callable[[], object]],
    backend: TimingBackend,
    *,
    rounds: int | None = None,
    budget_s: float = 1.0,
    min_rounds: int = 10,
    max_rounds: int = 500,
    warmup: int = 3,
    flush: bool = True,
    first_call: bool = True,
    hold: bool = True,
    on_round: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Timing]:
    """Time each callable of ``fns`` interleaved, ``rounds`` times (or as many as fit ``budget_s``).

    Returns one :class:`Timing` per label, whose ``times_ms[i]`` are from round ``i`` (so timings of
    different labels pair up by index).  ``on_round(i, {label: ms})`` is called after each round (the
    pytest-benchmark fixture uses it to feed its clock; the CLI for progress).
    """
    labels = list(fns)
    out = {k: Timing(k) for k in labels}
    # -- first call of each (compile, autotune, caches): host-timed, reported apart -------------------------
    for k in labels:
        backend.synchronize()
        t0 = time.perf_counter()
        fns[k]()
        backend.synchronize()
        if first_call:
            out[k].first_call_s = time.perf_counter() - t0
    # -- warm-up: an estimate of one round for the budget, and each callable's host enqueue time -----------
    est = 0.0
    warm_host: dict[str, list[float]] = {k: [] for k in labels}
    for _ in range(max(1, warmup)):
        res = _one_round(fns, labels, backend, flush, holds={})
        est = sum(ms for ms, _ in res.values())
        for k, (_, host_us) in res.items():
            warm_host[k].append(host_us)
    if hold:
        for k in labels:
            out[k].hold_us = hold_for(warm_host[k])
    holds = {k: out[k].hold_us for k in labels}
    if rounds is None:
        rounds = rounds_for_budget(est, budget_s, min_rounds, max_rounds)
    # -- timed rounds, alternating order -------------------------------------------------------------------
    for i in range(rounds):
        order = labels if i % 2 == 0 else labels[::-1]
        res = _one_round(fns, order, backend, flush, holds)
        for k, (ms, host_us) in res.items():
            out[k].times_ms.append(ms)
            out[k].host_us.append(host_us)
        if on_round is not None:
            on_round(i, {k: ms for k, (ms, _) in res.items()})
    return out


def _one_round(fns, order, backend: TimingBackend, flush: bool, holds: dict[str, float]
               ) -> dict[str, tuple[float, float]]:
    """One call of each callable in ``order``: ``{label: (device ms, host enqueue us)}``."""
    marks = []
    for k in order:
        if holds.get(k, 0.0) > 0:
            backend.hold(holds[k])  # the device waits here while the host enqueues the call below
        if flush:
            backend.flush_l2()
        h0 = backend.host_clock()
        start = backend.marker()
        fns[k]()
        end = backend.marker()
        marks.append((k, start, end, (backend.host_clock() - h0) * 1e6))
    backend.synchronize()
    return {k: (backend.elapsed_ms(start, end), host_us) for k, start, end, host_us in marks}
