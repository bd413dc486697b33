"""Backend and precision selection.

``backend`` names a kernel of :mod:`fastconv.kernels` (``"direct"`` is the seed's baseline) or ``"auto"``
(the fastest kernel that supports the problem).  ``precision`` applies to float32 inputs:

- ``"tf32"``: tensor cores with operands rounded to TF32 (round to nearest, as cuDNN does);
- ``"ieee"``: exact float32 products (no tensor cores);
- ``"tf32x3"``: three TF32 products that recover near-float32 accuracy on tensor cores.

The default follows what torch computes on the tensors' device: on the CPU exact float32 (``"ieee"``: torch's
CPU convolution never uses TF32); on CUDA ``"tf32"`` when ``torch.backends.cudnn.allow_tf32`` is True
(PyTorch's default), ``"ieee"`` otherwise.  float16 and bfloat16 inputs always use their own tensor-core path
(``"native"``).  Both can be set per call (keywords of :func:`fastconv.conv2d`), for a block of code
(:func:`use_backend`), or for a process (``FASTCONV_BACKEND``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import TYPE_CHECKING

import torch

from .problem import ConvProblem

if TYPE_CHECKING:
    from .kernels import ConvKernel

__all__ = ["use_backend", "get_backend", "resolve_precision", "default_float32_precision", "select_kernel",
           "available_backends", "FLOAT32_PRECISIONS", "AUTO_ORDER"]

FLOAT32_PRECISIONS = ("tf32", "ieee", "tf32x3")
# Priority of "auto": the first kernel whose supports() accepts the problem is used.
AUTO_ORDER = ("depthwise", "pointwise", "igemm", "direct")

_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastconv_backend", default=None)
_precision: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastconv_precision", default=None)


def _registry() -> dict:
    """The kernel registry, imported on first use: Triton decides between compiling and interpreting when a
    kernel is defined, so ``import fastconv`` defines none and ``TRITON_INTERPRET`` can still be set after it
    (the CLI does so on machines without a GPU)."""
    from .kernels import REGISTRY

    return REGISTRY


_GENERATION: list[int] | None = None


def registry_generation() -> int:
    """Bumped by every kernel registration (memoised plans made before it are stale); imports on first use."""
    global _GENERATION
    if _GENERATION is None:
        from .kernels.base import _GENERATION as generation

        _GENERATION = generation
    return _GENERATION[0]


def available_backends() -> list[str]:
    return ["auto", *sorted(_registry())]


def _check_backend(name: str) -> str:
    if name not in available_backends():
        raise ValueError(f"fastconv: unknown backend {name!r}; choose one of {available_backends()}")
    return name


def _check_precision(precision: str | None) -> str | None:
    if precision is not None and precision not in (*FLOAT32_PRECISIONS, "native"):
        raise ValueError(f"fastconv: unknown precision {precision!r}; choose one of {FLOAT32_PRECISIONS} or None")
    return precision


def backend_name() -> str:
    """The backend in force, unchecked (cheap enough for a per-call memo key; :func:`get_backend` checks)."""
    name = _backend.get()
    return name if name is not None else (os.environ.get("FASTCONV_BACKEND") or "auto")


def get_backend() -> str:
    """The backend in force: the innermost :func:`use_backend`, else ``$FASTCONV_BACKEND``, else ``"auto"``."""
    return _check_backend(backend_name())


@contextlib.contextmanager
def use_backend(backend: str | None = None, *, precision: str | None = None):
    """Select the kernel (and optionally the float32 precision) for the ``fastconv.conv2d`` calls inside.

    >>> with fastconv.use_backend("direct"):
    ...     y = fastconv.conv2d(x, w)
    """
    tokens = []
    if backend is not None:
        tokens.append((_backend, _backend.set(_check_backend(backend))))
    if precision is not None:
        tokens.append((_precision, _precision.set(_check_precision(precision))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_precision() -> str | None:
    """The precision set by the innermost :func:`use_backend`, if any."""
    return _precision.get()


def default_float32_precision(device: torch.device | str | None = None) -> str:
    """torch's float32 conv arithmetic on ``device``: ``"ieee"`` on the CPU (torch computes exact fp32 there,
    whatever ``cudnn.allow_tf32`` says); on CUDA, and when the device is not given, ``"tf32"`` while
    ``torch.backends.cudnn.allow_tf32`` is True, else ``"ieee"``."""
    if device is not None and torch.device(device).type == "cpu":
        return "ieee"
    return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"


def resolve_precision(dtype: str, precision: str | None, device: torch.device | str | None = None) -> str:
    """The arithmetic a call uses: one of ``FLOAT32_PRECISIONS`` for float32, ``"native"`` for half types.

    ``device`` is where the call's tensors are: it decides the float32 default
    (:func:`default_float32_precision`); without it the CUDA rule applies."""
    precision = _check_precision(precision if precision is not None else _precision.get())
    if dtype != "float32":
        if precision not in (None, "native"):
            raise ValueError(f"fastconv: precision={precision!r} applies to float32 inputs only, got {dtype} input")
        return "native"
    if precision is None:
        return default_float32_precision(device)
    if precision == "native":
        raise ValueError("fastconv: precision='native' is for float16/bfloat16 inputs; float32 takes "
                         f"one of {FLOAT32_PRECISIONS}")
    return precision


def select_kernel(problem: ConvProblem, precision: str, backend: str | None = None) -> ConvKernel:
    """The kernel that runs ``problem``: the named backend, or the first of ``AUTO_ORDER`` that supports it."""
    name = _check_backend(backend) if backend is not None else get_backend()
    if name != "auto":
        kernel = _registry()[name]
        if not kernel.supports(problem, precision):
            raise NotImplementedError(
                f"fastconv: backend {name!r} does not support {problem.short()} with precision {precision!r}"
            )
        return kernel
    for candidate in AUTO_ORDER:
        kernel = _registry().get(candidate)
        if kernel is not None and kernel.supports(problem, precision):
            return kernel
    raise NotImplementedError(f"fastconv: no kernel supports {problem.short()}")  # pragma: no cover
