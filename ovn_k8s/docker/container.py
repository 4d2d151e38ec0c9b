"""ovn-container's steps: networks and endpoints in the NB (which replaced the original's
Neutron IPAM), and "network containers" that hold endpoints for workloads started with
`docker run --net=container:<id>`.

Where the original kept per-endpoint state in OVS Bridge external_ids (`<uuid>_ma`, `_ip`,
`_vlan`, `vlans`, `container-usage`, `endpoint-usage`), everything here is in the NB: the
endpoint's port has its address, its VLAN tag (underlay: `parent_name` + `tag_request`, the tag
the lowest its siblings behind that parent lack) and the network container holding it
(external_ids ovn-k8s/container). The local OVS keeps only `ovn-mode` and `ovn-bridge` (init).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import netaddr

from ovn_k8s import naming, netlink
from ovn_k8s.desired import docker as build
from ovn_k8s.docker import nbstore
from ovn_k8s.docker.engine import DockerApi
from ovn_k8s.docker.nbstore import DockerNb, Endpoint
from ovn_k8s.errors import ConfigError, HostError, NotReadyError, OvnK8sError
from ovn_k8s.local_ovsdb import LocalOvsdb, attach_ids

LOG = logging.getLogger(__name__)
MODE_KEY = "ovn-mode"
BRIDGE_KEY = "ovn-bridge"
MODES = ("overlay", "underlay")
PARENT_ENV = "OS_VIF_ID"          # the original's name for the VM's port (the parent)
CONTAINER_MTU = 1400
ENDPOINTS_LABEL = "ovn-k8s/endpoints"   # on a network container: the endpoints it was made for


@dataclass(frozen=True, slots=True)
class Settings:
    mode: str
    bridge: str
    parent: str | None          # underlay: the VM's logical port


def init(ovs: LocalOvsdb, bridge: str, mode: str) -> bool:
    if ovs.bridge(bridge) is None:
        raise ConfigError(f"Bridge {bridge} does not exist")
    wanted = {MODE_KEY: mode, BRIDGE_KEY: bridge}
    if mode == "overlay" and not ovs.external_ids().get("ovn-encap-type"):
        wanted["ovn-encap-type"] = "geneve"
    ovs.ensure_external_ids(wanted)
    return ovs.commit()


def settings(ovs: LocalOvsdb, parent: str | None = None) -> Settings:
    ids = ovs.external_ids()
    mode = ids.get(MODE_KEY)
    if mode not in MODES:
        raise NotReadyError("OVN mode not set: run ovn-container init --bridge BR "
                            "--overlay-mode|--underlay-mode")
    bridge = ids.get(BRIDGE_KEY, "")
    if not bridge or ovs.bridge(bridge) is None:
        raise NotReadyError(f"OVN bridge {bridge or '(none)'} is not set or does not exist: run "
                            "ovn-container init")
    if mode == "underlay":
        parent = parent or os.environ.get(PARENT_ENV)
        if not parent:
            raise ConfigError(f"underlay mode needs the VM's logical port: --parent or env {PARENT_ENV}")
    return Settings(mode, bridge, parent if mode == "underlay" else None)


# --- networks --------------------------------------------------------------------------------------
def net_create(nb: DockerNb, name: str, subnet_text: str) -> str:
    build.check_name(name, "network name")
    subnet = build.parse_subnet(subnet_text, "subnet")
    nb.create_network(network_id=None, switch=name, subnet=subnet, gateway=build.gateway_ip(subnet),
                      created_by=build.OVN_CONTAINER, must_be_new=True)
    return nb.read(lambda view: str(nbstore.resolve_network(view, name).row.uuid))


def net_list(nb: DockerNb) -> list[tuple[str, str, str]]:
    """(uuid, name, subnet) of every network."""
    return nb.read(lambda view: [(str(n.row.uuid), n.switch, str(n.spec.subnet))
                                 for n in nbstore.networks(view)])


def net_delete(nb: DockerNb, key: str) -> str:
    switch = nb.read(lambda view: nbstore.resolve_network(view, key).switch)
    nb.delete_network(switch=switch)
    return switch


# --- endpoints -------------------------------------------------------------------------------------
def endpoint_create(nb: DockerNb, cfg: Settings, network: str, name: str | None) -> Endpoint:
    if name is not None:
        build.check_name(name, "endpoint name")
        if any(ep.external_ids.get(build.NAME_KEY) == name for ep, _ in nb.endpoints()):
            raise ConfigError(f"an endpoint named {name} already exists")
    switch = nb.read(lambda view: nbstore.resolve_network(view, network).switch)
    return nb.create_endpoint(name=str(uuid.uuid4()), switch=switch, ip=None, mac=None,
                              parent=cfg.parent, created_by=build.OVN_CONTAINER, display_name=name)


def endpoint_list(nb: DockerNb) -> list[Endpoint]:
    return [ep for ep, _ in nb.endpoints()]


def host_ifname(endpoint: str) -> str:
    return endpoint[:13] + "_l"


def endpoint_delete(nb: DockerNb, ovs: LocalOvsdb, key: str, docker: DockerApi) -> str:
    """Unplug and delete the endpoint; the network container goes with its last endpoint."""
    ep = nb.read(lambda view: nbstore.resolve_endpoint(view, key))
    container = ep.external_ids.get(build.CONTAINER_KEY)
    _unplug(ovs, ep.name)
    nb.delete_endpoint(ep.name)
    if container and not any(e.external_ids.get(build.CONTAINER_KEY) == container
                             for e, _ in nb.endpoints()):
        LOG.info("network container %s has no endpoint left: removing it", container[:12])
        docker.remove(container)
    return ep.name


def _unplug(ovs: LocalOvsdb, endpoint: str) -> None:
    name = host_ifname(endpoint)
    if ovs.port_bridge(name) is not None:
        ovs.detach(name)
    with contextlib.suppress(OvnK8sError, ValueError):
        netlink.delete_link(name)


# --- network containers ------------------------------------------------------------------------------
def container_create(nb: DockerNb, ovs: LocalOvsdb, cfg: Settings, endpoints: Sequence[str],
                     docker: DockerApi, image: str, *, bind_timeout: float = 20.0) -> str:
    """A network container (`docker run -d --init --net=none`, made through the Engine API)
    whose namespace holds the endpoints as eth1..ethN; returns its ID. Any failure removes what
    was made (container, veths, OVS ports) and clears the endpoints' container record."""
    eps: list[Endpoint] = []
    for key in endpoints:
        ep = nb.read(lambda view, k=key: nbstore.resolve_endpoint(view, k))
        if ep.external_ids.get(build.CONTAINER_KEY):
            raise ConfigError(f"endpoint {key} is already in network container "
                              f"{ep.external_ids[build.CONTAINER_KEY][:12]}")
        if any(e.name == ep.name for e in eps):
            raise ConfigError(f"endpoint {key} is given twice")
        if cfg.mode == "underlay" and ep.tag is None:
            raise ConfigError(f"endpoint {key} has no VLAN tag (made in overlay mode?)")
        eps.append(ep)
    if not eps:
        raise ConfigError("give at least one --network=ENDPOINT")
    tag = uuid.uuid4().hex[:15]
    labels = {naming.OWNER_KEY: build.OVN_CONTAINER, ENDPOINTS_LABEL: ",".join(ep.name for ep in eps)}
    container = docker.create(image, ["sleep", "2147483647"], name=f"network_{tag}", labels=labels)
    done: list[Endpoint] = []
    try:
        docker.start(container)
        netns_path = f"/proc/{docker.pid(container)}/ns/net"
        deadline = time.monotonic() + bind_timeout
        for index, ep in enumerate(eps, start=1):
            nb.set_endpoint_container(ep.name, container)
            done.append(ep)
            host = host_ifname(ep.name)
            gateway = ep.gateway or _gateway(nb, ep)
            try:
                netlink.setup_veth_pair(netns_path=netns_path, ifname=f"eth{index}", host_ifname=host,
                                        mac=ep.mac, ip_cidr=ep.cidr, gateway=str(gateway),
                                        mtu=CONTAINER_MTU)
            except ValueError as e:
                raise HostError(f"endpoint {ep.name}: {e}") from None
            if cfg.mode == "underlay":
                ovs.ensure_port(cfg.bridge, host, tag=ep.tag,
                                external_ids={naming.OWNER_KEY: build.endpoint_owner(ep.name)})
                ovs.commit()
            else:
                ids = attach_ids(iface_id=ep.name, mac=ep.mac, sandbox=container,
                                 ifname=f"eth{index}", ip_cidr=ep.cidr)
                ovs.attach(cfg.bridge, host, {**ids, "vm-id": container,
                                              naming.OWNER_KEY: build.endpoint_owner(ep.name)},
                           deadline=deadline)
                ovs.wait_installed(host, ep.name, deadline=deadline)
    except BaseException:
        LOG.info("container-create failed: removing what it made")
        for ep in done:
            with contextlib.suppress(Exception):
                _unplug(ovs, ep.name)
            with contextlib.suppress(Exception):
                nb.set_endpoint_container(ep.name, None)
        docker.remove(container)
        raise
    return container


def _gateway(nb: DockerNb, ep: Endpoint) -> netaddr.IPAddress:
    """The network's gateway address (the container's default route points there, as a
    Neutron subnet's gateway_ip did; it answers once a router is attached)."""
    return nb.read(lambda view: nbstore.resolve_network(view, ep.switch).spec.gateway)
