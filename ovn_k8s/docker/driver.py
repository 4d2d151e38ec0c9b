"""The libnetwork remote NetworkDriver and IpamDriver: each call Docker makes, over the NB
(`nbstore`) and this host's OVS and links.

The contract details that break Docker (docker-lab.md) and how they are met:
- EndpointOperInfo is mandatory: it answers from the NB.
- CreateEndpoint never echoes the address Docker sent, nor a MAC when the user gave one.
- Join always answers a Gateway (the router's address) or DisableGatewayService (no router):
  an empty Gateway alone makes Docker add its own gateway bridge.
- A failed Join gets no Leave: Join undoes its own veth and OVS port.
- A restarted driver is not re-activated and nothing is replayed: every ID Docker holds
  (PoolID, NetworkID, EndpointID) is resolved from the NB, PoolIDs are self-describing
  (`ovn/<subnet>`), and no state is kept in memory beyond the short-lived reservations below.

Addresses: the IPAM pool is the subnet. An address is free when no port of any of our
switches with that subnet has it (nor their gateways and excluded addresses) and no host holds
it; the NB is the record. RequestAddress writes a reservation (a port without addresses, with
an expiry) on the pool's switches this host uses, in the transaction that chose the address,
so concurrent `docker run`s on any host never get the same one; CreateEndpoint replaces it with
the endpoint's port in one transaction, ReleaseAddress deletes it. The same subnet on two
switches (overlapping networks) is kept apart by the switches; the pool being shared, an
address is used on only one of them.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import netaddr

from ovn_k8s import naming, netlink
from ovn_k8s.desired import docker as build
from ovn_k8s.docker.nbstore import DockerNb, NetworkNotFound
from ovn_k8s.errors import ConfigError, OvnK8sError
from ovn_k8s.local_ovsdb import IFACE_ID_KEY, LocalOvsdb, Mode, attach_ids

LOG = logging.getLogger(__name__)

ADDRESS_SPACE_LOCAL = "ovn-local"
ADDRESS_SPACE_GLOBAL = "ovn-global"
POOL_PREFIX = "ovn/"
GATEWAY_REQUEST = "com.docker.network.gateway"
GENERIC = "com.docker.network.generic"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
HOLD_SECONDS = 60.0            # an address handed out and not (yet) used by an endpoint
NETWORK_OPTIONS = ("switch", "router", "gateway-nic", "gateway-ip", "gateway-next-hop")
GATEWAY_OPTIONS = NETWORK_OPTIONS[2:]


class DriverError(OvnK8sError):
    """A call Docker made that cannot be done: answered as {"Err": message}."""


@dataclass(frozen=True, slots=True)
class HostSettings:
    ovs_db: str
    bridge: str = naming.BR_INT
    mtu: int = 1400
    bind_timeout: float = 20.0
    timeout: float = 10.0
    wait_for_ovn: bool = True
    parent: str | None = None     # underlay: the VM's logical port; endpoints are its children


def host_ifname(endpoint: str) -> str:
    return endpoint[:15]


def peer_ifname(endpoint: str) -> str:
    """The end Docker moves into the container (and renames ethN): the original's naming."""
    return endpoint[:13] + "_c"


def _req(body: Mapping[str, Any], key: str, what: str | None = None) -> Any:
    value = body.get(key)
    if value in (None, ""):
        raise DriverError(f"{what or key} missing from the request")
    return value


def _docker_id(body: Mapping[str, Any], key: str) -> str:
    value = _req(body, key)
    if not isinstance(value, str) or not value.isalnum() or len(value) > 128:
        raise DriverError(f"{key} {value!r} is not a Docker ID")
    return value


def pool_id(subnet: netaddr.IPNetwork) -> str:
    return f"{POOL_PREFIX}{subnet}"


def parse_pool_id(value: object) -> netaddr.IPNetwork:
    if not isinstance(value, str) or not value.startswith(POOL_PREFIX):
        raise DriverError(f"PoolID {value!r} is not one of this driver's")
    try:
        return build.parse_subnet(value[len(POOL_PREFIX):], "PoolID")
    except ConfigError as e:
        raise DriverError(str(e)) from None


class Driver:
    """Method name -> handler; each takes the decoded JSON body and returns the JSON answer."""

    def __init__(self, nb: DockerNb, host: HostSettings) -> None:
        self.nb = nb
        self.host = host
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "Plugin.Activate": lambda b: {"Implements": ["NetworkDriver", "IpamDriver"]},
            "NetworkDriver.GetCapabilities": lambda b: {"Scope": "local", "ConnectivityScope": "local"},
            "NetworkDriver.CreateNetwork": self.create_network,
            "NetworkDriver.DeleteNetwork": self.delete_network,
            "NetworkDriver.CreateEndpoint": self.create_endpoint,
            "NetworkDriver.EndpointOperInfo": self.endpoint_info,
            "NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "NetworkDriver.Join": self.join,
            "NetworkDriver.Leave": self.leave,
            "NetworkDriver.ProgramExternalConnectivity": lambda b: {},
            "NetworkDriver.RevokeExternalConnectivity": lambda b: {},
            "NetworkDriver.DiscoverNew": lambda b: {},
            "NetworkDriver.DiscoverDelete": lambda b: {},
            "NetworkDriver.AllocateNetwork": lambda b: {},
            "NetworkDriver.FreeNetwork": lambda b: {},
            "IpamDriver.GetCapabilities": lambda b: {"RequiresMACAddress": False,
                                                     "RequiresRequestReplay": False},
            "IpamDriver.GetDefaultAddressSpaces": lambda b: {
                "LocalDefaultAddressSpace": ADDRESS_SPACE_LOCAL,
                "GlobalDefaultAddressSpace": ADDRESS_SPACE_GLOBAL},
            "IpamDriver.RequestPool": self.request_pool,
            "IpamDriver.ReleasePool": lambda b: {},
            "IpamDriver.RequestAddress": self.request_address,
            "IpamDriver.ReleaseAddress": self.release_address,
        }

    def handle(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(method)
        if handler is None:
            raise DriverError(f"{method} is not supported by the ovn driver")
        return handler(body)

    # -- IPAM ---------------------------------------------------------------------------------
    def request_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("V6"):
            raise DriverError("IPv6 is not supported by the ovn IPAM driver")
        if body.get("SubPool"):
            raise DriverError("--ip-range is not supported by the ovn IPAM driver: give the whole "
                              "subnet")
        pool = body.get("Pool")
        if not pool:
            raise DriverError("the ovn IPAM driver needs a --subnet")
        try:
            subnet = build.parse_subnet(pool, "--subnet")
        except ConfigError as e:
            raise DriverError(str(e)) from None
        if str(subnet) != pool:
            raise DriverError(f"--subnet {pool} has host bits set (did you mean {subnet}?)")
        return {"PoolID": pool_id(subnet), "Pool": str(subnet), "Data": {}}

    def request_address(self, body: dict[str, Any]) -> dict[str, Any]:
        subnet = parse_pool_id(body.get("PoolID"))
        options = body.get("Options") or {}
        if not isinstance(options, dict):
            raise DriverError("Options must be an object")
        wanted = body.get("Address") or ""
        try:
            ip = build.parse_ip(wanted, subnet, "address") if wanted else None
        except ConfigError as e:
            raise DriverError(str(e)) from None
        if options.get("RequestAddressType") == GATEWAY_REQUEST:
            gw = ip or build.gateway_ip(subnet)
            return {"Address": f"{gw}/{subnet.prefixlen}", "Data": {}}
        try:
            chosen = self.nb.reserve_address(subnet, ip, HOLD_SECONDS)
        except ConfigError as e:
            raise DriverError(str(e)) from None
        return {"Address": f"{chosen}/{subnet.prefixlen}", "Data": {}}

    def release_address(self, body: dict[str, Any]) -> dict[str, Any]:
        subnet = parse_pool_id(body.get("PoolID"))
        try:
            ip = build.parse_ip(_req(body, "Address"), subnet, "Address")
        except ConfigError as e:
            raise DriverError(str(e)) from None
        self.nb.release_address(subnet, ip)
        return {}

    # -- networks -------------------------------------------------------------------------------
    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        network_id = _docker_id(body, "NetworkID")
        if body.get("IPv6Data"):
            raise DriverError("IPv6 is not supported by the ovn driver")
        v4 = body.get("IPv4Data") or []
        if not isinstance(v4, list) or len(v4) != 1 or not isinstance(v4[0], dict):
            raise DriverError("the ovn driver needs exactly one IPv4 subnet (--subnet)")
        opts = (body.get("Options") or {}).get(GENERIC) or {}
        if not isinstance(opts, dict):
            raise DriverError(f"{GENERIC} must be an object")
        unknown = sorted(set(opts) - set(NETWORK_OPTIONS))
        if unknown:
            raise DriverError(f"unknown option(s) {', '.join(unknown)}: the ovn driver takes -o "
                              + ", -o ".join(f"{o}=..." for o in NETWORK_OPTIONS))
        try:
            subnet = build.parse_subnet(_req(v4[0], "Pool", "IPv4Data Pool"), "subnet")
            gateway = build.parse_ip(_req(v4[0], "Gateway", "IPv4Data Gateway"), subnet, "gateway")
            switch = build.check_name(opts.get("switch") or network_id, "switch")
            router = build.check_name(opts["router"], "router") if opts.get("router") else None
            aux = [str(build.parse_ip(a, subnet, "aux address"))
                   for a in (body.get("AuxAddresses") or {}).values()]
            egress = self._gateway(opts, router)
            spec = self.nb.create_network(network_id=network_id, switch=switch, subnet=subnet,
                                          gateway=gateway, router=router, exclude=aux,
                                          gateway_spec=egress)
            if egress is not None:
                try:
                    self._plug_nic(egress, router)
                except OvnK8sError:
                    # Docker sends no DeleteNetwork after a failed CreateNetwork: undo it here.
                    self.nb.delete_network(network_id=network_id)
                    raise
        except ConfigError as e:
            raise DriverError(str(e)) from None
        LOG.info("network %s: logical switch %s (%s, gateway %s%s)", network_id[:12], spec.name,
                 spec.subnet, spec.gateway, f", router {spec.router}" if spec.router else "")
        return {}

    def _gateway(self, opts: Mapping[str, Any], router: str | None) -> build.GatewaySpec | None:
        given = [o for o in GATEWAY_OPTIONS if opts.get(o)]
        if not given:
            return None
        if router is None:
            raise ConfigError("-o gateway-... needs -o router=NAME: the gateway is the router's")
        missing = [o for o in GATEWAY_OPTIONS if not opts.get(o)]
        if missing:
            raise ConfigError(f"-o {', -o '.join(missing)} missing: a gateway needs "
                              "gateway-nic, gateway-ip (address/len) and gateway-next-hop")
        nic = str(opts["gateway-nic"])
        try:
            netlink.check_ifname(nic, "gateway-nic")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        text = str(opts["gateway-ip"])
        try:
            iface = netaddr.IPNetwork(text) if "/" in text else None
        except (netaddr.AddrFormatError, ValueError):
            iface = None
        if iface is None or iface.version != 4:
            raise ConfigError(f"-o gateway-ip={text}: give an IPv4 address/len, e.g. 192.0.2.10/24")
        physical = iface.cidr
        ip = build.parse_ip(str(iface.ip), physical, "gateway-ip")
        hop = build.parse_ip(str(opts["gateway-next-hop"]), physical, "gateway-next-hop")
        if netlink.link_index(nic) is None:
            raise ConfigError(f"-o gateway-nic={nic}: no such interface on this host")
        return build.GatewaySpec(chassis=self.nb.system_id, nic=nic,
                                 ip=netaddr.IPNetwork(f"{ip}/{physical.prefixlen}"), next_hop=hop)

    def _plug_nic(self, egress: build.GatewaySpec, router: str) -> None:
        """The gateway's NIC into br-int, bound to the router's external switch."""
        with LocalOvsdb(self.host.ovs_db, timeout=self.host.timeout) as ovs:
            ovs.ensure_port(self.host.bridge, egress.nic, external_ids={
                IFACE_ID_KEY: build.gateway_nic_port(router), naming.OWNER_KEY: build.router_owner(router)})
            ovs.commit()

    def delete_network(self, body: dict[str, Any]) -> dict[str, Any]:
        network_id = _docker_id(body, "NetworkID")
        switch = self.nb.delete_network(network_id=network_id)
        if switch is None:
            LOG.warning("network %s: not in the NB; nothing to delete", network_id[:12])
        self._unplug_gone_gateways()
        return {}

    def _unplug_gone_gateways(self) -> None:
        """A gateway NIC whose router has left the NB goes back out of br-int."""
        routers = self.nb.read(lambda view: {r.name for r in view.owned(build.LR, build.OWNER_ROUTER)})
        with LocalOvsdb(self.host.ovs_db, timeout=self.host.timeout) as ovs:
            for state in ovs.bridge_interfaces(self.host.bridge) or []:
                owner = state.external_ids.get(naming.OWNER_KEY, "")
                if owner.startswith(build.OWNER_ROUTER) and owner[len(build.OWNER_ROUTER):] not in routers:
                    LOG.info("%s: router %s is gone: removing its gateway NIC from %s", state.name,
                             owner[len(build.OWNER_ROUTER):], self.host.bridge)
                    ovs.remove_owned_ports(owner, keep=())
            ovs.commit()

    # -- endpoints ------------------------------------------------------------------------------
    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        network_id = _docker_id(body, "NetworkID")
        endpoint_id = _docker_id(body, "EndpointID")
        iface = body.get("Interface") or {}
        if not isinstance(iface, dict):
            raise DriverError("Interface must be an object")
        if iface.get("AddressIPv6"):
            raise DriverError("IPv6 is not supported by the ovn driver")
        address = iface.get("Address")
        if not address:
            raise DriverError("Interface.Address missing: use --ipam-driver ovn (or an IPAM that "
                              "gives addresses)")
        user_mac = iface.get("MacAddress") or _mac_option(body.get("Options") or {})
        try:
            mac = build.parse_mac(user_mac, "--mac-address") if user_mac else None
            net = self.nb.network(network_id)
            ip = build.parse_ip(address, net.subnet, "Interface.Address")
            ep = self.nb.create_endpoint(name=endpoint_id, network_id=network_id, ip=ip, mac=mac,
                                         parent=self.host.parent)
        except NetworkNotFound as e:
            raise DriverError(str(e)) from None
        except ConfigError as e:
            raise DriverError(str(e)) from None
        LOG.info("endpoint %s: port on %s, %s %s", endpoint_id[:12], ep.switch, ep.cidr, ep.mac)
        # Never echo what Docker set: only the MAC, when Docker has none.
        return {"Interface": {"Address": "", "AddressIPv6": "", "MacAddress": "" if mac else ep.mac}}

    def endpoint_info(self, body: dict[str, Any]) -> dict[str, Any]:
        _docker_id(body, "NetworkID")
        endpoint_id = _docker_id(body, "EndpointID")
        ep = self.nb.endpoint(endpoint_id)
        if ep is None:
            return {"Value": {}}
        return {"Value": {"ip_address": ep.cidr, "mac_address": ep.mac, "switch": ep.switch,
                          "veth_outside": host_ifname(endpoint_id)}}

    def delete_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        _docker_id(body, "NetworkID")
        endpoint_id = _docker_id(body, "EndpointID")
        self._unplug(endpoint_id)                 # a Leave that never came (a failed start)
        self.nb.delete_endpoint(endpoint_id)
        return {}

    def join(self, body: dict[str, Any]) -> dict[str, Any]:
        _docker_id(body, "NetworkID")
        endpoint_id = _docker_id(body, "EndpointID")
        sandbox = _req(body, "SandboxKey")
        if not isinstance(sandbox, str):
            raise DriverError("SandboxKey must be a path")
        ep = self.nb.endpoint(endpoint_id)
        if ep is None:
            raise DriverError(f"endpoint {endpoint_id[:12]} is not in the OVN NB")
        try:
            self._plug(ep, sandbox.rstrip("/").rsplit("/", 1)[-1])
        except BaseException:
            with contextlib.suppress(Exception):
                self._unplug(endpoint_id)
            raise
        answer: dict[str, Any] = {"InterfaceName": {"SrcName": peer_ifname(endpoint_id), "DstPrefix": "eth"},
                                  "GatewayIPv6": ""}
        if ep.gateway is not None:
            answer["Gateway"] = str(ep.gateway)
        else:
            answer["Gateway"] = ""
            answer["DisableGatewayService"] = True     # no router: L2 only, no docker_gwbridge
        return answer

    def leave(self, body: dict[str, Any]) -> dict[str, Any]:
        _docker_id(body, "NetworkID")
        self._unplug(_docker_id(body, "EndpointID"))
        return {}

    # -- this host ------------------------------------------------------------------------------
    def _ovs(self) -> LocalOvsdb:
        # One per call: the IDL is single-threaded and a call lives for milliseconds.
        return LocalOvsdb(self.host.ovs_db, timeout=self.host.timeout, mode=Mode.POD_PORTS)

    def _plug(self, ep: Any, sandbox_id: str) -> None:
        name = host_ifname(ep.name)
        deadline = time.monotonic() + self.host.bind_timeout
        try:
            netlink.create_local_veth_pair(host_ifname=name, peer_ifname=peer_ifname(ep.name),
                                           mac=ep.mac, mtu=self.host.mtu)
        except (ValueError, OvnK8sError) as e:
            raise DriverError(f"cannot create the veth pair of {ep.name[:12]}: {e}") from None
        if self.host.parent is not None:
            self._plug_child(ep, name, deadline)
            return
        with self._ovs() as ovs:
            ids = attach_ids(iface_id=ep.name, mac=ep.mac, sandbox=sandbox_id,
                             ifname=peer_ifname(ep.name), ip_cidr=ep.cidr)
            ovs.attach(self.host.bridge, name, {**ids, "vm-id": sandbox_id,
                                                naming.OWNER_KEY: build.endpoint_owner(ep.name)},
                       deadline=deadline)
            if self.host.wait_for_ovn:
                ovs.wait_installed(name, ep.name, deadline=deadline)

    def _plug_child(self, ep: Any, name: str, deadline: float) -> None:
        """Underlay: an access port with the endpoint's VLAN tag on the VM's bridge; the
        hypervisor's ovn-controller binds the child port (parent + tag), which the NB shows as
        the port's `up`."""
        if ep.tag is None:
            raise DriverError(f"endpoint {ep.name[:12]} has no VLAN tag (made in overlay mode?)")
        with LocalOvsdb(self.host.ovs_db, timeout=self.host.timeout) as ovs:
            ovs.ensure_port(self.host.bridge, name, tag=ep.tag, external_ids={
                IFACE_ID_KEY: ep.name, naming.OWNER_KEY: build.endpoint_owner(ep.name)})
            ovs.commit()
        if not self.host.wait_for_ovn:
            return
        while not self.nb.port_up(ep.name):
            if time.monotonic() > deadline:
                raise DriverError(f"OVN did not bind child port {ep.name[:12]} (parent "
                                  f"{self.host.parent}, tag {ep.tag}) within {self.host.bind_timeout:g} s")
            time.sleep(0.05)

    def _unplug(self, endpoint_id: str) -> None:
        name = host_ifname(endpoint_id)
        with self._ovs() as ovs:
            state = ovs.port_state(name)
            if state is not None and state.external_ids.get(IFACE_ID_KEY) == endpoint_id:
                ovs.detach(name)
        # Docker has moved the container end back here (renamed to its SrcName) by Leave.
        for link in (name, peer_ifname(endpoint_id)):
            try:
                netlink.delete_link(link)
            except (ValueError, OvnK8sError) as e:
                LOG.warning("%s: %s", link, e)


def _mac_option(options: Mapping[str, Any]) -> str | None:
    """`--mac-address` as Docker also passes it: base64 of the six bytes."""
    raw = options.get(MAC_OPTION) if isinstance(options, Mapping) else None
    if not raw:
        return None
    try:
        data = base64.b64decode(raw, validate=True)
    except (ValueError, TypeError):
        raise DriverError(f"{MAC_OPTION} {raw!r} is not base64") from None
    if len(data) != 6:
        raise DriverError(f"{MAC_OPTION} is not six bytes")
    return ":".join(f"{b:02x}" for b in data)
