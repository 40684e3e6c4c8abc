# Issue 18, L6: with daemon.user empty, cwtd started as root ran as root with every
# capability and an unsandboxed supervisor. Root without daemon.user is now a start-up error;
# daemon.allow_root = true runs as root on purpose and is audited.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "l6_root_without_user: skipped (needs root to start cwtd as root)"
    exit 0
fi
daemon_setup l6_root_without_user
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
sed -i 's/ allow_root = true;//' "$T/b/cwtd.conf"
grep -q 'user = ""' "$T/b/cwtd.conf" || die "daemon.user is not empty"
rc=0
timeout 20 "$CWTD" -c "$T/b/cwtd.conf" -f 2>"$T/refused.log" || rc=$?
[ "$rc" != 0 ] && [ "$rc" != 124 ] || die "cwtd started as root without daemon.user (exit $rc)"
grep -q "refuses to run as root" "$T/refused.log" || die "no reason: $(cat "$T/refused.log")"
[ ! -S "$T/b/cwtd.sock" ] || die "the control socket was bound"

sed -i 's/rescan_seconds = 1;/rescan_seconds = 1; allow_root = true;/' "$T/b/cwtd.conf"
start_daemon b
"$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -q " running-as-root " || die "the override is not audited"
echo "l6_root_without_user: ok"
