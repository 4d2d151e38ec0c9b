"""Exceptions of the Kubernetes client layer (`ovn_k8s.kube`).

    KubeError
    +-- KubeConfigError          no usable kubeconfig / service account / server setting
    +-- KubeConnectionError      the API server could not be reached or the connection broke
    |   +-- KubeTimeoutError     connect or read (inactivity) timeout
    |   +-- KubeTLSError         TLS handshake or certificate verification failed
    +-- KubeApiError             the server answered with an error Status (code, reason, message)
    |   +-- BadRequest 400, Unauthorized 401, Forbidden 403, NotFound 404,
    |   |   MethodNotAllowed 405, Conflict 409 (+ AlreadyExists), Gone 410 (= Expired),
    |   |   Invalid 422, TooManyRequests 429, ServerError 5xx (+ ServerTimeout 504)
    +-- WatchError               a watch stream carried an ERROR event or garbage

Standard library only: the CNI plugin imports this through `ovn_k8s.kube.rest` (V11).
"""

from __future__ import annotations

from typing import Any

from ovn_k8s.errors import OvnK8sError


class KubeError(OvnK8sError):
    """Base of every error raised by ovn_k8s.kube."""


class KubeConfigError(KubeError):
    """The connection settings are missing or unusable (bad kubeconfig, no service account)."""


class KubeConnectionError(KubeError):
    """The API server could not be reached, or the connection broke mid-response."""


class KubeTimeoutError(KubeConnectionError):
    """Connecting took too long, or the server sent nothing for the read timeout."""


class KubeTLSError(KubeConnectionError):
    """TLS failed: wrong CA, bad client certificate, or not a TLS server."""


class KubeApiError(KubeError):
    """The API server answered with an error. `status` is its Status body when it sent one."""

    code: int = 0

    def __init__(self, message: str, *, code: int, reason: str = "", method: str = "",
                 url: str = "", status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.method = method
        self.url = url
        self.status = status

    def __str__(self) -> str:
        where = f"{self.method} {self.url}: " if self.method else ""
        reason = f" {self.reason}" if self.reason else ""
        return f"{where}{self.code}{reason}: {self.message}"

    @property
    def retryable(self) -> bool:
        """Worth retrying the same request later (throttling, server trouble)."""
        return self.code == 429 or self.code >= 500

    @property
    def retry_after(self) -> float | None:
        details = (self.status or {}).get("details") or {}
        value = details.get("retryAfterSeconds")
        return float(value) if isinstance(value, (int, float)) else None

    def has_cause(self, reason: str) -> bool:
        causes = ((self.status or {}).get("details") or {}).get("causes") or []
        return any(isinstance(c, dict) and c.get("reason") == reason for c in causes)


class BadRequest(KubeApiError):
    code = 400


class Unauthorized(KubeApiError):
    code = 401


class Forbidden(KubeApiError):
    code = 403


class NotFound(KubeApiError):
    code = 404


class MethodNotAllowed(KubeApiError):
    code = 405


class Conflict(KubeApiError):
    """409: stale resourceVersion on update (re-read and retry) or, as AlreadyExists, create."""

    code = 409


class AlreadyExists(Conflict):
    pass


class Gone(KubeApiError):
    """410 Expired: the resourceVersion (or continue token) is older than the server's
    history; list again."""

    code = 410


Expired = Gone


class Invalid(KubeApiError):
    code = 422


class TooManyRequests(KubeApiError):
    code = 429


class ServerError(KubeApiError):
    code = 500


class ServerTimeout(ServerError):
    """504; `too_large_resource_version` tells the watch loop to relist."""

    code = 504

    @property
    def too_large_resource_version(self) -> bool:
        return self.has_cause("ResourceVersionTooLarge")


class WatchError(KubeError):
    """A watch stream sent an ERROR event (other than 410) or an unreadable line."""

    def __init__(self, message: str, *, status: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def code(self) -> int:
        code = (self.status or {}).get("code")
        return code if isinstance(code, int) else 0


_BY_CODE: dict[int, type[KubeApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 410: Gone, 422: Invalid, 429: TooManyRequests, 504: ServerTimeout,
}


def api_error(code: int, body: Any, *, method: str = "", url: str = "") -> KubeApiError:
    """The exception for an error answer; `body` is the parsed JSON (a Status) or raw text."""
    status = body if isinstance(body, dict) and body.get("kind") == "Status" else None
    if status is not None:
        message = str(status.get("message") or "")
        reason = str(status.get("reason") or "")
    else:
        message = body.strip()[:500] if isinstance(body, str) else ""
        reason = ""
    if code == 401 and not message:
        message = "Unauthorized"
    cls = _BY_CODE.get(code)
    if cls is Conflict and reason == "AlreadyExists":
        cls = AlreadyExists
    if cls is None:
        cls = ServerError if code >= 500 else KubeApiError
    return cls(message or f"HTTP {code}", code=code, reason=reason, method=method, url=url,
               status=status)
