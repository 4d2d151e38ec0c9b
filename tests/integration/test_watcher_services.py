"""Services wired end to end through the daemon: our API server (services, EndpointSlices or
Endpoints) -> ovn-k8s-watcher (a subprocess) -> load balancers in a real NB.

Each event kind: add, endpoints change, modify ports, type change ClusterIP -> NodePort and
back, a gateway added later, delete; a malformed service skipped with an Event while the
others proceed; the fallback to core/v1 Endpoints when EndpointSlices are not served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, wait_until, write_topology
from tests.real_control_plane import BOTH_SERVERS

pytestmark = pytest.mark.integration
NODES = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24"}
GATEWAYS = {"node1": "192.0.2.10/24"}


@pytest.fixture
def watcher(lab: Lab, kube: KubeApiServer, tmp_path) -> Iterator[WatcherProcess]:
    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    write_topology(lab.nb, NODES, gateways=GATEWAYS)
    w = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig)
    try:
        yield w
    finally:
        w.kill()


def service(name: str, *, type: str = "ClusterIP", ports: list | None = None,
            **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": type, "selector": {"app": name},
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}],
                     **spec}}


def endpoint_slice(name: str, *ips: str, port: int = 8080, ready: bool = True) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


def lbs(lab: Lab) -> dict[str, dict[str, str]]:
    """Our load balancers: ovn-k8s/id -> vips."""
    data = json.loads(lab.nbctl("--format=json", "--columns=vips,external_ids", "list",
                                "Load_Balancer"))
    out = {}
    for vips, ext in data["data"]:
        ext = dict(ext[1])
        if ext.get("ovn-k8s/owner", "").startswith("service:"):
            assert ext["ovn-k8s/id"] not in out, "duplicate load balancer"
            out[ext["ovn-k8s/id"]] = dict(vips[1])
    return out


def wait_lbs(lab: Lab, want: dict, timeout: float = 20) -> None:
    wait_until(lambda: lbs(lab) == want, timeout, f"load balancers {want}")


@BOTH_SERVERS
def test_service_events_end_to_end(lab, kube, watcher):
    kube.create("services", service("early"))              # before the watcher starts
    kube.create("endpointslices", endpoint_slice("early", "10.244.1.5"))
    watcher.start().wait_ready()
    early_ip = kube.get("services", "early")["spec"]["clusterIP"]
    wait_lbs(lab, {"service:default/early:tcp:cluster": {f"{early_ip}:80": "10.244.1.5:8080"}})

    # add
    web = kube.create("services", service("web"))
    ip = web["spec"]["clusterIP"]
    kube.create("endpointslices", endpoint_slice("web", "10.244.1.7", "10.244.2.7"))
    want = {"service:default/early:tcp:cluster": {f"{early_ip}:80": "10.244.1.5:8080"},
            "service:default/web:tcp:cluster": {f"{ip}:80": "10.244.1.7:8080,10.244.2.7:8080"}}
    wait_lbs(lab, want)

    # endpoints change: one backend goes, one becomes not ready, one comes
    kube.replace("endpointslices", {**endpoint_slice("web", "10.244.2.7", "10.244.2.9"),
                                    "metadata": kube.get("endpointslices", "web-abc")["metadata"]})
    want["service:default/web:tcp:cluster"] = {f"{ip}:80": "10.244.2.7:8080,10.244.2.9:8080"}
    wait_lbs(lab, want)

    # type change ClusterIP -> NodePort: a VIP on the gateway's physical IP
    kube.patch("services", "web", {"spec": {"type": "NodePort"}})
    node_port = kube.get("services", "web")["spec"]["ports"][0]["nodePort"]
    want["service:default/web:tcp:nodeport:node1"] = {
        f"192.0.2.10:{node_port}": "10.244.2.7:8080,10.244.2.9:8080"}
    wait_lbs(lab, want)

    # a gateway added later gets the NodePort too
    write_topology(lab.nb, NODES, gateways={**GATEWAYS, "node2": "192.0.2.11/24"})
    want["service:default/web:tcp:nodeport:node2"] = {
        f"192.0.2.11:{node_port}": "10.244.2.7:8080,10.244.2.9:8080"}
    wait_lbs(lab, want)

    # and back to ClusterIP
    kube.patch("services", "web", {"spec": {"type": "ClusterIP",
                                            "ports": [{"name": "http", "port": 80,
                                                       "targetPort": 8080}]}})
    for key in [k for k in want if ":nodeport:" in k]:
        del want[key]
    wait_lbs(lab, want)

    # no ready endpoints: the VIP goes
    kube.delete("endpointslices", "early-abc")
    del want["service:default/early:tcp:cluster"]
    wait_lbs(lab, want)

    # delete
    kube.delete("services", "web")
    wait_lbs(lab, {})
    assert watcher.metric("ovnk8s_watcher_events_total", resource="services",
                          type="DELETED") == 1
    assert watcher.stop() == 0


def test_a_malformed_service_is_skipped_with_an_event(lab, kube, watcher):
    watcher.start().wait_ready()
    kube.create("services", service("bad", ports=[{"name": "http", "port": 80,
                                                    "protocol": "ICMP"}]))
    good = kube.create("services", service("good"))
    kube.create("endpointslices", endpoint_slice("bad", "10.244.1.5"))
    kube.create("endpointslices", endpoint_slice("good", "10.244.1.6"))
    wait_lbs(lab, {"service:default/good:tcp:cluster": {
        f"{good['spec']['clusterIP']}:80": "10.244.1.6:8080"}})

    def bad_event() -> list:
        return [e for e in kube.list("events")
                if e["involvedObject"].get("name") == "bad" and e["reason"] == "ErrorSyncingService"]
    event = wait_until(bad_event, 10, "an Event on the bad service")[0]
    assert event["type"] == "Warning" and "ICMP" in event["message"]
    assert watcher.metric("ovnk8s_watcher_invalid_objects_total", resource="services") >= 1


def test_endpoints_are_used_when_endpointslices_are_not_served(lab, kube, watcher):
    kube.inject_error(404, reason="NotFound", verb="discovery", count=1)
    watcher.start().wait_ready()
    assert "using core/v1 Endpoints" in watcher.log()
    web = kube.create("services", service("web"))
    kube.create("endpoints", {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.244.1.8"}], "notReadyAddresses": [{"ip": "10.244.1.9"}],
                     "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]})
    wait_lbs(lab, {"service:default/web:tcp:cluster": {
        f"{web['spec']['clusterIP']}:80": "10.244.1.8:8080"}})
    assert watcher.metric("ovnk8s_watcher_watch_up", resource="endpoints") == 1
