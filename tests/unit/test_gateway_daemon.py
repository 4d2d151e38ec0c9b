"""The gateway helper's event -> flows loop without OVS: services come from our in-process API
server (or as watch events), and `ovs-ofctl` is replaced by `FakeBridge`, a flow table that
executes the bundle script the way OVS does (all or nothing; delete by cookie, then add). The
tests assert what ends up in that table, the metrics and /healthz."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from gateway_helper import daemon
from gateway_helper.daemon import GatewayHelper
from gateway_helper.inputs import Inputs
from gateway_helper.metrics import GatewayMetrics, MetricsServer
from gateway_helper.services import parse
from ovn_k8s.errors import ConfigError, HostError
from ovn_k8s.kube.rest import ConnectionParams, KubeClient, resource_path
from ovn_k8s.kube.watch import Event, StopEvent, Synced, list_then_watch
from ovn_k8s.openflow import COOKIE, BridgePorts, FlowApplier, FlowApplyError, gateway_flows
from sandbox.kubeapi import KubeApiServer

HOST = "192.0.2.50"
INPUTS = Inputs(host_ip=HOST, ports=BridgePorts(nic=1, patch=2))
OURS = f"cookie={COOKIE:#x},"
FOREIGN = "cookie=0x99,table=0,priority=200,udp,in_port=LOCAL,tp_dst=9 actions=drop"


class FakeBridge:
    """A flow table behind a fake `ovs-ofctl --bundle add-flows BR -`."""

    def __init__(self, flows: Sequence[str] = ()) -> None:
        self.flows: set[str] = set(flows)
        self.calls = 0
        self.fail_with: str | None = None
        self.lock = threading.Lock()

    def __call__(self, argv: Sequence[str], stdin: str, timeout: float) -> tuple[int, str]:
        assert list(argv) == ["ovs-ofctl", "--bundle", "add-flows", "breth1", "-"]
        with self.lock:
            self.calls += 1
            if self.fail_with:
                return 1, f"ovs-ofctl: {self.fail_with}\n"
            table = set(self.flows)
            for line in stdin.splitlines():
                verb, _, rest = line.partition(" ")
                if verb == "delete":
                    cookie = rest.removeprefix("cookie=").removesuffix("/-1")
                    table = {f for f in table if not f.startswith(f"cookie={cookie},")}
                elif verb == "add":
                    table.add(rest)
                else:
                    return 1, f"ovs-ofctl: -:1: unknown command {verb}\n"
            self.flows = table  # all at once, like a bundle commit
            return 0, ""

    def ours(self) -> set[str]:
        with self.lock:
            return {f for f in self.flows if f.startswith(OURS)}


def make_helper(bridge: FakeBridge, *, read_inputs: Callable[[], Inputs] = lambda: INPUTS,
                resync: float = 3600.0, poll: float = 0.05) -> GatewayHelper:
    return GatewayHelper(read_inputs=read_inputs, zone=64000, resync_interval=resync,
                         poll_interval=poll, metrics=GatewayMetrics("node1"),
                         applier=FlowApplier("breth1", cookie=COOKIE, runner=bridge))


def expected(*objs: dict[str, Any]) -> set[str]:
    return set(gateway_flows([parse(o) for o in objs], host_ip=HOST,
                             ports=INPUTS.ports, zone=64000))


def nodeport(name: str, node_port: int, *, proto: str = "TCP") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": name},
                     "ports": [{"port": 80, "protocol": proto, "nodePort": node_port}]}}


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def kubeapi() -> Iterator[KubeApiServer]:
    server = KubeApiServer(start_resource_version=1000, bookmark_interval=0.1).start()
    try:
        yield server
    finally:
        server.stop()


class Running:
    """The helper's two threads, as the daemon runs them, stopped at teardown."""

    def __init__(self, helper: GatewayHelper, server: KubeApiServer) -> None:
        self.helper = helper
        self.stop = StopEvent()
        self.client = KubeClient(ConnectionParams(server=server.url), timeout=5)

        def watch() -> None:
            for item in list_then_watch(self.client, resource_path("services"), stop=self.stop):
                helper.handle(item)

        self.threads = [threading.Thread(target=watch, daemon=True),
                        threading.Thread(target=helper.run, daemon=True)]
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.helper.stop()
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)
            assert not t.is_alive()
        self.client.close()


@pytest.fixture
def running() -> Iterator[Callable[[GatewayHelper, KubeApiServer], Running]]:
    started: list[Running] = []

    def start(helper: GatewayHelper, server: KubeApiServer) -> Running:
        started.append(Running(helper, server))
        return started[-1]

    yield start
    for r in started:
        r.close()


def test_flows_follow_the_services_and_leave_other_cookies_alone(
        kubeapi: KubeApiServer, running: Callable[[GatewayHelper, KubeApiServer], Running]) -> None:
    web = kubeapi.create("services", nodeport("web", 30080), namespace="default")
    stale = f"{OURS}table=0,priority=100,tcp,in_port=1,nw_dst={HOST},tp_dst=31999 actions=drop"
    bridge = FakeBridge([FOREIGN, stale])
    helper = make_helper(bridge)
    # Before the first list nothing is touched: the previous helper's flows keep working.
    assert helper.sync_once() is None
    assert bridge.calls == 0 and bridge.ours() == {stale}
    assert helper.health() == (False, "waiting for the first list of services")

    running(helper, kubeapi)
    wait_until(lambda: bridge.ours() == expected(web), "the NodePort's flows")
    assert FOREIGN in bridge.flows
    wait_until(lambda: helper.health() == (True, "ok"), "healthy")

    lb = kubeapi.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "protocol": "UDP"}]}},
        namespace="default")
    lb = kubeapi.patch("services", "lb", {"status": {"loadBalancer": {"ingress": [
        {"ip": "192.0.2.100"}]}}}, namespace="default")
    wait_until(lambda: bridge.ours() == expected(web, lb), "the load balancer's flows")
    assert any("arp_tpa=192.0.2.100" in f for f in bridge.ours())
    assert any("udp,in_port=1,nw_dst=192.0.2.100,tp_dst=443" in f for f in bridge.ours())

    kubeapi.delete("services", "web", namespace="default")
    wait_until(lambda: bridge.ours() == expected(lb), "the NodePort's flows to go")
    assert not any("tp_dst=30080" in f for f in bridge.ours())
    assert FOREIGN in bridge.flows
    m = helper.metrics
    assert m.services.value() == 1 and m.services_with_flows.value() == 1
    assert m.service_events.value(type="deleted") == 1
    assert m.flow_replacements.value() == bridge.calls >= 3
    assert m.errors.value(stage="apply") == 0


def test_an_unchanged_table_is_applied_once_and_again_only_when_forced() -> None:
    bridge = FakeBridge([FOREIGN])
    helper = make_helper(bridge)
    svc = nodeport("web", 30080)
    helper.handle(Event("ADDED", svc))
    helper.handle(Synced("5", initial=True, count=1))
    assert helper.sync_once().applied  # type: ignore[union-attr]
    assert not helper.sync_once().applied  # type: ignore[union-attr]
    assert bridge.calls == 1
    # Someone deletes our flows: an ordinary pass does not notice (nothing is read back) ...
    bridge.flows = {FOREIGN}
    helper.sync_once()
    assert bridge.ours() == set()
    # ... the periodic full resync repairs it.
    helper.sync_once(force=True)
    assert bridge.ours() == expected(svc) and FOREIGN in bridge.flows
    m = helper.metrics
    assert (m.flow_replacements.value(), m.flow_replacements_skipped.value(),
            m.flow_resyncs.value()) == (2, 2, 1)
    # A MODIFIED event that changes nothing the flows depend on costs no ovs-ofctl call.
    helper.handle(Event("MODIFIED", {**svc, "metadata": {**svc["metadata"], "labels": {"a": "b"}}}))
    helper.sync_once()
    assert bridge.calls == 2


def test_a_failed_apply_leaves_the_table_and_is_retried_at_the_next_pass() -> None:
    bridge = FakeBridge([FOREIGN])
    helper = make_helper(bridge)
    helper.handle(Synced("1", initial=True, count=0))
    helper.sync_once()
    before = set(bridge.flows)
    helper.handle(Event("ADDED", nodeport("web", 30080)))
    bridge.fail_with = "breth1: failed to connect to socket (Connection refused)"
    with pytest.raises(FlowApplyError, match=r"^ovs-ofctl could not replace the flows on breth1: "
                                             r"ovs-ofctl: breth1: failed to connect"):
        helper.sync_once()
    assert bridge.flows == before
    assert helper.metrics.errors.value(stage="apply") == 1
    assert not helper._pass(force=False)
    assert helper.health()[0] is False and "failed to connect" in helper.health()[1]
    # ovs-vswitchd comes back (a restart empties its flow table): the next pass re-applies
    # even though the wanted set did not change.
    bridge.fail_with = None
    bridge.flows = {FOREIGN}
    assert helper._pass(force=False)
    assert bridge.ours() == expected(nodeport("web", 30080))
    assert helper.health() == (True, "ok")


def test_missing_inputs_keep_the_flows_in_place_and_count_as_errors() -> None:
    bridge = FakeBridge()
    state = {"inputs": INPUTS}

    def read() -> Inputs:
        if state["inputs"] is None:
            raise HostError("patch port k8s-patch-breth1-br-int is not a port of OVS bridge breth1")
        return state["inputs"]  # type: ignore[return-value]

    helper = make_helper(bridge, read_inputs=read)
    helper.handle(Synced("1", initial=True, count=0))
    helper.sync_once()
    applied = bridge.ours()
    state["inputs"] = None
    assert not helper._pass(force=True)
    assert bridge.ours() == applied
    assert helper.metrics.errors.value(stage="inputs") == 1
    assert helper.health() == (False, "patch port k8s-patch-breth1-br-int is not a port of OVS "
                                      "bridge breth1")
    # The NIC comes back with another ofport: the table follows.
    state["inputs"] = Inputs(host_ip=HOST, ports=BridgePorts(nic=5, patch=2))
    assert helper._pass(force=False)
    assert f"{OURS}table=0,priority=10,in_port=LOCAL actions=output:5" in bridge.ours()


def test_the_loop_resyncs_on_its_own_and_stops_promptly() -> None:
    bridge = FakeBridge([FOREIGN])
    helper = make_helper(bridge, resync=0.2, poll=0.05)
    helper.handle(Synced("1", initial=True, count=0))
    thread = threading.Thread(target=helper.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: bridge.ours() == expected(), "the first replacement")
        bridge.flows = {FOREIGN, "cookie=0x6b38736777,table=0,priority=1,in_port=9 actions=drop"}
        wait_until(lambda: bridge.ours() == expected(), "the resync to repair the drift")
        assert helper.metrics.flow_resyncs.value() >= 1
        assert FOREIGN in bridge.flows
    finally:
        helper.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_a_watch_that_cannot_go_on_ends_the_loop() -> None:
    helper = make_helper(FakeBridge())
    thread = threading.Thread(target=helper.run, daemon=True)
    thread.start()
    helper.fail("watching services at http://127.0.0.1:1: 404 Not Found")
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert helper.health() == (False, "watching services at http://127.0.0.1:1: 404 Not Found")


def test_metrics_and_healthz_over_http() -> None:
    bridge = FakeBridge()
    helper = make_helper(bridge)
    server = MetricsServer("127.0.0.1:0", helper.metrics, helper.health)
    server.start()
    base = "http://{}:{}".format(*server.address)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert err.value.code == 503
        assert err.value.read().decode() == "waiting for the first list of services\n"
        helper.handle(Event("ADDED", nodeport("web", 30080)))
        helper.handle(Synced("1", initial=True, count=1))
        helper.sync_once()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert (resp.status, resp.read()) == (200, b"ok\n")
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = resp.read().decode()
    finally:
        server.stop()
    lines = text.splitlines()
    assert "# TYPE ovn_k8s_gateway_helper_flow_replacements_total counter" in lines
    assert 'ovn_k8s_gateway_helper_flow_replacements_total{node="node1"} 1' in lines
    assert f'ovn_k8s_gateway_helper_flows{{node="node1"}} {len(expected(nodeport("web", 30080)))}' \
        in lines
    assert 'ovn_k8s_gateway_helper_services{node="node1"} 1' in lines
    assert 'ovn_k8s_gateway_helper_service_events_total{node="node1",type="added"} 1' in lines
    assert 'ovn_k8s_gateway_helper_errors_total{node="node1",stage="apply"} 0' in lines
    assert 'ovn_k8s_gateway_helper_services_synced{node="node1"} 1' in lines
    # Every sample belongs to a declared family.
    families = {ln.split()[2] for ln in lines if ln.startswith("# TYPE")}
    assert all(ln.split("{")[0].split()[0] in families for ln in lines if not ln.startswith("#"))


def test_metrics_address_errors_are_one_line() -> None:
    helper = make_helper(FakeBridge())
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        MetricsServer("localhost", helper.metrics, helper.health)
    first = MetricsServer("127.0.0.1:0", helper.metrics, helper.health)
    try:
        with pytest.raises(ConfigError, match=r"cannot listen on 127.0.0.1:\d+: Address already"):
            MetricsServer(f"127.0.0.1:{first.address[1]}", helper.metrics, helper.health)
    finally:
        first.stop()


def cli(*args: str, rundir: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    env.update(OVN_K8S_CONFIG="/dev/null", OVS_RUNDIR=rundir, OVS_LOGDIR=rundir)
    return subprocess.run([sys.executable, "-m", "gateway_helper", *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)


def test_command_line_errors_are_one_line(tmp_path: Any) -> None:
    usage = cli("--physical-interface", "eth1", rundir=str(tmp_path))
    assert usage.returncode == 2 and "--physical-bridge" in usage.stderr
    for args, message in [
        (("--physical-ip", "2001:db8::1"), "--physical-ip: '2001:db8::1' is not an IPv4 address"),
        (("--ovs-db", f"unix:{tmp_path}/nothing.sock"), "local OVS database"),
    ]:
        proc = cli("--physical-bridge", "breth1", "--physical-interface", "eth1", *args,
                   rundir=str(tmp_path))
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ovn-k8s-gateway-helper: error: "), lines
        assert message in lines[0]
    assert daemon.PROG == "ovn-k8s-gateway-helper"

