"""A small Kubernetes API server that speaks the real REST list/watch protocol.

Built for tests and a local sandbox: no real kube-apiserver can run here, and mocks would
test our client's implementation rather than the wire contract (kopf's KMock rationale).
Both `ovn_k8s.kube` and the official `kubernetes` client talk to it unchanged.

`KubeApiServer` is the whole public surface:
- lifecycle: `start()`, `stop()`, `serve_forever()`, context manager, `url`, `write_kubeconfig()`;
- objects: `create/get/list/replace/patch/delete`, the same code path HTTP requests use, so
  open watches see every change;
- test knobs: `drop_watches()`, `compact()`, `pause()/resume()`, `inject_error()`,
  `emit_watch_event()`, `wait_for_watches()`, request counters and a request log.

Threads: `ThreadingHTTPServer` with one daemon thread per connection; each watch is a loop on
the store's condition variable. `stop()` shuts every connection down and joins the threads.
"""

from __future__ import annotations

import collections
import copy
import json
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.kubeapi.errors import ApiError, status_body
from sandbox.kubeapi.patch import JSON_PATCH, MERGE_PATCH, PATCH_TYPES, STRATEGIC_MERGE_PATCH
from sandbox.kubeapi.resources import (
    BY_GROUP_VERSION,
    RESOURCES,
    ResourceType,
    lookup,
)
from sandbox.kubeapi.selectors import Predicate, parse_field_selector, parse_label_selector
from sandbox.kubeapi.store import ALL, MAIN, STATUS, LogEntry, Obj, Store

LOG = logging.getLogger(__name__)

VERSION_INFO = {
    "major": "1", "minor": "30", "gitVersion": "v1.30.0-ovn-k8s-kubeapi",
    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.22", "compiler": "gc",
    "platform": "linux/amd64",
}
_PATCH_ALIASES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH, "json": JSON_PATCH}
_TRUE = ("true", "1", "yes")
_GONE_CHECK_INTERVAL = 0.2  # seconds between checks that an idle watch's client is still there


@dataclass(eq=False)
class _WatchStream:
    plural: str
    sock: socket.socket
    dropped: bool = False
    # Raw events from emit_watch_event: (event, end the stream after it, store RV at emit time)
    injected: list[tuple[Obj, bool, int]] = field(default_factory=list)


@dataclass
class _Injection:
    code: int
    reason: str | None
    message: str
    remaining: int
    verb: str | None
    resource: str | None
    retry_after: int | None
    skip: int = 0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection, discovery
    resource: str | None
    namespace: str | None
    params: Mapping[str, str]
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class _Route:
    verb: str
    rt: ResourceType | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    body: Any = None  # discovery documents


def _discovery_resources(group: str, version: str) -> Obj:
    resources = []
    for rt in BY_GROUP_VERSION[(group, version)].values():
        resources.append({
            "name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
            "kind": rt.kind, "shortNames": list(rt.short_names),
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update",
                      "watch"]})
        if rt.status_subresource:
            resources.append({"name": f"{rt.plural}/status", "singularName": "",
                              "namespaced": rt.namespaced, "kind": rt.kind,
                              "verbs": ["get", "patch", "update"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
            "resources": resources}


def _api_group(group: str) -> Obj:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in BY_GROUP_VERSION
                if g == group]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


def _route(method: str, parts: list[str], query: Mapping[str, str]) -> _Route:
    """Map method + path segments to a verb and its resource (or a discovery document)."""
    not_found = ApiError(404, "the server could not find the requested resource")
    if method == "GET":
        if parts == ["version"]:
            return _Route("discovery", body=VERSION_INFO)
        if parts == ["api"]:
            return _Route("discovery", body={
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": "127.0.0.1"}]})
        if parts == ["apis"]:
            groups = sorted({g for g, _ in BY_GROUP_VERSION if g})
            return _Route("discovery", body={"kind": "APIGroupList", "apiVersion": "v1",
                                             "groups": [_api_group(g) for g in groups]})
        if parts == ["api", "v1"]:
            return _Route("discovery", body=_discovery_resources("", "v1"))
        if len(parts) == 2 and parts[0] == "apis" and any(g == parts[1]
                                                          for g, _ in BY_GROUP_VERSION):
            return _Route("discovery", body=_api_group(parts[1]))
        if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in BY_GROUP_VERSION:
            return _Route("discovery", body=_discovery_resources(parts[1], parts[2]))
    if len(parts) >= 3 and parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise not_found
    types = BY_GROUP_VERSION.get((group, version))
    if not types:
        raise not_found
    watch_path = bool(rest) and rest[0] == "watch"  # legacy /api/v1/watch/... form
    if watch_path:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in types or len(rest) > 3:
        raise not_found
    rt = types[rest[0]]
    if namespace is not None and not rt.namespaced:
        raise not_found
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and (sub != "status" or not rt.status_subresource):
        raise not_found
    watching = watch_path or query.get("watch", "").lower() in _TRUE
    if method == "GET":
        if watching:
            return _Route("watch", rt, namespace, name)
        return _Route("get" if name else "list", rt, namespace, name, sub)
    if method == "POST" and name is None:
        if rt.namespaced and namespace is None:
            raise ApiError(405, "POST requires a namespace for namespaced resources")
        return _Route("create", rt, namespace)
    if method == "PUT" and name:
        return _Route("update", rt, namespace, name, sub)
    if method == "PATCH" and name:
        return _Route("patch", rt, namespace, name, sub)
    if method == "DELETE":
        return _Route("delete" if name else "deletecollection", rt, namespace, name)
    raise ApiError(405, f"the server does not allow this method on the requested resource "
                   f"({method})")


def _selectors(rt: ResourceType, namespace: str | None, query: Mapping[str, str],
               name: str | None = None) -> Predicate:
    try:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), rt.field_labels)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None

    def visible(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if namespace is not None and meta.get("namespace") != namespace:
            return False
        if name is not None and meta.get("name") != name:
            return False
        return labels(obj) and fields(obj)
    return visible


def _list_body(rt: ResourceType, items: list[Obj], rv: str, token: str | None,
               remaining: int) -> Obj:
    # Items of a typed list carry no kind/apiVersion on a real server either.
    meta: Obj = {"resourceVersion": rv}
    if token:
        meta["continue"] = token
        meta["remainingItemCount"] = remaining
    return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta,
            "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                      for o in items]}


# kube-apiserver's limit on a request body (MaxRequestBodyBytes): larger ones get 413.
MAX_BODY_BYTES = 3 * 1024 * 1024


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of clients connecting at once (200 node
    # agents, a benchmark's connection pool) would wait on SYN retransmits for a second or more.
    request_queue_size = 1024
    kube: KubeApiServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients vanishing mid-request (and TLS handshakes failing) are routine in tests.
        LOG.debug("kubeapi: connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ovn-k8s-kubeapi/0.1"
    # Headers and body go out in separate writes: without TCP_NODELAY each keep-alive
    # request would stall ~40 ms on Nagle + delayed ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        # A keep-alive connection that stays silent this long is closed (StreamRequestHandler
        # applies it to the socket), so idle or stuck clients cannot hold threads forever.
        self.timeout = self.server.kube.idle_timeout
        super().setup()
        self.server.kube._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.kube._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        LOG.debug("kubeapi: %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # -- plumbing ------------------------------------------------------------------------------

    def _send_json(self, code: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, exc: ApiError) -> None:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        self._send_json(exc.code, exc.status(), headers)

    def _read_body(self) -> bytes:
        """The body, read only after authentication and only up to MAX_BODY_BYTES; a body we
        do not read leaves the stream unusable, so the connection is then closed."""
        raw_length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(411, "a request body needs a Content-Length")
        try:
            length = int(raw_length or 0)
        except ValueError:
            self.close_connection = True
            raise ApiError(400, f"invalid Content-Length {raw_length!r}") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise ApiError(413, f"the request body is {length} bytes; the limit is "
                                f"{MAX_BODY_BYTES}")
        return self.rfile.read(length) if length > 0 else b""

    def _has_body(self) -> bool:
        return bool(self.headers.get("Content-Length", "0") not in ("", "0")
                    or self.headers.get("Transfer-Encoding"))

    def _authenticated(self) -> bool:
        api = self.server.kube
        if api.token is None and api.tls_client_ca is None:
            return True
        if api.token is not None and self.headers.get("Authorization") == f"Bearer {api.token}":
            return True
        if api.tls_client_ca is not None and isinstance(self.connection, ssl.SSLSocket):
            return bool(self.connection.getpeercert())
        return False

    def _dispatch(self, method: str) -> None:
        api = self.server.kube
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        try:
            if parts in (["healthz"], ["readyz"], ["livez"]):
                if self._has_body():
                    self.close_connection = True
                data = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if not self._authenticated():
                if self._has_body():
                    self.close_connection = True  # its body stays unread
                raise ApiError(401, "Unauthorized")
            raw = self._read_body()
            route = _route(method, parts, query)
            api._record(RequestRecord(method, url.path, route.verb,
                                      route.rt.plural if route.rt else None, route.namespace,
                                      query, self.headers.get("Content-Type")))
            api._check_injected(route.verb, route.rt.plural if route.rt else None)
            if route.verb == "watch":
                assert route.rt is not None
                self._serve_watch(route.rt, route.namespace, route.name, query)
                return
            code, body = self._handle(route, method, query, raw)
            self._send_json(code, body)
        except ApiError as exc:
            self._send_error(exc)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 -- the server must answer, not die
            LOG.exception("kubeapi: %s %s failed", method, self.path)
            self._send_error(ApiError(500, f"internal error: {exc}"))

    def _json_body(self, raw: bytes) -> Any:
        try:
            return json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None

    def _handle(self, route: _Route, method: str, query: Mapping[str, str],
                raw: bytes) -> tuple[int, Any]:
        store = self.server.kube._store
        rt, ns, name = route.rt, route.namespace, route.name
        if route.verb == "discovery":
            return 200, route.body
        assert rt is not None
        if route.verb == "get":
            return 200, store.get(rt, ns, name or "")  # GET .../status: the whole object too
        if route.verb == "list":
            limit = query.get("limit")
            items, rv, token, remaining = store.list(
                rt, _selectors(rt, ns, query),
                resource_version=query.get("resourceVersion"),
                exact=query.get("resourceVersionMatch") == "Exact",
                limit=int(limit) if limit and limit.isdigit() else None,
                continue_token=query.get("continue") or None)
            return 200, _list_body(rt, items, rv, token, remaining)
        if route.verb == "create":
            return 201, store.create(rt, ns, self._json_body(raw))
        mode = STATUS if route.subresource == "status" else MAIN
        if route.verb == "update":
            return 200, store.update(rt, ns, name or "", self._json_body(raw), mode=mode)
        if route.verb == "patch":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype not in PATCH_TYPES:
                raise ApiError(415, f"the body of the request was in an unknown format - "
                               f"accepted media types include: {', '.join(PATCH_TYPES)}")
            return 200, store.patch(rt, ns, name or "", ctype, self._json_body(raw), mode=mode)
        if route.verb == "delete":
            opts = self._json_body(raw) if raw.strip() else {}
            deleted = store.delete(rt, ns, name or "",
                                   preconditions=(opts or {}).get("preconditions"))
            if rt.return_deleted:
                return 200, deleted
            meta = deleted["metadata"]
            return 200, status_body(200, "", success=True, details={
                "name": meta["name"], "group": rt.group, "kind": rt.plural, "uid": meta["uid"]})
        if route.verb == "deletecollection":
            deleted = store.delete_collection(rt, _selectors(rt, ns, query))
            return 200, _list_body(rt, deleted, str(store.resource_version), None, 0)
        raise ApiError(405, f"unsupported verb {route.verb}")

    # -- watch ---------------------------------------------------------------------------------

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _write_event(self, event: Obj) -> None:
        self._write_chunk(json.dumps(event, separators=(",", ":")).encode() + b"\n")

    def _serve_watch(self, rt: ResourceType, namespace: str | None, name: str | None,
                     query: Mapping[str, str]) -> None:
        api = self.server.kube
        store = api._store
        visible = _selectors(rt, namespace, query, name)
        bookmarks = query.get("allowWatchBookmarks", "").lower() in _TRUE
        try:
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else \
                api.default_watch_timeout
        except ValueError:
            raise ApiError(400, f"invalid timeoutSeconds {query['timeoutSeconds']!r}") from None
        initial, cursor, gone = store.watch_start(rt, visible, query.get("resourceVersion"))
        stream = _WatchStream(rt.plural, self.connection)
        with store.cond:
            api._streams.append(stream)
            store.cond.notify_all()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self._watch_loop(rt, stream, visible, initial, cursor, gone, timeout, bookmarks)
        except (OSError, ValueError):
            # The client went away (or drop_watches shut the socket): nothing more to send.
            self.close_connection = True
        finally:
            with store.cond:
                if stream in api._streams:
                    api._streams.remove(stream)
                store.cond.notify_all()

    def _watch_loop(self, rt: ResourceType, stream: _WatchStream, visible: Predicate,
                    initial: list[Obj], cursor: int, gone: bool, timeout: float,
                    bookmarks: bool) -> None:
        api = self.server.kube
        store = api._store
        for obj in initial:
            self._write_event({"type": "ADDED", "object": obj})
        start = time.monotonic()
        deadline = start + timeout
        next_bookmark = start + api.bookmark_interval if bookmarks else float("inf")
        while True:
            if gone:
                self._write_event({"type": "ERROR", "object": status_body(
                    410, f"too old resource version: {cursor} ({store.first_resource_version})",
                    reason="Expired")})
                self._end_stream()
                return
            entries: list[LogEntry] = []
            injected: list[tuple[Obj, bool, int]] = []
            with store.cond:
                while True:
                    if stream.dropped:
                        self.close_connection = True
                        return  # abrupt: no terminating chunk
                    paused = api._paused
                    if not paused and (store.resource_version > cursor or stream.injected):
                        break
                    # While paused only the deadline (or resume()'s notify) ends the wait.
                    wake = deadline if paused else min(deadline, next_bookmark)
                    now = time.monotonic()
                    if now >= wake:
                        break
                    store.cond.wait(min(wake - now, _GONE_CHECK_INTERVAL))
                    if _client_gone(stream.sock):
                        self.close_connection = True
                        return
                paused = api._paused  # one decision per round, for events and bookmark
                if not paused:
                    try:
                        entries = store.events_after(cursor)
                    except ApiError:
                        gone = True
                        continue
                    injected, stream.injected = stream.injected, []
            # Injected events go out in emit order relative to the writes around them.
            pending = collections.deque(injected)
            for entry in [*entries, None]:
                while pending and (entry is None or pending[0][2] < entry.rv):
                    raw, close, _ = pending.popleft()
                    self._write_event(raw)
                    if close:
                        self._end_stream()
                        return
                if entry is None:
                    break
                cursor = entry.rv
                event = self._translate(rt, entry, visible)
                if event is not None:
                    self._write_event(event)
            now = time.monotonic()
            if bookmarks and now >= next_bookmark and not paused:
                self._write_event({"type": "BOOKMARK", "object": {
                    "kind": rt.kind, "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(cursor)}}})
                next_bookmark = now + api.bookmark_interval
            if now >= deadline:
                self._end_stream()
                return

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def _translate(rt: ResourceType, entry: LogEntry, visible: Predicate) -> Obj | None:
        """The event a filtered watch sees for a log entry (k8s cacheWatcher semantics)."""
        if entry.plural != rt.plural:
            return None
        new_ok = entry.type != "DELETED" and visible(entry.obj)
        old_ok = entry.old is not None and visible(entry.old)
        if new_ok and old_ok:
            return {"type": "MODIFIED", "object": entry.obj}
        if new_ok:
            return {"type": "ADDED", "object": entry.obj}
        if old_ok:
            assert entry.old is not None
            # DELETED carries the last visible state with the event's resourceVersion.
            gone = dict(entry.old, metadata=dict(entry.old["metadata"],
                                                 resourceVersion=str(entry.rv)))
            return {"type": "DELETED", "object": gone}
        return None


class KubeApiServer:
    """The test API server. Bind 127.0.0.1 in tests; port 0 picks a free port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 tls_client_ca: str | None = None, bookmark_interval: float = 60.0,
                 default_watch_timeout: float = 1800.0,
                 start_resource_version: int | None = None, history_limit: int = 100_000,
                 service_cidr: str = "10.96.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767),
                 idle_timeout: float = 90.0) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if tls_client_ca and not tls_cert:
            raise ValueError("tls_client_ca needs tls_cert/tls_key")
        self.host = host
        self.port = port
        self.token = token
        self.tls_cert, self.tls_key, self.tls_client_ca = tls_cert, tls_key, tls_client_ca
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.idle_timeout = idle_timeout  # seconds a connection may stay silent (Go's IdleTimeout)
        if start_resource_version is None:
            # Milliseconds since the epoch: a restarted sandbox server never reuses an old
            # resourceVersion, so clients holding one get 410 and relist.
            start_resource_version = int(time.time() * 1000)
        self._store = Store(start_resource_version=start_resource_version,
                            history_limit=history_limit, service_cidr=service_cidr,
                            node_port_range=node_port_range)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._streams: list[_WatchStream] = []
        self._paused = False
        self._conns: set[socket.socket] = set()
        self.connections_accepted = 0  # TCP connections served so far (keep-alive tests)
        self._handler_threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._lifecycle = threading.Lock()  # start() and stop() never interleave
        self._injections: list[_Injection] = []
        self._counts: collections.Counter[tuple[str, str | None]] = collections.Counter()
        self._requests: collections.deque[RequestRecord] = collections.deque(maxlen=10_000)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> KubeApiServer:
        """Bind and serve in a background thread. May be called again after stop(): the
        store is kept and the same port reused (an API server restart)."""
        with self._lifecycle:
            return self._start_locked()

    def _start_locked(self) -> KubeApiServer:
        if self._httpd is not None:
            raise RuntimeError("already running")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        httpd_cls = type("_Bound", (_HTTPServer,), {"address_family": family})
        httpd = httpd_cls((self.host, self.port), _Handler)
        httpd.kube = self
        if self.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
            if self.tls_client_ca:
                ctx.load_verify_locations(self.tls_client_ca)
                ctx.verify_mode = ssl.CERT_OPTIONAL
            # Handshake in the connection's thread, so a silent client cannot block accept().
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                           do_handshake_on_connect=False)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        # stop() waits up to one poll interval for the accept loop: keep it short for tests.
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"kubeapi-{self.port}", daemon=True)
        self._thread.start()
        LOG.info("kubeapi: serving %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving: close the listener, cut every connection (watches end abruptly),
        and join the server's threads. Objects are kept."""
        with self._lifecycle:
            self._stop_locked()

    def _stop_locked(self) -> None:
        httpd, self._httpd = self._httpd, None
        serve_thread, self._thread = self._thread, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._store.cond:
            for stream in self._streams:
                stream.dropped = True
            self._store.cond.notify_all()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._handler_threads)
        for conn in conns:
            _shutdown(conn)
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if serve_thread is not None:
            serve_thread.join(5)
        LOG.info("kubeapi: stopped %s", self.url)

    def serve_forever(self, stop: threading.Event) -> None:
        """Serve until `stop` is set (the CLI sets it from SIGTERM)."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    def __enter__(self) -> KubeApiServer:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
                self.connections_accepted += 1
                self._handler_threads.add(threading.current_thread())
            else:
                self._conns.discard(conn)
                self._handler_threads.discard(threading.current_thread())

    def write_kubeconfig(self, path: str | os.PathLike[str], *, ca_file: str | None = None,
                         token: str | None = None, insecure: bool = False,
                         client_cert: str | None = None, client_key: str | None = None,
                         namespace: str = "default") -> str:
        """Write a kubeconfig (mode 0600) that points at this server; returns the path.
        With TLS and no ca_file, the serving certificate is named as the CA (right for a
        self-signed certificate)."""
        import yaml  # only the sandbox and tests write kubeconfigs

        cluster: dict[str, Any] = {"server": self.url}
        if self.tls_cert:
            if insecure:
                cluster["insecure-skip-tls-verify"] = True
            else:
                cluster["certificate-authority"] = os.path.abspath(ca_file or self.tls_cert)
        user: dict[str, Any] = {}
        if token or self.token:
            user["token"] = token or self.token
        if client_cert and client_key:
            user["client-certificate"] = os.path.abspath(client_cert)
            user["client-key"] = os.path.abspath(client_key)
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "kubeapi", "cluster": cluster}],
            "users": [{"name": "kubeapi", "user": user}],
            "contexts": [{"name": "kubeapi", "context": {"cluster": "kubeapi", "user": "kubeapi",
                                                         "namespace": namespace}}],
            "current-context": "kubeapi",
        }
        path = os.fspath(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh, default_flow_style=False, sort_keys=False)
        return path

    # -- objects (same code path as HTTP) ------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj:
        rt = lookup(resource)
        body = json.loads(json.dumps(obj))
        ns = namespace or (body.get("metadata") or {}).get("namespace") or (
            "default" if rt.namespaced else None)
        return copy.deepcopy(self._store.create(rt, ns, body))

    def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj:
        return copy.deepcopy(self._store.get(lookup(resource), namespace or "default", name))

    def list(self, resource: str, *, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        rt = lookup(resource)
        visible = _selectors(rt, namespace, {"labelSelector": label_selector or "",
                                             "fieldSelector": field_selector or ""})
        items, _, _, _ = self._store.list(rt, visible)
        return copy.deepcopy(items)

    def replace(self, resource: str, obj: Obj) -> Obj:
        """Replace the whole object, status included (unlike PUT on the main resource)."""
        rt = lookup(resource)
        meta = obj.get("metadata") or {}
        return copy.deepcopy(self._store.update(rt, meta.get("namespace") or "default",
                                                meta["name"], json.loads(json.dumps(obj)),
                                                mode=ALL))

    def patch(self, resource: str, name: str, patch: Any, *, namespace: str | None = None,
              patch_type: str = "merge") -> Obj:
        """Patch the whole object, status included; patch_type merge, strategic or json."""
        rt = lookup(resource)
        return copy.deepcopy(self._store.patch(
            rt, namespace or "default", name, _PATCH_ALIASES.get(patch_type, patch_type),
            json.loads(json.dumps(patch)), mode=ALL))

    def delete(self, resource: str, name: str, *, namespace: str | None = None) -> Obj:
        return copy.deepcopy(self._store.delete(lookup(resource), namespace or "default", name))

    # -- test knobs ----------------------------------------------------------------------------

    def drop_watches(self, resource: str | None = None) -> int:
        """Cut open watch streams abruptly (no terminating chunk); returns how many."""
        plural = lookup(resource).plural if resource else None
        with self._store.cond:
            victims = [s for s in self._streams
                       if not s.dropped and (plural is None or s.plural == plural)]
            for stream in victims:
                stream.dropped = True
            self._store.cond.notify_all()
        for stream in victims:
            _shutdown(stream.sock)
        return len(victims)

    def compact(self) -> None:
        """Forget the event history: a watch from an older resourceVersion gets 410."""
        self._store.compact()

    def pause(self) -> None:
        """Hold back events and bookmarks on every watch (a hung server); writes still work."""
        with self._store.cond:
            self._paused = True

    def resume(self) -> None:
        with self._store.cond:
            self._paused = False
            self._store.cond.notify_all()

    def inject_error(self, code: int, *, reason: str | None = None, message: str | None = None,
                     count: int = 1, verb: str | None = None, resource: str | None = None,
                     retry_after: int | None = None, skip: int = 0) -> None:
        """Answer `count` requests matching verb/resource with this error Status, after
        letting the first `skip` matching ones through."""
        plural = lookup(resource).plural if resource else None
        with self._lock:
            self._injections.append(_Injection(code, reason, message or f"injected error {code}",
                                               count, verb, plural, retry_after, skip))

    def _check_injected(self, verb: str, plural: str | None) -> None:
        with self._lock:
            for inj in self._injections:
                if inj.remaining > 0 and inj.verb in (None, verb) and inj.resource in (None,
                                                                                       plural):
                    if inj.skip > 0:
                        inj.skip -= 1
                        continue
                    inj.remaining -= 1
                    self._injections = [i for i in self._injections if i.remaining > 0]
                    raise ApiError(inj.code, inj.message, reason=inj.reason,
                                   retry_after=inj.retry_after)

    def emit_watch_event(self, event: Obj, *, resource: str | None = None,
                         close: bool = False) -> int:
        """Send a raw event line on every open watch (of `resource`); with close=True the
        stream then ends cleanly. Returns the number of streams it went to."""
        plural = lookup(resource).plural if resource else None
        with self._store.cond:
            targets = [s for s in self._streams
                       if not s.dropped and (plural is None or s.plural == plural)]
            for stream in targets:
                stream.injected.append((copy.deepcopy(event), close,
                                        self._store.resource_version))
            self._store.cond.notify_all()
        return len(targets)

    def open_watches(self, resource: str | None = None) -> int:
        plural = lookup(resource).plural if resource else None
        with self._store.cond:
            return sum(1 for s in self._streams
                       if not s.dropped and (plural is None or s.plural == plural))

    def wait_for_watches(self, count: int = 1, *, resource: str | None = None,
                         timeout: float = 5.0) -> bool:
        """Wait until at least `count` watch streams are open; False on timeout."""
        plural = lookup(resource).plural if resource else None
        with self._store.cond:
            return self._store.cond.wait_for(
                lambda: sum(1 for s in self._streams if not s.dropped and
                            (plural is None or s.plural == plural)) >= count, timeout)

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._counts[(rec.verb, rec.resource)] += 1
            self._requests.append(rec)

    def request_count(self, verb: str | None = None, resource: str | None = None) -> int:
        plural = lookup(resource).plural if resource else None
        with self._lock:
            return sum(n for (v, r), n in self._counts.items()
                       if verb in (None, v) and plural in (None, r))

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def watch_requests(self) -> list[RequestRecord]:
        return [r for r in self.requests if r.verb == "watch"]

    def reset_counters(self) -> None:
        with self._lock:
            self._counts.clear()
            self._requests.clear()


def _client_gone(sock: socket.socket) -> bool:
    """A watch client never sends anything mid-stream: readable means EOF (or a TLS
    close_notify), i.e. it went away. Checked while idle, so open_watches() stays honest."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _shutdown(sock: socket.socket) -> None:
    try:
        # socket.socket.shutdown on purpose: SSLSocket.shutdown would touch the TLS state
        # that the connection's own thread may be using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


__all__ = ["KubeApiServer", "RequestRecord", "RESOURCES"]
