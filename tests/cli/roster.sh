#!/usr/bin/env bash
# roster.sh - two sites made with `cwtctl init` exchange their key lines, build the same roster
# with `roster add`, and get the same fingerprint; duplicates and malformed key lines are
# refused with their own message and exit code; the fingerprint ignores comments, whitespace
# and key order but changes with any site, key, order, recipe or federation change.
set -euo pipefail

T="$CWT_TEST_TMP/roster.$$"
rm -rf "$T"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
export CWT_CONFIG="$T/no-such-site.conf" # commands without -c see no site

. "$CWT_SRC/tests/cli/helpers/expect.sh"

A=(-c "$T/a/cwtd.conf")
B=(-c "$T/b/cwtd.conf")
"$CWTCTL" init --site-id site-a --dir "$T/a" >/dev/null
"$CWTCTL" init --site-id site-b --dir "$T/b" >/dev/null
LA=$("$CWTCTL" "${A[@]}" key show | head -n 1)
LB=$("$CWTCTL" "${B[@]}" key show | head -n 1)

# Fingerprint (hex) of a roster file checked alone.
fp_file() {
    "$CWTCTL" roster check --json "$1" | sed -n 's/.*"fingerprint": "\([0-9a-f]\{64\}\)".*/\1/p'
}

# Before the site lists itself, `roster check` fails and says how to fix it.
expect 1 "this site (site-a) is not in" "$CWTCTL" "${A[@]}" roster check
expect 1 "lists no sites" "$CWTCTL" "${A[@]}" roster check

for site in A B; do
    declare -n opts=$site
    "$CWTCTL" "${opts[@]}" roster add "$LA" >/dev/null
    "$CWTCTL" "${opts[@]}" roster add "$LB" >/dev/null
done
"$CWTCTL" "${A[@]}" roster check >"$T/check-a"
"$CWTCTL" "${B[@]}" roster check >"$T/check-b"
grep -q '^roster ok: federation cwt-federation, 2 sites$' "$T/check-a" || fail "check at a: $(cat "$T/check-a")"
# Grouped hex for reading aloud: 16 groups of 4 digits.
grep -Eq '^fingerprint: ([0-9a-f]{4} ){15}[0-9a-f]{4}$' "$T/check-a" || fail "fingerprint format"
[ "$(grep fingerprint "$T/check-a")" = "$(grep fingerprint "$T/check-b")" ] ||
    fail "fingerprints differ between the sites"
FP=$(fp_file "$T/a/roster.conf")
[ "${#FP}" -eq 64 ] || fail "no fingerprint in roster check --json"
[ "$FP" = "$(fp_file "$T/b/roster.conf")" ] || fail "file fingerprints differ"

# roster show: order, key ids, this site marked, recipe and fingerprint.
"$CWTCTL" "${A[@]}" roster show >"$T/show"
KIDA=$("$CWTCTL" "${A[@]}" key show | sed -n 's/^key id: //p')
grep -Eq "^ +1  site-a +key id $KIDA  \(this site\)$" "$T/show" || fail "show: $(cat "$T/show")"
grep -Eq '^ +2  site-b +key id [0-9a-f]{16}$' "$T/show" || fail "show lacks site-b"
grep -q 'input      28x28x1' "$T/show" || fail "show lacks the recipe"
"$CWTCTL" "${A[@]}" roster show --json | grep "\"fingerprint\": \"$FP\"" >/dev/null || fail "show --json"

# Every roster add is audited as a configuration change.
"$CWTCTL" "${A[@]}" audit show | grep -c 'config-change .*roster: added site' | grep -x 2 >/dev/null ||
    fail "roster add not audited"

# Duplicates are refused (exit 1) and the roster is left as it was.
cp "$T/a/roster.conf" "$T/before.conf"
expect 1 "site site-b is in the roster already (position 2)" "$CWTCTL" "${A[@]}" roster add "$LB"
B64=${LB##* }
expect 1 "this key is in the roster already, as site site-b" \
    "$CWTCTL" "${A[@]}" roster add "cwt-site-v1 site-c $B64"
cmp -s "$T/before.conf" "$T/a/roster.conf" || fail "a refused add changed roster.conf"

# Malformed key lines: usage errors (exit 2) naming what is wrong; nothing written.
expect 2 'must start with "cwt-site-v1"' "$CWTCTL" "${A[@]}" roster add "ssh-ed25519 $B64"
expect 2 "must be \"cwt-site-v1 <site-id> <base64 key>\"" "$CWTCTL" "${A[@]}" roster add "cwt-site-v1 site-c"
expect 2 "not 64 bytes of base64" "$CWTCTL" "${A[@]}" roster add "cwt-site-v1 site-c AAAA"
expect 2 "not 64 bytes of base64" "$CWTCTL" "${A[@]}" roster add "cwt-site-v1 site-c ${B64:0:40}!!${B64:42}"
expect 2 'site id "-c" is not valid' "$CWTCTL" "${A[@]}" roster add "cwt-site-v1 -c $B64"
expect 2 "empty key line" "$CWTCTL" "${A[@]}" roster add ""
expect 2 "needs one quoted key line" "$CWTCTL" "${A[@]}" roster add cwt-site-v1 site-c "$B64"
expect 2 "usage: cwtctl roster" "$CWTCTL" "${A[@]}" roster frobnicate
cmp -s "$T/before.conf" "$T/a/roster.conf" || fail "a malformed add changed roster.conf"

# Layout does not matter: comments, indentation, blank lines, key order (federation moved to
# the end, id/key swapped inside each site) give the same fingerprint.
sed -e '/^federation/d' -e 's/^/    /' \
    -e 's/{ id = "\([^"]*\)"; key = "\([^"]*\)"; }/{ key = "\2";   # the key\n id = "\1"; }/' \
    "$T/a/roster.conf" >"$T/layout.conf"
printf '\n# moved here\nfederation   =   "cwt-federation" ;   // a comment\n' >>"$T/layout.conf"
grep -q 'key = "cwt-site-v1 site-a' "$T/layout.conf" && ! grep -q 'id = "site-a"; key' "$T/layout.conf" ||
    fail "the layout edit did not apply"
[ "$(fp_file "$T/layout.conf")" = "$FP" ] || fail "layout changed the fingerprint"

# Content does matter.
fp_changed() {
    local what=$1 file=$2 got
    got=$(fp_file "$file")
    [ -n "$got" ] || fail "$what: roster check failed: $("$CWTCTL" roster check "$file" 2>&1)"
    [ "$got" != "$FP" ] || fail "$what did not change the fingerprint"
}
# site order swapped
awk '/^  \{ id = "site-a"/ { a = $0; sub(/,$/, "", a); next }
     /^  \{ id = "site-b"/ { sub(/,$/, ""); print $0 ","; print a; next } { print }' \
    "$T/a/roster.conf" >"$T/order.conf"
grep -A1 'site-b' "$T/order.conf" | grep 'site-a' >/dev/null || fail "the order edit did not apply"
fp_changed "the site order" "$T/order.conf"
# a different key for site-b (a second site-b made elsewhere)
"$CWTCTL" init --site-id site-b --dir "$T/b2" >/dev/null
LB2=$("$CWTCTL" -c "$T/b2/cwtd.conf" key show | head -n 1)
sed "s|$LB|$LB2|" "$T/a/roster.conf" >"$T/key.conf"
fp_changed "site-b's key" "$T/key.conf"
# a site renamed (its key line renamed with it)
sed -e 's/"site-b"/"site-z"/' -e 's/cwt-site-v1 site-b /cwt-site-v1 site-z /' \
    "$T/a/roster.conf" >"$T/rename.conf"
fp_changed "a site id" "$T/rename.conf"
# the recipe and the federation
sed 's/classes = 10;/classes = 11;/' "$T/a/roster.conf" >"$T/recipe.conf"
fp_changed "the class count" "$T/recipe.conf"
sed -E 's/^( *)lr = [^;]*;/\1lr = 0.0123;/' "$T/a/roster.conf" >"$T/lr.conf"
fp_changed "the learning rate" "$T/lr.conf"
sed 's/federation = "cwt-federation"/federation = "other-fed"/' "$T/a/roster.conf" >"$T/fed.conf"
fp_changed "the federation id" "$T/fed.conf"
# a site removed
grep -v '"site-b"' "$T/a/roster.conf" | sed 's/\(site-a.*\),$/\1/' >"$T/one.conf"
fp_changed "a removed site" "$T/one.conf"

# roster check FILE alone: malformed file -> 2, failed check -> 1.
printf 'federation = "x";\nrecipe = { classes = ;\n' >"$T/syntax.conf"
expect 2 "syntax.conf:2:" "$CWTCTL" roster check "$T/syntax.conf"
expect 2 "no such file" "$CWTCTL" roster check "$T/missing.conf"
sed "s|^  { id = \"site-b\"; key = \"$LB\"; }|  { id = \"site-b\"; key = \"$LB\"; },\n  { id = \"site-b\"; key = \"$LB2\"; }|" \
    "$T/a/roster.conf" >"$T/dup.conf"
expect 1 'site "site-b" is listed twice' "$CWTCTL" roster check "$T/dup.conf"
sed "s|$LB2|cwt-site-v1 site-c $B64|; s|id = \"site-b\"; key = \"cwt-site-v1 site-c|id = \"site-c\"; key = \"cwt-site-v1 site-c|" \
    "$T/dup.conf" >"$T/dupkey.conf"
expect 1 'has the same key as "site-b"' "$CWTCTL" roster check "$T/dupkey.conf"
sed "s|$B64|${B64:0:20}|" "$T/a/roster.conf" >"$T/badkey.conf"
expect 1 "not 64 bytes of base64" "$CWTCTL" roster check "$T/badkey.conf"
"$CWTCTL" roster check "$T/layout.conf" | grep 'checked alone' >/dev/null || fail "check alone"

# A roster whose entry for this site carries another key fails at this site.
cp "$T/key.conf" "$T/b/roster.conf"
expect 1 "the roster's key for site-b differs from this site's own key" "$CWTCTL" "${B[@]}" roster check
echo "roster.sh: ok"
