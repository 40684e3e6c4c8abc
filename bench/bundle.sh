#!/bin/sh
# bundle.sh - benchmark of weight bundles (issue 3 item 8): seal, verify and open of a
# 256 MiB payload against libsodium's raw secretstream over the same bytes in the same run,
# with each step's peak memory; appends a "## Bundles" section to bench/RESULTS.md.
#
#   bench/bundle.sh [MIB]      (default 256; scratch files in $TMPDIR)
#
# bundle_bench.c is compiled here straight from the sources with -O2, so the benchmark does
# not depend on a build folder.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
MIB=${1:-256}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cwt-bundle-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CC=${CC:-cc}

$CC -std=c17 -D_GNU_SOURCE -O2 -I"$SRC" -o "$WORK/bundle_bench" "$SRC/bench/bundle_bench.c" \
    "$SRC"/common/*.c "$SRC"/config/*.c "$SRC"/storage/*.c "$SRC"/crypto/*.c \
    $(pkg-config --libs libsodium lmdb libconfig) -lpthread -lm

B="$WORK/bundle_bench"
LOAD=$(cut -d' ' -f1 /proc/loadavg)
"$B" gen "$WORK/w.safetensors" "$MIB"
# Warm the page cache so that every step reads from memory.
cat "$WORK/w.safetensors" >/dev/null

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }
best() { # best STEP ARGS...: the fastest of three runs, and its peak memory
    bs="" bm=""
    for _ in 1 2 3; do
        line=$("$B" "$@")
        s=$(echo "$line" | field seconds)
        m=$(echo "$line" | field maxrss_kib)
        if [ -z "$bs" ] || awk "BEGIN { exit !($s < $bs) }"; then bs=$s bm=$m; fi
        if [ "$1" = open ]; then rm -f "$3"; fi
    done
    echo "$bs $bm"
}

set -- $(best raw "$WORK/w.safetensors"); raw_s=$1 raw_m=$2
set -- $(best blake "$WORK/w.safetensors"); b2_s=$1
set -- $(best seal "$WORK/w.safetensors" "$WORK/b.cwtb"); seal_s=$1 seal_m=$2
set -- $(best verify "$WORK/b.cwtb"); ver_s=$1 ver_m=$2
set -- $(best open "$WORK/b.cwtb" "$WORK/out.safetensors"); open_s=$1 open_m=$2
"$B" open "$WORK/b.cwtb" "$WORK/out.safetensors" >/dev/null
cmp "$WORK/w.safetensors" "$WORK/out.safetensors"

gbs() { awk "BEGIN { printf \"%.2f\", $MIB / 1024 / $1 }"; }
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $raw_s }"; }
mib() { awk "BEGIN { printf \"%.1f\", $1 / 1024 }"; }

RES="$SRC/bench/RESULTS.md"
[ -f "$RES" ] || printf '# Benchmark results\n' >"$RES"
# Replace an earlier "## Bundles" section (up to the next "## " heading).
awk 'BEGIN{skip=0} /^## Bundles/{skip=1; next} /^## /{skip=0} !skip' "$RES" >"$WORK/res"
cat >>"$WORK/res" <<EOT
## Bundles

\`bench/bundle.sh $MIB\`, $(date -u +%Y-%m-%d), $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)),
libsodium $(pkg-config --modversion libsodium). Payload: a $MIB MiB safetensors file (one F32 tensor),
page cache warm, best of 3. Peak memory is the process's maximum RSS. Load average when the run
started: $LOAD (other work on the machine slows every row alike; compare the ratios).

| step | seconds | GiB/s | x raw cipher | peak MiB |
|---|---|---|---|---|
| raw secretstream (payload in memory, 1 MiB chunks) | $raw_s | $(gbs "$raw_s") | 1.00 | $(mib "$raw_m") (holds the payload) |
| BLAKE2b-512, one core (for reference) | $b2_s | $(gbs "$b2_s") | $(ratio "$b2_s") | - |
| bundle seal (file to file) | $seal_s | $(gbs "$seal_s") | $(ratio "$seal_s") | $(mib "$seal_m") |
| bundle verify (auditor) | $ver_s | $(gbs "$ver_s") | $(ratio "$ver_s") | $(mib "$ver_m") |
| bundle open (file to file, all rules but the ledger) | $open_s | $(gbs "$open_s") | $(ratio "$open_s") | $(mib "$open_m") |

Seal = safetensors check + BLAKE2b-256 of the plaintext (the header needs it before the
first chunk is encrypted), then encryption with two hashing threads (signature digest and
file hash) running beside it. Open = a signature pass (two hashing threads) and, only once it
verifies, a decryption pass (a hashing thread beside it) followed by the streamed safetensors
check.

EOT
mv "$WORK/res" "$RES"
sed -n '/^## Bundles/,$p' "$RES"
