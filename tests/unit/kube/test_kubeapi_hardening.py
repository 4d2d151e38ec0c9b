"""The embedded API server's defences, over real sockets: authentication on by default in its
command line (the token only in the kubeconfig), bodies read only after authentication and
bounded, idle connections closed, and a backlog that takes a crowd of clients at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import requests
import yaml

from sandbox.kubeapi import KubeApiServer
from sandbox.kubeapi.server import MAX_BODY_BYTES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _raw(port: int, request: bytes, *, timeout: float = 5) -> bytes:
    """Send raw bytes, return everything the server sends until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        chunks = []
        while data := s.recv(65536):  # a server that keeps the connection open: TimeoutError
            chunks.append(data)
        return b"".join(chunks)


def test_cli_authentication_is_on_by_default_and_the_token_is_only_in_the_kubeconfig(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.kubeapi", "--listen", "127.0.0.1:0", "--kubeconfig-out",
         str(kubeconfig), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        url = proc.stdout.readline().split()[-1]
        token = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
        assert len(token) >= 32
        assert token not in " ".join(open(f"/proc/{proc.pid}/cmdline").read().split("\0"))
        assert requests.get(url + "/api/v1/nodes", timeout=5).status_code == 401
        ok = requests.get(url + "/api/v1/nodes", timeout=5,
                          headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
        proc.stderr.close()


def test_cli_refuses_authentication_nobody_could_use():
    r = subprocess.run([sys.executable, "-m", "sandbox.kubeapi", "--listen", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30, cwd=REPO)
    assert r.returncode == 2 and "--kubeconfig-out or --token-file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_token_file_is_created_private(tmp_path):
    token_file = tmp_path / "token"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.kubeapi", "--listen", "127.0.0.1:0", "--token-file",
         str(token_file), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        url = proc.stdout.readline().split()[-1]
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        assert requests.get(url + "/api/v1/nodes", headers=headers, timeout=5).ok
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_unauthenticated_body_is_never_read():
    with KubeApiServer(token="t", start_resource_version=1) as server:
        # Announce a huge body and send none of it: the answer comes at once, and the server
        # closes the connection instead of waiting for (or reading) the body.
        reply = _raw(server.port, b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Type: application/json\r\n"
                                  b"Content-Length: 1000000000\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 401")
        assert b"Connection: close" in reply


def test_authenticated_body_is_bounded():
    with KubeApiServer(token="t", start_resource_version=1) as server:
        reply = _raw(server.port, b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n"
                                  b"Authorization: Bearer t\r\nContent-Type: application/json\r\n"
                                  + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 413")
        # A body at the limit is read and parsed (here: not JSON, so 400, not 413).
        body = b"x" * 1024
        reply = _raw(server.port, b"POST /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n"
                                  b"Authorization: Bearer t\r\nConnection: close\r\n"
                                  + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        assert reply.startswith(b"HTTP/1.1 400")


def test_idle_connection_is_closed():
    with KubeApiServer(start_resource_version=1, idle_timeout=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            # Sends nothing: the server hangs up after idle_timeout (recv returns b"").
            assert s.recv(1) == b""
        # A request that never finishes its headers is cut too.
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\n")
            assert s.recv(1) == b""


def test_two_hundred_clients_at_once():
    with KubeApiServer(start_resource_version=1) as server:
        server.create("nodes", {"metadata": {"name": "n1"}})
        barrier = threading.Barrier(200)
        codes: list[int] = []
        lock = threading.Lock()

        def client() -> None:
            barrier.wait(timeout=30)
            r = requests.get(server.url + "/api/v1/nodes", timeout=30)
            with lock:
                codes.append(r.status_code)

        threads = [threading.Thread(target=client) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert codes == [200] * 200
        assert server.connections_accepted >= 200
        # The listening socket's backlog is what a burst needs (socketserver's default is 5).
        assert server._httpd.socket.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert type(server._httpd).request_queue_size >= 200
