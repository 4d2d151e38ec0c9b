"""The control-plane pieces our API server does not have: a scheduler and an endpoints
controller, in one daemon that talks to the API server on 127.0.0.1.

- Scheduler: a pod without spec.nodeName gets the Ready node with the fewest pods, ties taken
  in turn (round-robin), so replicas spread over the nodes.
- Endpoints: for every service with a selector, the Running+Ready pods it selects become one
  EndpointSlice `<service>-sandbox` (label kubernetes.io/service-name, what the watcher reads)
  and the core/v1 Endpoints `<service>` (what `kubectl get endpoints` shows). Slices and
  Endpoints of services that are gone are deleted.

    python -m sandbox.controllers STATE_DIR
"""

from __future__ import annotations

import itertools
import logging
import sys
from typing import Any

from sandbox import loop
from sandbox.api import Api, ApiError

LOG = logging.getLogger("sandbox-controllers")
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "ovn-k8s-sandbox"
SERVICE_NAME = "kubernetes.io/service-name"


def key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def selects(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def target_port(port: dict[str, Any], pods: list[dict[str, Any]]) -> int | None:
    target = port.get("targetPort", port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for pod in pods:
        for c in pod["spec"].get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("name") == target:
                    return int(p["containerPort"])
    return None


class Controllers:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.turn = itertools.count()

    # -- scheduler -------------------------------------------------------------------------------
    def schedule(self, pods: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
        names = sorted(n["metadata"]["name"] for n in nodes
                       if any(c.get("type") == "Ready" and c.get("status") == "True"
                              for c in (n.get("status") or {}).get("conditions") or []))
        if not names:
            return
        load = {n: 0 for n in names}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node in load:
                load[node] += 1
        for pod in pods:
            if pod["spec"].get("nodeName"):
                continue
            start = next(self.turn) % len(names)
            order = names[start:] + names[:start]
            node = min(order, key=lambda n: load[n])
            try:
                self.api.patch("pods", pod["metadata"]["name"], {"spec": {"nodeName": node}},
                               namespace=pod["metadata"]["namespace"])
            except ApiError as exc:
                LOG.warning("bind %s to %s: %s", key(pod), node, exc)
                continue
            load[node] += 1
            pod["spec"]["nodeName"] = node
            LOG.info("scheduled %s on %s", key(pod), node)

    # -- endpoints -------------------------------------------------------------------------------
    def desired(self, svc: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        meta = svc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        chosen = sorted((p for p in pods if p["metadata"]["namespace"] == ns and ready(p)
                         and selects(svc["spec"]["selector"], p)), key=lambda p: p["status"]["podIP"])
        ports = []
        for port in svc["spec"].get("ports") or []:
            tp = target_port(port, chosen)
            if tp is not None:
                ports.append({"name": port.get("name", ""), "port": tp,
                              "protocol": port.get("protocol", "TCP")})
        ref = [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": meta.get("uid", "")}]
        endpoints = [{"addresses": [p["status"]["podIP"]], "conditions": {"ready": True},
                      "nodeName": p["spec"].get("nodeName"),
                      "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"]}}
                     for p in chosen]
        slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": f"{name}-sandbox", "namespace": ns, "ownerReferences": ref,
                               "labels": {SERVICE_NAME: name, MANAGED_BY: MANAGER}},
                  "addressType": "IPv4", "endpoints": endpoints, "ports": ports}
        subsets = [{"addresses": [{"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName"),
                                   "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"]}}
                                  for p in chosen], "ports": ports}] if chosen and ports else []
        eps = {"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": name, "namespace": ns, "labels": {MANAGED_BY: MANAGER}},
               "subsets": subsets}
        return slice_, eps

    def write(self, resource: str, want: dict[str, Any], have: dict[str, Any] | None,
              fields: tuple[str, ...]) -> None:
        ns = want["metadata"]["namespace"]
        if have is None:
            self.api.create(resource, want, namespace=ns)
            LOG.info("created %s %s", resource, key(want))
            return
        if all(have.get(f) == want.get(f) for f in fields) and \
                (have["metadata"].get("labels") or {}) == want["metadata"]["labels"]:
            return
        want["metadata"]["resourceVersion"] = have["metadata"].get("resourceVersion")
        self.api.replace(resource, want, namespace=ns)
        LOG.info("updated %s %s", resource, key(want))

    def endpoints(self, services: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        slices = {key(s): s for s in self.api.list("endpointslices", labelSelector=f"{MANAGED_BY}={MANAGER}")}
        eps = {key(e): e for e in self.api.list("endpoints")}
        keep_slices, keep_eps = set(), set()
        for svc in services:
            if not (svc.get("spec") or {}).get("selector"):
                continue
            want_slice, want_eps = self.desired(svc, pods)
            keep_slices.add(key(want_slice))
            keep_eps.add(key(want_eps))
            self.write("endpointslices", want_slice, slices.get(key(want_slice)), ("endpoints", "ports"))
            self.write("endpoints", want_eps, eps.get(key(want_eps)), ("subsets",))
        for k, s in slices.items():
            if k not in keep_slices:
                self.api.delete("endpointslices", s["metadata"]["name"], namespace=s["metadata"]["namespace"])
                LOG.info("deleted endpointslices %s", k)
        for k, e in eps.items():
            managed = (e["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGER
            if managed and k not in keep_eps:
                self.api.delete("endpoints", e["metadata"]["name"], namespace=e["metadata"]["namespace"])
                LOG.info("deleted endpoints %s", k)

    def sync_once(self) -> None:
        pods = self.api.list("pods")
        self.schedule(pods, self.api.list("nodes"))
        self.endpoints(self.api.list("services"), pods)


def main(argv: list[str]) -> int:
    return loop.main(argv, "scheduler and endpoints controller", lambda state: Controllers(state.api()).sync_once)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
