"""ovn-k8s-watcher driven by ovs-appctl on a real NB and API server: `status` of a serving
leader and of a standby, `vlog/set` at run time, and SIGTERM in both states (exit 0 within the
issue's 5 s, without the stop watchdog)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, wait_until, write_topology

pytestmark = pytest.mark.integration
NODES = {"node1": "10.244.0.0/24"}
STOP_BOUND = 5.0


def appctl(w: WatcherProcess, *args: str) -> str:
    """ovs-appctl against the watcher's control socket, found the way ovs-appctl -t finds it."""
    ctl = os.path.join(os.path.dirname(w.log_path), f"ovn-k8s-watcher.{w.pid}.ctl")
    wait_until(lambda: os.path.exists(ctl), 20, "the control socket")
    proc = subprocess.run(["ovs-appctl", "-t", ctl, *args], capture_output=True, text=True,
                          timeout=10, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def watchers(lab: Lab, kube: KubeApiServer, tmp_path) -> Iterator[list[WatcherProcess]]:
    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    write_topology(lab.nb, NODES)
    made = [WatcherProcess(str(tmp_path / name), nb=lab.nb, kubeconfig=kubeconfig, name=name)
            for name in ("a", "b")]
    try:
        yield made
    finally:
        for w in made:
            w.kill()


def test_status_of_leader_and_standby_and_sigterm_in_both(watchers: list[WatcherProcess],
                                                           kube: KubeApiServer) -> None:
    for i in range(5):
        kube.create("pods", {"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": f"p{i}", "namespace": "default"},
                             "spec": {"nodeName": "node1", "containers": [{"name": "c"}]}})
    a, b = watchers
    a.start()
    a.wait_ready(60)
    b.start()
    wait_until(lambda: "state: standby" in appctl(b, "status"), 30, "b to stand by")

    leader = appctl(a, "status")
    assert "state: serving" in leader and "synced: yes" in leader and "role: leader" in leader
    assert "pods: 5 (queued 0)" in leader and "(connected)" in leader
    standby = appctl(b, "status")
    assert "synced: no" in standby and "role: standby" in standby and "pods: 5" in standby

    assert appctl(a, "vlog/set", "watcher:file:dbg") == ""
    assert "watcher" in appctl(a, "vlog/list")

    for w in (b, a):                              # the standby, then the serving leader
        assert w.stop(signal.SIGTERM, timeout=STOP_BOUND) == 0
        log = w.current_log()
        assert "SIGTERM: stopping" in log and "exiting now" not in log


def test_sigterm_wins_while_an_nb_transaction_hangs(lab: Lab, kube: KubeApiServer,
                                                    tmp_path) -> None:
    """Serving, then the NB stops answering (a proxy swallows what the watcher sends) while
    pods are being written: SIGTERM still ends the watcher within 5 s."""
    from tests.e2e.test_nb_timeouts import StallingProxy

    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    write_topology(lab.nb, NODES)
    proxy = StallingProxy(lab.nb[len("unix:"):])
    w = WatcherProcess(str(tmp_path / "w"), nb=proxy.remote, kubeconfig=kubeconfig,
                       extra=["--timeout=60"])
    try:
        w.start()
        w.wait_ready(60)
        proxy.stall()
        for i in range(5):
            kube.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                 "metadata": {"name": f"p{i}", "namespace": "default"},
                                 "spec": {"nodeName": "node1", "containers": [{"name": "c"}]}})
        wait_until(lambda: "pods: 5" in appctl(w, "status"), 20, "the pods to be seen")
        status = w.stop(signal.SIGTERM, timeout=STOP_BOUND)
        log = w.current_log()
        assert status == 0, log[-2000:]
        assert "SIGTERM: stopping" in log and "a worker is still waiting for the NB" in log
        assert "exiting now" not in log
    finally:
        w.kill()
        proxy.close()
