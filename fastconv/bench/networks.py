"""Whole networks: torchvision models converted by :func:`fastconv.convert` against the original (cuDNN).

    python -m fastconv networks                                  # 5 networks x batch 1, 8, 64 x NCHW, NHWC
    python -m fastconv networks --networks resnet50,vgg16 --batch 8 --layout nhwc
    python -m fastconv networks --resume                         # continue an interrupted run (same --out)
    python -m fastconv networks --update-benchmarks-md           # also put a "Networks" section in BENCHMARKS.md

The catalogue (:data:`NETWORKS`): torchvision's ResNet-18, ResNet-50, MobileNetV2, EfficientNet-B0 and VGG-16
(``weights=None``, built under a fixed seed, input 224x224; torchvision is optional: without it those rows
say so and are skipped), and a tiny stand-in for each (a few channels, 16x16 inputs, the same kinds of layers:
basic / bottleneck residual blocks, inverted residuals with depthwise convs, squeeze-excite 1x1 convs on 1x1
maps, plain 3x3 stacks), which is what runs in Triton's interpreter on a machine without a GPU.

One row (:func:`bench_network`) is a network at a batch size and layout (``"nchw"``, or ``"nhwc"`` = the model
and input in ``torch.channels_last``):

- the original model is built, its batch norms calibrated on a few random batches (so activations stay O(1)
  as in a trained network instead of drifting with depth), put in ``eval()`` mode;
  the converted model is ``fastconv.convert`` of a deep copy; the input is ``torch.randn`` from a seeded
  generator; everything runs under ``torch.no_grad()``;
- *cold*: the first forward of each, host-timed and synchronised (for fastconv it includes Triton
  compilation and the autotuning of every conv shape; the shapes tuned and the seconds spent are recorded);
- *timed*: both forwards with the project's timing protocol (:mod:`fastconv.bench.timing`: CUDA events,
  warm-up, L2 flushed before every call, the two interleaved round by round, medians, host kept ahead of the
  device up to its cap; the host's enqueue time per forward is reported beside);
- *error*: norm-wise ``||y - r|| / ||r||`` of both outputs against ``r``, the fp64 run of the original model
  (``model.double()`` on the same input in float64);
- *layout passes*: device time per forward spent in layout-changing kernels, from ``torch.profiler`` (CUDA
  activity, kernel names; :data:`LAYOUT_KERNELS`): fastconv's NHWC / TF32-rounding pre-pass, and cuDNN's own
  NCHW<->NHWC transforms;
- *layers*: each conv layer's input is captured (forward pre-hooks, one forward of the original), then each
  layer is timed alone, fastconv vs cuDNN, on that input in that layout (same protocol), and checked against
  fp64 by the tolerance model; listed with its module path, ``ConvProblem.short()``, the kernel and config
  fastconv chose, both times, the time lost (fastconv ms - cuDNN ms, sorted largest first) and the speedup.

cuDNN is run "at its best": ``torch.backends.cudnn.benchmark = True`` (it autotunes per shape, as fastconv
does; ``--no-cudnn-benchmark`` for PyTorch's default) and, for float32, TF32 when fastconv runs TF32 (exact
float32 otherwise, as :func:`fastconv.bench.problems.cudnn_precision`).  Speedup = cuDNN ms / fastconv ms.

Without a GPU nothing is timed: each stand-in runs in the interpreter, outputs and every layer are checked.
Writes ``<out>/networks.json`` after every row (``--resume`` reuses its finished rows) and prints a table.
Exit status: 0; 1 if a fastconv layer is outside the tolerance model or fastconv raised; 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..env import interpreter_enabled
from ..precision import cudnn_conv_tf32, resolve_precision
from ..tuning import timing
from ..tuning.autotuner import tuning_report
from ..validation import normalize_conv2d_args
from .accuracy import check_stage, impl_precision
from .case_runner import machine_info, stage_plans
from .problems import BenchInputs, BenchProblem

__all__ = ["Network", "NetworkUnavailable", "NETWORKS", "TORCHVISION", "STAND_INS", "select", "bench_network",
           "layer_breakdown", "kernel_times", "layout_pass_summary", "LAYOUT_KERNELS", "format_table",
           "networks_md", "with_networks_section", "carry_networks_section", "configure", "run"]


# ==========================================================================================================
# The catalogue
# ==========================================================================================================
class NetworkUnavailable(RuntimeError):
    """A network that cannot be built here (torchvision missing); its rows are skipped with this message."""


@dataclass(frozen=True)
class Network:
    """A named network: ``builder()`` returns the ``nn.Module`` (random init); inputs are ``(N, 3, S, S)``."""

    name: str
    builder: Callable[[], nn.Module]
    input_size: int = 224
    source: str = "torchvision"  # or "stand-in"
    stand_in: str | None = None  # the tiny network that runs in its place in the interpreter
    note: str = ""

    def build(self, seed: int = 0) -> nn.Module:
        """The model, initialised under ``torch.manual_seed(seed)`` (the global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.builder()

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, 3, self.input_size, self.input_size)


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        try:
            import torchvision
        except ImportError as exc:
            raise NetworkUnavailable(
                f"{name} needs torchvision, which is not installed (pip install torchvision); its tiny "
                f"stand-in tiny_{name} runs without it") from exc
        return getattr(torchvision.models, name)(weights=None)

    build.__name__ = f"torchvision.models.{name}"
    return build


# -- tiny stand-ins: the layer kinds of each torchvision network, a few channels wide ----------------------
class _Basic(nn.Module):
    """ResNet-18's basic block (two 3x3), projection shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + identity)


class _Bottleneck(nn.Module):
    """ResNet-50's bottleneck (1x1, 3x3 with the stride, 1x1), projection shortcut when the shape changes."""

    def __init__(self, c_in: int, width: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + identity)


class _SqueezeExcite(nn.Module):
    """EfficientNet's squeeze-excite: two 1x1 convs (with bias) on the pooled 1x1 map."""

    def __init__(self, c: int, squeeze: int):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(s))))


class _InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual (1x1 expand, depthwise kxk, 1x1 project); with ``se`` and SiLU it is
    EfficientNet's MBConv."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int, kernel: int = 3, se: bool = False,
                 act: type[nn.Module] = nn.ReLU6):
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act()]
        layers += [nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), act()]
        if se:
            layers.append(_SqueezeExcite(hidden, max(1, c_in // 4)))
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


def _conv_bn(c_in: int, c_out: int, k: int, stride: int, act: type[nn.Module]) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), act()]


def _classifier(c: int, classes: int = 10) -> list[nn.Module]:
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]


def tiny_resnet18() -> nn.Module:
    return nn.Sequential(*_conv_bn(3, 8, 7, 2, nn.ReLU), nn.MaxPool2d(3, 2, 1), _Basic(8, 8, 1), _Basic(8, 16, 2),
                         *_classifier(16))


def tiny_resnet50() -> nn.Module:
    return nn.Sequential(*_conv_bn(3, 8, 7, 2, nn.ReLU), nn.MaxPool2d(3, 2, 1), _Bottleneck(8, 4, 16, 1),
                         _Bottleneck(16, 8, 16, 2), *_classifier(16))


def tiny_mobilenet_v2() -> nn.Module:
    return nn.Sequential(*_conv_bn(3, 8, 3, 2, nn.ReLU6), _InvertedResidual(8, 8, 1, 1),
                         _InvertedResidual(8, 12, 2, 4), _InvertedResidual(12, 12, 1, 4),
                         *_conv_bn(12, 16, 1, 1, nn.ReLU6), *_classifier(16))


def tiny_efficientnet_b0() -> nn.Module:
    return nn.Sequential(*_conv_bn(3, 8, 3, 2, nn.SiLU), _InvertedResidual(8, 8, 1, 1, 3, True, nn.SiLU),
                         _InvertedResidual(8, 12, 2, 4, 5, True, nn.SiLU), *_conv_bn(12, 16, 1, 1, nn.SiLU),
                         *_classifier(16))


def tiny_vgg16() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))


TORCHVISION = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16")
STAND_INS = tuple(f"tiny_{n}" for n in TORCHVISION)
_TINY = {"tiny_resnet18": tiny_resnet18, "tiny_resnet50": tiny_resnet50, "tiny_mobilenet_v2": tiny_mobilenet_v2,
         "tiny_efficientnet_b0": tiny_efficientnet_b0, "tiny_vgg16": tiny_vgg16}

NETWORKS: dict[str, Network] = {
    **{n: Network(n, _torchvision(n), stand_in=f"tiny_{n}") for n in TORCHVISION},
    **{n: Network(n, _TINY[n], input_size=16, source="stand-in",
                  note=f"a few channels wide, the layer kinds of {n[5:]}") for n in STAND_INS},
}


def select(names: str | Iterable[str] | None, *, gpu: bool) -> list[Network]:
    """Networks by name, comma-separated; ``all`` (default) = the torchvision five on a GPU, their stand-ins
    elsewhere; ``tiny`` = the stand-ins.  Without a GPU every torchvision name maps to its stand-in."""
    if names is None or names == "":
        names = "all"
    if isinstance(names, str):
        names = [names]
    out: list[Network] = []
    for token in (t.strip() for n in names for t in n.split(",") if t.strip()):
        if token == "all":
            chosen = TORCHVISION if gpu else STAND_INS
        elif token == "tiny":
            chosen = STAND_INS
        elif token in NETWORKS:
            chosen = (token,)
        else:
            raise ValueError(f"unknown network {token!r}; known: {', '.join(NETWORKS)}, all, tiny")
        for name in chosen:
            net = NETWORKS[name]
            if not gpu and net.stand_in is not None:
                net = NETWORKS[net.stand_in]
            if net not in out:
                out.append(net)
    return out


# ==========================================================================================================
# Helpers shared by the whole-network and the per-layer measurements
# ==========================================================================================================
@contextlib.contextmanager
def _cudnn_flags(allow_tf32: bool, benchmark: bool):
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark
    try:
        with cudnn_conv_tf32(allow_tf32):
            yield
    finally:
        torch.backends.cudnn.benchmark = saved


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cold(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """``fn()`` once, synchronised: its result and host seconds."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def resolved_precision(dtype: str, precision: str | None, device: torch.device | str) -> str:
    """The arithmetic fastconv uses for ``dtype`` on ``device`` (its default differs per device)."""
    return str(resolve_precision(dtype, precision, torch.device(device)))


def _precision_arg(text: str) -> str:
    try:
        resolved_precision("float32", text, "cuda")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    """Norm-wise ``||y - ref|| / ||ref||``, in float64 on ``ref``'s device."""
    y64 = y.detach().to(device=ref.device, dtype=torch.float64)
    den = float(torch.linalg.vector_norm(ref))
    num = float(torch.linalg.vector_norm(y64 - ref))
    return num / den if den > 0 else num


def _tuning_log_length() -> int:
    return len(tuning_report())


def _tuned_since(start: int | None) -> dict | None:
    if start is None:
        return None
    from ..tuning.autotuner import tuning_report

    new = tuning_report()[start:]
    return {"shapes": len(new), "seconds": sum(r["seconds"] for r in new)}


def _calibrate_batchnorm(model: nn.Module, shape: tuple, device: torch.device, seed: int, batches: int = 2) -> None:
    """Running statistics of every batch norm from ``batches`` forwards of seeded random inputs, with only the
    batch norms in training mode (dropout and stochastic depth stay off, so nothing else draws random numbers)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m, m.momentum) for m in bns]
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    model.eval()
    try:
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
            m.train()
        with torch.no_grad():
            for _ in range(batches):
                model(torch.randn(shape, generator=gen, device=device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.eval()


# ==========================================================================================================
# Layout passes, from the profiler
# ==========================================================================================================
# Substrings of kernel names that are layout changes: fastconv's NHWC / TF32-rounding pre-pass
# (fastconv.kernels.common.nhwc_prepare_kernel), and cuDNN's NCHW <-> NHWC transforms.
LAYOUT_KERNELS = {"fastconv": ("nhwc_prepare_kernel",), "cudnn": ("nchwToNhwc", "nhwcToNchw")}


def kernel_times(events: Iterable) -> dict[str, dict]:
    """Device kernels of profiler events (``torch.profiler.profile(...).events()``): name -> calls and total us.

    Kernel events are those whose ``device_type`` is not the CPU; their duration is their ``time_range``."""
    out: dict[str, dict] = {}
    for e in events:
        if str(getattr(e, "device_type", "CPU")).rsplit(".", 1)[-1] == "CPU":
            continue
        d = out.setdefault(e.name, {"calls": 0, "us": 0.0})
        d["calls"] += 1
        d["us"] += float(e.time_range.elapsed_us())
    return out


def layout_pass_summary(kernels: dict[str, dict], iterations: int, patterns: Iterable[str], top: int = 8) -> dict:
    """Per forward: device ms of all kernels, of the layout passes (names containing one of ``patterns``),
    and the ``top`` kernels by time."""
    patterns = tuple(patterns)
    per = max(1, iterations)
    layout = {k: v for k, v in kernels.items() if any(p in k for p in patterns)}
    busiest = sorted(kernels.items(), key=lambda kv: -kv[1]["us"])[:top]
    return {
        "kernel_ms": sum(v["us"] for v in kernels.values()) / per / 1e3,
        "layout_ms": sum(v["us"] for v in layout.values()) / per / 1e3,
        "layout_calls": sum(v["calls"] for v in layout.values()) / per,
        "layout_kernels": sorted(layout),
        "top_kernels": [{"name": k, "ms": v["us"] / per / 1e3, "calls": v["calls"] / per} for k, v in busiest],
    }


_PROFILED = 3  # forwards per profile


def _profile(fn: Callable[[], object], device: torch.device, iterations: int) -> dict[str, dict]:
    from torch.profiler import ProfilerActivity, profile

    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(iterations):
            fn()
        _sync(device)
    return kernel_times(prof.events())


# ==========================================================================================================
# Per-layer breakdown
# ==========================================================================================================
def capture_conv_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Module path -> a copy of the input each ``nn.Conv2d`` of ``model`` receives in ``model(x)`` (its
    first call, for a conv used twice), from forward pre-hooks."""
    captured: dict[str, torch.Tensor] = {}

    def hook(name):
        def pre(m, args):
            if name not in captured:
                captured[name] = args[0].detach().clone()  # clone keeps the layout; later in-place ops can't touch it

        return pre

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in model.named_modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def _layer_args(m: nn.Conv2d, a: torch.Tensor):
    """What ``m(a)`` convolves: the input (padded first for non-zero padding modes), weight, bias, conv args."""
    padding = m.padding
    if m.padding_mode != "zeros":
        a, padding = F.pad(a, m._reversed_padding_repeated_twice, mode=m.padding_mode), (0, 0)
    b = None if m.bias is None else m.bias.detach()
    return a, m.weight.detach(), b, (m.stride, padding, m.dilation, m.groups)


def _layer_case(name: str, a, w, b, conv_args, dtype: str, precision: str | None):
    """The layer as a single-stage benchmark case (for the harness's kernel choice and error models)."""
    _, _, p = normalize_conv2d_args(a, w, b, *conv_args)
    layout = "nhwc" if p.channels_last else "nchw"
    template = p.replace(dtype="float32", channels_last=False)
    return p, BenchProblem(name, "networks", (template,)).case(dtype, layout, precision)


def layer_breakdown(original: nn.Module, converted: nn.Module, x: torch.Tensor, timer, *, dtype: str = "float32",
                    precision: str | None = None, budget_s: float = 0.2, rounds: int | None = None,
                    warmup: int = 3, check: bool = True) -> list[dict]:
    """Every conv layer of ``original`` alone, cuDNN (``original``'s module) against fastconv (``converted``'s
    module at the same path), on the input it receives in ``original(x)``; timed with ``timer`` (None: not
    timed), checked against fp64 by the tolerance model.  Rows sorted by time lost (fastconv - cuDNN), largest
    first (in call order when not timed).  A conv that ``convert`` left on torch says so in its ``kernel``."""
    import fastconv

    inputs = capture_conv_inputs(original, x)
    rows = []
    for order, (name, a) in enumerate(inputs.items()):
        mods = {"cudnn": original.get_submodule(name), "fastconv": converted.get_submodule(name)}
        pa, w, b, conv_args = _layer_args(mods["cudnn"], a)
        p, case = _layer_case(name, pa, w, b, conv_args, dtype, precision)
        row = {"name": name, "order": order, "problem": p.short(), "flops": p.flops, "kernel": None,
               "config": None, "error": None}
        fns = {impl: (lambda m=m, a=a: m(a)) for impl, m in mods.items()}
        outs = {}
        with torch.no_grad():
            for impl, fn in list(fns.items()):
                try:
                    outs[impl] = fn()
                except Exception as exc:  # reported in the row; the other side still runs
                    row["error" if impl == "fastconv" else "cudnn_error"] = _error_text(exc)
                    del fns[impl]
            converted_layer = isinstance(mods["fastconv"], fastconv.Conv2d)
            if not converted_layer:  # its own forward, not a plain conv: nothing to check it against
                row["kernel"] = f"not converted ({type(mods['fastconv']).__name__} runs on torch)"
                row["fastconv_ok"] = None
            elif "fastconv" in fns:
                choice = stage_plans(case, BenchInputs(pa, [w], [b]), "fastconv")
                row["kernel"] = " + ".join(c.get("kernel", "?") for c in choice)
                row["config"] = " + ".join(c.get("config", "") or "" for c in choice) or None
            if timer is not None and fns:
                t = timing.measure(fns, timer, budget_s=budget_s, rounds=rounds, warmup=warmup,
                                      first_call=False)
                for impl, tm in t.items():
                    row[f"{impl}_ms"] = tm.median_ms
                    row[f"{impl}_host_us"] = tm.host_us_median
            if check and converted_layer:
                for impl, y in outs.items():
                    c = check_stage(pa, w, b, y, *conv_args, impl_precision(case, impl))
                    row[f"{impl}_rel_error"], row[f"{impl}_ok"] = c.error, c.ok
                    if impl == "fastconv":
                        row["tolerance"] = c.tol
                        if c.message:
                            row["check_message"] = c.message
        c_ms, f_ms = row.get("cudnn_ms"), row.get("fastconv_ms")
        if c_ms is not None and f_ms is not None:
            row["lost_ms"] = f_ms - c_ms
            row["speedup"] = c_ms / f_ms if f_ms > 0 else None
        rows.append(row)
        del outs
    if timer is not None:
        rows.sort(key=lambda r: -(r.get("lost_ms") if r.get("lost_ms") is not None else -math.inf))
    return rows


# ==========================================================================================================
# One row: a network at a batch size and layout
# ==========================================================================================================
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def bench_network(
    net: Network | str,
    batch: int,
    layout: str,
    *,
    device: torch.device | str,
    timer=None,
    dtype: str = "float32",
    precision: str | None = None,
    seed: int = 0,
    budget_s: float = 1.0,
    rounds: int | None = None,
    warmup: int = 3,
    layers: bool = True,
    layer_budget_s: float = 0.2,
    layer_rounds: int | None = None,
    profile: bool | None = None,
    calibrate: bool = True,
    cudnn_benchmark: bool = True,
) -> dict:
    """Benchmark ``net`` converted by :func:`fastconv.convert` against the original, at ``batch`` in ``layout``.

    Args:
        net: a :class:`Network` or a name of :data:`NETWORKS`.
        layout: ``"nchw"`` or ``"nhwc"`` (model and input in ``torch.channels_last``).
        device: where it runs (``"cuda"``; ``"cpu"`` runs fastconv in Triton's interpreter).
        timer: a :class:`fastconv.bench.timing.TimingBackend` (``CudaEvents``), or None: nothing timed.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (model and input).
        precision: fastconv's float32 precision; None: what fastconv resolves now (``"tf32"`` at PyTorch's
            default flags).  cuDNN runs TF32 exactly when fastconv does.
        budget_s, rounds, warmup: the whole-network timing (:func:`fastconv.bench.timing.measure`).
        layers, layer_budget_s, layer_rounds: the per-layer breakdown (:func:`layer_breakdown`) and its timing.
        profile: measure layout passes with ``torch.profiler`` (default: on CUDA).
        calibrate: calibrate batch-norm statistics on random batches first.
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` for the row.

    Returns:
        a JSON-able row: settings, ``cudnn`` / ``fastconv`` (median ms, host enqueue us, cold first call s, rel.
        error against fp64, timing summary), ``speedup``, ``layout_passes``, ``layers``; ``skipped`` with the
        reason when the network cannot be built here, ``error`` when the original model itself fails.
    """
    import fastconv

    if isinstance(net, str):
        net = NETWORKS[net]
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"layout must be 'nchw' or 'nhwc', got {layout!r}")
    device = torch.device(device)
    tdtype = _DTYPES[dtype]
    resolved = resolved_precision(dtype, precision if dtype == "float32" else None, device)
    fast_precision = resolved if dtype == "float32" else None  # explicit: independent of the flags set below
    if profile is None:
        profile = device.type == "cuda"
    row: dict = {"network": net.name, "source": net.source, "batch": batch, "layout": layout, "dtype": dtype,
                 "precision": resolved, "cudnn_precision": "native" if dtype != "float32" else
                 ("tf32" if resolved == "tf32" else "ieee"), "cudnn_benchmark": cudnn_benchmark,
                 "input_shape": list(net.input_shape(batch)), "timed": timer is not None, "skipped": None,
                 "error": None}
    try:
        original = net.build(seed)
    except NetworkUnavailable as exc:
        row["skipped"] = str(exc)
        return row
    fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
    with _cudnn_flags(allow_tf32=row["cudnn_precision"] == "tf32", benchmark=cudnn_benchmark), torch.no_grad():
        original = original.to(device)
        if calibrate:
            _calibrate_batchnorm(original, net.input_shape(8), device, seed)
        original = original.to(dtype=tdtype, memory_format=fmt).eval()
        # strict=False: a conv subclass with its own forward stays on torch (counted: converted < convs)
        converted = fastconv.convert(copy.deepcopy(original), precision=fast_precision, strict=False)
        row["convs"] = sum(isinstance(m, nn.Conv2d) for m in original.modules())
        row["converted"] = sum(isinstance(m, fastconv.Conv2d) for m in converted.modules())
        gen = torch.Generator(device=device).manual_seed(seed)
        x = torch.randn(net.input_shape(batch), generator=gen, device=device).to(tdtype).contiguous(
            memory_format=fmt)

        # -- cold first calls (cuDNN's own autotuning, fastconv's compilation + autotuning) ------------------
        sides = {"cudnn": {"error": None}, "fastconv": {"error": None}}
        row["cudnn"], row["fastconv"] = sides["cudnn"], sides["fastconv"]
        outs = {}
        try:
            outs["cudnn"], sides["cudnn"]["first_call_s"] = _cold(lambda: original(x), device)
        except Exception as exc:
            row["error"] = sides["cudnn"]["error"] = _error_text(exc)
            return row
        tuned0 = _tuning_log_length()
        try:
            outs["fastconv"], sides["fastconv"]["first_call_s"] = _cold(lambda: converted(x), device)
            sides["fastconv"]["tuned"] = _tuned_since(tuned0)
        except Exception as exc:
            sides["fastconv"]["error"] = _error_text(exc)
        if timer is None:
            for s in sides.values():  # interpreter seconds say nothing about a GPU
                s.pop("first_call_s", None)

        # -- errors against the fp64 original ------------------------------------------------------------
        # in NCHW: the same values, and cuDNN has no channels_last float64 path (torch would convert per layer)
        reference = copy.deepcopy(original).to(dtype=torch.float64, memory_format=torch.contiguous_format)
        ref = reference(x.to(torch.float64).contiguous())
        del reference
        for impl, y in outs.items():
            sides[impl]["rel_error"] = rel_error(y, ref)
            sides[impl]["output_layout_same"] = y.stride() == outs["cudnn"].stride() and y.dtype == outs[
                "cudnn"].dtype
        del ref, outs
        if device.type == "cuda":
            torch.cuda.empty_cache()

        # -- whole forward, timed ------------------------------------------------------------------------
        fns = {"cudnn": lambda: original(x)}
        if sides["fastconv"]["error"] is None:
            fns["fastconv"] = lambda: converted(x)
        if timer is not None:
            timings = timing.measure(fns, timer, budget_s=budget_s, rounds=rounds, warmup=warmup,
                                        first_call=False)
            for impl, t in timings.items():
                sides[impl].update(median_ms=t.median_ms, host_enqueue_us=t.host_us_median, timing=t.summary())
            if "fastconv" in timings:
                row["speedup"] = timings["cudnn"].median_ms / timings["fastconv"].median_ms

        # -- layout passes ---------------------------------------------------------------------------------
        if profile:
            row["layout_passes"] = {impl: layout_pass_summary(_profile(fn, device, _PROFILED), _PROFILED,
                                                              LAYOUT_KERNELS[impl]) for impl, fn in fns.items()}

        # -- per layer -------------------------------------------------------------------------------------
        if layers:
            row["layers"] = layer_breakdown(original, converted, x, timer, dtype=dtype, precision=fast_precision,
                                            budget_s=layer_budget_s, rounds=layer_rounds, warmup=warmup)
            row["layers_ok"] = all(r["error"] is None and r.get("fastconv_ok") in (True, None) for r in row["layers"])
    return row  # the models go with this frame (run() empties the CUDA cache between rows)


def row_ok(row: dict) -> bool:
    """No fastconv error and (where layers were checked) every layer within the tolerance model."""
    if row.get("skipped"):
        return True
    if row.get("error") or (row.get("fastconv") or {}).get("error"):
        return False
    return row.get("layers_ok", True)


# ==========================================================================================================
# Tables: terminal and markdown
# ==========================================================================================================
def _f(v, spec: str, empty: str = "-") -> str:
    return empty if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _status(row: dict) -> str:
    if row.get("skipped"):
        return "skipped: " + row["skipped"]
    if row.get("error"):
        return "ERROR (original model) " + row["error"]
    fast = row.get("fastconv") or {}
    if fast.get("error"):
        return "ERROR " + fast["error"]
    layers = row.get("layers")
    partial = (f" ({row['converted']} of {row['convs']} convs converted)"
               if row.get("converted", 0) < row.get("convs", 0) else "")
    if layers is None:
        return "ok (layers not checked)" + partial
    bad = [r["name"] for r in layers if r.get("fastconv_ok") is False or r.get("error")]
    return ("ok" if not bad else f"WRONG: {', '.join(bad)}") + partial


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the network table (shared by the terminal and the markdown)."""
    timed = report["timed"]
    if timed:
        head = ["network", "batch", "layout", "cuDNN ms", "fastconv ms", "speedup", "host us (cuDNN/fastconv)",
                "fastconv cold s", "layout passes ms (fastconv/cuDNN)", "rel. error cuDNN", "rel. error fastconv",
                "layers slower", "status"]
    else:
        head = ["network (interpreter, NOT TIMED)", "batch", "layout", "convs converted", "rel. error torch",
                "rel. error fastconv", "worst layer error/bound", "status"]
    rows = []
    for r in report["rows"]:
        c, f = r.get("cudnn") or {}, r.get("fastconv") or {}
        layers = r.get("layers") or []
        if timed:
            lp = r.get("layout_passes") or {}
            slower = [x for x in layers if (x.get("lost_ms") or 0) > 0]
            rows.append([
                r["network"], str(r["batch"]), r["layout"], _f(c.get("median_ms"), ".3f"),
                _f(f.get("median_ms"), ".3f"), _f(r.get("speedup"), ".2f") + ("x" if r.get("speedup") else ""),
                f"{_f(c.get('host_enqueue_us'), '.0f')}/{_f(f.get('host_enqueue_us'), '.0f')}",
                _f(f.get("first_call_s"), ".1f"),
                f"{_f((lp.get('fastconv') or {}).get('layout_ms'), '.3f')}/"
                f"{_f((lp.get('cudnn') or {}).get('layout_ms'), '.3f')}",
                _f(c.get("rel_error"), ".1e"), _f(f.get("rel_error"), ".1e"),
                f"{len(slower)}/{len(layers)}" if layers else "-", _status(r)])
        else:
            worst = max((x["fastconv_rel_error"] / x["tolerance"] for x in layers
                         if x.get("tolerance") and x.get("fastconv_rel_error") is not None), default=None)
            rows.append([
                r["network"], str(r["batch"]), r["layout"],
                f"{r.get('converted', '-')}/{r.get('convs', '-')}" if not r.get("skipped") else "-",
                _f(c.get("rel_error"), ".1e"), _f(f.get("rel_error"), ".1e"), _f(worst, ".2f"), _status(r)])
    return head, rows


def layer_table_rows(row: dict, top: int | None = 5) -> tuple[list[str], list[list[str]]]:
    """The per-layer breakdown of one row: layers that lose first (timed), or every layer (not timed)."""
    layers = row.get("layers") or []
    if row.get("timed"):
        head = ["layer", "problem", "fastconv kernel", "cuDNN ms", "fastconv ms", "lost ms", "speedup",
                "rel. error cuDNN/fastconv"]
        chosen = [x for x in layers if (x.get("lost_ms") or 0) > 0][:top] if top else layers
    else:
        head = ["layer", "problem", "fastconv kernel", "rel. error torch/fastconv", "bound", "ok"]
        chosen = layers[:top] if top else layers
    rows = []
    for x in chosen:
        kernel = (x.get("kernel") or "ERROR " + str(x.get("error"))) + (f" {x['config']}" if x.get("config") else "")
        errs = f"{_f(x.get('cudnn_rel_error'), '.1e')}/{_f(x.get('fastconv_rel_error'), '.1e')}"
        if row.get("timed"):
            rows.append([x["name"], x["problem"], kernel, _f(x.get("cudnn_ms"), ".3f"), _f(x.get("fastconv_ms"), ".3f"),
                         _f(x.get("lost_ms"), "+.3f"), _f(x.get("speedup"), ".2f") + "x", errs])
        else:
            ok = "NO" if x.get("error") or x.get("fastconv_ok") is False else "yes" if x.get("fastconv_ok") else "n/a"
            rows.append([x["name"], x["problem"], kernel, errs, _f(x.get("tolerance"), ".1e"), ok])
    return head, rows


def _render(head: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    esc = lambda s: s.replace("|", "\\|")
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(esc(c) for c in r) + " |" for r in rows)]


def format_table(report: dict, top: int = 5) -> str:
    """The terminal report: the network table, then per row the layers that lose the most (timed) or every
    layer's check (not timed)."""
    parts = [_render(*table_rows(report))]
    for r in report["rows"]:
        if r.get("layers"):
            head, rows = layer_table_rows(r, top if report["timed"] else None)
            what = f"layers that lose (top {top} by time lost)" if report["timed"] else "layers"
            parts.append(f"\n{r['network']} batch {r['batch']} {r['layout']}: {what}"
                         + ("" if rows else ": none"))
            if rows:
                parts.append(_render(head, rows))
    return "\n".join(parts)


SECTION_BEGIN = "<!-- fastconv networks: begin (python -m fastconv networks --update-benchmarks-md) -->"
SECTION_END = "<!-- fastconv networks: end -->"


def networks_md(report: dict, top: int = 5) -> str:
    """The "Networks" section of BENCHMARKS.md (between markers, so it can be replaced in place)."""
    m = report.get("machine") or {}
    s = report.get("settings") or {}
    lines = [
        SECTION_BEGIN,
        "## Networks",
        "",
        f"Generated by `{report['command']}` on {report['date'][:10]} ({report['date']}); do not edit by hand.",
        "",
        f"- GPU: {m.get('gpu')} (driver {m.get('driver')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}); "
        f"torch {m.get('torch')}, triton {m.get('triton')}, torchvision {m.get('torchvision')}",
        f"- Whole forward passes, `eval()`, `torch.no_grad()`, {s.get('dtype')}, precision "
        f"{s.get('precision') or 'default (tf32)'}; cuDNN = the original model (`nn.Conv2d`), "
        f"`cudnn.benchmark={s.get('cudnn_benchmark')}`; fastconv = `fastconv.convert` of a copy.  torchvision "
        "models with `weights=None` under a fixed seed, batch norms calibrated on random batches; inputs "
        "`torch.randn`, seeded.",
        f"- Timing: {report.get('timing')}; median of interleaved rounds.  `host us`: the host's time to "
        "enqueue one forward (beyond ~1 ms the device waits for the host, so batch-1 times include host cost).  "
        "`fastconv cold s`: the first forward (Triton compilation + autotuning of every conv shape).",
        "- `layout passes ms`: device time per forward in layout-changing kernels (torch.profiler: fastconv's "
        "NHWC/TF32 pre-pass, cuDNN's NCHW<->NHWC transforms).",
        "- rel. error = ||y - ref|| / ||ref|| against the fp64 run of the original model on the same input.  "
        "`layers slower`: conv layers where fastconv alone is slower than cuDNN alone (same input, same layout).",
        "",
        *_md_table(*table_rows(report)),
        "",
    ]
    for r in report["rows"]:
        if not r.get("layers") or not report["timed"]:
            continue
        head, rows = layer_table_rows(r, top)
        if rows:
            lines += [f"### {r['network']}, batch {r['batch']}, {r['layout']}: layers that lose (top {top})", "",
                      *_md_table(head, rows), ""]
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def with_networks_section(text: str, section: str) -> str:
    """``text`` with its networks section replaced by ``section`` (appended when it has none)."""
    start, end = text.find(SECTION_BEGIN), text.find(SECTION_END)
    if start >= 0 and end > start:
        tail = text[end + len(SECTION_END):].lstrip("\n")
        return text[:start] + section.rstrip("\n") + "\n" + (("\n" + tail) if tail else "")
    return text.rstrip("\n") + "\n\n" + section


def carry_networks_section(path: Path | str, new_text: str) -> str:
    """``new_text`` (a regenerated BENCHMARKS.md) with the networks section of the file at ``path`` kept."""
    try:
        old = Path(path).read_text()
    except OSError:
        return new_text
    start, end = old.find(SECTION_BEGIN), old.find(SECTION_END)
    if start < 0 or end < start:
        return new_text
    return with_networks_section(new_text, old[start:end + len(SECTION_END)] + "\n")


# ==========================================================================================================
# Command line: python -m fastconv networks
# ==========================================================================================================
def _int_list(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"expected positive batch sizes, got {text!r}")
    return vals


def _layouts(text: str) -> list[str]:
    vals = ["nchw", "nhwc"] if text == "both" else [t.strip() for t in text.split(",") if t.strip()]
    bad = [v for v in vals if v not in ("nchw", "nhwc")]
    if bad or not vals:
        raise argparse.ArgumentTypeError(f"layouts are nchw, nhwc, a comma list of them, or both; got {text!r}")
    return list(dict.fromkeys(vals))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--networks", default="all", metavar="NAMES",
                        help=f"comma-separated: {', '.join(TORCHVISION)}, their tiny_* stand-ins, all (default), "
                             "tiny")
    parser.add_argument("--batch", type=_int_list, default=[1, 8, 64], metavar="N,N,...",
                        help="batch sizes (default 1,8,64)")
    parser.add_argument("--layout", type=_layouts, default=["nchw", "nhwc"], metavar="nchw,nhwc|both",
                        help="memory formats of model and input (default both)")
    parser.add_argument("--dtype", default="float32", choices=list(_DTYPES))
    parser.add_argument("--precision", default=None, type=_precision_arg, metavar="tf32|ieee|tf32x3",
                        help="fastconv's float32 precision (default: what fastconv.conv2d resolves, i.e. tf32 at "
                             "PyTorch's default flags); cuDNN runs TF32 only when fastconv does")
    parser.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false",
                        help="run cuDNN at PyTorch's default (no per-shape autotuning)")
    parser.add_argument("--budget", type=float, default=1.0, metavar="S",
                        help="seconds of timed rounds per whole-network row (default 1.0; at least 10 rounds)")
    parser.add_argument("--rounds", type=int, default=None, help="fixed number of timed rounds per row")
    parser.add_argument("--layer-budget", type=float, default=0.2, metavar="S",
                        help="seconds of timed rounds per conv layer (default 0.2)")
    parser.add_argument("--no-layers", dest="layers", action="store_false", help="skip the per-layer breakdown")
    parser.add_argument("--no-profile", dest="profile", action="store_false",
                        help="skip the layout-pass measurement (torch.profiler)")
    parser.add_argument("--top", type=int, default=5, help="losing layers listed per row (default 5)")
    parser.add_argument("--out", default="out/networks", help="output directory (default out/networks)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished rows of <out>/networks.json and run only the missing ones")
    parser.add_argument("--max-minutes", type=float, default=None, metavar="M",
                        help="start no new row after M minutes (then continue with --resume)")
    parser.add_argument("--update-benchmarks-md", nargs="?", const="BENCHMARKS.md", default=None, metavar="PATH",
                        help="write the Networks section of BENCHMARKS.md (or PATH); GPU runs only")


def _row_key(r: dict) -> tuple:
    return (r["network"], r["batch"], r["layout"], r["dtype"], r["precision"], r.get("cudnn_benchmark"))


def _machine() -> dict:
    info = machine_info(None)
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    return info


def _write_json(path: Path, report: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    gpu = torch.cuda.is_available() and not interpreter_enabled()
    if args.update_benchmarks_md and not gpu:
        print("fastconv networks: --update-benchmarks-md needs a GPU (nothing is timed in the interpreter)",
              file=sys.stderr)
        return 2
    try:
        nets = select(args.networks, gpu=gpu)
    except ValueError as exc:
        print(f"fastconv networks: {exc}", file=sys.stderr)
        return 2
    if gpu:
        device = torch.device("cuda", torch.cuda.current_device())
        timer = timing.default_backend(device)
        batches, layouts = args.batch, args.layout
    else:
        device, timer = torch.device("cpu"), None
        batches, layouts = [min(args.batch)] if min(args.batch) <= 2 else [1], args.layout
        print("fastconv networks: NO GPU - each tiny stand-in runs once per layout in Triton's interpreter, "
              "checked against fp64.\nTimes are NOT measured: interpreter times say nothing about GPU "
              "performance.", file=sys.stderr)
    precision = args.precision if args.dtype == "float32" else None
    resolved = resolved_precision(args.dtype, precision, "cuda" if gpu else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "networks.json"
    done: dict[tuple, dict] = {}
    if args.resume and path.exists():
        try:
            old = json.loads(path.read_text())
            done = {_row_key(r): r for r in old.get("rows", []) if r.get("timed") == gpu and not r.get("error")
                    and not (r.get("fastconv") or {}).get("error")}
        except (OSError, ValueError, KeyError):
            done = {}
    report = {
        "schema": "fastconv-networks/1",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m fastconv networks" + "".join(" " + shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "networks" else "python -m fastconv networks",
        "timed": gpu,
        "timing": timer.describe() if timer is not None else "NOT TIMED (Triton interpreter, no GPU)",
        "machine": _machine(),
        "settings": {"networks": [n.name for n in nets], "batches": batches, "layouts": layouts,
                     "dtype": args.dtype, "precision": resolved, "cudnn_benchmark": args.cudnn_benchmark,
                     "budget_s": args.budget, "rounds": args.rounds, "layer_budget_s": args.layer_budget,
                     "layers": args.layers, "profile": args.profile},
        "rows": [],
    }
    plan = [(n, b, lay) for n in nets for lay in layouts for b in batches]
    t_start = time.perf_counter()
    left = 0
    for i, (net, batch, layout) in enumerate(plan, 1):
        key = (net.name, batch, layout, args.dtype, resolved, args.cudnn_benchmark)
        head = f"[{i}/{len(plan)} {time.perf_counter() - t_start:7.1f}s] {net.name} batch {batch} {layout}"
        if key in done:
            report["rows"].append(done[key])
            print(f"{head}: kept from {path}", file=sys.stderr)
            continue
        if args.max_minutes is not None and time.perf_counter() - t_start > 60 * args.max_minutes:
            left += 1
            continue
        print(f"{head} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            row = bench_network(net, batch, layout, device=device, timer=timer, dtype=args.dtype,
                                precision=precision, budget_s=args.budget, rounds=args.rounds,
                                layers=args.layers, layer_budget_s=args.layer_budget,
                                profile=args.profile and gpu, cudnn_benchmark=args.cudnn_benchmark)
        except torch.cuda.OutOfMemoryError as exc:
            row = {"network": net.name, "batch": batch, "layout": layout, "dtype": args.dtype,
                   "precision": resolved, "cudnn_benchmark": args.cudnn_benchmark, "timed": gpu,
                   "skipped": None, "error": _error_text(exc)}
            torch.cuda.empty_cache()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        row["wall_s"] = time.perf_counter() - t0
        report["rows"].append(row)
        _write_json(path, report)
        f = row.get("fastconv") or {}
        summary = _status(row) if row.get("skipped") or not gpu else (
            f"cuDNN {_f((row.get('cudnn') or {}).get('median_ms'), '.3f')} ms, fastconv "
            f"{_f(f.get('median_ms'), '.3f')} ms ({_f(row.get('speedup'), '.2f')}x), {_status(row)}")
        print(f"{head}: {summary} [{row['wall_s']:.1f}s]", file=sys.stderr, flush=True)
    report["rows_not_run"] = left
    _write_json(path, report)
    print()
    if left:
        print(f"INCOMPLETE: {left} of {len(plan)} rows not run (--max-minutes {args.max_minutes:g}); run the same "
              "command with --resume to continue.")
    if not gpu:
        print("NOT TIMED: Triton interpreter run of the tiny stand-ins (no GPU); correctness against fp64 only.")
    print(format_table(report, args.top))
    print(f"\nwrote {path}")
    if args.update_benchmarks_md:
        md = Path(args.update_benchmarks_md)
        text = md.read_text() if md.exists() else "# Benchmarks\n"
        md.write_text(with_networks_section(text, networks_md(report, args.top)))
        print(f"wrote the Networks section of {md}")
    wrong = [f"{r['network']} b{r['batch']} {r['layout']}" for r in report["rows"] if not row_ok(r)]
    if wrong:
        print(f"networks: WRONG OUTPUT or ERROR: {', '.join(wrong)}")
        return 1
    return 0
