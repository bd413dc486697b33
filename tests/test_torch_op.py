"""fastconv as a PyTorch operator (``torch.ops.fastconv.conv2d``, :mod:`fastconv.ops`): opcheck, the fake
implementation's checks, torch.compile with no graph break, torch.export, autocast, autograd, and the eager path
that a plain call keeps.

Tiny shapes: on a CPU every convolution runs in Triton's interpreter.  Compiling uses the ``aot_eager`` backend
on a CPU (AOT autograd's traced forward and backward, run eagerly: what Inductor would get, without C++).
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_convert import assert_network_close, build, convs, run_checked  # the networks and their checks
from torch._dynamo.testing import CompileCounterWithBackend
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import fastconv
from fastconv import functional, ops
from fastconv.testing import assert_conv_close, graph_replay, layout_mismatch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
OP = torch.ops.fastconv.conv2d.default
BACKEND = "aot_eager" if DEVICE.type == "cpu" else "inductor"


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Compiled code and Dynamo's caches do not leak between tests."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _t(shape, dtype=torch.float32, channels_last=False, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(grad)


def graph_breaks(fn, *args) -> tuple[int, int, list]:
    """(graphs, graph breaks, reasons) of Dynamo tracing ``fn(*args)``."""
    torch._dynamo.reset()
    ex = torch._dynamo.explain(fn)(*args)
    return ex.graph_count, ex.graph_break_count, ex.break_reasons


class OpsSeen(TorchDispatchMode):
    """A dispatch mode that records every operator and runs it unchanged (a mode in force sends
    ``fastconv.conv2d`` through the op)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.append(func)
        return func(*args, **(kwargs or {}))


# ----------------------------------------------------------------------------------------------------------
# The op: schema and torch.library.opcheck
# ----------------------------------------------------------------------------------------------------------
def test_schema():
    assert str(OP._schema) == (
        "fastconv::conv2d(Tensor input, Tensor weight, Tensor? bias, SymInt[2] stride, SymInt[4] padding, "
        "SymInt[2] dilation, int groups, str? backend, str? precision) -> Tensor")


# name -> (input shape, weight shape, bias, stride, padding (top, left, bottom, right), dilation, groups,
#          dtype, input channels_last, weight channels_last)
OPCHECK_CASES = {
    "bias": ((2, 4, 5, 5), (6, 4, 3, 3), True, (1, 1), (1, 1, 1, 1), (1, 1), 1, torch.float32, False, False),
    "groups_same_asymmetric": ((1, 4, 6, 5), (4, 2, 2, 3), False, (1, 1), (0, 1, 1, 1), (1, 1), 2, torch.float32,
                               False, False),
    "stride_dilation_channels_last": ((2, 4, 7, 7), (4, 4, 3, 3), False, (2, 1), (1, 0, 1, 0), (1, 2), 1,
                                      torch.float32, True, False),
    "channels_last_weight_batch1": ((1, 3, 5, 4), (4, 3, 3, 3), True, (1, 1), (0, 0, 0, 0), (1, 1), 1,
                                    torch.float32, False, True),
    "depthwise": ((1, 4, 5, 5), (4, 1, 3, 3), True, (1, 1), (1, 1, 1, 1), (1, 1), 4, torch.float32, False, False),
    "float64_same_even": ((1, 2, 5, 5), (3, 2, 4, 2), True, (1, 1), (1, 0, 2, 1), (1, 1), 1, torch.float64, False,
                          False),
}


def _op_args(case, grad):
    x_shape, w_shape, bias, stride, padding, dilation, groups, dtype, x_cl, w_cl = OPCHECK_CASES[case]
    x = _t(x_shape, dtype, x_cl, seed=1, grad=grad)
    w = _t(w_shape, dtype, w_cl, seed=2, grad=grad)
    b = _t((w_shape[0],), dtype, seed=3, grad=grad) if bias else None
    return (x, w, b, list(stride), list(padding), list(dilation), groups, None, None)


@pytest.mark.parametrize("case", sorted(OPCHECK_CASES))
def test_opcheck(case):
    """schema, autograd registration, fake tensor (shapes, dtype, strides: torch's memory format) and
    aot_dispatch_dynamic (symbolic shapes, forward and backward)."""
    for grad in (True, False) if case == "bias" else (True,):
        result = torch.library.opcheck(OP, _op_args(case, grad))
        assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("case", sorted(OPCHECK_CASES))
def test_op_matches_torch_in_value_and_layout(case):
    x, w, b, stride, padding, dilation, groups, *_ = _op_args(case, False)
    y = OP(x, w, b, stride, padding, dilation, groups, None, None)
    (ph, pw, ph_end, pw_end) = padding
    torch_padding = (ph, pw) if (ph, pw) == (ph_end, pw_end) else "same"
    assert_conv_close(y, x, w, b, stride, torch_padding, dilation, groups)
    assert layout_mismatch(y, F.conv2d(x, w, b, stride, torch_padding, dilation, groups)) is None


# Arguments the op refuses, in its fake implementation (tracing) as in its real one, with torch's types.
# name -> (changes to the "bias" case's arguments, exception type)
BAD = {
    "channels": (dict(x=(2, 3, 5, 5)), RuntimeError),
    "groups_do_not_divide": (dict(groups=4, w=(6, 1, 3, 3)), RuntimeError),
    "zero_stride": (dict(stride=[0, 1]), RuntimeError),
    "kernel_larger_than_input": (dict(w=(6, 4, 9, 9), padding=[0, 0, 0, 0]), RuntimeError),
    "asymmetric_not_same": (dict(padding=[0, 0, 1, 1]), RuntimeError),
    "three_paddings": (dict(padding=[1, 1, 1]), RuntimeError),
    "unbatched": (dict(x=(4, 5, 5)), RuntimeError),
    "weight_dtype": (dict(w_dtype=torch.float64), RuntimeError),
    "integer_input": (dict(dtype=torch.int32), NotImplementedError),
    "unknown_backend": (dict(backend="nope"), ValueError),
    "precision_for_float64": (dict(dtype=torch.float64, precision="tf32"), ValueError),
    "unknown_precision": (dict(precision="fp8"), ValueError),
}


def _bad_args(changes):
    x, w, b, stride, padding, dilation, groups, backend, precision = _op_args("bias", False)
    dtype = changes.get("dtype", torch.float32)
    as_dtype = lambda t: t.to(dtype) if dtype.is_floating_point else (t * 4).to(dtype)
    x = as_dtype(_t(changes["x"]) if "x" in changes else x)
    w = as_dtype(_t(changes["w"]) if "w" in changes else w).to(changes.get("w_dtype", dtype))
    b = as_dtype(b)
    return (x, w, b, changes.get("stride", stride), changes.get("padding", padding), dilation,
            changes.get("groups", groups), changes.get("backend", backend), changes.get("precision", precision))


@pytest.mark.parametrize("name", sorted(BAD))
def test_fake_and_real_implementations_refuse_bad_arguments_alike(name):
    changes, exc = BAD[name]
    args = _bad_args(changes)
    with pytest.raises(exc) as real:
        OP(*args)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        with pytest.raises(exc) as traced:
            OP(*fake)
    assert type(traced.value) is type(real.value), (traced.value, real.value)


def test_fake_implementation_handles_symbolic_shapes():
    """make_fx with symbolic shapes: the paddings of "same" become expressions of the weight's size, and the
    traced graph computes what the eager call does for other sizes too."""
    from torch.fx.experimental.proxy_tensor import make_fx

    f = lambda x, w: fastconv.conv2d(x, w, None, 1, "same", (2, 1))
    gm = make_fx(f, tracing_mode="symbolic")(_t((2, 3, 6, 5)), _t((4, 3, 2, 3)))
    assert [n.target for n in gm.graph.nodes if n.op == "call_function"].count(OP) == 1
    x, w = _t((1, 3, 7, 8), seed=5), _t((4, 3, 4, 3), seed=6)
    assert torch.equal(gm(x, w), f(x, w))


# ----------------------------------------------------------------------------------------------------------
# The eager path is kept, and both paths compute the same thing
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture
def op_calls(monkeypatch):
    """Count the calls that ``fastconv.conv2d`` sends through the op."""
    calls = []

    def counting(*args):
        calls.append(args)
        return OP(*args)

    monkeypatch.setattr(ops, "_OP", counting)
    return calls


def test_a_plain_eager_call_keeps_the_memoised_plan_and_never_touches_the_op(op_calls):
    x, w, b = _t((2, 4, 5, 5)), nn.Parameter(_t((6, 4, 3, 3))), nn.Parameter(_t((6,)))
    functional._PLANS.clear()
    try:
        y1 = fastconv.conv2d(x, w, b, padding=1)
        plan = fastconv.plan(x, w, b, padding=1)
        y2 = fastconv.conv2d(x, w, b, padding=1)
        assert plan.cached and len(functional._PLANS) == 1
        (memo,) = functional._PLANS.values()
        assert memo.launch is not None  # the launcher bound once, reused by the second call
        m = fastconv.Conv2d(4, 6, 3, padding=1).to(DEVICE)
        m(x).sum().backward()  # a module, with autograd: eager too
        assert torch.equal(y1, y2) and op_calls == []
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            fastconv.conv2d(x, w, b, padding=1)
        with OpsSeen():
            fastconv.conv2d(x, w, b, padding=1)
        assert len(op_calls) == 2
    finally:
        functional._PLANS.clear()


# name -> (input shape, weight shape, bias, conv arguments, input channels_last)
PATHS = {
    "plain": ((2, 4, 5, 5), (6, 4, 3, 3), True, dict(padding=1), False),
    "unbatched": ((4, 5, 5), (6, 4, 3, 3), True, dict(stride=2), False),
    "same_even_dilated": ((1, 4, 6, 6), (4, 2, 2, 2), False, dict(padding="same", dilation=2, groups=2), False),
    "channels_last": ((2, 4, 6, 5), (4, 4, 1, 1), True, dict(stride=(1, 2)), True),
}


@pytest.mark.parametrize("name", sorted(PATHS))
def test_the_eager_path_and_the_op_compute_the_same_thing(name, op_calls):
    x_shape, w_shape, bias, kwargs, cl = PATHS[name]
    torch.backends.cudnn.deterministic = True  # bit-equal gradients need the same algorithms (flag restored)
    leaves = [_t(x_shape, channels_last=cl, grad=True), _t(w_shape, seed=1, grad=True)]
    if bias:
        leaves.append(_t((w_shape[0],), seed=2, grad=True))
    results = []
    for through_op in (False, True):
        xs = [t.detach().clone().requires_grad_() for t in leaves]
        mode = OpsSeen() if through_op else contextlib.nullcontext()
        with mode:
            y = fastconv.conv2d(*xs, **kwargs)
        assert (OP in mode.seen) if through_op else True
        y.backward(_t(y.shape, seed=3))
        results.append((y.detach(), [t.grad for t in xs]))
    assert len(op_calls) == 1
    (y_eager, g_eager), (y_op, g_op) = results
    assert torch.equal(y_eager, y_op) and y_eager.stride() == y_op.stride()
    assert all(torch.equal(a, b) for a, b in zip(g_eager, g_op))
    expected = F.conv2d(*[t.detach() for t in leaves], **kwargs)
    assert y_op.shape == expected.shape and layout_mismatch(y_op, expected) is None


# ----------------------------------------------------------------------------------------------------------
# Autograd through the op
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["float64_same_even", "stride_dilation_channels_last"])
def test_gradcheck_in_float64(case):
    x, w, b, stride, padding, dilation, groups, *_ = _op_args(case, True)
    x, w = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    b = None if b is None else b.detach().double().requires_grad_()
    # gradcheck perturbs the weight in place through `.data` (no version bump): every call must see it
    f = lambda x, w, b: OP(x, w, b, stride, padding, dilation, groups, None, None)
    # The backward is torch's convolution backward: on CUDA cuDNN's may accumulate in a varying order, and
    # torch's own conv2d OpInfo allows the same 1e-12 (GRADCHECK_NONDET_TOL) for it.
    assert torch.autograd.gradcheck(f, (x, w, b), fast_mode=True, nondet_tol=1e-12 if x.is_cuda else 0.0)


# ----------------------------------------------------------------------------------------------------------
# torch.compile: one graph, no break
# ----------------------------------------------------------------------------------------------------------
def user_code(x, w, b):
    """fastconv.conv2d called from user code, between other ops."""
    return F.relu(fastconv.conv2d(x * 2, w, b, 1, "same", (2, 1))) + 1


@pytest.mark.parametrize("unbatched", [False, True])
def test_compile_user_code_without_graph_breaks(unbatched):
    x = _t((4, 6, 5) if unbatched else (2, 4, 6, 5))
    w, b = _t((3, 4, 2, 3), seed=1), _t((3,), seed=2)
    graphs, breaks, reasons = graph_breaks(user_code, x, w, b)
    assert (graphs, breaks) == (1, 0), reasons
    y = torch.compile(user_code, fullgraph=True, backend=BACKEND)(x, w, b)
    conv = fastconv.conv2d(x * 2, w, b, 1, "same", (2, 1))
    assert_conv_close(conv, x * 2, w, b, 1, "same", (2, 1))
    assert torch.equal(y, F.relu(conv) + 1)  # the same kernel on the same operands, the same elementwise ops


def test_compile_a_module_with_autograd_without_graph_breaks():
    torch.manual_seed(0)
    torch.backends.cudnn.deterministic = True  # bit-equal gradients need the same algorithms (flag restored)
    m = fastconv.Conv2d(4, 6, 3, stride=2, padding=1).to(DEVICE)
    x = _t((2, 4, 7, 7), grad=True)
    graphs, breaks, reasons = graph_breaks(m, x)
    assert (graphs, breaks) == (1, 0), reasons
    compiled = torch.compile(m, fullgraph=True, backend=BACKEND)
    results = []
    for fn in (compiled, m):
        xi = x.detach().clone().requires_grad_()
        m.zero_grad()
        y = fn(xi)
        y.backward(_t(y.shape, seed=4))
        results.append((y.detach(), xi.grad, m.weight.grad.clone(), m.bias.grad.clone()))
    assert_conv_close(results[0][0], x.detach(), m.weight.detach(), m.bias.detach(), 2, 1)
    assert all(torch.equal(a, b) for a, b in zip(*results))  # forward: the same op; backward: the same aten op


def test_compile_a_converted_block_without_graph_breaks():
    model, x = build("residual")
    original = copy.deepcopy(model)
    fastconv.convert(model)
    with torch.no_grad():
        graphs, breaks, reasons = graph_breaks(model, x)
        assert (graphs, breaks) == (1, 0), reasons
        y = torch.compile(model, fullgraph=True, backend=BACKEND)(x)
    assert_network_close(model, original, x, y=y)


def test_dynamic_shapes_one_compilation():
    counter = CompileCounterWithBackend(BACKEND)
    f = torch.compile(lambda x, w: fastconv.conv2d(x, w, None, 1, "same"), fullgraph=True, dynamic=True,
                      backend=counter)
    w = _t((3, 2, 2, 2), seed=1)
    for shape in [(4, 2, 5, 6), (3, 2, 7, 9)]:  # no 0 or 1 (specialised), no size equal to another (duck sizing)
        x = _t(shape, seed=len(shape))
        y = f(x, w)
        assert_conv_close(y, x, w, None, 1, "same")
    assert counter.frame_count == 1


def test_compiled_graph_resolves_precision_when_it_runs():
    """The op gets precision=None and resolves it at run time: a compiled function follows a later change of
    the float32 precision (as torch's own conv follows the TF32 flags) without recompiling."""
    counter = CompileCounterWithBackend(BACKEND)
    f = torch.compile(lambda x, w: fastconv.conv2d(x, w, padding=1), fullgraph=True, backend=counter)
    x, w = _t((1, 8, 5, 5)), _t((4, 8, 3, 3), seed=1)
    outputs = {}
    for precision in ("ieee", "tf32", "ieee"):
        with fastconv.use_backend(precision=precision):
            y = f(x, w)
            assert torch.equal(y, fastconv.conv2d(x, w, padding=1)), precision
        assert_conv_close(y, x, w, None, 1, 1, precision=precision)
        outputs.setdefault(precision, y)
    assert counter.frame_count == 1
    assert not torch.equal(outputs["ieee"], outputs["tf32"])  # the switch really reached the kernel


# ----------------------------------------------------------------------------------------------------------
# torch.export
# ----------------------------------------------------------------------------------------------------------
def test_export_a_converted_block():
    model, x = build("residual")
    original = copy.deepcopy(model)
    fastconv.convert(model)
    ep = torch.export.export(model, (x,))
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count(OP) == len(convs(model)) == 3
    with torch.no_grad():
        y = ep.module()(x)
    assert_network_close(model, original, x, y=y)


def test_convert_round_trip_under_compile_and_export():
    """convert -> compiled and exported on fastconv's op; revert -> torch's convolution again, nothing of
    fastconv left in the exported graph, torch's output."""
    model, x = build("residual")
    original = copy.deepcopy(model)
    fastconv.convert(model)
    with torch.no_grad():
        assert_network_close(model, original, x, y=torch.compile(model, fullgraph=True, backend=BACKEND)(x))
        fastconv.revert(model)
        torch._dynamo.reset()
        targets = [str(n.target) for n in torch.export.export(model, (x,)).graph.nodes]
        assert not any("fastconv" in t for t in targets) and any("conv2d" in t for t in targets)
        assert torch.equal(model(x), original(x))


# ----------------------------------------------------------------------------------------------------------
# Autocast: what F.conv2d does
# ----------------------------------------------------------------------------------------------------------
AUTOCAST_DTYPES = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES, ids=str)
def test_autocast_casts_like_torch(dtype):
    x, w, b = _t((2, 4, 5, 5)), _t((6, 4, 3, 3), seed=1), _t((6,), seed=2)
    with torch.autocast(DEVICE.type, dtype=dtype):
        y = fastconv.conv2d(x, w, b, padding=1)
        expected = F.conv2d(x, w, b, padding=1)
        y_module = fastconv.convert(nn.Conv2d(4, 6, 3, padding=1).to(DEVICE), precision="ieee")(x)
    assert y.dtype == expected.dtype == y_module.dtype == dtype
    assert_conv_close(y, x.to(dtype), w.to(dtype), b.to(dtype), 1, 1)  # the operands autocast casts, in `dtype`


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES, ids=str)
def test_autocast_leaves_float64_alone_and_refuses_mixed_types_like_torch(dtype):
    x, w = _t((1, 2, 4, 4), torch.float64), _t((3, 2, 3, 3), torch.float64, seed=1)
    plain = fastconv.conv2d(x, w)
    with torch.autocast(DEVICE.type, dtype=dtype):
        y = fastconv.conv2d(x, w)
        assert y.dtype == F.conv2d(x, w).dtype == torch.float64
        with pytest.raises(RuntimeError) as theirs:
            F.conv2d(x.float(), w)
        with pytest.raises(RuntimeError) as ours:
            fastconv.conv2d(x.float(), w)  # input cast to `dtype`, the float64 weight not
    # torch's words depend on the backend it picks (oneDNN's for bf16 on the CPU); both name the mixed types
    assert "Double" in str(ours.value) and "Double" in str(theirs.value)
    assert torch.equal(y, plain)


def test_autocast_gradients_have_torch_dtypes():
    m = nn.Conv2d(4, 6, 3, padding=1).to(DEVICE)
    reference = copy.deepcopy(m)
    fastconv.convert(m)
    x = _t((2, 4, 5, 5))
    grads = []
    for mod in (m, reference):
        xi = x.clone().requires_grad_()
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            y = mod(xi)
        y.float().sum().backward()
        grads.append((y.dtype, xi.grad.dtype, mod.weight.grad.dtype, mod.bias.grad.dtype))
    assert grads[0] == grads[1] == (torch.bfloat16, torch.float32, torch.float32, torch.float32)


def test_autocast_under_compile_without_graph_breaks():
    model, x = build("residual")
    fastconv.convert(model)

    def f(x):
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            return model(x)

    with torch.no_grad():
        graphs, breaks, reasons = graph_breaks(f, x)
        assert (graphs, breaks) == (1, 0), reasons
        y = torch.compile(f, fullgraph=True, backend=BACKEND)(x)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            y_eager, _ = run_checked(model, x)  # every conv within the bf16 model of the operands it got
    assert y.dtype == y_eager.dtype == torch.bfloat16 and y.shape == y_eager.shape


# ----------------------------------------------------------------------------------------------------------
# CUDA graphs (GPU only)
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_capture_and_reduce_overhead():
    model, x = build("residual")
    original = copy.deepcopy(model)
    fastconv.convert(model)
    with torch.no_grad():
        _, same = graph_replay(model, x.clone(), torch.randn_like(x))
        assert same, "the replay read the new input: the eager result, bit for bit"
        compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):  # warm-up, record, replay
            y = compiled(x).clone()
    assert_network_close(model, original, x, y=y)
