"""Docker networks and endpoints as desired NB rows (pure): the libnetwork driver's and
ovn-container's topology, and the address choices made from what the NB holds.

    containers -- LS <switch>   (name: the -o switch=NAME option, else the Docker NetworkID;
                   |             other_config:subnet, external_ids gateway_ip/subnet as the
                   |             original driver; one key per Docker network using it, on any host)
                   | stor-<switch> / rtos-<switch> (the network's gateway address), only with a router
                 LR <router>    (-o router=NAME; shared by the networks that name it)

Endpoint ports are named by the Docker EndpointID (the original driver's naming) or, for
ovn-container, by a UUID; their addresses are static "MAC IP" and port security is the same.
Underlay (container-in-VM) ports add `parent_name` (the VM's port) and a VLAN `tag`.

Ownership (external_ids ovn-k8s/owner): `docker-switch:<switch>` for the switch and its router
ports, `docker-endpoint:<id>` for an endpoint port, `docker-router:<router>` for the router.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import netaddr

from ovn_k8s import ipam
from ovn_k8s.errors import ConfigError
from ovn_k8s.nb.model import Parent, Ref, Row

LS, LSP, LR, LRP = "Logical_Switch", "Logical_Switch_Port", "Logical_Router", "Logical_Router_Port"

OWNER_SWITCH = "docker-switch:"
OWNER_ENDPOINT = "docker-endpoint:"
OWNER_ROUTER = "docker-router:"
OWNER_RESERVATION = "docker-reservation:"

# external_ids keys
GATEWAY_IP_KEY = "gateway_ip"             # on the switch: <gateway>/<len> (the original's key)
SUBNET_KEY = "subnet"                     # on the switch: the pool (the original's key)
ROUTER_KEY = "ovn-k8s/docker-router"      # on the switch: the router it is connected to
NETWORK_PREFIX = "ovn-k8s/docker-net:"    # on the switch, one per Docker network: = system-id
CREATED_BY_KEY = "ovn-k8s/created-by"     # "ovn-container" on its networks and endpoints
NETWORK_KEY = "ovn-k8s/docker-network"    # on an endpoint port: the Docker NetworkID
HOST_KEY = "ovn-k8s/docker-host"          # on an endpoint port: the system-id it was made on
IP_KEY = "ovn-k8s/ip"                     # on an endpoint port: <ip>/<len>
NAME_KEY = "ovn-k8s/name"                 # on an ovn-container endpoint: its name
CONTAINER_KEY = "ovn-k8s/container"       # on an ovn-container endpoint: its network container
OVN_CONTAINER = "ovn-container"
RESERVED_IP_KEY = "ovn-k8s/reserved-ip"        # on a reservation port: the address held
RESERVED_UNTIL_KEY = "ovn-k8s/reserved-until"  # and until when (Unix time)

MIN_PREFIX = 30          # a gateway address and at least one endpoint
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def switch_owner(switch: str) -> str:
    return f"{OWNER_SWITCH}{switch}"


def endpoint_owner(endpoint: str) -> str:
    return f"{OWNER_ENDPOINT}{endpoint}"


def router_owner(router: str) -> str:
    return f"{OWNER_ROUTER}{router}"


def switch_id(switch: str) -> str:
    return f"docker-switch:{switch}"


def router_id(router: str) -> str:
    return f"docker-router:{router}"


def network_key(network_id: str) -> str:
    return f"{NETWORK_PREFIX}{network_id}"


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ConfigError(f"{what} {value!r} is not a valid name (letters, digits, '_', '.', "
                          "'-'; at most 64 characters)")
    return value


def parse_subnet(text: object, what: str = "subnet") -> netaddr.IPNetwork:
    """An IPv4 network with room for a gateway and endpoints, as its canonical CIDR."""
    if not isinstance(text, str) or "/" not in text:
        raise ConfigError(f"{what} {text!r} is not an IPv4 CIDR like 192.168.1.0/24")
    try:
        net = netaddr.IPNetwork(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{what} {text!r} is not an IPv4 CIDR like 192.168.1.0/24") from None
    if net.version != 4:
        raise ConfigError(f"{what} {text}: only IPv4 is supported")
    if net.prefixlen > MIN_PREFIX:
        raise ConfigError(f"{what} {text} is too small (/{MIN_PREFIX} or larger)")
    return net.cidr


def parse_ip(text: object, subnet: netaddr.IPNetwork, what: str) -> netaddr.IPAddress:
    """A host address of `subnet` (an optional /len must be the subnet's)."""
    raw = str(text) if isinstance(text, str) else ""
    addr, _, plen = raw.partition("/")
    try:
        ip = netaddr.IPAddress(addr)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ConfigError(f"{what} {text!r} is not an IPv4 address") from None
    if ip.version != 4:
        raise ConfigError(f"{what} {text}: only IPv4 is supported")
    if plen and plen != str(subnet.prefixlen):
        raise ConfigError(f"{what} {text} does not have the prefix length of {subnet}")
    if ip not in subnet or ip in (subnet.network, subnet.broadcast):
        raise ConfigError(f"{what} {ip} is not a host address of {subnet}")
    return ip


def parse_mac(text: object, what: str = "MAC address") -> str:
    raw = str(text).lower() if isinstance(text, str) else ""
    if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", raw) or int(raw[:2], 16) & 1:
        raise ConfigError(f"{what} {text!r} is not a unicast MAC address like 02:00:00:00:00:01")
    return raw


def gateway_ip(subnet: netaddr.IPNetwork) -> netaddr.IPAddress:
    """The default gateway address of a network: its first host (Docker's choice too)."""
    return subnet.network + 1


def endpoint_mac(ip: netaddr.IPAddress) -> str:
    return ipam.mac_from_ip(ip)


def ips_in(addresses: Iterable[str]) -> list[netaddr.IPAddress]:
    """IPv4 addresses in LSP `addresses` strings ("mac ip [ip...]"; "unknown", "router" skipped)."""
    out = []
    for value in addresses:
        for token in str(value).split()[1:]:
            try:
                ip = netaddr.IPAddress(token.split("/")[0])
            except (netaddr.AddrFormatError, ValueError):
                continue
            if ip.version == 4:
                out.append(ip)
    return out


def exclude_ranges(text: str) -> list[netaddr.IPAddress]:
    """The addresses of an `other_config:exclude_ips` value ("a b..c ...")."""
    out: list[netaddr.IPAddress] = []
    for item in str(text or "").split():
        lo, _, hi = item.partition("..")
        try:
            first, last = netaddr.IPAddress(lo), netaddr.IPAddress(hi or lo)
        except (netaddr.AddrFormatError, ValueError):
            continue
        out.extend(netaddr.IPAddress(i) for i in range(int(first), min(int(last), int(first) + 65536) + 1))
    return out


def lowest_free(subnet: netaddr.IPNetwork, used: Iterable[netaddr.IPAddress]) -> netaddr.IPAddress:
    taken = {int(ip) for ip in used}
    for candidate in range(subnet.first + 1, subnet.last):
        if candidate not in taken:
            return netaddr.IPAddress(candidate)
    raise ConfigError(f"no free address left in {subnet}")


# --- rows ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SwitchSpec:
    """A network switch and everything that uses it (merged from the NB by the caller)."""

    name: str
    subnet: netaddr.IPNetwork
    gateway: netaddr.IPAddress
    router: str | None = None
    networks: Mapping[str, str] = field(default_factory=dict)   # Docker NetworkID -> system-id
    exclude: tuple[str, ...] = ()                              # aux addresses kept from endpoints
    created_by: str | None = None                               # OVN_CONTAINER or None


def switch_rows(spec: SwitchSpec) -> list[Row]:
    """The switch, and with a router its router-type port and the router's port (the gateway)."""
    owner = switch_owner(spec.name)
    ids = {GATEWAY_IP_KEY: f"{spec.gateway}/{spec.subnet.prefixlen}", SUBNET_KEY: str(spec.subnet),
           **{network_key(n): host for n, host in spec.networks.items()}}
    if spec.router:
        ids[ROUTER_KEY] = spec.router
    if spec.created_by:
        ids[CREATED_BY_KEY] = spec.created_by
    other = {"subnet": str(spec.subnet)}
    excluded = sorted(set(spec.exclude), key=lambda s: netaddr.IPAddress(s.split("..")[0]))
    if excluded:
        other["exclude_ips"] = " ".join(excluded)
    rows = [Row(LS, switch_id(spec.name), owner, {"name": spec.name, "other_config": other,
                                                   "external_ids": ids})]
    if spec.router:
        mac = ipam.mac_from_ip(spec.gateway)
        lrp = f"rtos-{spec.name}"
        rows.append(Row(LRP, lrp, owner, {
            "name": lrp, "mac": mac, "networks": [f"{spec.gateway}/{spec.subnet.prefixlen}"]},
            parent=Parent(LR, router_id(spec.router), "ports")))
        rows.append(Row(LSP, f"stor-{spec.name}", owner, {
            "name": f"stor-{spec.name}", "type": "router", "addresses": ["router"],
            "options": {"router-port": lrp}}, parent=Parent(LS, switch_id(spec.name), "ports")))
    return rows


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """Egress for every network on a router: the router becomes a gateway router on `chassis`,
    whose NIC `nic` (a port of that host's br-int) is its leg on the physical network with
    address `ip`; traffic leaves SNATed to that address, with a default route via `next_hop`."""

    chassis: str
    nic: str
    ip: netaddr.IPNetwork       # address/len on the physical network
    next_hop: netaddr.IPAddress


def gateway_nic_port(router: str) -> str:
    """The logical port the gateway host's NIC binds (its iface-id)."""
    return f"nic-{router}"


def router_rows(router: str, gateway: GatewaySpec | None = None) -> list[Row]:
    """The router; with `gateway`: its chassis, external switch, NIC port, SNAT and default route
    (the router scope's rows: applied only by the host that declares the gateway)."""
    owner = router_owner(router)
    rid = router_id(router)
    if gateway is None:
        return [Row(LR, rid, owner, {"name": router})]
    ext, rtoe, etor = f"ext-{router}", f"rtoe-{router}", f"etor-{router}"
    ext_id = f"docker-external:{router}"
    return [
        Row(LR, rid, owner, {"name": router, "options": {"chassis": gateway.chassis}}),
        Row(LS, ext_id, owner, {"name": ext}),
        Row(LRP, rtoe, owner, {"name": rtoe, "mac": ipam.mac_from_ip(gateway.ip.ip),
                               "networks": [str(gateway.ip)]}, parent=Parent(LR, rid, "ports")),
        Row(LSP, etor, owner, {"name": etor, "type": "router", "addresses": ["router"],
                               "options": {"router-port": rtoe}}, parent=Parent(LS, ext_id, "ports")),
        Row(LSP, gateway_nic_port(router), owner, {"name": gateway_nic_port(router),
                                                   "addresses": ["unknown"]},
            parent=Parent(LS, ext_id, "ports")),
        Row("NAT", f"docker-snat:{router}", owner, {"type": "snat", "external_ip": str(gateway.ip.ip),
                                                    "logical_ip": "0.0.0.0/0"},
            parent=Parent(LR, rid, "nat")),
        Row("Logical_Router_Static_Route", f"docker-default:{router}", owner, {
            "ip_prefix": "0.0.0.0/0", "nexthop": str(gateway.next_hop), "output_port": rtoe},
            parent=Parent(LR, rid, "static_routes")),
    ]


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    name: str                     # the logical port (and iface-id)
    switch: str
    ip: netaddr.IPAddress
    prefixlen: int
    mac: str
    network_id: str | None = None  # the Docker NetworkID it was made for
    host: str | None = None        # system-id of the host that made it
    parent: str | None = None      # underlay: the VM's logical port
    tag: int | None = None         # underlay: the VLAN tag behind the parent
    created_by: str | None = None
    display_name: str | None = None
    container: str | None = None   # ovn-container: the network container holding it


def endpoint_rows(spec: EndpointSpec) -> list[Row]:
    addresses = f"{spec.mac} {spec.ip}"
    ids = {IP_KEY: f"{spec.ip}/{spec.prefixlen}"}
    if spec.network_id:
        ids[NETWORK_KEY] = spec.network_id
    if spec.host:
        ids[HOST_KEY] = spec.host
    if spec.created_by:
        ids[CREATED_BY_KEY] = spec.created_by
    if spec.display_name:
        ids[NAME_KEY] = spec.display_name
    if spec.container:
        ids[CONTAINER_KEY] = spec.container
    columns: dict[str, object] = {"name": spec.name, "addresses": [addresses],
                                  "port_security": [addresses], "external_ids": ids}
    if spec.parent is not None:
        if spec.tag is None or not 1 <= spec.tag <= 4094:
            raise ConfigError(f"endpoint {spec.name}: a child port needs a VLAN tag 1-4094")
        columns["parent_name"] = spec.parent
        columns["tag_request"] = spec.tag
    return [Row(LSP, spec.name, endpoint_owner(spec.name), columns,
                parent=Parent(LS, switch_id(spec.switch), "ports"))]


def lowest_free_tag(used: Iterable[int]) -> int:
    """The VLAN tag of a new child port behind a parent: the lowest one its siblings lack."""
    taken = set(used)
    for tag in range(1, 4095):
        if tag not in taken:
            return tag
    raise ConfigError("no VLAN tag left behind this parent port (4094 in use)")


def reservation_owner(host: str, subnet: netaddr.IPNetwork, ip: netaddr.IPAddress) -> str:
    return f"{OWNER_RESERVATION}{host}/{subnet}/{ip}"


def reservation_rows(host: str, subnet: netaddr.IPNetwork, ip: netaddr.IPAddress, until: float,
                     switches: Iterable[str]) -> list[Row]:
    """An address handed out by the IPAM and not yet in an endpoint's port: a port without
    addresses on each switch of the pool this host uses, so every host's allocation sees it.
    CreateEndpoint replaces it with the endpoint's port in one transaction; ReleaseAddress
    deletes it; it is ignored (and collected) once `until` has passed."""
    owner = reservation_owner(host, subnet, ip)
    return [Row(LSP, f"rsv-{switch}-{ip}-{host}"[:200], owner, {
        "name": f"rsv-{switch}-{ip}-{host}"[:200],
        "external_ids": {RESERVED_IP_KEY: str(ip), RESERVED_UNTIL_KEY: f"{until:.0f}"}},
        parent=Parent(LS, switch_id(switch), "ports")) for switch in switches]


def switch_ref(switch: str) -> Ref:
    return Ref(LS, switch_id(switch))
