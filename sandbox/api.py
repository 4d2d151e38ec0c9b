"""A small JSON client for the sandbox's API server on 127.0.0.1 (stdlib only)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

CORE = {"pods", "services", "endpoints", "namespaces", "nodes", "events", "serviceaccounts"}
GROUPS = {"deployments": "/apis/apps/v1", "replicasets": "/apis/apps/v1",
          "leases": "/apis/coordination.k8s.io/v1", "endpointslices": "/apis/discovery.k8s.io/v1",
          "networkpolicies": "/apis/networking.k8s.io/v1"}
CLUSTER_SCOPED = {"nodes", "namespaces"}


class ApiError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Api:
    def __init__(self, url: str, token: str | None = None, timeout: float = 10,
                 cafile: str | None = None) -> None:
        if not url.startswith(("http://127.", "https://127.")):
            raise ValueError("the sandbox only talks to its API server on loopback")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if url.startswith("https:") else None

    def path(self, resource: str, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if resource in CORE else GROUPS[resource]
        ns = f"/namespaces/{namespace}" if namespace and resource not in CLUSTER_SCOPED else ""
        return f"{base}{ns}/{resource}" + (f"/{name}" if name else "")

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise ApiError(exc.code, message) from None
        return json.loads(text) if text else None

    def list(self, resource: str, namespace: str | None = None, **query: str) -> list[dict[str, Any]]:
        q = ("?" + urllib.parse.urlencode(query)) if query else ""
        return self.request("GET", self.path(resource, namespace) + q).get("items") or []

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.request("GET", self.path(resource, namespace, name))
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise

    def create(self, resource: str, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return self.request("POST", self.path(resource, namespace), obj)

    def replace(self, resource: str, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return self.request("PUT", self.path(resource, namespace, obj["metadata"]["name"]), obj)

    def patch(self, resource: str, name: str, patch: dict[str, Any], namespace: str | None = None,
              subresource: str = "") -> dict[str, Any]:
        path = self.path(resource, namespace, name) + (f"/{subresource}" if subresource else "")
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, resource: str, name: str, namespace: str | None = None,
               options: dict[str, Any] | None = None) -> bool:
        """DELETE, with DeleteOptions (e.g. gracePeriodSeconds, preconditions) when given.
        False if it was not there."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", **options} if options else None
        try:
            self.request("DELETE", self.path(resource, namespace, name), body)
            return True
        except ApiError as exc:
            if exc.code == 404:
                return False
            raise
