"""A NIC shared by the host and OVN: move it into an OVS bridge br<NIC> with its addresses and
routes, so the host keeps its connectivity while the NIC becomes shareable with a gateway
router (gateway-init --bridge-interface br<NIC>, for Kubernetes and Mesos alike).
"""

from __future__ import annotations

import logging

from ovn_k8s import naming, netlink
from ovn_k8s.errors import HostError
from ovn_k8s.local_ovsdb import LocalOvsdb

LOG = logging.getLogger(__name__)


def nic_to_bridge(ovs: LocalOvsdb, nic: str) -> str:
    bridge = naming.nic_bridge(nic)
    if ovs.bridge(nic) is not None:
        raise HostError(f"{nic} is itself an OVS bridge")
    owner = ovs.port_bridge(nic)
    if owner is not None and owner != bridge:
        raise HostError(f"{nic} is already a port of OVS bridge {owner}")
    mac = netlink.link_mac(nic)
    # Record before touching anything: removing the NIC's addresses drops its routes.
    addrs = [a for a in netlink.addresses(nic) if a.movable]
    routes = netlink.routes_via(nic)
    ovs.ensure_bridge(bridge, fail_mode="standalone", other_config={"hwaddr": mac},
                      external_ids={"bridge-id": bridge})
    ovs.ensure_port(bridge, nic)
    ovs.commit()
    netlink.wait_for_link(bridge)
    netlink.set_up(bridge)
    if addrs:
        for family in {a.family for a in addrs}:
            wanted = [a.cidr for a in addrs if a.family == family]
            netlink.flush_addresses(nic, family)
            kept = [a.cidr for a in netlink.addresses(bridge, family)]
            netlink.ensure_addresses(bridge, sorted(set(kept) | set(wanted)), family=family)
        for route in routes:
            netlink.add_route(route, bridge)
        LOG.info("%s: moved %d addresses and %d routes to %s", nic, len(addrs), len(routes), bridge)
    return bridge
