#!/usr/bin/env bash
# Everything the CPU CI cannot check, in one GPU session, from the repository root:
#
#   bash scripts/gpu_verify.sh [OUTDIR]        (default out/gpu_verify; about 6-8 minutes on an H100)
#
# 1. the benchmarks against the committed baseline of this GPU (pytest-benchmark's own compare, 10% on medians);
#    step `save` (not in the default STEPS) first records a new baseline, to be committed from OUTDIR/baselines
# 2. the main job, `python -m fastconv demo`, on the GPU path
# 3. unit tests that need the GPU to mean something (gradients, modules, kernels) and the every-config sweep
#    with the gpu Hypothesis profile
# 4. the host cost of one call (scripts/host_overhead.py)
# 5. (not in the default STEPS: STEPS=torchop) fastconv under torch.compile / export / CUDA graphs / autocast on
#    a converted ResNet-18, and the host cost the torch op registration adds (scripts/gpu_torch_op.py, 2-3 min)
# Each step's full output goes to OUTDIR/<step>.log; a one-line summary per step is printed last.
# STEPS="compare demo" runs a subset.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${1:-out/gpu_verify}
STEPS=${STEPS:-"compare demo units configs host"}
mkdir -p "$OUT"
: >"$OUT/summary.txt"

# shared: step NAME LIMIT COMMAND... (selected by $STEPS), note LINE
source scripts/step.sh
STEP_PATTERN="passed|failed|error|all checks|PASS|FAIL|us/call"
STEP_SHOW="."  # the last 40 lines of each step

latest_baseline() {  # the newest committed baseline recorded on this GPU
    python - <<'PY'
import glob, json, torch
gpu = torch.cuda.get_device_name()
runs = [p for p in sorted(glob.glob("benchmarks/baselines/*/*.json"))
        if json.load(open(p)).get("machine_info", {}).get("fastconv", {}).get("gpu") == gpu]
print(runs[-1] if runs else "")
PY
}
BENCH=(python -m pytest -m benchmark benchmarks/ --bench-quick -p no:cacheprovider)
base=$(latest_baseline)
if [ -z "$base" ]; then
    note "compare  skipped: no committed baseline for this GPU"
    STEPS=${STEPS//compare/}
fi
# save: a new baseline (benchmarks/baselines/<machine>/NNNN_h100.json), compared with the previous one
step save 400 "${BENCH[@]}" --benchmark-storage=file://benchmarks/baselines --benchmark-save=h100 \
    --benchmark-save-data ${base:+--benchmark-compare="$(basename "$base" | cut -d_ -f1)"}
# the new baseline comes back flat under OUTDIR/baselines (the device tool returns no deep or dotted folders)
case " $STEPS " in *" save "*) mkdir -p "$OUT/baselines" && cp "$(latest_baseline)" "$OUT/baselines/";; esac
base=$(latest_baseline)
step compare 300 "${BENCH[@]}" --benchmark-compare="$base" --benchmark-compare-fail=median:10% \
    --benchmark-json="$OUT/compare.json"
step demo 180 python -m fastconv demo
step units 240 python -m pytest tests/test_api.py tests/test_modules.py tests/test_kernels.py -q -p no:cacheprovider
step configs 300 python -m pytest properties/test_configs.py --hypothesis-profile gpu -q -p no:cacheprovider
step host 120 python scripts/host_overhead.py
step torchop 400 python scripts/gpu_torch_op.py

echo
echo "=================== summary ($OUT)"
cat "$OUT/summary.txt"
