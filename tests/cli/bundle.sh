#!/usr/bin/env bash
# bundle.sh - two sites made with `cwtctl init` + `roster add` exchange weight bundles by
# copying files; an auditor verifies them and their chain with the roster alone; tampered,
# replayed and misaddressed bundles are refused with exit 1, their reason, and no output file.
set -euo pipefail

: "${CWTCTL:?}" "${CWT_TEST_TMP:?}"
T="$CWT_TEST_TMP/bundle.$$"
rm -rf "$T"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
cd "$T"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Runs cwtctl expecting exit code $1 and $2 in its output (stderr, or stdout for verify).
expect() {
    local want=$1 needle=$2 rc=0
    shift 2
    "$CWTCTL" "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" -eq "$want" ] || fail "$* exited $rc, wanted $want: $(cat err.txt)"
    cat out.txt err.txt | grep -- "$needle" >/dev/null || fail "$*: output lacks '$needle': $(cat err.txt)"
}

# Weights of the roster's model (cnn-small at the roster's input and classes: the tensors
# `bundle open` holds every payload to) with the trainer's "fingerprint" metadata. N is
# ignored (kept for the calls' readability); POISON puts a NaN in.
mkweights() {
    local out=$1 poison=${3:-0} fp=${4:-$FP}
    python3 "$CWT_SRC/tests/cli/helpers/make_weights.py" "$out" "$poison" "$fp" "$T/a/roster.conf"
}

A=(-c "$T/a/cwtd.conf")
B=(-c "$T/b/cwtd.conf")
"$CWTCTL" init --site-id site-a --dir "$T/a" >/dev/null
"$CWTCTL" init --site-id site-b --dir "$T/b" >/dev/null
KA=$("$CWTCTL" "${A[@]}" key show | head -n 1)
KB=$("$CWTCTL" "${B[@]}" key show | head -n 1)
for s in A B; do
    declare -n S=$s
    "$CWTCTL" "${S[@]}" roster add "$KA" >/dev/null
    "$CWTCTL" "${S[@]}" roster add "$KB" >/dev/null
done
cmp -s <("$CWTCTL" "${A[@]}" roster check | tail -n 1) <("$CWTCTL" "${B[@]}" roster check | tail -n 1) ||
    fail "the two sites' roster fingerprints differ"

# The roster model's fingerprint: what `bundle open` requires of every bundle.
FP=$("$CWTCTL" "${A[@]}" model fingerprint)
[[ $FP =~ ^[0-9a-f]{64}$ ]] || fail "model fingerprint printed '$FP'"
[ "$("$CWTCTL" "${B[@]}" model fingerprint)" = "$FP" ] || fail "sites disagree on the model fingerprint"
mkweights w0.safetensors 0 # cnn-small at 28x28: two chunks

# Site a seals sequence 0 for site b; the file travels by copy.
"$CWTCTL" "${A[@]}" bundle seal --to site-b --weights w0.safetensors -o "$T/a/outbox/b0.cwtb" >/dev/null
cp "$T/a/outbox/b0.cwtb" "$T/b/inbox/b0.cwtb"

# The auditor: roster only, no site configuration.
cp "$T/a/roster.conf" roster-auditor.conf
CWT_CONFIG=/nonexistent "$CWTCTL" bundle verify --roster roster-auditor.conf "$T/b/inbox/b0.cwtb" >out.txt
grep -q "^OK" out.txt || fail "auditor verify: $(cat out.txt)"
"$CWTCTL" --json bundle verify --roster roster-auditor.conf "$T/b/inbox/b0.cwtb" | grep '"ok": true' >/dev/null ||
    fail "verify --json"
# The JSON documents against their schemas (docs/schemas/), a failing file among them.
"$CWTCTL" --json bundle verify --roster roster-auditor.conf "$T/b/inbox/b0.cwtb" >verify.json
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" bundle-verify verify.json || fail "verify schema"
head -c 100 "$T/b/inbox/b0.cwtb" >short.cwtb
rc=0
"$CWTCTL" --json bundle verify --roster roster-auditor.conf "$T/b/inbox/b0.cwtb" short.cwtb \
    >verify-bad.json 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "verify of a cut file exits $rc"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" bundle-verify verify-bad.json ||
    fail "verify schema (failure)"
grep -q '"error": "bundle-framing"' verify-bad.json || fail "verify error name: $(cat verify-bad.json)"
"$CWTCTL" bundle inspect "$T/b/inbox/b0.cwtb" | grep "sender *site-a" >/dev/null || fail "inspect"
"$CWTCTL" --json bundle inspect "$T/b/inbox/b0.cwtb" >inspect.json || fail "inspect --json exit"
grep -q '"kind": "cycle"' inspect.json || fail "inspect --json"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" bundle inspect.json || fail "inspect schema"
# The bundle hash is a plain BLAKE2b-256 of the file.
h=$(b2sum -l 256 "$T/b/inbox/b0.cwtb" | cut -d' ' -f1)
"$CWTCTL" bundle inspect "$T/b/inbox/b0.cwtb" | grep "bundle hash *$h" >/dev/null || fail "bundle hash is not b2sum -l 256"

# Weights of another model are refused by the receiver and leave nothing behind.
mkweights other.safetensors 1000 0 "$(printf 'ab%.0s' $(seq 32))"
"$CWTCTL" "${A[@]}" bundle seal --to site-b --weights other.safetensors -o other.cwtb >/dev/null
expect 1 "is not the roster model's" "${B[@]}" bundle open other.cwtb -o "$T/b/other.safetensors"
[ ! -e "$T/b/other.safetensors" ] || fail "a bundle of another model wrote output"

# Site b opens it: the weights arrive unchanged.
"$CWTCTL" "${B[@]}" bundle open "$T/b/inbox/b0.cwtb" -o "$T/b/w0.safetensors" >/dev/null
cmp w0.safetensors "$T/b/w0.safetensors" || fail "weights changed in transit"
"$CWTCTL" "${B[@]}" audit show | grep "bundle-opened" >/dev/null || fail "no bundle-opened audit record"

# Replay: the same file again.
expect 1 "replay" "${B[@]}" bundle open "$T/b/inbox/b0.cwtb" -o "$T/b/again.safetensors"
[ ! -e "$T/b/again.safetensors" ] || fail "a replay wrote output"
"$CWTCTL" "${B[@]}" audit show | grep "bundle-rejected" >/dev/null || fail "no bundle-rejected audit record"

# Site b trains (here: copies) and seals sequence 1 back to a, with b0 as parent.
"$CWTCTL" "${B[@]}" bundle seal --to site-a --weights "$T/b/w0.safetensors" \
    --parent "$T/b/inbox/b0.cwtb" -o "$T/b/outbox/b1.cwtb" >/dev/null
cp "$T/b/outbox/b1.cwtb" "$T/a/inbox/"
"$CWTCTL" "${A[@]}" bundle open "$T/a/inbox/b1.cwtb" -o "$T/a/w1.safetensors" >/dev/null
"$CWTCTL" "${A[@]}" bundle seal --to site-b --weights "$T/a/w1.safetensors" \
    --parent "$T/a/inbox/b1.cwtb" -o "$T/a/outbox/b2.cwtb" >/dev/null

# The auditor checks the chain, in any order of the files.
"$CWTCTL" chain verify --roster roster-auditor.conf "$T/a/outbox/b2.cwtb" \
    "$T/a/outbox/b0.cwtb" "$T/b/outbox/b1.cwtb" >out.txt || fail "chain verify: $(cat out.txt)"
grep -q "chain of 3 bundle(s), sequence 0 to 2: intact" out.txt || fail "chain table: $(cat out.txt)"
"$CWTCTL" --json chain verify --roster roster-auditor.conf "$T/a/outbox/b0.cwtb" \
    "$T/b/outbox/b1.cwtb" | grep '"ok": true' >/dev/null || fail "chain --json"
"$CWTCTL" --json chain verify --roster roster-auditor.conf "$T/a/outbox/b0.cwtb" \
    "$T/b/outbox/b1.cwtb" >chain.json || fail "chain --json exit"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" chain-verify chain.json || fail "chain schema"
rc=0
"$CWTCTL" --json chain verify --roster roster-auditor.conf "$T/a/outbox/b0.cwtb" \
    "$T/a/outbox/b2.cwtb" >chain-bad.json 2>/dev/null || rc=$?
[ "$rc" = 1 ] || fail "a broken chain exits $rc"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" chain-verify chain-bad.json ||
    fail "chain schema (failure)"
expect 1 "gap" chain verify --roster roster-auditor.conf "$T/a/outbox/b0.cwtb" "$T/a/outbox/b2.cwtb"

# A fork: a second sequence 1 sealed by b from the same parent.
"$CWTCTL" "${B[@]}" bundle seal --to site-a --weights "$T/b/w0.safetensors" \
    --parent "$T/b/inbox/b0.cwtb" -o fork.cwtb >/dev/null
expect 1 "fork" chain verify --roster roster-auditor.conf "$T/a/outbox/b0.cwtb" "$T/b/outbox/b1.cwtb" fork.cwtb
# ...which site a, having accepted sequence 1 already, refuses as a rollback.
expect 1 "not newer" "${A[@]}" bundle open fork.cwtb -o "$T/a/fork.safetensors"
[ ! -e "$T/a/fork.safetensors" ] || fail "a rollback wrote output"

# Tampering: a flipped byte in the payload and in the signature; truncation; appended bytes.
size=$(stat -c %s "$T/a/outbox/b2.cwtb")
flip() { # flip FILE OFFSET OUT
    cp "$1" "$3"
    printf "$(printf '\\%03o' $(($(od -An -tu1 -j "$2" -N1 "$1") ^ 1)))" |
        dd of="$3" bs=1 seek="$2" conv=notrunc status=none
}
flip "$T/a/outbox/b2.cwtb" $((size / 2)) t-payload.cwtb
expect 1 "signature does not verify" "${B[@]}" bundle open t-payload.cwtb -o "$T/b/t.safetensors"
flip "$T/a/outbox/b2.cwtb" $((size - 3)) t-sig.cwtb
expect 1 "signature does not verify" bundle verify --roster roster-auditor.conf t-sig.cwtb
head -c $((size - 100)) "$T/a/outbox/b2.cwtb" >t-trunc.cwtb
expect 1 "declares" "${B[@]}" bundle open t-trunc.cwtb -o "$T/b/t.safetensors"
{ cat "$T/a/outbox/b2.cwtb"; echo x; } >t-long.cwtb
expect 1 "declares" bundle verify --roster roster-auditor.conf t-long.cwtb
printf 'XXXX' | dd of=t-long.cwtb bs=1 conv=notrunc status=none
expect 1 "not a cwt bundle" bundle verify --roster roster-auditor.conf t-long.cwtb
[ ! -e "$T/b/t.safetensors" ] || fail "a tampered bundle wrote output"
# verify with several files reports each and fails overall.
expect 1 "1 of 2 bundle(s) failed" bundle verify --roster roster-auditor.conf "$T/a/outbox/b2.cwtb" t-sig.cwtb
grep -q "^OK" out.txt && grep -q "^FAIL" out.txt || fail "per-file results: $(cat out.txt)"

# Not a recipient: site a cannot open what a sealed for b.
expect 1 "not among the bundle's" "${A[@]}" bundle open "$T/a/outbox/b2.cwtb" -o "$T/a/x.safetensors"
# Another roster: a third site changes the fingerprint.
"$CWTCTL" init --site-id site-c --dir "$T/c" >/dev/null
cp roster-auditor.conf "$T/c/roster.conf"
"$CWTCTL" -c "$T/c/cwtd.conf" roster add "$("$CWTCTL" -c "$T/c/cwtd.conf" key show | head -n 1)" >/dev/null
expect 1 "another roster" bundle verify --roster "$T/c/roster.conf" "$T/a/outbox/b2.cwtb"

# Weights with a NaN are refused at sealing.
mkweights nan.safetensors 1000 1
expect 1 "NaN or Inf" "${A[@]}" bundle seal --to site-b --weights nan.safetensors -o nan.cwtb
[ ! -e nan.cwtb ] || fail "sealing NaN weights wrote a bundle"

# A secret key readable by others is refused.
chmod 0644 "$T/a/keys/sign.key"
expect 1 "sign.key" "${A[@]}" bundle seal --to site-b --weights w0.safetensors -o x.cwtb
chmod 0600 "$T/a/keys/sign.key"

# Usage errors exit 2.
expect 2 "usage" bundle seal --to site-b
expect 2 "kind" "${A[@]}" bundle seal --to site-b --weights w0.safetensors --kind bogus -o x.cwtb
echo "bundle.sh: all checks passed"
