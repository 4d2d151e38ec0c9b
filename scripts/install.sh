#!/usr/bin/env bash
# Install everything ovn-k8s needs on Debian bookworm (run as root). Idempotent.
#   - Debian's OVS 3.1 / OVN 23.03 packages (daemons are NOT started: our labs start their own)
#   - a venv in .venv on Debian's python3 with --system-site-packages, so that ovsdbapp uses
#     python3-openvswitch and its C JSON parser (about 2x faster than PyPI's pure-Python ovs)
#   - the project itself, editable, with the test extra
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS="openvswitch-switch openvswitch-common python3-openvswitch ovn-central ovn-host ovn-common
      python3-venv iproute2 iputils-ping ethtool curl procps openssl kmod
      docker.io busybox-static
      containerd runc containernetworking-plugins util-linux"
missing=$(for p in $PKGS; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"
done)
if [ -n "$missing" ]; then
  # No systemd here: keep maintainer scripts from starting the system's OVS/OVN services.
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  trap '[ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import ovs' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# --- a real Kubernetes control plane for the tests (envtest layout; KUBEBUILDER_ASSETS wins) ---
# Unpacked from ../shared/k8s-assets when that exists and .k8s-assets lacks a binary; into a
# private directory first, so two installs at once never share a half-written file.
assets_src="$(dirname "$PWD")/shared/k8s-assets"
if [ -x "$assets_src/unpack.sh" ]; then
  complete=1
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
    [ -x ".k8s-assets/$b" ] || complete=0
  done
  if [ "$complete" = 0 ]; then
    tmp_assets=$(mktemp -d "$PWD/.k8s-assets.XXXXXX")
    "$assets_src/unpack.sh" "$tmp_assets" >/dev/null
    mkdir -p .k8s-assets
    mv -f "$tmp_assets"/* .k8s-assets/
    rmdir "$tmp_assets"
  fi
fi

# --- systemd units for the daemons (only where systemd runs; not enabled: configure first) ---
# ExecStart names the executable; point it at the one just installed in .venv.
if [ -d /run/systemd/system ]; then
  for unit in etc/systemd/*.service; do
    sed "s|^ExecStart=\([a-z0-9-]*\)|ExecStart=$PWD/.venv/bin/\1|" "$unit" \
      > "/etc/systemd/system/$(basename "$unit")"
    defaults="etc/systemd/$(basename "$unit" .service).default"
    [ -e "/etc/default/$(basename "$unit" .service)" ] || cp "$defaults" "/etc/default/$(basename "$unit" .service)"
  done
  systemctl daemon-reload
  echo "systemd units installed: systemctl enable --now ovn-k8s-watcher (NB host) / ovn-k8s-gateway-helper (shared-NIC gateways)"
fi
