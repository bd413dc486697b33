"""fastconv.Conv2d as a drop-in for nn.Conv2d, and ModelNew against KernelBench's reference Model."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fastconv
from fastconv.testing import assert_conv_close

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

CONFIGS = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
         groups=2, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding="same", groups=4),
    dict(in_channels=2, out_channels=3, kernel_size=(5, 9), padding=(2, 4), dilation=(2, 3)),
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_parameters_equal_nn_conv2d_bit_for_bit(kwargs):
    torch.manual_seed(0)
    ref = nn.Conv2d(**kwargs)
    after_ref = torch.rand(1)
    torch.manual_seed(0)
    ours = fastconv.Conv2d(**kwargs)
    after_ours = torch.rand(1)
    assert isinstance(ours, nn.Conv2d)
    for (name, a), (name_b, b) in zip(ref.named_parameters(), ours.named_parameters(), strict=True):
        assert name == name_b and torch.equal(a, b), name
    assert torch.equal(after_ref, after_ours)  # the same RNG draws: what is built next matches too


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_state_dicts_load_both_ways(kwargs):
    ref, ours = nn.Conv2d(**kwargs), fastconv.Conv2d(**kwargs)
    assert list(ref.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), ours.state_dict().values()))
    ref2 = nn.Conv2d(**kwargs)
    ref2.load_state_dict(ours.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ref2.state_dict().values(), ours.state_dict().values()))


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_forward_matches_the_reference(kwargs):
    torch.manual_seed(1)
    m = fastconv.Conv2d(**kwargs).to(DEVICE)
    x = torch.randn(2, kwargs["in_channels"], 9, 20, device=DEVICE)
    with torch.no_grad():
        y = m(x)
    assert y.shape == nn.Conv2d(**kwargs).to(DEVICE)(x).shape
    assert_conv_close(y, x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes(mode):
    torch.manual_seed(2)
    m = fastconv.Conv2d(3, 4, 3, padding=(1, 2), padding_mode=mode).to(DEVICE)
    ref = nn.Conv2d(3, 4, 3, padding=(1, 2), padding_mode=mode).to(DEVICE)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 6, 7, device=DEVICE)
    with torch.no_grad():
        y, y_ref = m(x), ref(x)
    assert y.shape == y_ref.shape
    padded = F.pad(x, m._reversed_padding_repeated_twice, mode=mode)
    assert_conv_close(y, padded, m.weight, m.bias, m.stride, 0, m.dilation, m.groups)


def test_module_gradients_equal_nn_conv2d():
    torch.backends.cudnn.deterministic = True  # bit-equal gradients need the same algorithms (flag restored)
    torch.manual_seed(3)
    m = fastconv.Conv2d(3, 4, 3, padding=1).to(DEVICE)
    ref = nn.Conv2d(3, 4, 3, padding=1).to(DEVICE)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 5, 5, device=DEVICE)
    g = torch.randn(2, 4, 5, 5, device=DEVICE)
    m(x).backward(g)
    ref(x).backward(g)
    assert torch.equal(m.weight.grad, ref.weight.grad) and torch.equal(m.bias.grad, ref.bias.grad)


def test_backend_and_precision_keywords():
    m = fastconv.Conv2d(3, 4, 3, backend="direct", precision="ieee")
    assert "backend='direct'" in repr(m) and "precision='ieee'" in repr(m)
    with pytest.raises(ValueError, match="backend"):
        fastconv.Conv2d(3, 4, 3, backend="nope").to(DEVICE)(torch.randn(1, 3, 5, 5, device=DEVICE))


# ----------------------------------------------------------------------------------------------------------
# KernelBench: level 1 #80 and its reference Model, as the benchmark defines them
# ----------------------------------------------------------------------------------------------------------
class Model(nn.Module):
    """KernelBench's reference model: holds ``self.conv2d = nn.Conv2d(...)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple, stride: int = 1,
                 padding: tuple = (0, 0), dilation: tuple = (1, 1), bias: bool = False):
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                dilation=dilation, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(x)


SEED_INIT = (32, 64, (5, 9), 1, (2, 4), (2, 3))  # get_init_inputs() of KernelBench level 1 #80


@pytest.mark.parametrize("init", [SEED_INIT, (*SEED_INIT, True), (3, 8, (3, 3), 2, (1, 1), (1, 1), True)])
def test_model_new_equals_kernelbench_model_under_the_same_seed(init):
    torch.manual_seed(42)
    ref = Model(*init)
    torch.manual_seed(42)
    new = fastconv.ModelNew(*init)
    assert list(ref.state_dict()) == list(new.state_dict())
    for a, b in zip(ref.state_dict().values(), new.state_dict().values()):
        assert torch.equal(a, b)
    ref.load_state_dict(new.state_dict())  # both ways
    new.load_state_dict(ref.state_dict())


def test_model_new_forward_on_the_seed_problem_at_reduced_size():
    """KernelBench feeds torch.rand inputs; the seed's 8x32x512x512 is cut to 1x32x12x24 (output 8x8)."""
    torch.manual_seed(42)
    new = fastconv.ModelNew(*SEED_INIT).to(DEVICE)
    torch.manual_seed(42)
    ref = Model(*SEED_INIT).to(DEVICE)
    x = torch.rand(1, 32, 12, 24, device=DEVICE)
    with torch.no_grad():
        y = new(x)
        y_ref = ref(x)
    assert y.shape == y_ref.shape == (1, 64, 8, 8)
    c = new.conv2d
    chk = assert_conv_close(y, x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
    assert chk.passed
    assert torch.allclose(y, y_ref, atol=1e-2, rtol=1e-2)  # KernelBench v0.1's own check, against torch
