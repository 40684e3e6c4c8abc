#!/bin/sh
# Fails if any tracked C/C++ file is not formatted with the repo's .clang-format.
set -eu
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' '*.cpp' 2>/dev/null || true)
[ -n "$files" ] || exit 0
bad=""
for f in $files; do
    [ -f "$f" ] || continue
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        bad="$bad $f"
    fi
done
if [ -n "$bad" ]; then
    echo "clang-format: these files need 'make format':$bad" >&2
    exit 1
fi
