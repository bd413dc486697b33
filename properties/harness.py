"""What the property tests share: the device, running a case through an implementation under test (every call
goes through a :class:`~fastconv.testing.Watch`), its reference and error model, and skipping properties an
implementation does not claim.

The implementations under test come from the ``conv_impl`` fixture of :mod:`fastconv.testing.pytest_conv`:
``--conv-impl SPEC`` (repeatable), else fastconv's dispatcher and each of its kernels.
"""

from __future__ import annotations

import pytest
import torch

from fastconv.problem import ConvProblem
from fastconv.testing import ConvCase, ConvImpl, ConvReference, ErrorModel, Watch, error_model, reference_conv2d

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def call(watch: Watch, impl: ConvImpl, case: ConvCase, precision: str | None, x, w, b, what: str = "",
         **changes) -> torch.Tensor:
    """``impl`` on ``case``'s call with the given tensors and argument ``changes``, checked by ``watch``."""
    return watch.call(impl, x, w, b, **{**case.conv_kwargs(), **changes}, precision=precision, what=what)


def reference(case: ConvCase, x, w, b, **changes) -> ConvReference:
    return reference_conv2d(x, w, b, **{**case.conv_kwargs(), **changes})


def model(case: ConvCase, precision: str | None) -> ErrorModel:
    return error_model(case.geometry.dtype, precision, DEVICE)


def context(impl: ConvImpl, case: ConvCase, precision: str | None) -> dict:
    """The problem, seed and repro line for an assertion message."""
    backend = impl.name.partition(":")[2] if impl.name.startswith("fastconv:") else None
    return dict(problem=f"{case.short()} impl={impl.name} precision={precision}", seed=case.seed,
                repro=case.repro(backend=backend, precision=precision, device=DEVICE.type) if backend else None)


_SHAPES = dict(batch=1, c_in=2, c_out=2, h=6, w=6)
STRIDED_PROBES = tuple(ConvProblem.make(**_SHAPES, kernel=k, stride=2, padding=p, groups=g)
                       for k, p in ((1, 0), (3, 1)) for g in (1, 2))
PADDED_PROBES = tuple(ConvProblem.make(**_SHAPES, kernel=k, padding=1, groups=g) for k in (1, 3) for g in (1, 2))
UNPADDED_PROBES = tuple(ConvProblem.make(**_SHAPES, kernel=k, groups=g) for k in (1, 3) for g in (1, 2))


def require(impl: ConvImpl, what: str, probes: tuple[ConvProblem, ...] = (), **case_kw) -> None:
    """Skip the test (reported, not passed) unless ``impl`` claims at least one float32 version of the
    ``probes`` (with any of its float32 precisions)."""
    caps = impl.capabilities
    for p in probes:
        for dtype in caps.dtypes:
            q = p.replace(dtype=dtype)
            if any(caps.unsupported(q, precision=pr, **case_kw) is None for pr in impl.precision_choices(dtype)):
                return
    pytest.skip(f"{impl.name} does not claim {what}")


def require_flag(impl: ConvImpl, flag: str, what: str) -> None:
    if not getattr(impl.capabilities, flag):
        pytest.skip(f"{impl.name} does not claim {what}")
