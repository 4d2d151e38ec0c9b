#!/bin/sh
# VM only (CI plays the agent's part, calling ovn-mesos-plugin as the agent would, and never
# runs this script): Mesos itself, with the agent flags of the original walkthrough.
#   ROLE=master  mesos-master (in-memory registry, one master, no ZooKeeper)
#   ROLE=agent   mesos-agent with the CNI isolator pointed at setup-agent.sh's directories
#
# Apache Mesos is retired and its packages are no longer published for current distributions:
# give MESOS_DEB, the URL or path of a Mesos .deb built for the box's distribution (or install
# Mesos yourself first). Without it, and without mesos-master/mesos-agent in PATH, this script
# says so and changes nothing; the OVN side of the walkthrough is provisioned regardless.
#
# Parameters (environment): ROLE, NODE_IP, MASTER_IP; optional MESOS_DEB
set -eu
: "${ROLE:?}" "${NODE_IP:?}" "${MASTER_IP:?}"
export DEBIAN_FRONTEND=noninteractive

if [ -n "${MESOS_DEB:-}" ] && ! command -v mesos-agent >/dev/null 2>&1; then
    deb="$MESOS_DEB"
    case "$deb" in
        http://*|https://*) curl -fsSLo /tmp/mesos.deb "$deb"; deb=/tmp/mesos.deb ;;
    esac
    apt-get install -y -q "$deb"
fi
if ! command -v mesos-agent >/dev/null 2>&1; then
    echo "setup-mesos.sh: no Mesos here (set MESOS_DEB): skipping the Mesos daemons" >&2
    exit 0
fi

unit() {  # unit NAME COMMAND...: a transient systemd unit, restarted on failure
    systemctl stop "$1" 2>/dev/null || true
    systemctl reset-failed "$1" 2>/dev/null || true
    name=$1; shift
    systemd-run --unit="$name" -p Restart=always "$@"
}
if [ "$ROLE" = master ]; then
    unit mesos-master "$(command -v mesos-master)" --ip="$NODE_IP" --work_dir=/var/lib/mesos/master \
        --registry=in_memory --quorum=1
else
    unit mesos-agent "$(command -v mesos-agent)" --ip="$NODE_IP" --master="$MASTER_IP:5050" \
        --work_dir=/var/lib/mesos/agent \
        --network_cni_config_dir=/var/lib/mesos/cni/config \
        --network_cni_plugins_dir=/var/lib/mesos/cni/plugins \
        --containerizers=mesos --isolation=filesystem/linux,docker/runtime --image_providers=docker
fi
