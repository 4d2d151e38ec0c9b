"""ovn-k8s-overlay's steps: master-init, minion-init and gateway-init (cli/overlay parses).

Each step writes its NB rows in ONE transaction (computed inside the transaction, so
concurrent runs on several nodes cannot hand out one join address twice or accept overlapping
subnets), then does its host-side steps in the network namespace it runs in. Re-running with
the same arguments changes nothing; with new arguments it converges to them. Settings are
resolved from `given`, what the user passed (ovn_k8s/config.py: flag > environment > config
file > the local OVS' external_ids > default).

A failed command changes nothing (docs/commands.md): every option (config.resolve checks the
numbers' ranges) and host fact (the management port's name, the NIC's or bridge's MAC, the
system-id) is checked before the NB transaction; the host steps,
which need the committed plan, come after it, and when one fails the NB part is undone
(`_undo`: the rows the command created are deleted, the columns it changed are put back).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import netaddr

from ovn_k8s import config, ipam, naming, netlink, process
from ovn_k8s.desired import topology
from ovn_k8s.errors import ConfigError, HostError, NotReadyError
from ovn_k8s.local_ovsdb import LocalOvsdb
from ovn_k8s.nb import connection
from ovn_k8s.nb.apply import ApplyCommand, NbView
from ovn_k8s.nb.model import Row
from ovn_k8s.nb.plan import Plan

LOG = logging.getLogger(__name__)
CNI_CONFLIST = "10-ovn-k8s.conflist"
CNI_NETWORK_NAME = "ovn-k8s"


# --- shared steps -----------------------------------------------------------------------------
def _resolve(given: process.Given, ovs: LocalOvsdb, extra: Sequence[str]) -> config.Config:
    cfg = config.resolve(given, (*process.GLOBAL_OPTIONS, *extra), ovs_external_ids=ovs.external_ids)
    process.setup_logging(cfg.log_level, cfg.log_file)   # an unusable --log-file: ConfigError
    return cfg


def _open_ovs(given: process.Given, extra: Sequence[str] = ()) -> LocalOvsdb:
    """The local OVS, once every option that does not come from it is valid (a bad --mtu is
    its own error line, not hidden behind an unreachable OVS)."""
    independent = [n for n in (*process.GLOBAL_OPTIONS, *extra) if not config.OPTIONS[n].ovs_key]
    pre = config.resolve(given, ("ovs_db", "timeout", *independent))
    return LocalOvsdb(pre.ovs_db, timeout=pre.timeout)


@dataclass(slots=True)
class Applied:
    """What one apply_rows did: enough to undo it (`_undo`)."""

    scopes: tuple[str, ...]
    desired: list[Row] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    # (table, id) -> the row as it was, for the scopes' rows the command does not want
    # (the plan keeps no columns of the rows it deletes)
    unwanted: dict[tuple[str, str], Row] = field(default_factory=dict)


def apply_rows(nb: object, *, scopes: Sequence[str], build: Callable[[NbView], list[Row]],
               timeout: float) -> Plan:
    """Run one ApplyCommand in one NB transaction; return the plan it executed."""
    return _apply(nb, scopes=scopes, build=build, timeout=timeout).plan


def _apply(nb: object, *, scopes: Sequence[str], build: Callable[[NbView], list[Row]],
           timeout: float) -> Applied:
    """apply_rows, returning what it executed with the rows it wanted (for `_undo`)."""
    applied = Applied(tuple(scopes))

    def recorded(view: NbView) -> list[Row]:
        applied.desired = build(view)   # the last run of a retried transaction is the one kept
        applied.unwanted = _unwanted(view, applied.scopes, applied.desired)
        return applied.desired

    cmd = ApplyCommand(nb, scopes=scopes, build=recorded)
    with connection.transaction(nb, timeout=timeout) as txn:
        txn.add(cmd)
    applied.plan = cmd.result
    LOG.info("NB %s: %s", ",".join(scopes), applied.plan.summary() if applied.plan else "no change")
    return applied


def _unwanted(view: NbView, scopes: Sequence[str], desired: list[Row]) -> dict[tuple[str, str], Row]:
    """The scopes' rows that `desired` does not list (the plan will delete them), with the
    columns the command writes in their table, so that `_undo` can make them again."""
    wanted = {(r.table, r.id) for r in desired}
    columns: dict[str, set[str]] = {}
    for r in desired:
        columns.setdefault(r.table, set()).update(r.columns)
    out = {}
    for table, cols in columns.items():
        for row in view.owned(table):
            actual = view.actual(table, row, sorted(cols))
            if actual.owner in scopes and (table, actual.id) not in wanted:
                out[(table, actual.id)] = Row(table, actual.id, actual.owner, actual.columns,
                                              parent=actual.parent)
    return out


def _before(applied: Applied) -> list[Row]:
    """The scopes' rows as they were before `applied`: unchanged rows as they are, created rows
    gone, updated columns back to their old values, deleted rows made again (with new UUIDs;
    a deleted row of a table the command no longer writes at all is logged, not restored)."""
    plan = applied.plan
    created = {(r.table, r.id) for r in plan.create}
    updated = {(u.desired.table, u.desired.id): u for u in plan.update}
    rows = []
    for row in applied.desired:
        key = (row.table, row.id)
        if key in created:
            continue
        u = updated.get(key)
        if u is not None:
            old = {c: u.actual.columns.get(c) for c in u.columns}
            row = Row(row.table, row.id, row.owner, {**row.columns, **old},
                      parent=u.actual.parent or row.parent)
        rows.append(row)
    for gone in plan.delete:
        again = applied.unwanted.get((gone.table, gone.id))
        if again is None:
            LOG.error("cannot restore %s %s deleted from the NB", gone.table, gone.id)
        else:
            rows.append(again)
    return rows


def _undo(nb: object, applied: Applied, timeout: float) -> None:
    """Put the NB part of a command back after its host step failed (best effort: a failure
    here is logged, the host step's error is the one reported)."""
    if not applied.plan:
        return
    before = _before(applied)
    try:
        apply_rows(nb, scopes=applied.scopes, build=lambda _view: before, timeout=timeout)
        LOG.info("host step failed: NB changes of %s undone", ",".join(applied.scopes))
    except Exception:  # noqa: BLE001 -- the original error must reach the user
        LOG.exception("could not undo the NB changes of %s", ",".join(applied.scopes))


@contextlib.contextmanager
def _undo_on_failure(nb: object, applied: Applied, timeout: float) -> Iterator[None]:
    try:
        yield
    except BaseException:
        _undo(nb, applied, timeout)
        raise


def _other_node_subnets(view: NbView, node: str) -> list[tuple[str, netaddr.IPNetwork]]:
    out = []
    for row in view.owned(topology.LS, "node:"):
        other = row.external_ids.get(naming.NODE_KEY)
        subnet = row.other_config.get("subnet")
        if other and other != node and subnet:
            out.append((other, netaddr.IPNetwork(subnet)))
    return out


def _cluster_router(view: NbView, cluster_subnet: netaddr.IPNetwork | None) -> object:
    router = view.row(topology.LR, topology.CLUSTER_ROUTER_ID)
    if router is None:
        raise NotReadyError("the cluster router does not exist in the NB: run master-init first")
    recorded = router.external_ids.get(naming.CLUSTER_SUBNET_KEY)
    if cluster_subnet is not None and recorded and netaddr.IPNetwork(recorded) != cluster_subnet:
        raise ConfigError(f"--cluster-ip-subnet {cluster_subnet} differs from the cluster's "
                          f"{recorded} (set by master-init)")
    return router


def setup_management_port(ovs: LocalOvsdb, *, node: str, subnet: netaddr.IPNetwork,
                          cluster_subnet: netaddr.IPNetwork, mtu: int,
                          service_range: netaddr.IPNetwork | None = None) -> None:
    """The node's own port on its switch: OVS internal port k8s-<node> with S+2, and a route
    to the cluster subnet via S+1, so the node reaches pods (health checks, the API server);
    with a service range, a route to it too, so the node reaches ClusterIP services through
    its switch's load balancers."""
    addrs = ipam.node_addresses(subnet)
    ifname = naming.mgmt_ifname(node)
    ovs.ensure_integration_bridge()
    ovs.ensure_port(naming.BR_INT, ifname, type="internal", mac=topology.mgmt_mac(subnet),
                    mtu_request=mtu, external_ids={"iface-id": naming.mgmt_port(node)})
    ovs.commit()
    netlink.wait_for_link(ifname)
    netlink.set_up(ifname)
    netlink.ensure_addresses(ifname, [addrs.mgmt_cidr])
    netlink.ensure_route(str(cluster_subnet), str(addrs.router_ip), ifname)
    if service_range is not None:
        netlink.ensure_route(str(service_range), str(addrs.router_ip), ifname)


def _service_range(cfg: config.Config, cluster: netaddr.IPNetwork) -> netaddr.IPNetwork | None:
    if not cfg.service_cluster_ip_range:
        return None
    svc = ipam.parse_cidr(cfg.service_cluster_ip_range, "--service-cluster-ip-range")
    if svc.first <= cluster.last and cluster.first <= svc.last:
        raise ConfigError(f"--service-cluster-ip-range {svc} overlaps --cluster-ip-subnet {cluster}")
    return svc


def _node_subnet_check(view: NbView, node: str, subnet: netaddr.IPNetwork,
                       cluster: netaddr.IPNetwork) -> None:
    ipam.check_node_subnet(subnet, cluster, _other_node_subnets(view, node))


# --- master-init -------------------------------------------------------------------------------
def master_init(given: process.Given, *, node: str, cluster: netaddr.IPNetwork,
                subnet: netaddr.IPNetwork) -> None:
    """The cluster router, join switch, load balancer groups, and the master's own node switch
    (`subnet`) and management port."""
    extra = ("mtu", "join_subnet", "service_cluster_ip_range")
    with _open_ovs(given, extra) as ovs:
        cfg = _resolve(given, ovs, extra)
        service_range = _service_range(cfg, cluster)
        join = ipam.parse_cidr(cfg.join_subnet, "--join-subnet")
        if join.first <= cluster.last and cluster.first <= join.last:
            raise ConfigError(f"--join-subnet {join} overlaps --cluster-ip-subnet {cluster}")
        ipam.check_node_subnet(subnet, cluster, [])
        ipam.node_addresses(subnet)
        _check_mgmt_link(ovs, node)
        nb = process.connect_nb(cfg)
        try:
            def build(view: NbView) -> list[Row]:
                router = view.row(topology.LR, topology.CLUSTER_ROUTER_ID)
                if router is not None:
                    _same_master(router, node)
                    view.verify(router, "ports")
                _node_subnet_check(view, node, subnet, cluster)
                spec = topology.MasterSpec(master=node, cluster_subnet=cluster, join_subnet=join)
                return [*topology.master_rows(spec),
                        *topology.node_rows(topology.NodeSpec(node=node, subnet=subnet))]

            applied = _apply(nb, scopes=(naming.OWNER_CLUSTER, naming.owner_node(node)),
                                 build=build, timeout=cfg.timeout)
            with _undo_on_failure(nb, applied, cfg.timeout):
                setup_management_port(ovs, node=node, subnet=subnet, cluster_subnet=cluster,
                                      mtu=cfg.mtu, service_range=service_range)
        finally:
            connection.disconnect(nb)


def _same_master(router: object, node: str) -> None:
    """master-init re-run elsewhere or with a mistyped --node-name must not rename the cluster
    router (and its join ports): refuse, naming both."""
    name = getattr(router, "name", None)
    if name and name != node:
        raise ConfigError(f"--node-name {node} differs from the cluster's master {name} (the "
                          f"cluster router is named after it): run master-init with "
                          f"--node-name={name}, or on {name}")


def _check_mgmt_link(ovs: LocalOvsdb, node: str) -> None:
    """The management port's name must be free or already ours (an OVS internal port): a
    device of the same name would make OVS fail to create it after the NB is written."""
    ifname = naming.mgmt_ifname(node)
    if netlink.link_index(ifname) is not None and ovs.port_bridge(ifname) is None:
        raise HostError(f"interface {ifname} exists and is not an OVS port: cannot make the "
                        f"management port of {node}")


# --- minion-init -------------------------------------------------------------------------------
def minion_init(given: process.Given, *, node: str, cluster: netaddr.IPNetwork,
                subnet: netaddr.IPNetwork | None) -> None:
    """This node's switch (`subnet`), its router port and management port, and the CNI
    configuration. Without `subnet`: the one the watcher (--allocate-node-subnets) gave this
    Node, waited for (`wait_for_node_subnet`)."""
    if subnet is not None:
        ipam.check_node_subnet(subnet, cluster, [])
        ipam.node_addresses(subnet)
    extra = ("mtu", "cni_conf_dir", "cni_bin_dir", "cni_plugin", "k8s_api_server", "k8s_api_token",
             "k8s_ca_certificate", "kubeconfig", "service_cluster_ip_range",
             "node_subnet_timeout")
    with _open_ovs(given, extra) as ovs:
        cfg = _resolve(given, ovs, extra)
        service_range = _service_range(cfg, cluster)
        if subnet is None:
            subnet = wait_for_node_subnet(cfg, node, timeout=cfg.node_subnet_timeout)
            ipam.check_node_subnet(subnet, cluster, [])
            ipam.node_addresses(subnet)
        chosen = subnet
        _check_mgmt_link(ovs, node)
        nb = process.connect_nb(cfg)
        try:
            def build(view: NbView) -> list[Row]:
                router = _cluster_router(view, cluster)
                # Every node links a port into the cluster router: verifying that column makes
                # two concurrent minion-inits serialise, so the overlap check below holds.
                view.verify(router, "ports")
                _node_subnet_check(view, node, chosen, cluster)
                return topology.node_rows(topology.NodeSpec(node=node, subnet=chosen))

            applied = _apply(nb, scopes=(naming.owner_node(node),), build=build,
                                 timeout=cfg.timeout)
            with _undo_on_failure(nb, applied, cfg.timeout):
                # The CNI directories first: they fail for reasons no check can foresee
                # (a read-only or pseudo file system) and change nothing in OVS.
                plugin = _cni_dirs(cfg)
                setup_management_port(ovs, node=node, subnet=chosen, cluster_subnet=cluster,
                                      mtu=cfg.mtu, service_range=service_range)
                if plugin is not None:
                    install_cni(cfg)
        finally:
            connection.disconnect(nb)


def wait_for_node_subnet(cfg: config.Config, node: str, *, timeout: float,
                         clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> netaddr.IPNetwork:
    """The subnet the watcher annotated on this Node (`naming.NODE_SUBNET_ANNOTATION`), read
    from the API server (--kubeconfig, or --k8s-api-server with its token and CA, as the CNI
    plugin finds it) every second until `timeout`. An API server that refuses us is an error
    at once; one that is down, a Node not registered yet or not annotated yet are waited
    for."""
    from ovn_k8s.kube import auth
    from ovn_k8s.kube.errors import Forbidden, KubeConfigError, KubeError, NotFound, Unauthorized
    from ovn_k8s.kube.params import resource_path
    from ovn_k8s.kube.rest import KubeClient

    key = naming.NODE_SUBNET_ANNOTATION
    try:
        params = auth.load_connection_params(
            kubeconfig=cfg.kubeconfig, api_server=cfg.k8s_api_server, token=cfg.k8s_api_token,
            ca_file=cfg.k8s_ca_certificate)
    except KubeConfigError as exc:
        raise ConfigError(f"no --minion-switch-subnet, and the API server to read this node's "
                          f"subnet from is not usable: {exc}") from None
    deadline = clock() + timeout
    with KubeClient(params, timeout=min(cfg.timeout, 10.0), connect_timeout=5.0,
                    user_agent="ovn-k8s-overlay") as client:
        LOG.info("no --minion-switch-subnet: waiting up to %gs for %s on node %s (%s)",
                 timeout, key, node, params.server)
        while True:
            try:
                obj = client.get(resource_path("nodes", name=node))
                text = ((obj.get("metadata") or {}).get("annotations") or {}).get(key)
                if text:
                    subnet = ipam.parse_cidr(text, f"node {node}'s annotation {key}")
                    LOG.info("node %s: subnet %s (from its annotation %s)", node, subnet, key)
                    return subnet
                why = f"node {node} has no {key} annotation yet"
            except (Unauthorized, Forbidden) as exc:
                raise ConfigError(f"reading node {node} from {params.server}: {exc}") from None
            except NotFound:
                why = f"node {node} is not registered in the API server"
            except KubeError as exc:
                why = str(exc)
            left = deadline - clock()
            if left <= 0:
                raise NotReadyError(
                    f"no subnet for node {node} after {timeout:g}s ({why}): run the watcher "
                    f"with --allocate-node-subnets, or give --minion-switch-subnet")
            sleep(min(1.0, left))


def _cni_dirs(cfg: config.Config) -> str | None:
    """The CNI plugin's path once the runtime's directories exist (None: no plugin in PATH)."""
    plugin = shutil.which(cfg.cni_plugin)
    if plugin is None:
        LOG.warning("CNI plugin %s not found in PATH: CNI configuration not installed",
                    cfg.cni_plugin)
        return None
    for flag, directory in (("--cni-bin-dir", cfg.cni_bin_dir), ("--cni-conf-dir", cfg.cni_conf_dir)):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise HostError(f"{flag}: cannot create {directory}: {e.strerror or e}") from None
    return plugin


def install_cni(cfg: config.Config) -> bool:
    """Link the CNI plugin into the runtime's plugin dir and write a .conflist, once the plugin
    exists in PATH. Runtimes pick the first conflist in lexical order, hence the 10- prefix.

    The plugin's entry carries what it needs on this node (docs/cni.md): `mtu`, `bridge`,
    `ovsdb` (this node's OVS), `log_file`, and where the API server is when minion-init was
    told explicitly (flag, environment or config file): `kubeconfig`, or `k8s_api_server` with
    `k8s_api_token` (the file is then 0600) and `k8s_ca_cert`. A server that minion-init found
    in the OVS external_ids is not copied: the plugin reads those itself at every call, so a
    changed token reaches it without re-running minion-init.
    """
    plugin = shutil.which(cfg.cni_plugin)
    if plugin is None:
        LOG.warning("CNI plugin %s not found in PATH: CNI configuration not installed",
                    cfg.cni_plugin)
        return False
    name = os.path.basename(cfg.cni_plugin)
    os.makedirs(cfg.cni_bin_dir, exist_ok=True)
    link = os.path.join(cfg.cni_bin_dir, name)
    if os.path.realpath(link) != os.path.realpath(plugin):
        tmp = link + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.realpath(plugin), tmp)
        os.replace(tmp, link)
    entry: dict[str, object] = {"type": name, "mtu": cfg.mtu, "bridge": naming.BR_INT,
                                "ovsdb": cfg.ovs_db,
                                "log_file": "/var/log/openvswitch/ovn-k8s-cni-overlay.log"}
    explicit = {"flag", "env", "file"}
    server = cfg.k8s_api_server
    if cfg.kubeconfig:
        entry["kubeconfig"] = os.path.abspath(cfg.kubeconfig)
    elif server and cfg.sources.get("k8s_api_server") in explicit:
        entry["k8s_api_server"] = server
        if cfg.k8s_api_token:
            entry["k8s_api_token"] = cfg.k8s_api_token
    ca = cfg.k8s_ca_certificate
    if not cfg.kubeconfig and server and server.startswith("https://") and ca and (
            cfg.sources.get("k8s_ca_certificate") in explicit or os.path.isfile(ca)):
        entry["k8s_ca_cert"] = os.path.abspath(ca)
    conflist = {"cniVersion": "1.0.0", "name": CNI_NETWORK_NAME, "plugins": [entry]}
    text = json.dumps(conflist, indent=2, sort_keys=True) + "\n"
    mode = 0o600 if "k8s_api_token" in entry else 0o644  # a bearer token is a secret
    os.makedirs(cfg.cni_conf_dir, exist_ok=True)
    path = os.path.join(cfg.cni_conf_dir, CNI_CONFLIST)
    try:
        with open(path, encoding="utf-8") as f:
            current: str | None = f.read()
    except FileNotFoundError:
        current = None
    if current != text or (os.stat(path).st_mode & 0o777) != mode:
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)  # O_CREAT's mode is masked by the umask
            f.write(text)
        os.replace(path + ".tmp", path)
    return True


# --- gateway-init ------------------------------------------------------------------------------
def gateway_init(given: process.Given, *, node: str, cluster: netaddr.IPNetwork,
                 physical_ip: netaddr.IPNetwork, default_gw: netaddr.IPAddress | None,
                 rampout: Sequence[netaddr.IPNetwork] = (), physical_interface: str | None = None,
                 bridge_interface: str | None = None) -> None:
    """Make this node a gateway: gateway router bound to this chassis, external switch, SNAT
    and routes; on a NIC of its own (`physical_interface`: moved into br-int, its addresses
    flushed) or on a bridge holding a NIC shared with the host (`bridge_interface`). Exactly
    one is given."""
    with _open_ovs(given) as ovs:
        cfg = _resolve(given, ovs, ())
        system_id = ovs.system_id()
        if physical_interface:
            port_name = physical_interface
            mac = _valid_mac(netlink.link_mac(port_name), f"interface {port_name}")
        else:
            assert bridge_interface is not None
            port_name = bridge_interface
            ovs.require_bridge(port_name)
            mac = _valid_mac(ovs.mac_in_use(port_name), f"OVS bridge {port_name}")
        nb = process.connect_nb(cfg)
        try:
            def build(view: NbView) -> list[Row]:
                _cluster_router(view, cluster)
                join_ls = view.row(topology.LS, topology.JOIN_SWITCH_ID)
                if join_ls is None:
                    raise NotReadyError("the join switch does not exist in the NB: run master-init first")
                join = netaddr.IPNetwork(join_ls.external_ids[naming.JOIN_SUBNET_KEY])
                # Every gateway links a port into the join switch: verifying that column makes
                # concurrent gateway-inits serialise, so no join address is handed out twice.
                view.verify(join_ls, "ports")
                join_ip = _join_address(view, node, join)
                spec = topology.GatewaySpec(
                    node=node, system_id=system_id, cluster_subnet=cluster, join_subnet=join,
                    join_ip=join_ip, physical_ip=physical_ip, physical_mac=mac,
                    port_name=port_name, default_gw=default_gw, rampout_subnets=list(rampout))
                return topology.gateway_rows(spec)

            applied = _apply(nb, scopes=(naming.owner_gateway(node),), build=build,
                                 timeout=cfg.timeout)
            with _undo_on_failure(nb, applied, cfg.timeout):
                _gateway_host(ovs, node=node, port_name=port_name, mac=mac,
                              physical_interface=physical_interface)
        finally:
            connection.disconnect(nb)


def _valid_mac(mac: str, what: str) -> str:
    """A unicast Ethernet address, as OVN wants it in a router port's `mac`."""
    try:
        eui = netaddr.EUI(mac)
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise HostError(f"{what} has no valid MAC address ({mac!r})") from None
    if eui.version != 48 or eui.words[0] & 1 or int(eui) == 0:
        raise HostError(f"{what} has no unicast MAC address ({mac})")
    return str(eui.format(netaddr.mac_unix_expanded))


def _gateway_host(ovs: LocalOvsdb, *, node: str, port_name: str, mac: str,
                  physical_interface: str | None) -> None:
    """gateway-init's host side: the NIC (or a patch pair to the shared bridge) in br-int."""
    iface_id = naming.external_port(port_name, node)
    owner = {naming.OWNER_KEY: naming.owner_gateway(node)}
    ovs.ensure_integration_bridge()
    if physical_interface:
        # The NIC becomes an OVN port: its address now belongs to the gateway router.
        ovs.ensure_port(naming.BR_INT, port_name, external_ids={"iface-id": iface_id, **owner})
        keep = {port_name}
    else:
        # Shared NIC: the router shares the bridge's MAC and IP (the gateway helper sorts the
        # traffic); pin the bridge MAC so it survives the NIC being re-added.
        ovs.ensure_bridge(port_name, other_config={"hwaddr": mac})
        int_side, br_side = naming.patch_int_to_bridge(port_name), naming.patch_bridge_to_int(port_name)
        ovs.ensure_patch_pair(naming.BR_INT, int_side, port_name, br_side,
                              external_ids_a={"iface-id": iface_id, **owner})
        keep = {int_side, br_side}
    # A previous run with another NIC or mode left its port behind: take it out.
    for stale in ovs.remove_owned_ports(naming.owner_gateway(node), keep):
        LOG.info("removing %s left by a previous gateway-init", stale)
    ovs.commit()
    if physical_interface:
        netlink.flush_addresses(port_name)


def _join_address(view: NbView, node: str, join: netaddr.IPNetwork) -> netaddr.IPAddress:
    """This gateway's join address: the one it has if still valid, else the lowest free one."""
    mine = naming.rtoj(naming.gateway_router(node))
    ports = ((lrp.name, lrp.networks) for lrp in view.owned(topology.LRP)
             if lrp.external_ids.get(naming.CONNECT_TO_JOIN_MARK) == "yes")
    return ipam.join_address_among(join, mine, ports)
