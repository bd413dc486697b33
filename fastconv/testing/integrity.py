"""Checks that an implementation computes what it returns, in the call, from the inputs it was given.

A checker that compares one output with a reference can be fooled (KernelBench's maintainers list: inputs
mutated in place, outputs cached across calls, work hidden on a side stream).  These checks close those
doors; each has a planted cheating implementation in ``tests/test_cheats.py`` that it rejects.

- :class:`Watch` (every call the property suite makes goes through one): after each call, the output is a
  plain dense strided tensor on the input's device (no subclass, fake, lazy or meta tensor, no overlapping
  elements), it shares no memory with any input or with any other output of the watch, no input changed
  (every byte of its storage, NaN guard bands of strided views included, and its version counter), and,
  when the watch closes, no output changed after its call returned (work left running on a side stream or
  a thread, or an output buffer reused by a later call);
- :func:`check_fresh_values`: the same buffers refilled with new values, a weight updated in place, the same
  values in another layout, the same tensors in another precision: each result is right for what it was
  given (no output cached by address or shape, no stale packed weight or plan);
- :func:`check_repeatable`: identical calls agree bitwise (implementations that declare determinism) or
  within the error model of each other, and each is right;
- :func:`check_streams` (CUDA): every kernel of a call runs on the caller's stream, unless the
  implementation declares ``side_streams`` (then the after-return check above still applies).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import torch
import torch.nn.functional as F

from .cases import ConvCase, with_layout
from .impl import ConvImpl
from .memory import layout_mismatch
from .reference import reference_conv2d
from .tolerance import assert_conv_close, assert_within, conv_error_bound, error_model

__all__ = ["IntegrityError", "Watch", "watch", "check_fresh_values", "check_repeatable", "check_streams",
           "kernel_streams", "graph_replay"]

# how long a watch waits, after synchronising, before it compares outputs with their state at return (a
# thread or stream still writing shows up as a change)
SETTLE_SECONDS = 0.002


class IntegrityError(AssertionError):
    """An implementation broke the contract of a function call (not just a wrong number)."""


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The bytes of ``t``'s whole storage (a flat uint8 tensor viewing it)."""
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())


def _span(t: torch.Tensor) -> tuple[int, int] | None:
    """The byte range ``[lo, hi)`` of memory ``t``'s elements occupy (None for no elements)."""
    if t.numel() == 0:
        return None
    lo = t.data_ptr()
    extent = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride()))
    return lo, lo + (extent + 1) * t.element_size()


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    sa, sb = _span(a), _span(b)
    return sa is not None and sb is not None and a.device == b.device and sa[0] < sb[1] and sb[0] < sa[1]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN payloads included)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.numel() == 0:
        return True
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return bool(torch.equal(a.contiguous().view(ints), b.contiguous().view(ints)))


def _structure_problem(y, x: torch.Tensor) -> str | None:
    """Why ``y`` is not a plain, materialised, dense output on ``x``'s device (None: it is)."""
    if type(y) is not torch.Tensor:
        return (f"returned a {type(y).__module__}.{type(y).__qualname__}, not a plain torch.Tensor (a tensor "
                "subclass can compute lazily, fake its data or intercept the comparison)")
    if y.is_meta or y.device.type == "meta":
        return "returned a meta tensor (no data)"
    if y.layout != torch.strided:
        return f"returned a {y.layout} tensor, not a strided one"
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is not None and hasattr(functorch, "is_functorch_wrapped_tensor") and \
            functorch.is_functorch_wrapped_tensor(y):
        return "returned a functorch-wrapped tensor"
    if y.device != x.device:
        return f"returned a tensor on {y.device}, the input is on {x.device}"
    if y.numel() and torch._debug_has_internal_overlap(y) == 1:
        return f"output elements share memory (strides {y.stride()}): an expanded or broadcast tensor"
    if y.numel():
        need = y.storage_offset() * y.element_size() + (_span(y)[1] - _span(y)[0])
        if y.untyped_storage().nbytes() < need:
            return "the output's storage is smaller than its elements need"
    return None


class Watch:
    """Runs calls of implementations and checks each one's contract (see the module docstring).

    Use as a context manager; :meth:`call` returns the output; on a normal exit every output is compared
    with its state when its call returned (after synchronising and a short wait).
    """

    def __init__(self, settle: float = SETTLE_SECONDS, *, guard_bands: bool = True):
        self.settle = settle
        self.guard_bands = guard_bands  # compare inputs' whole storages (False: only their elements)
        self._inputs: list[torch.Tensor] = []
        self._outputs: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # (what, output, snapshot)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.verify()

    def call(self, impl: ConvImpl, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None, stride=1,
             padding=0, dilation=1, groups: int = 1, *, precision: str | None = None, what: str = "") -> torch.Tensor:
        """``impl(x, w, b, stride, padding, dilation, groups)`` with every per-call check."""
        label = f"{impl.name}{f' ({what})' if what else ''}"
        inputs = [t for t in (x, w, b) if t is not None]
        raw = _bytes if self.guard_bands else (lambda t: t.detach())
        before = [(raw(t).clone(), t._version) for t in inputs]
        y = impl(x, w, b, stride, padding, dilation, groups, precision=precision)
        # a snapshot of the output as the call left it, taken on the caller's stream without waiting
        snapshot = y.detach().clone() if isinstance(y, torch.Tensor) and not y.is_meta else None
        why = _structure_problem(y, x)
        if why is not None:
            raise IntegrityError(f"{label}: {why}")
        _synchronize(x.device)
        for name, t, (saved, version) in zip(("input", "weight", "bias"), inputs, before):
            if not _same_bits(raw(t), saved):
                raise IntegrityError(f"{label}: the {name} was modified in place (its storage changed)")
            if t._version != version:
                raise IntegrityError(f"{label}: an in-place operation ran on the {name} (version counter "
                                     f"{version} -> {t._version})")
        for name, t in zip(("input", "weight", "bias"), inputs):
            if _overlap(y, t):
                raise IntegrityError(f"{label}: the output shares memory with the {name}")
        for t in self._inputs:
            if _overlap(y, t):
                raise IntegrityError(f"{label}: the output shares memory with an input of an earlier call")
        for other_what, other, _ in self._outputs:
            if _overlap(y, other):
                raise IntegrityError(f"{label}: the output shares memory with the output of an earlier call "
                                     f"({other_what or 'earlier call'}): a buffer reused across calls")
        self._inputs.extend(inputs)
        self._outputs.append((label, y, snapshot))
        return y

    def verify(self) -> None:
        """Every output still holds what it held when its call returned."""
        if not self._outputs:
            return
        _synchronize(self._outputs[0][1].device)
        if self.settle:
            time.sleep(self.settle)
        for label, y, snapshot in self._outputs:
            if not _same_bits(y.detach(), snapshot):
                raise IntegrityError(
                    f"{label}: the output changed after the call returned (work still running on a side stream "
                    "or thread when it returned, or a buffer rewritten by a later call)")


def watch(settle: float = SETTLE_SECONDS, *, guard_bands: bool = True) -> Watch:
    return Watch(settle, guard_bands=guard_bands)


# ----------------------------------------------------------------------------------------------------------
def _assert_right(impl: ConvImpl, case: ConvCase, precision, y, x, w, b, what: str) -> None:
    problem = f"{case.short()} impl={impl.name} precision={precision} [{what}]"
    if impl.capabilities.output_format == "torch":
        why = layout_mismatch(y, F.conv2d(x, w, b, **case.conv_kwargs()))  # torch's own output, for its format
        if why is not None:
            raise AssertionError(f"{why}\n  problem: {problem}")
    assert_conv_close(y, x, w, b, **case.conv_kwargs(), precision=precision, problem=problem, seed=case.seed)


def _refill(case: ConvCase, seed: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    return case.replace(seed=seed).make_inputs(device)


def check_fresh_values(impl: ConvImpl, case: ConvCase, precision: str | None, device, *,
                       other_layout: str | None = None, other_precision: str | None = None) -> None:
    """Results follow the values, not the addresses: call, refill the same input buffers (and update the
    weight in place) with new values, call again; then (optionally) the same values in ``other_layout``, and
    the same tensors in ``other_precision``.  Each output must be right for what the call was given."""
    x, w, b = case.make_inputs(device)
    kw = case.conv_kwargs()
    with Watch() as wt:
        y1 = wt.call(impl, x, w, b, **kw, precision=precision, what="first values")
        _assert_right(impl, case, precision, y1, x, w, b, "first values")
    x2, w2, b2 = _refill(case, case.seed + 7919, device)
    with torch.no_grad():
        x.copy_(x2)
        w.copy_(w2)  # an in-place update, as an optimizer step makes
        if b is not None:
            b.copy_(b2)
    with Watch() as wt:
        y2 = wt.call(impl, x, w, b, **kw, precision=precision, what="new values in the same buffers")
        _assert_right(impl, case, precision, y2, x, w, b, "new values in the same buffers (a result cached by "
                      "address or shape, or a stale packed weight, fails here)")
    if other_layout is not None and other_layout != case.layout:
        x3 = with_layout(x.clone(), other_layout)
        with Watch() as wt:
            y3 = wt.call(impl, x3, w, b, **kw, precision=precision, what=f"same values, {other_layout} input")
            _assert_right(impl, case.replace(layout=other_layout), precision, y3, x3, w, b,
                          f"same values in {other_layout} (a plan cached without the strides fails here)")
    if other_precision is not None and other_precision != precision:
        with Watch() as wt:
            y4 = wt.call(impl, x, w, b, **kw, precision=other_precision, what=f"precision {other_precision}")
            _assert_right(impl, case, other_precision, y4, x, w, b,
                          f"same tensors in precision {other_precision} after {precision}")


def check_repeatable(impl: ConvImpl, case: ConvCase, precision: str | None, device, calls: int = 3, *,
                     settle: float = 0.05) -> None:
    """``calls`` identical calls: each right, and all bitwise equal (declared deterministic) or within the
    error model of each other; ``settle`` seconds after the last call, no output may have changed since its
    call returned."""
    x, w, b = case.make_inputs(device)
    kw = case.conv_kwargs()
    ref = reference_conv2d(x, w, b, **kw)
    model = error_model(case.geometry.dtype, precision, device)
    bound = conv_error_bound(ref, model)
    with Watch(settle) as wt:
        ys = [wt.call(impl, x, w, b, **kw, precision=precision, what=f"call {i + 1} of {calls}")
              for i in range(calls)]
    for i, y in enumerate(ys):
        assert_conv_close(y, x, w, b, **kw, precision=precision, reference=ref, seed=case.seed,
                          problem=f"{case.short()} impl={impl.name} precision={precision} [call {i + 1} of "
                                  f"{calls} with the same inputs]")
        if i == 0:
            continue
        if impl.capabilities.deterministic:
            if not _same_bits(y, ys[0]):
                diff = (y.double() - ys[0].double()).abs()
                raise IntegrityError(
                    f"{impl.name}: call {i + 1} differs from call 1 with the same inputs ({int((diff > 0).sum())} "
                    f"of {y.numel()} elements, max {float(diff.max()):.3g}), and the implementation declares "
                    f"itself deterministic\n  problem: {case.short()} precision={precision}")
        else:
            assert_within(y, ys[0], bound + bound, what=f"call {i + 1} vs call 1 with the same inputs",
                          model=model, problem=case.short(), seed=case.seed, out_dtype=y.dtype)


# ----------------------------------------------------------------------------------------------------------
def kernel_streams(trace: dict) -> tuple[set, set]:
    """From a chrome trace (``torch.profiler``'s export) of ``marker; synchronize; call; marker; synchronize``:
    the caller's stream (that of the first kernel, the first marker, which finished before the call began) and
    the streams of every kernel between the markers (the second marker is the caller's stream's last kernel).
    Work left on another stream may finish after the second marker: it is still the call's, so it is never
    taken for a marker."""
    kernels = sorted((ev for ev in trace.get("traceEvents", []) if ev.get("cat") == "kernel" and ev.get("ph") == "X"),
                     key=lambda ev: ev.get("ts", 0))

    def stream(ev):
        return (ev.get("args") or {}).get("stream")

    if not kernels:
        return set(), set()
    caller = stream(kernels[0])
    last = max(i for i, ev in enumerate(kernels) if stream(ev) == caller)
    if last == 0:  # one marker only: no bracket, nothing to say
        return set(), set()
    return {caller}, {stream(ev) for i, ev in enumerate(kernels) if i not in (0, last)}


def graph_replay(fn, static_x: torch.Tensor, new_x: torch.Tensor, warmup: int = 2
                 ) -> tuple[torch.Tensor, bool]:
    """CUDA: ``fn(static_x)`` captured in a ``torch.cuda.CUDAGraph`` (after ``warmup`` calls on a side stream,
    as torch asks, so plans, compilation and tuning stay outside the capture), then replayed with
    ``new_x``'s values copied into ``static_x``.  Returns the graph's output (replayed on ``new_x``) and
    whether it equals an eager ``fn(new_x)`` bit for bit: a kernel that skips work on a replay, reads a
    host-side copy of its input or launches outside the captured stream gives False (or fails the capture).
    ``static_x`` is overwritten; call under ``torch.no_grad()`` for a module."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = fn(static_x)
    static_x.copy_(new_x)
    graph.replay()
    return static_y, bool(torch.equal(static_y, fn(new_x)))


def check_streams(impl: ConvImpl, case: ConvCase, precision: str | None, device) -> None:
    """CUDA: every kernel the call launches runs on the caller's stream (found with the profiler, between two
    marker kernels launched on the caller's stream)."""
    if torch.device(device).type != "cuda":
        raise RuntimeError("check_streams needs a CUDA device")
    from torch.profiler import ProfilerActivity, profile  # on use: the profiler is heavy to import

    x, w, b = case.make_inputs(device)
    kw = case.conv_kwargs()
    impl(x, w, b, **kw, precision=precision)  # first call: compilation and tuning stay out of the trace
    torch.cuda.synchronize()
    marker = torch.zeros(1, device=device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        marker.add_(1.0)
        torch.cuda.synchronize()  # the first marker ends before the call starts: the first kernel of the trace
        y = impl(x, w, b, **kw, precision=precision)
        marker.add_(1.0)
        torch.cuda.synchronize()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            trace = json.load(f)
    finally:
        os.unlink(path)
    ours, others = kernel_streams(trace)
    if not ours:
        raise RuntimeError("check_streams: the profiler recorded no marker kernel on the caller's stream")
    stray = others - ours
    if stray and not impl.capabilities.side_streams:
        raise IntegrityError(f"{impl.name}: kernels ran on stream(s) {sorted(map(str, stray))}, not the caller's "
                             f"stream {sorted(map(str, ours))}; declare side_streams=True if it joins them before "
                             f"returning\n  problem: {case.short()}")
    assert_conv_close(y, x, w, b, **kw, precision=precision, problem=case.short())
