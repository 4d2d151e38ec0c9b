"""Services -> load balancer rows (pure), and the parsing of raw Service/EndpointSlice/Endpoints.

Each case is a raw Service plus its raw endpoints; the expected result is every load balancer
the builder wants, by identity, with its VIPs, options and where it is linked.
"""

from __future__ import annotations

from typing import Any

import pytest

from ovn_k8s.desired.services import AffinityMode, Gateway, NodePortMode, service_rows, template_var_rows
from ovn_k8s.errors import InvalidObject
from ovn_k8s.model.kube import (
    parse_endpoint_slice,
    parse_endpoint_slices,
    parse_endpoints,
    parse_service,
)
from ovn_k8s.nb.model import Parent, Row

GATEWAYS = (Gateway("node2", "chassis-2", "192.0.2.11"), Gateway("node1", "chassis-1", "192.0.2.10"))
CLUSTER = ("Load_Balancer_Group", "k8s-cluster-lbs")
GATEWAY = ("Load_Balancer_Group", "k8s-gateway-lbs")
GR1 = ("Logical_Router", "gateway-router:node1")
GR2 = ("Logical_Router", "gateway-router:node2")


def svc(name: str = "web", *, type: str | None = None, cluster_ip: Any = "10.96.0.10",
        ports: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"clusterIP": cluster_ip,
                            "ports": ports if ports is not None else [{"port": 80, "targetPort": 8080}]}
    if type:
        body["type"] = type
    status = spec.pop("status", None)
    body.update(spec)
    obj: dict[str, Any] = {"metadata": {"namespace": "default", "name": name, "uid": "uid-1"},
                           "spec": body}
    if status:
        obj["status"] = status
    return obj


def eps(*endpoints: Any, ports: Any = ((None, 8080),), family: str = "IPv4",
        name: str = "web-abc") -> dict[str, Any]:
    """An EndpointSlice: endpoints are "ip" (ready), ("ip", False|None) for the ready condition;
    ports are (name, port) or (name, port, protocol)."""
    items = []
    for ep in endpoints:
        ip, ready = (ep, True) if isinstance(ep, str) else ep
        item: dict[str, Any] = {"addresses": [ip], "conditions": {}}
        if ready is not None:
            item["conditions"]["ready"] = ready
        items.append(item)
    port_list = []
    for p in ports:
        entry: dict[str, Any] = {"port": p[1], "protocol": p[2] if len(p) > 2 else "TCP"}
        if p[0] is not None:
            entry["name"] = p[0]
        port_list.append(entry)
    return {"metadata": {"namespace": "default", "name": name,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": family, "endpoints": items, "ports": port_list}


def build(service: dict[str, Any], slices: list[dict[str, Any]] | None = None,
          endpoints: dict[str, Any] | None = None, *,
          mode: NodePortMode = NodePortMode.PER_GATEWAY,
          affinity: AffinityMode = AffinityMode.TIMEOUT) -> list[Row]:
    backends = parse_endpoint_slices(slices) if slices is not None else parse_endpoints(endpoints)
    return service_rows(parse_service(service), backends, GATEWAYS, nodeport_mode=mode,
                        affinity_mode=affinity)


def summary(rows: list[Row]) -> dict[str, tuple[dict[str, str], dict[str, str], tuple[str, str]]]:
    """lb id -> (vips, options, (parent table, parent id)); every row is a linked LB with no
    selection_fields (checked separately for AffinityMode.HASH)."""
    out = {}
    for row in rows:
        assert row.table == "Load_Balancer" and row.parent is not None
        assert row.parent.column == "load_balancer"
        assert row.columns["selection_fields"] == []
        out[row.id] = (row.columns["vips"], row.columns["options"], (row.parent.table, row.parent.id))
    return out


ID = "service:default/web"
NO_OPTS: dict[str, str] = {}
EXT_OPTS = {"neighbor_responder": "none"}

CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any]]] = [
    ("cluster ip, two ready endpoints",
     svc(), [eps("10.244.2.5", "10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080"}, NO_OPTS, CLUSTER)}),
    ("backends sorted by address, not as text",
     svc(), [eps("10.244.1.10", "10.244.1.9", "10.244.1.100")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.9:8080,10.244.1.10:8080,10.244.1.100:8080"},
                            NO_OPTS, CLUSTER)}),
    ("only ready endpoints; an unknown ready condition counts as ready",
     svc(), [eps("10.244.1.5", ("10.244.1.6", False), ("10.244.1.7", None))],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080,10.244.1.7:8080"}, NO_OPTS, CLUSTER)}),
    ("no ready endpoints: no VIP, no load balancer",
     svc(), [eps(("10.244.1.5", False))], {}),
    ("no endpoint slices at all",
     svc(), [], {}),
    ("target port defaults to the port",
     svc(ports=[{"port": 80}]), [eps("10.244.1.5", ports=[(None, 80)])],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:80"}, NO_OPTS, CLUSTER)}),
    ("multi-port service, different endpoints per port",
     svc(ports=[{"name": "http", "port": 80, "targetPort": 8080},
                {"name": "metrics", "port": 9090, "targetPort": 9100}]),
     [eps("10.244.1.5", ports=[("http", 8080), ("metrics", 9100)], name="a"),
      eps("10.244.2.5", ports=[("http", 8080)], name="b")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080",
                             "10.96.0.10:9090": "10.244.1.5:9100"}, NO_OPTS, CLUSTER)}),
    ("named target port resolved per endpoint (one slice per resolved number)",
     svc(ports=[{"name": "http", "port": 80, "targetPort": "web"}]),
     [eps("10.244.1.5", ports=[("http", 8080)], name="a"),
      eps("10.244.2.5", ports=[("http", 9000)], name="b")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:9000"}, NO_OPTS, CLUSTER)}),
    ("endpoint ports of another name or protocol do not match",
     svc(ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]),
     [eps("10.244.1.5", ports=[("dns", 53, "TCP"), ("other", 53, "UDP")])], {}),
    ("TCP, UDP and SCTP: one load balancer per protocol",
     svc(ports=[{"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "dns-udp", "port": 53, "protocol": "UDP"},
                {"name": "sig", "port": 3868, "protocol": "SCTP"}]),
     [eps("10.244.1.5", ports=[("dns-tcp", 53, "TCP"), ("dns-udp", 53, "UDP"), ("sig", 3868, "SCTP")])],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:53": "10.244.1.5:53"}, NO_OPTS, CLUSTER),
      f"{ID}:udp:cluster": ({"10.96.0.10:53": "10.244.1.5:53"}, NO_OPTS, CLUSTER),
      f"{ID}:sctp:cluster": ({"10.96.0.10:3868": "10.244.1.5:3868"}, NO_OPTS, CLUSTER)}),
    ("session affinity ClientIP: default timeout 10800",
     svc(sessionAffinity="ClientIP"), [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080"}, {"affinity_timeout": "10800"},
                            CLUSTER)}),
    ("session affinity with its own timeout",
     svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}),
     [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080"}, {"affinity_timeout": "30"}, CLUSTER)}),
    ("session affinity above OVN's limit is clamped to 65535",
     svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86400}}),
     [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080"}, {"affinity_timeout": "65535"},
                            CLUSTER)}),
    ("sessionAffinity None: no affinity option",
     svc(sessionAffinity="None"), [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080"}, NO_OPTS, CLUSTER)}),
    ("headless service: nothing",
     svc(cluster_ip="None"), [eps("10.244.1.5")], {}),
    ("ExternalName service: nothing",
     svc(type="ExternalName", cluster_ip=None, ports=[], externalName="db.example.com"),
     [eps("10.244.1.5")], {}),
    ("NodePort: cluster VIP plus one NodePort VIP per gateway, on that gateway's router",
     svc(type="NodePort", ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}]),
     [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080"}, NO_OPTS, CLUSTER),
      f"{ID}:tcp:nodeport:node1": ({"192.0.2.10:30080": "10.244.1.5:8080"}, NO_OPTS, GR1),
      f"{ID}:tcp:nodeport:node2": ({"192.0.2.11:30080": "10.244.1.5:8080"}, NO_OPTS, GR2)}),
    ("a ClusterIP service ignores a leftover nodePort (type changed back)",
     svc(type="ClusterIP", ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}]),
     [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080"}, NO_OPTS, CLUSTER)}),
    ("externalIPs: on the cluster switches and on every gateway, no ARP answers",
     svc(externalIPs=["198.51.100.7", "192.0.2.100"]), [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080", "198.51.100.7:80": "10.244.1.5:8080",
                             "192.0.2.100:80": "10.244.1.5:8080"}, NO_OPTS, CLUSTER),
      f"{ID}:tcp:external": ({"198.51.100.7:80": "10.244.1.5:8080", "192.0.2.100:80": "10.244.1.5:8080"},
                             EXT_OPTS, GATEWAY)}),
    ("LoadBalancer with ingress IPs (hostname-only ingress ignored), affinity on every LB",
     svc(type="LoadBalancer", sessionAffinity="ClientIP",
         ports=[{"port": 443, "targetPort": 8443, "nodePort": 31443, "protocol": "TCP"}],
         status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}]}}),
     [eps("10.244.1.5", ports=[(None, 8443)])],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:443": "10.244.1.5:8443", "203.0.113.9:443": "10.244.1.5:8443"},
                            {"affinity_timeout": "10800"}, CLUSTER),
      f"{ID}:tcp:external": ({"203.0.113.9:443": "10.244.1.5:8443"},
                             {**EXT_OPTS, "affinity_timeout": "10800"}, GATEWAY),
      f"{ID}:tcp:nodeport:node1": ({"192.0.2.10:31443": "10.244.1.5:8443"}, {"affinity_timeout": "10800"},
                                   GR1),
      f"{ID}:tcp:nodeport:node2": ({"192.0.2.11:31443": "10.244.1.5:8443"}, {"affinity_timeout": "10800"},
                                   GR2)}),
    ("an IP both external and ingress is one VIP",
     svc(type="LoadBalancer", externalIPs=["203.0.113.9"],
         status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}), [eps("10.244.1.5")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080", "203.0.113.9:80": "10.244.1.5:8080"},
                            NO_OPTS, CLUSTER),
      f"{ID}:tcp:external": ({"203.0.113.9:80": "10.244.1.5:8080"}, EXT_OPTS, GATEWAY)}),
    ("dual stack: each VIP gets the backends of its own family",
     svc(clusterIPs=["10.96.0.10", "fd00:10:96::10"]),
     [eps("10.244.1.5"), eps("fd00:10:244:1::5", family="IPv6", name="v6")],
     {f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080",
                             "[fd00:10:96::10]:80": "[fd00:10:244:1::5]:8080"}, NO_OPTS, CLUSTER)}),
    ("FQDN slices are ignored",
     svc(), [{"metadata": {"namespace": "default", "name": "f"}, "addressType": "FQDN",
              "endpoints": [{"addresses": ["db.example.com"]}], "ports": [{"port": 8080}]}], {}),
]


@pytest.mark.parametrize(("service", "slices", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_service_load_balancers(service: dict[str, Any], slices: list[dict[str, Any]],
                                expected: dict[str, Any]) -> None:
    assert summary(build(service, slices)) == expected


def test_hash_affinity_pins_on_the_client_address_without_a_timeout() -> None:
    slices = [eps("10.244.1.5", "10.244.2.5", ports=[(None, 8080)])]
    sticky = build(svc(type="NodePort", sessionAffinity="ClientIP",
                       sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}},
                       ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}]), slices,
                   affinity=AffinityMode.HASH)
    assert {r.id: (r.columns["selection_fields"], r.columns["options"]) for r in sticky} == {
        f"{ID}:tcp:cluster": (["ip_src"], {}),
        f"{ID}:tcp:nodeport:node1": (["ip_src"], {}),
        f"{ID}:tcp:nodeport:node2": (["ip_src"], {})}
    plain = build(svc(), slices, affinity=AffinityMode.HASH)
    assert [r.columns["selection_fields"] for r in plain] == [[]]
    # the default of the builder is HASH
    assert service_rows(parse_service(svc(sessionAffinity="ClientIP")), parse_endpoint_slices(slices),
                        )[0].columns["selection_fields"] == ["ip_src"]


def test_row_identity_names_and_external_ids() -> None:
    (row,) = build(svc(ports=[{"port": 53, "protocol": "UDP"}]),
                   [eps("10.244.1.5", ports=[(None, 53, "UDP")])])
    assert row.id == "service:default/web:udp:cluster"
    assert row.owner == "service:default/web"
    assert row.columns["name"] == "Service_default/web_UDP_cluster"
    assert row.columns["protocol"] == "udp"
    assert row.columns["external_ids"] == {"ovn-k8s/service": "default/web", "ovn-k8s/protocol": "udp",
                                           "ovn-k8s/lb-scope": "cluster"}
    (gw_row,) = [r for r in build(svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]),
                                  [eps("10.244.1.5", ports=[(None, 80)])])
                 if r.id.endswith("node1")]
    assert gw_row.columns["name"] == "Service_default/web_TCP_nodeport_node1"
    assert gw_row.columns["external_ids"]["ovn-k8s/node"] == "node1"


def test_type_change_cluster_ip_to_node_port_and_back() -> None:
    ports = [{"port": 80, "targetPort": 8080, "nodePort": 30080}]
    slices = [eps("10.244.1.5")]
    cluster = {r.id for r in build(svc(type="ClusterIP", ports=[{"port": 80, "targetPort": 8080}]), slices)}
    nodeport = {r.id for r in build(svc(type="NodePort", ports=ports), slices)}
    back = {r.id for r in build(svc(type="ClusterIP", ports=[{"port": 80, "targetPort": 8080}]), slices)}
    assert cluster == back == {f"{ID}:tcp:cluster"}
    assert nodeport == cluster | {f"{ID}:tcp:nodeport:node1", f"{ID}:tcp:nodeport:node2"}
    # the cluster load balancer itself does not change with the type
    before = build(svc(type="ClusterIP", ports=[{"port": 80, "targetPort": 8080}]), slices)
    after = [r for r in build(svc(type="NodePort", ports=ports), slices) if r.id.endswith(":cluster")]
    assert before == after


def test_deleted_service_wants_nothing() -> None:
    assert service_rows(None, parse_endpoint_slices([eps("10.244.1.5")]), GATEWAYS) == []


def test_endpoints_fallback_subsets_with_their_own_ports() -> None:
    endpoints = {"metadata": {"namespace": "default", "name": "web"}, "subsets": [
        {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.5"}],
         "notReadyAddresses": [{"ip": "10.244.3.5"}],
         "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100}]},
        {"addresses": [{"ip": "10.244.4.5"}], "ports": [{"name": "http", "port": 8081}]}]}
    service = svc(ports=[{"name": "http", "port": 80, "targetPort": "web"},
                         {"name": "metrics", "port": 9090, "targetPort": 9100}])
    assert summary(build(service, endpoints=endpoints)) == {
        f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080,10.244.2.5:8080,10.244.4.5:8081",
                               "10.96.0.10:9090": "10.244.1.5:9100,10.244.2.5:9100"}, NO_OPTS, CLUSTER)}
    assert build(service, endpoints=None) == []


def test_template_mode_one_nodeport_lb_for_every_gateway() -> None:
    rows = build(svc(type="NodePort", ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080},
                                             {"name": "b", "port": 81, "nodePort": 30081,
                                              "protocol": "UDP"}]),
                 [eps("10.244.1.5", ports=[(None, 8080)]), eps("10.244.1.6", ports=[("b", 81, "UDP")],
                                                                name="u")],
                 mode=NodePortMode.TEMPLATE)
    template_opts = {"template": "true", "address-family": "ipv4"}
    assert summary(rows) == {
        f"{ID}:tcp:cluster": ({"10.96.0.10:80": "10.244.1.5:8080"}, NO_OPTS, CLUSTER),
        f"{ID}:udp:cluster": ({"10.96.0.10:81": "10.244.1.6:81"}, NO_OPTS, CLUSTER),
        f"{ID}:tcp:nodeport": ({"^NODEIP:30080": "10.244.1.5:8080"}, template_opts, GATEWAY),
        f"{ID}:udp:nodeport": ({"^NODEIP:30081": "10.244.1.6:81"}, template_opts, GATEWAY)}


def test_template_vars_one_row_per_gateway_chassis() -> None:
    rows = template_var_rows(GATEWAYS, nodeport_mode=NodePortMode.TEMPLATE)
    assert [(r.table, r.id, r.owner, r.columns, r.parent) for r in rows] == [
        ("Chassis_Template_Var", "template-vars:chassis-1", "service-templates",
         {"chassis": "chassis-1", "variables": {"NODEIP": "192.0.2.10"},
          "external_ids": {"ovn-k8s/node": "node1"}}, None),
        ("Chassis_Template_Var", "template-vars:chassis-2", "service-templates",
         {"chassis": "chassis-2", "variables": {"NODEIP": "192.0.2.11"},
          "external_ids": {"ovn-k8s/node": "node2"}}, None)]
    assert template_var_rows(GATEWAYS, nodeport_mode=NodePortMode.PER_GATEWAY) == []
    assert template_var_rows((), nodeport_mode=NodePortMode.TEMPLATE) == []


def test_rows_do_not_depend_on_gateway_order_or_input_order() -> None:
    service = parse_service(svc(type="NodePort", externalIPs=["198.51.100.8", "198.51.100.7"],
                                ports=[{"port": 80, "targetPort": 8080, "nodePort": 30080}]))
    a = parse_endpoint_slices([eps("10.244.2.5", "10.244.1.5")])
    b = parse_endpoint_slices([eps("10.244.1.5"), eps("10.244.2.5", name="x")])
    assert service_rows(service, a, GATEWAYS) == service_rows(service, b, tuple(reversed(GATEWAYS)))


def test_gateway_parent_defaults_to_the_gateway_router_identity() -> None:
    assert Gateway("n", "c", "192.0.2.1").router_id == "gateway-router:n"
    assert Parent("Logical_Router", "gateway-router:node1", "load_balancer") in {
        r.parent for r in build(svc(type="NodePort", ports=[{"port": 80, "nodePort": 30080}]),
                                [eps("10.244.1.5", ports=[(None, 80)])])}


# -- parsing: a malformed object is one InvalidObject line naming the object and the field ------------
BAD_SERVICES = [
    ("port 0", svc(ports=[{"port": 0}]), r"service default/web: spec.ports\[0\].port 0 is not a port"),
    ("port too big", svc(ports=[{"port": 70000}]), r"spec.ports\[0\].port 70000"),
    ("port as text", svc(ports=[{"port": "80"}]), r"spec.ports\[0\].port '80'"),
    ("no port", svc(ports=[{"name": "x"}]), r"spec.ports\[0\].port None"),
    ("bad protocol", svc(ports=[{"port": 80, "protocol": "ICMP"}]), r"protocol 'ICMP' is not TCP"),
    ("bad target port name", svc(ports=[{"port": 80, "targetPort": "Web_Port"}]),
     r"targetPort 'Web_Port' is neither"),
    ("numeric text target port", svc(ports=[{"port": 80, "targetPort": "8080"}]), r"targetPort '8080'"),
    ("target port out of range", svc(ports=[{"port": 80, "targetPort": 65536}]), r"targetPort 65536"),
    ("bad node port", svc(type="NodePort", ports=[{"port": 80, "nodePort": 99999}]), r"nodePort 99999"),
    ("bad cluster IP", svc(cluster_ip="10.96.0.300"), r"spec.clusterIPs\[0\] '10.96.0.300'"),
    ("bad external IP", svc(externalIPs=["nope"]), r"spec.externalIPs\[0\] 'nope'"),
    ("bad ingress IP", svc(status={"loadBalancer": {"ingress": [{"ip": "1.2.3"}]}}),
     r"ingress\[0\].ip '1.2.3'"),
    ("bad type", svc(type="Magic"), r"spec.type 'Magic'"),
    ("bad affinity", svc(sessionAffinity="Cookie"), r"sessionAffinity 'Cookie'"),
    ("affinity timeout 0", svc(sessionAffinity="ClientIP",
                               sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
     r"timeoutSeconds 0 is not 1-86400"),
    ("ports not a list", svc(ports={"port": 80}), r"spec.ports is not a list"),  # type: ignore[arg-type]
    ("ExternalName without a name", svc(type="ExternalName", cluster_ip=None, ports=[]),
     r"without spec.externalName"),
    ("no metadata", {"spec": {}}, r"service without metadata"),
    ("no name", {"metadata": {"namespace": "default"}}, r"service without a namespace or name"),
]


@pytest.mark.parametrize(("obj", "message"), [c[1:] for c in BAD_SERVICES], ids=[c[0] for c in BAD_SERVICES])
def test_malformed_services_are_invalid_objects(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidObject, match=message):
        parse_service(obj)


def test_service_fields_are_parsed() -> None:
    s = parse_service(svc(type="LoadBalancer", sessionAffinity="ClientIP",
                          ports=[{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080}],
                          externalIPs=["198.51.100.7"],
                          status={"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}))
    assert (s.key, s.uid, s.type, s.cluster_ips, s.external_ips, s.lb_ingress_ips) == (
        "default/web", "uid-1", "LoadBalancer", ("10.96.0.10",), ("198.51.100.7",), ("203.0.113.9",))
    (port,) = s.ports
    assert (port.name, port.protocol, port.port, port.target_port, port.node_port) == (
        "http", "TCP", 80, "web", 30080)
    assert (s.session_affinity, s.affinity_timeout, s.headless) == ("ClientIP", 10800, False)
    assert parse_service(svc(cluster_ip="None")).headless
    ext = parse_service(svc(type="ExternalName", cluster_ip=None, ports=[], externalName="db.example"))
    assert ext.external_name == "db.example" and ext.cluster_ips == ()


BAD_SLICES = [
    ("bad address", {"addressType": "IPv4", "endpoints": [{"addresses": ["10.244.1.300"]}]},
     r"endpointslice default/s: endpoints\[0\].addresses\[0\] '10.244.1.300'"),
    ("address of the other family", {"addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]},
     r"is not an IPv4 address"),
    ("bad address type", {"addressType": "IPv5"}, r"addressType 'IPv5'"),
    ("bad ready condition", {"addressType": "IPv4",
                             "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": "yes"}}]},
     r"conditions.ready 'yes' is not a boolean"),
    ("bad port", {"addressType": "IPv4", "ports": [{"name": "x", "port": 0}]}, r"ports\[0\].port 0"),
    ("bad port protocol", {"addressType": "IPv4", "ports": [{"port": 80, "protocol": "tcp"}]},
     r"ports\[0\].protocol 'tcp'"),
]


@pytest.mark.parametrize(("body", "message"), [c[1:] for c in BAD_SLICES], ids=[c[0] for c in BAD_SLICES])
def test_malformed_endpoint_slices_are_invalid_objects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidObject, match=message):
        parse_endpoint_slice({"metadata": {"namespace": "default", "name": "s"}, **body})


def test_slice_port_without_a_number_is_not_a_backend_port() -> None:
    group = parse_endpoint_slice({"metadata": {"namespace": "default", "name": "s"}, "addressType": "IPv4",
                                  "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "x"}]})
    assert group is not None and group.ports == () and group.ready == ("10.0.0.1",)


def test_malformed_endpoints_are_invalid_objects() -> None:
    meta = {"namespace": "default", "name": "web"}
    with pytest.raises(InvalidObject, match=r"endpoints default/web: subsets\[0\].addresses\[0\].ip 'x'"):
        parse_endpoints({"metadata": meta, "subsets": [{"addresses": [{"ip": "x"}]}]})
    with pytest.raises(InvalidObject, match=r"subsets\[0\].ports\[0\].port None"):
        parse_endpoints({"metadata": meta, "subsets": [{"ports": [{"name": "http"}]}]})
    with pytest.raises(InvalidObject, match=r"subsets is not a list"):
        parse_endpoints({"metadata": meta, "subsets": {}})
