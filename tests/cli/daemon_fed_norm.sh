# Federation-wide normalisation (docs/daemon.md, "Normalisation"): three cwtd sites whose
# images have different intensity distributions (one dark, one plain, one inverted and bright).
# In cycle 0 every site adds its training split's pixel statistics to the weights' metadata;
# from cycle 1 on every site trains with the same pooled mean and std, which are the mean and
# std over the three training splits' pixels together (computed here from the test's own data).
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_fed_norm
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SITES=(a b c)
FED_CYCLES=3

# make_data NAME SCALE OFFSET INVERT: 96 training and 24 validation 16x16 images, 10 classes
# (a bright bar at a place set by the class, over noise), pixel = OFFSET + SCALE * v
# (255 - that when INVERT), written as IDX files and ingested as the train and val splits.
make_data() {
    python3 - "$T/$1" "$2" "$3" "$4" <<'PY'
import os, random, sys
sys.path.insert(0, os.environ["CWT_SRC"] + "/tests/cli/helpers")
from bar_idx import bar_splits
out, scale, offset, invert = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rng = random.Random(out[-1])


def pixel(v):
    p = min(255, int(offset + scale * v))
    return 255 - p if invert else p


bar_splits(out, rng, (("train", 96), ("val", 24)), lambda i: i % 10, (0, 60), 4, (200, 256), pixel)
PY
    ingest_splits "$1"
}

for s in "${SITES[@]}"; do make_site "$s"; done
set_recipe a cycles "$FED_CYCLES"
set_recipe a patience 0
set_recipe a visit_unit '"steps"'
set_recipe a visit_length 4
set_recipe a batch_size 32
build_roster "${SITES[@]}"
make_data a 0.5 0 0
make_data b 1.0 0 0
make_data c 0.8 40 1
run_federation 900 "${SITES[@]}"
check_federation_end "${SITES[@]}" >/dev/null

# Every visit of cycles 1 and 2 (3 sites x 2) logged the same pooled normalisation, and no
# visit of cycle 0 did.
cat "$T"/[abc].log | grep "trains with the normalisation pooled over 3 sites" >"$T/pooled.txt" || true
[ "$(grep -c "cycle [12] trains" "$T/pooled.txt")" = 6 ] ||
    die "expected 6 visits with the pooled normalisation, found: $(cat "$T/pooled.txt")"
grep -q "cycle 0 trains" "$T/pooled.txt" && die "a cycle-0 visit used a pooled normalisation"
[ "$(sed 's/.*: mean //' "$T/pooled.txt" | sort -u | wc -l)" = 1 ] ||
    die "the sites trained with different normalisations: $(cat "$T/pooled.txt")"
line=$(sed 's/.*: mean //' "$T/pooled.txt" | sort -u)
python3 - "$T" "$line" <<'PY' || die "the pooled normalisation is not the mean/std of all the training pixels"
import math, sys
t, line = sys.argv[1], sys.argv[2].split()
mean, std = float(line[0]), float(line[2])
n = s = q = 0
for site in "abc":
    data = open("%s/%s/train-images" % (t, site), "rb").read()[16:]
    n += len(data)
    s += sum(data)
    q += sum(v * v for v in data)
m = s / n
want_mean, want_std = m / 255, math.sqrt(q / n - m * m) / 255
print("pooled mean %.6f std %.6f, expected %.6f %.6f" % (mean, std, want_mean, want_std))
assert abs(mean - want_mean) < 1e-6 and abs(std - want_std) < 1e-6
PY
echo "daemon_fed_norm: ok, pooled normalisation mean $line"
