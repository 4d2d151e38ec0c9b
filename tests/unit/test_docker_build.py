"""ovn_k8s.desired.docker: the Docker integration's pure rows and address choices."""

from __future__ import annotations

import netaddr
import pytest

from ovn_k8s.desired import docker as build
from ovn_k8s.errors import ConfigError
from ovn_k8s.nb.model import Parent

NET = netaddr.IPNetwork("192.168.1.0/24")


@pytest.mark.parametrize(("text", "message"), [
    ("192.168.1.0", "not an IPv4 CIDR"), ("banana/24", "not an IPv4 CIDR"), (None, "not an IPv4 CIDR"),
    ("fd00::/64", "only IPv4"), ("10.0.0.0/31", "too small")])
def test_parse_subnet_refuses_with_one_line(text: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build.parse_subnet(text)


def test_parse_subnet_is_canonical() -> None:
    assert build.parse_subnet("10.1.2.0/24") == netaddr.IPNetwork("10.1.2.0/24")


@pytest.mark.parametrize(("text", "message"), [
    ("192.168.2.5", "not a host address"), ("192.168.1.0", "not a host address"),
    ("192.168.1.255", "not a host address"), ("192.168.1.5/16", "prefix length"), ("x", "not an IPv4")])
def test_parse_ip_wants_a_host_address_of_the_subnet(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build.parse_ip(text, NET, "address")
    assert build.parse_ip("192.168.1.7/24", NET, "address") == netaddr.IPAddress("192.168.1.7")


def test_parse_mac_wants_unicast() -> None:
    assert build.parse_mac("02:AA:00:00:00:01") == "02:aa:00:00:00:01"
    for bad in ("01:00:00:00:00:01", "02:00:00:00:00", "zz:00:00:00:00:01"):
        with pytest.raises(ConfigError):
            build.parse_mac(bad)


def test_lowest_free_skips_used_and_ends_with_one_line() -> None:
    small = netaddr.IPNetwork("10.0.0.0/30")
    assert build.lowest_free(NET, [netaddr.IPAddress("192.168.1.1")]) == netaddr.IPAddress("192.168.1.2")
    assert build.lowest_free(small, [netaddr.IPAddress("10.0.0.1")]) == netaddr.IPAddress("10.0.0.2")
    with pytest.raises(ConfigError, match="no free address"):
        build.lowest_free(small, [netaddr.IPAddress("10.0.0.1"), netaddr.IPAddress("10.0.0.2")])


def test_lowest_free_tag() -> None:
    assert build.lowest_free_tag([]) == 1
    assert build.lowest_free_tag([1, 2, 4]) == 3
    with pytest.raises(ConfigError):
        build.lowest_free_tag(range(1, 4095))


def test_switch_rows_with_a_router_and_two_docker_networks() -> None:
    spec = build.SwitchSpec(name="ls0", subnet=NET, gateway=netaddr.IPAddress("192.168.1.1"), router="r0",
                            networks={"n1": "h1", "n2": "h2"}, exclude=("192.168.1.10",))
    ls, lrp, lsp = build.switch_rows(spec)
    assert ls.columns["other_config"] == {"subnet": "192.168.1.0/24", "exclude_ips": "192.168.1.10"}
    assert ls.columns["external_ids"]["gateway_ip"] == "192.168.1.1/24"
    assert ls.columns["external_ids"]["ovn-k8s/docker-net:n2"] == "h2"
    assert lrp.parent == Parent("Logical_Router", "docker-router:r0", "ports")
    assert lrp.columns["networks"] == ["192.168.1.1/24"]
    assert lsp.columns["options"] == {"router-port": "rtos-ls0"}
    assert {r.owner for r in (ls, lrp, lsp)} == {"docker-switch:ls0"}


def test_endpoint_rows_overlay_and_underlay() -> None:
    ip = netaddr.IPAddress("192.168.1.2")
    (port,) = build.endpoint_rows(build.EndpointSpec(name="e1", switch="ls0", ip=ip, prefixlen=24,
                                                     mac=build.endpoint_mac(ip), network_id="n1", host="h1"))
    assert port.columns["addresses"] == ["0a:58:c0:a8:01:02 192.168.1.2"] == port.columns["port_security"]
    assert "parent_name" not in port.columns and port.owner == "docker-endpoint:e1"
    (child,) = build.endpoint_rows(build.EndpointSpec(name="e2", switch="ls0", ip=ip, prefixlen=24,
                                                      mac="02:00:00:00:00:02", parent="vm1", tag=3))
    assert child.columns["parent_name"] == "vm1" and child.columns["tag_request"] == 3
    with pytest.raises(ConfigError, match="VLAN tag"):
        build.endpoint_rows(build.EndpointSpec(name="e3", switch="ls0", ip=ip, prefixlen=24,
                                               mac="02:00:00:00:00:03", parent="vm1", tag=None))


def test_gateway_router_rows() -> None:
    gw = build.GatewaySpec(chassis="h1", nic="eth1", ip=netaddr.IPNetwork("192.0.2.10/24"),
                           next_hop=netaddr.IPAddress("192.0.2.1"))
    rows = {r.table: r for r in build.router_rows("r0", gw)}
    assert rows["Logical_Router"].columns["options"] == {"chassis": "h1"}
    assert rows["NAT"].columns == {"type": "snat", "external_ip": "192.0.2.10", "logical_ip": "0.0.0.0/0"}
    assert rows["Logical_Router_Static_Route"].columns["nexthop"] == "192.0.2.1"
    assert build.router_rows("r0") == [build.router_rows("r0")[0]]
    assert list(build.router_rows("r0")[0].columns) == ["name"]    # a user of the router leaves its gateway alone


def test_reservation_rows_one_per_switch() -> None:
    ip = netaddr.IPAddress("192.168.1.9")
    rows = build.reservation_rows("h1", NET, ip, 1000.0, ["a", "b"])
    assert [r.parent.id for r in rows if r.parent] == ["docker-switch:a", "docker-switch:b"]
    assert {r.owner for r in rows} == {"docker-reservation:h1/192.168.1.0/24/192.168.1.9"}
    assert all("addresses" not in r.columns for r in rows)
