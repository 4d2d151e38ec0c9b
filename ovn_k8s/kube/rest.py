"""Thin REST client for the Kubernetes API over `requests`: raw JSON dicts in and out.

This is the only code that sends HTTP to the API server. It stays light on purpose: the CNI
plugin runs once per pod ADD/DEL and imports it, so this module (and what it imports) must
not pull in `kubernetes`, `ovsdbapp` or `yaml` (V11; checked by
tests/unit/kube/test_import_contracts.py). Objects stay plain dicts; deserialising into the
official client's models costs ~17x (V10).

Public API:
- `ConnectionParams`, `resource_path`: re-exported from `kube.params`, where they live.
- `KubeClient(params)`: `get`, `list` (follows `continue`), `watch` -> `WatchStream`,
  `create`, `replace`, `patch`/`merge_patch`/`annotate`, `delete`, `post_event`.
- `resource_path(...)`, `object_key(obj)`, `trim_object(obj)`, `build_event(...)`.

Errors are `ovn_k8s.kube.errors` exceptions; `requests` exceptions never escape.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning, ReadTimeoutError

from ovn_k8s.kube.errors import (
    Gone,
    KubeConnectionError,
    KubeTimeoutError,
    KubeTLSError,
    api_error,
)
from ovn_k8s.kube.params import ConnectionParams, TokenSource, resource_path
from ovn_k8s.kube.wire import error_payload, watch_events

__all__ = ["ConnectionParams", "KubeClient", "WatchStream", "build_event", "object_key", "resource_path",
           "trim_object"]

LOG = logging.getLogger(__name__)

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_PATCH_TYPES = {"merge": MERGE_PATCH, "strategic": STRATEGIC_MERGE_PATCH, "json": JSON_PATCH}

def object_key(obj: Mapping[str, Any]) -> str:
    """ "namespace/name" (or "name" for cluster-scoped objects): the key used everywhere."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def trim_object(obj: Obj) -> Obj:
    """Drop what no controller here reads but every object carries (managedFields, kubectl's
    last-applied annotation), like ovn-kubernetes' informer transform. Returns a new dict;
    `obj` is not changed."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return obj
    annotations = meta.get("annotations")
    if "managedFields" not in meta and not (annotations and _LAST_APPLIED in annotations):
        return obj
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    if annotations and _LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != _LAST_APPLIED}
    return dict(obj, metadata=meta)


def _connection_error(exc: requests.RequestException, method: str, url: str) -> Exception:
    what = f"{method} {url}"
    if isinstance(exc, requests.exceptions.SSLError):
        return KubeTLSError(f"{what}: TLS failed: {exc}")
    if isinstance(exc, requests.exceptions.Timeout) or (
            isinstance(exc, requests.ConnectionError) and exc.args
            and isinstance(exc.args[0], ReadTimeoutError)):
        return KubeTimeoutError(f"{what}: timed out: {exc}")
    return KubeConnectionError(f"{what}: {exc}")


class WatchStream:
    """One open watch response: iterate to get its events (dicts with "type" and "object").

    Iteration ends when the server ends the stream cleanly; a broken connection raises
    KubeConnectionError and a read timeout KubeTimeoutError, unless `interrupt()` was
    called, which ends iteration quietly. `interrupt()` may be called from any thread (it
    shuts the socket down, which unblocks a pending read); `close()` releases the response.
    """

    def __init__(self, response: requests.Response, method: str, url: str) -> None:
        self._response = response
        self._method = method
        self._url = url
        self._interrupted = threading.Event()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        self._interrupted.set()
        conn = getattr(self._response.raw, "connection", None)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                # The base-class method on purpose: SSLSocket.shutdown would tear down TLS
                # state that the reading thread is still using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._response.close()

    def __iter__(self) -> Iterator[Obj]:
        try:
            yield from watch_events(self._response.iter_content(chunk_size=None), self._url)
        except requests.RequestException as exc:
            if self.interrupted:
                return
            raise _connection_error(exc, self._method, self._url) from None
        except (OSError, ValueError) as exc:  # urllib3 internals after a shutdown()
            if self.interrupted:
                return
            raise KubeConnectionError(f"{self._method} {self._url}: {exc}") from None


class KubeClient:
    """Kubernetes REST calls on one `requests.Session` (thread-safe for our use: one
    connection pool, no per-call session state)."""

    def __init__(self, params: ConnectionParams, *, timeout: float = 30.0,
                 connect_timeout: float = 10.0, user_agent: str = "ovn-k8s",
                 pool_size: int = 10) -> None:
        self.params = params
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._base = params.server.rstrip("/")
        self._token = TokenSource.of(params)
        session = requests.Session()
        # Like client-go without a proxy-url: ignore *_PROXY and .netrc from the environment.
        session.trust_env = False
        if params.proxy:
            session.proxies = {"http": params.proxy, "https": params.proxy}
        if params.server.startswith("https://"):
            if params.insecure:
                # Said once here rather than by urllib3 on every request.
                LOG.warning("kube: TLS verification of %s is disabled (%s)", params.server,
                            params.source)
                urllib3.disable_warnings(InsecureRequestWarning)
            session.verify = False if params.insecure else (params.ca_file or True)
            if params.client_cert and params.client_key:
                session.cert = (params.client_cert, params.client_key)
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update({"Accept": "application/json", "User-Agent": user_agent})
        self._session = session

    def __repr__(self) -> str:
        return f"KubeClient({self._base!r}, source={self.params.source!r})"

    def __enter__(self) -> KubeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    @property
    def server(self) -> str:
        return self._base

    # -- transport -----------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, content_type: str = "application/json",
                stream: bool = False, read_timeout: float | None = None) -> requests.Response:
        """Send one request; return the 2xx response or raise a KubeError."""
        url = self._base + path
        headers = {}
        token = self._token.get()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._session.request(
                method, url, params=query, data=data, headers=headers, stream=stream,
                timeout=(self.connect_timeout, read_timeout or self.timeout))
        except requests.RequestException as exc:
            raise _connection_error(exc, method, path) from None
        if resp.status_code >= 400:
            try:
                payload: Any = error_payload(resp.content)
            except requests.RequestException:
                payload = ""
            finally:
                resp.close()
            raise api_error(resp.status_code, payload, method=method, url=path)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Obj:
        resp = self.request(method, path, **kwargs)
        try:
            return resp.json()
        except ValueError:
            raise KubeConnectionError(f"{method} {path}: the answer is not JSON") from None
        except requests.RequestException as exc:
            raise _connection_error(exc, method, path) from None

    # -- verbs ---------------------------------------------------------------------------------

    def get(self, path: str) -> Obj:
        return self._json("GET", path)

    def list(self, path: str, *, label_selector: str | None = None,
             field_selector: str | None = None, resource_version: str | None = None,
             limit: int | None = None) -> Obj:
        """LIST a collection; with `limit`, follow `continue` tokens and return one list
        (the pages share the first page's snapshot resourceVersion)."""
        base = {"labelSelector": label_selector, "fieldSelector": field_selector}
        params = dict(base, limit=limit, resourceVersion=resource_version)
        items: list[Obj] = []
        first: Obj | None = None
        while True:
            try:
                page = self._json("GET", path, params=params)
            except Gone:
                if first is None or not limit:
                    raise
                # The continue token outlived the server's history: one full list instead
                # (what client-go's pager does).
                LOG.info("kube: list %s: continue token expired, listing without paging", path)
                return self.list(path, label_selector=label_selector,
                                 field_selector=field_selector)
            first = first or page
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            params = dict(base, limit=limit, **{"continue": token})
        meta = {k: v for k, v in (first.get("metadata") or {}).items()
                if k not in ("continue", "remainingItemCount")}
        return dict(first, metadata=meta, items=items)

    def watch(self, path: str, *, resource_version: str | None = None,
              label_selector: str | None = None, field_selector: str | None = None,
              allow_bookmarks: bool = True, timeout_seconds: int | None = None,
              read_timeout: float | None = None) -> WatchStream:
        """Open a watch. `read_timeout` is the inactivity limit between two reads (keep it
        above the server's bookmark interval, 60 s on real servers)."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "allowWatchBookmarks": "true" if allow_bookmarks else None,
            "timeoutSeconds": str(int(timeout_seconds)) if timeout_seconds else None,
        }
        resp = self.request("GET", path, params=params, stream=True,
                            read_timeout=read_timeout)
        return WatchStream(resp, "WATCH", path)

    def create(self, path: str, obj: Obj) -> Obj:
        """POST `obj` to the collection at `path`."""
        return self._json("POST", path, body=obj)

    def replace(self, path: str, obj: Obj) -> Obj:
        """PUT; Conflict if obj's metadata.resourceVersion is stale."""
        return self._json("PUT", path, body=obj)

    def patch(self, path: str, patch: Any, *, patch_type: str = "merge") -> Obj:
        """PATCH with patch_type "merge", "strategic" or "json" (or a full media type)."""
        ctype = _PATCH_TYPES.get(patch_type, patch_type)
        return self._json("PATCH", path, body=patch, content_type=ctype)

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        return self.patch(path, patch, patch_type="merge")

    def annotate(self, path: str, annotations: Mapping[str, str | None], *,
                 resource_version: str | None = None) -> Obj:
        """Set (or, with None, remove) annotations with one merge patch. With
        `resource_version` the write fails with Conflict if the object changed since."""
        meta: Obj = {"annotations": dict(annotations)}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return self.merge_patch(path, {"metadata": meta})

    def delete(self, path: str, *, uid: str | None = None,
               resource_version: str | None = None) -> Obj:
        """DELETE; returns the deleted object or a Status, as the server answers. uid and
        resource_version are preconditions (Conflict if they do not match)."""
        body = None
        if uid or resource_version:
            pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
            body = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": pre}
        return self._json("DELETE", path, body=body)

    def post_event(self, involved: Obj, *, reason: str, message: str,
                   event_type: str = "Normal", component: str = "ovn-k8s") -> Obj:
        """Record a core/v1 Event about `involved` (in its namespace, or "default")."""
        event = build_event(involved, reason=reason, message=message, event_type=event_type,
                            component=component)
        ns = event["metadata"]["namespace"]
        return self.create(resource_path("events", namespace=ns), event)


def build_event(involved: Obj, *, reason: str, message: str, event_type: str = "Normal",
                component: str = "ovn-k8s") -> Obj:
    """A core/v1 Event body about `involved` (what kubectl describe shows)."""
    meta = involved.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": ns},
        "involvedObject": {k: v for k, v in (
            ("kind", involved.get("kind")), ("apiVersion", involved.get("apiVersion")),
            ("namespace", meta.get("namespace")), ("name", meta.get("name")),
            ("uid", meta.get("uid")), ("resourceVersion", meta.get("resourceVersion")))
            if v},
        "reason": reason, "message": message, "type": event_type,
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
