# A trainer killed mid-visit, after the visit's first checkpoint, resumes that checkpoint: the
# trainer recorded the hash of the visit's input beside it and the restarted job hands it the
# same input (storage/store.h, store_visit_begin). The federation (two sites, two cycles)
# then ends with the final model of an undisturbed run, bit for bit.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

command -v pgrep >/dev/null || die "pgrep is missing (package procps; 'make deps' installs it)"
SITES=(a b)
# 128 training images in batches of 32: 4 steps an epoch, a checkpoint at every epoch's end.
export FED_VISIT_STEPS=120
ROOT="${CWT_TEST_TMP:-/tmp}/daemon_visit_resume.$$"
mkdir -p "$ROOT"
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$ROOT"' EXIT

# progress NAME: "STEP STEPS" of the visit NAME trains now, or "-1 0".
progress() {
    "$CWTCTL" -c "$T/$1/cwtd.conf" --json status 2>/dev/null | python3 -c '
import json, sys
try:
    p = json.load(sys.stdin).get("progress") or {}
except Exception:
    p = {}
print(p.get("step", -1), p.get("steps", 0))' || echo "-1 0"
}

# run KILL: one federation; with KILL=1 the trainer of the first site seen past its first
# checkpoint (and far from its visit's end) is killed once, and KILLED names that site (empty
# when every visit ended before it could be killed). Writes the final model's hash to
# $ROOT/hash.KILL.
run() {
    local kill=$1 s pid sup tr step steps
    KILLED=""
    CWT_TEST_TMP="$ROOT" daemon_setup "run$kill.$FED_VISIT_STEPS"
    setup_federation "${SITES[@]}"
    for s in "${SITES[@]}"; do start_daemon "$s"; done
    "$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start"
    mkdir -p "$T/chain"
    start_courier "${SITES[@]}"
    while [ "$kill" = 1 ] && [ -z "$KILLED" ] && ! all_finished "${SITES[@]}"; do
        for s in "${SITES[@]}"; do
            read -r step steps < <(progress "$s")
            if [ "$step" -lt 6 ] || [ "$step" -gt $((steps - 40)) ]; then continue; fi
            pid=$(cat "$T/$s.pid")
            sup=$(pgrep -P "$pid" | head -n 1 || true)
            tr=""
            [ -n "$sup" ] && tr=$(pgrep -P "$sup" | head -n 1 || true)
            [ -n "$tr" ] || continue
            kill -9 "$tr"
            KILLED=$s
            echo "kill -9 trainer of $s at step $step of $steps"
            break
        done
        sleep 0.1
    done
    finish_federation 600 "${SITES[@]}"
    if [ -n "$KILLED" ]; then
        grep -q "trainer: resumed cwtd\.visit\.c[0-9]*\.h[0-9]* at step [1-9]" "$T/$KILLED.log" ||
            die "the killed trainer of $KILLED did not resume its checkpoint: $(grep trainer "$T/$KILLED.log")"
    fi
    check_federation_end "${SITES[@]}" >"$ROOT/hash.$kill"
    daemon_cleanup
    : >"$DAEMON_PIDS_FILE"
}

# A machine fast enough to end every visit between two looks gets longer visits (and a new
# undisturbed run to compare with).
for _ in 1 2 3; do
    run 0
    run 1
    [ -z "$KILLED" ] || break
    FED_VISIT_STEPS=$((FED_VISIT_STEPS * 4))
done
[ -n "$KILLED" ] || die "every visit ended before its trainer could be killed"
h0=$(cat "$ROOT/hash.0")
h1=$(cat "$ROOT/hash.1")
[ "$h0" = "$h1" ] ||
    die "the final model after a resumed visit ($h1) differs from an undisturbed run's ($h0)"
echo "daemon_visit_resume: ok, the resumed visit gives final model $h1"
