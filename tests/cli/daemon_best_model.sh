# The daemon keeps the best model (docs/daemon.md, "The final model"): three cwtd sites, a
# learning rate high enough that validation stops improving, patience 1, so the federation
# stops one cycle after its best. The final model at every site is the model that closed the
# best cycle (the last site's "model-best" audit record names its hash), not the last visit's,
# and that cycle has the highest mean validation accuracy over the sites' visits.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_best_model
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SITES=(a b c)

FED_CYCLES=${FED_CYCLES:-8}
FED_OPTIMIZER=sgd
FED_LR=${FED_LR:-0.5}
FED_IMAGES=${FED_IMAGES:-120}
for s in "${SITES[@]}"; do make_site "$s"; done
set_recipe a cycles "$FED_CYCLES"
set_recipe a patience 1
set_recipe a visit_unit '"steps"'
set_recipe a visit_length 8
set_recipe a batch_size 32
set_recipe a optimizer "\"$FED_OPTIMIZER\""
set_recipe a lr "$FED_LR"
build_roster "${SITES[@]}"
i=0
for s in "${SITES[@]}"; do
    ingest_fashion "$s" $((i * FED_IMAGES)) "$FED_IMAGES"
    i=$((i + 1))
done
for s in "${SITES[@]}"; do start_daemon "$s"; done
"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start at a"
start_courier "${SITES[@]}"
wait_for 900 all_finished "${SITES[@]}" || {
    for s in "${SITES[@]}"; do "$CWTCTL" -c "$T/$s/cwtd.conf" status || true; tail -5 "$T/$s.log"; done
    die "the federation did not finish"
}
stop_courier
hash=$(check_federation_end "${SITES[@]}")

# The last site's record of the best cycle: "cycle C is the best so far (mean validation V),
# model H"; the last such record is the best cycle.
"$CWTCTL" -c "$T/c/cwtd.conf" audit show >"$T/audit_c.txt"
best=$(grep " model-best " "$T/audit_c.txt" | tail -n 1)
[ -n "$best" ] || die "the last site recorded no best cycle"
bestc=$(echo "$best" | sed -n 's/.*cycle \([0-9]*\) is the best so far.*/\1/p')
bestv=$(echo "$best" | sed -n 's/.*(mean validation \([0-9.]*\)).*/\1/p')
besth=$(echo "$best" | sed -n 's/.*, model \([0-9a-f]\{64\}\).*/\1/p')
[ -n "$bestc" ] && [ -n "$bestv" ] && [ -n "$besth" ] || die "unreadable model-best record: $best"
grep -q " model-best-final " "$T/audit_c.txt" ||
    die "the federation ended at its best cycle $bestc: validation never got worse (raise FED_LR)"
[ "$hash" = "$besth" ] || die "the final model $hash is not the best cycle's model $besth"

# The best cycle has the maximum mean validation accuracy over every site's visits, and the
# federation went on past it (the last visit's model would have been another one).
for s in "${SITES[@]}"; do
    "$CWTCTL" -c "$T/$s/cwtd.conf" --json status >"$T/status_$s.json" || die "status of $s"
done
python3 - "$bestc" "$bestv" "$T"/status_*.json <<'PY' || die "the best cycle is not the one with the best mean"
import json, sys
bestc, bestv = int(sys.argv[1]), float(sys.argv[2])
vals = {}
for p in sys.argv[3:]:
    for m in json.load(open(p))["val_accuracy"]:
        vals.setdefault(m["cycle"], []).append(m["value"])
means = {c: sum(v) / len(v) for c, v in vals.items() if len(v) == 3}
top = max(means.values())
print("cycle means:", " ".join("%d:%.4f" % (c, means[c]) for c in sorted(means)))
assert abs(means[bestc] - top) < 1e-6, (bestc, means)
assert abs(bestv - top) < 1e-5, (bestv, top)
assert max(means) > bestc, "no cycle after the best"
first = min(c for c in means if abs(means[c] - top) < 1e-12)
assert first == bestc, "ties: the earliest best cycle is kept"
PY
echo "daemon_best_model: ok, best cycle $bestc of $(grep -c ' model-best ' "$T/audit_c.txt") improvements, final model $hash"
