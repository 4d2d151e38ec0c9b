"""What the shared NIC needs to know about a Service: PURE.

The raw object is parsed by `ovn_k8s.model.kube.parse_service`, the same parser the services
controller uses, so both sides agree on what a service is. This module keeps only the ports
that must reach the gateway router through the NIC:
- node ports (services of type NodePort and LoadBalancer), on the host's address;
- every service port on each external IPv4 address: spec.externalIPs and
  status.loadBalancer.ingress[].ip.
Headless and ExternalName services get no load balancer in OVN (ovn_k8s/desired/services.py),
so they get no flows either. IPv6 addresses are left out: the gateway router is IPv4-only.

The types (`ServicePorts`, `L4Port`, `ExternalPort`) are the flow table's inputs, in
`ovn_k8s/openflow.py`. A service the parser rejects becomes an empty `ServicePorts` with the reason in `skipped`,
for the daemon to log: one bad object must not cost the other services their flows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ovn_k8s.errors import InvalidObject
from ovn_k8s.kube.rest import object_key
from ovn_k8s.model.kube import Service, parse_service
from ovn_k8s.openflow import ExternalPort, L4Port, ServicePorts


def _ipv4(ip: str) -> bool:
    return ipaddress.ip_address(ip).version == 4


def service_ports(service: Service) -> ServicePorts:
    """The flow-relevant ports of a parsed Service (see the module docstring)."""
    if service.headless or service.type == "ExternalName":
        return ServicePorts(key=service.key)
    node_ports = {L4Port(p.protocol.lower(), p.node_port) for p in service.ports
                  if p.node_port is not None}
    addresses = [ip for ip in (*service.external_ips, *service.lb_ingress_ips) if _ipv4(ip)]
    external = {ExternalPort(ip, p.protocol.lower(), p.port)
                for ip in addresses for p in service.ports}
    return ServicePorts(key=service.key, node_ports=tuple(sorted(node_ports)),
                        external=tuple(sorted(external)))


def parse(obj: Mapping[str, Any]) -> ServicePorts:
    """A raw Service object's ServicePorts; a malformed one has none, and says why."""
    try:
        return service_ports(parse_service(obj))
    except InvalidObject as exc:
        return ServicePorts(key=object_key(obj), skipped=(str(exc),))
