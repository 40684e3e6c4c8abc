# Four cwtd sites on one machine with their own folders and keys, a courier moving each outbox
# file to the next site's inbox, two cycles on a small Fashion-MNIST slice per site: every site
# ends with the same final model, the bundles form one verified chain, every audit log verifies.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_federation
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SITES=(a b c d)

setup_federation "${SITES[@]}"
for s in "${SITES[@]}"; do
    start_daemon "$s"
done
"$CWTCTL" -c "$T/b/cwtd.conf" start 2>"$T/start_b.err" && die "a site other than the first started"
grep -q "only the first site" "$T/start_b.err" || die "unclear refusal: $(cat "$T/start_b.err")"
"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start at a"
"$CWTCTL" -c "$T/a/cwtd.conf" start 2>/dev/null && die "a second start was accepted"
start_courier "${SITES[@]}"

started=$(date +%s)
wait_for 900 all_finished "${SITES[@]}" || {
    for s in "${SITES[@]}"; do "$CWTCTL" -c "$T/$s/cwtd.conf" status || true; tail -5 "$T/$s.log"; done
    die "the federation did not finish"
}
stop_courier
hash=$(check_federation_end "${SITES[@]}")
# A final model was installed where `cwtctl model export` finds it.
check_nothing_lost "${SITES[@]}"
"$CWTCTL" -c "$T/c/cwtd.conf" status | grep "val accuracy" >/dev/null || die "status lacks metrics"
echo "daemon_federation: ok in $(($(date +%s) - started)) s, final model $hash"
