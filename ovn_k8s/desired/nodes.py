"""Node subnets handed out by the master (pure): which subnet of the cluster subnet each
Kubernetes Node gets, and which nodes' NB rows must go.

Inputs are plain data: the node switches in the NB ({node: subnet}, what minion-init,
master-init or the watcher wrote), the Nodes in the API with the subnet annotated on them
(`naming.NODE_SUBNET_ANNOTATION`), the cluster subnet and the host prefix. Precedence, so
that a restart re-derives exactly what was handed out and never hands a subnet out twice:

1. a node switch's subnet is the node's, whatever the annotation says (an explicit
   `minion-init --minion-switch-subnet` wins; the annotation is corrected after it);
2. else an annotated subnet that is inside the cluster subnet and overlaps nothing taken in
   step 1 (oldest Node first, so of two Nodes claiming one subnet the older keeps it);
3. else the lowest free block of the host prefix; none left: `PoolExhausted`.

A subnet returns to the pool only when its switch is gone and no Node claims it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import netaddr

from ovn_k8s import naming
from ovn_k8s.errors import ConfigError, InvalidObject

MIN_PREFIX, MAX_PREFIX = 1, 29     # /29: router, management port and a few pods (ipam.node_addresses)


class PoolExhausted(InvalidObject):
    """Every block of the cluster subnet is taken."""


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the node controller reads of a Kubernetes Node."""

    name: str                          # the NB name (naming.node_name: lower case)
    uid: str
    created: str                       # metadata.creationTimestamp (RFC 3339 sorts as text)
    annotated: str | None              # the annotation's text, as found
    ready: bool | None = None          # the Ready condition (None: not reported); never acted on

    def annotated_subnet(self) -> netaddr.IPNetwork | None:
        """The annotated subnet when it parses as an IPv4 network, else None."""
        if not self.annotated:
            return None
        try:
            net = netaddr.IPNetwork(self.annotated)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            return None
        if net.version != 4 or net.ip != net.network or "/" not in self.annotated:
            return None
        return net


def node_info(obj: Mapping[str, object]) -> NodeInfo:
    """A Node object (a plain dict from the API) as NodeInfo; InvalidObject when its name is
    not a valid node name."""
    meta = obj.get("metadata") or {}
    assert isinstance(meta, Mapping)
    try:
        name = naming.node_name(str(meta.get("name") or ""))
    except ConfigError as exc:
        raise InvalidObject(str(exc)) from None
    annotations = meta.get("annotations") or {}
    assert isinstance(annotations, Mapping)
    ready = None
    status = obj.get("status") or {}
    if isinstance(status, Mapping):
        for cond in status.get("conditions") or []:
            if isinstance(cond, Mapping) and cond.get("type") == "Ready":
                ready = cond.get("status") == "True"
    text = annotations.get(naming.NODE_SUBNET_ANNOTATION)
    return NodeInfo(name=name, uid=str(meta.get("uid") or ""),
                    created=str(meta.get("creationTimestamp") or ""),
                    annotated=str(text) if text is not None else None, ready=ready)


def _overlaps(a: netaddr.IPNetwork, b: netaddr.IPNetwork) -> bool:
    return a.first <= b.last and b.first <= a.last


def check_prefix(cluster: netaddr.IPNetwork, prefix: int) -> None:
    """The host prefix must cut the cluster subnet into blocks a node can use."""
    if not MIN_PREFIX <= prefix <= MAX_PREFIX:
        raise ConfigError(f"--node-subnet-prefix: /{prefix} is out of range "
                          f"(/{MIN_PREFIX}../{MAX_PREFIX})")
    if prefix < cluster.prefixlen:
        raise ConfigError(f"--node-subnet-prefix /{prefix} is larger than the cluster subnet "
                          f"{cluster}")


def free_block(cluster: netaddr.IPNetwork, prefix: int,
               taken: Iterable[netaddr.IPNetwork]) -> netaddr.IPNetwork | None:
    """The lowest /prefix block of `cluster` that overlaps nothing in `taken`."""
    spans = sorted((t.first, t.last) for t in taken)
    size = 1 << (32 - prefix)
    start = cluster.first
    i = 0
    while start + size - 1 <= cluster.last:
        end = start + size - 1
        # Skip the spans wholly below this block; the first one left decides.
        while i < len(spans) and spans[i][1] < start:
            i += 1
        clash = next((s for s in spans[i:] if s[0] <= end and s[1] >= start), None)
        if clash is None:
            return netaddr.IPNetwork(f"{netaddr.IPAddress(start)}/{prefix}")
        # Jump past the clashing span, aligned up to the next block.
        nxt = clash[1] + 1
        start = cluster.first + -(-(nxt - cluster.first) // size) * size
    return None


@dataclass(frozen=True, slots=True)
class Allocation:
    subnets: dict[str, netaddr.IPNetwork]     # node -> its subnet (switch, annotation or new)
    failed: dict[str, str]                    # node -> why it has none (pool exhausted)


def allocate(*, cluster: netaddr.IPNetwork, prefix: int,
             switches: Mapping[str, netaddr.IPNetwork], nodes: Sequence[NodeInfo]) -> Allocation:
    """Every Node's subnet (see the module docstring for the precedence). `switches` may name
    nodes that are not in `nodes` (deleted, rows not cleaned yet): their subnets stay taken."""
    taken: list[netaddr.IPNetwork] = list(switches.values())
    subnets: dict[str, netaddr.IPNetwork] = {}
    failed: dict[str, str] = {}
    ordered = sorted(nodes, key=lambda n: (n.created, n.name))
    for node in ordered:
        if node.name in switches:
            subnets[node.name] = switches[node.name]
    for node in ordered:
        if node.name in subnets:
            continue
        want = node.annotated_subnet()
        if want is not None and want in cluster and want.size >= 8 and \
                not any(_overlaps(want, t) for t in taken):
            subnets[node.name] = want
            taken.append(want)
    for node in ordered:
        if node.name in subnets:
            continue
        block = free_block(cluster, prefix, taken)
        if block is None:
            failed[node.name] = (f"no free /{prefix} left in the cluster subnet {cluster} for "
                                 f"node {node.name} ({len(taken)} subnets taken)")
            continue
        subnets[node.name] = block
        taken.append(block)
    return Allocation(subnets=subnets, failed=failed)


def subnet_for(node: str, *, cluster: netaddr.IPNetwork, prefix: int,
               switches: Mapping[str, netaddr.IPNetwork],
               nodes: Sequence[NodeInfo]) -> netaddr.IPNetwork:
    """One node's subnet, decided against everything else (`allocate`); PoolExhausted when
    there is none for it."""
    result = allocate(cluster=cluster, prefix=prefix, switches=switches, nodes=nodes)
    if node in result.subnets:
        return result.subnets[node]
    raise PoolExhausted(result.failed.get(node, f"node {node} is not known"))


def node_owners(owners: Iterable[str]) -> set[str]:
    """The nodes that own NB rows, from the rows' owner values ("node:<n>", "gateway:<n>")."""
    out = set()
    node_prefix, gateway_prefix = naming.owner_node(""), naming.owner_gateway("")
    for owner in owners:
        for prefix in (node_prefix, gateway_prefix):
            if owner.startswith(prefix) and len(owner) > len(prefix):
                out.add(owner[len(prefix):])
    return out


def node_scopes(node: str) -> tuple[str, str]:
    """The owner scopes of everything made for a node: minion-init's (its switch, router
    port, management port) and gateway-init's (gateway router, SNAT, routes, join port,
    external switch)."""
    return naming.owner_node(node), naming.owner_gateway(node)
