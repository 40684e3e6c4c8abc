#!/usr/bin/env bash
# audit.sh - the audit log from the command line: records from roster and key commands, an
# intact chain verifies, a signed export verifies with only the public key line, a tampered
# export or the wrong key fails, and a record edited inside the LMDB file is named by
# `audit verify` and by the verification of an export made afterwards.
set -euo pipefail

T="$CWT_TEST_TMP/audit.$$"
rm -rf "$T"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
export CWT_CONFIG="$T/no-such-site.conf"

. "$CWT_SRC/tests/cli/helpers/expect.sh"

"$CWTCTL" init --site-id site-a --dir "$T/a" >/dev/null
"$CWTCTL" init --site-id site-b --dir "$T/b" >/dev/null
A=(-c "$T/a/cwtd.conf")
LA=$("$CWTCTL" "${A[@]}" key show | head -n 1)
LB=$("$CWTCTL" -c "$T/b/cwtd.conf" key show | head -n 1)

# A new site has an empty, intact log.
"$CWTCTL" "${A[@]}" audit show | grep -x 'the audit log is empty' >/dev/null || fail "empty log"
"$CWTCTL" "${A[@]}" audit verify | grep 'no records yet' >/dev/null || fail "empty verify"
[ "$("$CWTCTL" "${A[@]}" audit show --json)" = '{"schema": "cwt.audit/1", "ok": true, "records": []}' ] || fail "empty json"

"$CWTCTL" "${A[@]}" roster add "$LA" >/dev/null
"$CWTCTL" "${A[@]}" roster add "$LB" >/dev/null
"$CWTCTL" "${A[@]}" key check >/dev/null

"$CWTCTL" "${A[@]}" audit show >"$T/show"
grep -Eq '^ +1  [0-9T:-]+Z  config-change +roster: added site site-a' "$T/show" || fail "record 1: $(cat "$T/show")"
grep -Eq '^ +2  [0-9T:-]+Z  config-change +roster: added site site-b' "$T/show" || fail "record 2"
grep -Eq '^ +3  [0-9T:-]+Z  key-load +site site-a key [0-9a-f]{16} loaded' "$T/show" || fail "record 3"
"$CWTCTL" "${A[@]}" audit show --json >"$T/json"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" audit "$T/json" || fail "audit show schema"
[ "$(grep -o '"seq"' "$T/json" | wc -l)" -eq 3 ] || fail "json records"
grep -q '"seq": 1, [^}]*"prev_hash": "0\{64\}"' "$T/json" || fail "first prev_hash is zero"
"$CWTCTL" "${A[@]}" audit verify | grep '^audit log intact: 3 records, head [0-9a-f]\{64\}$' >/dev/null ||
    fail "verify"
"$CWTCTL" "${A[@]}" audit verify --json | grep '"ok": true, "records": 3' >/dev/null || fail "verify json"

# Export, signed by the site key; the export's own key load is record 4.
"$CWTCTL" "${A[@]}" audit export "$T/a.export" | grep 'exported 4 audit records' >/dev/null || fail "export"
head -n 1 "$T/a.export" | grep -x 'cwt-audit-export-v2' >/dev/null || fail "export magic"
tail -n 1 "$T/a.export" | grep -Eq '^signature [0-9a-f]{128}$' || fail "export signature line"
"$CWTCTL" "${A[@]}" audit show | grep 'audit-export .*exported records 1-4' >/dev/null || fail "export audited"

# The auditor: public key line only, no site configuration.
"$CWTCTL" audit verify --export "$T/a.export" --key "$LA" >"$T/ok"
grep -q 'audit export verified: signed by site-a (key id [0-9a-f]\{16\}), 4 records, intact chain' "$T/ok" ||
    fail "auditor verify: $(cat "$T/ok")"
"$CWTCTL" --json audit verify --export "$T/a.export" --key "$LA" | grep '"ok": true' >/dev/null || fail "json"
# The site itself may omit --key (its own site.pub is used).
"$CWTCTL" "${A[@]}" audit verify --export "$T/a.export" >/dev/null

# Wrong key, tampered, truncated, extended: exit 1, nothing accepted.
expect 1 "signature does not verify with the given key" \
    "$CWTCTL" audit verify --export "$T/a.export" --key "$LB"
sed 's/added site site-b/added site site-x/' "$T/a.export" >"$T/tampered"
cmp -s "$T/a.export" "$T/tampered" && fail "the tamper edit did not apply"
expect 1 "signature does not verify" "$CWTCTL" audit verify --export "$T/tampered" --key "$LA"
head -c -1 "$T/a.export" >"$T/truncated"
expect 1 "does not end with its signature line" "$CWTCTL" audit verify --export "$T/truncated" --key "$LA"
head -n 3 "$T/a.export" >"$T/cut"
expect 1 "does not end with its signature line" "$CWTCTL" audit verify --export "$T/cut" --key "$LA"
{ cat "$T/a.export"; echo "record 5 0 x"; } >"$T/extended"
expect 1 "does not end with its signature line" "$CWTCTL" audit verify --export "$T/extended" --key "$LA"
: >"$T/empty"
expect 1 "not a cwt audit export" "$CWTCTL" audit verify --export "$T/empty" --key "$LA"

# Usage errors: exit 2.
expect 2 "--key: not a valid key line" "$CWTCTL" audit verify --export "$T/a.export" --key "cwt-site-v1 x"
expect 2 "give the signer's key with --key" "$CWTCTL" audit verify --export "$T/a.export"
expect 2 "no such file" "$CWTCTL" audit verify --export "$T/missing" --key "$LA"
expect 2 "audit export needs one FILE" "$CWTCTL" "${A[@]}" audit export
expect 2 "unknown option" "$CWTCTL" "${A[@]}" audit show --frob
expect 2 "usage: cwtctl audit show" "$CWTCTL" "${A[@]}" audit
expect 2 "no site configuration" "$CWTCTL" audit verify

# Edit record 2 inside the LMDB data file: its details say site-b; make them say site-x in
# every copy of the page (LMDB pages carry no checksum, so only the chain can notice).
DATA="$T/a/store/data.mdb"
offsets=$(grep -obUa 'added site site-b' "$DATA" | cut -d: -f1)
[ -n "$offsets" ] || fail "record 2 not found in the LMDB file"
for off in $offsets; do
    printf 'x' | dd of="$DATA" bs=1 seek=$((off + 16)) conv=notrunc status=none
done
expect 1 "audit log is broken: audit record 2 was altered" "$CWTCTL" "${A[@]}" audit verify
expect 1 "audit record 2 was altered" "$CWTCTL" "${A[@]}" --json audit verify
grep -q '"ok": false, "error": "audit-broken", "message": "audit log is broken: audit record 2 was altered' "$T/out" ||
    fail "verify --json: $(cat "$T/out")"
# An export made now carries the evidence: signed, but its chain names record 2.
expect 1 "but the log is broken: audit record 2 was altered" \
    "$CWTCTL" "${A[@]}" audit export "$T/broken.export"
expect 1 "audit record 2 was altered" "$CWTCTL" audit verify --export "$T/broken.export" --key "$LA"
echo "audit.sh: ok"
