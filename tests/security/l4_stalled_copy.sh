# Issue 18, L4: a copy that stalls 5 s mid-file was rejected as truncated while it was still
# being written. A bundle shorter than its framing says is held while it grew within
# daemon.settle_seconds; once complete it is judged on its content. A copy that never
# completes is rejected as truncated after settle_seconds without growth.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup l4_stalled_copy
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
sed -i 's/rescan_seconds = 1;/rescan_seconds = 1; settle_seconds = 8;/' "$T/b/cwtd.conf"
grep -q "settle_seconds = 8" "$T/b/cwtd.conf" || die "cannot set settle_seconds"
start_daemon b
# A bundle of a 64 KiB payload (refused by the model rule once complete: any rule but
# framing shows that it was read whole).
sec_u8_bundle "$T/u8.cwtb" 65536
size=$(stat -c %s "$T/u8.cwtb")
half=$((size / 2))

# The copy writes half, stalls 5 s (several rescans), then finishes.
head -c "$half" "$T/u8.cwtb" >"$T/b/inbox/slow.cwtb"
sleep 5
[ ! -e "$T/b/inbox/rejected/slow.cwtb.reason" ] ||
    die "rejected while being copied: $(cat "$T/b/inbox/rejected/slow.cwtb.reason")"
status_field b held | grep -q "slow.cwtb held" || die "status does not show the hold: $(status_field b held)"
tail -c +$((half + 1)) "$T/u8.cwtb" >>"$T/b/inbox/slow.cwtb"
wait_for 30 test -f "$T/b/inbox/rejected/slow.cwtb.reason" || die "the completed file was not handled"
grep -q "tensors are not the roster model's" "$T/b/inbox/rejected/slow.cwtb.reason" ||
    die "judged before it was complete: $(cat "$T/b/inbox/rejected/slow.cwtb.reason")"

# A copy that never completes: rejected as truncated once it stopped growing for 8 s.
head -c "$half" "$T/u8.cwtb" >"$T/b/inbox/dead.cwtb"
sleep 4
[ ! -e "$T/b/inbox/rejected/dead.cwtb.reason" ] || die "the stalled copy was rejected too early"
wait_for 30 test -f "$T/b/inbox/rejected/dead.cwtb.reason" || die "the dead copy was never rejected"
grep -q "declares" "$T/b/inbox/rejected/dead.cwtb.reason" ||
    die "wrong reason: $(cat "$T/b/inbox/rejected/dead.cwtb.reason")"
echo "l4_stalled_copy: ok"
