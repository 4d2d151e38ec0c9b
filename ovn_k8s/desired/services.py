"""Services as desired NB rows (pure): one Load_Balancer per (service, protocol, scope).

    scope            VIPs                                      attached to
    cluster          clusterIP:port, externalIP:port,          group k8s-cluster-lbs (every node
                     ingressIP:port                            switch: pods and management ports)
    external         externalIP:port, ingressIP:port           group k8s-gateway-lbs (every
                     (neighbor_responder=none)                 gateway router)
    nodeport         ^NODEIP:nodePort (a template)             group k8s-gateway-lbs  [TEMPLATE]
    nodeport:<node>  <physical_ip>:nodePort                    GR_<node> itself   [PER_GATEWAY]

Backends are "ip:targetPort" of the ready endpoints of that service port, sorted, per VIP of
the same address family. A VIP without ready backends is left out, and a load balancer
without VIPs is not built at all. Headless and ExternalName services build nothing.

sessionAffinity ClientIP: AffinityMode.HASH (the default) hashes on the client IP only
(selection_fields=[ip_src]); TIMEOUT writes options:affinity_timeout, whose learn stage drops
the packet that creates the affinity on OVN 23.03 (docs/services.md).

NodePorts: templates keep the rows O(services) (one `^NODEIP` VIP, expanded per chassis by
ovn-controller from Chassis_Template_Var), but on OVN 23.03 a template VIP that equals the
gateway's SNAT address gets no "skip unSNAT" flow and connections fail intermittently (see
docs/services.md). PER_GATEWAY, the default, writes one load balancer per (service,
protocol, gateway) for NodePorts only; everything else stays O(services).
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ovn_k8s import naming
from ovn_k8s.desired.topology import gateway_router_id
from ovn_k8s.model.kube import Service, ServiceBackends
from ovn_k8s.nb.model import ActualRow, Parent, Row

LOG = logging.getLogger(__name__)
LB, LBG, LR, CTV = "Load_Balancer", "Load_Balancer_Group", "Logical_Router", "Chassis_Template_Var"
OVN_MAX_AFFINITY_TIMEOUT = 65535   # OVN's limit for options:affinity_timeout (Kubernetes: 86400)


class NodePortMode(enum.StrEnum):
    TEMPLATE = "template"          # one ^NODEIP template VIP per nodePort (OVN >= 22.12)
    PER_GATEWAY = "per-gateway"    # one <physical_ip>:nodePort VIP per gateway


class AffinityMode(enum.StrEnum):
    """How sessionAffinity: ClientIP is written (docs/services.md, "Session affinity")."""

    HASH = "hash"          # selection_fields=[ip_src]: a client IP always hashes to one backend
    TIMEOUT = "timeout"    # options:affinity_timeout: OVN learns client -> backend for N seconds


@dataclass(frozen=True, slots=True)
class Gateway:
    """A gateway router as the services controller needs it (read from GR_<node>)."""

    node: str
    chassis: str            # GR options:chassis (the chassis' system-id)
    physical_ip: str        # GR external_ids:physical_ip
    router_id: str = field(default="")   # GR's ovn-k8s/id; defaults to gateway-router:<node>

    def __post_init__(self) -> None:
        if not self.router_id:
            object.__setattr__(self, "router_id", gateway_router_id(self.node))


def _vip(ip: str, port: int | str) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


class _Lbs:
    """Accumulates VIPs per (protocol, scope); a VIP seen twice gets the union of backends."""

    def __init__(self) -> None:
        self.vips: dict[tuple[str, str], dict[str, set[str]]] = {}

    def add(self, protocol: str, scope: str, vip: str, backends: Iterable[str]) -> None:
        targets = list(backends)
        if targets:
            self.vips.setdefault((protocol, scope), {}).setdefault(vip, set()).update(targets)


def _targets(backends: Sequence[tuple[str, int]], family: int) -> list[str]:
    return [_vip(ip, port) for ip, port in backends if _family(ip) == family]


def _sorted_targets(targets: set[str]) -> str:
    def order(target: str) -> tuple[int, int, int]:
        host, _, port = target.rpartition(":")
        ip = ipaddress.ip_address(host.strip("[]"))
        return (ip.version, int(ip), int(port))

    return ",".join(sorted(targets, key=order))


def service_rows(service: Service | None, backends: ServiceBackends,
                 gateways: Sequence[Gateway] = (), *,
                 nodeport_mode: NodePortMode = NodePortMode.PER_GATEWAY,
                 affinity_mode: AffinityMode = AffinityMode.HASH) -> list[Row]:
    """The load balancers of one service (empty for None, headless and ExternalName)."""
    if service is None or service.headless or service.type == "ExternalName":
        return []
    lbs = _Lbs()
    outside_ips = tuple(dict.fromkeys(service.external_ips + service.lb_ingress_ips))
    gws = sorted({g.node: g for g in gateways}.values(), key=lambda g: g.node)
    for port in service.ports:
        proto = port.protocol.lower()
        eps = backends.for_port(port)
        if not eps:
            continue
        for ip in service.cluster_ips + outside_ips:
            lbs.add(proto, naming.SCOPE_CLUSTER, _vip(ip, port.port), _targets(eps, _family(ip)))
        for ip in outside_ips:
            lbs.add(proto, naming.SCOPE_EXTERNAL, _vip(ip, port.port), _targets(eps, _family(ip)))
        if port.node_port is None:
            continue
        if nodeport_mode is NodePortMode.TEMPLATE:
            lbs.add(proto, naming.SCOPE_NODEPORT,
                    f"^{naming.NODEIP_TEMPLATE_VAR}:{port.node_port}", _targets(eps, 4))
        else:
            for gw in gws:
                lbs.add(proto, naming.scope_nodeport_gateway(gw.node),
                        _vip(gw.physical_ip, port.node_port), _targets(eps, _family(gw.physical_ip)))

    key = service.key
    owner = naming.owner_service(key)
    routers = {naming.scope_nodeport_gateway(g.node): g for g in gws}
    rows = []
    for (proto, scope), vips in sorted(lbs.vips.items()):
        options: dict[str, str] = {}
        selection_fields: list[str] = []
        external_ids = {naming.SERVICE_KEY: key, naming.LB_PROTOCOL_KEY: proto,
                        naming.LB_SCOPE_KEY: scope}
        if service.session_affinity == "ClientIP":
            if affinity_mode is AffinityMode.TIMEOUT and service.affinity_timeout:
                options["affinity_timeout"] = str(min(service.affinity_timeout,
                                                      OVN_MAX_AFFINITY_TIMEOUT))
            else:
                selection_fields = ["ip_src"]
        if scope == naming.SCOPE_CLUSTER:
            parent = Parent(LBG, naming.CLUSTER_LB_GROUP, "load_balancer")
        elif scope == naming.SCOPE_EXTERNAL:
            # Every gateway serves external IPs, none answers ARP for them: the network routes
            # them to gateways (static routes, BGP, ECMP). See docs/services.md.
            options["neighbor_responder"] = "none"
            parent = Parent(LBG, naming.GATEWAY_LB_GROUP, "load_balancer")
        elif scope == naming.SCOPE_NODEPORT:
            options["template"] = "true"
            options["address-family"] = "ipv4"
            parent = Parent(LBG, naming.GATEWAY_LB_GROUP, "load_balancer")
        else:
            gw = routers[scope]
            external_ids[naming.NODE_KEY] = gw.node
            parent = Parent(LR, gw.router_id, "load_balancer")
        rows.append(Row(LB, naming.service_lb_id(key, proto, scope), owner, {
            "name": naming.service_lb_name(key, proto, scope),
            "protocol": proto,
            "vips": {vip: _sorted_targets(targets) for vip, targets in sorted(vips.items())},
            "options": options,
            "selection_fields": selection_fields,
            "external_ids": external_ids,
        }, parent=parent))
    return rows


def template_var_rows(gateways: Sequence[Gateway], *,
                      nodeport_mode: NodePortMode = NodePortMode.PER_GATEWAY) -> list[Row]:
    """One Chassis_Template_Var per gateway chassis, NODEIP=<physical_ip> (TEMPLATE mode only)."""
    if nodeport_mode is not NodePortMode.TEMPLATE:
        return []
    by_chassis = {}
    for gw in sorted(gateways, key=lambda g: g.node, reverse=True):
        if _family(gw.physical_ip) == 4:
            by_chassis[gw.chassis] = gw   # one row per chassis; the lowest node name wins
    return [Row(CTV, naming.template_var_id(chassis), naming.OWNER_SERVICE_TEMPLATES, {
        "chassis": chassis,
        "variables": {naming.NODEIP_TEMPLATE_VAR: gw.physical_ip},
        "external_ids": {naming.NODE_KEY: gw.node}}) for chassis, gw in sorted(by_chassis.items())]


def gateways_from_rows(routers: Iterable[ActualRow]) -> tuple[Gateway, ...]:
    """Gateway routers made by gateway-init (owner gateway:<node>) that can serve NodePorts:
    options:chassis and external_ids:physical_ip set, the latter an IP address. Sorted by node."""
    prefix = naming.owner_gateway("")
    found = []
    for row in routers:
        ext = row.columns.get("external_ids", {})
        owner = row.owner or ""
        chassis = row.columns.get("options", {}).get("chassis")
        ip = ext.get(naming.PHYSICAL_IP_KEY)
        if not owner.startswith(prefix) or not chassis or not ip or naming.ID_KEY not in ext:
            continue
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            LOG.warning("gateway router %s: physical_ip %r is not an IP address; ignored",
                        row.columns.get("name"), ip)
            continue
        found.append(Gateway(node=ext.get(naming.NODE_KEY) or owner[len(prefix):],
                             chassis=chassis, physical_ip=ip, router_id=ext[naming.ID_KEY]))
    return tuple(sorted(found, key=lambda g: g.node))
