"""Address arithmetic (pure): node subnets, reserved addresses, MACs, join-network allocation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import netaddr

from ovn_k8s.errors import ConfigError


def parse_cidr(value: str, what: str) -> netaddr.IPNetwork:
    """An IPv4 network in CIDR form; host bits must be zero (10.1.0.0/16, not 10.1.2.3/16)."""
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{what}: {value!r} is not a valid CIDR (example: 10.244.0.0/16)") from None
    if "/" not in value:
        raise ConfigError(f"{what}: {value!r} has no prefix length (example: 10.244.0.0/16)")
    if net.version != 4:
        raise ConfigError(f"{what}: {value!r}: only IPv4 is supported")
    if net.ip != net.network:
        raise ConfigError(f"{what}: {value!r} has host bits set; did you mean {net.cidr}?")
    return net


def parse_ip_with_mask(value: str, what: str) -> netaddr.IPNetwork:
    """An interface address IP/LEN (host bits expected), e.g. --physical-ip 192.0.2.2/24."""
    try:
        net = netaddr.IPNetwork(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{what}: {value!r} is not a valid IP/MASK (example: 192.0.2.2/24)") from None
    if "/" not in value or net.version != 4:
        raise ConfigError(f"{what}: {value!r} is not a valid IPv4 IP/MASK (example: 192.0.2.2/24)")
    if net.prefixlen < 32 and net.ip in (net.network, net.broadcast):
        raise ConfigError(f"{what}: {value!r} is the network or broadcast address of its subnet")
    return net


def parse_ip(value: str, what: str) -> netaddr.IPAddress:
    try:
        ip = netaddr.IPAddress(value)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{what}: {value!r} is not a valid IP address") from None
    if ip.version != 4:
        raise ConfigError(f"{what}: {value!r}: only IPv4 is supported")
    return ip


@dataclass(frozen=True, slots=True)
class NodeAddresses:
    """The reserved addresses of a node subnet S: router S+1, management port S+2."""

    subnet: netaddr.IPNetwork
    router_ip: netaddr.IPAddress
    mgmt_ip: netaddr.IPAddress

    @property
    def router_cidr(self) -> str:
        return f"{self.router_ip}/{self.subnet.prefixlen}"

    @property
    def mgmt_cidr(self) -> str:
        return f"{self.mgmt_ip}/{self.subnet.prefixlen}"


def node_addresses(subnet: netaddr.IPNetwork) -> NodeAddresses:
    if subnet.size < 8:
        raise ConfigError(f"node subnet {subnet} is too small: it needs room for a router, a "
                          "management port and pods (/29 or larger)")
    return NodeAddresses(subnet=subnet, router_ip=subnet.network + 1, mgmt_ip=subnet.network + 2)


def check_node_subnet(subnet: netaddr.IPNetwork, cluster: netaddr.IPNetwork,
                      others: Iterable[tuple[str, netaddr.IPNetwork]]) -> None:
    """A node subnet must sit inside the cluster subnet and overlap no other node's subnet."""
    if subnet not in cluster:
        raise ConfigError(f"node subnet {subnet} is not inside the cluster subnet {cluster}")
    for other_node, other in others:
        if subnet.first <= other.last and other.first <= subnet.last:
            raise ConfigError(f"node subnet {subnet} overlaps {other} of node {other_node}")


def mac_from_ip(ip: netaddr.IPAddress | str) -> str:
    """Stable MAC for an IPv4 address: 0a:58 + the four address bytes (as ovn-kubernetes does).

    Deriving it means re-runs and restarts write the same MAC without reading anything back.
    """
    packed = int(netaddr.IPAddress(ip)).to_bytes(4, "big")
    return "0a:58:" + ":".join(f"{b:02x}" for b in packed)


def join_router_ip(join: netaddr.IPNetwork) -> netaddr.IPAddress:
    """The cluster router's address on the join switch: the first host of the join subnet."""
    return join.network + 1


def allocate_join_ip(join: netaddr.IPNetwork, used: Iterable[netaddr.IPAddress]) -> netaddr.IPAddress:
    """The lowest free gateway address on the join subnet (the cluster router has the first)."""
    taken = {int(ip) for ip in used} | {int(join_router_ip(join))}
    for candidate in range(join.first + 2, join.last):
        if candidate not in taken:
            return netaddr.IPAddress(candidate)
    raise ConfigError(f"join subnet {join} has no free address left for another gateway router")


def join_address(join: netaddr.IPNetwork, current: netaddr.IPAddress | None,
                 used: Iterable[netaddr.IPAddress]) -> netaddr.IPAddress:
    """A gateway's join address: the one it has while it is still valid (inside the subnet, not
    the cluster router's, not taken by another gateway), else the lowest free one."""
    used = list(used)
    if current is not None and current in join and current not in used and current != join_router_ip(join):
        return current
    return allocate_join_ip(join, used)


def join_address_among(join: netaddr.IPNetwork, mine: str,
                       ports: Iterable[tuple[str, Iterable[str]]]) -> netaddr.IPAddress:
    """`join_address` for the gateway whose router port is named `mine`, given the
    (name, networks) of every gateway port on that join switch."""
    used: list[netaddr.IPAddress] = []
    current: netaddr.IPAddress | None = None
    for name, networks in ports:
        for cidr in networks:
            ip = netaddr.IPNetwork(cidr).ip
            if name == mine:
                current = ip if ip in join else None
            elif ip in join:
                used.append(ip)
    return join_address(join, current, used)
