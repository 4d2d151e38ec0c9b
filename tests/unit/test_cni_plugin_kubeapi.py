"""ovn_k8s.cni.kubeapi: the `ovn` annotation, the API server settings, and ADD's wait.

The wait runs against our in-process API server on 127.0.0.1 (real HTTP, real watches), with
the pod written from another thread while the plugin code waits.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s.cni import kubeapi
from ovn_k8s.cni.kubeapi import ApiSettings, PodNetwork, api_settings, connection_params, parse_annotation
from ovn_k8s.cni.protocol import CniError
from sandbox.kubeapi import KubeApiServer
from tests.helpers import self_signed_cert

GOOD = {"ip_address": "10.244.2.5/24", "mac_address": "0A:58:0A:F4:02:05", "gateway_ip": "10.244.2.1"}


def ann(**over: Any) -> str:
    return json.dumps({k: v for k, v in {**GOOD, **over}.items() if v is not None})


# -- the annotation --------------------------------------------------------------------------------


def test_annotation_is_parsed_and_normalised() -> None:
    assert parse_annotation(ann()) == PodNetwork("10.244.2.5/24", "0a:58:0a:f4:02:05", "10.244.2.1")
    # extra keys (a newer watcher) are fine; a /32 with an off-subnet gateway is fine too
    assert parse_annotation(ann(routes=[], ip_address="10.244.2.5/32")).ip_cidr == "10.244.2.5/32"
    assert parse_annotation(ann(ip_address="fd00::5/64", gateway_ip="fd00::1")).gateway == "fd00::1"


@pytest.mark.parametrize(("text", "problem"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (ann(ip_address=None), "ip_address is missing"),
    (ann(mac_address=""), "mac_address is missing"),
    (ann(gateway_ip=None), "gateway_ip is missing"),
    (ann(ip_address="10.244.2.5"), "no prefix length"),
    (ann(ip_address="10.244.2.500/24"), "not an address"),
    (ann(ip_address="10.244.2.0/24"), "network or broadcast"),
    (ann(ip_address="10.244.2.255/24"), "network or broadcast"),
    (ann(mac_address="0a:58:0a:f4:02"), "not a unicast MAC"),
    (ann(mac_address="01:00:5e:00:00:01"), "not a unicast MAC"),
    (ann(mac_address="00:00:00:00:00:00"), "all zeros"),
    (ann(gateway_ip="gateway"), "not an IP address"),
    (ann(gateway_ip="fd00::1"), "not IPv4"),
    (ann(gateway_ip="10.244.2.5"), "pod's own address"),
])
def test_bad_annotations_are_code_105_saying_why(text: str, problem: str) -> None:
    with pytest.raises(CniError) as err:
        parse_annotation(text, "ns/pod")
    assert err.value.code == 105
    assert problem in err.value.msg and "ns/pod" in err.value.msg
    assert err.value.details == text


def test_non_string_annotation_is_code_105() -> None:
    with pytest.raises(CniError) as err:
        parse_annotation({"ip_address": "x"})
    assert err.value.code == 105


# -- API settings ----------------------------------------------------------------------------------


def test_api_settings_from_the_network_config() -> None:
    assert api_settings({}) == ApiSettings()
    assert api_settings({"k8s_api_server": " https://10.0.0.1:6443 ", "k8s_api_token": "t",
                         "k8s_ca_cert": "/ca.crt", "mtu": 1400}) == \
        ApiSettings(server="https://10.0.0.1:6443", token="t", ca_cert="/ca.crt")
    assert api_settings({"kubeconfig": "/etc/kubernetes/kubelet.conf"}).kubeconfig == "/etc/kubernetes/kubelet.conf"


@pytest.mark.parametrize("conf", [{"kubeconfig": 5}, {"k8s_api_server": ""}, {"k8s_api_token": "t"},
                                  {"k8s_ca_cert": ["x"]}])
def test_bad_api_settings_are_code_7(conf: dict[str, Any]) -> None:
    with pytest.raises(CniError) as err:
        api_settings(conf)
    assert err.value.code == 7


def no_ovs() -> dict[str, str]:
    raise AssertionError("the OVS external_ids must not be read when the config names a server")


def test_connection_params_precedence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    params = connection_params(ApiSettings(server="10.0.0.1:8080", token="t"), no_ovs)
    assert (params.server, params.token) == ("http://10.0.0.1:8080", "t")

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                          "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
                          "clusters: [{name: c, cluster: {server: 'https://10.0.0.2:6443'}}]\n"
                          "users: [{name: u, user: {token: kc-token}}]\n")
    params = connection_params(ApiSettings(kubeconfig=str(kubeconfig), server="http://ignored"), no_ovs)
    assert (params.server, params.token) == ("https://10.0.0.2:6443", "kc-token")

    # nothing in the config: the original's OVS external_ids, CA PEM with literal "\n"
    pem = "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----"
    params = connection_params(ApiSettings(), lambda: {"k8s-api-server": "https://10.0.0.3:6443",
                                                       "k8s-api-token": "ovs-token", "k8s-ca-certificate": pem})
    assert (params.server, params.token) == ("https://10.0.0.3:6443", "ovs-token")
    assert params.ca_file and open(params.ca_file).read() == pem.replace("\\n", "\n")
    # an existing k8s_ca_cert file wins over the PEM in OVS and is not rewritten
    ca = tmp_path / "ca.crt"
    ca.write_text("mine")
    params = connection_params(ApiSettings(ca_cert=str(ca)), lambda: {"k8s-api-server": "https://10.0.0.3:6443",
                                                                      "k8s-ca-certificate": pem})
    assert params.ca_file == str(ca) and ca.read_text() == "mine"


@pytest.mark.parametrize(("settings", "ovs", "fragment"), [
    (ApiSettings(), {}, "no Kubernetes API server configured"),
    (ApiSettings(server="https://10.0.0.1", ca_cert="/nonexistent/ca.crt"), {}, "k8s_ca_cert does not exist"),
    (ApiSettings(kubeconfig="/nonexistent/kubeconfig"), {}, "cannot read kubeconfig"),
    (ApiSettings(), {"k8s-api-server": "ftp://x"}, "http:// or https://"),
    (ApiSettings(server="::::"), {}, "API server URL 'http://::::' is not valid"),
    (ApiSettings(), {"k8s-api-server": "::::"}, "is not valid"),
    (ApiSettings(server="https://10.0.0.1:99999"), {}, "is not valid"),
    (ApiSettings(server="http://:8080"), {}, "has no host"),
])
def test_unusable_api_settings_are_code_7(settings: ApiSettings, ovs: dict[str, str], fragment: str) -> None:
    with pytest.raises(CniError) as err:
        connection_params(settings, lambda: ovs)
    assert err.value.code == 7
    assert fragment in err.value.msg  # the reason is in msg, which runtimes show


# -- the wait --------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[KubeApiServer]:
    api = KubeApiServer(start_resource_version=100, bookmark_interval=0.2).start()
    try:
        yield api
    finally:
        api.stop()


def pod(name: str, annotation: str | None = None, uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if annotation is not None:
        meta["annotations"] = {"ovn": annotation}
    if uid:
        meta["uid"] = uid
    return {"metadata": meta, "spec": {"nodeName": "n1"}}


def wait(server: KubeApiServer, name: str, timeout: float = 10.0, uid: str | None = None,
         url: str | None = None) -> PodNetwork:
    from ovn_k8s.kube.params import ConnectionParams

    client = kubeapi.make_client(ConnectionParams(server=url or server.url))
    try:
        return kubeapi.wait_for_pod_network(client, "ns", name, uid=uid, deadline=time.monotonic() + timeout,
                                            poll_interval=0.05)
    finally:
        client.close()


def later(delay: float, action) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_annotated_pod_costs_one_get(server: KubeApiServer) -> None:
    server.create("pods", pod("a", ann()), namespace="ns")
    server.reset_counters()
    assert wait(server, "a").mac == "0a:58:0a:f4:02:05"
    assert [(r.verb, r.path) for r in server.requests] == [("get", "/api/v1/namespaces/ns/pods/a")]


def test_the_annotation_is_seen_through_a_watch_of_that_one_pod(server: KubeApiServer) -> None:
    server.create("pods", pod("b"), namespace="ns")
    server.create("pods", pod("other"), namespace="ns")
    later(0.3, lambda: server.patch("pods", "other", {"metadata": {"annotations": {"ovn": "garbage"}}},
                                    namespace="ns"))
    later(0.6, lambda: server.patch("pods", "b", {"metadata": {"annotations": {"ovn": ann()}}}, namespace="ns"))
    t0 = time.monotonic()
    assert wait(server, "b").ip_cidr == "10.244.2.5/24"
    assert 0.5 < time.monotonic() - t0 < 5  # woke up by the event, not by the deadline
    (watch,) = server.watch_requests
    assert watch.params["fieldSelector"] == "metadata.name=b"
    assert watch.params["resourceVersion"]  # from the GET: no event between GET and watch is lost


def test_the_wait_over_https_with_a_kubeconfig(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """GET and watch over TLS, from a kubeconfig (CA and token), as on a real node."""
    cert, key = self_signed_cert(tmp_path, "server")
    api = KubeApiServer(token="s3cret", tls_cert=cert, tls_key=key, start_resource_version=100).start()
    try:
        api.create("pods", pod("t"), namespace="ns")
        params = connection_params(ApiSettings(kubeconfig=api.write_kubeconfig(tmp_path / "kc")), dict)
        later(0.3, lambda: api.patch("pods", "t", {"metadata": {"annotations": {"ovn": ann()}}}, namespace="ns"))
        client = kubeapi.make_client(params)
        try:
            network = kubeapi.wait_for_pod_network(client, "ns", "t", uid=None, deadline=time.monotonic() + 10,
                                                   poll_interval=0.05)
        finally:
            client.close()
        assert network.ip_cidr == "10.244.2.5/24"
        assert [r.verb for r in api.requests] == ["get", "watch"]
    finally:
        api.stop()


def test_a_pod_that_does_not_exist_yet_is_waited_for(server: KubeApiServer) -> None:
    later(0.3, lambda: server.create("pods", pod("c", ann()), namespace="ns"))
    assert wait(server, "c").gateway == "10.244.2.1"


def test_the_wait_ends_at_the_deadline_with_code_100(server: KubeApiServer) -> None:
    server.create("pods", pod("d"), namespace="ns")
    t0 = time.monotonic()
    with pytest.raises(CniError) as err:
        wait(server, "d", timeout=0.8)
    assert err.value.code == 100 and "timed out" in err.value.msg
    assert "no ovn annotation yet" in err.value.details
    assert 0.8 <= time.monotonic() - t0 < 3


def test_dropped_watches_and_server_errors_are_retried(server: KubeApiServer) -> None:
    server.create("pods", pod("e"), namespace="ns")
    server.inject_error(500, verb="get", count=2)
    later(0.4, server.drop_watches)
    later(0.8, lambda: server.patch("pods", "e", {"metadata": {"annotations": {"ovn": ann()}}}, namespace="ns"))
    assert wait(server, "e").ip_cidr == "10.244.2.5/24"
    assert server.request_count("get", "pods") >= 3


def test_an_unreachable_server_is_retried_until_the_deadline(server: KubeApiServer) -> None:
    port = server.port
    server.stop()
    with pytest.raises(CniError) as err:
        wait(server, "f", timeout=0.6, url=f"http://127.0.0.1:{port}")
    assert err.value.code == 100 and "timed out" in err.value.msg


def test_forbidden_fails_at_once(server: KubeApiServer) -> None:
    server.inject_error(403, verb="get", count=10)
    t0 = time.monotonic()
    with pytest.raises(CniError) as err:
        wait(server, "g", timeout=10)
    assert err.value.code == 100 and "cannot read pod ns/g" in err.value.msg
    assert time.monotonic() - t0 < 2


def test_a_deleted_or_recreated_pod_fails_at_once(server: KubeApiServer) -> None:
    server.create("pods", pod("h", uid="uid-new"), namespace="ns")
    with pytest.raises(CniError) as err:
        wait(server, "h", uid="uid-old")
    assert err.value.code == 100 and "re-created" in err.value.msg

    server.create("pods", pod("i"), namespace="ns")
    later(0.3, lambda: server.delete("pods", "i", namespace="ns"))
    t0 = time.monotonic()
    with pytest.raises(CniError) as err:
        wait(server, "i", timeout=10)
    assert err.value.code == 100 and "deleted" in err.value.msg
    assert time.monotonic() - t0 < 3


def test_a_malformed_annotation_arriving_later_is_code_105(server: KubeApiServer) -> None:
    server.create("pods", pod("j"), namespace="ns")
    later(0.3, lambda: server.patch("pods", "j", {"metadata": {"annotations": {"ovn": "{"}}}, namespace="ns"))
    with pytest.raises(CniError) as err:
        wait(server, "j")
    assert err.value.code == 105


def test_an_unverifiable_certificate_is_code_7_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A CA that does not sign the server's certificate will not start to while we wait: the
    setting is wrong, so the error comes at once, saying so, not at the annotation timeout."""
    from ovn_k8s.kube.params import ConnectionParams

    cert, key = self_signed_cert(tmp_path, "server")
    other_ca, _ = self_signed_cert(tmp_path, "other")
    api = KubeApiServer(tls_cert=cert, tls_key=key, start_resource_version=100).start()
    try:
        api.create("pods", pod("v", ann()), namespace="ns")
        client = kubeapi.make_client(ConnectionParams(server=api.url, ca_file=other_ca))
        try:
            with pytest.raises(CniError) as err:
                kubeapi.wait_for_pod_network(client, "ns", "v", uid=None, deadline=time.monotonic() + 120,
                                             poll_interval=0.05)
        finally:
            client.close()
    finally:
        api.stop()
    assert err.value.code == 7, err.value
    assert "TLS to the Kubernetes API server failed" in err.value.msg
    assert "CERTIFICATE_VERIFY_FAILED" in err.value.msg
