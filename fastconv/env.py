"""Facts about the process that every layer reads: is Triton interpreting, which Triton is installed.

This module imports nothing of fastconv and no Triton kernel.  Triton decides between compiling and
interpreting when a ``@triton.jit`` function is *defined* (it reads ``TRITON_INTERPRET`` then), so the kernel
modules (:mod:`fastconv.kernels`) must not be imported before :func:`ensure_interpreter_if_no_gpu` has run
wherever a CLI or test session wants the interpreter on a machine without a GPU; that is why some imports of
``fastconv.kernels`` sit inside functions (each one says so).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["interpreter_enabled", "dot_upcast", "triton_version", "ensure_interpreter_if_no_gpu", "cache_dir"]


def interpreter_enabled() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


def dot_upcast() -> bool:
    """Whether kernels must upcast half operands to fp32 before ``tl.dot``: Triton's interpreter computes bf16
    dots wrongly (an open Triton issue), and exact fp32 products of half inputs are what the hardware gives."""
    return interpreter_enabled()


def triton_version() -> str:
    """The installed Triton's version (``"3.7.1"``); the toolchain key of per-Triton data and caches."""
    import triton  # here, not at import: importing Triton defines its own @jit library (see above)

    return triton.__version__


def ensure_interpreter_if_no_gpu() -> None:
    """Turn Triton's interpreter on where no CUDA GPU is present (call before any kernel is imported)."""
    if os.environ.get("TRITON_INTERPRET") is None and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


def cache_dir() -> Path:
    """Where fastconv keeps what it learns on this machine (tuned configs, static-gate reports):
    ``$FASTCONV_CACHE_DIR``, default ``~/.cache/fastconv``."""
    return Path(os.environ.get("FASTCONV_CACHE_DIR") or Path.home() / ".cache" / "fastconv")
