"""ovn_k8s.kube.lite against the test API server.

The verbs both transports have (get, annotate, watch) run against `LiteClient` and
`rest.KubeClient` alike: the CNI plugin and the watcher swap one for the other, so they must
send the same requests and raise the same errors.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading

import pytest

from ovn_k8s.kube import errors
from ovn_k8s.kube.lite import LiteClient, client_for
from ovn_k8s.kube.params import ConnectionParams, resource_path
from ovn_k8s.kube.rest import KubeClient
from sandbox.kubeapi import KubeApiServer

TRANSPORTS = {"lite": LiteClient, "rest": KubeClient}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request):
    return TRANSPORTS[request.param]


@pytest.fixture
def any_client(transport, kubeapi):
    with transport(ConnectionParams(server=kubeapi.url), timeout=5) as c:
        yield c


@pytest.fixture
def lite(kubeapi):
    with LiteClient(ConnectionParams(server=kubeapi.url), timeout=5) as c:
        yield c


def test_get_and_annotate(any_client, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a", "ns"))
    path = resource_path("pods", namespace="ns", name="a")
    any_client.annotate(path, {"ovn": '{"ip_address": "10.0.0.3/24"}', "x": "1"})
    any_client.annotate(path, {"x": None})  # None removes a key
    pod = any_client.get(path)
    assert pod["metadata"]["annotations"] == {"ovn": '{"ip_address": "10.0.0.3/24"}'}
    patch = [r for r in kubeapi.requests if r.verb == "patch"][-1]
    assert patch.content_type == "application/merge-patch+json"
    assert patch.path == "/api/v1/namespaces/ns/pods/a"


def test_errors_map_to_exception_types(any_client, kubeapi, objs):
    with pytest.raises(errors.NotFound):
        any_client.get(resource_path("pods", namespace="ns", name="nope"))
    with pytest.raises(errors.NotFound):
        any_client.annotate(resource_path("pods", namespace="ns", name="nope"), {"a": "b"})
    kubeapi.create("nodes", objs.node("n1"))
    kubeapi.inject_error(503, verb="get")
    with pytest.raises(errors.ServerError) as exc:
        any_client.get(resource_path("nodes", name="n1"))
    assert exc.value.retryable and exc.value.code == 503
    kubeapi.inject_error(429, verb="get")
    with pytest.raises(errors.TooManyRequests):
        any_client.get(resource_path("nodes", name="n1"))
    # The connection is still good after error answers.
    assert any_client.get(resource_path("nodes", name="n1"))["metadata"]["name"] == "n1"


def test_watch_sends_the_same_query_and_yields_raw_events(any_client, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    kubeapi.create("pods", objs.pod("b", "other"))
    with any_client.watch(resource_path("pods", namespace="default"), resource_version="0",
                          field_selector="metadata.name=a", timeout_seconds=30,
                          allow_bookmarks=False) as stream:
        events = iter(stream)
        first = next(events)
        kubeapi.delete("pods", "a")
        second = next(events)
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
    assert (second["type"], second["object"]["metadata"]["name"]) == ("DELETED", "a")
    assert kubeapi.watch_requests[0].params == {
        "watch": "true", "resourceVersion": "0", "fieldSelector": "metadata.name=a",
        "timeoutSeconds": "30"}


def test_watch_ends_when_the_server_ends_it(any_client, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    with any_client.watch(resource_path("pods"), resource_version="0", timeout_seconds=1,
                          read_timeout=5) as stream:
        events = [e["type"] for e in stream]
    assert "ADDED" in events
    # The client is usable afterwards.
    assert any_client.get(resource_path("pods", namespace="default", name="a"))


def test_watch_reports_a_broken_connection(any_client, kubeapi):
    stream = any_client.watch(resource_path("pods"), read_timeout=5)
    assert kubeapi.wait_for_watches(1)
    kubeapi.drop_watches()
    with pytest.raises(errors.KubeConnectionError):
        list(stream)
    stream.close()


def test_watch_read_timeout(any_client, kubeapi):
    with any_client.watch(resource_path("pods"), allow_bookmarks=False, read_timeout=0.2) as stream:
        with pytest.raises(errors.KubeTimeoutError):
            list(stream)


def test_watch_rejects_garbage(any_client, kubeapi):
    with any_client.watch(resource_path("pods")) as stream:
        assert kubeapi.wait_for_watches(1)
        kubeapi.emit_watch_event({"no": "type"}, close=True)
        with pytest.raises(errors.WatchError):
            list(stream)


def test_connection_refused_is_a_connection_error(transport):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with transport(ConnectionParams(server=f"http://127.0.0.1:{port}")) as dead:
        with pytest.raises(errors.KubeConnectionError) as exc:
            dead.get("/api/v1/nodes")
    assert "/api/v1/nodes" in str(exc.value)


def test_token_and_token_file(transport, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("old\n")
    with KubeApiServer(token="new", start_resource_version=1) as server:
        server.create("nodes", {"metadata": {"name": "n1"}})
        path = resource_path("nodes", name="n1")
        with pytest.raises(errors.Unauthorized):
            transport(ConnectionParams(server=server.url, token="wrong")).get(path)
        assert transport(ConnectionParams(server=server.url, token="new")).get(path)
        c = transport(ConnectionParams(server=server.url, token_file=str(token_file)))
        with pytest.raises(errors.Unauthorized):
            c.get(path)
        token_file.write_text("new\n")
        os.utime(token_file, ns=(1, 10**18))  # a different mtime, whatever the clock says
        assert c.get(path)["metadata"]["name"] == "n1"
        c.close()


def test_https_ca_client_certificate_and_insecure(transport, pki):
    with KubeApiServer(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca_cert,
                       start_resource_version=1) as server:
        server.create("nodes", {"metadata": {"name": "n1"}})
        path = resource_path("nodes", name="n1")
        cert = {"client_cert": pki.client_cert, "client_key": pki.client_key}
        assert transport(ConnectionParams(server=server.url, ca_file=pki.ca_cert, **cert)).get(path)
        assert transport(ConnectionParams(server=server.url, insecure=True, **cert)).get(path)
        with pytest.raises(errors.KubeTLSError) as exc:
            transport(ConnectionParams(server=server.url, ca_file=pki.other_ca_cert, **cert)).get(path)
        assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
        with pytest.raises(errors.Unauthorized):  # no client certificate, no token
            transport(ConnectionParams(server=server.url, ca_file=pki.ca_cert)).get(path)


# -- LiteClient only -------------------------------------------------------------------------


def test_requests_share_one_keep_alive_connection(lite, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    path = resource_path("pods", namespace="default", name="a")
    before = kubeapi.connections_accepted
    for i in range(5):
        lite.get(path)
        lite.annotate(path, {"n": str(i)})
    with lite.watch(resource_path("pods"), resource_version="0", timeout_seconds=1) as stream:
        list(stream)  # a watch that ran to its end leaves the connection reusable
    lite.get(path)
    assert kubeapi.connections_accepted - before == 1


def test_an_abandoned_watch_does_not_poison_the_connection(lite, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    with lite.watch(resource_path("pods"), resource_version="0") as stream:
        assert next(iter(stream))["type"] == "ADDED"
    # The watch is still streaming on the server: the next call must use a new connection.
    assert lite.get(resource_path("pods", namespace="default", name="a"))["metadata"]["name"] == "a"


def test_a_connection_the_server_closed_is_reopened(lite, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    path = resource_path("pods", namespace="default", name="a")
    lite.annotate(path, {"n": "1"})
    kubeapi.stop()   # closes every connection
    kubeapi.start()  # same port, objects kept
    lite.annotate(path, {"n": "2"})
    assert kubeapi.get("pods", "a", namespace="default")["metadata"]["annotations"]["n"] == "2"
    kubeapi.stop()
    with pytest.raises(errors.KubeConnectionError):
        lite.annotate(path, {"n": "3"})


def test_threads_each_get_their_own_connection(lite, kubeapi, objs):
    for i in range(4):
        kubeapi.create("pods", objs.pod(f"p{i}"))
    failures: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for n in range(20):
                lite.annotate(resource_path("pods", namespace="default", name=f"p{i}"), {"n": str(n)})
        except BaseException as exc:  # noqa: BLE001 -- reported by the test
            failures.append(exc)

    before = kubeapi.connections_accepted
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert [kubeapi.get("pods", f"p{i}", namespace="default")["metadata"]["annotations"]["n"]
            for i in range(4)] == ["19"] * 4
    assert kubeapi.connections_accepted - before == 4


def test_a_server_path_prefix_is_kept():
    """A server URL like https://host/k8s/clusters/c1 (Rancher-style proxies) keeps its path."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (stdlib naming)
            seen.append(self.path)
            body = b'{"kind": "Node", "metadata": {"name": "n1"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/k8s/clusters/c1/"
        with LiteClient(ConnectionParams(server=url)) as c:
            assert c.get("/api/v1/nodes/n1")["metadata"]["name"] == "n1"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert seen == ["/k8s/clusters/c1/api/v1/nodes/n1"]


def test_client_for_uses_requests_only_for_a_proxy(kubeapi):
    assert isinstance(client_for(ConnectionParams(server=kubeapi.url), pool_size=2), LiteClient)
    proxied = client_for(ConnectionParams(server=kubeapi.url, proxy="http://127.0.0.1:1"), pool_size=2)
    assert isinstance(proxied, KubeClient)
    with pytest.raises(ValueError):
        LiteClient(ConnectionParams(server=kubeapi.url, proxy="http://127.0.0.1:1"))
