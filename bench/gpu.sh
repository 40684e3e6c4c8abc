#!/usr/bin/env bash
# bench/gpu.sh - on a machine with a real GPU: builds cwt, runs the engine op tests on the GPU
# (correctness first), then the same training and GEMM benchmarks as bench/train/run.sh, plus
# PyTorch on CUDA when it is available. A few minutes in all. Prints everything; paste the
# output into bench/RESULTS.md under "## Training engine" (GPU).
# Usage: bench/gpu.sh [BUILD_DIR]     (CWT_VK_DEVICE picks a device, default auto)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-gpu}"
py="${PYTHON:-python3}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" -j"$(nproc)" --target bench_gemm bench_train test_engine_ops
vulkaninfo --summary 2>/dev/null | sed -n '/Devices/,$p' | head -30 || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
echo "== op tests on the GPU"
timeout 300 "$build/tests/engine/test_engine_ops"
echo "== GEMM"
timeout 120 "$build/engine/bench_gemm" 1024 2048 4096
echo "== training (cwt)"
timeout 120 "$build/engine/bench_train" cnn-small 28 28 1 64 200
timeout 120 "$build/engine/bench_train" resnet 64 64 3 64 50 8
timeout 120 "$build/engine/bench_train" resnet 224 224 3 32 20 18
echo "== PyTorch"
for dev in cpu cuda; do
    has_cuda='import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'
    if [ "$dev" = cuda ] && ! "$py" -c "$has_cuda" 2>/dev/null; then
        echo "PyTorch CUDA not available"; continue
    fi
    timeout 120 "$py" "$root/bench/train/torch_bench.py" cnn-small 28 28 1 64 200 8 "$dev" || true
    timeout 120 "$py" "$root/bench/train/torch_bench.py" resnet 64 64 3 64 50 8 "$dev" || true
    timeout 120 "$py" "$root/bench/train/torch_bench.py" resnet 224 224 3 32 20 18 "$dev" || true
done
