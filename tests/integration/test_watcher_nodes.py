"""ovn-k8s-watcher --allocate-node-subnets against a real NB (with ovn-northd) and the
embedded API server: Nodes get distinct subnets (annotation and switch agree), a deleted Node
leaves no row behind (the NB's full dump equals the one of the cluster before that node
came), NotReady nodes are left alone, a restart mid-way hands nothing out twice, a full pool
is an Event on the Node, and freed subnets are reused once their switches are gone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import netaddr
import pytest

from ovn_k8s import ipam, naming
from ovn_k8s.desired import topology
from ovn_k8s.nb import connection
from ovn_k8s.nb.apply import ApplyCommand
from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, differences, wait_until, write_topology

pytestmark = pytest.mark.integration
ANN = naming.NODE_SUBNET_ANNOTATION
CLUSTER = netaddr.IPNetwork("10.244.0.0/16")
JOIN = netaddr.IPNetwork("100.64.0.0/16")
DUMP_TABLES = ("Logical_Switch", "Logical_Switch_Port", "Logical_Router", "Logical_Router_Port",
               "Logical_Router_Static_Route", "NAT", "ACL", "Load_Balancer",
               "Load_Balancer_Group", "Chassis_Template_Var")


@pytest.fixture
def make_watcher(lab: Lab, kube: KubeApiServer, tmp_path) -> Iterator:
    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    write_topology(lab.nb, {})                 # master-init's rows only
    made: list[WatcherProcess] = []

    def make(*extra: str, name: str = "watcher") -> WatcherProcess:
        # No NetworkPolicy controller: its ACL on each node switch (made just after the
        # switch) would race the NB snapshots these tests compare.
        w = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig, name=name,
                           extra=("--allocate-node-subnets", "--no-network-policy", *extra))
        made.append(w)
        return w
    try:
        yield make
    finally:
        for w in made:
            w.kill()


def gateway_init(nb: str, node: str, join_ip: str, physical_ip: str) -> None:
    """The NB rows gateway-init writes for `node` (no host side: only the NB is under test)."""
    api = connection.connect(nb, "OVN_Northbound", what="NB", timeout=30)
    try:
        ip = netaddr.IPNetwork(physical_ip)
        rows = topology.gateway_rows(topology.GatewaySpec(
            node=node, system_id=f"chassis-{node}", cluster_subnet=CLUSTER, join_subnet=JOIN,
            join_ip=netaddr.IPAddress(join_ip), physical_ip=ip,
            physical_mac=ipam.mac_from_ip(ip.ip), port_name="eth1",
            rampout_subnets=[netaddr.IPNetwork("10.244.128.0/24")]))
        with connection.transaction(api) as txn:
            txn.add(ApplyCommand(api, scopes=[naming.owner_gateway(node)],
                                 build=lambda view: rows))
    finally:
        connection.disconnect(api)


def node_obj(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}}


def annotations(kube: KubeApiServer) -> dict[str, str]:
    return {n["metadata"]["name"]: a for n in kube.list("nodes")
            if (a := (n["metadata"].get("annotations") or {}).get(ANN))}


def _nbctl_json(nb: str, *args: str) -> Any:
    out = subprocess.run(["ovn-nbctl", f"--db={nb}", "--timeout=30", "--format=json", *args],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def _plain(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and value[0] in ("set", "map", "uuid"):
        kind, inner = value
        if kind == "map":
            return {k: _plain(v) for k, v in inner}
        if kind == "set":
            return [_plain(v) for v in inner]
        return ("uuid", inner)
    return value


def switch_subnets(nb: str) -> dict[str, str]:
    data = _nbctl_json(nb, "--columns=name,other_config,external_ids", "list", "Logical_Switch")
    out = {}
    for name, other, ext in ([_plain(v) for v in row] for row in data["data"]):
        if (ext or {}).get(naming.ID_KEY, "").startswith("switch:"):
            out[name] = other["subnet"]
    return out


def nb_dump(nb: str) -> dict[str, list[str]]:
    """Every row of the tables we write, as canonical text: UUIDs replaced by the identity of
    the row they name; pod ports (they follow the pods, checked by `differences`) left out."""
    raw: dict[str, list[dict[str, Any]]] = {}
    ident: dict[str, str] = {}
    for table in DUMP_TABLES:
        data = _nbctl_json(nb, "list", table)
        rows = [dict(zip(data["headings"], [_plain(v) for v in r], strict=True))
                for r in data["data"]]
        raw[table] = rows
        for row in rows:
            ext = row.get("external_ids") or {}
            ident[row["_uuid"][1]] = f"{table}:{ext.get(naming.ID_KEY) or row.get('name')}"
    pods = {u for u, i in ident.items() if i.startswith("Logical_Switch_Port:") and
            any(r["_uuid"][1] == u and (r.get("external_ids") or {}).get(naming.OWNER_KEY, "")
                .startswith(naming.OWNER_POD_PREFIX) for r in raw["Logical_Switch_Port"])}

    def canon(value: Any) -> Any:
        if isinstance(value, tuple):
            return ident.get(value[1], "?")
        if isinstance(value, list):
            return sorted(str(canon(v)) for v in value
                          if not (isinstance(v, tuple) and v[1] in pods))
        if isinstance(value, dict):
            return {k: canon(v) for k, v in sorted(value.items())}
        return value

    out: dict[str, list[str]] = {}
    for table, rows in raw.items():
        out[table] = sorted(json.dumps({k: canon(v) for k, v in row.items() if k != "_uuid"},
                                       sort_keys=True)
                            for row in rows if row["_uuid"][1] not in pods)
    return out


def owned_by(dump: dict[str, list[str]], node: str) -> list[str]:
    marks = (f'"{naming.owner_node(node)}"', f'"{naming.owner_gateway(node)}"', f":{node}")
    return [row for rows in dump.values() for row in rows if any(m in row for m in marks)]


# per-gateway: a NodePort load balancer per gateway router; template: one per protocol, with a
# Chassis_Template_Var row per gateway chassis (both must go with a gateway's node).
@pytest.mark.parametrize("nodeport_mode", ["per-gateway", "template"])
def test_nodes_added_and_removed_while_pods_churn(lab, kube, make_watcher, nodeport_mode):
    gateway_init(lab.nb, "n1", "100.64.0.2", "172.16.0.1/24")
    w = make_watcher("--pod-batch-size=20", f"--nodeport-mode={nodeport_mode}")
    w.start().wait_ready()
    kube.create("services", {"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": "web", "namespace": "default"},
                             "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                                      "ports": [{"port": 80, "protocol": "TCP",
                                                 "nodePort": 30080, "targetPort": 8080}]}})
    kube.create("endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.200.5"], "conditions": {"ready": True}}]})
    for name in ("n1", "n4"):
        kube.create("nodes", node_obj(name))
    for i in range(10):
        kube.create("pods", pod(f"base{i}", ("n1", "n4")[i % 2]))
    wait_until(lambda: len(annotations(kube)) == 2 and not differences(kube.list("pods"), lab.nb),
               30, "n1, n4 and their pods")
    before = nb_dump(lab.nb)

    # n2 and n3 join (n3 also becomes a gateway), pods come and go on every node meanwhile.
    stop = threading.Event()
    churned: list[str] = []

    def churn() -> None:
        i = 0
        while not stop.is_set() and i < 400:
            name = f"churn{i}"
            kube.create("pods", pod(name, ("n1", "n2", "n3", "n4")[i % 4]))
            churned.append(name)
            if i % 3 == 2:
                kube.delete("pods", churned.pop(0))
            i += 1
            stop.wait(0.01)
    chaos = threading.Thread(target=churn, daemon=True)
    chaos.start()
    try:
        kube.create("nodes", node_obj("n2"))
        kube.create("nodes", node_obj("n3"))
        wait_until(lambda: len(annotations(kube)) == 4, 30, "n2 and n3 annotated")
        gateway_init(lab.nb, "n3", "100.64.0.3", "172.16.0.3/24")
        subnets = annotations(kube)
        assert len(set(subnets.values())) == 4, subnets
        wait_until(lambda: switch_subnets(lab.nb) == subnets, 20, "the switches' subnets")
        # n3's gateway is in the services' rows before it goes.
        mid = wait_until(lambda: (d := nb_dump(lab.nb)) and any(
            "chassis-n3" in r or "nodeport:n3" in r
            for t in ("Chassis_Template_Var", "Load_Balancer") for r in d[t]) and d, 20,
            "n3's gateway in the services' rows")
        # n4 goes NotReady: nothing of it is touched.
        kube.patch("nodes", "n4", {"status": {"conditions": [{"type": "Ready",
                                                               "status": "False"}]}})
        # n2 and n3 leave the cluster (their pods are evicted, as the pod GC would).
        for name in ("n2", "n3"):
            kube.delete("nodes", name)
    finally:
        stop.set()
        chaos.join(30)
    # The pods that ran on n2 and n3 are evicted (as the pod GC would), the churn ends.
    for p in kube.list("pods"):
        if p["spec"]["nodeName"] in ("n2", "n3") or p["metadata"]["name"].startswith("churn"):
            kube.delete("pods", p["metadata"]["name"])

    def settled() -> bool:
        return not differences(kube.list("pods"), lab.nb) and nb_dump(lab.nb) == before
    try:
        wait_until(settled, 30, "n2 and n3 cleaned", interval=0.2)
    except AssertionError:
        pass                                  # the comparison below says what differs
    after = nb_dump(lab.nb)
    assert not owned_by(after, "n2") and not owned_by(after, "n3")
    if nodeport_mode == "template":
        assert any("chassis-n3" in row for row in mid["Chassis_Template_Var"])
    else:
        assert any("nodeport:n3" in row for row in mid["Load_Balancer"])
    assert after == before, {t: (sorted(set(after[t]) - set(before[t])),
                                 sorted(set(before[t]) - set(after[t])))
                             for t in after if after[t] != before[t]}
    assert switch_subnets(lab.nb) == {k: v for k, v in subnets.items() if k in ("n1", "n4")}
    assert w.metric("ovnk8s_watcher_reconciled_keys_total", resource="nodes", result="ok") > 0

    # The freed subnets go to the next nodes, lowest first.
    kube.create("nodes", node_obj("n5"))
    wait_until(lambda: "n5" in annotations(kube), 20, "n5 annotated")
    assert annotations(kube)["n5"] == min((subnets["n2"], subnets["n3"]),
                                          key=lambda s: netaddr.IPNetwork(s))


def test_restart_mid_way_pool_full_and_reuse(lab, kube, make_watcher):
    # /21 blocks of 10.244.0.0/16: a pool of 32.
    w = make_watcher("--node-subnet-prefix=21")
    w.start().wait_ready()
    for i in range(20):
        kube.create("nodes", node_obj(f"n{i:02d}"))
    wait_until(lambda: len(annotations(kube)) >= 3, 30, "part of the nodes annotated",
               interval=0.01)
    w.stop(signal.SIGKILL)
    early = annotations(kube)
    assert len(early) < 20, "the watcher was not killed mid-way"
    # While it is down: three annotated nodes leave, 17 join; a switch made by hand for a
    # node that never registered (minion-init before its kubelet) must survive the sync.
    left = sorted(early)[:3]
    for name in left:
        kube.delete("nodes", name)
    for i in range(20, 37):
        kube.create("nodes", node_obj(f"n{i:02d}"))
    write_topology(lab.nb, {"unregistered": "10.244.248.0/21"})
    w.start().wait_ready(60)
    # 34 Nodes, 31 free /21s (the 32nd is the hand-made switch's).
    wait_until(lambda: len(annotations(kube)) == 31, 30, "the pool handed out")
    subnets = annotations(kube)
    for name, subnet in early.items():
        if name not in left:
            assert subnets[name] == subnet, f"{name} was given a new subnet"
    assert set(left).isdisjoint(switch_subnets(lab.nb)), "nodes gone while down kept rows"
    assert switch_subnets(lab.nb)["unregistered"] == "10.244.248.0/21"
    kube.create("nodes", node_obj("unregistered"))   # it registers: its subnet is kept
    wait_until(lambda: annotations(kube).get("unregistered") == "10.244.248.0/21", 20,
               "the hand-made switch adopted")
    subnets = annotations(kube)
    # 37 - 3 left + 1 registered late = 35 Nodes; the pool holds 32 /21s.
    assert len(set(subnets.values())) == len(subnets) == 32
    nets = sorted(netaddr.IPNetwork(s) for s in subnets.values())
    assert all(n in CLUSTER and n.prefixlen == 21 for n in nets)
    wait_until(lambda: switch_subnets(lab.nb) == subnets, 20, "the switches' subnets")
    unallocated = sorted({f"n{i:02d}" for i in range(37)} - set(subnets) - set(left))
    assert len(unallocated) == 3

    def event_for(name: str) -> bool:
        return any(e.get("reason") == "SubnetAllocationFailed" and
                   e["involvedObject"].get("name") == name and "no free /21" in e["message"]
                   for e in kube.list("events"))
    wait_until(lambda: all(event_for(n) for n in unallocated), 20, "Events on the nodes left out")

    # Ten nodes go: the three waiting ones get their subnets, taken from the freed ones.
    gone = sorted(n for n in subnets if n != "unregistered")[1:20:2]
    for name in gone:
        kube.delete("nodes", name)
    wait_until(lambda: set(unallocated) <= set(annotations(kube)), 30,
               "the waiting nodes allocated")
    final = annotations(kube)
    freed = {subnets[n] for n in gone}
    assert {final[n] for n in unallocated} <= freed
    assert len(set(final.values())) == len(final) == 25
    wait_until(lambda: switch_subnets(lab.nb) == final, 20, "the NB switches equal the annotations")
