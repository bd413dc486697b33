"""The conv2d kernels.  Importing this package registers every kernel in :data:`REGISTRY`.

- :mod:`.direct`: the seed's scalar direct convolution (the ``direct`` baseline);
- :mod:`.igemm`: the implicit GEMM on tensor cores (``igemm``, the default for general convolutions) and
  its 1x1 special case as a plain GEMM (``pointwise``);
- :mod:`.depthwise`: a memory-bound direct kernel for depthwise and small-group convolutions.
"""

from . import depthwise, direct, igemm  # noqa: F401  (each module registers its kernels)
from .base import REGISTRY, ConvKernel, StaticVariant, register  # noqa: F401


def get_kernel(name: str) -> ConvKernel:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown fastconv kernel {name!r}; available: {sorted(REGISTRY)}") from None


__all__ = ["REGISTRY", "ConvKernel", "StaticVariant", "register", "get_kernel"]
