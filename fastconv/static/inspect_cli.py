"""``python -m fastconv inspect``: registers, spills, shared memory and occupancy of every kernel config.

Compiles (or reads from the cache) every static variant of every registered kernel for each target it is
declared for and prints one row per (variant, target), then the toolchain verdict
(:mod:`fastconv.static.toolchain`): failing configs are pruned where the installed Triton is a new toolchain
or recorded them, and the command exits non-zero only on a regression (a config that fails on a supported
toolchain without being recorded) or a mode left without any passing config::

    python -m fastconv inspect                    # sm_89 and sm_90, every kernel
    python -m fastconv inspect --target sm_89 --kernel igemm --failures
    python -m fastconv inspect --json out/static.json
    python -m fastconv inspect --record           # record the installed Triton's prunes in the package table

No GPU is needed; see :mod:`fastconv.static`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from .resource_gate import DEFAULT_TARGETS, check, registry_items
from .toolchain import judge, write_local_record, write_package_record

__all__ = ["configure", "run", "format_table"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="all", choices=[*DEFAULT_TARGETS, "all"],
                        help="GPU target to check (default: all = each variant's declared targets)")
    parser.add_argument("--kernel", action="append", default=None, metavar="NAME",
                        help="only this registered kernel (repeatable; default: every kernel in the registry)")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write the rows as JSON to PATH ('-' or no value: stdout, instead of the table)")
    parser.add_argument("--failures", action="store_true", help="print only the rows that fail the gate")
    parser.add_argument("--jobs", type=int, default=None,
                        help="compile worker processes (default: $FASTCONV_STATIC_JOBS or the CPU count)")
    parser.add_argument("--no-cache", action="store_true", help="ignore cached reports (still refreshes them)")
    parser.add_argument("--record", action="store_true",
                        help="write the installed Triton's failing configs into fastconv/kernels/tables/"
                             "toolchains.json (makes it a supported toolchain whose prunes are expected)")


_COLUMNS = [  # header, width, row -> text
    ("kernel", 9, lambda r: r["kernel"]),
    ("variant", 40, lambda r: r["variant"]),
    ("config", 37, lambda r: r["config"] + (f" maxnreg{r['maxnreg']}" if r.get("maxnreg") else "")),
    ("target", 6, lambda r: r["target"]),
    ("regs", 4, lambda r: _get(r, "registers")),
    ("spill B", 7, lambda r: _get(r, "stack_bytes", lambda v: v + r["local_bytes"])),
    ("smem KB", 7, lambda r: _get(r, "shared_bytes", lambda v: f"{v / 1024:.1f}")),
    ("blk/SM", 6, lambda r: _get(r, "blocks_per_sm")),
    ("warps/SM", 8, lambda r: _get(r, "warps_per_sm")),
    ("occ", 4, lambda r: _get(r, "occupancy", lambda v: f"{v:.0%}")),
    ("limit", 9, lambda r: _get(r, "limiter")),
    ("TC ops", 6, lambda r: _get(r, "tensor_core_ops", lambda v: v if r["tensor_core"] else f"({v})")),
    ("gate", 4, lambda r: "ok" if r["ok"] else "FAIL"),
]


def _get(row: dict, key: str, fmt=lambda v: v) -> str:
    return "-" if row.get(key) is None else str(fmt(row[key]))


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width table; failing rows are followed by their reasons."""
    lines = ["  ".join(h.ljust(w) if i < 4 else h.rjust(w) for i, (h, w, _) in enumerate(_COLUMNS))]
    lines.append("-" * len(lines[0]))
    for r in rows:
        cells = [f(r) for _, _, f in _COLUMNS]
        lines.append("  ".join(c[:w].ljust(w) if i < 4 else c.rjust(w)
                               for i, (c, (_, w, _)) in enumerate(zip(cells, _COLUMNS))))
        lines.extend(f"{'':>11}! {v}" for v in r["violations"])
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    targets = None if args.target == "all" else [args.target]
    items = registry_items(args.kernel, use_cache=not args.no_cache, jobs=args.jobs)
    gate = check(items, targets=targets, jobs=args.jobs, use_cache=not args.no_cache)
    rows = [r.row() for r in gate.results]
    shown = [r for r in rows if not r["ok"]] if args.failures else rows
    undeclared = sum(t not in i.targets for i in items for t in (targets or ()))
    summary = {
        "variants": len(items), "checked": len(rows), "failed": sum(not r["ok"] for r in rows),
        "not_declared": undeclared,
        "compiled": gate.compiled, "cached": gate.cached, "seconds": round(gate.seconds, 2),
    }
    verdict = judge(gate)
    if args.kernel is None and targets is None:  # a whole-registry run: what this machine's tuner prunes
        write_local_record(verdict)
    if args.record:
        print(f"recorded Triton {verdict.version} in {write_package_record(verdict)}")
    summary["toolchain_ok"] = verdict.ok
    if args.json:
        text = json.dumps({"summary": summary, "rows": shown}, indent=1)
        if args.json == "-":
            print(text)
            return int(not verdict.ok)
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(format_table(shown))
    print()
    per = Counter((r["kernel"], r["target"], r["ok"]) for r in rows)
    for kernel, target in sorted({(k, t) for k, t, _ in per}):
        ok, bad = per[(kernel, target, True)], per[(kernel, target, False)]
        print(f"{kernel:>10} {target}: {ok:4d} ok  {bad:4d} fail")
    if undeclared:
        print(f"{undeclared} variants are not declared for {args.target} (not checked there)")
    print(f"{summary['checked']} (variant, target) pairs from {summary['variants']} variants: "
          f"{summary['failed']} fail the resource checks; {summary['compiled']} compiled, {summary['cached']} "
          f"from cache in {summary['seconds']} s")
    print(verdict.summary())
    sys.stdout.flush()
    return int(not verdict.ok)
