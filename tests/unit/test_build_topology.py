"""Topology builders: names, addresses and ownership of every row (pure, table-style)."""

import netaddr

from ovn_k8s import naming
from ovn_k8s.desired import topology as t
from ovn_k8s.nb.model import Parent, Ref

CLUSTER = netaddr.IPNetwork("10.244.0.0/16")
JOIN = netaddr.IPNetwork("100.64.0.0/16")


def by_id(rows):  # type: ignore[no-untyped-def]
    return {(r.table, r.id): r for r in rows}


def test_master_rows() -> None:
    rows = by_id(t.master_rows(t.MasterSpec(master="m1", cluster_subnet=CLUSTER, join_subnet=JOIN)))
    assert set(rows) == {
        (t.LBG, "k8s-cluster-lbs"), (t.LBG, "k8s-gateway-lbs"), (t.LR, "cluster-router"),
        (t.LS, "join-switch"), (t.LRP, "rtoj-m1"), (t.LSP, "jtor-m1")}
    router = rows[(t.LR, "cluster-router")]
    assert router.columns["name"] == "m1"
    assert router.columns["external_ids"][naming.CLUSTER_ROUTER_MARK] == "yes"
    rtoj = rows[(t.LRP, "rtoj-m1")]
    assert rtoj.columns["networks"] == ["100.64.0.1/16"]
    assert rtoj.columns["mac"] == "0a:58:64:40:00:01"
    assert rtoj.parent == Parent(t.LR, "cluster-router", "ports")
    assert all(r.owner == "cluster" for r in rows.values())


def test_node_rows() -> None:
    rows = by_id(t.node_rows(t.NodeSpec(node="n2", subnet=netaddr.IPNetwork("10.244.2.0/24"))))
    ls = rows[(t.LS, "switch:n2")]
    assert ls.columns["other_config"] == {"subnet": "10.244.2.0/24"}
    assert ls.columns["external_ids"][naming.GATEWAY_IP_KEY] == "10.244.2.1/24"
    assert ls.columns["load_balancer_group"] == [Ref(t.LBG, naming.CLUSTER_LB_GROUP)]
    assert rows[(t.LRP, "rtos-n2")].columns["networks"] == ["10.244.2.1/24"]
    assert rows[(t.LSP, "stor-n2")].columns["options"] == {"router-port": "rtos-n2"}
    assert rows[(t.LSP, "k8s-n2")].columns["addresses"] == ["0a:58:0a:f4:02:02 10.244.2.2"]
    assert {r.owner for r in rows.values()} == {"node:n2"}


def spec(**kw):  # type: ignore[no-untyped-def]
    base = dict(node="g1", system_id="chassis-1", cluster_subnet=CLUSTER, join_subnet=JOIN,
                join_ip=netaddr.IPAddress("100.64.0.3"),
                physical_ip=netaddr.IPNetwork("192.0.2.10/24"), physical_mac="aa:bb:cc:dd:ee:ff",
                port_name="eth1")
    base.update(kw)
    return t.GatewaySpec(**base)


def test_gateway_rows() -> None:
    rows = by_id(t.gateway_rows(spec(default_gw=netaddr.IPAddress("192.0.2.1"),
                                     rampout_subnets=[netaddr.IPNetwork("10.244.5.0/24")])))
    gr = rows[(t.LR, "gateway-router:g1")]
    assert gr.columns["name"] == "GR_g1"
    assert gr.columns["options"] == {"chassis": "chassis-1", "lb_force_snat_ip": "100.64.0.3"}
    nat = rows[(t.NAT, "snat:g1")]
    assert (nat.columns["logical_ip"], nat.columns["external_ip"]) == ("10.244.0.0/16", "192.0.2.10")
    ecmp = rows[(t.ROUTE, "cluster:g1:default")]
    assert (ecmp.columns["ip_prefix"], ecmp.columns["nexthop"]) == ("0.0.0.0/0", "100.64.0.3")
    assert ecmp.parent == Parent(t.LR, "cluster-router", "static_routes")
    default = rows[(t.ROUTE, "gateway:g1:default")]
    assert default.columns["output_port"] == "rtoe-GR_g1"
    rampout = rows[(t.ROUTE, "cluster:g1:rampout:10.244.5.0/24")]
    assert rampout.columns["policy"] == "src-ip"
    assert rows[(t.LSP, "eth1_g1")].columns["addresses"] == ["unknown"]
    acl = rows[(t.ACL, "external-isolation:g1")]
    assert acl.columns["match"] == 'inport == "eth1_g1" && ip4.dst == 10.244.0.0/16'
    assert acl.columns["action"] == "drop" and acl.parent == Parent(t.LS, "external-switch:g1", "acls")
    assert rows[(t.LRP, "rtoe-GR_g1")].columns["mac"] == "aa:bb:cc:dd:ee:ff"
    assert {r.owner for r in rows.values()} == {"gateway:g1"}


def test_gateway_without_default_gw_has_no_default_route() -> None:
    assert (t.ROUTE, "gateway:g1:default") not in by_id(t.gateway_rows(spec()))
