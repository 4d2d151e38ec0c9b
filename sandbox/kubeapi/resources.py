"""The resource types the test API server serves, and how their URLs look.

One `ResourceType` per REST resource. Everything the server knows about a kind (its group,
whether it is namespaced, which field selectors the real API server accepts for it) lives
here, so adding a kind is one table entry.
"""

from __future__ import annotations

from dataclasses import dataclass

# Field labels every kind accepts (apiserver: DefaultClusterScopedAttr / DefaultNamespaceScopedAttr).
_META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


@dataclass(frozen=True, slots=True)
class ResourceType:
    plural: str
    kind: str
    group: str  # "" for the core ("legacy") group
    version: str
    namespaced: bool
    singular: str
    short_names: tuple[str, ...] = ()
    # PUT/PATCH of the main resource keeps .status; only /status changes it (as the real server).
    status_subresource: bool = False
    # DELETE answers with the deleted object rather than a Status (pods and services do).
    return_deleted: bool = False
    extra_field_labels: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def field_labels(self) -> frozenset[str]:
        return _META_FIELDS | self.extra_field_labels

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """URL path of the collection (name None) or of one object."""
        parts = [self.prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        return "/".join(parts)


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("pods", "Pod", "", "v1", True, "pod", ("po",), status_subresource=True,
                 return_deleted=True,
                 extra_field_labels=frozenset({
                     "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                     "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                     "status.podIP", "status.nominatedNodeName"})),
    ResourceType("services", "Service", "", "v1", True, "service", ("svc",),
                 status_subresource=True, return_deleted=True,
                 extra_field_labels=frozenset({"spec.clusterIP", "spec.type"})),
    ResourceType("endpoints", "Endpoints", "", "v1", True, "endpoints", ("ep",)),
    ResourceType("nodes", "Node", "", "v1", False, "node", ("no",), status_subresource=True,
                 extra_field_labels=frozenset({"spec.unschedulable"})),
    ResourceType("namespaces", "Namespace", "", "v1", False, "namespace", ("ns",),
                 status_subresource=True, return_deleted=True,
                 extra_field_labels=frozenset({"status.phase"})),
    ResourceType("events", "Event", "", "v1", True, "event", ("ev",),
                 extra_field_labels=frozenset({
                     "involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                     "involvedObject.uid", "involvedObject.apiVersion",
                     "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                     "reportingComponent", "source", "type"})),
    ResourceType("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True,
                 "endpointslice"),
    ResourceType("leases", "Lease", "coordination.k8s.io", "v1", True, "lease"),
    ResourceType("networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True,
                 "networkpolicy", ("netpol",)),
)

BY_PLURAL: dict[str, ResourceType] = {r.plural: r for r in RESOURCES}
BY_KIND: dict[str, ResourceType] = {r.kind: r for r in RESOURCES}
# (group, version) -> plural -> type; what the URL router looks up.
BY_GROUP_VERSION: dict[tuple[str, str], dict[str, ResourceType]] = {}
for _r in RESOURCES:
    BY_GROUP_VERSION.setdefault((_r.group, _r.version), {})[_r.plural] = _r


def lookup(name: str) -> ResourceType:
    """Find a type by plural, singular, kind or short name ("pods", "pod", "Pod", "po")."""
    for r in RESOURCES:
        if name in (r.plural, r.singular, r.kind) or name in r.short_names:
            return r
    raise KeyError(f"unknown resource {name!r}")
