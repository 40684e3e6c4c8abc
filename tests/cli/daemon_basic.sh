# cwtd basics: start-up refusals (inbox writable by others, secret key readable by others),
# status over the control socket, a peer whose uid/gid is not allowed is refused, garbage and
# other-federation files are rejected with a reason and audited while status keeps working,
# stop, and status with the daemon down.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_basic
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

make_site a
make_site b
build_roster a b
A="$T/a/cwtd.conf"

# --- start-up refusals -------------------------------------------------------------------
chmod o+w "$T/a/inbox"
if "$CWTD" -c "$A" -f 2>"$T/refuse1.log"; then die "cwtd started with an inbox writable by others"; fi
grep -q "writable by others" "$T/refuse1.log" || die "no clear message: $(cat "$T/refuse1.log")"
chmod o-w "$T/a/inbox"

chmod 0644 "$T/a/keys/sign.key"
if "$CWTD" -c "$A" -f 2>"$T/refuse2.log"; then die "cwtd started with a readable secret key"; fi
grep -qi "sign.key" "$T/refuse2.log" || die "no clear message: $(cat "$T/refuse2.log")"
chmod 0600 "$T/a/keys/sign.key"

"$CWTD" --version | grep "cwtd " >/dev/null || die "--version"
"$CWTD" --help | grep "usage: cwtd" >/dev/null || die "--help"
if "$CWTD" --bogus 2>/dev/null; then die "unknown option accepted"; fi

# --- status ------------------------------------------------------------------------------
start_daemon a
"$CWTCTL" -c "$A" status >"$T/status.txt" || die "status failed"
grep -q "a (1 of 2) in federation fed-test" "$T/status.txt" ||
    die "status does not name the site: $(cat "$T/status.txt")"
[ "$(status_field a state)" = "idle" ] || die "a fresh site is not idle"
[ "$(status_field a federation)" = "fed-test" ] || die "federation missing from status"
[ "$(stat -c %a "$T/a/cwtd.sock")" = "660" ] || die "control socket is not mode 0660"

# --- pause is kept across restarts ----------------------------------------------------------
"$CWTCTL" -c "$A" pause >/dev/null || die "pause"
[ "$(status_field a paused)" = 1 ] || die "status does not show the pause"
kill -9 "$(cat "$T/a.pid")"
wait "$(cat "$T/a.pid")" 2>/dev/null || true
[ "$(status_field a paused)" = 1 ] || die "offline status does not show the pause"
start_daemon a
[ "$(status_field a paused)" = 1 ] || die "the pause was lost by a restart"
"$CWTCTL" -c "$A" status | grep "(paused)" >/dev/null || die "status table does not show the pause"
"$CWTCTL" -c "$A" resume >/dev/null || die "resume"
[ "$(status_field a paused)" = 0 ] || die "resume did not clear the pause"

# --- a peer that is not allowed ------------------------------------------------------------
# The socket's mode keeps others out at the file level; open it up to reach the daemon's own
# SO_PEERCRED check, with a client configuration that user 'nobody' can read.
mkdir -p "$T/client"
sed "s|^socket = .*|socket = \"$T/a/cwtd.sock\";|; s|^roster = .*|roster = \"$T/client/roster.conf\";|" \
    "$A" >"$T/client/cwtd.conf"
cp "$T/a/roster.conf" "$T/client/roster.conf"
chmod 755 "$T/client" && chmod 644 "$T/client/"*
# Unit tests may have made the scratch root 0700; nobody must be able to walk to the socket.
chmod o+x "$CWT_TEST_TMP" "$T" "$T/a"
if setpriv --reuid=65534 --regid=65534 --clear-groups "$CWTCTL" -c "$T/client/cwtd.conf" \
    status >/dev/null 2>"$T/nobody1.err"; then
    die "nobody reached the daemon through a 0660 socket"
fi
grep -q "permission denied" "$T/nobody1.err" || die "unclear refusal: $(cat "$T/nobody1.err")"
chmod 666 "$T/a/cwtd.sock"
set +e
setpriv --reuid=65534 --regid=65534 --clear-groups "$CWTCTL" -c "$T/client/cwtd.conf" \
    status >/dev/null 2>"$T/nobody2.err"
rc=$?
set -e
[ "$rc" = 1 ] || die "refused peer: exit $rc, expected 1"
grep -q "may not control cwtd" "$T/nobody2.err" || die "unclear refusal: $(cat "$T/nobody2.err")"
chmod 660 "$T/a/cwtd.sock"
chmod o-x "$T/a"

# --- files that must be rejected -----------------------------------------------------------
head -c 3000 /dev/urandom >"$T/a/inbox/garbage.cwtb"
printf 'CWTB but not really' >"$T/a/inbox/short.cwtb"

# A correctly signed bundle of another federation, addressed to a.
make_site x
"$CWTCTL" -c "$T/x/cwtd.conf" key show | head -n 1 >"$T/x.pub"
sed -i 's/federation = "fed-test"/federation = "other-fed"/' "$T/x/roster.conf"
"$CWTCTL" -c "$T/x/cwtd.conf" roster add "$(cat "$T/x.pub")" >/dev/null
"$CWTCTL" -c "$T/x/cwtd.conf" roster add "$(head -n 1 "$T/a.pub")" >/dev/null
python3 - "$T/w.safetensors" <<'EOF'
import json, struct, sys
data = struct.pack("<4f", 0.5, -0.25, 1.0, 2.0)
hdr = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, len(data)]},
       "__metadata__": {"format": "cwt-model-v1"}}
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF
"$CWTCTL" -c "$T/x/cwtd.conf" bundle seal --to a --weights "$T/w.safetensors" \
    --model-fp "$(printf '%064d' 0)" -o "$T/other.cwtb" >/dev/null 2>"$T/seal.err" ||
    die "cannot seal the other federation's bundle: $(cat "$T/seal.err")"
cp "$T/other.cwtb" "$T/a/inbox/.other.part"
mv "$T/a/inbox/.other.part" "$T/a/inbox/other-fed.cwtb"

for f in garbage short other-fed; do
    wait_for 20 test -f "$T/a/inbox/rejected/$f.cwtb.reason" || die "$f.cwtb was not rejected"
    [ ! -e "$T/a/inbox/$f.cwtb" ] || die "$f.cwtb is still in the inbox"
done
grep -q "rule: .*roster" "$T/a/inbox/rejected/other-fed.cwtb.reason" ||
    die "other federation: wrong reason: $(cat "$T/a/inbox/rejected/other-fed.cwtb.reason")"
grep -q "^reason: " "$T/a/inbox/rejected/garbage.cwtb.reason" || die "garbage: no reason"

# The daemon still serves, and the audit log has one record per rejection.
[ "$(status_field a state)" = "idle" ] || die "status after rejections"

# --- an inbox made anew: its watch (and Landlock rule) held the old folder; cwtd stops with
# the reason (systemd restarts it), and a restarted cwtd takes files from the new folder.
mv "$T/a/inbox" "$T/a/inbox.old"
mkdir -m 0750 "$T/a/inbox"
wait_for 20 process_gone "$(cat "$T/a.pid")" || die "cwtd did not stop for a replaced inbox"
grep "inbox folder .* was replaced by a new folder" "$T/a.log" >/dev/null ||
    die "no reason for stopping: $(tail -n 3 "$T/a.log")"
start_daemon a
head -c 100 /dev/urandom >"$T/a/inbox/new-garbage.cwtb"
wait_for 20 test -f "$T/a/inbox/rejected/new-garbage.cwtb.reason" ||
    die "the restarted cwtd does not take files from the new inbox"
"$CWTCTL" -c "$A" stop >/dev/null || die "stop"
wait_for 20 process_gone "$(cat "$T/a.pid")" || die "cwtd did not stop"
"$CWTCTL" -c "$A" audit show | grep "folder-replaced" >/dev/null || die "replaced inbox not audited"
n=$("$CWTCTL" -c "$A" audit show | grep -c "bundle-rejected" || true)
[ "$n" -ge 3 ] || die "expected 3 bundle-rejected audit records, found $n"
"$CWTCTL" -c "$A" audit show | grep "control-refused" >/dev/null || die "refused peer not audited"
"$CWTCTL" -c "$A" audit verify >/dev/null || die "audit chain does not verify"

# --- status with the daemon down --------------------------------------------------------
set +e
"$CWTCTL" -c "$A" status >"$T/down.txt" 2>"$T/down.err"
rc=$?
set -e
[ "$rc" = 1 ] || die "status with the daemon down: exit $rc, expected 1"
grep -q "not running" "$T/down.err" || die "status does not say the daemon is down"
grep -q "fed-test" "$T/down.txt" || die "offline status lacks the federation"
if "$CWTCTL" -c "$A" start 2>"$T/start.err"; then die "start succeeded without a daemon"; fi
grep -q "not running" "$T/start.err" || die "start: unclear message"
echo "daemon_basic: ok"
