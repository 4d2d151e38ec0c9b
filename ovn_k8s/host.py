"""Host networking of the network namespace the command runs in, over netlink (pyroute2).

Only idempotent operations: each `ensure_*` compares before it writes, so a re-run with the
same arguments changes nothing on the host.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ovn_k8s.errors import HostError

LOG = logging.getLogger(__name__)
MAIN_TABLE = 254
RTN_UNICAST = 1
RTPROT_KERNEL = 2
RT_SCOPE_LINK = 253
IFA_F_PERMANENT = 0x80


@contextmanager
def _ipr() -> Iterator[Any]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        yield ipr


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
    dst: str             # "0.0.0.0/0", "10.1.0.0/16"
    gateway: str | None
    family: int
    proto: int
    priority: int | None

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"dst": self.dst, "family": self.family, "proto": self.proto}
        if self.gateway:
            spec["gateway"] = self.gateway
        if self.priority is not None:
            spec["priority"] = self.priority
        return spec


def link_index(name: str) -> int | None:
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def require_link(name: str, what: str = "interface") -> int:
    index = link_index(name)
    if index is None:
        raise HostError(f"{what} {name} does not exist in this network namespace")
    return index


def link_mac(name: str) -> str:
    index = require_link(name)
    with _ipr() as ipr:
        return str(ipr.get_links(index)[0].get("address"))


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
    out = []
    with _ipr() as ipr:
        for msg in ipr.get_addr(index=index):
            fam = msg["family"]
            if family is not None and fam != family:
                continue
            flags = msg.get("IFA_FLAGS") or msg["flags"]
            out.append(Address(cidr=f"{msg.get('address')}/{msg['prefixlen']}", family=fam,
                               scope=msg["scope"], permanent=bool(flags & IFA_F_PERMANENT)))
    return out


def routes_via(name: str) -> list[Route]:
    """Main-table unicast routes through the interface that were not made by the kernel."""
    index = require_link(name)
    out = []
    with _ipr() as ipr:
        for family in (socket.AF_INET, socket.AF_INET6):
            for msg in ipr.get_routes(family=family, oif=index):
                if msg.get("table") != MAIN_TABLE or msg["type"] != RTN_UNICAST:
                    continue
                if msg["proto"] == RTPROT_KERNEL:
                    continue
                dst = msg.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
                out.append(Route(dst=f"{dst}/{msg['dst_len']}", gateway=msg.get("gateway"),
                                 family=family, proto=msg["proto"], priority=msg.get("priority")))
    return out


def _split(cidr: str) -> tuple[str, int]:
    ip, _, plen = cidr.partition("/")
    return ip, int(plen)


def set_up(name: str) -> bool:
    index = require_link(name)
    with _ipr() as ipr:
        link = ipr.get_links(index)[0]
        if link["flags"] & 1:  # IFF_UP
            return False
        ipr.link("set", index=index, state="up")
    return True


def ensure_addresses(name: str, cidrs: Iterable[str], *, family: int = socket.AF_INET) -> bool:
    """Make the interface's addresses of `family` exactly `cidrs`. Returns True if it changed."""
    want = set(cidrs)
    index = require_link(name)
    have = {a.cidr for a in addresses(name, family)}
    if have == want:
        return False
    with _ipr() as ipr:
        for cidr in sorted(have - want):
            ip, plen = _split(cidr)
            ipr.addr("del", index=index, address=ip, prefixlen=plen)
        for cidr in sorted(want - have):
            ip, plen = _split(cidr)
            ipr.addr("add", index=index, address=ip, prefixlen=plen)
    LOG.info("%s: addresses %s -> %s", name, sorted(have), sorted(want))
    return True


def flush_addresses(name: str, family: int = socket.AF_INET) -> bool:
    return ensure_addresses(name, [], family=family)


def ensure_route(dst: str, gateway: str, ifname: str) -> bool:
    """Exactly one main-table route to `dst`, via `gateway` on `ifname`."""
    index = require_link(ifname)
    net, plen = _split(dst)
    with _ipr() as ipr:
        current = [r for r in ipr.get_routes(family=socket.AF_INET, dst_len=plen)
                   if r.get("table") == MAIN_TABLE and (r.get("dst") or "0.0.0.0") == net]
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
    with _ipr() as ipr:
        ipr.route("replace", oif=index, **route.spec())


def del_route(route: Route, ifname: str) -> None:
    index = require_link(ifname)
    with _ipr() as ipr:
        ipr.route("del", oif=index, **route.spec())


def sysctl_set(path: str, value: str) -> None:
    with open(f"/proc/sys/{path.replace('.', '/')}", "w", encoding="ascii") as f:
        f.write(value)
