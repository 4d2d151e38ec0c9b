#!/bin/sh
# Every host (docs/install.md steps 1 and 3): the packages, our commands, and this host's
# Open vSwitch settings, which ovn-controller and our commands read.
#
# Parameters (environment):
#   NODE_NAME      this host's name (the Kubernetes node name; also its OVN chassis name)
#   LOCAL_IP       this host's address for the geneve tunnels
#   CENTRAL_IP     the host of the NB and SB databases (TCP 6641 and 6642)
#   SYSTEM_ID      optional, default $NODE_NAME: must be unique per host
#   API_SERVER     optional: the Kubernetes API server (external_ids:k8s-api-server)
#   API_TOKEN      optional: its bearer token (external_ids:k8s-api-token)
#   API_CA_FILE    optional: the CA that signed its certificate (external_ids:k8s-ca-certificate)
#   OVN_K8S_SRC    optional, default /ovn-k8s: the checkout to install (the VM's synced folder)
#   SKIP_PACKAGES  1: the packages and our commands are installed and the OVS/OVN services
#                  are running already (CI runs this script so): install and restart nothing
set -eu
: "${NODE_NAME:?}" "${LOCAL_IP:?}" "${CENTRAL_IP:?}"
SYSTEM_ID="${SYSTEM_ID:-$NODE_NAME}"
OVN_K8S_SRC="${OVN_K8S_SRC:-/ovn-k8s}"

if [ "${SKIP_PACKAGES:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q openvswitch-switch python3-openvswitch ovn-host python3-venv \
        iproute2 iputils-ping curl
    if [ ! -x /opt/ovn-k8s/bin/pip ]; then
        python3 -m venv --system-site-packages /opt/ovn-k8s
    fi
    /opt/ovn-k8s/bin/pip install -q --disable-pip-version-check "$OVN_K8S_SRC"
    ln -sf /opt/ovn-k8s/bin/ovn-k8s-* /opt/ovn-k8s/bin/ovn-mesos-* /usr/local/bin/
    if [ -d /run/systemd/system ]; then
        # the daemons' units (docs/install.md step 5), pointing at the venv's executables
        for unit in "$OVN_K8S_SRC"/etc/systemd/*.service; do
            name=$(basename "$unit" .service)
            sed "s|^ExecStart=\([a-z0-9-]*\)|ExecStart=/opt/ovn-k8s/bin/\1|" "$unit" \
                > "/etc/systemd/system/$name.service"
            [ -e "/etc/default/$name" ] || cp "$OVN_K8S_SRC/etc/systemd/$name.default" "/etc/default/$name"
        done
        systemctl daemon-reload
    fi
fi

ovs-vsctl set Open_vSwitch . \
    external_ids:ovn-remote="tcp:$CENTRAL_IP:6642" \
    external_ids:ovn-nb="tcp:$CENTRAL_IP:6641" \
    external_ids:ovn-encap-ip="$LOCAL_IP" \
    external_ids:ovn-encap-type=geneve \
    external_ids:system-id="$SYSTEM_ID"
if [ -n "${API_SERVER:-}" ]; then
    ovs-vsctl set Open_vSwitch . external_ids:k8s-api-server="$API_SERVER"
fi
if [ -n "${API_TOKEN:-}" ]; then
    ovs-vsctl set Open_vSwitch . external_ids:k8s-api-token="$API_TOKEN"
fi
if [ -n "${API_CA_FILE:-}" ]; then
    ovs-vsctl set Open_vSwitch . external_ids:k8s-ca-certificate="$(cat "$API_CA_FILE")"
fi
if [ "${SKIP_PACKAGES:-0}" != 1 ]; then
    systemctl restart ovn-controller
fi
echo "$NODE_NAME: OVS configured (system-id $SYSTEM_ID, tunnels from $LOCAL_IP, databases at $CENTRAL_IP)"
