"""API errors of the test server, rendered as Kubernetes `Status` objects.

The store raises `ApiError`; the HTTP layer turns it into the JSON body and HTTP code a real
API server would send, and the Python API lets it propagate to the test.
"""

from __future__ import annotations

from typing import Any

# Default reason per HTTP code (k8s.io/apimachinery/pkg/apis/meta/v1 StatusReason).
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A request the API server refuses; `status()` is the body it answers with."""

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: dict[str, Any] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.message, reason=self.reason, details=self.details)


def status_body(code: int, message: str, *, reason: str | None = None,
                details: dict[str, Any] | None = None, success: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if success else "Failure",
    }
    if not success:
        body["message"] = message
        body["reason"] = reason or REASONS.get(code, "Unknown")
    if details:
        body["details"] = details
    body["code"] = code
    return body


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    what = f"{plural}.{group}" if group else plural
    return ApiError(404, f'{what} "{name}" not found',
                    details={"name": name, "group": group, "kind": plural})


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    what = f"{plural}.{group}" if group else plural
    return ApiError(409, f'{what} "{name}" already exists', reason="AlreadyExists",
                    details={"name": name, "group": group, "kind": plural})


def conflict(plural: str, name: str, group: str = "") -> ApiError:
    what = f"{plural}.{group}" if group else plural
    return ApiError(409, f'Operation cannot be fulfilled on {what} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try "
                    "again", details={"name": name, "group": group, "kind": plural})


def expired(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")


def too_large_rv(requested: int, current: int) -> ApiError:
    # Real servers answer 504 with this cause; client-go relists when it sees it.
    return ApiError(504, f"Timeout: Too large resource version: {requested}, current: {current}",
                    reason="Timeout",
                    details={"causes": [{"reason": "ResourceVersionTooLarge",
                                         "message": "Too large resource version"}],
                             "retryAfterSeconds": 1})
