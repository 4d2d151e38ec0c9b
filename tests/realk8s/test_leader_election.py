"""Leader election and node subnets on a real kube-apiserver (the real one decides): two
watchers with --leader-elect and --allocate-node-subnets, running with the least-privilege
token of etc/kubernetes/rbac.yaml (so the Lease and Node verbs there are the ones used).

- One serves, one stands by; kill -9 the leader under pod churn: the standby takes the Lease
  over, and the NB converges (0 stale, 0 missing, 0 duplicate addresses); Nodes get their
  subnets from whichever watcher leads.
- The kube-apiserver stopped (SIGSTOP) under the leader: it fences itself -- exits 1 before
  its Lease could be taken (its exit precedes the last renewal + the lease duration) -- and
  once the server runs again (SIGCONT) the standby takes over and serves.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

from ovn_k8s import naming
from sandbox.watcher_harness import WatcherProcess, differences, wait_until
from tests.realk8s.conftest import NODES, pod

pytestmark = [pytest.mark.realk8s, pytest.mark.integration]
NAMESPACE = "kube-system"


def wall(micro: str) -> float:
    return datetime.strptime(micro, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@pytest.fixture
def pair(lab, kube, tmp_path):
    """Two watchers on one Lease of their own (the session's server outlives this test)."""
    from sandbox.watcher_harness import write_topology

    write_topology(lab.nb, NODES)
    lease = f"ovn-k8s-watcher-{uuid.uuid4().hex[:8]}"
    made: list[WatcherProcess] = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
        made.append(WatcherProcess(
            str(workdir), nb=lab.nb, kubeconfig=kubeconfig, name=name,
            extra=("--leader-elect", "--leader-elect-lease-duration=3s",
                   "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=500ms",
                   f"--leader-elect-lease-name={lease}", "--allocate-node-subnets",
                   "--pod-batch-size=20")).start())
    try:
        yield lease, made
    finally:
        for w in made:
            w.kill()
        try:
            kube.delete("leases", lease, namespace=NAMESPACE)
        except Exception:  # noqa: BLE001 -- best effort: a unique name per test anyway
            pass


def ready(w: WatcherProcess) -> bool:
    return w.proc is not None and w.proc.poll() is None and w.get("/readyz")[0] == 200


def identity(w: WatcherProcess) -> str:
    m = wait_until(lambda: re.search(r"campaigning for the Lease \S+ as (\S+) ", w.current_log()),
                   20, "the watcher's identity")
    return m.group(1)


def node_subnet(kube, name: str) -> str | None:
    return (kube.get("nodes", name)["metadata"].get("annotations") or {}).get(
        naming.NODE_SUBNET_ANNOTATION)


def test_lease_failover_under_churn_on_a_real_api_server(lab, kube, pair):
    lease, (a, b) = pair
    ids = {identity(a): a, identity(b): b}
    leader = wait_until(lambda: next((w for w in (a, b) if ready(w)), None), 40, "a leader")
    standby = b if leader is a else a
    spec = kube.get("leases", lease, namespace=NAMESPACE)["spec"]
    assert ids[spec["holderIdentity"]] is leader and spec["leaseDurationSeconds"] == 3
    assert standby.get("/readyz")[0] == 503
    # The nodes of the lab's topology keep the subnets minion-init gave them.
    wait_until(lambda: all(node_subnet(kube, n) == s for n, s in NODES.items()), 20,
               "node1 and node2 annotated with their switches' subnets")

    stop = threading.Event()
    live: list[str] = []

    def churn() -> None:
        i = 0
        while not stop.is_set():
            kube.create("pods", pod(f"p{i}", ("node1", "node2")[i % 2]))
            live.append(f"p{i}")
            if i % 4 == 3:
                kube.delete("pods", live.pop(0))
            i += 1
            stop.wait(0.02)
    chaos = threading.Thread(target=churn, daemon=True)
    chaos.start()
    try:
        wait_until(lambda: leader.metric("ovnk8s_watcher_nb_transactions_total", result="ok")
                   >= 5, 20, "the leader writing")
        assert standby.metric("ovnk8s_watcher_nb_transactions_total", result="ok") == 0
        t0 = time.monotonic()
        leader.kill()
        wait_until(lambda: ready(standby), 40, "the standby to take over")
        took = time.monotonic() - t0
        kube.create("nodes", {"metadata": {"name": "node3"}})
    finally:
        stop.set()
        chaos.join(20)
    print(f"real API server: leader killed -> standby serving in {took:.2f}s (lease 3 s)")
    spec = kube.get("leases", lease, namespace=NAMESPACE)["spec"]
    assert ids[spec["holderIdentity"]] is standby and spec["leaseTransitions"] >= 1
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), 40,
               "the NB to match the cluster", interval=0.3)
    subnet3 = wait_until(lambda: node_subnet(kube, "node3"), 20, "node3's subnet")
    assert subnet3 not in NODES.values()
    kube.delete("nodes", "node3")


def test_a_leader_whose_api_server_stops_fences_itself(lab, kube, pair, control_plane):
    lease, (a, b) = pair
    leader = wait_until(lambda: next((w for w in (a, b) if ready(w)), None), 40, "a leader")
    standby = b if leader is a else a
    standby_id = identity(standby)
    apiserver = control_plane.pids["kube-apiserver"]
    os.kill(apiserver, signal.SIGSTOP)
    try:
        assert leader.proc is not None
        leader.proc.wait(10)
        exited = time.time()
    finally:
        os.kill(apiserver, signal.SIGCONT)
    assert leader.proc.returncode == 1
    assert "could not renew the Lease" in leader.log()
    wait_until(lambda: ready(standby), 40, "the standby to take over")
    spec = kube.get("leases", lease, namespace=NAMESPACE)["spec"]
    assert spec["holderIdentity"] == standby_id
    # The old leader was gone before its last renewal could expire, let alone be taken over.
    assert exited < wall(spec["acquireTime"])
