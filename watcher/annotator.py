"""Pod annotation patches on the hot path: `annotate(namespace, name, annotations)`.

Every pod costs the watcher one PATCH, so this goes through `ovn_k8s.kube.lite` (http.client,
one keep-alive connection per annotation worker thread), ~4x less CPU per PATCH than
`requests` (docs/performance.md); settings with a proxy fall back to `rest.KubeClient`.
"""

from __future__ import annotations

from collections.abc import Mapping

from ovn_k8s.kube.lite import client_for
from ovn_k8s.kube.params import ConnectionParams, resource_path


class PodAnnotator:
    """The `Annotator` of watcher.pods over a Kubernetes API server; thread-safe."""

    def __init__(self, params: ConnectionParams, *, timeout: float = 30.0,
                 user_agent: str = "ovn-k8s") -> None:
        self.params = params
        self._client = client_for(params, timeout=timeout, user_agent=user_agent)

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        self._client.annotate(resource_path("pods", namespace=namespace, name=name), annotations)

    def close(self) -> None:
        self._client.close()
