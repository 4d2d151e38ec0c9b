"""ovn-mesos-init's tenant gateways on this chassis: the NB rows (gateway router, shared external
switch, join address) in ONE transaction, then the host: the NIC (or a patch port to a bridge
holding a NIC shared with the host) bound to the external switch, and on a shared bridge the
flows that split its traffic between the host and the router (ovn_k8s/openflow.py).

Several tenants' routers may share one NIC, each with its own IP and MAC, through one external
switch per NIC and chassis; the last gateway to leave it takes the NIC out of br-int.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import netaddr

from ovn_k8s import ipam, naming, netlink, openflow
from ovn_k8s.desired import mesos as build
from ovn_k8s.desired.topology import LR, LRP, LS
from ovn_k8s.errors import ConfigError, ConnectionFailed, HostError, NotReadyError
from ovn_k8s.local_ovsdb import LocalOvsdb
from ovn_k8s.mesos import nbview
from ovn_k8s.mesos.session import Session
from ovn_k8s.nb.apply import NbView
from ovn_k8s.nb.model import Row

LOG = logging.getLogger(__name__)


# --- gateway-init / gateway-del ---------------------------------------------------------------------
def gateway_init(session: Session, tenant: str, *, cluster_subnet: netaddr.IPNetwork,
                 physical_ip: netaddr.IPNetwork, default_gw: netaddr.IPAddress | None,
                 physical_interface: str | None = None, bridge_interface: str | None = None) -> None:
    """Make this chassis a gateway of the tenant, on a NIC of its own (`physical_interface`:
    moved into br-int, its addresses flushed) or on a bridge holding a NIC shared with the host
    (`bridge_interface`: the router shares the bridge's MAC and IP). Exactly one is given."""
    cluster = cluster_subnet
    ovs = session.ovs()
    system_id = ovs.system_id()
    if physical_interface:
        port_name = physical_interface
        netlink.require_link(port_name)
        # Several tenants' routers may share this NIC (one IP each): a MAC per IP keeps
        # their router ports apart on the shared external switch.
        mac = ipam.mac_from_ip(physical_ip.ip)
    else:
        assert bridge_interface is not None
        port_name = bridge_interface
        ovs.require_bridge(port_name)
        mac = ovs.mac_in_use(port_name)
        nic = _bridge_nic(ovs, port_name)
        zone = session.resolve(("conntrack_zone",)).conntrack_zone
        if not 0 <= zone <= 0xFFFF:
            raise ConfigError(f"--conntrack-zone {zone} is not in 0-65535")
    owner = naming.owner_tenant_gateway(tenant, system_id)
    ext_owner = naming.owner_tenant_external(system_id, port_name)
    live_externals: set[str] = set()

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        router = nbview.tenant_router(view, tenant)
        join_switch, join = nbview.tenant_join(view, tenant)
        if any(view.row(build.LB, build.tenant_lb_id(tenant, p)) is None for p in build.PROTOCOLS):
            raise NotReadyError(f"tenant {tenant} has no load balancers: run tenant-init again")
        # Every gateway of the tenant links a port into join_<tenant>: verifying it makes
        # concurrent gateway-inits serialise, so no join address is handed out twice.
        view.verify(join_switch, "ports")
        view.verify(router, "ports")
        if build.overlaps(join, cluster):
            raise ConfigError(f"--cluster-ip-subnet {cluster} overlaps the join subnet {join} "
                              f"of tenant {tenant}")
        for gw in nbview.gateways(view, tenant):
            recorded = gw.external_ids.get(naming.CLUSTER_SUBNET_KEY)
            if nbview.owner_of(gw) != owner and recorded and netaddr.IPNetwork(recorded) != cluster:
                raise ConfigError(f"--cluster-ip-subnet {cluster} differs from {recorded} of "
                                  f"tenant {tenant}'s gateway {gw.name}")
        for net in nbview.networks(view, tenant):
            if net.subnet not in cluster:
                raise ConfigError(f"network {net.network} ({net.subnet}) of tenant {tenant} is "
                                  f"not inside --cluster-ip-subnet {cluster}")
        ext = view.row(LS, build.external_switch_id(system_id, port_name))
        if ext is not None:
            view.verify(ext, "ports")
            _check_shared_external(view, ext, owner, physical_ip, mac)
        join_ip = nbview.join_address(view, tenant, system_id, join)
        spec = build.GatewaySpec(tenant=tenant, system_id=system_id, cluster_subnet=cluster,
                                 join_subnet=join, join_ip=join_ip, physical_ip=physical_ip,
                                 physical_mac=mac, port_name=port_name, default_gw=default_gw)
        unused = nbview.unused_external_scopes(view, leaving={owner}, keep=ext_owner,
                                               system_id=system_id)
        live_externals.clear()
        live_externals.update(nbview.owner_of(s) or "" for s in view.owned(LS, "tenant-external:"))
        live_externals.add(ext_owner)
        live_externals.difference_update(unused)
        return [*build.external_rows(system_id, port_name), *build.gateway_rows(spec)], unused

    session.apply((owner, ext_owner), build_rows)
    _gateway_host(ovs, dedicated=bool(physical_interface), port_name=port_name, system_id=system_id,
                  owner=ext_owner)
    stale = _drop_stale_ports(ovs, system_id, live_externals)
    ovs.commit()
    _forget_bridges(ovs, stale, timeout=session.timeout)
    if physical_interface:
        netlink.flush_addresses(port_name)
    else:
        _shared_bridge_flows(ovs, port_name, nic=nic, host_ip=str(physical_ip.ip), zone=zone,
                             timeout=session.timeout)


def gateway_del(session: Session, tenant: str) -> tuple[str, bool]:
    """Remove this chassis' gateway of the tenant, and its NIC from br-int when no other tenant
    uses it. (The gateway router's name, False if there was no such gateway.)"""
    ovs = session.ovs()
    system_id = ovs.system_id()
    owner = naming.owner_tenant_gateway(tenant, system_id)
    live_externals: set[str] = set()
    found: list[bool] = []

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        found[:] = [view.row(LR, build.gateway_router_id(tenant, system_id)) is not None]
        join = view.row(LS, build.tenant_join_id(tenant))
        if join is not None:
            view.verify(join, "ports")
        unused = nbview.unused_external_scopes(view, leaving={owner}, system_id=system_id)
        live_externals.clear()
        live_externals.update(nbview.owner_of(s) or "" for s in view.owned(LS, "tenant-external:"))
        live_externals.difference_update(unused)
        return [], unused

    cmd = session.apply((owner,), build_rows)
    stale = _drop_stale_ports(ovs, system_id, live_externals)
    ovs.commit()
    _forget_bridges(ovs, stale, timeout=session.timeout)
    return naming.tenant_gateway_router(tenant, system_id), bool(found and found[0] or cmd.result)


def release_local_ports(session: Session, scopes: Iterable[str]) -> None:
    """After a tenant-del: if this host is a gateway chassis of the tenant, take the NICs of the
    deleted external switches out of br-int (other chassis do it in their gateway-del)."""
    externals = [s for s in scopes if s.startswith(nbview.EXTERNAL_OWNER_PREFIX)]
    if not externals:
        return
    try:
        ovs = session.ovs()
        system_id = ovs.system_id()
    except (ConnectionFailed, ConfigError) as e:
        LOG.info("no local OVS to clean up: %s", e)
        return
    prefix = naming.owner_tenant_external(system_id, "")
    mine = [s for s in externals if s.startswith(prefix)]
    for scope in mine:
        for name in ovs.remove_owned_ports(scope, set()):
            LOG.info("removing %s: its external switch is gone", name)
    ovs.commit()
    _forget_bridges(ovs, [s[len(prefix):] for s in mine], timeout=session.timeout)


# --- the NB side ------------------------------------------------------------------------------------
def _check_shared_external(view: NbView, ext: Any, owner: str, physical_ip: netaddr.IPNetwork,
                           mac: str) -> None:
    """Two tenant routers on one external switch need their own IP and MAC."""
    for lsp in ext.ports:
        other = nbview.owner_of(lsp) or ""
        if not other.startswith(nbview.GATEWAY_OWNER_PREFIX) or other == owner:
            continue
        peer = lsp.options.get("router-port")
        rtoe = view.row(LRP, peer) if peer else None
        if rtoe is None:
            continue
        if physical_ip.ip in {netaddr.IPNetwork(n).ip for n in rtoe.networks}:
            raise ConfigError(f"--physical-ip {physical_ip.ip} is already used by {peer} on this "
                              "NIC: give each tenant's gateway its own address")
        if rtoe.mac == mac:
            raise ConfigError(f"{peer} on this NIC already uses MAC {mac}: on a shared bridge "
                              "only one tenant's gateway can take the host's address")


# --- the host side ----------------------------------------------------------------------------------
def _gateway_host(ovs: LocalOvsdb, *, dedicated: bool, port_name: str, system_id: str,
                  owner: str) -> None:
    """Bind the NIC (or a patch port to the shared bridge) to LSP <port>_<chassis>."""
    ids = {"iface-id": naming.external_port(port_name, system_id), naming.OWNER_KEY: owner}
    ovs.ensure_integration_bridge()
    if dedicated:
        ovs.ensure_port(naming.BR_INT, port_name, external_ids=ids)
    else:
        mac = ovs.mac_in_use(port_name)
        ovs.ensure_bridge(port_name, other_config={"hwaddr": mac})
        int_side = naming.mesos_patch_int_to_bridge(port_name)
        br_side = naming.mesos_patch_bridge_to_int(port_name)
        ovs.ensure_port(naming.BR_INT, int_side, type="patch", options={"peer": br_side},
                        external_ids=ids)
        ovs.ensure_port(port_name, br_side, type="patch", options={"peer": int_side},
                        external_ids={naming.OWNER_KEY: owner})


def _drop_stale_ports(ovs: LocalOvsdb, system_id: str, live: set[str]) -> list[str]:
    """Take out of OVS the NICs and patch ports of this chassis' external switches that no
    longer exist in the NB (a gateway moved to another NIC, or its tenant was deleted).
    Returns the NICs / bridges those switches were for."""
    prefix = naming.owner_tenant_external(system_id, "")
    owners = set()
    for br in ovs.bridges():
        for port in br.ports:
            for iface in port.interfaces:
                o = iface.external_ids.get(naming.OWNER_KEY, "")
                if o.startswith(prefix) and o not in live:
                    owners.add(o)
    for o in sorted(owners):
        for name in ovs.remove_owned_ports(o, set()):
            LOG.info("removing %s: its external switch is gone", name)
    return [o[len(prefix):] for o in sorted(owners)]


# --- a NIC shared with the host (--bridge-interface) -----------------------------------------------
# The gateway router shares the bridge's MAC and IP with the host. The gateway helper's flow
# table (ovn_k8s/openflow.py, with no services: egress only, as the original's five static
# flows) decides which packets are OVN's: what the router sends is committed to conntrack, and
# only replies to it go back to OVN; everything else stays the host's. Our own cookie keeps
# these flows apart from anyone else's on the bridge.
FLOW_COOKIE = openflow.MESOS_COOKIE


def _bridge_nic(ovs: LocalOvsdb, bridge: str) -> str:
    """The one NIC in the shared bridge (what ovn-k8s-util nics-to-bridge put there)."""
    row = ovs.require_bridge(bridge)
    nics = sorted(str(i.name) for p in row.ports for i in p.interfaces if i.type in ("", "system"))
    if len(nics) != 1:
        raise HostError(f"OVS bridge {bridge} must hold exactly one NIC (it has: "
                        f"{', '.join(nics) or 'none'}); see ovn-k8s-util nics-to-bridge")
    return nics[0]


def _ofport(ovs: LocalOvsdb, name: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        row = ovs.interface(name)
        ofport = list(row.ofport) if row is not None else []
        if ofport and ofport[0] > 0:
            return int(ofport[0])
        if time.monotonic() > deadline:
            raise HostError(f"OVS gave {name} no OpenFlow port (ofport {ofport or 'unset'})")
        time.sleep(0.05)


def _shared_bridge_flows(ovs: LocalOvsdb, bridge: str, *, nic: str, host_ip: str, zone: int,
                         timeout: float) -> None:
    ports = openflow.BridgePorts(nic=_ofport(ovs, nic, timeout),
                                 patch=_ofport(ovs, naming.mesos_patch_bridge_to_int(bridge), timeout))
    flows = openflow.gateway_flows([], host_ip=host_ip, ports=ports, zone=zone, cookie=FLOW_COOKIE)
    applier = openflow.FlowApplier(openflow.ofctl_target(ovs.remote, bridge), cookie=FLOW_COOKIE,
                                   timeout=timeout)
    if applier.ensure(flows):                   # re-runs leave the flows alone
        LOG.info("%s: %d flows for the shared NIC %s", bridge, len(flows), nic)


def _forget_bridges(ovs: LocalOvsdb, ports: Iterable[str], *, timeout: float) -> None:
    """Remove our flows from shared bridges no gateway uses any more."""
    for port in ports:
        if ovs.bridge(port) is None:
            continue
        openflow.FlowApplier(openflow.ofctl_target(ovs.remote, port), cookie=FLOW_COOKIE,
                             timeout=timeout).ensure([])
