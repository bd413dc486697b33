"""``python -m fastconv mutate``: how many realistic bugs does the property suite catch?

The catalogue (:data:`CATALOGUE`) is data: each :class:`Mutant` names a file of the package, an exact source
snippet, its replacement and the bug it stands for (per-axis padding / stride / dilation confusions, dropped
or wrong boundary masks, partial blocks skipped, wrong group offsets, bias twice or never, accumulation in the
input dtype, kh/kw swapped, channels_last strides confused, 32-bit offsets, a weight-packing pass that ignores
strides, a kernel offered for a shape it does not handle, the wrong output memory format, wrong TF32 rounding...).
A snippet that does not occur exactly once fails the run (the catalogue cannot rot silently).

Each mutant is applied to a temporary copy of the package (never to the working tree), with the
repository's ``properties/``, ``conftest.py`` and ``pyproject.toml`` beside it, and ``pytest -m property``
runs there (Hypothesis profile ``mutate``: the ``ci`` profile's examples and budgets, without shrinking, as a
kill needs a failure, not its smallest form; Triton's interpreter without a GPU; ``-x``).  A first pass runs the
tests of the implementations the mutant touches (``-k``); a mutant that survives it runs the whole suite.
A mutant is *killed* when a test fails or the copy does not import; the un-mutated copy must pass first
(``--no-baseline`` skips that check).  Prints one line per mutant and ``killed K/N`` with the wall time;
exits 0 when every mutant is killed, 1 when one survived (a gap in the suite), 2 on a catalogue error.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Mutant", "CATALOGUE", "TARGETS", "MutationError", "apply", "check_catalogue", "run_mutants", "configure",
           "run"]

TARGETS = ("igemm", "pointwise", "depthwise", "direct", "host")
PACKAGE = Path(__file__).resolve().parent
# property test files, in the order the harness runs them (the ones that kill most, cheapest first)
TEST_FILES = ("test_reference.py", "test_metamorphic.py", "test_integrity.py", "test_configs.py",
              "test_invalid.py")


class MutationError(RuntimeError):
    """A mutant does not apply (its snippet is missing or not unique), or the harness cannot run."""


@dataclass(frozen=True)
class Mutant:
    name: str
    target: str  # which implementation's tests run first: a kernel name, or "host" (everything)
    file: str  # relative to the package directory
    find: str
    replace: str
    what: str


def _m(name, target, file, find, replace, what) -> Mutant:
    return Mutant(name, target, file, find, replace, what)


IG, CO, DW, DI = "kernels/igemm.py", "kernels/common.py", "kernels/depthwise.py", "kernels/direct.py"
CATALOGUE: tuple[Mutant, ...] = (
    # -- igemm: per-axis confusions --------------------------------------------------------------------------
    _m("igemm-pad-h-uses-pad-w", "igemm", IG, "ih0 = oh * conv_stride_h - pad_h", "ih0 = oh * conv_stride_h - pad_w",
       "per-axis padding confusion: the row origin subtracts the width padding"),
    _m("igemm-stride-w-uses-stride-h", "igemm", IG, "iw0 = ow * conv_stride_w - pad_w",
       "iw0 = ow * conv_stride_h - pad_w", "per-axis stride confusion: columns step by the row stride"),
    _m("igemm-tap-dilation-w-uses-h", "igemm", IG, "dw = (tap - kh * KW) * dil_w", "dw = (tap - kh * KW) * dil_h",
       "per-axis dilation confusion in the per-tap K loop"),
    _m("igemm-flat-dilation-w-uses-h", "igemm", IG, "iw = iw0[:, None] + ((tap % KW) * dil_w)[None, :]",
       "iw = iw0[:, None] + ((tap % KW) * dil_h)[None, :]", "per-axis dilation confusion in the flat K loop"),
    _m("igemm-kh-kw-swapped", "igemm", IG, "KH=p.kh, KW=p.kw, FLAT_K=flat", "KH=p.kw, KW=p.kh, FLAT_K=flat",
       "kernel height and width swapped in the launch"),
    # -- igemm: boundary masks ----------------------------------------------------------------------------------
    _m("igemm-mask-drops-right-edge", "igemm", IG, "(iw0 >= -dw) & (iw0 < W - dw)", "(iw0 >= -dw)",
       "dropped boundary mask: the right padding reads the next row"),
    _m("igemm-mask-off-by-one-top", "igemm", IG, "(ih0 >= -dh) & (ih0 < H - dh)", "(ih0 > -dh) & (ih0 < H - dh)",
       "wrong boundary mask: the first valid row is masked as padding"),
    _m("igemm-mask-right-edge-uses-dil-h", "igemm", IG, "(iw0 < W - dw)", "(iw0 < W - dh)",
       "per-axis confusion in a padding mask (the width bound shifted by the height tap offset): visible only "
       "with asymmetric dilation and right padding"),
    _m("igemm-flat-mask-drops-bottom", "igemm", IG, "(ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)",
       "(ih >= 0) & (iw >= 0) & (iw < W)", "dropped boundary mask in the flat K loop: bottom padding reads on"),
    # -- igemm: partial blocks -----------------------------------------------------------------------------------
    _m("igemm-last-partial-m-block-skipped", "igemm", IG, 'return (cdiv(p.gemm_m, blocks["BLOCK_M"])',
       'return ((p.gemm_m // blocks["BLOCK_M"])', "last partial M block skipped (grid rounds down)"),
    _m("igemm-last-partial-n-block-skipped", "igemm", IG, 'cdiv(p.c_out_per_group, blocks["BLOCK_N"]), p.groups)',
       'max(1, p.c_out_per_group // blocks["BLOCK_N"]), p.groups)',
       "last partial N block skipped (grid rounds down, at least one block)"),
    _m("igemm-last-partial-k-block-skipped", "igemm", IG, "K_ITERS=cdiv(p.gemm_k, bk) if flat",
       "K_ITERS=max(1, p.gemm_k // bk) if flat", "last partial K block of the flat K loop skipped"),
    _m("igemm-channel-mask-from-c-in", "igemm", IG, "EVEN_K=p.c_in_per_group % bk == 0, HAS_BIAS",
       "EVEN_K=p.c_in % bk == 0, HAS_BIAS",
       "wrong config for a shape: the unmasked K loop chosen from all input channels, not those of a group"),
    # -- igemm: groups, bias, rounding -------------------------------------------------------------------------
    _m("igemm-input-group-offset", "igemm", IG, "(g * C_IN_G).to(tl.int64) * stride_xc  # [BLOCK_M]",
       "(g * C_OUT_G).to(tl.int64) * stride_xc  # [BLOCK_M]", "wrong group offset for the input"),
    _m("igemm-weight-group-offset", "igemm", IG, "w_cols = w_ptr + (g * C_OUT_G + offs_n)",
       "w_cols = w_ptr + (offs_n)", "wrong group offset for the weight (every group uses group 0's filters)"),
    _m("igemm-bias-twice", "igemm", IG,
       "    # -- epilogue: bias, cast, store through the output's strides ---------------------------------"
       "----------\n    if HAS_BIAS:\n        acc += ",
       "    # -- epilogue: bias, cast, store through the output's strides ---------------------------------"
       "----------\n    if HAS_BIAS:\n        acc += 2 * ", "bias added twice"),
    _m("igemm-bias-never", "igemm", IG, "EVEN_K=p.c_in_per_group % bk == 0, HAS_BIAS=p.has_bias",
       "EVEN_K=p.c_in_per_group % bk == 0, HAS_BIAS=False", "bias never added"),
    _m("igemm-tf32-round-on-accumulator", "igemm", IG, "    if ROUND_A:\n        a = round_tf32(a)",
       "    if ROUND_A:\n        acc = round_tf32(acc)",
       "wrong TF32 rounding: the accumulator rounded, not the operand"),
    # -- pointwise ------------------------------------------------------------------------------------------------
    _m("pointwise-output-pixel-stride-nchw", "pointwise", IG, "sxp, _flat_pixel_stride(out), upcast",
       "sxp, 1, upcast", "channels_last output strides confused with NCHW (pixel stride taken as 1)"),
    _m("pointwise-offered-for-strided-1x1", "pointwise", IG,
       "return p.is_pointwise and (p.stride_h, p.stride_w) == (1, 1)", "return p.is_pointwise",
       "wrong kernel for a shape: the stride-1 GEMM offered for strided 1x1 convolutions"),
    # -- shared kernel code ---------------------------------------------------------------------------------------
    _m("tf32-rounding-keeps-7-bits", "igemm", CO, "bits = (bits + 0x1000) & -8192",
       "bits = (bits + 0x1000) & -65536", "wrong TF32 rounding: bfloat16's mask (7 mantissa bits) instead of 10"),
    _m("nhwc-pass-assumes-flat-pixels", "igemm", CO, "FLAT_HW=sh == w * sw", "FLAT_HW=True",
       "channels_last pass assumes (h, w) flatten for any strides (a sliced view is read wrong)"),
    _m("weight-pack-assumes-contiguous", "igemm", CO,
       "stride_wh=sh, stride_ww=sw,", "stride_wh=kw, stride_ww=1,",
       "the weight-packing pass reads the taps as if the weight were contiguous NCHW (a channels_last or sliced "
       "weight is garbled)"),
    # -- depthwise ------------------------------------------------------------------------------------------------
    _m("depthwise-pad-h-uses-pad-w", "depthwise", DW, "ih0 = oh * conv_stride_h - pad_h",
       "ih0 = oh * conv_stride_h - pad_w", "per-axis padding confusion in the depthwise kernel"),
    _m("depthwise-mask-drops-right-edge", "depthwise", DW, "ok = ((w_mask & (iw >= 0) & (iw < W) & h_ok)",
       "ok = ((w_mask & (iw >= 0) & h_ok)", "dropped boundary mask in the depthwise kernel"),
    _m("depthwise-group-offset", "depthwise", DW, "cin0 = (offs_c // C_OUT_G) * C_IN_G",
       "cin0 = (offs_c // C_IN_G) * C_IN_G", "wrong group offset for the input (channel multiplier > 1)"),
    _m("depthwise-accumulates-in-input-dtype", "depthwise", DW,
       "acc = tl.zeros((BLOCK_W, BLOCK_C), dtype=tl.float32)",
       "acc = tl.zeros((BLOCK_W, BLOCK_C), dtype=x_ptr.dtype.element_ty)", "accumulation in the input dtype"),
    _m("depthwise-int32-sample-offset", "depthwise", DW, "n = (pid_row // OH).to(tl.int64)", "n = pid_row // OH",
       "int32 index overflow: the sample offset computed in 32 bits"),
    _m("depthwise-output-strides-nchw", "depthwise", DW,
       '**dict(zip(("stride_yn", "stride_yc", "stride_yh", "stride_yw"), out.stride())),',
       '**dict(zip(("stride_yn", "stride_yc", "stride_yh", "stride_yw"), out.contiguous().stride())),',
       "output in the wrong memory format: NCHW strides written into a channels_last output"),
    # -- direct (the seed's kernel) ----------------------------------------------------------------------------
    _m("direct-dilation-w-uses-h", "direct", DI, "iw = iw0 + kw * dil_w", "iw = iw0 + kw * dil_h",
       "per-axis dilation confusion in the direct kernel"),
    _m("direct-mask-drops-bottom-edge", "direct", DI, "valid_h = (ih >= 0) & (ih < H)", "valid_h = (ih >= 0)",
       "dropped boundary mask: bottom padding reads the next channel"),
    _m("direct-kh-kw-strides-swapped", "direct", DI, "kh * stride_wh + kw * stride_ww",
       "kh * stride_ww + kw * stride_wh", "kh/kw swapped in the weight index"),
    _m("direct-accumulates-in-input-dtype", "direct", DI, "acc = tl.zeros([BLOCK_HW], dtype=tl.float32)",
       "acc = tl.zeros([BLOCK_HW], dtype=x_ptr.dtype.element_ty)", "accumulation in the input dtype"),
    _m("direct-int32-sample-offset", "direct", DI, "x_base = x_ptr + n.to(tl.int64) * stride_xn",
       "x_base = x_ptr + n * stride_xn", "int32 index overflow: the input sample offset in 32 bits"),
    # -- host code ------------------------------------------------------------------------------------------------
    _m("output-always-nchw", "host", "functional.py",
       "fmt = torch.channels_last if p.channels_last else torch.contiguous_format", "fmt = torch.contiguous_format",
       "output in the wrong memory format (NCHW where torch returns channels_last)"),
    _m("bias-strides-ignored", "host", "functional.py", "        bias = bias.contiguous()  # kernels index",
       "        bias = bias  # kernels index", "a strided bias indexed as if contiguous"),
    _m("plan-memo-ignores-strides", "host", "functional.py", "key = (input.shape, input.stride(), input.dtype,",
       "key = (input.shape, input.dtype,", "a plan cached without the input's strides (layout change reuses it)"),
    _m("same-padding-extra-before", "host", "problem.py", "return total // 2, total - total // 2",
       "return total - total // 2, total // 2", "'same' padding with an even extent puts the odd pad first"),
    _m("groups-divisibility-unchecked", "host", "validation.py", "    if c_out % groups != 0:  # torch prints",
       "    if False:  # torch prints", "an output-channel count not divisible by groups is accepted"),
)


def apply(mutant: Mutant, package_dir: Path) -> None:
    """Apply ``mutant`` to the package at ``package_dir`` (its snippet must occur exactly once)."""
    path = package_dir / mutant.file
    if not path.is_file():
        raise MutationError(f"{mutant.name}: no file {mutant.file}")
    text = path.read_text()
    count = text.count(mutant.find)
    if count != 1:
        raise MutationError(f"{mutant.name}: the snippet occurs {count} times in {mutant.file} (must be once): "
                            f"{mutant.find!r}")
    path.write_text(text.replace(mutant.find, mutant.replace))


def check_catalogue(package_dir: Path = PACKAGE, mutants=CATALOGUE) -> None:
    """Every mutant applies to the pristine package (read only: nothing is written)."""
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise MutationError("duplicate mutant names")
    for m in mutants:
        if m.target not in TARGETS:
            raise MutationError(f"{m.name}: unknown target {m.target!r}")
        path = package_dir / m.file
        count = path.read_text().count(m.find) if path.is_file() else -1
        if count != 1:
            raise MutationError(f"{m.name}: the snippet occurs {count} times in {m.file} (must be once)")
        if m.find == m.replace:
            raise MutationError(f"{m.name}: the replacement equals the snippet")


# ----------------------------------------------------------------------------------------------------------
@dataclass
class Result:
    name: str
    killed: bool
    seconds: float
    passes: int  # pytest runs it took (1: killed by the targeted pass)
    by: str  # the failing test, "import", "timeout", or "" (survived)
    what: str


def _copy_tree(repo: Path, dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(repo / "fastconv", dest / "fastconv", ignore=ignore)
    shutil.copytree(repo / "properties", dest / "properties", ignore=ignore)
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy2(repo / name, dest / name)
    return dest


def _env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the copy (the working directory) must be what `import fastconv` finds
    env["CI"] = "1"
    env["HYPOTHESIS_PROFILE"] = env.get("FASTCONV_MUTATE_PROFILE", "mutate")  # ci's examples, no shrinking
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# the baseline is the whole suite: spread over two workers where pytest-xdist is installed
_XDIST = ["-n", "2"] if importlib.util.find_spec("xdist") is not None else []
_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)


def _pytest(workdir: Path, select: str | None, timeout: float, extra: list[str]) -> tuple[int | None, str]:
    files = [f"properties/{f}" for f in TEST_FILES if (workdir / "properties" / f).exists()]
    cmd = [sys.executable, "-m", "pytest", *files, "-m", "property", "-x", "-q", "-p", "no:cacheprovider",
           "-p", "no:randomly", "--tb=line", *extra]
    if select:
        cmd += ["-k", select]
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out
    return proc.returncode, proc.stdout + proc.stderr


def _verdict(rc: int | None, out: str) -> tuple[bool | None, str]:
    """(killed, by): killed by a failing test, an import error or a crash; a timeout kills nothing (a slow
    machine is not a caught bug: the run reports it undecided); None: harness error."""
    if rc is None:
        return False, "timeout"
    if rc == 0:
        return False, ""
    m = _FAILED.search(out)
    if rc == 1:
        return True, m.group(2) if m else "a failing test"
    if rc == 2:  # interrupted: a collection (import) error of the mutated package
        return True, "import/collection error" + (f" ({m.group(2)})" if m else "")
    if rc < 0:
        return True, f"crash (signal {-rc})"
    return None, f"pytest exited {rc}"


def run_one(mutant: Mutant | None, repo: Path, scratch: Path, timeout: float, extra: list[str]) -> Result:
    """Apply ``mutant`` (None: the un-mutated baseline) to a copy and run the property suite on it."""
    name = mutant.name if mutant else "baseline"
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    t0 = time.perf_counter()
    try:
        _copy_tree(repo, work)
        if mutant is not None:
            apply(mutant, work / "fastconv")
        passes = []
        if mutant is not None and mutant.target != "host":
            passes.append(f"{mutant.target} or auto")
        passes.append(None)
        killed, by, n = False, "", 0
        for select in passes:
            n += 1
            args = list(extra) + (_XDIST if mutant is None else [])
            rc, out = _pytest(work, select, timeout, args)
            killed, by = _verdict(rc, out)
            if killed is None:
                raise MutationError(f"{name}: {by}\n{out[-3000:]}")
            if killed or by == "timeout":
                break
        return Result(name, killed, time.perf_counter() - t0, n, by, mutant.what if mutant else "")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_mutants(mutants=CATALOGUE, *, repo: Path | None = None, jobs: int = 1, timeout: float = 3600,
        baseline: bool = True, extra: list[str] | None = None, log=print) -> list[Result]:
    """Run every mutant; returns the results (the baseline first, when run)."""
    repo = repo or PACKAGE.parent
    if not (repo / "properties").is_dir():
        raise MutationError(f"no properties/ beside the package in {repo}: the mutation harness runs in a checkout")
    check_catalogue(repo / "fastconv", mutants)
    extra = list(extra or [])
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="fastconv-mutate-") as scratch:
        scratch = Path(scratch)
        # the baseline (the whole suite, unmutated) runs after the mutants are queued, beside the last ones; its
        # verdict is checked at the end: a failing baseline voids every kill
        jobs_ = [*mutants, None] if baseline else list(mutants)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(run_one, m, repo, scratch, timeout, extra): m for m in jobs_}
            for fut in concurrent.futures.as_completed(futures):
                r = fut.result()
                if futures[fut] is None:
                    state = "FAILS" if r.killed else ("TIMES OUT" if r.by == "timeout" else "passes")
                    log(f"baseline (no mutation): {state} ({r.seconds:.0f} s)" + (f" -- {r.by}" if r.by else ""))
                else:
                    verdict = "killed  " if r.killed else ("UNDECIDED" if r.by == "timeout" else "SURVIVED")
                    log(f"{verdict} {r.name:40s} {r.seconds:6.0f} s  "
                        f"{'pass ' + str(r.passes) + ': ' + r.by if r.killed else r.by or r.what}")
                results.append(r)
    base = next((r for r in results if r.name == "baseline"), None)
    if base is not None and (base.killed or base.by == "timeout"):
        raise MutationError(f"the un-mutated package does not pass the suite ({base.by}): kills would mean nothing")
    return results


# ----------------------------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", default=None, metavar="NAMES",
                        help=f"mutate only these (comma-separated): {', '.join(TARGETS)}")
    parser.add_argument("--mutant", action="append", default=[], metavar="NAME", help="run only this mutant")
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run in parallel (default 2)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per pytest run (a run that times "
                        "out decides nothing: reported, exit 1)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the un-mutated run")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments (one string)")


def run(args) -> int:
    """``python -m fastconv mutate``."""
    mutants = list(CATALOGUE)
    if args.impl:
        wanted = [t.strip() for t in args.impl.split(",") if t.strip()]
        bad = [t for t in wanted if t not in TARGETS]
        if bad:
            print(f"fastconv mutate: unknown --impl {bad}; choose from {TARGETS}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.target in wanted]
    if args.mutant:
        known = {m.name for m in CATALOGUE}
        bad = [n for n in args.mutant if n not in known]
        if bad:
            print(f"fastconv mutate: unknown mutant(s) {bad}; see --list", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.name in args.mutant]
    if args.list:
        for m in mutants:
            print(f"{m.name:40s} {m.target:10s} {m.file:22s} {m.what}")
        print(f"{len(mutants)} mutants")
        return 0
    t0 = time.perf_counter()
    try:
        results = run_mutants(mutants, jobs=args.jobs, timeout=args.timeout, baseline=not args.no_baseline,
                      extra=args.pytest_args.split())
    except MutationError as exc:
        print(f"fastconv mutate: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    muts = [r for r in results if r.name != "baseline"]
    killed = sum(r.killed for r in muts)
    survivors = [r for r in muts if not r.killed]
    print(f"killed {killed}/{len(muts)} in {wall:.0f} s wall ({args.jobs} job(s))")
    for r in survivors:
        print(f"  {'undecided (timeout)' if r.by == 'timeout' else 'survivor'}: {r.name}: {r.what}")
    if args.json:
        Path(args.json).write_text(json.dumps({"killed": killed, "total": len(muts), "wall_s": wall,
                                               "results": [asdict(r) for r in results]}, indent=1))
    return 0 if not survivors else 1
