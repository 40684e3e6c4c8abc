#!/usr/bin/env bash
# bench/train/run.sh BUILD_DIR [STEPS] [PAIRS] - runs the engine's training and GEMM benchmarks
# and the PyTorch CPU baseline on this machine and rewrites the "## Training engine" section of
# bench/RESULTS.md with the numbers (other sections are left alone). The engine runs on
# $CWT_VK_DEVICE (default cpu: the oneDNN backend); the Vulkan backend on lavapipe gets one
# run per model for comparison.
#
# Method: the speed of this shared 2-core machine drifts by 2x within minutes, and PyTorch's
# more than lavapipe's, so single runs give ratios anywhere from 0.3 to 0.6. Each model is
# therefore measured as PAIRS (default 5) back-to-back pairs (cwt, then PyTorch, same steps)
# and the table gives the median of the per-pair ratios with their range, beside the median
# images/s of each side. STEPS (default 100) is for cnn-small; resnet-8 runs STEPS/12 + 1,
# resnet-18 (32x32 batch 64, 128x128 batch 32) STEPS/50 + 2.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:?usage: run.sh BUILD_DIR [STEPS] [PAIRS]}"
steps="${2:-100}"
pairs="${3:-5}"
py="${PYTHON:-/usr/bin/python3}"
eng="$build/engine"
export CWT_VK_DEVICE="${CWT_VK_DEVICE:-cpu}"
# CWT_BENCH_THREADS=N: N threads on both sides (CWT_CPU_THREADS, torch.set_num_threads)
if [ -n "${CWT_BENCH_THREADS:-}" ]; then export CWT_BENCH_THREADS CWT_CPU_THREADS="$CWT_BENCH_THREADS"; fi
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
    local name="$1" c=() t=() cw="" pt="" rs="" gf=""
    shift
    while [ "$1" != "--" ]; do c+=("$1"); shift; done
    shift
    t=("$@")
    for _ in $(seq "$pairs"); do
        local a b
        a=$("$eng/bench_train" "${c[@]}" | tee -a "$out" | val images_per_s)
        gf="$gf $(val gflop_per_s <"$out")"
        b=$("$py" "$here/torch_bench.py" "${t[@]}" | tee -a "$out" | val images_per_s)
        cw="$cw $a" pt="$pt $b" rs="$rs $(ratio "$a" "$b")"
    done
    printf -v "${name}_cwt" '%s' "$(echo "$cw" | median)"
    printf -v "${name}_pt" '%s' "$(echo "$pt" | median)"
    printf -v "${name}_r" '%s' "$(echo "$rs" | median)"
    printf -v "${name}_lo" '%s' "$(echo "$rs" | lo)"
    printf -v "${name}_hi" '%s' "$(echo "$rs" | hi)"
    printf -v "${name}_gf" '%s' "$(echo "$gf" | median)"
    printf -v "${name}_all" '%s' "$(echo "$rs" | sed 's/^ //')"
}

rsteps=$((steps / 12 + 1))
pairs_of cnn cnn-small 28 28 1 64 "$steps" -- cnn-small 28 28 1 64 "$steps"
pairs_of res resnet 64 64 3 64 "$rsteps" 8 -- resnet 64 64 3 64 "$rsteps" 8
bsteps=$((steps / 50 + 2))
pairs_of r18s resnet 32 32 3 64 "$bsteps" 18 -- resnet 32 32 3 64 "$bsteps" 18
pairs_of r18l resnet 128 128 3 32 "$bsteps" 18 -- resnet 128 128 3 32 "$bsteps" 18
# The Vulkan backend on lavapipe, once, for comparison.
cnn_vk=$(CWT_VK_DEVICE=lavapipe "$eng/bench_train" cnn-small 28 28 1 64 "$((steps / 4 + 1))" |
         val images_per_s)
res_vk=$(CWT_VK_DEVICE=lavapipe "$eng/bench_train" resnet 64 64 3 64 2 8 | val images_per_s)
gemm=$(CWT_VK_DEVICE=vulkan "$eng/bench_gemm" 1024 2048 | tee -a "$out")
dev=$(sed -n 's/^device=//p' "$out" | head -1)
backend=$(sed -n 's/^backend=//p' "$out" | head -1)
torchv=$(sed -n 's/^torch=\([^ ]*\).*/\1/p' "$out" | head -1)
section=$(cat <<EOT
## Training engine

Measured $(date -u +%Y-%m-%d) at commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null ||
echo none), nproc $(nproc), CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1),
load average before the run $(cut -d' ' -f1-3 /proc/loadavg).
Engine: backend $backend on $dev ($CWT_VK_DEVICE), threads on both sides: ${CWT_BENCH_THREADS:-all cores}. Baseline: PyTorch $torchv on the CPU, same
run, same machine. Training: SGD momentum 0.9, synthetic data, images/s after warm-up. $pairs
back-to-back pairs per model (cwt then PyTorch; cnn-small $steps steps, resnet-8 $rsteps,
resnet-18 $bsteps): medians of each side and the median of the per-pair ratios, with their
range and every pair's ratio. GFLOP/s: 3x the forward multiply-adds x2 (bench_train).

| model | input, batch | cwt img/s | cwt GFLOP/s | PyTorch CPU img/s | cwt / PyTorch (median) | range | every pair |
|---|---|---|---|---|---|---|---|
| cnn-small | 28x28x1, 64 | $cnn_cwt | $cnn_gf | $cnn_pt | $cnn_r | $cnn_lo - $cnn_hi | $cnn_all |
| resnet-8 | 64x64x3, 64 | $res_cwt | $res_gf | $res_pt | $res_r | $res_lo - $res_hi | $res_all |
| resnet-18 | 32x32x3, 64 | $r18s_cwt | $r18s_gf | $r18s_pt | $r18s_r | $r18s_lo - $r18s_hi | $r18s_all |
| resnet-18 | 128x128x3, 32 | $r18l_cwt | $r18l_gf | $r18l_pt | $r18l_r | $r18l_lo - $r18l_hi | $r18l_all |
| cnn-small, Vulkan on lavapipe, one run | 28x28x1, 64 | $cnn_vk | | $cnn_pt | $(ratio "$cnn_vk" "$cnn_pt") | | |
| resnet-8, Vulkan on lavapipe, one run | 64x64x3, 64 | $res_vk | | $res_pt | $(ratio "$res_vk" "$res_pt") | | |

The last two rows are the Vulkan backend's texel-fetch kernels (shaders/gemm_cpu.comp) on
lavapipe in the same run. PyTorch's speed here is bimodal (now and then a whole run at about
twice its usual speed), hence the wide range of the pairs.

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
