"""The helper's local inputs: the bridge's OpenFlow port numbers and the host's address.

Read again on every pass of the daemon's loop, so a NIC re-added to the bridge (new ofport) or
a renewed address changes the flows within a second. Reading is cheap: the ofports come from
the local OVS database's in-memory replica (`ovn_k8s.local_ovsdb`, which first takes in the
updates the server has sent), the address from one netlink dump (`ovn_k8s.netlink`).

`bridge_ports` and `choose_host_ip` are pure, so every error message is unit-tested.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ovn_k8s import naming, netlink
from ovn_k8s.errors import HostError
from ovn_k8s.local_ovsdb import LocalOvsdb
from ovn_k8s.openflow import BridgePorts

RT_SCOPE_UNIVERSE = 0


@dataclass(frozen=True, slots=True)
class Iface:
    ofport: int | None  # None: not assigned yet; -1: OVS could not add it
    error: str | None


# interface name -> Iface, for every interface of the bridge's ports; None: no such bridge.
BridgeSnapshot = Mapping[str, Iface] | None


@dataclass(frozen=True, slots=True)
class Inputs:
    host_ip: str
    ports: BridgePorts


def _ofport(iface: Iface | None, name: str, bridge: str, missing_hint: str) -> int:
    if iface is None:
        raise HostError(f"{name} is not a port of OVS bridge {bridge}{missing_hint}")
    if iface.ofport is None:
        raise HostError(f"{name} on OVS bridge {bridge} has no OpenFlow port number yet")
    if iface.ofport <= 0:
        detail = f": {iface.error}" if iface.error else ""
        raise HostError(f"OVS could not add {name} to bridge {bridge} (ofport "
                        f"{iface.ofport}){detail}")
    return iface.ofport


def bridge_ports(snapshot: BridgeSnapshot, *, bridge: str, nic: str) -> BridgePorts:
    """The NIC's and the patch port's ofports, or a HostError that says what to run."""
    if snapshot is None:
        raise HostError(f"OVS bridge {bridge} does not exist (ovn-k8s-util nics-to-bridge "
                        f"{nic} creates {naming.nic_bridge(nic)})")
    patch = naming.patch_bridge_to_int(bridge)
    return BridgePorts(
        nic=_ofport(snapshot.get(nic), f"interface {nic}", bridge,
                    f" (ovn-k8s-util nics-to-bridge {nic} puts it on {naming.nic_bridge(nic)})"),
        patch=_ofport(snapshot.get(patch), f"patch port {patch}", bridge,
                      f": run ovn-k8s-overlay gateway-init --bridge-interface {bridge} first"))


def choose_host_ip(addresses: Sequence[netlink.Address], *, bridge: str,
                   previous: str | None = None) -> str:
    """The host's IPv4 address on the bridge: its only global one. With several, the one in use
    before stays (a secondary address was added); otherwise --physical-ip must say."""
    candidates = sorted({a.cidr.split("/")[0] for a in addresses
                         if a.family == socket.AF_INET and a.scope == RT_SCOPE_UNIVERSE},
                        key=ipaddress.IPv4Address)
    if len(candidates) == 1:
        return candidates[0]
    if previous is not None and previous in candidates:
        return previous
    if not candidates:
        raise HostError(f"bridge {bridge} has no IPv4 address (ovn-k8s-util nics-to-bridge moves "
                        "the NIC's address there; or pass --physical-ip)")
    raise HostError(f"bridge {bridge} has several IPv4 addresses ({', '.join(candidates)}): pass "
                    "--physical-ip with the one gateway-init gave the gateway router")


class InputReader:
    """Reads `Inputs` from the local OVS and the host (from the daemon's loop thread only)."""

    def __init__(self, ovs: LocalOvsdb, *, bridge: str, nic: str, physical_ip: str | None) -> None:
        self.ovs = ovs
        self.bridge = bridge
        self.nic = nic
        self.physical_ip = physical_ip
        self._last_ip: str | None = None

    def snapshot(self) -> BridgeSnapshot:
        """The bridge's interfaces with their ofport and error (None: no such bridge)."""
        found = self.ovs.bridge_interfaces(self.bridge)
        if found is None:
            return None
        return {i.name: Iface(ofport=i.ofport, error=i.error) for i in found}

    def host_ip(self) -> str:
        if self.physical_ip:
            return self.physical_ip
        try:
            found = netlink.addresses(self.bridge, socket.AF_INET)
        except HostError:
            raise HostError(f"bridge {self.bridge} has no network device in this namespace "
                            "(is ovs-vswitchd running?)") from None
        self._last_ip = choose_host_ip(found, bridge=self.bridge, previous=self._last_ip)
        return self._last_ip

    def read(self) -> Inputs:
        ports = bridge_ports(self.snapshot(), bridge=self.bridge, nic=self.nic)
        return Inputs(host_ip=self.host_ip(), ports=ports)
