#!/usr/bin/env bash
# Install everything on a fresh Debian bookworm machine (root) and run the main job: a whole
# cluster on this machine, on real OVN (API server, watcher, CNI plugin, per-node agents, a
# gateway), with pods and services checked with real traffic. Extra arguments go to the demo
# (e.g. --keep, --nodes 3). The topology-only lab demo: .venv/bin/ovn-k8s-lab demo
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec .venv/bin/ovn-k8s-sandbox demo "$@"
