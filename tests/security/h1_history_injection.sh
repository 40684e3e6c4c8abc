# Issue 18, H1: a roster member signs a bundle whose payload metadata "cwt.history" carries
# "...\ncycle=1000" (and another an unknown injected key). `bundle verify` passes (the
# signature is good), but cwtd must refuse the bundle by rule, keep its state, and start
# again normally: status never shows cycle 1000, and the saved state stays readable.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup h1_history_injection
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
sec_model_weights "$T/w.safetensors"
sec_set_meta "$T/w.safetensors" "$T/evil.safetensors" cwt.history \
    'cur=0 sum=0.5 n=1 best=-1 bestc=0\ncycle=1000'
sec_seal "$T/evil.safetensors" "$T/evil.cwtb"
"$CWTCTL" -c "$T/b/cwtd.conf" bundle verify "$T/evil.cwtb" >/dev/null || die "the bundle does not verify"

start_daemon b
sec_drop "$T/evil.cwtb" evil.cwtb
wait_for 60 test -f "$T/b/inbox/rejected/evil.cwtb.reason" || die "the bundle was not rejected"
grep -q "cwt.history" "$T/b/inbox/rejected/evil.cwtb.reason" ||
    die "wrong reason: $(cat "$T/b/inbox/rejected/evil.cwtb.reason")"
[ "$(status_field b state)" = idle ] || die "b moved on: $(status_field b detail)"

# An unknown injected key in a second bundle (a new id; sequence 0 again is fine while the
# ledger holds nothing).
sec_set_meta "$T/w.safetensors" "$T/evil2.safetensors" cwt.history \
    'cur=0 sum=0.5 n=1 best=-1 bestc=0\nevil=1'
sec_seal "$T/evil2.safetensors" "$T/evil2.cwtb"
sec_drop "$T/evil2.cwtb" evil2.cwtb
wait_for 60 test -f "$T/b/inbox/rejected/evil2.cwtb.reason" || die "the second bundle was not rejected"

# A restart reads the state back; nothing says cycle 1000.
kill -TERM "$(cat "$T/b.pid")"
wait_for 20 process_gone "$(cat "$T/b.pid")" || die "cwtd did not stop"
"$CWTCTL" -c "$T/b/cwtd.conf" status >"$T/offline.txt" 2>&1 || true
grep -q "1000" "$T/offline.txt" && die "offline status shows the injected cycle: $(cat "$T/offline.txt")"
start_daemon b
[ "$(status_field b state)" = idle ] || die "after restart: $(status_field b detail)"
"$CWTCTL" -c "$T/b/cwtd.conf" status | grep -q "cycle 1000" && die "status shows cycle 1000"

# The honest bundle is still accepted (the rule refuses the injection, not history).
cp "$SEC_HONEST" "$T/good.cwtb"
sec_drop "$T/good.cwtb" good.cwtb
accepted() { [ ! -e "$T/b/inbox/good.cwtb" ] && [ "$(status_field b state)" != idle ]; }
wait_for 60 accepted || die "the honest bundle was not accepted: $(status_field b held)"
[ ! -e "$T/b/inbox/rejected/good.cwtb" ] || die "the honest bundle was rejected"
echo "h1_history_injection: ok"
