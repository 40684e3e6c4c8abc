#!/usr/bin/env bash
# cwtctl ingest and cwtctl data: class folders of PNG, JPEG and DICOM, a CSV with splits,
# IDX files (gzip'd and plain) with a stratified split; re-ingest skips everything; bad rows,
# bad files and bad configuration are reported with their reasons, exit 1 or 2, and store
# nothing.
set -euo pipefail
: "${CWTCTL:?}" "${CWT_TEST_TMP:?}" "${CWT_SRC:?}"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
MK="$PY $CWT_SRC/tests/cli/helpers/make_images.py"
DICOM=/usr/lib/python3/dist-packages/pydicom/data/test_files
T="$CWT_TEST_TMP/ingest.$$"
rm -rf "$T"
mkdir -p "$T"
trap "rm -rf \"$T\"" EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_rc CODE CMD...: runs CMD with stdout in $T/out and stderr in $T/err.
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        cat "$T/out" "$T/err" >&2
        fail "expected exit $want, got $rc: $*"
    fi
}

expect_in() { # expect_in FILE TEXT
    grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "'$2' not in $(basename "$1")"; }
}

# json EXPR: evaluates a Python expression over `cwtctl data --json` (as d).
json() {
    "$CWTCTL" data --json >"$T/data.json"
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$T/data.json"
}

expect_eq() { # expect_eq ACTUAL WANT WHAT
    [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"
}

jpeg() { # jpeg PATH W H SEED: a baseline JPEG made with DCMTK from a BMP
    $MK bmp "$T/tmp.bmp" "$2" "$3" "$4"
    img2dcm -q -i BMP "$T/tmp.bmp" "$T/tmp.dcm"
    dcmj2pnm -q +oj "$T/tmp.dcm" "$1"
}

"$CWTCTL" init --site-id s1 --dir "$T/site" --input 16x16x1 --class-names cat,dog,bird \
    >/dev/null
export CWT_CONFIG="$T/site/cwtd.conf"

# --- no store yet: data says so and exits 2 (zeros would read as lost data) ---
expect_rc 2 "$CWTCTL" data --json
expect_in "$T/err" "there is no store in"
expect_in "$T/err" "nothing has been ingested"

# --- class folders: names and an index, PNG grey/RGB/RGBA, JPEG, DICOM ---
mkdir -p "$T/tree/cat" "$T/tree/dog/deeper" "$T/tree/2"
for i in 1 2 3 4; do $MK png "$T/tree/cat/c$i.png" 32 32 1 "$i"; done
for i in 1 2 3; do $MK png "$T/tree/dog/d$i.png" 24 20 3 "$((10 + i))"; done
$MK png "$T/tree/dog/deeper/d4.png" 40 40 4 20
for i in 1 2; do jpeg "$T/tree/2/b$i.jpg" 48 32 "$((30 + i))"; done
cp "$DICOM/MR_small.dcm" "$DICOM/CT_small.dcm" "$T/tree/2/"
expect_rc 0 "$CWTCTL" ingest "$T/tree"
# Piped, no progress line is drawn: no ETA, no carriage return.
if grep -q "ETA" "$T/out" "$T/err" || grep -q $'\r' "$T/out" "$T/err"; then
    fail "ingest wrote a progress line to a pipe"
fi
expect_in "$T/out" "ingested 12, skipped as duplicate 0, rejected 0"
expect_eq "$(json 'd["images"], d["splits"]["train"]["labels"]')" \
    "12 {'0': 4, '1': 4, '2': 4}" "class folders"

# --- again: everything is a duplicate ---
expect_rc 0 "$CWTCTL" ingest "$T/tree"
expect_in "$T/out" "ingested 0, skipped as duplicate 12, rejected 0"
expect_eq "$(json 'd["images"]')" "12" "re-ingest"

# --- a CSV with splits, names and indices, quoting, CRLF ---
mkdir -p "$T/csv/img"
for i in 1 2 3 4 5 6; do $MK png "$T/csv/img/p$i.png" 16 16 1 "$((100 + i))"; done
printf 'path,label,split\r\nimg/p1.png,cat,val\r\n"img/p2.png",dog,test\r\nimg/p3.png,2,train\r\n' \
    >"$T/csv/data.csv"
printf './img/p4.png, bird ,val\nimg/../img/p5.png,0,\nimg/p6.png,1,test\n' >>"$T/csv/data.csv"
expect_rc 0 "$CWTCTL" ingest --split test "$T/csv/data.csv"
expect_in "$T/out" "ingested 6, skipped as duplicate 0, rejected 0"
# p5 has no split in the file: --split test applies.
expect_eq "$(json 'd["splits"]["val"]["labels"], d["splits"]["test"]["labels"]')" \
    "{'0': 1, '1': 0, '2': 1} {'0': 1, '1': 2, '2': 0}" "CSV splits"
expect_eq "$(json 'd["splits"]["train"]["total"]')" "13" "CSV train"

# --- IDX, gzip'd images and plain labels, stratified seeded split ---
$MK idx "$T/imgs-idx3-ubyte.gz" "$T/labels-idx1-ubyte" 60 8 8 3 5 gz
gunzip -c "$T/imgs-idx3-ubyte.gz" >"$T/imgs-idx3-ubyte"
expect_rc 0 "$CWTCTL" ingest --val-fraction 0.2 --test-fraction 0.1 --seed 7 \
    "$T/imgs-idx3-ubyte.gz" "$T/labels-idx1-ubyte"
expect_in "$T/out" "ingested 60, skipped as duplicate 0, rejected 0"
# 20 per label: 4 val, 2 test, 14 train each.
expect_eq "$(json 'd["images"], d["splits"]["val"]["total"], d["splits"]["test"]["total"]')" \
    "78 14 9" "IDX totals"
# The same images uncompressed are the same content.
expect_rc 0 "$CWTCTL" ingest --val-fraction 0.2 --test-fraction 0.1 --seed 7 \
    "$T/imgs-idx3-ubyte" "$T/labels-idx1-ubyte"
expect_in "$T/out" "ingested 0, skipped as duplicate 60"

# --- bad CSV rows: each reported, exit 1, nothing stored ---
echo outside >"$T/outside.png"
cat >"$T/csv/bad.csv" <<'CSV'
path,label
img/p1.png
img/p2.png,zebra
../outside.png,cat
/etc/passwd,cat
img/missing.png,cat
img/p3.png,cat,val
CSV
before=$(json 'd["images"]')
expect_rc 1 "$CWTCTL" ingest "$T/csv/bad.csv"
expect_in "$T/err" "bad.csv:2: too few fields"
expect_in "$T/err" "bad.csv:3: label 'zebra' is not a class of the recipe"
expect_in "$T/err" "bad.csv:4: path '../outside.png' leads outside the CSV's folder"
expect_in "$T/err" "bad.csv:5: absolute path '/etc/passwd'"
expect_in "$T/err" "missing.png: No such file"
expect_in "$T/err" "bad.csv:7: too many fields"
expect_in "$T/out" "rejected 6"
expect_in "$T/out" "rejected: 2 malformed CSV row"
expect_in "$T/out" "rejected: 1 label not in the recipe"
expect_in "$T/out" "rejected: 2 path outside the CSV's folder"
expect_eq "$(json 'd["images"]')" "$before" "bad CSV stored something"

# A symlink inside the folder that leads out of it.
ln -s "$T/outside.png" "$T/csv/img/link.png"
printf 'path,label\nimg/link.png,cat\n' >"$T/csv/link.csv"
expect_rc 1 "$CWTCTL" ingest "$T/csv/link.csv"
expect_in "$T/err" "outside the CSV's folder through a symlink"

# --- bad files: each rejected with its reason, nothing stored ---
mkdir -p "$T/bad/cat" "$T/bad/zebra"
: >"$T/bad/cat/empty.png"
echo "just some text" >"$T/bad/cat/text.png"
$MK png "$T/full.png" 64 64 3 77
head -c 300 "$T/full.png" >"$T/bad/cat/truncated.png"
jpeg "$T/full.jpg" 64 64 78
head -c 200 "$T/full.jpg" >"$T/bad/cat/truncated.jpg"
head -c 20000 "$DICOM/CT_small.dcm" >"$T/bad/cat/truncated.dcm"
cp "$DICOM/rtplan.dcm" "$T/bad/cat/"
"$PY" - "$T/bad/cat/huge.png" <<'PYEOF'
import struct, sys, zlib
body = struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)
ihdr = struct.pack(">I", 13) + b"IHDR" + body + struct.pack(">I", zlib.crc32(b"IHDR" + body))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + ihdr)
PYEOF
$MK png "$T/bad/zebra/z.png" 8 8 1 90
$MK png "$T/bad/loose.png" 8 8 1 91
expect_rc 1 "$CWTCTL" ingest "$T/bad"
expect_in "$T/err" "empty.png: empty file"
expect_in "$T/err" "text.png: not a PNG, JPEG or DICOM image"
expect_in "$T/err" "truncated.png: corrupt PNG"
expect_in "$T/err" "truncated.jpg: corrupt JPEG"
expect_in "$T/err" "truncated.dcm: corrupt or truncated DICOM"
expect_in "$T/err" "rtplan.dcm: DICOM file has no pixel data"
expect_in "$T/err" "huge.png: PNG of 100000x100000 pixels is over the limit"
expect_in "$T/err" "folder 'zebra' is not a class of the recipe"
expect_in "$T/err" "loose.png: files must be inside a folder named after their class"
expect_in "$T/out" "ingested 0, skipped as duplicate 0, rejected 9"
expect_in "$T/out" "rejected: 2 not an image"
expect_in "$T/out" "rejected: 3 corrupt or truncated image"
expect_in "$T/out" "rejected: 1 over the size limit"
expect_in "$T/out" "rejected: 1 no usable pixel data"
expect_eq "$(json 'd["images"]')" "$before" "bad files stored something"

# --- usage and configuration errors: exit 2 ---
expect_rc 2 "$CWTCTL" ingest
expect_rc 2 "$CWTCTL" ingest --split nowhere "$T/tree"
expect_rc 2 "$CWTCTL" ingest --val-fraction 0.7 --test-fraction 0.5 "$T/tree"
expect_rc 2 "$CWTCTL" ingest "$T/does-not-exist"
printf 'not,a,header\nx,y,z\n' >"$T/noheader.csv"
expect_rc 2 "$CWTCTL" ingest "$T/noheader.csv"
expect_in "$T/err" "noheader.csv:1: expected the header"
sed 's/rescan_seconds = 30/rescan_seconds = "often"/' "$T/site/cwtd.conf" >"$T/site/type.conf"
expect_rc 2 "$CWTCTL" -c "$T/site/type.conf" ingest "$T/tree"
expect_in "$T/err" "type.conf"
{ cat "$T/site/cwtd.conf"; echo 'colour = "blue";'; } >"$T/site/unknown.conf"
expect_rc 2 "$CWTCTL" -c "$T/site/unknown.conf" ingest "$T/tree"
expect_in "$T/err" "colour"
# A recipe whose input no longer matches the store.
sed -i 's/input = \[16, 16, 1\]/input = [28, 28, 1]/' "$T/site/roster.conf"
grep -q 'input = \[28, 28, 1\]' "$T/site/roster.conf" || fail "could not edit the roster"
expect_rc 2 "$CWTCTL" ingest "$T/tree"
expect_in "$T/err" "the store holds 16x16x1 images but the roster's recipe says 28x28x1"
echo "ingest: ok"
