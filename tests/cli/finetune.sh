#!/usr/bin/env bash
# finetune.sh - the fine-tuning recipe end to end on a tiny synthetic PNG set (16x16, resnet-8):
#   * recipe.finetune and the augment_* keys round-trip through `roster check`; bad values are
#     refused with exit 2 and a sentence naming the key (freezing cnn-small, more stages than
#     the model has, a negative lr scale, an inverted crop scale, two crops at once);
#   * `simulate --augment/--freeze/--backbone-lr` refuse bad entries with exit 2;
#   * a simulate run with every augmentation, a frozen stem and a backbone lr multiplier
#     repeats bit for bit, and differs from the run without them (the options take effect);
#   * `cwtctl train` trains one epoch with them from the roster.
set -euo pipefail

T="$CWT_TEST_TMP/finetune.$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
. "$CWT_SRC/tests/cli/helpers/expect.sh" # fail, expect

python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 60 11 16
"$CWTCTL" init --site-id ft --dir "$T/site" --input 16x16x1 --classes 3 --model resnet >/dev/null
R="$T/site/roster.conf"
sed -i -e 's/batch_size = [0-9]*;/batch_size = 16;/' "$R"
S=(-c "$T/site/cwtd.conf")
"$CWTCTL" "${S[@]}" ingest --val-fraction 0.2 --test-fraction 0.2 --seed 5 "$T/png" >/dev/null

# 1. Roster keys: bad values name the key and exit 2.
# with_lines FILE TRAIN_LINES RECIPE_LINES: the site's roster with lines added to
# recipe.train and to recipe.
with_lines() {
    awk -v t="$2" -v r="$3" '
        /^    balanced_sampling/ && t != "" { print t }
        /^  cycle = \{/ && r != "" { print r }
        { print }' "$R" >"$1"
}
with_lines "$T/f1.conf" "" "  finetune = { freeze_stages = 5; };"
expect 2 "recipe.finetune.freeze_stages: expected 0 to 4 for resnet-8" \
    "$CWTCTL" roster check "$T/f1.conf"
sed 's/name = "resnet"/name = "cnn-small"/' "$T/f1.conf" | sed 's/freeze_stages = 5/freeze_stages = 1/' \
    >"$T/f2.conf"
expect 2 "freezing needs a resnet" "$CWTCTL" roster check "$T/f2.conf"
with_lines "$T/f3.conf" "" "  finetune = { backbone_lr_scale = -0.1; };"
expect 2 "recipe.finetune.backbone_lr_scale" "$CWTCTL" roster check "$T/f3.conf"
with_lines "$T/f4.conf" "" "  finetune = { freeze_stages = 1; lr = 0.1; };"
expect 2 "recipe.finetune" "$CWTCTL" roster check "$T/f4.conf"
with_lines "$T/a1.conf" "    augment_resized_crop = true; augment_crop_scale = [0.9, 0.2];" ""
expect 2 "recipe.train.augment_crop_scale" "$CWTCTL" roster check "$T/a1.conf"
with_lines "$T/a2.conf" "    augment_resized_crop = true; augment_crop_ratio = [0.75];" ""
expect 2 "recipe.train.augment_crop_ratio: expected two numbers" "$CWTCTL" roster check "$T/a2.conf"
with_lines "$T/a3b.conf" "    augment_resized_crop = true;" ""
sed -i 's/augment_crop_pad = 0/augment_crop_pad = 2/' "$T/a3b.conf"
expect 2 "cannot be combined with augment_crop_pad" "$CWTCTL" roster check "$T/a3b.conf"
with_lines "$T/a4.conf" "    augment_rotate = 270;" ""
expect 2 "recipe.train.augment_rotate" "$CWTCTL" roster check "$T/a4.conf"
with_lines "$T/a5.conf" "    augment_contrast = 1.5;" ""
expect 2 "recipe.train.augment_contrast" "$CWTCTL" roster check "$T/a5.conf"

# A good recipe is kept through a rewrite (`roster check` reads it; init's canonical text
# carries it).
with_lines "$T/good.conf" \
    "    augment_vflip = true; augment_resized_crop = true; augment_crop_scale = [0.5, 1.0]; augment_rotate = 10; augment_brightness = 0.2; augment_contrast = 0.2;" \
    "  finetune = { freeze_stages = 1; backbone_lr_scale = 0.1; };"
rc=0
"$CWTCTL" roster check "$T/good.conf" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 2 ] || fail "a good fine-tuning recipe was refused: $(cat "$T/err")"

# 2. simulate flags.
SIM=("$CWTCTL" "${S[@]}" simulate --sites 2 --budget 1 --heuristics central,cwt)
expect 2 "'flop' is not valid" "${SIM[@]}" --augment hflip,flop
expect 2 "'rot:200' is not valid" "${SIM[@]}" --augment rot:200
expect 2 "(given twice)" "${SIM[@]}" --augment hflip,hflip
expect 2 "crop and pad:N cannot be combined" "${SIM[@]}" --augment crop,pad:2
expect 2 "'hflip' is not valid" "${SIM[@]}" --augment none,hflip
expect 2 "the recipe's model has 4 stages" "${SIM[@]}" --freeze 5
expect 2 "--backbone-lr -1" "${SIM[@]}" --backbone-lr -1

# 3. Every option on: the same seed repeats bit for bit; without them the weights differ.
FT=(--augment crop:0.5,hflip,vflip,rot:10,jitter:0.2 --freeze 1 --backbone-lr 0.1)
"${SIM[@]}" "${FT[@]}" --out "$T/s1" --json >"$T/s1.json" 2>/dev/null
"${SIM[@]}" "${FT[@]}" --out "$T/s2" --json >"$T/s2.json" 2>/dev/null
"${SIM[@]}" --out "$T/s3" --json >"$T/s3.json" 2>/dev/null
python3 - "$T/s1.json" "$T/s2.json" "$T/s3.json" <<'PY'
import json, sys
a, b, c = (json.load(open(p)) for p in sys.argv[1:4])
assert "--augment crop:0.5,hflip,vflip,rot:10,jitter:0.2" in a["command"], a["command"]
for x, y, z in zip(a["runs"], b["runs"], c["runs"]):
    for k in ("label", "test_accuracy", "weights_blake2b", "curve"):
        assert x[k] == y[k], (x["label"], k, x[k], y[k])
    assert x["weights_blake2b"] and x["weights_blake2b"] != z["weights_blake2b"], x["label"]
PY

# 4. cwtctl train reads the same keys from the roster.
cp "$T/good.conf" "$R"
"$CWTCTL" "${S[@]}" train --epochs 1 >"$T/train.out" 2>"$T/train.err" ||
    fail "train with a fine-tuning recipe failed: $(cat "$T/train.err")"
echo "finetune: ok"
