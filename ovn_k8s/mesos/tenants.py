"""ovn-mesos-init's NB decisions for tenants, their networks and published VIPs.

Each function writes its rows in ONE transaction (`Session.apply`) whose decisions
(overlapping networks, which shared external switch is now unused, the task ports a delete
would take along) are taken inside it, on the `NbView` of that transaction, with `verify()` on
the columns they depend on, so concurrent runs cannot collide. Re-running with the same
arguments changes nothing; with new arguments it converges. The arguments come parsed and
named (ovn_k8s/naming.py) by the caller; what needs the NB to check is checked here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import netaddr

from ovn_k8s import naming
from ovn_k8s.desired import mesos as build
from ovn_k8s.desired.topology import LR, LS
from ovn_k8s.errors import ConfigError
from ovn_k8s.mesos import gateways, nbview
from ovn_k8s.mesos.session import Session
from ovn_k8s.nb.apply import NbView
from ovn_k8s.nb.model import Row
from ovn_k8s.nb.plan import Plan


def _check_networks_vs(networks: Iterable[nbview.Network], subnet: netaddr.IPNetwork,
                       what: str, *, skip: str | None = None) -> None:
    for net in networks:
        if net.network != skip and build.overlaps(net.subnet, subnet):
            raise ConfigError(f"{what} {subnet} overlaps network {net.network} ({net.subnet}) "
                              f"of tenant {net.tenant}")


def _task_port_scopes(view: NbView, switches: Iterable[Any], force: bool, what: str) -> set[str]:
    owners = {nbview.owner_of(p) for sw in switches for p in nbview.container_ports(view, sw)}
    owners.discard(None)
    if owners and not force:
        sample = ", ".join(sorted(o.removeprefix("container:") for o in owners if o)[:3])
        raise ConfigError(f"{what} still has {len(owners)} task port(s) ({sample}): stop those "
                          "tasks first, or pass --force to delete their ports too")
    for sw in switches:
        view.verify(sw, "ports")
    return {o for o in owners if o}


# --- tenant-init / tenant-del -----------------------------------------------------------------------
def tenant_init(session: Session, tenant: str, join: netaddr.IPNetwork) -> None:
    """The tenant's router, join switch (`join`) and load balancers."""
    if join.prefixlen > 30:
        raise ConfigError(f"--join-subnet {join} is too small for a router and its gateways")

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        router = view.row(LR, build.tenant_router_id(tenant))
        if router is not None:
            view.verify(router, "ports")     # network-init links into it: serialise with it
        _check_networks_vs(nbview.networks(view, tenant), join, "--join-subnet")
        return build.tenant_rows(build.TenantSpec(tenant=tenant, join_subnet=join)), set()

    session.apply((naming.owner_tenant(tenant),), build_rows)


def tenant_del(session: Session, tenant: str, *, force: bool) -> bool:
    """Everything of the tenant (with its task ports only if `force`), and on a gateway chassis
    of it, the NICs of its external switches. False if there was no such tenant."""
    found: list[bool] = []

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        found[:] = [view.row(LR, build.tenant_router_id(tenant)) is not None]
        nets = nbview.networks(view, tenant)
        gws = {nbview.owner_of(r) for r in nbview.gateways(view, tenant)}
        gws.discard(None)
        scopes = {naming.owner_network(tenant, n.network) for n in nets} | {o for o in gws if o}
        scopes |= _task_port_scopes(view, [n.row for n in nets], force, f"tenant {tenant}")
        scopes |= nbview.unused_external_scopes(view, leaving=scopes)
        for router in view.owned(LR, naming.owner_tenant(tenant)):
            view.verify(router, "ports")
        return [], scopes

    cmd = session.apply((naming.owner_tenant(tenant),), build_rows)
    gateways.release_local_ports(session, cmd.extra_scopes)
    return bool(found and found[0] or cmd.result)


# --- network-init / network-del ---------------------------------------------------------------------
def network_init(session: Session, tenant: str, network: str, subnet: netaddr.IPNetwork) -> None:
    """A network of the tenant: switch <tenant>_<network> linked to the tenant router."""
    build.check_network_subnet(subnet)

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        router = nbview.tenant_router(view, tenant)
        # Every network links a port into the tenant router: verifying that column makes two
        # concurrent network-inits of one tenant serialise, so the overlap checks below hold.
        view.verify(router, "ports")
        _, join = nbview.tenant_join(view, tenant)
        if build.overlaps(join, subnet):
            raise ConfigError(f"--subnet {subnet} overlaps the join subnet {join} of tenant {tenant}")
        _check_networks_vs(nbview.networks(view, tenant), subnet, "--subnet", skip=network)
        for gw in nbview.gateways(view, tenant):
            cluster = gw.external_ids.get(naming.CLUSTER_SUBNET_KEY)
            if cluster and subnet not in netaddr.IPNetwork(cluster):
                raise ConfigError(f"--subnet {subnet} is not inside the cluster subnet {cluster} "
                                  f"that gateway {gw.name} SNATs")
        spec = build.NetworkSpec(tenant=tenant, network=network, subnet=subnet)
        return build.network_rows(spec), set()

    session.apply((naming.owner_network(tenant, network),), build_rows)


def network_del(session: Session, tenant: str, network: str, *, force: bool) -> bool:
    """A network of the tenant (with its task ports only if `force`). False if there was none."""
    found: list[bool] = []

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        switch = view.row(LS, build.network_switch_id(tenant, network))
        found[:] = [switch is not None]
        if switch is None:
            return [], set()
        return [], _task_port_scopes(view, [switch], force, f"network {network}")

    cmd = session.apply((naming.owner_network(tenant, network),), build_rows)
    return bool(found and found[0] or cmd.result)


# --- publish / unpublish ----------------------------------------------------------------------------
def publish(session: Session, tenant: str, protocol: str, vip: str, backends: str) -> None:
    """VIP `vip` (a gateway's physical IP and a port) -> `backends` on the tenant's `protocol`
    load balancer."""
    vip_ip = vip.rpartition(":")[0]

    def check(view: NbView) -> None:
        ips = {r.external_ids.get(naming.PHYSICAL_IP_KEY) for r in nbview.gateways(view, tenant)}
        if vip_ip not in ips:
            have = ", ".join(sorted(i for i in ips if i)) or "none yet: run gateway-init"
            raise ConfigError(f"--vip {vip_ip} is not the physical IP of a gateway of tenant "
                              f"{tenant} ({have})")

    _change_vips(session, tenant, protocol, check, lambda vips: vips.__setitem__(vip, backends))


def unpublish(session: Session, tenant: str, protocol: str, vip: str) -> bool:
    """Remove VIP `vip`; False if it was not published."""
    return bool(_change_vips(session, tenant, protocol, lambda view: None,
                             lambda vips: vips.pop(vip, None)))


def _change_vips(session: Session, tenant: str, protocol: str, check: Callable[[NbView], None],
                 change: Callable[[dict[str, str]], None]) -> Plan:
    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        nbview.tenant_router(view, tenant)
        check(view)
        lb = view.row(build.LB, build.tenant_lb_id(tenant, protocol))
        if lb is None:
            raise ConfigError(f"tenant {tenant} has no {protocol} load balancer: run tenant-init again")
        view.verify(lb, "vips")
        vips = dict(lb.vips)
        change(vips)
        return [Row(build.LB, build.tenant_lb_id(tenant, protocol), naming.owner_tenant(tenant),
                    {"vips": vips})], set()

    return session.apply((), build_rows).result
