#!/usr/bin/env bash
# admin_guide.sh - the unpackaged path of docs/admin-guide.md ("Without the package") runs as
# written: its shell block is taken from the guide, with ~ pointing into the test folder and
# ~/images made by the test; every command must succeed, doctor must pass with the daemon up,
# and the ingested CSV paths are relative to the CSV. The packaged path of the same guide is
# tests/cli/systemd_boot.sh.
set -euo pipefail
: "${CWTCTL:?}" "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"
[ -n "${CWTD:-}" ] || {
    echo "admin_guide: skipped (no cwtd)"
    exit 0
}
# As root the guide runs as nobody (below), which must reach the folder: a folder of its own
# under /tmp then, since the test folder's parents may be closed to other users.
if [ "$(id -u)" = 0 ]; then
    T=$(mktemp -d "${TMPDIR:-/tmp}/cwt-admin-guide.XXXXXX")
else
    T="$CWT_TEST_TMP/admin_guide.$$"
    rm -rf "$T"
fi
mkdir -p "$T/bin"
cleanup() {
    [ -z "${daemon_pid:-}" ] || kill "$daemon_pid" 2>/dev/null || true
    rm -rf "$T"
}
trap cleanup EXIT
. "$CWT_SRC/tests/cli/helpers/expect.sh"

# The block, as the guide prints it.
awk '/^### Without the package/ {on = 1} on && /^```sh$/ {code = 1; next}
     code && /^```$/ {exit} code {print}' "$CWT_SRC/docs/admin-guide.md" >"$T/block.sh"
grep -q "cwtctl init --site-id test-a --dir ~/cwt-a" "$T/block.sh" || fail "no unpackaged block in the guide"
# The programs under test by their plain names; ~ is the test folder; the daemon line also
# records its pid and waits for the socket.
ln -s "$CWTCTL" "$T/bin/cwtctl"
ln -s "$CWTD" "$T/bin/cwtd"
sed -e "s|~/|$T/|g" \
    -e 's|^\(cwtd .*&\)\(.*\)$|\1\2\ndaemon_pid=$!; for _ in $(seq 100); do [ -S '"$T"'/cwt-a/cwtd.sock ] \&\& break; sleep 0.1; done|' \
    "$T/block.sh" >"$T/run.sh"
python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/images" 8 1 16 >/dev/null
# An unpackaged site belongs to an ordinary user (cwtd refuses root without daemon.user): run as
# root, the test follows the guide as nobody, in a folder that nobody owns.
as_user=()
if [ "$(id -u)" = 0 ]; then
    chown -R 65534:65534 "$T"
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
(
    cd "$T"
    PATH=$T/bin:$PATH "${as_user[@]}" bash -euo pipefail -x "$T/run.sh"
) >"$T/log" 2>&1 || fail "the guide's unpackaged block failed: $(tail -n 20 "$T/log")"
grep -q "^doctor: site ok" "$T/log" || fail "doctor did not pass: $(cat "$T/log")"
grep -Eq "^ok +daemon +cwtd answers" "$T/log" || fail "doctor did not reach cwtd: $(cat "$T/log")"

# A CSV's paths are relative to the CSV's folder, wherever ingest is run from.
mkdir -p "$T/export/img"
cp "$T/images/0/"*.png "$T/export/img/"
[ "$(id -u)" != 0 ] || chown -R 65534:65534 "$T/export"
{
    echo "path,label"
    for f in "$T"/export/img/*.png; do echo "img/$(basename "$f"),0"; done
} >"$T/export/labels.csv"
(cd / && "${as_user[@]}" "$CWTCTL" -c "$T/cwt-a/cwtd.conf" ingest "$T/export/labels.csv" >"$T/ingest.log" 2>&1) ||
    fail "ingest of a CSV with relative paths: $(cat "$T/ingest.log")"
echo "admin_guide: ok"
