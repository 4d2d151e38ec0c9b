"""The pod's interface as the CNI plugins see it: names, error codes, the ADD result and CHECK.

The netlink work (the veth pair, its addresses and routes, TX checksum offload) is
`ovn_k8s.netlink`'s; this module adds what the CNI spec and our docs/cni.md define on top:
- the host-side name of an attachment (`host_ifname_for`), an on-node contract;
- netlink's errors as CNI codes: a missing netns is 3 (UNKNOWN_CONTAINER), a path that is not a
  foreign network namespace 4 (INVALID_ENVIRONMENT), kernel failures 102 (POD_INTERFACE_FAILED),
  CHECK's 103 (CHECK_FAILED); invalid arguments stay ValueError (callers report them as the
  annotation's fault, code 105);
- the ADD result of a pair (`cni_result`) and CHECK's judgement of an observed pair
  (`diff_pod_interface`, pure).

Neither importing it nor ADD/CHECK/DEL load pyroute2 (the pair is ovn_k8s.netlink_raw's).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
from collections.abc import Iterator, Sequence

from ovn_k8s import netlink
from ovn_k8s.cni.protocol import DNS, AddResult, CniError, ErrorCode, Interface, IPConfig, Route
from ovn_k8s.errors import HostError
from ovn_k8s.netlink import VethPair, VethPairState

LOG = logging.getLogger(__name__)

HOST_IFNAME_PREFIX = "ovn"


def host_ifname_for(container_id: str, ifname: str = "eth0") -> str:
    """Host-side veth name of the attachment (container_id, ifname): "ovn" + 12 hex of SHA-256.

    15 characters, stable across retries. 48 bits make a clash among 1,000 pods on one node about
    2e-9 likely; the original's `container_id[:15]` clashed for IDs sharing a prefix and ignored
    the interface name (a pod's second attachment).
    """
    digest = hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()
    return HOST_IFNAME_PREFIX + digest[:12]


@contextlib.contextmanager
def _codes(code: ErrorCode) -> Iterator[None]:
    """netlink's errors as CniErrors: 3 for a missing netns, 4 for an unusable one, else `code`."""
    try:
        yield
    except netlink.NetnsNotFound as err:
        raise CniError(ErrorCode.UNKNOWN_CONTAINER, "network namespace does not exist", str(err)) from None
    except netlink.NotAPodNetns as err:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "CNI_NETNS is not a foreign network namespace",
                       str(err)) from None
    except HostError as err:
        raise CniError(code, str(err)) from err


def _to_netlink(routes: Sequence[Route]) -> list[netlink.Route]:
    return [netlink.Route(r.dst, r.gw) for r in routes]


def setup_pod_interface(*, netns_path: str, ifname: str, host_ifname: str, mac: str, ip_cidr: str,
                        gateway: str, mtu: int, routes: Sequence[Route] = (),
                        disable_tx_offload: bool = True) -> VethPair:
    """`netlink.setup_veth_pair` (see there) with CNI error codes; ValueError for bad arguments."""
    with _codes(ErrorCode.POD_INTERFACE_FAILED):
        return netlink.setup_veth_pair(netns_path=netns_path, ifname=ifname, host_ifname=host_ifname,
                                       mac=mac, ip_cidr=ip_cidr, gateway=gateway, mtu=mtu,
                                       routes=_to_netlink(routes), disable_tx_offload=disable_tx_offload)


def inspect_pod_interface(*, netns_path: str, ifname: str, host_ifname: str) -> VethPairState:
    """The pair as observed; a missing netns or interface is reported in the state, not raised."""
    with _codes(ErrorCode.CHECK_FAILED):
        return netlink.inspect_veth_pair(netns_path=netns_path, ifname=ifname, host_ifname=host_ifname)


def teardown_pod_interface(*, netns_path: str | None, ifname: str, host_ifname: str) -> bool:
    """Remove the pair (DEL); True if this call deleted something. What is gone already is fine."""
    with _codes(ErrorCode.POD_INTERFACE_FAILED):
        return netlink.teardown_veth_pair(netns_path=netns_path, ifname=ifname, host_ifname=host_ifname)


def cni_result(pair: VethPair, dns: DNS | None = None) -> AddResult:
    """The ADD result: host veth (no sandbox) and pod interface (index 1), its address, the
    default route and the extra routes (a route without gateway goes via the pod's gateway)."""
    default = _default_dst(ipaddress.ip_interface(pair.ip_cidr).version)
    return AddResult(
        interfaces=(Interface(pair.host_ifname, pair.host_mac),
                    Interface(pair.ifname, pair.pod_mac, pair.netns_path)),
        ips=(IPConfig(pair.ip_cidr, pair.gateway, interface=1),),
        routes=(Route(default, pair.gateway),
                *(Route(r.dst, r.gateway or pair.gateway) for r in pair.routes)),
        dns=dns or DNS(),
    )


def _default_dst(version: int) -> str:
    return "0.0.0.0/0" if version == 4 else "::/0"


def _norm_route(dst: str, gw: str | None) -> tuple[str, str | None]:
    return str(ipaddress.ip_network(dst, strict=False)), str(ipaddress.ip_address(gw)) if gw else None


def diff_pod_interface(state: VethPairState, *, mac: str | None, ip_cidr: str | None,
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
    have_routes = {_norm_route(r.dst, r.gateway) for r in state.routes}
    expected: list[Route] = []
    if gateway:
        expected.append(Route(_default_dst(ipaddress.ip_address(gateway).version), gateway))
    expected.extend(Route(r.dst, r.gw or gateway) for r in routes)
    for route in expected:
        if _norm_route(route.dst, route.gw) not in have_routes:
            label = "default route" if ipaddress.ip_network(route.dst).prefixlen == 0 else f"route to {route.dst}"
            problems.append(f"{where} has no {label} via {route.gw}")
    if disable_tx_offload and state.tx_checksum:
        problems.append(f"{where} has TX checksum offload on")
    return problems


def check_pod_interface(*, netns_path: str, ifname: str, host_ifname: str, mac: str | None,
                        ip_cidr: str | None, gateway: str | None, routes: Sequence[Route] = (),
                        mtu: int | None = None, disable_tx_offload: bool = False) -> VethPairState:
    """CNI CHECK of the pair: the observed state, or CniError(CHECK_FAILED) listing every problem."""
    state = inspect_pod_interface(netns_path=netns_path, ifname=ifname, host_ifname=host_ifname)
    problems = diff_pod_interface(state, mac=mac, ip_cidr=ip_cidr, gateway=gateway, routes=routes,
                                  mtu=mtu, disable_tx_offload=disable_tx_offload)
    if problems:
        LOG.warning("%s: CHECK failed: %s", host_ifname, "; ".join(problems))
        raise CniError(ErrorCode.CHECK_FAILED, f"{ifname} in {netns_path} is not as ADD left it",
                       "; ".join(problems))
    return state
