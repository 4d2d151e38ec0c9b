"""KubeClient (ovn_k8s.kube.rest) against the test API server."""

from __future__ import annotations

import pytest

from ovn_k8s.kube import errors
from ovn_k8s.kube.rest import (
    ConnectionParams,
    build_event,
    object_key,
    resource_path,
    trim_object,
)


def test_resource_paths():
    assert resource_path("pods") == "/api/v1/pods"
    assert resource_path("pods", namespace="ns", name="p", subresource="status") == \
        "/api/v1/namespaces/ns/pods/p/status"
    assert resource_path("nodes", namespace="ignored", name="n1") == "/api/v1/nodes/n1"
    assert resource_path("endpointslices", namespace="ns") == \
        "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices"
    with pytest.raises(ValueError):
        resource_path("deployments")
    with pytest.raises(ValueError):
        resource_path("pods", subresource="status")


def test_object_key_and_trim():
    assert object_key({"metadata": {"namespace": "ns", "name": "a"}}) == "ns/a"
    assert object_key({"metadata": {"name": "n1"}}) == "n1"
    obj = {"metadata": {"name": "a", "managedFields": [{}], "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{}", "k": "v"}}}
    trimmed = trim_object(obj)
    assert trimmed == {"metadata": {"name": "a", "annotations": {"k": "v"}}}
    assert "managedFields" in obj["metadata"]  # input untouched
    plain = {"metadata": {"name": "a"}}
    assert trim_object(plain) is plain


def test_connection_params_validation():
    with pytest.raises(errors.KubeConfigError):
        ConnectionParams(server="127.0.0.1:6443")
    with pytest.raises(errors.KubeConfigError):
        ConnectionParams(server="https://x", client_cert="c")
    assert "s3cret" not in repr(ConnectionParams(server="https://x", token="s3cret"))


def test_crud_annotate_and_delete(client, kubeapi, objs):
    pods = resource_path("pods", namespace="ns1")
    created = client.create(pods, objs.pod("a", "ns1"))
    assert created["metadata"]["uid"]
    path = resource_path("pods", namespace="ns1", name="a")
    assert client.get(path)["metadata"]["uid"] == created["metadata"]["uid"]

    annotated = client.annotate(path, {"ovn": '{"ip_address": "10.1.1.3/24"}', "x": "1"})
    assert annotated["metadata"]["annotations"] == {"ovn": '{"ip_address": "10.1.1.3/24"}',
                                                    "x": "1"}
    removed = client.annotate(path, {"x": None})
    assert removed["metadata"]["annotations"] == {"ovn": '{"ip_address": "10.1.1.3/24"}'}
    with pytest.raises(errors.Conflict):
        client.annotate(path, {"y": "1"}, resource_version=created["metadata"]["resourceVersion"])

    strategic = client.patch(path, {"metadata": {"labels": {"l": "1"}}}, patch_type="strategic")
    assert strategic["metadata"]["labels"] == {"l": "1"}
    jp = client.patch(path, [{"op": "remove", "path": "/metadata/labels"}], patch_type="json")
    assert "labels" not in jp["metadata"]
    replaced = client.replace(path, dict(jp, spec=dict(jp["spec"], nodeName="n1")))
    assert replaced["spec"]["nodeName"] == "n1"

    with pytest.raises(errors.Conflict):
        client.delete(path, uid="wrong")
    deleted = client.delete(path, uid=created["metadata"]["uid"])
    assert deleted["metadata"]["name"] == "a"
    with pytest.raises(errors.NotFound) as exc:
        client.get(path)
    assert exc.value.code == 404 and exc.value.reason == "NotFound"
    assert str(exc.value) == f'GET {path}: 404 NotFound: pods "a" not found'


def test_errors_map_to_exception_types(client, kubeapi, objs):
    nodes = resource_path("nodes")
    client.create(nodes, objs.node("n1"))
    with pytest.raises(errors.AlreadyExists) as exc:
        client.create(nodes, objs.node("n1"))
    assert isinstance(exc.value, errors.Conflict) and not exc.value.retryable
    with pytest.raises(errors.BadRequest):
        client.list(nodes, field_selector="spec.nope=1")
    with pytest.raises(errors.Invalid):
        client.create(nodes, {"metadata": {}})
    kubeapi.inject_error(503, verb="get")
    with pytest.raises(errors.ServerError) as exc:
        client.get(resource_path("nodes", name="n1"))
    assert exc.value.retryable and exc.value.code == 503
    kubeapi.inject_error(429, verb="get")
    with pytest.raises(errors.TooManyRequests):
        client.get(resource_path("nodes", name="n1"))
    with pytest.raises(errors.ServerTimeout) as exc:
        client.list(nodes, resource_version=str(10**15))
    assert exc.value.too_large_resource_version


def test_list_follows_continue_tokens(client, kubeapi, objs):
    for i in range(7):
        kubeapi.create("pods", objs.pod(f"p{i}"))
    listing = client.list(resource_path("pods"), limit=3)
    assert [o["metadata"]["name"] for o in listing["items"]] == [f"p{i}" for i in range(7)]
    assert listing["kind"] == "PodList"
    assert listing["metadata"] == {"resourceVersion": str(kubeapi.resource_version)}
    assert kubeapi.request_count("list") == 3


def test_list_falls_back_when_a_continue_token_expires(client, kubeapi, objs):
    for i in range(4):
        kubeapi.create("pods", objs.pod(f"p{i}"))
    # The second page's continue token has expired (etcd compacted meanwhile).
    kubeapi.inject_error(410, reason="Expired", verb="list", skip=1)
    listing = client.list(resource_path("pods"), limit=2)
    assert [o["metadata"]["name"] for o in listing["items"]] == ["p0", "p1", "p2", "p3"]
    pages = [r.params for r in kubeapi.requests if r.verb == "list"]
    assert pages[0] == {"limit": "2"} and "continue" in pages[1]
    assert pages[2] == {}  # the fallback: one full list


# get, annotate, watch, connection errors and tokens: test_lite.py runs them on both transports.


def test_post_event(client, kubeapi, objs):
    pod = kubeapi.create("pods", objs.pod("a", "ns1"))
    event = client.post_event(pod, reason="LogicalPortCreated", message="10.1.1.3",
                              event_type="Normal")
    assert event["involvedObject"]["uid"] == pod["metadata"]["uid"]
    stored = kubeapi.list("events", namespace="ns1")
    assert [(e["reason"], e["involvedObject"]["name"]) for e in stored] == [
        ("LogicalPortCreated", "a")]
    assert build_event({"metadata": {"name": "n1"}}, reason="r", message="m")[
        "metadata"]["namespace"] == "default"
