#!/usr/bin/env bash
# Install everything on a fresh Debian bookworm machine (root) and run the main job: a real OVN
# cluster in network namespaces, built by ovn-k8s-overlay and checked with real packets.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/ovn-k8s-lab demo "$@"
