"""The networks suite (fastconv.bench.networks) on tiny stand-ins: rows, per-layer breakdown, errors, JSON,
tables and markdown, the CLI, and torchvision's absence.

On a CPU every conv runs in Triton's interpreter and nothing is timed for real: the timed code path runs on a
host clock (:class:`HostClock`) whose numbers mean nothing, only that the path computes and sorts them.
"""

from __future__ import annotations

import json
import sys
import time
import types

import pytest
import torch
import torch.nn as nn

from fastconv.bench import networks as N
from fastconv.cli import main
from fastconv.tuning.timing import TimingBackend

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class HostClock(TimingBackend):
    """Host time as the 'device' clock: runs the timed path anywhere; its numbers are not performance."""

    name = "host clock (test)"

    def marker(self):
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def elapsed_ms(self, start, end) -> float:
        return (end - start) * 1e3

    def synchronize(self) -> None:
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()

    def flush_l2(self) -> None:
        pass


def conv_paths(net: N.Network) -> list[str]:
    return [n for n, m in net.build().named_modules() if isinstance(m, nn.Conv2d)]


@pytest.fixture(scope="module")
def untimed_rows():
    """Two stand-ins end to end, not timed: inverted residuals with squeeze-excite (NHWC), bottlenecks (NCHW)."""
    return [N.bench_network("tiny_efficientnet_b0", 1, "nhwc", device=DEVICE),
            N.bench_network("tiny_resnet50", 2, "nchw", device=DEVICE)]


# ----------------------------------------------------------------------------------------------------------
# Catalogue
# ----------------------------------------------------------------------------------------------------------
def test_catalogue_and_selection():
    assert N.TORCHVISION == ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg16")
    for name in N.TORCHVISION:
        net = N.NETWORKS[name]
        assert net.input_size == 224 and net.source == "torchvision" and net.stand_in in N.STAND_INS
    assert [n.name for n in N.select("all", gpu=True)] == list(N.TORCHVISION)
    assert [n.name for n in N.select("all", gpu=False)] == list(N.STAND_INS)
    assert [n.name for n in N.select("resnet50,vgg16,tiny_vgg16", gpu=False)] == ["tiny_resnet50", "tiny_vgg16"]
    assert [n.name for n in N.select("tiny", gpu=True)] == list(N.STAND_INS)
    with pytest.raises(ValueError, match="unknown network 'alexnet'"):
        N.select("alexnet", gpu=True)


def test_stand_ins_are_seeded_and_have_the_layer_kinds_of_their_networks():
    a, b = N.NETWORKS["tiny_mobilenet_v2"].build(3), N.NETWORKS["tiny_mobilenet_v2"].build(3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    rng = torch.random.get_rng_state()
    N.NETWORKS["tiny_vgg16"].build(0)
    assert torch.equal(rng, torch.random.get_rng_state())  # building leaves the global RNG alone
    kinds = {}
    for name in N.STAND_INS:
        convs = [m for m in N.NETWORKS[name].build().modules() if isinstance(m, nn.Conv2d)]
        kinds[name] = {("dw" if m.groups > 1 else f"{m.kernel_size[0]}x{m.kernel_size[1]}") for m in convs}
    assert {"7x7", "3x3", "1x1"} <= kinds["tiny_resnet18"] and {"7x7", "3x3", "1x1"} <= kinds["tiny_resnet50"]
    assert {"dw", "1x1"} <= kinds["tiny_mobilenet_v2"] and {"dw", "1x1"} <= kinds["tiny_efficientnet_b0"]
    assert kinds["tiny_vgg16"] == {"3x3"}


# ----------------------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------------------
def test_untimed_rows_check_outputs_and_every_layer(untimed_rows):
    for row in untimed_rows:
        net = N.NETWORKS[row["network"]]
        assert row["skipped"] is None and row["error"] is None and not row["timed"]
        assert row["convs"] == row["converted"] == len(conv_paths(net)) > 0
        for side in ("cudnn", "fastconv"):
            d = row[side]
            assert d["error"] is None and 0 < d["rel_error"] < 1e-2 and d["output_layout_same"]
            assert "median_ms" not in d and "first_call_s" not in d  # nothing timed
        assert sorted(x["name"] for x in row["layers"]) == sorted(conv_paths(net))  # every conv layer, once
        assert [x["order"] for x in row["layers"]] == list(range(row["convs"]))  # in call order (not timed)
        for x in row["layers"]:
            assert x["kernel"] in ("igemm", "pointwise", "depthwise", "direct") and x["config"]
            assert x["problem"].startswith(f"{row['batch']}x")
            assert x["fastconv_ok"] and x["cudnn_ok"] and 0 < x["fastconv_rel_error"] <= x["tolerance"]
        assert row["layers_ok"] and N.row_ok(row)
    nhwc = untimed_rows[0]
    assert all(x["problem"].endswith("NHWC") for x in nhwc["layers"])
    se = [x for x in nhwc["layers"] if x["name"].endswith("fc1")]
    assert se and all("x1x1 ->" in x["problem"] for x in se)  # squeeze-excite convs on 1x1 maps


def test_timed_row_on_a_host_clock_sorts_layers_by_time_lost():
    row = N.bench_network("tiny_vgg16", 1, "nchw", device=DEVICE, timer=HostClock(), rounds=2, warmup=1,
                          layer_rounds=1, profile=True)
    assert row["timed"]
    for side in ("cudnn", "fastconv"):
        d = row[side]
        assert d["median_ms"] > 0 and d["timing"]["rounds"] == 2 and d["first_call_s"] > 0
    assert row["speedup"] == pytest.approx(row["cudnn"]["median_ms"] / row["fastconv"]["median_ms"])
    assert row["fastconv"]["tuned"] == {"shapes": 0, "seconds": 0}  # the interpreter never tunes
    lost = [x["lost_ms"] for x in row["layers"]]
    assert lost == sorted(lost, reverse=True) and len(lost) == 4
    for x in row["layers"]:
        assert x["lost_ms"] == pytest.approx(x["fastconv_ms"] - x["cudnn_ms"])
        assert x["speedup"] == pytest.approx(x["cudnn_ms"] / x["fastconv_ms"])
    lp = row["layout_passes"]
    assert set(lp) == {"cudnn", "fastconv"} and lp["fastconv"]["layout_ms"] >= 0
    if DEVICE.type == "cpu":
        assert lp["fastconv"]["kernel_ms"] == 0  # no device kernels on a CPU


def test_missing_torchvision_skips_with_a_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    row = N.bench_network("resnet50", 1, "nchw", device=DEVICE)
    assert "torchvision" in row["skipped"] and "tiny_resnet50" in row["skipped"] and N.row_ok(row)
    report = {"timed": False, "rows": [row]}
    assert "skipped: resnet50 needs torchvision" in N.format_table(report)


def test_a_failing_fastconv_layer_makes_the_row_wrong(monkeypatch):
    import fastconv

    real = fastconv.Conv2d._conv_forward

    def off(self, x, w, b):  # every fastconv conv off by its own output's scale
        y = real(self, x, w, b)
        return y + y.abs().amax()

    monkeypatch.setattr(fastconv.Conv2d, "_conv_forward", off)
    row = N.bench_network("tiny_vgg16", 1, "nchw", device=DEVICE)
    assert not row["layers_ok"] and not N.row_ok(row)
    assert not any(x["fastconv_ok"] for x in row["layers"]) and all(x["cudnn_ok"] for x in row["layers"])
    assert N._status(row).startswith("WRONG: 0, 2, 5, 7")


class Doubled(nn.Conv2d):
    """A conv subclass with its own forward: fastconv.convert must leave it on torch."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_a_network_written_here_with_a_conv_convert_must_leave_alone():
    net = N.Network("mine", lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Doubled(4, 4, 1),
                                                  nn.Conv2d(4, 4, 3, 2, 1, padding_mode="reflect")),
                    input_size=8, source="test")
    row = N.bench_network(net, 1, "nchw", device=DEVICE)
    assert (row["convs"], row["converted"]) == (3, 2) and row["layers_ok"]
    assert N._status(row) == "ok (2 of 3 convs converted)"
    kernels = {x["name"]: x["kernel"] for x in row["layers"]}
    assert kernels["2"] == "not converted (Doubled runs on torch)" and kernels["3"] != kernels["2"]
    ok = {x["name"]: x["fastconv_ok"] for x in row["layers"]}
    assert ok == {"0": True, "2": None, "3": True}  # the reflect-padded layer is checked padded; "2" is no conv
    assert N.layer_table_rows(row, None)[1][1][-1] == "n/a"


# ----------------------------------------------------------------------------------------------------------
# Profiler parsing
# ----------------------------------------------------------------------------------------------------------
def test_kernel_times_and_layout_pass_summary():
    from torch.autograd import DeviceType

    def ev(name, us, device=DeviceType.CUDA):
        return types.SimpleNamespace(name=name, device_type=device, time_range=types.SimpleNamespace(
            elapsed_us=lambda: us))

    events = [ev("aten::conv2d", 500.0, DeviceType.CPU), ev("igemm_conv2d_kernel", 40.0),
              ev("nhwc_prepare_kernel", 6.0), ev("igemm_conv2d_kernel", 40.0), ev("nhwc_prepare_kernel", 4.0),
              ev("void cudnn::nchwToNhwcKernel<float>", 8.0)]
    k = N.kernel_times(events)
    assert k == {"igemm_conv2d_kernel": {"calls": 2, "us": 80.0}, "nhwc_prepare_kernel": {"calls": 2, "us": 10.0},
                 "void cudnn::nchwToNhwcKernel<float>": {"calls": 1, "us": 8.0}}
    s = N.layout_pass_summary(k, 2, N.LAYOUT_KERNELS["fastconv"])
    assert s["kernel_ms"] == pytest.approx(0.049) and s["layout_ms"] == pytest.approx(0.005)
    assert s["layout_calls"] == 1 and s["layout_kernels"] == ["nhwc_prepare_kernel"]
    assert s["top_kernels"][0] == {"name": "igemm_conv2d_kernel", "ms": 0.04, "calls": 1}
    c = N.layout_pass_summary(k, 2, N.LAYOUT_KERNELS["cudnn"])
    assert c["layout_ms"] == pytest.approx(0.004)


# ----------------------------------------------------------------------------------------------------------
# Tables, markdown, CLI
# ----------------------------------------------------------------------------------------------------------
def synthetic_timed_report() -> dict:
    layers = [
        {"name": "layer4.0.conv2", "problem": "8x512x14x14 -> 512, k3x3 s2x2 p1x1 d1x1 g1 float32",
         "kernel": "igemm", "config": "BLOCK_M64_w4_s3", "error": None, "cudnn_ms": 0.050, "fastconv_ms": 0.080,
         "lost_ms": 0.030, "speedup": 0.625, "cudnn_rel_error": 2.9e-4, "fastconv_rel_error": 3.0e-4,
         "fastconv_ok": True, "cudnn_ok": True, "tolerance": 4e-3},
        {"name": "conv1", "problem": "8x3x224x224 -> 64, k7x7 s2x2 p3x3 d1x1 g1 float32", "kernel": "igemm",
         "config": "BLOCK_M128_w8_s3", "error": None, "cudnn_ms": 0.300, "fastconv_ms": 0.200, "lost_ms": -0.1,
         "speedup": 1.5, "cudnn_rel_error": 2.9e-4, "fastconv_rel_error": 2.8e-4, "fastconv_ok": True,
         "cudnn_ok": True, "tolerance": 4e-3},
    ]
    row = {"network": "resnet50", "batch": 8, "layout": "nhwc", "timed": True, "skipped": None, "error": None,
           "convs": 53, "converted": 53, "speedup": 1.1, "layers": layers, "layers_ok": True,
           "cudnn": {"median_ms": 5.5, "host_enqueue_us": 900.0, "rel_error": 3.1e-4, "error": None},
           "fastconv": {"median_ms": 5.0, "host_enqueue_us": 1500.0, "rel_error": 3.3e-4, "error": None,
                        "first_call_s": 42.0},
           "layout_passes": {"fastconv": {"layout_ms": 0.12}, "cudnn": {"layout_ms": 0.0}}}
    skipped = {"network": "vgg16", "batch": 8, "layout": "nhwc", "timed": True, "error": None,
               "skipped": "vgg16 needs torchvision, which is not installed"}
    return {"timed": True, "date": "2026-11-26T00:00:00+00:00", "command": "python -m fastconv networks",
            "timing": "CUDA events", "machine": {"gpu": "NVIDIA H200", "torch": "2.11", "torchvision": "0.26"},
            "settings": {"dtype": "float32", "precision": "tf32", "cudnn_benchmark": True}, "rows": [row, skipped]}


def test_timed_table_and_markdown_have_the_rows_and_columns():
    rep = synthetic_timed_report()
    head, rows = N.table_rows(rep)
    for col in ("cuDNN ms", "fastconv ms", "speedup", "fastconv cold s", "rel. error cuDNN", "rel. error fastconv"):
        assert col in head
    assert rows[0][:6] == ["resnet50", "8", "nhwc", "5.500", "5.000", "1.10x"]
    assert rows[0][head.index("layout passes ms (fastconv/cuDNN)")] == "0.120/0.000"
    assert rows[0][head.index("layers slower")] == "1/2" and rows[0][-1] == "ok"
    assert rows[1][-1].startswith("skipped: vgg16 needs torchvision")
    table = N.format_table(rep)
    assert "layers that lose" in table and "layer4.0.conv2" in table and "+0.030" in table
    assert "conv1 " not in table.split("layers that lose")[1]  # a layer that wins is not listed as losing
    md = N.networks_md(rep)
    assert md.startswith(N.SECTION_BEGIN) and md.rstrip().endswith(N.SECTION_END)
    assert "## Networks" in md and "NVIDIA H200" in md and "`python -m fastconv networks`" in md
    assert "| resnet50 | 8 | nhwc | 5.500 | 5.000 | 1.10x |" in md
    assert "### resnet50, batch 8, nhwc: layers that lose" in md and "| layer4.0.conv2 |" in md


def test_markdown_section_is_replaced_in_place_and_survives_a_bench_rewrite(tmp_path):
    md = N.networks_md(synthetic_timed_report())
    text = N.with_networks_section("# Benchmarks\n\n| a |\n", md)
    assert text.startswith("# Benchmarks") and text.count(N.SECTION_BEGIN) == 1
    newer = md.replace("5.500", "6.000")
    again = N.with_networks_section(text + "\ntrailer\n", newer)
    assert again.count(N.SECTION_BEGIN) == 1 and "6.000" in again and "5.500" not in again
    assert again.rstrip().endswith("trailer")
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(again)
    regenerated = N.carry_networks_section(path, "# Benchmarks\n\nnew table\n")  # what bench --update... writes
    assert "new table" in regenerated and "6.000" in regenerated and "| a |" not in regenerated
    assert N.carry_networks_section(tmp_path / "missing.md", "x\n") == "x\n"


def test_cli_without_gpu_checks_one_stand_in_and_writes_json(tmp_path, capsys):
    if DEVICE.type == "cuda":
        pytest.skip("the CLI times on a GPU; its CPU path is what is tested here")
    rc = main(["networks", "--networks", "vgg16", "--layout", "nchw", "--out", str(tmp_path), "--max-minutes", "0"])
    assert rc == 0 and "INCOMPLETE: 1 of 1 rows not run" in capsys.readouterr().out
    assert json.loads((tmp_path / "networks.json").read_text())["rows"] == []
    rc = main(["networks", "--networks", "vgg16", "--layout", "nchw", "--out", str(tmp_path), "--resume"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "NOT TIMED" in out and "tiny_vgg16" in out and " ms" not in out
    report = json.loads((tmp_path / "networks.json").read_text())
    assert report["schema"] == "fastconv-networks/1" and report["timed"] is False
    assert [(r["network"], r["batch"], r["layout"]) for r in report["rows"]] == [("tiny_vgg16", 1, "nchw")]
    row = report["rows"][0]
    assert row["layers_ok"] and len(row["layers"]) == 4 and row["fastconv"]["rel_error"] > 0
    # --resume keeps finished rows; --update-benchmarks-md needs a GPU; bad arguments are usage errors
    rc = main(["networks", "--networks", "vgg16", "--layout", "nchw", "--out", str(tmp_path), "--resume"])
    assert rc == 0 and "kept from" in capsys.readouterr().err
    assert main(["networks", "--update-benchmarks-md", str(tmp_path / "B.md")]) == 2
    assert not (tmp_path / "B.md").exists()
    assert main(["networks", "--networks", "alexnet"]) == 2
    with pytest.raises(SystemExit):
        main(["networks", "--layout", "nchw,hwcn"])
    with pytest.raises(SystemExit):
        main(["networks", "--batch", "0"])
    with pytest.raises(SystemExit):
        main(["networks", "--precision", "fp8"])
