# Issue 18, L7: a site's key is rotated (or stolen) and every roster replaces it.
#   - `cwtctl key rotate` makes a new pair, keeps the old files as *.old, prints the new key
#     line, is audited, and refuses a second rotation while the *.old files are there;
#   - `cwtctl roster replace-key SITE LINE` refuses a line for another site id (exit 1), a
#     malformed line (exit 2), a site that is not listed, a key listed for another site or
#     the key the site has already (exit 1), and writes nothing then;
#   - a replacement is audited and changes the roster fingerprint; a bundle signed with the
#     old key is refused from then on, and one signed with the new key verifies.
set -euo pipefail
. "$CWT_SRC/tests/security/helpers/sec_lib.sh"

daemon_setup l7_replace_key
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
cd "$T"

expect() {
    local want=$1 needle=$2 rc=0
    shift 2
    "$CWTCTL" "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" -eq "$want" ] || die "$* exited $rc, wanted $want: $(cat err.txt)"
    cat out.txt err.txt | grep -- "$needle" >/dev/null || die "$*: output lacks '$needle': $(cat out.txt err.txt)"
}

make_site a
make_site b
build_roster a b
A=(-c "$T/a/cwtd.conf")
B=(-c "$T/b/cwtd.conf")
KA=$(cat "$T/a.pub")
KB=$(cat "$T/b.pub")
FP0=$("$CWTCTL" "${B[@]}" roster check | tail -n 1)

sec_u8_bundle "$T/old.cwtb"
"$CWTCTL" "${B[@]}" bundle verify old.cwtb >/dev/null || die "the first bundle does not verify"

# --- rotation -----------------------------------------------------------------------------
"$CWTCTL" "${A[@]}" key rotate >rotate.txt || die "key rotate"
NEWA=$(head -n 1 rotate.txt)
[[ $NEWA == "cwt-site-v1 a "* ]] || die "key rotate printed '$NEWA'"
[ "$NEWA" != "$KA" ] || die "the key did not change"
for f in sign.key box.key site.pub; do
    [ -f "$T/a/keys/$f.old" ] || die "$f.old was not kept"
done
[ "$(stat -c %a "$T/a/keys/sign.key")" = 600 ] || die "the new sign.key is not 0600"
[ "$("$CWTCTL" "${A[@]}" key show | head -n 1)" = "$NEWA" ] || die "key show does not show the new key"
"$CWTCTL" "${A[@]}" key check >/dev/null || die "the new keys do not check"
"$CWTCTL" "${A[@]}" audit show | grep -q " key-rotate " || die "the rotation is not audited"
expect 1 "earlier rotation" "${A[@]}" key rotate
[ "$("$CWTCTL" "${A[@]}" key show | head -n 1)" = "$NEWA" ] || die "a refused rotation changed the key"

# --- refusals: nothing is written ---------------------------------------------------------
cp "$T/b/roster.conf" roster.before
expect 1 "is for site a, not b" "${B[@]}" roster replace-key b "$NEWA"
expect 2 "not a valid key line" "${B[@]}" roster replace-key a "cwt-site-v1 a AAAA"
expect 2 "needs a site id" "${B[@]}" roster replace-key a
expect 1 "not in the roster" "${B[@]}" roster replace-key c "${NEWA/ a / c }"
expect 1 "in the roster already, as site b" "${B[@]}" roster replace-key a "${KB/ b / a }"
expect 1 "has this key already" "${B[@]}" roster replace-key a "$KA"
cmp -s roster.before "$T/b/roster.conf" || die "a refused replace-key changed the roster"

# --- the replacement ----------------------------------------------------------------------
expect 0 "replaced the key of a" "${B[@]}" roster replace-key a "$NEWA"
FP1=$("$CWTCTL" "${B[@]}" roster check | tail -n 1)
[ "$FP0" != "$FP1" ] || die "the roster fingerprint did not change"
"$CWTCTL" "${B[@]}" audit show | grep " config-change " | grep -q "replaced the key of site a" ||
    die "the replacement is not audited"

# The bundle signed with the old key is refused now.
expect 1 "roster" "${B[@]}" bundle verify old.cwtb

# Site a updates its own roster, seals with the new key: b accepts it.
"$CWTCTL" "${A[@]}" roster replace-key a "$NEWA" >/dev/null || die "replace-key at a"
[ "$("$CWTCTL" "${A[@]}" roster check | tail -n 1)" = "$FP1" ] || die "the two rosters differ"
sec_u8_bundle "$T/new.cwtb"
"$CWTCTL" "${B[@]}" bundle verify new.cwtb >/dev/null || die "the new key's bundle does not verify"
echo "l7_replace_key: ok"
