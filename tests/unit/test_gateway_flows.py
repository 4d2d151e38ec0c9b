"""The gateway helper's pure parts: Service -> ServicePorts, the flow table as golden lists, the
bundle script, and the input checks (ofports, host address) with their error lines."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from gateway_helper.inputs import Iface, bridge_ports, choose_host_ip
from gateway_helper.services import parse
from ovn_k8s.errors import HostError
from ovn_k8s.netlink import Address
from ovn_k8s.openflow import (
    COOKIE,
    BridgePorts,
    ExternalPort,
    L4Port,
    ServicePorts,
    bundle_script,
    flow_table,
    gateway_flows,
)

HOST = "192.0.2.50"
PORTS = BridgePorts(nic=1, patch=2)
C = "cookie=0x6b38736777"


def svc(name: str, *, type_: str = "ClusterIP", ports: list[dict[str, Any]] | None = None,
        external_ips: list[str] | None = None, ingress: list[dict[str, str]] | None = None,
        namespace: str = "default") -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "ports": ports or []}
    if external_ips is not None:
        spec["externalIPs"] = external_ips
    obj: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
    if ingress is not None:
        obj["status"] = {"loadBalancer": {"ingress": ingress}}
    return obj


# --- Service -> ServicePorts -------------------------------------------------------------------
def test_nodeport_service_yields_its_node_ports_with_protocols_and_tcp_default() -> None:
    parsed = parse(svc("web", type_="NodePort", ports=[
        {"name": "http", "port": 80, "nodePort": 30080},
        {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
        {"name": "sig", "port": 9, "protocol": "SCTP", "nodePort": 30009}]))
    assert parsed == ServicePorts(key="default/web", node_ports=(
        L4Port("sctp", 30009), L4Port("tcp", 30080), L4Port("udp", 30053)))


def test_loadbalancer_service_yields_node_ports_and_its_ingress_and_external_ips() -> None:
    parsed = parse(svc("lb", type_="LoadBalancer", namespace="ns1",
                       ports=[{"name": "a", "port": 80, "nodePort": 31000},
                              {"name": "b", "port": 443, "nodePort": 31443}],
                       external_ips=["198.51.100.7", "2001:db8::7"],
                       ingress=[{"ip": "192.0.2.100"}, {"hostname": "lb.example.com"}]))
    assert parsed.key == "ns1/lb"
    assert parsed.node_ports == (L4Port("tcp", 31000), L4Port("tcp", 31443))
    assert parsed.external == (  # IPv6 left out: the gateway router is IPv4-only
        ExternalPort("192.0.2.100", "tcp", 80), ExternalPort("192.0.2.100", "tcp", 443),
        ExternalPort("198.51.100.7", "tcp", 80), ExternalPort("198.51.100.7", "tcp", 443))
    assert parsed.skipped == ()


def test_cluster_ip_service_has_no_node_ports_but_keeps_external_ips() -> None:
    # The API server clears nodePort on ClusterIP services; a stale one must not open a port.
    plain = parse(svc("db", ports=[{"port": 5432, "nodePort": 30432}]))
    assert plain.empty and plain.skipped == ()
    ext = parse(svc("db", ports=[{"port": 5432}], external_ips=["192.0.2.60"]))
    assert ext.node_ports == () and ext.external == (ExternalPort("192.0.2.60", "tcp", 5432),)


def test_services_without_a_load_balancer_in_ovn_get_no_flows() -> None:
    # allocateLoadBalancerNodePorts: false -> no nodePort fields, only the ingress.
    lb = parse(svc("lb", type_="LoadBalancer", ports=[{"port": 80}], ingress=[{"ip": "192.0.2.100"}]))
    assert lb.node_ports == () and lb.external == (ExternalPort("192.0.2.100", "tcp", 80),)
    headless = svc("h", ports=[{"port": 80}], external_ips=["192.0.2.61"])
    headless["spec"]["clusterIP"] = "None"
    assert parse(headless).empty
    name = svc("n", type_="ExternalName", ports=[{"port": 80}], external_ips=["192.0.2.61"])
    name["spec"]["externalName"] = "db.example.com"
    assert parse(name).empty


def test_a_malformed_service_gets_no_flows_and_says_why() -> None:
    parsed = parse(svc("odd", type_="NodePort", ports=[
        {"name": "weird", "port": 1, "protocol": "ICMP", "nodePort": 30001}]))
    assert parsed == ServicePorts(key="default/odd", skipped=(
        "service default/odd: spec.ports[0].protocol 'ICMP' is not TCP, UDP or SCTP",))
    bad_ip = parse(svc("ip", ports=[{"port": 1}], external_ips=["not-an-ip"]))
    assert bad_ip.empty and "is not an IP address" in bad_ip.skipped[0]


# --- the flow table -----------------------------------------------------------------------------
BASE = [
    f"{C},table=0,priority=50,arp,in_port=1,arp_op=2 actions=LOCAL,output:2",
    f"{C},table=0,priority=50,arp,in_port=2 actions=output:1",
    f"{C},table=0,priority=50,ip,in_port=1,nw_dst=192.0.2.50 actions=ct(table=1,zone=64000)",
    f"{C},table=0,priority=50,ip,in_port=2 actions=ct(commit,zone=64000),output:1",
    f"{C},table=0,priority=10,in_port=1 actions=LOCAL",
    f"{C},table=0,priority=10,in_port=2 actions=drop",
    f"{C},table=0,priority=10,in_port=LOCAL actions=output:1",
    f"{C},table=1,priority=100,ct_state=+est+trk,ip,in_port=1 actions=output:2",
    f"{C},table=1,priority=100,ct_state=+rel+trk,ip,in_port=1 actions=output:2",
    f"{C},table=1,priority=10,in_port=1 actions=LOCAL",
]


def test_without_services_the_table_splits_host_and_router_traffic_only() -> None:
    assert gateway_flows([], host_ip=HOST, ports=PORTS, zone=64000) == BASE


def test_nodeports_match_the_host_address_and_external_ips_their_own_with_arp() -> None:
    services = [
        parse(svc("web", type_="NodePort", ports=[
            {"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP", "nodePort": 30053},
            {"port": 9, "protocol": "SCTP", "nodePort": 30009}])),
        parse(svc("lb", type_="LoadBalancer", ports=[{"port": 443, "nodePort": 31443}],
                          ingress=[{"ip": "192.0.2.100"}])),
    ]
    to_ovn = "actions=ct(commit,zone=64000),output:2"
    assert gateway_flows(services, host_ip=HOST, ports=PORTS, zone=64000) == [
        f"{C},table=0,priority=100,arp,in_port=1,arp_tpa=192.0.2.100,arp_op=1 actions=LOCAL,output:2",
        f"{C},table=0,priority=100,sctp,in_port=1,nw_dst=192.0.2.50,tp_dst=30009 {to_ovn}",
        f"{C},table=0,priority=100,tcp,in_port=1,nw_dst=192.0.2.100,tp_dst=443 {to_ovn}",
        f"{C},table=0,priority=100,tcp,in_port=1,nw_dst=192.0.2.50,tp_dst=30080 {to_ovn}",
        f"{C},table=0,priority=100,tcp,in_port=1,nw_dst=192.0.2.50,tp_dst=31443 {to_ovn}",
        f"{C},table=0,priority=100,udp,in_port=1,nw_dst=192.0.2.50,tp_dst=30053 {to_ovn}",
        *BASE,
    ]


def test_ports_zone_and_cookie_are_inputs() -> None:
    services = [parse(svc("web", type_="NodePort", ports=[{"port": 80, "nodePort": 30080}]))]
    flows = gateway_flows(services, host_ip="10.0.0.5", ports=BridgePorts(nic=7, patch=3),
                          zone=7, cookie=0x99)
    assert flows[0] == ("cookie=0x99,table=0,priority=100,tcp,in_port=7,nw_dst=10.0.0.5,"
                        "tp_dst=30080 actions=ct(commit,zone=7),output:3")
    assert "cookie=0x99,table=0,priority=50,ip,in_port=7,nw_dst=10.0.0.5 " \
           "actions=ct(table=1,zone=7)" in flows
    assert all(f.startswith("cookie=0x99,") for f in flows)


def test_an_external_ip_equal_to_the_host_address_gets_no_arp_flow_and_duplicates_merge() -> None:
    services = [
        parse(svc("a", ports=[{"port": 8080}], external_ips=[HOST, "192.0.2.61"])),
        parse(svc("b", ports=[{"port": 8080}], external_ips=["192.0.2.61"])),
    ]
    flows = flow_table(services, host_ip=HOST, ports=PORTS, zone=64000)
    service_flows = [f.match for f in flows if f.priority == 100 and f.table == 0]
    assert service_flows == [
        "arp,in_port=1,arp_tpa=192.0.2.61,arp_op=1",
        "tcp,in_port=1,nw_dst=192.0.2.50,tp_dst=8080",
        "tcp,in_port=1,nw_dst=192.0.2.61,tp_dst=8080",
    ]


def test_the_table_does_not_depend_on_the_order_of_services() -> None:
    a = parse(svc("a", type_="NodePort", ports=[{"port": 1, "nodePort": 30001}]))
    b = parse(svc("b", ports=[{"port": 2}], external_ips=["192.0.2.70"]))
    assert gateway_flows([a, b], host_ip=HOST, ports=PORTS, zone=1) == \
        gateway_flows([b, a], host_ip=HOST, ports=PORTS, zone=1)


@pytest.mark.parametrize(("host_ip", "ports", "zone", "error"), [
    ("2001:db8::1", PORTS, 1, "not IPv4"),
    ("nonsense", PORTS, 1, "does not appear to be an IPv4 or IPv6 address"),
    (HOST, BridgePorts(nic=0, patch=2), 1, "NIC ofport 0"),
    (HOST, BridgePorts(nic=1, patch=65534), 1, "patch port ofport 65534"),
    (HOST, BridgePorts(nic=3, patch=3), 1, "same ofport"),
    (HOST, PORTS, 70000, "conntrack zone 70000"),
])
def test_impossible_inputs_raise(host_ip: str, ports: BridgePorts, zone: int, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        gateway_flows([], host_ip=host_ip, ports=ports, zone=zone)


# --- the bundle --------------------------------------------------------------------------------
def test_bundle_deletes_our_cookie_then_adds_every_flow() -> None:
    flows = gateway_flows([], host_ip=HOST, ports=PORTS, zone=64000)
    script = bundle_script(flows, COOKIE)
    lines = script.splitlines()
    assert lines[0] == "delete cookie=0x6b38736777/-1"
    assert lines[1:] == [f"add {f}" for f in flows]
    assert script.endswith("\n")
    assert bundle_script([], COOKIE) == "delete cookie=0x6b38736777/-1\n"


def test_bundle_refuses_a_flow_without_our_cookie() -> None:
    with pytest.raises(ValueError, match="without our cookie"):
        bundle_script(["cookie=0x1,table=0,priority=1,in_port=1 actions=drop"], COOKIE)
    with pytest.raises(ValueError, match="spans lines"):
        bundle_script([f"{C},table=0,priority=1,in_port=1 actions=drop\nadd x"], COOKIE)


# --- inputs ------------------------------------------------------------------------------------
def test_bridge_ports_come_from_the_snapshot() -> None:
    snap = {"eth1": Iface(1, None), "k8s-patch-breth1-br-int": Iface(4, None),
            "breth1": Iface(65534, None)}
    assert bridge_ports(snap, bridge="breth1", nic="eth1") == BridgePorts(nic=1, patch=4)


@pytest.mark.parametrize(("snapshot", "error"), [
    (None, "OVS bridge breth1 does not exist (ovn-k8s-util nics-to-bridge eth1 creates breth1)"),
    ({"k8s-patch-breth1-br-int": Iface(2, None)},
     "interface eth1 is not a port of OVS bridge breth1 (ovn-k8s-util nics-to-bridge eth1 puts "
     "it on breth1)"),
    ({"eth1": Iface(1, None)},
     "patch port k8s-patch-breth1-br-int is not a port of OVS bridge breth1: run ovn-k8s-overlay "
     "gateway-init --bridge-interface breth1 first"),
    ({"eth1": Iface(None, None), "k8s-patch-breth1-br-int": Iface(2, None)},
     "interface eth1 on OVS bridge breth1 has no OpenFlow port number yet"),
    ({"eth1": Iface(-1, "could not open network device eth1 (No such device)"),
      "k8s-patch-breth1-br-int": Iface(2, None)},
     "OVS could not add interface eth1 to bridge breth1 (ofport -1): could not open network "
     "device eth1 (No such device)"),
])
def test_missing_or_broken_ports_are_one_line_errors(snapshot: Any, error: str) -> None:
    with pytest.raises(HostError) as exc:
        bridge_ports(snapshot, bridge="breth1", nic="eth1")
    assert str(exc.value) == error


def addr(cidr: str, scope: int = 0, family: int = socket.AF_INET) -> Address:
    return Address(cidr=cidr, family=family, scope=scope, permanent=True)


def test_the_host_address_is_the_bridges_only_global_ipv4_address() -> None:
    assert choose_host_ip([addr("192.0.2.50/24"), addr("169.254.1.1/16", scope=253)],
                          bridge="breth1") == "192.0.2.50"
    two = [addr("192.0.2.50/24"), addr("192.0.2.51/24")]
    assert choose_host_ip(two, bridge="breth1", previous="192.0.2.51") == "192.0.2.51"
    with pytest.raises(HostError, match=r"several IPv4 addresses \(192.0.2.50, 192.0.2.51\): pass "
                                        "--physical-ip"):
        choose_host_ip(two, bridge="breth1")
    with pytest.raises(HostError, match="bridge breth1 has no IPv4 address"):
        choose_host_ip([], bridge="breth1", previous="192.0.2.50")
