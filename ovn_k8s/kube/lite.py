"""A small Kubernetes REST transport over plain sockets, for the two hot, short paths.

- The CNI plugin's GET of its pod and watch for the `ovn` annotation. The plugin is a process
  per pod ADD: importing `requests` costs it ~30 ms, `http.client` (with `email`) ~5 ms.
- The watcher's annotation PATCH, one per pod: ~0.14 ms of watcher CPU against ~0.33 ms
  through `http.client` and ~0.4 ms through `requests` (docs/performance.md), which at
  hundreds of pods/s is a good part of the core the GIL gives the watcher.

The HTTP/1.1 it speaks is the little these calls need (`_Connection`): a request written in
one `sendall`, a status line and headers read without the `email` parser, a body by
Content-Length, chunked or up to the close, keep-alive unless the server says otherwise.

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

import json
import socket
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
_MAX_HEAD = 65536          # bytes of status line + headers before we call the answer broken


class _Closed(ConnectionError):
    """The server closed the connection before answering (an idle keep-alive one)."""


class _BadResponse(ConnectionError):
    """Not an HTTP/1.x answer we can read."""


# The server closed an idle keep-alive connection under us: safe to send again on a new one.
_STALE = (_Closed, BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


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


class _Connection:
    """One HTTP/1.1 connection (TCP, or TLS over it) and what has been read ahead of the
    current answer."""

    def __init__(self, host: str, port: int, ctx: ssl.SSLContext | None,
                 connect_timeout: float) -> None:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.buf = b""
        self.used = False          # has answered a request: a failure may be a stale close

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv(self) -> bytes:
        return self.sock.recv(65536)

    def read_head(self) -> tuple[int, dict[str, str], bool]:
        """Status, headers (lower-case names) and whether the server keeps the connection."""
        while True:
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                if len(self.buf) > _MAX_HEAD:
                    raise _BadResponse("the answer's headers are too long")
                data = self._recv()
                if not data:
                    if self.buf:
                        raise _BadResponse("the connection closed inside the answer's headers")
                    raise _Closed("the server closed the connection without an answer")
                self.buf += data
            head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
            status_line, *lines = head.split("\r\n")
            version, _, rest = status_line.partition(" ")
            try:
                status = int(rest[:3])
            except ValueError:
                raise _BadResponse(f"not an HTTP answer: {status_line[:80]!r}") from None
            if not version.startswith("HTTP/1."):
                raise _BadResponse(f"not an HTTP/1 answer: {status_line[:80]!r}")
            if 100 <= status < 200:
                continue                  # an interim answer (100 Continue): the real one follows
            headers: dict[str, str] = {}
            for line in lines:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            conn = headers.get("connection", "").lower()
            keep = "close" not in conn and (version != "HTTP/1.0" or "keep-alive" in conn)
            return status, headers, keep


class _Response:
    """One answer's body, read from its connection: all of it (`read`) or as it comes
    (`chunks`). `complete` once the body has been read to its end."""

    def __init__(self, conn: _Connection, status: int, headers: dict[str, str], keep: bool,
                 method: str) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left: int | None = None
        if method == "HEAD" or status in (204, 304):
            self._left = 0
        elif not self._chunked and length is not None:
            try:
                self._left = int(length)
            except ValueError:
                raise _BadResponse(f"bad Content-Length {length!r}") from None
        # Without a length the body runs to the close: the connection cannot be reused.
        self.keep = keep and (self._chunked or self._left is not None)
        self.complete = self._left == 0 and not self._chunked

    def chunks(self) -> Iterator[bytes]:
        """The body's bytes as they arrive (any boundaries); ends at the body's end."""
        conn = self.conn
        if self.complete:
            return
        if not self._chunked:
            while self._left is None or self._left > 0:
                data, conn.buf = conn.buf, b""
                if not data:
                    data = conn._recv()
                    if not data:
                        if self._left is None:
                            self.complete = True
                            return
                        raise _BadResponse("the connection closed inside the answer's body")
                if self._left is not None:
                    data, conn.buf = data[:self._left], data[self._left:]
                    self._left -= len(data)
                yield data
            self.complete = True
            return
        while True:
            while (nl := conn.buf.find(b"\r\n")) < 0:
                more = conn._recv()
                if not more:
                    raise _BadResponse("the connection closed inside a chunk header")
                conn.buf += more
            try:
                size = int(conn.buf[:nl].split(b";", 1)[0], 16)
            except ValueError:
                raise _BadResponse("bad chunk header") from None
            conn.buf = conn.buf[nl + 2:]
            if size == 0:
                # Trailers (none from the API server), then the blank line that ends the body.
                while True:
                    while (nl := conn.buf.find(b"\r\n")) < 0:
                        more = conn._recv()
                        if not more:
                            raise _BadResponse("the connection closed inside the trailers")
                        conn.buf += more
                    line, conn.buf = conn.buf[:nl], conn.buf[nl + 2:]
                    if not line:
                        self.complete = True
                        return
            while size > 0:
                if not conn.buf:
                    conn.buf = conn._recv()
                    if not conn.buf:
                        raise _BadResponse("the connection closed inside a chunk")
                data, conn.buf = conn.buf[:size], conn.buf[size:]
                size -= len(data)
                yield data
            while len(conn.buf) < 2:
                more = conn._recv()
                if not more:
                    raise _BadResponse("the connection closed after a chunk")
                conn.buf += more
            conn.buf = conn.buf[2:]           # the CRLF after the chunk's data

    def read(self) -> bytes:
        return b"".join(self.chunks())


class LiteClient:
    """get, watch and annotate over plain sockets; thread-safe (one connection per thread).

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
        host = f"[{self._host}]" if ":" in self._host else self._host
        if url.port:
            host += f":{url.port}"
        # Every request's fixed header lines, ready to send.
        self._fixed = (f"Host: {host}\r\nAccept: application/json\r\n"
                       f"User-Agent: {user_agent}\r\n")
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
        self._conns: list[_Connection] = []
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

    def _connection(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _Connection(self._host, self._port, self._ssl, self.connect_timeout)
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
              read_timeout: float | None = None) -> _Response:
        """Send one request and read the status line and headers; raise a KubeError for a
        transport failure or a >= 400 status (after reading its body). The caller reads the
        2xx body."""
        target = self._prefix + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            target += "?" + urllib.parse.urlencode(params)
        if any(c in target for c in " \r\n\t"):
            raise ValueError(f"{method} {target!r}: white space in a request target")
        head = f"{method} {target} HTTP/1.1\r\n{self._fixed}"
        token = self._token.get()
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode("latin-1") + (body or b"")
        for attempt in (0, 1):
            reused = False
            try:
                conn = self._connection()
                reused = conn.used
                conn.sock.settimeout(read_timeout or self.timeout)
                conn.sock.sendall(request)
                status, headers, keep = conn.read_head()
                resp = _Response(conn, status, headers, keep, method)
            except Exception as exc:
                self._drop()
                if attempt == 0 and reused and isinstance(exc, _STALE):
                    continue
                if isinstance(exc, OSError):
                    raise _transport_error(exc, method, path) from None
                raise
            conn.used = True
            break
        if resp.status >= 400:
            try:
                payload = error_payload(resp.read())
            except OSError:
                payload = ""
            self._finish(resp)
            raise api_error(resp.status, payload, method=method, url=path)
        return resp

    def _finish(self, resp: _Response) -> None:
        """After a response: keep the connection only if its body was read to the end and
        the server keeps it open."""
        if not (resp.keep and resp.complete):
            self._drop()

    def _read(self, method: str, path: str, resp: _Response) -> bytes:
        try:
            data = resp.read()
        except OSError as exc:
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
        body = json.dumps({"metadata": {"annotations": dict(annotations)}},
                          separators=(",", ":")).encode()
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

    Iteration ends when the server ends the stream, or quietly after `interrupt()` (any
    thread: it shuts the socket down, which ends a blocked read); a broken connection raises
    KubeConnectionError and a silent one (longer than the read timeout) KubeTimeoutError.
    `close()` (or leaving the `with` block) keeps the connection only if the stream ended."""

    def __init__(self, client: LiteClient, resp: _Response, path: str) -> None:
        self._client = client
        self._resp = resp
        self._path = path
        self._interrupted = threading.Event()

    def __enter__(self) -> LiteWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def interrupt(self) -> None:
        self._interrupted.set()
        try:
            # The base-class method on purpose: SSLSocket.shutdown would tear down TLS state
            # that the reading thread is still using.
            socket.socket.shutdown(self._resp.conn.sock, socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        if self.interrupted:
            self._resp.keep = False
        self._client._finish(self._resp)

    def __iter__(self) -> Iterator[Obj]:
        return watch_events(self._chunks(), self._path)

    def _chunks(self) -> Iterator[bytes]:
        chunks = self._resp.chunks()
        while True:
            try:
                chunk = next(chunks, None)
            except OSError as exc:
                self._client._drop()
                if self.interrupted:
                    return
                raise _transport_error(exc, "WATCH", self._path) from None
            if chunk is None or self.interrupted:
                return
            yield chunk
