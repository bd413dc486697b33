"""Checks of what a kernel does with memory: outputs fully written, output layout as torch's.

:func:`poisoned_allocations` makes ``torch.empty``/``empty_like``/``empty_strided`` return NaN-filled
tensors while it is active, so an output element (or scratch element) a kernel never writes shows up as a
NaN that the tolerance check rejects.  It patches torch's module functions only for the ``with`` block (and
one thread's worth of code runs inside it in tests), and restores them on exit, exceptions included.
"""

from __future__ import annotations

import contextlib
import threading

import torch

__all__ = ["poisoned_allocations", "memory_format", "layout_mismatch"]

_LOCK = threading.Lock()


def _poison(t: torch.Tensor) -> torch.Tensor:
    if t.numel():
        if t.dtype.is_floating_point or t.dtype.is_complex:
            t.fill_(float("nan"))
        elif t.dtype == torch.bool:
            t.fill_(True)
        else:
            t.fill_(torch.iinfo(t.dtype).min)
    return t


@contextlib.contextmanager
def poisoned_allocations():
    """Inside the block, ``torch.empty``, ``torch.empty_like`` and ``torch.empty_strided`` return tensors
    filled with NaN (integers: their minimum, bools: True) instead of whatever memory held."""
    with _LOCK:
        saved = {name: getattr(torch, name) for name in ("empty", "empty_like", "empty_strided")}

        def wrap(fn):
            def poisoned(*args, **kwargs):
                out = fn(*args, **kwargs)
                return out if kwargs.get("out") is not None else _poison(out)

            poisoned.__wrapped__ = fn
            return poisoned

        try:
            for name, fn in saved.items():
                setattr(torch, name, wrap(fn))
            yield
        finally:
            for name, fn in saved.items():
                setattr(torch, name, fn)


def memory_format(t: torch.Tensor) -> str:
    """``"nchw"``, ``"nhwc"``, ``"both"`` (size-1 dims make both hold) or ``"strided"``."""
    c = t.is_contiguous()
    cl = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return "both" if c and cl else "nchw" if c else "nhwc" if cl else "strided"


def layout_mismatch(actual: torch.Tensor, expected: torch.Tensor) -> str | None:
    """Why ``actual`` differs from ``expected`` in shape, dtype, device or memory format; None if it does not.

    Strides are compared where they matter: on dimensions of size > 1 (torch itself ignores the others).
    """
    if actual.shape != expected.shape:
        return f"shape {list(actual.shape)} != torch's {list(expected.shape)}"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype} != torch's {expected.dtype}"
    if actual.device.type != expected.device.type:
        return f"device {actual.device} != torch's {expected.device}"
    if actual.numel() == 0:  # no element, no layout (torch's own empty outputs vary)
        return None
    if memory_format(actual) != memory_format(expected):
        return (f"memory format {memory_format(actual)} (strides {actual.stride()}) != torch's "
                f"{memory_format(expected)} (strides {expected.stride()})")
    a = [s for s, n in zip(actual.stride(), actual.shape) if n > 1]
    e = [s for s, n in zip(expected.stride(), expected.shape) if n > 1]
    if a != e:
        return f"strides {actual.stride()} != torch's {expected.stride()}"
    return None
