"""NetworkPolicies as OVN port groups, address sets and ACLs (pure).

Per policy (key `netpol:policy/<ns>/<name>`):
  - Port_Group `ovnk8s_np_<digest>`: the logical switch ports of the pods it selects;
  - per policy type, a drop ACL on the group (priority DENY_PRIORITY): a selected pod is
    isolated for that direction;
  - per rule, one allow-related ACL (ALLOW_PRIORITY) whose match ORs the rule's peers and its
    ports. An allow ACL of any policy outranks every drop ACL, so the union of the policies
    that select a pod is what it may do; allow-related lets replies back in (conntrack);
  - per named port and the number it resolves to, an address set of the pods whose port of
    that name has that number (the selected pods for ingress, the peer pods for egress).
Per peer selector (key `netpol:peer/<digest>`): an Address_Set of the pod IPs it picks,
shared by every policy with an identical peer (same namespace scope and selectors).
Per node (key `netpol:node/<node>`), always: an allow-related ACL on the node switch for
traffic from its management port (the node itself: kubelet probes). It also keeps every node
switch stateful (conntrack) whether or not policies exist, as ovn-kubernetes' does: a switch
that turns stateful when the first policy comes finds connections its conntrack never saw,
and OVS 3.1's userspace conntrack then judged replies of new connections invalid for many
seconds (seen in the truth-table suite).

So the NB holds O(policies x rules + peer selectors + nodes) rows; pods only appear as
members of sets, never as rows of their own.

`PolicyIndex` keeps the pods and namespaces the builders select from (plain data).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ovn_k8s import naming
from ovn_k8s.desired.topology import node_switch_id
from ovn_k8s.model.policy import (
    EGRESS,
    INGRESS,
    Labels,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    PeerSelector,
    PolicyPod,
    Rule,
    namespace_labels,
)
from ovn_k8s.nb.model import Parent, Ref, Row

ACL, PG, AS, LS, LSP = "ACL", "Port_Group", "Address_Set", "Logical_Switch", "Logical_Switch_Port"
# Above the gateways' isolation ACLs' 1000 is not needed: those live on other switches. The
# values are ovn-kubernetes' (default deny 1000, allow 1001).
DENY_PRIORITY = 1000
ALLOW_PRIORITY = 1001
NODE_PRIORITY = 1001
# The columns our rows own (for the engine's scan and comparison).
COLUMNS = {PG: ("name", "ports", "external_ids"),
           AS: ("name", "addresses", "external_ids"),
           ACL: ("name", "direction", "priority", "match", "action", "options", "external_ids")}
# Egress ACLs are applied after OVN's load balancing, so that a pod's traffic to a Service VIP
# is judged by the backend it goes to (OVN 23.03: from-lport only; replies of established
# connections skip that stage, as they skip the ACL stage).
AFTER_LB = {"apply-after-lb": "true"}
DIRECTION_KEY = "ovn-k8s/policy-direction"
ACL_NAME_MAX = 63                     # the NB schema's limit


@dataclass
class PolicyIndex:
    """Pods (with an address) by namespace, and namespace labels."""

    pods: dict[str, dict[str, PolicyPod]] = field(default_factory=dict)   # ns -> name -> pod
    namespaces: dict[str, Labels] = field(default_factory=dict)

    @classmethod
    def of(cls, pods: Iterable[PolicyPod], namespaces: Iterable[Namespace] = ()) -> PolicyIndex:
        index = cls()
        for ns in namespaces:
            index.set_namespace(ns)
        for pod in pods:
            index.set_pod(pod)
        return index

    def set_pod(self, pod: PolicyPod) -> PolicyPod | None:
        """Add or replace a pod; the previous version."""
        return self._swap(pod.namespace, pod.name, pod)

    def remove_pod(self, namespace: str, name: str) -> PolicyPod | None:
        return self._swap(namespace, name, None)

    def _swap(self, namespace: str, name: str, pod: PolicyPod | None) -> PolicyPod | None:
        pods = self.pods.setdefault(namespace, {})
        old = pods.pop(name, None)
        if pod is not None:
            pods[name] = pod
        elif not pods:
            del self.pods[namespace]
        return old

    def set_namespace(self, ns: Namespace) -> Labels | None:
        old = self.namespaces.get(ns.name)
        self.namespaces[ns.name] = ns.labels
        return old

    def remove_namespace(self, name: str) -> Labels | None:
        return self.namespaces.pop(name, None)

    def namespace_labels(self, name: str) -> dict[str, str]:
        return dict(self.namespaces.get(name) or namespace_labels(name))

    def get(self, namespace: str, name: str) -> PolicyPod | None:
        return self.pods.get(namespace, {}).get(name)

    def all_pods(self) -> Iterator[PolicyPod]:
        for pods in self.pods.values():
            yield from pods.values()

    def in_namespace(self, namespace: str, selector: LabelSelector) -> list[PolicyPod]:
        return [p for p in self.pods.get(namespace, {}).values()
                if p.ip is not None and selector.matches(p.label_map)]

    def select(self, peer: PeerSelector) -> list[PolicyPod]:
        """The pods (with an address) a peer selector picks."""
        if peer.namespace is not None:
            return self.in_namespace(peer.namespace, peer.pods)
        assert peer.namespaces is not None
        out: list[PolicyPod] = []
        for ns in sorted(self.pods):
            if peer.namespaces.matches(self.namespace_labels(ns)):
                out.extend(self.in_namespace(ns, peer.pods))
        return out

    def selected(self, policy: NetworkPolicy) -> list[PolicyPod]:
        return self.in_namespace(policy.namespace, policy.pod_selector)


def peer_matches(peer: PeerSelector, pod: PolicyPod, ns_labels: Mapping[str, str]) -> bool:
    """Does the peer pick this pod (its namespace having `ns_labels`)?"""
    if peer.namespace is not None:
        if pod.namespace != peer.namespace:
            return False
    elif peer.namespaces is None or not peer.namespaces.matches(ns_labels):
        return False
    return peer.pods.matches(pod.label_map)


# --- rows ------------------------------------------------------------------------------------
def policy_key(policy: NetworkPolicy) -> str:
    return naming.owner_policy(policy.namespace, policy.name)


def peer_key(peer: PeerSelector) -> str:
    return naming.owner_policy_peer(peer.digest())


def node_key(node: str) -> str:
    return naming.owner_policy_node(node)


def _ips(pods: Iterable[PolicyPod]) -> list[str]:
    return sorted({p.ip for p in pods if p.ip is not None}, key=ipaddress.IPv4Address)


def peer_rows(peer: PeerSelector, index: PolicyIndex) -> list[Row]:
    """The address set of the pods a peer selector picks."""
    name = naming.policy_peer_set(peer.digest())
    return [Row(AS, name, peer_key(peer), {
        "name": name, "addresses": _ips(index.select(peer)),
        "external_ids": {naming.POLICY_PEER_KEY: peer.text()}})]


def node_rows(node: str, mgmt_ip: str) -> list[Row]:
    """The node's own traffic into its pods (the management port's address)."""
    return [Row(ACL, f"netpol-node:{node}", node_key(node), {
        "name": f"node {node}"[:ACL_NAME_MAX], "direction": "to-lport",
        "priority": NODE_PRIORITY, "match": f"ip4.src == {mgmt_ip}",
        "action": "allow-related", "options": {}, "external_ids": {naming.NODE_KEY: node}},
        parent=Parent(LS, node_switch_id(node), "acls"))]


def _peer_term(rule: Rule, field_: str) -> str | None:
    """The rule's sources/destinations as one match term; None: anyone."""
    terms = []
    for peer in rule.peers:
        if peer.selector is not None:
            terms.append(f"{field_} == ${naming.policy_peer_set(peer.selector.digest())}")
        elif peer.ip_block is not None:
            block = peer.ip_block
            term = f"{field_} == {block.cidr}"
            if block.excepts:
                term += f" && {field_} != {{{', '.join(str(e) for e in block.excepts)}}}"
            terms.append(f"({term})" if block.excepts else term)
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else "(" + " || ".join(terms) + ")"


def policy_rows(policy: NetworkPolicy, index: PolicyIndex) -> list[Row]:
    """Every row of one policy: its port group, ACLs and named-port address sets."""
    owner = policy_key(policy)
    pg = naming.policy_port_group(policy.namespace, policy.name)
    ext = {naming.POLICY_KEY: policy.key}
    selected = index.selected(policy)
    rows = [Row(PG, pg, owner, {
        "name": pg, "ports": sorted(Ref(LSP, p.port_name) for p in selected),
        "external_ids": ext})]
    acl_name = policy.key[:ACL_NAME_MAX]
    for direction, rules in ((INGRESS, policy.ingress), (EGRESS, policy.egress)):
        if direction not in policy.policy_types:
            continue
        lower = direction.lower()
        port_field = "outport" if direction == INGRESS else "inport"
        acl_dir = "to-lport" if direction == INGRESS else "from-lport"
        options = AFTER_LB if direction == EGRESS else {}
        parent = Parent(PG, pg, "acls")
        acl_ext = {**ext, DIRECTION_KEY: lower}
        rows.append(Row(ACL, f"np:{policy.key}:{lower}:deny", owner, {
            "name": acl_name, "direction": acl_dir, "priority": DENY_PRIORITY,
            "match": f"{port_field} == @{pg} && ip4", "action": "drop", "options": options,
            "external_ids": acl_ext}, parent=parent))
        for i, rule in enumerate(rules):
            peer_field = "ip4.src" if direction == INGRESS else "ip4.dst"
            l4, named_rows = _ports_term(policy, direction, i, rule, selected, index)
            if l4 == "":
                continue                        # only named ports, and no pod has them
            terms = [f"{port_field} == @{pg}", _peer_term(rule, peer_field) or "ip4"]
            if l4 is not None:
                terms.append(l4)
            rows.extend(named_rows)
            rows.append(Row(ACL, f"np:{policy.key}:{lower}:{i}", owner, {
                "name": acl_name, "direction": acl_dir, "priority": ALLOW_PRIORITY,
                "match": " && ".join(terms), "action": "allow-related", "options": options,
                "external_ids": {**acl_ext, "ovn-k8s/policy-rule": str(i)}}, parent=parent))
    return rows


def _ports_term(policy: NetworkPolicy, direction: str, i: int, rule: Rule,
                selected: list[PolicyPod], index: PolicyIndex) -> tuple[str | None, list[Row]]:
    """The rule's ports as one match term (None: any port; "": none can match) and the
    address sets its named ports need."""
    if not rule.ports:
        return None, []
    terms: list[str] = []
    named: dict[tuple[str, int], set[str]] = {}
    named_pods: list[PolicyPod] | None = None
    for port in rule.ports:
        proto = port.protocol.lower()
        if port.port is None:
            terms.append(proto)
        elif isinstance(port.port, int) and port.end_port is not None and port.end_port > port.port:
            terms.append(f"({proto}.dst >= {port.port} && {proto}.dst <= {port.end_port})")
        elif isinstance(port.port, int):
            terms.append(f"{proto}.dst == {port.port}")
        else:
            if named_pods is None:
                named_pods = selected if direction == INGRESS else _egress_pods(rule, index)
            for pod in named_pods:
                number = pod.named_port(port.port, port.protocol)
                if number is not None and pod.ip is not None:
                    named.setdefault((proto, number), set()).add(pod.ip)
    rows = []
    for (proto, number), ips in sorted(named.items()):
        which = f"{direction.lower()}:{i}:{proto}:{number}"
        name = naming.policy_named_port_set(policy.namespace, policy.name, which)
        rows.append(Row(AS, name, policy_key(policy), {
            "name": name, "addresses": sorted(ips, key=ipaddress.IPv4Address),
            "external_ids": {naming.POLICY_KEY: policy.key, "ovn-k8s/named-port": which}}))
        terms.append(f"({proto}.dst == {number} && ip4.dst == ${name})")
    if not terms:
        return "", []
    return (terms[0] if len(terms) == 1 else "(" + " || ".join(terms) + ")"), rows


def _egress_pods(rule: Rule, index: PolicyIndex) -> list[PolicyPod]:
    """The destination pods a named port of an egress rule is resolved on: those its
    selector peers pick, or every pod when the rule has no peers."""
    if not rule.peers:
        return [p for p in index.all_pods() if p.ip is not None]
    pods: dict[str, PolicyPod] = {}
    for peer in rule.peers:
        if peer.selector is not None:
            for pod in index.select(peer.selector):
                pods[pod.key] = pod
    return list(pods.values())


def has_named_egress(policy: NetworkPolicy) -> bool:
    return EGRESS in policy.policy_types and any(
        isinstance(p.port, str) for r in policy.egress for p in r.ports)


def all_rows(policies: Iterable[NetworkPolicy], index: PolicyIndex,
             mgmt_ips: Mapping[str, str]) -> dict[str, list[Row]]:
    """Every key's rows for a whole cluster (start-up sync; tests)."""
    out: dict[str, list[Row]] = {}
    peers: dict[str, PeerSelector] = {}
    policies = list(policies)
    for policy in policies:
        out[policy_key(policy)] = policy_rows(policy, index)
        for peer in policy.peer_selectors():
            peers[peer_key(peer)] = peer
    for key, peer in peers.items():
        out[key] = peer_rows(peer, index)
    for node, ip in mgmt_ips.items():
        out[node_key(node)] = node_rows(node, ip)
    return out
