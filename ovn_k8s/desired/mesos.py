"""Mesos tenants as desired NB rows (pure): per-tenant routers, networks, gateways, task ports.

    tasks -- LS <t>_<net1>   LS <t>_<net2> ...      (task ports <ifname>_<container>, "mac ip")
               | stor/rtos       |
             LR <t> (the tenant router)       ECMP 0.0.0.0/0 -> each of the tenant's GRs
               | rtoj-<t> (join .1)
             LS join_<t> (the tenant's own join switch: join subnets may repeat across tenants)
               | rtoj-GR_<t>_<chassis> (lowest free join address)
             LR GR_<t>_<chassis> (chassis, SNAT cluster -> physical IP, lb_force_snat_ip,
               |                  the tenant's load balancers lb_<t>_tcp / lb_<t>_udp)
               | rtoe-GR_<t>_<chassis>
             LS ext_<nic>_<chassis> -- LSP <nic>_<chassis>: shared by every tenant gateway on
                                       that NIC (or shared bridge) of that chassis

Tenants share no logical router or switch except an external switch, and nothing routes
between their address spaces, so two tenants can use the same subnets. Each function returns
the rows one owner scope owns; ApplyCommand makes the NB equal to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import netaddr

from ovn_k8s import ipam, naming
from ovn_k8s.desired.topology import ACL, DEFAULT_ROUTE, LR, LS, LSP, NAT, ROUTE, _router_port, _switch_router_port
from ovn_k8s.errors import ConfigError
from ovn_k8s.nb.model import Parent, Ref, Row

LB = "Load_Balancer"
PROTOCOLS = ("tcp", "udp")
# Same value as the Kubernetes gateways' isolation ACL: above anything added by hand.
EXTERNAL_ISOLATION_PRIORITY = 1000
MIN_NETWORK_PREFIX = 30   # a router address and at least one task


# --- row identities (external_ids ovn-k8s/id) --------------------------------------------------
def tenant_router_id(tenant: str) -> str:
    return f"tenant-router:{tenant}"


def tenant_join_id(tenant: str) -> str:
    return f"tenant-join:{tenant}"


def tenant_lb_id(tenant: str, protocol: str) -> str:
    return f"tenant-lb:{tenant}:{protocol}"


def network_switch_id(tenant: str, network: str) -> str:
    return f"tenant-network:{tenant}/{network}"


def gateway_router_id(tenant: str, system_id: str) -> str:
    return f"tenant-gateway-router:{tenant}/{system_id}"


def external_switch_id(system_id: str, port: str) -> str:
    return f"tenant-external-switch:{system_id}/{port}"


# --- address plans -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NetworkAddresses:
    """A tenant network S: the tenant router has S+1, tasks get S+2 ... the last host."""

    subnet: netaddr.IPNetwork

    @property
    def router_ip(self) -> netaddr.IPAddress:
        return self.subnet.network + 1

    @property
    def router_cidr(self) -> str:
        return f"{self.router_ip}/{self.subnet.prefixlen}"

    def task_range(self) -> range:
        return range(self.subnet.first + 2, self.subnet.last)   # excludes the broadcast address


def check_network_subnet(subnet: netaddr.IPNetwork) -> NetworkAddresses:
    if subnet.prefixlen > MIN_NETWORK_PREFIX:
        raise ConfigError(f"--subnet {subnet} is too small: it needs a router address and room "
                          f"for tasks (/{MIN_NETWORK_PREFIX} or larger)")
    return NetworkAddresses(subnet)


def overlaps(a: netaddr.IPNetwork, b: netaddr.IPNetwork) -> bool:
    return a.first <= b.last and b.first <= a.last


def allocate_task_ip(addrs: NetworkAddresses, used: Iterable[netaddr.IPAddress],
                     current: netaddr.IPAddress | None = None) -> netaddr.IPAddress:
    """The task's address: the one it has if still valid and not taken by another port, else
    the lowest free one (the router's S+1, network and broadcast addresses are never handed out)."""
    taken = {int(ip) for ip in used}
    span = addrs.task_range()
    if current is not None and int(current) in span and int(current) not in taken:
        return current
    for candidate in span:
        if candidate not in taken:
            return netaddr.IPAddress(candidate)
    raise ConfigError(f"network {addrs.subnet} has no free address left")


def parse_port_addresses(values: Iterable[str]) -> list[netaddr.IPAddress]:
    """IPv4 addresses in LSP `addresses`/`dynamic_addresses` strings ("mac ip [ip...]")."""
    out = []
    for value in values:
        for token in str(value).split()[1:]:
            try:
                ip = netaddr.IPAddress(token.split("/")[0])
            except (netaddr.AddrFormatError, ValueError):
                continue
            if ip.version == 4:
                out.append(ip)
    return out


# --- tenant-init ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TenantSpec:
    tenant: str
    join_subnet: netaddr.IPNetwork


def tenant_rows(spec: TenantSpec) -> list[Row]:
    """The tenant router, its own join switch, and its load balancers (one per protocol, VIPs
    added by `publish`; their `vips` column is not listed here, so re-runs keep them)."""
    t = spec.tenant
    owner = naming.owner_tenant(t)
    router_id = tenant_router_id(t)
    join_ip = ipam.join_router_ip(spec.join_subnet)
    rtoj = naming.rtoj(naming.tenant_router(t))
    tag = {naming.TENANT_KEY: t}
    return [
        Row(LR, router_id, owner, {"name": naming.tenant_router(t)}, members={
            "external_ids": {**tag, naming.JOIN_SUBNET_KEY: str(spec.join_subnet)}}),
        Row(LS, tenant_join_id(t), owner, {
            "name": naming.tenant_join_switch(t),
            "external_ids": {**tag, naming.JOIN_SUBNET_KEY: str(spec.join_subnet)}}),
        _router_port(owner=owner, router_id=router_id, name=rtoj,
                     cidr=f"{join_ip}/{spec.join_subnet.prefixlen}", mac=ipam.mac_from_ip(join_ip),
                     external_ids=tag),
        _switch_router_port(owner=owner, switch_id=tenant_join_id(t),
                            name=naming.jtor(naming.tenant_router(t)), router_port=rtoj),
        *(Row(LB, tenant_lb_id(t, proto), owner, {
            "name": naming.tenant_lb(t, proto), "protocol": proto, "external_ids": dict(tag)})
          for proto in PROTOCOLS),
    ]


# --- network-init --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NetworkSpec:
    tenant: str
    network: str
    subnet: netaddr.IPNetwork


def network_rows(spec: NetworkSpec) -> list[Row]:
    """The network's switch (`<tenant>_<network>`) and its link to the tenant router."""
    t, n = spec.tenant, spec.network
    owner = naming.owner_network(t, n)
    addrs = check_network_subnet(spec.subnet)
    switch = naming.tenant_network_switch(t, n)
    switch_id = network_switch_id(t, n)
    rtos = naming.rtos(switch)
    return [
        # members: keys users add (other_config:exclude_ips, which the plugin honours) stay
        Row(LS, switch_id, owner, {"name": switch}, members={
            "other_config": {"subnet": str(spec.subnet)},
            "external_ids": {naming.TENANT_KEY: t, naming.NETWORK_KEY: n,
                             naming.GATEWAY_IP_KEY: addrs.router_cidr}}),
        _router_port(owner=owner, router_id=tenant_router_id(t), name=rtos, cidr=addrs.router_cidr,
                     mac=ipam.mac_from_ip(addrs.router_ip), external_ids={naming.TENANT_KEY: t}),
        _switch_router_port(owner=owner, switch_id=switch_id, name=naming.stor(switch),
                            router_port=rtos),
    ]


# --- gateway-init --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GatewaySpec:
    tenant: str
    system_id: str
    cluster_subnet: netaddr.IPNetwork   # all of the tenant's networks; SNATed to physical_ip
    join_subnet: netaddr.IPNetwork      # the tenant's join subnet
    join_ip: netaddr.IPAddress          # this gateway router's address on join_<tenant>
    physical_ip: netaddr.IPNetwork
    physical_mac: str
    port_name: str                      # the NIC or shared bridge: names ext_<port>_<chassis>
    default_gw: netaddr.IPAddress | None = None


def external_rows(system_id: str, port_name: str) -> list[Row]:
    """The external switch of a NIC (or shared bridge) on a chassis and the port bound to it.

    Owned by its own scope, not by a tenant: every tenant gateway on this NIC links into it."""
    owner = naming.owner_tenant_external(system_id, port_name)
    ext_id = external_switch_id(system_id, port_name)
    port = naming.external_port(port_name, system_id)
    return [
        Row(LS, ext_id, owner, {"name": naming.tenant_external_switch(port_name, system_id),
                                "external_ids": {naming.SYSTEM_ID_KEY: system_id}}),
        Row(LSP, port, owner, {"name": port, "type": "", "addresses": ["unknown"],
                               "external_ids": {}}, parent=Parent(LS, ext_id, "ports")),
    ]


def gateway_rows(spec: GatewaySpec) -> list[Row]:
    """A tenant's gateway router on one chassis: SNAT, routes, the tenant's load balancers.

    Every gateway of a tenant adds its own 0.0.0.0/0 route to the tenant router (ECMP), and
    lb_force_snat_ip sends replies to load-balanced traffic back through the gateway it came in."""
    t, sysid = spec.tenant, spec.system_id
    owner = naming.owner_tenant_gateway(t, sysid)
    gr = naming.tenant_gateway_router(t, sysid)
    gr_id = gateway_router_id(t, sysid)
    ext_id = external_switch_id(sysid, spec.port_name)
    rtoj, rtoe = naming.rtoj(gr), naming.rtoe(gr)
    phys_ip = str(spec.physical_ip.ip)
    tag = {naming.TENANT_KEY: t}
    nic_port = naming.external_port(spec.port_name, sysid)
    key = f"{t}/{sysid}"

    def route(rid: str, router: str, prefix: str, nexthop: str, output_port: str | None = None) -> Row:
        return Row(ROUTE, rid, owner, {"ip_prefix": prefix, "nexthop": nexthop, "policy": None,
                                       "output_port": output_port, "external_ids": dict(tag)},
                   parent=Parent(LR, router, "static_routes"))

    rows = [
        # members, not columns: what users add by hand (the original walkthrough's `set
        # logical_router GR_... load_balancer=`, an option) survives our re-runs
        Row(LR, gr_id, owner, {"name": gr}, members={
            "options": {"chassis": sysid, "lb_force_snat_ip": str(spec.join_ip)},
            "external_ids": {**tag, naming.PHYSICAL_IP_KEY: phys_ip, naming.SYSTEM_ID_KEY: sysid,
                             naming.CLUSTER_SUBNET_KEY: str(spec.cluster_subnet)},
            "load_balancer": tuple(Ref(LB, tenant_lb_id(t, proto)) for proto in PROTOCOLS)}),
        _router_port(owner=owner, router_id=gr_id, name=rtoj,
                     cidr=f"{spec.join_ip}/{spec.join_subnet.prefixlen}",
                     mac=ipam.mac_from_ip(spec.join_ip), external_ids=tag),
        _switch_router_port(owner=owner, switch_id=tenant_join_id(t), name=naming.jtor(gr),
                            router_port=rtoj),
        _router_port(owner=owner, router_id=gr_id, name=rtoe, cidr=str(spec.physical_ip),
                     mac=spec.physical_mac,
                     external_ids={**tag, naming.GATEWAY_PHYSICAL_IP_MARK: "yes"}),
        _switch_router_port(owner=owner, switch_id=ext_id, name=naming.etor(gr), router_port=rtoe),
        # Tasks are reached from outside only through SNAT and published VIPs, both addressed to
        # the physical IP: a host with a route to the tenant's subnet via this router must not
        # reach tasks directly.
        Row(ACL, f"tenant-isolation:{key}", owner, {
            "direction": "from-lport", "priority": EXTERNAL_ISOLATION_PRIORITY,
            "match": f'inport == "{nic_port}" && ip4.dst == {spec.cluster_subnet}',
            "action": "drop", "external_ids": dict(tag)}, parent=Parent(LS, ext_id, "acls")),
        Row(NAT, f"tenant-snat:{key}", owner, {
            "type": "snat", "logical_ip": str(spec.cluster_subnet), "external_ip": phys_ip,
            "external_ids": dict(tag)}, parent=Parent(LR, gr_id, "nat")),
        route(f"tenant-gateway:{key}:cluster", gr_id, str(spec.cluster_subnet),
              str(ipam.join_router_ip(spec.join_subnet))),
        route(f"tenant-router:{key}:default", tenant_router_id(t), DEFAULT_ROUTE, str(spec.join_ip)),
    ]
    if spec.default_gw is not None:
        rows.append(route(f"tenant-gateway:{key}:default", gr_id, DEFAULT_ROUTE,
                          str(spec.default_gw), output_port=rtoe))
    return rows


# --- ovn-mesos-plugin: one task port -------------------------------------------------------------
def task_port_name(switch: str, ifname: str, container_id: str, task_id: str | None = None) -> str:
    """The task's logical port (and OVS iface-id): `<switch>_<task_id>` when the task passes a
    `task_id` label, as the original README asked and its plugin then named the port; else
    the original's later `<ifname>_<container>`."""
    return f"{switch}_{task_id}" if task_id else naming.task_port(ifname, container_id)


@dataclass(frozen=True, slots=True)
class TaskPortSpec:
    tenant: str | None          # None: a network made by hand (`ovn-nbctl ls-add`), no tenant
    network: str
    container_id: str
    ifname: str
    ip: netaddr.IPAddress
    mac: str
    name: str | None = None       # the port's name: task_port_name(); default <ifname>_<container>
    switch_id: str | None = None  # the switch's identity; default the tenant network's


def task_port_row(spec: TaskPortSpec) -> Row:
    """The task's logical port with a static "mac ip" (allocated inside the NB transaction) and
    port security on that pair, so a task cannot send as another task's address."""
    name = spec.name or naming.task_port(spec.ifname, spec.container_id)
    address = f"{spec.mac} {spec.ip}"
    switch_id = spec.switch_id
    if switch_id is None:
        assert spec.tenant is not None
        switch_id = network_switch_id(spec.tenant, spec.network)
    tag = {naming.TENANT_KEY: spec.tenant} if spec.tenant is not None else {}
    return Row(LSP, name, naming.owner_container(spec.container_id, spec.ifname), {
        "name": name, "type": "", "addresses": [address], "port_security": [address],
        "external_ids": {**tag, naming.NETWORK_KEY: spec.network,
                         naming.CONTAINER_KEY: spec.container_id, naming.IFNAME_KEY: spec.ifname}},
        parent=Parent(LS, switch_id, "ports"))


# --- publish -------------------------------------------------------------------------------------
def parse_endpoint(value: str, what: str) -> str:
    """IP:PORT (IPv4, port 1-65535), normalised."""
    ip_text, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{what}: {value!r} is not IP:PORT (example: 192.0.2.10:8080)")
    ip = ipam.parse_ip(ip_text, what)
    return f"{ip}:{int(port_text)}"


def parse_backends(value: str) -> str:
    """IP:PORT[,IP:PORT...] as OVN wants it in `vips` (sorted, no duplicates)."""
    items = [v for v in (value or "").split(",") if v.strip()]
    if not items:
        raise ConfigError("--backends: give at least one IP:PORT")
    return ",".join(sorted({parse_endpoint(v, "--backends") for v in items},
                           key=lambda e: (netaddr.IPAddress(e.split(":")[0]), int(e.split(":")[1]))))
