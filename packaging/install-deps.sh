#!/bin/sh
# Installs the Debian 12 packages cwt needs to build, test and run its demo.
# Every command, Python module and data file that the Makefile, scripts and tests use must come
# from a package named here or one they depend on: scripts/check-deps.py (the ctest
# deps/installed) checks that, so a tool installed by hand cannot hide a missing entry.
# clang-format: make test's format check; llvm: llvm-symbolizer, which LeakSanitizer needs to
# match tests/fuzz/lsan.supp's function names; procps: pgrep and ps in the daemon tests;
# debootstrap: scripts/fresh-root.sh, the newcomer check; iproute2: ss in the key process test.
# Idempotent and silent when everything is present; uses apt-get (and sudo when not root)
# only when something is missing.
set -eu

PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev clang-format llvm git procps python3
libsodium-dev liblmdb-dev lmdb-utils libconfig-dev libseccomp-dev libsystemd-dev libjansson-dev
libvulkan-dev libdnnl-dev vulkan-tools glslang-tools spirv-tools mesa-vulkan-drivers vulkan-validationlayers
libpng-dev libjpeg62-turbo-dev zlib1g-dev libdcmtk-dev dcmtk libcmocka-dev libopenblas-dev
dataset-fashion-mnist python3-pydicom python3-numpy python3-torch python3-jsonschema
dpkg-dev fakeroot lintian systemd systemd-container bash-completion groff-base debootstrap iproute2"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "cwt: installing Debian packages:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "cwt: need root or sudo to install:$missing" >&2
        exit 1
    }
    SUDO="sudo"
fi
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
