#!/bin/sh
# `make demo`: a demo site in a scratch folder under the build tree, on built-in defaults.
# Creates the site, ingests the Fashion-MNIST set that Debian's dataset-fashion-mnist
# package installs, and prints the site's data table. Later stages (training, the 4-site
# federation, simulate) are added here as they land.
set -eu
BUILD=${1:-build}
CWTCTL="$BUILD/cli/cwtctl"
FMNIST=/usr/share/datasets/fashion-mnist
DEMO="$BUILD/demo"

rm -rf "$DEMO"
mkdir -p "$DEMO"
echo "== cwt demo: one site on Fashion-MNIST (scratch folder $DEMO)"
"$CWTCTL" init --site-id demo-site --dir "$DEMO/site" --input 28x28x1 \
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
