#!/usr/bin/env bash
# Does a GPU container built by anklume compute on the pinned GPU?  One run, one summary
# (the steps: scripts/gpu_check.py).
#
#   scripts/gpu-check.sh --prepare [CARRY]  here, once (network, Incus installed, ../shared/device):
#                                           fill CARRY (default .devcarry, about 50 MB) with what the
#                                           GPU machine lacks: the Incus bundle and its start script,
#                                           dnsmasq and nft (for anklume's bridges), a Debian 12 image
#                                           with python3, the Python wheels
#   scripts/gpu-check.sh --dry-run          here, no GPU (root): every step on a private incusd of
#                                           the test harness, the GPU ones checked to be refused or
#                                           to fail cleanly
#   scripts/gpu-check.sh [CARRY]            on the GPU machine (root, an NVIDIA driver, no network,
#                                           no Incus): starts Incus from CARRY, then the real check;
#                                           about 2 minutes.  With the device tool:
#       run(carry=[".devcarry"], command="bash scripts/gpu-check.sh .devcarry", timeout_s=420)
#
# The summary also goes to $OUT/gpu-check.log when OUT is set (what the device tool brings back).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

#: the Python packages anklume needs that the GPU machine's image lacks (its KINDS list)
WHEELS=(msgspec blake3 rich-click pylxd requests-toolbelt ws4py cryptography cffi)

#: what anklume's bridges need from the host and the GPU machine lacks (../shared/device only
#: started Incus without a network): dnsmasq (DHCP and DNS of each bridge) and nft (its NAT)
TOOLS=(dnsmasq nft)

tools_bundle() {  # like ../shared/device/make-incus-bundle.sh, for TOOLS
    local out=$1 work bin
    work=$(mktemp -d)
    mkdir -p "$work/bin" "$work/lib"
    for bin in "${TOOLS[@]}"; do cp "$(command -v "$bin")" "$work/bin/"; done
    for bin in "$work"/bin/*; do ldd "$bin" | awk '$3 ~ /^\// {print $3}'; done | sort -u \
        | grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux)[.-]' | while read -r lib; do cp -L "$lib" "$work/lib/"; done
    tar -cJf "$out" -C "$work" .
    rm -rf "$work"
}

prepare() {
    local carry=${1:-.devcarry} shared=${ANKLUME_DEVICE_SHARED:-$REPO/../shared/device} exclude
    mkdir -p "$carry/image" "$carry/wheels"
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx "/$carry/" "$exclude" 2>/dev/null || echo "/$carry/" >> "$exclude"
    if [ ! -f "$carry/incus-bundle.tar.xz" ]; then
        bash "$shared/make-incus-bundle.sh" "$carry/incus-bundle.tar.xz"
    fi
    cp "$shared/start-incus.sh" "$carry/start-incus.sh"
    tools_bundle "$carry/tools.tar.xz"
    .venv/bin/python - "$carry/image" <<'EOF'
import shutil, sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.support.images import debian_gpu_check_image
files = debian_gpu_check_image()
for f in (files.meta, files.rootfs):
    shutil.copy(f, Path(sys.argv[1]) / f.name)
EOF
    rm -f "$carry"/wheels/*.whl
    local pins=() name version
    for name in "${WHEELS[@]}"; do
        version=$(.venv/bin/python -m pip show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')
        pins+=("$name${version:+==$version}")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$carry/wheels" "${pins[@]}"
    du -sh "$carry"
    echo "prepared $carry: run it on the GPU machine with carry [\"$carry\"]"
}

real() {
    local carry=${1:-.devcarry} log=${OUT:-/tmp}/gpu-check.log
    [ "$(id -u)" = 0 ] || { echo "gpu-check: must run as root (it starts Incus)" >&2; exit 1; }
    command -v nvidia-smi >/dev/null || { echo "gpu-check: FAILED: no nvidia-smi: no NVIDIA driver here" | tee "$log"; exit 1; }
    for f in start-incus.sh incus-bundle.tar.xz tools.tar.xz image/meta.tar.gz image/rootfs.tar.xz; do
        [ -e "$carry/$f" ] || { echo "gpu-check: $carry/$f missing: run scripts/gpu-check.sh --prepare first" >&2; exit 1; }
    done
    {
        echo "== $(date -u +%FT%TZ) on $(hostname): $(nvidia-smi --query-gpu=name,uuid,driver_version --format=csv,noheader)"
        if [ ! -S /var/lib/incus/unix.socket ]; then
            # dnsmasq and nft beside incusd (on its PATH and LD_LIBRARY_PATH, see start-incus.sh)
            mkdir -p /opt/incus-bundle && tar -xJf "$carry/tools.tar.xz" -C /opt/incus-bundle
            bash "$carry/start-incus.sh" "$carry/incus-bundle.tar.xz"
        fi
        # the driver's libraries must be in the linker cache, where anklume (and nvidia-container-cli) look
        ldconfig -p | grep -q 'libcuda\.so\.1 ' || { echo "libcuda.so.1 not in the linker cache: running ldconfig"; ldconfig; }
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/anklume-site "$carry"/wheels/*.whl
    } 2>&1 | tee "$log"
    export PATH="/opt/incus-bundle/bin:$PATH" PYTHONPATH="/tmp/anklume-site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
    set +e
    python3 scripts/gpu_check.py --image "$carry/image" --socket /var/lib/incus/unix.socket 2>&1 | tee -a "$log"
    exit "${PIPESTATUS[0]}"
}

case "${1:-}" in
    --prepare) shift; prepare "$@" ;;
    --dry-run)
        shift
        [ "$(id -u)" = 0 ] || { echo "gpu-check --dry-run: must run as root (a private incusd)" >&2; exit 1; }
        log=${OUT:-/tmp}/gpu-check-dry-run.log
        set +e
        .venv/bin/python scripts/gpu_check.py --dry-run "$@" 2>&1 | tee "$log"
        exit "${PIPESTATUS[0]}" ;;
    -h|--help) sed -n '2,18p' "$0" ;;
    *) real "$@" ;;
esac
