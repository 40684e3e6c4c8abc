#!/usr/bin/env bash
# natural_sites.sh - per-image metadata and natural sites, end to end:
#   * ingest keeps extra CSV columns (site, scanner) per image; `cwtctl data --json` counts
#     the images per value of each column, with those lacking it as `missing`;
#   * a bad header (invalid or repeated column name) is a usage error (exit 2) that stores
#     nothing; a value over 128 bytes, with a control character or not UTF-8 rejects its row
#     with a sentence naming the column (exit 1), the other rows go in;
#   * `simulate --partition by-column:site` makes one institution per value (names in the
#     table and JSON, sizes equal to the data's counts); a column missing for some image,
#     with one value, or --sites disagreeing with it is a usage error with one sentence.
set -euo pipefail

T="$CWT_TEST_TMP/natural_sites.$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
. "$CWT_SRC/tests/cli/helpers/expect.sh" # fail, expect

python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 30 7 16
"$CWTCTL" init --site-id nat --dir "$T/site" --input 16x16x1 --classes 3 >/dev/null
sed -i -e 's/batch_size = [0-9]*;/batch_size = 16;/' "$T/site/roster.conf"
S=(-c "$T/site/cwtd.conf")

# Sites of unequal size (north 1/2, south 1/3, east 1/6), a sparse scanner column and a
# constant one; every row goes in.
python3 - "$T" <<'EOF'
import os, sys
t = sys.argv[1]
rows = ["path,label,site,split,scanner,country"]
i = 0
for c in "012":
    for f in sorted(os.listdir(f"{t}/png/{c}")):
        site = ["north", "north", "north", "south", "south", "east"][i % 6]
        split = ["train", "train", "train", "val", "test"][i % 5]
        rows.append(f"png/{c}/{f},{c},{site},{split},{'X' if i % 2 else ''},ch")
        i += 1
open(f"{t}/good.csv", "w").write("\n".join(rows) + "\n")
EOF
"$CWTCTL" "${S[@]}" ingest "$T/good.csv" >/dev/null
"$CWTCTL" "${S[@]}" --json data >"$T/data.json"
python3 - "$T/data.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
m = d["metadata"]
assert d["images"] == 90, d["images"]
assert m["site"] == {"values": {"east": 15, "north": 45, "south": 30}, "missing": 0}, m["site"]
assert m["scanner"] == {"values": {"X": 45}, "missing": 45}, m["scanner"]
assert m["country"]["values"] == {"ch": 90}, m["country"]
assert "split" not in m
assert d["splits"]["train"]["total"] == 54, d["splits"]
EOF
"$CWTCTL" "${S[@]}" data | grep -q "metadata column 'site'" || fail "data shows no metadata"

# Bad headers: nothing is stored, exit 2.
printf 'path,label,site name\npng/0/img0000.png,0,a\n' >"$T/h1.csv"
expect 2 "column name 'site name' is not valid" "$CWTCTL" "${S[@]}" ingest "$T/h1.csv"
printf 'path,label,site,Site\npng/0/img0000.png,0,a,b\n' >"$T/h2.csv"
expect 2 "column 'Site' appears twice" "$CWTCTL" "${S[@]}" ingest "$T/h2.csv"

# Bad values reject their row (exit 1) and say why; the good row goes in. New images, so
# that they are not skipped as duplicates.
python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png2" 2 99 16
LONG=$(python3 -c 'print("x" * 129)')
{
    printf 'path,label,site,country\n'
    printf 'png2/0/img0000.png,0,%s,ch\n' "$LONG"
    printf 'png2/0/img0001.png,0,a\tb,ch\n'
    printf 'png2/1/img0000.png,1,\xff\xfe,ch\n'
    printf 'png2/1/img0001.png,1,ok,ch\n'
} >"$T/bad.csv"
expect 1 "bad.csv:2: column 'site': value longer than 128 bytes" \
    "$CWTCTL" "${S[@]}" ingest "$T/bad.csv"
grep -qF "bad.csv:3: column 'site': value contains a control character" "$T/err" ||
    fail "no control-character rejection: $(cat "$T/err")"
grep -qF "bad.csv:4: column 'site': value is not valid UTF-8" "$T/err" ||
    fail "no UTF-8 rejection: $(cat "$T/err")"
grep -q "ingested 1," "$T/out" || fail "the good row was not ingested: $(cat "$T/out")"

# Natural sites. The image of bad.csv has site 'ok' and went to train (the default split),
# so for the site partition it is a fourth institution.
SIM=("$CWTCTL" "${S[@]}" simulate --heuristics cwt,fedavg --budget 1)
"${SIM[@]}" --partition by-column:site --out "$T/a" --json >"$T/a.json" 2>"$T/a.err" ||
    fail "by-column run failed: $(cat "$T/a.err")"
python3 - "$T/a.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["partition"] == "by-column:site", r["partition"]
assert r["sites"] == 4 and r["institution_names"] == ["east", "north", "ok", "south"], r
# train: 3 of every 5 rows; val: 1 of 5 (the rows cycle sites by 6 and splits by 5).
inst = r["institutions"][0]
assert sum(inst["train"]) == r["images"]["train"] == 55, inst
assert inst["train"][2] == 1 and inst["val"][2] == 0, inst
for x in r["runs"]:
    assert x["steps"] == r["budget_steps"], x
EOF
grep -q "institutions: inst-0 = east, inst-1 = north, inst-2 = ok, inst-3 = south" "$T/a/table.txt" ||
    fail "the table does not name the institutions"
expect 2 "image 1 (train split) has no value in column 'scanner'" \
    "${SIM[@]}" --partition by-column:scanner --out "$T/b"
expect 2 "column 'country' has only one value ('ch')" \
    "${SIM[@]}" --partition by-column:country --out "$T/b"
expect 2 "--sites 3 but column 'site' has 4 values" \
    "${SIM[@]}" --sites 3 --partition by-column:site --out "$T/b"
expect 2 "expected by-column:NAME" "${SIM[@]}" --partition "by-column:a b" --out "$T/b"
echo "natural_sites: ok"
