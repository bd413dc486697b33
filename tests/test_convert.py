"""fastconv.convert / fastconv.revert on small networks written here: outputs, parameters, state dicts, hooks,
gradients, layouts, and the rule for nn.Conv2d subclasses.

Outputs are checked two ways.  Layer by layer (the rigorous part): a forward hook records what every converted
conv received and returned and the precision the call resolved at that moment; each output is checked against
the fp64 reference of that very input by the one tolerance model (``fastconv.testing.assert_conv_close``).  End
to end: the network's output is compared with the fp64 run of the original model; its norm-wise relative error
must stay within the sum of the layers' norm-wise relative bounds (first-order propagation: the layers between
convs here are ReLUs, pooling, eval-mode batch norms near identity and residual adds, which carry a relative
error through without amplifying it).

Sizes are tiny (a few channels, 8x8 to 16x16 images, batch 1-2): on a CPU every conv runs in Triton's
interpreter.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fastconv
from fastconv.testing import assert_conv_close, layout_mismatch
from fastconv.vocab import dtype_name

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------------------------------------
# Small networks
# ----------------------------------------------------------------------------------------------------------
class Residual(nn.Module):
    """ResNet basic block with a strided 1x1 projection shortcut."""

    def __init__(self, c_in=4, c_out=8, stride=2):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.down(x))


def depthwise_separable(c_in=4, c_out=8):
    """MobileNet's block: depthwise 3x3, then pointwise 1x1 (with bias)."""
    return nn.Sequential(nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                         nn.ReLU6(), nn.Conv2d(c_in, c_out, 1), nn.ReLU6())


def grouped(c=8):
    """ResNeXt-style grouped 3x3 (2 groups), then a grouped 1x1 (4 groups), dilated 3x3."""
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=2), nn.ReLU(), nn.Conv2d(c, c, 1, groups=4), nn.ReLU(),
                         nn.Conv2d(c, c, 3, 1, 2, dilation=2, bias=False))


def stem():
    """ResNet's stem: 7x7 stride 2, batch norm, ReLU, 3x3 max pool stride 2."""
    return nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                         nn.MaxPool2d(3, 2, 1))


def small_net():
    """Stem, residual block, pooled classifier: the whole shape of a CNN."""
    return nn.Sequential(stem(), Residual(8, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


NETWORKS = {  # name -> (builder, input shape)
    "residual": (Residual, (2, 4, 8, 8)),
    "depthwise_separable": (depthwise_separable, (1, 4, 8, 8)),
    "grouped": (grouped, (1, 8, 8, 8)),
    "stem": (stem, (1, 3, 16, 16)),
    "small_net": (small_net, (1, 3, 16, 16)),
}


def build(name: str, seed: int = 0, channels_last: bool = False):
    builder, shape = NETWORKS[name]
    torch.manual_seed(seed)
    model = builder()
    for m in model.modules():  # non-trivial eval-mode batch norms
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    model = model.to(DEVICE).eval()
    x = torch.randn(shape, device=DEVICE)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def convs(model) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


# ----------------------------------------------------------------------------------------------------------
# Checking a converted network
# ----------------------------------------------------------------------------------------------------------
def resolved(dtype: str, precision: str | None, device: torch.device) -> str:
    """What fastconv resolves ``precision`` to for ``dtype`` on ``device`` (given the device where
    ``resolve_precision`` takes one: the default may differ per device)."""
    try:
        return str(fastconv.resolve_precision(dtype, precision, device))
    except TypeError:
        return str(fastconv.resolve_precision(dtype, precision))


def run_checked(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``model(x)``, checking every fastconv conv of it against the fp64 reference of the input it got (and
    torch's output layout); returns the output and the sum of the layers' norm-wise relative bounds."""
    records = []

    def hook(m, args, out):
        (a,) = args
        # what this call resolved; under autocast the conv ran in the output's (lower) dtype
        precision = resolved(dtype_name(out.dtype), m.precision if out.dtype == torch.float32 else None, a.device)
        records.append((m, a.detach().to(out.dtype, copy=True), out.detach().clone(), precision))

    layers = [m for m in model.modules() if isinstance(m, fastconv.Conv2d)]
    assert layers, "nothing was converted"
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        y = model(x)
    finally:
        for h in handles:
            h.remove()
    assert {id(m) for m, *_ in records} == {id(m) for m in layers}, "a converted conv did not run"
    total = 0.0
    for m, a, out, precision in records:
        padding = m.padding
        if m.padding_mode != "zeros":
            a, padding = F.pad(a, m._reversed_padding_repeated_twice, mode=m.padding_mode), 0
        w = m.weight.detach().to(a.dtype)
        b = None if m.bias is None else m.bias.detach().to(a.dtype)
        chk = assert_conv_close(out, a, w, b, m.stride, padding, m.dilation, m.groups, precision=precision,
                                problem=repr(m))
        total += chk.rel_norm_bound
        if a.dtype == torch.float32 or a.device.type == "cuda":  # torch's CPU conv has no half kernels everywhere
            expected = F.conv2d(a, w, b, m.stride, padding, m.dilation, m.groups)
            assert layout_mismatch(out, expected) is None, (repr(m), layout_mismatch(out, expected))
    return y, total


def fp64_output(original: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return copy.deepcopy(original).double()(x.double())


def rel_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    y, ref = y.detach().double(), ref.detach().double()
    return float(torch.linalg.vector_norm(y - ref) / torch.linalg.vector_norm(ref))


def assert_network_close(model, original, x, *, y=None):
    """Converted ``model`` against the fp64 run of ``original`` (same parameters), layer by layer and end to end.
    Returns the converted output."""
    with torch.no_grad():
        y_checked, bound = run_checked(model, x)
        y_orig = original(x)
    y = y_checked if y is None else y
    assert y.shape == y_orig.shape and y.dtype == y_orig.dtype
    ref = fp64_output(original, x)
    err = rel_error(y, ref)
    assert err <= bound, f"end-to-end relative error {err:.3g} > sum of the layers' bounds {bound:.3g}"
    return y


# ----------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_converted_network_matches_the_original(name):
    model, x = build(name)
    original = copy.deepcopy(model)
    assert fastconv.convert(model) is model
    assert all(type(m) is fastconv.Conv2d for m in convs(model))
    assert_network_close(model, original, x)


@pytest.mark.parametrize("precision", ["ieee", "tf32"])
def test_explicit_precision(precision):
    model, x = build("residual")
    original = copy.deepcopy(model)
    fastconv.convert(model, precision=precision)
    assert all(m.precision == precision for m in convs(model))
    assert_network_close(model, original, x)


def test_channels_last_model_gives_channels_last_outputs():
    model, x = build("small_net", channels_last=True)
    original = copy.deepcopy(model)
    fastconv.convert(model)
    for m in convs(model):
        assert m.weight.is_contiguous(memory_format=torch.channels_last)
    feats = model[:2]  # stem + residual block: a 4-D output, in torch's format (run_checked checks every conv)
    with torch.no_grad():
        y, y_orig = feats(x), original[:2](x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert layout_mismatch(y, y_orig) is None
    assert_network_close(model, original, x)


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_padding_modes_are_honoured(mode):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=(1, 2), padding_mode=mode, bias=False)).to(DEVICE)
    x = torch.randn(1, 3, 8, 8, device=DEVICE)
    original = copy.deepcopy(model)
    fastconv.convert(model)
    assert [m.padding_mode for m in convs(model)] == [mode, mode]
    assert_network_close(model, original, x)


# ----------------------------------------------------------------------------------------------------------
# What is kept: parameters, state dict, flags, attributes, hooks
# ----------------------------------------------------------------------------------------------------------
def snapshot(model):
    return ([(n, id(p), p.requires_grad) for n, p in model.named_parameters()],
            [(n, id(b)) for n, b in model.named_buffers()])


def test_parameters_are_the_same_objects_and_state_dicts_identical_both_ways():
    model, _ = build("small_net")
    before_ids = snapshot(model)
    sd = model.state_dict()
    ptrs = {k: v.data_ptr() for k, v in sd.items()}
    fastconv.convert(model)
    assert snapshot(model) == before_ids
    sd2 = model.state_dict()
    assert list(sd2) == list(sd) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert {k: v.data_ptr() for k, v in sd2.items()} == ptrs  # not even copied
    fastconv.revert(model)
    assert all(type(m) is nn.Conv2d for m in convs(model))
    assert not any(hasattr(m, "backend") or hasattr(m, "precision") for m in convs(model))
    assert snapshot(model) == before_ids
    sd3 = model.state_dict()
    assert list(sd3) == list(sd) and all(torch.equal(sd[k], sd3[k]) for k in sd)
    nn.Sequential(stem(), Residual(8, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                  nn.Linear(8, 5)).load_state_dict(fastconv.convert(model).state_dict())  # loads into torch's


def test_frozen_layers_stay_frozen_and_flags_and_attributes_are_kept():
    model, _ = build("residual")
    model.conv1.weight.requires_grad_(False)
    model.train()
    model.conv2.eval()
    model.conv2.tag = "mine"
    fastconv.convert(model)
    assert not model.conv1.weight.requires_grad and model.conv2.weight.requires_grad
    assert model.training and model.down[0].training and not model.conv2.training
    assert model.conv2.tag == "mine"
    fastconv.revert(model)
    assert not model.conv1.weight.requires_grad and model.conv2.tag == "mine" and not model.conv2.training


def test_hooks_stay_registered_and_fire():
    model, x = build("residual")
    calls = []
    handle = model.conv2.register_forward_pre_hook(lambda m, a: calls.append(type(m)))
    fastconv.convert(model)
    with torch.no_grad():
        model(x)
    assert calls == [fastconv.Conv2d]
    handle.remove()  # the handle from before the conversion still removes it
    with torch.no_grad():
        model(x)
    assert calls == [fastconv.Conv2d]


def test_converting_twice_is_a_no_op_and_fastconv_modules_are_left_alone():
    model, _ = build("grouped")
    model[2] = fastconv.Conv2d(8, 8, 1, groups=4, backend="direct")
    fastconv.convert(model, precision="ieee")
    state = [(type(m), m.backend, m.precision, id(m.weight)) for m in convs(model)]
    assert state[1][1:3] == ("direct", None)  # built by the user: not touched
    fastconv.convert(model, precision="tf32")
    assert [(type(m), m.backend, m.precision, id(m.weight)) for m in convs(model)] == state


def test_a_shared_conv_and_a_root_conv_are_converted():
    conv = nn.Conv2d(4, 4, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    fastconv.convert(model)
    assert model[0] is model[2] is conv and type(conv) is fastconv.Conv2d
    root = nn.Conv2d(2, 3, 1)
    assert fastconv.convert(root) is root and type(root) is fastconv.Conv2d


def test_not_in_place_leaves_the_original_alone():
    model, x = build("depthwise_separable")
    converted = fastconv.convert(model, inplace=False)
    assert converted is not model and all(type(m) is nn.Conv2d for m in convs(model))
    assert all(type(m) is fastconv.Conv2d for m in convs(converted))
    assert_network_close(converted, model, x)
    back = fastconv.revert(converted, inplace=False)
    assert all(type(m) is nn.Conv2d for m in convs(back)) and all(type(m) is fastconv.Conv2d
                                                                   for m in convs(converted))


def test_backend_and_precision_are_checked_before_anything_changes():
    model, _ = build("stem")
    with pytest.raises(ValueError, match="backend"):
        fastconv.convert(model, backend="nope")
    with pytest.raises(ValueError, match="precision"):
        fastconv.convert(model, precision="fp8")
    assert all(type(m) is nn.Conv2d for m in convs(model))
    fastconv.convert(model, backend="direct")
    assert convs(model)[0].backend == "direct"


# ----------------------------------------------------------------------------------------------------------
# The rule for nn.Conv2d subclasses
# ----------------------------------------------------------------------------------------------------------
class ScaledConv(nn.Conv2d):
    """A user's subclass with its own forward."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_subclasses_are_never_replaced():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), ScaledConv(4, 4, 1), nn.LazyConv2d(4, 1))
    with pytest.raises(TypeError) as exc:
        fastconv.convert(model)
    msg = str(exc.value)
    assert "1 (" in msg and "ScaledConv" in msg and "2 (" in msg and "lazy" in msg and "strict=False" in msg
    assert type(model[0]) is nn.Conv2d  # nothing changed
    fastconv.convert(model, strict=False)
    assert [type(m) for m in model] == [fastconv.Conv2d, ScaledConv, nn.LazyConv2d]

    class MyFast(fastconv.Conv2d):
        pass

    tree = nn.Sequential(MyFast(2, 2, 1), fastconv.Conv2d(2, 2, 1))
    with pytest.raises(TypeError, match="MyFast"):
        fastconv.revert(tree)
    fastconv.revert(tree, strict=False)
    assert [type(m) for m in tree] == [MyFast, nn.Conv2d]


def test_a_conv_with_its_own_backend_attribute_is_refused():
    model = nn.Sequential(nn.Conv2d(2, 2, 1))
    model[0].precision = "mine"
    with pytest.raises(TypeError, match="precision"):
        fastconv.convert(model)
    assert model[0].precision == "mine"


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------
def test_a_gradient_step_with_an_optimizer_built_before_the_conversion():
    model, x = build("residual")
    model.train()
    model.conv1.weight.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    fastconv.convert(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = model(x).square().mean()
    loss.backward()
    assert model.conv1.weight.grad is None
    for name in ("conv2.weight", "down.0.weight"):
        g = model.get_parameter(name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    opt.step()
    after = dict(model.named_parameters())
    assert torch.equal(after["conv1.weight"], before["conv1.weight"])
    assert not torch.equal(after["conv2.weight"], before["conv2.weight"])
    model.eval()
    run_checked(model, x)  # the next forward uses the updated weights (no stale packed copy)


# ----------------------------------------------------------------------------------------------------------
# torch.compile and autocast (through fastconv's torch op, fastconv::conv2d; more in tests/test_torch_op.py)
# ----------------------------------------------------------------------------------------------------------
def test_under_torch_compile():
    """The whole converted network compiles as one graph (no graph break) and stays within the layers' bounds."""
    model, x = build("small_net")
    original = copy.deepcopy(model)
    fastconv.convert(model)
    backend = "aot_eager" if DEVICE.type == "cpu" else "inductor"
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            explained = torch._dynamo.explain(model)(x)
            assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
            y = torch.compile(model, backend=backend, fullgraph=True)(x)
    finally:
        torch._dynamo.reset()
    assert_network_close(model, original, x, y=y)


def test_under_autocast():
    """Every converted conv runs in autocast's dtype (layer by layer within the tolerance model of that dtype,
    operands cast as autocast casts them), and the output has the original's dtype."""
    model, x = build("residual")
    original = copy.deepcopy(model)
    fastconv.convert(model)
    dtype = torch.float16 if DEVICE.type == "cuda" else torch.bfloat16
    with torch.no_grad(), torch.autocast(DEVICE.type, dtype=dtype):
        y, _ = run_checked(model, x)
        y_orig = original(x)
    assert y.dtype == y_orig.dtype and y.shape == y_orig.shape
