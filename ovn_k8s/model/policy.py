"""NetworkPolicies, and what the policy controller reads of pods and namespaces (pure).

    raw networking.k8s.io/v1 NetworkPolicy -> NetworkPolicy (selectors, rules, peers, ports;
        policyTypes inferred when absent: Ingress always, Egress when egress rules exist)
    raw Pod -> PolicyPod (labels, address, container ports by name)
    raw Namespace -> Namespace (labels)

Label selectors are evaluated here (`LabelSelector.matches`): matchLabels AND every
matchExpression (In, NotIn, Exists, DoesNotExist); the empty selector matches everything.
A malformed policy raises InvalidObject (the controller records an Event and a counter);
the API server validates real objects, so this only guards against hand-made ones.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ovn_k8s import naming
from ovn_k8s.errors import InvalidObject
from ovn_k8s.model.kube import TERMINAL_PHASES, PodAnnotation

INGRESS, EGRESS = "Ingress", "Egress"
PROTOCOLS = ("TCP", "UDP", "SCTP")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
NAME_LABEL = "kubernetes.io/metadata.name"
Labels = tuple[tuple[str, str], ...]


# --- selectors -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str                     # one of OPERATORS
    values: tuple[str, ...] = ()      # sorted

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values   # NotIn


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector; matchLabels become In requirements of one value."""

    requirements: tuple[Requirement, ...] = ()   # sorted, deduplicated

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def text(self) -> str:
        """The canonical form (as `kubectl get -l` would take it): equal selectors, equal text."""
        parts = []
        for r in self.requirements:
            if r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            else:
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
        return ",".join(parts)


def parse_selector(raw: Any, what: str) -> LabelSelector:
    if raw is None:
        return LabelSelector()
    if not isinstance(raw, Mapping):
        raise InvalidObject(f"{what} is not an object")
    reqs: set[Requirement] = set()
    labels = raw.get("matchLabels") or {}
    if not isinstance(labels, Mapping):
        raise InvalidObject(f"{what}.matchLabels is not an object")
    for key, value in labels.items():
        reqs.add(Requirement(str(key), "In", (str(value),)))
    exprs = raw.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise InvalidObject(f"{what}.matchExpressions is not a list")
    for i, expr in enumerate(exprs):
        where = f"{what}.matchExpressions[{i}]"
        if not isinstance(expr, Mapping) or not isinstance(expr.get("key"), str):
            raise InvalidObject(f"{where} has no key")
        op = expr.get("operator")
        if op not in OPERATORS:
            raise InvalidObject(f"{where}: operator {op!r} is not one of {', '.join(OPERATORS)}")
        values = expr.get("values") or []
        if not isinstance(values, list):
            raise InvalidObject(f"{where}.values is not a list")
        if op in ("In", "NotIn") and not values:
            raise InvalidObject(f"{where}: {op} needs values")
        if op in ("Exists", "DoesNotExist") and values:
            raise InvalidObject(f"{where}: {op} takes no values")
        reqs.add(Requirement(expr["key"], op, tuple(sorted({str(v) for v in values}))))
    return LabelSelector(tuple(sorted(reqs, key=lambda r: (r.key, r.operator, r.values))))


# --- policies --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: ipaddress.IPv4Network
    excepts: tuple[ipaddress.IPv4Network, ...] = ()


@dataclass(frozen=True, slots=True)
class PeerSelector:
    """The pods a podSelector/namespaceSelector peer picks. `namespace` is set when the peer
    has no namespaceSelector (the policy's own namespace); else `namespaces` selects them."""

    pods: LabelSelector
    namespace: str | None = None
    namespaces: LabelSelector | None = None

    def text(self) -> str:
        where = f"ns={self.namespace}" if self.namespace is not None else \
            f"nsSelector={self.namespaces.text() if self.namespaces else ''}"
        return f"{where};podSelector={self.pods.text()}"

    def digest(self) -> str:
        return naming.policy_digest(self.text())


@dataclass(frozen=True, slots=True)
class Peer:
    """One `from`/`to` entry: pods (PeerSelector) or an ipBlock, never both."""

    selector: PeerSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class PolicyPort:
    protocol: str                      # TCP, UDP, SCTP
    port: int | str | None = None      # None: every port of the protocol; str: a named port
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    peers: tuple[Peer, ...] = ()       # empty: every source/destination
    ports: tuple[PolicyPort, ...] = ()  # empty: every port and protocol


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[str]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def peer_selectors(self) -> set[PeerSelector]:
        return {p.selector for rules in (self.ingress, self.egress) for r in rules
                for p in r.peers if p.selector is not None}


def _parse_port(raw: Any, where: str) -> PolicyPort:
    if not isinstance(raw, Mapping):
        raise InvalidObject(f"{where} is not an object")
    protocol = raw.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        raise InvalidObject(f"{where}: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    port = raw.get("port")
    end_port = raw.get("endPort")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if port is not None and not isinstance(port, (int, str)) or isinstance(port, bool):
        raise InvalidObject(f"{where}: port {port!r} is neither a number nor a name")
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise InvalidObject(f"{where}: port {port} is not in 1-65535")
    if isinstance(port, str) and not port:
        raise InvalidObject(f"{where}: empty port name")
    if end_port is not None:
        if not isinstance(port, int) or not isinstance(end_port, int) or isinstance(end_port, bool):
            raise InvalidObject(f"{where}: endPort needs a numeric port")
        if not port <= end_port <= 65535:
            raise InvalidObject(f"{where}: endPort {end_port} is not in {port}-65535")
    return PolicyPort(protocol, port, end_port)


def _parse_peer(raw: Any, namespace: str, where: str) -> Peer:
    if not isinstance(raw, Mapping):
        raise InvalidObject(f"{where} is not an object")
    block = raw.get("ipBlock")
    if block is not None:
        if raw.get("podSelector") is not None or raw.get("namespaceSelector") is not None:
            raise InvalidObject(f"{where}: ipBlock cannot be combined with selectors")
        try:
            cidr = ipaddress.IPv4Network(str(block.get("cidr")), strict=False)
            excepts = tuple(sorted(ipaddress.IPv4Network(str(e), strict=False)
                                   for e in block.get("except") or []))
        except (ValueError, AttributeError):
            raise InvalidObject(f"{where}: ipBlock {block!r} is not an IPv4 CIDR with "
                                "IPv4 exceptions") from None
        return Peer(ip_block=IPBlock(cidr, excepts))
    pods_raw, ns_raw = raw.get("podSelector"), raw.get("namespaceSelector")
    if pods_raw is None and ns_raw is None:
        raise InvalidObject(f"{where}: a peer needs podSelector, namespaceSelector or ipBlock")
    pods = parse_selector(pods_raw, f"{where}.podSelector")
    if ns_raw is None:
        return Peer(selector=PeerSelector(pods, namespace=namespace))
    return Peer(selector=PeerSelector(pods, namespaces=parse_selector(
        ns_raw, f"{where}.namespaceSelector")))


def _parse_rules(raw: Any, namespace: str, direction: str) -> tuple[Rule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidObject(f"spec.{direction} is not a list")
    peers_field = "from" if direction == "ingress" else "to"
    rules = []
    for i, rule in enumerate(raw):
        where = f"spec.{direction}[{i}]"
        rule = rule or {}
        if not isinstance(rule, Mapping):
            raise InvalidObject(f"{where} is not an object")
        peers = rule.get(peers_field) or []
        ports = rule.get("ports") or []
        if not isinstance(peers, list) or not isinstance(ports, list):
            raise InvalidObject(f"{where}: {peers_field} and ports must be lists")
        rules.append(Rule(
            peers=tuple(_parse_peer(p, namespace, f"{where}.{peers_field}[{j}]")
                        for j, p in enumerate(peers)),
            ports=tuple(_parse_port(p, f"{where}.ports[{j}]") for j, p in enumerate(ports))))
    return tuple(rules)


def parse_network_policy(obj: Mapping[str, Any]) -> NetworkPolicy:
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str) or not namespace or not name:
        raise InvalidObject("a NetworkPolicy without namespace/name")
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise InvalidObject(f"network policy {namespace}/{name}: spec is not an object")
    try:
        ingress = _parse_rules(spec.get("ingress"), namespace, "ingress")
        egress = _parse_rules(spec.get("egress"), namespace, "egress")
        types_raw = spec.get("policyTypes")
        if types_raw:
            if not isinstance(types_raw, list) or any(t not in (INGRESS, EGRESS) for t in types_raw):
                raise InvalidObject(f"spec.policyTypes {types_raw!r}: each must be Ingress or Egress")
            types = frozenset(types_raw)
        else:
            # Kubernetes' defaulting: Ingress always, Egress when the policy has egress rules.
            types = frozenset({INGRESS, EGRESS} if egress else {INGRESS})
        selector = parse_selector(spec.get("podSelector") or {}, "spec.podSelector")
    except InvalidObject as exc:
        raise InvalidObject(f"network policy {namespace}/{name}: {exc}") from None
    return NetworkPolicy(namespace=namespace, name=name, pod_selector=selector,
                         policy_types=types, ingress=ingress, egress=egress,
                         uid=str(meta.get("uid") or ""))


# --- pods and namespaces as the policy controller sees them ----------------------------------
@dataclass(frozen=True, slots=True)
class PolicyPod:
    """A pod on the pod network with an address (else policies do not concern it)."""

    namespace: str
    name: str
    labels: Labels = ()
    ip: str | None = None
    # (name, protocol, number) of every named container port
    named_ports: tuple[tuple[str, str, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def port_name(self) -> str:
        """Its logical switch port."""
        return naming.pod_port(self.namespace, self.name)

    def named_port(self, name: str, protocol: str) -> int | None:
        return next((n for pname, proto, n in self.named_ports
                     if pname == name and proto == protocol), None)


def _labels(meta: Mapping[str, Any]) -> Labels:
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def parse_policy_pod(obj: Mapping[str, Any]) -> PolicyPod:
    """The pod's labels, address (its `ovn` annotation, else status.podIP) and named ports.
    A pod on the host network, unscheduled or finished has no address here."""
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        raise InvalidObject("a pod without namespace/name")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    ip: str | None = None
    if spec.get("nodeName") and not spec.get("hostNetwork") and \
            status.get("phase") not in TERMINAL_PHASES:
        text = (meta.get("annotations") or {}).get(naming.POD_ANNOTATION)
        if isinstance(text, str):
            try:
                ip = PodAnnotation.parse(text).ip
            except InvalidObject:
                ip = None
    ports = set()
    for container in spec.get("containers") or []:
        for port in (container or {}).get("ports") or []:
            pname, number = port.get("name"), port.get("containerPort")
            if isinstance(pname, str) and pname and isinstance(number, int):
                ports.add((pname, str(port.get("protocol") or "TCP"), number))
    return PolicyPod(namespace=namespace, name=name, labels=_labels(meta), ip=ip,
                     named_ports=tuple(sorted(ports)))


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Labels = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def namespace_labels(name: str, labels: Labels = ()) -> Labels:
    """A namespace's labels with kubernetes.io/metadata.name, which the API server always
    sets (since 1.21): selectors may use it, also for namespaces we have no object of."""
    if any(k == NAME_LABEL for k, _ in labels):
        return labels
    return tuple(sorted((*labels, (NAME_LABEL, name))))


def parse_namespace(obj: Mapping[str, Any]) -> Namespace:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidObject("a namespace without a name")
    return Namespace(name=name, labels=namespace_labels(name, _labels(meta)))
