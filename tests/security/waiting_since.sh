# Restart behaviour (issue 18, follow-up): a site that waits for its first bundle says
# "waiting for a bundle from X since T"; a restart must keep T (it used to restart the clock,
# hiding how long a courier had kept the site waiting).
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup waiting_since
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
start_daemon b
since=$(status_field b since)
[ -n "$since" ] || die "no since in status"
status_field b detail | grep -q "waiting for a bundle from a since" || die "detail: $(status_field b detail)"
sleep 2
kill -TERM "$(cat "$T/b.pid")"
wait_for 20 process_gone "$(cat "$T/b.pid")" || die "cwtd did not stop"
start_daemon b
[ "$(status_field b since)" = "$since" ] || die "since moved from $since to $(status_field b since)"
echo "waiting_since: ok"
