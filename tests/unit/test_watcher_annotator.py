"""watcher.annotator: the annotation PATCH transport, against our API server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess

import pytest

from ovn_k8s.kube.errors import KubeConnectionError, NotFound, Unauthorized
from ovn_k8s.kube.rest import ConnectionParams
from ovn_k8s.kubeapi import KubeApiServer
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


def _self_signed(d, name: str) -> tuple[str, str]:
    key, cert = str(d / f"{name}.key"), str(d / f"{name}.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key,
                    "-out", cert], check=True, capture_output=True, timeout=30)
    return cert, key


def test_https_is_verified_against_the_ca(tmp_path):
    cert, key = _self_signed(tmp_path, "server")
    other, _ = _self_signed(tmp_path, "other")
    srv = KubeApiServer(tls_cert=cert, tls_key=key).start()
    try:
        srv.create("pods", {"metadata": {"name": "a", "namespace": "ns"}, "spec": {}})
        PodAnnotator(ConnectionParams(server=srv.url, ca_file=cert)).annotate(
            "ns", "a", {"ovn": "{}"})
        assert srv.get("pods", "a", namespace="ns")["metadata"]["annotations"] == {"ovn": "{}"}
        with pytest.raises(KubeConnectionError):
            PodAnnotator(ConnectionParams(server=srv.url, ca_file=other)).annotate(
                "ns", "a", {"ovn": "{}"})
        PodAnnotator(ConnectionParams(server=srv.url, insecure=True)).annotate(
            "ns", "a", {"ovn": "{ }"})
    finally:
        srv.stop()
