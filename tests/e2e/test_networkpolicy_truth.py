"""NetworkPolicy truth tables, in the style of the upstream Kubernetes network-policy e2e tests:
real packets through OVN, judged by a pure model written apart from the OVN code.

One cluster for the module (tests/netpol/harness.py): NB/SB/northd, two nodes with userspace
ovs-vswitchd and ovn-controller, the real ovn-k8s-watcher and the embedded API server;
namespaces x, y, z with pods a, b, c each (over both nodes), every pod serving TCP and UDP on
80 and 81. Each case sets policies (and labels, pods) through the API, then every ordered pod
pair and each node to its own pods is probed at once, and the matrix must equal
tests/netpol/model.py's verdicts (`Truth.expect` polls with a bound for convergence, then
confirms with one more pass). A mismatch prints both matrices. Each case starts from the base
cluster (`Truth.reset`).

SCTP is judged by ovn-trace over ovn-northd's logical flows, not by packets: this kernel has
no SCTP, and SCTP packets abort OVS 3.1's userspace conntrack (tests/netpol/harness.py).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import row_versions
from tests.netpol.harness import ALL_COLUMNS, NAMESPACES, SCTP_COLUMNS, TABLES, Truth, build, teardown

pytestmark = pytest.mark.e2e
TCP80 = (("TCP", 80),)


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Truth]:
    t = build(str(tmp_path_factory.mktemp("netpol")))
    try:
        yield t
    finally:
        print("\n".join(t.log))
        teardown(t)


@pytest.fixture
def net(truth: Truth) -> Truth:
    truth.reset()
    return truth


def policy(ns: str, name: str, pod_selector: dict[str, Any] | None = None, *,
           ingress: list[dict[str, Any]] | None = None, egress: list[dict[str, Any]] | None = None,
           types: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": pod_selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is not None:
        spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def labels(**kv: str) -> dict[str, Any]:
    return {"matchLabels": kv}


# --- the base: no policy ------------------------------------------------------------------------
def test_no_policy_every_path_answers(truth: Truth) -> None:
    truth.reset()
    truth.expect("no policy", ALL_COLUMNS, allow_all=True)


# --- isolation ------------------------------------------------------------------------------------
def test_default_deny_ingress(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "deny-in", types=["Ingress"]))
    net.expect("default deny ingress in x", (("TCP", 80), ("UDP", 80)), before=before)


def test_default_deny_egress(net: Truth) -> None:
    """x may not start anything, yet everyone reaches x: replies leave x."""
    before = net.nb_versions()
    net.create(policy("x", "deny-out", types=["Egress"]))
    net.expect("default deny egress in x", (("TCP", 80), ("UDP", 80)), before=before)


def test_deny_all_both_ways(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("y", "deny-all", types=["Ingress", "Egress"]))
    net.expect("deny all in y", TCP80, before=before)


# --- peers ----------------------------------------------------------------------------------------
def test_allow_from_the_same_namespace(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "same-ns", ingress=[{"from": [{"podSelector": {}}]}]))
    net.expect("x allows x only", (("TCP", 80), ("UDP", 81)), before=before)


def test_allow_from_a_namespace_by_label(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "from-blue", ingress=[{"from": [{"namespaceSelector": labels(team="blue")}]}]))
    net.expect("x allows namespaces team=blue (y)", TCP80, before=before)


def test_pod_and_namespace_selector_in_one_peer_versus_two_peers(net: Truth) -> None:
    before = net.nb_versions()
    and_peer = policy("x", "a-from", labels(pod="a"),
                      ingress=[{"from": [{"namespaceSelector": labels(team="blue"), "podSelector": labels(pod="b")}]}])
    net.create(and_peer)
    net.expect("x/a from pod=b AND team=blue (y/b only)", TCP80, before=before)
    before = net.nb_versions()
    or_peers = policy("x", "a-from", labels(pod="a"),
                      ingress=[{"from": [{"namespaceSelector": labels(team="blue")},
                                         {"podSelector": labels(pod="b")}]}])
    net.kube.replace("networkpolicies", {**or_peers, "metadata": net.kube.get(
        "networkpolicies", "a-from", namespace="x")["metadata"]})
    net.expect("x/a from pod=b (x/b) OR team=blue (all of y)", TCP80, before=before)


def test_ip_block_with_except(net: Truth) -> None:
    """Ingress: the cluster's pods but node2's subnet; egress: node1's subnet but one pod.
    (ipBlocks over pod addresses: see tests/netpol/harness.py for why there is no outside.)"""
    before = net.nb_versions()
    net.create(policy("z", "from-node1-pods", ingress=[{"from": [{"ipBlock": {
                   "cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}]}]),
               policy("y", "to-node1-but-x-c", types=["Egress"], egress=[{"to": [{"ipBlock": {
                   "cidr": "10.244.1.0/24", "except": [f"{net.ip('x/c')}/32"]}}]}]))
    net.expect("ipBlock with except (ingress to z, egress from y)", (("TCP", 80), ("UDP", 80)), before=before)


def test_match_expressions(net: Truth) -> None:
    before = net.nb_versions()
    net.create(
        # z/a and z/b (tier exists) from pods whose tier is not front, in namespaces team in (red, blue)
        policy("z", "exprs", {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
               ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
                   {"key": "team", "operator": "In", "values": ["red", "blue"]}]},
                   "podSelector": {"matchExpressions": [
                       {"key": "tier", "operator": "NotIn", "values": ["front"]}]}}]}]),
        # y/c (no tier) isolated, nothing allowed
        policy("y", "no-tier", {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
               types=["Ingress"]))
    net.expect("matchExpressions In / NotIn / Exists / DoesNotExist", TCP80, before=before)


# --- ports ----------------------------------------------------------------------------------------
def test_numeric_port_only(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("z", "tcp-81", ingress=[{"ports": [{"protocol": "TCP", "port": 81}]}]))
    net.expect("z allows TCP 81 only", (("TCP", 80), ("TCP", 81), ("UDP", 81)), before=before)


def test_named_port_resolving_to_different_numbers_on_different_pods(net: Truth) -> None:
    """serve-80 is 80 on most pods, 81 on x/b and z/c; for ingress it resolves on the selected
    pod, for egress on the destination pod."""
    before = net.nb_versions()
    net.create(policy("x", "named-in", ingress=[{"ports": [{"port": "serve-80"},
                                                            {"protocol": "UDP", "port": "serve-81-udp"}]}]),
               policy("y", "named-out", types=["Egress"], egress=[{"ports": [{"port": "serve-81"}]}]))
    net.expect("named ports (ingress to x, egress from y)",
               (("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)), before=before)


def test_end_port_range(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("y", "ranges", ingress=[{"ports": [{"protocol": "TCP", "port": 79, "endPort": 80},
                                                         {"protocol": "UDP", "port": 80, "endPort": 81}]}]))
    net.expect("endPort ranges into y", (("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81)), before=before)


def test_sctp(net: Truth) -> None:
    """SCTP through ovn-trace over the logical flows (see tests/netpol/harness.py: no SCTP in
    this kernel, and SCTP packets abort OVS 3.1's userspace conntrack); TCP 81 on the wire
    shows the policies are in force first."""
    before = net.nb_versions()
    net.create(policy("x", "sctp-81", ingress=[{"ports": [{"protocol": "SCTP", "port": 81}]}]),
               policy("z", "sctp-named", ingress=[{"ports": [{"protocol": "SCTP", "port": "serve-80-sctp"}]}]))
    net.expect("SCTP policies: TCP 81 on the wire", (("TCP", 81),), before=before)
    net.expect_traced("SCTP numeric (x) and named (z)", SCTP_COLUMNS)


# --- egress ---------------------------------------------------------------------------------------
def test_egress_to_one_namespace_only(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "to-z", types=["Egress"], egress=[{"to": [{"namespaceSelector": labels(ns="z")}]}]))
    net.expect("x reaches z only", (("TCP", 80), ("UDP", 80)), before=before)


def test_two_policies_union(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "a-from-y-80", labels(pod="a"),
                      ingress=[{"from": [{"namespaceSelector": labels(ns="y")}], "ports": [{"port": 80}]}]))
    net.expect("x/a from y on TCP 80", (("TCP", 80), ("TCP", 81)), before=before)
    before = net.nb_versions()
    net.create(policy("x", "a-from-back", labels(pod="a"),
                      ingress=[{"from": [{"namespaceSelector": {}, "podSelector": labels(tier="back")}]}]))
    net.expect("x/a: union with any tier=back pod on any port", (("TCP", 80), ("TCP", 81)), before=before)


# --- changes --------------------------------------------------------------------------------------
def test_policy_updated_in_place(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "p", types=["Ingress"]))
    net.expect("x denies all ingress", TCP80, before=before)
    for spec_ingress, what in (([{"from": [{"namespaceSelector": labels(ns="y")}]}], "x allows y"),
                               ([{"from": [{"namespaceSelector": labels(ns="y")}], "ports": [{"port": 81}]}],
                                "x allows y on TCP 81 only")):
        obj = net.kube.get("networkpolicies", "p", namespace="x")
        obj["spec"]["ingress"] = spec_ingress
        before = net.nb_versions()
        net.kube.replace("networkpolicies", obj)
        net.expect(what, (("TCP", 80), ("TCP", 81)), before=before)


def test_policy_deleted(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "deny-all", types=["Ingress", "Egress"]), policy("z", "deny-in", types=["Ingress"]))
    net.expect("x deny all, z deny ingress", TCP80, before=before)
    before = net.nb_versions()
    net.kube.delete("networkpolicies", "deny-all", namespace="x")
    net.expect("x's policy deleted, z's left", TCP80, before=before)
    before = net.nb_versions()
    net.kube.delete("networkpolicies", "deny-in", namespace="z")
    net.expect("every policy deleted", TCP80, before=before, allow_all=True)


def test_pod_relabelled_into_and_out_of_a_selector(net: Truth) -> None:
    """Both sides: a peer selector (role=client may reach x) and a subject selector
    (isolated=yes pods are isolated)."""
    before = net.nb_versions()
    net.create(policy("x", "from-clients", ingress=[{"from": [{"namespaceSelector": {},
                                                               "podSelector": labels(role="client")}]}]),
               policy("z", "isolate", labels(isolated="yes"), types=["Ingress"]))
    net.expect("no client, nothing isolated in z", TCP80, before=before)
    before = net.nb_versions()
    net.relabel_pod("y", "b", {"pod": "b", "tier": "back", "role": "client"})
    net.relabel_pod("z", "c", {"pod": "c", "isolated": "yes"})
    net.expect("y/b became a client, z/c isolated", TCP80, before=before)
    before = net.nb_versions()
    net.relabel_pod("y", "b", {"pod": "b", "tier": "back"})
    net.relabel_pod("z", "c", {"pod": "c"})
    net.expect("y/b no longer a client, z/c open again", TCP80, before=before)


def test_namespace_relabelled(net: Truth) -> None:
    before = net.nb_versions()
    net.create(policy("x", "from-green", ingress=[{"from": [{"namespaceSelector": labels(team="green")}]}]))
    net.expect("no green namespace", TCP80, before=before)
    before = net.nb_versions()
    net.relabel_namespace("z", {**NAMESPACES["z"], "kubernetes.io/metadata.name": "z", "team": "green"})
    net.expect("z became green", TCP80, before=before)
    before = net.nb_versions()
    net.relabel_namespace("z", {**NAMESPACES["z"], "kubernetes.io/metadata.name": "z"})
    net.expect("z no longer green", TCP80, before=before)


def test_pod_created_after_the_policy(net: Truth) -> None:
    """y/d does not exist when the policies are made: one isolates it (only y/a may reach it),
    the other lets only it into x."""
    before = net.nb_versions()
    net.create(policy("y", "d-from-a", labels(pod="d"), ingress=[{"from": [{"podSelector": labels(pod="a")}]}]),
               policy("x", "from-y-d", ingress=[{"from": [{"namespaceSelector": labels(ns="y"),
                                                            "podSelector": labels(pod="d")}]}]))
    net.expect("policies made, y/d not there yet", TCP80, before=before)
    before = net.nb_versions()
    net.late_pods.add(("y", "d"))
    net.add_pod("y", "d", "node2", {"pod": "d"})
    net.lab.wait_port_up("y_d")
    net.start_agent("y", "d")
    net.expect("y/d created after the policies", (("TCP", 80), ("UDP", 80)), before=before)


# --- the watcher's life ---------------------------------------------------------------------------
def test_watcher_killed_mid_change_and_restarted(net: Truth) -> None:
    assert net.watcher is not None
    net.create(policy("x", "deny-in", types=["Ingress"]), policy("y", "deny-out", types=["Egress"]),
               policy("z", "from-x", ingress=[{"from": [{"namespaceSelector": labels(ns="x")}]}]))
    net.watcher.kill()        # SIGKILL right after the creations: some written, some not
    net.kube.delete("networkpolicies", "deny-out", namespace="y")
    net.create(policy("x", "from-y", ingress=[{"from": [{"namespaceSelector": labels(ns="y")}]}]))
    net.relabel_pod("z", "a", {"pod": "a", "tier": "front", "extra": "yes"})
    net.create(policy("z", "extra-isolated", labels(extra="yes"), types=["Ingress", "Egress"]))
    before = net.nb_versions()
    net.start_watcher()
    net.expect("after a SIGKILL mid-change, changes while down, and a restart",
               (("TCP", 80), ("UDP", 80)), before=before)


def test_clean_restart_writes_nothing(net: Truth) -> None:
    assert net.watcher is not None
    before = net.nb_versions()
    net.create(policy("x", "from-y", ingress=[{"from": [{"namespaceSelector": labels(ns="y")}],
                                                "ports": [{"port": "serve-80"}, {"protocol": "UDP", "port": 80}]}]),
               policy("y", "to-x", types=["Egress"], egress=[{"to": [{"namespaceSelector": labels(ns="x")},
                                                                      {"ipBlock": {"cidr": "10.244.2.0/24"}}]}]),
               policy("z", "ranges", labels(pod="a"), ingress=[{"ports": [{"port": 80, "endPort": 81}]}]))
    net.expect("policies in place", (("TCP", 80), ("UDP", 80)), before=before)
    assert net.watcher.stop(signal.SIGTERM) == 0
    versions = row_versions(net.lab, *TABLES)     # taken with no watcher running
    net.start_watcher()
    net.expect("after a clean restart", (("TCP", 80), ("UDP", 80)))
    after = row_versions(net.lab, *TABLES)
    changes = {t: changed_rows(versions[t], after[t]) for t in TABLES if versions[t] != after[t]}
    assert not changes, f"a clean restart wrote to the NB: {changes}"


def changed_rows(before: dict[str, str], after: dict[str, str]) -> str:
    created = len(set(after) - set(before))
    deleted = len(set(before) - set(after))
    changed = sum(1 for u in set(before) & set(after) if before[u] != after[u])
    return f"{created} created, {deleted} deleted, {changed} changed"
