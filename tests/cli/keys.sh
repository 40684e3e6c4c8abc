#!/usr/bin/env bash
# keys.sh - `cwtctl key show` prints the public key line and key id from site.pub alone;
# commands that load secret keys refuse a secret file readable or writable by group or others
# (exit 1, one sentence naming the file, its mode and the chmod to run) and keys that do not
# belong to site.pub; every load and refusal lands in the audit log.
set -euo pipefail

T="$CWT_TEST_TMP/keys.$$"
rm -rf "$T"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
export CWT_CONFIG="$T/no-such-site.conf"

. "$CWT_SRC/tests/cli/helpers/expect.sh"

"$CWTCTL" init --site-id site-a --dir "$T/a" >/dev/null
"$CWTCTL" init --site-id site-b --dir "$T/b" >/dev/null
A=(-c "$T/a/cwtd.conf")
K="$T/a/keys"

# Files and modes made by init.
[ "$(stat -c %a "$K/sign.key")" = 600 ] || fail "sign.key mode"
[ "$(stat -c %a "$K/box.key")" = 600 ] || fail "box.key mode"
[ "$(stat -c %a "$K/site.pub")" = 644 ] || fail "site.pub mode"
[ "$(stat -c %a "$K")" = 700 ] || fail "keys folder mode"
head -n 1 "$K/sign.key" | grep -x 'cwt-sign-v1' >/dev/null || fail "sign.key magic"
head -n 1 "$K/box.key" | grep -x 'cwt-box-v1' >/dev/null || fail "box.key magic"

# key show: the key line alone on the first line, then the key id.
"$CWTCTL" "${A[@]}" key show >"$T/show"
[ "$(wc -l <"$T/show")" -eq 2 ] || fail "key show prints two lines"
LINE=$(head -n 1 "$T/show")
[[ "$LINE" =~ ^cwt-site-v1\ site-a\ [A-Za-z0-9+/]{86}==$ ]] || fail "key line: $LINE"
[ "$LINE" = "$(cat "$K/site.pub")" ] || fail "key show differs from site.pub"
grep -Eq '^key id: [0-9a-f]{16}$' "$T/show" || fail "key id line"
KID=$(sed -n 's/^key id: //p' "$T/show")
"$CWTCTL" "${A[@]}" key show --json >"$T/json"
grep -q "\"key_id\": \"$KID\"" "$T/json" || fail "json key id"
grep -qF "\"key_line\": \"$LINE\"" "$T/json" || fail "json key line"
LINEB=$("$CWTCTL" -c "$T/b/cwtd.conf" key show | head -n 1)
[ "${LINEB#cwt-site-v1 site-b }" != "${LINE#cwt-site-v1 site-a }" ] || fail "two sites share a key"

# key check loads the secrets and audits it.
"$CWTCTL" "${A[@]}" key check | grep "key id $KID" >/dev/null || fail "key check"
"$CWTCTL" "${A[@]}" audit show | grep "key-load .*site site-a key $KID loaded with secret keys for key check" >/dev/null ||
    fail "key load not audited"

# A secret key file readable by others is refused, with the sentence that says what to do.
chmod 644 "$K/sign.key"
expect 1 "$K/sign.key is readable by group and others (mode 0644); run chmod 600 $K/sign.key" \
    "$CWTCTL" "${A[@]}" key check
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "the refusal is more than one line"
expect 1 "$K/sign.key is readable by group and others (mode 0644)" \
    "$CWTCTL" "${A[@]}" audit export "$T/export"
[ ! -e "$T/export" ] || fail "an export was written with a refused key"
# key show needs only the public file, so it still works.
"$CWTCTL" "${A[@]}" key show | head -n 1 | grep -xF "$LINE" >/dev/null || fail "key show with a loose secret"
"$CWTCTL" "${A[@]}" audit show | grep "key-load-refused .*sign.key is readable" >/dev/null ||
    fail "refusal not audited"

chmod 600 "$K/sign.key"
chmod 620 "$K/box.key"
expect 1 "$K/box.key is writable by its group (mode 0620); run chmod 600" "$CWTCTL" "${A[@]}" key check
chmod 600 "$K/box.key"
"$CWTCTL" "${A[@]}" key check >/dev/null

# Secret keys that do not belong to site.pub.
cp "$K/sign.key" "$T/sign.key.saved"
cp "$T/b/keys/sign.key" "$K/sign.key"
expect 1 "$K/sign.key does not belong to the public key in $K/site.pub" "$CWTCTL" "${A[@]}" key check
cp "$T/sign.key.saved" "$K/sign.key"
cp "$T/b/keys/box.key" "$K/box.key"
expect 1 "box.key does not belong" "$CWTCTL" "${A[@]}" key check

# A missing or damaged file is named.
rm "$K/box.key"
expect 1 "$K/box.key: no such secret key file" "$CWTCTL" "${A[@]}" key check
echo "cwt-site-v1 site-a AAAA" >"$K/site.pub"
expect 1 "site.pub: key line for site-a: the key is not 64 bytes of base64" "$CWTCTL" "${A[@]}" key show

# Usage and configuration errors exit 2.
expect 2 "usage: cwtctl key show" "$CWTCTL" "${A[@]}" key
expect 2 "usage: cwtctl key show" "$CWTCTL" "${A[@]}" key revoke
expect 2 "no site configuration at $T/no-such-site.conf" "$CWTCTL" key show
echo "keys.sh: ok"
