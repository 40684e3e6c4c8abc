#!/usr/bin/env bash
# simulate.sh - `cwtctl simulate` on a tiny synthetic PNG set (16x16, 3 classes, cnn-small):
#   * bad arguments and data that cannot be partitioned give one clear sentence and exit 2;
#   * every heuristic gets the same budget: budget_steps = E * ceil(N_train / batch), and the
#     step counts in --json equal it (swt: at most it; single: the shares add up to it);
#   * the partition sizes add up to the pooled splits and follow size-skew weights;
#   * the output files exist and parse (CSV, JSON, SVG as XML); the plots have round ticks,
#     series of distinct styles, and name the version and command (helpers/check_svg.py);
#   * the same seed gives identical results (weights hashes, accuracies, curves);
#   * cwt+ defaults to proportional,sampling,clr; --plus all turns on all four;
#   * --through-bundles (every swt/cwt/cwt+ hand-over sealed, verified, opened) gives
#     bit-identical weights to the in-memory run;
#   * fedavg and fedprox:MU spend the budget in rounds and report; with one local step per
#     round the proximal term is zero and fedprox equals fedavg bit for bit; fedprox refuses
#     a recipe whose optimizer is not SGD;
#   * piped (stderr not a terminal), no progress line is drawn: no ETA, no carriage return.
set -euo pipefail

T="$CWT_TEST_TMP/simulate.$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
. "$CWT_SRC/tests/cli/helpers/expect.sh" # fail, expect
. "$CWT_SRC/tests/cli/helpers/sim_site.sh" # sim_site

sim_site

# 1. Usage errors, before any training.
SIM=("$CWTCTL" "${S[@]}" simulate)
expect 2 "needs --sites" "${SIM[@]}"
expect 2 "from 1 to 64" "${SIM[@]}" --sites 0
expect 2 "2 weights for 4 sites" "${SIM[@]}" --sites 4 --partition size-skew:1,2
expect 2 "ALPHA" "${SIM[@]}" --sites 4 --partition label-skew:-1
expect 2 "expected iid" "${SIM[@]}" --sites 4 --partition quantity
expect 2 "'fedprox' is not valid" "${SIM[@]}" --sites 4 --heuristics cwt,fedprox
expect 2 "'fedprox:0' is not valid" "${SIM[@]}" --sites 4 --heuristics fedprox:0
expect 2 "'fedsgd' is not valid" "${SIM[@]}" --sites 4 --heuristics cwt,fedsgd
expect 2 "'0' is not valid" "${SIM[@]}" --sites 4 --visits 0.5,0
expect 2 "budget" "${SIM[@]}" --sites 4 --budget -1
expect 2 "seeds" "${SIM[@]}" --sites 4 --seeds 0
expect 2 "'momentum' is not valid" "${SIM[@]}" --sites 4 --plus momentum
expect 2 "simulate: unknown option '--frobnicate'" "${SIM[@]}" --sites 4 --frobnicate
expect 2 "unexpected argument" "${SIM[@]}" --sites 4 extra
expect 2 "no site configuration" "$CWTCTL" -c "$T/none/cwtd.conf" simulate --sites 4
# 64 institutions where one holds nearly everything: the others get no training image.
W=$(python3 -c 'print(",".join(["1000000"] + ["1"] * 63))')
expect 2 "gets no training images" "${SIM[@]}" --sites 64 --partition "size-skew:$W" \
    --heuristics cwt --out "$T/none"

# 7 steps (108 training images, batch 16) cannot be shared among 10 single runs.
expect 2 "7 optimizer steps, fewer than the 10 institutions" "${SIM[@]}" --sites 10 \
    --heuristics single --budget 1 --out "$T/none"

# 2. Every heuristic, two visit lengths, two seeds.
# shellcheck disable=SC2054 # the commas are inside one argument
RUN=(--sites 3 --budget 2 --visits 0.5,1 --seeds 2)
"${SIM[@]}" "${RUN[@]}" --out "$T/a" --json >"$T/a.json" 2>"$T/a.err"
for f in results.csv results.json table.txt val-curves.svg cwt-visits.svg; do
    [ -s "$T/a/$f" ] || fail "$f was not written"
done
cmp -s "$T/a.json" "$T/a/results.json" || fail "--json output differs from results.json"
python3 - "$T/a" <<'EOF'
import csv, json, math, sys, xml.dom.minidom
d = sys.argv[1]
r = json.load(open(d + "/results.json"))
n_train, batch = r["images"]["train"], r["batch"]
budget = 2 * math.ceil(n_train / batch)
assert r["budget_steps"] == budget, (r["budget_steps"], budget)
assert r["cwt_plus"] == "proportional+sampling+clr", r["cwt_plus"]  # the default set
assert r["schema"] == "cwt.simulate-results/1", r["schema"]
assert r["version"] and r["commit"], (r["version"], r["commit"])
assert " simulate --sites 3 --budget 2 " in r["command"], r["command"]
assert r["recipe"]["model"] == r["model"] and r["recipe"]["batch"] == batch, r["recipe"]
assert r["recipe"]["input"] == [16, 16, 1] and r["recipe"]["classes"] == 3, r["recipe"]
assert r["heuristics"] == ["central", "single", "ensemble", "swt", "cwt", "cwt+"], r["heuristics"]
assert r["seed_values"] == [1, 2], r["seed_values"]
labels = {x["label"] for x in r["runs"]}
want = {"central", "single (mean)", "ensemble", "swt", "cwt v=0.5", "cwt v=1", "cwt+ v=0.5",
        "cwt+ v=1", "single inst-0", "single inst-1", "single inst-2"}
assert labels == want, labels
for seed in (1, 2):
    runs = [x for x in r["runs"] if x["seed"] == seed]
    for x in runs:
        assert x["budget"] <= budget
        if x["label"] == "swt":
            assert 0 < x["steps"] <= budget, x
        elif x["institution"] is None:
            assert x["steps"] == budget, (x["label"], x["steps"], budget)
        assert 0.0 <= x["test_accuracy"] <= 1.0
        assert len(x["weights_blake2b"]) in (0, 64)
    shares = [x["steps"] for x in runs if x["institution"] is not None]
    assert sum(shares) == budget and max(shares) - min(shares) <= 1, shares
    cwt = [x for x in runs if x["heuristic"] == "cwt"]
    assert all(len(x["curve"]) == x["cycles"] for x in cwt), cwt
for inst in r["institutions"]:
    assert sum(inst["train"]) == n_train and sum(inst["val"]) == r["images"]["val"], inst
    assert max(inst["train"]) - min(inst["train"]) <= 1, inst
rows = list(csv.DictReader(open(d + "/results.csv")))
assert len(rows) == len(r["runs"]), len(rows)
for f in ("val-curves.svg", "cwt-visits.svg"):
    svg = xml.dom.minidom.parse(d + "/" + f)
    assert svg.documentElement.tagName == "svg"
    assert svg.getElementsByTagName("polyline"), f
summary = {s["label"]: s for s in r["summary"]}
assert summary["central"]["seeds"] == 2 and summary["central"]["test_accuracy_sd"] is not None
EOF
python3 "$CWT_SRC/tests/cli/helpers/check_svg.py" "$T/a/val-curves.svg" "$T/a/cwt-visits.svg" ||
    fail "the plots are not readable"
grep -q "best mean local val accuracy over institutions (after each cycle)" "$T/a/table.txt" ||
    fail "the table does not say how cwt's model is chosen"

# 3. Same seed, same results (everything but wall time).
"${SIM[@]}" "${RUN[@]}" --out "$T/b" --json >"$T/b.json" 2>/dev/null
python3 - "$T/a.json" "$T/b.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for x, y in zip(a["runs"], b["runs"]):
    for k in ("label", "seed", "test_accuracy", "test_auc", "steps", "weights_blake2b",
              "final_blake2b", "curve", "kept_step", "kept_val"):
        assert x[k] == y[k], (x["label"], k, x[k], y[k])
assert a["institutions"] == b["institutions"]
EOF

# 4. Through bundles: bit-identical to the in-memory run; nothing left in the outboxes.
"${SIM[@]}" "${RUN[@]}" --heuristics swt,cwt,cwt+ --through-bundles --out "$T/c" --json \
    >"$T/c.json" 2>"$T/c.err" || fail "through-bundles run failed: $(cat "$T/c.err")"
python3 - "$T/a.json" "$T/c.json" <<'EOF'
import json, sys
a, c = (json.load(open(p)) for p in sys.argv[1:3])
assert c["through_bundles"] is True
mem = {(x["label"], x["seed"]): x for x in a["runs"]}
assert len(c["runs"]) == 10, len(c["runs"])
for x in c["runs"]:
    y = mem[(x["label"], x["seed"])]
    for k in ("weights_blake2b", "final_blake2b", "test_accuracy", "curve", "steps"):
        assert x[k] == y[k], (x["label"], k, x[k], y[k])
EOF
[ -s "$T/c/roster.conf" ] || fail "no roster for the virtual institutions"
for i in 0 1 2; do
    [ -s "$T/c/inst-$i/keys/site.pub" ] || fail "inst-$i has no keys"
    [ "$(stat -c %a "$T/c/inst-$i/keys/sign.key")" = 600 ] || fail "inst-$i sign.key not 0600"
done
[ -z "$(find "$T/c" -name '*.cwtb' -o -name '*.safetensors')" ] || fail "hand-over files left"

# 5. size-skew: institution sizes follow the weights (within one image).
"${SIM[@]}" --sites 3 --partition size-skew:1,2,3 --heuristics cwt --budget 1 --plus all \
    --out "$T/d" --json >"$T/d.json" 2>/dev/null
python3 - "$T/d.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["cwt_plus"] == "proportional+loss+sampling+clr", r["cwt_plus"]
n = r["images"]["train"]
sizes = r["institutions"][0]["train"]
for w, s in zip((1, 2, 3), sizes):
    assert abs(s - n * w / 6) <= 1, (sizes, n)
assert r["runs"][0]["steps"] == r["budget_steps"]
EOF
# 6. fedavg and fedprox: the budget in rounds of v local epochs at every institution. 108
# training images, 3 sites, batch 16: v=0.25 is 0.56 steps, so one step per institution and
# round (the proximal term, mu * (w - w_global), is zero at the only step); v=1 is 2.25 steps,
# two or three a round.
"${SIM[@]}" --sites 3 --budget 2 --visits 0.25,1 --heuristics fedavg,fedprox:0.01 \
    --out "$T/f" --json >"$T/f.json" 2>"$T/f.err" || fail "fedavg run failed: $(cat "$T/f.err")"
grep -q "best mean local val accuracy over institutions (after each round)" "$T/f/table.txt" ||
    fail "the table does not say how fedavg's model is chosen"
python3 - "$T/f.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["fedprox_mu"] == 0.01, r["fedprox_mu"]
runs = {x["label"]: x for x in r["runs"]}
assert set(runs) == {"fedavg v=0.25", "fedavg v=1", "fedprox v=0.25", "fedprox v=1"}, set(runs)
for x in runs.values():
    assert x["steps"] == r["budget_steps"], x
    assert 0.0 <= x["test_accuracy"] <= 1.0 and len(x["weights_blake2b"]) == 64
    assert len(x["curve"]) == x["cycles"] and x["cycles"] >= 2, x
    assert x["curve"][-1][0] == r["budget_steps"], x["curve"]
a, p = runs["fedavg v=0.25"], runs["fedprox v=0.25"]
assert a["final_blake2b"] == p["final_blake2b"], "fedprox with one step per round differs"
assert runs["fedavg v=1"]["final_blake2b"] != runs["fedprox v=1"]["final_blake2b"]
EOF
# 7. Piped: no progress line, the summary only.
"${SIM[@]}" --sites 3 --heuristics central,single --budget 1 --out "$T/p" >"$T/p.out" 2>"$T/p.err"
grep -q "results in" "$T/p.out" || fail "no summary line: $(cat "$T/p.out")"
if grep -q "ETA" "$T/p.out" "$T/p.err" || grep -q $'\r' "$T/p.out" "$T/p.err"; then
    fail "a progress line was written to a pipe"
fi
sed -i -e 's/optimizer = "sgd";/optimizer = "adam";/' "$T/site/roster.conf"
expect 2 'fedprox needs a recipe with optimizer "sgd"' "${SIM[@]}" --sites 3 \
    --heuristics fedprox:0.1 --out "$T/g"
echo "simulate: ok"
