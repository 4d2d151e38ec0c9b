"""Fixtures shared by the e2e tests."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator

import pytest


@pytest.fixture
def silent_socket() -> Iterator[str]:
    """A unix socket that accepts connections and never answers (nor closes them). In a short
    directory of its own: a unix socket path has at most 107 bytes."""
    directory = tempfile.mkdtemp(prefix="silent-", dir="/tmp")
    path = os.path.join(directory, "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"unix:{path}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()
    shutil.rmtree(directory)
