"""watcher.annotator: the annotation PATCH transport, against our API server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from ovn_k8s.kube.errors import KubeConnectionError, NotFound, Unauthorized
from ovn_k8s.kube.rest import ConnectionParams
from sandbox.kubeapi import KubeApiServer
from watcher.annotator import PodAnnotator


@pytest.fixture
def server():
    srv = KubeApiServer(token="s3cret", start_resource_version=100).start()
    srv.create("pods", {"metadata": {"name": "a", "namespace": "ns"},
                        "spec": {"containers": [{"name": "c"}]}})
    try:
        yield srv
    finally:
        srv.stop()


def test_annotate_is_a_merge_patch_of_annotations(server):
    ann = PodAnnotator(ConnectionParams(server=server.url, token="s3cret"))
    ann.annotate("ns", "a", {"ovn": json.dumps({"ip_address": "10.0.0.3/24"}), "x": "1"})
    ann.annotate("ns", "a", {"x": None})                 # None removes a key
    pod = server.get("pods", "a", namespace="ns")
    assert pod["metadata"]["annotations"] == {"ovn": '{"ip_address": "10.0.0.3/24"}'}
    assert server.requests[-1].content_type == "application/merge-patch+json"
    ann.close()


def test_errors_are_kube_errors(server, tmp_path):
    ann = PodAnnotator(ConnectionParams(server=server.url, token="s3cret"))
    with pytest.raises(NotFound):
        ann.annotate("ns", "nope", {"ovn": "{}"})
    with pytest.raises(Unauthorized):
        PodAnnotator(ConnectionParams(server=server.url, token="wrong")).annotate(
            "ns", "a", {"ovn": "{}"})
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    PodAnnotator(ConnectionParams(server=server.url, token_file=str(token))).annotate(
        "ns", "a", {"ovn": "{}"})
    ann.close()


def test_a_closed_keep_alive_connection_is_reopened(server):
    ann = PodAnnotator(ConnectionParams(server=server.url, token="s3cret"))
    ann.annotate("ns", "a", {"n": "1"})
    server.stop()                                        # closes every connection
    server.start()                                       # same port, objects kept
    ann.annotate("ns", "a", {"n": "2"})
    assert server.get("pods", "a", namespace="ns")["metadata"]["annotations"]["n"] == "2"
    server.stop()
    with pytest.raises(KubeConnectionError):
        ann.annotate("ns", "a", {"n": "3"})
    ann.close()


# TLS, tokens and connection errors of the transport: tests/unit/kube/test_lite.py.
