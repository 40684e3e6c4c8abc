#!/usr/bin/env bash
# Issue 18, M4: a 216 KB DICOM of 6000 nested undefined-length sequences made DCMTK recurse
# until cwtctl died with SIGSEGV, in a process that could read keys/sign.key. Now:
#   * the pre-scan refuses it ("nest deeper than 32 levels") before DCMTK parses it;
#   * the same nesting in a deflated data set (which the pre-scan cannot read) crashes the
#     sandboxed decoder child, which costs that one file ("decoder crashed on FILE");
#   * a deflated data set of 272 bytes declaring a 4 GB value is refused as corrupt (found
#     by tests/fuzz/fuzz_decode, which DCMTK made allocate the 4 GB);
#   * ingest goes on: the PNGs beside them are stored, cwtctl exits 1 (files rejected), never
#     by a signal; predict likewise names the two files and answers for the good one.
set -euo pipefail
: "${CWTCTL:?}" "${CWT_TEST_TMP:?}" "${CWT_SRC:?}"

T="$CWT_TEST_TMP/m4_nested_dicom.$$"
rm -rf "$T"
mkdir -p "$T"
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
. "$CWT_SRC/tests/cli/helpers/expect.sh" # fail, expect

python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 8 5
python3 "$CWT_SRC/tests/security/helpers/nested_dicom.py" "$T/png/0/nested.dcm" 6000
python3 "$CWT_SRC/tests/security/helpers/nested_dicom.py" "$T/png/1/deflated.dcm" 6000 deflate
python3 "$CWT_SRC/tests/security/helpers/nested_dicom.py" "$T/png/2/huge.dcm" 0 deflate-huge
[ "$(stat -c %s "$T/png/0/nested.dcm")" -gt 200000 ] || fail "the attack file is too small"
"$CWTCTL" init --site-id a --dir "$T/a" --input 28x28x1 --class-names top,bottom,bar >/dev/null
A=(-c "$T/a/cwtd.conf")

rc=0
"$CWTCTL" "${A[@]}" ingest --val-fraction 0.25 --seed 1 "$T/png" >"$T/ingest.out" 2>"$T/ingest.err" ||
    rc=$?
cat "$T/ingest.out" "$T/ingest.err"
[ "$rc" -eq 1 ] || fail "ingest exited $rc, expected 1 (three files rejected)"
grep -qF "nested.dcm: DICOM sequences nest deeper than 32 levels" "$T/ingest.err" ||
    fail "the nested DICOM was not refused by the pre-scan"
grep -qE "deflated.dcm: .*decoder crashed on .*deflated.dcm \((signal [0-9]+|exit status [0-9]+)\)" \
    "$T/ingest.err" || fail "the crash of the decoder child was not reported for deflated.dcm"
grep -qF "huge.dcm: corrupt or truncated DICOM" "$T/ingest.err" ||
    fail "the deflated DICOM declaring a 4 GB value was not refused as corrupt"
grep -qF "ingested 24, skipped as duplicate 0, rejected 3" "$T/ingest.out" ||
    fail "the PNGs were not all stored"
n=$("$CWTCTL" "${A[@]}" data --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"])')
[ "$n" -eq 24 ] || fail "$n images in the store, expected 24"

# predict on the same files: a model of one short epoch is enough.
"$CWTCTL" "${A[@]}" train --epochs 1 >/dev/null 2>&1 || fail "train"
rc=0
"$CWTCTL" "${A[@]}" predict "$T/png/0/nested.dcm" "$T/png/1/deflated.dcm" "$T/png/0/img0000.png" \
    >"$T/predict.out" 2>"$T/predict.err" || rc=$?
cat "$T/predict.out" "$T/predict.err"
[ "$rc" -eq 1 ] || fail "predict exited $rc, expected 1 (two files refused)"
grep -qF "nest deeper than 32 levels" "$T/predict.err" || fail "predict did not refuse nested.dcm"
grep -qF "decoder crashed on $T/png/1/deflated.dcm" "$T/predict.err" ||
    fail "predict did not report the decoder crash on deflated.dcm"
grep -qF "img0000.png: " "$T/predict.out" || fail "predict gave no answer for the good image"
echo "m4_nested_dicom: ok"
