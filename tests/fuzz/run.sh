#!/bin/sh
# run.sh - builds the libFuzzer harnesses with clang (ASan + UBSan) straight from the sources
# and runs them from the seed corpus in tests/fuzz/corpus/<harness>/.
#
#   tests/fuzz/run.sh build            build the harnesses into $CWT_FUZZ_BUILD (build-fuzz/)
#   tests/fuzz/run.sh test HARNESS [S] build, then run one harness for S seconds (default 20)
#   tests/fuzz/run.sh long [S]         every harness for S seconds each (default 300): make fuzz
#   tests/fuzz/run.sh corpus           regenerate the seed corpus (then commit it)
#
# Harnesses: bundle, safetensors, roster, audit_export, config (libsodium, LMDB, libconfig
# only); decode, csv, idx (also the cwtctl decoders: libpng, libjpeg, zlib, DCMTK in C++);
# proto, control (the daemon's message and request parsers). New inputs go to a scratch corpus
# under the build folder, never into the repository; crashes are written to
# $CWT_FUZZ_BUILD/artifacts/.
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${CWT_FUZZ_BUILD:-$SRC/build-fuzz}
CC=${CLANG:-clang}
CXX=${CLANGXX:-${CC}++}
HARNESSES="bundle safetensors roster audit_export config decode csv idx proto control"
CFLAGS="-std=c17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -I$SRC -Wall -Wextra"
CXXFLAGS="-std=c++17 -g -O1 -fno-omit-frame-pointer -I$SRC -Wall -Wextra"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
LIBS="$(pkg-config --libs libsodium lmdb libconfig) -lpthread -lm"
IMAGE_LIBS="$(pkg-config --libs libpng libjpeg zlib)"
DCMTK_LIBS="-ldcmimage -ldcmimgle -ldcmjpeg -ldcmjpls -ldcmdata -loflog -lofstd"

# Compiles one source into $OUT/obj (C or C++ by its name) unless the object is newer than it
# and than every header; prints the object's path.
compile() {
    obj="$OUT/obj/$(basename "$(dirname "$1")")_$(basename "$1" | tr . _).o"
    if [ ! -f "$obj" ] || [ "$1" -nt "$obj" ] || [ -n "$(find "$SRC" -name '*.h' -newer "$obj" -print -quit)" ]; then
        case "$1" in
        *.cpp) $CXX $CXXFLAGS $SAN -fsanitize=fuzzer-no-link -c "$1" -o "$obj" ;;
        *) $CC $CFLAGS $SAN -fsanitize=fuzzer-no-link -c "$1" -o "$obj" ;;
        esac
    fi
    echo "$obj"
}

build() {
    mkdir -p "$OUT/obj" "$OUT/artifacts"
    objs=""
    for src in "$SRC"/common/*.c "$SRC"/config/*.c "$SRC"/storage/*.c "$SRC"/crypto/*.c; do
        objs="$objs $(compile "$src")"
    done
    # Only the decoders and the ingest engine of cli/ (the rest needs the engine), and only
    # the daemon's parsers.
    cli_objs=""
    for src in "$SRC"/cli/decode*.c "$SRC"/cli/decode_dicom.cpp "$SRC"/cli/ingest.c; do
        cli_objs="$cli_objs $(compile "$src")"
    done
    daemon_objs="$(compile "$SRC/daemon/proto.c") $(compile "$SRC/daemon/control.c")"
    for h in $HARNESSES; do
        case "$h" in
        decode | csv | idx)
            $CXX $SAN -fsanitize=fuzzer "$(compile "$SRC/tests/fuzz/fuzz_$h.c")" $cli_objs $objs \
                $IMAGE_LIBS $DCMTK_LIBS $LIBS -o "$OUT/fuzz_$h"
            ;;
        proto | control)
            $CC $CFLAGS $SAN -fsanitize=fuzzer "$SRC/tests/fuzz/fuzz_$h.c" $daemon_objs $objs \
                $LIBS -o "$OUT/fuzz_$h"
            ;;
        *)
            $CC $CFLAGS $SAN -fsanitize=fuzzer "$SRC/tests/fuzz/fuzz_$h.c" $objs $LIBS \
                -o "$OUT/fuzz_$h"
            ;;
        esac
    done
    $CC $CFLAGS $SAN "$SRC/tests/fuzz/gen_corpus.c" "$SRC/daemon/proto.c" $objs $IMAGE_LIBS \
        $LIBS -o "$OUT/gen_corpus"
}

locked_build() {
    # ctest may start several harnesses at once: one builds, the others wait for it.
    mkdir -p "$OUT"
    (
        flock 9
        build
    ) 9>"$OUT/.lock"
}

run() { # run HARNESS SECONDS
    mkdir -p "$OUT/corpus/$1"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        LSAN_OPTIONS=suppressions="$SRC/tests/fuzz/lsan.supp" \
        "$OUT/fuzz_$1" -max_total_time="$2" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/artifacts/$1-" -print_final_stats=1 \
        "$OUT/corpus/$1" "$SRC/tests/fuzz/corpus/$1"
}

case "${1:-}" in
build) locked_build ;;
test)
    [ -n "${2:-}" ] || { echo "usage: run.sh test HARNESS [SECONDS]" >&2; exit 2; }
    locked_build
    run "$2" "${3:-20}"
    ;;
long)
    locked_build
    for h in $HARNESSES; do run "$h" "${2:-300}"; done
    ;;
corpus)
    locked_build
    rm -rf "$SRC/tests/fuzz/corpus"
    for h in $HARNESSES; do mkdir -p "$SRC/tests/fuzz/corpus/$h"; done
    "$OUT/gen_corpus" "$SRC/tests/fuzz/corpus"
    ;;
*)
    echo "usage: run.sh build | test HARNESS [SECONDS] | long [SECONDS] | corpus" >&2
    exit 2
    ;;
esac
