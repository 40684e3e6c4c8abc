# expect.sh - fail() and expect() for the shell tests (keys, roster, audit, train, simulate),
# writing command output under $T (set by the sourcing test).

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect CODE PATTERN CMD... : CMD exits with CODE and its stderr contains PATTERN.
expect() {
    local want=$1 pattern=$2 rc=0
    shift 2
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(cat "$T/err")"
    grep -qF -- "$pattern" "$T/err" || fail "'$*' said '$(cat "$T/err")', expected '$pattern'"
}
