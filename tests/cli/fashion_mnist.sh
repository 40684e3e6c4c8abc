#!/usr/bin/env bash
# fashion_mnist.sh - the issue's convergence target: Fashion-MNIST (Debian package
# dataset-fashion-mnist) ingested from IDX, `cwtctl train` with cnn-small, then
# `cwtctl eval --split test` reaches at least 88% accuracy. Sized to finish within about ten
# minutes on two CPU cores with lavapipe (see docs/status/train.md for measured times).
set -euo pipefail

DATA=${CWT_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
T="$CWT_TEST_TMP/fashion_mnist.$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
    t10k-labels-idx1-ubyte.gz; do
    [ -r "$DATA/$f" ] || fail "$DATA/$f is missing (Debian package dataset-fashion-mnist)"
done

EPOCHS=${CWT_FASHION_EPOCHS:-2}
# --plain: central training with the recipe below, the one compared with PyTorch.
"$CWTCTL" init --plain --site-id fm --dir "$T/site" --input 28x28x1 \
    --class-names t-shirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,boot >/dev/null
# The recipe: batch 64, SGD with momentum 0.9, cosine decay from 0.05 over the run. The same
# architecture and recipe in PyTorch reach 89.4% test accuracy after the first of two epochs.
sed -i -e 's/batch_size = [0-9]*;/batch_size = 64;/' \
    -e 's/ lr = [0-9.e-]*;/ lr = 0.05;/' \
    -e 's/schedule = "[a-z]*";/schedule = "cosine";/' \
    -e 's/lr_min = [0-9.e-]*;/lr_min = 0.001;/' "$T/site/roster.conf"
S=(-c "$T/site/cwtd.conf")
"$CWTCTL" "${S[@]}" ingest --val-fraction 0.05 --seed 1 \
    "$DATA/train-images-idx3-ubyte.gz" "$DATA/train-labels-idx1-ubyte.gz"
"$CWTCTL" "${S[@]}" ingest --split test \
    "$DATA/t10k-images-idx3-ubyte.gz" "$DATA/t10k-labels-idx1-ubyte.gz"

start=$(date +%s)
"$CWTCTL" "${S[@]}" train --epochs "$EPOCHS" --json | tee "$T/train.json"
"$CWTCTL" "${S[@]}" eval --split test --json | tee "$T/test.json"
echo "train + eval: $(($(date +%s) - start)) s"
python3 - "$T/test.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
assert e["split"] == "test" and e["n"] == 10000, e
print("test accuracy %.4f, balanced %.4f, AUC %.4f" % (e["accuracy"], e["balanced_accuracy"],
                                                      e["auc"]))
assert e["accuracy"] >= 0.88, "test accuracy %.4f < 0.88" % e["accuracy"]
PY
echo "fashion_mnist.sh: ok"
