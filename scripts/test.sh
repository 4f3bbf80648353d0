#!/usr/bin/env bash
# The test command (README, CI): set the machine up, then run the whole suite,
# unit and integration tests (the latter start a private incusd in a network
# namespace and a loopback registry of their own).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
