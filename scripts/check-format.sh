#!/bin/sh
# Fails if any tracked C/C++ file is not formatted with the repo's .clang-format.
# The .clang-format was written for clang-format 14 (Debian 12); other major versions format
# some constructs differently, so they would report files that are fine: refuse them with one
# sentence instead of a list of files.
set -eu
cd "$(dirname "$0")/.."
WANT_MAJOR=14
CLANG_FORMAT=${CLANG_FORMAT:-}
if [ -z "$CLANG_FORMAT" ]; then
    for c in clang-format-$WANT_MAJOR clang-format; do
        if command -v "$c" >/dev/null 2>&1; then
            CLANG_FORMAT=$c
            break
        fi
    done
fi
if [ -z "$CLANG_FORMAT" ] || ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
    echo "check-format: clang-format is not installed (Debian package clang-format; 'make deps' installs it)" >&2
    exit 1
fi
major=$("$CLANG_FORMAT" --version | sed -n 's/.*clang-format version \([0-9][0-9]*\).*/\1/p')
if [ "$major" != "$WANT_MAJOR" ]; then
    echo "check-format: $CLANG_FORMAT is version ${major:-unknown}, but .clang-format is written for clang-format $WANT_MAJOR (set CLANG_FORMAT to a clang-format-$WANT_MAJOR)" >&2
    exit 1
fi
files=$(git ls-files '*.c' '*.h' '*.cpp')
[ -n "$files" ] || exit 0
bad=""
for f in $files; do
    [ -f "$f" ] || continue
    if ! "$CLANG_FORMAT" --dry-run --Werror "$f" >/dev/null 2>&1; then
        bad="$bad $f"
    fi
done
if [ -n "$bad" ]; then
    echo "clang-format: these files need 'make format':$bad" >&2
    exit 1
fi
