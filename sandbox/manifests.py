"""apply / delete for the sandbox: Pods, Deployments-lite, Services, Namespaces.

Our API server serves pods, services and namespaces itself; a Deployment is expanded here: it
becomes `replicas` pods named <deployment>-<i> with the template's labels and spec, labelled
sandbox.ovn-k8s/deployment=<name>. Applying it again with another count adds or removes pods
(the highest indexes go first); deleting it deletes its pods.
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import yaml

from sandbox.api import Api, ApiError
from sandbox.cluster import SandboxError
from sandbox.state import State

DEPLOYMENT_LABEL = "sandbox.ovn-k8s/deployment"
RESOURCES = {"pod": "pods", "pods": "pods", "po": "pods", "service": "services", "services": "services",
             "svc": "services", "namespace": "namespaces", "namespaces": "namespaces", "ns": "namespaces",
             "deployment": "deployments", "deployments": "deployments", "deploy": "deployments"}
KINDS = {"Pod": "pods", "Service": "services", "Namespace": "namespaces", "Deployment": "deployments"}


def load(path: str) -> list[dict[str, Any]]:
    if path == "-":
        docs = list(yaml.safe_load_all(sys.stdin))
    else:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
    objs: list[dict[str, Any]] = []
    for doc in docs:
        if not doc:
            continue
        if not isinstance(doc, dict):
            raise SandboxError(f"{path}: expected objects, got {type(doc).__name__}")
        if str(doc.get("kind", "")).endswith("List"):
            objs.extend(doc.get("items") or [])
        else:
            objs.append(doc)
    for obj in objs:
        if obj.get("kind") not in KINDS:
            raise SandboxError(f"{path}: unsupported kind {obj.get('kind')!r} "
                               f"(supported: {', '.join(KINDS)})")
        if not (obj.get("metadata") or {}).get("name"):
            raise SandboxError(f"{path}: a {obj['kind']} without metadata.name")
    return objs


def _api(directory: str) -> Api:
    state = State.load(directory)
    if state is None:
        raise SandboxError(f"no sandbox in {directory} (start one with: ovn-k8s-sandbox up)")
    return state.api()


def deployment_pods(dep: dict[str, Any]) -> list[dict[str, Any]]:
    meta = dep["metadata"]
    spec = dep.get("spec") or {}
    template = spec.get("template") or {}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels[DEPLOYMENT_LABEL] = meta["name"]
    pods = []
    for i in range(int(spec.get("replicas", 1))):
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"{meta['name']}-{i}", "namespace": meta.get("namespace", "default"),
                                  "labels": labels},
                     "spec": copy.deepcopy(template.get("spec") or {"containers": [{"name": "web"}]})})
    return pods


def apply_one(api: Api, obj: dict[str, Any], out: Any = print) -> list[str]:
    """Create or update one object; returns the keys of the pods it made or kept."""
    kind = obj["kind"]
    meta = obj["metadata"]
    name = meta["name"]
    ns = None if kind == "Namespace" else meta.setdefault("namespace", "default")
    if kind == "Deployment":
        want = deployment_pods(obj)
        names = {p["metadata"]["name"] for p in want}
        current = api.list("pods", ns, labelSelector=f"{DEPLOYMENT_LABEL}={name}")
        for pod in want:
            apply_one(api, pod, out=lambda _s: None)
        removed = [p["metadata"]["name"] for p in current if p["metadata"]["name"] not in names]
        for pname in removed:
            api.delete("pods", pname, ns)
        out(f"deployment.apps/{name} applied ({len(want)} replicas"
            + (f", removed {', '.join(sorted(removed))})" if removed else ")"))
        return [f"{ns}/{n}" for n in sorted(names)]
    resource = KINDS[kind]
    obj.setdefault("apiVersion", "v1")
    have = api.get(resource, name, ns)
    if have is None:
        api.create(resource, obj, ns)
        out(f"{kind.lower()}/{name} created")
    elif kind == "Service":
        spec = dict(obj.get("spec") or {})
        # Keep what the server allocated unless the file says otherwise (like kubectl apply).
        spec.setdefault("clusterIP", have["spec"].get("clusterIP"))
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p for p in have["spec"].get("ports") or []}
        ports = []
        for p in spec.get("ports") or []:
            p = dict(p)
            prev = old_ports.get((p.get("port"), p.get("protocol", "TCP")))
            node_type = spec.get("type") in ("NodePort", "LoadBalancer")
            if prev and prev.get("nodePort") and "nodePort" not in p and node_type:
                p["nodePort"] = prev["nodePort"]
            ports.append(p)
        spec["ports"] = ports
        new = {**obj, "spec": spec, "metadata": {**meta, "resourceVersion": have["metadata"]["resourceVersion"]}}
        api.replace(resource, new, ns)
        out(f"service/{name} configured")
    else:
        # Pods and namespaces: only labels and annotations may change.
        patch = {"metadata": {k: meta[k] for k in ("labels", "annotations") if k in meta}}
        api.patch(resource, name, patch, ns)
        out(f"{kind.lower()}/{name} configured")
    return [f"{ns}/{name}"] if kind == "Pod" else []


def wait_ready(api: Api, keys: list[str], timeout: float = 60) -> list[str]:
    """Wait until every pod is Running and Ready; returns those that are not at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for key in keys:
            ns, name = key.split("/", 1)
            pod = api.get("pods", name, ns)
            conds = ((pod or {}).get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                missing.append(key)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)


def apply_files(directory: str, paths: list[str], wait: bool = False) -> int:
    api = _api(directory)
    keys: list[str] = []
    for path in paths:
        for obj in load(path):
            try:
                keys += apply_one(api, obj)
            except ApiError as exc:
                print(f"ovn-k8s-sandbox: {obj['kind']} {obj['metadata']['name']}: {exc}", file=sys.stderr)
                return 1
    if wait and keys:
        missing = wait_ready(api, keys)
        if missing:
            print(f"ovn-k8s-sandbox: not ready: {', '.join(missing)}", file=sys.stderr)
            return 1
        print(f"{len(keys)} pod(s) ready")
    return 0


def delete_object(api: Api, resource: str, name: str, ns: str, out: Any = print) -> bool:
    if resource == "deployments":
        pods = api.list("pods", ns, labelSelector=f"{DEPLOYMENT_LABEL}={name}")
        for pod in pods:
            api.delete("pods", pod["metadata"]["name"], ns)
        out(f"deployment.apps/{name} deleted ({len(pods)} pods)")
        return bool(pods)
    if api.delete(resource, name, None if resource == "namespaces" else ns):
        out(f"{resource[:-1]}/{name} deleted")
        return True
    out(f"{resource[:-1]}/{name} not found")
    return False


def delete_files(directory: str, paths: list[str]) -> int:
    api = _api(directory)
    rc = 0
    for path in paths:
        for obj in load(path):
            meta = obj["metadata"]
            if not delete_object(api, KINDS[obj["kind"]], meta["name"], meta.get("namespace", "default")):
                rc = 1
    return rc


def delete_named(directory: str, kind: str, name: str, namespace: str) -> int:
    resource = RESOURCES.get(kind.lower())
    if resource is None:
        print(f"ovn-k8s-sandbox: unknown kind {kind!r} (pod, deployment, service, namespace)", file=sys.stderr)
        return 2
    return 0 if delete_object(_api(directory), resource, name, namespace) else 1
