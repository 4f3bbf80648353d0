#!/usr/bin/env bash
# The main job on the bundled example: lock, build, verify.
#
# Sets the machine up (scripts/setup.sh), serves the recorded real data of
# tests/fixtures from a loopback mirror (no other network is used), copies
# examples/gpu-workstation to a scratch directory and runs there:
#   anklume lock   (images, Ollama release and models from the mirror; the GPU
#                   from a recorded H200 inventory, since this host has none)
#   anklume build --no-apply
#   anklume verify
# then shows that a second lock and build change nothing; finally builds
# examples/quickstart and examples/llm-quickstart (Ollama with a model pinned by
# digest, Open WebUI wired to it; stand-ins for what cannot be downloaded here)
# into a private incusd in a network namespace and runs `anklume verify --live`
# on them (scripts/demo_incus.py).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup.sh

work="$(mktemp -d /tmp/anklume-demo.XXXXXX)"
mirror_pid=""
cleanup() {
    if [ -n "$mirror_pid" ]; then kill "$mirror_pid" 2>/dev/null || true; wait "$mirror_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

.venv/bin/python -m tests.support.mirror "$work/mirror.env" &
mirror_pid=$!
for _ in $(seq 100); do [ -s "$work/mirror.env" ] && break; sleep 0.1; done
[ -s "$work/mirror.env" ] || { echo "demo: the loopback mirror did not start" >&2; exit 1; }
set -a; . "$work/mirror.env"; set +a
export ANKLUME_CACHE_DIR="$work/cache"

project="$work/gpu-workstation"
cp -r examples/gpu-workstation "$project"
ank() { local cmd="$1"; shift; "$repo/.venv/bin/anklume" "$cmd" -f "$project/infra.yml" "$@"; }
gpu=(--gpu-inventory tests/fixtures/gpu/h200-incus/incus-resources.json
     --nvidia-smi tests/fixtures/gpu/h200-nvidia-smi/nvidia-smi-query.csv)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
step anklume lock "${gpu[@]}";   ank lock "${gpu[@]}"
step anklume build --no-apply;   ank build --no-apply
step anklume verify;             ank verify
step anklume lock --check;       ank lock --check
step anklume build --no-apply;   ank build --no-apply
cmp "$project/anklume.lock" lockfiles/gpu-workstation.lock \
    && echo "demo: the lock is byte-identical to the committed lockfiles/gpu-workstation.lock"
printf '\ndemo: the tree part is done; the project is in %s\n' "$project"

# Then the Incus part: examples/quickstart built for real into a private incusd.
cleanup
mirror_pid=""
.venv/bin/python scripts/demo_incus.py
