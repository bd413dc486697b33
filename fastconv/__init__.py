"""fastconv: a fast Triton conv2d, and the framework that proves it right and keeps it fast.

Public API: :func:`conv2d` (``torch.nn.functional.conv2d`` semantics), :func:`plan` (what a call runs),
:class:`Conv2d` (a drop-in for ``torch.nn.Conv2d``), :class:`ModelNew` (KernelBench's interface),
:func:`use_backend` (kernel and precision selection), :func:`resolve_precision`, :class:`ConvProblem`,
:func:`convert` / :func:`revert` (every ``nn.Conv2d`` of a model on fastconv, and back), :func:`tune` /
:func:`load_tuning` (autotune a model's conv shapes on demand; ship the result to another machine).
Testing helpers live in :mod:`fastconv.testing`, benchmarking in :mod:`fastconv.bench`, the static resource
gate in :mod:`fastconv.static`, the CLI in :mod:`fastconv.cli`.  The layers, lowest first, are declared in
``pyproject.toml`` (``[tool.fastconv.layers]``) and checked by ``tests/test_architecture.py``.
"""

from .conversion import convert, revert
from .dispatch import available_backends, get_backend, use_backend
from .functional import ConvPlan, conv2d, plan
from .model_tuning import load_tuning, tune
from .modules import Conv2d, ModelNew
from .precision import FLOAT32_PRECISIONS, Precision, resolve_precision
from .problem import ConvProblem, conv_output_size

__version__ = "0.1.0"

__all__ = ["conv2d", "plan", "ConvPlan", "Conv2d", "ModelNew", "use_backend", "get_backend", "available_backends",
           "resolve_precision", "Precision", "FLOAT32_PRECISIONS", "ConvProblem", "conv_output_size", "convert",
           "revert", "tune", "load_tuning", "__version__"]
