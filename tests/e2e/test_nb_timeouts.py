"""--timeout bounds every wait on the NB: the schema fetch and first sync against a server
that accepts and never answers, and a transaction on a server that stops answering."""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s.errors import ConnectionFailed
from ovn_k8s.nb import connection
from ovn_k8s.nb.model import Row
from ovn_k8s.overlay import apply_rows
from sandbox.lab.cluster import Lab

pytestmark = pytest.mark.e2e


class StallingProxy:
    """A unix socket in front of the lab's NB that forwards both ways until `stall()`; then it
    swallows what the client sends, so the server never sees (nor answers) it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="stall-", dir="/tmp")
        self.path = os.path.join(self.dir, "nb.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        self.stalled = threading.Event()
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = [self.server]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def remote(self) -> str:
        return f"unix:{self.path}"

    def stall(self) -> None:
        self.stalled.set()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
            self.sockets += [client, up]
            thread = threading.Thread(target=self._pump, args=(client, up), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket, up: socket.socket) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([client, up], [], [], 0.1)
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                if sock is client and not self.stalled.is_set():
                    up.sendall(data)
                elif sock is up:
                    client.sendall(data)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        for sock in self.sockets:
            sock.close()
        shutil.rmtree(self.dir)


@pytest.fixture
def proxy(lab: Lab) -> Iterator[StallingProxy]:
    assert lab.nb.startswith("unix:")
    p = StallingProxy(lab.nb[len("unix:"):])
    try:
        yield p
    finally:
        p.close()


def test_connect_to_a_silent_server_fails_at_the_timeout(silent_socket: str) -> None:
    with pytest.raises(ConnectionFailed, match=f"no answer from the NB at {silent_socket} in time"):
        connection.connect(silent_socket, "OVN_Northbound", what="NB", timeout=1)


def test_a_transaction_the_server_never_answers_fails_at_the_timeout(lab: Lab, proxy: StallingProxy) -> None:
    nb: Any = connection.connect(proxy.remote, "OVN_Northbound", what="NB", timeout=1)
    try:
        rows = [Row("Logical_Switch", "sw:t", "node:t", {"name": "t", "external_ids": {}})]
        apply_rows(nb, scopes=["node:t"], build=lambda v: rows, timeout=1)   # answered
        proxy.stall()
        more = [*rows, Row("Logical_Switch", "sw:u", "node:t", {"name": "u", "external_ids": {}})]
        with pytest.raises(ConnectionFailed, match="timed out after 1 s"):
            apply_rows(nb, scopes=["node:t"], build=lambda v: more, timeout=1)
    finally:
        connection.disconnect(nb)
    assert "u" not in lab.nbctl("ls-list")
