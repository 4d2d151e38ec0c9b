import netaddr
import pytest

from ovn_k8s import ipam
from ovn_k8s.errors import ConfigError


@pytest.mark.parametrize("value, message", [
    ("10.244.0.0", "no prefix length"),
    ("10.244.0.0/33", "not a valid CIDR"),
    ("banana", "not a valid CIDR"),
    ("10.244.1.5/16", "host bits set; did you mean 10.244.0.0/16"),
    ("fd00::/64", "only IPv4"),
])
def test_parse_cidr_rejects(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ipam.parse_cidr(value, "--cluster-ip-subnet")


def test_parse_ip_with_mask() -> None:
    assert str(ipam.parse_ip_with_mask("192.0.2.2/24", "x")) == "192.0.2.2/24"
    for bad in ("192.0.2.2", "192.0.2.0/24", "192.0.2.255/24", "300.1.1.1/24"):
        with pytest.raises(ConfigError):
            ipam.parse_ip_with_mask(bad, "--physical-ip")


def test_node_addresses_and_mac() -> None:
    addrs = ipam.node_addresses(netaddr.IPNetwork("10.244.3.0/24"))
    assert (addrs.router_cidr, addrs.mgmt_cidr) == ("10.244.3.1/24", "10.244.3.2/24")
    assert ipam.mac_from_ip("10.244.3.2") == "0a:58:0a:f4:03:02"
    with pytest.raises(ConfigError, match="too small"):
        ipam.node_addresses(netaddr.IPNetwork("10.244.3.0/30"))


def test_check_node_subnet() -> None:
    cluster = netaddr.IPNetwork("10.244.0.0/16")
    ipam.check_node_subnet(netaddr.IPNetwork("10.244.2.0/24"), cluster,
                           [("a", netaddr.IPNetwork("10.244.1.0/24"))])
    with pytest.raises(ConfigError, match="not inside the cluster subnet"):
        ipam.check_node_subnet(netaddr.IPNetwork("10.245.0.0/24"), cluster, [])
    with pytest.raises(ConfigError, match="overlaps 10.244.0.0/23 of node a"):
        ipam.check_node_subnet(netaddr.IPNetwork("10.244.1.0/24"), cluster,
                               [("a", netaddr.IPNetwork("10.244.0.0/23"))])


def test_allocate_join_ip_first_free() -> None:
    join = netaddr.IPNetwork("100.64.0.0/29")
    used = [netaddr.IPAddress("100.64.0.2"), netaddr.IPAddress("100.64.0.4")]
    assert str(ipam.allocate_join_ip(join, used)) == "100.64.0.3"
    full = [netaddr.IPAddress(f"100.64.0.{i}") for i in range(2, 7)]
    with pytest.raises(ConfigError, match="no free address"):
        ipam.allocate_join_ip(join, full)


def test_join_address_keeps_a_valid_one_and_reallocates_otherwise() -> None:
    join = netaddr.IPNetwork("100.64.0.0/16")
    ip = netaddr.IPAddress
    assert ipam.join_address(join, ip("100.64.0.9"), [ip("100.64.0.2")]) == ip("100.64.0.9")
    # taken by another gateway, the router's own, outside the subnet, or none: lowest free
    assert ipam.join_address(join, ip("100.64.0.2"), [ip("100.64.0.2")]) == ip("100.64.0.3")
    assert ipam.join_address(join, ip("100.64.0.1"), []) == ip("100.64.0.2")
    assert ipam.join_address(join, ip("100.65.0.9"), []) == ip("100.64.0.2")
    assert ipam.join_address(join, None, [ip("100.64.0.2")]) == ip("100.64.0.3")


def test_join_address_among_the_gateway_ports_of_a_join_switch() -> None:
    join = netaddr.IPNetwork("100.64.0.0/16")
    ports = [("rtoj-GR_a", ["100.64.0.2/16"]), ("rtoj-GR_b", ["100.64.0.3/16"])]
    assert ipam.join_address_among(join, "rtoj-GR_b", ports) == netaddr.IPAddress("100.64.0.3")  # kept
    assert ipam.join_address_among(join, "rtoj-GR_c", ports) == netaddr.IPAddress("100.64.0.4")  # new
    # a port left outside a changed join subnet gets a new address; others' stale ones do not count
    moved = [("rtoj-GR_a", ["100.65.0.2/16"]), ("rtoj-GR_b", ["100.64.0.2/16"])]
    assert ipam.join_address_among(join, "rtoj-GR_a", moved) == netaddr.IPAddress("100.64.0.3")
