"""The static resource gate (issue 5): every shipped kernel config fits sm_89 and sm_90, checked without a GPU.

- ``test_shipped_configs_pass_the_gate``: every static variant of every registered kernel, compiled for each
  target it is declared for, has no spills, fits the register and shared-memory limits and, on tensor-core
  paths, contains tensor-core instructions.  One test per (kernel, target); the failure message is the table.
- The negative tests prove the gate can fail: an oversized config for the RTX 4090 (a probe GEMM and a
  shipped tensor-core variant blown up), forced spills (a probe, and a shipped variant under ``maxnreg``),
  and an FMA fallback flagged as a tensor-core path (a probe, and a shipped scalar kernel).
- Unit tests pin the cuobjdump parsers, the occupancy arithmetic and the cache keys on known values.

Compiling happens in worker processes with the interpreter off (``TRITON_INTERPRET=1`` is on here); the
reports are cached under ``$FASTCONV_CACHE_DIR/static``, so only a cold run pays for the compiler.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from fastconv import ConvProblem
from fastconv.gpus import TARGETS
from fastconv.kernels import REGISTRY
from fastconv.kernels.specialize import jit_specialization
from fastconv.static import probes, toolchain
from fastconv.static.inspect_cli import format_table
from fastconv.static.report import (
    ResourceReport,
    evaluate,
    max_blocks_per_sm,
    occupancy,
    parse_resource_usage,
    parse_sass,
)
from fastconv.static.resource_gate import DEFAULT_TARGETS, GateRun, check, items_from, registry_items
from fastconv.static.toolchain import judge, write_local_record

pytestmark = pytest.mark.static

SM89, SM90 = TARGETS["sm_89"], TARGETS["sm_90"]


# ---------------------------------------------------------------------------------------------------------
# Fixtures: one compilation pass over the registry and the probes per session (cached across sessions)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shipped():
    """Every static variant of every registered kernel, checked on its declared targets."""
    items = registry_items()
    return items, check(items)


@pytest.fixture(scope="session")
def probe_run():
    items = {i.label.split(" (")[0]: i for i in items_from(probes.PROVIDER)}
    return items, check(list(items.values()))


def _rows(results) -> str:
    return format_table([r.row() for r in results])


# ---------------------------------------------------------------------------------------------------------
# The gate on the shipped configs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", sorted(REGISTRY))
def test_every_kernel_declares_static_variants(shipped, kernel):
    items, _ = shipped
    mine = [i for i in items if i.kernel == kernel]
    assert mine, f"kernel {kernel!r} has no static_variants(): the gate cannot see its configs"
    for item in mine:
        unknown = set(item.targets) - set(TARGETS)
        assert not unknown, f"{item.label}: unknown targets {unknown}"


@pytest.mark.parametrize("target", DEFAULT_TARGETS)
@pytest.mark.parametrize("kernel", sorted(REGISTRY))
def test_shipped_configs_pass_the_gate_on_this_toolchain(shipped, kernel, target):
    """Under the installed Triton: no config fails unless the package records it as pruned for this Triton
    (or this Triton is not a recorded toolchain: then failures are pruned, see the toolchain tests), and every
    (kernel, dtype/precision) keeps at least one passing config."""
    _, run = shipped
    mine = [r for r in run.results if r.item.kernel == kernel and r.target.name == target]
    if not mine:
        pytest.skip(f"no {kernel} config is declared for {target}")
    verdict = judge(GateRun(mine, 0, 0, 0, 0.0))
    if not verdict.ok:
        bad = verdict.regressions + [r for r in mine if (r.item.kernel, r.item.variant.mode, target)
                                     in verdict.uncovered]
        pytest.fail(f"{verdict.summary()}\n{_rows(bad)}", pytrace=False)


def test_the_toolchain_record_matches_this_toolchain(shipped):
    """A supported toolchain's record lists exactly what fails on it: nothing stale, nothing missing."""
    _, run = shipped
    verdict = judge(run)
    if not verdict.recorded:
        pytest.skip(f"Triton {verdict.version} is not a recorded toolchain")
    assert not verdict.stale, verdict.summary()
    assert not verdict.regressions, verdict.summary()


def _one_failure(run: GateRun, why: str = "spills 8 B to local memory (simulated)"):
    """``run`` with the first passing shipped sm_90 result turned into a failure (what a compiler change that
    makes one config spill looks like to the gate), and that result."""
    results = list(run.results)
    n, victim = next((n, r) for n, r in enumerate(results) if r.ok and r.target.name == "sm_90"
                     and r.item.variant.mode)
    results[n] = dataclasses.replace(victim, violations=[why])
    return GateRun(results, run.compiled, run.cached, run.workers_started, run.seconds), results[n]


def test_a_triton_upgrade_that_makes_a_config_spill_is_reported_and_pruned(shipped, tmp_path, monkeypatch):
    """On a Triton the package has no record of, a failing config is pruned, not a failure: the verdict
    passes, names it, and the machine's record makes the tuner skip it on that GPU."""
    from fastconv.kernels import fitness
    from fastconv.tuning import autotuner

    _, run = shipped
    upgraded, victim = _one_failure(run)
    verdict = judge(upgraded, version="99.0.0", record=None)
    assert verdict.ok and not verdict.recorded, verdict.summary()
    assert victim in verdict.new_pruned and "pruned (new toolchain)" in verdict.summary()

    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))
    write_local_record(verdict)
    v = victim.item.variant
    dtype, precision = v.mode.split("/")
    why = fitness.pruned(v.kernel, dtype, precision if precision != "*" else "ieee", v.config, "sm_90",
                         version="99.0.0")
    assert why and "simulated" in why
    assert fitness.pruned(v.kernel, dtype, precision, v.config, "sm_89", version="99.0.0") is None

    # the tuner's candidates on an sm_90 GPU under that Triton: the pruned config is not among them
    monkeypatch.setattr(autotuner.fitness, "device_target", lambda device: "sm_90")
    monkeypatch.setattr(fitness, "triton_version", lambda: "99.0.0")
    kernel = REGISTRY[v.kernel]
    prob = ConvProblem.make(8, 32, 64, 512, 512, (5, 9), 1, (2, 4), (2, 3), dtype=dtype, has_bias=True)
    prec = precision if precision != "*" else "ieee"
    offered = kernel.configs(prob, prec)
    kept = autotuner.candidates(kernel, prob, prec, torch.device("cuda", 0))
    dropped = [c for c in offered if c not in kept]
    # what the record prunes for this kernel and mode on sm_90: the simulated victim, plus what really fails
    # to compile cleanly under the installed Triton (3.9.0: depthwise BLOCK_C64_BLOCK_W32 spills on sm_90)
    pruned_here = {r.item.variant.config for r in verdict.new_pruned
                   if r.item.kernel == v.kernel and r.item.variant.mode == v.mode and r.target.name == "sm_90"}
    assert v.config in {c.without("PREP") for c in dropped}, (v.config, dropped)
    assert all(c.without("PREP") in pruned_here for c in dropped), (pruned_here, dropped)


def test_a_kernel_change_that_makes_configs_spill_fails(shipped):
    """On a recorded toolchain, a config that fails without being recorded is a regression: the gate fails.
    First the simulated failure, then a real one: a shipped config compiled with a quarter of its registers
    (what a kernel change that needs more registers does to it)."""
    from fastconv.kernels import fitness

    _, run = shipped
    broken, victim = _one_failure(run, "spills 8 B to local memory (kernel change)")
    verdict = judge(broken, record=fitness.record_of() or {})
    assert not verdict.ok and victim in verdict.regressions, verdict.summary()
    assert "REGRESSION" in verdict.summary() and verdict.summary().endswith("FAIL")

    # a config recorded as pruned for this Triton (it spills on another of its problems) is no victim: its
    # failure would be "pruned as recorded", not a regression
    recorded = fitness.record_of() or {}
    passing = [(r.report.registers, n, r.item) for n, r in enumerate(run.results)
               if r.ok and r.target.name == "sm_90" and r.item.variant.mode and toolchain._key(r) not in recorded]
    _, _, base = max(passing)
    squeezed = base.derive(maxnreg=max(32, max(passing)[0] // 4 // 8 * 8), targets=("sm_90",))
    r = check([squeezed]).results[0]
    assert not r.ok, _rows([r])
    as_shipped = dataclasses.replace(r, item=dataclasses.replace(base, targets=("sm_90",)))  # same identity
    verdict = judge(GateRun([as_shipped], 0, 0, 0, 0.0), record=fitness.record_of() or {})
    assert not verdict.ok and verdict.regressions, verdict.summary()


def test_a_mode_left_without_configs_fails_even_on_a_new_toolchain(shipped):
    _, run = shipped
    mode = next(r.item.variant.mode for r in run.results if r.item.kernel == "direct")
    results = [dataclasses.replace(r, violations=["spills (simulated)"])
               if r.item.kernel == "direct" and r.item.variant.mode == mode and r.target.name == "sm_90" else r
               for r in run.results]
    verdict = judge(GateRun(results, 0, 0, 0, 0.0), version="99.0.0", record=None)
    assert ("direct", mode, "sm_90") in verdict.uncovered and not verdict.ok, verdict.summary()


def test_config_is_what_is_compiled(shipped):
    """The config a variant reports is the one compiled: its blocks are the constexprs of the same name."""
    items, _ = shipped
    for item in items:
        v = item.variant
        for name, value in v.config.blocks:
            assert v.constexprs.get(name) == repr(value), f"{item.label} {v.config}: {name} is not a constexpr"


def test_second_run_is_served_from_the_cache(shipped):
    items, first = shipped
    again = check(items)
    assert (again.compiled, again.workers_started) == (0, 0)
    assert again.cached == len({i.report_key(t) for i in items for t in i.targets})
    assert [r.row() | {"source": ""} for r in again.results] == [r.row() | {"source": ""} for r in first.results]


# ---------------------------------------------------------------------------------------------------------
# Negative tests: the gate rejects what it must (and the probes' positive control passes)
# ---------------------------------------------------------------------------------------------------------


def _reasons(result) -> str:
    return " | ".join(result.violations)


def test_probe_positive_control_uses_tensor_cores_on_both_targets(probe_run):
    items, run = probe_run
    item = items["probe dot fp16"]
    r89, r90 = run.result(item, "sm_89"), run.result(item, "sm_90")
    assert r89.ok and r90.ok, _rows([r89, r90])
    assert r89.report.count("HMMA") > 0
    assert r90.report.count("HGMMA") > 0  # Hopper's warpgroup MMA


def test_oversized_probe_is_rejected_on_sm_89_only(probe_run):
    items, run = probe_run
    item = items["probe dot fp16 128x128x64 s5"]
    r89, r90 = run.result(item, "sm_89"), run.result(item, "sm_90")
    assert r89.report.shared_bytes > SM89.max_shared_bytes
    assert any(v.startswith("shared memory") for v in r89.violations), _reasons(r89)
    assert r90.ok, _rows([r90])  # 227 KB per block on the H100


def test_oversized_shipped_tensor_core_config_is_rejected_on_sm_89(shipped):
    """A real tensor-core variant with its tile blocks doubled and two more stages no longer fits the 4090."""
    items, run = shipped
    candidates = [(run.result(i, "sm_89").report.shared_bytes, n, i) for n, i in enumerate(items)
                  if i.variant.tensor_core and "sm_89" in i.targets and run.result(i, "sm_89").report]
    # the smallest one whose 4x larger tiles surely exceed 99 KB (a bigger one only costs compile time)
    eligible = [c for c in candidates if 4 * c[0] > 1.25 * SM89.max_shared_bytes]
    assert eligible, f"no shipped tensor-core config uses over {1.25 * SM89.max_shared_bytes / 4:.0f} B"
    smem, _, base = min(eligible)
    blocks = {k: 2 * int(v) for k, v in base.variant.config.blocks if k.startswith("BLOCK_")}
    big = base.derive(constexprs=blocks, num_stages=base.variant.config.num_stages + 2, targets=("sm_89",),
                      label=base.label + " (blown up)")
    r = check([big]).results[0]
    assert r.report is not None, r.error
    assert r.report.shared_bytes > smem
    assert any(v.startswith("shared memory") for v in r.violations), _rows([r])


def test_spilling_probe_is_rejected(probe_run):
    items, run = probe_run
    for target in DEFAULT_TARGETS:
        r = run.result(items["probe spill 2x8192 fp32 on 1 warp"], target)
        assert r.report.stack_bytes > 0 and r.report.spill_stores > 0
        assert any(v.startswith("spills") for v in r.violations), _reasons(r)


def test_shipped_config_forced_to_spill_is_rejected(shipped):
    """The passing shipped config with the most registers, compiled under a quarter of them (``maxnreg``)."""
    items, run = shipped
    passing = [(r.report.registers, n, r.item) for n, r in enumerate(run.results)
               if r.ok and r.target.name == "sm_89"]
    assert passing, "no shipped config passes on sm_89"
    regs, _, base = max(passing)
    assert regs >= 96, f"the largest passing config uses only {regs} registers"
    forced = base.derive(maxnreg=max(32, regs // 4 // 8 * 8), targets=("sm_89",))
    r = check([forced]).results[0]
    assert r.report is not None, r.error
    assert r.report.registers <= forced.maxnreg
    assert any(v.startswith("spills") for v in r.violations), _rows([r])


def test_fma_fallback_probe_is_rejected(probe_run):
    items, run = probe_run
    for target in DEFAULT_TARGETS:
        r = run.result(items["probe dot fp32 ieee"], target)
        assert r.report.count("FFMA") > 0
        assert any(v.startswith("no tensor-core instructions") for v in r.violations), _reasons(r)


def test_scalar_shipped_kernel_flagged_as_tensor_core_is_rejected(shipped):
    items, run = shipped
    scalar = [i for i in items if not i.variant.tensor_core and all(run.result(i, t).ok for t in i.targets)]
    assert scalar, "no passing scalar (non-tensor-core) shipped variant to flag"
    flagged = scalar[0].derive(tensor_core=True)
    again = check([flagged])
    assert again.compiled == 0  # the tensor-core flag does not change the compilation: served from the cache
    for r in again.results:
        assert any(v.startswith("no tensor-core instructions") for v in r.violations), _rows([r])


# ---------------------------------------------------------------------------------------------------------
# Unit tests: parsers, occupancy, gate rules, cache keys (no compilation)
# ---------------------------------------------------------------------------------------------------------

RESOURCE_USAGE = """
Resource usage:
 Common:
  GLOBAL:0
 Function direct_conv2d_kernel:
  REG:214 STACK:16 SHARED:0 LOCAL:8 CONSTANT[0]:504 TEXTURE:0 SURFACE:0 SAMPLER:0
"""

SASS = """
\tcode for sm_90a
\t\tFunction : direct_conv2d_kernel
\t.headerflags\t@"EF_CUDA_TEXMODE_UNIFIED EF_CUDA_64BIT_ADDRESS EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   LDC R1, c[0x0][0x28] ;                                  /* 0x00000a00ff017b82 */
                                                                                           /* 0x000e300000000800 */
        /*0350*/              @!P5 IMAD.IADD R3, R3, 0x1, -R12 ;                           /* 0x000000010303d824 */
        /*0360*/               @P0 STL [R1+0x4], R2 ;                                      /* 0x0000040201000387 */
        /*0370*/              @!UP0 LDL R5, [R1+0x4] ;                                     /* 0x0000040001057983 */
        /*0380*/                   HMMA.16816.F32.BF16 R8, R12, R16, R8 ;                  /* 0x000000100c08723c */
        /*0390*/                   HGMMA.64x128x16.F32 R24, gdesc[UR4], R24 ;              /* 0x0000000418187df0 */
        /*03a0*/                   FFMA R0, R1, R2, R0 ;                                   /* 0x0000000201007223 */
        /*03b0*/                   EXIT ;                                                  /* 0x000000000000794d */
"""


def test_parse_resource_usage():
    assert parse_resource_usage(RESOURCE_USAGE) == {"direct_conv2d_kernel": {
        "REG": 214, "STACK": 16, "SHARED": 0, "LOCAL": 8, "CONSTANT[0]": 504, "TEXTURE": 0, "SURFACE": 0,
        "SAMPLER": 0}}


def test_parse_sass_counts_base_opcodes_with_predicates():
    ops = parse_sass(SASS)
    assert ops == {"LDC": 1, "IMAD": 1, "STL": 1, "LDL": 1, "HMMA": 1, "HGMMA": 1, "FFMA": 1, "EXIT": 1}


def _report(**kw) -> ResourceReport:
    base = dict(function="k", arch="sm89", num_warps=4, num_stages=2, registers=64, stack_bytes=0, local_bytes=0,
                static_shared_bytes=0, dynamic_shared_bytes=0, spill_stores=0, spill_loads=0,
                opcodes={"HMMA": 8, "HGMMA": 0, "FFMA": 3})
    return ResourceReport(**{**base, **kw})


def test_report_from_cuobjdump_text():
    r = ResourceReport.from_cuobjdump(RESOURCE_USAGE, SASS, function="direct_conv2d_kernel", arch="sm90a",
                                      num_warps=4, num_stages=2, dynamic_shared_bytes=4096)
    assert (r.registers, r.stack_bytes, r.local_bytes, r.shared_bytes) == (214, 16, 8, 4096)
    assert (r.spill_stores, r.spill_loads, r.spills, r.instructions) == (1, 1, True, 8)
    with pytest.raises(ValueError, match="no function"):
        ResourceReport.from_cuobjdump(RESOURCE_USAGE, SASS, function="other", arch="sm89", num_warps=4,
                                      num_stages=2, dynamic_shared_bytes=0)


@pytest.mark.parametrize(("registers", "shared", "warps", "target", "blocks", "limiter"), [
    # 214 regs -> 6912 per warp (27 x 256) -> 9 warps fit in 64K -> 2 blocks of 4 warps
    (214, 0, 4, "sm_89", 2, "registers"),
    # 40 regs -> 1280 per warp -> 51 warps by registers; 48 warps/SM on Ada -> 12 blocks of 4
    (40, 0, 4, "sm_89", 12, "warps"),
    # 48 KB + 1 KB reserved per block, 100 KB per SM -> 2 blocks
    (64, 48 * 1024, 4, "sm_89", 2, "shared"),
    # tiny single-warp blocks: Ada's 24 resident blocks per SM, Hopper's 32
    (32, 0, 1, "sm_89", 24, "blocks"),
    (32, 0, 1, "sm_90", 32, "blocks"),
    # 130 KB fits the H100 (228 KB per SM: one block) but not the 4090's 99 KB per block
    (64, 130 * 1024, 4, "sm_90", 1, "shared"),
    (64, 130 * 1024, 4, "sm_89", 0, "shared"),
    # 255 regs x 32 warps = 261120 registers > 64K: not even one block
    (255, 0, 32, "sm_90", 0, "registers"),
])
def test_occupancy(registers, shared, warps, target, blocks, limiter):
    occ = occupancy(registers=registers, shared_bytes=shared, num_warps=warps, target=TARGETS[target])
    assert (occ.blocks_per_sm, occ.limiter) == (blocks, limiter)
    assert occ.warps_per_sm == blocks * warps
    assert math.isclose(occ.fraction, blocks * warps / TARGETS[target].max_warps_per_sm)


def test_block_limits_per_target():
    assert (max_blocks_per_sm(SM89), max_blocks_per_sm(SM90)) == (24, 32)


def test_gate_rules():
    assert evaluate(_report(), SM89, tensor_core=True) == []
    assert evaluate(_report(opcodes={"FFMA": 9}), SM89, tensor_core=False) == []
    # any local-memory traffic is a spill
    for kw in ({"stack_bytes": 8}, {"local_bytes": 4}, {"spill_stores": 1}):
        assert evaluate(_report(**kw), SM89, tensor_core=False)[0].startswith("spills")
    # shared memory per block: 99 KB on the 4090, 227 KB on the H100
    big = _report(dynamic_shared_bytes=99 * 1024 + 1)
    assert evaluate(big, SM89, tensor_core=True)[0].startswith("shared memory")
    assert evaluate(big, SM90, tensor_core=True) == []
    assert evaluate(_report(static_shared_bytes=1024, dynamic_shared_bytes=99 * 1024), SM89, tensor_core=True)
    # registers and launchability
    assert any(v.startswith("registers") for v in evaluate(_report(registers=256), SM90, tensor_core=False))
    assert any(v.startswith("cannot launch") for v in evaluate(_report(registers=255, num_warps=32), SM90,
                                                                  tensor_core=False))
    assert any("threads per block" in v for v in evaluate(_report(num_warps=64), SM90, tensor_core=False))
    # tensor cores: HMMA on Ada; HGMMA or HMMA on Hopper; FMA alone fails
    hgmma_only = _report(opcodes={"HGMMA": 4})
    assert evaluate(hgmma_only, SM90, tensor_core=True) == []
    assert evaluate(hgmma_only, SM89, tensor_core=True)[0].startswith("no tensor-core instructions")
    assert evaluate(_report(opcodes={"HMMA": 4}), SM90, tensor_core=True) == []
    assert "9 FFMA" in evaluate(_report(opcodes={"FFMA": 9}), SM90, tensor_core=True)[0]


def test_report_keys_follow_what_the_compilation_depends_on(probe_run):
    items, _ = probe_run
    item = items["probe dot fp16"]
    key = item.report_key("sm_89")
    assert key == item.derive(label="renamed", tensor_core=False).report_key("sm_89")
    assert len({key, item.report_key("sm_90"), item.derive(maxnreg=64).report_key("sm_89"),
                item.derive(num_stages=2).report_key("sm_89"),
                item.derive(constexprs={"BLOCK_K": 64}).report_key("sm_89")}) == 5
    assert item.derive(constexprs={"BLOCK_K": 64}).variant.config["BLOCK_K"] == 64


def test_jit_specialization_matches_the_jit():
    torch = pytest.importorskip("torch")
    x = torch.empty(2, 32, 8, 8, device="meta").to(memory_format=torch.channels_last)
    sig, consts = jit_specialization({"x_ptr": x, "C": 32, "stride_xc": x.stride(1), "H": 7, "big": 2**33,
                                      "flag": None})
    assert sig == {"x_ptr": "*fp32", "C": "i32:16", "H": "i32", "big": "i64:16"}
    assert consts == {"stride_xc": 1, "flag": None}


def test_inspect_command_prints_the_table_and_fails_with_the_gate(shipped, tmp_path, capsys):
    from fastconv.cli import main

    _, run = shipped
    out = tmp_path / "static.json"
    rc = main(["inspect", "--target", "sm_89", "--kernel", "direct", "--json", str(out)])
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    expected = [r for r in run.results if r.item.kernel == "direct" and r.target.name == "sm_89"]
    assert len(data["rows"]) == len(expected) == data["summary"]["checked"]
    assert data["summary"]["compiled"] == 0  # served from the cache the session fixture filled
    assert rc == int(not judge(GateRun(expected, 0, 0, 0, 0.0)).ok)
    assert "direct" in table and "sm_89" in table and "sm_90" not in table.split("\n\n")[0]
