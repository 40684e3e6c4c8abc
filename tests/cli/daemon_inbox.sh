# Sneakernet realities with real bundles between two sites (one cycle): a replayed copy of an
# accepted bundle, a tampered copy and garbage are each rejected with a reason and audited
# while the daemon keeps serving status; an outbox that cannot be written shows its error in
# status and the bundle goes out once the outbox works again; resend puts the last bundle back.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_inbox
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export FED_CYCLES=1 FED_VISIT_STEPS=4 FED_IMAGES=96
setup_federation a b
for s in a b; do start_daemon "$s"; done

# An outbox that cannot be written: the folder is moved away and a file takes its place.
mv "$T/a/outbox" "$T/a/outbox.away"
touch "$T/a/outbox"
"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start"
has_outbox_error() { [ -n "$(status_field a outbox_error)" ]; }
wait_for 300 has_outbox_error || die "no outbox error in status"
"$CWTCTL" -c "$T/a/cwtd.conf" status | grep "outbox error" >/dev/null || die "status table lacks it"
rm "$T/a/outbox"
mv "$T/a/outbox.away" "$T/a/outbox"
wait_for 30 sh -c "ls '$T'/a/outbox/*.cwtb >/dev/null 2>&1" || die "bundle did not go out"
[ -z "$(status_field a outbox_error)" ] || die "outbox error not cleared"

# The courier delivers it once; b accepts it.
courier_once a b
first=$(ls "$T"/chain/*.cwtb | head -n 1)
b_accepted() { [ "$(status_field b state)" != "idle" ] && [ ! -e "$T/b/inbox/$(basename "$first")" ]; }
wait_for 60 b_accepted || die "b did not accept the first bundle"

# resend: the same bytes go back into a's outbox.
"$CWTCTL" -c "$T/a/cwtd.conf" resend >/dev/null || die "resend"
cmp "$T/a/outbox/$(basename "$first")" "$first" || die "resend changed the bundle"
rm -f "$T/a/outbox/"*.cwtb

# Replayed, tampered and garbage files at b.
cp "$first" "$T/b/inbox/.r.part" && mv "$T/b/inbox/.r.part" "$T/b/inbox/replayed.cwtb"
python3 - "$first" "$T/b/inbox/.t.part" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[len(data) // 2] ^= 0x40
open(sys.argv[2], "wb").write(data)
PY
mv "$T/b/inbox/.t.part" "$T/b/inbox/tampered.cwtb"
head -c 500 /dev/urandom >"$T/b/inbox/garbage.cwtb"
for f in replayed tampered garbage; do
    wait_for 60 test -f "$T/b/inbox/rejected/$f.cwtb.reason" || die "$f was not rejected"
    "$CWTCTL" -c "$T/b/cwtd.conf" status >/dev/null || die "status after $f"
done
grep -qi "replay\|sequence" "$T/b/inbox/rejected/replayed.cwtb.reason" ||
    die "replayed: $(cat "$T/b/inbox/rejected/replayed.cwtb.reason")"
grep -qi "signature" "$T/b/inbox/rejected/tampered.cwtb.reason" ||
    die "tampered: $(cat "$T/b/inbox/rejected/tampered.cwtb.reason")"

# The federation still finishes.
start_courier a b
wait_for 600 all_finished a b || die "the federation did not finish"
stop_courier
check_federation_end a b >/dev/null
n=$("$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -c "bundle-rejected" || true)
[ "$n" -ge 3 ] || die "expected 3 rejections in b's audit log, found $n"
"$CWTCTL" -c "$T/a/cwtd.conf" audit show | grep "outbox-error" >/dev/null || die "outbox error not audited"
echo "daemon_inbox: ok"
