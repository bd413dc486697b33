"""The conv2d kernels and what the rest of fastconv knows of them.

Kernel modules are imported on first use (:func:`registry`, or any access to :data:`REGISTRY`), never at
``import fastconv``: Triton decides between compiling and interpreting when a ``@triton.jit`` function is
defined, so ``TRITON_INTERPRET`` can still be set after ``import fastconv`` (see :mod:`fastconv.env`).
Importing them registers each kernel:

- :mod:`.direct`: the seed's scalar direct convolution (the ``direct`` baseline);
- :mod:`.igemm`: the implicit GEMM on tensor cores (``igemm``, the default for general convolutions) and
  its 1x1 special case as a plain GEMM (``pointwise``);
- :mod:`.depthwise`: a memory-bound direct kernel for depthwise and small-group convolutions.

Beside them: :mod:`.config` (launch configs and their tables as data), :mod:`.fitness` (configs that spill
under a given Triton), :mod:`.launch` (the per-plan launch fast path), :mod:`.specialize` (arguments typed
as the JIT specialises them), :mod:`.common` (TF32 rounding, the NHWC pass, weight packing).
"""

from __future__ import annotations

from .base import REGISTRY as _REGISTRY
from .base import ConvKernel, StaticVariant, register

__all__ = ["REGISTRY", "ConvKernel", "StaticVariant", "register", "get_kernel", "registry"]


def registry() -> dict[str, ConvKernel]:
    """Every registered kernel by name (imports the kernel modules on the first call)."""
    # on first use, not at import: each module defines @triton.jit kernels and registers them (fastconv.env)
    from . import depthwise, direct, igemm  # noqa: F401

    return _REGISTRY


def get_kernel(name: str) -> ConvKernel:
    try:
        return registry()[name]
    except KeyError:
        raise ValueError(f"unknown fastconv kernel {name!r}; available: {sorted(registry())}") from None


def __getattr__(name: str):
    if name == "REGISTRY":
        return registry()
    raise AttributeError(name)
