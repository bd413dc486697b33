"""The tuner without a GPU: the record of every candidate's time, the untimed heuristic, where a choice comes
from (``config_source``), ``fastconv.tune``'s orchestration with a fake compiler and timer, tuning files and
their refusal on another GPU or Triton, the launch-site warm-up mode, fewer binaries per network."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

import fastconv
from fastconv.env import triton_version
from fastconv.kernels import REGISTRY, launch
from fastconv.kernels.config import KernelConfig
from fastconv.problem import ConvProblem
from fastconv.testing import assert_conv_close
from fastconv.tuning import autotuner, heuristic

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _fake_kernel(configs, name="fake"):
    return SimpleNamespace(name=name, configs=lambda p, precision: list(configs))


def _tiles(*mn):
    return [KernelConfig.of(num_warps=4, num_stages=2, BLOCK_M=m, BLOCK_N=n, BLOCK_K=32) for m, n in mn]


# -- the record --------------------------------------------------------------------------------------------
def test_tune_job_records_every_candidates_time(tuning_sandbox, tmp_path):
    configs = _tiles((64, 64), (128, 64), (128, 128))
    times = {configs[0].name(): 2.0, configs[1].name(): 1.0, configs[2].name(): None}  # the last one spilled
    p = ConvProblem.make(8, 64, 128, 28, 28, 3, padding=1)
    job = autotuner.TuneJob(_fake_kernel(configs), p, "tf32", "nchw", CPU, run=lambda cfg: None)
    compiled = []
    with autotuner.record_to(tmp_path / "rec.jsonl"):
        res = autotuner.tune_job(job, compile=lambda j, cs, n: compiled.append([c.name() for c in cs]),
                                 timer=lambda j, cs: {c.name(): times[c.name()] for c in cs})
    assert res.config == configs[1] and compiled == [[c.name() for c in configs]]
    (rec,) = [json.loads(line) for line in (tmp_path / "rec.jsonl").read_text().splitlines()]
    assert rec["times_ms"] == times and rec["best"] == configs[1].name()
    assert rec["kernel"] == "fake" and rec["precision"] == "tf32" and rec["layout"] == "nchw"
    assert rec["gpu"] == "interpreter" and rec["triton"] == triton_version()
    assert ConvProblem(**rec["problem"]) == p
    assert rec["features"] == dict(zip(heuristic.FEATURES, heuristic.features(p)))
    assert {k: KernelConfig.from_json(v) for k, v in rec["configs"].items()} == {c.name(): c for c in configs}
    # the environment switch records the same way
    os.environ["FASTCONV_TUNE_RECORD"] = str(tmp_path / "env.jsonl")
    try:
        autotuner.tune_job(job, compile=lambda *a: None, timer=lambda j, cs: {c.name(): 1.0 for c in cs})
    finally:
        del os.environ["FASTCONV_TUNE_RECORD"]
    assert len((tmp_path / "env.jsonl").read_text().splitlines()) == 1
    # measuring only (scripts/fit_heuristic.py): recorded, but no choice kept
    autotuner.clear_cache()
    with autotuner.record_to(tmp_path / "rec.jsonl"):
        autotuner.tune_job(job, compile=lambda *a: None, timer=lambda j, cs: {c.name(): 1.0 for c in cs},
                           commit=False)
    assert len((tmp_path / "rec.jsonl").read_text().splitlines()) == 2 and not autotuner._MEMORY


def test_tune_job_refuses_when_no_candidate_fits(tuning_sandbox):
    configs = _tiles((64, 64), (128, 64))
    job = autotuner.TuneJob(_fake_kernel(configs), ConvProblem.make(1, 16, 16, 8, 8, 3), "tf32", "nchw", CPU,
                            run=lambda cfg: None)
    with pytest.raises(RuntimeError, match="no config of fake could run"):
        autotuner.tune_job(job, compile=lambda *a: None, timer=lambda j, cs: {c.name(): math.inf for c in cs})


# -- the heuristic ------------------------------------------------------------------------------------------
A, B, C = _tiles((64, 64), (128, 128), (256, 128))


def _record(p: ConvProblem, times: dict, kernel="igemm", layout="nchw", arch="sm_90") -> dict:
    cfgs = {c.name(): c for c in (A, B, C)}
    return {"kernel": kernel, "problem": p.__dict__.copy(), "precision": "tf32", "layout": layout, "arch": arch,
            "gpu": "Fake GPU", "triton": "x", "times_ms": {k.name(): v for k, v in times.items()},
            "configs": {k.name(): cfgs[k.name()].to_json() for k in times}}


def _synthetic_records() -> list[dict]:
    """Small problems: A fastest; large ones: C fastest; B always in between."""
    recs = []
    for batch in (1, 2, 4):
        recs.append(_record(ConvProblem.make(batch, 64, 64, 14, 14, 3, padding=1), {A: 1.0, B: 1.3, C: 2.0}))
    for batch in (32, 64, 128):
        recs.append(_record(ConvProblem.make(batch, 256, 256, 56, 56, 3, padding=1), {A: 3.0, B: 1.4, C: 1.0}))
    return recs


def test_heuristic_picks_what_the_table_says_for_a_near_identical_problem():
    model = heuristic.Heuristic.from_json(heuristic.fit_table(_synthetic_records())["sm_90"])
    group = heuristic.group_of("igemm", "float32", "tf32", "nchw")
    small = ConvProblem.make(2, 64, 64, 14, 14, 3, padding=1, has_bias=True)  # differs only in the bias
    large = ConvProblem.make(48, 256, 256, 56, 56, 3, padding=1)  # between two measured batch sizes
    assert model.choose(group, small, [A, B, C]) == A
    assert model.choose(group, large, [A, B, C]) == C
    assert model.choose(group, large, [A, B]) == B, "the best of the candidates offered"
    # no data for another group (layout, kernel) or for the candidates: no answer, the rule decides
    assert model.choose(heuristic.group_of("igemm", "float32", "tf32", "nhwc"), small, [A, B, C]) is None
    assert model.choose(group, small, _tiles((32, 32))) is None


def test_heuristic_scores_a_config_a_neighbour_did_not_measure_as_that_neighbours_worst():
    p = ConvProblem.make(8, 64, 64, 28, 28, 3, padding=1)
    model = heuristic.Heuristic.from_json(heuristic.fit_table([_record(p, {A: 1.0, B: 1.5})])["sm_90"])
    s = model.scores(heuristic.group_of("igemm", "float32", "tf32", "nchw"), heuristic.features(p),
                     [A.name(), B.name(), C.name()])
    assert s[A.name()] == 0.0 and s[B.name()] == pytest.approx(math.log(1.5)) == s[C.name()]


def test_rule_takes_the_largest_tile_that_gives_two_waves_else_the_smallest():
    configs = _tiles((64, 64), (128, 64), (128, 128), (256, 128))
    big = ConvProblem.make(32, 64, 256, 56, 56, 3, padding=1)  # 100352 x 256 outputs: 784 tiles of 256x128
    assert heuristic.rule_choice(big, configs, sm_count=132) == configs[3]
    assert heuristic.rule_choice(big, configs, sm_count=700) == configs[2]  # 784 tiles of 256x128 < 2 x 700
    tiny = ConvProblem.make(1, 64, 64, 7, 7, 3, padding=1)  # 49 x 64 outputs: never two waves
    assert heuristic.rule_choice(tiny, configs, sm_count=132) == configs[0]
    twins = [KernelConfig(c.blocks + (("PREP", prep),), 4, 2) for c in configs[:1] for prep in (1, 0)]
    assert heuristic.rule_choice(tiny, twins, sm_count=132) == twins[0], "ties keep the candidates' order"


def test_leave_one_out_measures_the_pick_against_the_recorded_best():
    recs = _synthetic_records()
    rows = heuristic.leave_one_out(recs, "sm_90", sm_count=132)
    assert len(rows) == len(recs)
    by = {r["short"]: r for r in rows}
    mid_small = by[ConvProblem.make(2, 64, 64, 14, 14, 3, padding=1).short()]
    assert mid_small["picked"] == A.name() and mid_small["ratio"] == 1.0  # its neighbours agree
    mid_large = by[ConvProblem.make(64, 256, 256, 56, 56, 3, padding=1).short()]
    assert mid_large["picked"] == C.name() and mid_large["ratio"] == 1.0
    assert all(r["source"] == "heuristic" for r in rows)
    assert all(r["fitted_ratio"] == 1.0 for r in rows), "a problem the table holds: its own measurement decides"
    # a lone problem has no neighbour once left out: the rule decides and is measured
    lone = heuristic.leave_one_out([recs[0]], "sm_90", sm_count=132)
    assert lone[0]["source"] == "rule" and lone[0]["ratio"] == lone[0]["rule_ratio"]


def test_cover_keeps_every_row_within_the_tolerance_with_few_configs():
    rows = [heuristic.Row("g", (0.0,), {"a": 1.0, "b": 1.04, "c": 1.5}),
            heuristic.Row("g", (1.0,), {"a": 1.3, "b": 1.0, "c": 1.01}),
            heuristic.Row("g", (2.0,), {"a": 2.0, "b": 1.5, "c": 1.0})]
    # most rows still uncovered first; ties to the lowest total log time over all rows (c 0.415 < b 0.445)
    assert heuristic.cover(rows, 0.0) == ["c", "b", "a"]  # every row's own best
    assert heuristic.cover(rows, 0.05) == ["c", "b"]
    assert heuristic.cover(rows, 0.6) == ["c"]
    for tol in (0.0, 0.05, 0.6):
        chosen = heuristic.cover(rows, tol)
        assert all(min(r.times[n] for n in chosen) <= 1 + tol for r in rows)


def test_leave_one_out_with_a_palette_picks_only_from_it():
    recs = _synthetic_records()  # B is within 45% of the best everywhere, A and C only on half the rows
    free = heuristic.leave_one_out(recs, "sm_90", sm_count=132)
    tight = heuristic.leave_one_out(recs, "sm_90", sm_count=132, palette=0.45)
    assert {r["picked"] for r in free} == {A.name(), C.name()} and all(r["ratio"] == 1.0 for r in free)
    assert {r["picked"] for r in tight} == {B.name()}
    assert sorted(round(r["ratio"], 6) for r in tight) == [1.3] * 3 + [1.4] * 3
    assert all(r["fitted_ratio"] == 1.0 for r in tight), "what the table ships knows no palette"


def test_the_packaged_table_is_valid():
    data = heuristic.table("heuristic")
    for arch, entry in data["archs"].items():
        assert arch.startswith("sm_") and len(heuristic.Heuristic.from_json(entry)) == len(entry["rows"])
        for row in entry["rows"]:
            assert len(row["x"]) == len(heuristic.FEATURES) and min(row["times"].values()) == 1.0


# -- where a choice comes from ------------------------------------------------------------------------------
@pytest.fixture
def fake_gpu(monkeypatch, tuning_sandbox):
    """``choose_config`` on a "cuda" device without one: an sm_90 with a name, the synthetic heuristic."""
    monkeypatch.setattr(autotuner.fitness, "device_target", lambda device: "sm_90")
    monkeypatch.setattr(autotuner, "device_name", lambda device: "Fake GPU" if device.type == "cuda" else
                        "interpreter")
    model = heuristic.Heuristic.from_json(heuristic.fit_table(_synthetic_records())["sm_90"])
    monkeypatch.setattr(heuristic, "default_heuristic", lambda arch: model if arch == "sm_90" else None)
    monkeypatch.delenv("FASTCONV_AUTOTUNE", raising=False)
    return torch.device("cuda", 0)


def test_a_gpu_choice_is_untimed_by_default_and_timed_on_request(fake_gpu, monkeypatch):
    kernel = _fake_kernel([A, B, C], name="igemm")
    small = ConvProblem.make(2, 64, 64, 14, 14, 3, padding=1)
    runs = []
    choice = autotuner.choose_config(kernel, small, "tf32", "nchw", runs.append, fake_gpu)
    assert choice == (A, "heuristic") and not runs, "nothing launched, nothing timed"
    big_unseen = ConvProblem.make(64, 64, 64, 56, 56, 3, padding=1)
    assert autotuner.choose_config(kernel, big_unseen, "tf32", "nhwc", runs.append, fake_gpu).source == \
        "heuristic"  # no nhwc data: the rule
    monkeypatch.setattr(autotuner, "compile_parallel", lambda job, configs, jobs: None)
    monkeypatch.setattr(autotuner, "time_on_device", lambda job, configs: {A.name(): 3.0, B.name(): 1.0,
                                                                           C.name(): 2.0})
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "1")
    assert autotuner.choose_config(kernel, small, "tf32", "nchw", runs.append, fake_gpu) == (B, "timed")
    assert autotuner.choose_config(kernel, small, "tf32", "nchw", runs.append, fake_gpu) == (B, "memory")
    monkeypatch.delenv("FASTCONV_AUTOTUNE")
    autotuner._MEMORY.clear()
    autotuner._DISK_LOADED.clear()  # a new process: the choice comes from the disk cache, untimed
    assert autotuner.choose_config(kernel, small, "tf32", "nchw", runs.append, fake_gpu) == (B, "disk")
    with autotuner.tuning_session():
        other = ConvProblem.make(4, 64, 64, 14, 14, 3, padding=1)
        assert autotuner.choose_config(kernel, other, "tf32", "nchw", runs.append, fake_gpu) == (B, "timed")


def test_the_interpreter_keeps_the_first_candidate(tuning_sandbox):
    p = ConvProblem.make(1, 16, 16, 8, 8, 3, padding=1)
    kernel = REGISTRY["igemm"]
    os.environ["FASTCONV_AUTOTUNE"] = "1"  # even when asked: nothing can be timed in the interpreter
    try:
        assert autotuner.choose_config(kernel, p, "tf32", "nchw", lambda c: None, CPU) == \
            (kernel.configs(p, "tf32")[0], "default")
    finally:
        del os.environ["FASTCONV_AUTOTUNE"]


# -- fastconv.tune ----------------------------------------------------------------------------------------------
def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(fastconv.Conv2d(3, 8, 3, padding=1), nn.ReLU(), fastconv.Conv2d(8, 8, 3, padding=1),
                         fastconv.Conv2d(8, 8, 3, padding=1), fastconv.Conv2d(8, 16, 1))


class FakeTuner:
    """Stands for the GPU: records compile calls, times the *last* candidate fastest."""

    def __init__(self):
        self.compiled: list[tuple[str, list[str], int | None]] = []
        self.timed: list[str] = []

    def compile(self, job, configs, jobs):
        self.compiled.append((job.key, [c.name() for c in configs], jobs))

    def timer(self, job, configs):
        self.timed.append(job.key)
        return {c.name(): 1.0 + (len(configs) - i) for i, c in enumerate(configs)}


def _plans(model, x):
    out, plans = x, []
    for m in model:
        if isinstance(m, fastconv.Conv2d):
            plans.append(fastconv.plan(out, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups))
        out = m(out)
    return plans


def test_tune_captures_dedups_compiles_times_saves_and_the_model_uses_it(tuning_sandbox, tmp_path):
    model, x = _tiny_model(), torch.randn(1, 3, 8, 8)
    assert {p.config_source for p in _plans(model, x)} == {"default"}
    fake, log = FakeTuner(), io.StringIO()
    rows = fastconv.tune(model, x, save=tmp_path / "t.json", jobs=3, compile=fake.compile, timer=fake.timer,
                         stream=log)
    assert len(rows) == 3, "four convs, two with the same signature"
    assert [r["key"] for r in rows] == [k for k, _, _ in fake.compiled] == fake.timed
    assert all(n == 3 for _, _, n in fake.compiled)
    plans = _plans(model, x)
    for r, (_, names, _) in zip(rows, fake.compiled):
        assert r["source"] == "timed" and r["config"] == names[-1] and len(names) > 1
    assert [p.config_source for p in plans] == ["memory"] * 4
    assert [p.config.name() for p in plans] == [rows[0]["config"], rows[1]["config"], rows[1]["config"],
                                               rows[2]["config"]]
    y = model(x)  # the tuned (last) configs compute the right thing
    h = x
    for m in model[:-1]:
        h = m(h)
    assert_conv_close(y, h, model[-1].weight, model[-1].bias)
    text = log.getvalue()
    assert "3 distinct conv call(s)" in text and text.count("configs, compiled") == 3 and "saved to" in text
    # tuned before: not timed again (unless retune)
    again = FakeTuner()
    rows2 = fastconv.tune(model, x, compile=again.compile, timer=again.timer, progress=False)
    assert not again.timed and {r["source"] for r in rows2} == {"memory"}
    # the file, loaded into a fresh process, gives the same choices
    saved = json.loads((tmp_path / "t.json").read_text())
    assert saved["gpu"] == "interpreter" and saved["triton"] == triton_version() and len(saved["choices"]) == 3
    autotuner.clear_cache()
    fastconv.functional.forget_plans()
    assert {p.config_source for p in _plans(model, x)} == {"default"}
    assert fastconv.load_tuning(tmp_path / "t.json") == 3
    loaded = _plans(model, x)
    assert [p.config_source for p in loaded] == ["loaded"] * 4
    assert [p.config for p in loaded] == [p.config for p in plans]


def test_tune_needs_a_timer_without_a_gpu():
    with pytest.raises(RuntimeError, match="CUDA device"):
        fastconv.tune(_tiny_model(), torch.randn(1, 3, 8, 8))
    with pytest.raises(TypeError, match="example_inputs"):
        fastconv.tune(_tiny_model(), "not a tensor", timer=lambda j, c: {})


def _tuning_file(path: Path, **changes) -> Path:
    data = {"format": autotuner.TUNING_FILE_FORMAT, "gpu": "interpreter", "triton": triton_version(),
            "choices": {}, **changes}
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("changes, words", [
    ({"gpu": "NVIDIA H200"}, ["gpu 'NVIDIA H200'", "here: 'interpreter'"]),
    ({"triton": "0.0.1"}, ["triton '0.0.1'", f"here: '{triton_version()}'"]),
])
def test_load_tuning_refuses_another_gpu_or_triton(tuning_sandbox, tmp_path, changes, words):
    path = _tuning_file(tmp_path / "t.json", **changes)
    with pytest.raises(autotuner.TuningFileMismatch) as err:
        fastconv.load_tuning(path)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert not autotuner._MEMORY


def test_load_tuning_refuses_what_is_not_a_tuning_file(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").write_text("not json")
    for name in ("a.json", "b.json"):
        with pytest.raises(ValueError, match="fastconv.load_tuning"):
            fastconv.load_tuning(tmp_path / name)


def test_the_tuning_file_environment_variable(tuning_sandbox, tmp_path, monkeypatch):
    model, x = _tiny_model(), torch.randn(1, 3, 8, 8)
    first = _plans(model, x)[0]
    kernel = REGISTRY[first.kernel]
    other = kernel.configs(first.problem, first.precision)[-1]
    key = autotuner._key_str(first.kernel, first.problem, str(first.precision), first.input_layout)
    path = _tuning_file(tmp_path / "t.json", choices={key: other.to_json()})
    fastconv.functional.forget_plans()
    monkeypatch.setenv("FASTCONV_TUNING_FILE", str(path))
    assert (_plans(model, x)[0].config, _plans(model, x)[0].config_source) == (other, "loaded")
    autotuner.clear_cache()
    fastconv.functional.forget_plans()
    monkeypatch.setenv("FASTCONV_TUNING_FILE", str(_tuning_file(tmp_path / "w.json", gpu="NVIDIA H200")))
    for _ in range(2):  # refused at every call, not only the first
        with pytest.raises(autotuner.TuningFileMismatch):
            model(x)
    fastconv.functional.forget_plans()


def test_tune_cli_needs_a_gpu(tmp_path, capsys):
    from fastconv.cli import main

    assert main(["tune", "--network", "resnet18", "--save", str(tmp_path / "t.json")]) == 2
    assert "CUDA GPU" in capsys.readouterr().err


# -- compiling in parallel: launch sites in warm-up mode ------------------------------------------------------
def test_warmup_launches_compile_without_launching():
    calls = []

    class Fn:
        arg_names = ["x_ptr", "n"]

        def warmup(self, **kw):
            calls.append(("warmup", kw))

        def __getitem__(self, grid):
            return lambda **kw: calls.append(("launch", kw))

    site = launch.FastLaunch(Fn(), (4,), ("x_ptr",), num_warps=4)
    with launch.warmup_launches():
        site((None,), lambda: {"x_ptr": None, "n": 3})
    assert calls == [("warmup", {"x_ptr": None, "n": 3, "grid": (4, 1, 1), "num_warps": 4})]
    assert site.launches == 0 and not site._entries


def test_compile_parallel_offers_every_config_in_warmup_mode_and_leaves_errors_to_timing():
    seen = []

    def run(cfg):
        seen.append((cfg, getattr(launch._WARMUP, "on", False)))
        if cfg is B:
            raise RuntimeError("compile error, reported later by the timed launch")

    job = autotuner.TuneJob(_fake_kernel([A, B, C]), ConvProblem.make(1, 8, 8, 8, 8, 3), "tf32", "nchw", CPU, run)
    autotuner.compile_parallel(job, [A, B, C], jobs=2)
    assert seen == [(A, True), (B, True), (C, True)]
    assert not getattr(launch._WARMUP, "on", False)


# -- fewer binaries ---------------------------------------------------------------------------------------------
def test_no_specialize_is_honoured_by_the_static_gate_signature():
    from fastconv.kernels import igemm
    from fastconv.kernels.specialize import jit_specialization, no_specialize_of

    names = no_specialize_of(igemm.igemm_conv2d_kernel)
    assert {"KH", "KW", "pad_h", "conv_stride_w", "H"} <= names and not names & {"C_IN_G", "stride_xc", "M"}
    sig, consts = jit_specialization({"pad_h": 1, "H": 32, "M": 32, "stride_xc": 1}, names)
    assert sig == {"pad_h": "i32", "H": "i32", "M": "i32:16"} and consts == {"stride_xc": 1}


_SHARING = r"""
import os, sys, json
os.environ["TRITON_INTERPRET"] = "0"
import torch
from fastconv.kernels import igemm
from fastconv.kernels.specialize import jit_key
from fastconv.precision import Precision
from fastconv.problem import ConvProblem

def key(p, cfg):
    meta = lambda s, cl=True: torch.empty(s, device="meta").contiguous(
        memory_format=torch.channels_last if cl else torch.contiguous_format)
    x, y = meta(p.input_shape), meta(p.output_shape)
    wp = torch.empty(p.c_out, p.gemm_k, device="meta")
    args = igemm._igemm_args(x, wp, None, y, p, Precision("tf32"), cfg, round_a=False, upcast=False)
    return jit_key(igemm.igemm_conv2d_kernel, args, num_warps=4, num_stages=3)

cfg = dict(BLOCK_M=128, BLOCK_N=64, BLOCK_K=32)
P = lambda *a, **k: ConvProblem.make(*a, channels_last=True, **k)
print(json.dumps([
    key(P(8, 64, 128, 56, 56, 3, 1, 1), cfg) == key(P(8, 64, 128, 56, 56, 1, 2, 0), cfg),  # 3x3 vs 1x1 s2
    key(P(8, 64, 128, 56, 56, 3, 1, 1), cfg) == key(P(8, 64, 128, 28, 28, 3, 1, 1), cfg),  # map size
    key(P(8, 64, 128, 56, 56, 3, 1, 1), cfg) == key(P(8, 64, 128, 56, 56, 5, 1, 2, 2), cfg),  # 5x5 dilated
    key(P(8, 64, 128, 56, 56, 3, 1, 1), cfg) == key(P(8, 48, 128, 56, 56, 3, 1, 1), cfg),  # C_in 48: not /16
]))
"""


def test_layers_differing_only_in_geometry_share_one_igemm_binary():
    """Triton's own specialisation (a compiled JITFunction, in a process without the interpreter) gives a 3x3,
    a strided 1x1, another map size and a dilated 5x5 of the same channels and config one key; channel
    counts that change the alignment of the loads do not."""
    p = subprocess.run([sys.executable, "-c", _SHARING], capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == [True, True, True, False]


# -- networks' conv layers without torchvision -------------------------------------------------------------
@pytest.mark.parametrize("name, convs, first", [
    ("resnet18", 20, "8x3x224x224 -> 64, k7x7 s2x2 p3x3 d1x1 g1 float32"),
    ("resnet50", 53, "8x3x224x224 -> 64, k7x7 s2x2 p3x3 d1x1 g1 float32"),
    ("mobilenet_v2", 52, "8x3x224x224 -> 32, k3x3 s2x2 p1x1 d1x1 g1 float32"),
    ("efficientnet_b0", 81, "8x3x224x224 -> 32, k3x3 s2x2 p1x1 d1x1 g1 float32"),
    ("vgg16", 13, "8x3x224x224 -> 64, k3x3 s1x1 p1x1 d1x1 g1 float32 bias"),
])
def test_network_conv_layers_match_torchvisions_counts(name, convs, first):
    from fastconv.bench.archs import network_problems

    found = network_problems(name, 8, torchvision=False)
    assert len(found) == convs and found[0][1].short() == first
    nhwc = network_problems(name, 8, channels_last=True, torchvision=False)
    assert all(p.channels_last for _, p in nhwc) and [p.replace(channels_last=False) for _, p in nhwc] == \
        [p for _, p in found]


# -- the fitting script, on recorded data (no GPU) ------------------------------------------------------------
def test_fit_heuristic_fits_and_evaluates_recorded_data(tmp_path):
    rec = tmp_path / "rec.jsonl"
    rec.write_text("".join(json.dumps(r) + "\n" for r in _synthetic_records()))
    p = subprocess.run([sys.executable, "scripts/fit_heuristic.py", "--fit-only", "--record", str(rec),
                        "--table", str(tmp_path / "h.json")], capture_output=True, text=True, cwd=ROOT,
                       timeout=300, env=dict(os.environ, OUT=str(tmp_path / "out"), PYTHONPATH=str(ROOT)))
    assert p.returncode == 0, p.stderr + p.stdout
    table = json.loads((tmp_path / "h.json").read_text())
    assert len(table["archs"]["sm_90"]["rows"]) == 6 and "_doc" in table
    ev = json.loads((tmp_path / "out" / "fit_heuristic.json").read_text())
    assert len(ev["evaluation"]) == 6 and "all            :    6 problems" in p.stdout
    assert "lat_b1_c64_14_3x3      nchw   igemm" in p.stdout, "a catalogue problem is listed by name"
