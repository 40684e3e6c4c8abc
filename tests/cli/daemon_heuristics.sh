# The recipe's other heuristics with real cwtd sites and a courier: swt (one pass round the
# roster, each site training to a validation plateau) ends with one final model everywhere
# and a verified chain; ensemble (every site trains alone and sends its model to all) ends
# with every member at every site, and `cwtctl eval` / `predict` use the mean of the members'
# probabilities, giving the same numbers at every site.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_heuristics
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

# ingest_test NAME COUNT: the first COUNT Fashion-MNIST test images as NAME's test split (the
# same images at every site, so that the ensemble's test metrics can be compared).
ingest_test() {
    python3 - "$T/$1" "$2" <<'PY'
import gzip, struct, sys
out, count = sys.argv[1], int(sys.argv[2])
src = "/usr/share/datasets/fashion-mnist/"
with gzip.open(src + "t10k-images-idx3-ubyte.gz") as f:
    magic, n, h, w = struct.unpack(">IIII", f.read(16))
    pixels = f.read(count * h * w)
with gzip.open(src + "t10k-labels-idx1-ubyte.gz") as f:
    f.read(8)
    labels = f.read(count)
with open(out + "/test-images-idx3-ubyte", "wb") as f:
    f.write(struct.pack(">IIII", 2051, count, h, w) + pixels)
with open(out + "/test-labels-idx1-ubyte", "wb") as f:
    f.write(struct.pack(">II", 2049, count) + labels)
PY
    "$CWTCTL" -c "$T/$1/cwtd.conf" ingest --split test "$T/$1/test-images-idx3-ubyte" \
        "$T/$1/test-labels-idx1-ubyte" >/dev/null || die "test ingest at $1"
}

# json_get KEY: a top-level value of the JSON object on stdin (lists joined by commas).
json_get() {
    python3 -c '
import json, sys
v = json.load(sys.stdin)[sys.argv[1]]
print(",".join(v) if isinstance(v, list) else v)' "$1"
}

wait_finished() {
    wait_for 600 all_finished "$@" || {
        for s in "$@"; do "$CWTCTL" -c "$T/$s/cwtd.conf" status || true; tail -5 "$T/$s.log"; done
        die "the federation did not finish"
    }
}

stop_sites() {
    local s
    for s in "$@"; do
        "$CWTCTL" -c "$T/$s/cwtd.conf" stop >/dev/null 2>&1 || true
    done
}

# --- swt: 3 sites, one pass of up to 3 epochs each (4 steps of 32 of 128 training images)
started=$(date +%s)
SWT=(sa sb sc)
FED_HEURISTIC=swt FED_EPOCHS=3 FED_IMAGES=160 setup_federation "${SWT[@]}"
for s in "${SWT[@]}"; do
    start_daemon "$s"
done
"$CWTCTL" -c "$T/sb/cwtd.conf" start 2>/dev/null && die "swt: a site other than the first started"
"$CWTCTL" -c "$T/sa/cwtd.conf" start >/dev/null || die "swt: start at sa"
start_courier "${SWT[@]}"
wait_finished "${SWT[@]}"
stop_courier
hash=$(check_federation_end "${SWT[@]}")
files=$(find "$T/chain" -name "*.cwtb" | wc -l)
[ "$files" = 3 ] || die "swt: expected 3 bundles (2 cycle + 1 final), found $files"
ls "$T"/chain/*-final-to-all.cwtb >/dev/null || die "swt: no final bundle"
grep -q "heuristic = \"swt\"" "$T/sa/roster.conf" || die "swt: the recipe does not say swt"
"$CWTCTL" -c "$T/sc/cwtd.conf" --json eval >"$T/swt_eval.json" || die "swt: eval of the final model"
grep -q '"members"' "$T/swt_eval.json" && die "swt: eval reports ensemble members"
stop_sites "${SWT[@]}"
echo "swt: ok in $(($(date +%s) - started)) s, final model $hash"

# --- ensemble: 3 sites, each trains 8 steps alone and sends its member to all
started=$(date +%s)
rm -rf "$T/chain"
ENS=(ea eb ec)
FED_HEURISTIC=ensemble setup_federation "${ENS[@]}"
for s in "${ENS[@]}"; do
    ingest_test "$s" 200
done
for s in "${ENS[@]}"; do
    start_daemon "$s"
done
# No member yet: a clear refusal, exit 1.
rc=0
"$CWTCTL" -c "$T/ea/cwtd.conf" eval --split test >/dev/null 2>"$T/eval_none.err" || rc=$?
[ "$rc" = 1 ] || die "ensemble: eval without members exited $rc, not 1"
grep -q "no ensemble member" "$T/eval_none.err" || die "unclear error: $(cat "$T/eval_none.err")"
# Any site starts its own member.
for s in "${ENS[@]}"; do
    "$CWTCTL" -c "$T/$s/cwtd.conf" start >/dev/null || die "ensemble: start at $s"
done
start_courier "${ENS[@]}"
wait_finished "${ENS[@]}"
stop_courier
files=$(find "$T/chain" -name "*-ensemble-member-to-all.cwtb" | wc -l)
[ "$files" = 3 ] || die "ensemble: expected 3 member bundles, found $files"
# Members form no chain: each is verified on its own (signature, roster).
"$CWTCTL" -c "$T/ea/cwtd.conf" bundle verify "$T"/chain/*.cwtb >"$T/verify.txt" 2>&1 ||
    die "ensemble: bundle verify failed: $(cat "$T/verify.txt")"
accuracy=""
for s in "${ENS[@]}"; do
    "$CWTCTL" -c "$T/$s/cwtd.conf" --json eval --split test >"$T/$s.eval.json" ||
        die "ensemble: eval at $s"
    members=$(json_get members <"$T/$s.eval.json")
    [ "$members" = "ea,eb,ec" ] || die "ensemble: $s has members '$members', not ea,eb,ec"
    [ "$(json_get n <"$T/$s.eval.json")" = 200 ] || die "ensemble: $s evaluated another test split"
    a=$(json_get accuracy <"$T/$s.eval.json")
    python3 -c 'import sys; a = float(sys.argv[1]); sys.exit(0 if 0 < a <= 1 else 1)' "$a" ||
        die "ensemble: $s reports accuracy '$a'"
    [ -z "$accuracy" ] || [ "$a" = "$accuracy" ] ||
        die "ensemble: accuracy $a at $s differs from $accuracy"
    accuracy=$a
    "$CWTCTL" -c "$T/$s/cwtd.conf" audit verify >/dev/null 2>&1 || die "audit verify failed at $s"
done
"$CWTCTL" -c "$T/eb/cwtd.conf" eval --split test | head -n 1 | grep -q "^ensemble of 3 members: ea, eb, ec$" ||
    die "ensemble: eval's text output does not name the members"
# predict: the members' mean, identical at two sites.
python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 1 5 16
pngs=$(find "$T/png" -name '*.png' | sort)
# shellcheck disable=SC2086  # one word per file
"$CWTCTL" -c "$T/ea/cwtd.conf" --json predict $pngs >"$T/predict_a.json" || die "predict at ea"
# shellcheck disable=SC2086
"$CWTCTL" -c "$T/ec/cwtd.conf" --json predict $pngs >"$T/predict_c.json" || die "predict at ec"
[ "$(wc -l <"$T/predict_a.json")" = "$(echo "$pngs" | wc -l)" ] || die "predict: one line per file"
grep -q '"members": \["ea", "eb", "ec"\]' "$T/predict_a.json" || die "predict lacks the members"
cmp -s "$T/predict_a.json" "$T/predict_c.json" || die "predict differs between sites"
stop_sites "${ENS[@]}"
echo "ensemble: ok in $(($(date +%s) - started)) s, test accuracy $accuracy"
