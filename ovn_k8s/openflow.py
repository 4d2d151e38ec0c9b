"""The OpenFlow table of a NIC shared by the host and a gateway router, and how it is put on
the bridge: used by the gateway helper (with the cluster's services) and by ovn-mesos-init
gateway-init --bridge-interface (with none).

One NIC, one MAC, one IPv4 address, two owners: the host (the bridge's LOCAL port) and the
gateway router (behind the patch port to br-int). `flow_table` decides, as flows, which packets
belong to whom. It is PURE (inputs in, exact flow specs out), so the whole table can be checked
as a golden list (tests/unit/test_gateway_flows.py). docs/gateway-helper.md explains every flow.

    E = the NIC's ofport, P = the patch port's ofport (the patch to br-int),
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

Every flow carries its owner's cookie, so `FlowApplier` replaces exactly those flows and no one
else's: one atomic `ovs-ofctl --bundle add-flows` call whose first line deletes every flow
carrying the cookie (`delete cookie=C/-1`) and whose other lines add the wanted flows. OVS
applies a bundle as one transaction (all or nothing, in order), so:
- flows with any other cookie (the bridge's default NORMAL flow, anyone else's) survive;
- there is never a moment with half a flow set, or with none;
- a bad flow rejects the whole bundle and leaves the table as it was.
(Verified on OVS 3.1 with the default bridge protocols: style-and-architecture.md V12.)
The spec strings are written the way `ovs-ofctl dump-flows --no-names` prints them, so a dump of
a cookie can be compared with them as text (`FlowApplier.ensure`, for one-shot commands).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ovn_k8s.errors import HostError

LOG = logging.getLogger(__name__)

# Our flows' cookies, one per owner, each with cookie mask -1: "k8sgw" (the gateway helper)
# and "mesos" (ovn-mesos-init's shared-NIC gateways), in ASCII.
COOKIE = 0x6B38736777
MESOS_COOKIE = 0x6D65736F73

TABLE_CLASSIFY = 0
TABLE_CONNTRACK = 1  # inbound IPv4 to the host address, after the conntrack lookup in zone Z

PRIO_SERVICE = 100
PRIO_SPLIT = 50
PRIO_DEFAULT = 10


# --- the table's inputs ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class L4Port:
    protocol: str  # "tcp", "udp" or "sctp" (as OpenFlow spells them)
    port: int


@dataclass(frozen=True, slots=True, order=True)
class ExternalPort:
    ip: str  # an IPv4 address
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class ServicePorts:
    """What the shared NIC must send to the gateway router for one Service
    (gateway_helper/services.py makes them from Service objects)."""

    key: str  # "namespace/name"
    node_ports: tuple[L4Port, ...] = ()
    external: tuple[ExternalPort, ...] = ()
    skipped: tuple[str, ...] = ()  # why (part of) the service has no flows, for the log

    @property
    def empty(self) -> bool:
        return not self.node_ports and not self.external


@dataclass(frozen=True, slots=True)
class BridgePorts:
    """OpenFlow port numbers on the shared bridge."""

    nic: int
    patch: int


# --- the table (PURE) -----------------------------------------------------------------------------
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


# --- putting it on the bridge ---------------------------------------------------------------------
# (argv, stdin text, timeout) -> (exit status, stderr). Injectable for tests without OVS.
Runner = Callable[[Sequence[str], str, float], tuple[int, str]]


class FlowApplyError(HostError):
    """ovs-ofctl refused or failed the bundle; the bridge's flows are unchanged."""


def bundle_script(flows: Sequence[str], cookie: int) -> str:
    """The add-flows input that replaces exactly the flows carrying `cookie` with `flows`."""
    for spec in flows:
        if not spec.startswith(f"cookie={cookie:#x},"):
            raise ValueError(f"flow without our cookie {cookie:#x}: {spec}")
        if "\n" in spec:
            raise ValueError(f"flow spec spans lines: {spec!r}")
    return "".join([f"delete cookie={cookie:#x}/-1\n", *(f"add {spec}\n" for spec in flows)])


def run_ofctl(argv: Sequence[str], stdin: str, timeout: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"no answer within {timeout:.0f}s"
    return proc.returncode, proc.stderr


def ofctl_target(db_remote: str, bridge: str) -> str:
    """ovs-ofctl's target for `bridge`: ovs-vswitchd keeps <bridge>.mgmt in its run directory,
    next to the database socket `db_remote` names; otherwise ovs-ofctl's own default applies."""
    if db_remote.startswith("unix:"):
        mgmt = os.path.join(os.path.dirname(db_remote[5:]), f"{bridge}.mgmt")
        if os.path.exists(mgmt):
            return f"unix:{mgmt}"
    return bridge


def dump_flows(target: str, cookie: int, *, ofctl: str = "ovs-ofctl",
               timeout: float = 30.0) -> list[str] | None:
    """The flows carrying `cookie`, as `ovs-ofctl --no-names --no-stats` prints them, sorted
    (None: could not read them)."""
    try:
        proc = subprocess.run([ofctl, "--no-names", "--no-stats", "dump-flows", target,
                               f"cookie={cookie:#x}/-1"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return sorted(line.strip().replace(", ", ",") for line in proc.stdout.splitlines()
                  if line.strip().startswith("cookie="))


def as_dumped(flows: Iterable[str]) -> list[str]:
    """Flow specs the way `dump_flows` returns them (ovs-ofctl leaves out table 0)."""
    return sorted(f.replace(",table=0,", ",") for f in flows)


@dataclass
class ApplyResult:
    applied: bool  # False: the set equals the last applied one and the call was skipped
    flows: int


class FlowApplier:
    """Replaces the flows carrying one cookie on one bridge.

    `replace` reads nothing back: a daemon recomputes the wanted set from its inputs, so a
    restarted one just replaces whatever its predecessor left; it skips the call when the set
    equals what this applier last applied, unless forced (a periodic resync repairs flows
    changed behind its back). `ensure` is for one-shot commands, which have no last set: it
    reads the bridge's flows back and replaces them only if they differ."""

    def __init__(self, bridge: str, *, cookie: int, ofctl: str = "ovs-ofctl",
                 timeout: float = 30.0, runner: Runner = run_ofctl) -> None:
        self.bridge = bridge
        self.cookie = cookie
        self.ofctl = ofctl
        self.timeout = timeout
        self._run = runner
        self._applied: tuple[str, ...] | None = None

    @property
    def applied(self) -> tuple[str, ...] | None:
        """What this process last applied successfully (None: nothing yet, or unknown)."""
        return self._applied

    def replace(self, flows: Sequence[str], *, force: bool = False) -> ApplyResult:
        """Make our cookie's flows on the bridge exactly `flows`, in one bundle."""
        wanted = tuple(flows)
        if not force and wanted == self._applied:
            return ApplyResult(applied=False, flows=len(wanted))
        script = bundle_script(wanted, self.cookie)
        argv = [self.ofctl, "--bundle", "add-flows", self.bridge, "-"]
        status, stderr = self._run(argv, script, self.timeout)
        if status != 0:
            # The bundle was not applied, so the table is as before; but a failure often means
            # ovs-vswitchd went away, and a restarted one starts with an empty table: the next
            # call must apply even an unchanged set.
            self._applied = None
            # The switch's own complaint ("Error OFPBAC_...: the flow") says more than the
            # closing "ovs-ofctl: talking to ... (Protocol error)".
            lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("Error ")]
            detail = (errors or lines or [f"exit status {status}"])[0 if errors else -1]
            raise FlowApplyError(f"ovs-ofctl could not replace the flows on {self.bridge}: "
                                 f"{detail}")
        self._applied = wanted
        return ApplyResult(applied=True, flows=len(wanted))

    def ensure(self, flows: Sequence[str]) -> bool:
        """Make our cookie's flows exactly `flows`, leaving them alone if they already are (a
        re-run changes nothing). True if they were replaced."""
        if dump_flows(self.bridge, self.cookie, ofctl=self.ofctl, timeout=self.timeout) == as_dumped(flows):
            return False
        self.replace(flows, force=True)
        return True
