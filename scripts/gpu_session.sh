#!/usr/bin/env bash
# One GPU session's checks in parts that each fit a device call (10 minutes), from the repository root:
#
#   bash scripts/gpu_session.sh PART     PART = checks | speed | first | outside | gpus-check | gpus-time | gpus-speed
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
#
# On a machine with several GPUs, three parts in this order (each a device call; caches stay in the ignored
# .fastconv_cache/ between calls on one machine):
# gpus-check: the whole property suite with the gpu profile, PROPS_WORKERS (default 20) xdist workers round
#          robin over the GPUs, cold caches, Hypothesis seed $PROPS_SEED; meanwhile the GPU unit tests and the
#          verification framework on the seed's kernel (on the last GPU)
# gpus-time: the same property run (same seed, warm caches) with one worker per GPU, then with one worker, each
#          timed alone; the benchmark suite on every GPU (--dist each), saved as per-GPU baselines, then run
#          again and compared per GPU; torch.compile / export / CUDA graphs / autocast
# gpus-speed: the heuristic's fit on the first GPU while `fastconv bench --quick` (both layouts) times on the last
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

# shared: step NAME LIMIT COMMAND..., every step runs here ($STEPS is for the scripts a step runs)
unset STEPS
source scripts/step.sh
STEP_PATTERN="passed|failed|PASS|FAIL|within 5%|geomean|cold|killed|all checks"

# (--times-log: a line per finished test, so a property run cut by its limit still shows where the time went)
PROPS=(python -m pytest properties -q -p no:cacheprovider --hypothesis-profile gpu --durations 12)
UNITS=(python -m pytest tests/test_api.py tests/test_kernels.py tests/test_modules.py tests/test_convert.py
       tests/test_torch_op.py tests/test_torch_semantics.py tests/test_cheats.py tests/test_parallel.py -q
       -p no:cacheprovider)
BENCH=(python -m pytest -m benchmark benchmarks/ --bench-quick -p no:cacheprovider)

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$LOG"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$LOG"

case "${1:-}" in
checks)
    # sized by the environment: PROPS_WORKERS (default 12) xdist workers share the GPU, HYPOTHESIS_MAX_EXAMPLES
    # (default 10) examples per property test, PROPS_LIMIT seconds (default 380) for the property suite
    export HYPOTHESIS_MAX_EXAMPLES=${HYPOTHESIS_MAX_EXAMPLES:-10}
    step props "${PROPS_LIMIT:-380}" "${PROPS[@]}" -n "${PROPS_WORKERS:-12}" --times-log "$OUT/props.times.jsonl"
    step units 100 "${UNITS[@]}" -n 8
    step torch_op 90 python scripts/gpu_torch_op.py
    ;;
speed)
    step bench 170 python -m fastconv bench --quick --no-seed --out "$OUT/bench"
    step baseline 110 "${BENCH[@]}" --benchmark-json="$OUT/baseline_h200.json"
    SEED_TIMEOUT=200 SEED_EXAMPLES=3 step outside 220 env STEPS="seed" bash scripts/gpu_outside.sh "$OUT/outside"
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
gpus-check)
    # caches that later parts of this machine reuse (the device keeps ignored folders between calls)
    export TRITON_CACHE_DIR=$PWD/.fastconv_cache/triton FASTCONV_CACHE_DIR=$PWD/.fastconv_cache/tuning
    export HYPOTHESIS_STORAGE_DIRECTORY=$OUT/hypothesis-cold
    last_gpu=$(($(nvidia-smi -L | wc -l) - 1))
    (
        step units 140 "${UNITS[@]}" -n 8
        CUDA_VISIBLE_DEVICES=$last_gpu SEED_TIMEOUT=${SEED_TIMEOUT:-300} SEED_EXAMPLES=${SEED_EXAMPLES:-3} \
            step outside 360 env STEPS="seed seed-half" bash scripts/gpu_outside.sh "$OUT/outside"
    ) &
    step props_cold "${PROPS_LIMIT:-500}" "${PROPS[@]}" -n "${PROPS_WORKERS:-20}" \
        --times-log "$OUT/props_cold.times.jsonl" --hypothesis-seed "${PROPS_SEED:-2026}"
    wait
    ;;
gpus-time)
    export TRITON_CACHE_DIR=$PWD/.fastconv_cache/triton FASTCONV_CACHE_DIR=$PWD/.fastconv_cache/tuning
    ngpu=$(nvidia-smi -L | wc -l)
    # the cold run's examples again (same seed, fresh example databases): compiled kernels and tuned choices
    # come from the caches, so the two runs differ only in how many GPUs run the tests
    HYPOTHESIS_STORAGE_DIRECTORY=$OUT/hypothesis-n$ngpu step "props_n$ngpu" "${PROPS_LIMIT:-240}" "${PROPS[@]}" \
        -n "$ngpu" --hypothesis-seed "${PROPS_SEED:-2026}" --times-log "$OUT/props_n$ngpu.times.jsonl"
    # one worker: stopped at 2.2x the run above (a timeout then still shows the speed-up is at least 2.2x)
    HYPOTHESIS_STORAGE_DIRECTORY=$OUT/hypothesis-n1 step props_n1 $((STEP_SECONDS * 22 / 10 + 20)) "${PROPS[@]}" \
        -n 1 --hypothesis-seed "${PROPS_SEED:-2026}" --times-log "$OUT/props_n1.times.jsonl"
    step bench_save 240 "${BENCH[@]}" -n "$ngpu" --dist each --benchmark-storage="file://$OUT/baselines" \
        --benchmark-save=h200 --benchmark-json="$OUT/bench_save.json"
    step bench_compare 240 "${BENCH[@]}" -n "$ngpu" --dist each --benchmark-storage="file://$OUT/baselines" \
        --benchmark-compare='[0-9][0-9][0-9][0-9]_h200-*' --benchmark-compare-fail=median:15% --benchmark-columns=median,iqr,rounds
    step torch_op 120 python scripts/gpu_torch_op.py
    ;;
gpus-speed)
    export TRITON_CACHE_DIR=$PWD/.fastconv_cache/triton FASTCONV_CACHE_DIR=$PWD/.fastconv_cache/tuning
    last_gpu=$(($(nvidia-smi -L | wc -l) - 1))
    (CUDA_VISIBLE_DEVICES=0 step fit 300 python scripts/fit_heuristic.py --max-minutes 3.5) &
    CUDA_VISIBLE_DEVICES=$last_gpu step bench 300 python -m fastconv bench --quick --no-seed --out "$OUT/bench"
    wait
    ;;
*)
    echo "usage: bash scripts/gpu_session.sh checks|speed|first|outside|gpus-check|gpus-time|gpus-speed" >&2
    exit 2
    ;;
esac

echo
echo "=================== summary ($RESULTS/results.tgz)"
cat "$OUT/summary.txt" | tee -a "$LOG"
cp "$LOG" "$RESULTS/session.log"
tar czf "$RESULTS/results.tgz" -C "$OUT" .
