"""Fixtures of the conformance suite on a real control plane (tests.real_control_plane starts
it once per session; every test here is marked realk8s).

- `kube`: the session's cluster as RealKube, emptied before each test, with the Node objects
  of NODES (EndpointSlices need them);
- `watcher`: ovn-k8s-watcher on a fresh lab's NB with the topology of NODES and GATEWAYS,
  running with the ovn-k8s-watcher ServiceAccount's token (etc/kubernetes/rbac.yaml);
- `kubelet`: what a kubelet would write here (no kubelet runs): a pod's status once the
  watcher has annotated it (podIP from the annotation, Running, Ready).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.kubeapi import ApiError
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, annotation, wait_until, write_topology
from tests.real_control_plane import RealKube

NODES = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24"}
GATEWAYS = {"node1": "192.0.2.10/24"}


@pytest.fixture
def kube(real_kube: RealKube) -> RealKube:
    for name in NODES:
        try:
            real_kube.create("nodes", {"metadata": {"name": name}})
        except ApiError as exc:
            if exc.code != 409:
                raise
    return real_kube


@pytest.fixture
def start_watcher(lab: Lab, kube: RealKube, tmp_path) -> Iterator:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    write_topology(lab.nb, NODES, gateways=GATEWAYS)
    started: list[WatcherProcess] = []

    def start(*extra: str, name: str = "watcher") -> WatcherProcess:
        w = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig, name=name,
                           extra=extra).start()
        started.append(w)
        w.wait_ready()
        return w
    try:
        yield start
    finally:
        for w in started:
            w.kill()


@pytest.fixture
def watcher(start_watcher) -> WatcherProcess:
    return start_watcher()


def pod(name: str, node: str | None = "node1", ns: str = "default",
        labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node:
        body["nodeName"] = node
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


class Kubelet:
    """The pod status a kubelet reports once the CNI plugin has wired the pod."""

    def __init__(self, kube: RealKube) -> None:
        self.kube = kube

    def annotated(self, name: str, ns: str = "default", timeout: float = 20) -> dict[str, str]:
        return wait_until(lambda: annotation(self.kube.get("pods", name, namespace=ns)),
                          timeout, f"the watcher's annotation on {ns}/{name}")

    def run(self, name: str, ns: str = "default", *, ready: bool = True) -> str:
        """Wait for the annotation, report the pod Running (Ready or not); its IP."""
        ip = self.annotated(name, ns)["ip_address"].split("/")[0]
        self.kube.patch("pods", name, {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}},
            namespace=ns)
        return ip

    def set_ready(self, name: str, ready: bool, ns: str = "default") -> None:
        self.kube.patch("pods", name, {"status": {"conditions": [
            {"type": "Ready", "status": "True" if ready else "False"}]}}, namespace=ns)


@pytest.fixture
def kubelet(kube: RealKube) -> Kubelet:
    return Kubelet(kube)


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
