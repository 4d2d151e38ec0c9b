"""ovn-k8s's own small Kubernetes API server, for tests and a local sandbox.

It speaks the real REST list/watch protocol (chunked JSON-line watches, resourceVersion,
bookmarks, 410 Expired, merge/strategic/JSON patches, Status errors), so `ovn_k8s.kube` and the
official `kubernetes` client work against it unchanged. See docs/kubeapi.md.

Never imported by production code paths; it depends only on the standard library (plus
pyyaml, lazily, to write kubeconfigs and load seed objects).
"""

from sandbox.kubeapi.errors import ApiError
from sandbox.kubeapi.server import KubeApiServer, RequestRecord

__all__ = ["ApiError", "KubeApiServer", "RequestRecord"]
