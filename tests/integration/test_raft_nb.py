"""Clustered NB (issue 16 item 4): nothing written twice, nothing lost, across a failover.

1. A commit whose reply is lost (deterministic, through a proxy in front of a real NB): the
   proxy forwards a transaction, lets the server commit it, then drops the reply and the
   connection, as a RAFT leader that dies after committing does. python-ovs answers TRY_AGAIN
   and ovsdbapp re-runs the keyed engine's command: it must find the row by identity, not
   insert it again. With reconnection refused until the caller gives up (the transaction
   raised), the next apply must still find the rows (re-apply: no duplicate; key deleted: the
   row goes).
2. A 3-member RAFT NB and SB under pod and service churn (the real watcher, our API server,
   real ovn-northd and ovn-controller, every client given the three members): the NB leader
   is killed (SIGKILL) twice and restarted; minion-init and ovn-mesos-init (the list in the
   node's external_ids:ovn-nb) run during the first failover, the
   CNI plugin (waiting for the watcher's annotation) during the second; the watcher (never
   restarted) follows the leader; the final NB holds exactly the cluster's pod ports and
   service load balancers (no duplicate, none missing, none stale).
3. /healthz while the cluster has no leader (deterministic): the two followers stopped
   (SIGSTOP: their sockets still accept, nothing answers) and the leader killed. python-ovs'
   session to a stopped member is up, so "connected" would read true for as long as they
   stay stopped; the watcher must say it has no NB leader, then recover once they run again.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s.errors import ConnectionFailed
from ovn_k8s.nb import connection
from ovn_k8s.nb.keyed import KeyedRows, rows_by_ident
from ovn_k8s.nb.model import Row
from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab, Node
from sandbox.lab.forward import Forwarder
from sandbox.watcher_harness import WatcherProcess, differences, nb_pod_ports, wait_until
from tests.helpers import BIN, cli, master_init, minion_init, ok

pytestmark = pytest.mark.integration
LB = "Load_Balancer"


class ReplyDroppingProxy:
    """A unix socket in front of an NB server. Armed with `drop_next_reply()`, it forwards the
    client's next `transact` and the server's reply to it never arrives: everything the server
    sends from then on is swallowed, and once the reply has come from the server (the commit
    is done) both connections are closed. With `refuse`, new connections are closed at once."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="drop-", dir="/tmp")
        self.path = os.path.join(self.dir, "nb.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        self.armed = threading.Event()
        self.refuse = threading.Event()
        self.stop = threading.Event()
        self.dropped = 0                      # replies swallowed
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def remote(self) -> str:
        return f"unix:{self.path}"

    def drop_next_reply(self, *, refuse_reconnect: bool = False) -> None:
        if refuse_reconnect:
            self.refuse.set()
        self.armed.set()

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            if self.refuse.is_set():
                client.close()
                continue
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
            thread = threading.Thread(target=self._pump, args=(client, up), daemon=True)
            self.threads.append(thread)
            thread.start()

    @staticmethod
    def _messages(buf: str) -> tuple[list[dict[str, Any]], str]:
        decoder, out = json.JSONDecoder(), []
        while True:
            buf = buf.lstrip()
            try:
                msg, end = decoder.raw_decode(buf)
            except ValueError:
                return out, buf
            out.append(msg)
            buf = buf[end:]

    def _pump(self, client: socket.socket, up: socket.socket) -> None:
        inbound = outbound = ""
        waiting_for: Any = None              # the id of the transaction whose reply we drop
        try:
            while not self.stop.is_set():
                ready, _, _ = select.select([client, up], [], [], 0.1)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        up.sendall(data)
                        msgs, outbound = self._messages(outbound + data.decode())
                        for msg in msgs:
                            if waiting_for is None and self.armed.is_set() and msg.get("method") == "transact":
                                waiting_for = msg["id"]
                                self.armed.clear()
                        continue
                    msgs, inbound = self._messages(inbound + data.decode())
                    if waiting_for is None:
                        client.sendall(data)
                    elif any(m.get("id") == waiting_for and "result" in m for m in msgs):
                        self.dropped += 1
                        return                # committed; the client never hears of it
        finally:
            client.close()
            up.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.server.close()
        shutil.rmtree(self.dir)


@pytest.fixture
def proxy(lab: Lab) -> Iterator[ReplyDroppingProxy]:
    p = ReplyDroppingProxy(lab.nb[len("unix:"):])
    try:
        yield p
    finally:
        p.close()


def lb(name: str, vip: str) -> dict[tuple[str, str], Row]:
    return rows_by_ident([Row(LB, f"lb:{name}", f"service:{name}",
                              {"name": name, "protocol": "tcp", "vips": {f"{vip}:80": "10.244.1.5:8080"}})])


def lb_ids(lab: Lab) -> list[str]:
    """ovn-k8s/id of every load balancer, one entry per row (duplicates show twice)."""
    data = json.loads(lab.nbctl("--format=json", "--columns=external_ids", "list", LB))
    return sorted(dict(ext[1]).get("ovn-k8s/id", "") for (ext,) in data["data"])


def test_a_commit_whose_reply_was_lost_is_not_made_again(lab: Lab, proxy: ReplyDroppingProxy) -> None:
    api = connection.connect(proxy.remote, "OVN_Northbound", what="NB", timeout=10)
    try:
        engine = KeyedRows(api, timeout=10)      # a reconnection takes 1 s (python-ovs' least)
        engine.apply({"a": lb("a", "10.96.0.1")})
        # ovsdbapp re-runs the command after TRY_AGAIN, against what the NB holds by then
        proxy.drop_next_reply()
        out = engine.apply({"b": lb("b", "10.96.0.2"), "c": lb("c", "10.96.0.3")})
        assert proxy.dropped == 1 and not out.errors
        assert lb_ids(lab) == ["lb:a", "lb:b", "lb:c"]
        # the caller is told of the failure (no reconnection in time); the commit happened
        engine.timeout = 1.5
        proxy.drop_next_reply(refuse_reconnect=True)
        with pytest.raises(ConnectionFailed, match="timed out after 1.5 s"):
            engine.apply({"d": lb("d", "10.96.0.4"), "e": lb("e", "10.96.0.5"), "b": {}})
        assert proxy.dropped == 2 and lb_ids(lab) == ["lb:a", "lb:c", "lb:d", "lb:e"]
        proxy.refuse.clear()
        engine.timeout = 10
        # d again: found, not made twice; e deleted meanwhile: it goes although the cache
        # never heard of it; b (deleted by the lost commit) stays deleted
        engine.apply({"d": lb("d", "10.96.0.4"), "e": {}, "b": {}})
        assert lb_ids(lab) == ["lb:a", "lb:c", "lb:d"]
        assert not engine.get("e") and not engine.get("b")
    finally:
        connection.disconnect(api)


# -- 2. a 3-member RAFT NB and SB under churn, its leader killed twice ------------------------------
PLUGIN = os.path.join(BIN, "ovn-k8s-cni-overlay")


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def endpoint_slice(name: str, ip: str) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}


class Churn(threading.Thread):
    """Pods created on both nodes and some deleted, services with endpoints created and some
    deleted, paced, until stopped (or a cap is reached)."""

    def __init__(self, kube: KubeApiServer, cap: int = 400) -> None:
        super().__init__(daemon=True)
        self.kube, self.cap, self.done = kube, cap, threading.Event()
        self.error: BaseException | None = None
        self.pods = 0

    def run(self) -> None:
        try:
            for i in range(self.cap):
                if self.done.is_set():
                    return
                self.kube.create("pods", pod(f"p{i}", f"node{1 + i % 2}"))
                if i % 4 == 3:
                    self.kube.delete("pods", f"p{i - 2}")
                if i % 10 == 0:
                    self.kube.create("services", service(f"s{i}"))
                    self.kube.create("endpointslices", endpoint_slice(f"s{i}", f"10.244.1.{5 + i % 200}"))
                if i % 30 == 20:
                    self.kube.delete("services", f"s{i - 20}")
                    self.kube.delete("endpointslices", f"s{i - 20}-abc")
                self.pods = i + 1
                self.done.wait(0.02)          # pacing: ~50 changes a second
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def stop(self) -> None:
        self.done.set()
        self.join(30)
        assert self.error is None, self.error


def want_lbs(kube: KubeApiServer) -> dict[str, dict[str, str]]:
    out = {}
    for svc in kube.list("services"):
        name = svc["metadata"]["name"]
        if name == "kubernetes":
            continue
        backend = next(s["endpoints"][0]["addresses"][0] for s in kube.list("endpointslices")
                       if s["metadata"]["labels"]["kubernetes.io/service-name"] == name)
        out[f"service:default/{name}:tcp:cluster"] = {f"{svc['spec']['clusterIP']}:80": f"{backend}:8080"}
    return out


def service_lbs(lab: Lab) -> dict[str, dict[str, str]]:
    """Our services' load balancers: ovn-k8s/id -> vips; a duplicate identity fails."""
    data = json.loads(lab.nbctl("--format=json", "--columns=vips,external_ids", "list", LB))
    out: dict[str, dict[str, str]] = {}
    for vips, ext in data["data"]:
        ids = dict(ext[1])
        if ids.get("ovn-k8s/owner", "").startswith("service:"):
            assert ids["ovn-k8s/id"] not in out, f"duplicate load balancer {ids['ovn-k8s/id']}"
            out[ids["ovn-k8s/id"]] = dict(vips[1])
    return out


def cni_add(lab: Lab, node: Node, name: str, api_url: str) -> subprocess.CompletedProcess[str]:
    """ovn-k8s-cni-overlay ADD for pod default/<name> on `node`, as a runtime runs it."""
    netns = lab.add_netns(name)
    conf = {"cniVersion": "1.0.0", "name": "ovn-k8s", "type": "ovn-k8s-cni-overlay", "ovsdb": node.ovs_db,
            "k8s_api_server": api_url, "log_file": f"{lab.dir}/cni-{node.name}.log", "annotation_timeout": 30}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"sandbox-{name}", "CNI_NETNS": f"/run/netns/{netns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "PATH": os.environ["PATH"],
           "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={name}"}
    return subprocess.run(["ip", "netns", "exec", node.netns, PLUGIN], input=json.dumps(conf), env=env,
                          capture_output=True, text=True, timeout=90, check=False)


def kill_leader(lab: Lab) -> int:
    leader = lab.leader("nb")
    lab.kill_member("nb", leader)
    return leader


@pytest.mark.parametrize("lab", [3], indirect=True)   # a 3-member RAFT NB and SB
def test_raft_nb_leader_killed_twice_under_churn(lab: Lab, kube: KubeApiServer, tmp_path) -> None:
    assert lab.nb.count(",") == 2                  # every client below is given all three members
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    ok(master_init(node1, "10.244.1.0/24"))
    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    watcher = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig).start()
    fwd = Forwarder(lab.ns("central"), lab.central_ip, kube.port)
    churn = Churn(kube)
    try:
        watcher.wait_ready()
        churn.start()
        wait_until(lambda: churn.pods >= 60, 30, "churn under way")

        # 1: the leader dies mid-churn; minion-init (a topology command) runs during the
        # failover, and ovn-mesos-init with the list in external_ids:ovn-nb, as on an agent
        first = kill_leader(lab)
        ok(minion_init(node2, "10.244.2.0/24"))
        node2.vsctl("set", "open_vswitch", ".", f"external_ids:ovn-nb={lab.nb}")
        ok(cli(node2, "ovn-mesos-init", "tenant-init", "--tenant-name=coke"))
        ok(cli(node2, "ovn-mesos-init", "network-init", "--tenant-name=coke", "--network-name=coke1",
               "--subnet=192.168.1.0/24"))
        lab.restart_member("nb", first)
        wait_until(lambda: churn.pods >= 150, 30, "more churn")

        # 2: the new leader dies; the watcher annotates a new pod and the CNI plugin plumbs it
        second = kill_leader(lab)
        kube.create("pods", pod("cni", "node1"))
        added = cni_add(lab, node1, "cni", fwd.url)
        assert added.returncode == 0, added.stdout + added.stderr
        lab.wait_port_up("default_cni")            # ovn-controller bound it, northd said so
        lab.restart_member("nb", second)
        churn.stop()

        # the NB ends equal to the cluster: every pod's port exactly once, every service's
        # load balancer exactly once, nothing stale; the watcher never restarted
        lab.leader("nb")
        wait_until(lambda: not differences(kube.list("pods"), lab.live_remote("nb")), 60,
                   "the NB's pod ports to match the cluster", interval=0.2)
        wait_until(lambda: service_lbs(lab) == want_lbs(kube), 30,
                   "the NB's load balancers to match the cluster", interval=0.2)
        assert watcher.proc is not None and watcher.proc.poll() is None
        assert len(nb_pod_ports(lab.live_remote("nb"))) == len(kube.list("pods"))
    finally:
        churn.done.set()
        fwd.close()
        watcher.kill()


# -- 3. /healthz while no member leads ---------------------------------------------------------------
@pytest.mark.parametrize("lab", [3], indirect=True)
def test_healthz_reports_no_nb_leader_while_none_leads(lab: Lab, kube: KubeApiServer, tmp_path) -> None:
    kubeconfig = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(kubeconfig)
    watcher = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig).start()
    stopped: list[int] = []
    try:
        watcher.wait_ready()
        assert watcher.get("/healthz") == (200, "ok\n")
        leader = lab.leader("nb")
        for i in lab.members:
            pid = lab.member_pid("nb", i)
            if i != leader and pid is not None:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        lab.kill_member("nb", leader)
        # the IDL moves on to a stopped member: its connection is accepted and never answered
        no_leader = (503, f"NB: not connected to the NB leader (members: {lab.nb})\n")
        wait_until(lambda: watcher.get("/healthz") == no_leader, 20, "/healthz: no NB leader")
        for _ in range(10):                        # and it stays so: no member can lead
            assert watcher.get("/healthz") == no_leader
            assert watcher.metric("ovnk8s_watcher_nb_connected") == 0
            time.sleep(0.1)
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped.clear()
        lab.leader("nb")                           # the two elect one
        wait_until(lambda: watcher.get("/healthz") == (200, "ok\n"), 30, "/healthz ok again")
        assert watcher.metric("ovnk8s_watcher_nb_connected") == 1
        assert watcher.get("/readyz") == (200, "ok: leader\n")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        watcher.kill()
