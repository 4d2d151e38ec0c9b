"""ServiceReconciler against a real NB ovsdb-server: the load balancer rows it writes.

The topology (LB groups, gateway routers) is written by the real topology builders through
the apply engine, exactly as master-init and gateway-init write it; services are raw API
dicts. Outcomes are checked as NB rows (ovn-nbctl) and whole-NB dumps.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import netaddr
import pytest

from ovn_k8s import naming
from ovn_k8s.desired import topology
from ovn_k8s.desired.services import AffinityMode, NodePortMode
from ovn_k8s.errors import InvalidObject, NotReadyError
from ovn_k8s.nb import connection
from ovn_k8s.overlay import apply_rows
from sandbox.lab.cluster import Lab
from sandbox.lab.proc import wait_for
from tests.helpers import nb_caught_up, nb_dump, row_versions, rows
from watcher.services import InvalidServices, ServiceInput, ServiceReconciler

pytestmark = pytest.mark.integration
LB, LBG, LR, CTV = "Load_Balancer", "Load_Balancer_Group", "Logical_Router", "Chassis_Template_Var"
CLUSTER = netaddr.IPNetwork("10.244.0.0/16")
JOIN = netaddr.IPNetwork("100.64.0.0/16")


@pytest.fixture
def nb(lab: Lab) -> Iterator[Any]:
    api = connection.connect(lab.nb, "OVN_Northbound", what="NB", timeout=10)
    yield api
    connection.disconnect(api)


def add_master(nb: Any) -> None:
    spec = topology.MasterSpec("node1", CLUSTER, JOIN)
    apply_rows(nb, scopes=[naming.OWNER_CLUSTER], build=lambda v: topology.master_rows(spec), timeout=10)


def add_gateway(nb: Any, index: int) -> None:
    node = f"node{index}"
    spec = topology.GatewaySpec(node=node, system_id=f"chassis-{index}", cluster_subnet=CLUSTER,
                                join_subnet=JOIN, join_ip=netaddr.IPAddress(f"100.64.0.{index + 1}"),
                                physical_ip=netaddr.IPNetwork(f"192.0.2.{9 + index}/24"),
                                physical_mac=f"0a:00:00:00:00:0{index}", port_name="eth1")
    apply_rows(nb, scopes=[naming.owner_gateway(node)], build=lambda v: topology.gateway_rows(spec),
               timeout=10)


def remove_gateway(nb: Any, index: int) -> None:
    apply_rows(nb, scopes=[naming.owner_gateway(f"node{index}")], build=lambda v: [], timeout=10)


@pytest.fixture
def cluster(lab: Lab, nb: Any) -> Any:
    """The topology of master-init plus gateway-init on node1 and node2 (rows only)."""
    add_master(nb)
    add_gateway(nb, 1)
    add_gateway(nb, 2)
    return nb


def service(name: str = "web", *, type: str = "ClusterIP", ip: str = "10.96.0.10",
            ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}"},
            "spec": {"type": type, "clusterIP": ip,
                     "ports": ports if ports is not None else [{"name": "http", "port": 80,
                                                                "targetPort": 8080}], **spec}}


def slices(name: str, *ips: str, ports: tuple[tuple[str, int], ...] = (("http", 8080),),
           protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"metadata": {"namespace": "default", "name": f"{name}-1",
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
             "ports": [{"name": n, "port": p, "protocol": protocol} for n, p in ports]}]


def inp(name: str = "web", *ips: str, **kw: Any) -> ServiceInput:
    return ServiceInput(service(name, **kw), slices(name, *(ips or ("10.244.1.5", "10.244.2.5"))))


def lbs(lab: Lab) -> dict[str, dict[str, Any]]:
    """Our load balancers by identity: vips, options, name, uuid."""
    out = {}
    for r in rows(lab, LB, "_uuid", "name", "vips", "options", "selection_fields", "protocol", "external_ids"):
        ident = r["external_ids"].get("ovn-k8s/id", r["_uuid"])
        assert ident not in out, f"duplicate load balancer {ident}"
        out[ident] = r
    return out


def members(lab: Lab, table: str, name: str) -> set[str]:
    """Identities of the load balancers linked into a group or router (by name)."""
    (holder,) = rows(lab, table, "load_balancer", where=[f"name={name}"])
    uuids = holder["load_balancer"]
    uuids = [uuids] if isinstance(uuids, str) else uuids
    by_uuid = {r["_uuid"]: i for i, r in lbs(lab).items()}
    return {by_uuid[u] for u in uuids}


def versions(lab: Lab) -> dict[str, dict[str, str]]:
    """Every row the services controller may write, with its server-side version."""
    return row_versions(lab, LB, LBG, "Logical_Router", "Chassis_Template_Var")


ID = "service:default/web"


def test_create_modify_ports_change_endpoints_delete(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10)
    rec.sync({})
    rec.reconcile({"default/web": inp()})
    found = lbs(lab)
    assert set(found) == {f"{ID}:tcp:cluster"}
    lb = found[f"{ID}:tcp:cluster"]
    assert lb["vips"] == {"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"}
    assert lb["name"] == "Service_default/web_TCP_cluster" and lb["protocol"] == "tcp"
    assert lb["external_ids"] == {"ovn-k8s/owner": ID, "ovn-k8s/id": f"{ID}:tcp:cluster",
                                  "ovn-k8s/service": "default/web", "ovn-k8s/protocol": "tcp",
                                  "ovn-k8s/lb-scope": "cluster"}
    assert members(lab, LBG, "k8s-cluster-lbs") == {f"{ID}:tcp:cluster"}
    assert members(lab, LBG, "k8s-gateway-lbs") == set()

    # a second port: one more VIP on the same row
    two_ports = [{"name": "http", "port": 80, "targetPort": 8080},
                 {"name": "admin", "port": 9000, "targetPort": 9001}]
    rec.reconcile({"default/web": ServiceInput(service(ports=two_ports), slices(
        "web", "10.244.1.5", ports=(("http", 8080), ("admin", 9001))))})
    after = lbs(lab)[f"{ID}:tcp:cluster"]
    assert after["_uuid"] == lb["_uuid"]
    assert after["vips"] == {"10.96.0.10:80": "10.244.1.5:8080", "10.96.0.10:9000": "10.244.1.5:9001"}

    # the port goes again: its VIP key is really removed (V7), the other one stays
    rec.reconcile({"default/web": inp("web", "10.244.1.5", "10.244.3.7")})
    after = lbs(lab)[f"{ID}:tcp:cluster"]
    assert after["_uuid"] == lb["_uuid"]
    assert after["vips"] == {"10.96.0.10:80": "10.244.1.5:8080,10.244.3.7:8080"}

    # no ready endpoints: the VIP and then the load balancer go
    rec.reconcile({"default/web": ServiceInput(service(), slices("web"))})
    assert lbs(lab) == {}
    assert members(lab, LBG, "k8s-cluster-lbs") == set()
    rec.reconcile({"default/web": inp()})
    assert set(lbs(lab)) == {f"{ID}:tcp:cluster"}

    # deleted
    rec.reconcile({"default/web": ServiceInput(None)})
    assert lbs(lab) == {}
    assert members(lab, LBG, "k8s-cluster-lbs") == set()


def test_type_change_cluster_ip_to_node_port_and_back(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10)
    rec.sync({"default/web": inp()})
    cluster_uuid = lbs(lab)[f"{ID}:tcp:cluster"]["_uuid"]
    nodeport = [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]
    rec.reconcile({"default/web": inp(type="NodePort", ports=nodeport)})
    found = lbs(lab)
    assert set(found) == {f"{ID}:tcp:cluster", f"{ID}:tcp:nodeport:node1", f"{ID}:tcp:nodeport:node2"}
    assert found[f"{ID}:tcp:cluster"]["_uuid"] == cluster_uuid
    assert found[f"{ID}:tcp:nodeport:node1"]["vips"] == {"192.0.2.10:30080": "10.244.1.5:8080,10.244.2.5:8080"}
    assert found[f"{ID}:tcp:nodeport:node2"]["vips"] == {"192.0.2.11:30080": "10.244.1.5:8080,10.244.2.5:8080"}
    assert members(lab, LR, "GR_node1") == {f"{ID}:tcp:nodeport:node1"}
    assert members(lab, LR, "GR_node2") == {f"{ID}:tcp:nodeport:node2"}
    # gateway-init running again does not unlink them (it owns other columns of the router)
    add_gateway(cluster, 1)
    assert members(lab, LR, "GR_node1") == {f"{ID}:tcp:nodeport:node1"}

    rec.reconcile({"default/web": inp(type="ClusterIP")})
    assert set(lbs(lab)) == {f"{ID}:tcp:cluster"}
    assert members(lab, LR, "GR_node1") == members(lab, LR, "GR_node2") == set()


def test_external_ips_and_load_balancer_ingress_on_every_gateway(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10)
    rec.reconcile({"default/web": ServiceInput(
        service(type="LoadBalancer", externalIPs=["198.51.100.7"], sessionAffinity="ClientIP",
                ports=[{"name": "http", "port": 80, "targetPort": 8080, "protocol": "UDP",
                        "nodePort": 30053}]),
        slices("web", "10.244.1.5", protocol="UDP"))})
    found = lbs(lab)
    assert set(found) == {f"{ID}:udp:cluster", f"{ID}:udp:external", f"{ID}:udp:nodeport:node1",
                          f"{ID}:udp:nodeport:node2"}
    ext = found[f"{ID}:udp:external"]
    assert ext["vips"] == {"198.51.100.7:80": "10.244.1.5:8080"}
    assert ext["options"] == {"neighbor_responder": "none"}
    assert ext["selection_fields"] == "ip_src"        # ClientIP affinity, AffinityMode.HASH
    assert ext["protocol"] == "udp"
    assert members(lab, LBG, "k8s-gateway-lbs") == {f"{ID}:udp:external"}
    assert members(lab, LBG, "k8s-cluster-lbs") == {f"{ID}:udp:cluster"}


def test_session_affinity_modes_and_turning_affinity_off(lab: Lab, cluster: Any) -> None:
    sticky = inp(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    rec = ServiceReconciler(cluster, timeout=10)
    rec.sync({"default/web": sticky})
    lb = lbs(lab)[f"{ID}:tcp:cluster"]
    assert (lb["selection_fields"], lb["options"]) == ("ip_src", {})
    timeout = ServiceReconciler(cluster, timeout=10, affinity_mode=AffinityMode.TIMEOUT)
    timeout.sync({"default/web": sticky})
    lb = lbs(lab)[f"{ID}:tcp:cluster"]
    assert (lb["selection_fields"], lb["options"]) == ([], {"affinity_timeout": "600"})
    timeout.reconcile({"default/web": inp()})
    lb = lbs(lab)[f"{ID}:tcp:cluster"]
    assert (lb["selection_fields"], lb["options"]) == ([], {})
    rec.sync({"default/web": sticky})
    rec.reconcile({"default/web": inp()})
    lb = lbs(lab)[f"{ID}:tcp:cluster"]
    assert (lb["selection_fields"], lb["options"]) == ([], {})


def test_unchanged_reconcile_writes_nothing(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10)
    batch = {f"default/s{i}": inp(f"s{i}", ip=f"10.96.0.{10 + i}", type="NodePort",
                                  ports=[{"name": "http", "port": 80, "targetPort": 8080,
                                          "nodePort": 30000 + i}]) for i in range(20)}
    rec.sync(batch)
    done = rec.transactions
    before, version = nb_dump(lab), versions(lab)
    rec.reconcile(batch)
    for key, item in batch.items():
        rec.reconcile({key: item})
    assert rec.transactions == done
    assert nb_dump(lab) == before
    assert versions(lab) == version      # no row of ours was even rewritten
    # a restarted reconciler syncing the same services writes nothing either
    again = ServiceReconciler(cluster, timeout=10)
    again.sync(batch)
    again.reconcile(batch)
    assert again.transactions == 0
    assert nb_dump(lab) == before and versions(lab) == version


def test_sync_deletes_stale_services_and_duplicates_and_repairs_drift(lab: Lab, cluster: Any) -> None:
    first = ServiceReconciler(cluster, timeout=10)
    first.reconcile({"default/web": inp(), "default/old": inp("old", ip="10.96.0.11"),
                     "default/api": inp("api", ip="10.96.0.12")})
    api = lbs(lab)["service:default/api:tcp:cluster"]
    # a duplicate of web's load balancer (a crash between create and record, another writer)
    lab.nbctl("create", LB, "name=dup", 'vips:"10.96.0.10:80"="10.244.9.9:8080"',
              f'external_ids={{"ovn-k8s/owner"="{ID}","ovn-k8s/id"="{ID}:tcp:cluster"}}')
    # drift on api: a VIP changed by hand, and unlinked from its group
    lab.nbctl("set", LB, api["_uuid"], 'vips:"10.96.0.12:80"="10.244.9.9:1"', 'vips:"1.2.3.4:5"="6.7.8.9:10"')
    lab.nbctl("remove", LBG, "k8s-cluster-lbs", "load_balancer", api["_uuid"])
    # rows of other owners are never touched
    lab.nbctl("create", LB, "name=by-hand", 'vips:"10.0.0.1:1"="10.0.0.2:2"')
    lab.nbctl("create", LB, "name=tenant", 'external_ids={"ovn-k8s/owner"="tenant:t1","ovn-k8s/id"="x"}')
    nb_caught_up(cluster)
    rec = ServiceReconciler(cluster, timeout=10)
    rec.sync({"default/web": inp(), "default/api": inp("api", ip="10.96.0.12")})
    found = lbs(lab)
    ours = {i for i in found if i.startswith("service:")}
    assert ours == {f"{ID}:tcp:cluster", "service:default/api:tcp:cluster"}
    assert {r["name"] for r in found.values() if not r["external_ids"].get("ovn-k8s/owner", "").startswith(
        "service:")} == {"by-hand", "tenant"}
    assert found[f"{ID}:tcp:cluster"]["vips"] == {"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"}
    assert found["service:default/api:tcp:cluster"]["vips"] == {
        "10.96.0.12:80": "10.244.1.5:8080,10.244.2.5:8080"}
    assert found["service:default/api:tcp:cluster"]["_uuid"] == api["_uuid"]
    assert members(lab, LBG, "k8s-cluster-lbs") == ours
    # the applied cache was seeded: reconciling the same inputs writes nothing
    before = nb_dump(lab)
    rec.reconcile({"default/web": inp(), "default/api": inp("api", ip="10.96.0.12")})
    assert rec.transactions == 1 and nb_dump(lab) == before


def test_a_row_deleted_behind_our_back_is_recreated(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10)
    rec.reconcile({"default/web": inp()})
    lab.nbctl("destroy", LB, lbs(lab)[f"{ID}:tcp:cluster"]["_uuid"])
    nb_caught_up(cluster)
    rec.reconcile({"default/web": inp("web", "10.244.1.5")})
    assert lbs(lab)[f"{ID}:tcp:cluster"]["vips"] == {"10.96.0.10:80": "10.244.1.5:8080"}
    assert members(lab, LBG, "k8s-cluster-lbs") == {f"{ID}:tcp:cluster"}


def test_malformed_service_is_skipped_and_the_rest_applied(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10)
    rec.reconcile({"default/web": inp()})
    web_before = lbs(lab)[f"{ID}:tcp:cluster"]
    bad = ServiceInput(service(ports=[{"name": "http", "port": 0}]), slices("web"))
    with pytest.raises(InvalidServices) as err:
        rec.reconcile({"default/web": bad, "default/api": inp("api", ip="10.96.0.12"),
                       "default/wrong-key": inp("other", ip="10.96.0.13")})
    assert isinstance(err.value, InvalidObject)
    assert set(err.value.errors) == {"default/web", "default/wrong-key"}
    assert "spec.ports[0].port 0" in str(err.value)
    found = lbs(lab)
    assert set(found) == {f"{ID}:tcp:cluster", "service:default/api:tcp:cluster"}
    assert found[f"{ID}:tcp:cluster"] == web_before      # a bad update keeps the working rows
    # sync with the malformed service keeps its rows too, and still reports it
    with pytest.raises(InvalidServices):
        ServiceReconciler(cluster, timeout=10).sync({"default/web": bad,
                                                     "default/api": inp("api", ip="10.96.0.12")})
    assert set(lbs(lab)) == {f"{ID}:tcp:cluster", "service:default/api:tcp:cluster"}


def test_without_master_init_nothing_is_written(lab: Lab, nb: Any) -> None:
    before = nb_dump(lab)
    rec = ServiceReconciler(nb, timeout=10)
    with pytest.raises(NotReadyError, match="k8s-cluster-lbs"):
        rec.reconcile({"default/web": inp()})
    assert nb_dump(lab) == before
    add_master(nb)
    rec.reconcile({"default/web": inp()})   # the cache did not record the failed attempt
    assert set(lbs(lab)) == {f"{ID}:tcp:cluster"}


def test_refresh_gateways_follows_gateways_coming_and_going(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10)
    nodeport = [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]
    rec.sync({"default/web": inp(type="NodePort", ports=nodeport), "default/plain": inp("plain", ip="10.96.0.11")})
    add_gateway(cluster, 3)
    rec.refresh_gateways()
    found = lbs(lab)
    assert found[f"{ID}:tcp:nodeport:node3"]["vips"] == {"192.0.2.12:30080": "10.244.1.5:8080,10.244.2.5:8080"}
    assert members(lab, LR, "GR_node3") == {f"{ID}:tcp:nodeport:node3"}
    remove_gateway(cluster, 1)
    rec.refresh_gateways()
    assert {i for i in lbs(lab) if ":nodeport:" in i} == {f"{ID}:tcp:nodeport:node2", f"{ID}:tcp:nodeport:node3"}
    # nothing changed: no write
    done, before = rec.transactions, nb_dump(lab)
    rec.refresh_gateways()
    assert rec.transactions == done and nb_dump(lab) == before


def test_template_mode_one_nodeport_lb_and_a_template_var_per_gateway(lab: Lab, cluster: Any) -> None:
    rec = ServiceReconciler(cluster, timeout=10, nodeport_mode=NodePortMode.TEMPLATE)
    nodeport = [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]
    rec.sync({"default/web": inp(type="NodePort", ports=nodeport)})
    found = lbs(lab)
    assert set(found) == {f"{ID}:tcp:cluster", f"{ID}:tcp:nodeport"}
    assert found[f"{ID}:tcp:nodeport"]["vips"] == {"^NODEIP:30080": "10.244.1.5:8080,10.244.2.5:8080"}
    assert found[f"{ID}:tcp:nodeport"]["options"] == {"template": "true", "address-family": "ipv4"}
    assert members(lab, LBG, "k8s-gateway-lbs") == {f"{ID}:tcp:nodeport"}

    def template_vars() -> dict[str, dict[str, str]]:
        return {r["chassis"]: r["variables"] for r in rows(lab, CTV, "chassis", "variables")}

    assert template_vars() == {"chassis-1": {"NODEIP": "192.0.2.10"}, "chassis-2": {"NODEIP": "192.0.2.11"}}
    remove_gateway(cluster, 2)
    add_gateway(cluster, 3)
    rec.refresh_gateways()
    assert template_vars() == {"chassis-1": {"NODEIP": "192.0.2.10"}, "chassis-3": {"NODEIP": "192.0.2.12"}}
    # more gateways add no load balancers
    assert set(lbs(lab)) == {f"{ID}:tcp:cluster", f"{ID}:tcp:nodeport"}
    # back to one load balancer per gateway: sync converts the rows and drops the variables
    per_gw = ServiceReconciler(cluster, timeout=10)
    per_gw.sync({"default/web": inp(type="NodePort", ports=nodeport)})
    assert set(lbs(lab)) == {f"{ID}:tcp:cluster", f"{ID}:tcp:nodeport:node1", f"{ID}:tcp:nodeport:node3"}
    assert template_vars() == {}
    assert members(lab, LBG, "k8s-gateway-lbs") == set()


def test_one_transaction_per_batch_at_1k_services(lab: Lab, cluster: Any) -> None:
    """1000 NodePort services (3000 load balancers with two gateways): one transaction for the
    sync, one per changed key, none for an unchanged key, one for a changed batch. (How fast
    each of these is: bench/nb_engine_bench.py.)"""
    def item(i: int, backend: str) -> ServiceInput:
        return inp(f"s{i}", "10.244.1.5", backend, ip=f"10.96.{i // 250}.{i % 250 + 1}", type="NodePort",
                   ports=[{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30000 + i}])

    rec = ServiceReconciler(cluster, timeout=60)
    rec.sync({f"default/s{i}": item(i, "10.244.2.5") for i in range(1000)})
    assert rec.transactions == 1
    assert len(lbs(lab)) == 3000
    for i in range(200):
        rec.reconcile({f"default/s{i}": item(i, "10.244.2.6")})
    assert rec.transactions == 201
    version = versions(lab)
    for i in range(200):
        rec.reconcile({f"default/s{i}": item(i, "10.244.2.6")})
    assert rec.transactions == 201 and versions(lab) == version
    rec.reconcile({f"default/s{i}": item(i, "10.244.2.7") for i in range(1000)})
    assert rec.transactions == 202
    assert lbs(lab)["service:default/s999:tcp:nodeport:node2"]["vips"] == {
        "192.0.2.11:30999": "10.244.1.5:8080,10.244.2.7:8080"}


def test_sync_repairs_a_load_balancer_renamed_by_hand(lab: Lab, cluster: Any) -> None:
    """A load balancer's name written back in place: with ovsdbapp's default index on
    Load_Balancer.name, python-ovs 4.0 dropped the row from the IDL here (model.IDL_INDEXES)."""
    ServiceReconciler(cluster, timeout=10).reconcile({"default/web": inp()})
    uuid = lbs(lab)[f"{ID}:tcp:cluster"]["_uuid"]
    lab.nbctl("set", LB, uuid, "name=renamed-by-hand")
    wait_for(lambda: cluster.tables[LB].rows[uuidlib.UUID(uuid)].name == "renamed-by-hand", 5,
             "the IDL to see the rename")
    rec = ServiceReconciler(cluster, timeout=10)
    rec.sync({"default/web": inp()})
    lb = lbs(lab)[f"{ID}:tcp:cluster"]
    assert (lb["_uuid"], lb["name"]) == (uuid, "Service_default/web_TCP_cluster")
    # the IDL still holds the row: the next change is an in-place update of the same row
    rec.reconcile({"default/web": inp("web", "10.244.1.5")})
    lb = lbs(lab)[f"{ID}:tcp:cluster"]
    assert (lb["_uuid"], lb["vips"]) == (uuid, {"10.96.0.10:80": "10.244.1.5:8080"})
