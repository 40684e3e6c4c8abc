#!/usr/bin/env bash
# Issue 18, M5: cwtd.service sets WatchdogSec=, and the monitor pings "WATCHDOG=1" from its
# event loop every half period, so systemd restarts a monitor that is stuck. Here a datagram
# socket stands in for systemd's: with WATCHDOG_USEC of 2 s, READY=1 and then at least two
# WATCHDOG=1 pings arrive within a few seconds.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup m5_watchdog
listener=
trap '[ -n "$listener" ] && kill "$listener" 2>/dev/null; daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
python3 - "$T/notify.sock" "$T/notify.log" <<'PYEOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        log.write(s.recv(4096).decode(errors="replace") + "\n")
PYEOF
listener=$!
wait_for 10 test -S "$T/notify.sock" || die "the stand-in notify socket did not appear"

NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=2000000 start_daemon b
wait_for 30 grep -q "^READY=1" "$T/notify.log" || die "no READY=1"
wait_for 30 sh -c "[ \$(grep -c '^WATCHDOG=1' '$T/notify.log') -ge 2 ]" ||
    die "fewer than two WATCHDOG=1 pings: $(cat "$T/notify.log")"
echo "m5_watchdog: ok"
