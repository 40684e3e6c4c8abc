# Restart behaviour (issue 18, follow-up): status lists the outbox file only while it is in
# the outbox; once the courier took it, status no longer names a file that is gone, before
# and after a restart.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup outbox_status
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
start_daemon a
"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start"
wait_for 120 sh -c "ls '$T'/a/outbox/*.cwtb >/dev/null 2>&1" || die "a sealed no bundle"
f=$(basename "$(ls "$T"/a/outbox/*.cwtb | head -n 1)")
written() { [ "$(status_field a outbox_written)" = 1 ]; }
wait_for 20 written || die "the bundle is not marked written"
[ "$(status_field a outbox_file)" = "$f" ] || die "status does not list $f"
mv "$T/a/outbox/$f" "$T/$f" # the courier takes it
[ -z "$(status_field a outbox_file)" ] || die "status lists $f after it left the outbox"
kill -TERM "$(cat "$T/a.pid")"
wait_for 20 process_gone "$(cat "$T/a.pid")" || die "cwtd did not stop"
start_daemon a
[ -z "$(status_field a outbox_file)" ] || die "status lists $f after a restart"
echo "outbox_status: ok"
