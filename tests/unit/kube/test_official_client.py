"""The official `kubernetes` client works against the test API server unchanged.

(Only the tests import `kubernetes`; our own code never does.)
"""

from __future__ import annotations

import threading

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from sandbox.kubeapi import KubeApiServer


@pytest.fixture
def api(kubeapi):
    cfg = k8s.Configuration(host=kubeapi.url)
    with k8s.ApiClient(cfg) as api_client:
        yield api_client


def _pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


CASES = {
    "pods": dict(
        body=_pod("p1"), ns=True, api="core",
        create="create_namespaced_pod", list="list_namespaced_pod",
        read="read_namespaced_pod", patch="patch_namespaced_pod",
        delete="delete_namespaced_pod"),
    "services": dict(
        body={"metadata": {"name": "s1"}, "spec": {"ports": [{"port": 80}]}}, ns=True,
        api="core", create="create_namespaced_service", list="list_namespaced_service",
        read="read_namespaced_service", patch="patch_namespaced_service",
        delete="delete_namespaced_service"),
    "endpoints": dict(
        body={"metadata": {"name": "s1"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.5"}], "ports": [{"port": 8080}]}]}, ns=True,
        api="core", create="create_namespaced_endpoints", list="list_namespaced_endpoints",
        read="read_namespaced_endpoints", patch="patch_namespaced_endpoints",
        delete="delete_namespaced_endpoints"),
    "endpointslices": dict(
        body={"metadata": {"name": "s1-abc", "labels": {"kubernetes.io/service-name": "s1"}},
              "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.5"]}],
              "ports": [{"port": 8080}]}, ns=True, api="discovery",
        create="create_namespaced_endpoint_slice", list="list_namespaced_endpoint_slice",
        read="read_namespaced_endpoint_slice", patch="patch_namespaced_endpoint_slice",
        delete="delete_namespaced_endpoint_slice"),
    "nodes": dict(
        body={"metadata": {"name": "n1"}}, ns=False, api="core", create="create_node",
        list="list_node", read="read_node", patch="patch_node", delete="delete_node"),
    "namespaces": dict(
        body={"metadata": {"name": "team-a"}}, ns=False, api="core",
        create="create_namespace", list="list_namespace", read="read_namespace",
        patch="patch_namespace", delete="delete_namespace"),
}


@pytest.mark.parametrize("resource", list(CASES))
def test_crud_with_the_official_client(api, kubeapi, resource):
    case = CASES[resource]
    client = k8s.CoreV1Api(api) if case["api"] == "core" else k8s.DiscoveryV1Api(api)
    ns = ("ns1",) if case["ns"] else ()
    name = case["body"]["metadata"]["name"]

    created = getattr(client, case["create"])(*ns, case["body"])
    assert created.metadata.name == name and created.metadata.uid
    listed = getattr(client, case["list"])(*ns)
    assert [i.metadata.name for i in listed.items] == [name]
    assert listed.metadata.resource_version == str(kubeapi.resource_version)
    got = getattr(client, case["read"])(name, *ns)
    assert got.metadata.resource_version == created.metadata.resource_version

    # A dict body goes out as a strategic merge patch, as kubectl's does.
    patched = getattr(client, case["patch"])(
        name, *ns, {"metadata": {"annotations": {"ovn": '{"ip": "10.0.0.5"}'}}})
    assert patched.metadata.annotations == {"ovn": '{"ip": "10.0.0.5"}'}
    assert kubeapi.requests[-1].content_type == "application/strategic-merge-patch+json"
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    assert kubeapi.get(resource, name, namespace="ns1")["metadata"]["annotations"] == {
        "ovn": '{"ip": "10.0.0.5"}'}

    getattr(client, case["delete"])(name, *ns)
    with pytest.raises(ApiException) as exc:
        getattr(client, case["read"])(name, *ns)
    assert exc.value.status == 404


def test_status_errors_reach_the_official_client(api, kubeapi):
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod("ns1", _pod("p1"))
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod("ns1", _pod("p1"))
    assert exc.value.status == 409 and "AlreadyExists" in exc.value.body


def test_watch_replays_from_a_resource_version(api, kubeapi):
    core = k8s.CoreV1Api(api)
    rv = core.list_namespaced_pod("ns1").metadata.resource_version
    core.create_namespaced_pod("ns1", _pod("p1"))
    core.patch_namespaced_pod("p1", "ns1", {"metadata": {"labels": {"app": "y"}}})
    core.delete_namespaced_pod("p1", "ns1")

    w = k8s_watch.Watch()
    seen = []
    for event in w.stream(core.list_namespaced_pod, "ns1", resource_version=rv,
                          timeout_seconds=5, _request_timeout=10):
        seen.append((event["type"], event["object"].metadata.name,
                     event["object"].metadata.labels))
        if event["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "p1", {"app": "x"}), ("MODIFIED", "p1", {"app": "y"}),
                    ("DELETED", "p1", {"app": "y"})]


def test_live_watch_sees_changes_made_elsewhere(api, kubeapi):
    core = k8s.CoreV1Api(api)
    kubeapi.create("pods", dict(_pod("before"), metadata={"name": "before", "namespace": "ns1"}))
    w = k8s_watch.Watch()
    seen = []
    done = threading.Event()

    def consume():
        for event in w.stream(core.list_pod_for_all_namespaces, timeout_seconds=10,
                              allow_watch_bookmarks=True, _request_timeout=10):
            seen.append((event["type"], event["raw_object"]["metadata"]["name"]))
            if event["type"] == "DELETED":
                w.stop()
        done.set()

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    assert kubeapi.wait_for_watches(1)
    kubeapi.create("pods", dict(_pod("p2"), metadata={"name": "p2", "namespace": "ns2"}))
    kubeapi.patch("pods", "p2", {"metadata": {"annotations": {"a": "b"}}}, namespace="ns2")
    kubeapi.delete("pods", "p2", namespace="ns2")
    assert done.wait(5)
    t.join(5)
    # BOOKMARKs (every 0.1 s here) are consumed by the client itself.
    assert [s for s in seen if s[0] != "BOOKMARK"] == [
        ("ADDED", "before"), ("ADDED", "p2"), ("MODIFIED", "p2"), ("DELETED", "p2")]


def test_official_client_through_a_written_kubeconfig_with_tls_and_token(tmp_path, pki):
    with KubeApiServer(token="tok", tls_cert=pki.server_cert, tls_key=pki.server_key,
                       start_resource_version=1) as server:
        server.create("namespaces", {"metadata": {"name": "default"}})
        path = server.write_kubeconfig(tmp_path / "config", ca_file=pki.ca_cert)
        cfg = k8s.Configuration()
        k8s_config.load_kube_config(config_file=path, client_configuration=cfg)
        assert cfg.host.startswith("https://127.0.0.1:")
        with k8s.ApiClient(cfg) as api_client:
            names = [n.metadata.name for n in k8s.CoreV1Api(api_client).list_namespace().items]
        assert names == ["default"]

        bad = k8s.Configuration(host=server.url)
        bad.ssl_ca_cert = pki.ca_cert
        with k8s.ApiClient(bad) as api_client, pytest.raises(ApiException) as exc:
            k8s.CoreV1Api(api_client).list_namespace()
        assert exc.value.status == 401
