"""Mesos builders and names: every row's name, identity, owner and contents (pure)."""

import netaddr
import pytest

from ovn_k8s import naming
from ovn_k8s.desired import mesos as m
from ovn_k8s.desired.topology import ACL, LR, LRP, LS, LSP, NAT, ROUTE
from ovn_k8s.errors import ConfigError
from ovn_k8s.nb.model import Parent, Ref, by_name

JOIN = netaddr.IPNetwork("100.64.0.0/16")
NET = netaddr.IPNetwork("192.168.1.0/24")
CLUSTER = netaddr.IPNetwork("192.168.0.0/16")


def by_id(rows):  # type: ignore[no-untyped-def]
    out = {(r.table, r.id): r for r in rows}
    assert len(out) == len(rows), "two rows with one identity"
    return out


def test_names_are_unique_per_tenant_and_keep_the_originals_elsewhere() -> None:
    assert naming.tenant_router("coke") == "coke"
    assert naming.tenant_join_switch("coke") == "join_coke"
    assert naming.tenant_gateway_router("coke", "sys-1") == "GR_coke_sys-1"
    assert naming.tenant_external_switch("eth1", "sys-1") == "ext_eth1_sys-1"
    assert naming.task_port("eth0", "c0ffee") == "eth0_c0ffee"
    # the original's bare network switch name collided across tenants; ours does not
    assert naming.tenant_network_switch("coke", "web") != naming.tenant_network_switch("pepsi", "web")
    # and no two (tenant, network) pairs share a switch name, even with '-' and '_' around
    pairs = [("a-b", "c"), ("a", "b-c"), ("a", "b_c"), ("a-b", "c_d"), ("a", "b-c_d")]
    assert len({naming.tenant_network_switch(t, n) for t, n in pairs}) == len(pairs)
    assert naming.owner_tenant("coke") == "tenant:coke"
    assert naming.owner_network("coke", "web") == "network:coke/web"
    assert naming.owner_container("c0ffee", "eth0") == "container:c0ffee/eth0"


@pytest.mark.parametrize("bad", ["", "co_ke", "co/ke", "-coke", "co ke", "x" * 64])
def test_bad_tenant_names(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid tenant name"):
        naming.tenant_name(bad)


@pytest.mark.parametrize("bad", ["", "we/b", "_web", "w b"])
def test_bad_network_names(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid network name"):
        naming.network_name(bad)


def test_good_names_are_kept_as_given() -> None:
    assert naming.tenant_name(" Coke.EU-1 ") == "Coke.EU-1"
    assert naming.network_name("web_1.a-b") == "web_1.a-b"


def test_tenant_rows() -> None:
    rows = by_id(m.tenant_rows(m.TenantSpec(tenant="coke", join_subnet=JOIN)))
    assert set(rows) == {(LR, "tenant-router:coke"), (LS, "tenant-join:coke"), (LRP, "rtoj-coke"),
                         (LSP, "jtor-coke"), (m.LB, "tenant-lb:coke:tcp"), (m.LB, "tenant-lb:coke:udp")}
    assert {r.owner for r in rows.values()} == {"tenant:coke"}
    router = rows[(LR, "tenant-router:coke")]
    assert router.columns["name"] == "coke"
    assert router.members["external_ids"] == {naming.TENANT_KEY: "coke", naming.JOIN_SUBNET_KEY: "100.64.0.0/16"}
    assert rows[(LS, "tenant-join:coke")].columns["name"] == "join_coke"
    rtoj = rows[(LRP, "rtoj-coke")]
    assert rtoj.columns["networks"] == ["100.64.0.1/16"]
    assert rtoj.parent == Parent(LR, "tenant-router:coke", "ports")
    # not connect_to_join: the Kubernetes join allocator counts every such port as taken
    assert naming.CONNECT_TO_JOIN_MARK not in rtoj.columns["external_ids"]
    jtor = rows[(LSP, "jtor-coke")]
    assert jtor.columns["options"] == {"router-port": "rtoj-coke"}
    assert jtor.parent == Parent(LS, "tenant-join:coke", "ports")
    lb = rows[(m.LB, "tenant-lb:coke:udp")]
    assert lb.columns["name"] == "lb_coke_udp" and lb.columns["protocol"] == "udp"
    # publish owns the VIPs: re-running tenant-init must not reset them
    assert "vips" not in lb.columns


def test_network_rows() -> None:
    rows = by_id(m.network_rows(m.NetworkSpec(tenant="coke", network="coke1", subnet=NET)))
    assert set(rows) == {(LS, "tenant-network:coke/coke1"), (LRP, "rtos-coke_coke1"),
                         (LSP, "stor-coke_coke1")}
    assert {r.owner for r in rows.values()} == {"network:coke/coke1"}
    ls = rows[(LS, "tenant-network:coke/coke1")]
    assert ls.columns["name"] == "coke_coke1"
    assert ls.members["other_config"] == {"subnet": "192.168.1.0/24"}
    assert ls.members["external_ids"] == {naming.TENANT_KEY: "coke", naming.NETWORK_KEY: "coke1",
                                          naming.GATEWAY_IP_KEY: "192.168.1.1/24"}
    rtos = rows[(LRP, "rtos-coke_coke1")]
    assert rtos.columns["networks"] == ["192.168.1.1/24"]
    assert rtos.columns["mac"] == "0a:58:c0:a8:01:01"
    assert rtos.parent == Parent(LR, "tenant-router:coke", "ports")
    assert rows[(LSP, "stor-coke_coke1")].parent == Parent(LS, "tenant-network:coke/coke1", "ports")


def test_network_too_small() -> None:
    with pytest.raises(ConfigError, match="too small"):
        m.network_rows(m.NetworkSpec(tenant="t", network="n", subnet=netaddr.IPNetwork("10.0.0.0/31")))
    assert m.check_network_subnet(netaddr.IPNetwork("10.0.0.0/30")).router_ip == netaddr.IPAddress("10.0.0.1")


def gw_spec(**kw):  # type: ignore[no-untyped-def]
    base = dict(tenant="coke", system_id="sys-1", cluster_subnet=CLUSTER, join_subnet=JOIN,
                join_ip=netaddr.IPAddress("100.64.0.3"), physical_ip=netaddr.IPNetwork("192.0.2.10/24"),
                physical_mac="0a:58:c0:00:02:0a", port_name="eth1")
    base.update(kw)
    return m.GatewaySpec(**base)


def test_gateway_rows() -> None:
    rows = by_id(m.gateway_rows(gw_spec(default_gw=netaddr.IPAddress("192.0.2.1"))))
    assert {r.owner for r in rows.values()} == {"tenant-gateway:coke/sys-1"}
    gr = rows[(LR, "tenant-gateway-router:coke/sys-1")]
    assert gr.columns["name"] == "GR_coke_sys-1"
    assert gr.members["options"] == {"chassis": "sys-1", "lb_force_snat_ip": "100.64.0.3"}
    assert gr.members["external_ids"][naming.PHYSICAL_IP_KEY] == "192.0.2.10"
    assert gr.members["external_ids"][naming.CLUSTER_SUBNET_KEY] == "192.168.0.0/16"
    assert set(gr.columns) == {"name"}     # the rest is shared with users: written by mutation
    assert gr.members["load_balancer"] == (Ref(m.LB, "tenant-lb:coke:tcp"), Ref(m.LB, "tenant-lb:coke:udp"))
    assert rows[(LRP, "rtoj-GR_coke_sys-1")].columns["networks"] == ["100.64.0.3/16"]
    assert rows[(LSP, "jtor-GR_coke_sys-1")].parent == Parent(LS, "tenant-join:coke", "ports")
    rtoe = rows[(LRP, "rtoe-GR_coke_sys-1")]
    assert rtoe.columns["networks"] == ["192.0.2.10/24"]
    assert rtoe.columns["mac"] == "0a:58:c0:00:02:0a"
    assert rows[(LSP, "etor-GR_coke_sys-1")].parent == Parent(LS, "tenant-external-switch:sys-1/eth1", "ports")
    acl = rows[(ACL, "tenant-isolation:coke/sys-1")]
    assert acl.columns["match"] == 'inport == "eth1_sys-1" && ip4.dst == 192.168.0.0/16'
    assert acl.columns["action"] == "drop"
    nat = rows[(NAT, "tenant-snat:coke/sys-1")]
    assert (nat.columns["type"], nat.columns["logical_ip"], nat.columns["external_ip"]) == \
        ("snat", "192.168.0.0/16", "192.0.2.10")
    routes = {rid: (r.columns["ip_prefix"], r.columns["nexthop"], r.parent.id)
              for (table, rid), r in rows.items() if table == ROUTE}
    assert routes == {
        "tenant-gateway:coke/sys-1:cluster": ("192.168.0.0/16", "100.64.0.1", "tenant-gateway-router:coke/sys-1"),
        "tenant-gateway:coke/sys-1:default": ("0.0.0.0/0", "192.0.2.1", "tenant-gateway-router:coke/sys-1"),
        "tenant-router:coke/sys-1:default": ("0.0.0.0/0", "100.64.0.3", "tenant-router:coke")}
    assert rows[(ROUTE, "tenant-gateway:coke/sys-1:default")].columns["output_port"] == "rtoe-GR_coke_sys-1"


def test_gateway_without_default_gw_has_no_default_route_on_the_gateway() -> None:
    rows = by_id(m.gateway_rows(gw_spec()))
    assert (ROUTE, "tenant-gateway:coke/sys-1:default") not in rows
    assert (ROUTE, "tenant-router:coke/sys-1:default") in rows


def test_two_tenants_gateways_on_one_chassis_share_only_the_external_switch() -> None:
    coke = by_id(m.gateway_rows(gw_spec()))
    pepsi = by_id(m.gateway_rows(gw_spec(tenant="pepsi", physical_ip=netaddr.IPNetwork("192.0.2.11/24"))))
    assert not set(coke) & set(pepsi)
    parents = {r.parent.id for r in [*coke.values(), *pepsi.values()] if r.parent and r.parent.table == LS}
    assert "tenant-external-switch:sys-1/eth1" in parents
    ext = by_id(m.external_rows("sys-1", "eth1"))
    assert set(ext) == {(LS, "tenant-external-switch:sys-1/eth1"), (LSP, "eth1_sys-1")}
    assert {r.owner for r in ext.values()} == {"tenant-external:sys-1/eth1"}
    assert ext[(LS, "tenant-external-switch:sys-1/eth1")].columns["name"] == "ext_eth1_sys-1"
    assert ext[(LSP, "eth1_sys-1")].columns["addresses"] == ["unknown"]


def test_task_port_row() -> None:
    row = m.task_port_row(m.TaskPortSpec(tenant="coke", network="coke1", container_id="c0ffee",
                                         ifname="eth0", ip=netaddr.IPAddress("192.168.1.7"),
                                         mac="0a:58:c0:a8:01:07"))
    assert (row.table, row.id, row.owner) == (LSP, "eth0_c0ffee", "container:c0ffee/eth0")
    assert row.columns["addresses"] == ["0a:58:c0:a8:01:07 192.168.1.7"]
    assert row.columns["port_security"] == ["0a:58:c0:a8:01:07 192.168.1.7"]
    assert row.parent == Parent(LS, "tenant-network:coke/coke1", "ports")
    assert row.columns["external_ids"][naming.CONTAINER_KEY] == "c0ffee"


def test_task_port_name_and_a_port_on_a_switch_made_by_hand() -> None:
    assert m.task_port_name("coke_coke1", "eth0", "c0ffee") == "eth0_c0ffee"
    assert m.task_port_name("coke1", "eth0", "c0ffee", "1234") == "coke1_1234"
    row = m.task_port_row(m.TaskPortSpec(tenant=None, network="coke1", container_id="c0ffee",
                                         ifname="eth0", ip=netaddr.IPAddress("192.168.7.2"),
                                         mac="0a:58:c0:a8:07:02", name="coke1_1234",
                                         switch_id=by_name("coke1")))
    assert (row.id, row.owner) == ("coke1_1234", "container:c0ffee/eth0")
    assert row.parent == Parent(LS, "name:coke1", "ports")
    assert naming.TENANT_KEY not in row.columns["external_ids"]


def test_allocate_task_ip() -> None:
    addrs = m.NetworkAddresses(NET)
    ip = netaddr.IPAddress
    assert m.allocate_task_ip(addrs, []) == ip("192.168.1.2")
    assert m.allocate_task_ip(addrs, [ip("192.168.1.1"), ip("192.168.1.2")]) == ip("192.168.1.3")
    # a re-ADD keeps its address; a taken or out-of-range current one is replaced
    assert m.allocate_task_ip(addrs, [ip("192.168.1.2")], ip("192.168.1.9")) == ip("192.168.1.9")
    assert m.allocate_task_ip(addrs, [ip("192.168.1.9")], ip("192.168.1.9")) == ip("192.168.1.2")
    assert m.allocate_task_ip(addrs, [], ip("192.168.1.255")) == ip("192.168.1.2")
    assert m.allocate_task_ip(addrs, [], ip("192.168.1.1")) == ip("192.168.1.2")
    small = m.NetworkAddresses(netaddr.IPNetwork("10.0.0.0/30"))
    assert m.allocate_task_ip(small, []) == ip("10.0.0.2")
    with pytest.raises(ConfigError, match="no free address"):
        m.allocate_task_ip(small, [ip("10.0.0.2")])


def test_parse_port_addresses() -> None:
    got = m.parse_port_addresses(["0a:58:c0:a8:01:02 192.168.1.2", "router", "unknown",
                                  "0a:00:00:00:00:01 10.0.0.5/24 fe80::1", "dynamic"])
    assert got == [netaddr.IPAddress("192.168.1.2"), netaddr.IPAddress("10.0.0.5")]


def test_endpoints() -> None:
    assert m.parse_endpoint(" 192.0.2.10:080 ", "--vip") == "192.0.2.10:80"
    assert m.parse_backends("192.168.1.3:80,192.168.1.2:80,192.168.1.3:80") == "192.168.1.2:80,192.168.1.3:80"
    for bad in ("192.0.2.10", "192.0.2.10:0", "192.0.2.10:70000", "host:80", "[::1]:80"):
        with pytest.raises(ConfigError):
            m.parse_endpoint(bad, "--vip")
    with pytest.raises(ConfigError, match="at least one"):
        m.parse_backends(" , ")
