"""The sandbox's control-plane pieces against our in-process API server (no root, no OVN):
the scheduler, the endpoints controller, apply/delete of manifests, the state file."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import manifests
from sandbox.api import Api
from sandbox.cluster import SandboxError
from sandbox.controllers import MANAGED_BY, Controllers
from sandbox.kubeapi import KubeApiServer
from sandbox.state import DEFAULT_DIR, State, prefix_for


@pytest.fixture
def api() -> Iterator[Api]:
    with KubeApiServer(token="t") as server:
        server.create("namespaces", {"metadata": {"name": "default"}})
        yield Api(server.url, "t")


def node(name: str, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod(name: str, labels: dict[str, str] | None = None, node_name: str | None = None,
        ip: str | None = None, port_name: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c"}
    if port_name:
        container["ports"] = [{"name": port_name, "containerPort": 9000}]
    spec: dict[str, Any] = {"containers": [container]}
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {}}, "spec": spec}


def run_pod(api: Api, name: str, ip: str) -> None:
    api.patch("pods", name, {"status": {"phase": "Running", "podIP": ip,
                                        "conditions": [{"type": "Ready", "status": "True"}]}},
              namespace="default", subresource="status")


def test_scheduler_spreads_pods_over_ready_nodes_only(api: Api) -> None:
    for n in (node("node1"), node("node2"), node("node3", ready=False)):
        api.create("nodes", n)
    api.create("pods", pod("bound", node_name="node1"), "default")
    for i in range(3):
        api.create("pods", pod(f"p{i}"), "default")
    Controllers(api).sync_once()
    placed = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in api.list("pods", "default")}
    assert set(placed.values()) == {"node1", "node2"}
    assert sorted(placed.values()).count("node1") == 2 and sorted(placed.values()).count("node2") == 2


def test_endpoints_follow_ready_selected_pods_and_go_with_the_service(api: Api) -> None:
    api.create("services", {"metadata": {"name": "s", "namespace": "default"},
                            "spec": {"selector": {"app": "a"},
                                     "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}, "default")
    for name, labels, ip in (("a1", {"app": "a"}, "10.244.1.5"), ("a2", {"app": "a"}, "10.244.2.5"),
                             ("b1", {"app": "b"}, "10.244.1.6"), ("a3", {"app": "a"}, None)):
        api.create("pods", pod(name, labels, node_name="node1", port_name="web"), "default")
        if ip:
            run_pod(api, name, ip)
    ctl = Controllers(api)
    ctl.sync_once()
    slices = api.list("endpointslices", "default")
    assert len(slices) == 1
    sl = slices[0]
    assert sl["metadata"]["labels"] == {"kubernetes.io/service-name": "s", MANAGED_BY: "ovn-k8s-sandbox"}
    assert [e["addresses"] for e in sl["endpoints"]] == [["10.244.1.5"], ["10.244.2.5"]]
    assert sl["ports"] == [{"name": "http", "port": 9000, "protocol": "TCP"}]   # named targetPort resolved
    eps = api.get("endpoints", "s", "default")
    assert [a["ip"] for a in eps["subsets"][0]["addresses"]] == ["10.244.1.5", "10.244.2.5"]
    rv = sl["metadata"]["resourceVersion"]
    ctl.sync_once()   # nothing changed: no write
    assert api.list("endpointslices", "default")[0]["metadata"]["resourceVersion"] == rv
    api.delete("pods", "a1", "default")
    ctl.sync_once()
    assert [e["addresses"] for e in api.list("endpointslices", "default")[0]["endpoints"]] == [["10.244.2.5"]]
    api.delete("services", "s", "default")
    ctl.sync_once()
    assert api.list("endpointslices", "default") == []
    assert api.get("endpoints", "s", "default") is None


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
          "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                                               "spec": {"containers": [{"name": "w"}]}}}}


def test_deployment_lite_scales_up_and_down_and_deletes(api: Api) -> None:
    quiet = lambda _s: None  # noqa: E731
    keys = manifests.apply_one(api, {**DEPLOY}, out=quiet)
    assert keys == ["default/web-0", "default/web-1", "default/web-2"]
    pods = api.list("pods", "default")
    assert all(p["metadata"]["labels"] == {"app": "web", manifests.DEPLOYMENT_LABEL: "web"} for p in pods)
    manifests.apply_one(api, {**DEPLOY, "spec": {**DEPLOY["spec"], "replicas": 1}}, out=quiet)
    assert [p["metadata"]["name"] for p in api.list("pods", "default")] == ["web-0"]
    manifests.delete_object(api, "deployments", "web", "default", out=quiet)
    assert api.list("pods", "default") == []


def test_service_reapply_keeps_allocated_cluster_ip_and_node_port(api: Api) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"type": "NodePort", "selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    manifests.apply_one(api, {**svc, "metadata": {"name": "s"}}, out=lambda _s: None)
    first = api.get("services", "s", "default")
    svc2 = {**svc, "metadata": {"name": "s"}, "spec": {**svc["spec"], "selector": {"app": "b"}}}
    manifests.apply_one(api, svc2, out=lambda _s: None)
    second = api.get("services", "s", "default")
    assert second["spec"]["selector"] == {"app": "b"}
    assert second["spec"]["clusterIP"] == first["spec"]["clusterIP"]
    assert second["spec"]["ports"][0]["nodePort"] == first["spec"]["ports"][0]["nodePort"]


def test_load_rejects_unsupported_kinds_and_nameless_objects(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("kind: ConfigMap\nmetadata: {name: x}\n")
    with pytest.raises(SandboxError, match="unsupported kind 'ConfigMap'"):
        manifests.load(str(f))
    f.write_text("kind: Pod\nmetadata: {}\n")
    with pytest.raises(SandboxError, match="without metadata.name"):
        manifests.load(str(f))
    f.write_text("kind: List\nitems:\n- {kind: Namespace, metadata: {name: a}}\n---\nkind: Pod\nmetadata: {name: p}\n")
    assert [o["kind"] for o in manifests.load(str(f))] == ["Namespace", "Pod"]


def test_state_round_trip_and_prefixes(tmp_path: Path) -> None:
    assert prefix_for(DEFAULT_DIR) == "sandbox"
    assert prefix_for("/tmp/a") != prefix_for("/tmp/b")
    state = State(dir=str(tmp_path), prefix="sbx", nodes=["node1"], api_port=1234, token="t")
    state.save()
    loaded = State.load(str(tmp_path))
    assert loaded == state
    assert loaded.api_url == "https://127.0.0.1:1234"
    assert State.load(str(tmp_path / "none")) is None


def test_api_client_refuses_non_loopback() -> None:
    with pytest.raises(ValueError):
        Api("http://192.0.2.1:6443")


def test_control_plane_choice_follows_the_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """real when the envtest assets are complete, embedded otherwise; asking for real without
    them is one error naming what is missing, before anything is built."""
    from sandbox import cluster

    assets = tmp_path / "assets"
    assets.mkdir()
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    assert cluster.default_control_plane() == "embedded"
    directory = tmp_path / "sb"
    with pytest.raises(SandboxError, match=r"no real control plane: .*lacks etcd, kube-apiserver.*embedded"):
        cluster.up(str(directory), control_plane="real")
    assert not directory.exists()
    with pytest.raises(SandboxError, match="--control-plane must be one of real, embedded"):
        cluster.up(str(directory), control_plane="kind")
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        (assets / name).write_text("#!/bin/sh\n")
        (assets / name).chmod(0o755)
    assert cluster.default_control_plane() == "real"


def test_agent_registers_its_node_and_keeps_its_lease(api: Api, tmp_path: Path) -> None:
    """The kubelet duties: a Ready Node with capacity and the node's address, a Lease in
    kube-node-lease renewed on schedule; a restarted agent posts the status of the Node it finds."""
    from sandbox import agent

    api.create("namespaces", {"metadata": {"name": agent.LEASE_NAMESPACE}})
    state = State(dir=str(tmp_path), prefix="sbtest", nodes=["node1", "node2"], control_plane="real",
                  encap_ips={"node1": "172.30.0.11", "node2": "172.30.0.12"})
    first = agent.Agent(state, "node2", api)
    first.sync_once()
    node = api.get("nodes", "node2")
    assert node is not None and node["spec"]["podCIDR"] == "10.244.2.0/24"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node2"
    assert {"type": "InternalIP", "address": "172.30.0.12"} in node["status"]["addresses"]
    assert node["status"]["allocatable"]["pods"] == "110"
    (ready,) = node["status"]["conditions"]
    assert (ready["type"], ready["status"]) == ("Ready", "True")
    lease = api.get("leases", "node2", agent.LEASE_NAMESPACE)
    assert lease is not None and lease["spec"]["holderIdentity"] == "node2"
    assert lease["spec"]["leaseDurationSeconds"] == agent.LEASE_SECONDS
    renewed = lease["spec"]["renewTime"]
    first.sync_once()                    # within RENEW_EVERY: no renewal
    assert api.get("leases", "node2", agent.LEASE_NAMESPACE)["spec"]["renewTime"] == renewed
    first.renewed_at -= agent.RENEW_EVERY
    first.status_at -= agent.STATUS_EVERY
    time.sleep(0.01)
    first.sync_once()
    assert api.get("leases", "node2", agent.LEASE_NAMESPACE)["spec"]["renewTime"] > renewed
    restarted = agent.Agent(state, "node2", api)
    restarted.sync_once()                # the Node exists: its status is posted, no error
    assert restarted.registered and len(api.list("nodes")) == 1


def test_real_apply_fills_in_image_and_selector_and_waits_for_rollout() -> None:
    dep = {"kind": "Deployment", "metadata": {"name": "app"},
           "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "a"}},
                                                "spec": {"containers": [{"name": "web"}]}}}}
    manifests._fill_in(dep)
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "a"}}
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == manifests.PLACEHOLDER_IMAGE
    pod = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "mine"}]}}
    manifests._fill_in(pod)
    assert pod["spec"]["containers"][0]["image"] == "mine"
    dep["metadata"]["generation"] = 2
    dep["status"] = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 2}
    assert not manifests.deployment_ready(dep)      # an old pod is still there
    dep["status"]["replicas"] = 2
    assert manifests.deployment_ready(dep)
    dep["status"]["observedGeneration"] = 1
    assert not manifests.deployment_ready(dep)      # the controller has not seen the change yet
