"""Which measured igemm problems run their best tile on a grid too small for the GPU, and the split-K variant
that tile gets (CPU; reads a tuner record, no GPU):

    python scripts/split_k_candidates.py [--record benchmarks/records/h200-triton3.6.0-tune-record.jsonl]

The list is what a GPU session should time with ``fastconv.tune`` (split-K configs are tuning candidates only;
the untimed default picks configs the records measured, and no record has measured split-K yet).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastconv.kernels.config import KernelConfig  # noqa: E402
from fastconv.kernels.igemm import split_k_of  # noqa: E402
from fastconv.kernels.launch import cdiv  # noqa: E402
from fastconv.problem import ConvProblem  # noqa: E402

RECORD = Path(__file__).resolve().parents[1] / "benchmarks" / "records" / "h200-triton3.6.0-tune-record.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", type=Path, default=RECORD)
    args = ap.parse_args(argv)
    records = [json.loads(line) for line in args.record.read_text().splitlines() if line.strip()]
    rows, total = [], 0
    for rec in records:
        if rec["kernel"] != "igemm":
            continue
        total += 1
        p = ConvProblem(**rec["problem"])
        times = {name: t for name, t in rec["times_ms"].items() if t}
        best = min(times, key=times.get)
        cfg = KernelConfig.from_json(rec["configs"][best])
        programs = cdiv(p.gemm_m, cfg["BLOCK_M"]) * cdiv(p.c_out_per_group, cfg["BLOCK_N"]) * p.groups
        splits = split_k_of(p, cfg)
        if splits > 1:
            rows.append((p.short(), programs, splits, times[best]))
    print(f"{len(rows)} of {total} recorded igemm problems run their best tile on a grid that split-K would cut:")
    print(f"{'problem':58s} {'programs':>8s} {'split':>5s} {'best ms':>8s}")
    for short, programs, splits, ms in rows:
        print(f"{short:58s} {programs:8d} {'x' + str(splits):>5s} {ms:8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
