"""apply / delete for the sandbox: Pods, Deployments, Services, Namespaces.

On the real control plane every object goes to kube-apiserver as it is (a Deployment is the
controller manager's: ReplicaSet, pods with generated names), with two conveniences for the
sandbox's short manifests: a container without `image` gets a placeholder (the agent runs
the same small HTTP server for any image) and a Deployment without `selector` selects its
template's labels.

Our embedded API server serves pods, services and namespaces only; there a Deployment is
expanded here: it becomes `replicas` pods named <deployment>-<i> with the template's labels and
spec, labelled sandbox.ovn-k8s/deployment=<name>. Applying it again with another count adds or
removes pods (the highest indexes go first); deleting it deletes its pods.
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
PLACEHOLDER_IMAGE = "sandbox.ovn-k8s/podserver"   # what a container without an image runs (real)
SANDBOX_IMAGES = "sandbox.ovn-k8s/"               # the sandbox's own images (sandbox.images)
DEPLOYMENT_KEY = "deployment:"                    # wait_ready keys of Deployments (real)


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


def _state(directory: str) -> State:
    state = State.load(directory)
    if state is None:
        raise SandboxError(f"no sandbox in {directory} (start one with: ovn-k8s-sandbox up)")
    return state


def _api(directory: str) -> Api:
    return _state(directory).api()


def _fill_in(obj: dict[str, Any]) -> None:
    """What kube-apiserver requires and the sandbox's short manifests leave out."""
    spec = obj.setdefault("spec", {})
    if obj["kind"] == "Deployment":
        template = spec.setdefault("template", {})
        labels = (template.get("metadata") or {}).get("labels") or {}
        spec.setdefault("selector", {"matchLabels": dict(labels)})
        spec = template.setdefault("spec", {})
    if obj["kind"] in ("Deployment", "Pod"):
        containers = spec.setdefault("containers", [{"name": "web"}])
        for c in containers:
            c.setdefault("image", PLACEHOLDER_IMAGE)
            if c["image"].startswith(SANDBOX_IMAGES):
                # Real nodes: imported into containerd, never pulled (no registry); the
                # podserver image listens on $PORT, the first containerPort.
                c.setdefault("imagePullPolicy", "Never")
                port = next((p["containerPort"] for p in c.get("ports") or [] if p.get("containerPort")), None)
                env = c.setdefault("env", [])
                if port and not any(e.get("name") == "PORT" for e in env):
                    env.append({"name": "PORT", "value": str(port)})


def _apply_real(api: Api, obj: dict[str, Any], out: Any) -> list[str]:
    """Create, or update what the file says (kube-apiserver keeps what it allocated)."""
    kind, meta = obj["kind"], obj["metadata"]
    name, ns = meta["name"], meta.get("namespace")
    resource = KINDS[kind]
    _fill_in(obj)
    obj.setdefault("apiVersion", "apps/v1" if kind == "Deployment" else "v1")
    have = api.get(resource, name, ns)
    group = "deployment.apps" if kind == "Deployment" else kind.lower()
    if have is None:
        api.create(resource, obj, ns)
        out(f"{group}/{name} created")
    elif kind in ("Service", "Deployment"):
        # A Service keeps its ClusterIP and NodePorts: kube-apiserver copies what it allocated
        # into an update that leaves them out (as for kubectl apply).
        new = {**obj, "metadata": {**meta, "resourceVersion": have["metadata"]["resourceVersion"]}}
        api.replace(resource, new, ns)
        out(f"{group}/{name} configured")
    else:
        patch = {"metadata": {k: meta[k] for k in ("labels", "annotations") if k in meta}}
        api.patch(resource, name, patch, ns)
        out(f"{group}/{name} configured")
    if kind == "Deployment":
        return [f"{DEPLOYMENT_KEY}{ns}/{name}"]
    return [f"{ns}/{name}"] if kind == "Pod" else []


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


def apply_one(api: Api, obj: dict[str, Any], out: Any = print, real: bool = False) -> list[str]:
    """Create or update one object; returns what wait_ready() waits for: the keys of the pods
    it made or kept (real: a Deployment's key, prefixed DEPLOYMENT_KEY)."""
    kind = obj["kind"]
    meta = obj["metadata"]
    name = meta["name"]
    ns = None if kind == "Namespace" else meta.setdefault("namespace", "default")
    if real:
        return _apply_real(api, obj, out)
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


def deployment_ready(dep: dict[str, Any] | None) -> bool:
    """Rolled out: the controller saw the last change, and exactly `replicas` pods, all of the
    current template, are ready (none of an older one left)."""
    if dep is None:
        return False
    want = (dep.get("spec") or {}).get("replicas", 1)
    st = dep.get("status") or {}
    return (st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1)
            and st.get("replicas", 0) == want and st.get("updatedReplicas", 0) == want
            and st.get("readyReplicas", 0) == want)


def wait_ready(api: Api, keys: list[str], timeout: float = 60) -> list[str]:
    """Wait until every pod is Running and Ready (every Deployment rolled out); returns those
    that are not at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for key in keys:
            if key.startswith(DEPLOYMENT_KEY):
                ns, name = key[len(DEPLOYMENT_KEY):].split("/", 1)
                if not deployment_ready(api.get("deployments", name, ns)):
                    missing.append(key)
                continue
            ns, name = key.split("/", 1)
            pod = api.get("pods", name, ns)
            conds = ((pod or {}).get("status") or {}).get("conditions") or []
            if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
                missing.append(key)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)


def apply_files(directory: str, paths: list[str], wait: bool = False) -> int:
    state = _state(directory)
    api = state.api()
    keys: list[str] = []
    for path in paths:
        for obj in load(path):
            try:
                keys += apply_one(api, obj, real=state.real)
            except ApiError as exc:
                print(f"ovn-k8s-sandbox: {obj['kind']} {obj['metadata']['name']}: {exc}", file=sys.stderr)
                return 1
    if wait and keys:
        missing = wait_ready(api, keys)
        if missing:
            print(f"ovn-k8s-sandbox: not ready: {', '.join(missing)}", file=sys.stderr)
            return 1
        print(f"{len(keys)} pod(s) or deployment(s) ready")
    return 0


def delete_object(api: Api, resource: str, name: str, ns: str, out: Any = print, real: bool = False) -> bool:
    if real:
        # Pods end as a kubelet ends them (the agent confirms); a Deployment's ReplicaSet and
        # pods go with it (garbage collector).
        options = {"propagationPolicy": "Background"}
        if api.delete(resource, name, None if resource == "namespaces" else ns, options):
            out(f"{'deployment.apps' if resource == 'deployments' else resource[:-1]}/{name} deleted")
            return True
        out(f"{resource[:-1]}/{name} not found")
        return False
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
    state = _state(directory)
    api = state.api()
    rc = 0
    for path in paths:
        for obj in load(path):
            meta = obj["metadata"]
            if not delete_object(api, KINDS[obj["kind"]], meta["name"], meta.get("namespace", "default"),
                                 real=state.real):
                rc = 1
    return rc


def delete_named(directory: str, kind: str, name: str, namespace: str) -> int:
    resource = RESOURCES.get(kind.lower())
    if resource is None:
        print(f"ovn-k8s-sandbox: unknown kind {kind!r} (pod, deployment, service, namespace)", file=sys.stderr)
        return 2
    state = _state(directory)
    return 0 if delete_object(state.api(), resource, name, namespace, real=state.real) else 1
