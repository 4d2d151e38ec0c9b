#!/usr/bin/env bash
# The whole test suite, on a fresh Debian bookworm machine as root: installs what it needs
# (OVS/OVN packages, the venv, the project), lints, then runs every test against real OVN.
# Extra arguments go to pytest (e.g. scripts/test.sh -k gateway -x).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
