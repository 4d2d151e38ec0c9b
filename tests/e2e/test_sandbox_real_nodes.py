"""ovn-k8s-sandbox with real nodes (`--nodes-kind real`): per node, containerd and the kubelet in
the node's network namespace, pods as containers, containerd calling ovn-k8s-cni-overlay from
the conflist minion-init wrote (docs/sandbox.md, /work/shared/reference/kubelet-lab.md).

One two-node sandbox for the module, made by `demo --keep` (pod-to-pod across nodes, pod to
the Service VIP, nodes to pods, NodePort from the outside on both gateways, the shared NIC's
own server, egress SNAT, NetworkPolicy: all with real packets), then, in order: the layout
(daemons in the nodes' namespaces, only loopback listeners in the root one), `kubectl exec`
to a Service and `kubectl logs`, an httpGet readiness probe gating endpoints, a rolling update
with a client looping meanwhile (no failed request), delete and re-create with no stale port,
kubelet and containerd restarts with running pods, and last a crash (kubelet, containerd and
kube-apiserver SIGKILLed) followed by `down`, which must leave the host as it was before the
module (namespaces, mounts, the kubelet's sysctls, shared paths, cgroups, processes).
Marked realk8s: without the assets they are reported NOT RUN (tests/real_control_plane.py).
"""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox import images, realnode
from sandbox.lab.proc import alive, read_pid
from sandbox.state import OUTSIDE_IP, OUTSIDE_PORT, State, prefix_for, start_daemon

pytestmark = [pytest.mark.e2e, pytest.mark.realk8s]
SANDBOX = os.path.join(os.path.dirname(sys.executable), "ovn-k8s-sandbox")
NS = "rn"


def sandbox(directory: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SANDBOX, "--state-dir", directory, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc.stdout


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s: {what}"
        time.sleep(0.1)


def host_snapshot(directory: str) -> dict[str, Any]:
    """What the sandbox may change on the host, to compare before and after."""
    prefix = prefix_for(directory)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    # Only what could be ours: other tests on this machine make their own namespaces and mounts.
    mine = (directory, realnode.HOST_DIR, "/var/lib/kubelet", f"/run/netns/{prefix}-")
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        mounts = sorted(m for line in f if any(x in (m := line.split()[4]) for x in mine))
    procs = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if directory in cmd or realnode.HOST_DIR in cmd:
                procs.append(cmd)
    return {"netns": sorted(n.split()[0] for n in netns.splitlines() if n.startswith(prefix)),
            "mounts": mounts, "processes": sorted(procs),
            "sysctls": {k: realnode._sysctl(k) for k in realnode.KUBELET_SYSCTLS},
            "paths": {p: os.path.lexists(p) for p in (*realnode.HOST_PATHS, realnode.HOST_DIR)},
            "cgroups": sorted(glob.glob("/sys/fs/cgroup/*/k8s.io"))}


@pytest.fixture(scope="module")
def real() -> Iterator[tuple[State, str, dict[str, Any]]]:
    reason = realnode.unavailable()
    if reason is not None:
        pytest.fail(f"real nodes needed: {reason}", pytrace=False)
    directory = f"/tmp/ok8s-rn-{uuid.uuid4().hex[:8]}"
    before = host_snapshot(directory)
    try:
        out = ok(sandbox(directory, "demo", "--keep", "--control-plane", "real", "--nodes-kind", "real"))
        state = State.load(directory)
        assert state is not None and state.real_nodes
        yield state, out, before
    finally:
        sandbox(directory, "down")


def kubectl(state: State, *args: str, timeout: float = 60) -> str:
    return ok(sandbox(state.dir, "kubectl", *args, timeout=timeout))


def api_pods(state: State, selector: str = "", namespace: str = NS) -> list[dict[str, Any]]:
    query = {"labelSelector": selector} if selector else {}
    return [p for p in state.api().list("pods", namespace, **query) if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def curl(netns: str, url: str, timeout: float = 2) -> str | None:
    enter = ["nsenter", f"--net={netns}"] if netns.startswith("/") else ["ip", "netns", "exec", netns]
    proc = subprocess.run([*enter, "curl", "-s", "-m", str(timeout), url], capture_output=True, text=True,
                          timeout=timeout + 10, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def answers(netns: str, url: str, want: str, timeout: float = 10) -> bool:
    """`url` answers `want` within `timeout`: a container without a readiness probe is Ready
    as soon as it runs, a moment before its server listens."""
    return bool(eventually(lambda: curl(netns, url) == want, timeout, f"{url} answering {want!r}"))


def pod_ports(state: State, node: str) -> set[str]:
    """iface-ids (namespace_pod) of the pods' ports on the node's OVS: the CNI plugin's veths
    (ovn<container id>), not the gateway's or the management port."""
    proc = subprocess.run(["ovs-vsctl", f"--db=unix:{state.node_dir(node)}/db.sock", "--format=json",
                           "--columns=name,external_ids", "find", "Interface", "external_ids:iface-id!=[]"],
                          capture_output=True, text=True, check=True)
    ids = set()
    for name, external_ids in json.loads(proc.stdout)["data"]:
        if name.startswith("ovn") and not name.startswith("ovn-"):
            ids.add(dict(external_ids[1]).get("iface-id", ""))
    return ids


def running_pods(state: State, node: str) -> set[str] | None:
    """namespace_name of the node's pods with an address; None while one is still terminating."""
    pods = [p for p in state.api().list("pods") if p["spec"].get("nodeName") == node]
    if any(p["metadata"].get("deletionTimestamp") for p in pods):
        return None
    return {f"{p['metadata']['namespace']}_{p['metadata']['name']}" for p in pods
            if (p.get("status") or {}).get("podIP")}


def assert_no_stale_ports(state: State) -> None:
    for node in state.nodes:
        eventually(lambda node=node: pod_ports(state, node) == running_pods(state, node), 30,
                   f"{node}'s pod ports {pod_ports(state, node)} == its running pods {running_pods(state, node)}")


def apply(state: State, text: str) -> None:
    proc = subprocess.run([SANDBOX, "--state-dir", state.dir, "kubectl", "apply", "-f", "-"], input=text,
                          capture_output=True, text=True, timeout=60, check=False)
    ok(proc)


APP = """
apiVersion: v1
kind: Namespace
metadata: {name: rn}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: rn}
spec:
  replicas: 2
  selector: {matchLabels: {app: app}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: app}, annotations: {rev: "1"}}
    spec:
      terminationGracePeriodSeconds: 2
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {matchLabels: {app: app}}}
      containers:
      - name: web
        image: sandbox.ovn-k8s/podserver
        imagePullPolicy: Never
        env: [{name: PORT, value: "9000"}]
        ports: [{containerPort: 9000}]
        readinessProbe:
          httpGet: {path: /ready, port: 9000}
          periodSeconds: 1
          failureThreshold: 1
          successThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: rn}
spec:
  selector: {app: app}
  ports: [{port: 80, targetPort: 9000}]
"""


@pytest.fixture(scope="module")
def app(real: tuple[State, str, dict[str, Any]]) -> tuple[State, str]:
    state = real[0]
    apply(state, APP)
    kubectl(state, "rollout", "status", "-n", NS, "deployment/app", "--timeout=60s")
    vip = state.api().get("services", "app", NS)["spec"]["clusterIP"]
    return state, vip


def vip_answers(state: State, netns: str, url: str, want: set[str], tries: int = 30) -> set[str]:
    seen: set[str] = set()
    for _ in range(tries):
        got = curl(netns, url)
        seen.add(got or "<no answer>")
        if want and want <= seen:
            break
    return seen


# -- the tests, in order -----------------------------------------------------------------------------

def test_demo_passes_on_real_nodes(real: tuple[State, str, dict[str, Any]]) -> None:
    _, out, _ = real
    assert "FAIL " not in out and "PASS: 14 passed, 0 failed" in out, out
    for check in ("pod-to-pod across nodes", "pod to service VIP", r"on node1 \(own NIC\)",
                  r"on node2 \(one NIC shared", "pod to outside through SNAT", "deny-all in demo",
                  r"kubectl exec .* both backends answer", r"kubectl logs .*: the container's requests"):
        assert any(line.strip().startswith("PASS") and re.search(check, line)
                   for line in out.splitlines()), f"no PASS for {check}:\n{out}"


def test_layout_nodes_ready_daemons_in_node_namespaces(real: tuple[State, str, dict[str, Any]]) -> None:
    state = real[0]
    nodes = {n["metadata"]["name"]: n for n in state.api().list("nodes")}
    assert set(nodes) == {"node1", "node2"}
    root_net = os.stat("/proc/self/ns/net").st_ino
    for i, name in enumerate(("node1", "node2"), start=1):
        node = nodes[name]
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
        assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
        assert {"type": "InternalIP", "address": realnode.internal_ip(state.prefix, i)} in node["status"]["addresses"]
        assert not (node.get("spec") or {}).get("taints")
        netns_ino = os.stat(f"/run/netns/{state.ns(name)}").st_ino
        for daemon in ("kubelet", "containerd"):
            pid = read_pid(f"{state.node_dir(name)}/{daemon}.pid")
            assert pid is not None and alive(pid)
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == netns_ino != root_net
        # The conflist containerd reads is minion-init's, in the node's own CNI dir.
        conf = realnode.containerd_config(realnode.nodes_of(state)[i - 1])
        assert f'conf_dir = "{state.node_dir(name)}/cni/net.d"' in conf
        with open(f"{state.node_dir(name)}/cni/net.d/10-ovn-k8s.conflist", encoding="utf-8") as f:
            assert json.load(f)["plugins"][0]["type"] == "ovn-k8s-cni-overlay"
    # The root namespace: every TCP listener of the sandbox's processes is on 127.0.0.0/8.
    pids = {str(read_pid(p)) for p in glob.glob(f"{state.dir}/**/*.pid", recursive=True)}
    listeners = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    ours = [line for line in listeners.splitlines() if any(f"pid={p}," in line for p in pids)]
    assert ours, listeners
    for line in ours:
        local = line.split()[3]
        assert local.startswith("127.") or local.startswith("[::ffff:127."), line


def test_kubectl_exec_to_service_and_logs(app: tuple[State, str]) -> None:
    state, vip = app
    pods = sorted(p["metadata"]["name"] for p in api_pods(state, "app=app"))
    seen = set()
    for _ in range(12):
        seen.add(kubectl(state, "exec", "-n", NS, pods[0], "--", "timeout", "3", "wget", "-qO-",
                         f"http://{vip}/").strip())
        if seen == set(pods):
            break
    assert seen == set(pods)
    logs = kubectl(state, "logs", "-n", NS, pods[0])
    assert f"podserver {pods[0]} listening on :9000" in logs
    assert "response:200" in logs


def test_readiness_probe_gates_endpoints(app: tuple[State, str]) -> None:
    state, vip = app
    node_ns = state.ns("node1")
    pods = sorted(p["metadata"]["name"] for p in api_pods(state, "app=app"))
    gated, other = pods
    kubectl(state, "exec", "-n", NS, gated, "--", "rm", "/www/ready")
    eventually(lambda: not ready(state.api().get("pods", gated, NS)), 15, f"{gated} NotReady")
    # Not a backend any more: only the other pod answers the VIP.
    eventually(lambda: vip_answers(state, node_ns, f"http://{vip}/", set(), tries=15) == {other}, 15,
               f"only {other} behind {vip}")
    kubectl(state, "exec", "-n", NS, gated, "--", "cp", "/www/index.html", "/www/ready")
    eventually(lambda: ready(state.api().get("pods", gated, NS)), 15, f"{gated} Ready again")
    assert eventually(lambda: vip_answers(state, node_ns, f"http://{vip}/", set(pods)) == set(pods), 15)


def test_rolling_update_keeps_the_service_answering(app: tuple[State, str]) -> None:
    state, vip = app
    old = {p["metadata"]["name"] for p in api_pods(state, "app=app")}
    results: list[str | None] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            results.append(curl(state.ns("node2"), f"http://{vip}/", timeout=2))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        kubectl(state, "patch", "-n", NS, "deployment/app", "--type=merge", "-p",
                '{"spec":{"template":{"metadata":{"annotations":{"rev":"2"}}}}}')
        kubectl(state, "rollout", "status", "-n", NS, "deployment/app", "--timeout=90s", timeout=100)
        new = {p["metadata"]["name"] for p in api_pods(state, "app=app")}
        assert len(new) == 2 and not new & old
        # Until the client saw the new pods: the old ones' endpoints are gone by then.
        eventually(lambda: new <= set(results[-20:]), 20, f"new pods {new} answering")
    finally:
        stop.set()
        thread.join()
    failed = [r for r in results if r is None or r not in old | new]
    assert len(results) > 20 and failed == [], f"{len(failed)} failed of {len(results)}: {failed[:5]}"
    assert_no_stale_ports(state)


SOLO = """
apiVersion: v1
kind: Pod
metadata: {name: solo, namespace: rn}
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 1
  containers: [{name: web, image: sandbox.ovn-k8s/podserver, imagePullPolicy: Never,
                env: [{name: STOP_DELAY, value: "0"}]}]
"""


def test_delete_and_recreate_leaves_no_stale_port(app: tuple[State, str]) -> None:
    state, _ = app
    node_ns = state.ns("node1")
    for round_ in range(2):
        apply(state, SOLO)
        pod = eventually(lambda: next((p for p in api_pods(state) if p["metadata"]["name"] == "solo"
                                       and ready(p)), None), 30, "solo Ready")
        ip = pod["status"]["podIP"]
        assert answers(node_ns, f"http://{ip}:8080/", "solo"), f"round {round_}"
        assert f"{NS}_solo" in pod_ports(state, "node2")
        kubectl(state, "delete", "pod", "-n", NS, "solo", "--wait=true", timeout=60)
        # CNI DEL ran: the port left node2's br-int, the address answers no more.
        assert eventually(lambda: f"{NS}_solo" not in pod_ports(state, "node2"), 15)
        assert curl(node_ns, f"http://{ip}:8080/", timeout=1) is None
    assert_no_stale_ports(state)


@pytest.mark.parametrize("daemon", ["kubelet", "containerd"])
def test_restart_keeps_running_pods_networked(app: tuple[State, str], daemon: str) -> None:
    state, vip = app
    before = {p["metadata"]["name"]: (p["status"]["podIP"], p["status"]["containerStatuses"][0]["containerID"])
              for p in api_pods(state, "app=app")}
    ports = {n: pod_ports(state, n) for n in state.nodes}
    for node in state.nodes:
        realnode.restart(state, node, daemon, kill=daemon == "kubelet")
    # A new pod on node1 once the daemon is back: the CNI plugin is called again as before.
    apply(state, SOLO.replace("node2", "node1"))
    solo = eventually(lambda: next((p for p in api_pods(state) if p["metadata"]["name"] == "solo"
                                    and ready(p)), None), 60, f"a new pod after the {daemon} restart")
    after = {p["metadata"]["name"]: (p["status"]["podIP"], p["status"]["containerStatuses"][0]["containerID"])
             for p in api_pods(state, "app=app")}
    assert after == before     # same containers (not restarted), same addresses
    assert all(ready(p) for p in api_pods(state, "app=app"))
    assert answers(state.ns("node2"), f"http://{solo['status']['podIP']}:8080/", "solo")
    assert vip_answers(state, state.ns("node1"), f"http://{vip}/", set(before)) == set(before)
    kubectl(state, "delete", "pod", "-n", NS, "solo", "--wait=true", timeout=60)
    assert {n: pod_ports(state, n) for n in state.nodes} == ports   # no port re-made, none left
    assert eventually(lambda: all(schedulable(state, n) for n in state.nodes), 30)


def schedulable(state: State, name: str) -> bool:
    from sandbox.cluster import schedulable as ok_node

    return ok_node(state.api().get("nodes", name) or {})


def test_egress_snat_from_a_container(app: tuple[State, str]) -> None:
    state, _ = app
    log = f"{state.daemon_dir}/outside-http.access"
    start = os.path.getsize(log)
    for pod in sorted(p["metadata"]["name"] for p in api_pods(state, "app=app")):
        got = kubectl(state, "exec", "-n", NS, pod, "--", "timeout", "3", "wget", "-qO-",
                      f"http://{OUTSIDE_IP}:{OUTSIDE_PORT}/").strip()
        assert got == "outside"
    with open(log, encoding="utf-8") as f:
        f.seek(start)
        sources = {line.split()[0] for line in f if line.strip()}
    assert sources and sources <= set(state.gateways.values()), sources


USER_POD = """
apiVersion: v1
kind: Pod
metadata: {name: user, namespace: rn}
spec:
  nodeName: node2
  terminationGracePeriodSeconds: 1
  containers: [{name: hello, image: example.test/hello:1, imagePullPolicy: Never}]
"""


def test_import_image_of_a_user(app: tuple[State, str], tmp_path: Any) -> None:
    """A user's image tarball (docker save format), imported with `ovn-k8s-sandbox import-image`,
    runs on a real node without any registry."""
    state, _ = app
    spec = images.ImageSpec("example.test/hello:1", ("/bin/sh", "-c", "echo hello-from-user > /www/index.html && "
                                                     "exec httpd -f -p 8080 -h /www"))
    tarball = images.build(spec, str(tmp_path / "hello.tar"))
    out = ok(sandbox(state.dir, "import-image", tarball))
    assert [line.split(":")[0] for line in out.splitlines() if "example.test/hello:1" in line] == state.nodes
    apply(state, USER_POD)
    pod = eventually(lambda: next((p for p in api_pods(state) if p["metadata"]["name"] == "user" and ready(p)),
                                  None), 30, "the user's pod Ready")
    assert answers(state.ns("node1"), f"http://{pod['status']['podIP']}:8080/", "hello-from-user")
    kubectl(state, "delete", "pod", "-n", NS, "user", "--wait=true", timeout=60)


def pod_named(state: State, name: str, predicate: Callable[[dict[str, Any]], bool] = ready,
              timeout: float = 40) -> dict[str, Any]:
    return eventually(lambda: next((p for p in api_pods(state) if p["metadata"]["name"] == name
                                    and predicate(p)), None), timeout, f"pod {name}")


def restarts(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["restartCount"])


def test_pod_restarts_keep_networking(app: tuple[State, str]) -> None:
    """A container that exits is restarted in the same sandbox (no CNI call, same address); a
    killed sandbox (its pause process) is re-created by the kubelet: CNI DEL of the old one
    (its port goes), ADD of the new one (the same address: the watcher's annotation)."""
    state, _ = app
    node_ns = state.ns("node2")
    apply(state, SOLO.replace("name: solo", "name: crash1").replace("node2", "node1") + "---\n"
          + SOLO.replace("name: solo", "name: crash2").replace("node2", "node1"))
    one, two = pod_named(state, "crash1"), pod_named(state, "crash2")
    kubectl(state, "exec", "-n", NS, "crash1", "--", "kill", "1")
    again = pod_named(state, "crash1", lambda p: ready(p) and restarts(p) == 1)
    assert again["status"]["podIP"] == one["status"]["podIP"]
    assert answers(node_ns, f"http://{one['status']['podIP']}:8080/", "crash1")

    n = realnode.nodes_of(state)[0]
    sandbox_id = n.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={two["metadata"]["uid"]},'
                       'labels."io.cri-containerd.kind"==sandbox').stdout.split()
    tasks = dict(line.split()[:2] for line in n.ctr("tasks", "ls").stdout.splitlines()[1:])
    os.kill(int(tasks[sandbox_id[0]]), signal.SIGKILL)
    eventually(lambda: n.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={two["metadata"]["uid"]},'
                             'labels."io.cri-containerd.kind"==sandbox').stdout.split() not in ([], sandbox_id),
               30, "a new sandbox for crash2")
    back = pod_named(state, "crash2", lambda p: ready(p) and restarts(p) >= 1)
    assert back["status"]["podIP"] == two["status"]["podIP"]
    assert answers(node_ns, f"http://{two['status']['podIP']}:8080/", "crash2")
    kubectl(state, "delete", "pod", "-n", NS, "crash1", "crash2", "--wait=true", timeout=60)
    assert_no_stale_ports(state)


def nb_ports(state: State, name: str) -> str:
    return subprocess.run(["ovn-nbctl", f"--db={state.nb}", "--bare", "--columns=name", "find",
                           "Logical_Switch_Port", f"name={name}"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_pod_deleted_while_the_watcher_is_down_is_cleaned_up_when_it_returns(app: tuple[State, str]) -> None:
    state, _ = app
    apply(state, SOLO.replace("name: solo", "name: orphan"))
    pod_named(state, "orphan")
    assert nb_ports(state, f"{NS}_orphan") == f"{NS}_orphan"
    pidfile = f"{state.daemon_dir}/watcher.pid"
    pid = read_pid(pidfile)
    assert pid is not None
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = [a.decode() for a in f.read().split(b"\0") if a]
    os.kill(pid, signal.SIGKILL)
    eventually(lambda: not alive(pid), 10, "the watcher gone")
    try:
        # The kubelet deletes the pod (containerd's CNI DEL takes the OVS port) with no watcher.
        kubectl(state, "delete", "pod", "-n", NS, "orphan", "--wait=true", timeout=60)
        assert eventually(lambda: f"{NS}_orphan" not in pod_ports(state, "node2"), 15)
        assert nb_ports(state, f"{NS}_orphan") == f"{NS}_orphan"      # nobody took it out of the NB
    finally:
        start_daemon(state.daemon_dir, "watcher", cmd, env={"OVS_RUNDIR": state.daemon_dir,
                                                            "OVS_LOGDIR": state.daemon_dir})
    assert eventually(lambda: nb_ports(state, f"{NS}_orphan") == "", 30, "the watcher's clean-up")
    assert_no_stale_ports(state)


def test_crash_then_down_leaves_the_host_as_before(real: tuple[State, str, dict[str, Any]]) -> None:
    state, _, before = real
    ids = {n: realnode.container_ids(n) for n in realnode.nodes_of(state)}
    assert all(ids.values())   # containers are running on both nodes
    for pidfile in (f"{state.node_dir('node1')}/containerd.pid", f"{state.node_dir('node2')}/kubelet.pid",
                    f"{state.daemon_dir}/kube-apiserver.pid"):
        pid = read_pid(pidfile)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
    ok(sandbox(state.dir, "down"))
    assert not os.path.exists(state.dir)
    after = eventually(lambda: (s := host_snapshot(state.dir)) == before and s, 10,
                       "the host as before the module")
    assert after == before
    for n, cids in ids.items():
        assert not [c for c in cids if os.path.exists(realnode._shim_socket(n, c))
                    or glob.glob(f"/sys/fs/cgroup/*/k8s.io/{c}") or glob.glob(f"/var/lib/cni/results/*{c}*")]
