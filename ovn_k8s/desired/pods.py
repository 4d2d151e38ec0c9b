"""A pod's logical switch port and annotation, from the pod and its address (pure).

    Pod (ns/name, node, annotation)  +  node switch (subnet, router IP)  +  allocated IP
        -> PodPort: LSP `<ns>_<pod>` on switch `<node>`, addresses "<mac> <ip>",
                    external_ids (owner pod:<ns>/<name>, id, namespace, pod=true),
                    and the `ovn` annotation the CNI plugin reads.

The MAC comes from the IP (ipam.mac_from_ip), except that a pod already annotated with that
IP keeps its annotated MAC: the CNI plugin has configured the pod with it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ovn_k8s import ipam, naming
from ovn_k8s.desired.topology import node_switch_id
from ovn_k8s.errors import InvalidObject
from ovn_k8s.model.kube import Pod, PodAnnotation
from ovn_k8s.nb.model import ActualRow, Parent, Row


@dataclass(frozen=True, slots=True)
class NodeSwitch:
    """What a pod port needs of its node's switch (found in the NB by `switch:<node>`)."""

    node: str
    uuid: str
    subnet: ipaddress.IPv4Network
    gateway_ip: ipaddress.IPv4Address     # the router port, S+1


@dataclass(frozen=True, slots=True)
class PodPort:
    key: str            # "namespace/name"
    name: str           # the LSP name, "<namespace>_<name>"
    node: str
    ip: str
    prefixlen: int
    mac: str
    gateway_ip: str
    external_ids: tuple[tuple[str, str], ...]

    @property
    def addresses(self) -> list[str]:
        return [f"{self.mac} {self.ip}"]

    @property
    def annotation(self) -> PodAnnotation:
        return PodAnnotation(ip=self.ip, prefixlen=self.prefixlen, mac=self.mac,
                             gateway_ip=self.gateway_ip)


def annotated_ip(pod: Pod, switch: NodeSwitch) -> ipaddress.IPv4Address | None:
    """The address the pod's annotation asks for, if it has one (None: allocate one).

    InvalidObject when the pod is malformed, or its annotation names an address that can
    never be this pod's on this node (outside the node subnet, or a reserved address)."""
    if pod.error:
        raise InvalidObject(pod.error)
    ann = pod.annotation
    if ann is None:
        return None
    ip = ipaddress.IPv4Address(ann.ip)
    subnet = switch.subnet
    if ip not in subnet:
        raise InvalidObject(f"annotated address {ann.ip_address} is outside the subnet "
                            f"{subnet} of node {switch.node}; remove the "
                            f"{naming.POD_ANNOTATION!r} annotation to get a new address")
    if ip in (subnet.network_address, subnet.broadcast_address, subnet.network_address + 1,
              subnet.network_address + 2):
        raise InvalidObject(f"annotated address {ann.ip_address} is reserved in {subnet} "
                            "(network, router, management port or broadcast)")
    return ip


def pod_port(pod: Pod, switch: NodeSwitch, ip: ipaddress.IPv4Address) -> PodPort:
    ann = pod.annotation
    mac = ann.mac if ann is not None and ann.ip == str(ip) else ipam.mac_from_ip(str(ip))
    ext = naming.pod_port_external_ids(pod.namespace, pod.name)
    return PodPort(key=pod.key, name=naming.pod_port(pod.namespace, pod.name), node=switch.node,
                   ip=str(ip), prefixlen=switch.subnet.prefixlen, mac=mac,
                   gateway_ip=str(switch.gateway_ip), external_ids=tuple(sorted(ext.items())))


def annotation_current(pod: Pod, port: PodPort) -> bool:
    """The pod already carries exactly the annotation this port implies."""
    return pod.annotation == port.annotation and not pod.error


def pod_key_from_port(name: str, external_ids: Mapping[str, str]) -> str | None:
    """The pod key a logical switch port belongs to, or None if it is not a pod port.

    Ours carry owner pod:<ns>/<name>; the original tools' carry namespace=<ns> and pod=true
    with the name <ns>_<pod>, and are adopted."""
    owner = external_ids.get(naming.OWNER_KEY, "")
    if owner.startswith(naming.OWNER_POD_PREFIX):
        return owner[len(naming.OWNER_POD_PREFIX):]
    if owner:
        return None        # another owner of ours (node, gateway ...): never a pod port
    if external_ids.get(naming.POD_MARK) == "true":
        ns = external_ids.get(naming.POD_NAMESPACE_KEY, "")
        if ns and name.startswith(ns + "_") and len(name) > len(ns) + 1:
            return f"{ns}/{name[len(ns) + 1:]}"
    return None


# --- the port as an NB row, and what the pod controller reads back (pure) ---------------------
LS, LSP = "Logical_Switch", "Logical_Switch_Port"
PORT_COLUMNS = ("name", "addresses", "external_ids")         # the columns a pod port owns
SWITCH_COLUMNS = ("other_config", "external_ids")
FOREIGN_PORT_COLUMNS = ("addresses", "dynamic_addresses")
SWITCH_ID_PREFIX = node_switch_id("")                          # "switch:"


def port_row(port: PodPort) -> Row:
    """The pod's Logical_Switch_Port, linked into its node's switch."""
    ext = {k: v for k, v in port.external_ids if k not in (naming.OWNER_KEY, naming.ID_KEY)}
    namespace, name = port.key.split("/", 1)
    return Row(LSP, port.name, naming.owner_pod(namespace, name),
               {"name": port.name, "addresses": port.addresses, "external_ids": ext},
               parent=Parent(LS, node_switch_id(port.node), "ports"))


def pod_key_of_row(table: str, rid: str, external_ids: Mapping[str, str]) -> str | None:
    """For the engine's scan: the pod key of a Logical_Switch_Port, or None when it is not a
    pod port (a port's id is its name: ours say so, the original tools' have no id)."""
    if table != LSP:
        return None
    return pod_key_from_port(rid, external_ids)


def is_foreign_port(owner: str, rid: str, external_ids: Mapping[str, str]) -> bool:
    """A port on a node switch that is not a pod's (management port, router port, by hand):
    its addresses are kept away from pods. For LSPs the id is the port name."""
    return pod_key_from_port(rid, external_ids) is None


def node_switch(row: ActualRow) -> NodeSwitch | None:
    """A node's switch as the pod controller needs it, from an LS row `switch:<node>`."""
    if not row.id.startswith(SWITCH_ID_PREFIX):
        return None
    node = row.id[len(SWITCH_ID_PREFIX):]
    try:
        subnet = ipaddress.IPv4Network(row.columns.get("other_config", {}).get("subnet", ""))
    except ValueError:
        return None
    gateway = row.columns.get("external_ids", {}).get(naming.GATEWAY_IP_KEY, "").split("/")[0]
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        gw = subnet.network_address + 1
    return NodeSwitch(node=node, uuid=row.uuid, subnet=subnet, gateway_ip=gw)


def addresses_ips(addresses: Iterable[str] | None) -> Iterator[ipaddress.IPv4Address]:
    """IPv4 addresses in an LSP `addresses`/`dynamic_addresses` value ("MAC IP [IP...]")."""
    if isinstance(addresses, str):
        addresses = [addresses]
    for entry in addresses or ():
        for token in str(entry).split()[1:]:
            try:
                ip = ipaddress.ip_address(token.split("/")[0])
            except ValueError:
                continue
            if ip.version == 4:
                yield ip


def foreign_ips(ports: Iterable[ActualRow]) -> list[ipaddress.IPv4Address]:
    out: list[ipaddress.IPv4Address] = []
    for port in ports:
        out.extend(addresses_ips(port.columns.get("addresses")))
        out.extend(addresses_ips(port.columns.get("dynamic_addresses")))
    return out


def row_ip(row: Row) -> ipaddress.IPv4Address | None:
    """The address a pod port row holds."""
    return next(addresses_ips(row.columns.get("addresses")), None)
