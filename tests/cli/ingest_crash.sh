#!/usr/bin/env bash
# An ingest killed with kill -9 in the middle of a run leaves a consistent store holding only
# whole committed batches; a second run skips what was stored and completes, and the final
# store equals that of one uninterrupted run (same counts per split and label: the seeded
# split does not depend on where the first run stopped).
set -euo pipefail
: "${CWTCTL:?}" "${CWT_TEST_TMP:?}" "${CWT_SRC:?}"

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
T="$CWT_TEST_TMP/ingest_crash.$$"
rm -rf "$T"
mkdir -p "$T"
child=
trap '[ -n "$child" ] && kill -9 "$child" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

N=20000
BATCH=64
"$PY" "$CWT_SRC/tests/cli/helpers/make_images.py" idx "$T/img-idx3-ubyte" "$T/lab-idx1-ubyte" \
    $N 28 28 10 3
for s in crashed clean; do
    "$CWTCTL" init --site-id "$s" --dir "$T/$s" >/dev/null
done
images() { # images SITE: the number of images in the site's store (0 before it exists)
    local out
    out=$("$CWTCTL" -c "$T/$1/cwtd.conf" data --json 2>/dev/null) || { echo 0; return; }
    "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["images"])' "$out"
}
ARGS=(ingest --batch $BATCH --val-fraction 0.1 --test-fraction 0.1 --seed 42
    "$T/img-idx3-ubyte" "$T/lab-idx1-ubyte")

# Small batches make the run long enough to be caught in the middle; kill it as soon as a
# few batches are visible to a reader in another process. (A plain command, not a function,
# so that $! is cwtctl itself and not a subshell.)
"$CWTCTL" -c "$T/crashed/cwtd.conf" "${ARGS[@]}" >"$T/first.out" 2>&1 &
child=$!
for _ in $(seq 1 300); do
    n=$(images crashed)
    [ "$n" -ge $((BATCH * 3)) ] && break
    sleep 0.05
done
kill -9 "$child"
wait "$child" 2>/dev/null || true
child=

n=$(images crashed)
echo "killed after $n images were committed"
[ "$n" -gt 0 ] || fail "nothing was committed before the kill"
[ "$n" -lt $N ] || fail "the run finished before it was killed; make it longer"
[ $((n % BATCH)) -eq 0 ] || fail "$n images is not a whole number of batches of $BATCH"

"$CWTCTL" -c "$T/crashed/cwtd.conf" "${ARGS[@]}" >"$T/second.out" 2>&1 || { cat "$T/second.out" >&2; fail "second run failed"; }
grep -qF "ingested $((N - n)), skipped as duplicate $n, rejected 0" "$T/second.out" ||
    { cat "$T/second.out" >&2; fail "second run did not finish the job"; }
"$CWTCTL" -c "$T/clean/cwtd.conf" "${ARGS[@]}" >"$T/clean.out" 2>&1 || { cat "$T/clean.out" >&2; fail "uninterrupted run failed"; }
"$CWTCTL" -c "$T/crashed/cwtd.conf" data --json >"$T/crashed.json"
"$CWTCTL" -c "$T/clean/cwtd.conf" data --json >"$T/clean.json"
cmp -s "$T/crashed.json" "$T/clean.json" || {
    cat "$T/crashed.json" "$T/clean.json" >&2
    fail "the resumed store differs from an uninterrupted run"
}
echo "ingest_crash: ok"
