"""Pod annotation patches on the hot path: one keep-alive `http.client` connection per thread.

NOTE(performance): every pod costs one PATCH. Through `requests` (ovn_k8s.kube.rest) a PATCH
costs ~400 us of watcher CPU; through `http.client` ~110 us (measured on our 2-core machine
against ovn_k8s.kubeapi, docs/performance.md). At 1000 pods/s that difference is 30% of the
one core the GIL gives the watcher, so the annotation path gets this small transport. It
speaks exactly what KubeClient.annotate sends (a merge patch of metadata.annotations), from
the same ConnectionParams (server, bearer token or token file, CA, client certificate,
insecure), and raises the same `ovn_k8s.kube.errors`. Settings it does not handle (an HTTP
proxy) fall back to KubeClient. Everything else keeps using ovn_k8s.kube.rest.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ovn_k8s.kube.errors import KubeConfigError, KubeConnectionError, KubeTimeoutError, api_error
from ovn_k8s.kube.rest import MERGE_PATCH, ConnectionParams, KubeClient, resource_path


class _Token:
    def __init__(self, params: ConnectionParams) -> None:
        self._token = params.token
        self._path = params.token_file
        self._mtime: int | None = None
        self._lock = threading.Lock()

    def get(self) -> str | None:
        if self._path is None:
            return self._token
        with self._lock:
            try:
                mtime = os.stat(self._path).st_mtime_ns
                if mtime != self._mtime:
                    with open(self._path, encoding="utf-8") as fh:
                        self._token = fh.read().strip()
                    self._mtime = mtime
            except OSError as exc:
                if self._token is None:
                    raise KubeConfigError(f"cannot read token file {self._path}: {exc}") \
                        from None
            return self._token


class PodAnnotator:
    """annotate(namespace, name, annotations) -> None, thread-safe (one connection per
    thread, reopened after an error)."""

    def __init__(self, params: ConnectionParams, *, timeout: float = 30.0,
                 user_agent: str = "ovn-k8s") -> None:
        self.params = params
        self.timeout = timeout
        self._fallback: KubeClient | None = None
        if params.proxy:
            self._fallback = KubeClient(params, timeout=timeout, user_agent=user_agent)
            return
        url = urllib.parse.urlsplit(params.server)
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._token = _Token(params)
        self._headers = {"Content-Type": MERGE_PATCH, "Accept": "application/json",
                         "User-Agent": user_agent}
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            if params.insecure:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=params.ca_file)
            if params.client_cert and params.client_key:
                ctx.load_cert_chain(params.client_cert, params.client_key)
            self._ssl = ctx
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                                   context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        path = resource_path("pods", namespace=namespace, name=name)
        body = {"metadata": {"annotations": dict(annotations)}}
        if self._fallback is not None:
            self._fallback.annotate(path, annotations)
            return
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = dict(self._headers)
        token = self._token.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # One retry on a fresh connection: the server may have closed an idle keep-alive one.
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request("PATCH", self._prefix + path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
            except TimeoutError as exc:
                self._drop()
                raise KubeTimeoutError(f"PATCH {path}: timed out: {exc}") from None
            except (http.client.HTTPException, OSError) as exc:
                self._drop()
                if attempt == 0 and isinstance(exc, (http.client.RemoteDisconnected,
                                                     BrokenPipeError, ConnectionResetError,
                                                     http.client.CannotSendRequest)):
                    continue
                raise KubeConnectionError(f"PATCH {path}: {exc}") from None
            if resp.getheader("Connection", "").lower() == "close":
                self._drop()
            if resp.status >= 400:
                text = payload.decode(errors="replace")
                parsed: Any = text
                if text.strip().startswith("{"):
                    try:
                        parsed = json.loads(text)
                    except ValueError:
                        pass
                raise api_error(resp.status, parsed, method="PATCH", url=path)
            return

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
            return
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
