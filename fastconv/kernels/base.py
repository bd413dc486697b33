"""What every conv kernel of fastconv provides, and the registry the dispatcher, tuner and static gate use."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..problem import ConvProblem
from .config import KernelConfig
from .specialize import jit_specialization, no_specialize_of

__all__ = ["ConvKernel", "StaticVariant", "REGISTRY", "register", "static_variant",
           "meta_tensor"]


@dataclass(frozen=True)
class StaticVariant:
    """One compilation unit for the static gate: a ``@triton.jit`` function, its argument types and constexprs.

    ``signature`` maps every non-constexpr argument name to a Triton type string (``"*fp32"``, ``"i32"``,
    ``"i64"``...); ``constexprs`` maps constexpr argument names to values (block sizes included).
    ``tensor_core`` says whether the SASS must contain tensor-core instructions; ``targets`` names the GPU
    targets (keys of ``fastconv.gpus.TARGETS``) the config is offered on: a config that needs more
    shared memory than the RTX 4090 has is pruned there at run time and declared for ``("sm_90",)`` only.
    """

    kernel: str
    fn: Any
    signature: dict[str, str]
    constexprs: dict[str, Any]
    config: KernelConfig
    label: str
    tensor_core: bool = False
    targets: tuple[str, ...] = ("sm_89", "sm_90")
    mode: str = ""  # "dtype/precision" the variant serves (fastconv.kernels.fitness.mode_of)


def _no_passes(problem: ConvProblem, precision: str, config: KernelConfig, input_layout: str) -> tuple[str, ...]:
    return ()


@dataclass
class ConvKernel:
    """A conv2d implementation.

    - ``supports(problem, precision)``: whether it computes this problem (False -> not chosen);
    - ``configs(problem, precision)``: every launch config valid for the problem (first = interpreter default);
    - ``make_launcher(problem, precision, config)``: a callable ``(x, weight, bias, out) -> None`` that
      computes ``out`` (already allocated with torch's shape and memory format) from ``x`` ``(N, C, H, W)``;
      built once per plan (:mod:`fastconv.functional`), it binds everything the problem fixes so a repeated
      call pays little more than the launch itself (:class:`fastconv.kernels.launch.FastLaunch`);
    - ``launch(x, weight, bias, problem, precision, out, config)`` (and calling the kernel): one call through
      a fresh launcher (the tuner's way: it runs each config a few times, once per plan);
    - ``static_variants()``: the compilation units the static gate checks (all shipped configs);
    - ``passes(problem, precision, config, input_layout)``: the extra passes over the input a launch makes
      before the kernel (e.g. ``("nhwc+tf32",)``), as :func:`fastconv.plan` reports them.
    """

    name: str
    supports: Callable[[ConvProblem, str], bool]
    configs: Callable[[ConvProblem, str], list[KernelConfig]]
    make_launcher: Callable[[ConvProblem, str, KernelConfig], Callable[..., None]]
    static_variants: Callable[[], list[StaticVariant]] = field(default=lambda: [])
    description: str = ""
    passes: Callable[[ConvProblem, str, KernelConfig, str], tuple[str, ...]] = _no_passes

    def layout_passes(self, problem: ConvProblem, precision: str, config: KernelConfig, input_layout: str
                      ) -> tuple[str, ...]:
        return tuple(self.passes(problem, precision, config, input_layout))

    def launcher(self, problem: ConvProblem, precision: str, config: KernelConfig) -> Callable[..., None]:
        """The launch callable ``(x, weight, bias, out) -> None`` of one plan."""
        return self.make_launcher(problem, precision, config)

    def launch(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, problem: ConvProblem,
               precision: str, out: torch.Tensor, config: KernelConfig) -> None:
        self.launcher(problem, precision, config)(x, weight, bias, out)

    @classmethod
    def from_launch(cls, name: str, supports, configs, launch: Callable[..., None], **kw) -> ConvKernel:
        """A kernel given as one function ``launch(x, weight, bias, problem, precision, out, config)``
        (nothing bound per plan: every call pays its whole host cost)."""
        def make_launcher(p, precision, config):
            return lambda x, weight, bias, out: launch(x, weight, bias, p, precision, out, config)

        return cls(name, supports, configs, make_launcher, **kw)

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, problem: ConvProblem,
                 precision: str, out: torch.Tensor, config: KernelConfig) -> torch.Tensor:
        self.launch(x, weight, bias, problem, precision, out, config)
        return out


def meta_tensor(shape, dtype: str, channels_last: bool = False) -> torch.Tensor:
    """A storage-less tensor (``device="meta"``) standing for a launch argument in :func:`static_variant`."""
    t = torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
    return t.to(memory_format=torch.channels_last) if channels_last else t


def _constexpr_names(fn) -> set[str]:
    """Names of a ``@triton.jit`` function's ``tl.constexpr`` parameters (compiled or interpreted)."""
    if hasattr(fn, "params"):
        return {p.name for p in fn.params if p.is_constexpr}
    return {name for name, prm in inspect.signature(fn.fn).parameters.items()
            if "constexpr" in str(prm.annotation)}


def static_variant(kernel: str, fn, args: dict[str, Any], config: KernelConfig, label: str, *,
                   tensor_core: bool, targets: tuple[str, ...] = ("sm_89", "sm_90"), mode: str = "") -> StaticVariant:
    """A :class:`StaticVariant` from a launch's own keyword arguments (tensors may be on ``device="meta"``).

    The runtime arguments are typed the way Triton's JIT specialises that launch (an int equal to 1 becomes
    a constant, multiples of 16 carry their divisibility, except the kernel's ``do_not_specialize``
    arguments), so the static gate compiles the binary that runs.
    """
    const_names = _constexpr_names(fn)
    signature, specialized = jit_specialization({k: v for k, v in args.items() if k not in const_names},
                                                no_specialize_of(fn))
    constexprs = {**specialized, **{k: v for k, v in args.items() if k in const_names}}
    return StaticVariant(kernel, fn, signature, constexprs, config, label, tensor_core, targets, mode)


REGISTRY: dict[str, ConvKernel] = {}


# Bumped by every :func:`register`: memoised plans made before a (re-)registration are stale.  Read through
# fastconv.dispatch.registry_generation (which imports no kernel until it has to).
_GENERATION = [0]


def register(kernel: ConvKernel) -> ConvKernel:
    REGISTRY[kernel.name] = kernel
    _GENERATION[0] += 1
    return kernel

