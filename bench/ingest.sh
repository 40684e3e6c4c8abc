#!/usr/bin/env bash
# Store and ingest benchmark: ingest rate of the 70,000 Fashion-MNIST IDX images, of 5,000
# generated 256x256 RGB PNGs resized to 64x64, and the random read rate of 28x28 images from
# the store. Baselines run in the same session on the same bytes.
#
# usage: bench/ingest.sh BUILD_DIR [RESULTS_FILE]   (prints the section; appends it if a
#        results file is named)
set -euo pipefail
BUILD=${1:?usage: bench/ingest.sh BUILD_DIR [RESULTS_FILE]}
RESULTS=${2:-}
CWTCTL="$BUILD/cli/cwtctl"
READER="$BUILD/bench/bench_store_read"
FM=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
SRC=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/cwt-bench-ingest.XXXXXX")
trap 'rm -rf "$W"' EXIT

secs() { # secs CMD...: wall seconds of CMD, its output discarded
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0) ? n / s : 0 }'; }

out=$(mktemp)
{
    echo "## Store and ingest"
    echo
    echo "- date: $(date -u +%Y-%m-%d), commit: $(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo none)"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
    echo "- store folder on: $(df -T "$W" | awk 'NR==2 {print $2}'), load average at start: $(cut -d" " -f1-3 /proc/loadavg) (the machine is shared: other builds and tests were running)"
    echo
} >"$out"

# 1. Fashion-MNIST, 70,000 images of 28x28x1 from the gzip'd IDX files Debian ships.
"$CWTCTL" init --site-id bench --dir "$W/fm" >/dev/null
t_fm=$(secs sh -c "'$CWTCTL' -c '$W/fm/cwtd.conf' ingest --val-fraction 0.1 \
    '$FM/train-images-idx3-ubyte.gz' '$FM/train-labels-idx1-ubyte.gz' &&
    '$CWTCTL' -c '$W/fm/cwtd.conf' ingest --split test \
    '$FM/t10k-images-idx3-ubyte.gz' '$FM/t10k-labels-idx1-ubyte.gz'")
t_re=$(secs "$CWTCTL" -c "$W/fm/cwtd.conf" ingest --val-fraction 0.1 \
    "$FM/train-images-idx3-ubyte.gz" "$FM/train-labels-idx1-ubyte.gz")
t_zcat=$(secs sh -c "zcat '$FM'/*-images-idx3-ubyte.gz '$FM'/*-labels-idx1-ubyte.gz > '$W/raw'")
t_dd=$(secs dd if="$W/raw" of="$W/raw.copy" bs=1M conv=fsync)
bytes=$("$CWTCTL" -c "$W/fm/cwtd.conf" data | awk '/^store/ {print $2}')
{
    echo "| Fashion-MNIST IDX, 70,000 images 28x28x1 | seconds | images/s |"
    echo "|---|---:|---:|"
    echo "| cwtctl ingest (gunzip, hash, store, default batching) | $t_fm | $(rate 70000 "$t_fm") |"
    echo "| re-ingest of the 60,000 train images (all duplicates) | $t_re | $(rate 60000 "$t_re") |"
    echo "| baseline: zcat of the same files | $t_zcat | $(rate 70000 "$t_zcat") |"
    echo "| baseline: dd of the $(($(stat -c %s "$W/raw") / 1048576)) MiB unpacked with fsync | $t_dd | $(rate 70000 "$t_dd") |"
    echo
    echo "Store size on disk after 70,000 images: $bytes MiB."
    echo
} >>"$out"

# 3. Random reads of 28x28 images from that store.
reads=$("$READER" "$W/fm/store" 5000000)
echo "- $reads" >>"$out"
echo >>"$out"

# 2. 5,000 PNGs of 256x256x3, stored at 64x64x3.
mkdir -p "$W/png/0" "$W/png/1"
"$PY" - "$W/png" <<'PYEOF'
import struct, sys, zlib
import numpy as np
root = sys.argv[1]
y, x = np.mgrid[0:256, 0:256]
gx, gy, gd = x.astype(np.uint8), y.astype(np.uint8), ((x + y) // 2).astype(np.uint8)
rng = np.random.default_rng(1)
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0))
for i in range(5000):
    a, b = (np.uint8(v) for v in rng.integers(1, 9, 2))
    pix = np.empty((256, 256, 3), np.uint8)   # gradients plus noise: every image distinct
    pix[..., 0] = gx * a + np.uint8(i % 256)
    pix[..., 1] = gy * b + np.uint8(i // 256)
    pix[..., 2] = gd + rng.integers(0, 8, (256, 256), dtype=np.uint8)
    raw = np.concatenate([np.zeros((256, 1), np.uint8), pix.reshape(256, 768)], 1).tobytes()
    png = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    open(f"{root}/{i % 2}/img{i:05d}.png", "wb").write(png)
PYEOF
"$CWTCTL" init --site-id bench2 --dir "$W/p" --input 64x64x3 --classes 2 >/dev/null
t_cat=$(secs sh -c "cat '$W'/png/*/*.png > /dev/null")
t_png=$(secs "$CWTCTL" -c "$W/p/cwtd.conf" ingest "$W/png")
t_pypng=$(secs "$PY" - "$W/png" <<'PYEOF'
import glob, sys, zlib
for f in glob.glob(sys.argv[1] + "/*/*.png"):
    d = open(f, "rb").read()
    zlib.decompress(d[41:-16])   # the one IDAT chunk: inflate only, no unfiltering
PYEOF
)
mb=$(du -sm "$W/png" | cut -f1)
{
    echo "| 5,000 PNGs 256x256x3 ($mb MiB) to 64x64x3 | seconds | images/s |"
    echo "|---|---:|---:|"
    echo "| cwtctl ingest (read, hash, libpng decode, area resize, store) | $t_png | $(rate 5000 "$t_png") |"
    echo "| baseline: Python zlib inflate of the same files (no unfilter, no resize) | $t_pypng | $(rate 5000 "$t_pypng") |"
    echo "| baseline: cat of the same files (page cache) | $t_cat | $(rate 5000 "$t_cat") |"
    echo
} >>"$out"

cat "$out"
if [ -n "$RESULTS" ]; then
    [ -f "$RESULTS" ] || printf '# Benchmark results\n\n' >"$RESULTS"
    { cat "$out"; echo; } >>"$RESULTS"
fi
rm -f "$out"
