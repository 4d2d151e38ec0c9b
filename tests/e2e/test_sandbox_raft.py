"""`ovn-k8s-sandbox up --db-cluster 3`: the sandbox on a 3-member RAFT NB and SB (issue 16 item
4). Every component is given the three members; with the NB leader killed, a new pod is still
wired (watcher, CNI plugin through the agent, ovn-northd, ovn-controller) and reaches the first
pod; `down` leaves nothing, the cluster's members included."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.lab.proc import alive, read_pid
from sandbox.state import State
from tests.e2e.test_sandbox import assert_gone, curl, eventually, ok, pids_of, sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture
def state_dir() -> Iterator[str]:
    directory = f"/tmp/ok8s-sandbox-raft-{uuid.uuid4().hex[:8]}"
    try:
        yield directory
    finally:
        sandbox(directory, "down")

APP = """
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
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


def role(state: State, i: int) -> str:
    proc = subprocess.run(["ovs-appctl", "-t", f"{state.lab_dir}/central/nb{i}.ctl", "cluster/status",
                           "OVN_Northbound"], capture_output=True, text=True, timeout=10, check=False)
    return next((line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()
                 if line.startswith("Role:")), "")


def test_sandbox_on_a_raft_nb_survives_its_leader(state_dir: str) -> None:
    out = ok(sandbox(state_dir, "up", "--nodes", "2", "--db-cluster", "3", "--control-plane", "embedded"))
    assert "3-member RAFT" in out
    state = State.load(state_dir)
    assert state is not None and state.db_cluster == 3
    assert state.nb == ",".join(f"unix:{state.lab_dir}/central/nb{i}.sock" for i in (1, 2, 3))
    assert "already up" in ok(sandbox(state_dir, "up"))
    # every member runs, one of them leads; the watcher was given all three
    leaders = eventually(lambda: [i for i in (1, 2, 3) if role(state, i) == "leader"], what="an NB leader")
    cmdline = Path(f"/proc/{read_pid(f'{state.daemon_dir}/watcher.pid')}/cmdline").read_text()
    assert f"--ovn-nb={state.nb}" in cmdline.split("\0")
    ok(sandbox(state_dir, "apply", "-f", "-", "--wait", stdin=APP % 1))

    # the NB leader dies; a second pod is wired all the same and reaches the first
    pid = read_pid(f"{state.lab_dir}/central/nb{leaders[0]}.pid")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    ok(sandbox(state_dir, "apply", "-f", "-", "--wait", stdin=APP % 2, timeout=180))
    api = state.api()
    pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in api.list("pods", "shop")}
    assert set(pods) == {"app-0", "app-1"}
    assert eventually(lambda: curl(state.ns("pod-shop-app-0"), f"http://{pods['app-1']}:9000/") == "app-1",
                      what="app-0 -> app-1")
    assert [i for i in (1, 2, 3) if i != leaders[0] and role(state, i) == "leader"]

    pids = pids_of(state_dir)
    ok(sandbox(state_dir, "down"))
    assert_gone(state_dir, pids)
    assert not alive(pid)
