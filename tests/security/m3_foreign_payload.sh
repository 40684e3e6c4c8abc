# Issue 18, M3: a roster member seals a payload of one 16-byte U8 tensor under a header with
# the roster model's correct fingerprint. `cwtctl bundle open` must refuse it (exit 1, the
# model rule, no output, nothing in the ledger or audit log as opened), and cwtd must reject
# it from the inbox with the same rule instead of recording it.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup m3_foreign_payload
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
sec_u8_bundle "$T/u8.cwtb"

rc=0
"$CWTCTL" -c "$T/b/cwtd.conf" bundle open "$T/u8.cwtb" -o "$T/out.safetensors" 2>"$T/open.err" || rc=$?
[ "$rc" = 1 ] || die "bundle open exited $rc: $(cat "$T/open.err")"
grep -q "tensors are not the roster model's" "$T/open.err" || die "wrong reason: $(cat "$T/open.err")"
[ ! -e "$T/out.safetensors" ] || die "bundle open wrote the payload"
"$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -q " bundle-opened " && die "the bundle was recorded as opened"

start_daemon b
sec_drop "$T/u8.cwtb" u8.cwtb
wait_for 60 test -f "$T/b/inbox/rejected/u8.cwtb.reason" || die "cwtd did not reject the bundle"
grep -q "tensors are not the roster model's" "$T/b/inbox/rejected/u8.cwtb.reason" ||
    die "wrong reason: $(cat "$T/b/inbox/rejected/u8.cwtb.reason")"
[ "$(status_field b state)" = idle ] || die "b moved on: $(status_field b detail)"
"$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -q " bundle-opened " && die "cwtd recorded the bundle"
echo "m3_foreign_payload: ok"
