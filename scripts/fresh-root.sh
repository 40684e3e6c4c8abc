#!/usr/bin/env bash
# The newcomer check: run a command (the README's `make test` or `make demo`) on a minimal
# Debian 12 root with a clone of what is committed, nothing installed by hand.
#
#   scripts/fresh-root.sh [PROJECT_DIR] 'make test'      (as root; needs debootstrap, which it
#                                                         installs, and a Debian mirror)
#
# The command runs as root with CI=true and a plain environment. The root is made once with debootstrap (minbase plus git, make, sudo and ca-certificates:
# what it takes to clone the project and type its commands) in $FRESH/base (default
# /var/tmp/cwt-fresh); each run works in a throw-away copy of it, so every run starts from the
# same bare system. The mirror is the one this machine's apt uses. The copy is a mount point of
# its own and the root of its own mount namespace (see below). A ../shared beside the project is
# copied too (benchmarks' data; make test does not need it).
set -eu
if [ $# -eq 1 ]; then set -- "$(cd "$(dirname "$0")/.." && pwd)" "$1"; fi
[ $# -eq 2 ] || { echo "usage: fresh-root.sh [PROJECT_DIR] COMMAND" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "fresh-root.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
proj=$(cd "$1" && pwd)
cmd=$2
FRESH=${FRESH:-/var/tmp/cwt-fresh}

# The machine's Debian mirror: deb822 .sources files first, then the one-line format.
mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ {print $2}' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f"
    done
}
uri=$(mirror | grep -v security | head -n 1)
sec=$(mirror | grep security | head -n 1)
[ -n "$uri" ] || { echo "fresh-root.sh: no Debian mirror in this machine's apt sources" >&2; exit 1; }

command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
if [ ! -f "$FRESH/base/.ok" ]; then
    rm -rf "$FRESH/base"
    mkdir -p "$FRESH/base"
    debootstrap --variant=minbase --include=ca-certificates,git,make,sudo bookworm \
        "$FRESH/base" "$uri" >"$FRESH/debootstrap.log" 2>&1 ||
        { echo "fresh-root.sh: debootstrap failed, see $FRESH/debootstrap.log" >&2; exit 1; }
    cat >"$FRESH/base/etc/apt/sources.list" <<SRC
deb $uri bookworm main
deb $uri bookworm-updates main
deb ${sec:-$uri} bookworm-security main
SRC
    touch "$FRESH/base/.ok"
fi

run=$FRESH/run.$$
rm -rf "$run"
cp -a "$FRESH/base" "$run"
mkdir -p "$run/src"
git clone -q "$proj" "$run/src/project"
[ -d "$proj/../shared" ] && cp -a "$proj/../shared" "$run/src/shared"
cp /etc/resolv.conf "$run/etc/resolv.conf" 2>/dev/null || true
cleanup() {
    # Every mount was made in the run's own mount namespace and is gone with it; a process the
    # command left behind may still hold that namespace, but nothing is mounted under $run here.
    rm -rf "$run"
}
trap cleanup EXIT
# The copy becomes the root of a mount namespace of its own (pivot_root), not a chroot: the
# kernel refuses user namespaces to a chrooted process, and the containers that
# tests/cli/systemd_boot.sh boots from `/` need one. The copy is a mount
# point, so inside it `/` is a file system, as on a machine (findmnt and overlays of / need that).
# /proc is the host's (the same PID namespace, as under chroot).
unshare --mount --propagation private /bin/bash -euc '
run=$1
mount --bind "$run" "$run"
mount --bind /proc "$run/proc"
for m in sys dev; do
    mount --rbind "/$m" "$run/$m"
done
cd "$run"
pivot_root . mnt
cd /
umount -l /mnt
exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 TERM="${TERM:-dumb}" CI=true /bin/bash -c "cd /src/project && $2"
' fresh-root "$run" "$cmd"
