#!/bin/sh
# `make demo`: a demo site in a scratch folder under the build tree, on built-in defaults.
# Creates the site, ingests the Fashion-MNIST set that Debian's dataset-fashion-mnist
# package installs, and prints the site's data table; then a 4-site federation with real
# cwtd processes and a courier (scripts/demo-federation.sh), and a small `cwtctl simulate`
# comparison of the heuristics on the demo site's data (scripts/demo-simulate.sh).
set -eu
BUILD=${1:-build}
CWTCTL="$BUILD/cli/cwtctl"
FMNIST=/usr/share/datasets/fashion-mnist
DEMO="$BUILD/demo"

rm -rf "$DEMO"
mkdir -p "$DEMO"
echo "== cwt demo: one site on Fashion-MNIST (scratch folder $DEMO)"
# --plain: one site trains centrally here; the simulate table switches cwt+ on by itself.
"$CWTCTL" init --plain --site-id demo-site --dir "$DEMO/site" --input 28x28x1 \
    --class-names t-shirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle-boot
export CWT_CONFIG="$DEMO/site/cwtd.conf"
echo "== ingest the training set (60,000 images; 10% held out for validation)"
"$CWTCTL" ingest --val-fraction 0.1 --seed 1 \
    "$FMNIST/train-images-idx3-ubyte.gz" "$FMNIST/train-labels-idx1-ubyte.gz"
echo "== ingest the test set (10,000 images)"
"$CWTCTL" ingest --split test \
    "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz"
echo "== cwtctl data"
"$CWTCTL" data
echo
echo "== a 4-site federation: four cwtd, a courier moving bundles between them"
mkdir -p "$DEMO/federation"
DEMO_DIR="$DEMO/federation" bash scripts/demo-federation.sh "$BUILD"
echo
sh scripts/demo-simulate.sh "$BUILD"
echo
echo "== done. To train the demo site's model on all of Fashion-MNIST and evaluate it:"
echo "   CWT_CONFIG=$DEMO/site/cwtd.conf $CWTCTL train && CWT_CONFIG=$DEMO/site/cwtd.conf $CWTCTL eval --split test"
