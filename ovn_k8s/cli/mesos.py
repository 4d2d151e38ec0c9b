"""ovn-mesos-init: tenants, their networks and gateways, published VIPs, and the plugin install.

    tenant-init | tenant-del | network-init | network-del | gateway-init | gateway-del |
    publish | unpublish | plugin-install

Each NB-writing subcommand validates its input, then writes its rows in ONE transaction whose
decisions (a free join address, overlapping networks, which shared external switch is now
unused) are taken inside it (see ovn_k8s/nb/apply.py), so concurrent runs cannot collide.
Re-running with the same arguments changes nothing; with new arguments it converges.
Only gateway-init and gateway-del touch the host: they run on the gateway's chassis.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import netaddr

from ovn_k8s import config, host, ipam, naming, openflow, process
from ovn_k8s.desired import mesos as build
from ovn_k8s.desired.topology import LR, LRP, LS
from ovn_k8s.errors import ConfigError, ConnectionFailed, HostError, NotReadyError
from ovn_k8s.mesos import nbview
from ovn_k8s.nb import connection
from ovn_k8s.nb.apply import NbView, ScopedApplyCommand
from ovn_k8s.nb.model import Row
from ovn_k8s.nb.plan import Plan
from ovn_k8s.ovs import LocalOvs

LOG = logging.getLogger(__name__)
PROG = "ovn-mesos-init"
PLUGIN = "ovn-mesos-plugin"
PLUGIN_CONF = "10-ovn.conf"
MESOS_DIRS = ("/var/lib/mesos/cni/plugins", "/var/lib/mesos/cni/config")
DCOS_DIRS = ("/opt/mesosphere/active/cni", "/opt/mesosphere/etc/dcos/network/cni")
# Mesos' CNI isolator parses results in the 0.2.0 shape ("ip4"), so that is what we install.
DEFAULT_PLUGIN_CNI_VERSION = "0.2.0"

Build = Callable[[NbView], tuple[list[Row], Iterable[str]]]


# --- shared steps -----------------------------------------------------------------------------
class _Ovs:
    """The local OVS, opened only when needed: NB-only commands run anywhere with --ovn-nb."""

    def __init__(self, args: argparse.Namespace) -> None:
        pre = config.resolve(args, ("ovs_db", "timeout"))
        self.remote, self.timeout = pre.ovs_db, pre.timeout
        self._ovs: LocalOvs | None = None

    def get(self) -> LocalOvs:
        if self._ovs is None:
            self._ovs = LocalOvs(self.remote, timeout=self.timeout)
        return self._ovs

    def external_ids_or_none(self) -> dict[str, str]:
        """For the config layer: a missing local OVS just means no OVS-provided settings."""
        try:
            return self.get().external_ids()
        except ConnectionFailed as e:
            LOG.info("no settings from the local OVS: %s", e)
            return {}

    def close(self) -> None:
        if self._ovs is not None:
            self._ovs.close()


def _config(args: argparse.Namespace, ovs: _Ovs, extra: Sequence[str] = ()) -> config.Config:
    cfg = config.resolve(args, (*process.GLOBAL_OPTIONS, *extra),
                         ovs_external_ids=ovs.external_ids_or_none)
    process.setup_logging(cfg.log_level, cfg.log_file)
    return cfg


def _run_nb(args: argparse.Namespace, *, scopes: Iterable[str], build: Build,
            extra_options: Sequence[str] = (), ovs: _Ovs | None = None) -> ScopedApplyCommand:
    own = ovs is None
    ovs = ovs or _Ovs(args)
    try:
        cfg = _config(args, ovs, extra_options)
        nb = process.connect_nb(cfg)
        try:
            cmd = ScopedApplyCommand(nb, scopes=scopes, build=build, check=nbview.check_no_collisions)
            with connection.transaction(nb, timeout=cfg.timeout) as txn:
                txn.add(cmd)
        finally:
            connection.disconnect(nb)
    finally:
        if own:
            ovs.close()
    plan: Plan = cmd.result
    LOG.info("NB %s: %s", ",".join(sorted(cmd.scopes)), plan.summary() if plan else "no change")
    return cmd


def _tenant(args: argparse.Namespace) -> str:
    return naming.tenant_name(args.tenant_name)


def _check_networks_vs(networks: Iterable[nbview.Network], subnet: netaddr.IPNetwork,
                       what: str, *, skip: str | None = None) -> None:
    for net in networks:
        if net.network != skip and build.overlaps(net.subnet, subnet):
            raise ConfigError(f"{what} {subnet} overlaps network {net.network} ({net.subnet}) "
                              f"of tenant {net.tenant}")


# --- tenant-init / tenant-del -----------------------------------------------------------------------
def tenant_init(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    pre = config.resolve(args, ("join_subnet",))
    join = ipam.parse_cidr(pre.join_subnet, "--join-subnet")
    if join.prefixlen > 30:
        raise ConfigError(f"--join-subnet {join} is too small for a router and its gateways")

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        router = view.row(LR, build.tenant_router_id(tenant))
        if router is not None:
            view.verify(router, "ports")     # network-init links into it: serialise with it
        _check_networks_vs(nbview.networks(view, tenant), join, "--join-subnet")
        return build.tenant_rows(build.TenantSpec(tenant=tenant, join_subnet=join)), set()

    _run_nb(args, scopes=(naming.owner_tenant(tenant),), build=build_rows,
            extra_options=("join_subnet",))
    print("Initialization complete.")
    return 0


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


def tenant_del(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    found: list[bool] = []

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        found[:] = [view.row(LR, build.tenant_router_id(tenant)) is not None]
        nets = nbview.networks(view, tenant)
        gws = {nbview.owner_of(r) for r in nbview.gateways(view, tenant)}
        gws.discard(None)
        scopes = {naming.owner_network(tenant, n.network) for n in nets} | {o for o in gws if o}
        scopes |= _task_port_scopes(view, [n.row for n in nets], args.force, f"tenant {tenant}")
        scopes |= nbview.unused_external_scopes(view, leaving=scopes)
        for router in view.owned(LR, naming.owner_tenant(tenant)):
            view.verify(router, "ports")
        return [], scopes

    cmd = _run_nb(args, scopes=(naming.owner_tenant(tenant),), build=build_rows)
    _release_local_ports(args, cmd.extra_scopes)
    print(f"Tenant {tenant} deleted." if found and found[0] or cmd.result
          else f"Tenant {tenant} does not exist: nothing to delete.")
    return 0


# --- network-init / network-del ---------------------------------------------------------------------
def network_init(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    network = naming.network_name(args.network_name)
    subnet = ipam.parse_cidr(args.subnet, "--subnet")
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

    _run_nb(args, scopes=(naming.owner_network(tenant, network),), build=build_rows)
    print("Initialization complete.")
    return 0


def network_del(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    network = naming.network_name(args.network_name)
    found: list[bool] = []

    def build_rows(view: NbView) -> tuple[list[Row], set[str]]:
        switch = view.row(LS, build.network_switch_id(tenant, network))
        found[:] = [switch is not None]
        if switch is None:
            return [], set()
        return [], _task_port_scopes(view, [switch], args.force, f"network {network}")

    cmd = _run_nb(args, scopes=(naming.owner_network(tenant, network),), build=build_rows)
    print(f"Network {network} of tenant {tenant} deleted." if found and found[0] or cmd.result
          else f"Network {network} of tenant {tenant} does not exist: nothing to delete.")
    return 0


# --- gateway-init / gateway-del ---------------------------------------------------------------------
def gateway_init(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    cluster = ipam.parse_cidr(args.cluster_ip_subnet, "--cluster-ip-subnet")
    physical_ip = ipam.parse_ip_with_mask(args.physical_ip, "--physical-ip")
    default_gw = ipam.parse_ip(args.default_gw, "--default-gw") if args.default_gw else None
    ovs_handle = _Ovs(args)
    try:
        ovs = ovs_handle.get()
        system_id = ovs.system_id()
        if args.physical_interface:
            port_name = args.physical_interface
            host.require_link(port_name)
            # Several tenants' routers may share this NIC (one IP each): a MAC per IP keeps
            # their router ports apart on the shared external switch.
            mac = ipam.mac_from_ip(physical_ip.ip)
        else:
            port_name = args.bridge_interface
            ovs.require_bridge(port_name)
            mac = ovs.mac_in_use(port_name)
            nic = _bridge_nic(ovs, port_name)
            zone = config.resolve(args, ("conntrack_zone",)).conntrack_zone
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

        _run_nb(args, scopes=(owner, ext_owner), build=build_rows, ovs=ovs_handle)
        _gateway_host(ovs, args, port_name=port_name, system_id=system_id, owner=ext_owner)
        stale = _drop_stale_ports(ovs, system_id, live_externals)
        ovs.commit()
        _forget_bridges(ovs, stale, timeout=ovs_handle.timeout)
        if args.physical_interface:
            host.flush_addresses(port_name)
        else:
            _shared_bridge_flows(ovs, port_name, nic=nic, host_ip=str(physical_ip.ip), zone=zone,
                                 timeout=ovs_handle.timeout)
    finally:
        ovs_handle.close()
    print("Initialization complete.")
    return 0


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


def _gateway_host(ovs: LocalOvs, args: argparse.Namespace, *, port_name: str, system_id: str,
                  owner: str) -> None:
    """Bind the NIC (or a patch port to the shared bridge) to LSP <port>_<chassis>."""
    ids = {"iface-id": naming.external_port(port_name, system_id), naming.OWNER_KEY: owner}
    ovs.ensure_integration_bridge()
    if args.physical_interface:
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


def _drop_stale_ports(ovs: LocalOvs, system_id: str, live: set[str]) -> list[str]:
    """Take out of OVS the NICs and patch ports of this chassis' external switches that no
    longer exist in the NB (a gateway moved to another NIC, or its tenant was deleted).
    Returns the NICs / bridges those switches were for."""
    prefix = naming.owner_tenant_external(system_id, "")
    owners = set()
    for br in ovs.api.tables["Bridge"].rows.values():
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


def _bridge_nic(ovs: LocalOvs, bridge: str) -> str:
    """The one NIC in the shared bridge (what ovn-k8s-util nics-to-bridge put there)."""
    row = ovs.require_bridge(bridge)
    nics = sorted(str(i.name) for p in row.ports for i in p.interfaces if i.type in ("", "system"))
    if len(nics) != 1:
        raise HostError(f"OVS bridge {bridge} must hold exactly one NIC (it has: "
                        f"{', '.join(nics) or 'none'}); see ovn-k8s-util nics-to-bridge")
    return nics[0]


def _ofport(ovs: LocalOvs, name: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        row = ovs.interface(name)
        ofport = list(row.ofport) if row is not None else []
        if ofport and ofport[0] > 0:
            return int(ofport[0])
        if time.monotonic() > deadline:
            raise HostError(f"OVS gave {name} no OpenFlow port (ofport {ofport or 'unset'})")
        time.sleep(0.05)


def _shared_bridge_flows(ovs: LocalOvs, bridge: str, *, nic: str, host_ip: str, zone: int,
                         timeout: float) -> None:
    ports = openflow.BridgePorts(nic=_ofport(ovs, nic, timeout),
                                 patch=_ofport(ovs, naming.mesos_patch_bridge_to_int(bridge), timeout))
    flows = openflow.gateway_flows([], host_ip=host_ip, ports=ports, zone=zone, cookie=FLOW_COOKIE)
    applier = openflow.FlowApplier(openflow.ofctl_target(ovs.remote, bridge), cookie=FLOW_COOKIE,
                                   timeout=timeout)
    if applier.ensure(flows):                   # re-runs leave the flows alone
        LOG.info("%s: %d flows for the shared NIC %s", bridge, len(flows), nic)


def _forget_bridges(ovs: LocalOvs, ports: Iterable[str], *, timeout: float) -> None:
    """Remove our flows from shared bridges no gateway uses any more."""
    for port in ports:
        if ovs.bridge(port) is None:
            continue
        openflow.FlowApplier(openflow.ofctl_target(ovs.remote, port), cookie=FLOW_COOKIE,
                             timeout=timeout).ensure([])


def _release_local_ports(args: argparse.Namespace, scopes: Iterable[str]) -> None:
    """After a tenant-del: if this host is a gateway chassis of the tenant, take the NICs of the
    deleted external switches out of br-int (other chassis do it in their gateway-del)."""
    externals = [s for s in scopes if s.startswith(nbview.EXTERNAL_OWNER_PREFIX)]
    if not externals:
        return
    ovs_handle = _Ovs(args)
    try:
        try:
            ovs = ovs_handle.get()
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
        _forget_bridges(ovs, [s[len(prefix):] for s in mine], timeout=ovs_handle.timeout)
    finally:
        ovs_handle.close()


def gateway_del(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    ovs_handle = _Ovs(args)
    try:
        ovs = ovs_handle.get()
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

        cmd = _run_nb(args, scopes=(owner,), build=build_rows, ovs=ovs_handle)
        stale = _drop_stale_ports(ovs, system_id, live_externals)
        ovs.commit()
        _forget_bridges(ovs, stale, timeout=ovs_handle.timeout)
    finally:
        ovs_handle.close()
    gr = naming.tenant_gateway_router(tenant, system_id)
    print(f"Gateway {gr} deleted." if found and found[0] or cmd.result
          else f"Gateway {gr} does not exist: nothing to delete.")
    return 0


# --- publish / unpublish ----------------------------------------------------------------------------
def publish(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    vip = build.parse_endpoint(args.vip, "--vip")
    backends = build.parse_backends(args.backends)
    vip_ip = vip.rpartition(":")[0]

    def check(view: NbView) -> None:
        ips = {r.external_ids.get(naming.PHYSICAL_IP_KEY) for r in nbview.gateways(view, tenant)}
        if vip_ip not in ips:
            have = ", ".join(sorted(i for i in ips if i)) or "none yet: run gateway-init"
            raise ConfigError(f"--vip {vip_ip} is not the physical IP of a gateway of tenant "
                              f"{tenant} ({have})")

    _vips_checked(args, check, lambda vips: vips.__setitem__(vip, backends))
    print(f"Published {args.protocol} {vip} -> {backends}.")
    return 0


def _vips_checked(args: argparse.Namespace, check: Callable[[NbView], None],
                  change: Callable[[dict[str, str]], None]) -> Plan:
    tenant = _tenant(args)
    protocol = args.protocol

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

    return _run_nb(args, scopes=(), build=build_rows).result


def unpublish(args: argparse.Namespace) -> int:
    vip = build.parse_endpoint(args.vip, "--vip")
    plan = _vips_checked(args, lambda view: None, lambda vips: vips.pop(vip, None))
    print(f"Unpublished {args.protocol} {vip}." if plan else f"{args.protocol} {vip} was not published.")
    return 0


# --- plugin-install -------------------------------------------------------------------------------
def plugin_install(args: argparse.Namespace) -> int:
    """Link ovn-mesos-plugin into the agent's CNI plugin dir and write the network config the
    agent loads (--network_cni_plugins_dir / --network_cni_config_dir; DC/OS: --dcos)."""
    plugin_default, conf_default = DCOS_DIRS if args.dcos else MESOS_DIRS
    plugin_dir = args.plugin_dir or plugin_default
    conf_dir = args.config_dir or conf_default
    source = args.plugin or shutil.which(PLUGIN) or os.path.join(os.path.dirname(sys.executable), PLUGIN)
    if not os.path.isfile(source) or not os.access(source, os.X_OK):
        raise ConfigError(f"{PLUGIN} not found at {source}: install ovn-k8s, or pass --plugin PATH")
    if args.mtu is not None and not 68 <= args.mtu <= 65535:
        raise ConfigError(f"--mtu {args.mtu} is not in [68, 65535]")
    conf: dict[str, Any] = {"cniVersion": args.cni_version, "name": args.network_name,
                            "type": PLUGIN}
    if args.mtu is not None:
        conf["mtu"] = args.mtu
    if args.ovs_db:
        conf["ovs_db"] = args.ovs_db
    if args.ovn_nb:
        conf["ovn_nb"] = args.ovn_nb
    try:
        os.makedirs(plugin_dir, exist_ok=True)
        link = os.path.join(plugin_dir, PLUGIN)
        target = os.path.realpath(source)
        if not (os.path.islink(link) and os.path.realpath(link) == target):
            tmp = link + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, link)
        os.makedirs(conf_dir, exist_ok=True)
        path = os.path.join(conf_dir, PLUGIN_CONF)
        text = json.dumps(conf, indent=2, sort_keys=True) + "\n"
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            with open(path + ".tmp", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(path + ".tmp", path)
    except OSError as e:
        raise HostError(f"cannot install the plugin: {e.strerror or e}: {e.filename or ''}") from None
    print(f"{link} -> {target}")
    print(f"{path}: network {args.network_name!r}, CNI {args.cni_version}")
    return 0


# --- argument parsing ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="OVN for Mesos: per-tenant routers, networks and gateways "
                               "(idempotent), published VIPs, and the CNI plugin install.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def subcommand(name: str, help_text: str, extra: Sequence[str] = ()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           parents=[process.global_parent(extra)])
        p.add_argument("--tenant-name", required=True, metavar="TENANT",
                       help="the tenant: letters, digits, '.' and '-'")
        return p

    def force(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--force", action="store_true",
                       help=f"also delete the task ports still on {what} (default: refuse)")

    p = subcommand("tenant-init", "Create the tenant's router, its join switch and its load "
                   "balancers.", ("join_subnet",))
    p.set_defaults(func=tenant_init)
    p = subcommand("tenant-del", "Delete everything of the tenant: its networks, gateways, load "
                   "balancers, router and join switch (and, on a gateway chassis, release its NICs).")
    force(p, "its networks")
    p.set_defaults(func=tenant_del)

    p = subcommand("network-init", "Create a network of the tenant: a switch <tenant>_<network> "
                   "linked to the tenant router (subnets may repeat across tenants).")
    p.add_argument("--network-name", required=True, metavar="NAME",
                   help="the network name tasks ask for with the logical_switch label")
    p.add_argument("--subnet", required=True, metavar="CIDR",
                   help="the network's subnet; the tenant router takes its first address")
    p.set_defaults(func=network_init)
    p = subcommand("network-del", "Delete a network of the tenant.")
    p.add_argument("--network-name", required=True, metavar="NAME")
    force(p, "the network")
    p.set_defaults(func=network_del)

    p = subcommand("gateway-init", "Make this chassis a gateway of the tenant: gateway router "
                   "GR_<tenant>_<system-id>, SNAT of the cluster subnet, routes.", ("conntrack_zone",))
    p.add_argument("--cluster-ip-subnet", required=True, metavar="CIDR",
                   help="a subnet holding all of the tenant's networks: SNATed to --physical-ip")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--physical-interface", metavar="NIC",
                      help="a NIC for the gateways: moved into br-int, its address flushed; "
                           "several tenants may share it with their own --physical-ip")
    mode.add_argument("--bridge-interface", metavar="BRIDGE",
                      help="an OVS bridge holding a NIC shared with the host (see ovn-k8s-util "
                           "nics-to-bridge); the router shares its MAC and IP, and flows on the "
                           "bridge send only replies to the router's own traffic to OVN")
    p.add_argument("--physical-ip", required=True, metavar="IP/LEN",
                   help="the gateway router's external address with its prefix length")
    p.add_argument("--default-gw", metavar="IP", help="next hop of the gateway's default route")
    p.set_defaults(func=gateway_init)
    p = subcommand("gateway-del", "Remove this chassis' gateway of the tenant (and take its NIC "
                   "out of br-int when no other tenant uses it).")
    p.set_defaults(func=gateway_del)

    for name, func, text in (("publish", publish, "Publish task ports as a load-balancer VIP on "
                              "the tenant's gateway routers (VIP = a gateway's physical IP)."),
                             ("unpublish", unpublish, "Remove a published VIP.")):
        p = subcommand(name, text)
        p.add_argument("--vip", required=True, metavar="IP:PORT",
                       help="the public address, e.g. the gateway's physical IP and a port")
        if name == "publish":
            p.add_argument("--backends", required=True, metavar="IP:PORT[,IP:PORT...]",
                           help="the tasks' addresses and ports")
        p.add_argument("--protocol", choices=build.PROTOCOLS, default="tcp")
        p.set_defaults(func=func)

    p = sub.add_parser("plugin-install", help="Install ovn-mesos-plugin and its network config "
                       "for the Mesos agent (or DC/OS).",
                       description="Link ovn-mesos-plugin into the agent's CNI plugin directory "
                       "and write the network configuration the agent loads.")
    p.add_argument("--dcos", action="store_true",
                   help=f"use the DC/OS directories ({DCOS_DIRS[0]}, {DCOS_DIRS[1]})")
    p.add_argument("--plugin-dir", metavar="DIR",
                   help=f"--network_cni_plugins_dir of the agent (default {MESOS_DIRS[0]})")
    p.add_argument("--config-dir", metavar="DIR",
                   help=f"--network_cni_config_dir of the agent (default {MESOS_DIRS[1]})")
    p.add_argument("--plugin", metavar="PATH", help=f"the {PLUGIN} executable (default: from PATH)")
    p.add_argument("--network-name", default="ovn", metavar="NAME",
                   help="the CNI network name tasks use in network_infos (default ovn)")
    p.add_argument("--cni-version", default=DEFAULT_PLUGIN_CNI_VERSION,
                   choices=("0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"),
                   help="result format the agent parses (default 0.2.0, what Mesos reads)")
    p.add_argument("--mtu", type=int, metavar="N", help="the tasks' interface MTU (default 1400)")
    p.add_argument("--ovs-db", metavar="ADDR", help="the local OVS database, if not the default")
    p.add_argument("--ovn-nb", metavar="ADDR",
                   help="the NB address (default: read from external_ids:ovn-nb at each call)")
    p.add_argument("--log-level", default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-file", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=plugin_install)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return process.run(PROG, args.func, args)
