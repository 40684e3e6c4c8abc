#!/bin/bash
# demo-federation.sh BUILD_DIR - four cwt sites on this machine, each with its own cwtd, keys
# and a slice of Fashion-MNIST, a courier moving bundles between their outboxes and inboxes,
# the status of every site while the cycle moves, and at the end the final model's test
# accuracy and the auditor's chain verification. A few minutes on 2 cores with lavapipe.
set -euo pipefail
BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
export CWTCTL="$BUILD/cli/cwtctl" CWTD="$BUILD/daemon/cwtd"
[ -x "$CWTCTL" ] && [ -x "$CWTD" ] || { echo "demo: build first (cwtctl and cwtd in $BUILD)" >&2; exit 2; }
CWTCTL=$(cd "$(dirname "$CWTCTL")" && pwd)/cwtctl
CWTD=$(cd "$(dirname "$CWTD")" && pwd)/cwtd
export CWT_TEST_TMP=${DEMO_DIR:-$(mktemp -d)}
. "$SRC/tests/cli/helpers/daemon_lib.sh"
daemon_setup demo
trap 'daemon_cleanup; stop_courier; [ -n "${DEMO_DIR:-}" ] || rm -rf "$CWT_TEST_TMP"' EXIT
SITES=(hospital-a hospital-b hospital-c hospital-d)
# Sizes for a few minutes on 2 CPU cores with lavapipe; raise them on a GPU.
export FED_CYCLES=${DEMO_CYCLES:-2} FED_VISIT_STEPS=${DEMO_STEPS:-25} FED_IMAGES=${DEMO_IMAGES:-800}
export FED_INPUT=${DEMO_INPUT:-28x28x1}
# Adam at 1e-3: the recipe's default SGD rate (0.05) is too high for these short visits.
export FED_OPTIMIZER=${DEMO_OPTIMIZER:-adam} FED_LR=${DEMO_LR:-0.001}

echo "== setting up ${#SITES[@]} sites in $T ($FED_IMAGES images each, $FED_CYCLES cycles)"
setup_federation "${SITES[@]}"
"$CWTCTL" -c "$T/${SITES[0]}/cwtd.conf" roster show | sed -n '1,6p'
for s in "${SITES[@]}"; do start_daemon "$s"; done
echo "== starting the cycle at ${SITES[0]}"
"$CWTCTL" -c "$T/${SITES[0]}/cwtd.conf" start
start_courier "${SITES[@]}"
started=$(date +%s)
last=""
until all_finished "${SITES[@]}"; do
    sleep 3
    now=""
    for s in "${SITES[@]}"; do
        now+=$(printf '%-12s %s' "$s" "$(status_field "$s" detail | sed 's/ since .*//')")$'\n'
    done
    # Only when something changed (the step counter of a training site always does).
    if [ "$now" != "$last" ]; then
        printf '\n-- %4d s\n%s' $(($(date +%s) - started)) "$now"
        last=$now
    fi
    [ $(($(date +%s) - started)) -lt 1800 ] || { echo "demo: giving up after 30 minutes" >&2; exit 1; }
done
stop_courier
echo
echo "== finished in $(($(date +%s) - started)) s"
"$CWTCTL" -c "$T/${SITES[0]}/cwtd.conf" status
echo
echo "== final model at every site"
for s in "${SITES[@]}"; do printf '%-12s %s\n' "$s" "$(status_field "$s" final_model)"; done
echo
echo "== test accuracy of the final model on the Fashion-MNIST test set (at ${SITES[0]})"
"$CWTCTL" -c "$T/${SITES[0]}/cwtd.conf" stop >/dev/null || true
"$CWTCTL" -c "$T/${SITES[0]}/cwtd.conf" ingest --split test \
    /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
    /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz >/dev/null
"$CWTCTL" -c "$T/${SITES[0]}/cwtd.conf" eval --split test
echo
echo "== the auditor: chain verification over every bundle that travelled"
"$CWTCTL" -c "$T/${SITES[0]}/cwtd.conf" chain verify "$T"/chain/*.cwtb
