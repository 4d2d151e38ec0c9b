"""Netlink: the one module that changes and reads the kernel's links, addresses and routes.

Two kinds of callers, one set of primitives (`_link`, `_converge_addresses`, ...):
- the node's own network namespace (the topology commands, nics-to-bridge, the gateway helper):
  `addresses`, `ensure_addresses`, `ensure_route`, `wait_for_link`, ...; every `ensure_*`
  compares before it writes, so a re-run with the same arguments changes nothing;
- a pod's network namespace (the Kubernetes and Mesos CNI plugins): the veth pair between the
  node and the pod, created or converged (`setup_veth_pair`), observed (`inspect_veth_pair`)
  and removed (`teardown_veth_pair`). The host side lives in the netns of the calling process,
  the pod side in the netns given by path (`/var/run/netns/NAME`, `/proc/PID/ns/net`, or a
  runtime's bind mount). The rtnetlink socket for the pod side is made inside the pod netns by
  the calling thread (`_socket_in`: setns there, socket, setns back), not by pyroute2's forked
  helper process (~8 ms of CPU and 30-60 ms of wall time per socket on a busy node); setns
  changes only the calling thread's netns, and only for the socket() call.

Everything goes over netlink sockets plus one ethtool ioctl, never `ip`/`ethtool` processes:
the CNI plugin runs per pod, and process-per-call storms are a known pain point
(peers-and-targets.md §2). The node-side operations use pyroute2, imported on first use by
`_pyroute2()` (see there for the import measure and why it is pinned). A pod's pair
(`setup_veth_pair`, `inspect_veth_pair`, `teardown_veth_pair`) uses `netlink_raw`, a minimal
rtnetlink client, instead: the pyroute2 import cost every CNI ADD/DEL ~50 ms, more than the
netlink work itself (figures: docs/performance.md, "CNI: rtnetlink without pyroute2"); so the
CNI plugins load no pyroute2 (tests/integration/test_netlink_raw.py checks it).

Errors: kernel failures are HostError with the kernel's reason; a pod netns path that does not
exist is NetnsNotFound, one that is not a foreign network namespace NotAPodNetns (both
HostError); invalid arguments (a bad MAC or CIDR) are ValueError, so callers validate first.
Must not import kubernetes, ovsdbapp, requests or yaml (the CNI plugin imports it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import importlib
import importlib.util
import ipaddress
import logging
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ovn_k8s import netlink_raw
from ovn_k8s.errors import HostError

LOG = logging.getLogger(__name__)

MAIN_TABLE = 254
RTN_UNICAST = 1
RTPROT_KERNEL = 2
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
IFA_F_PERMANENT = 0x80
_IFF_UP = 0x1
_MAX_IFNAME = 15  # IFNAMSIZ - 1
_NS_GET_NSTYPE = 0xB703  # ioctl_ns(2): _IO(0xb7, 0x3), Linux >= 4.11
_CLONE_NEWNET = 0x40000000
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NetnsNotFound(HostError):
    """The pod network namespace path does not exist (the sandbox is gone)."""


class NotAPodNetns(HostError):
    """The path is not a network namespace, or it is the caller's own one."""


# ---------------------------------------------------------------------------------------------
# pyroute2, imported on first use

# NOTE(speed): the pyroute2 version `_pyroute2()` was measured with. setup.py pins it and
# tests/unit/test_netlink_import.py fails when the installed version differs from it.
PYROUTE2_MEASURED = "0.9.7"
_VERSION_RE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)


def pyroute2_version() -> str | None:
    """The installed pyroute2's version, read from its source without importing it."""
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "config", "version.py")
    try:
        with open(path, encoding="utf-8") as f:
            found = _VERSION_RE.search(f.read())
    except OSError:
        return None
    return found.group(1) if found else None


def _defer_package_init(name: str) -> None:
    """Register package `name` without running its `__init__` until a name it defines is used.

    Submodules import normally into this bare package (also via `from pyroute2 import
    config`); the first lookup of any other attribute (`pyroute2.IPRoute`, `from pyroute2
    import NDB`) runs the real `__init__` in place (PEP 562 module `__getattr__`), so other users
    of pyroute2 in the same process still see the whole package. No-op if it is imported already.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not an importable package: let the normal import report it
    module = importlib.util.module_from_spec(spec)

    def complete(attr: str) -> Any:
        if not attr.startswith("__") and importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")  # `from pyroute2 import config`
        del module.__getattr__
        spec.loader.exec_module(module)  # the real __init__, in this module object
        return getattr(module, attr)

    module.__getattr__ = complete  # type: ignore[method-assign]
    sys.modules[name] = module


@functools.cache
def _pyroute2() -> SimpleNamespace:
    """The two pyroute2 names this module uses: IPRoute and NetlinkError.

    NOTE(speed): importing any pyroute2 submodule first runs `pyroute2/__init__.py`, which
    imports the whole library (ndb, ipdb, nftables, wireguard, ...): 80 ms against 52 ms for
    the submodules used here (pyroute2 0.9.7, median of 7 fresh processes on the 2-core dev VM),
    paid by every CNI ADD and DEL. With the version it was measured with
    (PYROUTE2_MEASURED) the package is registered without running that `__init__`
    (`_defer_package_init`); any other version gets the plain import. This is the only place in
    the project that touches another library's import machinery.
    """
    if pyroute2_version() == PYROUTE2_MEASURED:
        _defer_package_init("pyroute2")
    from pyroute2.iproute.linux import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    return SimpleNamespace(IPRoute=IPRoute, NetlinkError=NetlinkError)


@contextlib.contextmanager
def _kernel_errors(what: str) -> Iterator[None]:
    """Netlink and OS failures as HostError("failed to <what>: <reason>")."""
    try:
        yield
    except HostError:
        raise
    except (OSError, RuntimeError, *_netlink_errors()) as err:
        raise HostError(f"failed to {what}: {type(err).__name__}: {err}") from err


def _netlink_errors() -> tuple[type[Exception], ...]:
    """The kernel-refused-it exceptions: ours, and pyroute2's if something loaded it (importing
    it here would cost the CNI plugin the import `netlink_raw` avoids)."""
    loaded = sys.modules.get("pyroute2.netlink.exceptions")
    if loaded is None:
        return (netlink_raw.NetlinkError,)
    return (netlink_raw.NetlinkError, loaded.NetlinkError)


def _rtnl(stack: contextlib.ExitStack, netns_fd: int | None = None) -> netlink_raw.Rtnl:
    """A pyroute2-free rtnetlink socket (`netlink_raw`) for a pod's pair: in this netns, or in
    the netns of `netns_fd`; closed with `stack`."""
    rtnl = netlink_raw.Rtnl(None if netns_fd is None else _socket_in(netns_fd))
    stack.callback(rtnl.close)
    return rtnl


def _iproute(stack: contextlib.ExitStack) -> Any:
    """A pyroute2 rtnetlink socket in this netns (the node-side operations); closed with `stack`."""
    ipr = _pyroute2().IPRoute()
    stack.callback(ipr.close)
    return ipr


def _socket_in(netns_fd: int) -> socket.socket:
    """An rtnetlink socket made inside the netns of `netns_fd` by this thread: setns(2) there,
    socket(2), setns back. The thread is in the other netns only for the socket() call."""
    import ctypes  # ~1.5 ms, only for calls that need it

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(netns_fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the pod netns: {os.strerror(err)}")
        try:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                # This thread would go on configuring the pod's netns as if it were the
                # node's: nothing it could do next is safe.
                err = ctypes.get_errno()
                os.write(2, f"ovn-k8s: cannot return to the node netns: {os.strerror(err)}\n"
                         .encode())
                os._exit(70)
    finally:
        os.close(home)


@contextlib.contextmanager
def _here(what: str) -> Iterator[Any]:
    """An rtnetlink socket in this process' netns, with kernel failures as HostError."""
    with contextlib.ExitStack() as stack, _kernel_errors(what):
        yield _iproute(stack)


# ---------------------------------------------------------------------------------------------
# primitives on one socket


def _link(ipr: Any, name: str) -> Any | None:
    try:
        return ipr.link("get", ifname=name)[0]
    except _netlink_errors() as err:
        if err.code == errno.ENODEV:
            return None
        raise


def _kind(link: Any) -> str | None:
    return link.get(("linkinfo", "kind"))


def _is_up(link: Any | None) -> bool:
    return bool(link is not None and link["flags"] & _IFF_UP)


def _delete(ipr: Any, index: int) -> bool:
    try:
        ipr.link("del", index=index)
    except _netlink_errors() as err:
        if err.code == errno.ENODEV:  # a concurrent or kernel-side removal won
            return False
        raise
    return True


def _set_up(ipr: Any, link: Any) -> bool:
    if _is_up(link):
        return False
    ipr.link("set", index=link["index"], state="up")
    return True


def _addresses(ipr: Any, index: int, *, family: int | None = None,
               global_only: bool = False) -> list[tuple[IPInterface, Any]]:
    """(address, message) of the interface's addresses; `global_only` leaves out link-local
    (fe80::/64) and host-scope ones, which are the kernel's."""
    found = []
    for msg in ipr.addr("dump", index=index):
        if msg["index"] != index or (family is not None and msg["family"] != family):
            continue
        if global_only and msg["scope"] != RT_SCOPE_UNIVERSE:
            continue
        found.append((ipaddress.ip_interface(f"{msg.get('local') or msg.get('address')}/{msg['prefixlen']}"), msg))
    return found


def _converge_addresses(ipr: Any, index: int, want: Iterable[IPInterface], *, family: int,
                        global_only: bool) -> tuple[list[IPInterface], list[IPInterface]]:
    """Exactly `want` as the interface's addresses of `family`; (removed, added)."""
    wanted = set(want)
    have = [a for a, _ in _addresses(ipr, index, family=family, global_only=global_only)]
    removed = [a for a in have if a not in wanted]
    added = sorted((a for a in wanted if a not in have), key=str)
    for stale in removed:
        ipr.addr("del", index=index, address=str(stale.ip), prefixlen=stale.network.prefixlen)
    for new in added:
        ipr.addr("add", index=index, address=str(new.ip), prefixlen=new.network.prefixlen)
    return removed, added


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def _default_dst(version: int) -> str:
    return "0.0.0.0/0" if version == 4 else "::/0"


# ---------------------------------------------------------------------------------------------
# the node's own network namespace


@dataclass(frozen=True, slots=True)
class Address:
    cidr: str            # "192.0.2.5/24"
    family: int
    scope: int
    permanent: bool      # False for addresses a DHCP client or SLAAC will renew

    @property
    def movable(self) -> bool:
        """Worth moving to a bridge: not link-local, not dynamic (nics-to-bridge rules)."""
        return self.permanent and self.scope != RT_SCOPE_LINK


@dataclass(frozen=True, slots=True)
class Route:
    """A main-table route. `gateway` None: on-link, or (pod routes) via the pod's gateway."""

    dst: str                    # "0.0.0.0/0", "10.1.0.0/16"
    gateway: str | None = None
    proto: int | None = None    # RTPROT_*: who made it; None lets the kernel say (boot)
    priority: int | None = None

    @property
    def family(self) -> int:
        return _family(ipaddress.ip_network(self.dst, strict=False).version)

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"dst": self.dst, "family": self.family}
        for key, value in (("gateway", self.gateway), ("proto", self.proto), ("priority", self.priority)):
            if value is not None:
                spec[key] = value
        return spec


def link_index(name: str) -> int | None:
    with _here(f"look up {name}") as ipr:
        link = _link(ipr, name)
    return link["index"] if link is not None else None


def require_link(name: str, what: str = "interface") -> int:
    index = link_index(name)
    if index is None:
        raise HostError(f"{what} {name} does not exist in this network namespace")
    return index


def link_mac(name: str) -> str:
    with _here(f"read {name}") as ipr:
        link = _link(ipr, name)
    if link is None:
        raise HostError(f"interface {name} does not exist in this network namespace")
    return str(link.get("address"))


def wait_for_link(name: str, timeout: float = 10.0) -> int:
    """OVS creates internal ports asynchronously; wait until the kernel device exists."""
    deadline = time.monotonic() + timeout
    while True:
        index = link_index(name)
        if index is not None:
            return index
        if time.monotonic() > deadline:
            raise HostError(f"interface {name} did not appear within {timeout:.0f}s "
                            "(is ovs-vswitchd running?)")
        time.sleep(0.05)


def addresses(name: str, family: int | None = None) -> list[Address]:
    index = require_link(name)
    with _here(f"read the addresses of {name}") as ipr:
        found = _addresses(ipr, index, family=family)
    out = []
    for iface, msg in found:
        flags = msg.get("IFA_FLAGS") or msg["flags"]
        out.append(Address(cidr=str(iface), family=msg["family"], scope=msg["scope"],
                           permanent=bool(flags & IFA_F_PERMANENT)))
    return out


def routes_via(name: str) -> list[Route]:
    """Main-table unicast routes through the interface that were not made by the kernel."""
    index = require_link(name)
    out = []
    with _here(f"read the routes via {name}") as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.route("dump", family=family, table=MAIN_TABLE):
                if msg.get("table") != MAIN_TABLE or msg["type"] != RTN_UNICAST:
                    continue
                if msg["proto"] == RTPROT_KERNEL or msg.get("oif") != index:
                    continue
                dst = msg.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
                out.append(Route(dst=f"{dst}/{msg['dst_len']}", gateway=msg.get("gateway"),
                                 proto=msg["proto"], priority=msg.get("priority")))
    return out


def set_up(name: str) -> bool:
    with _here(f"set {name} up") as ipr:
        link = _link(ipr, name)
        if link is None:
            raise HostError(f"interface {name} does not exist in this network namespace")
        return _set_up(ipr, link)


def ensure_addresses(name: str, cidrs: Iterable[str], *, family: int = socket.AF_INET) -> bool:
    """Make the interface's addresses of `family` exactly `cidrs`. Returns True if it changed."""
    want = [ipaddress.ip_interface(c) for c in cidrs]
    index = require_link(name)
    with _here(f"set the addresses of {name}") as ipr:
        removed, added = _converge_addresses(ipr, index, want, family=family, global_only=False)
    if removed or added:
        LOG.info("%s: addresses -%s +%s", name, [str(a) for a in removed], [str(a) for a in added])
    return bool(removed or added)


def flush_addresses(name: str, family: int = socket.AF_INET) -> bool:
    return ensure_addresses(name, [], family=family)


def ensure_route(dst: str, gateway: str, ifname: str) -> bool:
    """Exactly one main-table route to `dst`, via `gateway` on `ifname`."""
    index = require_link(ifname)
    net = ipaddress.ip_network(dst)
    family = _family(net.version)
    with _here(f"route {dst} via {gateway}") as ipr:
        current = [r for r in ipr.route("dump", family=family, table=MAIN_TABLE)
                   if r.get("table") == MAIN_TABLE and r["dst_len"] == net.prefixlen
                   and (r.get("dst") or str(net.network_address)) == str(net.network_address)]
        if (len(current) == 1 and current[0].get("gateway") == gateway
                and current[0].get("oif") == index):
            return False
        for r in current:
            ipr.route("del", dst=dst, gateway=r.get("gateway"), oif=r.get("oif"))
        ipr.route("add", dst=dst, gateway=gateway, oif=index)
    LOG.info("route %s via %s dev %s", dst, gateway, ifname)
    return True


def add_route(route: Route, ifname: str) -> None:
    index = require_link(ifname)
    with _here(f"route {route.dst} on {ifname}") as ipr:
        ipr.route("replace", oif=index, **route.spec())


# ---------------------------------------------------------------------------------------------
# a pod's veth pair


@dataclass(frozen=True, slots=True)
class VethPair:
    """What `setup_veth_pair` configured, read back from the kernel."""

    netns_path: str
    ifname: str
    host_ifname: str
    host_ifindex: int
    host_mac: str
    pod_ifindex: int
    pod_mac: str
    ip_cidr: str
    gateway: str
    mtu: int
    routes: tuple[Route, ...] = ()  # the extra routes; gateway None = via `gateway`


@dataclass(frozen=True, slots=True)
class VethPairState:
    """The pair as `inspect_veth_pair` observed it (no judgement)."""

    netns_path: str
    ifname: str
    host_ifname: str
    netns_exists: bool = False
    host_exists: bool = False
    host_kind: str | None = None
    host_up: bool = False
    host_ifindex: int | None = None
    host_mac: str | None = None
    host_mtu: int | None = None
    pod_exists: bool = False
    paired: bool = False  # ifname and host_ifname are the two ends of one veth
    pod_ifindex: int | None = None
    pod_mac: str | None = None
    pod_mtu: int | None = None
    pod_up: bool = False
    lo_up: bool = False
    addresses: tuple[str, ...] = ()  # global-scope CIDRs on the pod interface
    routes: tuple[Route, ...] = ()  # main-table routes out of the pod interface
    tx_checksum: bool | None = None  # pod-side TX checksum offload; None when not readable


@dataclass(frozen=True, slots=True)
class _Want:
    mac: str
    iface: IPInterface
    gateway: IPAddress
    mtu: int
    routes: tuple[Route, ...]


def _want(*, mac: str, ip_cidr: str, gateway: str, mtu: int, routes: Sequence[Route]) -> _Want:
    norm_mac = mac.lower()
    if not _MAC_RE.match(norm_mac) or int(norm_mac[:2], 16) & 1:
        raise ValueError(f"{mac!r} is not a unicast MAC address")
    if "/" not in ip_cidr:
        raise ValueError(f"{ip_cidr!r} has no prefix length")
    iface = ipaddress.ip_interface(ip_cidr)
    gw = ipaddress.ip_address(gateway)
    if gw.version != iface.version or gw == iface.ip:
        raise ValueError(f"gateway {gateway} does not suit {ip_cidr}")
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise ValueError(f"bad MTU {mtu!r}")
    for route in routes:
        if not isinstance(route, Route) or ipaddress.ip_network(route.dst, strict=False).version != iface.version:
            raise ValueError(f"route {route!r} does not suit {ip_cidr}")
    return _Want(norm_mac, iface, gw, mtu, tuple(routes))


def check_ifname(name: str, what: str = "interface name") -> None:
    """ValueError unless `name` is a usable Linux interface name."""
    if not name or len(name.encode()) > _MAX_IFNAME or any(c in "/:" or c.isspace() for c in name):
        raise ValueError(f"bad {what} {name!r}")


def _open_netns(stack: contextlib.ExitStack, path: str) -> int:
    """An fd on the pod netns, closed with `stack`. NetnsNotFound if it is gone; NotAPodNetns if
    it is not a netns or is our own (we would reconfigure the node's lo and default route)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NetnsNotFound(f"network namespace {path} does not exist") from None
    stack.callback(os.close, fd)
    try:
        nstype = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as err:
        raise NotAPodNetns(f"{path} is not a namespace: {err}") from None
    if nstype != _CLONE_NEWNET:
        raise NotAPodNetns(f"{path} is not a network namespace")
    ours, theirs = os.stat("/proc/thread-self/ns/net"), os.fstat(fd)
    if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
        raise NotAPodNetns(f"{path} is this process' own network namespace")
    return fd


def _paired(host: Any, netns_fd: int, host_link: Any, pod_link: Any | None) -> bool:
    """True if the two links are the ends of one veth. Ifindexes repeat across namespaces, so
    check both directions and that the host end's peer netns id is the pod netns."""
    if pod_link is None or _kind(host_link) != "veth" or _kind(pod_link) != "veth":
        return False
    if host_link.get("link") != pod_link["index"] or pod_link.get("link") != host_link["index"]:
        return False
    return _peer_in(host, host_link, netns_fd)


# ethtool's legacy TX checksum commands (linux/ethtool.h), the ones `ethtool -K DEV tx` uses.
_SIOCETHTOOL = 0x8946
_ETHTOOL_GTXCSUM = 0x16
_ETHTOOL_STXCSUM = 0x17


def _tx_checksum(pod: Any, ifname: str, *, turn_off: bool) -> bool:
    """TX checksum offload of `ifname` in the pod netns, turned off first when `turn_off`.

    An ethtool ioctl on the pod netns' rtnetlink socket: the kernel runs a device ioctl on any
    socket in the netns the socket was made in (ethtool names are per netns), and ethtool(8)
    itself falls back to a netlink socket for these ioctls. No second socket in the pod
    netns. struct ifreq {char name[16]; struct ethtool_value *data}, with
    struct ethtool_value {u32 cmd; u32 data}."""
    import ctypes  # ~1.5 ms, only for calls that need it

    def call(cmd: int, data: int = 0) -> int:
        value = ctypes.create_string_buffer(struct.pack("=II", cmd, data))
        ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
        fcntl.ioctl(pod.fileno(), _SIOCETHTOOL, ifreq)
        return int(struct.unpack("=II", value.raw[:8])[1])

    enabled = bool(call(_ETHTOOL_GTXCSUM))
    if enabled and turn_off:
        call(_ETHTOOL_STXCSUM, 0)
        enabled = bool(call(_ETHTOOL_GTXCSUM))
    return enabled


def setup_veth_pair(*, netns_path: str, ifname: str, host_ifname: str, mac: str, ip_cidr: str,
                    gateway: str, mtu: int, routes: Sequence[Route] = (),
                    disable_tx_offload: bool = True) -> VethPair:
    """Create or converge the veth pair `host_ifname` (this netns) <-> `ifname` (pod netns).

    Idempotent: a correct pair is left alone (same ifindexes, same result); a pair with drifted
    settings is fixed in place; a stale `host_ifname` whose peer is elsewhere is deleted and
    recreated. An `ifname` in the pod netns that is not our peer is an error (the CNI spec says
    ADD must fail when CNI_IFNAME exists). Pod side: MAC, MTU, exactly `ip_cidr` as global
    address, `lo` up, default route via `gateway` (on-link route first if outside the subnet),
    `routes` (gateway None = via `gateway`), TX checksum offload off. Host side: MTU, up.

    Raises NetnsNotFound, NotAPodNetns, HostError on kernel errors (a pair created by this call
    is removed again); ValueError for invalid arguments.
    """
    check_ifname(ifname, "ifname")
    check_ifname(host_ifname, "host_ifname")
    want = _want(mac=mac, ip_cidr=ip_cidr, gateway=gateway, mtu=mtu, routes=routes)
    with contextlib.ExitStack() as stack, _kernel_errors(f"set up {ifname} in {netns_path}"):
        fd = _open_netns(stack, netns_path)
        host = _rtnl(stack)
        pod = _rtnl(stack, fd)
        created = _ensure_pair(host, pod, fd, netns_path=netns_path, ifname=ifname,
                               host_ifname=host_ifname, want=want)
        try:
            _configure_pod_side(pod, ifname, want, disable_tx_offload)
            _configure_host_side(host, host_ifname, want.mtu)
            host_link, pod_link = _link(host, host_ifname), _link(pod, ifname)
            if host_link is None or pod_link is None:
                raise HostError(f"veth pair {host_ifname} <-> {ifname} vanished during setup")
        except BaseException:
            if created:
                LOG.warning("%s: setup failed, removing the veth pair just created", host_ifname)
                with contextlib.suppress(OSError, RuntimeError, *_netlink_errors()):
                    link = _link(host, host_ifname)
                    if link is not None:
                        _delete(host, link["index"])
            raise
    LOG.info("%s: ready (ifindex %s) <-> %s (ifindex %s) in %s: %s via %s, mtu %s",
             host_ifname, host_link["index"], ifname, pod_link["index"], netns_path,
             want.iface, want.gateway, want.mtu)
    return VethPair(
        netns_path=netns_path, ifname=ifname, host_ifname=host_ifname,
        host_ifindex=host_link["index"], host_mac=host_link.get("address"),
        pod_ifindex=pod_link["index"], pod_mac=pod_link.get("address"),
        ip_cidr=str(want.iface), gateway=str(want.gateway), mtu=want.mtu, routes=want.routes,
    )


def _ensure_pair(host: Any, pod: Any, fd: int, *, netns_path: str, ifname: str, host_ifname: str,
                 want: _Want) -> bool:
    """Make `host_ifname` <-> `ifname` exist; True if created by this call."""
    host_link, pod_link = _link(host, host_ifname), _link(pod, ifname)
    if host_link is not None and _paired(host, fd, host_link, pod_link):
        LOG.debug("%s: existing veth pair with %s in %s, converging", host_ifname, ifname, netns_path)
        return False
    if host_link is not None:
        kind = _kind(host_link)
        if kind != "veth":
            raise HostError(f"{host_ifname} exists on the node and is not a veth (kind {kind})")
        # Our name, but its peer is not `ifname` in this netns: a leftover of an earlier sandbox.
        LOG.warning("%s: replacing stale veth whose peer is not %s in %s", host_ifname, ifname, netns_path)
        _delete(host, host_link["index"])
        pod_link = _link(pod, ifname)
    if pod_link is not None:
        raise HostError(f"interface {ifname} already exists in {netns_path} (kind {_kind(pod_link)}); "
                        f"it is not the peer of {host_ifname}")
    # Create the peer directly inside the pod netns with its final name, MAC and MTU: no moment
    # where a half-made interface sits in the node netns under a temporary name.
    host.link("add", ifname=host_ifname, kind="veth", mtu=want.mtu,
              peer={"ifname": ifname, "net_ns_fd": fd, "address": want.mac, "mtu": want.mtu})
    LOG.info("%s: created veth pair with %s in %s", host_ifname, ifname, netns_path)
    return True


def _configure_pod_side(pod: Any, ifname: str, want: _Want, disable_tx_offload: bool) -> None:
    link = _link(pod, ifname)
    if link is None:
        raise HostError(f"{ifname} vanished during setup")
    index = link["index"]
    changes: dict[str, Any] = {}
    if (link.get("address") or "").lower() != want.mac:
        changes["address"] = want.mac
    if link.get("mtu") != want.mtu:
        changes["mtu"] = want.mtu
    if changes:
        LOG.info("%s: setting %s", ifname, changes)
        pod.link("set", index=index, **changes)
    _set_up(pod, link)
    lo = _link(pod, "lo")
    if lo is not None:
        _set_up(pod, lo)
    removed, _ = _converge_addresses(pod, index, [want.iface], family=_family(want.iface.version),
                                     global_only=True)
    if removed:
        LOG.info("ifindex %s: removed stale addresses %s", index, [str(a) for a in removed])
    _converge_routes(pod, index, want)
    if disable_tx_offload and _tx_checksum(pod, ifname, turn_off=True):
        raise HostError(f"TX checksum offload on {ifname} stays on")


def _converge_routes(ipr: Any, index: int, want: _Want) -> None:
    family = _family(want.iface.version)
    gateway = str(want.gateway)
    if want.gateway not in want.iface.network:
        # e.g. /32 pod addressing: the gateway must be reachable on-link before routing via it.
        ipr.route("replace", family=family, dst=f"{gateway}/{want.gateway.max_prefixlen}", oif=index,
                  scope=RT_SCOPE_LINK)
    # "replace" is idempotent and repairs a default route that points elsewhere.
    ipr.route("replace", family=family, dst=_default_dst(want.iface.version), gateway=gateway, oif=index)
    for route in want.routes:
        dst = str(ipaddress.ip_network(route.dst, strict=False))
        ipr.route("replace", family=family, dst=dst, gateway=route.gateway or gateway, oif=index)


def _configure_host_side(host: Any, host_ifname: str, mtu: int) -> None:
    link = _link(host, host_ifname)
    if link is None:
        raise HostError(f"{host_ifname} vanished during setup")
    changes: dict[str, Any] = {}
    if link.get("mtu") != mtu:
        changes["mtu"] = mtu
    if not _is_up(link):
        changes["state"] = "up"
    if changes:
        host.link("set", index=link["index"], **changes)


def inspect_veth_pair(*, netns_path: str, ifname: str, host_ifname: str) -> VethPairState:
    """Observe the pair (read-only). A missing netns or interface is reported, not raised;
    NotAPodNetns and HostError are."""
    base: dict[str, Any] = {"netns_path": netns_path, "ifname": ifname, "host_ifname": host_ifname}
    with contextlib.ExitStack() as stack, _kernel_errors(f"inspect {ifname} in {netns_path}"):
        host = _rtnl(stack)
        host_link = _link(host, host_ifname)
        if host_link is not None:
            base.update(host_exists=True, host_kind=_kind(host_link), host_up=_is_up(host_link),
                        host_ifindex=host_link["index"], host_mac=host_link.get("address"),
                        host_mtu=host_link.get("mtu"))
        try:
            fd = _open_netns(stack, netns_path)
        except NetnsNotFound:
            return VethPairState(**base)
        base["netns_exists"] = True
        pod = _rtnl(stack, fd)
        base["lo_up"] = _is_up(_link(pod, "lo"))
        pod_link = _link(pod, ifname)
        if pod_link is None:
            return VethPairState(**base)
        index = pod_link["index"]
        base.update(
            pod_exists=True, pod_ifindex=index, pod_mac=pod_link.get("address"), pod_mtu=pod_link.get("mtu"),
            pod_up=_is_up(pod_link),
            paired=host_link is not None and _paired(host, fd, host_link, pod_link),
            addresses=tuple(str(a) for a, _ in _addresses(pod, index, global_only=True)),
            routes=_routes_out_of(pod, index),
            tx_checksum=_tx_checksum(pod, ifname, turn_off=False),
        )
        return VethPairState(**base)


def _routes_out_of(ipr: Any, index: int) -> tuple[Route, ...]:
    found = []
    for msg in ipr.route("dump", table=MAIN_TABLE):
        if msg.get("oif") != index or msg.get("table") != MAIN_TABLE:
            continue
        version = 4 if msg["family"] == socket.AF_INET else 6
        base = msg.get("dst") or _default_dst(version).split("/")[0]
        found.append(Route(f"{base}/{msg['dst_len']}", msg.get("gateway")))
    return tuple(found)


def teardown_veth_pair(*, netns_path: str | None, ifname: str, host_ifname: str) -> bool:
    """Remove the pair; True if this call deleted something.

    Succeeds when the pair is already gone, when `netns_path` is None or no longer exists (what
    the CNI spec requires of DEL). `host_ifname` is deleted only if it is a veth; when its peer
    is in the pod netns, that deletes the pod side too. Otherwise the pod-side `ifname` is
    deleted only if it is a veth with its peer in another netns. A path that is not a foreign
    netns is skipped with a warning rather than touched.
    """
    with contextlib.ExitStack() as stack, _kernel_errors(f"remove {host_ifname} / {ifname}"):
        fd = _open_netns_for_teardown(stack, netns_path)
        host = _rtnl(stack)
        link = _link(host, host_ifname)
        if link is not None and fd is not None and _kind(link) == "veth" and _peer_in(host, link, fd):
            # The usual case needs no socket inside the pod netns.
            removed = _delete(host, link["index"])
        else:
            removed = _delete_each_end(stack, host, fd, netns_path=netns_path, ifname=ifname,
                                       host_ifname=host_ifname)
    LOG.info("%s: teardown done (%s)", host_ifname, "removed" if removed else "nothing to remove")
    return removed


def _delete_each_end(stack: contextlib.ExitStack, host: Any, fd: int | None, *, netns_path: str | None,
                     ifname: str, host_ifname: str) -> bool:
    removed = False
    if fd is not None:
        pod = _rtnl(stack, fd)
        link = _link(pod, ifname)
        if link is not None and _kind(link) == "veth" and link.get("link_netnsid") is not None:
            removed = _delete(pod, link["index"])
        elif link is not None:
            LOG.warning("%s: leaving %s in %s alone: not a veth to another netns", host_ifname, ifname,
                        netns_path)
    link = _link(host, host_ifname)
    if link is not None and _kind(link) == "veth":
        removed = _delete(host, link["index"]) or removed
    elif link is not None:
        LOG.warning("%s: not deleting it: it is a %s, not a veth", host_ifname, _kind(link))
    return removed


def _peer_in(host: Any, link: Any, netns_fd: int) -> bool:
    """The veth `link` (in the host netns) has its peer in the netns of `netns_fd`."""
    nsid = host.get_netnsid(fd=netns_fd)
    return nsid is not None and link.get("link_netnsid") == nsid["nsid"]


def _open_netns_for_teardown(stack: contextlib.ExitStack, netns_path: str | None) -> int | None:
    if not netns_path:
        return None
    try:
        return _open_netns(stack, netns_path)
    except NetnsNotFound:
        LOG.debug("%s is gone; removing the host side only", netns_path)
    except NotAPodNetns as err:
        LOG.warning("not touching %s: %s", netns_path, err)
    return None


# ---------------------------------------------------------------------------------------------
# a veth pair with both ends here (a libnetwork driver's Join: Docker moves the peer itself)


def create_local_veth_pair(*, host_ifname: str, peer_ifname: str, mac: str, mtu: int,
                           disable_tx_offload: bool = True) -> bool:
    """`host_ifname` (up) <-> `peer_ifname` (down, with `mac`, `mtu`, TX checksum offload off:
    settings that survive Docker moving and renaming it) in this netns; True if created.

    An existing pair of these two names is converged; a stale `host_ifname` (a veth whose peer
    is not `peer_ifname`, e.g. left by a crash) is replaced; anything else of those names is an
    error. A pair this call created is removed again when a later step fails."""
    check_ifname(host_ifname, "host_ifname")
    check_ifname(peer_ifname, "peer_ifname")
    want = mac.lower()
    if not _MAC_RE.match(want) or int(want[:2], 16) & 1:
        raise ValueError(f"{mac!r} is not a unicast MAC address")
    with _here(f"create veth pair {host_ifname} / {peer_ifname}") as ipr:
        host, peer = _link(ipr, host_ifname), _link(ipr, peer_ifname)
        paired = (host is not None and peer is not None and _kind(host) == "veth"
                  and host.get("link") == peer["index"] and host.get("link_netnsid") is None)
        created = False
        if not paired:
            for name, link in ((host_ifname, host), (peer_ifname, peer)):
                if link is not None and _kind(link) != "veth":
                    raise HostError(f"{name} exists and is not a veth (kind {_kind(link)})")
            for link in (host, peer):
                if link is not None:
                    _delete(ipr, link["index"])      # a stale half of an old pair: the whole pair goes
            ipr.link("add", ifname=host_ifname, kind="veth", mtu=mtu,
                     peer={"ifname": peer_ifname, "address": want, "mtu": mtu})
            created = True
        try:
            peer = _link(ipr, peer_ifname)
            host = _link(ipr, host_ifname)
            if peer is None or host is None:
                raise HostError(f"veth pair {host_ifname} / {peer_ifname} vanished during setup")
            changes: dict[str, Any] = {}
            if (peer.get("address") or "").lower() != want:
                changes["address"] = want
            if peer.get("mtu") != mtu:
                changes["mtu"] = mtu
            if changes:
                ipr.link("set", index=peer["index"], **changes)
            if host.get("mtu") != mtu:
                ipr.link("set", index=host["index"], mtu=mtu)
            _set_up(ipr, host)
            if disable_tx_offload and _tx_checksum(ipr, peer_ifname, turn_off=True):
                raise HostError(f"TX checksum offload on {peer_ifname} stays on")
        except BaseException:
            if created:
                with contextlib.suppress(Exception):
                    _delete(ipr, _link(ipr, host_ifname)["index"])
            raise
    if created:
        LOG.info("%s: created veth pair with %s", host_ifname, peer_ifname)
    return created


def delete_link(name: str) -> bool:
    """Delete interface `name` of this netns if it is a veth (its peer goes with it); True if
    something was deleted."""
    check_ifname(name)
    with _here(f"delete {name}") as ipr:
        link = _link(ipr, name)
        if link is None:
            return False
        if _kind(link) != "veth":
            raise HostError(f"not deleting {name}: it is a {_kind(link)}, not a veth")
        return _delete(ipr, link["index"])
