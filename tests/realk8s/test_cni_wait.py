"""The CNI plugin's wait for the `ovn` annotation (ovn_k8s.cni.kubeapi) against kube-apiserver
over HTTPS, from a kubeconfig holding the ovn-k8s-cni ServiceAccount's token (the read-only
role of etc/kubernetes/rbac.yaml), while the real watcher annotates the pod; and the same
wait with a token allowed only to GET pods fails at once: the role needs `watch` too."""

from __future__ import annotations

import threading
import time

import pytest

from ovn_k8s.cni import kubeapi
from ovn_k8s.cni.kubeapi import ApiSettings, PodNetwork, connection_params
from ovn_k8s.cni.protocol import CniError
from sandbox.watcher_harness import annotation, wait_until
from tests.realk8s.conftest import pod

pytestmark = [pytest.mark.realk8s, pytest.mark.integration]


def watches_of_one_pod(kube) -> float:
    """Open pod watches scoped to one object (fieldSelector metadata.name), from
    kube-apiserver's own metrics: only the plugin makes such a watch here."""
    text = kube.cp.client.request_text("GET", "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_longrunning_requests{") and 'resource="pods"' in line \
                and 'scope="resource"' in line and 'verb="WATCH"' in line:
            total += float(line.rpartition(" ")[2])
    return total


def wait(kubeconfig: str, name: str, uid: str | None, timeout: float = 20) -> PodNetwork:
    params = connection_params(ApiSettings(kubeconfig=kubeconfig), dict)
    assert params.server.startswith("https://") and params.ca_file
    client = kubeapi.make_client(params)
    try:
        return kubeapi.wait_for_pod_network(client, "default", name, uid=uid,
                                            deadline=time.monotonic() + timeout,
                                            poll_interval=0.05)
    finally:
        client.close()


def test_the_wait_with_the_cni_service_account_sees_the_watchers_annotation(kube, tmp_path):
    # The plugin starts waiting before the watcher runs: the GET finds no annotation, so the
    # annotation arrives through the watch of that one pod.
    uid = kube.create("pods", pod("cni-pod", "node1"))["metadata"]["uid"]
    kubeconfig = kube.write_kubeconfig(tmp_path / "cni.kubeconfig",
                                       token=kube.cluster.cni_token)
    result: dict[str, object] = {}

    def plugin() -> None:
        try:
            result["network"] = wait(kubeconfig, "cni-pod", uid)
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            result["error"] = exc

    thread = threading.Thread(target=plugin, daemon=True)
    thread.start()
    wait_until(lambda: "error" in result or watches_of_one_pod(kube) >= 1, 20,
               "the plugin's watch of its pod")
    assert thread.is_alive(), result
    kube.patch("pods", "cni-pod", {"metadata": {"annotations": {"ovn": (
        '{"ip_address": "10.244.1.9/24", "mac_address": "0a:58:0a:f4:01:09", '
        '"gateway_ip": "10.244.1.1"}')}}})
    thread.join(30)
    assert "error" not in result, result
    network = result["network"]
    assert isinstance(network, PodNetwork)
    assert network.ip_cidr == annotation(kube.get("pods", "cni-pod"))["ip_address"]
    assert network.gateway == "10.244.1.1"


def test_the_watchers_own_annotation_reaches_the_plugin(kube, watcher, tmp_path):
    uid = kube.create("pods", pod("wired", "node2"))["metadata"]["uid"]
    kubeconfig = kube.write_kubeconfig(tmp_path / "cni.kubeconfig",
                                       token=kube.cluster.cni_token)
    network = wait(kubeconfig, "wired", uid)
    ann = annotation(kube.get("pods", "wired"))
    assert network.ip_cidr == ann["ip_address"] and network.mac == ann["mac_address"]
    assert network.ip_cidr.startswith("10.244.2.")


def test_a_token_that_may_only_get_pods_fails_at_once(kube, tmp_path):
    cp = kube.cp
    cp.apply([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "pods-get-only"},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}])
    token = cp.service_account_token("get-only", namespace="default",
                                     cluster_role="pods-get-only")
    kube.create("pods", pod("unwired", "node1"))
    kubeconfig = kube.write_kubeconfig(tmp_path / "get-only.kubeconfig", token=token)
    with pytest.raises(CniError) as err:
        wait(kubeconfig, "unwired", None, timeout=20)
    assert err.value.code == 100 and "cannot read pod default/unwired" in err.value.msg
    # At once, on the watch (the GET was allowed and found no annotation), not at the deadline.
    assert "forbidden" in err.value.details.lower() and "watch" in err.value.details.lower()
