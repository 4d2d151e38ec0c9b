#!/bin/sh
# A tenant of the walkthrough (vagrant/README.md of ovn-mesos): its router, one network, and
# its gateway router on this host's NIC given to OVN (the NIC's address moves to the gateway
# router). Run on the gateway host, after ../../provisioning/setup-common.sh.
#
# Parameters (environment):
#   TENANT, NETWORK, SUBNET      e.g. coke, coke1, 192.168.1.0/24 (tasks name the network in
#                                their logical_switch label)
#   CLUSTER_SUBNET               every network of the tenant, e.g. 192.168.0.0/16
#   PHYSICAL_IP, DEFAULT_GW      the gateway router's address (IP/LEN) and the physical
#                                network's router
#   PHYSICAL_INTERFACE           the NIC given to the tenant's gateway router, e.g. enp0s9;
#                                optional on the first run: the NIC that holds PHYSICAL_IP's
#                                address (gateway-init moves the address off it)
set -eu
: "${TENANT:?}" "${NETWORK:?}" "${SUBNET:?}" "${CLUSTER_SUBNET:?}"
: "${PHYSICAL_IP:?}" "${DEFAULT_GW:?}"
if [ -z "${PHYSICAL_INTERFACE:-}" ]; then
    PHYSICAL_INTERFACE=$(ip -o -4 addr show | awk -v ip="${PHYSICAL_IP%/*}" 'split($4, a, "/") && a[1] == ip {print $2; exit}')
fi
if [ -z "$PHYSICAL_INTERFACE" ]; then
    # a re-run: gateway-init gave the NIC (and its address) to OVN; it is the br-int port
    # whose iface-id gateway-init named after it. One such port only, or ask for the name.
    sysid=$(ovs-vsctl get Open_vSwitch . external_ids:system-id | tr -d '"')
    found=""
    for port in $(ovs-vsctl list-ports br-int); do
        if [ "$(ovs-vsctl get interface "$port" external_ids:iface-id 2>/dev/null | tr -d '"')" = "${port}_$sysid" ]; then
            found="$found $port"
        fi
    done
    if [ "$(echo $found | wc -w)" != 1 ]; then
        echo "setup-tenant.sh: set PHYSICAL_INTERFACE (no NIC holds ${PHYSICAL_IP%/*}; gateway NICs in br-int:${found:- none})" >&2
        exit 1
    fi
    PHYSICAL_INTERFACE=$(echo $found)
fi

ovn-mesos-init tenant-init --tenant-name "$TENANT"
ovn-mesos-init network-init --tenant-name "$TENANT" --network-name "$NETWORK" --subnet "$SUBNET"
ovn-mesos-init gateway-init --tenant-name "$TENANT" --cluster-ip-subnet "$CLUSTER_SUBNET" \
    --physical-interface "$PHYSICAL_INTERFACE" --physical-ip "$PHYSICAL_IP" --default-gw "$DEFAULT_GW"
