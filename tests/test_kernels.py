"""Unit tests of the kernel machinery: TF32 rounding, weight packing, the per-signature plan memo,
the tuner's persistence and determinism, and the kernel choice of ``auto``.  Accuracy itself is the property
suite's job (``properties/``); these tests check the parts that could silently reuse stale state."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import fastconv
from fastconv import functional
from fastconv.dispatch import select_kernel
from fastconv.kernels import REGISTRY
from fastconv.kernels.common import packed_weight, round_tf32_torch
from fastconv.kernels.config import KernelConfig
from fastconv.problem import ConvProblem
from fastconv.testing import assert_conv_close, with_layout
from fastconv.tuning import autotuner

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _tensors(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).to(DEVICE) for s in shapes]


# -- TF32 rounding ---------------------------------------------------------------------------------------------
def test_round_tf32_is_round_to_nearest_with_ten_mantissa_bits():
    x = torch.tensor([1.0, 1.0 + 2**-11, 1.0 + 2**-10, 1.0 + 3 * 2**-12, -(1.0 + 3 * 2**-12), 1.0 + 2**-12,
                      float("inf"), 3.0e38])
    y = round_tf32_torch(x)
    # 1 + 2^-11 is a tie: away from zero (cvt.rna); 1 + 3*2^-12 rounds up to 1 + 2^-10; 1 + 2^-12 rounds down
    expected = torch.tensor([1.0, 1.0 + 2**-10, 1.0 + 2**-10, 1.0 + 2**-10, -(1.0 + 2**-10), 1.0,
                             float("inf"), y[-1].item()])
    assert torch.equal(y, expected)
    mantissa = y[:-2].view(torch.int32) & 0x1FFF
    assert torch.all(mantissa == 0), "low 13 mantissa bits must be zero"
    rel = ((y[-1] - x[-1]) / x[-1]).abs().item()
    assert rel <= 2**-11


def test_round_tf32_error_is_unbiased_on_random_data():
    """Rounding to nearest: the mean signed error over many values is far below the truncation bias."""
    x = torch.rand(100_000, generator=torch.Generator().manual_seed(1)) + 0.5
    err = (round_tf32_torch(x) - x) / x
    truncated = ((x.view(torch.int32) & -8192).view(torch.float32) - x) / x
    assert err.abs().max().item() <= 2**-11
    assert abs(err.mean().item()) < 0.05 * abs(truncated.mean().item())


# -- packed weights ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["nchw", "nhwc", "strided"])
@pytest.mark.parametrize("round_to_tf32", [False, True])
def test_packed_weight_is_khwc_and_rounded_when_asked(layout, round_to_tf32):
    (w,) = _tensors((8, 4, 3, 5))
    w = with_layout(w, layout)
    expected = w.permute(0, 2, 3, 1).reshape(8, -1)
    packed = packed_weight(w, round_to_tf32=round_to_tf32)
    assert torch.equal(packed, round_tf32_torch(expected) if round_to_tf32 else expected)
    assert packed.stride(1) == 1
    # a channels_last weight already is in the packed layout: no copy unless it must be rounded
    assert (packed.data_ptr() == w.data_ptr()) == (layout == "nhwc" and not round_to_tf32)


def test_conv_sees_weight_updates_through_data_and_in_place_and_swaps():
    """``weight.data`` writes bump no version counter (EMA updates, gradcheck): a cache keyed on the weight
    served the old packed weight; packing every call sees every kind of update."""
    x, w = _tensors((1, 8, 6, 7), (8, 8, 3, 3))
    conv = fastconv.Conv2d(8, 8, 3, padding=1, bias=False).to(DEVICE)
    prec = fastconv.resolve_precision("float32", None, x.device)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv(x)
        conv.weight.data.mul_(-0.5)  # no _version bump
        assert_conv_close(conv(x), x, conv.weight.detach(), None, 1, 1, precision=prec)
        conv.weight.add_(1.0)  # in place: a new _version
        assert_conv_close(conv(x), x, conv.weight.detach(), None, 1, 1, precision=prec)
        conv.weight.data = torch.zeros_like(conv.weight.data)  # other storage
        assert torch.count_nonzero(conv(x)) == 0


def test_conv_after_an_in_place_weight_update_uses_the_new_weight():
    x, w = _tensors((1, 16, 6, 7), (8, 16, 3, 3))
    conv = fastconv.Conv2d(16, 8, 3, padding=1, bias=False).to(DEVICE)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv(x)
        conv.weight.add_(1.0)
        y = conv(x)
    prec = fastconv.resolve_precision("float32", None, x.device)
    assert_conv_close(y, x, conv.weight.detach(), None, 1, 1, precision=prec)


# -- plan memo -------------------------------------------------------------------------------------------------
def test_plan_memo_keys_on_everything_validation_depends_on():
    x, w = _tensors((1, 4, 6, 6), (4, 4, 3, 3))
    functional._PLANS.clear()
    fastconv.conv2d(x, w, padding=(1, 1))
    fastconv.conv2d(x, w, padding=(1, 1))
    assert len(functional._PLANS) == 1
    fastconv.conv2d(x, w, padding=[1, 1])  # a list hashes as a tuple: same plan
    assert len(functional._PLANS) == 1
    fastconv.conv2d(x.to(memory_format=torch.channels_last), w, padding=(1, 1))  # other strides: new plan
    assert len(functional._PLANS) == 2
    with pytest.raises(RuntimeError, match="non-positive stride"):  # a memoised good call never hides a bad one
        fastconv.conv2d(x, w, padding=1, stride=0)


def test_plan_follows_the_tf32_flag():
    """On CUDA the flag switches the default arithmetic, memo or not; on the CPU the default stays exact fp32
    (torch's CPU convolution ignores the flag), and TF32 is there only when asked for."""
    x, w = _tensors((1, 4, 6, 6), (4, 4, 3, 3))
    torch.backends.cudnn.allow_tf32 = True
    y_on = fastconv.conv2d(x, w)
    torch.backends.cudnn.allow_tf32 = False
    y_off = fastconv.conv2d(x, w)
    y_tf32 = fastconv.conv2d(x, w, precision="tf32")
    ref = F.conv2d(x.double(), w.double())
    err = lambda y: ((y.double() - ref).norm() / ref.norm()).item()  # noqa: E731
    assert err(y_off) < 1e-6 < err(y_tf32), "explicit TF32 must round, memo or not"
    if DEVICE == "cuda":
        assert err(y_on) > 1e-6, "on CUDA the flag must switch the arithmetic, memo or not"
    else:
        assert err(y_on) < 1e-6, "on the CPU the default is exact fp32 whatever the flag says, as torch's"


# -- tuner -----------------------------------------------------------------------------------------------------
def test_tuner_is_deterministic_without_a_gpu_and_honours_forced_configs():
    if DEVICE == "cuda":
        pytest.skip("timed tuning on a GPU")
    p = ConvProblem.make(1, 16, 16, 8, 8, 3, padding=1)
    kernel = REGISTRY["igemm"]
    configs = kernel.configs(p, "tf32")
    calls = []
    chosen = autotuner.choose_config(kernel, p, "tf32", "nchw", calls.append, torch.device("cpu"))
    assert chosen == (configs[0], "default") and not calls, "no timing without a GPU"
    with autotuner.forced_config("igemm", configs[-1]):
        forced = autotuner.choose_config(kernel, p, "tf32", "nchw", calls.append, torch.device("cpu"))
        assert forced == (configs[-1], "forced")


def test_tuned_choices_persist_across_processes(tmp_path, monkeypatch):
    """What a process saves, a new process (a cleared memory cache) loads instead of timing again."""
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    device = torch.device("cpu")
    path = autotuner.cache_path(device)
    cfg = KernelConfig.of(num_warps=8, num_stages=3, BLOCK_M=128, BLOCK_N=64, BLOCK_K=32, PREP=1)
    p = ConvProblem.make(2, 16, 32, 8, 8, 3)
    key = autotuner._key_str("igemm", p, "tf32", "nchw")
    autotuner._save_disk(path, key, cfg)
    autotuner.clear_cache()
    autotuner._load_disk(path)
    assert autotuner._MEMORY[(str(path), key)] == (cfg, "disk")
    assert KernelConfig.from_json(json.loads(path.read_text())[key]) == cfg
    autotuner.clear_cache()


# -- kernel choice ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("problem, expected", [
    (ConvProblem.make(2, 16, 32, 8, 8, 1), "pointwise"),
    (ConvProblem.make(2, 16, 32, 8, 8, 1, stride=2), "igemm"),
    (ConvProblem.make(2, 16, 16, 8, 8, 3, groups=16), "depthwise"),
    (ConvProblem.make(2, 16, 32, 8, 8, 3, groups=4), "depthwise"),
    (ConvProblem.make(2, 64, 64, 8, 8, 3, groups=4), "igemm"),
    (ConvProblem.make(2, 3, 64, 8, 8, 7, stride=2, padding=3), "igemm"),
])
def test_auto_picks_the_dedicated_path(problem, expected):
    assert select_kernel(problem, "tf32", "auto").name == expected


def test_huge_samples_leave_the_32_bit_in_sample_kernels():
    p = ConvProblem.make(1, 64, 64, 8192, 4097, 3)  # 64*8192*4097 > 2**31 elements in one sample
    assert not REGISTRY["igemm"].supports(p, "tf32")
    assert select_kernel(p, "tf32", "auto").name == "direct"


# -- repeated calls of one plan: the launch fast path -------------------------------------------------------
@pytest.mark.parametrize("backend, x_shape, w_shape, kwargs", [
    ("igemm", (2, 8, 9, 10), (16, 8, 3, 3), dict(padding=1)),
    ("igemm", (2, 4, 9, 10), (8, 4, 3, 5), dict(stride=2, dilation=(1, 2))),
    ("pointwise", (2, 16, 6, 7), (8, 16, 1, 1), {}),
    ("depthwise", (2, 8, 9, 10), (8, 1, 3, 3), dict(padding=1, groups=8)),
])
def test_repeated_calls_of_one_plan_stay_right_on_new_and_misaligned_inputs(monkeypatch, backend, x_shape,
                                                                            w_shape, kwargs):
    """Every call after a plan's first reuses its binary with new tensors (on a GPU; the interpreter has
    none), except a tensor aligned differently, which gets Triton's own binary: all answers must be right."""
    from fastconv.kernels.launch import FastLaunch

    sites = []
    init = FastLaunch.__init__

    def recording_init(self, *a, **k):
        init(self, *a, **k)
        sites.append(self)

    monkeypatch.setattr(FastLaunch, "__init__", recording_init)
    functional._PLANS.clear()
    w, b = _tensors(w_shape, (w_shape[0],), seed=5)
    numel = torch.Size(x_shape).numel()
    for i in range(4):
        x = _tensors(x_shape, seed=10 + i)[0]
        if i == 2:  # same shape and strides (same plan), data 4 bytes past a 16-byte boundary
            x = torch.empty(numel + 1, device=DEVICE)[1:].view(x_shape).copy_(x)
            assert x.data_ptr() % 16 != 0
        y = fastconv.conv2d(x, w, b, backend=backend, **kwargs)
        assert_conv_close(y, x, w, b, **kwargs)
    if DEVICE == "cuda":
        assert any(s.fast_launches >= 2 for s in sites), [(s.launches, s.fast_launches) for s in sites]
