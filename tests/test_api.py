"""The public API: names, backend and precision selection, autograd, and where kernels can run."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

import fastconv
from fastconv import functional
from fastconv.dispatch import AUTO_ORDER, select_kernel
from fastconv.kernels import REGISTRY
from fastconv.precision import FLOAT32_PRECISIONS
from fastconv.problem import ConvProblem
from fastconv.testing import assert_conv_close, poisoned_allocations

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _inputs(n=2, c_in=3, c_out=4, h=6, w=5, k=3, bias=True, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, h, w, generator=g).to(DEVICE, dtype)
    wt = torch.randn(c_out, c_in, k, k, generator=g).to(DEVICE, dtype)
    b = torch.randn(c_out, generator=g).to(DEVICE, dtype) if bias else None
    return x, wt, b


@contextmanager
def launches():
    """Record the name of every kernel launched inside the block (plans memoised before it are dropped, so
    every launcher is built, and spied on, inside)."""
    seen: list[str] = []
    originals = {name: k.make_launcher for name, k in REGISTRY.items()}

    def spy(name, make):
        def make_launcher(*args, **kwargs):
            launch = make(*args, **kwargs)

            def spied(*a, **kw):
                seen.append(name)
                return launch(*a, **kw)
            return spied
        return make_launcher

    functional._PLANS.clear()
    try:
        for name, k in REGISTRY.items():
            k.make_launcher = spy(name, originals[name])
        yield seen
    finally:
        for name, k in REGISTRY.items():
            k.make_launcher = originals[name]
        functional._PLANS.clear()


# ----------------------------------------------------------------------------------------------------------
def test_public_names():
    for name in ("conv2d", "Conv2d", "ModelNew", "use_backend", "get_backend", "available_backends",
                 "resolve_precision", "ConvProblem"):
        assert name in fastconv.__all__ and hasattr(fastconv, name)
    import fastconv.testing as T

    for name in ("reference_conv2d", "error_model", "ERROR_MODELS", "assert_conv_close", "check_conv",
                 "ConvCase", "run_case", "poisoned_allocations"):
        assert name in T.__all__ and hasattr(T, name)
    assert "direct" in REGISTRY and set(fastconv.available_backends()) == {"auto", *REGISTRY}
    assert set(AUTO_ORDER) <= set(REGISTRY)


def test_conv2d_matches_torch_for_every_backend():
    x, w, b = _inputs()
    for backend in fastconv.available_backends():
        p = ConvProblem.make(2, 3, 4, 6, 5, 3, padding=1, has_bias=True)
        if backend != "auto" and not REGISTRY[backend].supports(p, fastconv.resolve_precision("float32", None,
                                                                                               DEVICE)):
            with pytest.raises(NotImplementedError, match=backend):
                fastconv.conv2d(x, w, b, padding=1, backend=backend)
            continue
        y = fastconv.conv2d(x, w, b, padding=1, backend=backend)
        assert_conv_close(y, x, w, b, padding=1)


# ----------------------------------------------------------------------------------------------------------
def test_backend_keyword_and_context_manager_choose_the_kernel():
    x, w, b = _inputs()

    def kernels(seen):  # on a GPU the tuner may launch a kernel several times (one per candidate config)
        return [name for name, _ in itertools.groupby(seen)]

    with launches() as seen:
        fastconv.conv2d(x, w, b, backend="direct")
    assert kernels(seen) == ["direct"]
    with launches() as seen, fastconv.use_backend("direct"):
        assert fastconv.get_backend() == "direct"
        fastconv.conv2d(x, w, b)
        fastconv.conv2d(x, w, b, backend="igemm")  # the keyword wins over the block
    assert kernels(seen) == ["direct", "igemm"]
    with launches() as seen:
        fastconv.conv2d(x, w, b)
    p = ConvProblem.make(2, 3, 4, 6, 5, 3, has_bias=True)
    assert kernels(seen) == [select_kernel(p, fastconv.resolve_precision("float32", None, DEVICE), "auto").name]


def test_use_backend_restores_state_even_on_errors():
    assert fastconv.get_backend() == "auto"
    with fastconv.use_backend("direct", precision="ieee"):
        with fastconv.use_backend("igemm"):
            assert fastconv.get_backend() == "igemm"
            assert fastconv.resolve_precision("float32", None) == "ieee"  # the outer precision holds
        assert fastconv.get_backend() == "direct"
        with pytest.raises(RuntimeError), fastconv.use_backend("igemm", precision="tf32x3"):
            raise RuntimeError("boom")
        assert (fastconv.get_backend(), fastconv.resolve_precision("float32", None)) == ("direct", "ieee")
    assert fastconv.get_backend() == "auto"


def test_backend_from_the_environment(monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "direct")
    assert fastconv.get_backend() == "direct"
    with fastconv.use_backend("igemm"):
        assert fastconv.get_backend() == "igemm"
    monkeypatch.setenv("FASTCONV_BACKEND", "nope")
    with pytest.raises(ValueError, match="nope"):
        fastconv.get_backend()


@pytest.mark.parametrize("bad", ["nope", "Direct", ""])
def test_unknown_backends_raise(bad):
    x, w, b = _inputs()
    with pytest.raises(ValueError, match="backend"):
        fastconv.conv2d(x, w, b, backend=bad)
    with pytest.raises(ValueError), fastconv.use_backend(bad):
        pass


# ----------------------------------------------------------------------------------------------------------
def test_precision_follows_cudnn_allow_tf32_on_cuda_and_is_ieee_on_cpu():
    """torch's CPU convolution computes exact fp32 whatever the flag says; on CUDA the flag decides."""
    torch.backends.cudnn.allow_tf32 = True  # conftest's autouse fixture restores the flag
    assert fastconv.resolve_precision("float32", None) == "tf32"  # no device: the CUDA rule
    assert fastconv.resolve_precision("float32", None, "cuda") == "tf32"
    assert fastconv.resolve_precision("float32", None, torch.device("cuda", 1)) == "tf32"
    assert fastconv.resolve_precision("float32", None, "cpu") == "ieee"
    torch.backends.cudnn.allow_tf32 = False
    assert fastconv.resolve_precision("float32", None) == "ieee"
    assert fastconv.resolve_precision("float32", None, "cuda") == "ieee"
    assert fastconv.resolve_precision("float32", None, torch.device("cpu")) == "ieee"
    with fastconv.use_backend(precision="tf32"):  # an explicit precision wins on every device
        assert fastconv.resolve_precision("float32", None, "cpu") == "tf32"
    for dt in ("float16", "bfloat16"):
        assert fastconv.resolve_precision(dt, None) == "native"
    for p in FLOAT32_PRECISIONS:
        assert fastconv.resolve_precision("float32", p) == p


def test_default_precision_follows_torch_per_device_and_per_call():
    """float32 defaults to what torch computes on the tensor's device: exact on the CPU; on CUDA what cuDNN
    may use, read per call (no stale memoised precision), under either of torch's flag APIs."""
    x, w, b = _inputs()
    torch.backends.cudnn.allow_tf32 = False
    assert fastconv.resolve_precision("float32", None, "cuda") == "ieee"
    y_off = fastconv.conv2d(x, w, b, backend="igemm")
    torch.backends.cudnn.allow_tf32 = True
    assert fastconv.resolve_precision("float32", None, "cuda") == "tf32"
    assert fastconv.resolve_precision("float32", None, "cpu") == "ieee"
    y_on = fastconv.conv2d(x, w, b, backend="igemm")
    assert torch.equal(y_off, fastconv.conv2d(x, w, b, backend="igemm", precision="ieee"))
    assert torch.equal(y_on, fastconv.conv2d(x, w, b, backend="igemm", precision="tf32" if x.is_cuda else "ieee"))
    # the explicit TF32 path really rounds (covered on the CPU too)
    assert not torch.equal(y_off, fastconv.conv2d(x, w, b, backend="igemm", precision="tf32"))
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # the newer API; mixing must not raise
        conv.fp32_precision = "ieee"
        assert fastconv.resolve_precision("float32", None, "cuda") == "ieee"
        conv.fp32_precision = "tf32"
        assert fastconv.resolve_precision("float32", None, "cuda") == "tf32"


@pytest.mark.parametrize("dtype, precision", [(torch.float32, "native"), (torch.float32, "fp16"),
                                              (torch.float16, "tf32"), (torch.bfloat16, "ieee")])
def test_precision_mismatches_raise(dtype, precision):
    x, w, b = _inputs(dtype=dtype)
    with pytest.raises(ValueError, match="precision"):
        fastconv.conv2d(x, w, b, precision=precision)


# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("needs", [(True, True, True), (True, False, False), (False, True, True), (False, False, True)])
def test_gradients_equal_torch(needs):
    torch.backends.cudnn.deterministic = True  # bit-equal gradients need the same algorithms (flag restored)
    x, w, b = _inputs(seed=1)
    leaves = [t.clone().requires_grad_(r) for t, r in zip((x, w, b), needs)]
    ref = [t.clone().requires_grad_(r) for t, r in zip((x, w, b), needs)]
    y = fastconv.conv2d(*leaves, stride=(2, 1), padding=1, dilation=(1, 2))
    y_ref = F.conv2d(*ref, stride=(2, 1), padding=1, dilation=(1, 2))
    assert_conv_close(y.detach(), x, w, b, stride=(2, 1), padding=1, dilation=(1, 2))
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    y.backward(g)
    y_ref.backward(g)
    for t, r in zip(leaves, ref):
        assert (t.grad is None) == (r.grad is None)
        if t.grad is not None:
            assert torch.equal(t.grad, r.grad)  # the backward is torch's own: bit-identical


def test_no_grad_and_inference_mode_give_plain_tensors():
    x, w, b = _inputs()
    w.requires_grad_(True)
    with torch.no_grad():
        assert fastconv.conv2d(x, w, b).grad_fn is None
    with torch.inference_mode():
        assert not fastconv.conv2d(x, w, b).requires_grad


# ----------------------------------------------------------------------------------------------------------
def test_shapes_unbatched_and_empty():
    x, w, b = _inputs()
    assert fastconv.conv2d(x[0], w, b, padding=1).shape == (4, 6, 5)
    with poisoned_allocations():
        y = fastconv.conv2d(x[:0], w, b, padding="same")
    assert y.shape == (0, 4, 6, 5) and y.dtype == x.dtype


def test_output_memory_format_follows_torch():
    x, w, b = _inputs()
    cl = torch.channels_last
    for xi, wi in [(x, w), (x.to(memory_format=cl), w), (x, w.to(memory_format=cl))]:
        y, ref = fastconv.conv2d(xi, wi, b), F.conv2d(xi, wi, b)
        assert y.stride() == ref.stride() and y.is_contiguous(memory_format=cl) == ref.is_contiguous(memory_format=cl)


def test_cpu_tensors_without_the_interpreter_get_a_clear_error():
    """Run in a fresh interpreter with TRITON_INTERPRET unset (it is read when kernels are defined)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import torch, fastconv\n"
            "try:\n"
            "    fastconv.conv2d(torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3))\n"
            "except RuntimeError as e:\n"
            "    print('RAISED', e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("RAISED"), out.stdout + out.stderr
    assert "TRITON_INTERPRET=1" in out.stdout and "CUDA" in out.stdout


@pytest.mark.parametrize("kwargs", [dict(padding="same", dilation=(1, 3)), dict(padding=(0, 2), groups=2)])
def test_gradients_equal_torch_for_same_padding_and_groups(kwargs):
    """Asymmetric "same" padding (even kernel extent) and groups go through the same gradient kernel."""
    torch.backends.cudnn.deterministic = True
    g0 = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 7, 9, generator=g0).to(DEVICE)
    w = torch.randn(6, 4 // kwargs.get("groups", 1), 2, 4, generator=g0).to(DEVICE)
    b = torch.randn(6, generator=g0).to(DEVICE)
    ours = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = [t.clone().requires_grad_() for t in (x, w, b)]
    y, y_ref = fastconv.conv2d(*ours, **kwargs), F.conv2d(*ref, **kwargs)
    assert y.shape == y_ref.shape
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    y.backward(g)
    y_ref.backward(g)
    for t, r in zip(ours, ref):
        assert torch.equal(t.grad, r.grad)
