"""Clustered NB (issue 16 item 4): nothing written twice, nothing lost, across a failover.

1. A commit whose reply is lost (deterministic, through a proxy in front of a real NB): the
   proxy forwards a transaction, lets the server commit it, then drops the reply and the
   connection, as a RAFT leader that dies after committing does. python-ovs answers TRY_AGAIN
   and ovsdbapp re-runs the keyed engine's command: it must find the row by identity, not
   insert it again. With reconnection refused until the caller gives up (the transaction
   raised), the next apply must still find the rows (re-apply: no duplicate; key deleted: the
   row goes).
"""

from __future__ import annotations

import json
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
from ovn_k8s.nb.keyed import KeyedRows, rows_by_ident
from ovn_k8s.nb.model import Row
from sandbox.lab.cluster import Lab

pytestmark = pytest.mark.integration
LB = "Load_Balancer"


class ReplyDroppingProxy:
    """A unix socket in front of an NB server. Armed with `drop_next_reply()`, it forwards the
    client's next `transact` and the server's reply to it never arrives: everything the server
    sends from then on is swallowed, and once the reply has come from the server (the commit
    is done) both connections are closed. With `refuse`, new connections are closed at once."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="drop-", dir="/tmp")
        self.path = os.path.join(self.dir, "nb.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        self.armed = threading.Event()
        self.refuse = threading.Event()
        self.stop = threading.Event()
        self.dropped = 0                      # replies swallowed
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def remote(self) -> str:
        return f"unix:{self.path}"

    def drop_next_reply(self, *, refuse_reconnect: bool = False) -> None:
        if refuse_reconnect:
            self.refuse.set()
        self.armed.set()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            if self.refuse.is_set():
                client.close()
                continue
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
            thread = threading.Thread(target=self._pump, args=(client, up), daemon=True)
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _messages(buf: str) -> tuple[list[dict[str, Any]], str]:
        decoder, out = json.JSONDecoder(), []
        while True:
            buf = buf.lstrip()
            try:
                msg, end = decoder.raw_decode(buf)
            except ValueError:
                return out, buf
            out.append(msg)
            buf = buf[end:]

    def _pump(self, client: socket.socket, up: socket.socket) -> None:
        inbound = outbound = ""
        waiting_for: Any = None              # the id of the transaction whose reply we drop
        try:
            while not self.stop.is_set():
                ready, _, _ = select.select([client, up], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        up.sendall(data)
                        msgs, outbound = self._messages(outbound + data.decode())
                        for msg in msgs:
                            if waiting_for is None and self.armed.is_set() and msg.get("method") == "transact":
                                waiting_for = msg["id"]
                                self.armed.clear()
                        continue
                    msgs, inbound = self._messages(inbound + data.decode())
                    if waiting_for is None:
                        client.sendall(data)
                    elif any(m.get("id") == waiting_for and "result" in m for m in msgs):
                        self.dropped += 1
                        return                # committed; the client never hears of it
        finally:
            client.close()
            up.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.server.close()
        shutil.rmtree(self.dir)


@pytest.fixture
def proxy(lab: Lab) -> Iterator[ReplyDroppingProxy]:
    p = ReplyDroppingProxy(lab.nb[len("unix:"):])
    try:
        yield p
    finally:
        p.close()


def lb(name: str, vip: str) -> dict[tuple[str, str], Row]:
    return rows_by_ident([Row(LB, f"lb:{name}", f"service:{name}",
                              {"name": name, "protocol": "tcp", "vips": {f"{vip}:80": "10.244.1.5:8080"}})])


def lb_ids(lab: Lab) -> list[str]:
    """ovn-k8s/id of every load balancer, one entry per row (duplicates show twice)."""
    data = json.loads(lab.nbctl("--format=json", "--columns=external_ids", "list", LB))
    return sorted(dict(ext[1]).get("ovn-k8s/id", "") for (ext,) in data["data"])


def test_a_commit_whose_reply_was_lost_is_not_made_again(lab: Lab, proxy: ReplyDroppingProxy) -> None:
    api = connection.connect(proxy.remote, "OVN_Northbound", what="NB", timeout=10)
    try:
        engine = KeyedRows(api, timeout=10)      # a reconnection takes 1 s (python-ovs' least)
        engine.apply({"a": lb("a", "10.96.0.1")})
        # ovsdbapp re-runs the command after TRY_AGAIN, against what the NB holds by then
        proxy.drop_next_reply()
        out = engine.apply({"b": lb("b", "10.96.0.2"), "c": lb("c", "10.96.0.3")})
        assert proxy.dropped == 1 and not out.errors
        assert lb_ids(lab) == ["lb:a", "lb:b", "lb:c"]
        # the caller is told of the failure (no reconnection in time); the commit happened
        engine.timeout = 1.5
        proxy.drop_next_reply(refuse_reconnect=True)
        with pytest.raises(ConnectionFailed, match="timed out after 1.5 s"):
            engine.apply({"d": lb("d", "10.96.0.4"), "e": lb("e", "10.96.0.5"), "b": {}})
        assert proxy.dropped == 2 and lb_ids(lab) == ["lb:a", "lb:c", "lb:d", "lb:e"]
        proxy.refuse.clear()
        engine.timeout = 10
        # d again: found, not made twice; e deleted meanwhile: it goes although the cache
        # never heard of it; b (deleted by the lost commit) stays deleted
        engine.apply({"d": lb("d", "10.96.0.4"), "e": {}, "b": {}})
        assert lb_ids(lab) == ["lb:a", "lb:c", "lb:d"]
        assert not engine.get("e") and not engine.get("b")
    finally:
        connection.disconnect(api)
