"""What the Mesos commands and the plugin read from the NB, inside their one transaction.

Every function takes the `NbView` of the running `ApplyCommand`, so the decisions it feeds
(a free join or task address, an overlap check, which shared rows are now unused) are re-taken
when the transaction is retried; callers `verify()` the columns those decisions depend on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import netaddr

from ovn_k8s import ipam, naming
from ovn_k8s.desired import mesos as build
from ovn_k8s.desired.topology import LR, LRP, LS, LSP
from ovn_k8s.errors import ConfigError, NotReadyError
from ovn_k8s.nb.model import NAMED_TABLES, Row, by_name

GATEWAY_OWNER_PREFIX = "tenant-gateway:"
EXTERNAL_OWNER_PREFIX = "tenant-external:"
CONTAINER_OWNER_PREFIX = "container:"


def owner_of(row: Any) -> str | None:
    return row.external_ids.get(naming.OWNER_KEY)


def tenant_router(view: Any, tenant: str) -> Any:
    router = view.row(LR, build.tenant_router_id(tenant))
    if router is None:
        raise NotReadyError(f"tenant {tenant} does not exist in the NB: run tenant-init first")
    return router


def tenant_join(view: Any, tenant: str) -> tuple[Any, netaddr.IPNetwork]:
    tenant_router(view, tenant)
    switch = view.row(LS, build.tenant_join_id(tenant))
    if switch is None:
        raise NotReadyError(f"the join switch of tenant {tenant} is missing: run tenant-init again")
    return switch, netaddr.IPNetwork(switch.external_ids[naming.JOIN_SUBNET_KEY])


@dataclass(frozen=True, slots=True)
class Network:
    tenant: str | None       # None: a switch made by hand (`ovn-nbctl ls-add`), in no tenant
    network: str
    subnet: netaddr.IPNetwork
    row: Any

    @property
    def switch(self) -> str:
        return self.network if self.tenant is None else naming.tenant_network_switch(self.tenant, self.network)

    @property
    def switch_id(self) -> str:
        return by_name(self.network) if self.tenant is None else build.network_switch_id(self.tenant, self.network)


def networks(view: Any, tenant: str | None = None) -> list[Network]:
    """Every tenant network (of one tenant, if given), by the owner scope network-init wrote."""
    out = []
    for row in view.owned(LS, "network:"):
        t, n = row.external_ids.get(naming.TENANT_KEY), row.external_ids.get(naming.NETWORK_KEY)
        subnet = row.other_config.get("subnet")
        if not t or not n or not subnet or (tenant is not None and t != tenant):
            continue
        if owner_of(row) != naming.owner_network(t, n):
            continue
        out.append(Network(t, n, netaddr.IPNetwork(subnet), row))
    return sorted(out, key=lambda x: (x.tenant, x.network))


def find_network(view: Any, name: str, tenant: str | None = None) -> Network:
    """The network a task asked for: by network name (and tenant, when names repeat across
    tenants), or by its switch name `<tenant>_<network>`; failing both (and without a tenant),
    a switch made by hand with that name and `other_config:subnet`, the original README's
    `ovn-nbctl ls-add $SWITCH -- set logical_switch $SWITCH other_config:subnet=$SUBNET`.
    Raises LookupError (not found) or ConfigError (ambiguous, or a bad subnet)."""
    candidates = [n for n in networks(view, tenant) if n.network == name]
    if not candidates:
        candidates = [n for n in networks(view, tenant)
                      if naming.tenant_network_switch(n.tenant or "", n.network) == name]
    if not candidates and tenant is None:
        candidates = _hand_made_networks(view, name)
    if not candidates:
        where = f" of tenant {tenant}" if tenant else ""
        raise LookupError(f"no network {name!r}{where} in the NB (run ovn-mesos-init network-init, or "
                          f"ovn-nbctl ls-add {name} -- set logical_switch {name} other_config:subnet=<subnet>)")
    if len(candidates) > 1:
        tenants = ", ".join(n.tenant or "(made by hand)" for n in candidates)
        raise ConfigError(f"network {name!r} exists in tenants {tenants}: add a 'tenant' label to "
                          "the task's network_infos")
    return candidates[0]


def _hand_made_networks(view: Any, name: str) -> list[Network]:
    """Switches named `name` without our identity (made with ovn-nbctl), with their subnet."""
    out = []
    for row in view.rows(LS, by_name(name)):
        text = row.other_config.get("subnet")
        if not text:
            raise LookupError(f"logical switch {name!r} has no other_config:subnet: set it with "
                              f"ovn-nbctl set logical_switch {name} other_config:subnet=<subnet>")
        try:
            subnet = netaddr.IPNetwork(text)
        except (netaddr.AddrFormatError, ValueError):
            raise ConfigError(f"logical switch {name!r}: other_config:subnet={text!r} is not a "
                              "subnet") from None
        if subnet.version != 4:
            raise ConfigError(f"logical switch {name!r}: other_config:subnet={text} is not IPv4")
        if subnet.prefixlen > build.MIN_NETWORK_PREFIX:
            raise ConfigError(f"logical switch {name!r}: other_config:subnet={text} is too small "
                              f"for tasks (/{build.MIN_NETWORK_PREFIX} or larger)")
        out.append(Network(None, name, subnet.cidr, row))
    return out


def gateways(view: Any, tenant: str) -> list[Any]:
    """The tenant's gateway routers."""
    return [r for r in view.owned(LR, f"{GATEWAY_OWNER_PREFIX}{tenant}/")
            if r.external_ids.get(naming.TENANT_KEY) == tenant]


def container_ports(view: Any, switch: Any) -> list[Any]:
    """Task ports the plugin created on a network switch."""
    return [p for p in switch.ports if (owner_of(p) or "").startswith(CONTAINER_OWNER_PREFIX)]


def join_address(view: Any, tenant: str, system_id: str, join: netaddr.IPNetwork) -> netaddr.IPAddress:
    """This gateway's address on join_<tenant>: the one it has if still valid, else the lowest
    free one. Only this tenant's gateways count: each tenant has its own join switch."""
    mine = naming.rtoj(naming.tenant_gateway_router(tenant, system_id))
    ports = ((lrp.name, lrp.networks) for lrp in view.owned(LRP, f"{GATEWAY_OWNER_PREFIX}{tenant}/")
             if lrp.name.startswith("rtoj-"))
    return ipam.join_address_among(join, mine, ports)


def external_switch_users(switch: Any, *, excluding: Iterable[str] = ()) -> set[str]:
    """Owners of the tenant gateways linked into an external switch (but `excluding`)."""
    skip = set(excluding)
    return {o for p in switch.ports
            if (o := owner_of(p) or "").startswith(GATEWAY_OWNER_PREFIX) and o not in skip}


def unused_external_scopes(view: Any, *, leaving: Iterable[str], keep: str | None = None,
                           system_id: str | None = None) -> set[str]:
    """External-switch scopes nobody needs once the gateways `leaving` are gone: no other
    gateway links into them (and they are not `keep`). Each one's ports are verified, so a
    gateway joining it concurrently makes this transaction retry instead of losing its switch."""
    leaving = set(leaving)
    prefix = EXTERNAL_OWNER_PREFIX + (f"{system_id}/" if system_id else "")
    out = set()
    for switch in view.owned(LS, prefix):
        owner = owner_of(switch)
        if owner is None or owner == keep:
            continue
        if not external_switch_users(switch, excluding=leaving):
            view.verify(switch, "ports")
            out.add(owner)
    return out


def check_no_collisions(view: Any, rows: Iterable[Row], scopes: Iterable[str]) -> None:
    """Unique names (ports) must not steal a row another owner has (e.g. the Kubernetes master's
    rtoj-<node> for a tenant of the same name). Rows without an owner are adopted, as elsewhere."""
    allowed = set(scopes)
    for row in rows:
        if row.table not in NAMED_TABLES:
            continue
        for existing in view.rows(row.table, row.id):
            owner = owner_of(existing)
            if owner is not None and owner != row.owner and owner not in allowed:
                raise ConfigError(f"{row.table} {row.id} already exists and belongs to {owner}: "
                                  "choose another name")


def task_ips_in_use(switch: Any, *, excluding: str | None = None) -> list[netaddr.IPAddress]:
    """Addresses of every port on the switch but `excluding`, plus the switch's exclude_ips."""
    used: list[netaddr.IPAddress] = []
    for port in switch.ports:
        if port.name == excluding:
            continue
        used.extend(build.parse_port_addresses([*port.addresses, *port.dynamic_addresses]))
    for item in str(switch.other_config.get("exclude_ips", "")).split():
        lo, _, hi = item.partition("..")
        try:
            first, last = netaddr.IPAddress(lo), netaddr.IPAddress(hi or lo)
        except (netaddr.AddrFormatError, ValueError):
            continue
        used.extend(netaddr.IPAddress(i) for i in range(int(first), int(last) + 1))
    return used


def current_task_ip(view: Any, port_name: str, switch: Any) -> netaddr.IPAddress | None:
    """The address a task port already has, if it sits on `switch` (a re-ADD keeps it)."""
    for port in view.rows(LSP, port_name):
        if any(p.uuid == port.uuid for p in switch.ports):
            ips = build.parse_port_addresses(port.addresses)
            return ips[0] if ips else None
    return None
