"""ovn-k8s-watcher under disruption: killed mid-burst with the cluster changed while it was
down, the API server dropping every watch and compacting its history (410) mid-stream, the NB
server restarted mid-burst, and two watchers started at once.

After each, the NB must match the cluster exactly (`differences` is empty: every live pod
annotated, its port on its node's switch with the annotated address, no other pod port, no
address held by two live pods), and no live pod's port may have been deleted (its UUID is
unchanged).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, annotation, differences, nb_pod_ports, wait_until, write_topology
from tests.real_control_plane import BOTH_SERVERS

pytestmark = pytest.mark.integration
NODES = {"node1": "10.244.0.0/23", "node2": "10.244.2.0/23"}


@pytest.fixture
def make_watcher(lab: Lab, kube: KubeApiServer, tmp_path) -> Iterator:
    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    write_topology(lab.nb, NODES)
    made: list[WatcherProcess] = []

    def make(*extra: str, name: str = "watcher") -> WatcherProcess:
        w = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig, name=name,
                           extra=extra)
        made.append(w)
        return w
    try:
        yield make
    finally:
        for w in made:
            w.kill()


def pod(name: str, i: int, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": f"node{1 + i % 2}", "containers": [{"name": "c", "image": "busybox"}],
                     **spec}}


def annotated(kube: KubeApiServer) -> dict[str, dict]:
    return {p["metadata"]["name"]: a for p in kube.list("pods") if (a := annotation(p))}


def wait_converged(kube: KubeApiServer, lab: Lab, timeout: float = 60) -> None:
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), timeout,
               "the NB to match the cluster", interval=0.2)


@BOTH_SERVERS
def test_killed_mid_burst_then_cluster_changed_then_restarted(lab, kube, make_watcher):
    w = make_watcher("--pod-batch-size=10", "--annotation-workers=2")
    w.start().wait_ready()
    # The watcher waits (SIGSTOP) while the 300 pods are made: on kube-apiserver a creation
    # loop is slower than the watcher, which would otherwise finish before the kill.
    os.kill(w.pid, signal.SIGSTOP)
    for i in range(300):
        kube.create("pods", pod(f"p{i}", i))
    os.kill(w.pid, signal.SIGCONT)
    wait_until(lambda: w.metric("ovnk8s_watcher_pod_annotations_total", result="ok") >= 60, 30,
               "part of the burst", interval=0.005)
    w.stop(signal.SIGKILL)

    at_kill = nb_pod_ports(lab.nb)
    ann_at_kill = annotated(kube)
    assert 60 <= len(ann_at_kill) < 300, "the watcher was not killed mid-burst"
    port_only = {name for name in at_kill
                 if name.removeprefix("default_") not in ann_at_kill}

    # The cluster changes while the watcher is down.
    gone = [f"p{i}" for i in range(0, 300, 7)]                  # annotated and not yet
    for name in gone:
        kube.delete("pods", name)
    finished = [f"p{i}" for i in range(1, 300, 11) if f"p{i}" not in gone]
    for name in finished:
        kube.patch("pods", name, {"status": {"phase": "Succeeded"}})
    for i in range(300, 350):
        kube.create("pods", pod(f"p{i}", i))
    kube.create("pods", pod("hostnet", 0, hostNetwork=True))

    w.start().wait_ready(60)
    wait_converged(kube, lab)
    final = nb_pod_ports(lab.nb)
    live = {p["metadata"]["name"] for p in kube.list("pods")} - set(finished) - {"hostnet"}
    for name, port in at_kill.items():
        pod_name = name.removeprefix("default_")
        if pod_name in live:
            assert final[name].uuid == port.uuid, f"the live port {name} was replaced"
            assert final[name].addresses == port.addresses
    for name, ann in ann_at_kill.items():
        if name in live:
            assert annotation(kube.get("pods", name)) == ann, f"{name} got a new address"
    # A port written just before the kill whose annotation was not: its address is kept.
    for name in port_only:
        pod_name = name.removeprefix("default_")
        if pod_name in live:
            ip = annotation(kube.get("pods", pod_name))["ip_address"].split("/")[0]
            assert at_kill[name].addresses[0].endswith(" " + ip)
    assert w.metric("ovnk8s_watcher_stale_ports_deleted_total") == \
        len([n for n in at_kill if n.removeprefix("default_") not in live])


def test_watches_dropped_and_history_compacted_mid_stream(lab, kube, make_watcher):
    w = make_watcher("--pod-batch-size=20")
    w.start().wait_ready()
    stop = threading.Event()

    def disrupt() -> None:
        while not stop.is_set():
            time.sleep(0.15)
            kube.compact()
            kube.drop_watches()
    chaos = threading.Thread(target=disrupt, daemon=True)
    chaos.start()
    try:
        for i in range(200):
            kube.create("pods", pod(f"p{i}", i))
            if i % 10 == 9:
                kube.delete("pods", f"p{i - 5}")
                time.sleep(0.02)
        time.sleep(1.0)
    finally:
        stop.set()
        chaos.join()
    wait_converged(kube, lab)
    assert len(nb_pod_ports(lab.nb)) == 180
    log = w.log()
    assert "listing again" in log                  # 410 Gone -> relist
    wait_until(lambda: w.get("/healthz")[0] == 200, 20, "/healthz once the watches are back")


def _restart_nb(lab: Lab) -> None:
    c = lab.central_dir
    with open(f"{c}/nb.pid", encoding="ascii") as fh:
        pid = int(fh.read())
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv = [a.decode() for a in fh.read().split(b"\0") if a]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10, "the NB server to die")
    time.sleep(0.3)
    env = {**os.environ, "OVS_RUNDIR": c, "OVS_DBDIR": c, "OVS_LOGDIR": c}
    subprocess.run(["ip", "netns", "exec", lab.ns("central"), *argv], env=env, check=True,
                   capture_output=True, timeout=30)


def test_nb_server_restarted_mid_burst(lab, kube, make_watcher):
    w = make_watcher("--pod-batch-size=20", "--timeout=10")
    w.start().wait_ready()
    for i in range(400):
        kube.create("pods", pod(f"p{i}", i))
    wait_until(lambda: len(annotated(kube)) >= 40, 30, "part of the burst")
    _restart_nb(lab)
    for i in range(400, 450):
        kube.create("pods", pod(f"p{i}", i))
    for i in range(0, 50, 5):
        kube.delete("pods", f"p{i}")
    wait_converged(kube, lab, timeout=90)
    assert len(nb_pod_ports(lab.nb)) == 440
    assert w.proc.poll() is None
    wait_until(lambda: w.get("/healthz")[0] == 200, 20, "/healthz after the NB came back")
    wait_until(lambda: "pods: re-read the NB" in w.log(), 20, "the re-read after the reconnect")
    assert "NB connection re-established" in w.log()


def test_two_watchers_started_at_once(lab, kube, make_watcher):
    a, b = make_watcher(name="a"), make_watcher(name="b")
    a.start()
    b.start()

    def leaders() -> list[WatcherProcess]:
        return [w for w in (a, b) if w.get("/readyz")[0] == 200]
    (leader,) = wait_until(leaders, 30, "one watcher to serve")
    standby = b if leader is a else a
    time.sleep(1.0)
    assert leaders() == [leader], "both watchers serve"
    code, text = standby.get("/readyz")
    assert code == 503 and "standby" in text
    assert standby.get("/healthz")[0] == 200
    assert standby.metric("ovnk8s_watcher_leader") == 0

    for i in range(100):
        kube.create("pods", pod(f"p{i}", i))
    wait_converged(kube, lab)
    before = nb_pod_ports(lab.nb)
    assert standby.metric("ovnk8s_watcher_nb_transactions_total", result="ok") == 0

    leader.stop(signal.SIGKILL)
    standby.wait_ready(30)
    for i in range(100, 150):
        kube.create("pods", pod(f"p{i}", i))
    for i in range(0, 20):
        kube.delete("pods", f"p{i}")
    wait_converged(kube, lab)
    after = nb_pod_ports(lab.nb)
    assert len(after) == 130
    for name, port in before.items():
        if name in after:
            assert after[name].uuid == port.uuid and after[name].addresses == port.addresses
    assert "standby" in standby.log()
