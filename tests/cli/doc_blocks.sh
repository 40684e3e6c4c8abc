#!/usr/bin/env bash
# doc_blocks.sh - every fenced command block of docs/auditor-guide.md and docs/model-export.md
# runs as written, or says why not (helpers/doc_blocks.py has the rules); so does every block
# of the admin guide, simulate.md and json.md. The auditor's
# blocks run on an auditor's machine: cwtctl on PATH, no site configuration, a folder holding
# the federation's roster.conf, its bundles (*.cwtb: a chain of three sealed and opened by
# three sites named as in the guide) and hospital-a's audit export. model-export.md's Python
# loader must be tests/cli/pytorch_load.py word for word (the PyTorch tests run that file).
set -euo pipefail
: "${CWTCTL:?}" "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"
T="$CWT_TEST_TMP/doc_blocks.$$"
rm -rf "$T"
mkdir -p "$T/bin" "$T/auditor"
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# Three sites of the guide's federation, one roster in cycle order.
sites=(hospital-a hospital-b hospital-c)
for s in "${sites[@]}"; do
    "$CWTCTL" init --site-id "$s" --dir "$T/$s" --federation chest-xray-2026 --input 16x16x1 \
        --classes 3 >/dev/null || fail "init $s"
done
for s in "${sites[@]}"; do
    "$CWTCTL" -c "$T/hospital-a/cwtd.conf" roster add \
        "$("$CWTCTL" -c "$T/$s/cwtd.conf" key show | head -n 1)" >/dev/null || fail "roster add $s"
done
for s in hospital-b hospital-c; do
    cp "$T/hospital-a/roster.conf" "$T/$s/roster.conf"
done

# A chain a -> b -> c -> a: each site opens the bundle it received and seals the next from it.
FP=$("$CWTCTL" -c "$T/hospital-a/cwtd.conf" model fingerprint)
python3 "$CWT_SRC/tests/cli/helpers/make_weights.py" "$T/w.safetensors" 0 "$FP" \
    "$T/hospital-a/roster.conf"
"$CWTCTL" -c "$T/hospital-a/cwtd.conf" bundle seal --to hospital-b --weights "$T/w.safetensors" \
    -o "$T/auditor/seq0.cwtb" >/dev/null || fail "seal 0"
prev=seq0
for i in 1 2; do
    s=${sites[$i]} next=${sites[$(((i + 1) % 3))]}
    "$CWTCTL" -c "$T/$s/cwtd.conf" bundle open "$T/auditor/$prev.cwtb" -o "$T/$s/w.safetensors" \
        >/dev/null || fail "open $prev at $s"
    "$CWTCTL" -c "$T/$s/cwtd.conf" bundle seal --to "$next" --weights "$T/$s/w.safetensors" \
        --parent "$T/auditor/$prev.cwtb" -o "$T/auditor/seq$i.cwtb" >/dev/null || fail "seal $i"
    prev=seq$i
done
cp "$T/hospital-a/roster.conf" "$T/auditor/roster.conf"
"$CWTCTL" -c "$T/hospital-a/cwtd.conf" audit export "$T/auditor/hospital-a.export" >/dev/null ||
    fail "audit export"

# The auditor's machine: cwtctl by its name, no configuration anywhere it looks.
ln -s "$CWTCTL" "$T/bin/cwtctl"
export PATH="$T/bin:$PATH" CWT_CONFIG="$T/no-site.conf"
keyline=$("$CWTCTL" -c "$T/hospital-a/cwtd.conf" key show | head -n 1)
python3 "$CWT_SRC/tests/cli/helpers/doc_blocks.py" --run "$CWT_SRC/docs/auditor-guide.md" \
    "$T/auditor" FILE.cwtb seq1.cwtb \
    "'cwt-site-v1 hospital-a AQqnNVnn4A327R9Mg26er7Auhy9QlmHW3qAapUfPw49rqw06mGh0h5Uyhsc4g5Wi3T2gtQjC6G4eQCwlCEWHNg=='" \
    "'$keyline'" ||
    fail "docs/auditor-guide.md"

# The other guides' blocks run elsewhere or are marked: only the markers are checked here.
for doc in model-export admin-guide simulate json; do
    python3 "$CWT_SRC/tests/cli/helpers/doc_blocks.py" "$CWT_SRC/docs/$doc.md" "$T" ||
        fail "docs/$doc.md"
done
awk '/^```python$/ {n++; if (n == 1) {on = 1; next}} on && /^```$/ {exit} on {print}' \
    "$CWT_SRC/docs/model-export.md" >"$T/loader.py"
sed -n '/^"""$/,$p' "$CWT_SRC/tests/cli/pytorch_load.py" | tail -n +2 | cmp -s - "$T/loader.py" ||
    fail "the loader of docs/model-export.md differs from tests/cli/pytorch_load.py"
echo "doc_blocks: ok"
