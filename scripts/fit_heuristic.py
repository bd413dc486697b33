"""Measure every candidate config on a set of conv problems, fit the untimed heuristic, evaluate it (GPU).

    python scripts/fit_heuristic.py                         # ~6 min on an H200: measure, fit, evaluate
    python scripts/fit_heuristic.py --max-minutes 3         # stop measuring after 3 minutes (then fit)
    python scripts/fit_heuristic.py --resume --record R.jsonl   # continue: problems already in R are skipped
    python scripts/fit_heuristic.py --fit-only --record R.jsonl # no GPU: fit and evaluate recorded data
    python scripts/fit_heuristic.py --fit-only --record R.jsonl --palette 0.02,0.05,0.1
                                # and: what choosing from a few configs per group would cost

The packaged sm_90 table was fitted from ``benchmarks/records/h200-triton3.6.0-tune-record.jsonl`` (an H200,
Triton 3.6.0, 3.3 minutes of measuring); ``--fit-only --record`` on that file reproduces it and its evaluation.

1. *Measure* (GPU): for each problem -- the benchmark catalogue (``fastconv.bench.problems.CATALOGUE``, every
   stage) and the conv layers of ResNet-18/50, MobileNetV2, EfficientNet-B0 and VGG-16
   (``fastconv.bench.archs``, torchvision's layers) at batch 8, 1 and 64, in NCHW and NHWC, float32 at the GPU
   default precision (TF32) -- one ``fastconv.conv2d`` call is captured and tuned
   (:func:`fastconv.tuning.autotuner.tune_job`: candidates compiled in parallel, each timed on the device),
   recording every candidate's time to ``--record`` (JSON lines; the tuner's ``FASTCONV_TUNE_RECORD`` format).
   Order: catalogue, then networks at batch 8, then 1, then 64, so a ``--max-minutes`` cut keeps variety.
2. *Fit*: :func:`fastconv.tuning.heuristic.fit_table` of all records -> ``heuristic.json`` (in ``$OUT``, or
   ``--table``), the entry of this GPU's architecture replaced.  Copy it to
   ``fastconv/kernels/tables/heuristic.json`` and commit it.
3. *Evaluate*, from the records only (no GPU time): per catalogue problem and layout, the device time of the
   heuristic's pick with that problem's own record left out (leave-one-out), over the best measured time;
   the same for the analytic rule (the fallback without data).  A table is printed last; details go to
   ``$OUT/fit_heuristic.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

NETWORKS = "resnet18,resnet50,mobilenet_v2,efficientnet_b0,vgg16"


def _out_dir() -> Path:
    return Path(os.environ.get("OUT") or "out/fit_heuristic")


def _problem_sets(args) -> list[tuple[str, str, list]]:
    """``(label, layout, [ConvProblem stages])`` in measuring order (see the module's docstring)."""
    from fastconv.bench.archs import network_problems
    from fastconv.bench.problems import select

    sets: list[tuple[str, str, list]] = []
    if args.catalogue:
        for bp in select(args.catalogue):
            for layout in args.layouts:
                sets.append((f"catalogue:{bp.name}", layout, list(bp.case("float32", layout).stages)))
    seen = set()
    for batch in args.batch:
        for name in [n for n in args.networks.split(",") if n]:
            for layout in args.layouts:
                for _, p in network_problems(name, batch, channels_last=layout == "nhwc"):
                    if (p.key(), layout) not in seen:
                        seen.add((p.key(), layout))
                        sets.append((f"{name}:b{batch}", layout, [p]))
    return sets


def _fmt(layout: str):
    return torch.channels_last if layout == "nhwc" else torch.contiguous_format


def _params(p, layout: str, device) -> tuple:
    w = (torch.randn(p.weight_shape, device=device) / math.sqrt(p.gemm_k)).contiguous(memory_format=_fmt(layout))
    b = torch.randn(p.c_out, device=device) * 0.1 if p.has_bias else None
    return w, b


def measure(args, record: Path) -> None:
    import fastconv
    from fastconv.functional import forget_plans
    from fastconv.tuning import autotuner

    device = torch.device("cuda", torch.cuda.current_device())
    done = set()
    if record.exists():
        if not args.resume:
            raise SystemExit(f"{record} exists: pass --resume to continue it, or another --record")
        for line in record.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add((fastconv.ConvProblem(**r["problem"]).short(), r["precision"], r["layout"]))
    sets = _problem_sets(args)
    deadline = time.perf_counter() + args.max_minutes * 60
    t0 = time.perf_counter()
    tuned = skipped = 0
    print(f"measuring up to {len(sets)} problem sets for {args.max_minutes} min into {record} "
          f"({len(done)} problems recorded before)", flush=True)
    with autotuner.record_to(record):
        for i, (label, layout, stages) in enumerate(sets, 1):
            if time.perf_counter() > deadline:
                print(f"--max-minutes reached: {len(sets) - i + 1} problem sets left (--resume continues)")
                break
            x = torch.randn(stages[0].input_shape, device=device).contiguous(memory_format=_fmt(layout))
            for p in stages:
                prec = fastconv.resolve_precision("float32", None, device)
                y = torch.empty(p.output_shape, device=device).contiguous(memory_format=_fmt(layout))
                if (p.short(), str(prec), layout) in done:
                    skipped += 1
                    x = y  # the next stage's input (its shape)
                    continue
                w, b = _params(p, layout, device)
                forget_plans()
                try:
                    with autotuner.capture_jobs() as jobs, torch.no_grad():
                        y = fastconv.conv2d(x, w, b, (p.stride_h, p.stride_w), p.torch_padding,
                                            (p.dil_h, p.dil_w), p.groups)
                except Exception as exc:  # e.g. out of memory: reported, the run goes on
                    print(f"[{i}/{len(sets)}] {label} {p.short()}: FAILED {type(exc).__name__}: {exc}")
                    break
                for job in jobs.values():
                    try:
                        res = autotuner.tune_job(job, jobs=args.jobs, commit=False)  # recorded, not cached
                    except Exception as exc:  # reported, the run goes on
                        print(f"[{i}/{len(sets)}] {label} {job.describe()}: FAILED {type(exc).__name__}: {exc}")
                        continue
                    tuned += 1
                    done.add((p.short(), job.precision, layout))
                    best = res.times_ms.get(res.config.name())
                    print(f"[{i}/{len(sets)}] {time.perf_counter() - t0:6.1f}s {label} {job.describe()}: "
                          f"{len(res.configs)} configs, compile {res.compile_seconds:.1f}s, "
                          f"all {res.seconds:.1f}s, best {res.config} {best:.4f} ms", flush=True)
                x = y
                del jobs
            torch.cuda.empty_cache()
    print(f"measured {tuned} problems ({skipped} recorded before) in {time.perf_counter() - t0:.0f} s")


def _read(paths: list[Path]) -> list[dict]:
    out = []
    for path in paths:
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def fit_and_evaluate(args, record: Path) -> int:
    from fastconv.bench.problems import select
    from fastconv.gpus import lookup
    from fastconv.tuning import heuristic

    records = _read([record, *args.extra_records])
    if not records:
        print(f"no records in {record}: nothing to fit")
        return 1
    fitted = heuristic.fit_table(records)
    table_path = args.table or _out_dir() / "heuristic.json"
    packaged = Path(__file__).resolve().parents[1] / "fastconv" / "kernels" / "tables" / "heuristic.json"
    base = json.loads((table_path if table_path.exists() else packaged).read_text())
    base.setdefault("archs", {}).update(fitted)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(json.dumps(base, indent=1) + "\n")
    for arch, entry in fitted.items():
        print(f"fitted {arch}: {len(entry['rows'])} problems ({entry.get('gpu')}, Triton {entry.get('triton')}) "
              f"-> {table_path}")

    # leave-one-out on the catalogue problems
    catalogue_ids = {}
    for bp in select(args.catalogue or "all"):
        for layout in ("nchw", "nhwc"):
            for s in bp.case("float32", layout).stages:
                catalogue_ids[s.short(), layout] = bp.name
    rows = []
    for arch in fitted:
        spec = lookup(records[-1].get("gpu", ""))
        sm = spec.sm_count if spec is not None else 132
        for r in heuristic.leave_one_out(records, arch, sm_count=sm):
            r.update(arch=arch, catalogue=catalogue_ids.get((r["short"], r["layout"])))
            rows.append(r)
    cat = [r for r in rows if r["catalogue"]]
    net = [r for r in rows if not r["catalogue"]]
    out = _out_dir() / "fit_heuristic.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"records": len(records), "evaluation": rows}, indent=1))
    print("\nvs the tuned best, catalogue problems (device time ratio): heur = the heuristic with the problem's own"
          "\nrecord left out (a shape never measured), fitted = the fitted table's pick (what it ships), rule")
    print(f"{'problem':22s} {'layout':6s} {'kernel':9s} {'best ms':>9s} {'heur':>6s} {'fitted':>6s} {'rule':>6s}  "
          "picked (leave-one-out)")
    for r in cat:
        print(f"{r['catalogue']:22s} {r['layout']:6s} {r['problem'].split()[0]:9s} {r['best_ms']:9.4f} "
              f"{r['ratio']:6.3f} {r['fitted_ratio']:6.3f} {r['rule_ratio']:6.3f}  {r['picked']} ({r['source']})")
    for name, part in (("catalogue", cat), ("other layers", net), ("all", rows)):
        if part:
            print(f"{name:15s}: {len(part):4d} problems, heuristic geomean {_geo(part, 'ratio'):.3f} "
                  f"max {max(r['ratio'] for r in part):.3f} within 5%: "
                  f"{sum(r['ratio'] <= 1.05 for r in part)}/{len(part)}; fitted table max "
                  f"{max(r['fitted_ratio'] for r in part):.3f}; rule geomean {_geo(part, 'rule_ratio'):.3f}"
                  f" max {max(r['rule_ratio'] for r in part):.3f}")
    for tol in args.palette:
        _palette_report(records, fitted, tol)
    print(f"details: {out}")
    return 0


def _palette_report(records: list[dict], fitted: dict, tol: float) -> None:
    """Per group, how many configs cover every measured problem within ``tol`` of its best (a fixed palette
    would bound a network's binaries per group by that number), and the leave-one-out cost of choosing only
    from such a palette."""
    from fastconv.tuning import heuristic

    for arch, entry in fitted.items():
        model = heuristic.Heuristic.from_json(entry)
        sizes = {g: len(heuristic.cover(rows, tol)) for g, rows in sorted(model.groups.items())}
        rows = heuristic.leave_one_out(records, arch, palette=tol)
        print(f"palette within {tol:.0%} ({arch}): configs per group "
              + ", ".join(f"{g} {n}/{len({c for r in model.groups[g] for c in r.times})}" for g, n in sizes.items())
              + f"; leave-one-out geomean {_geo(rows, 'ratio'):.3f} max {max(r['ratio'] for r in rows):.3f} "
              f"within 5%: {sum(r['ratio'] <= 1.05 for r in rows)}/{len(rows)}")


def _geo(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if math.isfinite(r[key])]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else math.nan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", type=Path, help="JSON-lines record of every candidate's time "
                    "(default $OUT/tune_record.jsonl)")
    ap.add_argument("--resume", action="store_true", help="continue --record: skip problems it has")
    ap.add_argument("--max-minutes", type=float, default=5.0, help="stop measuring after this long (default 5)")
    ap.add_argument("--catalogue", default="all", help="catalogue problems or groups ('' = none)")
    ap.add_argument("--networks", default=NETWORKS)
    ap.add_argument("--batch", default="8,1,64", type=lambda s: [int(v) for v in s.split(",") if v])
    ap.add_argument("--layouts", default="nchw,nhwc", type=lambda s: [v for v in s.split(",") if v])
    ap.add_argument("--jobs", type=int, default=None, help="compiler threads")
    ap.add_argument("--fit-only", action="store_true", help="no measuring: fit and evaluate --record")
    ap.add_argument("--extra-records", type=Path, nargs="*", default=[], help="more record files to fit from")
    ap.add_argument("--palette", default=[], type=lambda s: [float(v) for v in s.split(",") if v],
                    help="also report fixed per-group palettes covering every problem within these tolerances")
    ap.add_argument("--table", type=Path, help="where to write the fitted table (default $OUT/heuristic.json)")
    args = ap.parse_args(argv)
    record = args.record or _out_dir() / "tune_record.jsonl"
    if not args.fit_only:
        if not torch.cuda.is_available():
            print("measuring needs a CUDA GPU (use --fit-only to fit recorded data)")
            return 2
        record.parent.mkdir(parents=True, exist_ok=True)
        measure(args, record)
    return fit_and_evaluate(args, record)


if __name__ == "__main__":
    sys.exit(main())
