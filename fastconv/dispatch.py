"""Backend selection: which kernel runs a problem.

``backend`` names a kernel of :mod:`fastconv.kernels` (``"direct"`` is the seed's baseline) or ``"auto"``
(the first kernel of :data:`AUTO_ORDER` that supports the problem).  It can be set per call (the ``backend``
keyword of :func:`fastconv.conv2d`), for a block of code (:func:`use_backend`, which can also set the float32
precision, see :mod:`fastconv.precision`), or for a process (``FASTCONV_BACKEND``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import TYPE_CHECKING

from .kernels import registry
from .kernels.base import _GENERATION
from .precision import precision_override
from .problem import ConvProblem

if TYPE_CHECKING:
    from .kernels import ConvKernel

__all__ = ["use_backend", "get_backend", "backend_name", "select_kernel", "available_backends", "AUTO_ORDER",
           "registry_generation"]

# Priority of "auto": the first kernel whose supports() accepts the problem is used.
AUTO_ORDER = ("depthwise", "pointwise", "igemm", "direct")

_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastconv_backend", default=None)


def _registry() -> dict:
    """The kernel registry; its kernel modules are imported on first use (:func:`fastconv.kernels.registry`), so
    ``import fastconv`` defines no kernel and ``TRITON_INTERPRET`` can still be set after it."""
    return registry()


def registry_generation() -> int:
    """Bumped by every kernel registration (memoised plans made before it are stale)."""
    global _GENERATION
    return _GENERATION[0]


def available_backends() -> list[str]:
    return ["auto", *sorted(_registry())]


def _check_backend(name: str) -> str:
    if name not in available_backends():
        raise ValueError(f"fastconv: unknown backend {name!r}; choose one of {available_backends()}")
    return name


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
    token = _backend.set(_check_backend(backend)) if backend is not None else None
    try:
        with precision_override(precision):
            yield
    finally:
        if token is not None:
            _backend.reset(token)


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
