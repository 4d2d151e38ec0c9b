"""The Docker integration's NB side: networks (logical switches), endpoints (logical ports),
routers, and the addresses in use, all through the one NB engine (`ScopedApplyCommand`, one
transaction per call, decisions taken inside it so a concurrent writer makes it re-plan).

Nothing is kept in memory: every call reads the NB, so a restarted driver (or dockerd, or a
second host) sees exactly what the first one wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import netaddr

from ovn_k8s import naming
from ovn_k8s.desired import docker as build
from ovn_k8s.errors import ConfigError, NotReadyError, OvnK8sError
from ovn_k8s.nb import connection
from ovn_k8s.nb.apply import NbView, ScopedApplyCommand
from ovn_k8s.nb.model import Row, by_name
from ovn_k8s.nb.plan import Plan

LOG = logging.getLogger(__name__)
T = TypeVar("T")


class NetworkNotFound(NotReadyError):
    """A Docker network (or ovn-container network) the NB does not hold (any more)."""


def _owner(row: Any) -> str:
    return row.external_ids.get(naming.OWNER_KEY, "")


@dataclass(frozen=True, slots=True)
class Network:
    spec: build.SwitchSpec
    row: Any

    @property
    def switch(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    switch: str
    ip: netaddr.IPAddress
    prefixlen: int
    mac: str
    gateway: netaddr.IPAddress | None      # the router's address, None without a router
    parent: str | None
    tag: int | None
    external_ids: dict[str, str]
    uuid: str

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


def spec_of(row: Any) -> build.SwitchSpec:
    ids = row.external_ids
    subnet = netaddr.IPNetwork(row.other_config.get("subnet") or ids[build.SUBNET_KEY])
    gw = netaddr.IPAddress(ids.get(build.GATEWAY_IP_KEY, "").split("/")[0] or str(build.gateway_ip(subnet)))
    networks = {k[len(build.NETWORK_PREFIX):]: v for k, v in ids.items() if k.startswith(build.NETWORK_PREFIX)}
    exclude = tuple(str(row.other_config.get("exclude_ips", "")).split())
    return build.SwitchSpec(name=row.name, subnet=subnet, gateway=gw, router=ids.get(build.ROUTER_KEY),
                            networks=networks, exclude=exclude, created_by=ids.get(build.CREATED_BY_KEY))


def networks(view: NbView) -> list[Network]:
    out = []
    for row in view.owned(build.LS, build.OWNER_SWITCH):
        try:
            out.append(Network(spec_of(row), row))
        except (KeyError, ValueError, netaddr.AddrFormatError):
            LOG.warning("logical switch %s: no usable subnet; ignored", row.name)
    return sorted(out, key=lambda n: n.switch)


def network_by_id(view: NbView, network_id: str) -> Network:
    for net in networks(view):
        if network_id in net.spec.networks:
            return net
    raise NetworkNotFound(f"network {network_id[:12]} is not in the OVN NB (removed behind "
                          "Docker's back?): docker network rm it")


def network_by_switch(view: NbView, switch: str) -> Network | None:
    row = view.row(build.LS, build.switch_id(switch))
    return Network(spec_of(row), row) if row is not None else None


def endpoint_ports(row: Any) -> list[Any]:
    return [p for p in row.ports if _owner(p).startswith(build.OWNER_ENDPOINT)]


def live_reservation(port: Any, now: float) -> netaddr.IPAddress | None:
    """The address a reservation port holds, if it is one and has not expired."""
    ids = port.external_ids
    if not _owner(port).startswith(build.OWNER_RESERVATION) or build.RESERVED_IP_KEY not in ids:
        return None
    try:
        if float(ids.get(build.RESERVED_UNTIL_KEY, "0")) < now:
            return None
        return netaddr.IPAddress(ids[build.RESERVED_IP_KEY])
    except (ValueError, netaddr.AddrFormatError):
        return None


def used_ips(net: Network, *, excluding: str | None = None, keep_owner: str | None = None) -> set[int]:
    """Addresses taken on one switch: its ports' (but `excluding`'s), live reservations (but
    those of `keep_owner`), its gateway, its excludes."""
    used = {int(net.spec.gateway)}
    now = time.time()
    for port in net.row.ports:
        if port.name == excluding or (keep_owner is not None and _owner(port) == keep_owner):
            continue
        held = live_reservation(port, now)
        if held is not None:
            used.add(int(held))
        else:
            used.update(int(ip) for ip in build.ips_in([*port.addresses, *port.dynamic_addresses]))
    used.update(int(ip) for ip in build.exclude_ranges(" ".join(net.spec.exclude)))
    return used


def endpoint_of(view: NbView, name: str) -> Endpoint | None:
    for port in view.rows(build.LSP, name):
        if not _owner(port).startswith(build.OWNER_ENDPOINT):
            continue
        switch = next((n for n in networks(view) if any(p.uuid == port.uuid for p in n.row.ports)), None)
        ips = build.ips_in(port.addresses)
        if switch is None or not ips:
            return None
        mac = str(port.addresses[0]).split()[0]
        tag = port.tag_request[0] if port.tag_request else (port.tag[0] if port.tag else None)
        return Endpoint(name=name, switch=switch.switch, ip=ips[0], prefixlen=switch.spec.subnet.prefixlen,
                        mac=mac, gateway=switch.spec.gateway if switch.spec.router else None,
                        parent=port.parent_name[0] if port.parent_name else None, tag=tag,
                        external_ids=dict(port.external_ids), uuid=str(port.uuid))
    return None


def all_endpoint_ports(view: NbView) -> list[Any]:
    return view.owned(build.LSP, build.OWNER_ENDPOINT)


def resolve_network(view: NbView, key: str) -> Network:
    """An ovn-container network by name or UUID."""
    for net in networks(view):
        if net.switch == key or str(net.row.uuid) == key:
            return net
    raise NetworkNotFound(f"no network {key!r} in the OVN NB")


def resolve_endpoint(view: NbView, key: str) -> Endpoint:
    """An endpoint by its UUID (the logical port's name) or the name given at creation."""
    matches = [p for p in all_endpoint_ports(view)
               if p.name == key or p.external_ids.get(build.NAME_KEY) == key]
    if not matches:
        raise NotReadyError(f"no endpoint {key!r} in the OVN NB")
    if len(matches) > 1:
        raise ConfigError(f"more than one endpoint is named {key!r}: give its UUID")
    ep = endpoint_of(view, matches[0].name)
    if ep is None:
        raise NotReadyError(f"endpoint {key!r} has no address in the OVN NB")
    return ep


class DockerNb:
    """One NB connection (ovsdbapp's, thread-safe) shared by the driver's request threads."""

    def __init__(self, api: Any, *, timeout: float, system_id: str) -> None:
        self.api = api
        self.timeout = timeout
        self.system_id = system_id

    def close(self) -> None:
        connection.disconnect(self.api)

    # -- the engine ---------------------------------------------------------------------------
    def apply(self, scopes: Iterable[str], fn: Callable[[NbView], tuple[list[Row], Iterable[str]]]) -> Plan:
        cmd = ScopedApplyCommand(self.api, scopes=scopes, build=fn)
        try:
            with connection.transaction(self.api, timeout=self.timeout) as txn:
                txn.add(cmd)
        except OvnK8sError:
            raise
        except Exception as e:  # noqa: BLE001 - ovsdbapp/python-ovs errors: one line
            raise OvnK8sError(f"OVN NB transaction failed: {type(e).__name__}: {e}") from None
        plan: Plan = cmd.result
        if plan:
            LOG.info("NB %s: %s", ",".join(sorted(cmd.scopes)), plan.summary())
        return plan

    def read(self, fn: Callable[[NbView], T]) -> T:
        """`fn(view)` on the NB as it is now (a transaction that writes nothing)."""
        box: list[T] = []

        def run(view: NbView) -> tuple[list[Row], Iterable[str]]:
            box[:] = [fn(view)]
            return [], ()
        self.apply((), run)
        return box[0]

    # -- networks -------------------------------------------------------------------------------
    def create_network(self, *, network_id: str | None, switch: str, subnet: netaddr.IPNetwork,
                       gateway: netaddr.IPAddress, router: str | None = None,
                       exclude: Iterable[str] = (), created_by: str | None = None,
                       must_be_new: bool = False,
                       gateway_spec: build.GatewaySpec | None = None) -> build.SwitchSpec:
        """Make `switch` (or join the one that exists, if it agrees) and record `network_id` on
        it. Returns the resulting spec."""
        out: list[build.SwitchSpec] = []

        def fn(view: NbView) -> tuple[list[Row], Iterable[str]]:
            existing = network_by_switch(view, switch)
            if existing is None:
                if view.rows(build.LS, by_name(switch)):
                    raise ConfigError(f"a logical switch named {switch} exists that ovn-k8s did not "
                                      "make: choose another name")
                taken = [r for r in view.owned(build.LS) if r.name == switch]
                if taken:
                    raise ConfigError(f"a logical switch named {switch} already belongs to "
                                      f"{_owner(taken[0])}: choose another name")
                spec = build.SwitchSpec(name=switch, subnet=subnet, gateway=gateway, router=router,
                                        networks={network_id: self.system_id} if network_id else {},
                                        exclude=tuple(sorted(set(exclude))), created_by=created_by)
            else:
                if must_be_new:
                    raise ConfigError(f"network {switch} already exists")
                have = existing.spec
                view.verify(existing.row, "external_ids")
                if have.subnet != subnet:
                    raise ConfigError(f"logical switch {switch} has subnet {have.subnet}, not {subnet}")
                if have.gateway != gateway:
                    raise ConfigError(f"logical switch {switch} has gateway {have.gateway}, not {gateway}")
                if router is not None and have.router not in (None, router):
                    raise ConfigError(f"logical switch {switch} is connected to router {have.router}, "
                                      f"not {router}")
                nets = dict(have.networks)
                if network_id:
                    nets[network_id] = self.system_id
                spec = build.SwitchSpec(name=switch, subnet=have.subnet, gateway=have.gateway,
                                        router=have.router or router, networks=nets,
                                        exclude=tuple(sorted({*have.exclude, *exclude})),
                                        created_by=have.created_by or created_by)
            if spec.router and view.row(build.LR, build.router_id(spec.router)) is None:
                others = [*view.rows(build.LR, by_name(spec.router)),
                          *(r for r in view.owned(build.LR) if r.name == spec.router)]
                if others:
                    raise ConfigError(f"a logical router named {spec.router} exists that is not a "
                                      "Docker network's: choose another name")
            for net in networks(view):
                if net.switch != switch and network_id and network_id in net.spec.networks:
                    raise ConfigError(f"network {network_id[:12]} already uses switch {net.switch}")
            out[:] = [spec]
            rows = build.switch_rows(spec)
            if spec.router:
                rows += build.router_rows(spec.router, gateway_spec)
            return rows, ()
        scopes = [build.switch_owner(switch)]
        if gateway_spec is not None and router is not None:
            scopes.append(build.router_owner(router))      # this host declares the gateway
        self.apply(scopes, fn)
        return out[0]

    def delete_network(self, *, network_id: str | None = None, switch: str | None = None,
                       force: bool = False) -> str | None:
        """Forget `network_id` (or the ovn-container network `switch`); the switch goes once no
        network and no endpoint uses it (`force`: with its endpoints). Returns the switch, None
        if the NB had no such network."""
        out: list[str | None] = [None]

        def fn(view: NbView) -> tuple[list[Row], Iterable[str]]:
            if network_id is not None:
                try:
                    net = network_by_id(view, network_id)
                except NetworkNotFound:
                    out[0] = None
                    return [], ()
            else:
                assert switch is not None
                found = network_by_switch(view, switch)
                if found is None:
                    raise NetworkNotFound(f"no network {switch} in the OVN NB")
                net = found
            out[0] = net.switch
            view.verify(net.row, "external_ids")
            view.verify(net.row, "ports")
            nets = {k: v for k, v in net.spec.networks.items() if k != network_id}
            created_by = net.spec.created_by if network_id is not None else None
            ports = endpoint_ports(net.row)
            if nets or created_by or (ports and not force):
                if network_id is None and (nets or ports):
                    users = [*(n[:12] for n in nets), *(p.name for p in ports)]
                    raise ConfigError(f"network {net.switch} is in use by {', '.join(users)}")
                spec = build.SwitchSpec(name=net.switch, subnet=net.spec.subnet, gateway=net.spec.gateway,
                                        router=net.spec.router, networks=nets, exclude=net.spec.exclude,
                                        created_by=created_by)
                return build.switch_rows(spec), ()
            scopes = {build.switch_owner(net.switch), *(_owner(p) for p in ports)}
            if net.spec.router:
                lr = view.row(build.LR, build.router_id(net.spec.router))
                if lr is not None:
                    view.verify(lr, "ports")
                    if all(p.name in (f"rtos-{net.switch}", f"rtoe-{net.spec.router}") for p in lr.ports):
                        scopes.add(build.router_owner(net.spec.router))
            return [], scopes
        self.apply((), fn)
        return out[0]

    def networks(self) -> list[build.SwitchSpec]:
        return self.read(lambda view: [n.spec for n in networks(view)])

    def network(self, network_id: str) -> build.SwitchSpec:
        return self.read(lambda view: network_by_id(view, network_id).spec)

    # -- addresses ------------------------------------------------------------------------------
    def reserve_address(self, subnet: netaddr.IPNetwork, wanted: netaddr.IPAddress | None,
                        hold: float) -> netaddr.IPAddress:
        """The IPAM's choice, recorded in the NB: `wanted` if free, else the lowest free
        address of the pool. The pool is the subnet: free means free on every one of our
        switches with that subnet, reservations of every host included. The reservation goes
        on the switches of the pool this host's Docker networks use; expired reservations are
        collected in the same transaction."""
        out: list[netaddr.IPAddress] = []

        def fn(view: NbView) -> tuple[list[Row], Iterable[str]]:
            now = time.time()
            nets = [n for n in networks(view) if n.spec.subnet == subnet]
            used: set[int] = set()
            stale: set[str] = set()
            for net in nets:
                view.verify(net.row, "ports")        # racing hosts re-plan
                used |= used_ips(net)
                # Expired reservations (a driver that died between RequestAddress and
                # CreateEndpoint, on any host) are collected here.
                stale |= {_owner(p) for p in net.row.ports
                          if _owner(p).startswith(build.OWNER_RESERVATION) and live_reservation(p, now) is None}
            if wanted is not None:
                if int(wanted) in used:
                    raise ConfigError(f"address {wanted} is already in use in {subnet}")
                chosen = wanted
            else:
                chosen = build.lowest_free(subnet, used)
            out[:] = [chosen]
            mine = [n.switch for n in nets if self.system_id in n.spec.networks.values()]
            owner = build.reservation_owner(self.system_id, subnet, chosen)
            return build.reservation_rows(self.system_id, subnet, chosen, now + hold, mine), stale | {owner}
        self.apply((), fn)
        return out[0]

    def release_address(self, subnet: netaddr.IPNetwork, ip: netaddr.IPAddress) -> None:
        self.apply((build.reservation_owner(self.system_id, subnet, ip),), lambda view: ([], ()))

    # -- endpoints ------------------------------------------------------------------------------
    def create_endpoint(self, *, name: str, ip: netaddr.IPAddress | None, mac: str | None,
                        network_id: str | None = None, switch: str | None = None,
                        parent: str | None = None, tag: int | None = None,
                        created_by: str | None = None, display_name: str | None = None,
                        container: str | None = None) -> Endpoint:
        """The endpoint's logical port on the network's switch: `ip` if free there (None: the
        lowest free address of the switch, decided in the transaction)."""
        out: list[Endpoint] = []
        reservation: str | None = None

        def fn(view: NbView) -> tuple[list[Row], Iterable[str]]:
            nonlocal reservation
            if network_id is not None:
                net = network_by_id(view, network_id)
            else:
                assert switch is not None
                found = network_by_switch(view, switch)
                if found is None:
                    raise NetworkNotFound(f"no network {switch} in the OVN NB")
                net = found
            for port in view.rows(build.LSP, name):
                if _owner(port) != build.endpoint_owner(name):
                    raise ConfigError(f"a logical port named {name} already exists (owner "
                                      f"{_owner(port) or 'none'})")
            view.verify(net.row, "ports")       # concurrent endpoints on the switch re-plan
            # This host's reservation of the address (RequestAddress) becomes the port.
            reservation = (build.reservation_owner(self.system_id, net.spec.subnet, ip)
                           if ip is not None else None)
            chosen_tag = tag
            if parent is not None and tag is None:
                siblings = [p for p in all_endpoint_ports(view)
                            if p.name != name and list(p.parent_name) == [parent]]
                current = [p for p in view.rows(build.LSP, name) if list(p.tag_request)]
                chosen_tag = (current[0].tag_request[0] if current else
                              build.lowest_free_tag(t for p in siblings for t in p.tag_request))
            used = used_ips(net, excluding=name, keep_owner=reservation)
            if ip is None:
                chosen = build.lowest_free(net.spec.subnet, used)
            else:
                if ip not in net.spec.subnet or ip in (net.spec.subnet.network, net.spec.subnet.broadcast):
                    raise ConfigError(f"address {ip} is not a host address of {net.spec.subnet} "
                                      f"(network {net.switch})")
                if int(ip) in used:
                    raise ConfigError(f"address {ip} is already in use on network {net.switch}")
                chosen = ip
            spec = build.EndpointSpec(name=name, switch=net.switch, ip=chosen,
                                      prefixlen=net.spec.subnet.prefixlen,
                                      mac=mac or build.endpoint_mac(chosen), network_id=network_id,
                                      host=self.system_id, parent=parent, tag=chosen_tag,
                                      created_by=created_by, display_name=display_name,
                                      container=container)
            out[:] = [Endpoint(name=name, switch=net.switch, ip=chosen, prefixlen=spec.prefixlen,
                               mac=spec.mac, gateway=net.spec.gateway if net.spec.router else None,
                               parent=parent, tag=chosen_tag, external_ids={}, uuid="")]
            return build.endpoint_rows(spec), (reservation,) if reservation else ()
        self.apply((build.endpoint_owner(name),), fn)
        return out[0]

    def set_endpoint_container(self, name: str, container: str | None) -> None:
        """Record (or clear) the network container holding an ovn-container endpoint."""
        def fn(view: NbView) -> tuple[list[Row], Iterable[str]]:
            ep = endpoint_of(view, name)
            if ep is None:
                raise NotReadyError(f"no endpoint {name} in the OVN NB")
            ids = ep.external_ids
            spec = build.EndpointSpec(
                name=name, switch=ep.switch, ip=ep.ip, prefixlen=ep.prefixlen, mac=ep.mac,
                network_id=ids.get(build.NETWORK_KEY), host=ids.get(build.HOST_KEY),
                parent=ep.parent, tag=ep.tag, created_by=ids.get(build.CREATED_BY_KEY),
                display_name=ids.get(build.NAME_KEY), container=container)
            return build.endpoint_rows(spec), ()
        self.apply((build.endpoint_owner(name),), fn)

    def port_up(self, name: str) -> bool:
        return self.read(lambda view: any(list(p.up) == [True] for p in view.rows(build.LSP, name)))

    def delete_endpoint(self, name: str) -> bool:
        return bool(self.apply((build.endpoint_owner(name),), lambda view: ([], ())))

    def endpoint(self, name: str) -> Endpoint | None:
        return self.read(lambda view: endpoint_of(view, name))

    def endpoints(self, created_by: str | None = None) -> list[tuple[Endpoint, str]]:
        """(endpoint, switch) of every endpoint port (of `created_by`, if given)."""
        def fn(view: NbView) -> list[tuple[Endpoint, str]]:
            out = []
            for net in networks(view):
                for port in endpoint_ports(net.row):
                    if created_by is not None and port.external_ids.get(build.CREATED_BY_KEY) != created_by:
                        continue
                    ep = endpoint_of(view, port.name)
                    if ep is not None:
                        out.append((ep, net.switch))
            return out
        return self.read(fn)
