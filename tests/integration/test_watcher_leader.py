"""ovn-k8s-watcher --leader-elect on a coordination.k8s.io/v1 Lease, with real watchers, a real
NB (with ovn-northd) and the embedded API server (short durations: lease 3 s, renew deadline
2 s, retry 0.5 s).

- Three watchers started at once: one leader serves, two stand by; only the leader writes
  (the NB transactions each process counts; the NB's OVSDB lock is held by the leader only);
  /readyz, the metrics and `ovs-appctl status` tell the roles.
- kill -9 the leader under pod churn: a standby takes the Lease over and serves, and the NB
  converges with 0 stale, 0 missing, 0 duplicate addresses.
- A leader cut off from the API server (its connection stalls; the others' do not) stops
  writing and exits before its Lease could have been taken: its exit precedes the new
  leader's acquireTime.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, differences, wait_until, write_topology

pytestmark = pytest.mark.integration
NODES = {"node1": "10.244.0.0/23", "node2": "10.244.2.0/23"}
LEASE = ("kube-system", "ovn-k8s-watcher")
ELECTION = ("--leader-elect", "--leader-elect-lease-duration=3s",
            "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=500ms")
TXNS = "ovnk8s_watcher_nb_transactions_total"


class StallingTcpProxy:
    """127.0.0.1:<port> -> the API server, forwarding both ways until `stall()`: then nothing
    goes through any more in either direction (a network partition, as seen by one client)."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.stalled = threading.Event()
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = [self.server]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def stall(self) -> None:
        self.stalled.set()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            up = socket.create_connection(self.target)
            self.sockets += [client, up]
            thread = threading.Thread(target=self._pump, args=(client, up), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket, up: socket.socket) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([client, up], [], [], 0.1)
            if self.stalled.is_set():
                continue                       # hold everything: the peer hangs
            for sock in ready:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                (up if sock is client else client).sendall(data)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def cluster(lab: Lab, kube: KubeApiServer, tmp_path) -> Iterator:
    write_topology(lab.nb, NODES)
    made: list[WatcherProcess] = []
    proxies: list[StallingTcpProxy] = []

    def make(name: str, *, proxied: bool = False) -> WatcherProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        kubeconfig = str(workdir / "kubeconfig")
        kube.write_kubeconfig(kubeconfig)
        if proxied:
            proxy = StallingTcpProxy(int(kube.url.rsplit(":", 1)[1]))
            proxies.append(proxy)
            text = open(kubeconfig, encoding="utf-8").read()
            with open(kubeconfig, "w", encoding="utf-8") as fh:
                fh.write(text.replace(kube.url, f"http://127.0.0.1:{proxy.port}"))
        w = WatcherProcess(str(workdir), nb=lab.nb, kubeconfig=kubeconfig, name=name,
                           extra=(*ELECTION, "--pod-batch-size=20"))
        w.proxy = proxies[-1] if proxied else None  # type: ignore[attr-defined]
        made.append(w)
        return w
    try:
        yield make
    finally:
        for w in made:
            w.kill()
        for p in proxies:
            p.close()


def pod(name: str, i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": f"node{1 + i % 2}", "containers": [{"name": "c"}]}}


def identity(w: WatcherProcess) -> str:
    m = wait_until(lambda: re.search(r"campaigning for the Lease \S+ as (\S+) ", w.current_log()),
                   20, "the watcher's identity")
    return m.group(1)


def appctl(w: WatcherProcess, *args: str) -> str:
    ctl = os.path.join(os.path.dirname(w.pidfile), f"ovn-k8s-watcher.{w.pid}.ctl")
    proc = subprocess.run(["ovs-appctl", "-t", ctl, *args], capture_output=True, text=True,
                          timeout=10)
    return proc.stdout + proc.stderr


def ready(w: WatcherProcess) -> bool:
    return w.proc is not None and w.proc.poll() is None and w.get("/readyz")[0] == 200


def holder(kube: KubeApiServer) -> str:
    return kube.get("leases", LEASE[1], namespace=LEASE[0])["spec"].get("holderIdentity") or ""


def wall(micro: str) -> float:
    """A Lease's MicroTime as a Unix time."""
    return datetime.strptime(micro, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_one_leader_of_three_then_kill9_under_churn(lab, kube, cluster):
    ws = [cluster(f"w{i}") for i in range(3)]
    for w in ws:
        w.start()
    ids = {identity(w): w for w in ws}
    leader = wait_until(lambda: next((w for w in ws if ready(w)), None), 30, "a leader")
    assert ids[holder(kube)] is leader
    standbys = [w for w in ws if w is not leader]
    for w in standbys:
        wait_until(lambda w=w: "state: standby" in appctl(w, "status"), 20, "standby status")
        code, body = w.get("/readyz")
        assert code == 503 and body.startswith("standby: ")
        assert w.get("/healthz") == (200, "ok (standby)\n")
        assert w.metric("ovnk8s_watcher_leader") == 0
    assert "role: leader" in appctl(leader, "status")
    assert leader.metric("ovnk8s_watcher_leader") == 1
    assert leader.get("/healthz") == (200, "ok (leader)\n")
    assert leader.get("/readyz") == (200, "ok: leader\n")

    stop = threading.Event()
    created = []

    def churn() -> None:
        i = 0
        while not stop.is_set():
            kube.create("pods", pod(f"p{i}", i))
            created.append(f"p{i}")
            if i % 4 == 3:
                kube.delete("pods", created.pop(0))
            i += 1
            stop.wait(0.01)
    chaos = threading.Thread(target=churn, daemon=True)
    chaos.start()
    try:
        wait_until(lambda: leader.metric(TXNS, result="ok") >= 5, 20, "the leader writing")
        for w in standbys:
            assert w.metric(TXNS, result="ok") == 0, "a standby wrote to the NB"
        killed_at = time.monotonic()
        leader.kill()
        new = wait_until(lambda: next((w for w in standbys if ready(w)), None), 30,
                         "a standby to take over")
        took = time.monotonic() - killed_at
    finally:
        stop.set()
        chaos.join(10)
    print(f"failover: leader killed -> standby serving in {took:.2f}s (lease 3 s)")
    assert ids[holder(kube)] is new
    other = next(w for w in standbys if w is not new)
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), 30,
               "the NB to match the cluster", interval=0.2)
    assert other.metric(TXNS, result="ok") == 0, "the remaining standby wrote to the NB"
    assert "role: leader" in appctl(new, "status") and "state: serving" in appctl(new, "status")
    assert kube.get("leases", LEASE[1], namespace=LEASE[0])["spec"]["leaseTransitions"] >= 1

    # A clean stop hands the Lease over: released, so the last standby need not wait for it
    # to expire.
    t0 = time.monotonic()
    assert new.stop() == 0
    assert "leader election: released the Lease kube-system/ovn-k8s-watcher" in new.log()
    wait_until(lambda: ready(other), 30, "the last standby to take over")
    print(f"handover: leader stopped (SIGTERM) -> standby serving in "
          f"{time.monotonic() - t0:.2f}s")
    assert ids[holder(kube)] is other


def test_a_leader_cut_off_from_the_api_server_stops_before_its_lease_can_be_taken(
        lab, kube, cluster):
    a = cluster("a", proxied=True).start()
    wait_until(lambda: ready(a), 30, "a to lead")
    b = cluster("b").start()
    b_id = identity(b)
    wait_until(lambda: "state: standby" in appctl(b, "status"), 20, "b to stand by")
    for i in range(20):
        kube.create("pods", pod(f"p{i}", i))
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), 30, "the pods programmed")

    a.proxy.stall()                              # type: ignore[attr-defined]
    # Pods keep coming: a cannot see them any more, b must not write before it leads.
    for i in range(20, 30):
        kube.create("pods", pod(f"p{i}", i))
    assert a.proc is not None
    a.proc.wait(10)
    exited = time.time()
    assert a.proc.returncode == 1
    assert "could not renew the Lease kube-system/ovn-k8s-watcher within 2s" in a.log()
    wait_until(lambda: ready(b), 30, "b to take over")
    lease = kube.get("leases", LEASE[1], namespace=LEASE[0])["spec"]
    assert lease["holderIdentity"] == b_id
    # a was gone before b could even hold the Lease (fencing): a wrote nothing after.
    assert exited < wall(lease["acquireTime"]) + 0.05
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), 30, "the NB to converge")
