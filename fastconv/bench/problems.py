"""The benchmark catalogue: KernelBench level-1 conv2d problems, ResNet-50 layers, small latency-bound ones.

Each :class:`BenchProblem` is one or more :class:`fastconv.ConvProblem` stages (float32, NCHW templates;
KernelBench #86 is a depthwise conv followed by a pointwise one) plus where it comes from.  A benchmark
*case* is a problem in a dtype, layout and precision (:class:`BenchCase`); :meth:`BenchCase.make_inputs`
builds its tensors on a device from ``torch.randn`` with a fixed seed (never zeros), and
:func:`run_impl` computes it with one implementation:

- ``"fastconv"``: :func:`fastconv.conv2d` with the automatic kernel choice;
- ``"cudnn"``: :func:`torch.nn.functional.conv2d` at PyTorch's defaults (TF32 allowed for float32 unless the
  case asks for ``"ieee"`` / ``"tf32x3"``, which are compared with cuDNN's exact float32);
- ``"direct"``: fastconv's ``"direct"`` backend, the seed's kernel.

KernelBench shapes are those of the KernelBench repository's ``KernelBench/level1/<file>.py`` (its "Test
code" section; the file name is recorded in ``source``).  ``nn.Conv2d`` defaults to ``bias=True``, so #50
(which builds its layer with the default) has a bias; the others pass ``bias=False``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import fastconv

from ..precision import Precision, cudnn_conv_tf32, precisions_of, resolve_precision
from ..problem import ConvProblem
from ..testing.impl import ConvImpl
from ..vocab import DTYPES, LAYOUTS, memory_format_of

__all__ = ["BenchProblem", "BenchCase", "BenchInputs", "CATALOGUE", "SMOKE", "GATE_CORRECTNESS", "IMPLS",
           "BENCH_LAYOUTS", "layouts_of", "select", "get", "run_impl", "impl_name", "cudnn_precision"]

IMPLS = ("fastconv", "cudnn", "direct")
BENCH_LAYOUTS = LAYOUTS[:2]  # dense layouts: "nchw" and "nhwc" (channels_last)


def layouts_of(choice: str) -> list[str]:
    """A layout option (``"nchw"``, ``"nhwc"`` or ``"both"``) -> the layouts to run, channels_last first (the
    layout speed-minded users run, compared with cuDNN in channels_last)."""
    if choice == "both":
        return ["nhwc", "nchw"]
    if choice not in BENCH_LAYOUTS:
        raise ValueError(f"unknown layout {choice!r}; choose one of {[*BENCH_LAYOUTS, 'both']}")
    return [choice]
KB_DIR = "KernelBench/level1/"


class _Stages:
    """The cost of running ``stages`` in sequence, unfused (an intermediate is written and read once)."""

    stages: tuple[ConvProblem, ...]

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.stages)

    @property
    def min_bytes(self) -> int:
        """Minimal DRAM traffic: each stage's inputs read once and its output written once."""
        return sum(s.min_bytes for s in self.stages)


@dataclass(frozen=True)
class BenchProblem(_Stages):
    """A named benchmark problem.  ``stages`` run in sequence (each stage's output feeds the next)."""

    name: str
    group: str  # "kernelbench", "resnet50", "latency", "smoke", "gate-correctness"
    stages: tuple[ConvProblem, ...]
    source: str = ""
    quick: bool = False
    gate: bool = False
    note: str = ""

    def __post_init__(self):
        for a, b in zip(self.stages, self.stages[1:]):
            if (a.batch, a.c_out, a.oh, a.ow) != (b.batch, b.c_in, b.h, b.w):
                raise ValueError(f"{self.name}: stage {b.short()} does not consume {a.short()}")

    def short(self) -> str:
        return " ; ".join(s.short() for s in self.stages)

    def case(self, dtype: str = "float32", layout: str = "nchw", precision: str | None = None) -> BenchCase:
        """This problem in ``dtype`` and ``layout``; ``precision`` is the float32 arithmetic (the CLI's
        ``--precision``), ignored for the other dtypes, which have one arithmetic each."""
        return BenchCase(self, dtype, layout, precision if dtype == "float32" else None)


@dataclass
class BenchInputs:
    """Tensors of one case: input ``x`` ``(N, C, H, W)`` and per stage a weight and an optional bias."""

    x: torch.Tensor
    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]


@dataclass(frozen=True)
class BenchCase(_Stages):
    """A problem in a dtype (a key of :data:`fastconv.vocab.DTYPES`), layout (``"nchw"``/``"nhwc"``) and
    precision (``None`` = what torch uses on a GPU by default: ``"tf32"`` for float32 at PyTorch's default
    flags)."""

    problem: BenchProblem
    dtype: str = "float32"
    layout: str = "nchw"
    precision: str | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose one of {sorted(DTYPES)}")
        if self.layout not in BENCH_LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}; choose one of {BENCH_LAYOUTS}")
        if self.precision is not None and self.precision not in precisions_of(self.dtype):
            raise ValueError(f"precision {self.precision!r} does not apply to {self.dtype}; choose one of "
                             f"{precisions_of(self.dtype)}")

    @property
    def name(self) -> str:
        return self.problem.name

    @property
    def resolved_precision(self) -> Precision:
        """The arithmetic fastconv uses for this case: the requested one, else torch's default on a GPU."""
        return resolve_precision(self.dtype, self.precision, "cuda")

    @property
    def fastconv_precision(self) -> Precision:
        """The precision passed to fastconv: explicit, so a CPU smoke run computes what the label says."""
        return self.resolved_precision

    @property
    def label(self) -> str:
        """float32 cases are labelled by precision (``tf32``, ``ieee``, ``tf32x3``), others by dtype."""
        return self.resolved_precision if self.dtype == "float32" else DTYPES[self.dtype].short

    @property
    def id(self) -> str:
        """A stable test id, e.g. ``kb80-tf32-nchw``."""
        return f"{self.problem.name}-{self.label}-{self.layout}"

    @property
    def stages(self) -> tuple[ConvProblem, ...]:
        nhwc = self.layout == "nhwc"
        return tuple(s.replace(dtype=self.dtype, channels_last=nhwc) for s in self.problem.stages)


    def make_inputs(self, device: torch.device | str, seed: int = 0) -> BenchInputs:
        """Inputs on ``device``: ``torch.randn`` in float32 from a generator on that device seeded with
        ``seed`` (deterministic per device type; generating the GiB-sized KernelBench inputs on the CPU would
        take longer than timing them), then cast.  Weights are scaled by ``1/sqrt(fan_in)`` so every stage's
        output stays O(1) in half precision."""
        device = torch.device(device)
        gen = torch.Generator(device=device).manual_seed(seed)
        dtype = DTYPES[self.dtype].torch
        fmt = memory_format_of(self.layout)

        def randn(shape, scale=1.0):
            t = torch.randn(shape, generator=gen, dtype=torch.float32, device=device)
            return (t * scale if scale != 1.0 else t).to(dtype)

        first = self.stages[0]
        x = randn(first.input_shape).contiguous(memory_format=fmt)
        weights, biases = [], []
        for s in self.stages:
            scale = 1.0 / math.sqrt(s.gemm_k)
            weights.append(randn(s.weight_shape, scale).contiguous(memory_format=fmt))
            biases.append(randn((s.c_out,), 0.1) if s.has_bias else None)
        return BenchInputs(x, weights, biases)


# ----------------------------------------------------------------------------------------------------------
# Running one implementation
# ----------------------------------------------------------------------------------------------------------
def cudnn_precision(case: BenchCase) -> str:
    """What cuDNN is run with: TF32 for ``"tf32"`` (PyTorch's default), exact float32 for ``"ieee"`` and
    ``"tf32x3"`` (cuDNN has no 3xTF32 mode: it is compared with what it approximates), native for halves."""
    p = case.resolved_precision
    return "tf32" if p == "tf32" else ("native" if p == "native" else "ieee")


def impl_name(impl: str | ConvImpl) -> str:
    """The name results are keyed by: the string itself, or the implementation under test's name."""
    return impl.name if isinstance(impl, ConvImpl) else impl


def run_impl(impl: str | ConvImpl, case: BenchCase, inputs: BenchInputs, package=None) -> torch.Tensor:
    """Compute ``case`` on ``inputs`` with ``impl`` (``"fastconv"``, ``"cudnn"``, ``"direct"``, or an
    implementation under test, :class:`fastconv.testing.ConvImpl`).

    ``package`` is the fastconv package to call (default: :mod:`fastconv`); the gate passes a baseline
    package loaded side by side.
    """
    package = package if package is not None else fastconv
    y = inputs.x
    if isinstance(impl, ConvImpl):
        precision = case.fastconv_precision if impl.takes_precision else None
        for s, w, b in zip(case.stages, inputs.weights, inputs.biases):
            y = impl(y, w, b, (s.stride_h, s.stride_w), s.torch_padding, (s.dil_h, s.dil_w), s.groups,
                     precision=precision)
        return y
    if impl == "cudnn":
        with cudnn_conv_tf32(cudnn_precision(case) == "tf32"):
            for s, w, b in zip(case.stages, inputs.weights, inputs.biases):
                y = F.conv2d(y, w, b, (s.stride_h, s.stride_w), s.torch_padding, (s.dil_h, s.dil_w), s.groups)
        return y
    if impl not in ("fastconv", "direct"):
        raise ValueError(f"unknown implementation {impl!r}; choose one of {IMPLS}")
    backend = "direct" if impl == "direct" else "auto"
    precision = case.fastconv_precision
    for s, w, b in zip(case.stages, inputs.weights, inputs.biases):
        y = package.conv2d(y, w, b, (s.stride_h, s.stride_w), s.torch_padding, (s.dil_h, s.dil_w), s.groups,
                           backend=backend, precision=precision)
    return y


# ----------------------------------------------------------------------------------------------------------
# The catalogue
# ----------------------------------------------------------------------------------------------------------
P = ConvProblem.make


def _kb(num: int, file: str, *stages: ConvProblem, quick=False, gate=False, note="") -> BenchProblem:
    return BenchProblem(f"kb{num}", "kernelbench", tuple(stages), source=KB_DIR + file, quick=quick,
                        gate=gate, note=note)


def _layer(name: str, group: str, stage: ConvProblem, *, quick=False, gate=False, note="") -> BenchProblem:
    return BenchProblem(name, group, (stage,), quick=quick, gate=gate, note=note)


# P(batch, c_in, c_out, h, w, kernel, stride, padding, dilation, groups, has_bias=...)
KERNELBENCH = (
    _kb(50, "50_conv_standard_2D__square_input__square_kernel.py",
        P(256, 3, 96, 224, 224, 11, 4, 2, has_bias=True), note="AlexNet conv1; nn.Conv2d default bias=True"),
    _kb(55, "55_conv_standard_2D__asymmetric_input__square_kernel.py", P(8, 64, 128, 512, 1024, 3)),
    _kb(56, "56_conv_standard_2D__asymmetric_input__asymmetric_kernel.py", P(8, 64, 128, 512, 256, (5, 7))),
    _kb(62, "62_conv_standard_2D__square_input__asymmetric_kernel.py", P(8, 32, 64, 512, 512, (5, 9))),
    _kb(63, "63_conv_standard_2D__square_input__square_kernel.py", P(16, 16, 128, 1024, 1024, 3)),
    _kb(80, "80_conv_standard_2D_square_input_asymmetric_kernel___dilated____padded__.py",
        P(8, 32, 64, 512, 512, (5, 9), 1, (2, 4), (2, 3)), quick=True, gate=True, note="the seed's problem"),
    _kb(82, "82_conv_depthwise_2D_square_input_square_kernel.py",
        P(16, 64, 64, 512, 512, 3, groups=64), quick=True),
    _kb(83, "83_conv_depthwise_2D_square_input_asymmetric_kernel.py",
        P(64, 8, 8, 512, 512, (3, 1), groups=8)),
    _kb(84, "84_conv_depthwise_2D_asymmetric_input_square_kernel.py",
        P(64, 128, 128, 256, 512, 3, groups=128), gate=True),
    _kb(85, "85_conv_depthwise_2D_asymmetric_input_asymmetric_kernel.py",
        P(32, 128, 128, 128, 256, (3, 7), groups=128)),
    _kb(86, "86_conv_depthwise_separable_2D.py",
        P(16, 64, 64, 512, 512, 3, 1, 1, groups=64), P(16, 64, 128, 512, 512, 1),
        note="depthwise 3x3 then pointwise 1x1, two calls"),
    _kb(87, "87_conv_pointwise_2D.py", P(16, 64, 128, 1024, 1024, 1), quick=True),
)

# ResNet-50 (torchvision v1.5: stride on the 3x3) at batch 32; the first three are the reference anchors.
RESNET50 = (
    _layer("resnet_stem_7x7", "resnet50", P(32, 3, 64, 224, 224, 7, 2, 3), note="conv1"),
    _layer("resnet_3x3_s1", "resnet50", P(32, 64, 64, 56, 56, 3, 1, 1), quick=True, gate=True,
           note="layer1 3x3"),
    _layer("resnet_3x3_s2", "resnet50", P(32, 128, 256, 56, 56, 3, 2, 1), quick=True, gate=True,
           note="stride-2 3x3 as in the reference anchors"),
    _layer("resnet_1x1_reduce", "resnet50", P(32, 256, 64, 56, 56, 1), note="layer1 1x1 256->64"),
    _layer("resnet_1x1_expand", "resnet50", P(32, 64, 256, 56, 56, 1), quick=True, gate=True,
           note="layer1 1x1 64->256"),
    _layer("resnet_1x1_s2_down", "resnet50", P(32, 256, 512, 56, 56, 1, 2), note="layer2 downsample"),
    _layer("resnet_3x3_l3", "resnet50", P(32, 256, 256, 14, 14, 3, 1, 1), note="layer3 3x3"),
    _layer("resnet_3x3_l4", "resnet50", P(32, 512, 512, 7, 7, 3, 1, 1), note="layer4 3x3"),
)

# Small problems where launch latency and occupancy dominate (single-image inference shapes).
LATENCY = (
    _layer("lat_b1_c64_14_3x3", "latency", P(1, 64, 64, 14, 14, 3, 1, 1), quick=True, gate=True),
    _layer("lat_b1_c256_7_1x1", "latency", P(1, 256, 256, 7, 7, 1)),
    _layer("lat_b1_dw32_56_3x3", "latency", P(1, 32, 32, 56, 56, 3, 1, 1, groups=32)),
    _layer("lat_b8_c512_7_3x3", "latency", P(8, 512, 512, 7, 7, 3, 1, 1)),
)

CATALOGUE: tuple[BenchProblem, ...] = KERNELBENCH + RESNET50 + LATENCY

# Tiny problems for Triton's interpreter (CPU smoke tests): a few hundred output pixels, few channels,
# each exercising a different path (padding, dilation + asymmetric kernel, depthwise, 1x1 stride 2 + bias).
SMOKE: tuple[BenchProblem, ...] = (
    _layer("smoke_3x3", "smoke", P(1, 4, 4, 8, 8, 3, 1, 1)),
    _layer("smoke_kb80_mini", "smoke", P(1, 3, 4, 12, 12, (3, 5), 1, (2, 4), (2, 3))),
    _layer("smoke_depthwise", "smoke", P(1, 4, 4, 8, 8, 3, 1, 1, groups=4)),
    _layer("smoke_1x1_s2_bias", "smoke", P(2, 4, 8, 6, 6, 1, 2, has_bias=True)),
)

# Correctness-only problems for the gate: ragged sizes (no dimension a multiple of a block), bias, groups,
# stride, dilation, so an off-by-one in an index or mask shows.  Small enough to run in the interpreter.
GATE_CORRECTNESS: tuple[BenchProblem, ...] = (
    _layer("odd_3x3_s2_bias", "gate-correctness", P(3, 5, 7, 17, 19, 3, 2, 1, has_bias=True)),
    _layer("odd_dil_5x3", "gate-correctness", P(2, 6, 9, 13, 11, (5, 3), 1, (2, 1), (2, 1))),
    _layer("odd_groups_1x1", "gate-correctness", P(2, 6, 9, 7, 9, 1, groups=3)),
    _layer("odd_depthwise_s2", "gate-correctness", P(2, 5, 5, 11, 10, 3, 2, 1, groups=5)),
)

_ALL = {p.name: p for p in CATALOGUE + SMOKE + GATE_CORRECTNESS}
GROUPS = ("kernelbench", "resnet50", "latency", "smoke", "gate-correctness")


def get(name: str) -> BenchProblem:
    try:
        return _ALL[name]
    except KeyError:
        raise ValueError(f"unknown benchmark problem {name!r}; known: {sorted(_ALL)} "
                         f"or a group: {GROUPS + ('quick', 'gate', 'all')}") from None


def select(names: str | list[str] | None = None, *, quick: bool = False) -> list[BenchProblem]:
    """Problems by name or group (``kernelbench``, ``resnet50``, ``latency``, ``smoke``, ``quick``, ``gate``,
    ``all``), comma-separated or as a list; ``None`` = the whole catalogue, or its quick subset."""
    if names is None or names == [] or names == "":
        names = ["quick" if quick else "all"]
    if isinstance(names, str):
        names = [names]
    tokens = [t.strip() for n in names for t in n.split(",") if t.strip()]
    out: list[BenchProblem] = []
    for t in tokens:
        if t == "all":
            chosen = list(CATALOGUE)
        elif t == "quick":
            chosen = [p for p in CATALOGUE if p.quick]
        elif t == "gate":
            chosen = [p for p in CATALOGUE if p.gate]
        elif t in GROUPS:
            chosen = [p for p in _ALL.values() if p.group == t]
        else:
            chosen = [get(t)]
        out.extend(p for p in chosen if p not in out)
    if quick:
        out = [p for p in out if p.quick or p.group in ("smoke", "gate-correctness")] or out
    return out
