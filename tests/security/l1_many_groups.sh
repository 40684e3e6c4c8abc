# Issue 18, L1: a peer in 300 supplementary groups made the SO_PEERGROUPS ERANGE path read an
# uninitialised array. A peer whose only tie to daemon.group is its 300th supplementary group
# (past the first buffer) must be allowed, and one without it refused, cleanly.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "l1_many_groups: skipped (needs root to give a client 300 groups)"
    exit 0
fi
gid=$(getent group nogroup | cut -d: -f3)
[ -n "$gid" ] || die "no group nogroup"
daemon_setup l1_many_groups
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
sed -i 's/group = ""/group = "nogroup"/' "$T/b/cwtd.conf"
start_daemon b
sec_client_conf b
[ "$(stat -c %g "$T/b/cwtd.sock")" = "$gid" ] || die "the socket is not in group nogroup"

# 299 other groups below nogroup's id, so that nogroup comes last in the kernel's list.
others=$(seq -s, 1000 1298)
setpriv --reuid=65534 --regid=1000 --groups="$others,$gid" \
    "$CWTCTL" -c "$T/client/cwtd.conf" status >/dev/null 2>"$T/in.err" ||
    die "a member of daemon.group (its 300th group) was refused: $(cat "$T/in.err")"
chmod 666 "$T/b/cwtd.sock" # reach the daemon's own check without the group
rc=0
setpriv --reuid=65534 --regid=1000 --groups="$others,1299" \
    "$CWTCTL" -c "$T/client/cwtd.conf" status >/dev/null 2>"$T/out.err" || rc=$?
[ "$rc" = 1 ] && grep -q "may not control cwtd" "$T/out.err" ||
    die "a peer outside daemon.group: exit $rc: $(cat "$T/out.err")"
"$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -q "control-refused.*uid 65534" ||
    die "the refusal is not audited with the peer's uid"
echo "l1_many_groups: ok"
