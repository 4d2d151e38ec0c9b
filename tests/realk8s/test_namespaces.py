"""Namespace deletion on a real control plane: the namespace controller deletes the pods and
services in it; with no kubelet, pods stay Terminating until someone confirms them (here the
test, as a kubelet would, with grace 0); then the watcher removes their ports and load
balancers and the namespace goes. Rows of other namespaces are left alone."""

from __future__ import annotations

import pytest

from sandbox.kubeapi import ApiError
from sandbox.watcher_harness import differences, nb_pod_ports, wait_until
from tests.realk8s.conftest import lbs, pod, wait_lbs

pytestmark = [pytest.mark.realk8s, pytest.mark.integration]


def _gone(kube, resource: str, name: str) -> bool:
    try:
        kube.get(resource, name)
    except ApiError as exc:
        return exc.code == 404
    return False


def test_namespace_deletion_removes_its_ports_and_load_balancers(lab, kube, kubelet, watcher):
    kube.ensure_namespace("doomed")
    for name, node in (("d1", "node1"), ("d2", "node2")):
        # A short grace period: the namespace controller re-checks after it.
        kube.create("pods", pod(name, node, ns="doomed", labels={"app": "d"},
                                terminationGracePeriodSeconds=1))
    kube.create("pods", pod("survivor", "node1"))
    ips = sorted(kubelet.run(n, "doomed") for n in ("d1", "d2"))
    kubelet.annotated("survivor")
    svc = kube.create("services", {"metadata": {"name": "d", "namespace": "doomed"}, "spec": {
        "selector": {"app": "d"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    vip = f"{svc['spec']['clusterIP']}:80"
    wait_lbs(lab, {"service:doomed/d:tcp:cluster": {vip: ",".join(f"{ip}:8080" for ip in ips)}})
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), 20, "the NB to match")
    assert set(nb_pod_ports(lab.nb)) == {"doomed_d1", "doomed_d2", "default_survivor"}

    kube.delete("namespaces", "doomed", grace_period_seconds=None)
    terminating = wait_until(
        lambda: [p for p in kube.list("pods", namespace="doomed")
                 if p["metadata"].get("deletionTimestamp")] or None, 20,
        "the namespace controller to delete the pods")
    assert {p["metadata"]["name"] for p in terminating} <= {"d1", "d2"}
    # The kubelet's part: confirm the pods are gone.
    for name in ("d1", "d2"):
        try:
            kube.delete("pods", name, namespace="doomed", grace_period_seconds=0)
        except ApiError as exc:
            assert exc.code == 404
    wait_until(lambda: set(nb_pod_ports(lab.nb)) == {"default_survivor"}, 20,
               "the namespace's ports to go")
    wait_lbs(lab, {})
    wait_until(lambda: _gone(kube, "namespaces", "doomed"), 30, "the namespace to go")
    assert not differences(kube.list("pods"), lab.nb)
    assert lbs(lab) == {}
