# Initial weights in the roster (docs/daemon.md, "Initial weights"): recipe.init names a
# safetensors file beside the roster and its BLAKE2b-256. Two cwtd sites start the federation
# from it: with a learning rate of 1e-9 the final model's convolution and linear weights are
# the file's (a seeded He init is far from them); the hash is part of the roster fingerprint;
# a site whose file differs refuses to start, naming the hash it has and the one wanted.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_init
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SITES=(a b)

# The initial weights: one epoch of `cwtctl train` at a scratch site of the same model.
make_site z
ingest_fashion z 0 160
"$CWTCTL" -c "$T/z/cwtd.conf" train --epochs 1 >/dev/null 2>"$T/z.train.err" ||
    die "training the initial weights: $(cat "$T/z.train.err")"
"$CWTCTL" -c "$T/z/cwtd.conf" model export -o "$T/init.safetensors" >/dev/null || die "export"
hash=$(python3 -c 'import hashlib, sys; print(hashlib.blake2b(open(sys.argv[1], "rb").read(), digest_size=32).hexdigest())' "$T/init.safetensors")

for s in "${SITES[@]}"; do make_site "$s"; done
set_recipe a cycles 1
set_recipe a visit_unit '"steps"'
set_recipe a visit_length 4
set_recipe a batch_size 32
set_recipe a lr 1e-9
set_recipe a lr_min 0
# recipe.init goes at the end of the recipe group.
python3 - "$T/a/roster.conf" "$hash" <<'PY'
import re, sys
path, h = sys.argv[1], sys.argv[2]
text = open(path).read()
i = text.index("recipe = {") + len("recipe = {")
text = text[:i] + '\n  init = { file = "init.safetensors"; blake2b = "%s"; };' % h + text[i:]
open(path, "w").write(text)
PY
build_roster "${SITES[@]}"
grep -q "blake2b = \"$hash\"" "$T/b/roster.conf" || die "the saved roster lost recipe.init"
for s in "${SITES[@]}"; do
    cp "$T/init.safetensors" "$T/$s/init.safetensors"
    ingest_fashion "$s" 160 160
done

# A different file at b: refused at start-up, with both hashes.
printf 'x' >>"$T/b/init.safetensors"
bad=$(python3 -c 'import hashlib, sys; print(hashlib.blake2b(open(sys.argv[1], "rb").read(), digest_size=32).hexdigest())' "$T/b/init.safetensors")
if "$CWTD" -c "$T/b/cwtd.conf" -f 2>"$T/b.refused.log"; then die "b started with a wrong init file"; fi
grep -q "have BLAKE2b $bad but the roster .* wants $hash" "$T/b.refused.log" ||
    die "unclear refusal: $(cat "$T/b.refused.log")"
cp "$T/init.safetensors" "$T/b/init.safetensors"

run_federation 600 "${SITES[@]}"
check_federation_end "${SITES[@]}" >/dev/null
grep -q "training cycle 0, hop 0 from the roster's initial weights" "$T/a.log" ||
    die "site a did not start from the initial weights"
"$CWTCTL" -c "$T/b/cwtd.conf" model export -o "$T/final.safetensors" >/dev/null || die "export"
python3 - "$T/init.safetensors" "$T/final.safetensors" <<'PY' || die "the final model did not start from the initial weights"
import os, struct, sys
sys.path.insert(0, os.environ["CWT_SRC"] + "/tests/cli/helpers")
from st_read import f32_tensors
def load(p):
    return {k: struct.unpack("<%df" % (len(raw) // 4), raw)
            for k, raw in f32_tensors(p).items() if k.endswith("weight")}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and a, (sorted(a), sorted(b))
d = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
print("max |final - init| over %d weight tensors: %.3g" % (len(a), d))
assert d < 1e-4, d
PY
echo "daemon_init: ok, 2 sites from initial weights $hash"
