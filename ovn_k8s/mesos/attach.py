"""ovn-mesos-plugin's ADD, DEL and CHECK: the task's logical port, its namespace, its OVS port.

NB access is the core's: `ApplyCommand` in one transaction, owner scope `container:<id>/<ifname>`.
Netlink is `ovn_k8s.netlink` and the local OVS (the port on br-int, waiting for ovn-installed)
`ovn_k8s.local_ovsdb` in its pod-ports mode, both through the CNI error codes of
`ovn_k8s.cni.netns` and `ovn_k8s.cni.ovsdb`, as for the Kubernetes plugin.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import netaddr

from ovn_k8s import config, ipam, naming, process
from ovn_k8s.cni import netns, ovsdb
from ovn_k8s.cni.protocol import AddResult, CniError, ErrorCode
from ovn_k8s.desired import mesos as build
from ovn_k8s.errors import ConfigError, ConnectionFailed, OvnK8sError
from ovn_k8s.mesos import nbview
from ovn_k8s.mesos.request import Code, MesosRequest
from ovn_k8s.nb import connection
from ovn_k8s.nb.apply import ApplyCommand, NbView
from ovn_k8s.nb.model import Row

LOG = logging.getLogger("ovn_k8s.mesos.plugin")
CLEANUP_TIMEOUT = 15.0   # seconds for undoing a failed ADD
NETNS_DIR = "/var/run/netns"    # where `ip netns` looks; the task's link is <container-id>


@dataclass(frozen=True, slots=True)
class Allocation:
    port: str                # the logical port and iface-id
    tenant: str | None       # None: a network made by hand
    network: str
    ip: netaddr.IPAddress
    mac: str
    subnet: netaddr.IPNetwork

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.subnet.prefixlen}"

    @property
    def gateway(self) -> str:
        return str(build.NetworkAddresses(self.subnet).router_ip)


# --- connections --------------------------------------------------------------------------------
class _Session:
    """The local OVS and the NB for one call, with settings resolved as the init commands do:
    network configuration > OVN_K8S_* environment > config file > OVS external_ids > default."""

    def __init__(self, request: MesosRequest, deadline: float) -> None:
        self.request = request
        self.deadline = deadline
        settings = request.config.settings
        pre = config.resolve(dict(settings), ("ovs_db",))
        self.ovs_remote = pre.ovs_db
        self._ovs: ovsdb.PodPorts | None = None
        self._ovs_error: CniError | None = None
        self._nb: Any = None
        self.timeout = request.config.timeout

    def ovs(self) -> ovsdb.PodPorts:
        if self._ovs_error is not None:
            raise self._ovs_error        # tried until the deadline once: do not wait again
        if self._ovs is None:
            try:
                self._ovs = ovsdb.PodPorts(self.ovs_remote, deadline=self.deadline)
            except CniError as e:
                self._ovs_error = e
                raise
        return self._ovs

    def nb(self) -> Any:
        if self._nb is None:
            cfg = config.resolve(dict(self.request.config.settings), (*process.NB_OPTIONS, "timeout"),
                                 ovs_external_ids=lambda: self.ovs().external_ids())
            try:
                self._nb = process.connect_nb(cfg)
            except ConfigError as e:
                raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "cannot use the OVN NB", str(e)) from None
            except ConnectionFailed as e:
                raise CniError(ErrorCode.TRY_AGAIN_LATER, "cannot reach the OVN NB", str(e)) from None
        return self._nb

    def apply(self, scopes: tuple[str, ...], build_rows: Any) -> Any:
        cmd = ApplyCommand(self.nb(), scopes=scopes, build=build_rows)
        try:
            with connection.transaction(self.nb(), timeout=self.timeout) as txn:
                txn.add(cmd)
        except CniError:
            raise
        except OvnK8sError as e:
            raise CniError(Code.NB_FAILED, "OVN NB transaction failed", str(e)) from None
        except Exception as e:  # noqa: BLE001 - ovsdbapp/python-ovs errors: one message
            raise CniError(Code.NB_FAILED, "OVN NB transaction failed", f"{type(e).__name__}: {e}") from None
        return cmd.result

    def close(self) -> None:
        if self._nb is not None:
            connection.disconnect(self._nb)
        if self._ovs is not None:
            self._ovs.close()


def _names(request: MesosRequest) -> tuple[str, str]:
    """(owner scope, host-side veth name) of this attachment. The logical port's name depends
    on the network (`<switch>_<task_id>` with a task_id label): ADD decides it in the NB
    transaction, DEL removes by owner and CHECK finds it by owner."""
    return (naming.owner_container(request.container_id, request.ifname),
            netns.host_ifname_for(request.container_id, request.ifname))


# --- ADD -------------------------------------------------------------------------------------------
def _allocate(session: _Session, request: MesosRequest) -> Allocation:
    owner, _ = _names(request)
    chosen: list[Allocation] = []

    def build_rows(view: NbView) -> list[Row]:
        assert request.network is not None
        try:
            net = nbview.find_network(view, request.network, request.tenant)
        except LookupError as e:
            raise CniError(Code.UNKNOWN_NETWORK, "unknown network", str(e)) from None
        except ConfigError as e:
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "ambiguous network", str(e)) from None
        # Every task port of the network is linked into this column: two plugins allocating
        # at once serialise on it (the loser's commit gets TRY_AGAIN and re-plans here).
        view.verify(net.row, "ports")
        port = build.task_port_name(net.switch, request.ifname, request.container_id, request.task_id)
        addrs = build.NetworkAddresses(net.subnet)
        try:
            ip = build.allocate_task_ip(addrs, nbview.task_ips_in_use(net.row, excluding=port),
                                        nbview.current_task_ip(view, port, net.row))
        except ConfigError as e:
            where = f"network {net.network} of tenant {net.tenant}" if net.tenant else f"network {net.switch}"
            raise CniError(Code.NETWORK_FULL, "no free address", f"{where}: {e}") from None
        alloc = Allocation(port, net.tenant, net.network, ip, ipam.mac_from_ip(ip), net.subnet)
        chosen[:] = [alloc]
        row = build.task_port_row(build.TaskPortSpec(
            tenant=net.tenant, network=net.network, container_id=request.container_id,
            ifname=request.ifname, ip=ip, mac=alloc.mac, name=port, switch_id=net.switch_id))
        try:
            nbview.check_no_collisions(view, [row], (owner,))
        except ConfigError as e:
            raise CniError(Code.NB_FAILED, "logical port name taken", str(e)) from None
        return [row]

    session.apply((owner,), build_rows)
    return chosen[0]


def add(request: MesosRequest) -> AddResult:
    cfg = request.config
    deadline = time.monotonic() + cfg.timeout
    owner, host_ifname = _names(request)
    assert request.netns is not None
    session = _Session(request, deadline)
    try:
        alloc = _allocate(session, request)
        port = alloc.port
        LOG.info("%s: %s on %s/%s", port, alloc.cidr, alloc.tenant or "-", alloc.network)
        try:
            _link_netns(request.container_id, request.netns)
            pod = netns.setup_pod_interface(
                netns_path=request.netns, ifname=request.ifname, host_ifname=host_ifname,
                mac=alloc.mac, ip_cidr=alloc.cidr, gateway=alloc.gateway, mtu=cfg.mtu,
                disable_tx_offload=cfg.disable_tx_offload)
            ids = ovsdb.attach_ids(iface_id=port, mac=alloc.mac, sandbox=request.container_id,
                                   ifname=request.ifname, ip_cidr=alloc.cidr)
            session.ovs().attach(cfg.bridge, host_ifname, {**ids, naming.OWNER_KEY: owner},
                                 deadline=deadline)
            if cfg.wait_for_ovn:
                session.ovs().wait_installed(host_ifname, port, deadline=deadline)
        except BaseException:
            LOG.warning("%s: ADD failed, removing what it set up", port)
            _undo(session, request)
            raise
        return netns.cni_result(pod, cfg.dns)
    finally:
        session.close()


def _undo(session: _Session, request: MesosRequest) -> None:
    session.deadline = max(session.deadline, time.monotonic() + CLEANUP_TIMEOUT)
    with contextlib.suppress(Exception):
        _delete_all(session, request)


def _link_netns(container_id: str, netns_path: str) -> None:
    """`/var/run/netns/<container-id>` -> CNI_NETNS, as the original made it, so that `ip netns
    ls` on the agent lists the task and `ip netns exec <container-id>` enters it. Only a
    symlink is ever replaced or removed (a namespace `ip netns add` made there is a mount,
    never ours). A failure is logged: the task's network does not depend on the link."""
    link = os.path.join(NETNS_DIR, container_id)
    try:
        if os.path.realpath(link) == os.path.realpath(netns_path):
            return                       # CNI_NETNS is that very name (or the link is right)
        if os.path.lexists(link) and not os.path.islink(link):
            LOG.warning("%s exists and is not a link: left alone", link)
            return
        os.makedirs(NETNS_DIR, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)              # a stale link of an earlier container with this id
        os.symlink(netns_path, link)
    except OSError as e:
        LOG.warning("cannot link %s to %s: %s", link, netns_path, e)


def _unlink_netns(container_id: str) -> None:
    link = os.path.join(NETNS_DIR, container_id)
    if os.path.islink(link):
        try:
            os.unlink(link)
        except OSError as e:
            LOG.warning("cannot remove %s: %s", link, e)


# --- DEL -------------------------------------------------------------------------------------------
def _delete_all(session: _Session, request: MesosRequest) -> None:
    """OVS port, veth pair, logical port, the /var/run/netns link: each step runs even if an
    earlier one failed; the first failure is raised at the end."""
    owner, host_ifname = _names(request)
    errors: list[CniError] = []
    try:
        session.ovs().detach(host_ifname, sandbox=request.container_id, ifname=request.ifname,
                             deadline=session.deadline)
    except CniError as e:
        errors.append(e)
    try:
        netns.teardown_pod_interface(netns_path=request.netns, ifname=request.ifname,
                                     host_ifname=host_ifname)
    except CniError as e:
        errors.append(e)
    try:
        plan = session.apply((owner,), lambda view: [])
        if plan:
            LOG.info("%s: logical port deleted", owner)
    except CniError as e:
        errors.append(e)
    _unlink_netns(request.container_id)
    if errors:
        raise errors[0]


def delete(request: MesosRequest) -> None:
    session = _Session(request, time.monotonic() + request.config.timeout)
    try:
        _delete_all(session, request)
    finally:
        session.close()


# --- CHECK -----------------------------------------------------------------------------------------
def check(request: MesosRequest) -> None:
    """The logical port, the OVS port and the task's interface are as ADD left them."""
    owner, host_ifname = _names(request)
    prev = request.prev_result
    assert prev is not None
    index = prev.interface_index(request.ifname, request.netns)
    ips = prev.ips_for(index) if index is not None else ()
    if not ips:
        raise CniError(Code.CHECK_FAILED, f"prevResult has no address for {request.ifname}")
    session = _Session(request, time.monotonic() + request.config.timeout)
    problems: list[str] = []
    try:
        found: list[str] = []
        names: list[str] = []

        def read(view: NbView) -> list[Row]:
            for row in view.owned("Logical_Switch_Port", owner):
                if nbview.owner_of(row) == owner:
                    names.append(row.name)
                    found.extend(row.addresses)
            return []

        session.apply((), read)
        want_ip = ips[0].address.split("/")[0]
        port = names[0] if names else naming.task_port(request.ifname, request.container_id)
        if not found:
            problems.append(f"logical port {port} does not exist")
        elif not any(want_ip in a.split()[1:] for a in found):
            problems.append(f"logical port {port} has {found}, not {want_ip}")
        state = session.ovs().port_state(host_ifname)
        if state is None or state.bridge != request.config.bridge:
            problems.append(f"{host_ifname} is not a port of {request.config.bridge}")
        elif state.external_ids.get(ovsdb.IFACE_ID_KEY) != port:
            problems.append(f"{host_ifname} has iface-id {state.external_ids.get(ovsdb.IFACE_ID_KEY)!r}, "
                            f"not {port}")
        elif not state.installed:
            problems.append(f"OVN has not bound {port}")
        try:
            netns.check_pod_interface(netns_path=request.netns or "", ifname=request.ifname,
                                      host_ifname=host_ifname, mac=prev.interfaces[index].mac
                                      if index is not None else None, ip_cidr=ips[0].address,
                                      gateway=ips[0].gateway, mtu=request.config.mtu)
        except CniError as e:
            problems.append(e.details or e.msg)
    finally:
        session.close()
    if problems:
        raise CniError(Code.CHECK_FAILED, f"{request.ifname} of {request.container_id} is not as ADD "
                       "left it", "; ".join(problems))

