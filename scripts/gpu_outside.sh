#!/usr/bin/env bash
# The verification framework on the GPU, against fastconv and three implementations nobody here wrote:
#
#   python scripts/extract_seed.py ../shared/seed/000_afb75b68a3bc9d02.txt .outside/seed.py   # once, here
#   bash scripts/gpu_outside.sh [OUTDIR]          (default out/gpu_outside; 5-7 minutes on an H200, 7 at most)
#
# (the device runner copies only the repository: carry the ignored .outside/ folder with the seed's file)
#
#   fastconv   python -m fastconv verify fastconv            fastconv's dispatcher, every property
#   seed       python -m fastconv verify .outside/seed.py    the seed's kernel as given (KernelBench ModelNew),
#                                                            float32 as KernelBench runs it, plus its benchmark
#                                                            on KernelBench #80 against cuDNN
#   seed-half  the same with float16/bfloat16 inputs claimed (what KernelBench never asks)
#   inductor   python -m fastconv verify inductor-triton     torch.compile max-autotune, Triton conv template only
#   jax        python -m fastconv verify jax                 jax.lax.conv_general_dilated via DLPack
#
# Hypothesis examples are capped (--max-examples) and each step has a timeout, so the run ends within 7 minutes; each step's full log
# (with Hypothesis' shrunk falsifying examples) goes to OUTDIR/<step>.log; a summary line per step is last.
# STEPS="seed jax" runs a subset.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${1:-out/gpu_outside}
STEPS=${STEPS:-"fastconv seed seed-half inductor jax"}
mkdir -p "$OUT"
: >"$OUT/summary.txt"
VERIFY=(python -m fastconv verify)

# shared: step NAME LIMIT COMMAND... (selected by $STEPS), note LINE
source scripts/step.sh
STEP_PATTERN="[0-9]+ (passed|failed)|error"
STEP_SHOW="^(FAILED|ERROR|SKIPPED)|Falsifying|^E +(IntegrityError|AssertionError|RuntimeError|TypeError)|not claimed|passed|failed"

if [ ! -f .outside/seed.py ]; then
    note "seed      skipped: no .outside/seed.py (run scripts/extract_seed.py and carry .outside)"
    STEPS=${STEPS//seed-half/}
    STEPS=${STEPS//seed/}
fi
step fastconv 90 "${VERIFY[@]}" fastconv --profile gpu --max-examples 3 --no-bench -k "not every_config"
step seed "${SEED_TIMEOUT:-80}" "${VERIFY[@]}" .outside/seed.py --profile gpu --max-examples "${SEED_EXAMPLES:-8}" \
    --pytest-args="--bench-problems kb80"
step seed-half 40 "${VERIFY[@]}" .outside/seed.py --profile gpu --max-examples 8 --no-bench \
    --cap dtypes=float16,bfloat16 -k "matches_reference"
step inductor 150 "${VERIFY[@]}" inductor-triton --profile gpu --max-examples 2 --no-bench \
    -k "matches_reference or results_follow or repeated or stream"
step jax 50 "${VERIFY[@]}" jax --profile gpu --max-examples 6 --no-bench

echo
echo "=================== summary ($OUT)"
cat "$OUT/summary.txt"
