"""A small pure model of networking.k8s.io/v1 NetworkPolicy semantics: the truth-table suite's
oracle (tests/e2e/test_networkpolicy_truth.py).

Written from the Kubernetes API reference and concepts page only, never from the OVN
implementation, so that the two can disagree. Policies are taken as the API's JSON (dicts),
exactly as they are sent to the API server.

A verdict is for a *connection* from `src` to `dst` on (protocol, port): allowed when the
source pod's egress and the destination pod's ingress both allow it. Replies of an allowed
connection are always allowed (stateful), so the reverse direction's policies never matter
for a verdict. Rules, as the API defines them:

- a policy selects the pods of its own namespace matched by `spec.podSelector` ({} = all);
- `policyTypes` when given; else Ingress always, Egress only when `spec.egress` has rules;
- a pod selected by at least one policy of a type is isolated for that direction, and what
  it allows is the union of the rules of every such policy; an isolated pod with no rule
  allows nothing (an empty rule list denies, an empty rule `{}` allows everything);
- a rule matches when one of its peers matches (`from`/`to` absent or empty = every peer)
  and one of its ports matches (`ports` absent or empty = every port of every protocol);
- a peer is `ipBlock` (the address in `cidr` and in no `except`), or `podSelector` alone
  (pods of the policy's namespace), or `namespaceSelector` alone (every pod of the matched
  namespaces), or both (AND: matched pods in matched namespaces); pod peers never match a
  non-pod address;
- a port is `protocol` (TCP when absent) with `port` absent (every port), numeric (with
  `endPort`: the inclusive range), or named: resolved on the *destination* pod's container
  ports of that name and protocol (for ingress and for egress alike); a named port never
  matches a destination that is not a pod;
- traffic from a pod's own node to that pod is always allowed (kubelet probes);
- a pod talking to itself never leaves its network namespace: always allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Json = Mapping[str, Any]
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class ContainerPort:
    name: str | None
    number: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str
    node: str
    ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Node:
    """A node as a traffic source: its address is what a pod sees (the management port)."""

    name: str
    ip: str

    @property
    def key(self) -> str:
        return f"node:{self.name}"


@dataclass(frozen=True)
class External:
    """An address outside the cluster's pods (reached through a gateway, or a plain IP)."""

    ip: str

    @property
    def key(self) -> str:
        return f"ip:{self.ip}"


Endpoint = Pod | Node | External


# --- label selectors -------------------------------------------------------------------------------
def selector_matches(selector: Json | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector: matchLabels AND every matchExpression; {} matches everything.
    A None selector is the caller's business (absent peers), here it also matches all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            if key not in labels or labels[key] not in values:
                return False
        elif op == "NotIn":
            if key in labels and labels[key] in values:
                return False
        elif op == "Exists":
            if key not in labels:
                return False
        elif op == "DoesNotExist":
            if key in labels:
                return False
        else:
            raise ValueError(f"unknown selector operator {op!r}")
    return True


# --- the cluster ------------------------------------------------------------------------------------
@dataclass
class Cluster:
    namespaces: dict[str, Namespace]
    pods: list[Pod]
    policies: list[Json] = field(default_factory=list)

    @classmethod
    def of(cls, namespaces: Iterable[Namespace], pods: Iterable[Pod],
           policies: Iterable[Json] = ()) -> Cluster:
        return cls({n.name: n for n in namespaces}, list(pods), list(policies))

    def ns_labels(self, namespace: str) -> Mapping[str, str]:
        ns = self.namespaces.get(namespace)
        return ns.labels if ns is not None else {}

    # -- which policies isolate a pod ---------------------------------------------------------
    def selecting(self, pod: Pod, direction: str) -> list[Json]:
        """The policies of `pod`'s namespace that select it for `direction` (Ingress|Egress)."""
        out = []
        for pol in self.policies:
            if (pol.get("metadata") or {}).get("namespace", "default") != pod.namespace:
                continue
            spec = pol.get("spec") or {}
            if direction in policy_types(spec) and selector_matches(spec.get("podSelector"), pod.labels):
                out.append(pol)
        return out

    # -- verdicts --------------------------------------------------------------------------------
    def allowed(self, src: Endpoint, dst: Endpoint, protocol: str, port: int) -> bool:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}")
        if isinstance(src, Pod) and isinstance(dst, Pod) and src.key == dst.key:
            return True                      # loopback inside the pod
        if isinstance(src, Pod) and not self._direction_allows(src, "Egress", dst, dst, protocol, port):
            return False
        if isinstance(dst, Pod):
            if isinstance(src, Node) and src.name == dst.node:
                return True                  # the pod's own node, always
            if not self._direction_allows(dst, "Ingress", src, dst, protocol, port):
                return False
        return True

    def _direction_allows(self, subject: Pod, direction: str, peer: Endpoint, dst: Endpoint,
                          protocol: str, port: int) -> bool:
        policies = self.selecting(subject, direction)
        if not policies:
            return True                      # not isolated in this direction
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for pol in policies:
            namespace = (pol.get("metadata") or {}).get("namespace", "default")
            for rule in (pol.get("spec") or {}).get(key) or []:
                peers = rule.get(peers_key) or []
                if peers and not any(self._peer_matches(p, namespace, peer) for p in peers):
                    continue
                ports = rule.get("ports") or []
                if ports and not any(port_matches(p, dst, protocol, port) for p in ports):
                    continue
                return True
        return False

    def _peer_matches(self, peer: Json, policy_ns: str, ep: Endpoint) -> bool:
        block = peer.get("ipBlock")
        if block is not None:
            return ip_in_block(ep.ip, block)
        if not isinstance(ep, Pod):
            return False                     # pod and namespace selectors select pods only
        pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
        if pod_sel is None and ns_sel is None:
            raise ValueError(f"a peer needs ipBlock, podSelector or namespaceSelector: {peer}")
        if ns_sel is None:
            if ep.namespace != policy_ns:
                return False
        elif not selector_matches(ns_sel, self.ns_labels(ep.namespace)):
            return False
        return pod_sel is None or selector_matches(pod_sel, ep.labels)


def policy_types(spec: Json) -> tuple[str, ...]:
    explicit = spec.get("policyTypes")
    if explicit:
        return tuple(explicit)
    return ("Ingress", "Egress") if spec.get("egress") else ("Ingress",)


def ip_in_block(ip: str, block: Json) -> bool:
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(block["cidr"], strict=False):
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])


def port_matches(rule_port: Json, dst: Endpoint, protocol: str, port: int) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    want = rule_port.get("port")
    if want is None:
        return True
    if isinstance(want, int):
        end = rule_port.get("endPort")
        return want <= port <= end if end is not None else port == want
    if not isinstance(dst, Pod):
        return False                         # a named port needs a pod to name it
    return any(cp.name == want and cp.protocol == protocol and cp.number == port for cp in dst.ports)


# --- truth tables ------------------------------------------------------------------------------------
Cell = tuple[str, str, str, int]    # (src key, dst key, protocol, port)


def truth_table(cluster: Cluster, pairs: Iterable[tuple[Endpoint, Endpoint]],
                columns: Sequence[tuple[str, int]]) -> dict[Cell, bool]:
    return {(s.key, d.key, proto, port): cluster.allowed(s, d, proto, port)
            for s, d in pairs for proto, port in columns}


def render(table: Mapping[Cell, bool], reference: Mapping[Cell, bool] | None = None) -> str:
    """One grid per (protocol, port), sources down and destinations across: '.' allowed, 'X'
    blocked. With `reference` (the other matrix), a cell that differs from it is shown as '!'
    (allowed here, blocked there) or '#' (blocked here, allowed there)."""
    srcs = sorted({c[0] for c in table}, key=_order)
    dsts = sorted({c[1] for c in table}, key=_order)
    columns = sorted({(c[2], c[3]) for c in table})
    width = max(len(k) for k in [*srcs, *dsts, "src\\dst"])
    lines = []
    for proto, port in columns:
        lines.append(f"{proto}/{port}")
        lines.append(" " * (width + 1) + " ".join(_short(d) for d in dsts))
        for s in srcs:
            cells = []
            for d in dsts:
                v = table.get((s, d, proto, port))
                mark = "-" if v is None else ("." if v else "X")
                if reference is not None and v is not None and reference.get((s, d, proto, port)) != v:
                    mark = "!" if v else "#"
                cells.append(mark.center(len(_short(d))))
            lines.append(f"{s:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def _short(key: str) -> str:
    return key.replace("node:", "n:").replace("ip:", "")


def _order(key: str) -> tuple[int, str]:
    return (0 if "/" in key and not key.startswith("ip:") else 1 if key.startswith("node:") else 2, key)


def diff(expected: Mapping[Cell, bool], observed: Mapping[Cell, bool]) -> list[str]:
    out = []
    for cell in sorted(expected):
        if observed.get(cell) != expected[cell]:
            s, d, proto, port = cell
            out.append(f"{s} -> {d} {proto}/{port}: expected "
                       f"{'allowed' if expected[cell] else 'blocked'}, observed "
                       f"{ {True: 'allowed', False: 'blocked', None: 'not probed'}[observed.get(cell)]}")
    return out
