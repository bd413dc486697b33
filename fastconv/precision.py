"""The arithmetic of a call: a :class:`Precision`, resolved once per plan, that kernels and models query.

Names (``str(precision)``, used in keys, tables and JSON):

- ``"tf32"``: float32 on tensor cores, both operands rounded to nearest TF32 first (as cuDNN does);
- ``"ieee"``: exact products, no tensor cores (float32 FMAs; float64 is always ``"ieee"``);
- ``"tf32x3"``: three TF32 products per multiply-add, near-float32 accuracy on tensor cores;
- ``"native"``: float16 / bfloat16 on tensor cores (products exact in the float32 accumulator).

The default follows torch on the tensor's device: on CUDA what cuDNN's convolutions use (TF32 unless
``torch.backends.cudnn.allow_tf32`` is False or the newer ``torch.backends.cudnn.conv.fp32_precision`` says
``"ieee"``); on the CPU exact float32, as torch computes there.  :func:`precision_override` (what
``fastconv.use_backend(precision=...)`` uses) sets one for a block of code.
"""

from __future__ import annotations

import contextlib
import contextvars

import torch

from .vocab import DTYPES

__all__ = ["round_tf32_torch", "Precision", "FLOAT32_PRECISIONS", "PRECISIONS", "resolve_precision", "check_precision",
           "precision_override", "current_override", "cudnn_conv_allows_tf32", "default_precision",
           "precisions_of", "modes", "cudnn_conv_tf32"]

FLOAT32_PRECISIONS: tuple[str, ...] = ("tf32", "ieee", "tf32x3")
PRECISIONS: tuple[str, ...] = (*FLOAT32_PRECISIONS, "native")


class Precision(str):
    """A resolved precision: a ``str`` (so it keys tables and prints as its name) with the facts kernels need."""

    __slots__ = ()

    def __new__(cls, name: str) -> Precision:
        if name not in PRECISIONS:
            raise ValueError(f"fastconv: unknown precision {name!r}; choose one of {PRECISIONS}")
        return super().__new__(cls, name)

    @property
    def rounds_to_tf32(self) -> bool:
        """Operands are rounded to nearest TF32 before the tensor cores see them."""
        return self == "tf32"

    @property
    def dot_precision(self) -> str:
        """``tl.dot``'s ``input_precision``: the float32 mode, ``"ieee"`` for exact products (float64, and
        half operands upcast in the interpreter; Triton ignores it for real half operands)."""
        return str(self) if self in ("tf32", "tf32x3") else "ieee"

    @property
    def tensor_cores(self) -> bool:
        """Whether the GEMM runs on tensor cores (the static gate checks their instructions are there)."""
        return self != "ieee"

    @property
    def dot_passes(self) -> int:
        """Products accumulated per multiply-add (tf32x3: hi*hi + hi*lo + lo*hi)."""
        return 3 if self == "tf32x3" else 1


def precisions_of(dtype: str) -> tuple[str, ...]:
    """The precisions a ``dtype`` can be computed in (the first is its exact one where it has a choice)."""
    if dtype == "float32":
        return FLOAT32_PRECISIONS
    return ("ieee",) if dtype == "float64" else ("native",)


def modes() -> list[tuple[str, Precision]]:
    """Every (dtype, precision) pair fastconv computes: the static gate, error models and benchmarks cover these."""
    return [(d, Precision(p)) for d in DTYPES for p in precisions_of(d)]


_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastconv_precision", default=None)


def check_precision(precision: str | None) -> str | None:
    """``precision`` if it names a precision (or is None), else ValueError."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"fastconv: unknown precision {precision!r}; choose one of {FLOAT32_PRECISIONS} or None")
    return precision


@contextlib.contextmanager
def precision_override(precision: str | None):
    """The float32 precision of the ``fastconv.conv2d`` calls inside (None: leave the default)."""
    token = _override.set(check_precision(precision)) if precision is not None else None
    try:
        yield
    finally:
        if token is not None:
            _override.reset(token)


def current_override() -> str | None:
    """The precision set by the innermost :func:`precision_override`, if any."""
    return _override.get()


def cudnn_conv_allows_tf32() -> bool:
    """Whether cuDNN's convolutions may use TF32 now, under either of torch's flag APIs.

    torch >= 2.9 keeps a tree of ``fp32_precision`` settings (``cudnn.conv`` -> ``cudnn`` -> global), where the
    most specific value that is not ``"none"`` decides and all ``"none"`` means exact float32; the legacy
    ``torch.backends.cudnn.allow_tf32`` writes the ``conv`` level.  Reading ``allow_tf32`` itself raises once
    the two APIs were mixed, so it is read only on a torch without the tree.
    """
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is None or not hasattr(conv, "fp32_precision"):
        return bool(torch.backends.cudnn.allow_tf32)
    for level in (conv.fp32_precision, torch.backends.cudnn.fp32_precision, torch.backends.fp32_precision):
        if level != "none":
            return level == "tf32"
    return False


@contextlib.contextmanager
def cudnn_conv_tf32(allow: bool):
    """cuDNN's convolutions with TF32 allowed or not inside the block (torch's flag restored after), through
    the flag API that does not conflict with either (see :func:`cudnn_conv_allows_tf32`)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is None or not hasattr(conv, "fp32_precision"):
        saved = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = allow
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = saved
        return
    saved = conv.fp32_precision
    conv.fp32_precision = "tf32" if allow else "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = saved


def default_precision(dtype: str, device_type: str) -> Precision:
    """What torch computes for ``dtype`` on a device of ``device_type`` (``"cuda"``, ``"cpu"``) now."""
    if dtype in ("float16", "bfloat16"):
        return Precision("native")
    if dtype == "float32" and device_type == "cuda" and cudnn_conv_allows_tf32():
        return Precision("tf32")
    return Precision("ieee")


def resolve_precision(dtype: str, precision: str | None = None, device: torch.device | str = "cuda") -> Precision:
    """The arithmetic a call on ``dtype`` tensors on ``device`` uses.

    ``precision``: an explicit request (``FLOAT32_PRECISIONS`` for float32, ``"native"`` for half types,
    ``"ieee"`` for float64), else (float32 only) the innermost :func:`precision_override`, else
    :func:`default_precision`.
    """
    check_precision(precision)
    if precision is None and dtype == "float32":
        precision = _override.get()
    if precision is None:
        return default_precision(dtype, torch.device(device).type)
    if dtype in ("float16", "bfloat16"):
        if precision != "native":
            raise ValueError(f"fastconv: precision={precision!r} applies to float32 inputs only, got {dtype} input")
    elif dtype == "float64":
        if precision != "ieee":
            raise ValueError(f"fastconv: float64 is computed exactly (precision 'ieee'), got precision={precision!r}")
    elif precision == "native":
        raise ValueError("fastconv: precision='native' is for float16/bfloat16 inputs; float32 takes "
                         f"one of {FLOAT32_PRECISIONS}")
    return Precision(precision)


def round_tf32_torch(t: torch.Tensor) -> torch.Tensor:
    """float32 ``t`` rounded to the nearest TF32 value (10 explicit mantissa bits, ties away from zero, as
    ``cvt.rna.tf32.f32`` and fastconv's kernels round); returns a new float32 tensor."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & -8192).view(torch.float32)
