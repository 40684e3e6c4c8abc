#!/bin/sh
# run.sh - builds the libFuzzer harnesses with clang (ASan + UBSan) straight from the sources
# and runs them from the seed corpus in tests/fuzz/corpus/<harness>/.
#
#   tests/fuzz/run.sh build            build the harnesses into $CWT_FUZZ_BUILD (build-fuzz/)
#   tests/fuzz/run.sh test HARNESS [S] build, then run one harness for S seconds (default 20),
#                                      seed 1 (CWT_FUZZ_SEED overrides): make test
#   tests/fuzz/run.sh long [S]         every harness for S seconds each (default 300), random
#                                      seeds: make fuzz
#   tests/fuzz/run.sh corpus           regenerate the seed corpus (then commit it)
#
# Harnesses: bundle, bundle_open (re-signs each input, so opening is fuzzed past the
# signature), safetensors, roster, audit_export, config (libsodium, LMDB, libconfig
# only); decode, csv, idx (also the cwtctl decoders: libpng, libjpeg, zlib, DCMTK in C++);
# proto, control, state (the daemon's message and request parsers and its saved-state codec). New inputs go to a scratch corpus
# under the build folder, never into the repository; crashes are written to
# $CWT_FUZZ_BUILD/artifacts/.
set -eu

SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${CWT_FUZZ_BUILD:-$SRC/build-fuzz}
CC=${CLANG:-clang}
CXX=${CLANGXX:-${CC}++}
HARNESSES="bundle bundle_open safetensors roster audit_export config decode csv idx proto control state"
CFLAGS="-std=c17 -D_GNU_SOURCE -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -g -O1 -fno-omit-frame-pointer -I$SRC -Wall -Wextra -Wno-missing-field-initializers"
CXXFLAGS="-std=c++17 -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -g -O1 -fno-omit-frame-pointer -I$SRC -Wall -Wextra"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
LIBS="$(pkg-config --libs libsodium lmdb libconfig jansson) -lpthread -lm"
IMAGE_LIBS="$(pkg-config --libs libpng libjpeg zlib)"
DCMTK_LIBS="-ldcmimage -ldcmimgle -ldcmjpeg -ldcmjpls -ldcmdata -loflog -lofstd"

JOBS=$(nproc 2>/dev/null || echo 2)

obj_of() { echo "$OUT/obj/$(basename "$(dirname "$1")")_$(basename "$1" | tr . _).o"; }

# Whether TARGET must be rebuilt from the files after it: missing, older than one of them, or
# (for objects) older than any header.
stale() {
    target=$1
    shift
    [ -f "$target" ] || return 0
    for f in "$@"; do [ "$f" -nt "$target" ] && return 0; done
    case "$target" in
    *.o) [ -n "$(find "$SRC" -name '*.h' -newer "$target" -print -quit)" ] ;;
    *) return 1 ;;
    esac
}

compile() { # SOURCE: C or C++ by its name, into $OUT/obj
    case "$1" in
    *.cpp) $CXX $CXXFLAGS $SAN -fsanitize=fuzzer-no-link -c "$1" -o "$(obj_of "$1")" ;;
    *) $CC $CFLAGS $SAN -fsanitize=fuzzer-no-link -c "$1" -o "$(obj_of "$1")" ;;
    esac
}

link() { # HARNESS: the decoders need C++ (DCMTK), the daemon's parsers their objects
    case "$1" in
    decode | csv | idx)
        $CXX $SAN -fsanitize=fuzzer "$(obj_of "$SRC/tests/fuzz/fuzz_$1.c")" $cli_objs $objs \
            $IMAGE_LIBS $DCMTK_LIBS -lseccomp $LIBS -o "$OUT/fuzz_$1"
        ;;
    bundle_open) # its clock is fixed: cwt_now() calls go to the harness's __wrap_cwt_now
        $CC $SAN -fsanitize=fuzzer -Wl,--wrap=cwt_now "$(obj_of "$SRC/tests/fuzz/fuzz_$1.c")" \
            $objs $LIBS -o "$OUT/fuzz_$1"
        ;;
    proto | control | state)
        $CC $SAN -fsanitize=fuzzer "$(obj_of "$SRC/tests/fuzz/fuzz_$1.c")" $daemon_objs $objs \
            $LIBS -o "$OUT/fuzz_$1"
        ;;
    *)
        $CC $SAN -fsanitize=fuzzer "$(obj_of "$SRC/tests/fuzz/fuzz_$1.c")" $objs $LIBS \
            -o "$OUT/fuzz_$1"
        ;;
    esac
}

# Runs "$@" in the background, at most $JOBS at a time; wait_all collects the failures.
pids=""
spawn() {
    "$@" &
    pids="$pids $!"
    if [ "$(echo $pids | wc -w)" -ge "$JOBS" ]; then wait_all; fi
}
wait_all() {
    failed=0
    for p in $pids; do wait "$p" || failed=1; done
    pids=""
    [ "$failed" -eq 0 ] || { echo "run.sh: build failed" >&2; exit 1; }
}

build() {
    mkdir -p "$OUT/obj" "$OUT/artifacts"
    objs="" cli_objs="" daemon_objs="" harness_objs=""
    for src in "$SRC"/common/*.c "$SRC"/config/*.c "$SRC"/storage/*.c "$SRC"/crypto/*.c; do
        objs="$objs $(obj_of "$src")"
    done
    # Only the decoders (decode/, with the sandbox of their child), the ingest engine of cli/
    # and its progress line (the rest needs the engine), and only the daemon's parsers.
    for src in "$SRC"/decode/*.c "$SRC"/decode/*.cpp "$SRC"/sandbox/*.c "$SRC"/cli/ingest.c \
        "$SRC"/cli/progress.c; do
        cli_objs="$cli_objs $(obj_of "$src")"
    done
    # control.c builds its replies with cli/cli_json.c (UTF-8 mending), which cli_common.c serves.
    daemon_objs="$(obj_of "$SRC/daemon/proto.c") $(obj_of "$SRC/daemon/control.c") $(obj_of "$SRC/cycle/cycle.c")"
    daemon_objs="$daemon_objs $(obj_of "$SRC/cli/cli_json.c") $(obj_of "$SRC/cli/cli_common.c")"
    for h in $HARNESSES; do harness_objs="$harness_objs $(obj_of "$SRC/tests/fuzz/fuzz_$h.c")"; done
    for src in "$SRC"/common/*.c "$SRC"/config/*.c "$SRC"/storage/*.c "$SRC"/crypto/*.c \
        "$SRC"/decode/*.c "$SRC"/decode/*.cpp "$SRC"/sandbox/*.c "$SRC"/cli/ingest.c \
        "$SRC"/cli/progress.c \
        "$SRC"/daemon/proto.c "$SRC"/daemon/control.c "$SRC"/cycle/cycle.c \
        "$SRC"/cli/cli_json.c "$SRC"/cli/cli_common.c "$SRC"/tests/fuzz/fuzz_*.c; do
        if stale "$(obj_of "$src")" "$src"; then spawn compile "$src"; fi
    done
    wait_all
    for h in $HARNESSES; do
        # shellcheck disable=SC2086 # word splitting of the object lists is intended
        if stale "$OUT/fuzz_$h" $objs $cli_objs $daemon_objs "$(obj_of "$SRC/tests/fuzz/fuzz_$h.c")"; then
            spawn link "$h"
        fi
    done
    wait_all
    # shellcheck disable=SC2086
    if stale "$OUT/gen_corpus" "$SRC/tests/fuzz/gen_corpus.c" "$SRC/tests/fuzz/fuzz_common.h" $objs \
        "$SRC/daemon/proto.c" "$SRC/cycle/cycle.c"; then
        $CC $CFLAGS $SAN "$SRC/tests/fuzz/gen_corpus.c" "$SRC/daemon/proto.c" "$SRC/cycle/cycle.c" \
            $objs $IMAGE_LIBS \
            $LIBS -o "$OUT/gen_corpus"
    fi
}

locked_build() {
    # ctest may start several harnesses at once: one builds, the others wait for it.
    mkdir -p "$OUT"
    (
        flock 9
        build
    ) 9>"$OUT/.lock"
}

# Inputs that once crashed or hung a parser live in tests/fuzz/regress/<harness>/, apart from
# the generated seed corpus, so that `run.sh corpus` never drops them.
# SEED 0 is a random seed (libFuzzer's own choice).
run() { # run HARNESS SECONDS SEED
    # lsan.supp names libconfig's leaking functions; LeakSanitizer finds those names with
    # llvm-symbolizer, and without it reports the known leaks as new ones.
    command -v llvm-symbolizer >/dev/null 2>&1 || {
        echo "tests/fuzz: llvm-symbolizer is missing (Debian package llvm; 'make deps' installs it): LeakSanitizer needs it to apply lsan.supp" >&2
        exit 1
    }
    mkdir -p "$OUT/corpus/$1"
    set -- "$1" "$2" "$3"
    [ -d "$SRC/tests/fuzz/regress/$1" ] && set -- "$1" "$2" "$3" "$SRC/tests/fuzz/regress/$1"
    # An allocation over 1 GB returns NULL rather than counting as a crash: a parser may be asked for one by a few bytes (DCMTK allocates a
    # deflated value's declared length before inflating it), and in cwt it runs in the
    # decoder child, whose address-space limit makes it fail the same way. RSS over 2 GB
    # is still a finding.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1:max_allocation_size_mb=1024 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        LSAN_OPTIONS=suppressions="$SRC/tests/fuzz/lsan.supp" \
        "$OUT/fuzz_$1" -max_total_time="$2" -seed="$3" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$OUT/artifacts/$1-" -print_final_stats=1 \
        "$OUT/corpus/$1" "$SRC/tests/fuzz/corpus/$1" ${4:+"$4"}
}

case "${1:-}" in
build) locked_build ;;
test)
    [ -n "${2:-}" ] || { echo "usage: run.sh test HARNESS [SECONDS]" >&2; exit 2; }
    # A fixed seed: the short runs of `make test` must not pass or fail by chance (random
    # runs found three DCMTK/libpng bugs in CI, each failing one run in several). New bugs
    # are hunted with random seeds by `make fuzz`; what it finds goes to regress/.
    locked_build
    run "$2" "${3:-20}" "${CWT_FUZZ_SEED:-1}"
    ;;
long)
    locked_build
    for h in $HARNESSES; do run "$h" "${2:-300}" "${CWT_FUZZ_SEED:-0}"; done
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
