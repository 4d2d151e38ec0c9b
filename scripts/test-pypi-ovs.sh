#!/usr/bin/env bash
# The unit and integration tests again, on PyPI's python-ovs (`ovs` 4.0) instead of Debian's
# python3-openvswitch (3.1): setup.py allows both, so both must pass (issue 11). A separate venv,
# without the system's site-packages, so Debian's `ovs` cannot leak in. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-pypi-ovs
OVS_VERSION=4.0.0
if [ ! -x "$VENV/bin/python" ] || [ "$("$VENV/bin/python" -c 'import ovs.version; print(ovs.version.VERSION)' 2>/dev/null)" != "$OVS_VERSION" ]; then
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "ovs==$OVS_VERSION"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
"$VENV/bin/python" -c 'import ovs, sys; assert "dist-packages" not in ovs.__file__, ovs.__file__'
exec "$VENV/bin/pytest" -p no:cacheprovider tests/unit tests/integration "$@"
