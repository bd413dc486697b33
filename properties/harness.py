"""What the property tests share: the device, the backends under test, running a case, its reference."""

from __future__ import annotations

import torch

import fastconv
from fastconv.dispatch import resolve_precision
from fastconv.kernels import REGISTRY
from fastconv.problem import ConvProblem
from fastconv.testing import ConvCase, ConvReference, ErrorModel, error_model, reference_conv2d

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# Every registered kernel (new ones are picked up as they are registered) and the dispatcher's choice.
KERNELS = tuple(sorted(REGISTRY))
BACKENDS = ("auto", *KERNELS)


def conv(backend: str, case: ConvCase, precision: str | None, x, w, b, **changes) -> torch.Tensor:
    """``fastconv.conv2d`` of ``case``'s call on the given tensors, with argument ``changes``."""
    return fastconv.conv2d(x, w, b, **{**case.conv_kwargs(), **changes}, backend=backend, precision=precision)


def reference(case: ConvCase, x, w, b, **changes) -> ConvReference:
    return reference_conv2d(x, w, b, **{**case.conv_kwargs(), **changes})


def model(case: ConvCase, precision: str | None) -> ErrorModel:
    return error_model(case.geometry.dtype, precision, DEVICE)


def context(backend: str, case: ConvCase, precision: str | None) -> dict:
    """The problem, seed and repro line for an assertion message."""
    return dict(problem=f"{case.short()} backend={backend} precision={precision}", seed=case.seed,
                repro=case.repro(backend=backend, precision=precision, device=DEVICE.type))


def backends_supporting(*probes: ConvProblem) -> tuple[str, ...]:
    """The backends that accept at least one of the ``probes`` (float32, default precision): a property about
    e.g. strides is run only for the backends that take strided problems at all."""
    def ok(name: str) -> bool:
        return name == "auto" or any(
            REGISTRY[name].supports(p, resolve_precision(p.dtype, None)) for p in probes)

    return tuple(name for name in BACKENDS if ok(name))


_SHAPES = dict(batch=1, c_in=2, c_out=2, h=6, w=6)
STRIDED_BACKENDS = backends_supporting(*(ConvProblem.make(**_SHAPES, kernel=k, stride=2, padding=p, groups=g)
                                         for k, p in ((1, 0), (3, 1)) for g in (1, 2)))
PADDED_BACKENDS = backends_supporting(*(ConvProblem.make(**_SHAPES, kernel=k, padding=1, groups=g)
                                        for k in (1, 3) for g in (1, 2)))
