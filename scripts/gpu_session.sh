#!/usr/bin/env bash
# One GPU session's checks in parts that each fit a device call (10 minutes), from the repository root:
#
#   bash scripts/gpu_session.sh PART          PART = checks | speed | first | outside
#
# checks:  the property suite (gpu profile, xdist workers sharing the GPU), the GPU unit tests with PyTorch's
#          OpInfo/ModuleInfo samples on CUDA and the GPU-only cheat test, torch.compile/export/CUDA graphs/autocast
# speed:   `fastconv bench --quick`, a pytest-benchmark baseline of this GPU, the verification framework on the
#          seed's kernel
# first:   fit the untimed heuristic from measured configs (scripts/fit_heuristic.py, ~3.5 min) and put the
#          fitted table in the package for this run; first forward of converted networks, cold and with a warm
#          Triton cache (scripts/first_forward.py); fastconv inside torch.compile / export / CUDA graphs /
#          autocast on a converted ResNet-18 (scripts/gpu_torch_op.py)
# outside: the verification framework on implementations nobody here wrote (scripts/gpu_outside.sh)
# A summary line per step is printed last.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Work in a scratch folder; at the end $RESULTS gets session.log and one results.tgz of everything (the device
# runner brings back at most 8 files).
RESULTS=${OUT:-out/gpu_session}
export OUT
OUT=$(mktemp -d /tmp/gpu_session.XXXX)
mkdir -p "$RESULTS"
LOG="$OUT/session.log"
SUMMARY=()

step() {  # name timeout-seconds command...
    local name=$1 limit=$2
    shift 2
    echo "=================== $name ($(date +%T)): $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    local last
    last=$(grep -aE "passed|failed|PASS|FAIL|within 5%|geomean|cold|killed|all checks" "$LOG" | tail -n 2 | tr '\n' ' ')
    SUMMARY+=("$(printf '%-10s exit %-3s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" "${last:0:200}")")
}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$LOG"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOG"

case "${1:-}" in
checks)
    # sized by the environment: PROPS_WORKERS (default 12) xdist workers share the GPU, HYPOTHESIS_MAX_EXAMPLES
    # (default 10) examples per property test, PROPS_LIMIT seconds (default 380) for the property suite
    export HYPOTHESIS_MAX_EXAMPLES=${HYPOTHESIS_MAX_EXAMPLES:-10}
    step props "${PROPS_LIMIT:-380}" python -m pytest properties -q -n "${PROPS_WORKERS:-12}" -p no:cacheprovider \
        --hypothesis-profile gpu
    step units 100 python -m pytest tests/test_api.py tests/test_kernels.py tests/test_modules.py tests/test_convert.py \
        tests/test_torch_op.py tests/test_torch_semantics.py tests/test_cheats.py -q -n 8 -p no:cacheprovider
    step torch_op 90 python scripts/gpu_torch_op.py
    ;;
speed)
    step bench 170 python -m fastconv bench --quick --no-seed --out "$OUT/bench"
    step baseline 110 python -m pytest -m benchmark benchmarks/ --bench-quick -p no:cacheprovider \
        --benchmark-json="$OUT/baseline_h200.json"
    SEED_TIMEOUT=200 SEED_EXAMPLES=3 STEPS="seed" step outside 220 bash scripts/gpu_outside.sh "$OUT/outside"
    ;;
first)
    step fit 240 python scripts/fit_heuristic.py --max-minutes 3
    if [ -s "$OUT/heuristic.json" ]; then cp "$OUT/heuristic.json" fastconv/kernels/tables/heuristic.json; fi
    step first_fwd 180 python scripts/first_forward.py --timeout 80
    step torch_op 150 python scripts/gpu_torch_op.py
    ;;
outside)
    step outside 520 bash scripts/gpu_outside.sh
    ;;
*)
    echo "usage: bash scripts/gpu_session.sh checks|speed|first|outside" >&2
    exit 2
    ;;
esac

echo
echo "=================== summary ($RESULTS/results.tgz)"
printf '%s\n' "${SUMMARY[@]}" | tee -a "$LOG"
cp "$LOG" "$RESULTS/session.log"
tar czf "$RESULTS/results.tgz" -C "$OUT" .
