# `cwtctl model convert` (docs/model-export.md, "Initial weights from torchvision"): a
# torchvision-named ResNet-10 state dict made here with PyTorch (random weights and batch-norm
# statistics, 3-channel stem, 1000 classes; no download) becomes the roster's 1-channel,
# 3-class resnet-10: every tensor is the state dict's but the stem, which is the sum of its
# three input channels, and fc, which is new. The converted model's features on a grey image
# equal the original's on that image in all three channels; imported at a site, cwtctl's
# predictions equal PyTorch's (log-probabilities within 1e-3 relative, compare_torch.py);
# a ResNet-18 state dict is refused for the resnet-10 roster, naming a tensor; a federation of
# two cwtd sites starts from a converted file (recipe.init; with lr 1e-9 the final weights
# are the file's).
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"
daemon_setup model_convert
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail() { die "$@"; }
# Debian's python3-torch lives in the system interpreter, which may not be first in PATH.
PYTORCH=""
for py in /usr/bin/python3 python3; do
    if "$py" -c 'import torch' 2>/dev/null; then
        PYTORCH=$py
        break
    fi
done
[ -n "$PYTORCH" ] || fail "python3-torch is required (Debian package python3-torch)"

"$CWTCTL" init --site-id s --dir "$T/s" --input 72x72x1 --class-names a,b,c --model resnet \
    >/dev/null || fail "init"
sed -i "s/depth = 8;/depth = 10;/" "$T/s/roster.conf"
grep -q "depth = 10;" "$T/s/roster.conf" || fail "cannot set the depth"
C=(-c "$T/s/cwtd.conf")

# The torchvision-checkpoint converter of docs/model-export.md, as the guide prints it.
awk '/^```python$/ {n++; if (n == 3) {on = 1; next}} on && /^```$/ {exit} on {print}' \
    "$CWT_SRC/docs/model-export.md" >"$T/pth2safetensors.py"
grep -q 'torch.load(sys.argv\[1\]' "$T/pth2safetensors.py" || fail "no converter in model-export.md"

# save_tv DEPTH FILE: a torchvision-named ResNet state dict saved with torch.save, as
# torchvision ships its checkpoints, then made safetensors by the guide's converter.
save_tv() {
    "$PYTORCH" - "$CWT_SRC/tests/cli" "$1" "$2.pth" <<'PY' &&
import sys
sys.path.insert(0, sys.argv[1])
import torch
import pytorch_load
torch.manual_seed(int(sys.argv[2]))
net = pytorch_load.ResNet(int(sys.argv[2]), 1.0, 72, 72, 3, 1000)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.1, 0.1)
            m.num_batches_tracked.fill_(1000)
torch.save(net.state_dict(), sys.argv[3])
PY
        "$PYTORCH" "$T/pth2safetensors.py" "$2.pth" "$2"
}
save_tv 10 "$T/tv10.safetensors" || fail "making the torchvision-shaped state dict"
"$CWTCTL" "${C[@]}" model convert "$T/tv10.safetensors" -o "$T/init.safetensors" >"$T/out" ||
    fail "convert: $(cat "$T/out")"
grep -q 'init = { file = "init.safetensors"; blake2b = "[0-9a-f]\{64\}"; };' "$T/out" ||
    fail "convert does not print the roster line: $(cat "$T/out")"
"$CWTCTL" "${C[@]}" --json model convert "$T/tv10.safetensors" -o "$T/init2.safetensors" \
    >"$T/convert.json" || fail "convert --json: $(cat "$T/convert.json")"
python3 "$CWT_SRC/tests/cli/helpers/json_check.py" model-convert "$T/convert.json" ||
    fail "convert --json: $(cat "$T/convert.json")"
cmp -s "$T/init.safetensors" "$T/init2.safetensors" || fail "two conversions differ"

"$PYTORCH" - "$CWT_SRC/tests/cli" "$T/tv10.safetensors" "$T/init.safetensors" <<'PY' ||
import sys
sys.path.insert(0, sys.argv[1])
import torch
import pytorch_load
tv, _ = pytorch_load.read_safetensors(sys.argv[2])
cw, meta = pytorch_load.read_safetensors(sys.argv[3])
assert torch.equal(cw["conv1.weight"], tv["conv1.weight"].sum(1, keepdim=True))
same = [k for k in cw if not k.startswith("fc.") and k != "conv1.weight"]
for k in same:
    assert torch.equal(cw[k], tv[k]), k
assert list(cw["fc.weight"].shape) == [3, 512]
# Features (all but fc): the grey image x through the converted model equals (x, x, x)
# through the original.
orig = pytorch_load.ResNet(10, 1.0, 72, 72, 3, 1000)
orig.load_state_dict(tv)
conv, _ = pytorch_load.load(sys.argv[3])
orig.fc = torch.nn.Identity()
conv.fc = torch.nn.Identity()
x = torch.rand(4, 1, 72, 72)
with torch.no_grad():
    d = (orig.eval()(x.repeat(1, 3, 1, 1)) - conv.eval()(x)).abs().max().item()
print("%d tensors copied; largest feature difference grey vs RGB: %.2e" % (len(same), d))
assert d < 1e-4, d
PY
    fail "the converted tensors are not the state dict's"

# Imported at the site, cwtctl predicts what PyTorch does with the converted file.
"$CWTCTL" "${C[@]}" model import "$T/init.safetensors" >/dev/null || fail "import"
python3 "$CWT_SRC/tests/cli/helpers/make_pngs.py" "$T/png" 1 5 72
"$CWTCTL" "${C[@]}" --json predict "$T/png/0/img0000.png" "$T/png/1/img0000.png" \
    "$T/png/2/img0000.png" >"$T/pred.json" || fail "predict"
"$PYTORCH" "$CWT_SRC/tests/cli/helpers/compare_torch.py" "$T/init.safetensors" "$T/pred.json" \
    "$T/png/0/img0000.png" "$T/png/1/img0000.png" "$T/png/2/img0000.png" ||
    fail "cwt and PyTorch disagree on the converted model"

# A ResNet-18 state dict does not pass for the roster's resnet-10.
save_tv 18 "$T/tv18.safetensors" || fail "making the ResNet-18 state dict"
if "$CWTCTL" "${C[@]}" model convert "$T/tv18.safetensors" -o "$T/x.safetensors" 2>"$T/err"; then
    fail "a resnet-18 state dict was converted for a resnet-10 roster"
fi
grep -q "layer1.1.*is not a tensor of the roster's resnet-10" "$T/err" ||
    fail "unclear refusal: $(cat "$T/err")"
[ ! -e "$T/x.safetensors" ] || fail "a refused conversion left a file"
# Two cwtd sites start from a converted file (10 classes, their roster).
FED_INPUT=72x72x1 make_site a --model resnet
FED_INPUT=72x72x1 make_site b --model resnet
sed -i "s/depth = 8;/depth = 10;/" "$T/a/roster.conf"
set_recipe a cycles 1
set_recipe a visit_unit '"steps"'
set_recipe a visit_length 2
set_recipe a batch_size 16
set_recipe a lr 1e-9
set_recipe a lr_min 0
"$CWTCTL" -c "$T/a/cwtd.conf" model convert "$T/tv10.safetensors" -o "$T/a/init.safetensors" \
    >"$T/out" || fail "convert for the federation: $(cat "$T/out")"
line=$(grep -o 'init = {.*};' "$T/out")
python3 - "$T/a/roster.conf" "$line" <<'PY'
import sys
path, line = sys.argv[1], sys.argv[2]
text = open(path).read()
i = text.index("recipe = {") + len("recipe = {")
open(path, "w").write(text[:i] + "\n  " + line + text[i:])
PY
build_roster a b
cp "$T/a/init.safetensors" "$T/b/init.safetensors"
ingest_fashion a 0 40
ingest_fashion b 40 40
start_daemon a
start_daemon b
"$CWTCTL" -c "$T/a/cwtd.conf" start >/dev/null || fail "start at a"
start_courier a b
wait_for 600 all_finished a b || {
    for s in a b; do "$CWTCTL" -c "$T/$s/cwtd.conf" status || true; tail -5 "$T/$s.log"; done
    fail "the federation from the converted file did not finish"
}
stop_courier
grep -q "training cycle 0, hop 0 from the roster's initial weights" "$T/a.log" ||
    fail "site a did not start from the converted weights"
"$CWTCTL" -c "$T/b/cwtd.conf" model export -o "$T/final.safetensors" >/dev/null || fail "export"
"$PYTORCH" - "$CWT_SRC/tests/cli" "$T/a/init.safetensors" "$T/final.safetensors" <<'PY' ||
import sys
sys.path.insert(0, sys.argv[1])
import pytorch_load
a, _ = pytorch_load.read_safetensors(sys.argv[2])
b, _ = pytorch_load.read_safetensors(sys.argv[3])
ws = [k for k in a if k.endswith("weight")]
d = max((a[k] - b[k]).abs().max().item() for k in ws)
print("federation from the converted file: max |final - init| over %d weights %.2e" % (len(ws), d))
assert d < 1e-4, d
PY
    fail "the federation's final model did not start from the converted weights"
echo "model_convert: ok"
