"""Credentials that kubectl gets from a program: kubeconfig `exec` plugins and `auth-provider`
entries (EKS, GKE, OIDC, Azure kubeconfigs).

These are the one place where we use the official client's kubeconfig loader: it already runs
exec plugins with the ExecCredential protocol (`KUBERNETES_EXEC_INFO`, `client.authentication.k8s.io`
v1 and v1beta1, `expirationTimestamp`), and speaks OIDC refresh and the cloud providers' token
helpers; writing that again would be a second, worse copy. Only the credentials come from it:
the requests still go through our own transports (`rest`, `lite`), which ask `token()` before
each request. The `kubernetes` package is imported only here, and only when a kubeconfig
needs it, so token and certificate users (and the CNI plugin) never pay for it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from ovn_k8s.kube.errors import KubeConfigError

LOG = logging.getLogger(__name__)


class _CaptureErrors(logging.Handler):
    """The official loader logs exec failures instead of raising; keep the first message so
    we can raise it as a one-line error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass(frozen=True, slots=True)
class PluginCredentials:
    """What the plugin gave at start-up: a token provider and/or a client certificate."""

    provider: KubeconfigCredentials | None
    client_cert: str | None
    client_key: str | None


class KubeconfigCredentials:
    """A bearer token from an exec plugin or auth provider, refreshed when it expires.

    `token()` is cheap while the token is valid (the loader compares its expiry); once it has
    expired the loader runs the plugin again (or refreshes the OIDC token) under a lock, so
    concurrent requests run it once.
    """

    def __init__(self, configuration: Any, what: str) -> None:
        self._cfg = configuration
        self._what = what
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KubeconfigCredentials({self._what})"

    def token(self) -> str | None:
        with self._lock:
            hook = self._cfg.refresh_api_key_hook
            if hook is not None:
                capture = _CaptureErrors()
                logging.getLogger().addHandler(capture)
                try:
                    hook(self._cfg)
                except Exception as exc:  # noqa: BLE001 -- a plugin can fail any way
                    raise KubeConfigError(f"{self._what}: refreshing the token failed: "
                                          f"{exc}") from None
                finally:
                    logging.getLogger().removeHandler(capture)
            value = self._cfg.api_key.get("BearerToken") or self._cfg.api_key.get("authorization")
        if not value:
            return None
        return value[len("Bearer "):] if value.startswith("Bearer ") else value


def load(path: str, context: str, user_name: str, kind: str) -> PluginCredentials:
    """Run the kubeconfig's exec plugin or auth provider for `context` through the official
    loader; raise KubeConfigError with the plugin's own message when it gives nothing."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise KubeConfigError(f"kubeconfig {path}: user {user_name!r} uses {kind}, which needs "
                              "the 'kubernetes' Python package (pip install kubernetes)") from None
    what = f"kubeconfig {path}: user {user_name!r} ({kind})"
    cfg = client.Configuration()
    capture = _CaptureErrors()
    root = logging.getLogger()
    root.addHandler(capture)
    try:
        config.load_kube_config(config_file=path, context=context, client_configuration=cfg,
                                persist_config=False)
    except config.ConfigException as exc:
        raise KubeConfigError(f"{what}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 -- auth providers raise their own types
        raise KubeConfigError(f"{what}: {type(exc).__name__}: {exc}") from None
    finally:
        root.removeHandler(capture)
    provider = KubeconfigCredentials(cfg, what)
    has_token = bool(cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization"))
    # An exec plugin may answer with a client certificate instead of a token; the loader wrote
    # it to private temporary files.
    cert, key = cfg.cert_file or None, cfg.key_file or None
    if not has_token and not (cert and key):
        detail = capture.messages[0] if capture.messages else "it returned no credentials"
        raise KubeConfigError(f"{what}: {' '.join(detail.split())}")
    LOG.info("kube: credentials from %s", what)
    return PluginCredentials(provider if has_token else None, cert, key)
