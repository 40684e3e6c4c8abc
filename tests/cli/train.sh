#!/usr/bin/env bash
# train.sh - `cwtctl train` on a small synthetic, separable PNG set:
#   * reaches >= 99% validation accuracy, with one JSON object per epoch and the outcome
#     (JSON Lines checked against docs/schemas/train*.json);
#   * two runs with the same seed export bit-identical models;
#   * a run killed with SIGKILL mid-training and continued with --resume exports the same
#     bytes as the uninterrupted run;
#   * eval (JSON keys), predict (right classes, bad files refused), model import (round trip;
#     a model of another architecture refused by fingerprint), usage errors;
#   * the export loads into an equivalent PyTorch module (tests/cli/pytorch_load.py, the
#     snippet of docs/model-export.md) and gives the same probabilities as cwtctl predict;
#   * a ResNet export loads strictly too (batch-norm counters added on export, skipped on
#     import).
set -euo pipefail

T="$CWT_TEST_TMP/train.$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
. "$CWT_SRC/tests/cli/helpers/expect.sh" # fail, expect
json_field() { # FILE(last line) KEY
    tail -n 1 "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# More epochs on fast devices (CWT_TRAIN_TEST_EPOCHS, e.g. 60 on a GPU), so that the kill of
# step 3 lands before the run ends.
EPOCHS=${CWT_TRAIN_TEST_EPOCHS:-8}
python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 120 7
"$CWTCTL" init --site-id a --dir "$T/a" --input 28x28x1 --class-names top,bottom,bar >/dev/null
# Small batches so that an epoch has enough steps to be interrupted; a gentle learning rate.
sed -i -e 's/batch_size = [0-9]*;/batch_size = 32;/' -e 's/ lr = [0-9.e-]*;/ lr = 0.01;/' "$T/a/roster.conf"
A=(-c "$T/a/cwtd.conf")
"$CWTCTL" "${A[@]}" ingest --val-fraction 0.2 --seed 3 "$T/png" >/dev/null

# Usage and state errors come before any training.
expect 2 "epochs" "$CWTCTL" "${A[@]}" train --epochs 0
expect 2 "unexpected" "$CWTCTL" "${A[@]}" train extra
expect 1 "no trained model" "$CWTCTL" "${A[@]}" eval
expect 1 "no trained model" "$CWTCTL" "${A[@]}" model export -o "$T/none.safetensors"

# 1. Convergence, JSON per epoch.
"$CWTCTL" "${A[@]}" train --epochs $EPOCHS --json >"$T/run1.json" 2>"$T/run1.err" ||
    fail "training failed: $(cat "$T/run1.err")"
# JSON Lines: one cwt.train-progress/1 per epoch, then the summary cwt.train/1.
[ "$(wc -l <"$T/run1.json")" -eq $((EPOCHS + 1)) ] || fail "expected $EPOCHS + 1 JSON lines"
python3 "$CWT_SRC/tests/cli/helpers/json_lines_check.py" "$T/run1.json" train-progress train ||
    fail "train --json schemas"
grep -q "device:" "$T/run1.err" || fail "the device is not named"
# Piped stderr: no progress line (no ETA, no carriage return).
if grep -q "ETA" "$T/run1.err" || grep -q $'\r' "$T/run1.err"; then
    fail "train wrote a progress line to a pipe"
fi
python3 - "$T/run1.json" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
summary = lines.pop()
assert summary["schema"] == "cwt.train/1" and summary["kept"] == "best", summary
assert all(e["schema"] == "cwt.train-progress/1" for e in lines), lines
for i, e in enumerate(lines, 1):
    for k in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
              "images_per_s", "seconds"):
        assert k in e, "missing key %s" % k
    assert e["epoch"] == i, e
best = max(e["val_accuracy"] for e in lines)
assert best >= 0.99, "best validation accuracy %.4f < 0.99" % best
assert summary["epochs"] == len(lines) and summary["best_val_accuracy"] == best, summary
print("val accuracy by epoch:", [round(e["val_accuracy"], 4) for e in lines],
      "images/s:", round(lines[-1]["images_per_s"]))
EOF
"$CWTCTL" "${A[@]}" model export -o "$T/run1.safetensors" >/dev/null
SUM1=$(sha256sum <"$T/run1.safetensors")

# 2. Same seed, same bytes.
"$CWTCTL" "${A[@]}" train --epochs $EPOCHS --json >"$T/run2.json"
"$CWTCTL" "${A[@]}" model export -o "$T/run2.safetensors" >/dev/null
[ "$(sha256sum <"$T/run2.safetensors")" = "$SUM1" ] || fail "two runs with one seed differ"

# 3. SIGKILL after epoch 2 (somewhere in epoch 3, or while its checkpoint is written), then
# --resume: same bytes as uninterrupted. Six epochs of work remain, so the kill lands in time
# even on a fast device.
EPOCH_S=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["seconds"])' \
    "$T/run1.json")
# A run that a descheduled test shell lets finish before the kill (ctest runs two tests at
# once) proves nothing either way: it is started again, three times at most.
killed=0
for attempt in 1 2 3; do
    "$CWTCTL" "${A[@]}" train --epochs $EPOCHS --json --checkpoint-every 5 >"$T/run3.json" \
        2>/dev/null &
    PID=$!
    for _ in $(seq 1 600); do
        [ "$(wc -l <"$T/run3.json")" -ge 2 ] && break
        kill -0 $PID 2>/dev/null || break
        sleep 0.1
    done
    sleep "$(python3 -c "import random; print(min(2.0, random.uniform(0, $EPOCH_S / 2)))")"
    if kill -9 $PID 2>/dev/null; then
        killed=1
        wait $PID 2>/dev/null || true
        break
    fi
    wait $PID 2>/dev/null || true
    echo "train: attempt $attempt ended before the kill; starting it again"
done
[ "$killed" = 1 ] || fail "the run ended before it could be killed, three times"
[ "$(wc -l <"$T/run3.json")" -lt $EPOCHS ] || fail "the killed run had finished"
"$CWTCTL" "${A[@]}" train --epochs $EPOCHS --resume --json >"$T/run3b.json" 2>"$T/run3b.err" ||
    fail "resume failed: $(cat "$T/run3b.err")"
grep -q "resuming at step" "$T/run3b.err" || fail "did not resume: $(cat "$T/run3b.err")"
"$CWTCTL" "${A[@]}" model export -o "$T/run3.safetensors" >/dev/null
[ "$(sha256sum <"$T/run3.safetensors")" = "$SUM1" ] || fail "resumed run differs"
# A finished run has nothing left to resume.
"$CWTCTL" "${A[@]}" train --epochs $EPOCHS --resume 2>"$T/err" >/dev/null ||
    fail "resuming a finished run failed: $(cat "$T/err")"
grep -q "complete" "$T/err" || fail "resuming a finished run: $(cat "$T/err")"

# 4. eval: JSON keys, validation accuracy.
"$CWTCTL" "${A[@]}" eval --split val --json >"$T/eval.json"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" eval "$T/eval.json" || fail "eval schema"
python3 - "$T/eval.json" <<'EOF'
import json, sys
e = json.load(open(sys.argv[1]))
for k in ("split", "n", "accuracy", "balanced_accuracy", "auc", "per_class_recall",
          "confusion"):
    assert k in e, "missing key %s" % k
assert e["split"] == "val" and e["n"] == 72, e
assert e["accuracy"] >= 0.99 and e["auc"] > 0.99, e
assert len(e["confusion"]) == 3 and sum(map(sum, e["confusion"])) == 72, e
assert "sensitivity" not in e  # three classes
EOF
"$CWTCTL" "${A[@]}" eval --split val | grep "balanced accuracy" >/dev/null || fail "eval text output"
expect 2 "unknown split" "$CWTCTL" "${A[@]}" eval --split nope
expect 1 "split is empty" "$CWTCTL" "${A[@]}" eval --split test

# 5. predict: the right class for one image of each class; bad files are named.
python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/new" 1 99
"$CWTCTL" "${A[@]}" predict --json "$T/new/0/img0000.png" "$T/new/1/img0000.png" \
    "$T/new/2/img0000.png" >"$T/pred.json"
python3 - "$T/pred.json" <<'EOF'
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
assert [g["predicted"] for g in got] == ["top", "bottom", "bar"], got
for g in got:
    assert abs(sum(g["probabilities"].values()) - 1) < 1e-4, g
EOF
python3 "$CWT_SRC/tests/cli/helpers/json_lines_check.py" "$T/pred.json" predict ||
    fail "predict --json schema"
echo "not an image" >"$T/bad.png"
expect 1 "bad.png" "$CWTCTL" "${A[@]}" predict "$T/bad.png" "$T/new/0/img0000.png"
grep -q "img0000.png: top" "$T/out" || fail "the good file after a bad one got no answer"
# --json: a line for each file, the bad one with ok false and its error, exit 1.
rc=0
"$CWTCTL" "${A[@]}" --json predict "$T/bad.png" "$T/new/0/img0000.png" >"$T/pred2.json" \
    2>/dev/null || rc=$?
[ $rc = 1 ] || fail "predict --json with a bad file: exit $rc"
python3 "$CWT_SRC/tests/cli/helpers/json_lines_check.py" "$T/pred2.json" predict ||
    fail "predict --json schema with a bad file"
python3 - "$T/pred2.json" <<'EOF' || fail "predict --json with a bad file: $(cat "$T/pred2.json")"
import json, sys
bad, good = [json.loads(l) for l in open(sys.argv[1])]
assert bad["ok"] is False and bad["file"].endswith("bad.png") and bad["error"], bad
assert good["ok"] is True and good["predicted"] == "top", good
EOF
expect 2 "no image files" "$CWTCTL" "${A[@]}" predict

# 6. PyTorch loads the export and agrees with cwtctl predict.
# Debian's python3-torch lives in the system interpreter, which may not be first in PATH.
PYTORCH=""
for py in /usr/bin/python3 python3; do
    if "$py" -c 'import torch' 2>/dev/null; then
        PYTORCH=$py
        break
    fi
done
[ -n "$PYTORCH" ] || fail "python3-torch is required (Debian package python3-torch)"
"$PYTORCH" "$CWT_SRC/tests/cli/pytorch_load.py" "$T/run1.safetensors" >/dev/null
"$PYTORCH" "$CWT_SRC/tests/cli/helpers/compare_torch.py" "$T/run1.safetensors" \
    "$T/pred.json" "$T/new/0/img0000.png" "$T/new/1/img0000.png" "$T/new/2/img0000.png"

# 7. model import: round trip; strictness.
"$CWTCTL" "${A[@]}" model import "$T/run1.safetensors" >/dev/null
"$CWTCTL" "${A[@]}" model export -o "$T/again.safetensors" >/dev/null
cmp -s "$T/again.safetensors" "$T/run1.safetensors" || fail "import/export round trip changed it"
"$CWTCTL" "${A[@]}" audit show | grep "model-import" >/dev/null || fail "no audit record for the import"
"$CWTCTL" init --site-id b --dir "$T/b" --input 28x28x1 --classes 4 >/dev/null
expect 1 "fingerprint" "$CWTCTL" -c "$T/b/cwtd.conf" model import "$T/run1.safetensors"
head -c 1000 "$T/run1.safetensors" >"$T/cut.safetensors"
expect 1 "cut.safetensors" "$CWTCTL" "${A[@]}" model import "$T/cut.safetensors"
expect 1 "" "$CWTCTL" "${A[@]}" model import "$T/missing.safetensors"
expect 2 "usage" "$CWTCTL" "${A[@]}" model export
expect 2 "unknown subcommand" "$CWTCTL" "${A[@]}" model frobnicate

# 8. A ResNet export carries PyTorch's batch-norm counters (num_batches_tracked = step), so the
# PyTorch module takes it strictly; import skips them and the round trip is exact.
"$CWTCTL" init --site-id r --dir "$T/r" --input 28x28x1 --class-names top,bottom,bar >/dev/null
sed -i -e 's/name = "cnn-small"/name = "resnet"/' -e 's/width = [0-9.]*;/width = 0.5;/' \
    -e 's/batch_size = [0-9]*;/batch_size = 32;/' "$T/r/roster.conf"
R=(-c "$T/r/cwtd.conf")
"$CWTCTL" "${R[@]}" ingest --val-fraction 0.2 --seed 3 "$T/png" >/dev/null
"$CWTCTL" "${R[@]}" train --epochs 1 >"$T/res.out" 2>&1 || fail "resnet training failed: $(cat "$T/res.out")"
"$CWTCTL" "${R[@]}" model export -o "$T/res.safetensors" >/dev/null
"$PYTORCH" "$CWT_SRC/tests/cli/pytorch_load.py" "$T/res.safetensors" >/dev/null ||
    fail "the ResNet export does not load strictly into PyTorch"
"$PYTORCH" - "$T/res.safetensors" <<'EOF'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
step = int(header["__metadata__"]["step"])
bns = [k[:-len(".running_mean")] for k in header if k.endswith(".running_mean")]
assert len(bns) == 9, bns  # stem, two per block, two downsample layers
for bn in bns:
    t = header[bn + ".num_batches_tracked"]
    assert t["dtype"] == "I64" and t["shape"] == [], t
    b, e = t["data_offsets"]
    assert struct.unpack("<q", data[8 + n + b:8 + n + e])[0] == step > 0, (bn, step)
assert sum(k.endswith(".num_batches_tracked") for k in header) == len(bns)
EOF
"$CWTCTL" "${R[@]}" model import "$T/res.safetensors" >/dev/null
"$CWTCTL" "${R[@]}" model export -o "$T/res2.safetensors" >/dev/null
cmp -s "$T/res.safetensors" "$T/res2.safetensors" || fail "ResNet import/export round trip changed it"
# a counter for a layer that is not a batch norm is an unknown tensor
"$PYTORCH" - "$T/res.safetensors" "$T/res-bad.safetensors" <<'EOF'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
body = data[8 + n:]
header["fc.num_batches_tracked"] = {"dtype": "I64", "shape": [],
                                    "data_offsets": [len(body), len(body) + 8]}
body += struct.pack("<q", 1)
h = json.dumps(header).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + body)
EOF
expect 1 "fc.num_batches_tracked" "$CWTCTL" "${R[@]}" model import "$T/res-bad.safetensors"
echo "train.sh: ok"
