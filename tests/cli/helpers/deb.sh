# build_deb OUTDIR: builds the Debian package of the build tree that holds $CWTCTL (the folder
# above cli/cwtctl with CPackConfig.cmake) into OUTDIR and prints its path. Sourced by the
# package tests; needs CWTCTL.
build_deb() {
    local out=$1 b
    b=$(cd "$(dirname "$CWTCTL")" && pwd)
    while [[ $b != / && ! -f $b/CPackConfig.cmake ]]; do b=$(dirname "$b"); done
    if [[ ! -f $b/CPackConfig.cmake ]]; then
        echo "no CPackConfig.cmake above $CWTCTL" >&2
        return 1
    fi
    mkdir -p "$out"
    if ! (cd "$b" && cpack --config CPackConfig.cmake -G DEB -B "$out") >"$out/cpack.log" 2>&1; then
        cat "$out/cpack.log" >&2
        echo "cpack failed" >&2
        return 1
    fi
    ls "$out"/*.deb
}
