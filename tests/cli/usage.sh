#!/usr/bin/env bash
# usage.sh - a mistyped command or option fails fast with one sentence on stderr and exit 2,
# naming the closest command or option when the word looks like a typo of one; a word that
# resembles nothing points to --help instead.
set -euo pipefail
T="$CWT_TEST_TMP/usage.$$"
rm -rf "$T"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
export CWT_CONFIG="$T/no-such-site.conf"
. "$CWT_SRC/tests/cli/helpers/expect.sh"

one_line() { [ "$(wc -l <"$T/err")" -eq 1 ] || fail "more than one line: $(cat "$T/err")"; }

expect 2 "unknown command 'stauts'; did you mean 'status'?" "$CWTCTL" stauts
one_line
expect 2 "unknown command 'ingset'; did you mean 'ingest'?" "$CWTCTL" ingset x
expect 2 "unknown command 'simulte'; did you mean 'simulate'?" "$CWTCTL" simulte
expect 2 "unknown command 'frobnicate'; run 'cwtctl --help'" "$CWTCTL" frobnicate
one_line
expect 2 "unknown option '--jsn'; did you mean '--json'?" "$CWTCTL" --jsn
one_line
expect 2 "unknown option '--verbos'; did you mean '--verbose'?" "$CWTCTL" --verbos status
expect 2 "unknown option '-q' before the command" "$CWTCTL" -q

# The commands' own options: one sentence, no usage text.
expect 2 "bundle seal: unknown option '--outptu'; did you mean '--output'?" \
    "$CWTCTL" bundle seal --outptu x
one_line
expect 2 "model export: unknown option '--ouput'; did you mean '--output'?" \
    "$CWTCTL" model export --ouput f
expect 2 "audit show: unknown option '--jsn'; did you mean '--json'?" "$CWTCTL" audit show --jsn
expect 2 "eval: unknown option '--splt'; did you mean '--split'?" "$CWTCTL" eval --splt val
one_line
expect 2 "train: option '--epochs' needs a value" "$CWTCTL" train --epochs
one_line
expect 2 "init: unknown option '-x' (see 'cwtctl init --help')" "$CWTCTL" init -x
expect 2 "chain verify: unknown option '--frob' (see 'cwtctl chain verify --help')" \
    "$CWTCTL" chain verify --frob
expect 2 "ingest: unknown option '--val-fracton'; did you mean '--val-fraction'?" \
    "$CWTCTL" ingest --val-fracton 0.2 x
expect 2 "simulate: unknown option '--heurstics'; did you mean '--heuristics'?" \
    "$CWTCTL" simulate --heurstics cwt
expect 2 "simulate: option '--sites' needs a value" "$CWTCTL" simulate --sites
expect 2 "data: unknown option '--jsno'; did you mean '--json'?" "$CWTCTL" data --jsno

# An auditor without a site is told to pass the roster, not to create a site.
expect 2 "bundle verify needs the federation's roster: pass --roster FILE" \
    "$CWTCTL" bundle verify "$T/any.cwtb"
one_line

# "cwtctl GROUP SUB --help" prints the usage on stdout and exits 0 for every subcommand the
# guides name, without a site.
for cmd in "key show" "key check" "key rotate" "roster add" "roster check" "roster show" \
    "roster replace-key" "model fingerprint" "model export" "bundle verify" "chain verify" \
    "audit verify"; do
    # shellcheck disable=SC2086 # the words of the command
    "$CWTCTL" $cmd --help >"$T/out" 2>"$T/err" || fail "cwtctl $cmd --help: $(cat "$T/err")"
    grep -q "^usage: " "$T/out" || fail "cwtctl $cmd --help prints no usage: $(cat "$T/out")"
done
echo "usage: ok"
