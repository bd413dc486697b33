"""Write a :class:`~fastconv.kernels.StaticVariant`'s signature the way the JIT specialises a real launch.

At launch, Triton's JIT does not compile ``stride_xc`` as a plain ``i32``: an integer equal to 1 becomes the
constant 1, an integer divisible by 16 carries ``tt.divisibility=16``, a 16-byte aligned pointer too.  Those
facts decide vectorisation and ``cp.async`` pipelining, hence registers and shared memory (measured on
``igemm`` fp16 k5x9, 64x64x32, 3 stages, sm_89: 164 registers and 8 KB shared memory compiled with plain
``i32`` arguments; 96 registers and 16 KB with the NHWC channel stride and the output's width stride as the
constant 1 and the other sizes and strides marked multiples of 16, as for the seed's problem).  A gate that compiles the
unspecialised kernel checks a different binary from the one that runs.

:func:`jit_specialization` turns the launch's own argument values (tensors may be ``device="meta"``) into a
``(signature, constexprs)`` pair with Triton's own specialisation function, in the notation
:mod:`fastconv.static.compile` reads (``"i32:16"`` for a multiple of 16; unit values as constexprs)::

    x = torch.empty(8, 32, 512, 512, device="meta").to(memory_format=torch.channels_last)
    sig, consts = jit_specialization({"x_ptr": x, "C_IN_G": 32, "stride_xc": x.stride(1), ...})
    StaticVariant(..., signature=sig, constexprs={**consts, "BLOCK_M": 128, ...})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["jit_specialization", "jit_key", "no_specialize_of"]


def no_specialize_of(fn) -> set[str]:
    """Names of the arguments a ``@triton.jit(do_not_specialize=...)`` function compiles as plain integers
    (compiled ``JITFunction`` or the interpreter's ``InterpretedFunction``)."""
    if hasattr(fn, "params"):
        return {p.name for p in fn.params if p.do_not_specialize}
    names = list(getattr(fn, "arg_names", []))
    given = (getattr(fn, "kwargs", None) or {}).get("do_not_specialize") or ()
    return {names[v] if isinstance(v, int) else v for v in given}


def jit_specialization(args: Mapping[str, Any], no_specialize: Iterable[str] = ()
                       ) -> tuple[dict[str, str], dict[str, Any]]:
    """``{name: launch value}`` -> ``(signature, constexprs)`` as the JIT would specialise that launch.

    Tensors give ``"*fp32"``-style pointer types (their alignment is assumed, as for torch allocations: the
    compile step marks every pointer 16-byte aligned); integers give ``"i32"``/``"i64"``, with ``":16"`` when
    divisible by 16, or a constexpr when equal to 1 -- except the arguments named in ``no_specialize`` (the
    kernel's ``do_not_specialize``, :func:`no_specialize_of`), which stay plain; floats ``"fp32"``; ``None``
    a constexpr.
    """
    # Triton is imported on use, not with fastconv (see fastconv.env)
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import native_specialize_impl

    plain = set(no_specialize)
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = {}
    for name, value in args.items():
        ty, key = native_specialize_impl(BaseBackend, value, False, name not in plain, True)[:2]
        if ty == "constexpr":
            constexprs[name] = key
        elif key == "D" and not ty.startswith("*"):
            signature[name] = f"{ty}:16"
        else:
            signature[name] = ty
    return signature, constexprs


def jit_key(fn, args: Mapping[str, Any], **options: Any) -> tuple:
    """What tells one compiled binary of ``fn`` (a ``JITFunction``) from another for a launch with keyword
    arguments ``args`` and launch ``options`` (``num_warps``, ``num_stages``): Triton's own per-argument
    specialisation (its binder, honouring the kernel's ``do_not_specialize``), the constexprs and the options.
    Tensors may be on ``device="meta"`` (taken as 16-byte aligned).  Two launches with equal keys share a
    binary; counting distinct keys counts compilations without a GPU (``scripts/count_variants.py``)."""
    from triton.backends.compiler import BaseBackend
    from triton.runtime.jit import create_function_from_signature

    binder = create_function_from_signature(fn.signature, fn.params, BaseBackend)
    _, specialization, _ = binder(**args)
    return (getattr(fn, "__name__", repr(fn)), tuple(specialization), tuple(sorted(options.items())))
