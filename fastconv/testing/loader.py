"""Implementations under test by name: :func:`load_impl` (``--conv-impl SPEC``, ``fastconv verify SPEC``) and
:func:`parse_capabilities` (``--conv-cap KEY=VALUE``).  See :mod:`fastconv.testing.impl` for the specs."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from . import adapters
from .impl import LIMIT_NAMES, TUPLE_FIELDS, Capabilities, ConvImpl, fastconv_impl, kernelbench_impl

__all__ = ["load_impl", "parse_capabilities", "BUILTIN_IMPLS"]

def _torch_impl() -> ConvImpl:
    return ConvImpl(torch.nn.functional.conv2d, "torch", Capabilities(), description="torch.nn.functional.conv2d")


def _adapter(name: str):
    def make() -> ConvImpl:  # an adapter imports its library (torch._inductor, jax) only when made
        return adapters.make(name)

    return make


BUILTIN_IMPLS: dict[str, Callable[[], ConvImpl]] = {
    "torch": _torch_impl,
    "inductor": _adapter("inductor"),
    "inductor-triton": _adapter("inductor-triton"),
    "jax": _adapter("jax"),
}

_BOOLS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def parse_capabilities(items: Sequence[str] | Mapping[str, object]) -> dict:
    """``["dtypes=float32,float16", "dilation=false", "max_kernel=3"]`` (or a dict of already typed values)
    -> keyword changes for :meth:`Capabilities.replace` (size bounds go into ``limits``)."""
    if isinstance(items, Mapping):
        return dict(items)
    fields_ = {f.name: f for f in dataclasses.fields(Capabilities)}
    out: dict = {}
    limits: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ValueError(f"capability {item!r}: expected KEY=VALUE")
        if key in LIMIT_NAMES:
            limits[key] = int(value)
        elif key in TUPLE_FIELDS:
            out[key] = tuple(None if v.lower() == "none" else v for v in value.split(",") if v)
        elif key in fields_ and fields_[key].type in ("bool", bool):
            if value.lower() not in _BOOLS:
                raise ValueError(f"capability {key}: expected true/false, got {value!r}")
            out[key] = _BOOLS[value.lower()]
        elif key == "output_format":
            out[key] = value
        else:
            known = sorted(set(fields_) - {"limits", "supports"} | set(LIMIT_NAMES))
            raise ValueError(f"unknown capability {key!r}; known: {known}")
    if limits:
        out["limits"] = limits
    return out


def _import_module(target: str):
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {target}")
        mod_name = f"_fastconv_impl_{path.stem}_{abs(hash(str(path))) % 10**8}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(target)


def load_impl(spec: str | ConvImpl, capabilities: Sequence[str] | Mapping[str, object] = (),
              name: str | None = None) -> ConvImpl:
    """The implementation a spec names (see the module docstring), with capability overrides applied."""
    if isinstance(spec, ConvImpl):
        impl = spec
    elif spec == "fastconv" or spec.startswith("fastconv:"):
        impl = fastconv_impl(spec.partition(":")[2] or "auto")
    elif spec in BUILTIN_IMPLS:
        impl = BUILTIN_IMPLS[spec]()
    else:
        drive = len(spec) > 1 and spec[1] == ":"  # a Windows path's drive letter is no attribute separator
        target, _, attr = spec.rpartition(":") if spec.count(":") > drive else (spec, "", "")
        module = _import_module(target)
        if not attr:
            attr = next((a for a in ("ModelNew", "conv2d") if hasattr(module, a)), "")
            if not attr:
                raise AttributeError(f"{target} has neither ModelNew nor conv2d; name one: {target}:ATTR")
        obj = getattr(module, attr)
        caps = getattr(module, "CAPABILITIES", None)
        if isinstance(caps, Mapping):
            caps = Capabilities(**caps)
        label = f"{Path(target).name if target.endswith('.py') else target}:{attr}"
        if isinstance(obj, ConvImpl):
            impl = obj
        elif isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            impl = kernelbench_impl(obj, label, caps)
        elif callable(obj):
            impl = ConvImpl(obj, label, caps or getattr(obj, "capabilities", None) or Capabilities())
        else:
            raise TypeError(f"{spec}: {type(obj).__name__} is neither a ConvImpl, a conv2d function nor an "
                            "nn.Module class")
    changes = parse_capabilities(capabilities)
    if changes:
        impl = impl.with_capabilities(**changes)
    if name:
        impl = dataclasses.replace(impl, name=name)
    return impl
