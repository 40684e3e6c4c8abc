#!/usr/bin/env bash
# bench/train/run.sh BUILD_DIR [STEPS] - runs the engine's training and GEMM benchmarks and the
# PyTorch CPU baseline in one go on this machine and rewrites the "## Training engine" section
# of bench/RESULTS.md with the numbers (other sections are left alone).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:?usage: run.sh BUILD_DIR [STEPS]}"
steps="${2:-20}"
py="${PYTHON:-/usr/bin/python3}"
eng="$build/engine"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

val() { sed -n "s/^$1=//p" | tail -1; }
cnn_cwt=$("$eng/bench_train" cnn-small 28 28 1 64 "$steps" | tee -a "$out" | val images_per_s)
res_cwt=$("$eng/bench_train" resnet 64 64 3 64 "$((steps / 4 + 1))" 8 | tee -a "$out" |
          val images_per_s)
cnn_pt=$("$py" "$here/torch_bench.py" cnn-small 28 28 1 64 "$steps" | tee -a "$out" |
         val images_per_s)
res_pt=$("$py" "$here/torch_bench.py" resnet 64 64 3 64 "$((steps / 4 + 1))" 8 | tee -a "$out" |
         val images_per_s)
# The implicit-GEMM kernels (what CPU devices used before gemm_cpu.comp), for comparison.
cnn_old=$(CWT_ENG_CPU_GEMM=0 "$eng/bench_train" cnn-small 28 28 1 64 "$((steps / 2 + 1))" |
          val images_per_s)
res_old=$(CWT_ENG_CPU_GEMM=0 "$eng/bench_train" resnet 64 64 3 64 2 8 | val images_per_s)
gemm=$("$eng/bench_gemm" 1024 2048 | tee -a "$out")
dev=$(sed -n 's/^device=//p' "$out" | head -1)
torchv=$(sed -n 's/^torch=\([^ ]*\).*/\1/p' "$out" | head -1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }

section=$(cat <<EOT
## Training engine

Measured $(date -u +%Y-%m-%d) at commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null ||
echo none), nproc $(nproc), CPU $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1),
load average before the run $(cut -d' ' -f1-3 /proc/loadavg).
Vulkan device: $dev. Baseline: PyTorch $torchv on the CPU, same run, same machine.
Training: SGD momentum 0.9, batch 64, synthetic data, images/s after one warm-up step.

| model | input | cwt img/s | PyTorch CPU img/s | cwt / PyTorch |
|---|---|---|---|---|
| cnn-small | 28x28x1 | $cnn_cwt | $cnn_pt | $(ratio "$cnn_cwt" "$cnn_pt") |
| resnet-8 | 64x64x3 | $res_cwt | $res_pt | $(ratio "$res_cwt" "$res_pt") |
| cnn-small, implicit kernels (CWT_ENG_CPU_GEMM=0) | 28x28x1 | $cnn_old | $cnn_pt | $(ratio "$cnn_old" "$cnn_pt") |
| resnet-8, implicit kernels (CWT_ENG_CPU_GEMM=0) | 64x64x3 | $res_old | $res_pt | $(ratio "$res_old" "$res_pt") |

On CPU devices the engine uses explicit im2col + the texel-fetch GEMM (shaders/gemm_cpu.comp);
the last two rows are the previous implicit-GEMM kernels in the same run.

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
