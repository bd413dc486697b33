# Sourced by the GPU session scripts (gpu_session.sh, gpu_outside.sh, gpu_verify.sh): one way to run a step.
#
#   step NAME LIMIT COMMAND...
#
# Runs COMMAND under `timeout LIMIT` (seconds) when NAME is selected (where $STEPS is set it names the steps to
# run; unset, every step runs), its output to $OUT/NAME.log.  Appends one line to $OUT/summary.txt (name, exit
# status, seconds, the last two log lines matching $STEP_PATTERN) and the step's header to $OUT/session.log;
# prints the log lines matching $STEP_SHOW (the last 40; unset: none).  Sets STEP_SECONDS; returns COMMAND's
# exit status (124: the limit; 0 for a step not selected).  Variables put before `step` reach COMMAND.
STEP_PATTERN=${STEP_PATTERN:-"passed|failed|PASS|FAIL|error|all checks"}
STEP_SECONDS=0

step() {
    local name=$1 limit=$2
    shift 2
    if [ -n "${STEPS+set}" ]; then
        case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    fi
    echo "=================== $name ($(date +%T), limit ${limit}s): $*" | tee -a "$OUT/session.log"
    local t0=$SECONDS rc last
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    STEP_SECONDS=$((SECONDS - t0))
    if [ -n "${STEP_SHOW:-}" ]; then
        grep -aE "$STEP_SHOW" "$OUT/$name.log" | tail -n 40
    fi
    last=$(grep -aE "$STEP_PATTERN" "$OUT/$name.log" | tail -n 2 | tr '\n' ' ')
    printf '%-12s exit %-3s %4ss  %s\n' "$name" "$rc" "$STEP_SECONDS" "${last:0:220}" >>"$OUT/summary.txt"
    return $rc
}

note() {  # a line of the summary that is not a step's (a step skipped, and why)
    printf '%s\n' "$*" >>"$OUT/summary.txt"
}
