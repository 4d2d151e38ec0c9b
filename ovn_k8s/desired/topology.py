"""The cluster topology as desired NB rows (pure).

    pods -- LS <node> --- stor/rtos ---+
    mgmt port k8s-<node>               |
                          LR <master> (cluster router)   ECMP 0.0.0.0/0 -> each GR's join IP
                                       | rtoj-<master>   src-ip <rampout subnet> -> a GR
                                   LS join (100.64.0.0/16)
                                       | rtoj-GR_<gw>
                          LR GR_<gw> (chassis=<system-id>, SNAT cluster -> physical IP,
                                       | rtoe-GR_<gw>   0/0 -> default gw, cluster -> join)
                          LS ext_<gw> -- LSP <nic>_<gw> (the NIC in br-int, or a patch port)

Each function returns the rows one command owns; the apply step makes the NB equal to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import netaddr

from ovn_k8s import ipam, naming
from ovn_k8s.nb.model import Parent, Ref, Row

LS, LSP, LR, LRP = "Logical_Switch", "Logical_Switch_Port", "Logical_Router", "Logical_Router_Port"
ROUTE, NAT, LBG = "Logical_Router_Static_Route", "NAT", "Load_Balancer_Group"
ACL = "ACL"
# Above anything a person might add by hand, below nothing we rely on.
EXTERNAL_ISOLATION_PRIORITY = 1000

CLUSTER_ROUTER_ID = "cluster-router"
JOIN_SWITCH_ID = "join-switch"
DEFAULT_ROUTE = "0.0.0.0/0"


def node_switch_id(node: str) -> str:
    return f"switch:{node}"


def gateway_router_id(node: str) -> str:
    return f"gateway-router:{node}"


def external_switch_id(node: str) -> str:
    return f"external-switch:{node}"


def _router_port(*, owner: str, router_id: str, name: str, cidr: str, mac: str,
                 external_ids: dict[str, str] | None = None) -> Row:
    return Row(LRP, name, owner, {"name": name, "mac": mac, "networks": [cidr],
                                  "external_ids": external_ids or {}},
               parent=Parent(LR, router_id, "ports"))


def _switch_router_port(*, owner: str, switch_id: str, name: str, router_port: str) -> Row:
    return Row(LSP, name, owner, {"name": name, "type": "router", "addresses": ["router"],
                                  "options": {"router-port": router_port}, "external_ids": {}},
               parent=Parent(LS, switch_id, "ports"))


@dataclass(frozen=True, slots=True)
class MasterSpec:
    master: str                         # the master's node name; also the cluster router's name
    cluster_subnet: netaddr.IPNetwork
    join_subnet: netaddr.IPNetwork


def master_rows(spec: MasterSpec) -> list[Row]:
    """Cluster-wide rows: cluster router, join switch and its router port, LB groups."""
    owner = naming.OWNER_CLUSTER
    join_ip = ipam.join_router_ip(spec.join_subnet)
    rtoj = naming.rtoj(spec.master)
    return [
        *(Row(LBG, name, owner, {"name": name}) for name in naming.LB_GROUPS),
        Row(LR, CLUSTER_ROUTER_ID, owner, {
            "name": spec.master,
            "external_ids": {naming.CLUSTER_ROUTER_MARK: "yes",
                             naming.CLUSTER_SUBNET_KEY: str(spec.cluster_subnet)}}),
        Row(LS, JOIN_SWITCH_ID, owner, {
            "name": naming.JOIN_SWITCH,
            "external_ids": {naming.JOIN_SUBNET_KEY: str(spec.join_subnet)}}),
        _router_port(owner=owner, router_id=CLUSTER_ROUTER_ID, name=rtoj,
                     cidr=f"{join_ip}/{spec.join_subnet.prefixlen}", mac=ipam.mac_from_ip(join_ip),
                     external_ids={naming.CONNECT_TO_JOIN_MARK: "yes"}),
        _switch_router_port(owner=owner, switch_id=JOIN_SWITCH_ID, name=naming.jtor(spec.master),
                            router_port=rtoj),
    ]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    node: str
    subnet: netaddr.IPNetwork


def node_rows(spec: NodeSpec) -> list[Row]:
    """A node's switch, its link to the cluster router, and its management port."""
    owner = naming.owner_node(spec.node)
    addrs = ipam.node_addresses(spec.subnet)
    switch_id = node_switch_id(spec.node)
    rtos = naming.rtos(spec.node)
    return [
        Row(LS, switch_id, owner, {
            "name": naming.node_switch(spec.node),
            "other_config": {"subnet": str(spec.subnet)},
            "external_ids": {naming.GATEWAY_IP_KEY: addrs.router_cidr, naming.NODE_KEY: spec.node},
            "load_balancer_group": [Ref(LBG, naming.CLUSTER_LB_GROUP)]}),
        _router_port(owner=owner, router_id=CLUSTER_ROUTER_ID, name=rtos, cidr=addrs.router_cidr,
                     mac=ipam.mac_from_ip(addrs.router_ip)),
        _switch_router_port(owner=owner, switch_id=switch_id, name=naming.stor(spec.node),
                            router_port=rtos),
        Row(LSP, naming.mgmt_port(spec.node), owner, {
            "name": naming.mgmt_port(spec.node), "type": "",
            "addresses": [f"{mgmt_mac(spec.subnet)} {addrs.mgmt_ip}"], "external_ids": {}},
            parent=Parent(LS, switch_id, "ports")),
    ]


def mgmt_mac(subnet: netaddr.IPNetwork) -> str:
    """The management port's MAC, derived so the LSP and the host interface agree by design."""
    return ipam.mac_from_ip(ipam.node_addresses(subnet).mgmt_ip)


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    node: str
    system_id: str
    cluster_subnet: netaddr.IPNetwork
    join_subnet: netaddr.IPNetwork
    join_ip: netaddr.IPAddress          # this gateway router's address on the join switch
    physical_ip: netaddr.IPNetwork      # IP/LEN of the NIC (or shared bridge)
    physical_mac: str
    port_name: str                      # the NIC or the shared bridge: names LSP <port>_<node>
    default_gw: netaddr.IPAddress | None = None
    rampout_subnets: Sequence[netaddr.IPNetwork] = field(default_factory=tuple)


def gateway_rows(spec: GatewaySpec) -> list[Row]:
    """A gateway router on this chassis, its external switch, SNAT and routes.

    Every gateway adds its own 0.0.0.0/0 route on the cluster router; OVN treats routes with
    the same prefix as ECMP, so egress is spread over all gateways and does not depend on the
    order in which they were initialised. lb_force_snat_ip pins replies to load-balanced
    traffic to the gateway it entered through.
    """
    owner = naming.owner_gateway(spec.node)
    gr = naming.gateway_router(spec.node)
    gr_id = gateway_router_id(spec.node)
    ext_id = external_switch_id(spec.node)
    rtoj, rtoe = naming.rtoj(gr), naming.rtoe(gr)
    phys_ip = str(spec.physical_ip.ip)
    join_router_ip = ipam.join_router_ip(spec.join_subnet)

    def route(rid: str, router: str, prefix: str, nexthop: str, *, policy: str | None = None,
              output_port: str | None = None) -> Row:
        return Row(ROUTE, rid, owner, {"ip_prefix": prefix, "nexthop": nexthop,
                                       "policy": policy, "output_port": output_port,
                                       "external_ids": {}},
                   parent=Parent(LR, router, "static_routes"))

    rows = [
        Row(LR, gr_id, owner, {
            "name": gr,
            "options": {"chassis": spec.system_id, "lb_force_snat_ip": str(spec.join_ip)},
            "external_ids": {naming.PHYSICAL_IP_KEY: phys_ip, naming.NODE_KEY: spec.node},
            "load_balancer_group": [Ref(LBG, naming.GATEWAY_LB_GROUP)]}),
        _router_port(owner=owner, router_id=gr_id, name=rtoj,
                     cidr=f"{spec.join_ip}/{spec.join_subnet.prefixlen}",
                     mac=ipam.mac_from_ip(spec.join_ip),
                     external_ids={naming.CONNECT_TO_JOIN_MARK: "yes"}),
        _switch_router_port(owner=owner, switch_id=JOIN_SWITCH_ID, name=naming.jtor(gr),
                            router_port=rtoj),
        Row(LS, ext_id, owner, {"name": naming.external_switch(spec.node),
                                "external_ids": {naming.NODE_KEY: spec.node}}),
        _router_port(owner=owner, router_id=gr_id, name=rtoe, cidr=str(spec.physical_ip),
                     mac=spec.physical_mac, external_ids={naming.GATEWAY_PHYSICAL_IP_MARK: "yes"}),
        _switch_router_port(owner=owner, switch_id=ext_id, name=naming.etor(gr), router_port=rtoe),
        Row(LSP, naming.external_port(spec.port_name, spec.node), owner, {
            "name": naming.external_port(spec.port_name, spec.node), "type": "",
            "addresses": ["unknown"], "external_ids": {}}, parent=Parent(LS, ext_id, "ports")),
        # Pods are reached from outside only through NAT and load balancers (both addressed to
        # the physical IP); a host on the physical network with a route to the cluster subnet
        # via this router must not reach pods directly.
        Row(ACL, f"external-isolation:{spec.node}", owner, {
            "direction": "from-lport", "priority": EXTERNAL_ISOLATION_PRIORITY,
            "match": f'inport == "{naming.external_port(spec.port_name, spec.node)}" && '
                     f"ip4.dst == {spec.cluster_subnet}",
            "action": "drop", "external_ids": {}}, parent=Parent(LS, ext_id, "acls")),
        Row(NAT, f"snat:{spec.node}", owner, {
            "type": "snat", "logical_ip": str(spec.cluster_subnet), "external_ip": phys_ip,
            "external_ids": {}}, parent=Parent(LR, gr_id, "nat")),
        route(f"gateway:{spec.node}:cluster", gr_id, str(spec.cluster_subnet), str(join_router_ip)),
        route(f"cluster:{spec.node}:default", CLUSTER_ROUTER_ID, DEFAULT_ROUTE, str(spec.join_ip)),
    ]
    if spec.default_gw is not None:
        rows.append(route(f"gateway:{spec.node}:default", gr_id, DEFAULT_ROUTE,
                          str(spec.default_gw), output_port=rtoe))
    for subnet in spec.rampout_subnets:
        rows.append(route(f"cluster:{spec.node}:rampout:{subnet}", CLUSTER_ROUTER_ID, str(subnet),
                          str(spec.join_ip), policy="src-ip"))
    return rows
