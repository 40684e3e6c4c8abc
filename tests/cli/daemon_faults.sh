# Crash safety: the four-site federation of daemon_federation.sh run twice with the same seed,
# once undisturbed and once with at least 10 kill -9 of random daemons (monitors, restarted at
# once, and trainers, restarted by their supervisor) at random moments. Both runs must end with
# the same final model at every site, one verified chain, and intact audit logs.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

# The kills find a daemon's supervisor and trainer with pgrep: without it they would do nothing
# and the test would pass without testing.
command -v pgrep >/dev/null || die "pgrep is missing (package procps; 'make deps' installs it)"
SITES=(a b c d)
export FED_VISIT_STEPS=${FED_VISIT_STEPS:-24}
ROOT="${CWT_TEST_TMP:-/tmp}/daemon_faults.$$"
mkdir -p "$ROOT"
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$ROOT"' EXIT

run() {
    local kills_wanted=$1 kills=0 s pid sup tr seed=$2 found_sup=0
    CWT_TEST_TMP="$ROOT" daemon_setup "run$kills_wanted"
    RANDOM=$seed
    setup_federation "${SITES[@]}"
    for s in "${SITES[@]}"; do start_daemon "$s"; done
    "$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start"
    # The courier is held and lets one bundle through after every second kill, so the
    # federation (8 hand-overs) cannot end before every kill has landed, however fast the
    # machine is; kills still fall at random moments of training, sealing and waiting.
    export COURIER_HOLD="$ROOT/hold.$kills_wanted"
    mkdir -p "$T/chain"
    [ "$kills_wanted" -gt 0 ] && : >"$COURIER_HOLD"
    start_courier "${SITES[@]}"
    local deadline=$(($(date +%s) + 1200))
    while ! all_finished "${SITES[@]}"; do
        [ "$(date +%s)" -lt "$deadline" ] || die "run with $kills_wanted kills did not finish"
        if [ "$kills" -lt "$kills_wanted" ]; then
            # A random pause of 0-1.9 s, then a random daemon or trainer.
            sleep "$((RANDOM % 2)).$((RANDOM % 10))"
            s=${SITES[$((RANDOM % ${#SITES[@]}))]}
            pid=$(cat "$T/$s.pid")
            sup=$(pgrep -P "$pid" | head -n 1 || true)
            [ -z "$sup" ] || found_sup=$((found_sup + 1))
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
            if [ "$kills" -ge "$kills_wanted" ]; then
                rm -f "$COURIER_HOLD"
            elif [ $((kills % 2)) = 0 ]; then
                # One bundle, when one is ready; a token not yet used stays for the next.
                : >"$COURIER_HOLD.one"
                wait_for 3 sh -c "[ ! -e '$COURIER_HOLD.one' ]" || true
            fi
        else
            rm -f "$COURIER_HOLD"
            sleep 1
        fi
    done
    stop_courier
    [ "$kills" -ge "$kills_wanted" ] || die "only $kills kills before the end"
    # A running cwtd always has its supervisor child; never finding one means the lookup is
    # broken, and the trainer kills never happened.
    [ "$kills_wanted" = 0 ] || [ "$found_sup" -gt 0 ] ||
        die "pgrep found no supervisor under any cwtd in $kills kills"
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
