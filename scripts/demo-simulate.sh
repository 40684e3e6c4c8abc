#!/bin/sh
# The last stage of `make demo`: a small `cwtctl simulate` on the demo site's Fashion-MNIST
# store that prints the comparison table, FedAvg included. Sized for a few minutes on 2 CPU
# cores on the default device: 4 virtual institutions with label skew, a fixed random subset of
# 960 training, 320 validation and 1,000 test images, a budget of 2 epochs (30 steps of 64 per
# heuristic), visits (and FedAvg rounds) of 1 local epoch, one seed. Real studies use the whole
# store, more epochs and several seeds (docs/simulate.md, docs/results.md).
#
# usage: sh scripts/demo-simulate.sh [BUILD]   (the site: $CWT_CONFIG, else BUILD/demo/site)
set -eu
BUILD=${1:-build}
CWTCTL="$BUILD/cli/cwtctl"
CONF=${CWT_CONFIG:-$BUILD/demo/site/cwtd.conf}

echo "== cwtctl simulate: central vs single vs ensemble vs swt vs cwt vs cwt+ vs fedavg (4 virtual sites)"
"$CWTCTL" -c "$CONF" simulate --sites 4 --partition label-skew:0.5 \
    --heuristics central,single,ensemble,swt,cwt,cwt+,fedavg --visits 1 --budget 2 --seeds 1 \
    --max-train 960 --max-val 320 --max-test 1000 --out "$BUILD/demo/simulate"
