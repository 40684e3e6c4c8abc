# Fractional visits carry their remainder in cwtd (docs/daemon.md, "Fractional visits"): two
# sites, 96 training images each in batches of 8 (12 steps an epoch), visits of 0.3 epochs
# (3.6 steps). Over 5 cycles every site trains round(5 x 3.6) = 18 steps (4, 3, 4, 3, 4), not
# 5 x 4 = 20 as rounding each visit would; a kill -9 of the second site during the run (and
# its restart) keeps that sum.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_visit_carry
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SITES=(a b)
CYCLES=5

# make_data NAME: 96 training and 24 validation 16x16 images of 10 classes (a bright bar at a
# column set by the class, over noise).
make_data() {
    python3 - "$T/$1" <<'PY'
import os, random, sys
sys.path.insert(0, os.environ["CWT_SRC"] + "/tests/cli/helpers")
from bar_idx import bar_splits
out = sys.argv[1]
rng = random.Random(out[-1])
bar_splits(out, rng, (("train", 96), ("val", 24)), lambda i: i % 10, (0, 100), 3, (150, 256))
PY
    ingest_splits "$1"
}

for s in "${SITES[@]}"; do make_site "$s"; done
set_recipe a cycles "$CYCLES"
set_recipe a patience "$CYCLES"
set_recipe a visit_unit '"epochs"'
set_recipe a visit_length 0.3
set_recipe a batch_size 8
set_recipe a balanced_sampling false
build_roster "${SITES[@]}"
for s in "${SITES[@]}"; do make_data "$s"; done
for s in "${SITES[@]}"; do start_daemon "$s"; done
"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || die "start at a"
start_courier "${SITES[@]}"

# kill -9 b once it has committed a visit or two, then start it again.
b_past_cycle() { [ "$(status_field b cycle)" -ge 2 ] 2>/dev/null; }
wait_for 300 b_past_cycle || die "site b never reached cycle 2"
kill -KILL "$(cat "$T/b.pid")"
wait_for 10 process_gone "$(cat "$T/b.pid")" || die "cwtd of b survived kill -9"
start_daemon b

finish_federation 600 "${SITES[@]}"
check_federation_end "${SITES[@]}" >/dev/null

for s in "${SITES[@]}"; do
    # "visit-trained cycle C hop H steps N ...": one record per visit (a visit trained again
    # after the kill counts once, by its cycle).
    steps=$("$CWTCTL" -c "$T/$s/cwtd.conf" audit show | grep " visit-trained " |
        sed -n 's/.*cycle \([0-9]*\) hop [0-9]* steps \([0-9]*\).*/\1 \2/p' | sort -u -k1,1n)
    [ "$(echo "$steps" | wc -l)" = "$CYCLES" ] || die "site $s: visits $(echo "$steps" | tr '\n' ' ')"
    per=$(echo "$steps" | awk '{print $2}' | tr '\n' ' ')
    [ "$per" = "4 3 4 3 4 " ] || die "site $s trained $per steps per visit, not 4 3 4 3 4"
done
echo "daemon_visit_carry: ok, 18 steps at each site over 5 visits of 3.6 steps (4 3 4 3 4)"
