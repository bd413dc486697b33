"""Static variants on the worker side: providers, fingerprints, overrides (used by the compile workers).

A *provider* is a function ``"module:name"`` that returns :class:`~fastconv.kernels.StaticVariant` lists,
e.g. the registry's ``static_variants`` (:func:`registry_variants`).  Variants hold live ``@triton.jit``
functions, so they are built in the worker processes (interpreter off) and named to the caller by a
*fingerprint* of their JSON description; the caller's overrides (bigger blocks, a ``maxnreg``...) are applied
on the worker side by :func:`resolve`.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

from ..kernels import get_kernel
from ..kernels.config import KernelConfig
from .compile import describe, hash_key

__all__ = ["REGISTRY_PROVIDER", "OVERRIDES", "registry_variants", "fingerprint", "apply_overrides",
           "check_overrides", "describe_provider", "resolve"]

REGISTRY_PROVIDER = "fastconv.static.variants:registry_variants"
OVERRIDES = ("constexprs", "signature", "num_warps", "num_stages", "tensor_core", "label")


def registry_variants(kernel: str) -> list:
    """The provider of shipped variants: ``REGISTRY[kernel].static_variants()``."""
    return list(get_kernel(kernel).static_variants())


def fingerprint(description: dict) -> str:
    """A stable identity of a variant, from its :func:`~fastconv.static.compile.describe` output."""
    return hash_key(description)[:24]


def check_overrides(overrides: dict[str, Any]) -> None:
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise ValueError(f"unknown overrides {sorted(unknown)}; known: {list(OVERRIDES)}")


def apply_overrides(v, overrides: dict[str, Any]):
    """A :class:`StaticVariant` with overridden ``constexprs`` and ``signature`` (merged), ``num_warps``,
    ``num_stages``, ``tensor_core`` and ``label``; the config's block entries follow the constexprs of the
    same name."""
    check_overrides(overrides)
    cx = {**v.constexprs, **overrides.get("constexprs", {})}
    sig = {**v.signature, **overrides.get("signature", {})}
    cfg = KernelConfig.of(num_warps=overrides.get("num_warps", v.config.num_warps),
                          num_stages=overrides.get("num_stages", v.config.num_stages),
                          **{k: cx.get(k, val) for k, val in v.config.blocks})
    return replace(v, constexprs=cx, signature=sig, config=cfg, label=overrides.get("label", v.label),
                   tensor_core=overrides.get("tensor_core", v.tensor_core))


_PROVIDED: dict[tuple, list] = {}


def _provided(provider: str, args: tuple) -> list:
    key = (provider, tuple(args))
    if key not in _PROVIDED:
        module, _, name = provider.partition(":")
        _PROVIDED[key] = list(getattr(importlib.import_module(module), name)(*args))
    return _PROVIDED[key]


def describe_provider(provider: str, args: tuple) -> list[dict]:
    """JSON descriptions, with fingerprints, of every variant ``provider(*args)`` returns."""
    out = []
    for v in _provided(provider, tuple(args)):
        d = describe(v)
        out.append({**d, "fingerprint": fingerprint(d)})
    return out


def resolve(ref: list | tuple, fp: str, overrides: dict[str, Any]):
    """The variant of ``ref`` (``[provider, args]``) with fingerprint ``fp``, overrides applied."""
    provider, args = ref
    for v in _provided(provider, tuple(args)):
        if fingerprint(describe(v)) == fp:
            return apply_overrides(v, overrides)
    raise LookupError(f"{provider}{tuple(args)} provides no variant with fingerprint {fp} "
                      "(static_variants() must be deterministic)")
