"""etc/kubernetes/rbac.yaml: it parses, and it grants the watcher and the CNI plugin exactly
the verbs their code uses (the conformance suite runs both with these roles' tokens against a
real kube-apiserver, so a verb missing here fails there; a verb added here fails here)."""

from __future__ import annotations

from pathlib import Path

import yaml

RBAC = Path(__file__).resolve().parents[2] / "etc" / "kubernetes" / "rbac.yaml"

WATCHER = {
    ("", "pods"): {"list", "watch", "patch"},          # informer; the `ovn` annotation
    ("", "services"): {"list", "watch"},
    ("", "endpoints"): {"list", "watch"},              # when EndpointSlices are not served
    ("discovery.k8s.io", "endpointslices"): {"list", "watch"},
    ("", "events"): {"create"},                        # watcher/events.py
    ("networking.k8s.io", "networkpolicies"): {"list", "watch"},
    ("", "namespaces"): {"list", "watch"},             # policies' namespace selectors
    ("", "nodes"): {"list", "watch", "patch"},         # --allocate-node-subnets (watcher/nodes.py)
    ("coordination.k8s.io", "leases"): {"get", "create", "update"},  # --leader-elect
}
CNI = {("", "pods"): {"get", "watch"}}                 # one GET, then a watch of that pod


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(RBAC.read_text(encoding="utf-8")) if d]


def _by(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _docs() if d["kind"] == kind}


def _grants(role: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule  # no resourceNames etc.
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_it_parses_into_the_six_objects() -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in _docs())
    assert kinds == [(k, n) for k in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount")
                     for n in ("ovn-k8s-cni", "ovn-k8s-watcher")]
    for doc in _docs():
        assert doc["apiVersion"] == ("v1" if doc["kind"] == "ServiceAccount"
                                     else "rbac.authorization.k8s.io/v1")


def test_the_watcher_and_the_plugin_get_exactly_their_verbs() -> None:
    roles = _by("ClusterRole")
    assert _grants(roles["ovn-k8s-watcher"]) == WATCHER
    assert _grants(roles["ovn-k8s-cni"]) == CNI
    for role in roles.values():  # never a wildcard
        assert not any("*" in v for r in role["rules"] for v in r.values())


def test_each_binding_ties_its_service_account_to_its_role() -> None:
    accounts = _by("ServiceAccount")
    for name, binding in _by("ClusterRoleBinding").items():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "ClusterRole", "name": name}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name,
                                        "namespace": accounts[name]["metadata"]["namespace"]}]
