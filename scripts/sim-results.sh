#!/bin/sh
# The runs behind docs/results.md: `cwtctl simulate` on Fashion-MNIST (Debian package
# dataset-fashion-mnist) and RetinaMNIST (../shared/data/retinamnist, MedMNIST v2, CC BY 4.0).
#
# usage: sh scripts/sim-results.sh CWTCTL OUTDIR [EXPERIMENT...]
#   EXPERIMENT: fmnist-iid fmnist-label-skew fmnist-size-skew retina-iid retina-label-skew
#               (default: these five), retina-central-long (central only, 50 epochs, to
#               compare with the published ResNet-18), fmnist-label-skew-6k (3x the data; central, cwt, cwt+),
#               retina-plus-ablation, fmnist-plus-ablation (cwt+ one modification at a time),
#               retina-label-skew-visits (cwt and cwt+ with visits 0.25 and 5),
#               retina-fed-iid, retina-fed-label-skew (fedavg and fedprox:0.01),
#               fmnist-label-skew-fed (cwt, cwt+, fedavg, fedprox:0.01 under label skew),
#               quick-retina-iid, quick-fmnist-label-skew,
#               busi-128 (../shared/data/busi_256 at 128x128, resnet-18, Adam, augmentation;
#               every heuristic, visits 1, 3 seeds), busi-128-visits (cwt, visits 0.25 and 5,
#               3 seeds), quick-busi-128 and quick-busi-128-visits (the same, one seed)
#
# Creates two scratch sites under OUTDIR/sites, ingests the data, then runs each experiment
# into OUTDIR/<name>/ (results.csv, results.json, table.txt, SVGs) with its wall time in
# OUTDIR/<name>/wall.txt. Sizes are chosen to finish on 2 CPU cores with lavapipe; see
# docs/results.md for what that costs in fidelity.
set -eu
CWTCTL=$1
OUT=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
FMNIST=/usr/share/datasets/fashion-mnist
RETINA=$HERE/../shared/data/retinamnist
BUSI=$HERE/../shared/data/busi_256

mkdir -p "$OUT/sites"

run() { # NAME SITE ARGS...
    name=$1
    site=$2
    shift 2
    start=$(date +%s)
    echo "== $name: cwtctl simulate $*"
    "$CWTCTL" -c "$OUT/sites/$site/cwtd.conf" -v simulate "$@" --out "$OUT/$name"
    echo "$(($(date +%s) - start)) s" >"$OUT/$name/wall.txt"
}

setup_fmnist() {
    [ -f "$OUT/sites/fmnist/cwtd.conf" ] && return 0
    # --plain: the tables are of the plain recipe; simulate switches cwt+ on by itself.
    "$CWTCTL" init --plain --site-id fmnist --dir "$OUT/sites/fmnist" --input 28x28x1 \
        --class-names t-shirt,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,ankle-boot
    "$CWTCTL" -c "$OUT/sites/fmnist/cwtd.conf" ingest --val-fraction 0.1 --seed 1 \
        "$FMNIST/train-images-idx3-ubyte.gz" "$FMNIST/train-labels-idx1-ubyte.gz"
    "$CWTCTL" -c "$OUT/sites/fmnist/cwtd.conf" ingest --split test \
        "$FMNIST/t10k-images-idx3-ubyte.gz" "$FMNIST/t10k-labels-idx1-ubyte.gz"
}

setup_retina() {
    [ -f "$OUT/sites/retina/cwtd.conf" ] && return 0
    "$CWTCTL" init --plain --site-id retina --dir "$OUT/sites/retina" --input 28x28x3 --classes 5
    "$CWTCTL" -c "$OUT/sites/retina/cwtd.conf" ingest "$RETINA/labels.csv"
}

# BUSI (breast ultrasound, 780 images, Al-Dhabyani et al. 2020, CC0) at 128x128 grey: the
# clinical-resolution recipe, trained from the seeded init (no ImageNet weights offline).
setup_busi() {
    [ -f "$OUT/sites/busi/cwtd.conf" ] && return 0
    "$CWTCTL" init --plain --site-id busi --dir "$OUT/sites/busi" --input 128x128x1 \
        --class-names benign,malignant,normal --model resnet
    python3 - "$OUT/sites/busi/roster.conf" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
for a, b in (("depth = 8;", "depth = 18;"), ("batch_size = 64;", "batch_size = 32;"),
             ('optimizer = "sgd";', 'optimizer = "adam";'), ("lr = 0.01;", "lr = 0.001;"),
             ("augment_hflip = false;",
              "augment_hflip = true;\n    augment_resized_crop = true; "
              "augment_crop_scale = [0.5, 1.0];\n    augment_rotate = 10.0; "
              "augment_brightness = 0.1; augment_contrast = 0.1;")):
    assert s.count(a) == 1, a
    s = s.replace(a, b)
open(p, "w").write(s)
PY
    "$CWTCTL" -c "$OUT/sites/busi/cwtd.conf" ingest "$BUSI/labels.csv"
}

ALL="--sites 4 --heuristics central,single,ensemble,swt,cwt,cwt+ --seeds 3"
FM="$ALL --budget 5 --visits 0.25,1,5 --max-train 2000 --max-val 500 --max-test 2000"
RE="$ALL --budget 10 --visits 1"
# Reduced versions that finish in well under an hour on a shared 2-core machine (one seed,
# smaller subsets and budgets); docs/results.md reports these.
QUICK="--sites 4 --heuristics central,single,ensemble,swt,cwt,cwt+ --seeds 1"

# Experiments in the order given (default: all, alternating data sets so that both get
# results early).
shift 2
[ "$#" -gt 0 ] ||
    set -- fmnist-iid retina-iid fmnist-label-skew retina-label-skew fmnist-size-skew
for name in "$@"; do
    # shellcheck disable=SC2086
    case $name in
    fmnist-iid) setup_fmnist && run "$name" fmnist $FM --partition iid ;;
    fmnist-label-skew) setup_fmnist && run "$name" fmnist $FM --partition label-skew:0.5 ;;
    fmnist-size-skew)
        setup_fmnist && run "$name" fmnist $FM --partition size-skew:0.1,0.2,0.3,0.4
        ;;
    retina-iid) setup_retina && run "$name" retina $RE --partition iid ;;
    retina-label-skew) setup_retina && run "$name" retina $RE --partition label-skew:0.5 ;;
    retina-central-long)
        setup_retina && run "$name" retina --sites 4 --heuristics central --seeds 3 --budget 50
        ;;
    fmnist-label-skew-6k)
        setup_fmnist && run "$name" fmnist --sites 4 --heuristics central,cwt,cwt+ --seeds 3 \
            --budget 5 --visits 0.25,1 --max-train 6000 --max-val 1500 --max-test 2000 \
            --partition label-skew:0.5
        ;;
    retina-label-skew-visits)
        setup_retina && run "$name" retina --sites 4 --heuristics cwt,cwt+ --seeds 3 \
            --visits 0.25,5 --budget 10 --partition label-skew:0.5
        ;;
    retina-plus-ablation | fmnist-plus-ablation)
        # cwt+ with one modification at a time (and the three without the loss weighting)
        # under label skew, visits 1.
        base=$name # run() sets name
        for mods in proportional loss sampling clr proportional,sampling,clr; do
            case $base in
            retina*) setup_retina && run "$base-$mods" retina --sites 4 --heuristics cwt+ \
                --seeds 3 --visits 1 --budget 10 --partition label-skew:0.5 --plus "$mods" ;;
            *) setup_fmnist && run "$base-$mods" fmnist --sites 4 --heuristics cwt+ --seeds 3 \
                --visits 1 --budget 5 --max-train 2000 --max-val 500 --max-test 2000 \
                --partition label-skew:0.5 --plus "$mods" ;;
            esac
        done
        ;;
    retina-fed-iid | retina-fed-label-skew)
        # fedavg and fedprox beside the retina-iid / retina-label-skew tables (same budget,
        # seeds and partitions; one local epoch per round).
        part=iid
        [ "$name" = retina-fed-label-skew ] && part=label-skew:0.5
        setup_retina && run "$name" retina --sites 4 --heuristics fedavg,fedprox:0.01 \
            --seeds 3 --budget 10 --visits 1 --partition "$part"
        ;;
    fmnist-label-skew-fed)
        # cwt, cwt+ (its default), fedavg and fedprox on the fmnist-label-skew setting.
        setup_fmnist && run "$name" fmnist --sites 4 --heuristics cwt,cwt+,fedavg,fedprox:0.01 \
            --seeds 3 --budget 5 --visits 0.25,1,5 --max-train 2000 --max-val 500 \
            --max-test 2000 --partition label-skew:0.5
        ;;
    busi-128)
        # The issue-20 table: every heuristic at one-epoch visits, 3 seeds (about an hour on
        # 2 quiet cores; busi-128-visits adds cwt at 0.25 and 5).
        setup_busi && run "$name" busi --sites 4 \
            --heuristics central,single,ensemble,swt,cwt,cwt+,fedavg --seeds 3 --budget 12 \
            --visits 1 --partition iid
        ;;
    busi-128-visits)
        setup_busi && run "$name" busi --sites 4 --heuristics cwt --seeds 3 --budget 12 \
            --visits 0.25,5 --partition iid
        ;;
    quick-busi-128)
        # One seed, one-epoch visits: what fits in under an hour on 2 shared cores.
        setup_busi && run "$name" busi --sites 4 \
            --heuristics central,single,ensemble,swt,cwt,cwt+,fedavg --seeds 1 --budget 12 \
            --visits 1 --partition iid
        ;;
    quick-busi-128-visits)
        setup_busi && run "$name" busi --sites 4 --heuristics cwt --seeds 1 --budget 12 \
            --visits 0.25,5 --partition iid
        ;;
    quick-retina-iid) setup_retina && run "$name" retina $QUICK --visits 1 --budget 3 ;;
    quick-fmnist-label-skew)
        setup_fmnist && run "$name" fmnist $QUICK --visits 0.25,1,5 --budget 5 \
            --max-train 640 --max-val 320 --max-test 1000 --partition label-skew:0.5
        ;;
    *)
        echo "unknown experiment $name" >&2
        exit 2
        ;;
    esac
done
