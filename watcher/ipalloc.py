"""Pod IP allocation per node subnet (pure, in memory; single-threaded by design).

The watcher, not ovn-northd, hands out pod addresses, so a pod does not wait for a northd
round trip and an address survives restarts: the pod annotation is the record, and at start
the allocator is rebuilt from every live pod's annotation (then from existing ports) before
any new address is handed out.

Reserved in every subnet S: the network address, S+1 (the router port rtos-<node>), S+2 (the
management port k8s-<node>) and the broadcast address. Addresses other tools put on the
switch (hand-made ports) are reserved as found. Allocation is round robin from the last
address handed out, so an address just freed is the last to be reused (stale ARP and
conntrack entries of a deleted pod expire first).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from ovn_k8s.errors import OvnK8sError


class SubnetFull(OvnK8sError):
    """No free address left in a node subnet."""


@dataclass
class SubnetPool:
    subnet: ipaddress.IPv4Network
    _owner: dict[int, str] = field(default_factory=dict)      # address -> pod key
    _reserved: set[int] = field(default_factory=set)         # not for pods
    _cursor: int = 0

    def __post_init__(self) -> None:
        net = int(self.subnet.network_address)
        self._first = net + 3                                # after network, router, mgmt
        self._last = int(self.subnet.broadcast_address) - 1
        if self._last < self._first:
            raise SubnetFull(f"node subnet {self.subnet} has no room for pods")
        self._cursor = self._first

    @property
    def size(self) -> int:
        return self._last - self._first + 1

    @property
    def used(self) -> int:
        return len(self._owner)

    def usable(self, ip: int) -> bool:
        """In the pod range of this subnet and not reserved for something else."""
        return self._first <= ip <= self._last and ip not in self._reserved

    def reserve(self, ip: int) -> None:
        """Keep `ip` away from pods (another tool's port holds it)."""
        if ip not in self._owner:
            self._reserved.add(ip)

    def owner(self, ip: int) -> str | None:
        return self._owner.get(ip)

    def take(self, ip: int, key: str) -> None:
        self._owner[ip] = key

    def free(self, ip: int, key: str) -> None:
        if self._owner.get(ip) == key:
            del self._owner[ip]

    def next_free(self) -> int:
        span = self.size
        candidate = self._cursor
        for _ in range(span):
            if candidate > self._last:
                candidate = self._first
            if candidate not in self._owner and candidate not in self._reserved:
                self._cursor = candidate + 1
                return candidate
            candidate += 1
        raise SubnetFull(f"node subnet {self.subnet} is full ({self.used} pods)")


class PodIpam:
    """Addresses of every pod, per node subnet. Keys are "namespace/name"."""

    def __init__(self) -> None:
        self._pools: dict[str, SubnetPool] = {}
        self._assigned: dict[str, tuple[str, int]] = {}      # pod key -> (node, address)

    # -- node subnets --------------------------------------------------------------------------
    def pool(self, node: str) -> SubnetPool | None:
        return self._pools.get(node)

    def set_subnet(self, node: str, subnet: ipaddress.IPv4Network,
                   reserved: Iterable[ipaddress.IPv4Address] = ()) -> SubnetPool:
        """Create (or, if the subnet changed, replace) the pool of `node`. Pods assigned in
        a replaced pool keep their entry until released; they are not moved."""
        pool = self._pools.get(node)
        if pool is None or pool.subnet != subnet:
            pool = SubnetPool(subnet)
            self._pools[node] = pool
            for key, (n, ip) in self._assigned.items():
                if n == node and pool.usable(ip):
                    pool.take(ip, key)
        for ip in reserved:
            if ip in subnet:
                pool.reserve(int(ip))
        return pool

    # -- pods ----------------------------------------------------------------------------------
    def get(self, key: str) -> tuple[str, ipaddress.IPv4Address] | None:
        entry = self._assigned.get(key)
        return (entry[0], ipaddress.IPv4Address(entry[1])) if entry else None

    def owner(self, node: str, ip: ipaddress.IPv4Address) -> str | None:
        pool = self._pools.get(node)
        return pool.owner(int(ip)) if pool else None

    def claim(self, key: str, node: str, ip: ipaddress.IPv4Address) -> bool:
        """Give `ip` to `key` if it is usable and not another pod's. True on success (also
        when it already was key's); key's previous address is released."""
        pool = self._pools.get(node)
        if pool is None:
            return False
        addr = int(ip)
        if not pool.usable(addr):
            return False
        holder = pool.owner(addr)
        if holder is not None and holder != key:
            return False
        if self._assigned.get(key) != (node, addr):
            self.release(key)
            pool.take(addr, key)
            self._assigned[key] = (node, addr)
        return True

    def allocate(self, key: str, node: str) -> ipaddress.IPv4Address:
        """key's address on `node`: the one it has, else a new one (SubnetFull if none)."""
        entry = self._assigned.get(key)
        pool = self._pools[node]
        if entry is not None and entry[0] == node and pool.owner(entry[1]) == key:
            return ipaddress.IPv4Address(entry[1])
        self.release(key)
        addr = pool.next_free()
        pool.take(addr, key)
        self._assigned[key] = (node, addr)
        return ipaddress.IPv4Address(addr)

    def release(self, key: str) -> None:
        entry = self._assigned.pop(key, None)
        if entry is None:
            return
        pool = self._pools.get(entry[0])
        if pool is not None:
            pool.free(entry[1], key)

    def __len__(self) -> int:
        return len(self._assigned)

    def stats(self) -> dict[str, tuple[int, int]]:
        """node -> (used, size)."""
        return {node: (pool.used, pool.size) for node, pool in self._pools.items()}
