"""CPU tests of the benchmark machinery: GPU table and roofline, catalogue, timing loop, gate decision and
package loading, the bench/gate commands without a GPU, and the pytest-benchmark integration.

Nothing here times anything for real: device timing is replaced by :class:`FakeEvents`, a synthetic clock
that the fake workloads advance, so the statistics and the decisions are tested on known timings.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fastconv import gpus
from fastconv.bench import perf_gate as gate
from fastconv.bench import problems, roofline
from fastconv.bench.accuracy import check_stage
from fastconv.bench.problems import CATALOGUE, BenchCase, BenchProblem
from fastconv.problem import ConvProblem
from fastconv.tuning import timing

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------
# A synthetic device clock
# ----------------------------------------------------------------------------------------------------------
class FakeEvents(timing.TimingBackend):
    """A device whose clock only moves when a fake workload calls :meth:`spend`; records every event."""

    name = "fake"

    def __init__(self):
        self.now = 0.0
        self.log: list[str] = []

    def spend(self, label: str, ms: float) -> None:
        self.log.append(label)
        self.now += ms

    def marker(self):
        return self.now

    def elapsed_ms(self, start, end) -> float:
        return end - start

    def synchronize(self) -> None:
        pass

    def flush_l2(self) -> None:
        self.log.append("flush")
        self.now += 0.5  # must never be counted


def workload(dev: FakeEvents, label: str, ms, rng: random.Random | None = None, noise: float = 0.0):
    """A callable that 'runs' for ``ms`` (a number or a function of the call index), with relative noise."""
    calls = [0]

    def fn():
        t = ms(calls[0]) if callable(ms) else ms
        calls[0] += 1
        dev.spend(label, t * (1 + noise * rng.gauss(0, 1)) if rng else t)

    return fn


# ----------------------------------------------------------------------------------------------------------
# GPU table and roofline
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"),
    ("NVIDIA H200", "NVIDIA H200"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
    ("NVIDIA H100 PCIe", None),  # another card (other clocks, HBM2e): must be measured, not guessed
    ("NVIDIA A100-SXM4-40GB", None),
    ("Tesla T4", None),
])
def test_gpu_lookup(name, expected):
    spec = gpus.lookup(name)
    assert (spec.name if spec else None) == expected


def test_ceilings_prefer_recorded_measurements_and_say_so():
    c = roofline.ceilings_for("NVIDIA H100 80GB HBM3", measure=False)
    spec = gpus.lookup("NVIDIA H100 80GB HBM3")
    for key in ("tf32", "bf16"):
        assert c.tflops[key] == spec.measured[key] < spec.datasheet[key]
        assert c.source(key).startswith("measured")
    assert c.bw_gbs == spec.measured["bw"] and c.source("bw").startswith("measured")
    assert c.tflops["fp16"] == spec.datasheet["fp16"] and c.source("fp16").startswith("datasheet")
    assert c.peak("tf32x3") == pytest.approx(c.tflops["tf32"] / 3)
    # the seed's RTX 4090 figures, from its target-GPU sheet
    s = roofline.ceilings_for("NVIDIA GeForce RTX 4090", measure=False)
    assert (s.tflops["tf32"], s.tflops["bf16"], s.bw_gbs) == (82.6, 165.2, 1008.0)
    assert "fp32" not in s.tflops  # not on the sheet: measured on the card, never invented


def test_unknown_gpu_without_measurement_has_no_ceilings_but_still_reports_rates():
    c = roofline.ceilings_for("Some Future GPU", measure=False)
    assert not c.known and c.tflops == {} and c.bw_gbs is None
    r = roofline.roofline(2e12, 1e9, 0.5, c, "tf32")
    assert r.tflops == pytest.approx(4.0) and r.gbs == pytest.approx(2.0) and r.fraction is None


def test_roofline_bound_is_compute_or_memory():
    c = roofline.ceilings_for("NVIDIA H100 80GB HBM3", measure=False)
    kb80, kb82 = problems.get("kb80").case(), problems.get("kb82").case()
    # same time for both: the compute-heavy one is judged against the TF32 peak, the depthwise one against
    # the bandwidth at its intensity
    r80 = roofline.roofline(kb80.flops, kb80.min_bytes, 2e-3, c, "tf32")
    r82 = roofline.roofline(kb82.flops, kb82.min_bytes, 2e-3, c, "tf32")
    assert r80.limiter == "compute" and r80.bound_tflops == c.tflops["tf32"]
    assert r82.limiter == "memory" and r82.bound_tflops == pytest.approx(c.bw_gbs * r82.intensity / 1e3)
    for r in (r80, r82):
        assert r.fraction == pytest.approx(r.tflops / r.bound_tflops)
    assert roofline.precision_class("float32", "ieee") == "fp32"
    assert roofline.precision_class("bfloat16", "native") == "bf16"


# ----------------------------------------------------------------------------------------------------------
# Catalogue
# ----------------------------------------------------------------------------------------------------------
def test_catalogue_has_the_kernelbench_problems_with_their_files():
    kb = {p.name: p for p in CATALOGUE if p.group == "kernelbench"}
    assert sorted(kb) == sorted(f"kb{n}" for n in (50, 55, 56, 62, 63, 80, 82, 83, 84, 85, 86, 87))
    for name, p in kb.items():
        assert p.source.startswith(f"KernelBench/level1/{name[2:]}_") and p.source.endswith(".py")
    assert len(kb["kb86"].stages) == 2  # depthwise then pointwise
    assert kb["kb50"].stages[0].has_bias  # nn.Conv2d's default bias=True


# GFLOP of the shapes measured in shared/reference/anchors-h100.json (field "gflop"): an independent count.
ANCHOR_GFLOP = {"kb80": 371.54193408, "kb55": 614.85613056, "kb56": 582.61504, "kb63": 616.061730816,
                "kb87": 274.877906944, "resnet_3x3_s1": 7.398752256, "resnet_3x3_s2": 14.797504512,
                "resnet_stem_7x7": 7.552892928}


@pytest.mark.parametrize("name", sorted(ANCHOR_GFLOP))
def test_catalogue_shapes_match_the_reference_anchors(name):
    assert problems.get(name).flops / 1e9 == pytest.approx(ANCHOR_GFLOP[name], rel=1e-12)


def test_catalogue_selection():
    names = [p.name for p in CATALOGUE]
    assert len(names) == len(set(names))
    quick = problems.select(None, quick=True)
    assert quick and set(quick) < set(CATALOGUE)
    assert {p.group for p in quick} == {"kernelbench", "resnet50", "latency"}
    assert problems.select("gate") and all(p.gate for p in problems.select("gate"))
    assert [p.name for p in problems.select("kb80,resnet_3x3_s1")] == ["kb80", "resnet_3x3_s1"]
    assert {p.group for p in problems.select(["latency"])} == {"latency"}
    with pytest.raises(ValueError, match="unknown benchmark problem"):
        problems.select("kb81")


def test_stages_must_chain():
    a = ConvProblem.make(1, 4, 8, 6, 6, 3)
    with pytest.raises(ValueError, match="does not consume"):
        BenchProblem("bad", "smoke", (a, ConvProblem.make(1, 4, 8, 4, 4, 1)))


def test_inputs_are_deterministic_nonzero_and_in_the_requested_layout():
    case = problems.get("smoke_1x1_s2_bias").case("bfloat16", "nhwc")
    a, b = case.make_inputs("cpu"), case.make_inputs("cpu")
    assert torch.equal(a.x, b.x) and torch.equal(a.weights[0], b.weights[0])
    assert a.x.dtype == torch.bfloat16 and a.x.is_contiguous(memory_format=torch.channels_last)
    assert bool((a.x != 0).any()) and a.biases[0] is not None
    assert not torch.equal(case.make_inputs("cpu", seed=1).x, a.x)
    assert case.id == "smoke_1x1_s2_bias-bf16-nhwc"
    with pytest.raises(ValueError):
        BenchCase(case.problem, "bfloat16", "nchw", "tf32")
    with pytest.raises(ValueError):
        BenchCase(case.problem, "int8")


# ----------------------------------------------------------------------------------------------------------
# Timing loop (synthetic clock)
# ----------------------------------------------------------------------------------------------------------
def test_measure_interleaves_flushes_and_excludes_first_call_and_warmup():
    dev = FakeEvents()
    slow_first = lambda i: 1000.0 if i == 0 else 2.0  # first call: "compile + autotune"
    t = timing.measure({"A": workload(dev, "A", slow_first), "B": workload(dev, "B", 3.0)}, dev, rounds=6,
                       warmup=2)
    assert t["A"].times_ms == [2.0] * 6 and t["B"].times_ms == [3.0] * 6  # flush time never counted
    assert t["A"].first_call_s is not None
    timed = [e for e in dev.log[2 + 2 * 4:] if e != "flush"]  # after first calls (2) and warm-up (2 x 2 each)
    assert timed == ["A", "B", "B", "A", "A", "B", "B", "A", "A", "B", "B", "A"]  # order alternates
    calls = [i for i, e in enumerate(dev.log) if e != "flush"]
    assert all(dev.log[i - 1] == "flush" for i in calls[2:])  # every timed or warm-up call starts cold


class QueueDevice(timing.TimingBackend):
    """A stream: the host enqueues (spending its own virtual time), the device runs in order when work arrives.

    Times in ms.  Each API call costs the host ``api_ms``; a kernel starts at max(device free, arrival).
    """

    name = "queue"

    def __init__(self, api_ms: float = 0.002):
        self.host = self.dev = 0.0
        self.api_ms = api_ms

    def _run(self, ms: float) -> float:
        self.host += self.api_ms
        self.dev = max(self.dev, self.host) + ms
        return self.dev

    def call(self, host_ms: float, dev_ms: float):
        def fn():
            self.host += host_ms  # Python dispatch before the launch
            self._run(dev_ms)
        return fn

    def marker(self):
        return self._run(0.0)

    def elapsed_ms(self, start, end) -> float:
        return end - start

    def synchronize(self) -> None:
        self.host = max(self.host, self.dev)

    def flush_l2(self) -> None:
        self._run(0.08)

    def hold(self, us: float) -> None:
        self._run(us / 1e3)

    def host_clock(self) -> float:
        return self.host / 1e3


def test_host_bound_calls_are_timed_on_the_device_not_on_the_host():
    # a 15 us kernel behind 100 us of host dispatch, and a 2 ms kernel behind 20 us: without the hold the first
    # reads ~100 us (the host's speed); with it, its device time.  Host cost is still reported, per round.
    dev = QueueDevice()
    fns = {"small": dev.call(0.100, 0.015), "big": dev.call(0.020, 2.0)}
    held = timing.measure(fns, dev, rounds=8)
    assert held["small"].times_ms == pytest.approx([0.015] * 8)
    assert held["big"].times_ms == pytest.approx([2.0] * 8)
    enqueue_us = (0.100 + 3 * dev.api_ms) * 1e3  # dispatch, the launch and the two markers
    assert statistics.median(held["small"].host_us) == pytest.approx(enqueue_us)
    assert held["small"].hold_us == pytest.approx(timing.hold_for([enqueue_us]))
    dev2 = QueueDevice()
    unheld = timing.measure({"small": dev2.call(0.100, 0.015)}, dev2, rounds=8, hold=False)
    # the old protocol read the host's dispatch (less the 80 us the L2 flush happened to hide): 2.6x the kernel
    assert min(unheld["small"].times_ms) > 2 * 0.015
    assert timing.hold_for([5000.0]) == timing.HOLD_CAP_US


def test_rounds_follow_the_budget():
    assert timing.rounds_for_budget(10.0, 1.0, 10, 500) == 100
    assert timing.rounds_for_budget(500.0, 1.0, 10, 500) == 10
    assert timing.rounds_for_budget(0.001, 1.0, 10, 500) == 500
    dev = FakeEvents()
    t = timing.measure({"A": workload(dev, "A", 20.0)}, dev, budget_s=1.0, min_rounds=5, max_rounds=1000)
    assert t["A"].rounds == 50


# ----------------------------------------------------------------------------------------------------------
# The gate's decision
# ----------------------------------------------------------------------------------------------------------
def paired(seed, base_ms, slowdown, noise, n=90, drift=0.0):
    """Interleaved rounds: a common per-round drift (both suffer it) and independent noise per call."""
    rng = random.Random(seed)
    a, b = [], []
    for i in range(n):
        common = 1 + drift * math.sin(i / 7)
        a.append(base_ms * common * math.exp(rng.gauss(0, noise)))
        b.append(base_ms * (1 + slowdown) * common * math.exp(rng.gauss(0, noise)))
        if rng.random() < 0.03:  # an occasional hiccup
            (a if rng.random() < 0.5 else b)[-1] *= 1.5
    return a, b


@pytest.mark.parametrize("seed", range(20))
def test_gate_passes_identical_code_under_noise(seed):
    a, b = paired(seed, 2.0, 0.0, noise=0.03, drift=0.1)
    d = gate.decide_paired(a, b, 0.05, blocks=[30, 30, 30])
    assert not d.failed and d.verdict == "ok", d


@pytest.mark.parametrize("seed", range(5))
def test_gate_fails_a_real_slowdown(seed):
    a, b = paired(seed, 2.0, 0.20, noise=0.03, drift=0.1)
    d = gate.decide_paired(a, b, 0.05, blocks=[30, 30, 30])
    assert d.failed and d.verdict == "SLOWER"
    assert d.ci[0] <= d.ratio <= d.ci[1] and 1.15 < d.ratio < 1.25


def test_gate_tolerates_a_slowdown_within_the_threshold():
    a, b = paired(1, 2.0, 0.03, noise=0.01)
    d = gate.decide_paired(a, b, 0.05)
    assert not d.failed and 1.0 < d.ratio < 1.05


def test_gate_does_not_fail_a_slowdown_within_the_run_to_run_spread():
    # 8% slower on average, but the three repeats disagree by +-15%: not beyond the measured spread
    a, b = [], []
    for shift in (0.93, 1.08, 1.23):
        a += [1.0] * 30
        b += [shift] * 30
    d = gate.decide_paired(a, b, 0.05, blocks=[30, 30, 30])
    assert d.slowdown > 0.05 and d.spread > 0.14 and not d.failed and d.verdict == "slower within noise"


def test_gate_reports_a_speedup_as_such():
    a, b = paired(2, 2.0, -0.3, noise=0.02)
    d = gate.decide_paired(a, b, 0.05)
    assert not d.failed and d.verdict == "faster"


def test_gate_against_a_saved_run():
    rng = random.Random(0)
    base = gate.summarize([1.0 + 0.01 * rng.random() for _ in range(50)])
    same = gate.summarize([1.0 + 0.01 * rng.random() for _ in range(50)])
    slow = gate.summarize([1.2 + 0.01 * rng.random() for _ in range(50)])
    assert not gate.decide_unpaired(base, same, 0.05).failed
    assert gate.decide_unpaired(base, slow, 0.05).failed
    # summaries without raw times (pytest-benchmark saves without --benchmark-save-data)
    strip = lambda s: gate.Summary(s.median, s.q1, s.q3, s.n)
    assert not gate.decide_unpaired(strip(base), strip(same), 0.05).failed
    assert gate.decide_unpaired(strip(base), strip(slow), 0.05).failed


def test_parse_threshold():
    assert gate.parse_threshold("5%") == pytest.approx(0.05)
    assert gate.parse_threshold("0.1") == pytest.approx(0.1)
    with pytest.raises(argparse.ArgumentTypeError):
        gate.parse_threshold("-3%")


def test_ab_compare_on_the_synthetic_clock():
    dev = FakeEvents()
    rng = random.Random(3)
    same = gate.ab_compare(workload(dev, "A", 1.0, rng, 0.02), workload(dev, "B", 1.0, rng, 0.02), dev,
                           rounds=20, repeats=3, threshold=0.05)
    slow = gate.ab_compare(workload(dev, "A", 1.0, rng, 0.02), workload(dev, "B", 1.2, rng, 0.02), dev,
                           rounds=20, repeats=3, threshold=0.05)
    assert len(same[0]) == len(same[1]) == 60
    assert not same[2].failed and slow[2].failed


# ----------------------------------------------------------------------------------------------------------
# Correctness under the tolerance model
# ----------------------------------------------------------------------------------------------------------
def test_check_stage_accepts_the_reference_and_rejects_an_off_by_one():
    case = problems.get("smoke_3x3").case(precision="ieee")
    inp = case.make_inputs("cpu")
    s = case.stages[0]
    args = ((s.stride_h, s.stride_w), s.torch_padding, (s.dil_h, s.dil_w), s.groups, "ieee")
    good = torch.nn.functional.conv2d(inp.x, inp.weights[0], None, *args[:4])
    assert check_stage(inp.x, inp.weights[0], None, good, *args).ok
    shifted = good.clone()
    shifted[..., 1:] = good[..., :-1]  # off by one column
    bad = check_stage(inp.x, inp.weights[0], None, shifted, *args)
    assert not bad.ok and bad.n_bad > 0 and bad.error > 100 * bad.tol
    nan = good.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert not check_stage(inp.x, inp.weights[0], None, nan, *args).ok
    assert not check_stage(inp.x, inp.weights[0], None, good[..., :-1], *args).ok


def test_an_implementation_that_raises_is_reported_not_fatal():
    import types

    from fastconv.bench.case_runner import bench_case

    def conv2d(*args, **kwargs):
        raise NotImplementedError("no kernel for this\nsecond line")

    broken = types.SimpleNamespace(__name__="broken", conv2d=conv2d)
    dev = FakeEvents()
    res = bench_case(problems.get("smoke_3x3").case(), ["cudnn", "fastconv"], torch.device("cpu"), dev, None,
                     rounds=3, package=broken)
    assert res.impls["fastconv"].error == "NotImplementedError: no kernel for this"
    assert res.impls["fastconv"].timing is None and res.impls["cudnn"].timing.rounds == 3
    assert res.impls["cudnn"].check.ok


# ----------------------------------------------------------------------------------------------------------
# Commands without a GPU, package loading
# ----------------------------------------------------------------------------------------------------------
def cli(*argv) -> tuple[int, str]:
    """Run ``python -m fastconv ARGV`` without a GPU; returns (exit status, stdout)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TRITON_INTERPRET="1")
    p = subprocess.run([sys.executable, "-m", "fastconv", *argv], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    return p.returncode, p.stdout


def test_bench_without_gpu_checks_but_never_times(tmp_path):
    rc, out = cli("bench", "--out", str(tmp_path), "--problems", "smoke_3x3,smoke_depthwise")
    assert rc == 0, out
    assert "NOT TIMED" in out and " ms" not in out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["timed"] is False and report["machine"]["gpu"] is None
    for r in report["results"]:
        assert r["speedup_vs_cudnn"] is None
        for impl in r["impls"].values():
            assert "timing" not in impl and impl["check"]["ok"]
    rc, out = cli("bench", "--update-benchmarks-md", str(tmp_path / "B.md"))
    assert rc == 2 and not (tmp_path / "B.md").exists()


def test_gate_fails_a_planted_off_by_one_and_passes_a_clean_copy(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import make_candidate
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    clean = tmp_path / "clean"
    (clean / "fastconv").parent.mkdir()
    import shutil

    shutil.copytree(REPO / "fastconv", clean / "fastconv", ignore=shutil.ignore_patterns("__pycache__"))
    obo = make_candidate.make("off-by-one", tmp_path / "obo", REPO / "fastconv")
    rc, out = cli("gate", "--against", str(clean), "--candidate", str(obo), "--json", str(tmp_path / "g.json"))
    assert rc == gate.EXIT_WRONG, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("gate: FAIL (correctness)") and "relative error" in last
    assert json.loads((tmp_path / "g.json").read_text())["status"] == gate.EXIT_WRONG
    rc, out = cli("gate", "--against", str(clean), "--json", str(tmp_path / "clean.json"))
    assert rc == gate.EXIT_PASS and "NOT TIMED" in out, out
    problems = json.loads((tmp_path / "clean.json").read_text())["problems"]
    assert all(p["candidate_kernels"] and p["candidate_kernels"] == p["baseline_kernels"] for p in problems)
    assert "DIFFER" not in out and " same " in out  # the configs column: both sides ran the same configs
    rc, out = cli("gate", "--against", "no-such-ref-xyz")
    assert rc == gate.EXIT_USAGE and "neither a directory" in out


def test_load_package_side_by_side_rewrites_absolute_imports(tmp_path):
    import shutil

    src = tmp_path / "tree" / "fastconv"
    shutil.copytree(REPO / "fastconv", src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "extra.py").write_text("from fastconv.problem import ConvProblem\nimport fastconv.dispatch as d\n")
    pkg, desc = gate.load_package(str(tmp_path / "tree"), "test")
    import fastconv

    assert pkg is not fastconv and pkg.__name__.startswith("fastconv_test_")
    extra = __import__(pkg.__name__ + ".extra", fromlist=["x"])
    assert extra.ConvProblem is pkg.ConvProblem and extra.ConvProblem is not fastconv.ConvProblem
    assert extra.d.__name__ == pkg.__name__ + ".dispatch"


def test_a_side_by_side_copy_leaves_the_registered_op_to_the_real_package(tmp_path, monkeypatch):
    """torch's op registry is process-wide: a copy imported by the gate registers its own namespace's op,
    and ``torch.ops.fastconv.conv2d`` keeps running this package's code (not a copy's, whose files may go)."""
    import importlib
    import shutil

    import fastconv

    shutil.copytree(REPO / "fastconv", tmp_path / "tree" / "fastconv", ignore=shutil.ignore_patterns("__pycache__"))
    pkg, _ = gate.load_package(str(tmp_path / "tree"), "test")
    copy_ops = importlib.import_module(pkg.__name__ + ".ops")
    assert pkg.__name__ == copy_ops._NAMESPACE and fastconv.ops._NAMESPACE == "fastconv"
    seen = []
    real_lookup = fastconv.functional._lookup
    monkeypatch.setattr(fastconv.functional, "_lookup", lambda *a, **k: (seen.append(1), real_lookup(*a, **k))[1])
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    y = torch.ops.fastconv.conv2d(x, w, None, [1, 1], [0, 0, 0, 0], [1, 1], 1, None, None)
    assert seen and y.shape == (1, 3, 3, 3)


def test_load_package_from_git_head():
    pkg, desc = gate.load_package("HEAD", "test")
    assert desc.startswith("git HEAD") and hasattr(pkg, "conv2d")


def test_saved_runs_are_read_per_case(tmp_path):
    bench = {"schema": "fastconv-bench/1", "machine": {"gpu": "NVIDIA H100 80GB HBM3"}, "results": [
        {"id": "kb80-tf32-nchw", "impls": {"fastconv": {"timing": {"times_ms": [2.0, 2.1, 1.9]}}}}]}
    (tmp_path / "b.json").write_text(json.dumps(bench))
    runs, gpu = gate.load_saved_run(tmp_path / "b.json")
    assert gpu == "NVIDIA H100 80GB HBM3" and runs["kb80-tf32-nchw"].median == pytest.approx(2.0)
    pb = {"machine_info": {"fastconv": {"gpu": "NVIDIA H100 80GB HBM3"}}, "benchmarks": [
        {"extra_info": {"impl": "fastconv", "timed": True, "problem": "kb80", "dtype": "float32",
                        "precision": "tf32", "layout": "nchw"},
         "stats": {"median": 2e-3, "q1": 1.9e-3, "q3": 2.1e-3, "rounds": 40}},
        {"extra_info": {"impl": "cudnn", "timed": True, "problem": "kb80", "dtype": "float32",
                        "precision": "tf32", "layout": "nchw"},
         "stats": {"median": 2.4e-3, "q1": 2.3e-3, "q3": 2.5e-3, "rounds": 40}}]}
    (tmp_path / "p.json").write_text(json.dumps(pb))
    runs, gpu = gate.load_saved_run(tmp_path / "p.json")
    assert list(runs) == ["kb80-tf32-nchw"] and runs["kb80-tf32-nchw"].median == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------------------------
# Report formatting and chart (a synthetic timed report)
# ----------------------------------------------------------------------------------------------------------
def synthetic_report():
    ceil = roofline.ceilings_for("NVIDIA H100 80GB HBM3", measure=False)
    rows = []
    for name, cud, fast in (("kb80", 2.4, 2.0), ("kb82", 1.0, 0.8)):
        c = problems.get(name).case()
        roof = roofline.roofline(c.flops, c.min_bytes, fast * 1e-3, ceil, "tf32").to_json()
        rows.append({"problem": name, "id": c.id, "timed": True, "intensity": c.flops / c.min_bytes,
                     "flops": c.flops, "precision": "tf32", "precision_class": "tf32", "label": "tf32",
                     "layout": "nchw", "speedup_vs_cudnn": cud / fast, "impls": {
                         "cudnn": {"timing": {"median_ms": cud}, "kernels": [{"kernel": "cudnn"}]},
                         "fastconv": {"timing": {"median_ms": fast}, "roofline": roof,
                                      "kernels": [{"kernel": "igemm", "config": "BLOCK_M128_w4_s3"}],
                                      "check": {"rel_error": 3e-4, "ok": True}},
                         "direct": {"skipped": "skipped: ~3.0 s per call estimated (> 1 s)"}}})
    return {"timed": True, "date": "2025-01-01T00:00:00+00:00", "command": "python -m fastconv bench --quick",
            "timing": "CUDA events", "machine": {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.11"},
            "ceilings": ceil.to_json(), "settings": {"dtype": "float32", "layout": "nchw"}, "results": rows}


def test_table_and_benchmarks_md():
    from fastconv.bench.runner import benchmarks_md, format_table

    rep = synthetic_report()
    table = format_table(rep)
    assert "kb80" in table and "1.20x" in table and "igemm BLOCK_M128_w4_s3" in table and "skipped" in table
    md = benchmarks_md(rep, "benchmarks/latest.png")
    assert "`python -m fastconv bench --quick`" in md and "2025-01-01" in md and "NVIDIA H100" in md
    assert "| kb82 |" in md and "measured (" in md


def test_chart_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from fastconv.bench.chart import draw

    path = draw(synthetic_report(), tmp_path / "c.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------------------
# pytest-benchmark integration
# ----------------------------------------------------------------------------------------------------------
PLUGIN_CONFTEST = """
import os, pytest, torch
os.environ.setdefault("TRITON_INTERPRET", "1")
import fastconv.bench.pytest_bench as plugin
from fastconv.bench import roofline
from fastconv.tuning import timing

pytest_plugins = ["fastconv.bench.pytest_bench"]

class Steps(timing.TimingBackend):
    # each marker advances a synthetic clock: call i lasts 1 + (i % 3) / 10 ms
    name = "synthetic"
    def __init__(self):
        self.n = 0; self.now = 0.0
    def marker(self):
        self.n += 1
        if self.n % 2 == 0:
            self.now += 1 + (self.n // 2 % 3) / 10
        return self.now
    def elapsed_ms(self, a, b): return b - a
    def synchronize(self): pass
    def flush_l2(self): pass
    def describe(self): return "synthetic steps"

if os.environ.get("FAKE_TIMED"):
    _setup = (torch.device("cpu"), Steps(), roofline.ceilings_for("NVIDIA H100 80GB HBM3", measure=False))
    plugin._timed_device = lambda: _setup[0]
    plugin._timed_setup = lambda: _setup

if os.environ.get("SIM_GPUS"):
    # simulated GPUs for pytest-xdist runs: the controller pins workers to them (CUDA_VISIBLE_DEVICES is
    # harmless to a CPU torch), each one is its own lock and model; every GPU interval goes to SIM_LOG
    import time
    from fastconv.testing import pytest_conv

    def gpu():
        return os.environ.get("CUDA_VISIBLE_DEVICES", "none")

    def log(kind, t0, t1):
        with open(os.environ["SIM_LOG"], "a") as f:
            f.write(f"{os.environ.get('PYTEST_XDIST_WORKER')} {gpu()} {kind} {t0!r} {t1!r}\\n")

    pytest_conv.visible_gpus = lambda: os.environ["SIM_GPUS"].split(",")
    plugin._gpu_key = lambda device: "sim-gpu" + gpu()
    _info = plugin.info
    plugin.info = lambda: {**_info(), "gpu": os.environ.get("SIM_MODEL_" + gpu(), "Sim GPU")}
    _bench_case = plugin.bench_case

    def logged_bench_case(*a, **k):
        t0 = time.time()
        try:
            return _bench_case(*a, **k)
        finally:
            log("bench", t0, time.time())

    plugin.bench_case = logged_bench_case

    @pytest.fixture
    def busy_gpu():
        t0 = time.time()
        yield
        log("busy", t0, time.time())
"""

BUSY_TEST = """
import time, pytest

@pytest.mark.parametrize("i", range(4))
def test_busy(busy_gpu, i):
    time.sleep(0.3)  # another suite's test on the same GPU: must never overlap a timed case
"""

PLUGIN_TEST = """
import pytest
pytestmark = pytest.mark.benchmark

@pytest.mark.parametrize("impl", ["fastconv", "cudnn"])
def test_conv(conv_bench, bench_case, impl):
    conv_bench(bench_case, impl)
"""


def run_pytest(tmp_path, *args, fake_timed: bool, problems: str = "smoke_3x3", env: dict | None = None):
    (tmp_path / "conftest.py").write_text(textwrap.dedent(PLUGIN_CONFTEST))
    (tmp_path / "test_b.py").write_text(textwrap.dedent(PLUGIN_TEST))
    # the inner session is a plain one: no xdist worker identity leaks in from an outer `pytest -n` run
    inner = {k: v for k, v in os.environ.items()
             if not k.startswith(("PYTEST_", "FAKE_TIMED", "SIM_", "CUDA_VISIBLE_DEVICES"))}
    inner.update(PYTHONPATH=str(REPO), TRITON_INTERPRET="1", **(env or {}))
    if fake_timed:
        inner["FAKE_TIMED"] = "1"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                        "--bench-problems", problems, *args], cwd=tmp_path, env=inner, capture_output=True,
                       text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_plugin_feeds_device_times_and_extra_info_to_pytest_benchmark(tmp_path):
    rc, out = run_pytest(tmp_path, "--benchmark-json", str(tmp_path / "b.json"), "--benchmark-max-time=0.001",
                         fake_timed=True)
    assert rc == 0, out
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["machine_info"]["fastconv"]["torch"] == torch.__version__
    benches = {b["extra_info"]["impl"]: b for b in data["benchmarks"]}
    assert set(benches) == {"fastconv", "cudnn"}
    for b in benches.values():
        assert b["options"]["timer"] == "device_clock" and b["group"] == "smoke_3x3-tf32-nchw"
        times = b["stats"]["data"]
        assert len(times) == b["extra_info"]["rounds"] >= 10
        assert set(round(t * 1e3, 6) for t in times) <= {1.0, 1.1, 1.2}  # exactly the synthetic device times
        assert b["stats"]["median"] * 1e3 == pytest.approx(b["extra_info"]["median_ms"])
        info = b["extra_info"]
        for key in ("problem", "dtype", "precision", "kernels", "tflops", "gbs", "fraction", "rel_error"):
            assert key in info, key
    assert "speedup_vs_cudnn" in benches["fastconv"]["extra_info"]
    assert "timed on the GPU" in out


def test_plugin_without_gpu_records_nothing(tmp_path):
    rc, out = run_pytest(tmp_path, "--benchmark-json", str(tmp_path / "b.json"), fake_timed=False)
    assert rc == 0, out
    assert "NOT TIMED" in out
    path = tmp_path / "b.json"  # pytest-benchmark may write an empty file, or none, when nothing was timed
    saved = path.read_text() if path.exists() else ""
    assert saved == "" or json.loads(saved)["benchmarks"] == []


def _sim_xdist(tmp_path, gpus: str, *args, models: dict | None = None, problems: str = "smoke_3x3"):
    """An inner ``pytest -n 2 ...`` (``args``) on the simulated GPUs ``gpus``; every GPU interval it logged."""
    env = {"SIM_GPUS": gpus, "SIM_LOG": str(tmp_path / "gpu.log"), "FASTCONV_LOCK_DIR": str(tmp_path / "locks"),
           **{f"SIM_MODEL_{g}": m for g, m in (models or {}).items()}}
    (tmp_path / "gpu.log").unlink(missing_ok=True)
    # one layout: the cases are problems x implementations (the layouts are the plain runs' business)
    rc, out = run_pytest(tmp_path, "-n", "2", "--benchmark-max-time=0.001", "--bench-layout", "nchw", *args,
                         fake_timed=True, env=env, problems=problems)
    log = [line.split() for line in (tmp_path / "gpu.log").read_text().splitlines()]
    return rc, out, [(w, g, kind, float(t0), float(t1)) for w, g, kind, t0, t1 in log]


def _results(tmp_path, stem) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(tmp_path.glob(f"{stem}.*.json"))}


def test_xdist_workers_time_each_gpu_alone_and_keep_results_and_compares_per_gpu(tmp_path):
    """pytest-xdist on simulated GPUs, two inner runs.

    1. Two workers on one GPU, four benchmark cases and four other GPU tests: while a case is timed nothing
       else runs on that GPU; every case is timed once; each worker writes and saves its own results, named
       and labelled by worker and GPU.
    2. ``--dist each`` on two GPUs of different models, against saved runs of both models made from run 1
       (model A's twice as fast): each worker times every case and compares only with its own model's run;
       the regressions on GPU 0 fail the run and are named with their GPU.
    """
    (tmp_path / "test_busy.py").write_text(textwrap.dedent(BUSY_TEST))
    store = tmp_path / "store"
    rc, out, log = _sim_xdist(tmp_path, "0", "--benchmark-json", str(tmp_path / "b.json"),
                              f"--benchmark-storage=file://{store}", "--benchmark-save=run",
                              problems="smoke_3x3,smoke_depthwise")
    assert rc == 0, out
    assert "workers pinned to GPUs (CUDA_VISIBLE_DEVICES) gw0->0, gw1->0; GPUs are SHARED" in out
    assert {g for _, g, *_ in log} == {"0"} and len({w for w, *_ in log}) == 2
    benches = [iv for iv in log if iv[2] == "bench"]
    assert len(benches) == 4 and sum(iv[2] == "busy" for iv in log) == 4
    for w, _, _, t0, t1 in benches:  # a timed case overlaps nothing on its GPU
        others = [iv for iv in log if iv[0] != w or iv[3:] != (t0, t1)]
        assert all(o[4] <= t0 or o[3] >= t1 for o in others), (w, t0, t1, others)
    results = _results(tmp_path, "b")
    assert not (tmp_path / "b.json").exists() and results, out
    timed = []
    for name, data in results.items():
        xd = data["machine_info"]["fastconv"]["xdist"]
        assert name == f"b.{xd['worker']}-gpu0.json" and xd["cuda_visible_devices"] == "0" and xd["workers"] == 2
        timed += data["benchmarks"]
        assert f"{xd['worker']}-gpu0 (Sim GPU): {len(data['benchmarks'])} case(s) timed, results in" in out
    assert sorted(b["name"] for b in timed) == sorted(f"test_conv[{p}-tf32-nchw-{i}]" for p in (
        "smoke_3x3", "smoke_depthwise") for i in ("fastconv", "cudnn"))
    saved = sorted(p.name.split("_", 1)[1] for p in store.glob("*/*.json"))
    assert saved == sorted(f"run-{n.split('.')[1]}.json" for n in results)
    assert "4 case(s) timed on the GPU" in out and "automatically disabled because xdist" not in out

    models = {"0": "Sim GPU A", "1": "Sim GPU B"}
    baselines = tmp_path / "baselines" / "m"
    baselines.mkdir(parents=True)
    data = next(iter(results.values()))
    for model, speed in (("Sim GPU A", 2), ("Sim GPU B", 1)):
        data["machine_info"]["fastconv"]["gpu"] = model
        data["benchmarks"] = [dict(b, stats={k: v / speed if isinstance(v, float) else v
                                             for k, v in b["stats"].items()}) for b in timed]
        (baselines / f"000{speed}_{model[-1]}.json").write_text(json.dumps(data))
    (tmp_path / "test_busy.py").unlink()
    rc, out, _ = _sim_xdist(tmp_path, "0,1", "--dist", "each", "--benchmark-json", str(tmp_path / "c.json"),
                            f"--benchmark-storage=file://{baselines.parent}", "--benchmark-compare=m/000",
                            "--benchmark-compare-fail=median:5%", models=models)
    assert rc == 1, out
    assert "gw0->0, gw1->1" in out and "SHARED" not in out
    results = _results(tmp_path, "c")
    assert sorted(results) == ["c.gw0-gpu0.json", "c.gw1-gpu1.json"]
    for n, data in enumerate(results.values()):
        assert data["machine_info"]["fastconv"]["gpu"] == models[str(n)] and len(data["benchmarks"]) == 2
    regressed = [line for line in out.splitlines() if "PERFORMANCE REGRESSED" in line]
    assert len(regressed) == 2 and all(line.startswith("gw0-gpu0 (Sim GPU A)") for line in regressed), out
    assert "0001_B.json (Sim GPU B)" in out and "0002_A.json (Sim GPU A)" in out  # each left the other out


def test_gate_absolute_floor_ignores_microsecond_jitter_of_latency_bound_problems():
    """A 15% slowdown of a 17 us problem (2.5 us: host launch jitter, seen on the H100 with unchanged code)
    stays under the 5 us floor; the same 15% on a 2 ms problem fails."""
    from fastconv.bench.perf_gate import decide_paired

    rng = random.Random(7)
    for base_ms, should_fail in ((0.017, False), (2.0, True)):
        base = [base_ms * (1 + 0.01 * rng.random()) for _ in range(90)]
        cand = [b * 1.15 for b in base]
        d = decide_paired(base, cand, 0.05, blocks=[30, 30, 30], min_abs_ms=0.005)
        assert d.failed is should_fail, (base_ms, d)


def test_the_tuner_picks_configs_by_device_time_even_when_the_host_dominates(monkeypatch, tmp_path):
    # three configs of a ~15 us kernel behind ~100 us of host dispatch; the fastest on the device has the
    # slowest host path.  Timed through the host (do_bench's way) the tuner would pick BLOCK=16.
    from types import SimpleNamespace

    from fastconv.kernels.config import KernelConfig
    from fastconv.tuning import autotuner

    dev = QueueDevice()
    monkeypatch.setattr(timing, "CudaEvents", lambda device: dev)
    monkeypatch.setattr(autotuner, "cache_path", lambda device: tmp_path / "tuning.json")
    monkeypatch.setattr(autotuner.fitness, "device_target", lambda device: None)  # no GPU to ask
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    cost = {16: (0.080, 0.016), 32: (0.120, 0.013), 64: (0.100, 0.020)}  # BLOCK: (host ms, device ms)
    configs = [KernelConfig.of(num_warps=4, num_stages=1, BLOCK=b) for b in cost]
    kernel = SimpleNamespace(name="simulated", configs=lambda p, precision: configs)
    run = lambda cfg: dev.call(*cost[cfg["BLOCK"]])()
    problem = ConvProblem.make(1, 64, 64, 14, 14, 3, padding=1)
    best = autotuner.choose_config(kernel, problem, "tf32", "nchw", run, torch.device("cuda", 0))
    assert best.config["BLOCK"] == 32 and best.source == "timed"
    dev2 = QueueDevice()
    host_bound = {b: timing.measure({"c": lambda b=b: dev2.call(*cost[b])()}, dev2, rounds=10, hold=False)["c"]
                  for b in cost}
    assert min(host_bound, key=lambda b: host_bound[b].median_ms) == 16  # what a host-bound timer picks
