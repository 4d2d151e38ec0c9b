"""The plugin protocol's transport: HTTP/1.1 on a unix socket, `POST /<Method>` with a JSON
body, answered with JSON (Content-Type application/vnd.docker.plugins.v1.2+json), errors as
{"Err": "..."}. A thread per connection: Docker keeps connections alive and calls for several
containers at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from ovn_k8s.docker.driver import Driver
from ovn_k8s.errors import ConfigError, OvnK8sError

LOG = logging.getLogger(__name__)
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
MAX_BODY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PluginServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        LOG.debug("http: " + format, *args)

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        method = self.path.lstrip("/")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._answer(400, {"Err": "bad Content-Length"})
            return
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            LOG.warning("%s: the body is not JSON: %s", method, e)
            self._answer(400, {"Err": f"{method}: the request body is not JSON: {e}"})
            return
        if not isinstance(body, dict):
            self._answer(400, {"Err": f"{method}: the request body is not a JSON object"})
            return
        start = time.monotonic()
        try:
            answer = self.server.driver.handle(method, body)
        except OvnK8sError as e:
            LOG.warning("%s failed: %s", method, e)
            self._answer(500, {"Err": str(e)})
            return
        except Exception as e:  # noqa: BLE001 - a bug must answer Docker, not hang it
            LOG.exception("%s failed", method)
            self._answer(500, {"Err": f"{method}: internal error: {type(e).__name__}: {e}"})
            return
        LOG.debug("%s %s -> %s (%.1f ms)", method, body, answer, (time.monotonic() - start) * 1000)
        self._answer(200, answer)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(404, {"Err": "POST /<Method> only"})


class PluginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, driver: Driver) -> None:
        self.driver = driver
        self.path = path
        _remove_stale(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            super().__init__(path, _Handler)
        except OSError as e:
            raise ConfigError(f"cannot listen on {path}: {e.strerror or e}") from None
        os.chmod(path, 0o660)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="plugin-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _remove_stale(path: str) -> None:
    """A socket left by a driver that died: Docker would get "connection refused" on it. One
    that answers is another running driver: refuse to take it over."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise ConfigError(f"another driver is serving {path}: stop it first")
