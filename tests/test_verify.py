"""The framework as a product: implementations under test and their capabilities, the loaders (module:attr,
files, KernelBench ModelNew), ``python -m fastconv verify`` end to end on the CPU, and the mutation harness's
catalogue and machinery (the full run is ``python -m fastconv mutate``, nightly)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv import mutate
from fastconv.problem import ConvProblem
from fastconv.testing import Capabilities, ConvImpl, load_impl, parse_capabilities
from fastconv.testing.integrity import kernel_streams
from fastconv.testing.strategies import impl_cases

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "000_afb75b68a3bc9d02.txt"

KB_MODULE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class ModelNew(nn.Module):
    """A KernelBench-style candidate (level 1 #80's constructor): no groups parameter."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=(0, 0), dilation=(1, 1),
                 bias=False):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
'''

FUNCTION_MODULE = '''
import torch.nn.functional as F

CAPABILITIES = {"dtypes": ("float32",), "dilation": False}


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    return F.conv2d(x, w, BIAS, stride, padding, dilation, groups)
'''


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ----------------------------------------------------------------------------------------------------------
# capabilities
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [dict(dtypes=("float8",)), dict(layouts=()), dict(layouts="nchw"),
                                    dict(output_format="nhwc"), dict(limits={"max_kernel": 0}),
                                    dict(limits={"max_size": 3}), dict(precisions=("fp8",))])
def test_bad_capabilities_are_refused(kwargs):
    with pytest.raises(ValueError):
        Capabilities(**kwargs)


def test_parse_capabilities():
    changes = parse_capabilities(["dtypes=float32,float16", "dilation=false", "max_kernel=3", "precisions=none,tf32",
                                  "output_format=any"])
    assert changes == dict(dtypes=("float32", "float16"), dilation=False, limits={"max_kernel": 3},
                           precisions=(None, "tf32"), output_format="any")
    caps = Capabilities().replace(**changes)
    assert "dilation" in caps.untested() and "dtypes: bfloat16, float64" in caps.untested()
    for bad in (["dtypes"], ["frobnicate=1"], ["bias=maybe"]):
        with pytest.raises(ValueError):
            parse_capabilities(bad)


def test_unsupported_names_the_reason():
    caps = Capabilities(dilation=False, group_modes=("plain",), layouts=("nchw",), limits={"max_kernel": 3})
    p = ConvProblem.make(1, 4, 4, 8, 8, 3)
    assert caps.unsupported(p) is None
    assert caps.unsupported(p.replace(dil_h=2)) == "dilation"
    assert caps.unsupported(p.replace(groups=2)) == "groups (grouped)"
    assert caps.unsupported(p, layout="nhwc") == "input layout nhwc"
    assert caps.unsupported(p.replace(kh=5)) == "max_kernel=3"


@settings(max_examples=40)
@given(data=st.data())
def test_impl_cases_draw_only_what_is_claimed(data):
    caps = Capabilities(dtypes=("float32", "bfloat16"), layouts=("nchw",), padding_modes=("explicit",),
                        group_modes=("plain",), dilation=False, unbatched=False, precisions=("tf32",),
                        limits={"max_kernel": 2}, supports=lambda p, precision: p.c_out % 2 == 0)
    impl = ConvImpl(F.conv2d, "restricted", caps)
    case, precision = data.draw(impl_cases(impl))
    p = case.problem
    assert p.dtype in caps.dtypes and case.layout == "nchw" and case.padding is None and p.groups == 1
    assert (p.dil_h, p.dil_w) == (1, 1) and not case.unbatched and max(p.kh, p.kw) <= 2 and p.c_out % 2 == 0
    assert precision == ("tf32" if p.dtype == "float32" else None)


# ----------------------------------------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------------------------------------
def test_builtin_specs():
    assert load_impl("torch").fn is F.conv2d
    igemm = load_impl("fastconv:igemm")
    assert igemm.name == "fastconv:igemm" and igemm.takes_precision and igemm.capabilities.supports is not None
    assert load_impl("fastconv").name == "fastconv:auto"
    with pytest.raises(ValueError):
        load_impl("fastconv:nope")


def test_a_function_module_with_declared_capabilities(tmp_path, monkeypatch):
    _write(tmp_path, "myconv.py", FUNCTION_MODULE.replace("BIAS", "b"))
    monkeypatch.syspath_prepend(str(tmp_path))
    impl = load_impl("myconv:conv2d", ["max_kernel=3"])
    assert impl.name == "myconv:conv2d"
    assert impl.capabilities.dtypes == ("float32",) and not impl.capabilities.dilation
    assert impl.capabilities.limits == {"max_kernel": 3}
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    assert torch.equal(impl(x, w, None, 1, 1), F.conv2d(x, w, None, 1, 1))
    assert load_impl(str(tmp_path / "myconv.py")).name == "myconv.py:conv2d"  # a path: conv2d by default


def test_a_kernelbench_file(tmp_path):
    impl = load_impl(str(_write(tmp_path, "solution.py", KB_MODULE)))
    caps = impl.capabilities
    assert impl.name == "solution.py:ModelNew"
    assert caps.group_modes == ("plain",) and caps.dtypes == ("float32",) and caps.layouts == ("nchw",)
    assert caps.dilation and caps.stride and caps.bias and not caps.unbatched and not caps.raises_like_torch
    x, w, b = torch.randn(2, 3, 7, 6), torch.randn(4, 3, 3, 2), torch.randn(4)
    y = impl(x, w, b, 2, (1, 0), (1, 2), 1)
    assert torch.allclose(y, F.conv2d(x, w, b, 2, (1, 0), (1, 2)), atol=1e-6)
    y2 = impl(x, 2 * w, b, 2, (1, 0), (1, 2), 1)  # the same module, its parameters updated
    assert torch.allclose(y2, F.conv2d(x, 2 * w, b, 2, (1, 0), (1, 2)), atol=1e-5)


@pytest.mark.skipif(not SEED.is_file(), reason="the seed document is not beside the checkout")
def test_the_seeds_modelnew_loads_with_kernelbench_capabilities(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import extract_seed
    finally:
        sys.path.pop(0)
    path = tmp_path / "seed.py"
    path.write_text(extract_seed.extract(SEED.read_text()))
    impl = load_impl(str(path))  # defining its @triton.autotune kernel works anywhere; running needs a GPU
    assert impl.capabilities.group_modes == ("plain",) and impl.capabilities.dtypes == ("float32",)


def test_kernel_streams_reads_a_chrome_trace():
    def k(name, ts, stream):
        return {"cat": "kernel", "ph": "X", "name": name, "ts": ts, "args": {"stream": stream}}

    trace = {"traceEvents": [k("add", 0, 7), k("conv", 5, 7), k("add", 9, 7), {"cat": "cpu_op", "ph": "X"}]}
    assert kernel_streams(trace) == ({7}, {7})
    trace["traceEvents"].append(k("hidden", 6, 13))
    assert kernel_streams(trace) == ({7}, {7, 13})
    # work left on a side stream that lands after the second marker (as the H200 showed: the planted cheat's
    # copy after a sleep was once taken for the marker, and the cheat passed)
    trace["traceEvents"].append(k("late copy", 40, 13))
    assert kernel_streams(trace) == ({7}, {7, 13})
    trace = {"traceEvents": [k("add", 0, 7), k("late copy", 40, 13)]}  # no second marker recorded
    assert kernel_streams(trace) == (set(), set())


# ----------------------------------------------------------------------------------------------------------
# verify, end to end (a subprocess: the suite as a user runs it)
# ----------------------------------------------------------------------------------------------------------
def _verify(spec: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fastconv", "verify", spec, "--no-bench", "--max-examples", "2",
           "-k", "matches_reference or results_follow", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_verify_passes_an_honest_implementation_and_reports_what_it_does_not_claim(tmp_path):
    proc = _verify(str(_write(tmp_path, "honest.py", FUNCTION_MODULE.replace("BIAS", "b"))))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "--conv-impl" in proc.stdout and "passed" in proc.stdout
    assert "not claimed, so NOT tested: dtypes: float16, bfloat16, float64; dilation" in proc.stdout


def test_verify_fails_a_wrong_implementation(tmp_path):
    proc = _verify(str(_write(tmp_path, "nobias.py", FUNCTION_MODULE.replace("BIAS", "None"))))
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "FAILED" in proc.stdout and "differs from the fp64 reference" in proc.stdout


# ----------------------------------------------------------------------------------------------------------
# the mutation harness
# ----------------------------------------------------------------------------------------------------------
def test_the_catalogue_applies_once_each_and_covers_the_bug_classes():
    mutate.check_catalogue()
    assert len(mutate.CATALOGUE) >= 25
    assert {m.target for m in mutate.CATALOGUE} == set(mutate.TARGETS)
    words = " ".join(m.what for m in mutate.CATALOGUE)
    for bug in ("padding", "stride", "dilation", "mask", "partial M", "partial N", "partial K", "group offset",
                "bias added twice", "bias never", "accumulation in the input dtype", "swapped",
                "channels_last", "int32", "weight-packing pass", "wrong config for a shape", "memory format",
                "TF32"):
        assert bug in words, bug


def test_a_snippet_that_is_missing_or_repeated_fails_loudly(tmp_path):
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "k.py").write_text("a = 1\na = 1\nb = 2\n")
    twice = mutate.Mutant("twice", "host", "kernels/k.py", "a = 1", "a = 2", "")
    missing = mutate.Mutant("missing", "host", "kernels/k.py", "c = 3", "c = 4", "")
    for m in (twice, missing):
        with pytest.raises(mutate.MutationError, match="must be once"):
            mutate.apply(m, tmp_path)
    once = mutate.Mutant("once", "host", "kernels/k.py", "b = 2", "b = 3", "")
    mutate.apply(once, tmp_path)
    assert (tmp_path / "kernels" / "k.py").read_text().endswith("b = 3\n")


def test_verdicts():
    assert mutate._verdict(0, "") == (False, "")
    assert mutate._verdict(1, "FAILED properties/test_reference.py::test_x[fastconv:igemm] - E") == (
        True, "properties/test_reference.py::test_x[fastconv:igemm]")
    assert mutate._verdict(None, "") == (False, "timeout") and mutate._verdict(2, "")[0]  # a timeout kills nothing
    assert mutate._verdict(4, "usage")[0] is None  # a harness error, not a kill


def test_mutate_lists_the_catalogue(capsys):
    from fastconv.cli import main

    assert main(["mutate", "--list", "--impl", "direct"]) == 0
    out = capsys.readouterr().out
    assert "direct-dilation-w-uses-h" in out and "igemm-" not in out
    assert main(["mutate", "--impl", "nope"]) == 2


def test_the_benchmark_runner_takes_an_implementation_under_test():
    """The benchmark fixtures' runner (here untimed, as on a CPU) runs and checks a ConvImpl by its name."""
    from fastconv.bench.case_runner import bench_case
    from fastconv.bench.problems import SMOKE

    case = SMOKE[0].case()
    res = bench_case(case, [load_impl("torch"), "cudnn"], torch.device("cpu"), None, None)
    r = res.impls["torch"]
    assert r.error is None and r.check.ok and r.kernels == [{"kernel": "torch"}]
    wrong = ConvImpl(lambda x, w, b, s, p, d, g: F.conv2d(x, w, b, s, p, d, g) * 1.01, "scaled")
    assert not bench_case(case, [wrong], torch.device("cpu"), None, None).impls["scaled"].check.ok
