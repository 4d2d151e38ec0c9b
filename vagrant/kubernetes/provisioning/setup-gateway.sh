#!/bin/sh
# A gateway node with one NIC shared by the host and OVN (docs/install.md steps 4 and 5): the
# NIC moves onto a bridge (its addresses and routes with it), gateway-init makes the gateway
# router on it, and the gateway helper keeps the host's own traffic working.
# Run after setup-minion.sh.
#
# Parameters (environment):
#   NODE_NAME, CLUSTER_SUBNET
#   PHYSICAL_IP         the gateway router's address on the physical network (IP/LEN): the
#                       host's own address on the shared NIC, which the router shares
#   PHYSICAL_INTERFACE  optional: the shared NIC (default: the one holding that address, or
#                       the NIC of the bridge br<NIC> holding it on a re-run); its bridge is br<NIC>
#   DEFAULT_GW          the physical network's router
#   DAEMONS             systemd or detach, as in setup-master.sh
set -eu
: "${NODE_NAME:?}" "${CLUSTER_SUBNET:?}" "${PHYSICAL_IP:?}" "${DEFAULT_GW:?}"
if [ -z "${PHYSICAL_INTERFACE:-}" ]; then
    holder=$(ip -o -4 addr show | awk -v ip="${PHYSICAL_IP%/*}" 'split($4, a, "/") && a[1] == ip {print $2; exit}')
    : "${holder:?no NIC holds ${PHYSICAL_IP%/*}: set PHYSICAL_INTERFACE}"
    case "$holder" in
        br*) if [ "$(ovs-vsctl port-to-br "${holder#br}" 2>/dev/null)" = "$holder" ]; then holder=${holder#br}; fi ;;
    esac
    PHYSICAL_INTERFACE=$holder
fi
if [ "${SKIP_PACKAGES:-0}" = 1 ]; then DAEMONS="${DAEMONS:-detach}"; else DAEMONS="${DAEMONS:-systemd}"; fi
BRIDGE="br$PHYSICAL_INTERFACE"

if [ "$(ovs-vsctl port-to-br "$PHYSICAL_INTERFACE" 2>/dev/null)" != "$BRIDGE" ]; then
    ovn-k8s-util nics-to-bridge "$PHYSICAL_INTERFACE"
fi
ovn-k8s-overlay gateway-init --node-name "$NODE_NAME" --cluster-ip-subnet "$CLUSTER_SUBNET" \
    --bridge-interface "$BRIDGE" --physical-ip "$PHYSICAL_IP" --default-gw "$DEFAULT_GW"

HELPER_OPTS="--physical-bridge=$BRIDGE --physical-interface=$PHYSICAL_INTERFACE"
if [ "$DAEMONS" = systemd ]; then
    sed -i "s|^OVN_K8S_GATEWAY_HELPER_OPTS=.*|OVN_K8S_GATEWAY_HELPER_OPTS=\"$HELPER_OPTS\"|" \
        /etc/default/ovn-k8s-gateway-helper
    systemctl enable ovn-k8s-gateway-helper
    systemctl restart ovn-k8s-gateway-helper
elif ! ovs-appctl -t ovn-k8s-gateway-helper version >/dev/null 2>&1; then   # a re-run keeps the running one
    # shellcheck disable=SC2086
    ovn-k8s-gateway-helper $HELPER_OPTS --pidfile --log-file --detach
fi
ovs-appctl -t ovn-k8s-gateway-helper status
