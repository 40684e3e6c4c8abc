#!/usr/bin/env bash
# bench/gpu.sh - on a machine with a real GPU: builds cwt, runs the engine op tests on the GPU
# (correctness first), then the same training and GEMM benchmarks as bench/train/run.sh, plus
# PyTorch on the CPU and on CUDA when it is available. A few minutes in all. Prints everything;
# paste the output into bench/RESULTS.md under "## Training engine on a GPU".
# Usage: bench/gpu.sh [BUILD_DIR]     (CWT_VK_DEVICE picks a device, default auto)
# On a machine without cwt's build dependencies, build here with
#   cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-gpu --target bench_gemm bench_train test_engine_ops test_engine_train cwtctl
# carry BUILD_DIR (and the shared libraries its binaries need) there and run it with
# CWT_BENCH_PREBUILT=1 (skip the build) and CWT_BENCH_LIBS=DIR (library path for cwt's binaries
# only, so that PyTorch keeps its own); CWTCTL=PROGRAM names the cwtctl to test end to end.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build-gpu}"
py="${PYTHON:-python3}"
if [ "${CWT_BENCH_PREBUILT:-0}" != 1 ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release > /dev/null
    cmake --build "$build" -j"$(nproc)" --target bench_gemm bench_train test_engine_ops \
        test_engine_train cwtctl
fi
cwt() { LD_LIBRARY_PATH="${CWT_BENCH_LIBS:+$CWT_BENCH_LIBS:}${LD_LIBRARY_PATH:-}" "$@"; }
echo "date=$(date -u +%Y-%m-%dT%H:%MZ) commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null ||
    echo none) nproc=$(nproc) cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
vulkaninfo --summary 2>/dev/null | sed -n '/Devices/,$p' | head -30 || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
# A failing test is reported at the end; the benchmarks still run (device time is scarce).
failed=""
echo "== op tests on the GPU"
cwt timeout 300 "$build/tests/engine/test_engine_ops" || failed="$failed test_engine_ops"
echo "== training tests on the GPU (validation layer, determinism, convergence)"
cwt timeout 300 "$build/tests/engine/test_engine_train" || failed="$failed test_engine_train"
# cwtctl end to end on the GPU (train, determinism, kill -9 + resume, eval, predict, PyTorch
# cross-check): tests/cli/train.sh with more epochs, so that its kill lands mid-run. CWTCTL
# may name a carried cwtctl (a wrapper that sets its library path) in prebuilt mode.
cwtctl_bin="${CWTCTL:-$build/cli/cwtctl}"
if [ -x "$cwtctl_bin" ]; then
    echo "== cwtctl train end to end (tests/cli/train.sh)"
    mkdir -p "$build/test-tmp"
    CWTCTL="$cwtctl_bin" CWT_SRC="$root" CWT_TEST_TMP="$build/test-tmp" CWT_TRAIN_TEST_EPOCHS=60 \
        timeout 300 bash "$root/tests/cli/train.sh" || failed="$failed tests/cli/train.sh"
else
    echo "== no cwtctl at $cwtctl_bin: end-to-end training test skipped"
fi
echo "== GEMM"
cwt timeout 120 "$build/engine/bench_gemm" 1024 2048 4096
echo "== training (cwt)"
cwt timeout 120 "$build/engine/bench_train" cnn-small 28 28 1 64 200
cwt timeout 120 "$build/engine/bench_train" resnet 64 64 3 64 50 8
cwt timeout 120 "$build/engine/bench_train" resnet 224 224 3 32 20 18
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
if [ -n "$failed" ]; then
    echo "FAILED:$failed"
    exit 1
fi
