"""NetworkPolicies through the real ovn-k8s-watcher into a real NB: the port groups, address
sets and ACLs it writes, what each kind of change touches, and the sync before serving
(stale rows removed, missing rows made, nothing written on a clean restart).

Packets are the truth-table suite's job (tests/e2e/test_networkpolicy_truth.py); here the NB
rows are the outcome.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s import naming
from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, annotation, nb_table, wait_until, write_topology
from sandbox.watcher_harness import nbctl as harness_nbctl
from tests.helpers import row_versions

pytestmark = pytest.mark.integration
NODES = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24"}
TABLES = ("Port_Group", "Address_Set", "ACL")


def nbctl(lab: Lab, *args: str) -> str:
    return harness_nbctl(lab.nb, *args)


def table(lab: Lab, name: str) -> list[dict[str, Any]]:
    return nb_table(lab.nb, name)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_state(lab: Lab) -> dict[str, Any]:
    """Our policy rows, readable: port group -> member port names and ACL matches; address
    set -> addresses; node switch -> ACL matches."""
    ports = {r["_uuid"]: r["name"] for r in table(lab, "Logical_Switch_Port")}
    acls = {r["_uuid"]: r for r in table(lab, "ACL")
            if r["external_ids"].get(naming.OWNER_KEY, "").startswith(naming.OWNER_POLICY_PREFIX)}
    groups = {}
    for pg in table(lab, "Port_Group"):
        if not pg["external_ids"].get(naming.OWNER_KEY, "").startswith(naming.OWNER_POLICY_PREFIX):
            continue
        groups[pg["external_ids"][naming.POLICY_KEY]] = {
            "ports": sorted(ports[u] for u in as_list(pg["ports"])),
            "acls": sorted((acls[u]["direction"], acls[u]["priority"], acls[u]["action"],
                            acls[u]["match"]) for u in as_list(pg["acls"])),
        }
    sets = {r["name"]: sorted(as_list(r["addresses"])) for r in table(lab, "Address_Set")
            if r["external_ids"].get(naming.OWNER_KEY, "").startswith(naming.OWNER_POLICY_PREFIX)}
    switches = {}
    for ls in table(lab, "Logical_Switch"):
        matches = sorted(acls[u]["match"] for u in as_list(ls["acls"]) if u in acls)
        if matches:
            switches[ls["name"]] = matches
    return {"groups": groups, "sets": sets, "switches": switches, "acls": len(acls)}


def pod(ns: str, name: str, node: str, labels: dict[str, str], port: int = 80) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "serve", "containerPort": port, "protocol": "TCP"}]}]}}


def policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


@pytest.fixture
def cluster(lab: Lab, kube: KubeApiServer, tmp_path) -> Iterator[tuple[Lab, KubeApiServer, WatcherProcess]]:
    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    write_topology(lab.nb, NODES)
    for ns, labels in (("a", {"team": "x"}), ("b", {"team": "y"})):
        kube.create("namespaces", {"metadata": {"name": ns, "labels": labels}})
    kube.create("pods", pod("a", "web1", "node1", {"app": "web"}, port=80))
    kube.create("pods", pod("a", "web2", "node2", {"app": "web"}, port=8080))
    kube.create("pods", pod("a", "db", "node1", {"app": "db"}))
    kube.create("pods", pod("b", "client", "node2", {"app": "client"}))
    w = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig)
    try:
        w.start().wait_ready()
        yield lab, kube, w
    finally:
        w.kill()


def ips(kube: KubeApiServer, *keys: str) -> list[str]:
    out = []
    for key in keys:
        ns, name = key.split("/")
        ann = wait_until(lambda ns=ns, name=name: annotation(kube.get("pods", name, namespace=ns)),
                         20, f"{key}'s annotation")
        out.append(ann["ip_address"].split("/")[0])
    return sorted(out)


def pg_name(ns: str, name: str) -> str:
    return naming.policy_port_group(ns, name)


def test_policy_rows_follow_pods_namespaces_and_policies(cluster):
    lab, kube, w = cluster
    web1, web2 = ips(kube, "a/web1"), ips(kube, "a/web2")
    client = ips(kube, "b/client")
    kube.create("networkpolicies", policy("a", "web", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}],
                     "ports": [{"port": "serve"}]}]}), namespace="a")
    pg = pg_name("a", "web")

    def state() -> dict[str, Any]:
        return policy_state(lab)

    s = wait_until(lambda: (x := state())["groups"].get("a/web") and x, 20, "the policy's rows")
    assert s["groups"]["a/web"]["ports"] == ["a_web1", "a_web2"]
    peer_sets = {n: a for n, a in s["sets"].items() if n.startswith("ovnk8s_peer_")}
    named = {n: a for n, a in s["sets"].items() if n.startswith("ovnk8s_npp_")}
    assert list(peer_sets.values()) == [client]
    # The named port resolves to 80 on web1 and 8080 on web2: one set per number.
    assert sorted(named.values()) == sorted([web1, web2])
    (peer_set,) = peer_sets
    acls = s["groups"]["a/web"]["acls"]
    assert acls[0] == ("to-lport", 1000, "drop", f"outport == @{pg} && ip4")
    (allow,) = acls[1:]
    assert allow[:3] == ("to-lport", 1001, "allow-related")
    assert f"ip4.src == ${peer_set}" in allow[3]
    for (number, members) in ((80, web1), (8080, web2)):
        (set_name,) = [n for n, a in named.items() if a == members]
        assert f"(tcp.dst == {number} && ip4.dst == ${set_name})" in allow[3]
    # The nodes' management ports may reach their pods.
    assert s["switches"] == {"node1": ["ip4.src == 10.244.1.2"],
                             "node2": ["ip4.src == 10.244.2.2"]}

    # A pod created in the peer namespace joins the peer set; one relabelled out of the
    # policy's selector leaves the port group.
    kube.create("pods", pod("b", "client2", "node1", {"app": "client"}))
    both = sorted(client + ips(kube, "b/client2"))
    wait_until(lambda: state()["sets"][peer_set] == both, 20, "client2 in the peer set")
    kube.patch("pods", "web2", {"metadata": {"labels": {"app": "other"}}}, namespace="a")
    wait_until(lambda: state()["groups"]["a/web"]["ports"] == ["a_web1"], 20, "web2 out")
    # The namespace relabelled out of the peer selector: the set empties.
    kube.patch("namespaces", "b", {"metadata": {"labels": {"team": "z"}}})
    wait_until(lambda: state()["sets"].get(peer_set) == [], 20, "an empty peer set")
    kube.delete("pods", "web1", namespace="a")
    wait_until(lambda: state()["groups"]["a/web"]["ports"] == [], 20, "an empty port group")

    # Deleting the policy removes every row of it and its peer set; the node ACLs stay.
    kube.delete("networkpolicies", "web", namespace="a")
    wait_until(lambda: state() == {"groups": {}, "sets": {}, "switches": s["switches"], "acls": 2},
               20, "no policy rows")


def test_restart_writes_nothing_then_repairs_stale_and_missing_rows(cluster):
    lab, kube, w = cluster
    ips(kube, "a/web1", "a/web2", "a/db", "b/client")
    kube.create("networkpolicies", policy("a", "deny", {"podSelector": {}}), namespace="a")
    kube.create("networkpolicies", policy("a", "db", {
        "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                              {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.8/29"]}}],
                     "ports": [{"protocol": "TCP", "port": 5432, "endPort": 5440}]}],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}), namespace="a")
    wait_until(lambda: set(policy_state(lab)["groups"]) == {"a/deny", "a/db"}, 20, "two policies")
    wait_until(lambda: w.get("/readyz")[0] == 200 and
               w.metric("ovnk8s_watcher_queue_depth", resource="networkpolicies") == 0, 20, "idle")
    before_state = policy_state(lab)
    w.stop()
    before = row_versions(lab, *TABLES)

    w.start().wait_ready()
    assert row_versions(lab, *TABLES) == before, "a clean restart wrote policy rows"
    w.stop()

    # While it is down: a policy goes, one of our ACLs is deleted by hand, a stray row of
    # ours appears.
    kube.delete("networkpolicies", "deny", namespace="a")
    db_pg = pg_name("a", "db")
    acl = next(r for r in table(lab, "ACL") if r["external_ids"].get(naming.ID_KEY) ==
               "np:a/db:egress:0")
    nbctl(lab, "remove", "Port_Group", db_pg, "acls", acl["_uuid"])
    nbctl(lab, "create", "Address_Set", "name=ovnk8s_peer_stale",
          f'external_ids:"{naming.OWNER_KEY}"="{naming.owner_policy_peer("stale")}"',
          f'external_ids:"{naming.ID_KEY}"=ovnk8s_peer_stale')
    w.start().wait_ready()
    after = policy_state(lab)
    assert set(after["groups"]) == {"a/db"}
    assert after["groups"]["a/db"] == before_state["groups"]["a/db"]
    assert "ovnk8s_peer_stale" not in after["sets"]
    assert after["sets"] == {n: a for n, a in before_state["sets"].items() if n in after["sets"]}


def test_malformed_policy_gets_an_event_and_a_count(cluster):
    lab, kube, w = cluster
    kube.create("networkpolicies", policy("a", "bad", {
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "Sometimes"}]}}),
        namespace="a")
    wait_until(lambda: w.metric("ovnk8s_watcher_invalid_objects_total",
                                resource="networkpolicies") == 1, 20, "the invalid count")
    events = wait_until(lambda: [e for e in kube.list("events", namespace="a")
                                 if e["involvedObject"]["kind"] == "NetworkPolicy"], 20, "an Event")
    assert events[0]["reason"] == "ErrorSyncingNetworkPolicy"
    assert "Sometimes" in events[0]["message"]
    assert policy_state(lab)["groups"] == {}


def test_a_pod_port_made_again_rejoins_its_port_groups(cluster):
    lab, kube, w = cluster
    ips(kube, "a/web1", "a/web2")
    kube.create("networkpolicies", policy("a", "web", {"podSelector": {"matchLabels": {"app": "web"}}}),
                namespace="a")
    wait_until(lambda: (policy_state(lab)["groups"].get("a/web") or {}).get("ports") ==
               ["a_web1", "a_web2"], 20, "both web pods in the port group")
    # The port is deleted and made again (a new UUID, as a repair or a restore would): the
    # group held the old one by weak reference and lost it.
    port = next(r for r in table(lab, "Logical_Switch_Port") if r["name"] == "a_web1")
    nbctl(lab, "lsp-del", "a_web1")
    assert policy_state(lab)["groups"]["a/web"]["ports"] == ["a_web2"]
    ext = [f'external_ids:"{k}"="{v}"' for k, v in port["external_ids"].items()]
    nbctl(lab, "lsp-add", "node1", "a_web1", "--", "set", "Logical_Switch_Port", "a_web1",
          f"addresses=\"{port['addresses']}\"", *ext)
    wait_until(lambda: policy_state(lab)["groups"]["a/web"]["ports"] == ["a_web1", "a_web2"], 20,
               "the new port in the port group")


def test_a_change_rewrites_only_the_rows_it_affects(cluster):
    lab, kube, w = cluster
    ips(kube, "a/web1", "a/web2", "a/db", "b/client")
    kube.create("networkpolicies", policy("a", "web", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}), namespace="a")
    kube.create("networkpolicies", policy("b", "client", {
        "podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}), namespace="b")
    wait_until(lambda: set(policy_state(lab)["groups"]) == {"a/web", "b/client"}, 20, "two policies")

    def versions() -> dict[str, str]:
        out = {}
        for t in TABLES:
            names = {r["_uuid"]: r.get("name") or r["external_ids"].get(naming.ID_KEY)
                     for r in table(lab, t)}
            out.update({names[u]: v for u, v in row_versions(lab, t)[t].items()})
        return out

    wait_until(lambda: w.metric("ovnk8s_watcher_queue_depth", resource="networkpolicies") == 0,
               20, "idle")
    before = versions()
    # web2 leaves a/web's selector: only that port group changes (b's rows, the peer sets and
    # every ACL stay as they are; web2's address stays in b's all-pods peer set).
    kube.patch("pods", "web2", {"metadata": {"labels": {"app": "other"}}}, namespace="a")
    wait_until(lambda: policy_state(lab)["groups"]["a/web"]["ports"] == ["a_web1"], 20, "web2 out")
    after = versions()
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed == {naming.policy_port_group("a", "web")}, changed
