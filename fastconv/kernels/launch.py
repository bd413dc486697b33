"""Host-side launch cost: integer helpers, and a launch site that skips Triton's per-call specialisation.

A small convolution (a ResNet layer at batch 1, 10-20 us on an H100) is bound by what the host spends to
launch it.  Measured on an H100 (``scripts/host_overhead.py``, 2026-11-25): 82 us per ``fastconv.conv2d``
call, of which ~30 us is Triton's ``JITFunction.run`` re-deriving, for each of our ~40 arguments, how it
specialises (ints equal to 1, multiples of 16, 16-byte pointer alignment) to find the compiled binary, and
~20 us rebuilding the argument dict and grid.

Within one plan (``fastconv.functional._Plan``: shapes, strides, dtypes, conv arguments, config) every integer
argument is fixed; only the tensors change, and of a tensor only its 16-byte alignment enters the
specialisation.  :class:`FastLaunch` therefore launches through Triton once, keeps the compiled kernel and
the argument list, and afterwards calls the compiled kernel's launcher directly, swapping in the new tensors.
A call whose tensors are aligned differently (a view at an odd storage offset) goes through Triton again and
gets its own entry, so the binary is always the one Triton would have picked.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..env import interpreter_enabled

__all__ = ["cdiv", "next_pow2", "FastLaunch", "fast_launch_enabled", "watch_spills", "report_compiled",
           "warmup_launches"]


def cdiv(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative ints (``triton.cdiv`` is a constexpr function: 10x slower on the host)."""
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for ``n`` <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def fast_launch_enabled() -> bool:
    """Off under Triton's interpreter (nothing is compiled) and with ``FASTCONV_FAST_LAUNCH=0`` (debugging)."""
    return not interpreter_enabled() and os.environ.get("FASTCONV_FAST_LAUNCH", "1") != "0"


_SINKS = threading.local()


@contextlib.contextmanager
def watch_spills():
    """Collect the spilled-register counts of the binaries launched through Triton inside the block (a list,
    one entry per launch that compiled or looked up a binary; empty under the interpreter).  The tuner uses
    it to drop a candidate whose binary spills under the installed Triton."""
    stack = getattr(_SINKS, "stack", None)
    if stack is None:
        stack = _SINKS.stack = []
    sink: list[int] = []
    stack.append(sink)
    try:
        yield sink
    finally:
        stack.pop()


def report_compiled(compiled) -> None:
    """Tell the innermost :func:`watch_spills` block about a binary Triton launched (its ``n_spills``)."""
    stack = getattr(_SINKS, "stack", None)
    if stack and compiled is not None:
        stack[-1].append(int(getattr(compiled, "n_spills", 0) or 0))


_WARMUP = threading.local()


@contextlib.contextmanager
def warmup_launches():
    """Inside the block (this thread), every :class:`FastLaunch` compiles its binary without launching it
    (Triton's ``JITFunction.warmup``) and keeps no entry: the tuner compiles candidate configs this way, in
    parallel under Triton's ``AsyncCompileMode`` (:func:`fastconv.tuning.autotuner.compile_parallel`).
    Tensors written by such "launches" hold garbage."""
    saved = getattr(_WARMUP, "on", False)
    _WARMUP.on = True
    try:
        yield
    finally:
        _WARMUP.on = saved


def _hook(hook):
    """A launch hook as the compiled launcher should get it: None when there is nothing to call (Triton 3.6
    keeps an empty ``HookChain`` there, which its launcher calls, with freshly built metadata, every time)."""
    return hook if hook is not None and getattr(hook, "calls", True) else None


_RUNTIME: tuple | None = None


def _runtime() -> tuple:
    """``(triton.knobs, triton's active driver)``, imported on the first launch: importing Triton defines its
    own ``@triton.jit`` library functions, so it must wait until ``TRITON_INTERPRET`` is decided
    (:mod:`fastconv.env`); ``import fastconv`` imports no Triton."""
    global _RUNTIME
    if _RUNTIME is None:
        from triton import knobs
        from triton.runtime.driver import driver

        _RUNTIME = (knobs, driver)
    return _RUNTIME


def _current_device() -> int:
    return _runtime()[1].active.get_current_device()


def _current_stream(device: int) -> int:
    return _runtime()[1].active.get_current_stream(device)


class FastLaunch:
    """One launch site of one ``@triton.jit`` kernel with fixed integer arguments, grid and launch options.

    ``site(tensors, make_args)``: ``tensors`` are the pointer arguments named ``tensor_names`` (in that
    order); ``make_args()`` returns every argument of the kernel by name, and is called only when Triton
    itself must launch (first call, new device, new alignment pattern).
    """

    __slots__ = ("fn", "grid", "tensor_names", "options", "enabled", "_entries", "launches", "fast_launches")

    def __init__(self, fn, grid: Sequence[int], tensor_names: Sequence[str], **options: Any):
        self.fn = fn
        self.grid = tuple(grid) + (1,) * (3 - len(grid))
        self.tensor_names = tuple(tensor_names)
        self.options = options  # num_warps, num_stages
        self.enabled = fast_launch_enabled()
        self._entries: dict[tuple, tuple] = {}
        self.launches = 0  # every launch (for tests and the host-cost script)
        self.fast_launches = 0  # those that skipped Triton's run()

    def __call__(self, tensors: Sequence[Any], make_args: Callable[[], dict[str, Any]]) -> None:
        if getattr(_WARMUP, "on", False):
            self.fn.warmup(**make_args(), grid=self.grid, **self.options)
            return
        self.launches += 1
        if not self.enabled:
            report_compiled(self.fn[self.grid](**make_args(), **self.options))
            return
        device = _current_device()
        key = (device, *[t.data_ptr() % 16 == 0 for t in tensors])
        entry = self._entries.get(key)
        if entry is None:
            args = make_args()
            compiled = self.fn[self.grid](**args, **self.options)
            if hasattr(compiled, "result"):  # asynchronous compilation mode
                compiled = compiled.result()
            report_compiled(compiled)
            names = list(self.fn.arg_names)
            if compiled is not None and set(names) == set(args):
                values = [args[n] for n in names]
                slots = tuple(names.index(n) for n in self.tensor_names)
                for s in slots:
                    values[s] = None  # hold no tensor: the entry outlives the call
                self._entries[key] = (compiled, values, slots)
            return
        compiled, values, slots = entry
        values = values.copy()
        for s, t in zip(slots, tensors):
            values[s] = t
        stream = _current_stream(device)
        knobs = _runtime()[0]
        enter, leave = _hook(knobs.runtime.launch_enter_hook), _hook(knobs.runtime.launch_exit_hook)
        meta = compiled.launch_metadata(self.grid, stream, *values) if enter is not None else None
        compiled.run(*self.grid, stream, compiled.function, compiled.packed_metadata, meta, enter, leave, *values)
        self.fast_launches += 1
