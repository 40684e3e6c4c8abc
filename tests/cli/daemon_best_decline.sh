# The final model is the best cycle's when the federation learns and then declines (issue 20
# item 7): four label-skewed cwtd sites (half of each site's images from its own two classes)
# train a learnable synthetic task under a learning rate that climbs over the whole run (a
# cyclical schedule whose half period is the run, from lr_min = 0.002 to lr = 0.2 with Adam):
# the first cycles learn, the later ones are destabilised. Patience is the run, so the
# federation runs every cycle and the last cycle is worse than the best. Checked: every site
# holds the model that closed the best cycle (the last site's "model-best" record), and that
# model's metrics at the last site (`cwtctl eval` on its val split) are the ones the last site
# recorded for its visit of the best cycle, not those of its last visit.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_best_decline
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SITES=(a b c d)
CYCLES=${FED_CYCLES:-6}
VISIT_STEPS=6 # 2 local epochs of 96 images in batches of 32

# make_data NAME INDEX: 96 training and 40 validation 16x16 images of 10 classes (a bright bar
# at a column set by the class, over noise of a similar level, so it takes some learning);
# half of a site's images are of its own two classes 2*INDEX, 2*INDEX+1 (label skew).
make_data() {
    python3 - "$T/$1" "$2" <<'PY'
import os, random, sys
sys.path.insert(0, os.environ["CWT_SRC"] + "/tests/cli/helpers")
from bar_idx import bar_splits
out, idx = sys.argv[1], int(sys.argv[2])
rng = random.Random(1000 + idx)
label = lambda i: (2 * idx + rng.randrange(2)) % 10 if i % 2 == 0 else rng.randrange(10)
bar_splits(out, rng, (("train", 96), ("val", 40)), label, (0, 150), 3, (90, 256))
PY
    ingest_splits "$1"
}

for s in "${SITES[@]}"; do make_site "$s"; done
set_recipe a cycles "$CYCLES"
set_recipe a patience "$CYCLES"
set_recipe a visit_unit '"steps"'
set_recipe a visit_length "$VISIT_STEPS"
set_recipe a batch_size 32
set_recipe a optimizer '"adam"'
set_recipe a balanced_sampling false
set_recipe a schedule '"cyclical"'
set_recipe a lr "${FED_LR:-0.2}"
set_recipe a lr_min 0.002
# The schedule clock counts local epochs over every visit: cycles x sites x 2 epochs.
set_recipe a cycle_epochs $((CYCLES * ${#SITES[@]} * 2))
build_roster "${SITES[@]}"
i=0
for s in "${SITES[@]}"; do
    make_data "$s" "$i"
    i=$((i + 1))
done
run_federation 600 "${SITES[@]}"
hash=$(check_federation_end "${SITES[@]}")

last=${SITES[$((${#SITES[@]} - 1))]}
"$CWTCTL" -c "$T/$last/cwtd.conf" audit show >"$T/audit_last.txt"
best=$(grep " model-best " "$T/audit_last.txt" | tail -n 1)
[ -n "$best" ] || die "the last site recorded no best cycle"
bestc=$(echo "$best" | sed -n 's/.*cycle \([0-9]*\) is the best so far.*/\1/p')
besth=$(echo "$best" | sed -n 's/.*, model \([0-9a-f]\{64\}\).*/\1/p')
[ -n "$bestc" ] && [ -n "$besth" ] || die "unreadable model-best record: $best"
[ "$hash" = "$besth" ] || die "the final model $hash is not the best cycle's model $besth"
grep -q " model-best-final " "$T/audit_last.txt" || die "the final bundle does not carry the best"

for s in "${SITES[@]}"; do
    "$CWTCTL" -c "$T/$s/cwtd.conf" --json status >"$T/status_$s.json" || die "status of $s"
done
"$CWTCTL" -c "$T/$last/cwtd.conf" --json eval >"$T/eval_last.json" || die "eval at $last"
python3 - "$bestc" "$CYCLES" "$T/eval_last.json" "$T/status_$last.json" "$T"/status_*.json <<'PY' ||
import json, sys
bestc, cycles = int(sys.argv[1]), int(sys.argv[2])
final = json.load(open(sys.argv[3]))["accuracy"]
mine = {m["cycle"]: m["value"] for m in json.load(open(sys.argv[4]))["val_accuracy"]}
vals = {}
for p in sys.argv[5:]:
    for m in json.load(open(p))["val_accuracy"]:
        vals.setdefault(m["cycle"], []).append(m["value"])
means = {c: sum(v) / len(v) for c, v in vals.items() if len(v) == 4}
print("cycle means:", " ".join("%d:%.3f" % (c, means[c]) for c in sorted(means)))
print("last site: final model %.4f, its visits %s" %
      (final, " ".join("%d:%.3f" % (c, mine[c]) for c in sorted(mine))))
assert sorted(means) == list(range(cycles)), "every cycle ran at every site"
assert 0 < bestc < cycles - 1, "the model learnt for a cycle and declined before the end"
assert means[bestc] == max(means.values()), "the best cycle has the best mean"
assert means[cycles - 1] < means[bestc] - 0.1, "the last cycle is clearly worse"
assert abs(final - mine[bestc]) < 1e-6, "the final model is the best cycle's"
assert abs(final - mine[cycles - 1]) > 1e-6, "the final model is not the last visit's"
PY
    die "the final model's metrics are not the best cycle's"
# Label skew or not, every site trained cycles 1.. with the same pooled normalisation.
pooled=$(cat "$T"/[a-d].log | grep -o "trains with the normalisation pooled over 4 sites: .*" |
    sort | uniq -c)
[ "$(echo "$pooled" | wc -l)" = 1 ] && [ "$(echo "$pooled" | awk '{print $1}')" = $((4 * (CYCLES - 1))) ] ||
    die "the sites did not all train with one pooled normalisation: $pooled"
echo "daemon_best_decline: ok, best cycle $bestc of $CYCLES, final model $hash"
