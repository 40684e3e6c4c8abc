# Fine-tuning through cwtd (docs/model-export.md "Fine-tuning from pretrained weights"): two
# sites start from initial weights (recipe.init) with recipe.finetune = { freeze_stages = 2;
# backbone_lr_scale = 0.5; } and every augmentation on. The final model's stem and layer1
# (weights and batch-norm running statistics) are bit-identical to the file's, and every other
# weight tensor moved: the trainer builds its model and loader from the recipe's settings.
set -euo pipefail
. "$CWT_SRC/tests/cli/helpers/daemon_lib.sh"

daemon_setup daemon_finetune
trap 'daemon_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
SITES=(a b)

# The initial weights: one epoch of `cwtctl train` at a scratch site of the same model.
make_site z --model resnet
ingest_fashion z 0 160
"$CWTCTL" -c "$T/z/cwtd.conf" train --epochs 1 >/dev/null 2>"$T/z.train.err" ||
    die "training the initial weights: $(cat "$T/z.train.err")"
"$CWTCTL" -c "$T/z/cwtd.conf" model export -o "$T/init.safetensors" >/dev/null || die "export"
hash=$(python3 -c 'import hashlib, sys; print(hashlib.blake2b(open(sys.argv[1], "rb").read(), digest_size=32).hexdigest())' "$T/init.safetensors")

for s in "${SITES[@]}"; do make_site "$s" --model resnet; done
set_recipe a cycles 1
set_recipe a visit_unit '"steps"'
set_recipe a visit_length 4
set_recipe a batch_size 32
set_recipe a augment_hflip true
python3 - "$T/a/roster.conf" "$hash" <<'PY'
import sys
path, h = sys.argv[1], sys.argv[2]
text = open(path).read()
i = text.index("recipe = {") + len("recipe = {")
text = (text[:i] + '\n  init = { file = "init.safetensors"; blake2b = "%s"; };' % h
        + '\n  finetune = { freeze_stages = 2; backbone_lr_scale = 0.5; };' + text[i:])
i = text.index("    balanced_sampling")
text = (text[:i] + "    augment_resized_crop = true; augment_crop_scale = [0.5, 1.0];\n"
        "    augment_vflip = true; augment_rotate = 10;\n"
        "    augment_brightness = 0.2; augment_contrast = 0.2;\n" + text[i:])
open(path, "w").write(text)
PY
build_roster "${SITES[@]}"
grep -q "freeze_stages = 2;" "$T/b/roster.conf" || die "the saved roster lost recipe.finetune"
grep -q "augment_rotate = 10;" "$T/b/roster.conf" || die "the saved roster lost augment_rotate"
for s in "${SITES[@]}"; do
    cp "$T/init.safetensors" "$T/$s/init.safetensors"
    ingest_fashion "$s" 160 160
done

run_federation 600 "${SITES[@]}"
check_federation_end "${SITES[@]}" >/dev/null
"$CWTCTL" -c "$T/b/cwtd.conf" model export -o "$T/final.safetensors" >/dev/null || die "export"
python3 - "$T/init.safetensors" "$T/final.safetensors" <<'PY' || die "frozen stages moved or trained ones did not"
import os, sys
sys.path.insert(0, os.environ["CWT_SRC"] + "/tests/cli/helpers")
from st_read import f32_tensors
a, b = f32_tensors(sys.argv[1]), f32_tensors(sys.argv[2])
frozen = [k for k in a if k.startswith(("conv1.", "bn1.", "layer1."))]
moved = [k for k in a if k not in frozen and k.endswith("weight")]
assert frozen and moved, (frozen, moved)
for k in frozen:
    assert a[k] == b[k], "frozen %s changed" % k
for k in moved:
    assert a[k] != b[k], "trained %s did not change" % k
print("%d frozen tensors bit-identical, %d trained weights moved" % (len(frozen), len(moved)))
PY
echo "daemon_finetune: ok"
