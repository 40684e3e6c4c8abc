#!/usr/bin/env bash
# ingest_duplicates.sh - the same image bytes listed twice with another label or split (as in
# BreastMNIST and PneumoniaMNIST): ingest reports each such conflict with both copies' paths,
# labels and splits, `data --json` counts them (once each, however often re-ingested);
# --duplicates skip (default) stores the first copy only, keep stores the conflicting copy
# too, refuse stops with exit 1 and one sentence; copies that agree are skipped silently.
set -euo pipefail
: "${CWTCTL:?}" "${CWT_TEST_TMP:?}" "${CWT_SRC:?}"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
MK="$PY $CWT_SRC/tests/cli/helpers/make_images.py"
T="$CWT_TEST_TMP/ingest_duplicates.$$"
rm -rf "$T"
mkdir -p "$T/csv/img"
trap 'rm -rf "$T"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
run() { # run WANT_RC SITE ARGS...: stdout in $T/out, stderr in $T/err
    local want=$1 site=$2 rc=0
    shift 2
    "$CWTCTL" -c "$T/$site/cwtd.conf" "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq "$want" ] || { cat "$T/out" "$T/err" >&2; fail "expected exit $want, got $rc: $*"; }
}
has() { grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "'$2' not in $(basename "$1")"; }; }
data() { # data SITE EXPR: a Python expression over `data --json` (as d)
    "$CWTCTL" -c "$T/$1/cwtd.conf" data --json >"$T/data.json"
    "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$T/data.json"
}

# a.png; b.png the same bytes with another label and split; c.png the same bytes, same label
# and split as a (a plain duplicate); d.png another image.
$MK png "$T/csv/img/a.png" 16 16 1 11
$MK png "$T/csv/img/d.png" 16 16 1 12
cp "$T/csv/img/a.png" "$T/csv/img/b.png"
cp "$T/csv/img/a.png" "$T/csv/img/c.png"
printf 'path,label,split\nimg/a.png,cat,train\nimg/b.png,dog,test\n' >"$T/csv/data.csv"
printf 'img/c.png,cat,train\nimg/d.png,dog,train\n' >>"$T/csv/data.csv"
for s in skip keep refuse; do
    "$CWTCTL" init --site-id "$s" --dir "$T/$s" --input 16x16x1 --class-names cat,dog,bird \
        >/dev/null
done

# skip (the default): a and d stored; b reported with both paths, labels and splits.
run 0 skip ingest "$T/csv/data.csv"
has "$T/out" "ingested 2, skipped as duplicate 2, rejected 0"
has "$T/out" "duplicates with another label or split: 1"
has "$T/err" "img/b.png (label 1, test) has the same image bytes as"
has "$T/err" "img/a.png (label 0, train); skipped"
[ "$(grep -c "same image bytes" "$T/err")" -eq 1 ] || fail "c.png (agreeing) was reported"
[ "$(data skip 'd["schema"], d["images"], d["duplicates"]')" = \
    "cwt.data/1 2 {'conflicts': 1, 'label': 1, 'split': 1}" ] || fail "skip: $(cat "$T/data.json")"
# A later ingest meets the earlier run's copy: named by its hash; counted once per conflict.
printf 'path,label,split\nimg/b.png,cat,val\n' >"$T/csv/later.csv"
run 0 skip ingest "$T/csv/later.csv"
has "$T/err" "img/b.png (label 0, val) has the same image bytes as the stored image"
run 0 skip ingest "$T/csv/later.csv"
[ "$(data skip 'd["duplicates"]')" = "{'conflicts': 2, 'label': 1, 'split': 2}" ] ||
    fail "skip, later: $(cat "$T/data.json")"
# The stored images are read while this run's first batch is open (e.png stored first).
$MK png "$T/csv/img/e.png" 16 16 1 13
printf 'path,label,split\nimg/e.png,cat,train\nimg/b.png,bird,train\n' >"$T/csv/mid.csv"
run 0 skip ingest "$T/csv/mid.csv"
has "$T/out" "ingested 1, skipped as duplicate 1, rejected 0"
has "$T/err" "img/b.png (label 2, train) has the same image bytes as the stored image"
run 0 skip ingest --json "$T/csv/later.csv"
summary=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(d["schema"], d["conflicts"])' "$T/out")
[ "$summary" = "cwt.ingest/1 1" ] || fail "ingest --json: $(cat "$T/out")"
[ "$(data skip 'd["duplicates"]')" = "{'conflicts': 3, 'label': 2, 'split': 2}" ] ||
    fail "skip, mid-batch: $(cat "$T/data.json")"

# keep: b is stored too (under its own source), c is still a plain duplicate; again: nothing new.
run 0 keep ingest --duplicates keep "$T/csv/data.csv"
has "$T/out" "ingested 3, skipped as duplicate 1, rejected 0"
has "$T/err" "(label 0, train); stored it too"
[ "$(data keep 'd["images"], d["splits"]["test"]["total"], d["duplicates"]["conflicts"]')" = \
    "3 1 1" ] || fail "keep: $(cat "$T/data.json")"
run 0 keep ingest --duplicates keep "$T/csv/data.csv"
has "$T/out" "ingested 0, skipped as duplicate 4, rejected 0"
[ "$(data keep 'd["images"], d["duplicates"]["conflicts"]')" = "3 1" ] || fail "keep again"

# refuse: exit 1 at b with one sentence; usage errors exit 2.
run 1 refuse ingest --duplicates refuse "$T/csv/data.csv"
has "$T/err" "img/b.png (label 1, test) has the same image bytes as"
has "$T/err" "nothing after it was ingested (--duplicates refuse)"
run 2 refuse ingest --duplicates maybe "$T/csv/data.csv"
has "$T/err" "--duplicates must be skip, keep or refuse, not 'maybe'"
echo "ingest_duplicates: ok"
