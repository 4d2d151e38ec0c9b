"""The NetworkPolicy model (tests/netpol/model.py) on the examples of the Kubernetes
documentation (concepts/services-networking/network-policies and the API reference), so the
truth-table suite's oracle is itself checked against the spec."""

from __future__ import annotations

from typing import Any

import pytest

from tests.netpol.model import (
    Cluster,
    ContainerPort,
    External,
    Namespace,
    Node,
    Pod,
    diff,
    policy_types,
    render,
    selector_matches,
    truth_table,
)

WEB = (ContainerPort("http", 8080), ContainerPort("dns", 53, "UDP"))


def pod(ns: str, name: str, ip: str, node: str = "n1", ports: tuple[ContainerPort, ...] = WEB,
        **labels: str) -> Pod:
    return Pod(ns, name, labels, ip, node, ports)


def policy(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


NAMESPACES = [Namespace("default", {"kubernetes.io/metadata.name": "default"}),
              Namespace("myproject", {"project": "myproject", "kubernetes.io/metadata.name": "myproject"}),
              Namespace("other", {"project": "other", "user": "alice"})]
DB = pod("default", "db", "10.0.1.10", role="db")
FRONT = pod("default", "front", "10.0.1.11", role="frontend")
BACK = pod("default", "back", "10.0.1.12", node="n2", role="backend")
MYPROJ = pod("myproject", "any", "10.0.2.10", role="whatever")
ALICE_CLIENT = pod("other", "client", "10.0.3.10", role="client")
ALICE_OTHER = pod("other", "other", "10.0.3.11", role="server")
PODS = [DB, FRONT, BACK, MYPROJ, ALICE_CLIENT, ALICE_OTHER]


def cluster(*policies: dict[str, Any]) -> Cluster:
    return Cluster.of(NAMESPACES, PODS, policies)


# The concepts page's first example, verbatim.
TEST_NETWORK_POLICY = policy(
    "default", "test-network-policy",
    podSelector={"matchLabels": {"role": "db"}},
    policyTypes=["Ingress", "Egress"],
    ingress=[{"from": [{"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                       {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                       {"podSelector": {"matchLabels": {"role": "frontend"}}}],
              "ports": [{"protocol": "TCP", "port": 6379}]}],
    egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}])


def test_the_concepts_page_example_ingress():
    c = cluster(TEST_NETWORK_POLICY)
    assert c.allowed(FRONT, DB, "TCP", 6379)             # podSelector role=frontend, same ns
    assert c.allowed(MYPROJ, DB, "TCP", 6379)            # namespaceSelector project=myproject
    assert c.allowed(External("172.17.0.5"), DB, "TCP", 6379)
    assert not c.allowed(External("172.17.1.5"), DB, "TCP", 6379)   # except
    assert not c.allowed(FRONT, DB, "TCP", 6380)         # port
    assert not c.allowed(FRONT, DB, "UDP", 6379)         # protocol
    assert not c.allowed(BACK, DB, "TCP", 6379)          # role=backend matches no peer
    assert not c.allowed(ALICE_CLIENT, DB, "TCP", 6379)  # other ns, not myproject
    assert c.allowed(FRONT, BACK, "TCP", 1234)           # BACK is not selected: not isolated


def test_the_concepts_page_example_egress():
    c = cluster(TEST_NETWORK_POLICY)
    assert c.allowed(DB, External("10.0.0.7"), "TCP", 5978)
    assert not c.allowed(DB, External("10.0.0.7"), "TCP", 5979)
    assert not c.allowed(DB, External("10.0.5.7"), "TCP", 5978)
    assert not c.allowed(DB, FRONT, "TCP", 8080)         # egress isolated; FRONT is not in 10.0.0.0/24
    assert c.allowed(FRONT, External("192.0.2.1"), "TCP", 80)


def test_replies_and_the_reverse_direction_do_not_depend_on_the_other_side_policies():
    """DB is egress-isolated to 10.0.0.0/24:5978, yet FRONT's connections to DB:6379 are
    allowed: a verdict is per connection and the replies ride on it."""
    assert cluster(TEST_NETWORK_POLICY).allowed(FRONT, DB, "TCP", 6379)


def test_and_versus_or_peers():
    and_peer = policy("default", "and", podSelector={"matchLabels": {"role": "db"}},
                      ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}},
                                          "podSelector": {"matchLabels": {"role": "client"}}}]}])
    or_peers = policy("default", "or", podSelector={"matchLabels": {"role": "db"}},
                      ingress=[{"from": [{"namespaceSelector": {"matchLabels": {"user": "alice"}}},
                                         {"podSelector": {"matchLabels": {"role": "client"}}}]}])
    c_and, c_or = cluster(and_peer), cluster(or_peers)
    assert c_and.allowed(ALICE_CLIENT, DB, "TCP", 1)
    assert not c_and.allowed(ALICE_OTHER, DB, "TCP", 1)   # right namespace, wrong pod
    assert not c_and.allowed(FRONT, DB, "TCP", 1)
    assert c_or.allowed(ALICE_CLIENT, DB, "TCP", 1)
    assert c_or.allowed(ALICE_OTHER, DB, "TCP", 1)        # any pod of alice's namespaces
    # podSelector alone is the policy's own namespace: a role=client pod of `default` would do,
    # alice's client counts through the namespace peer; FRONT is neither
    assert not c_or.allowed(FRONT, DB, "TCP", 1)


def test_default_deny_and_allow_all_examples():
    deny_in = policy("default", "default-deny-ingress", podSelector={}, policyTypes=["Ingress"])
    allow_in = policy("default", "allow-all-ingress", podSelector={}, ingress=[{}], policyTypes=["Ingress"])
    deny_out = policy("default", "default-deny-egress", podSelector={}, policyTypes=["Egress"])
    allow_out = policy("default", "allow-all-egress", podSelector={}, egress=[{}], policyTypes=["Egress"])
    deny_all = policy("default", "default-deny-all", podSelector={}, policyTypes=["Ingress", "Egress"])
    assert not cluster(deny_in).allowed(MYPROJ, DB, "TCP", 80)
    assert cluster(deny_in).allowed(DB, MYPROJ, "TCP", 80)            # egress untouched
    assert cluster(deny_in, allow_in).allowed(MYPROJ, DB, "TCP", 80)  # union
    assert not cluster(deny_out).allowed(DB, MYPROJ, "TCP", 80)
    assert cluster(deny_out).allowed(MYPROJ, DB, "TCP", 80)
    assert cluster(deny_out, allow_out).allowed(DB, External("8.8.8.8"), "UDP", 53)
    assert not cluster(deny_all).allowed(DB, FRONT, "TCP", 80)
    assert not cluster(deny_all).allowed(MYPROJ, DB, "TCP", 80)
    assert cluster(deny_all).allowed(MYPROJ, ALICE_CLIENT, "TCP", 80)  # other namespaces untouched
    assert cluster(deny_all).allowed(DB, DB, "TCP", 80)                # loopback


def test_empty_rule_list_denies_and_empty_rule_allows():
    empty_list = policy("default", "p", podSelector={}, ingress=[])
    empty_rule = policy("default", "p", podSelector={}, ingress=[{}])
    empty_from = policy("default", "p", podSelector={}, ingress=[{"from": [], "ports": []}])
    assert not cluster(empty_list).allowed(MYPROJ, DB, "TCP", 80)
    assert cluster(empty_rule).allowed(MYPROJ, DB, "SCTP", 9)
    assert cluster(empty_from).allowed(MYPROJ, DB, "UDP", 9)


def test_policy_types_inferred():
    assert policy_types({"podSelector": {}}) == ("Ingress",)
    assert policy_types({"podSelector": {}, "egress": []}) == ("Ingress",)
    assert policy_types({"podSelector": {}, "egress": [{}]}) == ("Ingress", "Egress")
    assert policy_types({"policyTypes": ["Egress"], "ingress": [{}]}) == ("Egress",)
    # Egress only: ingress rules listed but not in policyTypes are ignored
    egress_only = policy("default", "p", podSelector={}, policyTypes=["Egress"], ingress=[{}])
    assert cluster(egress_only).selecting(DB, "Ingress") == []
    # no policyTypes and egress rules: egress isolated as well
    inferred = policy("default", "p", podSelector={"matchLabels": {"role": "db"}},
                      egress=[{"to": [{"podSelector": {}}]}])
    assert cluster(inferred).allowed(DB, FRONT, "TCP", 80)
    assert not cluster(inferred).allowed(DB, MYPROJ, "TCP", 80)
    assert not cluster(inferred).allowed(MYPROJ, DB, "TCP", 80)   # and ingress: no rules
    assert cluster(inferred).allowed(MYPROJ, FRONT, "TCP", 80)    # FRONT is not selected


def test_multi_port_egress_end_port():
    p = policy("default", "multi-port-egress", podSelector={"matchLabels": {"role": "db"}},
               policyTypes=["Egress"],
               egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                        "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}]}])
    c = cluster(p)
    for port, ok in ((31999, False), (32000, True), (32500, True), (32768, True), (32769, False)):
        assert c.allowed(DB, External("10.0.0.9"), "TCP", port) is ok, port
    assert not c.allowed(DB, External("10.0.0.9"), "UDP", 32000)


def test_namespace_by_its_name_label():
    p = policy("default", "p", podSelector={},
               ingress=[{"from": [{"namespaceSelector": {"matchLabels": {
                   "kubernetes.io/metadata.name": "myproject"}}}]}])
    assert cluster(p).allowed(MYPROJ, DB, "TCP", 1)
    assert not cluster(p).allowed(ALICE_CLIENT, DB, "TCP", 1)
    assert not cluster(p).allowed(FRONT, DB, "TCP", 1)   # own namespace is not named


def test_named_ports_resolve_on_the_destination_pod():
    swapped = pod("default", "swapped", "10.0.1.20", ports=(ContainerPort("http", 9090),
                                                          ContainerPort("dns", 5353, "UDP")))
    c = Cluster.of(NAMESPACES, [*PODS, swapped], [
        policy("default", "in", podSelector={}, ingress=[{"ports": [{"port": "http"}]}]),
        policy("myproject", "out", podSelector={}, policyTypes=["Egress"],
               egress=[{"ports": [{"protocol": "UDP", "port": "dns"}]}])])
    assert c.allowed(ALICE_CLIENT, DB, "TCP", 8080) and not c.allowed(ALICE_CLIENT, DB, "TCP", 9090)
    assert c.allowed(MYPROJ, DB, "TCP", 8080) is False        # MYPROJ's egress allows UDP dns only
    assert c.allowed(ALICE_CLIENT, swapped, "TCP", 9090) and not c.allowed(ALICE_CLIENT, swapped, "TCP", 8080)
    assert not c.allowed(ALICE_CLIENT, DB, "UDP", 8080)      # name with the wrong protocol
    # egress named port: resolved on the destination
    assert c.allowed(MYPROJ, ALICE_CLIENT, "UDP", 53)
    assert c.allowed(MYPROJ, swapped, "UDP", 5353) is False  # swapped's ingress: TCP http only
    other_dns = pod("other", "dns2", "10.0.3.20", ports=(ContainerPort("dns", 5353, "UDP"),))
    c2 = Cluster.of(NAMESPACES, [*PODS, other_dns], c.policies)
    assert c2.allowed(MYPROJ, other_dns, "UDP", 5353) and not c2.allowed(MYPROJ, other_dns, "UDP", 53)
    assert not c2.allowed(MYPROJ, External("10.9.9.9"), "UDP", 53)   # nothing to name it


@pytest.mark.parametrize(("expr", "labels", "ok"), [
    ({"key": "tier", "operator": "In", "values": ["a", "b"]}, {"tier": "a"}, True),
    ({"key": "tier", "operator": "In", "values": ["a", "b"]}, {"tier": "c"}, False),
    ({"key": "tier", "operator": "In", "values": ["a"]}, {}, False),
    ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {"tier": "b"}, True),
    ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {}, True),
    ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {"tier": "a"}, False),
    ({"key": "tier", "operator": "Exists"}, {"tier": ""}, True),
    ({"key": "tier", "operator": "Exists"}, {"other": "x"}, False),
    ({"key": "tier", "operator": "DoesNotExist"}, {"other": "x"}, True),
    ({"key": "tier", "operator": "DoesNotExist"}, {"tier": "x"}, False),
])
def test_match_expressions(expr, labels, ok):
    assert selector_matches({"matchExpressions": [expr]}, labels) is ok


def test_match_labels_and_expressions_are_anded():
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    assert selector_matches(sel, {"app": "web", "tier": "x"})
    assert not selector_matches(sel, {"app": "web"})
    assert not selector_matches(sel, {"app": "db", "tier": "x"})
    assert selector_matches({}, {"anything": "x"})


def test_own_node_always_reaches_its_pods_other_nodes_do_not():
    deny_all = policy("default", "deny", podSelector={}, policyTypes=["Ingress", "Egress"])
    c = cluster(deny_all)
    assert c.allowed(Node("n1", "10.0.1.2"), DB, "TCP", 80)
    assert not c.allowed(Node("n2", "10.0.2.2"), DB, "TCP", 80)
    # another node is an address like any other: an ipBlock may let it in
    by_block = policy("default", "nodes", podSelector={}, ingress=[{"from": [{"ipBlock": {"cidr": "10.0.2.2/32"}}]}])
    assert cluster(deny_all, by_block).allowed(Node("n2", "10.0.2.2"), DB, "TCP", 80)


def test_ip_block_matches_pod_addresses_and_pod_selectors_never_match_addresses():
    p = policy("default", "p", podSelector={"matchLabels": {"role": "db"}},
               ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.3.0/24"]}}]},
                        {"from": [{"namespaceSelector": {}}]}])
    c = cluster(p)
    assert c.allowed(MYPROJ, DB, "TCP", 1)
    assert c.allowed(ALICE_CLIENT, DB, "TCP", 1)              # excepted, but the second rule
    assert c.allowed(External("10.0.9.9"), DB, "TCP", 1)
    assert not c.allowed(External("10.0.3.9"), DB, "TCP", 1)  # excepted, and not a pod
    assert not c.allowed(External("10.9.0.1"), DB, "TCP", 1)


def test_truth_table_render_and_diff():
    c = cluster(policy("default", "deny", podSelector={"matchLabels": {"role": "db"}}))
    pairs = [(s, d) for s in (FRONT, DB) for d in (FRONT, DB) if s != d]
    want = truth_table(c, pairs, [("TCP", 80)])
    assert want == {("default/front", "default/db", "TCP", 80): False,
                    ("default/db", "default/front", "TCP", 80): True}
    seen = {**want, ("default/front", "default/db", "TCP", 80): True}
    assert diff(want, seen) == ["default/front -> default/db TCP/80: expected blocked, observed allowed"]
    text = render(seen, want)
    assert "TCP/80" in text and "!" in text
