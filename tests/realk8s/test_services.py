"""Services on a real control plane: backends come from the EndpointSlices that
kube-controller-manager writes (pods Ready with a podIP on an existing Node), for every
service type; the watcher runs with the least-privilege token of etc/kubernetes/rbac.yaml."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tests.realk8s.conftest import lbs, pod, wait_lbs

pytestmark = [pytest.mark.realk8s, pytest.mark.integration]
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"


def service(name: str, selector: str | None, *, type: str = "ClusterIP",
            **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type, **spec}
    if selector:
        body["selector"] = {"app": selector}
    if type != "ExternalName":
        body.setdefault("ports", [{"name": "http", "port": 80, "targetPort": 8080}])
    return {"metadata": {"name": name, "namespace": "default"}, "spec": body}


def backends(*ips: str, port: int = 8080) -> str:
    return ",".join(f"{ip}:{port}" for ip in sorted(ips, key=ipaddress.ip_address))


def test_endpointslices_of_the_controller_manager_follow_readiness(lab, kube, kubelet,
                                                                   watcher):
    for name, node in (("web-a", "node1"), ("web-b", "node2"), ("web-c", "node1")):
        kube.create("pods", pod(name, node, labels={"app": "web"}))
    ip_a, ip_b = kubelet.run("web-a"), kubelet.run("web-b")
    ip_c = kubelet.run("web-c", ready=False)
    vip = kube.create("services", service("web", "web"))["spec"]["clusterIP"] + ":80"
    want = {"service:default/web:tcp:cluster": {vip: backends(ip_a, ip_b)}}
    wait_lbs(lab, want)
    # Those backends came from the controller's slices: the test wrote none.
    slices = kube.list("endpointslices", label_selector="kubernetes.io/service-name=web")
    assert slices and all(s["metadata"]["labels"][MANAGED_BY] ==
                          "endpointslice-controller.k8s.io" for s in slices)

    kubelet.set_ready("web-c", True)
    want["service:default/web:tcp:cluster"] = {vip: backends(ip_a, ip_b, ip_c)}
    wait_lbs(lab, want)
    kubelet.set_ready("web-a", False)
    kube.delete("pods", "web-b")
    want["service:default/web:tcp:cluster"] = {vip: backends(ip_c)}
    wait_lbs(lab, want)
    kube.delete("services", "web")
    wait_lbs(lab, {})


def test_every_service_type(lab, kube, kubelet, watcher):
    kube.create("pods", pod("be-1", "node1", labels={"app": "be"}))
    kube.create("pods", pod("be-2", "node2", labels={"app": "be"}))
    ips = (kubelet.run("be-1"), kubelet.run("be-2"))
    to = backends(*ips)

    cluster_ip = kube.create("services", service("cip", "be"))["spec"]["clusterIP"]
    np = kube.create("services", service("np", "be", type="NodePort"))
    lb = kube.create("services", service("lb", "be", type="LoadBalancer"))
    # What a cloud's load-balancer controller reports (none runs here).
    kube.patch("services", "lb", {"status": {"loadBalancer": {
        "ingress": [{"ip": "203.0.113.7"}]}}})
    kube.create("services", service("ext", None, type="ExternalName",
                                    externalName="db.example.com"))
    kube.create("services", service("headless", "be", clusterIP="None"))

    np_port = np["spec"]["ports"][0]["nodePort"]
    lb_port = lb["spec"]["ports"][0]["nodePort"]
    want = {
        "service:default/cip:tcp:cluster": {f"{cluster_ip}:80": to},
        "service:default/np:tcp:cluster": {f"{np['spec']['clusterIP']}:80": to},
        "service:default/np:tcp:nodeport:node1": {f"192.0.2.10:{np_port}": to},
        "service:default/lb:tcp:cluster": {f"{lb['spec']['clusterIP']}:80": to,
                                           "203.0.113.7:80": to},
        "service:default/lb:tcp:external": {"203.0.113.7:80": to},
        "service:default/lb:tcp:nodeport:node1": {f"192.0.2.10:{lb_port}": to},
    }
    wait_lbs(lab, want)
    # The headless service has its slices too; the watcher still builds nothing for it.
    assert kube.list("endpointslices", label_selector="kubernetes.io/service-name=headless")
    assert kube.get("services", "ext")["spec"].get("clusterIP") is None

    # Type changes on the real server: NodePort -> ClusterIP drops the NodePort.
    kube.patch("services", "np", {"spec": {"type": "ClusterIP", "ports": [
        {"name": "http", "port": 80, "targetPort": 8080}]}})
    del want["service:default/np:tcp:nodeport:node1"]
    wait_lbs(lab, want)
    assert set(lbs(lab)) == set(want)
