"""ovn-k8s-sandbox end to end: the demo on both control planes (embedded, and real: etcd,
kube-apiserver, kube-controller-manager, kube-scheduler), kubectl and the kubelet-like agents on
the real one, and the API-driven flow (apply a service, scale pods up and down, delete) checked
with real traffic each time. Each test has its own state directory (--state-dir), so a user's
sandbox is never touched, and the sandbox is removed even when the test fails; afterwards no
namespace, daemon or file of it may be left. The real-control-plane runs are marked realk8s:
without assets they are reported NOT RUN (tests/real_control_plane.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovn_k8s.naming import NODE_SUBNET_ANNOTATION, NODE_UID_KEY
from sandbox.lab.proc import alive, read_pid
from sandbox.state import State, node_subnet, prefix_for

pytestmark = pytest.mark.e2e
SANDBOX = os.path.join(os.path.dirname(sys.executable), "ovn-k8s-sandbox")


def sandbox(directory: str, *args: str, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SANDBOX, "--state-dir", directory, *args], capture_output=True, text=True,
                          input=stdin, timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]


def pids_of(directory: str) -> list[int]:
    return [pid for p in Path(directory).rglob("*.pid") if (pid := read_pid(str(p))) is not None]


def assert_gone(directory: str, pids: list[int]) -> None:
    prefix = prefix_for(directory)
    assert namespaces(prefix) == []
    assert not os.path.exists(directory)
    assert not os.path.exists(f"/run/ovn-k8s-lab/{prefix}")
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in pids if alive(p)] == []


@pytest.fixture
def state_dir() -> Iterator[str]:
    directory = f"/tmp/ok8s-sandbox-test-{uuid.uuid4().hex[:8]}"
    try:
        yield directory
    finally:
        sandbox(directory, "down")


def curl(netns: str, url: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", netns, "curl", "-s", "-m", "2", url], capture_output=True,
                          text=True, timeout=10, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def answers(netns: str, url: str, tries: int = 40, want: set[str] | None = None) -> set[str]:
    seen: set[str] = set()
    for _ in range(tries):
        got = curl(netns, url)
        seen.add(got or "<no answer>")
        if want is not None and want <= seen:
            break
    return seen


def eventually(check, timeout: float = 15, what: str = ""):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.1)


REAL_DAEMONS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@pytest.mark.parametrize("control_plane", ["embedded", pytest.param("real", marks=pytest.mark.realk8s)])
def test_demo_passes_and_leaves_nothing(state_dir: str, control_plane: str) -> None:
    # The agent's kubelet duties are what this test checks: real nodes (kubelet + containerd,
    # the default when they are installed) are tests/e2e/test_sandbox_real_nodes.py's.
    kind = ["--nodes-kind", "agent"] if control_plane == "real" else []
    proc = subprocess.Popen([SANDBOX, "--state-dir", state_dir, "demo", "--keep", "--control-plane", control_plane,
                             *kind],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert f"deploying on the {control_plane} control plane" in out
    for check in ("pod-to-pod across nodes", "pod to service VIP", "node to pod: node2", "node to pod: node1",
                  r"-> 192\.0\.2\.10:3\d{4} on node1 \(own NIC\)", r"-> 192\.0\.2\.20:3\d{4} on node2 \(one NIC shared",
                  "node2's own server on the shared NIC", "pod to outside through SNAT",
                  "deny-all in demo: .* refused", "deny-all: node\\d still reaches its own pod",
                  "allow from namespace demo: .* answers again",
                  "allow from namespace demo: node\\d's management port .* still refused"):
        assert any(line.strip().startswith("PASS") and re.search(check, line) for line in out.splitlines()), \
            f"no PASS for {check}:\n{out}"
    assert "FAIL " not in out
    assert "PASS: 12 passed, 0 failed" in out
    # --keep left it up: the demo's objects are there and the daemons run.
    status = ok(sandbox(state_dir, "status"))
    assert "web-nodeport" in status and "STOPPED" not in status
    state = State.load(state_dir)
    assert state is not None and state.control_plane == control_plane
    # The watcher allocates node subnets: minion-init's switches kept theirs, annotated on the
    # Nodes, and each switch is marked with its Node's uid (what a Node's deletion cleans by).
    for i, node in enumerate(sorted(state.api().list("nodes"), key=lambda n: n["metadata"]["name"]), start=1):
        meta = node["metadata"]
        assert meta.get("annotations", {}).get(NODE_SUBNET_ANNOTATION) == node_subnet(i), meta
        mark = subprocess.run(["ovn-nbctl", f"--db={state.nb}", "get", "Logical_Switch", meta["name"],
                               f'external_ids:"{NODE_UID_KEY}"'], capture_output=True, text=True, check=True)
        assert mark.stdout.strip().strip('"') == meta["uid"]
    daemons = {p.name[:-4] for p in Path(state.daemon_dir).glob("*.pid")}
    if control_plane == "real":
        assert set(REAL_DAEMONS) <= daemons and not {"kubeapi", "controllers"} & daemons
        real_cluster_with_kubectl(state_dir, state)
    else:
        assert {"kubeapi", "controllers"} <= daemons and not set(REAL_DAEMONS) & daemons
    pids = pids_of(state_dir)
    assert len(pids) >= 18
    if control_plane == "real":
        # A crash: kube-apiserver and an agent die; down still stops the rest (etcd, the
        # controller manager, the scheduler included) and removes everything.
        for name in ("kube-apiserver", "agent-node1"):
            os.kill(read_pid(f"{state.daemon_dir}/{name}.pid"), signal.SIGKILL)  # type: ignore[arg-type]
        status = sandbox(state_dir, "status")
        assert status.returncode == 1 and re.search(r"kube-apiserver\s+\d+\s+STOPPED", status.stdout)
    ok(sandbox(state_dir, "down"))
    assert_gone(state_dir, pids)


APP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        ports: [{containerPort: 9000, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: shop}
spec:
  selector: {app: shop}
  ports: [{port: 80, targetPort: http}]
"""


def kubectl(directory: str, *args: str, stdin: str | None = None) -> str:
    return ok(sandbox(directory, "kubectl", *args, stdin=stdin))


def real_cluster_with_kubectl(directory: str, state: State) -> None:
    """On the real control plane: the agents are kubelets to it (Nodes Ready and untainted,
    Leases renewed, pod status, deletions confirmed), kubectl applies a standard Deployment and
    Service without --validate=false, kube-controller-manager makes the ReplicaSet and the
    EndpointSlice, kube-scheduler places the pods, and `kubectl get` prints normal tables."""
    api = state.api()
    for node in api.list("nodes"):
        assert not (node["spec"].get("taints")), node["spec"]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    leases = {lease["metadata"]["name"]: lease for lease in api.list("leases", "kube-node-lease")}
    assert set(leases) == {"node1", "node2"}
    assert all(lease["spec"]["holderIdentity"] == name and lease["spec"].get("renewTime")
               for name, lease in leases.items())

    applied = kubectl(directory, "apply", "-f", "-", stdin=APP)
    assert "deployment.apps/app created" in applied and "service/app created" in applied
    kubectl(directory, "rollout", "status", "deployment/app", "-n", "shop", "--timeout=60s")
    table = kubectl(directory, "get", "pods", "-n", "shop", "-o", "wide")
    header, *rows = table.splitlines()
    assert header.split()[:6] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"], table
    assert len(rows) == 3 and all(" 1/1 " in r and " Running " in r for r in rows), table
    nodes = kubectl(directory, "get", "nodes")
    assert re.search(r"^node1\s+Ready\s", nodes, re.M) and re.search(r"^node2\s+Ready\s", nodes, re.M), nodes
    assert "replicaset.apps/app-" in kubectl(directory, "get", "replicasets", "-n", "shop", "-o", "name")
    pods = {p["metadata"]["name"]: p for p in api.list("pods", "shop")}
    assert {p["spec"]["nodeName"] for p in pods.values()} == {"node1", "node2"}
    # The EndpointSlice is kube-controller-manager's; the watcher turns it into the VIP's backends.
    slices = api.list("endpointslices", "shop", labelSelector="kubernetes.io/service-name=app")
    assert [s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] for s in slices] == \
        ["endpointslice-controller.k8s.io"]
    vip = api.get("services", "app", "shop")["spec"]["clusterIP"]
    assert eventually(lambda: answers(state.ns("node2"), f"http://{vip}/", tries=60, want=set(pods)) >= set(pods),
                      what="the VIP answered by the three pods")

    # Scale down: the agents tear the pods down and confirm their deletion (no Terminating pod
    # is left), their namespaces go, and the VIP answers with the one left.
    kubectl(directory, "scale", "deployment/app", "-n", "shop", "--replicas=1")
    eventually(lambda: len(api.list("pods", "shop")) == 1, what="two pods deleted, not left Terminating")
    (left,) = (p["metadata"]["name"] for p in api.list("pods", "shop"))
    eventually(lambda: namespaces(state.prefix + "-pod-shop") == [f"{state.prefix}-pod-shop-{left}"],
               what="the deleted pods' namespaces removed")
    assert eventually(lambda: answers(state.ns("node2"), f"http://{vip}/", tries=5) == {left}, what="VIP -> one pod")
    # kubectl delete pod waits until the pod is gone: the agent's confirmation ends it, after
    # the pod's network namespace is removed.
    kubectl(directory, "delete", "pod", left, "-n", "shop", "--timeout=30s")
    assert f"{state.prefix}-pod-shop-{left}" not in namespaces(state.prefix + "-pod-shop")


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: shop}
spec:
  replicas: %d
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers: [{name: web, ports: [{containerPort: 9000}]}]
"""
SERVICE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: shop}
spec:
  type: NodePort
  selector: {app: shop}
  ports: [{port: 80, targetPort: 9000, name: http}]
"""


def test_api_flow_apply_scale_delete_with_traffic(state_dir: str, tmp_path: Path) -> None:
    # The embedded control plane's Deployment-lite (pods <name>-<i>); the real one is the demo's.
    ok(sandbox(state_dir, "up", "--nodes", "2", "--control-plane", "embedded"))
    state = State.load(state_dir)
    assert state is not None
    again = ok(sandbox(state_dir, "up"))
    assert "already up" in again
    out_ns, node2 = state.ns("out"), state.ns("node2")
    svc_file = tmp_path / "svc.yaml"
    svc_file.write_text(SERVICE)
    ok(sandbox(state_dir, "apply", "-f", str(svc_file)))
    ok(sandbox(state_dir, "apply", "-f", "-", "--wait", stdin=DEPLOYMENT % 1))
    api = state.api()
    svc = api.get("services", "app", "shop")
    vip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    # One replica: the VIP (from a node, through its management port) and the NodePort (from
    # the outside network) answer with it.
    assert eventually(lambda: answers(node2, f"http://{vip}/", tries=3) == {"app-0"}, what="VIP -> app-0")
    for gateway in ("192.0.2.10", "192.0.2.20"):   # node1's own NIC, node2's shared NIC
        assert eventually(lambda g=gateway: answers(out_ns, f"http://{g}:{node_port}/", tries=3) == {"app-0"},
                          what=f"NodePort on {gateway}")

    # Scale up: three pods over two nodes, all behind the VIP.
    ok(sandbox(state_dir, "apply", "-f", "-", "--wait", stdin=DEPLOYMENT % 3))
    pods = {p["metadata"]["name"]: p for p in api.list("pods", "shop")}
    assert set(pods) == {"app-0", "app-1", "app-2"}
    assert {p["spec"]["nodeName"] for p in pods.values()} == {"node1", "node2"}
    everyone = {"app-0", "app-1", "app-2"}
    assert eventually(lambda: answers(node2, f"http://{vip}/", tries=60, want=everyone) == everyone,
                      what="VIP -> all three")
    # Pod to pod, on each pod's own address.
    for name, pod in pods.items():
        assert curl(state.ns("pod-shop-app-0"), f"http://{pod['status']['podIP']}:9000/") == name
    status = ok(sandbox(state_dir, "status"))
    for pod in pods.values():
        assert f"{pod['status']['podIP']}:9000" in status

    # Scale down: the extra pods' namespaces and logical ports go, the VIP answers app-0 only.
    ok(sandbox(state_dir, "apply", "-f", "-", stdin=DEPLOYMENT % 1))
    eventually(lambda: namespaces(state.prefix + "-pod-shop") == [f"{state.prefix}-pod-shop-app-0"],
               what="pod namespaces of app-1 and app-2 deleted")
    eventually(lambda: "shop_app-1" not in nb_ports(state) and "shop_app-2" not in nb_ports(state),
               what="logical ports of app-1 and app-2 deleted")
    assert eventually(lambda: answers(node2, f"http://{vip}/", tries=10) == {"app-0"}, what="VIP -> app-0 only")

    # kubectl-style clients work with the sandbox's kubeconfig.
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=state.kubeconfig)
    names = [p.metadata.name for p in client.CoreV1Api(api_client).list_namespaced_pod("shop").items]
    assert names == ["app-0"]

    # Delete the service: its VIP and load balancers go. Delete the deployment: its pod goes.
    ok(sandbox(state_dir, "delete", "service", "app", "-n", "shop"))
    eventually(lambda: not any(vip in line for line in nbctl(state, "lb-list").splitlines()), what="LB gone")
    assert answers(node2, f"http://{vip}/", tries=2) == {"<no answer>"}
    ok(sandbox(state_dir, "delete", "deployment", "app", "-n", "shop"))
    eventually(lambda: namespaces(state.prefix + "-pod-") == [], what="app-0's namespace deleted")
    assert sandbox(state_dir, "delete", "pod", "nope").returncode == 1

    # A crash: kill the API server and an agent; down still removes everything.
    pids = pids_of(state_dir)
    for name in ("kubeapi", "agent-node1"):
        pid = read_pid(f"{state.daemon_dir}/{name}.pid")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    status = sandbox(state_dir, "status")
    assert status.returncode == 1 and "STOPPED" in status.stdout
    ok(sandbox(state_dir, "down"))
    assert_gone(state_dir, pids)


def nbctl(state: State, *args: str) -> str:
    return subprocess.run(["ovn-nbctl", f"--db={state.nb}", *args], capture_output=True, text=True,
                          check=True).stdout


def nb_ports(state: State) -> set[str]:
    out = nbctl(state, "--format=json", "--columns=name", "list", "Logical_Switch_Port")
    return {row[0] for row in json.loads(out)["data"]}


def test_interrupted_up_is_reported_rebuilt_and_removed(state_dir: str) -> None:
    proc = subprocess.Popen([SANDBOX, "--state-dir", state_dir, "up"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        eventually(lambda: (s := State.load(state_dir)) is not None and s.api_port > 0, 60,
                   what="the API server of the first 'up'")
    finally:
        proc.kill()
        proc.wait(10)
    first = pids_of(state_dir)
    status = sandbox(state_dir, "status")
    assert status.returncode == 1 and "INCOMPLETE" in status.stdout
    again = ok(sandbox(state_dir, "up"))
    assert "rebuilding" in again and "sandbox up" in again
    assert [p for p in first if alive(p)] == []          # the half-made sandbox is gone
    assert "INCOMPLETE" not in ok(sandbox(state_dir, "status"))
    second = pids_of(state_dir)
    ok(sandbox(state_dir, "down"))
    assert_gone(state_dir, first + second)
