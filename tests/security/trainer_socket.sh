# Issue 18: the trainer under a uid of its own, started by the service manager instead of a
# privileged cwtd (daemon.trainer_socket; packaging/cwtd-trainer.socket and
# cwtd-trainer@.service, docs/threat-model.md). systemd-socket-activate stands in for
# systemd: it listens on the socket and, for each connection, runs `cwtd --trainer` as
# daemon.trainer_user (nobody, with daemon's group) with the connection as descriptor 3.
# Site a's cwtd runs as daemon without any capability, as cwtd.service now starts it:
#   - refused with one sentence: trainer_socket without trainer_user (configuration), nothing
#     listening on the socket (cwtd), `cwtd --trainer` given no connection, run as another
#     user than trainer_user, with another group than daemon.user's, or reached by a peer
#     that is not daemon.user;
#   - a trainer side of the monitor's own uid or of root (a stand-in that sends one message)
#     stops the monitor before any job, naming the uid: the monitor checks the kernel's
#     credentials of the first message, whatever the unit says;
#   - from /proc: the monitor runs as daemon; the supervisor (a child of the listener, not
#     of the monitor) and the trainer as nobody with daemon's group; no process holds a
#     capability in any set;
#   - it trains: cycle 0 is sealed;
#   - `cwtctl stop`, and a monitor killed with -9, end the supervisor and the trainer
#     through the closed connection (the monitor has no pid of theirs to signal), also a
#     trainer that is stuck (SIGSTOP) and never reads the socket.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

# Starting the trainer as another user needs root; a test that cannot check its claims fails
# rather than passes.
[ "$(id -u)" = 0 ] || die "starting the trainer as another user needs root"
getent passwd daemon >/dev/null && getent passwd nobody >/dev/null ||
    die "this test needs the system users daemon and nobody"
command -v systemd-socket-activate >/dev/null || die "systemd-socket-activate is missing (package systemd)"
D_UID=$(id -u daemon)
D_GID=$(id -g daemon)
N_UID=$(id -u nobody)

daemon_setup trainer_socket
LISTENER=""
stop_listener() {
    [ -z "$LISTENER" ] || { kill "$LISTENER" 2>/dev/null || true; wait "$LISTENER" 2>/dev/null || true; }
    LISTENER=""
    rm -f "$SOCK"
}
trap 'stop_listener; daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
C="$T/a/cwtd.conf"
SOCK="$T/trainer.sock"
sed -i 's/user = ""/user = "daemon"/; s/ allow_root = true;//' "$C"
grep -q 'user = "daemon"' "$C" || die "cannot set daemon.user"
chown -R daemon:daemon "$T/a"
chmod o+x "$(dirname "$T")" "$T"

# conf [TRAINER_USER] [SOCKET]: a's daemon.trainer_user and daemon.trainer_socket ("" leaves
# the key out).
conf() {
    sed -i 's/ trainer_user = "[^"]*";//; s/ trainer_socket = "[^"]*";//' "$C"
    [ -z "${1:-}" ] || sed -i "s/user = \"daemon\";/user = \"daemon\"; trainer_user = \"$1\";/" "$C"
    [ -z "${2:-}" ] || sed -i "s|user = \"daemon\";|user = \"daemon\"; trainer_socket = \"$2\";|" "$C"
}
as_daemon=(setpriv --reuid="$D_UID" --regid="$D_GID" --init-groups --inh-caps=-all --bounding-set=-all --)
as_trainer=(setpriv --reuid="$N_UID" --regid="$D_GID" --init-groups --inh-caps=-all --bounding-set=-all --)

# listen [PREFIX...]: systemd-socket-activate serves $SOCK, running `PREFIX cwtd --trainer`
# for each connection (the unit's User= and Group= are the prefix); the socket is daemon's
# alone, as SocketUser=cwt and SocketMode=0600 make it.
listen() {
    stop_listener
    systemd-socket-activate --seqpacket -a -l "$SOCK" -- "$@" "$CWTD" -c "$C" --trainer \
        2>>"$T/trainer.log" &
    LISTENER=$!
    wait_for 10 test -S "$SOCK" || die "systemd-socket-activate does not listen on $SOCK"
    chown daemon:daemon "$SOCK"
    chmod 0600 "$SOCK"
}

# refused HOW SENTENCE LOG [PREFIX...]: cwtd -f, run under PREFIX, exits non-zero and LOG
# (its own stderr, or the trainer's log) says SENTENCE.
refused() {
    local how=$1 sentence=$2 log=$3 rc=0
    shift 3
    timeout 30 "$@" "$CWTD" -c "$C" -f 2>"$T/refused.log" || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || die "cwtd ran on with $how (exit $rc)"
    wait_for 10 grep -q "$sentence" "$log" || die "$how: no clear reason in $log: $(tail -n 3 "$log")"
}

# --- refusals -----------------------------------------------------------------------------
conf "" "$SOCK"
refused "trainer_socket without trainer_user" "daemon.trainer_socket: needs daemon.trainer_user" \
    "$T/refused.log" "${as_daemon[@]}"
conf nobody "$SOCK"
"$CWTD" -c "$C" --prepare-store || die "cwtd --prepare-store as root"
[ "$(stat -c '%a %U %g' "$T/a/store/checkpoints")" = "2750 nobody $D_GID" ] ||
    die "--prepare-store left checkpoints/ $(stat -c '%a %U %g' "$T/a/store/checkpoints")"
refused "nothing listening on the socket" "cannot connect to the trainer socket $SOCK" \
    "$T/refused.log" "${as_daemon[@]}"
rc=0
"${as_trainer[@]}" "$CWTD" -c "$C" --trainer 2>"$T/direct.log" || rc=$?
[ "$rc" = 1 ] && grep -q "was given none (LISTEN_FDS)" "$T/direct.log" ||
    die "cwtd --trainer without a connection: exit $rc, $(cat "$T/direct.log")"
# Served as daemon (the unit's User= not trainer_user), and as nobody with its own group.
listen setpriv --reuid="$D_UID" --regid="$D_GID" --init-groups --
refused "a trainer unit running as daemon.user" "cwtd --trainer runs as uid $D_UID, but daemon.trainer_user" \
    "$T/trainer.log" "${as_daemon[@]}"
grep -q "the trainer on $SOCK closed the connection" "$T/refused.log" ||
    die "the monitor does not say where the trainer's reason is: $(cat "$T/refused.log")"
# (The configuration made readable to all for this case: a packaged site's is root:cwt 0640,
# and a trainer of another group stops at reading it.)
listen setpriv --reuid="$N_UID" --regid="$(id -g nobody)" --init-groups --
chmod o+x "$T/a" && chmod o+r "$C" "$T/a/roster.conf"
refused "a trainer unit with another group" "but the store is read through daemon.user's group $D_GID" \
    "$T/trainer.log" "${as_daemon[@]}"
chmod o-rx "$T/a" && chmod o-r "$C"
# A peer that is not daemon.user (root here) gets no trainer.
listen "${as_trainer[@]}"
/usr/bin/python3 - "$SOCK" <<'PY' || die "the trainer served a peer that is not daemon.user"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.settimeout(30)
sys.exit(0 if s.recv(4096) == b"" else 1)
PY
wait_for 10 grep -q "the process that connected (pid [0-9]*, uid 0) is not daemon.user daemon" "$T/trainer.log" ||
    die "no clear refusal of a foreign peer: $(tail -n 3 "$T/trainer.log")"

# --- the monitor's own check: a trainer side of its own uid --------------------------------
# A stand-in, run as daemon and then as root, that sends one message and waits: whatever
# serves the socket, the monitor reads the sender's uid from the kernel and stops before it
# sends a job.
cat >"$T/fake_trainer.py" <<'PY'
import socket, time
s = socket.socket(fileno=3)
s.send(b"CWTP" + bytes(12))
time.sleep(30)
PY
stop_listener
systemd-socket-activate --seqpacket -a -l "$SOCK" -- setpriv --reuid="$D_UID" --regid="$D_GID" \
    --init-groups -- /usr/bin/python3 "$T/fake_trainer.py" 2>>"$T/trainer.log" &
LISTENER=$!
wait_for 10 test -S "$SOCK" || die "no stand-in listener"
chown daemon:daemon "$SOCK"
refused "a trainer side of the monitor's uid" "the trainer on $SOCK runs as uid $D_UID, the monitor's own" \
    "$T/refused.log" "${as_daemon[@]}"
stop_listener
systemd-socket-activate --seqpacket -a -l "$SOCK" -- /usr/bin/python3 "$T/fake_trainer.py" \
    2>>"$T/trainer.log" &
LISTENER=$!
wait_for 10 test -S "$SOCK" || die "no stand-in listener"
chown daemon:daemon "$SOCK"
refused "a trainer side run as root" "the trainer on $SOCK runs as uid 0, root" \
    "$T/refused.log" "${as_daemon[@]}"

# --- the running daemon, as the units run it ------------------------------------------------
listen "${as_trainer[@]}"
"${as_daemon[@]}" "$CWTD" -c "$C" -f 2>>"$T/a.log" &
MON=$!
echo "$MON" >>"$DAEMON_PIDS_FILE"
ready() { grep -q "trainer [0-9]* ready on" "$T/a.log"; }
wait_for 120 ready || die "the trainer did not start: $(tail -n 5 "$T/a.log") / $(tail -n 5 "$T/trainer.log")"
grep -q "the trainer on $SOCK runs as uid $N_UID" "$T/a.log" || die "the monitor logs no checked uid"
TR=$(sed -n 's/.*trainer \([0-9]*\) ready on.*/\1/p' "$T/a.log" | tail -n 1)
SUP=$(awk '/^PPid:/ {print $2}' "/proc/$TR/status")
[ "$(awk '/^PPid:/ {print $2}' "/proc/$SUP/status")" = "$LISTENER" ] ||
    die "the trainer supervisor $SUP is not the listener's child"
KEY=$(pgrep -P "$MON" | head -n 1)
[ -n "$KEY" ] || die "no key process under the monitor"

# uids and gids alone: the groups follow the user database (--init-groups).
ids() { sec_ids "$1" | sed 's| / [^/]*$||'; }
[ "$(ids "$MON")" = "$D_UID $D_UID $D_UID $D_UID / $D_GID $D_GID $D_GID $D_GID" ] ||
    die "the monitor runs as $(ids "$MON")"
for p in "$SUP" "$TR"; do
    [ "$(ids "$p")" = "$N_UID $N_UID $N_UID $N_UID / $D_GID $D_GID $D_GID $D_GID" ] ||
        die "process $p runs as $(ids "$p"), not nobody with daemon's group"
done
sec_no_caps "$MON" "$KEY" "$SUP" "$TR"
[ "$(stat -c '%u' "/proc/$SUP/mem")" = 0 ] || die "the trainer supervisor is dumpable"

"$CWTCTL" -c "$C" start >/dev/null || die "start at a"
wait_for 120 sh -c "ls '$T'/a/outbox/*.cwtb >/dev/null 2>&1" ||
    die "a sealed no bundle: $(tail -n 5 "$T/a.log")"
[ "$(status_field a trainer_restarts)" = 0 ] || die "the trainer restarted: $(tail -n 5 "$T/a.log")"

# --- stop: the closed connection ends the supervisor and the trainer ------------------------
rc=0
"$CWTCTL" -c "$C" stop >/dev/null || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 75 ] || die "cwtctl stop exited $rc"
wait_for 30 process_gone "$MON" || die "cwtd does not stop"
wait_for 30 process_gone "$TR" || die "the trainer outlives the monitor"
wait_for 30 process_gone "$SUP" || die "the trainer supervisor outlives the monitor"
kill -0 "$LISTENER" || die "the listener went away with the monitor"

# --- kill -9: the same, and a new monitor gets a new supervisor -----------------------------
"${as_daemon[@]}" "$CWTD" -c "$C" -f 2>>"$T/a.log" &
MON=$!
echo "$MON" >>"$DAEMON_PIDS_FILE"
wait_for 120 sh -c "[ \$(grep -c 'trainer [0-9]* ready on' '$T/a.log') -ge 2 ]" ||
    die "the trainer did not start again: $(tail -n 5 "$T/a.log")"
TR=$(sed -n 's/.*trainer \([0-9]*\) ready on.*/\1/p' "$T/a.log" | tail -n 1)
SUP=$(awk '/^PPid:/ {print $2}' "/proc/$TR/status")
# The trainer stopped as if stuck in a driver call: it cannot notice the closed connection,
# and the supervisor ends it.
kill -STOP "$TR"
kill -KILL "$MON"
wait_for 30 process_gone "$TR" || die "a stuck trainer outlives a monitor killed with -9"
wait_for 30 process_gone "$SUP" || die "the trainer supervisor outlives a monitor killed with -9"
echo "trainer_socket: ok"
