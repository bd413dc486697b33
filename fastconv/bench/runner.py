"""``python -m fastconv bench``: fastconv against cuDNN and the seed's kernel, as a table, JSON and a chart.

    python -m fastconv bench                      # the whole catalogue (KernelBench, ResNet-50, latency)
    python -m fastconv bench --quick              # the quick subset
    python -m fastconv bench --problems kb80,resnet50 --dtype bfloat16 --layout nhwc
    python -m fastconv bench --layout both        # the default: channels_last and NCHW, each against cuDNN
                                                  # in the same layout (channels_last is the headline)
    python -m fastconv bench --update-benchmarks-md   # also rewrite BENCHMARKS.md (GPU runs only)

On a GPU every problem is timed with CUDA events (median of interleaved rounds, L2 flushed before every
call, first call reported apart), checked against the fp64 reference, and placed on the roofline of the
GPU (:mod:`fastconv.bench.roofline`).  Writes ``<out>/bench.json`` and ``<out>/bench.png``.  Without a GPU it
runs the tiny smoke problems in Triton's interpreter and reports correctness only: nothing is timed.
Exit status: 0, or 1 if an output was wrong.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch

from ..env import interpreter_enabled
from ..precision import FLOAT32_PRECISIONS
from ..tuning.timing import CudaEvents
from ..vocab import DTYPES
from .case_runner import bench_case, machine_info
from .chart import draw
from .problems import BENCH_LAYOUTS, SMOKE, layouts_of, select
from .roofline import ceilings_for

__all__ = ["configure", "run", "format_table", "benchmarks_md"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="only the quick subset")
    parser.add_argument("--problems", default=None,
                        help="comma-separated names or groups: kernelbench, resnet50, latency, quick, gate, "
                             "all")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--layout", default="both", choices=[*BENCH_LAYOUTS, "both"],
                        help="input/weight memory layout; each is compared with cuDNN in the same layout "
                             "(default: both, channels_last first)")
    parser.add_argument("--precision", default=None, choices=list(FLOAT32_PRECISIONS),
                        help="float32 arithmetic (default: PyTorch's default flags, i.e. tf32)")
    parser.add_argument("--no-seed", action="store_true", help="do not run the seed's direct kernel")
    parser.add_argument("--untuned", action="store_true",
                        help="time fastconv's untimed default config choice (a first forward's) instead of "
                             "tuning each problem's config on the device first")
    parser.add_argument("--budget", type=float, default=1.0, metavar="S",
                        help="seconds of timed rounds per problem (default 1.0)")
    parser.add_argument("--rounds", type=int, default=None, help="fixed number of timed rounds")
    parser.add_argument("--out", default="out/bench", help="output directory (default out/bench)")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--update-benchmarks-md", nargs="?", const="BENCHMARKS.md", default=None,
                        metavar="PATH",
                        help="write the table to BENCHMARKS.md (or PATH); GPU runs only")


def _fmt(v, spec: str, empty: str = "-") -> str:
    return empty if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _median(row: dict, impl: str):
    t = row["impls"].get(impl, {}).get("timing")
    return t["median_ms"] if t else None


def _kernel_str(row: dict, impl: str = "fastconv") -> str:
    ks = row["impls"].get(impl, {}).get("kernels") or []
    cells = (k.get("kernel", "?") + (f" {k['config']}" if k.get("config") else "") for k in ks)
    return " + ".join(cells) or "-"


def _seed_cell(row: dict) -> str:
    d = row["impls"].get("direct")
    if d is None:
        return "not run"
    if d.get("skipped"):
        return d["skipped"].replace("skipped: ", "skipped (") + ")"
    return _fmt(_median(row, "direct"), ".3f")


_LAYOUT_TITLE = {"nhwc": "channels_last", "nchw": "NCHW"}


def _error_cell(r: dict) -> str:
    """fastconv's and cuDNN's relative errors against fp64, e.g. ``2.9e-04 / 2.9e-04``."""
    cells = []
    for impl in ("fastconv", "cudnn"):
        c = r["impls"].get(impl, {}).get("check") or {}
        cells.append(_fmt(c.get("rel_error"), ".1e") + ("" if c.get("ok", True) else " WRONG"))
    return " / ".join(cells)


def _by_problem(report: dict) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """The layouts that ran (channels_last first) and the rows per problem and layout."""
    rows: dict[str, dict[str, dict]] = {}
    for r in report["results"]:
        rows.setdefault(r["problem"], {})[r["layout"]] = r
    layouts = [lay for lay in ("nhwc", "nchw") if any(lay in v for v in rows.values())]
    return layouts, rows


def layout_geomeans(report: dict) -> dict[str, float]:
    """Geometric mean of the speedups over cuDNN per layout (timed runs)."""
    out = {}
    for lay in ("nhwc", "nchw"):
        xs = [r["speedup_vs_cudnn"] for r in report["results"]
              if r["layout"] == lay and r.get("speedup_vs_cudnn") and math.isfinite(r["speedup_vs_cudnn"])]
        if xs:
            out[lay] = math.exp(sum(map(math.log, xs)) / len(xs))
    return out


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the result table (shared by the terminal and BENCHMARKS.md): one row per problem,
    each layout against cuDNN in the same layout, channels_last first."""
    if report["timed"]:
        layouts, by_problem = _by_problem(report)
        head = ["problem"]
        for lay in layouts:
            t = _LAYOUT_TITLE[lay]
            head += [f"{t}: cuDNN ms", f"{t}: fastconv ms", f"{t}: speedup", f"{t}: rel. error (ours / cuDNN)"]
        head += ["TFLOP/s", "% of peak", "bound", "seed ms", "fastconv kernel"]
        rows = []
        for name, per in by_problem.items():
            row = [name]
            for lay in layouts:
                r = per.get(lay)
                if r is None:
                    row += ["-"] * 4
                    continue
                fast = r["impls"].get("fastconv", {})
                row += [_fmt(_median(r, "cudnn"), ".3f"),
                        "ERROR" if fast.get("error") else _fmt(_median(r, "fastconv"), ".3f"),
                        _fmt(r.get("speedup_vs_cudnn"), ".2f") + "x", _error_cell(r)]
            first = per[layouts[0]] if layouts[0] in per else next(iter(per.values()))
            roof = first["impls"].get("fastconv", {}).get("roofline") or {}
            seed = next((per[lay] for lay in ("nchw", "nhwc") if lay in per and "direct" in per[lay]["impls"]), first)
            row += [_fmt(roof.get("tflops"), ".1f"),
                    _fmt(100 * roof["fraction"] if roof.get("fraction") else None, ".1f"),
                    roof.get("limiter") or "-", _seed_cell(seed),
                    " | ".join(f"{_LAYOUT_TITLE[lay]}: {_kernel_str(per[lay])}" for lay in layouts if lay in per)]
            rows.append(row)
        return head, rows
    head = ["problem (interpreter, NOT TIMED)", "impl", "kernel", "rel. error", "tolerance", "ok"]
    rows = []
    for r in report["results"]:
        for impl, d in r["impls"].items():
            c = d.get("check") or {}
            ok = "yes" if c.get("ok") else ("skipped" if d.get("skipped") else
                                            f"ERROR {d['error']}" if d.get("error") else "NO")
            rows.append([f"{r['problem']} {r['layout']}", impl, _kernel_str(r, impl), _fmt(c.get("rel_error"), ".1e"),
                         _fmt(c.get("tolerance"), ".1e"), ok])
    return head, rows


def format_table(report: dict) -> str:
    head, rows = table_rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i in (0, len(head) - 2) else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def benchmarks_md(report: dict, chart: str | None) -> str:
    """The BENCHMARKS.md text: the table, the command line, the date, the machine and the ceilings."""
    head, rows = table_rows(report)
    m = report["machine"]
    ceil = report.get("ceilings") or {}
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{report['command']}` on {report['date'][:10]} ({report['date']});",
        "do not edit by hand, rerun the command.",
        "",
        f"- GPU: {m.get('gpu')} (driver {m.get('driver')}, CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}); "
        f"torch {m.get('torch')}, triton {m.get('triton')}",
        f"- Case: {report['settings']['dtype']}, layouts {report['settings']['layout']} (each against cuDNN in the "
        f"same layout; channels_last = `torch.channels_last` input and weight), precision "
        f"{report['results'][0]['precision'] if report['results'] else '-'}; cuDNN = `F.conv2d` at PyTorch "
        "defaults (TF32 allowed for float32); seed = the seed's direct kernel (`backend=\"direct\"`, NCHW).",
        "- Geomean speedup over cuDNN: " + (", ".join(f"{_LAYOUT_TITLE[k]} {v:.2f}x"
                                                   for k, v in layout_geomeans(report).items()) or "-") + ".",
        f"- fastconv's config: {report['settings'].get('fastconv_config', 'tuned')}.",
        f"- Timing: {report['timing']}; median of interleaved rounds; the first call (compile, autotune) is "
        "excluded and recorded in the JSON.  Times are the device's: before each timed call the GPU spins "
        "until the host has enqueued it, so host speed and jitter stay out (the host's enqueue time per round "
        "is in the JSON; `scripts/host_overhead.py` measures the host cost per call on its own).",
        "- % of peak = achieved TFLOP/s / min(compute peak, bandwidth x arithmetic intensity) (the roofline "
        "bound; `bound` says which limits).  Ceilings: "
        + "; ".join(f"{k} {v:.1f} TFLOP/s ({(ceil.get('sources') or {}).get(k, '?')})"
                    for k, v in (ceil.get("tflops") or {}).items())
        + (f"; bandwidth {ceil['bw_gbs']:.0f} GB/s ({ceil['sources'].get('bw')})"
           if ceil.get("bw_gbs") else ""),
        "- rel. error = ||y - ref|| / ||ref|| against the fp64 reference.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]
    if chart:
        lines += [f"![speedup and roofline]({chart})", ""]
    return "\n".join(lines)


class _Progress:
    """One status line on stderr (rewritten in place on a terminal)."""

    def __init__(self, total: int):
        self.total, self.tty, self.t0 = total, sys.stderr.isatty(), time.perf_counter()

    def show(self, i: int, text: str, done: bool = False) -> None:
        msg = f"[{i}/{self.total} {time.perf_counter() - self.t0:6.1f}s] {text}"
        if self.tty and not done:
            sys.stderr.write("\r\033[K" + msg[:150])
        else:
            sys.stderr.write(("\r\033[K" if self.tty else "") + msg + "\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    timed = torch.cuda.is_available() and not interpreter_enabled()
    if timed:
        device = torch.device("cuda", torch.cuda.current_device())
        backend = CudaEvents(device)
        problems = select(args.problems, quick=args.quick)
        print(f"fastconv bench on {torch.cuda.get_device_name(device)}: measuring ceilings where none are "
              "recorded ...", file=sys.stderr)
        ceilings = ceilings_for(torch.cuda.get_device_name(device), device_index=device.index)
    else:
        if args.update_benchmarks_md:
            print("fastconv bench: --update-benchmarks-md needs a GPU (nothing is timed in the interpreter)",
                  file=sys.stderr)
            return 2
        device, backend, ceilings = torch.device("cpu"), None, None
        asked = select(args.problems) if args.problems else []
        problems = [p for p in asked if p.group in ("smoke", "gate-correctness")] or [SMOKE[0]]
        print("fastconv bench: NO GPU - running tiny problems in Triton's interpreter to check correctness.\n"
              "Times are NOT measured: interpreter times say nothing about GPU performance.", file=sys.stderr)
    impls = ["cudnn", "fastconv"] + ([] if args.no_seed else ["direct"])
    layouts = layouts_of(args.layout)
    cases = [p.case(args.dtype, lay, args.precision) for p in problems for lay in layouts]

    progress = _Progress(len(cases))
    results = []
    for i, case in enumerate(cases, 1):
        progress.show(i, f"{case.id}: {case.problem.short()} ...")
        # the seed's kernel once per problem (it reads any layout the same way): in NCHW, its own layout
        case_impls = [i for i in impls if i != "direct" or case.layout == layouts[-1]]
        res = bench_case(case, case_impls, device, backend, ceilings, budget_s=args.budget, rounds=args.rounds,
                         tune=not args.untuned)
        results.append(res)
        if timed:
            f, c = res.impls["fastconv"], res.impls["cudnn"]
            progress.show(i, f"{case.id}: cuDNN {c.median_ms:.3f} ms, fastconv "
                             + (f"ERROR {f.error}" if f.error else f"{f.median_ms:.3f} ms ({res.speedup():.2f}x)"),
                          done=True)
        else:
            progress.show(i, f"{case.id}: checked", done=True)

    report = {
        "schema": "fastconv-bench/1",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m fastconv bench" + "".join(" " + shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 1 and sys.argv[1] == "bench" else "python -m fastconv bench",
        "timed": timed,
        "timing": backend.describe() if backend is not None else "NOT TIMED (Triton interpreter, no GPU)",
        "machine": machine_info(device if timed else None),
        "ceilings": ceilings.to_json() if ceilings is not None else None,
        "settings": {"dtype": args.dtype, "layout": args.layout, "precision": args.precision,
                     "fastconv_config": "untimed default" if args.untuned else "tuned on the device first",
                     "budget_s": args.budget, "rounds": args.rounds, "impls": impls},
        "results": [r.to_json() for r in results],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(report, indent=1, default=str))
    print()
    if not timed:
        print("NOT TIMED: Triton interpreter smoke run (no GPU); correctness against the fp64 reference "
              "only.")
    print(format_table(report))
    if timed:
        geo = layout_geomeans(report)
        print("\ngeomean speedup over cuDNN in the same layout: "
              + ", ".join(f"{_LAYOUT_TITLE[k]} {v:.2f}x" for k, v in geo.items()))
        print("\n% of peak: achieved TFLOP/s over the roofline bound min(compute peak, bandwidth x "
              f"intensity) of {ceilings.device_name}; {report['timing']}.")
    print(f"\nwrote {out / 'bench.json'}")
    chart = None
    if timed and not args.no_chart:
        chart = draw(report, out / "bench.png")
        print(f"wrote {chart}" if chart else "no chart: matplotlib is not installed (pip install matplotlib)")
    if args.update_benchmarks_md:
        md_path = Path(args.update_benchmarks_md)
        rel_chart = None
        if chart is not None:
            img = md_path.parent / "benchmarks" / "latest.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            img.write_bytes(Path(chart).read_bytes())
            latest = md_path.parent / "benchmarks" / "latest.json"
            latest.write_text(json.dumps(report, indent=1, default=str))
            rel_chart = "benchmarks/latest.png"
        from .networks import carry_networks_section  # keep the section `fastconv networks` writes

        md_path.write_text(carry_networks_section(md_path, benchmarks_md(report, rel_chart)))
        print(f"wrote {md_path}")
    wrong = [f"{r['id']} {impl}" + (f" ({d['error']})" if d.get("error") else "")
             for r in report["results"] for impl, d in r["impls"].items()
             if d.get("error") or (d.get("check") and not d["check"]["ok"])]
    if wrong:
        print(f"bench: WRONG OUTPUT: {', '.join(wrong)}")
        return 1
    return 0
