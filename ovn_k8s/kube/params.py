"""Where the API server is, how to authenticate to it, and where a resource lives on it.

Shared by both transports, `rest.KubeClient` (requests) and `lite.LiteClient` (plain sockets),
and by `auth`, which builds `ConnectionParams`. Standard library only: the CNI plugin imports
it on every ADD (V11).
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Protocol

from ovn_k8s.kube.errors import KubeConfigError

LOG = logging.getLogger(__name__)

# plural -> (API prefix, namespaced). Other resources: pass the full path yourself.
_RESOURCES: dict[str, tuple[str, bool]] = {
    "pods": ("/api/v1", True),
    "services": ("/api/v1", True),
    "endpoints": ("/api/v1", True),
    "events": ("/api/v1", True),
    "configmaps": ("/api/v1", True),
    "nodes": ("/api/v1", False),
    "namespaces": ("/api/v1", False),
    "endpointslices": ("/apis/discovery.k8s.io/v1", True),
    "leases": ("/apis/coordination.k8s.io/v1", True),
}


def resource_path(resource: str, *, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """URL path of a collection or object: resource_path("pods", namespace="ns", name="p")
    -> "/api/v1/namespaces/ns/pods/p". No namespace on a namespaced kind = all namespaces."""
    try:
        prefix, namespaced = _RESOURCES[resource]
    except KeyError:
        raise ValueError(f"unknown resource {resource!r}; known: {', '.join(_RESOURCES)}") \
            from None
    parts = [prefix]
    if namespaced and namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(resource)
    if name:
        parts.append(name)
        if subresource:
            parts.append(subresource)
    elif subresource:
        raise ValueError("a subresource needs a name")
    return "/".join(parts)


class TokenProvider(Protocol):
    """A source of bearer tokens that may change (see `ovn_k8s.kube.credentials`)."""

    def token(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ConnectionParams:
    """How to reach the API server. Built by `ovn_k8s.kube.auth`; paths are files on disk
    (certificate data from a kubeconfig is written to files first)."""

    server: str  # "https://10.0.0.1:6443" (an optional path prefix is kept)
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None  # re-read when it changes (rotated service-account tokens)
    ca_file: str | None = None  # None with https: the system CA bundle
    insecure: bool = False  # skip TLS verification
    client_cert: str | None = None
    client_key: str | None = None
    proxy: str | None = None
    namespace: str | None = None  # the context's or service account's namespace
    source: str = "explicit"  # where these settings came from, for log messages
    # A kubeconfig exec plugin or auth provider: `token()` gives the current token.
    token_provider: TokenProvider | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.server.startswith(("http://", "https://")):
            raise KubeConfigError(f"API server URL {self.server!r} needs http:// or https://")
        try:  # the transports read these; a bad address is a setting to fix, not a retry
            url = urllib.parse.urlsplit(self.server)
            url.port  # noqa: B018 -- raises ValueError on a port that is no number or out of range
        except ValueError as exc:
            raise KubeConfigError(f"API server URL {self.server!r} is not valid: {exc}") from None
        if not url.hostname:
            raise KubeConfigError(f"API server URL {self.server!r} has no host")
        if (self.client_cert is None) != (self.client_key is None):
            raise KubeConfigError("a client certificate needs its key, and the other way round")


class TokenSource:
    """The bearer token: fixed, read from a file and re-read when the file changes, or asked
    of a kubeconfig plugin (which refreshes it when it expires)."""

    def __init__(self, token: str | None, path: str | None,
                 provider: TokenProvider | None = None) -> None:
        self._token = token
        self._path = path
        self._provider = provider
        self._mtime: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, params: ConnectionParams) -> TokenSource:
        return cls(params.token, params.token_file, params.token_provider)

    def get(self) -> str | None:
        if self._provider is not None:
            return self._provider.token()
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
                    raise KubeConfigError(f"cannot read token file {self._path}: {exc}") from None
                LOG.warning("kube: token file %s unreadable, keeping the last token: %s",
                            self._path, exc)
            return self._token


