# Issue 18, step 2: the trainer under daemon.trainer_user (docs/threat-model.md, "Processes
# and their powers"). Site a's cwtd is started as root with daemon.user = daemon and
# daemon.trainer_user = nobody:
#   - refused at start, with one sentence: trainer_user equal to daemon.user, trainer_user
#     root, trainer_user set while cwtd is neither root nor holds CAP_SETUID and CAP_SETGID;
#   - the packaged unit's way: `cwtd --prepare-store` (root only) sets the modes below, and
#     a cwtd started as daemon with cwtd.service's capabilities on a store not so prepared
#     names the file it cannot give away; once running, its monitor, key process, trainer
#     supervisor and trainer hold no capability (effective, permitted, ambient, bounding);
#   - from /proc: the monitor runs as daemon, the trainer supervisor and the trainer as
#     nobody with daemon's group and nobody's own groups (none), not daemon's others;
#   - the store's modes: folder 0750, data.mdb 0640, lock.mdb 0660, checkpoints/ 2750 of
#     nobody with its data.mdb 0640 and lock.mdb 0660;
#   - a process of the trainer's uid and group without capabilities cannot open
#     keys/sign.key, open the main data.mdb for writing, signal the monitor or read the
#     trainer's memory; it can read the main data.mdb (the control);
#   - it trains: cycle 0 is sealed;
#   - `cwtctl stop`, and a monitor killed with -9, end every process although the monitor
#     cannot signal the supervisor;
#   - cwtctl's store commands run as daemon.user without capabilities (checkpoints/ read-only).
#   - cwtctl doctor with daemon.trainer_socket: ok outside the packaged layout; under the
#     packaged path and units (in a mount namespace of its own), ok when cwtd-trainer@.service
#     and cwtd-trainer.socket agree with the configuration, and a failure naming what differs
#     (User=, Group=, ListenSequentialPacket=, a unit or a key missing).
# The running part needs step 1 (the monitor opens checkpoints/ read-only, STORE_MONITOR):
# before it, the monitor cannot write the trainer's checkpoints/ and stops at start.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

# Starting the trainer as another user needs root; a test that cannot check its claims fails
# rather than passes.
[ "$(id -u)" = 0 ] || die "starting cwtd's trainer as another user needs root"
getent passwd daemon >/dev/null && getent passwd nobody >/dev/null ||
    die "this test needs the system users daemon and nobody"
D_UID=$(id -u daemon)
D_GID=$(id -g daemon)
N_UID=$(id -u nobody)

daemon_setup trainer_user
trap '[ -z "${CONTROL:-}" ] || { kill "$CONTROL" 2>/dev/null || true; }; daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
C="$T/a/cwtd.conf"
sed -i 's/user = ""/user = "daemon"/; s/ allow_root = true;//' "$C"
grep -q 'user = "daemon"' "$C" || die "cannot set daemon.user"
chown -R daemon:daemon "$T/a"
chmod o+x "$(dirname "$T")" "$T"
setpriv --reuid="$D_UID" --regid="$D_GID" --clear-groups test -r "$C" ||
    die "user daemon cannot reach $C: make the folders above it searchable (o+x)"

# set_trainer USER: daemon.trainer_user = USER in a's configuration.
set_trainer() {
    sed -i "s/ trainer_user = \"[^\"]*\";//; s/user = \"daemon\";/user = \"daemon\"; trainer_user = \"$1\";/" "$C"
    grep -q "trainer_user = \"$1\";" "$C" || die "cannot set daemon.trainer_user"
}

# refused HOW SENTENCE [PREFIX...]: cwtd (run under PREFIX) exits non-zero, saying SENTENCE.
refused() {
    local how=$1 sentence=$2 rc=0
    shift 2
    timeout 20 "$@" "$CWTD" -c "$C" -f 2>"$T/refused.log" || rc=$?
    [ "$rc" != 0 ] && [ "$rc" != 124 ] || die "cwtd started with $how (exit $rc)"
    grep -q "$sentence" "$T/refused.log" || die "$how: no clear reason: $(cat "$T/refused.log")"
    [ ! -S "$T/a/cwtd.sock" ] || die "$how: the control socket was bound"
}

# json_says NAME STATUS [TEXT]: doctor's JSON output in $T/doctor.json has a check NAME with
# STATUS (and a message holding TEXT).
json_says() {
    /usr/bin/python3 - "$T/doctor.json" "$@" <<'PY' || die "doctor: no $1 $2 ${3:-}: $(cat "$T/doctor.json")"
import json, sys
doc, name, status = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
text = sys.argv[4] if len(sys.argv) > 4 else ""
assert any(c["name"] == name and c["status"] == status and text in c["message"]
           for c in doc["checks"]), (name, status, text)
PY
}

# doctor_says NAME STATUS [TEXT]: `cwtctl doctor --json` has a check NAME with STATUS (and a
# message holding TEXT).
doctor_says() {
    "$CWTCTL" -c "$C" --json doctor >"$T/doctor.json" 2>/dev/null || true
    json_says "$@"
}
doctor_says trainer-user ok "as the daemon user"

# --- refusals -----------------------------------------------------------------------------
set_trainer daemon
refused "trainer_user = daemon.user" "has the uid of daemon.user"
set_trainer root
refused "trainer_user = root" "is root"
set_trainer no-such-user-cwt
refused "an unknown trainer_user" "user no-such-user-cwt (daemon.trainer_user in .*) does not exist"
set_trainer nobody
refused "trainer_user, started as daemon" "needs cwtd to be started as root" \
    setpriv --reuid="$D_UID" --regid="$D_GID" --clear-groups --inh-caps=-all --bounding-set=-all --

# Before cwtd has set the modes (the store as init left it: data.mdb 0600), doctor names the
# file.
doctor_says trainer-user ok "the trainer runs as nobody"
doctor_says trainer-files fail "$T/a/store/data.mdb has mode 0600"

# --- the packaged unit's way: cwtd as daemon with CAP_SETUID, CAP_SETGID, CAP_SETPCAP -------
# (cwtd.service's AmbientCapabilities=), after `cwtd --prepare-store` as root (its
# ExecStartPre=+). Without that step the daemon holds no CAP_CHOWN to give checkpoints/ to
# the trainer, and says which file it could not change.
as_unit=(setpriv --reuid="$D_UID" --regid="$D_GID" --init-groups
    --inh-caps=-all,+setuid,+setgid,+setpcap --ambient-caps=+setuid,+setgid,+setpcap
    --bounding-set=-all,+setuid,+setgid,+setpcap --)
refused "the unit's capabilities on a store not prepared" "chown $T/a/store/checkpoints" "${as_unit[@]}"
rc=0
setpriv --reuid="$D_UID" --regid="$D_GID" --clear-groups "$CWTD" -c "$C" --prepare-store \
    2>"$T/prepare.log" || rc=$?
[ "$rc" = 1 ] && grep -q "needs root" "$T/prepare.log" ||
    die "--prepare-store as daemon: exit $rc, $(cat "$T/prepare.log")"
"$CWTD" -c "$C" --prepare-store || die "cwtd --prepare-store as root"
[ ! -S "$T/a/cwtd.sock" ] || die "--prepare-store bound the control socket"
# The modes themselves are checked below, once the daemon ran; here the step's own result.
[ "$(stat -c '%a %U %g' "$T/a/store/checkpoints")" = "2750 nobody $D_GID" ] ||
    die "--prepare-store left checkpoints/ $(stat -c '%a %U %g' "$T/a/store/checkpoints")"
doctor_says trainer-files ok

# --- doctor with daemon.trainer_socket ------------------------------------------------------
# Outside the packaged layout whatever serves the socket starts the trainer; cwtd needs no
# privilege for it. Doctor only reads the path, which need not exist.
sed -i 's|trainer_user = "nobody";|trainer_user = "nobody"; trainer_socket = "/run/cwtd-trainer.sock";|' "$C"
grep -q 'trainer_socket = "/run/cwtd-trainer.sock";' "$C" || die "cannot set daemon.trainer_socket"
doctor_says trainer-user ok "the trainer runs as nobody"
doctor_says trainer-user ok "started by whatever serves /run/cwtd-trainer.sock"

# Under the packaged configuration path and the packaged units, doctor reads cwtd.service,
# cwtd-trainer@.service with its drop-ins, and cwtd-trainer.socket. That runs in a mount
# namespace of its own, with /etc under an overlay and every unit folder empty, so that the
# host's configuration and units stay untouched. The units are the packaged ones, with a
# drop-in for this test's users (nobody with daemon's group, where the package has cwt-train
# with cwt).
# ns_doctor CONF UNIT...: doctor --json (into $T/doctor.json) on /etc/cwt/cwtd.conf holding
# CONF, with only the unit files UNIT... (paths under $T/units) in /etc/systemd/system; with
# MASK=NAME set, NAME there is a link to /dev/null, as `systemctl mask NAME` leaves it.
ns_doctor() {
    local conf=$1
    shift
    unshare --mount --propagation private env T="$T" CONF="$conf" CWTCTL="$CWTCTL" \
        MASK="${MASK:-}" bash -euc '
        mkdir -p "$T/ns"
        mount -t tmpfs tmpfs "$T/ns"
        mkdir "$T/ns/up" "$T/ns/work"
        mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/ns/up,workdir=$T/ns/work" /etc
        for d in /etc/systemd/system /run/systemd/system /usr/lib/systemd/system \
            /lib/systemd/system; do
            if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d"; fi
        done
        mkdir -p /etc/cwt /etc/systemd/system
        cp "$CONF" /etc/cwt/cwtd.conf
        for u in "$@"; do
            mkdir -p "/etc/systemd/system/$(dirname "$u")"
            cp "$T/units/$u" "/etc/systemd/system/$u"
        done
        if [ -n "$MASK" ]; then ln -sf /dev/null "/etc/systemd/system/$MASK"; fi
        "$CWTCTL" -c /etc/cwt/cwtd.conf --json doctor >"$T/doctor.json" 2>/dev/null || true
    ' ns_doctor "$@" || die "doctor in a mount namespace failed"
}
unshare --mount true 2>/dev/null ||
    die "doctor under the packaged units runs in a mount namespace of its own (unshare --mount)"
D_GROUP=$(id -gn daemon)
mkdir -p "$T/units/cwtd-trainer@.service.d" "$T/pkg"
cp "$CWT_SRC/packaging/cwtd.service" "$CWT_SRC/packaging/cwtd-trainer.socket" \
    "$CWT_SRC/packaging/cwtd-trainer@.service" "$T/units/"
printf '[Service]\nUser=nobody\nGroup=%s\n' "$D_GROUP" >"$T/units/cwtd-trainer@.service.d/test.conf"
printf '[Service]\nUser=daemon\n' >"$T/units/cwtd-trainer@.service.d/zz-user.conf"
printf '[Service]\nGroup=\n' >"$T/units/cwtd-trainer@.service.d/zz-group.conf"
# The configuration in /etc/cwt keeps the site in $T/a.
sed "s|^dirs = {|dirs = {\n  site = \"$T/a\";|" "$C" >"$T/pkg/socket.conf"
grep -q "site = \"$T/a\";" "$T/pkg/socket.conf" || die "cannot set dirs.site"
sed 's| trainer_socket = "[^"]*";||' "$T/pkg/socket.conf" >"$T/pkg/no-socket.conf"
sed 's| trainer_user = "[^"]*";||' "$T/pkg/no-socket.conf" >"$T/pkg/no-trainer.conf"
sed 's|trainer_socket = "[^"]*";|trainer_socket = "/run/other.sock";|' "$T/pkg/socket.conf" \
    >"$T/pkg/other-socket.conf"
units=(cwtd.service cwtd-trainer.socket cwtd-trainer@.service cwtd-trainer@.service.d/test.conf)

ns_doctor "$T/pkg/socket.conf" "${units[@]}"
json_says trainer-user ok "the trainer runs as nobody (uid $N_UID) with group $D_GROUP of daemon, started by the service manager through /run/cwtd-trainer.sock (cwtd-trainer@.service)"
ns_doctor "$T/pkg/socket.conf" "${units[@]}" cwtd-trainer@.service.d/zz-user.conf
json_says trainer-user fail "starts the trainer as daemon (User= in /etc/systemd/system/cwtd-trainer@.service.d/zz-user.conf), but daemon.trainer_user is nobody"
ns_doctor "$T/pkg/socket.conf" "${units[@]}" cwtd-trainer@.service.d/zz-group.conf
json_says trainer-user fail "with the primary group of nobody (it sets no Group=)"
ns_doctor "$T/pkg/other-socket.conf" "${units[@]}"
json_says trainer-user fail "cwtd-trainer.socket listens on /run/cwtd-trainer.sock, but daemon.trainer_socket is /run/other.sock"
ns_doctor "$T/pkg/socket.conf" cwtd.service cwtd-trainer@.service cwtd-trainer@.service.d/test.conf
json_says trainer-user fail "no cwtd-trainer.socket is installed"
ns_doctor "$T/pkg/socket.conf" cwtd.service cwtd-trainer.socket
json_says trainer-user fail "no cwtd-trainer@.service is installed"
MASK=cwtd-trainer@.service ns_doctor "$T/pkg/socket.conf" "${units[@]}"
json_says trainer-user fail "cwtd-trainer@.service is masked (a link to /dev/null)"
MASK=cwtd-trainer.socket ns_doctor "$T/pkg/socket.conf" "${units[@]}"
json_says trainer-user fail "cwtd-trainer.socket is masked"
ns_doctor "$T/pkg/no-socket.conf" "${units[@]}"
json_says trainer-user fail "cwtd.service grants no capability to start it as another user"
ns_doctor "$T/pkg/no-trainer.conf" "${units[@]}"
json_says trainer-user fail "the package runs it in cwtd-trainer@.service as cwt-train"
# Without cwtd.service the packaged path is a configuration like any other.
ns_doctor "$T/pkg/socket.conf" cwtd-trainer.socket cwtd-trainer@.service
json_says trainer-user ok "started by whatever serves /run/cwtd-trainer.sock"
sed -i 's| trainer_socket = "[^"]*";||' "$C"

# Step 1 makes the monitor a reader of checkpoints/ (storage/, STORE_MONITOR); before it the
# monitor still writes there, which trainer_user forbids, and the daemon cannot run.
if ! grep -q STORE_MONITOR "$CWT_SRC/storage/store.h"; then
    echo "trainer_user: refusals ok; the running daemon is not tried before step 1 (STORE_MONITOR)"
    exit 0
fi

# --- the running daemon -------------------------------------------------------------------
start_daemon a
MON=$(cat "$T/a.pid")
ready() { grep -q "trainer [0-9]* ready on" "$T/a.log"; }
wait_for 120 ready || die "the trainer did not start: $(tail -n 5 "$T/a.log")"
TR=$(sed -n 's/.*trainer \([0-9]*\) ready on.*/\1/p' "$T/a.log" | tail -n 1)
SUP=$(awk '/^PPid:/ {print $2}' "/proc/$TR/status")
[ "$(awk '/^PPid:/ {print $2}' "/proc/$SUP/status")" = "$MON" ] ||
    die "the trainer's parent $SUP is not the monitor's child"

ids() { sec_ids "$1"; }
want="$D_UID $D_UID $D_UID $D_UID / $D_GID $D_GID $D_GID $D_GID"
[ "$(ids "$MON" | sed 's| / [^/]*$||')" = "$want" ] || die "the monitor runs as $(ids "$MON"), not as daemon"
want="$N_UID $N_UID $N_UID $N_UID / $D_GID $D_GID $D_GID $D_GID / $D_GID"
for p in "$SUP" "$TR"; do
    [ "$(ids "$p")" = "$want" ] ||
        die "process $p runs as '$(ids "$p")', not '$want' (nobody, group daemon and nobody's groups: none)"
done
grep -q "trainer supervisor: running as user nobody" "$T/a.log" || die "no log line for the trainer's user"

# --- the store's modes --------------------------------------------------------------------
S="$T/a/store"
mode() { stat -c '%a %U %g' "$1"; }
[ "$(mode "$S")" = "750 daemon $D_GID" ] || die "$S: $(mode "$S")"
[ "$(mode "$S/data.mdb")" = "640 daemon $D_GID" ] || die "$S/data.mdb: $(mode "$S/data.mdb")"
[ "$(mode "$S/lock.mdb")" = "660 daemon $D_GID" ] || die "$S/lock.mdb: $(mode "$S/lock.mdb")"
[ "$(mode "$S/checkpoints")" = "2750 nobody $D_GID" ] || die "$S/checkpoints: $(mode "$S/checkpoints")"
[ "$(mode "$S/checkpoints/data.mdb")" = "640 nobody $D_GID" ] ||
    die "$S/checkpoints/data.mdb: $(mode "$S/checkpoints/data.mdb")"
[ "$(mode "$S/checkpoints/lock.mdb")" = "660 nobody $D_GID" ] ||
    die "$S/checkpoints/lock.mdb: $(mode "$S/checkpoints/lock.mdb")"
[ "$(stat -c %a "$T/a/keys")" = 700 ] || die "keys/ is not 0700"
doctor_says trainer-files ok
chmod g+w "$S/checkpoints"
doctor_says trainer-files fail "$S/checkpoints has mode 2770"
chmod g-w "$S/checkpoints"

# --- what the trainer's uid may do, without capabilities ----------------------------------
as_trainer=(setpriv --reuid="$N_UID" --regid="$D_GID" --clear-groups --inh-caps=-all
    --bounding-set=-all --)
# try WHAT PYTHON ARGS...: the statement fails with PermissionError as the trainer's uid.
try() {
    local what=$1 code=$2
    shift 2
    if "${as_trainer[@]}" /usr/bin/python3 -c "import os, sys; $code" "$@" 2>"$T/try.err"; then
        die "the trainer's uid could $what"
    fi
    grep -q PermissionError "$T/try.err" || die "$what failed otherwise: $(cat "$T/try.err")"
}
"${as_trainer[@]}" /usr/bin/python3 -c 'import sys; assert len(open(sys.argv[1], "rb").read(4096)) == 4096' \
    "$S/data.mdb" || die "the trainer's uid cannot read the main data.mdb: the tries below prove nothing"
try "open keys/sign.key" 'open(sys.argv[1], "rb")' "$T/a/keys/sign.key"
try "open the main data.mdb for writing" 'open(sys.argv[1], "r+b")' "$S/data.mdb"
try "signal the monitor" 'os.kill(int(sys.argv[1]), 0)' "$MON"
try "open cwtd-private/" 'os.listdir(sys.argv[1])' "$S/cwtd-private"
# The trainer's memory: the same reader opens that of a dumpable process of the uid (the
# control), not the trainer's (it is not dumpable after its change of uid).
"${as_trainer[@]}" sleep 60 &
CONTROL=$!
capless() { [ "$(awk '/^CapEff:/ {print $2}' "/proc/$1/status")" = 0000000000000000 ]; }
wait_for 5 capless "$CONTROL" || die "the control process kept its capabilities"
"${as_trainer[@]}" /usr/bin/python3 -c 'import sys; open(f"/proc/{sys.argv[1]}/mem", "rb", 0)' "$CONTROL" ||
    die "a same-uid process cannot read a dumpable process's memory either: the try proves nothing"
kill "$CONTROL"
wait "$CONTROL" 2>/dev/null || true
CONTROL=""
try "read the trainer's memory" 'open(f"/proc/{sys.argv[1]}/mem", "rb", 0)' "$TR"

# --- it trains: a reads its images, checkpoints a visit and seals cycle 0 for b ----------
"$CWTCTL" -c "$C" start >/dev/null || die "start at a"
wait_for 120 sh -c "ls '$T'/a/outbox/*.cwtb >/dev/null 2>&1" ||
    die "a sealed no bundle: $(tail -n 5 "$T/a.log")"
[ "$(status_field a trainer_restarts)" = 0 ] || die "the trainer restarted: $(tail -n 5 "$T/a.log")"

# --- stop ends the supervisor, which the monitor cannot signal -----------------------------
rc=0
"$CWTCTL" -c "$C" stop >/dev/null || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 75 ] || die "cwtctl stop exited $rc"
wait_for 30 process_gone "$MON" || die "cwtd does not stop"
wait_for 30 process_gone "$SUP" || die "the trainer supervisor outlives the monitor"

# --- cwtctl as daemon.user, with checkpoints/ the trainer's ----------------------------------
# Store commands that write the main environment open checkpoints/ read-only (CLI_STORE_WRITE),
# so the site's own user runs them without capabilities, as the admin guide says.
as_user=(setpriv --reuid="$D_UID" --regid="$D_GID" --clear-groups --inh-caps=-all
    --bounding-set=-all --)
"${as_user[@]}" "$CWTCTL" -c "$C" data --json >"$T/data.json" ||
    die "cwtctl data as daemon.user failed with checkpoints/ the trainer's"
"${as_user[@]}" "$CWTCTL" -c "$C" audit export "$T/a/export.json" >/dev/null 2>"$T/export.err" ||
    die "cwtctl audit export as daemon.user failed: $(cat "$T/export.err")"
"${as_user[@]}" "$CWTCTL" -c "$C" audit show | grep -q export ||
    die "the export's audit record is missing"
[ "$(mode "$S/checkpoints/data.mdb")" = "640 nobody $D_GID" ] ||
    die "cwtctl changed checkpoints/data.mdb: $(mode "$S/checkpoints/data.mdb")"
# A monitor killed with -9 cannot send the supervisor its parent-death signal either (the
# kernel checks that signal's permission against the dying monitor's uid): the closed
# socket ends the trainer, and the supervisor with it.
start_daemon a
MON=$(cat "$T/a.pid")
wait_for 120 sh -c "[ \$(grep -c 'trainer [0-9]* ready on' '$T/a.log') -ge 2 ]" ||
    die "the trainer did not start again: $(tail -n 5 "$T/a.log")"
TR=$(sed -n 's/.*trainer \([0-9]*\) ready on.*/\1/p' "$T/a.log" | tail -n 1)
SUP=$(awk '/^PPid:/ {print $2}' "/proc/$TR/status")
kill -KILL "$MON"
wait_for 30 process_gone "$TR" || die "the trainer outlives a monitor killed with -9"
wait_for 30 process_gone "$SUP" || die "the trainer supervisor outlives a monitor killed with -9"

# --- started as daemon with the unit's capabilities: the same users, no capability left -----
"$CWTD" -c "$C" --prepare-store || die "cwtd --prepare-store as root"
"${as_unit[@]}" "$CWTD" -c "$C" -f 2>>"$T/a.log" &
echo $! >>"$DAEMON_PIDS_FILE"
MON=$!
wait_for 120 sh -c "[ \$(grep -c 'trainer [0-9]* ready on' '$T/a.log') -ge 3 ]" ||
    die "the trainer did not start under the unit's capabilities: $(tail -n 5 "$T/a.log")"
TR=$(sed -n 's/.*trainer \([0-9]*\) ready on.*/\1/p' "$T/a.log" | tail -n 1)
SUP=$(awk '/^PPid:/ {print $2}' "/proc/$TR/status")
KEY=$(pgrep -P "$MON" | grep -vx "$SUP" | head -n 1)
[ -n "$KEY" ] || die "no key process beside the trainer supervisor"
[ "$(ids "$MON" | sed 's| / [^/]*$||')" = "$D_UID $D_UID $D_UID $D_UID / $D_GID $D_GID $D_GID $D_GID" ] ||
    die "under the unit's capabilities the monitor runs as $(ids "$MON")"
for p in "$SUP" "$TR"; do
    [ "$(ids "$p" | sed 's| / [^/]*$||')" = "$N_UID $N_UID $N_UID $N_UID / $D_GID $D_GID $D_GID $D_GID" ] ||
        die "under the unit's capabilities process $p runs as $(ids "$p")"
done
sec_no_caps "$MON" "$KEY" "$SUP" "$TR"
echo "trainer_user: ok"
