#!/usr/bin/env bash
# The performance gate's acceptance demo, on a GPU, from the repository root:
#
#   bash benchmarks/gate_demo.sh [OUTDIR]          (default out/gate_demo; about 4-6 minutes on an H100)
#
# 1. `gate --against HEAD` twice on unchanged code               -> both must PASS   (exit 0)
# 2. against a candidate copy whose autotuner takes a config >= 20% slower than the best
#                                                                 -> must FAIL, slower (exit 1)
# 3. against a candidate copy with a planted off-by-one in the input-width bound
#                                                                 -> must FAIL, wrong  (exit 3)
# Each run's table goes to OUTDIR/<name>.txt, its JSON to OUTDIR/<name>.json.  The script exits 0 only if
# all four runs ended as expected.  Extra gate arguments: GATE_ARGS="--problems gate --rounds 30 --repeats 3".
set -u
cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$0")/"
[ -d fastconv ] || cd ..
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
OUT=${1:-out/gate_demo}
GATE_ARGS=${GATE_ARGS:-"--rounds 30 --repeats 3"}
# The baseline: a git ref, or a package directory (for a machine that has the tree but no git history, e.g.
# `git archive HEAD fastconv | tar -x -C .gate_base` made beside the checkout and copied along).
BASE=${GATE_BASE:-HEAD}
mkdir -p "$OUT"
if [ "$BASE" = HEAD ] && ! git diff --quiet HEAD -- fastconv; then
    echo "note: fastconv/ has uncommitted changes: runs 1-2 compare HEAD with the working tree, not A with A"
fi

FAILED=""
run_gate() {  # name expected-exit gate-args...
    local name=$1 expect=$2
    shift 2
    echo
    echo "=================== $name: python -m fastconv gate $* $GATE_ARGS   (expect exit $expect)"
    local t0=$SECONDS
    # shellcheck disable=SC2086
    python -m fastconv gate "$@" $GATE_ARGS --json "$OUT/$name.json" 2>"$OUT/$name.log" | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "=================== $name: exit $rc (expected $expect), $((SECONDS - t0)) s"
    [ "$rc" = "$expect" ] || FAILED="$FAILED $name(exit $rc, expected $expect)"
}

run_gate unchanged-1 0 --against "$BASE"
run_gate unchanged-2 0 --against "$BASE"
python benchmarks/make_candidate.py slow "$OUT/slow" || exit 2
run_gate slowed 1 --against "$BASE" --candidate "$OUT/slow/fastconv"
python benchmarks/make_candidate.py off-by-one "$OUT/off_by_one" || exit 2
run_gate off-by-one 3 --against "$BASE" --candidate "$OUT/off_by_one/fastconv"

echo
echo "=================== summary (last line of each run)"
for name in unchanged-1 unchanged-2 slowed off-by-one; do
    printf '%-12s %s\n' "$name" "$(tail -n 1 "$OUT/$name.txt")"
done
if [ -n "$FAILED" ]; then
    echo "gate_demo: UNEXPECTED:$FAILED"
    exit 1
fi
echo "gate_demo: all four runs ended as expected"
