"""ovn-k8s-gateway-helper on real OVS and OVN: one NIC shared by the host and the gateway router.

node1 is master and gateway: the outside network gives it eth1 with the host's address
192.0.2.50, `nics-to-bridge eth1` moves that address to breth1, `gateway-init
--bridge-interface breth1` gives GR_node1 the same MAC and address. node2 is a minion. Pods on
both nodes serve HTTP; the host serves "ssh" on 192.0.2.50:22 and another TCP service on port
31000, inside the NodePort range. The helper runs as a real process in node1's namespace and
reads services from our in-process API server through a Forwarder. Every claim is checked with
real packets from the outside namespace and with the flows `ovs-ofctl` dumps.

Load balancers are programmed in the NB with ovn-nbctl, as the services controller does
(`<physical ip>:<nodePort>` on GR_node1, external VIPs on the router), so these tests depend on
the helper alone.

Userspace datapath pitfall: a NIC in a netdev bridge is read with an AF_PACKET socket, so the
node's kernel also receives every frame on eth1 (with the kernel datapath it would not). Since
192.0.2.50 is a local address of the node, the kernel would answer the router's connections
with RSTs. rp_filter=1 on eth1 makes the kernel drop those copies (their source routes via
breth1), as the kernel datapath's rx handler would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway_helper.services import parse
from ovn_k8s.nb import connection
from ovn_k8s.openflow import COOKIE, BridgePorts, FlowApplier, FlowApplyError, gateway_flows
from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab, Node, Pod
from sandbox.lab.forward import Forwarder
from tests.helpers import BIN, cli, gateway_init, master_init, minion_init, ok
from watcher.services import ServiceInput, ServiceReconciler

pytestmark = pytest.mark.e2e

OUTSIDE = "192.0.2.1"
HOST_IP = "192.0.2.50"
LB_IP = "192.0.2.100"
METRICS = "127.0.0.1:9476"
FOREIGN = "cookie=0x99,table=0,priority=200,udp,in_port=LOCAL,tp_dst=9 actions=drop"
NS = "default"


# --- the cluster -----------------------------------------------------------------------------
@dataclass
class Cluster:
    lab: Lab
    node1: Node
    node2: Node
    pods: list[Pod]
    api: KubeApiServer
    url: str  # the API server as node1 sees it
    outside_log: str

    @property
    def out(self) -> str:
        return self.lab.ns("out")

    def get(self, url: str, timeout: float = 3) -> str | None:
        return self.lab.http_get(self.out, url, timeout=timeout)

    def ofport(self, iface: str) -> int:
        return int(self.node1.vsctl("get", "interface", iface, "ofport"))

    def ports(self) -> BridgePorts:
        return BridgePorts(nic=self.ofport("eth1"), patch=self.ofport("k8s-patch-breth1-br-int"))

    def expected(self) -> set[str]:
        """The flows the helper must keep for the services the API server holds now."""
        services = [parse(o) for o in self.api.list("services")]
        return set(gateway_flows(services, host_ip=HOST_IP, ports=self.ports(), zone=64000))

    def flows(self, cookie: str = f"{COOKIE:#x}/-1") -> set[str]:
        """Flows on breth1, written the way flows.py writes them (table always given)."""
        out = self.node1.ofctl("--no-names", "--no-stats", "dump-flows", "breth1",
                               f"cookie={cookie}")
        found = set()
        for line in out.splitlines():
            m = re.match(r"^\s*cookie=(0x[0-9a-f]+), (?:table=(\d+), )?(priority=.*)$", line)
            if m:
                found.add(f"cookie={m[1]},table={m[2] or 0},{m[3]}")
        return found

    def add_nodeport(self, name: str, node_port: int, *, protocol: str = "TCP") -> dict[str, Any]:
        svc = self.api.create("services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [
                {"port": 80, "targetPort": 8080, "protocol": protocol, "nodePort": node_port}]}},
            namespace=NS)
        self.add_lb(name, f"{HOST_IP}:{node_port}", protocol.lower())
        return svc

    def add_lb(self, name: str, vip: str, protocol: str = "tcp") -> None:
        backends = ",".join(f"{p.ip}:8080" for p in self.pods)
        self.lab.nbctl("lb-add", name, vip, backends, protocol)
        self.lab.nbctl("lr-lb-add", "GR_node1", name)
        self.lab.wait_hv()

    def delete_service(self, name: str) -> None:
        self.api.delete("services", name, namespace=NS)
        self.lab.nbctl("lb-del", name)
        self.lab.wait_hv()


@pytest.fixture
def cluster(lab: Lab) -> Iterator[Cluster]:
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    node1.exec(["ip", "addr", "add", f"{HOST_IP}/24", "dev", "eth1"])
    ok(master_init(node1))
    ok(minion_init(node2, "10.244.2.0/24"))
    ok(cli(node1, "ovn-k8s-util", "nics-to-bridge", "eth1"))
    node1.exec(["sysctl", "-qw", "net.ipv4.conf.eth1.rp_filter=1"])  # see the module docstring
    ok(gateway_init(node1, f"{HOST_IP}/24", "--bridge-interface=breth1", f"--default-gw={OUTSIDE}"))
    pods = [lab.add_pod(node, f"pod{i}", cidr=f"10.244.{i}.10/24", gateway=f"10.244.{i}.1",
                        mac=f"0a:58:0a:f4:0{i}:0a", switch=node.name)
            for i, node in ((1, node1), (2, node2))]
    for pod in pods:
        lab.wait_port_up(pod.name)
        lab.start_http(pod.netns, 8080, pod.name)
    lab.start_http(node1.netns, 22, "host-ssh", text="host-ssh")
    lab.start_http(node1.netns, 31000, "host-31000", text="host-31000")
    outside_log = lab.start_http(lab.ns("out"), 8080, "outside")
    lab.wait_hv()
    with KubeApiServer(bookmark_interval=1.0) as api, \
            Forwarder(lab.ns("central"), lab.central_ip, api.port) as fwd:
        yield Cluster(lab=lab, node1=node1, node2=node2, pods=pods, api=api, url=fwd.url,
                      outside_log=outside_log)


# --- the helper process ------------------------------------------------------------------------
class Helper:
    """ovn-k8s-gateway-helper in node1's namespace; stopped by PID (also by lab.down(), which
    stops every pid file under the lab's directory)."""

    def __init__(self, c: Cluster, *extra: str) -> None:
        self.c = c
        d = c.node1.dir
        self.pidfile, self.log = f"{d}/gateway-helper.pid", f"{d}/gateway-helper.log"
        argv = ["ip", "netns", "exec", c.node1.netns, os.path.join(BIN, "ovn-k8s-gateway-helper"),
                "--physical-bridge=breth1", "--physical-interface=eth1", "--node-name=node1",
                f"--ovs-db={c.node1.ovs_db}", f"--k8s-api-server={c.url}", "--log-level=debug",
                f"--log-file={self.log}", f"--pidfile={self.pidfile}",
                f"--metrics-address={METRICS}", *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
        env.update(c.node1.env, OVN_K8S_CONFIG="/dev/null")  # OVS_RUNDIR: ovs-ofctl finds breth1
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)

    def logs(self) -> str:
        try:
            with open(self.log, encoding="utf-8") as f:
                return f.read()[-4000:]
        except FileNotFoundError:
            return "(no log)"

    def eventually(self, predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"the helper exited ({self.proc.returncode}) while waiting "
                                     f"for {what}: {self.proc.stderr.read()}\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; helper log:\n{self.logs()}")
            time.sleep(0.1)

    def converged(self) -> None:
        self.eventually(lambda: self.c.flows() == self.c.expected(), "the flows to converge")

    def http(self, path: str) -> tuple[int, str]:
        proc = self.c.node1.exec(["curl", "-s", "-m", "5", "-w", "\n%{http_code}",
                                  f"http://{METRICS}{path}"], check=False)
        body, _, code = proc.stdout.rpartition("\n")
        return int(code or 0), body.strip()

    def metric(self, name: str, labels: str = "") -> float:
        _, text = self.http("/metrics")
        sep = "," if labels else ""
        m = re.search(rf'^ovn_k8s_gateway_helper_{name}{{node="node1"{sep}{labels}}} (\S+)$', text,
                      re.M)
        assert m, f"no metric {name} in:\n{text}"
        return float(m[1])

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def helpers() -> Iterator[Callable[..., Helper]]:
    started: list[Helper] = []

    def start(c: Cluster, *extra: str) -> Helper:
        started.append(Helper(c, *extra))
        return started[-1]

    yield start
    for h in started:
        if h.proc.poll() is None:
            h.kill()
        if h.proc.stderr:
            h.proc.stderr.close()


def answers(c: Cluster, url: str, tries: int = 30) -> set[str]:
    """What `url` answers from outside over `tries` new connections (None for a failure)."""
    return {c.get(url, timeout=2) or "" for _ in range(tries)}


def nodeport_backends(c: Cluster, port: int) -> set[str]:
    """Both pods answer, on different connections (the load balancer hashes per connection)."""
    seen: set[str] = set()
    for _ in range(40):
        seen.add(c.get(f"http://{HOST_IP}:{port}/") or "")
        if {"hello-from-pod1", "hello-from-pod2"} <= seen:
            break
    return seen


# --- the tests ---------------------------------------------------------------------------------
def test_one_nic_serves_nodeports_host_services_and_pod_egress(
        cluster: Cluster, helpers: Callable[..., Helper]) -> None:
    c = cluster
    c.add_nodeport("web", 30080)
    c.node1.ofctl("add-flow", "breth1", FOREIGN)
    h = helpers(c, "--flow-resync-interval=1")
    h.converged()
    assert FOREIGN in c.flows("0x99/-1")
    ports = c.ports()
    assert f"cookie={COOKIE:#x},table=0,priority=100,tcp,in_port={ports.nic},nw_dst={HOST_IP}," \
           f"tp_dst=30080 actions=ct(commit,zone=64000),output:{ports.patch}" in c.flows()

    # NodePort -> pods on both nodes; host services on the same address stay the host's.
    assert nodeport_backends(c, 30080) >= {"hello-from-pod1", "hello-from-pod2"}
    assert answers(c, f"http://{HOST_IP}:22/", 5) == {"host-ssh"}
    assert answers(c, f"http://{HOST_IP}:31000/", 5) == {"host-31000"}
    assert c.lab.ping(c.out, HOST_IP, count=2)
    # Pods reach the outside through the router's SNAT, and the replies come back.
    for pod in c.pods:
        assert c.lab.http_get(pod.netns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"
        assert c.lab.ping(pod.netns, OUTSIDE, count=2), pod.name
    with open(c.outside_log, encoding="utf-8") as f:
        assert {line.split()[0] for line in f if "GET /" in line} == {HOST_IP}
    # The host's own connections out are not the router's.
    assert c.lab.http_get(c.node1.netns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"

    # An external IP in the outside subnet: the outside ARPs for it, the router answers (its
    # load balancer has the default neighbor_responder) and serves it.
    c.api.create("services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": NS},
        "spec": {"selector": {"app": "web"}, "externalIPs": [LB_IP],
                 "ports": [{"port": 80, "targetPort": 8080}]}}, namespace=NS)
    c.add_lb("ext", f"{LB_IP}:80")
    h.converged()
    assert {"hello-from-pod1", "hello-from-pod2"} & answers(c, f"http://{LB_IP}/", 5)
    c.delete_service("ext")

    # Drift: someone deletes our flows; the periodic resync puts them back, and other
    # cookies survive every resync.
    c.node1.ofctl("del-flows", "breth1", f"cookie={COOKIE:#x}/-1")
    resyncs = h.metric("flow_resyncs_total")
    h.converged()
    h.eventually(lambda: h.metric("flow_resyncs_total") >= resyncs + 2, "two more resyncs")
    assert FOREIGN in c.flows("0x99/-1")
    assert "priority=0 actions=NORMAL" in c.node1.ofctl("--no-stats", "dump-flows", "breth1")

    # A second service appears, then the first goes: its flows go, the NodePort stops
    # answering, the host's port 31000 (in the NodePort range) and port 22 still do.
    c.add_nodeport("dns", 30053, protocol="UDP")
    h.converged()
    assert any("udp," in f and "tp_dst=30053" in f for f in c.flows())
    # (The router keeps web's load balancer a little longer: the flows alone decide.)
    c.api.delete("services", "web", namespace=NS)
    h.converged()
    assert not any("tp_dst=30080" in f for f in c.flows())
    assert answers(c, f"http://{HOST_IP}:30080/", 3) == {""}
    c.lab.nbctl("lb-del", "web")
    assert answers(c, f"http://{HOST_IP}:31000/", 3) == {"host-31000"}
    assert answers(c, f"http://{HOST_IP}:22/", 3) == {"host-ssh"}
    assert FOREIGN in c.flows("0x99/-1")

    # /healthz and /metrics.
    assert h.http("/healthz") == (200, "ok")
    assert h.metric("services") == 1 and h.metric("services_with_flows") == 1
    assert h.metric("service_events_total", 'type="deleted"') == 2  # ext, web
    assert h.metric("flows") == len(c.expected())
    assert h.metric("flow_replacements_total") >= 4
    assert h.metric("errors_total", 'stage="apply"') == 0
    assert h.metric("errors_total", 'stage="inputs"') == 0

    # SIGTERM: exit 0, the pid file goes, the flows stay (traffic flows during a restart).
    assert h.terminate() == 0, h.logs()
    assert not os.path.exists(h.pidfile)
    assert c.flows() == c.expected()


def slices(c: Cluster, svc: dict[str, Any]) -> list[dict[str, Any]]:
    """The EndpointSlice the endpoint controller would make: both pods, every port by name."""
    name = svc["metadata"]["name"]
    return [{"metadata": {"namespace": NS, "name": f"{name}-1",
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [p.ip], "conditions": {"ready": True}} for p in c.pods],
             "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]}
                       for p in svc["spec"]["ports"]]}]


def test_killed_helper_restarts_into_the_right_flows_while_services_change(
        cluster: Cluster, helpers: Callable[..., Helper]) -> None:
    """With the real services controller writing the NB (ServiceReconciler): NodePorts on
    GR_node1's physical address, external IPs with neighbor_responder=none (routed, not ARPed)."""
    c = cluster
    nb = connection.connect(c.lab.nb, "OVN_Northbound", what="NB", timeout=10)
    try:
        rec = ServiceReconciler(nb, timeout=10)

        def publish(svc: dict[str, Any], *, deleted: bool = False) -> None:
            key = f"{NS}/{svc['metadata']['name']}"
            rec.reconcile({key: ServiceInput(None) if deleted else ServiceInput(svc, slices(c, svc))})
            c.lab.wait_hv()

        def create(name: str, spec: dict[str, Any]) -> dict[str, Any]:
            svc = c.api.create("services", {"apiVersion": "v1", "kind": "Service",
                                            "metadata": {"name": name, "namespace": NS},
                                            "spec": {"selector": {"app": "web"}, **spec}},
                               namespace=NS)
            publish(svc)
            return svc

        web = create("web", {"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]})
        create("dns", {"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353, "nodePort": 30053}]})
        c.node1.ofctl("add-flow", "breth1", FOREIGN)
        h = helpers(c)
        h.converged()
        assert nodeport_backends(c, 30080) >= {"hello-from-pod1", "hello-from-pod2"}
        old = c.flows()
        h.kill()
        assert os.path.exists(h.pidfile)  # stale now: the restart must not be refused

        # While it is down: one service goes, one changes its node port, a LoadBalancer comes.
        c.api.delete("services", "web", namespace=NS)
        publish(web, deleted=True)
        dns = c.api.get("services", "dns", namespace=NS)
        dns["spec"]["ports"][0]["nodePort"] = 30054
        publish(c.api.replace("services", dns))
        c.api.create("services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb", "namespace": NS},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "sig", "port": 9, "protocol": "SCTP", "targetPort": 9}]}}, namespace=NS)
        publish(c.api.patch("services", "lb", {"status": {"loadBalancer": {"ingress": [
            {"ip": LB_IP}]}}}, namespace=NS))
        assert c.flows() == old  # a killed helper leaves its flows, and nothing else moves them

        h2 = helpers(c)
        h2.converged()
        flows = c.flows()
        assert not any("tp_dst=30080" in f or "tp_dst=30053" in f for f in flows)
        assert any("udp," in f and "tp_dst=30054" in f for f in flows)
        assert any(f"sctp,in_port={c.ports().nic},nw_dst={LB_IP},tp_dst=9" in f for f in flows)
        lb_ports = c.api.get("services", "lb", namespace=NS)["spec"]["ports"]
        assert all(any(f"nw_dst={HOST_IP},tp_dst={p['nodePort']} " in f for f in flows)
                   for p in lb_ports)
        assert FOREIGN in c.flows("0x99/-1")
        # The network routes the ingress address to the node; the router serves it. The
        # LoadBalancer's node port works too; the deleted NodePort is the host's again.
        subprocess.run(["ip", "-n", c.out, "route", "add", f"{LB_IP}/32", "via", HOST_IP],
                       check=True)
        assert {"hello-from-pod1", "hello-from-pod2"} & answers(c, f"http://{LB_IP}/", 5)
        http_node_port = next(p["nodePort"] for p in lb_ports if p["name"] == "http")
        assert nodeport_backends(c, http_node_port) >= {"hello-from-pod1", "hello-from-pod2"}
        assert answers(c, f"http://{HOST_IP}:30080/", 2) == {""}
        assert answers(c, f"http://{HOST_IP}:22/", 2) == {"host-ssh"}
        assert h2.metric("services") == 2
        assert h2.terminate() == 0, h2.logs()
    finally:
        connection.disconnect(nb)


def test_startup_errors_are_one_line_and_the_bundle_is_atomic(lab: Lab) -> None:
    node = lab.add_node("node1")
    env = {"OVS_RUNDIR": node.dir}

    def helper(*extra: str) -> subprocess.CompletedProcess[str]:
        return cli(node, "ovn-k8s-gateway-helper", "--physical-bridge=breth1",
                   "--physical-interface=eth1", "--k8s-api-server=http://127.0.0.1:1", *extra,
                   env=env)

    def error(*extra: str) -> str:
        proc = helper(*extra)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1, (proc.returncode, proc.stderr)
        prefix = "ovn-k8s-gateway-helper: error: "
        assert lines[0].startswith(prefix), lines
        return lines[0][len(prefix):]

    assert error() == ("OVS bridge breth1 does not exist (ovn-k8s-util nics-to-bridge eth1 creates "
                       "breth1)")
    node.vsctl("add-br", "breth1", "--", "set", "bridge", "breth1", "datapath_type=netdev")
    assert error().startswith("interface eth1 is not a port of OVS bridge breth1")
    node.exec(["ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1-peer"])
    node.exec(["ip", "link", "set", "eth1", "up"])
    node.vsctl("add-port", "breth1", "eth1")
    assert error() == ("patch port k8s-patch-breth1-br-int is not a port of OVS bridge breth1: "
                       "run ovn-k8s-overlay gateway-init --bridge-interface breth1 first")
    # (br-int exists: ovn-controller made it)
    node.vsctl("add-port", "breth1", "k8s-patch-breth1-br-int", "--", "set", "interface",
               "k8s-patch-breth1-br-int", "type=patch", "options:peer=k8s-patch-br-int-breth1",
               "--", "add-port", "br-int", "k8s-patch-br-int-breth1", "--", "set", "interface",
               "k8s-patch-br-int-breth1", "type=patch", "options:peer=k8s-patch-breth1-br-int")
    node.exec(["ip", "link", "set", "breth1", "up"])
    assert error().startswith("bridge breth1 has no IPv4 address")
    node.exec(["ip", "addr", "add", "192.0.2.50/24", "dev", "breth1"])
    node.exec(["ip", "addr", "add", "192.0.2.51/24", "dev", "breth1"])
    assert error().startswith("bridge breth1 has several IPv4 addresses (192.0.2.50, 192.0.2.51)")
    assert error("--physical-ip=192.0.2.50", "--conntrack-zone=70000") == \
        "--conntrack-zone: 70000 is out of range (0..65535)"
    assert "cannot listen on 192.0.2.99:9476" in error("--physical-ip=192.0.2.50",
                                                       "--metrics-address=192.0.2.99:9476")
    assert "not a valid int" in error("--physical-ip=192.0.2.50", "--conntrack-zone=lots")
    assert node.ofctl("--no-stats", "dump-flows", "breth1").strip().endswith(
        "priority=0 actions=NORMAL")  # nothing was touched

    # The applier against the real bridge: only our cookie is replaced, in one bundle.
    applier = FlowApplier(f"unix:{node.dir}/breth1.mgmt", cookie=COOKIE)
    node.ofctl("add-flow", "breth1", FOREIGN)
    ports = BridgePorts(nic=int(node.vsctl("get", "interface", "eth1", "ofport")),
                        patch=int(node.vsctl("get", "interface", "k8s-patch-breth1-br-int",
                                             "ofport")))
    web = parse({"metadata": {"name": "web", "namespace": NS}, "spec": {
        "type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}})
    first = gateway_flows([web], host_ip="192.0.2.50", ports=ports, zone=64000)
    second = gateway_flows([], host_ip="192.0.2.50", ports=ports, zone=7)

    def dump() -> set[str]:
        out = node.ofctl("--no-names", "--no-stats", "dump-flows", "breth1")
        return {re.sub(r"^cookie=(0x[0-9a-f]+), (?:table=(\d+), )?",
                       lambda m: f"cookie={m[1]},table={m[2] or 0},", line.strip())
                for line in out.splitlines() if line.strip().startswith("cookie=")}

    assert applier.replace(first).applied
    assert dump() == {*first, FOREIGN}
    assert applier.replace(second).applied
    assert dump() == {*second, FOREIGN}
    # ovs-ofctl parses this flow; the switch rejects it (no such group) inside the bundle.
    broken = [*first, f"cookie={COOKIE:#x},table=0,priority=1,in_port=1 actions=group:123"]
    with pytest.raises(FlowApplyError, match=r"ovs-ofctl could not replace the flows on unix:\S+: "
                                             r"Error OFPBAC_BAD_OUT_GROUP"):
        applier.replace(broken)
    assert dump() == {*second, FOREIGN}  # all or nothing
    assert applier.replace(second).applied  # a failure forgets what was applied: no skip
    assert not applier.replace(second).applied


def test_the_readme_line_detaches_once_serving_and_ovs_appctl_reports_the_flows(
        cluster: Cluster) -> None:
    """The README's `ovn-k8s-gateway-helper --physical-bridge=breth0 --physical-interface=eth0
    --pidfile --detach`, on the lab's shared NIC (breth1/eth1); settings from the environment
    and OVS_RUNDIR the node's (as ovs-ofctl needs), so the pidfile and the control socket are
    where `ovs-appctl -t ovn-k8s-gateway-helper` looks."""
    c = cluster
    c.add_nodeport("web", 30080)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    env.update(c.node1.env, OVN_K8S_CONFIG="/dev/null", OVN_K8S_OVS_DB=c.node1.ovs_db,
               OVN_K8S_K8S_API_SERVER=c.url)
    start = subprocess.run(["ip", "netns", "exec", c.node1.netns,
                            os.path.join(BIN, "ovn-k8s-gateway-helper"), "--physical-bridge=breth1",
                            "--physical-interface=eth1", "--pidfile", "--detach"],
                           env=env, capture_output=True, text=True, timeout=60, check=False)
    assert start.returncode == 0, start.stderr
    rundir = c.node1.env["OVS_RUNDIR"]
    pidfile = os.path.join(rundir, "ovn-k8s-gateway-helper.pid")
    pid = int(open(pidfile, encoding="ascii").read())

    def appctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ovs-appctl", "-t", "ovn-k8s-gateway-helper", *args], env=env,
                              capture_output=True, text=True, timeout=10, check=False)

    try:
        want = f"flows installed: {len(c.expected())}\n"
        deadline = time.monotonic() + 30
        while want not in (status := appctl("status").stdout):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert "state: ok" in status and "services synced: yes" in status
        assert c.flows() == c.expected()
        assert appctl("exit").returncode == 0
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]:
            assert time.monotonic() < deadline, "the helper did not exit"
            time.sleep(0.05)
        assert not os.path.exists(pidfile)
        assert c.flows() == c.expected()          # the flows stay when the helper stops
    finally:
        if os.path.exists(f"/proc/{pid}"):
            os.kill(pid, signal.SIGKILL)
