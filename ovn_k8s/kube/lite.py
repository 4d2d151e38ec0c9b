"""A small Kubernetes REST transport over `http.client`, for the two hot, short paths.

- The CNI plugin's GET of its pod and watch for the `ovn` annotation. The plugin is a process
  per pod ADD, and importing `requests` alone costs it ~30 ms (docs/performance.md).
- The watcher's annotation PATCH, one per pod: ~110 us of watcher CPU here against ~400 us
  through `requests`, which at 1000 pods/s is a third of the core the GIL gives the watcher.

`LiteClient` sends exactly what `rest.KubeClient` sends for `get`, `watch` and `annotate`, from
the same `ConnectionParams` (server with an optional path prefix, bearer token or rotating token
file, CA file or the system CAs, client certificate, insecure), raises the same
`ovn_k8s.kube.errors`, and exposes the same `timeout`/`connect_timeout` attributes, so the two
are interchangeable for those verbs. It keeps one keep-alive connection per thread and reopens
it once when the server has closed an idle one. An HTTP proxy is the one setting it does not
speak: `client_for` hands those settings to `rest.KubeClient`. Everything else (lists, relists,
events, controllers' writes) uses `rest.KubeClient`.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ovn_k8s.kube.errors import (
    KubeConnectionError,
    KubeTimeoutError,
    KubeTLSError,
    api_error,
)
from ovn_k8s.kube.params import ConnectionParams, TokenSource
from ovn_k8s.kube.wire import error_payload, watch_events

if TYPE_CHECKING:
    from ovn_k8s.kube.rest import KubeClient

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
# The server closed an idle keep-alive connection under us: safe to send again on a new one.
_STALE = (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError,
          ConnectionResetError)


def client_for(params: ConnectionParams, **kwargs: Any) -> LiteClient | KubeClient:
    """A LiteClient, or a rest.KubeClient (and so `requests`) when the settings need a proxy."""
    if params.proxy:
        from ovn_k8s.kube.rest import KubeClient

        return KubeClient(params, **kwargs)
    kwargs.pop("pool_size", None)
    return LiteClient(params, **kwargs)


# A TLS session cut short (server restarting, connection reset) is worth retrying; every
# other TLS failure (unverified certificate, wrong host name, not a TLS server) is a setting.
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _transport_error(exc: BaseException, method: str, path: str) -> KubeConnectionError:
    what = f"{method} {path}"
    if isinstance(exc, _TLS_TRANSIENT):
        return KubeConnectionError(f"{what}: {exc}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return KubeTLSError(f"{what}: TLS failed: {exc}")
    if isinstance(exc, TimeoutError):
        return KubeTimeoutError(f"{what}: timed out: {exc}")
    return KubeConnectionError(f"{what}: {exc}")


class LiteClient:
    """get, watch and annotate over http.client; thread-safe (one connection per thread).

    A thread makes one call at a time: an open watch holds the thread's connection until the
    watch is closed, as with `requests`' streamed responses."""

    def __init__(self, params: ConnectionParams, *, timeout: float = 30.0,
                 connect_timeout: float = 10.0, user_agent: str = "ovn-k8s") -> None:
        if params.proxy:
            raise ValueError("LiteClient does not speak to a proxy; use client_for()")
        self.params = params
        self.timeout = timeout  # per read: the longest a response may stay silent
        self.connect_timeout = connect_timeout
        url = urllib.parse.urlsplit(params.server)
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._prefix = url.path.rstrip("/")
        self._token = TokenSource.of(params)
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
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

    def __repr__(self) -> str:
        return f"LiteClient({self.params.server!r}, source={self.params.source!r})"

    def __enter__(self) -> LiteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server(self) -> str:
        return self.params.server.rstrip("/")

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    # -- connections -----------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)

    def _send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
              body: bytes | None = None, content_type: str | None = None,
              read_timeout: float | None = None) -> http.client.HTTPResponse:
        """Send one request and read the status line; raise a KubeError for a transport
        failure or a >= 400 status (after reading its body). The caller reads the 2xx body."""
        target = self._prefix + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urllib.parse.urlencode(params)
        headers = dict(self._headers)
        token = self._token.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in (0, 1):
            conn = self._connection()
            fresh = conn.sock is None
            try:
                if fresh:
                    conn.timeout = self.connect_timeout
                    conn.connect()
                conn.sock.settimeout(read_timeout or self.timeout)
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
            except Exception as exc:
                self._drop()
                if attempt == 0 and not fresh and isinstance(exc, _STALE):
                    continue
                if isinstance(exc, http.client.HTTPException | OSError):
                    raise _transport_error(exc, method, path) from None
                raise
            break
        if resp.status >= 400:
            try:
                payload = error_payload(resp.read())
            except (http.client.HTTPException, OSError):
                payload = ""
            self._finish(resp)
            raise api_error(resp.status, payload, method=method, url=path)
        return resp

    def _finish(self, resp: http.client.HTTPResponse) -> None:
        """After a response: keep the connection only if the server will."""
        if resp.will_close or not resp.isclosed():
            self._drop()

    def _read(self, method: str, path: str, resp: http.client.HTTPResponse) -> bytes:
        try:
            data = resp.read()
        except (http.client.HTTPException, OSError) as exc:
            self._drop()
            raise _transport_error(exc, method, path) from None
        self._finish(resp)
        return data

    # -- verbs -----------------------------------------------------------------------------

    def get(self, path: str) -> Obj:
        resp = self._send("GET", path)
        data = self._read("GET", path, resp)
        try:
            return json.loads(data)
        except ValueError:
            raise KubeConnectionError(f"GET {path}: the answer is not JSON") from None

    def annotate(self, path: str, annotations: Mapping[str, str | None]) -> None:
        """Set (or, with None, remove) annotations with one merge patch. The answer is not
        parsed: the hot caller does not need the object back."""
        body = json.dumps({"metadata": {"annotations": dict(annotations)}}, separators=(",", ":")).encode()
        resp = self._send("PATCH", path, body=body, content_type=MERGE_PATCH)
        self._read("PATCH", path, resp)

    def watch(self, path: str, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = True, timeout_seconds: int | None = None,
              read_timeout: float | None = None) -> LiteWatch:
        """Open a watch on this thread's connection (`rest.KubeClient.watch`'s arguments)."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "allowWatchBookmarks": "true" if allow_bookmarks else None,
            "timeoutSeconds": str(int(timeout_seconds)) if timeout_seconds else None,
        }
        resp = self._send("GET", path, query=query, read_timeout=read_timeout)
        return LiteWatch(self, resp, path)


class LiteWatch:
    """One open watch response: iterate for its events (dicts with "type" and "object").

    Iteration ends when the server ends the stream; a broken connection raises
    KubeConnectionError and a silent one (longer than the read timeout) KubeTimeoutError.
    `close()` (or leaving the `with` block) keeps the connection only if the stream ended."""

    def __init__(self, client: LiteClient, resp: http.client.HTTPResponse, path: str) -> None:
        self._client = client
        self._resp = resp
        self._path = path

    def __enter__(self) -> LiteWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client._finish(self._resp)

    def __iter__(self) -> Iterator[Obj]:
        return watch_events(self._chunks(), self._path)

    def _chunks(self) -> Iterator[bytes]:
        while True:
            try:
                chunk = self._resp.read1(65536)
            except (http.client.HTTPException, OSError) as exc:
                self._client._drop()
                raise _transport_error(exc, "WATCH", self._path) from None
            if not chunk:
                return
            yield chunk
