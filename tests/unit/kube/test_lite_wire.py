"""The HTTP/1.1 that `ovn_k8s.kube.lite` reads itself: answers a server may legally send
(chunked with extensions and trailers, close-delimited HTTP/1.0, interim 100, Connection:
close), delivered a few bytes at a time, and whether the connection is kept afterwards."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from ovn_k8s.kube import errors
from ovn_k8s.kube.lite import LiteClient
from ovn_k8s.kube.params import ConnectionParams

POD = json.dumps({"kind": "Pod", "metadata": {"name": "a", "namespace": "ns"}}).encode()


def chunked(*parts: bytes) -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts)
    return body + b"0\r\nX-Trailer: t\r\n\r\n"


class CannedServer:
    """Answers each request with the next canned answer, sent 3 bytes at a time."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), 0)
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    self.requests.append(head + b"\r\n\r\n" + buf[:length])
                    buf = buf[length:]
                    answer = self.answers.pop(0)
                    for i in range(0, len(answer), 3):
                        conn.sendall(answer[i:i + 3])
                    if b"close" in answer.split(b"\r\n\r\n")[0].lower() or \
                            answer.startswith(b"HTTP/1.0"):
                        break

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[CannedServer] = []

    def make(*answers: bytes) -> tuple[CannedServer, LiteClient]:
        server = CannedServer(list(answers))
        servers.append(server)
        return server, LiteClient(ConnectionParams(server=server.url, token="t0k"), timeout=5)
    yield make
    for server in servers:
        server.close()


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"HTTP/1.1 200 OK", b"Content-Type: application/json", *extra,
                         b"Content-Length: %d" % len(body), b"", body])


def test_chunked_answer_with_extensions_and_trailers_keeps_the_connection(serve):
    chunked_answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + chunked(POD[:7], POD[7:]))
    server, client = serve(chunked_answer, ok(POD))
    assert client.get("/api/v1/namespaces/ns/pods/a")["metadata"]["name"] == "a"
    client.annotate("/api/v1/namespaces/ns/pods/a", {"ovn": "x"})
    assert server.connections == 1
    first, second = server.requests
    assert first.startswith(b"GET /api/v1/namespaces/ns/pods/a HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer t0k\r\n" in first
    assert second.startswith(b"PATCH /api/v1/namespaces/ns/pods/a HTTP/1.1\r\n")
    assert b"\r\nContent-Type: application/merge-patch+json\r\n" in second
    assert second.endswith(b'\r\n\r\n{"metadata":{"annotations":{"ovn":"x"}}}')


def test_close_delimited_and_connection_close_answers_open_a_new_connection(serve):
    server, client = serve(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + POD,
                           ok(POD, b"Connection: close"), ok(POD))
    for _ in range(3):
        assert client.get("/api/v1/namespaces/ns/pods/a")["metadata"]["name"] == "a"
    assert server.connections == 3


def test_an_interim_100_answer_is_skipped(serve):
    server, client = serve(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(POD))
    assert client.get("/x")["metadata"]["name"] == "a"


def test_an_error_answer_is_read_and_mapped(serve):
    status = json.dumps({"kind": "Status", "code": 404, "reason": "NotFound",
                         "message": 'pods "a" not found'}).encode()
    server, client = serve(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                           + chunked(status), ok(POD))
    with pytest.raises(errors.NotFound):
        client.annotate("/api/v1/namespaces/ns/pods/a", {"ovn": "x"})
    assert client.get("/x")["metadata"]["name"] == "a"
    assert server.connections == 1          # the error's body was read: the connection stays


def test_a_watch_in_small_pieces(serve):
    events = [json.dumps({"type": t, "object": {"metadata": {"name": "a", "resourceVersion": rv}}
                          }).encode() + b"\n" for t, rv in (("ADDED", "1"), ("MODIFIED", "2"))]
    stream = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              + chunked(events[0][:10], events[0][10:] + events[1]))
    server, client = serve(stream, ok(POD))
    with client.watch("/api/v1/pods") as watch:
        got = [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in watch]
    assert got == [("ADDED", "1"), ("MODIFIED", "2")]
    assert client.get("/x")["metadata"]["name"] == "a"
    assert server.connections == 1          # a watch read to its end leaves the connection


@pytest.mark.parametrize("answer", [
    b"FTP 200 OK\r\n\r\n", b"HTTP/1.1 2xx OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 99\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}"])
def test_broken_answers_are_connection_errors(serve, answer):
    server, client = serve(answer)
    with pytest.raises(errors.KubeConnectionError):
        client.get("/x")
