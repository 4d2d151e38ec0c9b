"""Expose a server that listens on the root namespace's loopback inside a lab namespace.

The CNI plugin and node agents run inside node namespaces, where 127.0.0.1 is their own
loopback. A `Forwarder` listens on an address inside a lab namespace (e.g. the central
namespace's underlay IP) and relays each connection to a target on 127.0.0.1 of this process's
namespace, so the root namespace only ever talks to loopback (see DEVELOPERS.md).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from sandbox.lab.proc import socket_in_netns

LOG = logging.getLogger(__name__)


class Forwarder:
    def __init__(self, netns: str, host: str, target_port: int, *, port: int = 0,
                 target_host: str = "127.0.0.1") -> None:
        if not target_host.startswith("127."):
            raise ValueError("the forwarder only relays to loopback")
        self.target = (target_host, target_port)
        self._listener = socket_in_netns(netns, host, port)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name=f"forward-{netns}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError as e:
                LOG.warning("forwarder: cannot reach %s:%d: %s", *self.target, e)
                client.close()
                continue
            with self._lock:
                self._conns |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            # Half-close so the other direction can finish (chunked watch streams end cleanly).
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        # shutdown() wakes a thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
