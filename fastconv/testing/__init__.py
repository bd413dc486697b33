"""Verification tools for conv2d kernels (fastconv's and your own).

- :func:`reference_conv2d`: the fp64 reference of a call, with the magnitudes the error model needs;
- :func:`error_model` / :data:`ERROR_MODELS`: the one tolerance table (per dtype and precision mode);
- :func:`assert_conv_close`: assert an output against the reference within the model, with a message that
  gives max abs/rel error, the number and first index of mismatches, the problem, the seed and a repro line;
- :func:`check_within` / :func:`conv_error_bound`: the same check between any two outputs (bounds add);
- :class:`ConvCase` / :func:`run_case`: a test case as a value (replayable from its ``repr``);
- :func:`poisoned_allocations`, :func:`layout_mismatch`: every output element written, layout as torch's;
- :class:`ConvImpl` / :class:`Capabilities` / :func:`load_impl`: an implementation under test (any function
  with ``F.conv2d``'s signature, a KernelBench ``ModelNew``, fastconv's own kernels) and what it claims;
- :class:`Watch`, :func:`check_fresh_values`, :func:`check_repeatable`, :func:`check_streams`: the checks
  that an implementation is not cheating (inputs modified, outputs cached or aliased, work left running);
  :func:`graph_replay`: it captures in a CUDA graph and a replay computes the new input's result.

Checking your own kernel (any device; the reference runs in fp64 on the CPU)::

    from fastconv.testing import assert_conv_close
    y = my_conv2d(x, w, b, stride=2, padding=1)
    assert_conv_close(y, x, w, b, stride=2, padding=1, precision="tf32")  # or "ieee", "tf32x3", None

Gating your own kernel with the whole property suite: ``pytest -m property --conv-impl=pkg.module:conv2d`` or
``python -m fastconv verify path/to/solution.py``.  Hypothesis strategies for your own tests are in
:mod:`fastconv.testing.strategies` (it needs Hypothesis: ``pip install fastconv[hypothesis]``; nothing else
here does).
"""

from ..problem import ConvProblem
from .cases import (
                    DISTRIBUTIONS,
                    LAYOUTS,
                    SIGNS,
                    WEIGHT_LAYOUTS,
                    ConvCase,
                    make_values,
                    run_case,
                    same_padding,
                    with_layout,
)
from .impl import Capabilities, ConvImpl, fastconv_impl, fastconv_impls, kernelbench_impl
from .integrity import (
                    IntegrityError,
                    Watch,
                    check_fresh_values,
                    check_repeatable,
                    check_streams,
                    graph_replay,
                    watch,
)
from .loader import load_impl, parse_capabilities
from .memory import layout_mismatch, memory_format, poisoned_allocations
from .reference import ConvReference, reference_conv2d
from .tolerance import (
                    ERROR_MODELS,
                    SAFETY,
                    ConvCheck,
                    ErrorBound,
                    ErrorModel,
                    assert_conv_close,
                    assert_within,
                    check_conv,
                    check_within,
                    conv_error_bound,
                    error_model,
                    register_error_model,
)

__all__ = [
    "ConvProblem", "ConvCase", "run_case", "make_values", "with_layout", "same_padding", "LAYOUTS",
    "WEIGHT_LAYOUTS", "DISTRIBUTIONS", "SIGNS", "ConvReference", "reference_conv2d", "ErrorModel",
    "ERROR_MODELS", "SAFETY", "error_model", "register_error_model", "ErrorBound", "conv_error_bound",
    "ConvCheck", "check_within", "check_conv", "assert_conv_close", "assert_within", "poisoned_allocations",
    "memory_format", "layout_mismatch", "Capabilities", "ConvImpl", "fastconv_impl", "fastconv_impls",
    "kernelbench_impl", "load_impl", "parse_capabilities", "IntegrityError", "Watch", "watch",
    "check_fresh_values", "check_repeatable", "check_streams", "graph_replay",
]
