"""The shared-NIC bridge's OpenFlow table: PURE (inputs in, exact flow specs out).

One NIC, one MAC, one IPv4 address, two owners: the host (the bridge's LOCAL port) and the
gateway router GR_<node> (behind the patch port to br-int). This module decides, as flows, which
packets belong to whom. It does no I/O and imports nothing with I/O, so the whole table can be
checked as a golden list (tests/unit/test_gateway_flows.py). docs/gateway-helper.md explains
every flow.

    E = the NIC's ofport, P = the patch port's ofport (k8s-patch-<bridge>-br-int),
    LOCAL = the host, H = the host's (and the gateway router's) IPv4 address, Z = the zone.

Rules, in words:
- Inbound packets to a service go to OVN: a NodePort on H, or a port of a service's external
  IP (spec.externalIPs, LoadBalancer ingress). They are committed to conntrack zone Z, so the
  router's replies and related ICMP are tracked too. ARP requests for an external IP other than
  H go to both the router (which answers for a VIP unless its load balancer says
  neighbor_responder=none; the services controller routes external IPs instead) and the host
  (in case the address is also one of its own); both would answer with the same MAC.
- Everything the router sends is IPv4 (committed in zone Z, then out of the NIC) or ARP (out of
  the NIC). Anything else from it is dropped: the router shares the host's MAC, and so would
  share its IPv6 link-local address too.
- Inbound IPv4 to H goes through zone Z: replies to connections the router started (pods,
  SNATed to H) and ICMP errors about them go to OVN; all other traffic goes to the host.
- ARP replies from the wire go to both (either may have asked); other ARP goes to the host,
  which answers for H with the MAC the router shares.
- Everything else from the wire goes to the host, and everything from the host goes out of the
  NIC, exactly as if OVN were not there. No NORMAL action: with two ports behind one MAC,
  MAC learning would flap between them.

Every flow carries our cookie, so `apply.py` can replace exactly our flows and no one else's.
The spec strings are written the way `ovs-ofctl dump-flows --no-names` prints them, so a dump of
our cookie can be compared with them as text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from gateway_helper.services import ServicePorts

# "k8sgw" in ASCII: our flows' cookie (and cookie mask -1 in apply.py).
COOKIE = 0x6B38736777

TABLE_CLASSIFY = 0
TABLE_CONNTRACK = 1  # inbound IPv4 to the host address, after the conntrack lookup in zone Z

PRIO_SERVICE = 100
PRIO_SPLIT = 50
PRIO_DEFAULT = 10


@dataclass(frozen=True, slots=True)
class BridgePorts:
    """OpenFlow port numbers on the shared bridge."""

    nic: int
    patch: int


@dataclass(frozen=True, slots=True, order=True)
class Flow:
    table: int
    priority: int
    match: str
    actions: str

    def spec(self, cookie: int) -> str:
        """The flow as ovs-ofctl reads it (and, but for the table, prints it)."""
        return (f"cookie={cookie:#x},table={self.table},priority={self.priority},"
                f"{self.match} actions={self.actions}")


def _check(host_ip: str, ports: BridgePorts, zone: int) -> None:
    ip = ipaddress.ip_address(host_ip)
    if ip.version != 4:
        raise ValueError(f"host address {host_ip} is not IPv4")
    for what, port in (("NIC", ports.nic), ("patch port", ports.patch)):
        if not 0 < port < 0xFF00:
            raise ValueError(f"{what} ofport {port} is not a physical OpenFlow port")
    if ports.nic == ports.patch:
        raise ValueError("the NIC and the patch port have the same ofport")
    if not 0 <= zone <= 0xFFFF:
        raise ValueError(f"conntrack zone {zone} is not in 0-65535")


def flow_table(services: Iterable[ServicePorts], *, host_ip: str, ports: BridgePorts,
               zone: int) -> list[Flow]:
    """Every flow the helper wants on the bridge, sorted (table, then priority high to low)."""
    _check(host_ip, ports, zone)
    e, p = ports.nic, ports.patch
    to_ovn = f"ct(commit,zone={zone}),output:{p}"
    flows: set[Flow] = set()

    arp_targets: set[str] = set()
    for svc in services:
        for np in svc.node_ports:
            flows.add(Flow(TABLE_CLASSIFY, PRIO_SERVICE,
                           f"{np.protocol},in_port={e},nw_dst={host_ip},tp_dst={np.port}", to_ovn))
        for ext in svc.external:
            flows.add(Flow(TABLE_CLASSIFY, PRIO_SERVICE,
                           f"{ext.protocol},in_port={e},nw_dst={ext.ip},tp_dst={ext.port}", to_ovn))
            if ext.ip != host_ip:
                arp_targets.add(ext.ip)
    for ip in arp_targets:
        flows.add(Flow(TABLE_CLASSIFY, PRIO_SERVICE, f"arp,in_port={e},arp_tpa={ip},arp_op=1",
                       f"LOCAL,output:{p}"))

    flows |= {
        # From the wire.
        Flow(TABLE_CLASSIFY, PRIO_SPLIT, f"arp,in_port={e},arp_op=2", f"LOCAL,output:{p}"),
        Flow(TABLE_CLASSIFY, PRIO_SPLIT, f"ip,in_port={e},nw_dst={host_ip}",
             f"ct(table={TABLE_CONNTRACK},zone={zone})"),
        Flow(TABLE_CLASSIFY, PRIO_DEFAULT, f"in_port={e}", "LOCAL"),
        # From the gateway router.
        Flow(TABLE_CLASSIFY, PRIO_SPLIT, f"ip,in_port={p}", f"ct(commit,zone={zone}),output:{e}"),
        Flow(TABLE_CLASSIFY, PRIO_SPLIT, f"arp,in_port={p}", f"output:{e}"),
        Flow(TABLE_CLASSIFY, PRIO_DEFAULT, f"in_port={p}", "drop"),
        # From the host.
        Flow(TABLE_CLASSIFY, PRIO_DEFAULT, "in_port=LOCAL", f"output:{e}"),
        # Inbound IPv4 to the host address, after the conntrack lookup.
        Flow(TABLE_CONNTRACK, PRIO_SERVICE, f"ct_state=+est+trk,ip,in_port={e}", f"output:{p}"),
        Flow(TABLE_CONNTRACK, PRIO_SERVICE, f"ct_state=+rel+trk,ip,in_port={e}", f"output:{p}"),
        Flow(TABLE_CONNTRACK, PRIO_DEFAULT, f"in_port={e}", "LOCAL"),
    }
    return sorted(flows, key=lambda f: (f.table, -f.priority, f.match))


def gateway_flows(services: Iterable[ServicePorts], *, host_ip: str, ports: BridgePorts,
                  zone: int, cookie: int = COOKIE) -> list[str]:
    """`flow_table` as ovs-ofctl flow specs, each carrying `cookie`."""
    return [f.spec(cookie) for f in flow_table(services, host_ip=host_ip, ports=ports, zone=zone)]
