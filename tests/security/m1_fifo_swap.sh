# Issue 18, M1: an inbox file swapped between a regular file and a FIFO (and a symlink to a
# FIFO) made the monitor block in a FIFO open: status timed out and SIGTERM was ignored. The
# monitor must keep answering status while the swapping goes on, reject what is not a
# regular file, and stop promptly on SIGTERM.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup m1_fifo_swap
trap 'kill "${SWAP:-0}" 2>/dev/null || true; daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
start_daemon b
sec_u8_bundle "$T/u8.cwtb"
mkfifo "$T/fifo"

# The swapper: the same name is a regular file, a FIFO, a symlink to a FIFO, in turn.
(
    i=0
    while :; do
        i=$((i + 1))
        cp "$T/u8.cwtb" "$T/b/inbox/.r.part" && mv "$T/b/inbox/.r.part" "$T/b/inbox/swap.cwtb"
        mkfifo "$T/b/inbox/.f.part" && mv "$T/b/inbox/.f.part" "$T/b/inbox/swap.cwtb"
        ln -s "$T/fifo" "$T/b/inbox/.l.part" && mv "$T/b/inbox/.l.part" "$T/b/inbox/swap.cwtb"
        touch -d '1 minute ago' "$T/b/inbox/swap.cwtb" 2>/dev/null || true
        sleep 0.05
    done
) &
SWAP=$!
for i in $(seq 1 15); do
    timeout 5 "$CWTCTL" -c "$T/b/cwtd.conf" status >/dev/null 2>"$T/status.err" ||
        die "status did not answer while the inbox file was swapped (round $i): $(cat "$T/status.err")"
    sleep 0.2
done
kill "$SWAP"
wait "$SWAP" 2>/dev/null || true
# A FIFO left in place is rejected as not a regular file, not waited on.
rm -f "$T/b/inbox/swap.cwtb"
mkfifo "$T/b/inbox/.f.part" && mv "$T/b/inbox/.f.part" "$T/b/inbox/fifo.cwtb"
wait_for 20 test -f "$T/b/inbox/rejected/fifo.cwtb.reason" || die "the FIFO was not rejected"
grep -q "not a regular file" "$T/b/inbox/rejected/fifo.cwtb.reason" || die "wrong reason"
timeout 5 "$CWTCTL" -c "$T/b/cwtd.conf" status >/dev/null || die "status after the FIFO"
pid=$(cat "$T/b.pid")
kill -TERM "$pid"
wait_for 10 process_gone "$pid" || die "cwtd ignored SIGTERM"
echo "m1_fifo_swap: ok"
