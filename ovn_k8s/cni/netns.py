"""Pod network plumbing over netlink: the veth pair between the node and a pod network namespace.

Owns: creating, converging and removing a pod's veth pair; configuring the pod side (MAC, MTU,
address, `lo`, default and extra routes, TX checksum offload); inspecting it for CNI CHECK.
The host side lives in the netns of the *calling* process (the node); the pod side lives in the
netns given by path (`/var/run/netns/NAME`, `/proc/PID/ns/net`, or a runtime's bind mount).
Attaching the host side to OVS and waiting for OVN are not done here.

Everything goes over pyroute2 netlink sockets plus one ethtool ioctl, never `ip`/`ethtool`
processes: the plugin runs per pod, and process-per-call storms are a known pain point
(peers-and-targets.md §2). pyroute2 opens a socket inside the pod netns from a short-lived forked
child (setns + socket, fd handed back), so this process never switches netns itself.

Must not import kubernetes, ovsdbapp, requests or yaml (V11). pyroute2 is imported on first use:
importing *any* pyroute2 submodule runs `pyroute2/__init__.py`, which imports the whole library
(~80 ms here), so a module-level import would tax VERSION and config errors as well.

Invalid arguments (a bad MAC or CIDR) raise ValueError: callers validate the pod annotation
first (ErrorCode.BAD_ANNOTATION). Kernel failures raise CniError(POD_INTERFACE_FAILED).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import importlib
import importlib.util
import ipaddress
import logging
import os
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from ovn_k8s.cni.protocol import (
    DNS,
    AddResult,
    CniError,
    ErrorCode,
    Interface,
    IPConfig,
    Route,
)

LOG = logging.getLogger(__name__)

HOST_IFNAME_PREFIX = "ovn"
_MAX_IFNAME = 15  # IFNAMSIZ - 1
_NS_GET_NSTYPE = 0xB703  # ioctl_ns(2): _IO(0xb7, 0x3), Linux >= 4.11
_CLONE_NEWNET = 0x40000000
_IFF_UP = 0x1
_RT_TABLE_MAIN = 254
_RT_SCOPE_UNIVERSE = 0
_RT_SCOPE_LINK = 253
_TX_CSUM = "tx-checksumming"  # pyroute2's name for ETHTOOL_{G,S}TXCSUM, i.e. `ethtool -K tx`
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_ifname_for(container_id: str, ifname: str = "eth0") -> str:
    """Host-side veth name of the attachment (container_id, ifname): "ovn" + 12 hex of SHA-256.

    15 characters, stable across retries. 48 bits make a clash among 1,000 pods on one node about
    2e-9 likely; the original's `container_id[:15]` clashed for IDs sharing a prefix and ignored
    the interface name (a pod's second attachment).
    """
    digest = hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()
    return HOST_IFNAME_PREFIX + digest[:12]


@dataclass(frozen=True, slots=True)
class PodInterface:
    """What `setup_pod_interface` configured, read back from the kernel."""

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
    routes: tuple[Route, ...] = ()

    def cni_result(self, dns: DNS | None = None) -> AddResult:
        """The ADD result: host veth (no sandbox) and pod interface (index 1), its address, the
        default route and the extra routes (a route without gw goes via the gateway)."""
        default = _default_dst(ipaddress.ip_interface(self.ip_cidr).version)
        return AddResult(
            interfaces=(Interface(self.host_ifname, self.host_mac),
                        Interface(self.ifname, self.pod_mac, self.netns_path)),
            ips=(IPConfig(self.ip_cidr, self.gateway, interface=1),),
            routes=(Route(default, self.gateway),
                    *(Route(r.dst, r.gw or self.gateway) for r in self.routes)),
            dns=dns or DNS(),
        )


@dataclass(frozen=True, slots=True)
class PodInterfaceState:
    """The pair as observed by `inspect_pod_interface` (no judgement; see `diff_pod_interface`)."""

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
    paired: bool = False  # pod_ifname and host_ifname are the two ends of one veth
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


def _check_name(name: str, what: str) -> None:
    if not name or len(name.encode()) > _MAX_IFNAME or any(c in "/:" or c.isspace() for c in name):
        raise ValueError(f"bad {what} {name!r}")


def _default_dst(version: int) -> str:
    return "0.0.0.0/0" if version == 4 else "::/0"


# ---------------------------------------------------------------------------------------------
# pyroute2 plumbing


def _defer_package_init(name: str) -> None:
    """Register package `name` without running its `__init__` until a name it defines is used.

    pyroute2's `__init__` imports the whole library (ipdb, ndb, conntrack, nftables, ...: ~35 ms
    of the ~90 ms it costs here) though we need four submodules. Submodules import normally
    into this bare package (also via `from pyroute2 import config`); the first lookup of any
    other attribute (`pyroute2.IPRoute`, `from pyroute2 import NDB`) runs the real `__init__`
    in place (PEP 562 module `__getattr__`), so other users of pyroute2 in the same process
    still see the whole package. No-op if the package is imported already.
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
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)  # what the import system does for submodules


@functools.cache
def _pr2() -> SimpleNamespace:
    """pyroute2, imported on first use (module docstring): only the submodules used here."""
    _defer_package_init("pyroute2")
    _defer_package_init("pyroute2.ethtool")  # its __init__ pulls the genetlink Ethtool (~25 ms)
    from pyroute2.ethtool.ioctl import IoctlEthtool
    from pyroute2.iproute.linux import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netns import create_socket

    return SimpleNamespace(IPRoute=IPRoute, NetlinkError=NetlinkError, create_socket=create_socket,
                           IoctlEthtool=IoctlEthtool)


@contextlib.contextmanager
def _kernel_errors(code: ErrorCode, what: str) -> Iterator[None]:
    """Report netlink/OS failures as CniError(code, "failed to <what>")."""
    try:
        yield
    except CniError:
        raise
    except (OSError, RuntimeError, _pr2().NetlinkError) as err:
        raise CniError(code, f"failed to {what}", f"{type(err).__name__}: {err}") from err


def _open_netns(stack: contextlib.ExitStack, path: str) -> int:
    """An fd on the pod netns, closed with `stack`. FileNotFoundError if it is gone; CniError(4)
    if it is not a netns or is our own (we would reconfigure the node's lo and default route)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    stack.callback(os.close, fd)
    try:
        nstype = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as err:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "CNI_NETNS is not a namespace", f"{path}: {err}") from None
    if nstype != _CLONE_NEWNET:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "CNI_NETNS is not a network namespace", path)
    ours, theirs = os.stat("/proc/thread-self/ns/net"), os.fstat(fd)
    if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "CNI_NETNS is the plugin's own network namespace", path)
    return fd


def _iproute(stack: contextlib.ExitStack, netns_fd: int | None = None) -> Any:
    pr = _pr2()
    # flags=0: pyroute2's default O_CREAT would silently create a netns that has gone away.
    ipr = pr.IPRoute() if netns_fd is None else pr.IPRoute(netns=netns_fd, flags=0)
    stack.callback(ipr.close)
    return ipr


def _link(ipr: Any, name: str) -> Any | None:
    try:
        return ipr.link("get", ifname=name)[0]
    except _pr2().NetlinkError as err:
        if err.code == errno.ENODEV:
            return None
        raise


def _kind(link: Any) -> str | None:
    return link.get(("linkinfo", "kind"))


def _is_up(link: Any | None) -> bool:
    return bool(link is not None and link["flags"] & _IFF_UP)


def _paired(host: Any, netns_fd: int, host_link: Any, pod_link: Any | None) -> bool:
    """True if the two links are the ends of one veth. Ifindexes repeat across namespaces, so
    check both directions and that the host end's peer netns id is the pod netns."""
    if pod_link is None or _kind(host_link) != "veth" or _kind(pod_link) != "veth":
        return False
    if host_link.get("link") != pod_link["index"] or pod_link.get("link") != host_link["index"]:
        return False
    nsid = host.get_netnsid(fd=netns_fd)
    return nsid is not None and host_link.get("link_netnsid") == nsid["nsid"]


def _delete(ipr: Any, index: int) -> bool:
    try:
        ipr.link("del", index=index)
    except _pr2().NetlinkError as err:
        if err.code == errno.ENODEV:  # a concurrent or kernel-side removal won
            return False
        raise
    return True


def _tx_checksum(netns_fd: int, ifname: str, *, turn_off: bool) -> bool:
    """TX checksum offload of `ifname` in the pod netns, turned off first when `turn_off`.

    pyroute2's IoctlEthtool acts on the netns of its socket and has no netns option, so it gets
    a socket created inside the pod netns (ethtool -K works on names, which are per-netns)."""
    pr = _pr2()
    sock = pr.create_socket(netns=netns_fd, flags=0, family=socket.AF_INET, socket_type=socket.SOCK_DGRAM)
    ethtool = pr.IoctlEthtool()
    ethtool.sock.close()
    ethtool.sock = sock
    try:
        ethtool.change_ifname(ifname)
        enabled = bool(ethtool.get_offload_flags()[_TX_CSUM])
        if enabled and turn_off:
            ethtool.set_offload_flag(_TX_CSUM, 0)
            enabled = bool(ethtool.get_offload_flags()[_TX_CSUM])
        return enabled
    finally:
        ethtool.close()


# ---------------------------------------------------------------------------------------------
# ADD


def setup_pod_interface(*, netns_path: str, ifname: str, host_ifname: str, mac: str, ip_cidr: str,
                        gateway: str, mtu: int, routes: Sequence[Route] = (),
                        disable_tx_offload: bool = True) -> PodInterface:
    """Create or converge the veth pair `host_ifname` (this netns) <-> `ifname` (pod netns).

    Idempotent: a correct pair is left alone (same ifindexes, same result); a pair with drifted
    settings is fixed in place; a stale `host_ifname` whose peer is elsewhere is deleted and
    recreated. An `ifname` in the pod netns that is not our peer is an error, as the spec says
    ADD must fail when CNI_IFNAME exists. Pod side: MAC, MTU, exactly `ip_cidr` as global
    address, `lo` up, default route via `gateway` (on-link route first if outside the subnet),
    `routes` (gw None = via `gateway`), TX checksum offload off. Host side: MTU, up.

    Raises CniError 3 if the netns is gone, 4 if the path is not a foreign netns, 102 on kernel
    errors (a pair created by this call is removed again); ValueError for invalid arguments.
    """
    _check_name(ifname, "ifname")
    _check_name(host_ifname, "host_ifname")
    want = _want(mac=mac, ip_cidr=ip_cidr, gateway=gateway, mtu=mtu, routes=routes)
    with contextlib.ExitStack() as stack, \
            _kernel_errors(ErrorCode.POD_INTERFACE_FAILED, f"set up {ifname} in {netns_path}"):
        try:
            fd = _open_netns(stack, netns_path)
        except (FileNotFoundError, NotADirectoryError):
            raise CniError(ErrorCode.UNKNOWN_CONTAINER, "network namespace does not exist", netns_path) from None
        host = _iproute(stack)
        pod = _iproute(stack, fd)
        created = _ensure_pair(host, pod, fd, netns_path=netns_path, ifname=ifname,
                               host_ifname=host_ifname, want=want)
        try:
            _configure_pod_side(pod, fd, ifname, want, disable_tx_offload)
            _configure_host_side(host, host_ifname, want.mtu)
            host_link, pod_link = _link(host, host_ifname), _link(pod, ifname)
            if host_link is None or pod_link is None:
                raise CniError(ErrorCode.POD_INTERFACE_FAILED, "veth pair vanished during setup",
                               f"{host_ifname} <-> {ifname}")
        except BaseException:
            if created:
                LOG.warning("%s: setup failed, removing the veth pair just created", host_ifname)
                with contextlib.suppress(OSError, RuntimeError, _pr2().NetlinkError):
                    _delete_by_name(host, host_ifname)
            raise
    LOG.info("%s: ready (ifindex %s) <-> %s (ifindex %s) in %s: %s via %s, mtu %s",
             host_ifname, host_link["index"], ifname, pod_link["index"], netns_path,
             want.iface, want.gateway, want.mtu)
    return PodInterface(
        netns_path=netns_path, ifname=ifname, host_ifname=host_ifname,
        host_ifindex=host_link["index"], host_mac=host_link.get("address"),
        pod_ifindex=pod_link["index"], pod_mac=pod_link.get("address"),
        ip_cidr=str(want.iface), gateway=str(want.gateway), mtu=want.mtu, routes=want.routes,
    )


def _delete_by_name(ipr: Any, name: str) -> bool:
    link = _link(ipr, name)
    return link is not None and _delete(ipr, link["index"])


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
            raise CniError(ErrorCode.POD_INTERFACE_FAILED, f"{host_ifname} exists on the node and is not a veth",
                           f"kind {kind}")
        # Our name, but its peer is not `ifname` in this netns: a leftover of an earlier sandbox.
        LOG.warning("%s: replacing stale veth whose peer is not %s in %s", host_ifname, ifname, netns_path)
        _delete(host, host_link["index"])
        pod_link = _link(pod, ifname)
    if pod_link is not None:
        raise CniError(ErrorCode.POD_INTERFACE_FAILED, f"interface {ifname} already exists in {netns_path}",
                       f"kind {_kind(pod_link)}; it is not the peer of {host_ifname}")
    # Create the peer directly inside the pod netns with its final name, MAC and MTU: no moment
    # where a half-made interface sits in the node netns under a temporary name.
    host.link("add", ifname=host_ifname, kind="veth", mtu=want.mtu,
              peer={"ifname": ifname, "net_ns_fd": fd, "address": want.mac, "mtu": want.mtu})
    LOG.info("%s: created veth pair with %s in %s", host_ifname, ifname, netns_path)
    return True


def _configure_pod_side(pod: Any, fd: int, ifname: str, want: _Want, disable_tx_offload: bool) -> None:
    link = _link(pod, ifname)
    if link is None:
        raise CniError(ErrorCode.POD_INTERFACE_FAILED, f"{ifname} vanished during setup")
    index = link["index"]
    changes: dict[str, Any] = {}
    if (link.get("address") or "").lower() != want.mac:
        changes["address"] = want.mac
    if link.get("mtu") != want.mtu:
        changes["mtu"] = want.mtu
    if changes:
        LOG.info("%s: setting %s", ifname, changes)
        pod.link("set", index=index, **changes)
    if not _is_up(link):
        pod.link("set", index=index, state="up")
    lo = _link(pod, "lo")
    if lo is not None and not _is_up(lo):
        pod.link("set", index=lo["index"], state="up")
    _converge_address(pod, index, want.iface)
    _converge_routes(pod, index, want)
    if disable_tx_offload and _tx_checksum(fd, ifname, turn_off=True):
        raise CniError(ErrorCode.POD_INTERFACE_FAILED, f"TX checksum offload on {ifname} stays on")


def _global_addresses(ipr: Any, index: int, version: int | None = None) -> list[IPInterface]:
    found = []
    for msg in ipr.addr("dump", index=index):
        if msg["scope"] != _RT_SCOPE_UNIVERSE or msg["index"] != index:
            continue  # link-local (fe80::/64) and host-scope addresses are the kernel's
        iface = ipaddress.ip_interface(f"{msg.get('local') or msg.get('address')}/{msg['prefixlen']}")
        if version is None or iface.version == version:
            found.append(iface)
    return found


def _converge_address(ipr: Any, index: int, want: IPInterface) -> None:
    """Exactly `want` as the global address of its family on the interface."""
    have = _global_addresses(ipr, index, want.version)
    for stale in have:
        if stale != want:
            LOG.info("ifindex %s: removing stale address %s", index, stale)
            ipr.addr("del", index=index, address=str(stale.ip), prefixlen=stale.network.prefixlen)
    if want not in have:
        ipr.addr("add", index=index, address=str(want.ip), prefixlen=want.network.prefixlen)


def _converge_routes(ipr: Any, index: int, want: _Want) -> None:
    family = socket.AF_INET if want.iface.version == 4 else socket.AF_INET6
    gateway = str(want.gateway)
    if want.gateway not in want.iface.network:
        # e.g. /32 pod addressing: the gateway must be reachable on-link before routing via it.
        ipr.route("replace", family=family, dst=f"{gateway}/{want.gateway.max_prefixlen}", oif=index,
                  scope=_RT_SCOPE_LINK)
    # "replace" is idempotent and repairs a default route that points elsewhere.
    ipr.route("replace", family=family, dst=_default_dst(want.iface.version), gateway=gateway, oif=index)
    for route in want.routes:
        dst = str(ipaddress.ip_network(route.dst, strict=False))
        ipr.route("replace", family=family, dst=dst, gateway=route.gw or gateway, oif=index)


def _configure_host_side(host: Any, host_ifname: str, mtu: int) -> None:
    link = _link(host, host_ifname)
    if link is None:
        raise CniError(ErrorCode.POD_INTERFACE_FAILED, f"{host_ifname} vanished during setup")
    changes: dict[str, Any] = {}
    if link.get("mtu") != mtu:
        changes["mtu"] = mtu
    if not _is_up(link):
        changes["state"] = "up"
    if changes:
        host.link("set", index=link["index"], **changes)


# ---------------------------------------------------------------------------------------------
# CHECK


def inspect_pod_interface(*, netns_path: str, ifname: str, host_ifname: str) -> PodInterfaceState:
    """Observe the pair (read-only). A missing netns or interface is reported, not raised."""
    base: dict[str, Any] = {"netns_path": netns_path, "ifname": ifname, "host_ifname": host_ifname}
    with contextlib.ExitStack() as stack, \
            _kernel_errors(ErrorCode.CHECK_FAILED, f"inspect {ifname} in {netns_path}"):
        host = _iproute(stack)
        host_link = _link(host, host_ifname)
        if host_link is not None:
            base.update(host_exists=True, host_kind=_kind(host_link), host_up=_is_up(host_link),
                        host_ifindex=host_link["index"], host_mac=host_link.get("address"),
                        host_mtu=host_link.get("mtu"))
        try:
            fd = _open_netns(stack, netns_path)
        except (FileNotFoundError, NotADirectoryError):
            return PodInterfaceState(**base)
        base["netns_exists"] = True
        pod = _iproute(stack, fd)
        base["lo_up"] = _is_up(_link(pod, "lo"))
        pod_link = _link(pod, ifname)
        if pod_link is None:
            return PodInterfaceState(**base)
        index = pod_link["index"]
        base.update(
            pod_exists=True, pod_ifindex=index, pod_mac=pod_link.get("address"), pod_mtu=pod_link.get("mtu"),
            pod_up=_is_up(pod_link),
            paired=host_link is not None and _paired(host, fd, host_link, pod_link),
            addresses=tuple(str(a) for a in _global_addresses(pod, index)),
            routes=_routes_via(pod, index),
            tx_checksum=_tx_checksum(fd, ifname, turn_off=False),
        )
        return PodInterfaceState(**base)


def _routes_via(ipr: Any, index: int) -> tuple[Route, ...]:
    found = []
    for msg in ipr.route("dump", table=_RT_TABLE_MAIN):
        if msg.get("oif") != index or msg.get("table") != _RT_TABLE_MAIN:
            continue
        version = 4 if msg["family"] == socket.AF_INET else 6
        base = msg.get("dst") or _default_dst(version).split("/")[0]
        found.append(Route(f"{base}/{msg['dst_len']}", msg.get("gateway")))
    return tuple(found)


def _norm_route(route: Route) -> tuple[str, str | None]:
    gw = str(ipaddress.ip_address(route.gw)) if route.gw else None
    return str(ipaddress.ip_network(route.dst, strict=False)), gw


def diff_pod_interface(state: PodInterfaceState, *, mac: str | None, ip_cidr: str | None,
                       gateway: str | None, routes: Sequence[Route] = (), mtu: int | None = None,
                       disable_tx_offload: bool = False) -> list[str]:
    """Problems of `state` against what ADD configured (pure). None/empty skips a check.

    Extra addresses and routes are not problems: the spec lets later chained plugins add them."""
    where = f"{state.ifname} in {state.netns_path}"
    if not state.netns_exists:
        return [f"network namespace {state.netns_path} does not exist"]
    problems = []
    if not state.host_exists:
        problems.append(f"host veth {state.host_ifname} is missing")
    elif state.host_kind != "veth":
        problems.append(f"{state.host_ifname} is a {state.host_kind}, not a veth")
    elif not state.host_up:
        problems.append(f"host veth {state.host_ifname} is down")
    if not state.pod_exists:
        problems.append(f"{where} is missing")
        return problems
    if state.host_exists and not state.paired:
        problems.append(f"{where} is not the peer of {state.host_ifname}")
    if mac and (state.pod_mac or "").lower() != mac.lower():
        problems.append(f"{where} has MAC {state.pod_mac}, expected {mac}")
    if mtu is not None and state.pod_mtu != mtu:
        problems.append(f"{where} has MTU {state.pod_mtu}, expected {mtu}")
    if not state.pod_up:
        problems.append(f"{where} is down")
    if not state.lo_up:
        problems.append(f"lo in {state.netns_path} is down")
    if ip_cidr:
        want = ipaddress.ip_interface(ip_cidr)
        if want not in {ipaddress.ip_interface(a) for a in state.addresses}:
            problems.append(f"{where} lacks address {ip_cidr} (has {', '.join(state.addresses) or 'none'})")
    have_routes = {_norm_route(r) for r in state.routes}
    expected: list[Route] = []
    if gateway:
        expected.append(Route(_default_dst(ipaddress.ip_address(gateway).version), gateway))
    expected.extend(Route(r.dst, r.gw or gateway) for r in routes)
    for route in expected:
        if _norm_route(route) not in have_routes:
            label = "default route" if ipaddress.ip_network(route.dst).prefixlen == 0 else f"route to {route.dst}"
            problems.append(f"{where} has no {label} via {route.gw}")
    if disable_tx_offload and state.tx_checksum:
        problems.append(f"{where} has TX checksum offload on")
    return problems


def check_pod_interface(*, netns_path: str, ifname: str, host_ifname: str, mac: str | None,
                        ip_cidr: str | None, gateway: str | None, routes: Sequence[Route] = (),
                        mtu: int | None = None, disable_tx_offload: bool = False) -> PodInterfaceState:
    """CNI CHECK of the pair: the observed state, or CniError(CHECK_FAILED) listing every problem."""
    state = inspect_pod_interface(netns_path=netns_path, ifname=ifname, host_ifname=host_ifname)
    problems = diff_pod_interface(state, mac=mac, ip_cidr=ip_cidr, gateway=gateway, routes=routes,
                                  mtu=mtu, disable_tx_offload=disable_tx_offload)
    if problems:
        LOG.warning("%s: CHECK failed: %s", host_ifname, "; ".join(problems))
        raise CniError(ErrorCode.CHECK_FAILED, f"{ifname} in {netns_path} is not as ADD left it",
                       "; ".join(problems))
    return state


# ---------------------------------------------------------------------------------------------
# DEL


def teardown_pod_interface(*, netns_path: str | None, ifname: str, host_ifname: str) -> bool:
    """Remove the pair; True if this call deleted something.

    Succeeds when the pair is already gone, when `netns_path` is None (DEL without CNI_NETNS) or
    no longer exists, as the spec requires of DEL. The pod-side `ifname` is deleted only if it
    is a veth with its peer in another netns; `host_ifname` only if it is a veth. A path that is
    not a foreign netns is skipped with a warning rather than touched.
    """
    removed = False
    with contextlib.ExitStack() as stack, \
            _kernel_errors(ErrorCode.POD_INTERFACE_FAILED, f"remove {host_ifname} / {ifname}"):
        fd = _open_netns_for_teardown(stack, netns_path)
        if fd is not None:
            pod = _iproute(stack, fd)
            link = _link(pod, ifname)
            if link is not None and _kind(link) == "veth" and link.get("link_netnsid") is not None:
                removed = _delete(pod, link["index"]) or removed
            elif link is not None:
                LOG.warning("%s: leaving %s in %s alone: not a veth to another netns", host_ifname, ifname,
                            netns_path)
        host = _iproute(stack)
        link = _link(host, host_ifname)
        if link is not None and _kind(link) == "veth":
            removed = _delete(host, link["index"]) or removed
        elif link is not None:
            LOG.warning("%s: not deleting it: it is a %s, not a veth", host_ifname, _kind(link))
    LOG.info("%s: teardown done (%s)", host_ifname, "removed" if removed else "nothing to remove")
    return removed


def _open_netns_for_teardown(stack: contextlib.ExitStack, netns_path: str | None) -> int | None:
    if not netns_path:
        return None
    try:
        return _open_netns(stack, netns_path)
    except (FileNotFoundError, NotADirectoryError):
        LOG.debug("%s is gone; removing the host side only", netns_path)
    except CniError as err:
        LOG.warning("not touching %s: %s", netns_path, err)
    return None
