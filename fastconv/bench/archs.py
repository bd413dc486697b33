"""Full-size networks with torchvision's conv layers, built without torchvision, and their conv shapes.

The tuning scripts (``scripts/fit_heuristic.py``, ``scripts/first_forward.py``) and ``fastconv tune
--network`` need the conv layers of ResNet-18/50, MobileNetV2, EfficientNet-B0 and VGG-16 on machines where
torchvision may be missing.  :func:`build` returns torchvision's model when torchvision imports, else a copy
built here from the same blocks as the stand-ins of :mod:`fastconv.bench.networks` at full width: every
``nn.Conv2d`` has torchvision's in/out channels, kernel, stride, padding, groups and bias, in the same order
(checked against torchvision's definitions: ``resnet.py`` v1.5 with the stride on the 3x3,
``mobilenetv2.py``'s inverted-residual table, ``efficientnet.py``'s B0 table with squeeze-excite
``max(1, c_in // 4)``, ``vgg.py`` configuration "D").  Other layers (classifier, dropout, stochastic depth)
may differ: only the convolutions matter here.

:func:`conv_problems` walks a model with forward pre-hooks on the ``meta`` device (no memory, no compute) and
returns each conv call as a :class:`~fastconv.ConvProblem`.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..problem import ConvProblem
from ..validation import output_channels_last
from ..vocab import dtype_info
from .networks import _Basic, _Bottleneck, _conv_bn, _InvertedResidual

__all__ = ["ARCHS", "build", "conv_problems", "network_problems"]


def _resnet(block: str, depths: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = [*_conv_bn(3, 64, 7, 2, nn.ReLU), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for stage, depth in enumerate(depths):
        width = 64 << stage
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            if block == "basic":
                layers.append(_Basic(c_in, width, stride))
                c_in = width
            else:
                layers.append(_Bottleneck(c_in, width, width * 4, stride))
                c_in = width * 4
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1000))


def _mobilenet_v2() -> nn.Module:
    # torchvision's inverted_residual_setting: expand t, channels c, repeats n, first stride s
    table = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))
    layers: list[nn.Module] = _conv_bn(3, 32, 3, 2, nn.ReLU6)
    c_in = 32
    for t, c, n, s in table:
        for i in range(n):
            layers.append(_InvertedResidual(c_in, c, s if i == 0 else 1, t))
            c_in = c
    layers += _conv_bn(c_in, 1280, 1, 1, nn.ReLU6)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))


def _efficientnet_b0() -> nn.Module:
    # torchvision's B0 table: expand ratio, kernel, first stride, c_in, c_out, repeats
    table = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))
    layers: list[nn.Module] = _conv_bn(3, 32, 3, 2, nn.SiLU)
    for t, k, s, c_in, c_out, n in table:
        for i in range(n):
            layers.append(_InvertedResidual(c_in if i == 0 else c_out, c_out, s if i == 0 else 1, t, k, True,
                                            nn.SiLU))
    layers += _conv_bn(320, 1280, 1, 1, nn.SiLU)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))


def _vgg16() -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(512 * 7 * 7, 1000))


ARCHS = {
    "resnet18": lambda: _resnet("basic", (2, 2, 2, 2)),
    "resnet50": lambda: _resnet("bottleneck", (3, 4, 6, 3)),
    "mobilenet_v2": _mobilenet_v2,
    "efficientnet_b0": _efficientnet_b0,
    "vgg16": _vgg16,
}


def build(name: str, *, torchvision: bool = True, seed: int = 0) -> tuple[nn.Module, str]:
    """``(model, source)``: torchvision's ``name`` when ``torchvision`` is allowed and importable
    (``source="torchvision"``), else the copy of this module (``"fastconv.bench.archs"``); random init under
    ``torch.manual_seed(seed)``, the global RNG left as it was."""
    if name not in ARCHS:
        raise ValueError(f"unknown network {name!r}; known: {', '.join(ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if torchvision:
            try:
                import torchvision as tv  # optional
            except ImportError:
                pass
            else:
                return getattr(tv.models, name)(weights=None), "torchvision"
        return ARCHS[name](), "fastconv.bench.archs"


def conv_problems(model: nn.Module, input_shape: tuple[int, ...], *, channels_last: bool = False,
                  dtype: torch.dtype = torch.float32) -> list[tuple[str, ConvProblem]]:
    """``(module path, problem)`` of every ``nn.Conv2d`` call of ``model`` on an input of ``input_shape``, in
    call order, found on the ``meta`` device (a deep copy of the model is moved there; nothing is computed)."""
    import copy

    meta = copy.deepcopy(model).to(device="meta", dtype=dtype).eval()
    if channels_last:
        meta = meta.to(memory_format=torch.channels_last)
    found: list[tuple[str, ConvProblem]] = []
    handles = []
    for name, m in meta.named_modules():
        if isinstance(m, nn.Conv2d):
            def pre(mod, args, name=name):
                x = args[0]
                if isinstance(mod.padding, str) or mod.padding_mode != "zeros":
                    raise ValueError(f"{name}: conv_problems takes numeric zero padding only")
                n, c, h, w = x.shape
                found.append((name, ConvProblem.make(
                    n, c, mod.out_channels, h, w, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                    mod.groups, dtype=dtype_info(x.dtype).name, has_bias=mod.bias is not None,
                    channels_last=output_channels_last(x, mod.weight))))

            handles.append(m.register_forward_pre_hook(pre))
    x = torch.empty(input_shape, device="meta", dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            meta(x)
    finally:
        for h in handles:
            h.remove()
    return found


def network_problems(name: str, batch: int, *, channels_last: bool = False, torchvision: bool = True
                     ) -> list[tuple[str, ConvProblem]]:
    """The conv calls of network ``name`` at ``batch`` x 3 x 224 x 224 (:func:`conv_problems` of :func:`build`)."""
    model, _ = build(name, torchvision=torchvision)
    return conv_problems(model, (batch, 3, 224, 224), channels_last=channels_last)
