# Issue 18, L2: control requests were audited without the caller's uid, every refused
# connection wrote an audit record (300 in a second), and `cwtctl stop` made cwtd exit 0, so
# systemd's Restart=on-failure did not start it again. Now: pause/resume/stop records name the
# caller's uid and pid; refusals are recorded at most 10 a minute (the rest counted); and a
# stop from the socket exits with status 75 (docs/daemon.md).
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup l2_control_audit
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
"$CWTD" -c "$T/b/cwtd.conf" -f 2>>"$T/b.log" &
pid=$!
echo "$pid" >>"$DAEMON_PIDS_FILE"
echo "$pid" >"$T/b.pid"
wait_for 20 "$CWTCTL" -c "$T/b/cwtd.conf" status >/dev/null 2>&1 || die "cwtd does not answer"
B=(-c "$T/b/cwtd.conf")

"$CWTCTL" "${B[@]}" pause >/dev/null || die "pause"
"$CWTCTL" "${B[@]}" resume >/dev/null || die "resume"
"$CWTCTL" "${B[@]}" audit show | grep " paused " | grep -q "uid $(id -u) pid [0-9]" ||
    die "pause is audited without the caller: $("$CWTCTL" "${B[@]}" audit show | grep paused)"
"$CWTCTL" "${B[@]}" audit show | grep " resumed " | grep -q "uid $(id -u) pid" || die "resume"

if [ "$(id -u)" = 0 ]; then
    # 300 refused connections from user nobody within about a second.
    sec_client_conf b
    chmod 666 "$T/b/cwtd.sock"
    setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 - "$T/b/cwtd.sock" <<'EOF'
import socket, sys
for _ in range(300):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    s.recv(4096)
    s.close()
EOF
    chmod 660 "$T/b/cwtd.sock"
    n=$("$CWTCTL" "${B[@]}" audit show | grep -c " control-refused " || true)
    [ "$n" -ge 1 ] && [ "$n" -le 10 ] || die "$n control-refused records for 300 refusals"
    [ "$(grep -c "control socket: peer uid 65534" "$T/b.log")" -le 10 ] || die "the log is flooded"
fi

"$CWTCTL" "${B[@]}" stop >/dev/null || die "stop"
rc=0
wait "$pid" || rc=$?
[ "$rc" = 75 ] || die "cwtd exited $rc after cwtctl stop, not 75 (Restart=on-failure)"
"$CWTCTL" "${B[@]}" audit show | grep " stop-requested " | grep -q "uid $(id -u) pid" ||
    die "stop is audited without the caller"
echo "l2_control_audit: ok"
