# Issue 18, M2: cwtd running with `ulimit -f` small met a write error (EFBIG) while opening a
# bundle and moved it to inbox/rejected/, saying nothing in status. A local error must hold
# the file (it stays in the inbox), show in status and in the audit log, and be retried; only
# a bundle rule rejects.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup m2_local_write_error
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
export FED_INPUT=8x8x1 # the store stays far below the file size limit
sec_two_sites
# A 3 MiB payload: writing its plaintext passes the 2 MiB limit.
sec_u8_bundle "$T/big.cwtb" $((3 << 20))
(
    ulimit -f 2048
    start_daemon b
)
sec_drop "$T/big.cwtb" big.cwtb
has_error() { status_field b inbox_error | grep -q "big.cwtb held: local error"; }
wait_for 30 has_error || die "status does not show the local error: $(status_field b held)"
[ -e "$T/b/inbox/big.cwtb" ] || die "the file left the inbox"
[ ! -e "$T/b/inbox/rejected/big.cwtb" ] || die "a local error rejected the bundle"
"$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -q " inbox-local-error " || die "not audited"
sleep 3 # retried with backoff: still held, still not rejected, audited once
[ ! -e "$T/b/inbox/rejected/big.cwtb" ] || die "rejected on a retry"
[ "$("$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -c " inbox-local-error ")" = 1 ] ||
    die "the same local error was audited more than once"
kill -0 "$(cat "$T/b.pid")" || die "cwtd died"
echo "m2_local_write_error: ok"
