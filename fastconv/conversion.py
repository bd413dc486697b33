"""``fastconv.convert(model)``: run every ``nn.Conv2d`` of a model on fastconv; ``fastconv.revert``: undo it.

    model = fastconv.convert(model)                      # in place; returns the model
    model = fastconv.convert(model, precision="ieee")    # or backend="igemm", ... (fastconv.Conv2d's keywords)
    model = fastconv.revert(model)                       # plain nn.Conv2d again, same parameters

How.  Each converted module is the *same object* afterwards: its class is switched from ``nn.Conv2d`` to
:class:`fastconv.Conv2d` (an ``nn.Conv2d`` with another forward), and ``backend`` / ``precision`` are set on
it.  Nothing is built, copied or moved, so everything the module had is kept as it was:

- its ``Parameter`` objects (``id`` equality: an optimizer built before ``convert`` keeps training the
  model), their device, dtype, memory format and ``requires_grad`` (frozen layers stay frozen);
- buffers, ``training``, ``padding_mode`` (non-zero modes pad with ``F.pad`` first, as torch does) and every
  other attribute; ``state_dict()`` keys and values are identical before and after;
- hooks: forward (pre-)hooks, backward hooks and state-dict hooks registered on the conv stay registered and
  keep firing, and their handles stay valid;
- references held elsewhere (another attribute, a list, a second place in the tree) see the fastconv module
  too: a conv used twice is converted once.

Which modules (the rule):

- a module whose type is exactly ``torch.nn.Conv2d`` is converted;
- a :class:`fastconv.Conv2d` (or a subclass of it) is left alone: converting twice is a no-op, and the
  ``backend`` / ``precision`` of fastconv modules already in the model are not changed;
- any *other* subclass of ``nn.Conv2d`` (a user's module with its own forward, QAT / fake-quant convs,
  ``torch.nn.utils.parametrize``'d convs, an uninitialised ``LazyConv2d``) is never replaced, because
  switching its class would drop its behaviour.  ``strict=True`` (the default) raises ``TypeError`` naming
  each of them before anything is changed; ``strict=False`` leaves them running on torch.  (To run such a
  module on fastconv, derive it from :class:`fastconv.Conv2d` instead.)  A plain ``nn.Conv2d`` that carries
  its own instance attribute ``backend`` or ``precision`` is refused the same way (it would be overwritten).

:func:`revert` is the inverse: every module whose type is exactly :class:`fastconv.Conv2d` (converted, or built
as one) becomes a plain ``nn.Conv2d`` again, with the same parameters, buffers, hooks and attributes, minus
``backend`` and ``precision``; subclasses of :class:`fastconv.Conv2d` follow the ``strict`` rule above.

``inplace=False`` converts a ``copy.deepcopy`` of the model and leaves the original untouched; the copy has
its own parameters (copies), so share nothing with the original by design.

The converted modules compute what :func:`fastconv.conv2d` computes: float32, float16 and bfloat16 on CUDA
(or on the CPU in Triton's interpreter); there is no silent fallback to torch for other dtypes or devices.
Convert before ``torch.compile``, not after.  A whole converted model saved with ``torch.save(model)`` names
``fastconv.Conv2d`` and needs fastconv to load; its ``state_dict()`` does not (it is torch's).
"""

from __future__ import annotations

import copy

import torch.nn as nn

from .dispatch import available_backends
from .modules import Conv2d
from .precision import resolve_precision

__all__ = ["convert", "revert"]

_ADDED = ("backend", "precision")  # the attributes fastconv.Conv2d has beyond nn.Conv2d's


def _is_lazy(m: nn.Module) -> bool:
    from torch.nn.modules.lazy import LazyModuleMixin

    return isinstance(m, LazyModuleMixin)


def _plan(model: nn.Module, source: type, what: str, strict: bool) -> list[nn.Module]:
    """The modules to switch (type exactly ``source``); raise in strict mode on every module the rule refuses."""
    chosen, refused = [], []
    for name, m in model.named_modules():
        path = name or "<root>"
        if type(m) is source:
            clash = [a for a in _ADDED if a in m.__dict__] if source is nn.Conv2d else []
            if clash:
                refused.append(f"{path} ({type(m).__name__} with its own attribute {clash[0]!r})")
            else:
                chosen.append(m)
        elif isinstance(m, source) and not (source is nn.Conv2d and isinstance(m, Conv2d)):
            cls = type(m)
            why = "uninitialised lazy module: run one forward first" if _is_lazy(m) else "subclass"
            refused.append(f"{path} ({cls.__module__}.{cls.__qualname__}: {why})")
    if refused and strict:
        raise TypeError(
            f"fastconv.{what}: these modules are subclasses of "
            f"{'torch.nn.Conv2d' if source is nn.Conv2d else 'fastconv.Conv2d'} (or clash with its attributes), "
            f"and switching their class would lose their own behaviour: {'; '.join(refused)}.  "
            "Nothing was changed; pass strict=False to leave them as they are"
            + (", or derive their class from fastconv.Conv2d." if what == "convert" else "."))
    return chosen


def convert(model: nn.Module, *, backend: str | None = None, precision: str | None = None, inplace: bool = True,
            strict: bool = True) -> nn.Module:
    """Make every plain ``nn.Conv2d`` in ``model`` (the root included) a :class:`fastconv.Conv2d`.

    Args:
        model: any module tree.
        backend: fastconv kernel for the converted modules (``"auto"``, ``"igemm"``, ...); ``None``: the one in
            force at call time (:func:`fastconv.use_backend`, ``$FASTCONV_BACKEND``, else ``"auto"``).
        precision: float32 arithmetic (``"tf32"``, ``"ieee"``, ``"tf32x3"``); ``None``: what
            :func:`fastconv.conv2d` picks at call time (:func:`fastconv.resolve_precision`).
        inplace: switch the modules of ``model`` itself (default); ``False``: of a deep copy.
        strict: raise ``TypeError`` (changing nothing) if the tree holds ``nn.Conv2d`` subclasses that cannot be
            converted (see the module docstring); ``False``: leave those on torch.

    Returns:
        the converted model (``model`` itself unless ``inplace=False``).
    """
    if backend is not None and backend not in available_backends():
        raise ValueError(f"fastconv.convert: unknown backend {backend!r}; choose one of {available_backends()}")
    if precision is not None:
        resolve_precision("float32", precision)  # raises ValueError for an unknown precision
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastconv.convert: expected an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    for m in _plan(model, nn.Conv2d, "convert", strict):
        m.__class__ = Conv2d
        m.backend = backend
        m.precision = precision
    return model


def revert(model: nn.Module, *, inplace: bool = True, strict: bool = True) -> nn.Module:
    """Make every :class:`fastconv.Conv2d` (exact type) in ``model`` a plain ``nn.Conv2d``: the inverse of
    :func:`convert`.  Parameters, buffers, hooks and other attributes are kept; ``backend`` and ``precision``
    go.  ``inplace`` and ``strict`` as in :func:`convert`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastconv.revert: expected an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    for m in _plan(model, Conv2d, "revert", strict):
        m.__class__ = nn.Conv2d
        for a in _ADDED:
            m.__dict__.pop(a, None)
    return model
