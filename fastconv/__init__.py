"""fastconv: a fast Triton conv2d, and the framework that proves it right and keeps it fast.

Public API: :func:`conv2d` (``torch.nn.functional.conv2d`` semantics), :class:`Conv2d` (a drop-in for
``torch.nn.Conv2d``), :class:`ModelNew` (KernelBench's interface), :func:`use_backend` (kernel and precision
selection), :class:`ConvProblem`, :func:`convert` / :func:`revert` (every ``nn.Conv2d`` of a model on fastconv,
and back).  Testing helpers live in :mod:`fastconv.testing`, benchmarking in
:mod:`fastconv.bench`, the static resource gate in :mod:`fastconv.static`, the CLI in :mod:`fastconv.cli`.
"""

from .conversion import convert, revert
from .dispatch import available_backends, get_backend, resolve_precision, use_backend
from .functional import conv2d
from .modules import Conv2d, ModelNew
from .problem import ConvProblem, conv_output_size

__version__ = "0.1.0"

__all__ = ["conv2d", "Conv2d", "ModelNew", "use_backend", "get_backend", "available_backends",
           "resolve_precision", "ConvProblem", "conv_output_size", "convert", "revert", "__version__"]
