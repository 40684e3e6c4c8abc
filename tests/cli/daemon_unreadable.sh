# A bundle that the daemon's user may not read (an admin copied it as root with a private
# mode) is held, not rejected: status says why, the daemon keeps it in the inbox, and the
# chmod that fixes it lets the daemon accept it at once. Site b's cwtd runs as user nobody
# (started as root with daemon.user), as the packaged service runs as user cwt.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

[ "$(id -u)" = 0 ] || die "this test starts cwtd as root so that it can become user nobody"
daemon_setup daemon_unreadable
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export FED_CYCLES=1 FED_VISIT_STEPS=4 FED_IMAGES=96
setup_federation a b

# b belongs to nobody, who must be able to walk to it.
sed -i 's/user = ""/user = "nobody"/' "$T/b/cwtd.conf"
grep 'user = "nobody"' "$T/b/cwtd.conf" >/dev/null || die "cannot set daemon.user for b"
chown -R nobody "$T/b"
chmod o+x "$CWT_TEST_TMP" "$T"
setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$T/b/cwtd.conf" ||
    die "user nobody cannot reach $T/b: make the folders above it searchable (o+x)"
for s in a b; do start_daemon "$s"; done
grep "running as user nobody" "$T/b.log" >/dev/null || die "b's cwtd did not become nobody"

"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start"
wait_for 300 sh -c "ls '$T'/a/outbox/*.cwtb >/dev/null 2>&1" || die "a sealed no bundle"
f=$(ls "$T"/a/outbox/*.cwtb | head -n 1)
base=$(basename "$f")

# Copied in as root, mode 0600: nobody cannot read it.
install -m 0600 "$f" "$T/b/inbox/$base"
held() { status_field b held | grep "cannot read" >/dev/null; }
wait_for 30 held || die "b does not report the unreadable bundle as held: $(status_field b held)"
# The held file by name, reason and time, in JSON, the table and the Prometheus export.
"$CWTCTL" -c "$T/b/cwtd.conf" --json status >"$T/held.json" || die "status --json"
python3 -c '
import json, sys
h = json.load(open(sys.argv[1]))["inbox_held"]
assert len(h) == 1 and h[0]["file"] == sys.argv[2] and "cannot read" in h[0]["reason"], h
assert h[0]["time"] > 0, h
' "$T/held.json" "$base" || die "inbox_held: $(cat "$T/held.json")"
"$CWTCTL" -c "$T/b/cwtd.conf" status | grep -q "$base in the inbox since" || die "status table lacks the held file"
"$CWTCTL" -c "$T/b/cwtd.conf" status --prometheus | grep -q '^cwt_inbox_held{site="b"} 1$' ||
    die "cwt_inbox_held is not 1"
sleep 2 # a rescan (every second here) must not reject it either
[ -f "$T/b/inbox/$base" ] || die "the unreadable bundle left the inbox"
[ ! -e "$T/b/inbox/rejected/$base" ] || die "the unreadable bundle was rejected"
[ "$(status_field b state)" = "idle" ] || die "b moved on without reading the bundle"
grep "$base held: cwtd cannot read it" "$T/b.log" >/dev/null || die "b did not log the hold"

# The fix: b accepts it.
chmod 0644 "$T/b/inbox/$base"
accepted() { [ "$(status_field b state)" != "idle" ] && [ ! -e "$T/b/inbox/$base" ]; }
wait_for 60 accepted || die "b did not accept the bundle after chmod: $(status_field b state)"
[ ! -e "$T/b/inbox/rejected/$base" ] || die "the bundle was rejected after chmod"
[ "$(grep -c "$base held: cwtd cannot read it" "$T/b.log")" = 1 ] ||
    die "the hold was logged more than once"
echo "daemon_unreadable: ok"
