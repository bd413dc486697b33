"""PyTorch's own conv2d test data, run against fastconv: torch's semantics, checked with torch's samples.

The data comes from ``torch.testing._internal`` (shipped with torch; it needs ``expecttest``, in the ``test``
extra), never copied here:

- ``op_db``'s OpInfo ``nn.functional.conv2d``: its ``sample_inputs`` (15 cases, each batched and unbatched:
  30 per dtype) for every dtype torch lists for the device, each contiguous and as torch's own noncontiguous
  transform (``SampleInput.noncontiguous()``, what ``TestCommon.test_noncontiguous_samples`` uses: every
  tensor, weight and bias included, becomes a strided view with NaN in the gaps), and its ``error_inputs``
  (10), contiguous and noncontiguous;
- ``module_db``'s ModuleInfo for ``nn.Conv2d``: its ``module_inputs`` (4 per dtype) for every dtype it lists,
  with a contiguous, a noncontiguous (``noncontiguous_like``, the same transform) and, as torch's
  ``test_memory_format`` does for modules whose memory format affects the output, a channels_last input and
  module (batched inputs only).

Every sample runs in full, no subset is needed: 518 cases, about 90 s on one core in the interpreter (and
about 7 s to import torch's test data).

What each test checks:

- supported dtypes (float32, float16, bfloat16, float64): output shape, dtype and memory format as ``F.conv2d``'s
  (:func:`fastconv.testing.layout_mismatch`), and the values against the fp64 reference within the project's
  tolerance model (:func:`fastconv.testing.assert_conv_close`) *in the arithmetic torch uses* on the device:
  exact fp32 ("ieee") on the CPU, TF32 on CUDA while ``cudnn.allow_tf32`` is set.  That precision is taken
  from torch's semantics, not from fastconv's ``resolve_precision``, so a TF32 default on the CPU fails here
  (``test_a_tf32_default_on_the_cpu_would_be_caught`` shows it does);
- dtypes torch computes and fastconv does not (int64, complex; on CUDA complex32): ``NotImplementedError``,
  the exception torch itself raises for a dtype its CPU kernel lacks (``"slow_conv2d_cpu" not implemented for
  'Bool'``), naming the dtype, with no kernel launched;
- error inputs: the exception type torch raises, and torch's message as torch produces it at runtime.
  Normalisation: the message is taken from torch on the CPU with oneDNN off, because where torch's CPU wording
  depends on the backend it picks (oneDNN or its portable kernel) fastconv words it as the portable kernel
  does; the exception type is the same either way (checked).  On a GPU fastconv is checked against these CPU
  messages too (cuDNN's wording is backend-specific and fastconv has no cuDNN).

If torch stops shipping the OpInfo or ModuleInfo, or either yields no samples, the tests fail (they are never
parametrised over nothing).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from unittest import mock

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import fastconv
from fastconv.kernels import REGISTRY
from fastconv.testing import assert_conv_close, layout_mismatch
from fastconv.vocab import DTYPES

# Importing torch.testing._internal has process-wide side effects meant for torch's own suite: it freezes
# torch.backends' flags (then every ``torch.backends.cudnn.allow_tf32 = ...`` in any later test, and conftest's
# restoring fixture, raises) and sets $TORCHINDUCTOR_CACHE_DIR.  Both are undone right after the import.
_flags_were_frozen, _env_before = torch.backends.flags_frozen(), set(os.environ)
try:
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.common_modules import module_db
    from torch.testing._internal.common_utils import noncontiguous_like
except ImportError as exc:  # pragma: no cover - an environment without the test extra
    hint = "PyTorch's OpInfo/ModuleInfo data needs the test extra (pip install -e '.[test]')"
    raise ImportError(f"{hint}: {exc}") from exc
finally:
    if not _flags_were_frozen and torch.backends.flags_frozen():
        # the module global that torch.backends.disable_global_flags() cleared
        torch.backends.disable_global_flags.__globals__["__allow_nonbracketed_mutation_flag"] = True
    for _name in set(os.environ) - _env_before:
        del os.environ[_name]
assert not torch.backends.flags_frozen() or _flags_were_frozen, "could not undo torch.testing's flag freeze"

# complex32 (torch lists it on CUDA; the dtype-name checks use it everywhere) warns on every allocation
pytestmark = pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SUPPORTED_DTYPES = tuple(d.torch for d in DTYPES.values())
OP_NAME = "nn.functional.conv2d"
SEED = 0  # torch's samples draw from the global RNG: generated under this seed, in a forked RNG



def _find(db, match):
    found = [entry for entry in db if match(entry)]
    return found[0] if len(found) == 1 else None


OPINFO = _find(op_db, lambda op: op.name == OP_NAME and op.variant_test_name == "")
MODULEINFO = _find(module_db, lambda m: m.module_cls is nn.Conv2d)


def torch_precision(device: torch.device, dtype: torch.dtype) -> str | None:
    """The float32 arithmetic ``F.conv2d`` uses on ``device`` (torch's semantics, independent of fastconv)."""
    if dtype != torch.float32:
        return None  # half types: the one "native" model
    if device.type == "cpu":
        return "ieee"  # torch's CPU convolution computes exact fp32
    return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"


# ----------------------------------------------------------------------------------------------------------
# torch's data, generated once per (dtype), deterministically
# ----------------------------------------------------------------------------------------------------------
_CACHE: dict = {}


def _generate(key, make):
    if key not in _CACHE:
        with torch.random.fork_rng(devices=[DEVICE] if DEVICE.type == "cuda" else []):
            torch.manual_seed(SEED)
            _CACHE[key] = list(make())
    return _CACHE[key]


def op_samples(dtype: torch.dtype) -> list:
    return _generate(("op", dtype), lambda: OPINFO.sample_inputs(DEVICE.type, dtype, requires_grad=False))


def op_error_inputs() -> list:
    return _generate(("error",), lambda: OPINFO.error_inputs(DEVICE.type))


def module_inputs(dtype: torch.dtype) -> list:
    return _generate(("module", dtype), lambda: MODULEINFO.module_inputs_func(
        MODULEINFO, device=DEVICE.type, dtype=dtype, requires_grad=False, training=True))


def _fmt(v) -> str:
    if isinstance(v, (tuple, list, torch.Size)):
        return "x".join(str(int(e)) for e in v)
    return str(v)


_ABBR = {"stride": "s", "padding": "p", "dilation": "d", "groups": "g"}


def describe(input, weight, bias, kwargs: dict) -> str:
    """e.g. ``in1x3x4x4-w3x3x3x3-b3-s2x2-p2-g1`` (an unbatched input has three sizes)."""
    parts = [f"in{_fmt(input.shape)}", f"w{_fmt(weight.shape)}"]
    if bias is not None:
        parts.append(f"b{_fmt(bias.shape)}")
    parts += [f"{_ABBR.get(k, k)}{_fmt(v)}" for k, v in kwargs.items()]
    return "-".join(parts)


def _short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _layout(noncontiguous: bool) -> str:
    return "noncontig" if noncontiguous else "contig"


def _missing(what: str, n_args: int = 3) -> list:
    """One failing case instead of none: torch stopped shipping ``what``."""
    return [pytest.param(*[None] * n_args, id=f"MISSING-{what}")]


def _sample_params() -> list:
    if OPINFO is None:
        return _missing(f"OpInfo-{OP_NAME}")
    params = []
    for dtype in sorted(OPINFO.supported_dtypes(DEVICE.type), key=str):
        for noncontiguous, (i, s) in itertools.product((False, True), enumerate(op_samples(dtype))):
            desc = describe(s.input, s.args[0], s.args[1], s.kwargs)
            params.append(pytest.param(dtype, noncontiguous, i,
                                       id=f"{_short(dtype)}-{_layout(noncontiguous)}-{i:02d}-{desc}"))
    return params or _missing("OpInfo-samples")


def _error_params() -> list:
    if OPINFO is None:
        return _missing(f"OpInfo-{OP_NAME}", 2)
    params = []
    for noncontiguous, (i, e) in itertools.product((False, True), enumerate(op_error_inputs())):
        s = e.sample_input
        slug = "-".join(e.error_regex.split()[:6])
        desc = describe(s.input, s.args[0], s.args[1], s.kwargs)
        params.append(pytest.param(noncontiguous, i, id=f"{i:02d}-{_layout(noncontiguous)}-"
                                                        f"{_short(s.input.dtype)}-{desc}-{slug}"))
    return params or _missing("OpInfo-error_inputs", 2)


MODULE_LAYOUTS = ("contig", "noncontig", "channels_last")


def _module_params() -> list:
    if MODULEINFO is None:
        return _missing("ModuleInfo-nn.Conv2d")
    params = []
    for dtype in sorted(MODULEINFO.supported_dtypes(DEVICE.type), key=str):
        for layout, (i, mi) in itertools.product(MODULE_LAYOUTS, enumerate(module_inputs(dtype))):
            x = mi.forward_input.args[0]
            if layout == "channels_last" and x.dim() != 4:
                continue  # torch's test_memory_format converts 4-D inputs only
            ctor = "-".join([_fmt(a) for a in mi.constructor_input.args]
                            + [f"{k}={_fmt(v)}" for k, v in mi.constructor_input.kwargs.items()])
            params.append(pytest.param(dtype, layout, i,
                                       id=f"{_short(dtype)}-{layout}-{i}-{mi.desc or 'batched'}-in{_fmt(x.shape)}"
                                          f"-Conv2d({ctor})"))
    return params or _missing("ModuleInfo-inputs")


@contextlib.contextmanager
def no_launch():
    def boom(*args, **kwargs):
        raise AssertionError("a kernel was launched for a call fastconv must refuse")

    with contextlib.ExitStack() as stack:
        for kernel in REGISTRY.values():
            stack.enter_context(mock.patch.object(kernel, "launch", boom))
        yield


def torch_error(fn) -> BaseException:
    """What ``fn`` (a call of torch on CPU tensors) raises; the message with oneDNN off (module docstring)."""
    with pytest.raises(Exception) as default:
        fn()
    saved = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with pytest.raises(Exception) as portable:
            fn()
    finally:
        torch.backends.mkldnn.enabled = saved
    assert type(default.value) is type(portable.value), (default.value, portable.value)
    return portable.value


def _cpu(v):
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def check_against_torch(actual: torch.Tensor, expected: torch.Tensor, input, weight, bias, kwargs: dict) -> None:
    mismatch = layout_mismatch(actual, expected)
    assert mismatch is None, f"output differs from torch's: {mismatch}"
    assert_conv_close(actual, input, weight, bias, **kwargs, precision=torch_precision(input.device, input.dtype))


def check_unsupported_dtype(call, dtype: torch.dtype) -> None:
    """fastconv refuses ``dtype`` (which torch computes) with NotImplementedError naming it, before any launch."""
    with no_launch(), pytest.raises(NotImplementedError) as info:
        call()
    assert type(info.value) is NotImplementedError and str(dtype) in str(info.value), info.value


# ----------------------------------------------------------------------------------------------------------
# the data is there
# ----------------------------------------------------------------------------------------------------------
def test_torch_ships_the_conv2d_opinfo_and_moduleinfo():
    assert OPINFO is not None, f"torch's op_db has no (single) {OP_NAME!r} OpInfo"
    assert MODULEINFO is not None, "torch's module_db has no (single) nn.Conv2d ModuleInfo"
    for dtype in OPINFO.supported_dtypes(DEVICE.type):
        assert len(op_samples(dtype)) > 0, f"no OpInfo samples for {dtype}"
    assert len(op_error_inputs()) > 0
    for dtype in MODULEINFO.supported_dtypes(DEVICE.type):
        assert len(module_inputs(dtype)) > 0, f"no ModuleInfo inputs for {dtype}"
    # every dtype fastconv computes is among torch's, so none of them goes untested here
    assert set(SUPPORTED_DTYPES) <= set(OPINFO.supported_dtypes(DEVICE.type))


# ----------------------------------------------------------------------------------------------------------
# OpInfo samples
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, noncontiguous, index", _sample_params())
def test_opinfo_sample(dtype, noncontiguous, index):
    assert OPINFO is not None and dtype is not None, f"torch's {OP_NAME!r} OpInfo data is gone"
    sample = op_samples(dtype)[index]
    if noncontiguous:
        sample = sample.noncontiguous()
        assert not sample.input.is_contiguous() and not sample.args[0].is_contiguous()
    x, (w, b), kwargs = sample.input, sample.args, sample.kwargs
    expected = F.conv2d(x, w, b, **kwargs)  # torch computes every dtype it lists
    if dtype not in SUPPORTED_DTYPES:
        check_unsupported_dtype(lambda: fastconv.conv2d(x, w, b, **kwargs), dtype)
        return
    actual = fastconv.conv2d(x, w, b, **kwargs)
    check_against_torch(actual, expected, x, w, b, kwargs)


def test_a_tf32_default_on_the_cpu_would_be_caught():
    """The check above fails an output rounded to TF32 where torch computes exact fp32 (the CPU)."""
    assert OPINFO is not None, f"torch's {OP_NAME!r} OpInfo data is gone"
    sample = op_samples(torch.float32)[0]  # 1x3x4x4 * 3x3x3x3, stride 2, padding 2: a TF32-rounding kernel
    x, (w, b), kwargs = sample.input, sample.args, sample.kwargs
    y_tf32 = fastconv.conv2d(x, w, b, **kwargs, precision="tf32")
    assert_conv_close(y_tf32, x, w, b, **kwargs, precision="tf32")
    with pytest.raises(AssertionError, match="beyond the error model"):
        assert_conv_close(y_tf32, x, w, b, **kwargs, precision=torch_precision(torch.device("cpu"), torch.float32))


# ----------------------------------------------------------------------------------------------------------
# OpInfo error inputs
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noncontiguous, index", _error_params())
def test_opinfo_error_input(noncontiguous, index):
    assert OPINFO is not None and index is not None, f"torch's {OP_NAME!r} OpInfo data is gone"
    error = op_error_inputs()[index]
    sample = error.sample_input.noncontiguous() if noncontiguous else error.sample_input
    args, kwargs = (sample.input, *sample.args), sample.kwargs
    expected = torch_error(lambda: F.conv2d(*map(_cpu, args), **kwargs))
    assert type(expected) is error.error_type  # torch still raises what its OpInfo says
    with no_launch(), pytest.raises(Exception) as info:
        fastconv.conv2d(*args, **kwargs)
    assert type(info.value) is type(expected), f"{type(info.value).__name__}: {info.value}"
    assert str(info.value) == str(expected)


_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int16,
           torch.int8, torch.uint8, torch.bool, torch.complex32, torch.complex64, torch.complex128,
           torch.float8_e4m3fn, torch.float8_e5m2)


@pytest.mark.parametrize("dtype, other", [
    pytest.param(d, o, id=f"{_short(d)}-{_short(o)}")
    for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64) for o in _DTYPES if o != d])
def test_dtype_mismatch_messages_name_dtypes_as_torch(dtype, other):
    """torch names dtypes two ways in its messages (caffe2's "c10::Half", c10's "Half"): fastconv names them as
    torch does, for a bias and for a weight of another dtype."""
    x, w, b = torch.ones(1, 2, 3, 3), torch.ones(2, 2, 1, 1), torch.ones(2)
    calls = {"bias": ((x.to(dtype), w.to(dtype), b.to(other)), {}),
             "weight": ((x.to(dtype), w.to(other)), {})}
    for what, (args, kwargs) in calls.items():
        expected = torch_error(lambda: F.conv2d(*args, **kwargs))  # noqa: B023 - called at once
        with no_launch(), pytest.raises(Exception) as info:
            fastconv.conv2d(*(a.to(DEVICE) for a in args), **kwargs)
        assert (type(info.value), str(info.value)) == (type(expected), str(expected)), what


# ----------------------------------------------------------------------------------------------------------
# ModuleInfo inputs: fastconv.Conv2d with nn.Conv2d's constructor arguments and state dict
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, layout, index", _module_params())
def test_moduleinfo_input(dtype, layout, index):
    assert MODULEINFO is not None and dtype is not None, "torch's nn.Conv2d ModuleInfo data is gone"
    mi = module_inputs(dtype)[index]
    args, kwargs = mi.constructor_input.args, mi.constructor_input.kwargs
    ref = nn.Conv2d(*args, **kwargs).to(device=DEVICE, dtype=dtype)
    ours = fastconv.Conv2d(*args, **kwargs).to(device=DEVICE, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    (x,) = mi.forward_input.args
    if layout == "noncontig":
        x = noncontiguous_like(x)
        assert not x.is_contiguous()
    elif layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
        ref, ours = ref.to(memory_format=torch.channels_last), ours.to(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = ref(x, **mi.forward_input.kwargs)
        if dtype not in SUPPORTED_DTYPES:  # pragma: no cover - torch lists floats
            check_unsupported_dtype(lambda: ours(x, **mi.forward_input.kwargs), dtype)
            return
        actual = ours(x, **mi.forward_input.kwargs)
    check_against_torch(actual, expected, x, ours.weight, ours.bias,
                        dict(stride=ours.stride, padding=ours.padding, dilation=ours.dilation, groups=ours.groups))
