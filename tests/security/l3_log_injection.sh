# Issue 18, L3: an inbox file whose name holds a newline and a fake log line forged an
# "accepted" line in the daemon log. No control character may reach a log line: the name is
# logged escaped, and no line of the log starts with the forged text.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup l3_log_injection
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
sec_two_sites
start_daemon b
name=$'x.cwtb\ncwtd: accepted evil.cwtb: cycle from a (cycle 9, hop 0)'
head -c 400 /dev/urandom >"$T/b/inbox/.g.part"
mv "$T/b/inbox/.g.part" "$T/b/inbox/$name"
wait_for 30 test -f "$T/b/inbox/rejected/$name.reason" || die "the file was not rejected"
sleep 0.5
grep -q "^cwtd: accepted evil.cwtb" "$T/b.log" && die "a forged line reached the log: $(cat "$T/b.log")"
grep -q 'x.cwtb\\x0acwtd: accepted evil' "$T/b.log" || die "the name was not logged escaped: $(cat "$T/b.log")"
"$CWTCTL" -c "$T/b/cwtd.conf" audit show | grep -q "^cwtd: accepted" && die "a forged audit line"
echo "l3_log_injection: ok"
