#!/usr/bin/env bash
# Prepare a Debian 12 (bookworm) machine for anklume development and its integration tests.
#
# Idempotent; run as root from anywhere:   scripts/setup.sh
#
# - adds the bookworm-backports suite (Incus is only packaged there for bookworm);
# - installs the daemons the integration tests start privately (incusd, docker-registry), the
#   tools used to build test images (busybox-static, mmdebstrap, ...), and a C compiler for the
#   test double of the NVIDIA driver's libcuda (tests/support/fake_libcuda.c); git (the lock's
#   merge and diff drivers are tested in real repositories) and openssl (TLS test certificates);
# - never enables or starts the packaged services (incus.service, docker-registry.service):
#   the tests run their own daemons in a private network namespace / on loopback;
# - creates the virtualenv .venv and installs the project with its test extras.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (apt-get, and the integration tests need network namespaces)"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

backports_pkgs=(incus-base incus-client dnsmasq-base)
main_pkgs=(busybox-static docker-registry iproute2 mmdebstrap xz-utils squashfs-tools gcc libc6-dev git openssl)
services=(incus.service incus.socket incus-user.service incus-user.socket
          incus-startup.service docker-registry.service)

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing() {
    local p
    for p in "$@"; do
        is_installed "$p" || printf '%s\n' "$p"
    done
}

have_systemd() {
    [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# --- apt sources ------------------------------------------------------------------------------
# Mirror whatever host is already configured for the main suite (deb822 .sources or one-line
# .list), and its format.
add_backports() {
    if grep -rqsE '(^|[[:space:]])bookworm-backports([[:space:]]|$)' \
            /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
        return 1
    fi
    local uri="" keyring=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' \
               /etc/apt/sources.list.d/debian.sources)"
        keyring="$(awk '/^Signed-By:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
    fi
    if [ -n "$uri" ]; then
        log "adding bookworm-backports (deb822, $uri)"
        {
            echo "Types: deb"
            echo "URIs: $uri"
            echo "Suites: bookworm-backports"
            echo "Components: main"
            if [ -n "$keyring" ]; then echo "Signed-By: $keyring"; fi
        } > /etc/apt/sources.list.d/bookworm-backports.sources
    else
        if [ -f /etc/apt/sources.list ]; then
            uri="$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)"
        fi
        uri="${uri:-http://deb.debian.org/debian}"
        log "adding bookworm-backports (one-line, $uri)"
        echo "deb $uri bookworm-backports main" \
            > /etc/apt/sources.list.d/bookworm-backports.list
    fi
    return 0
}

sources_changed=0
if add_backports; then sources_changed=1; fi

mapfile -t need_bp < <(missing "${backports_pkgs[@]}")
mapfile -t need_main < <(missing "${main_pkgs[@]}")

if [ "${#need_bp[@]}" -gt 0 ] || [ "${#need_main[@]}" -gt 0 ]; then
    # Remember which services were running before, so that we only stop what the install started.
    declare -A was_active=()
    if have_systemd; then
        for s in "${services[@]}"; do
            if systemctl is-active --quiet "$s" 2>/dev/null; then was_active[$s]=1; fi
        done
    fi

    log "apt-get update"
    apt-get update -qq
    if [ "${#need_bp[@]}" -gt 0 ]; then
        log "installing from bookworm-backports: ${need_bp[*]}"
        apt-get install -y -qq -t bookworm-backports --no-install-recommends "${need_bp[@]}"
    fi
    if [ "${#need_main[@]}" -gt 0 ]; then
        log "installing: ${need_main[*]}"
        apt-get install -y -qq --no-install-recommends "${need_main[@]}"
    fi

    if have_systemd; then
        for s in "${services[@]}"; do
            if [ -z "${was_active[$s]:-}" ] && systemctl is-active --quiet "$s" 2>/dev/null; then
                log "stopping and disabling $s (started by the package install)"
                systemctl disable --now "$s" >/dev/null 2>&1 || systemctl stop "$s" || true
            fi
        done
    else
        log "no systemd here: packaged services were not started"
    fi
elif [ "$sources_changed" -eq 1 ]; then
    log "packages already installed; backports source added for future installs"
else
    log "system packages already installed"
fi

# --- Python environment ---------------------------------------------------------------------
cd "$repo_root"
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
log "pip install -e '.[test,provision]'"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,provision]'
log "done"
