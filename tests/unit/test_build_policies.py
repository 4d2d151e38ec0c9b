"""NetworkPolicies parsed (ovn_k8s.model.policy) and built into rows (ovn_k8s.desired.policies):
the exact matches, which rows exist, and that rows grow with policies and selectors only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ovn_k8s import naming
from ovn_k8s.desired.policies import (
    ALLOW_PRIORITY,
    DENY_PRIORITY,
    PolicyIndex,
    all_rows,
    peer_key,
    policy_key,
    policy_rows,
)
from ovn_k8s.errors import InvalidObject
from ovn_k8s.model.policy import (
    EGRESS,
    INGRESS,
    Namespace,
    parse_namespace,
    parse_network_policy,
    parse_policy_pod,
    parse_selector,
)
from ovn_k8s.nb.model import Ref


def raw_policy(spec: dict[str, Any], ns: str = "a", name: str = "p") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def raw_pod(ns: str, name: str, ip: str | None, labels: dict[str, str] | None = None,
            ports: dict[str, int] | None = None, **spec: Any) -> dict[str, Any]:
    ann = {} if ip is None else {naming.POD_ANNOTATION: json.dumps(
        {"ip_address": f"{ip}/24", "mac_address": "0a:58:0a:f4:01:03", "gateway_ip": "10.244.1.1"})}
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {}, "annotations": ann},
            "spec": {"nodeName": "n1", "containers": [{"ports": [
                {"name": n, "containerPort": p} for n, p in (ports or {}).items()]}], **spec}}


def index(*pods: dict[str, Any], namespaces: tuple[Namespace, ...] = ()) -> PolicyIndex:
    return PolicyIndex.of([parse_policy_pod(p) for p in pods], namespaces)


def acls(rows: list) -> dict[str, tuple[int, str, str, str]]:
    return {r.id: (r.columns["priority"], r.columns["direction"], r.columns["action"],
                   r.columns["match"]) for r in rows if r.table == "ACL"}


@pytest.mark.parametrize("selector, labels, want", [
    ({}, {}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "y"}, True),
    ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}, {"app": "b"}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}, {"app": "a"}, False),
    ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, {"app": ""}, True),
    ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, {"app": "x"}, False),
    ({"matchLabels": {"app": "a"},
      "matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"app": "a"}, False),
])
def test_label_selectors(selector, labels, want):
    assert parse_selector(selector, "s").matches(labels) is want


def test_equal_selectors_have_equal_text():
    a = parse_selector({"matchLabels": {"b": "1", "a": "2"}}, "s")
    b = parse_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": ["2"]}],
                        "matchLabels": {"b": "1"}}, "s")
    assert a == b and a.text() == b.text()


@pytest.mark.parametrize("spec, types", [
    ({"podSelector": {}}, {INGRESS}),
    ({"podSelector": {}, "egress": [{}]}, {INGRESS, EGRESS}),
    ({"podSelector": {}, "policyTypes": ["Egress"]}, {EGRESS}),
])
def test_policy_types_inferred_when_absent(spec, types):
    assert parse_network_policy(raw_policy(spec)).policy_types == types


@pytest.mark.parametrize("spec, words", [
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}}, "Maybe"),
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "ICMP"),
    ({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}, "endPort"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "nonsense"}}]}]}, "ipBlock"),
    ({"ingress": [{"from": [{}]}]}, "podSelector, namespaceSelector or ipBlock"),
])
def test_malformed_policies_say_why(spec, words):
    with pytest.raises(InvalidObject, match=words):
        parse_network_policy(raw_policy(spec))


def test_deny_all_ingress_is_a_port_group_and_one_drop_acl():
    pol = parse_network_policy(raw_policy({"podSelector": {}}))
    rows = policy_rows(pol, index(raw_pod("a", "p1", "10.244.1.3"), raw_pod("a", "p2", None),
                                  raw_pod("b", "q", "10.244.1.4")))
    pg = naming.policy_port_group("a", "p")
    assert [r.table for r in rows] == ["Port_Group", "ACL"]
    assert rows[0].columns["ports"] == [Ref("Logical_Switch_Port", "a_p1")]   # p2 has no address
    assert acls(rows) == {"np:a/p:ingress:deny": (DENY_PRIORITY, "to-lport", "drop",
                                                  f"outport == @{pg} && ip4")}
    assert all(r.owner == policy_key(pol) for r in rows)


def test_rule_matches_peers_ports_ranges_sctp_and_ip_blocks():
    pol = parse_network_policy(raw_policy({
        "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}},
                            "namespaceSelector": {"matchLabels": {"team": "x"}}},
                           {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.8/29"]}}],
                    "ports": [{"port": 80}, {"protocol": "UDP", "port": 1000, "endPort": 2000},
                              {"protocol": "SCTP"}]},
                   {}]}))
    rows = policy_rows(pol, index())
    pg = naming.policy_port_group("a", "p")
    (peer,) = pol.peer_selectors()
    peer_set = naming.policy_peer_set(peer.digest())
    assert peer.namespace is None and peer.namespaces is not None      # AND in one peer
    assert acls(rows) == {
        "np:a/p:egress:deny": (DENY_PRIORITY, "from-lport", "drop", f"inport == @{pg} && ip4"),
        "np:a/p:egress:0": (ALLOW_PRIORITY, "from-lport", "allow-related",
                            f"inport == @{pg} && (ip4.dst == ${peer_set} || "
                            "(ip4.dst == 192.0.2.0/24 && ip4.dst != {192.0.2.8/29})) && "
                            "(tcp.dst == 80 || (udp.dst >= 1000 && udp.dst <= 2000) || sctp)"),
        "np:a/p:egress:1": (ALLOW_PRIORITY, "from-lport", "allow-related",
                            f"inport == @{pg} && ip4"),
    }
    # Egress is judged after load balancing: a Service VIP by the backend it goes to.
    assert {r.columns["options"].get("apply-after-lb") for r in rows if r.table == "ACL"} == {"true"}


def test_named_ports_resolve_per_pod_into_one_set_per_number():
    pods = [raw_pod("a", "w1", "10.244.1.3", {"app": "web"}, {"http": 80}),
            raw_pod("a", "w2", "10.244.1.4", {"app": "web"}, {"http": 8080}),
            raw_pod("a", "w3", "10.244.1.5", {"app": "web"}, {"other": 80})]
    pol = parse_network_policy(raw_policy({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"ports": [{"port": "http"}]}, {"ports": [{"port": "nowhere"}]}]}))
    rows = policy_rows(pol, index(*pods))
    sets = {r.columns["external_ids"]["ovn-k8s/named-port"]: (r.id, r.columns["addresses"])
            for r in rows if r.table == "Address_Set"}
    assert {k: v[1] for k, v in sets.items()} == {"ingress:0:tcp:80": ["10.244.1.3"],
                                                  "ingress:0:tcp:8080": ["10.244.1.4"]}
    pg = naming.policy_port_group("a", "p")
    a80, a8080 = sets["ingress:0:tcp:80"][0], sets["ingress:0:tcp:8080"][0]
    found = acls(rows)
    assert found["np:a/p:ingress:0"][3] == (
        f"outport == @{pg} && ip4 && ((tcp.dst == 80 && ip4.dst == ${a80}) || "
        f"(tcp.dst == 8080 && ip4.dst == ${a8080}))")
    # A rule whose only port resolves on no pod allows nothing: no ACL at all.
    assert "np:a/p:ingress:1" not in found


def test_peers_are_shared_and_rows_do_not_grow_with_pods_squared():
    def cluster(pods_per_ns: int) -> dict[str, list]:
        namespaces = [parse_namespace({"metadata": {"name": f"ns{i}", "labels": {"team": "x"}}})
                      for i in range(5)]
        pods = [raw_pod(f"ns{i}", f"p{j}", f"10.{i}.{j // 250}.{j % 250 + 2}", {"app": "web"})
                for i in range(5) for j in range(pods_per_ns)]
        policies = [parse_network_policy(raw_policy({
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]}]},
            ns=f"ns{i}", name=f"pol{k}")) for i in range(5) for k in range(3)]
        return all_rows(policies, index(*pods, namespaces=tuple(namespaces)), {"n1": "10.244.1.2"})

    small, big = cluster(4), cluster(40)
    assert sum(len(v) for v in small.values()) == sum(len(v) for v in big.values())
    peer_keys = [k for k in big if k.startswith("netpol:peer/")]
    assert len(peer_keys) == 1                         # 15 policies, one identical peer
    (peer_rows,) = (big[k] for k in peer_keys)
    assert len(peer_rows[0].columns["addresses"]) == 200
    assert big[peer_keys[0]][0].owner == peer_keys[0]


def test_node_acls_always_exist():
    # They keep every node switch stateful, policies or not (see ovn_k8s/desired/policies.py).
    rows = all_rows([], index(), {"n1": "10.244.1.2"})["netpol:node/n1"]
    assert [(r.table, r.parent.table, r.parent.id, r.columns["match"]) for r in rows] == [
        ("ACL", "Logical_Switch", "switch:n1", "ip4.src == 10.244.1.2")]


def test_namespaces_always_carry_their_name_label():
    ns = parse_namespace({"metadata": {"name": "x"}})
    assert dict(ns.labels) == {"kubernetes.io/metadata.name": "x"}
    pol = parse_network_policy(raw_policy({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}}]}]}))
    (peer,) = pol.peer_selectors()
    # No Namespace object for "b" at all: its name label still selects its pods.
    idx = index(raw_pod("b", "q", "10.244.1.9"))
    assert all_rows([pol], idx, {})[peer_key(peer)][0].columns["addresses"] == ["10.244.1.9"]
