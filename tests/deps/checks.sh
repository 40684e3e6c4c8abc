#!/usr/bin/env bash
# The checks that guard a new machine fail loudly: check-format.sh without clang-format, or with
# another major version, says so in one sentence (not a list of every file); check-deps.py
# reports a command whose package install-deps.sh would not install.
set -euo pipefail
: "${CWT_SRC:?}" "${CWT_TEST_TMP:?}"
T=$CWT_TEST_TMP/deps_checks.$$
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
die() { echo "FAIL: $*" >&2; exit 1; }

# clang-format missing
if out=$(CLANG_FORMAT=$T/none sh "$CWT_SRC/scripts/check-format.sh" 2>&1); then
    die "check-format passed without clang-format"
fi
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || die "more than one line without clang-format: $out"
case $out in *"clang-format is not installed"*) ;; *) die "unclear message: $out" ;; esac

# another major version
printf '#!/bin/sh\necho "Debian clang-format version 17.0.6"\n' >"$T/clang-format"
chmod +x "$T/clang-format"
if out=$(CLANG_FORMAT=$T/clang-format sh "$CWT_SRC/scripts/check-format.sh" 2>&1); then
    die "check-format passed with clang-format 17"
fi
case $out in *"version 17, but .clang-format is written for clang-format 14"*) ;;
*) die "unclear message for a wrong version: $out" ;; esac

# check-deps: procps (pgrep, ps) comes only through cmake and the explicit entry; with both
# taken out of the list, the daemon tests' pgrep has no package, and the check must say so.
if out=$(CHECK_DEPS_WITHOUT="procps cmake" /usr/bin/python3 "$CWT_SRC/scripts/check-deps.py" 2>&1); then
    die "check-deps passed with procps and cmake left out"
fi
case $out in *"command 'pgrep'"*"package procps"*) ;; *) die "check-deps did not name pgrep: $out" ;; esac
echo "deps checks: ok"
