# Crash safety: the four-site federation of daemon_federation.sh run twice with the same seed,
# once undisturbed and once with at least 10 kill -9 of random daemons (monitors, restarted at
# once, and trainers, restarted by their supervisor) at random moments. Both runs must end with
# the same final model at every site, one verified chain, and intact audit logs.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

[ -n "${CWTD:-}" ] || die "CWTD is not set (tests/cli/CMakeLists.txt sets it when cwtd is built)"
[ -x "$CWTD" ] || die "CWTD=$CWTD is not an executable"
SITES=(a b c d)
# Long enough visits that all the kills land before the federation ends (a restart costs a
# few seconds; measured: 24 steps left room for only 10 of 12 kills on a quiet machine).
export FED_VISIT_STEPS=${FED_VISIT_STEPS:-48}
ROOT="${CWT_TEST_TMP:-/tmp}/daemon_faults.$$"
mkdir -p "$ROOT"
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$ROOT"' EXIT

run() {
    local kills_wanted=$1 kills=0 s pid sup tr seed=$2
    CWT_TEST_TMP="$ROOT" daemon_setup "run$kills_wanted"
    RANDOM=$seed
    setup_federation "${SITES[@]}"
    for s in "${SITES[@]}"; do start_daemon "$s"; done
    "$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start"
    start_courier "${SITES[@]}"
    local deadline=$(($(date +%s) + 1200))
    while ! all_finished "${SITES[@]}"; do
        [ "$(date +%s)" -lt "$deadline" ] || die "run with $kills_wanted kills did not finish"
        if [ "$kills" -lt "$kills_wanted" ]; then
            # Short pauses: the kills must all land before the federation ends, on fast
            # machines too (each restart slows the run, so this converges).
            sleep "$((RANDOM % 2)).$((RANDOM % 10))"
            s=${SITES[$((RANDOM % ${#SITES[@]}))]}
            pid=$(cat "$T/$s.pid")
            sup=$(pgrep -P "$pid" | head -n 1 || true)
            tr=""
            [ -n "$sup" ] && tr=$(pgrep -P "$sup" | head -n 1 || true)
            if [ $((RANDOM % 3)) = 0 ] && [ -n "$tr" ]; then
                kill -9 "$tr" 2>/dev/null || true
                echo "kill -9 trainer of $s ($tr)"
            else
                kill -9 "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
                echo "kill -9 cwtd of $s ($pid), restarting"
                start_daemon "$s"
            fi
            kills=$((kills + 1))
        else
            sleep 1
        fi
    done
    stop_courier
    [ "$kills" -ge "$kills_wanted" ] || die "only $kills kills before the end"
    check_federation_end "${SITES[@]}" >"$ROOT/hash.$kills_wanted"
    check_nothing_lost "${SITES[@]}"
    daemon_cleanup
    : >"$DAEMON_PIDS_FILE"
}

run 0 1
run "${FAULT_KILLS:-12}" 4242
h0=$(cat "$ROOT/hash.0")
h1=$(cat "$ROOT/hash.${FAULT_KILLS:-12}")
[ "$h0" = "$h1" ] || die "final model differs after kills: $h0 vs $h1"
echo "daemon_faults: ok, ${FAULT_KILLS:-12} kills, final model $h1"
