#!/usr/bin/env bash
# The whole test suite, on a fresh Debian bookworm machine as root: installs what it needs
# (OVS/OVN packages, the venv, the project), lints, then runs every test against real OVN.
# Without arguments it then runs the tests that exercise python-ovs again on PyPI's `ovs`
# (scripts/test-pypi-ovs.sh), since setup.py allows it as well as Debian's.
# Extra arguments go to pytest (e.g. scripts/test.sh -k gateway -x), for the first run only.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
.venv/bin/ruff check .
if [ $# -gt 0 ]; then
  exec .venv/bin/pytest "$@"
fi
# Two workers: most of the suite waits on daemons, so two halve its wall time on 2 cores.
# --dist loadfile keeps a module's tests (and its module-scoped lab) on one worker.
.venv/bin/pytest -n "${OVN_K8S_TEST_WORKERS:-2}" --dist loadfile
exec ./scripts/test-pypi-ovs.sh
