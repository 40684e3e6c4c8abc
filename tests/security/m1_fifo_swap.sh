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

# The swapper: as fast as it can, the same name becomes a regular file (a hard link of a
# real bundle), a FIFO, and a symlink to a FIFO, in turn; each rename is an inotify event.
python3 - "$T/u8.cwtb" "$T/b/inbox" "$T/fifo" <<'EOF' &
import os, sys, time
src, inbox, fifo = sys.argv[1:4]
dst, end, i = os.path.join(inbox, "swap.cwtb"), time.time() + 4, 0
while time.time() < end:
    i += 1
    tmp = os.path.join(inbox, ".t%d.part" % (i % 3))
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    if i % 3 == 0:
        os.link(src, tmp)
    elif i % 3 == 1:
        os.mkfifo(tmp)
    else:
        os.symlink(fifo, tmp)
    os.rename(tmp, dst)
EOF
SWAP=$!
for i in $(seq 1 12); do
    timeout 5 "$CWTCTL" -c "$T/b/cwtd.conf" status >/dev/null 2>"$T/status.err" ||
        die "status did not answer while the inbox file was swapped (round $i): $(cat "$T/status.err")"
    sleep 0.2
done
kill "$SWAP" 2>/dev/null || true
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
