#!/usr/bin/env bash
# simulate_local_bn.sh - `cwtctl simulate --local-bn` (docs/simulate.md, "Local batch-norm") on
# a tiny synthetic PNG set (16x16, 3 classes, resnet-8):
#   * a wrong value, or a model without batch-norm (cnn-small), is one sentence and exit 2;
#   * with one institution the batch-norm it keeps is the one that travels: stats and all give
#     the same weights and test metrics as none, bit for bit;
#   * with three, stats and all run cwt and cwt+ and the table says so; the institutions' own
#     statistics change the kept model's batch-norm (a different weights hash than none);
#   * through sealed bundles, stats gives the same weights as in memory.
set -euo pipefail

T="$CWT_TEST_TMP/simulate_local_bn.$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
. "$CWT_SRC/tests/cli/helpers/expect.sh" # fail, expect
. "$CWT_SRC/tests/cli/helpers/sim_site.sh" # sim_site

sim_site
SIM=("$CWTCTL" "${S[@]}" simulate)

# 1. Usage: a wrong value; cnn-small has no batch-norm layer to keep.
expect 2 "--local-bn both: expected none, stats or all" "${SIM[@]}" --sites 3 --local-bn both
expect 2 "the model cnn-small has no batch-norm layer" "${SIM[@]}" --sites 3 --heuristics cwt \
    --budget 1 --local-bn stats --out "$T/none"

sed -i -e 's/name = "cnn-small"; depth = 8;/name = "resnet"; depth = 8;/' "$T/site/roster.conf"
grep -q 'name = "resnet"' "$T/site/roster.conf" || fail "cannot set the model to resnet-8"

# run NAME ARGS...: cwt (and cwt+ unless ONLY_CWT=1; visits 0.5), 2 epochs, results.json as
# NAME.json.
run() {
    local name=$1 heur=cwt,cwt+
    shift
    [ -z "${ONLY_CWT:-}" ] || heur=cwt
    "${SIM[@]}" --heuristics "$heur" --budget 2 --visits 0.5 --out "$T/$name" --json "$@" \
        >"$T/$name.json" 2>"$T/$name.err" || fail "simulate $*: $(cat "$T/$name.err")"
}

# 2. One institution: nothing differs.
for bn in none stats all; do ONLY_CWT=1 run "one-$bn" --sites 1 --local-bn "$bn"; done
# 3. Three institutions, in memory and (stats) through bundles.
for bn in none stats all; do run "three-$bn" --sites 3 --local-bn "$bn"; done
run three-stats-bundles --sites 3 --local-bn stats --through-bundles
grep -q "cwt keeps batch-norm statistics at each site" "$T/three-stats/table.txt" ||
    fail "the table does not say that batch-norm statistics stay at each site"
grep -q "cwt keeps batch-norm layers at each site" "$T/three-all/table.txt" ||
    fail "the table does not say that batch-norm layers stay at each site"

python3 - "$T" <<'EOF'
import json, math, sys
d = sys.argv[1]
def runs(name):
    return {x["label"]: x for x in json.load(open("%s/%s.json" % (d, name)))["runs"]}
keys = ("test_accuracy", "test_auc", "steps", "weights_blake2b", "final_blake2b")
one = {bn: runs("one-" + bn) for bn in ("none", "stats", "all")}
for bn in ("stats", "all"):
    for label, x in one["none"].items():
        for k in keys:
            assert one[bn][label][k] == x[k], (bn, label, k, one[bn][label][k], x[k])
three = {bn: runs("three-" + bn) for bn in ("none", "stats", "all")}
for bn in ("stats", "all"):
    for label, x in three[bn].items():
        assert x["steps"] == three["none"][label]["steps"], (bn, label)
        assert 0.0 <= x["test_accuracy"] <= 1.0 and math.isfinite(x["test_auc"]), (bn, x)
        assert x["final_blake2b"] != three["none"][label]["final_blake2b"], (bn, label)
bundles = runs("three-stats-bundles")
for label, x in three["stats"].items():
    for k in keys:
        assert bundles[label][k] == x[k], ("bundles", label, k, bundles[label][k], x[k])
print("simulate_local_bn: test accuracy cwt v=0.5 none %.4f stats %.4f all %.4f" %
      tuple(three[bn]["cwt v=0.5"]["test_accuracy"] for bn in ("none", "stats", "all")))
EOF
echo "simulate_local_bn: ok"
