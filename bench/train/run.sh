#!/usr/bin/env bash
# bench/train/run.sh BUILD_DIR [STEPS] [PAIRS] - runs the engine's training and GEMM benchmarks
# and the PyTorch CPU baseline on this machine and rewrites the "## Training engine" section of
# bench/RESULTS.md with the numbers (other sections are left alone).
#
# Method: the speed of this shared 2-core machine drifts by 2x within minutes, and PyTorch's
# more than lavapipe's, so single runs give ratios anywhere from 0.3 to 0.6. Each model is
# therefore measured as PAIRS (default 5) back-to-back pairs (cwt, then PyTorch, same steps)
# and the table gives the median of the per-pair ratios with their range, beside the median
# images/s of each side. STEPS (default 100) is for cnn-small; resnet-8 runs STEPS/12 + 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:?usage: run.sh BUILD_DIR [STEPS] [PAIRS]}"
steps="${2:-100}"
pairs="${3:-5}"
py="${PYTHON:-/usr/bin/python3}"
eng="$build/engine"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

val() { sed -n "s/^$1=//p" | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
lo() { tr ' ' '\n' | grep . | sort -g | head -1; }
hi() { tr ' ' '\n' | grep . | sort -g | tail -1; }

# pairs_of NAME CWT_ARGS... -- TORCH_ARGS...: sets NAME_cwt, NAME_pt (medians), NAME_r (median
# ratio), NAME_lo, NAME_hi (ratio range)
pairs_of() {
    local name="$1" c=() t=() cw="" pt="" rs=""
    shift
    while [ "$1" != "--" ]; do c+=("$1"); shift; done
    shift
    t=("$@")
    for _ in $(seq "$pairs"); do
        local a b
        a=$("$eng/bench_train" "${c[@]}" | tee -a "$out" | val images_per_s)
        b=$("$py" "$here/torch_bench.py" "${t[@]}" | tee -a "$out" | val images_per_s)
        cw="$cw $a" pt="$pt $b" rs="$rs $(ratio "$a" "$b")"
    done
    printf -v "${name}_cwt" '%s' "$(echo "$cw" | median)"
    printf -v "${name}_pt" '%s' "$(echo "$pt" | median)"
    printf -v "${name}_r" '%s' "$(echo "$rs" | median)"
    printf -v "${name}_lo" '%s' "$(echo "$rs" | lo)"
    printf -v "${name}_hi" '%s' "$(echo "$rs" | hi)"
}

rsteps=$((steps / 12 + 1))
pairs_of cnn cnn-small 28 28 1 64 "$steps" -- cnn-small 28 28 1 64 "$steps"
pairs_of res resnet 64 64 3 64 "$rsteps" 8 -- resnet 64 64 3 64 "$rsteps" 8
# The implicit-GEMM kernels (what CPU devices used before gemm_cpu.comp), once, for comparison.
cnn_old=$(CWT_ENG_CPU_GEMM=0 "$eng/bench_train" cnn-small 28 28 1 64 "$((steps / 4 + 1))" |
          val images_per_s)
res_old=$(CWT_ENG_CPU_GEMM=0 "$eng/bench_train" resnet 64 64 3 64 2 8 | val images_per_s)
gemm=$("$eng/bench_gemm" 1024 2048 | tee -a "$out")
dev=$(sed -n 's/^device=//p' "$out" | head -1)
torchv=$(sed -n 's/^torch=\([^ ]*\).*/\1/p' "$out" | head -1)
section=$(cat <<EOT
## Training engine

Measured $(date -u +%Y-%m-%d) at commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null ||
echo none), nproc $(nproc), CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1),
load average before the run $(cut -d' ' -f1-3 /proc/loadavg).
Vulkan device: $dev. Baseline: PyTorch $torchv on the CPU, same run, same machine.
Training: SGD momentum 0.9, batch 64, synthetic data, images/s after warm-up. $pairs
back-to-back pairs per model (cwt then PyTorch; cnn-small $steps steps, resnet-8 $rsteps):
medians of each side and the median of the per-pair ratios, with their range.

| model | input | cwt img/s | PyTorch CPU img/s | cwt / PyTorch (median) | range of the pairs |
|---|---|---|---|---|---|
| cnn-small | 28x28x1 | $cnn_cwt | $cnn_pt | $cnn_r | $cnn_lo - $cnn_hi |
| resnet-8 | 64x64x3 | $res_cwt | $res_pt | $res_r | $res_lo - $res_hi |
| cnn-small, implicit kernels (CWT_ENG_CPU_GEMM=0), one run | 28x28x1 | $cnn_old | $cnn_pt | $(ratio "$cnn_old" "$cnn_pt") | |
| resnet-8, implicit kernels (CWT_ENG_CPU_GEMM=0), one run | 64x64x3 | $res_old | $res_pt | $(ratio "$res_old" "$res_pt") | |

On CPU devices the engine uses the texel-fetch kernels of shaders/gemm_cpu.comp: convolutions
read their input as texel windows (3x3 and 1x1, strides 1 and 2, and the stride phases of
strided data gradients), 3x3 filter gradients run with the lanes along the pixels, other
shapes gather inside the GEMM or go through im2col (docs/engine.md); the last two rows are the
earlier implicit-GEMM kernels in the same run. PyTorch's speed here is bimodal (now and then a
whole run at about twice its usual speed), hence the wide range of the pairs.

GEMM (n x n x n, fp32), best engine kernel vs OpenBLAS sgemm (kernel=cpu is gemm_cpu.comp):

| n | engine GFLOP/s | OpenBLAS GFLOP/s | ratio |
|---|---|---|---|
$(echo "$gemm" | grep '^| ')

Per-kernel lines:

\`\`\`
$(echo "$gemm" | grep -v '^| ')
\`\`\`
EOT
)
"$py" - "$root/bench/RESULTS.md" "$section" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip() + "\n"
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmark results\n"
pat = re.compile(r"^## Training engine\n.*?(?=^## |\Z)", re.S | re.M)
text = pat.sub(lambda m: section + "\n", text) if pat.search(text) else \
    text.rstrip() + "\n\n" + section
open(path, "w").write(text)
PY
echo "$section"
