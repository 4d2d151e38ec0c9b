"""Kubernetes objects as small frozen dataclasses, parsed from raw API JSON at the edge (pure).

Watch events carry raw dicts; controllers keep only what they read, so a store of 10k objects
stays small and a reconcile never digs through nested dicts. Parsing never deserialises into
the official client's models (V10: ~17x slower).

Sections: Pods (ovn-k8s-watcher's pod controller); Services and their endpoints (the services
controller). Other kinds append their own section.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ovn_k8s import naming
from ovn_k8s.errors import InvalidObject

# =============================================================================================
# Pods
# =============================================================================================

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True, slots=True)
class PodAnnotation:
    """The `ovn` pod annotation, with the original's JSON keys:
    {"ip_address": "10.244.1.3/24", "mac_address": "0a:58:0a:f4:01:03", "gateway_ip": "10.244.1.1"}
    """

    ip: str            # "10.244.1.3"
    prefixlen: int     # 24
    mac: str           # lower-case, colon separated
    gateway_ip: str    # "10.244.1.1"

    @property
    def ip_address(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    def to_json(self) -> str:
        # Key order as the original wrote it; compact separators keep the annotation short.
        return json.dumps({"ip_address": self.ip_address, "mac_address": self.mac,
                           "gateway_ip": self.gateway_ip}, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> PodAnnotation:
        """Parse the annotation; InvalidObject says what is wrong with it."""
        try:
            data = json.loads(text)
        except ValueError:
            raise InvalidObject(f"annotation {naming.POD_ANNOTATION!r} is not JSON: "
                                f"{text[:80]!r}") from None
        if not isinstance(data, dict):
            raise InvalidObject(f"annotation {naming.POD_ANNOTATION!r} is not a JSON object")
        ip_raw, mac_raw, gw_raw = (data.get("ip_address"), data.get("mac_address"),
                                   data.get("gateway_ip"))
        if not isinstance(ip_raw, str) or "/" not in ip_raw:
            raise InvalidObject(f"annotation {naming.POD_ANNOTATION!r}: ip_address "
                                f"{ip_raw!r} is not IP/LEN")
        try:
            iface = ipaddress.IPv4Interface(ip_raw)
        except ValueError:
            raise InvalidObject(f"annotation {naming.POD_ANNOTATION!r}: ip_address "
                                f"{ip_raw!r} is not an IPv4 IP/LEN") from None
        if not isinstance(mac_raw, str) or not _MAC_RE.match(mac_raw.lower()):
            raise InvalidObject(f"annotation {naming.POD_ANNOTATION!r}: mac_address "
                                f"{mac_raw!r} is not a MAC address")
        if int(mac_raw[:2], 16) & 1:
            raise InvalidObject(f"annotation {naming.POD_ANNOTATION!r}: mac_address "
                                f"{mac_raw!r} is a multicast address")
        gateway = ""
        if gw_raw is not None:
            try:
                gateway = str(ipaddress.IPv4Address(gw_raw))
            except ValueError:
                raise InvalidObject(f"annotation {naming.POD_ANNOTATION!r}: gateway_ip "
                                    f"{gw_raw!r} is not an IPv4 address") from None
        return cls(ip=str(iface.ip), prefixlen=iface.network.prefixlen, mac=mac_raw.lower(),
                   gateway_ip=gateway)


@dataclass(frozen=True, slots=True)
class Pod:
    """What the pod controller reads of a Pod. `error` is set when the object is malformed
    (a bad `ovn` annotation, a field of the wrong type): such a pod is skipped, with an
    Event, until it is fixed."""

    namespace: str
    name: str
    uid: str = ""
    # Not compared: an event that changes only the resourceVersion changes nothing we read.
    resource_version: str = field(default="", compare=False)
    created: str = ""                     # creationTimestamp (RFC 3339 sorts as text)
    node: str | None = None               # spec.nodeName, lower-cased; None = not scheduled
    host_network: bool = False
    phase: str = ""
    annotation_text: str | None = None    # the raw `ovn` annotation; None = absent
    annotation: PodAnnotation | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def wants_port(self) -> bool:
        """Scheduled, on the pod network, and not finished: it needs a logical port."""
        return self.node is not None and not self.host_network and not self.terminal

    def involved_object(self) -> dict[str, Any]:
        """A minimal object for Events (involvedObject) about this pod."""
        meta = {"namespace": self.namespace, "name": self.name}
        if self.uid:
            meta["uid"] = self.uid
        if self.resource_version:
            meta["resourceVersion"] = self.resource_version
        return {"kind": "Pod", "apiVersion": "v1", "metadata": meta}


def _get(obj: Mapping[str, Any], key: str, kind: type, what: str, errors: list[str]) -> Any:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        errors.append(f"{what} is a {type(value).__name__}, not a {kind.__name__}")
        return None
    return value


def parse_pod(obj: Mapping[str, Any]) -> Pod:
    """A Pod from a raw API object. Raises InvalidObject only when the object has no usable
    namespace/name (it cannot even be keyed); any other defect is kept in `Pod.error`."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise InvalidObject("pod without metadata")
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not namespace or not isinstance(name, str) or not name:
        raise InvalidObject(f"pod without a namespace or name: {namespace!r}/{name!r}")
    errors: list[str] = []
    spec = obj.get("spec")
    if spec is None:
        spec = {}
    elif not isinstance(spec, Mapping):
        errors.append("spec is not an object")
        spec = {}
    status = obj.get("status")
    if not isinstance(status, Mapping):
        status = {}
    node = _get(spec, "nodeName", str, "spec.nodeName", errors)
    host_network = _get(spec, "hostNetwork", bool, "spec.hostNetwork", errors)
    phase = _get(status, "phase", str, "status.phase", errors)
    annotations = meta.get("annotations")
    text = None
    if isinstance(annotations, Mapping):
        text = annotations.get(naming.POD_ANNOTATION)
        if text is not None and not isinstance(text, str):
            errors.append(f"annotation {naming.POD_ANNOTATION!r} is not a string")
            text = None
    annotation = None
    if text:
        try:
            annotation = PodAnnotation.parse(text)
        except InvalidObject as exc:
            errors.append(str(exc))
    return Pod(namespace=namespace, name=name, uid=str(meta.get("uid") or ""),
               resource_version=str(meta.get("resourceVersion") or ""),
               created=str(meta.get("creationTimestamp") or ""),
               node=node.lower() if node else None, host_network=bool(host_network),
               phase=phase or "", annotation_text=text, annotation=annotation,
               error="; ".join(errors) or None)


# =============================================================================================
# Services and their endpoints (the services controller: watcher/services.py)
# =============================================================================================

SERVICE_TYPES = frozenset({"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"})
SERVICE_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
NODE_PORT_TYPES = frozenset({"NodePort", "LoadBalancer"})
DEFAULT_AFFINITY_TIMEOUT = 10800       # Kubernetes' default sessionAffinityConfig timeout
MAX_AFFINITY_TIMEOUT = 86400           # Kubernetes' validation limit
# IANA_SVC_NAME, as Kubernetes validates named ports: at most 15 characters of [a-z0-9-], at
# least one letter, no leading, trailing or double '-'.
_PORT_NAME_RE = re.compile(r"^(?=.*[a-z])(?!-)(?!.*--)[a-z0-9-]{1,15}(?<!-)$")


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str                   # "" for the single unnamed port
    protocol: str               # "TCP" | "UDP" | "SCTP"
    port: int
    target_port: int | str      # a number, or the name of a container port (resolved per endpoint)
    node_port: int | None = None


@dataclass(frozen=True, slots=True)
class Service:
    """What the services controller reads of a core/v1 Service."""

    namespace: str
    name: str
    uid: str = ""
    type: str = "ClusterIP"
    cluster_ips: tuple[str, ...] = ()         # spec.clusterIPs (or clusterIP), canonical text
    ports: tuple[ServicePort, ...] = ()
    external_ips: tuple[str, ...] = ()        # spec.externalIPs
    lb_ingress_ips: tuple[str, ...] = ()      # status.loadBalancer.ingress[].ip
    session_affinity: str = "None"            # "None" | "ClientIP"
    affinity_timeout: int | None = None       # seconds; set iff session_affinity == "ClientIP"
    headless: bool = False                    # clusterIP: None
    external_name: str | None = None          # type ExternalName: spec.externalName

    @property
    def key(self) -> str:
        return naming.service_key(self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class EndpointPort:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class EndpointGroup:
    """Addresses that share one list of ports: one EndpointSlice, or one Endpoints subset."""

    ports: tuple[EndpointPort, ...] = ()
    ready: tuple[str, ...] = ()
    not_ready: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceBackends:
    """The endpoints of one service, from its EndpointSlices or its Endpoints object."""

    groups: tuple[EndpointGroup, ...] = ()

    def for_port(self, port: ServicePort) -> tuple[tuple[str, int], ...]:
        """Ready (ip, port) backends of one service port, sorted and without duplicates.

        An endpoint port belongs to a service port when name and protocol match (the
        EndpointSlice controller names slice ports after service ports and stores the target
        port resolved for the pods of that slice, so a named targetPort may map to different
        numbers in different slices). Not-ready addresses are never backends."""
        found: set[tuple[str, int]] = set()
        for group in self.groups:
            for ep_port in group.ports:
                if ep_port.name == port.name and ep_port.protocol == port.protocol:
                    found.update((ip, ep_port.port) for ip in group.ready)
        return tuple(sorted(found, key=_backend_order))


def _backend_order(backend: tuple[str, int]) -> tuple[int, int, int]:
    ip = ipaddress.ip_address(backend[0])
    return (ip.version, int(ip), backend[1])


class _Errors:
    """Makes the one-line InvalidObject for a defect, prefixed with the object it is in."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, message: str) -> InvalidObject:
        return InvalidObject(f"{self.what}: {message}")


def _ip(value: Any, where: str, err: _Errors, family: int | None = None) -> str:
    if not isinstance(value, str):
        raise err.fail(f"{where} {value!r} is not an IP address")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise err.fail(f"{where} {value!r} is not an IP address") from None
    if family is not None and ip.version != family:
        raise err.fail(f"{where} {value!r} is not an IPv{family} address")
    return str(ip)


def _port_number(value: Any, where: str, err: _Errors) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise err.fail(f"{where} {value!r} is not a port number (1-65535)")
    return value


def _protocol(value: Any, where: str, err: _Errors) -> str:
    if value is None:
        return "TCP"
    if value not in SERVICE_PROTOCOLS:
        raise err.fail(f"{where} {value!r} is not TCP, UDP or SCTP")
    return str(value)


def _list(obj: Mapping[str, Any], key: str, where: str, err: _Errors) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise err.fail(f"{where} is not a list")
    return value


def _mapping(value: Any, where: str, err: _Errors) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise err.fail(f"{where} is not an object")
    return value


def _meta(obj: Any, kind: str) -> tuple[str, str, str]:
    if not isinstance(obj, Mapping):
        raise InvalidObject(f"{kind} is not an object")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise InvalidObject(f"{kind} without metadata")
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not namespace or not isinstance(name, str) or not name:
        raise InvalidObject(f"{kind} without a namespace or name: {namespace!r}/{name!r}")
    return namespace, name, str(meta.get("uid") or "")


def parse_service(obj: Mapping[str, Any]) -> Service:
    """A Service from a raw core/v1 object; InvalidObject (one line) if it is malformed."""
    namespace, name, uid = _meta(obj, "service")
    err = _Errors(f"service {namespace}/{name}")
    spec = _mapping(obj.get("spec"), "spec", err)
    status = _mapping(obj.get("status"), "status", err)
    stype = spec.get("type") or "ClusterIP"
    if stype not in SERVICE_TYPES:
        raise err.fail(f"spec.type {stype!r} is not one of {', '.join(sorted(SERVICE_TYPES))}")

    raw_ips = spec.get("clusterIPs")
    if raw_ips is None:
        single = spec.get("clusterIP")
        raw_ips = [single] if single not in (None, "") else []
    elif not isinstance(raw_ips, list):
        raise err.fail("spec.clusterIPs is not a list")
    headless = bool(raw_ips) and raw_ips[0] == "None"
    cluster_ips: tuple[str, ...] = ()
    if not headless:
        cluster_ips = tuple(_ip(ip, f"spec.clusterIPs[{i}]", err) for i, ip in enumerate(raw_ips))

    ports = []
    for i, raw in enumerate(_list(spec, "ports", "spec.ports", err)):
        where = f"spec.ports[{i}]"
        raw = _mapping(raw, where, err)
        pname = raw.get("name") or ""
        if not isinstance(pname, str):
            raise err.fail(f"{where}.name {pname!r} is not a string")
        protocol = _protocol(raw.get("protocol"), f"{where}.protocol", err)
        port = _port_number(raw.get("port"), f"{where}.port", err)
        target = raw.get("targetPort")
        if target is None or target == 0 or target == "":
            target = port
        elif isinstance(target, str):
            if not _PORT_NAME_RE.match(target):
                raise err.fail(f"{where}.targetPort {target!r} is neither a port number nor a "
                               "port name")
        else:
            target = _port_number(target, f"{where}.targetPort", err)
        node_port = raw.get("nodePort")
        if node_port in (None, 0) or stype not in NODE_PORT_TYPES:
            node_port = None
        else:
            node_port = _port_number(node_port, f"{where}.nodePort", err)
        ports.append(ServicePort(name=pname, protocol=protocol, port=port, target_port=target,
                                 node_port=node_port))

    external_ips = tuple(_ip(ip, f"spec.externalIPs[{i}]", err)
                         for i, ip in enumerate(_list(spec, "externalIPs", "spec.externalIPs", err)))
    lb = _mapping(status.get("loadBalancer"), "status.loadBalancer", err)
    ingress = []
    for i, raw in enumerate(_list(lb, "ingress", "status.loadBalancer.ingress", err)):
        raw = _mapping(raw, f"status.loadBalancer.ingress[{i}]", err)
        if raw.get("ip"):   # hostname-only entries (cloud load balancers by DNS name) have no VIP
            ingress.append(_ip(raw["ip"], f"status.loadBalancer.ingress[{i}].ip", err))

    affinity = spec.get("sessionAffinity") or "None"
    if affinity not in ("None", "ClientIP"):
        raise err.fail(f"spec.sessionAffinity {affinity!r} is not None or ClientIP")
    timeout = None
    if affinity == "ClientIP":
        cfg = _mapping(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig", err)
        client = _mapping(cfg.get("clientIP"), "spec.sessionAffinityConfig.clientIP", err)
        timeout = client.get("timeoutSeconds")
        if timeout is None:
            timeout = DEFAULT_AFFINITY_TIMEOUT
        elif (isinstance(timeout, bool) or not isinstance(timeout, int)
              or not 0 < timeout <= MAX_AFFINITY_TIMEOUT):
            raise err.fail(f"spec.sessionAffinityConfig.clientIP.timeoutSeconds {timeout!r} is "
                           f"not 1-{MAX_AFFINITY_TIMEOUT}")

    external_name = None
    if stype == "ExternalName":
        external_name = spec.get("externalName")
        if not isinstance(external_name, str) or not external_name:
            raise err.fail("type ExternalName without spec.externalName")
    return Service(namespace=namespace, name=name, uid=uid, type=stype, cluster_ips=cluster_ips,
                   ports=tuple(ports), external_ips=external_ips, lb_ingress_ips=tuple(ingress),
                   session_affinity=affinity, affinity_timeout=timeout, headless=headless,
                   external_name=external_name)


def _endpoint_ports(raw_ports: list[Any], where: str, err: _Errors, *,
                    optional_port: bool) -> tuple[EndpointPort, ...]:
    ports = []
    for i, raw in enumerate(raw_ports):
        raw = _mapping(raw, f"{where}[{i}]", err)
        pname = raw.get("name") or ""
        if not isinstance(pname, str):
            raise err.fail(f"{where}[{i}].name {pname!r} is not a string")
        if raw.get("port") is None and optional_port:
            continue    # "all ports": nothing a load balancer VIP can map to
        ports.append(EndpointPort(name=pname,
                                  protocol=_protocol(raw.get("protocol"), f"{where}[{i}].protocol", err),
                                  port=_port_number(raw.get("port"), f"{where}[{i}].port", err)))
    return tuple(ports)


def parse_endpoint_slice(obj: Mapping[str, Any]) -> EndpointGroup | None:
    """One discovery.k8s.io/v1 EndpointSlice; None for FQDN slices (no IPs to balance to).

    An endpoint is ready unless `conditions.ready` is false (the API: "nil ... should be
    interpreted as ready")."""
    namespace, name, _ = _meta(obj, "endpointslice")
    err = _Errors(f"endpointslice {namespace}/{name}")
    family = {"IPv4": 4, "IPv6": 6, "FQDN": None}
    atype = obj.get("addressType")
    if atype not in family:
        raise err.fail(f"addressType {atype!r} is not IPv4, IPv6 or FQDN")
    if atype == "FQDN":
        return None
    ready, not_ready = [], []
    for i, raw in enumerate(_list(obj, "endpoints", "endpoints", err)):
        raw = _mapping(raw, f"endpoints[{i}]", err)
        conditions = _mapping(raw.get("conditions"), f"endpoints[{i}].conditions", err)
        is_ready = conditions.get("ready")
        if is_ready is not None and not isinstance(is_ready, bool):
            raise err.fail(f"endpoints[{i}].conditions.ready {is_ready!r} is not a boolean")
        for j, ip in enumerate(_list(raw, "addresses", f"endpoints[{i}].addresses", err)):
            addr = _ip(ip, f"endpoints[{i}].addresses[{j}]", err, family[atype])
            (not_ready if is_ready is False else ready).append(addr)
    ports = _endpoint_ports(_list(obj, "ports", "ports", err), "ports", err, optional_port=True)
    return EndpointGroup(ports=ports, ready=tuple(ready), not_ready=tuple(not_ready))


def parse_endpoint_slices(objs: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...]) -> ServiceBackends:
    """The backends of one service from all of its EndpointSlices."""
    groups = (parse_endpoint_slice(obj) for obj in objs)
    return ServiceBackends(groups=tuple(g for g in groups if g is not None))


def parse_endpoints(obj: Mapping[str, Any] | None) -> ServiceBackends:
    """The backends of one service from its core/v1 Endpoints object (for clusters that do
    not serve EndpointSlices): each subset's addresses share that subset's ports."""
    if obj is None:
        return ServiceBackends()
    namespace, name, _ = _meta(obj, "endpoints")
    err = _Errors(f"endpoints {namespace}/{name}")
    groups = []
    for i, raw in enumerate(_list(obj, "subsets", "subsets", err)):
        raw = _mapping(raw, f"subsets[{i}]", err)
        addrs: dict[str, list[str]] = {}
        for key in ("addresses", "notReadyAddresses"):
            addrs[key] = []
            for j, entry in enumerate(_list(raw, key, f"subsets[{i}].{key}", err)):
                entry = _mapping(entry, f"subsets[{i}].{key}[{j}]", err)
                addrs[key].append(_ip(entry.get("ip"), f"subsets[{i}].{key}[{j}].ip", err))
        ports = _endpoint_ports(_list(raw, "ports", f"subsets[{i}].ports", err),
                                f"subsets[{i}].ports", err, optional_port=False)
        groups.append(EndpointGroup(ports=ports, ready=tuple(addrs["addresses"]),
                                    not_ready=tuple(addrs["notReadyAddresses"])))
    return ServiceBackends(groups=tuple(groups))
