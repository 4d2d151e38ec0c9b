"""ovn-k8s-cni-overlay end to end: the executable run as a runtime runs it, on real OVN.

Two lab nodes (own ovsdb-server, userspace ovs-vswitchd, ovn-controller), the central NB/SB and
ovn-northd; our API server in this process on 127.0.0.1, reached from the node namespaces via
a lab Forwarder. The test plays the master watcher: it creates the pod object, the logical
switch port `<namespace>_<pod>` and the `ovn` annotation. Pod namespaces are made as a runtime
makes them (`ip netns add`), and the plugin is invoked with `ip netns exec <node> plugin`, the
CNI_* environment and the network configuration on stdin. Outcomes are checked with packets,
`ip`, `ovs-vsctl` and the JSON on stdout, never by looking inside the plugin.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.kubeapi.server import KubeApiServer
from sandbox.lab.cluster import Lab, Node
from sandbox.lab.forward import Forwarder
from tests.helpers import BIN, cli, master_init, minion_init, ok

pytestmark = pytest.mark.e2e

PLUGIN = os.path.join(BIN, "ovn-k8s-cni-overlay")
SUBNETS = {"node1": "10.244.1", "node2": "10.244.2"}
TOKEN = "s3cret"  # the API server refuses requests without it


@dataclass
class Pod:
    name: str
    namespace: str
    node: Node
    ip: str  # with prefix
    mac: str
    gateway: str
    netns: str  # namespace name
    path: str  # what CNI_NETNS carries

    @property
    def lsp(self) -> str:
        return f"{self.namespace}_{self.name}"

    @property
    def address(self) -> str:
        return self.ip.split("/")[0]


@dataclass
class Call:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


class Cni:
    """The runtime's and the watcher's side of the tests."""

    def __init__(self, lab: Lab, api: KubeApiServer, url: str) -> None:
        self.lab, self.api, self.url = lab, api, url
        self.procs: list[subprocess.Popen[str]] = []

    def conf(self, node: Node, **extra: Any) -> dict[str, Any]:
        conf = {"cniVersion": "1.0.0", "name": "ovn-k8s", "type": "ovn-k8s-cni-overlay", "ovsdb": node.ovs_db,
                "k8s_api_server": self.url, "k8s_api_token": TOKEN, "log_file": f"{self.lab.dir}/cni-{node.name}.log",
                "annotation_timeout": 30}
        conf.update(extra)
        return {k: v for k, v in conf.items() if v is not None}

    def pod(self, node: Node, name: str, host: int, *, namespace: str = "default", create: bool = True,
            annotate: bool = True) -> Pod:
        subnet = SUBNETS[node.name]
        pod = Pod(name=name, namespace=namespace, node=node, ip=f"{subnet}.{host}/24",
                  mac=f"0a:58:0a:f4:{int(subnet.split('.')[2]):02x}:{host:02x}", gateway=f"{subnet}.1",
                  netns=self.lab.ns(name), path="")
        self.lab.add_netns(name)
        pod.path = f"/run/netns/{pod.netns}"
        self.lab.nbctl("lsp-add", node.name, pod.lsp, "--", "lsp-set-addresses", pod.lsp, f"{pod.mac} {pod.address}")
        if create:
            self.create(pod, annotate=annotate)
        return pod

    def create(self, pod: Pod, *, annotate: bool = True) -> None:
        meta: dict[str, Any] = {"name": pod.name, "namespace": pod.namespace}
        if annotate:
            meta["annotations"] = {"ovn": self.annotation(pod)}
        self.api.create("pods", {"metadata": meta, "spec": {"nodeName": pod.node.name}}, namespace=pod.namespace)

    @staticmethod
    def annotation(pod: Pod) -> str:
        return json.dumps({"ip_address": pod.ip, "mac_address": pod.mac, "gateway_ip": pod.gateway})

    def annotate(self, pod: Pod, value: str | None = None) -> None:
        self.api.patch("pods", pod.name, {"metadata": {"annotations": {"ovn": value or self.annotation(pod)}}},
                       namespace=pod.namespace)

    def env(self, command: str, pod: Pod, container: str | None = None, **over: str | None) -> dict[str, str]:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container or f"sandbox-{pod.name}", "CNI_NETNS": pod.path,
               "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "PATH": os.environ["PATH"],
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
                           f"K8S_POD_INFRA_CONTAINER_ID={container or 'sandbox-' + pod.name}"}
        env.update(over)
        return {k: v for k, v in env.items() if v is not None}

    def start(self, node: Node, env: dict[str, str], stdin: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(["ip", "netns", "exec", node.netns, PLUGIN], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.procs.append(proc)
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        proc.stdin = None  # communicate() must not touch it again
        return proc

    def run(self, command: str, pod: Pod, *, conf: dict[str, Any] | None = None, stdin: str | None = None,
            container: str | None = None, **env: str | None) -> Call:
        if stdin is None:
            stdin = json.dumps(conf if conf is not None else self.conf(pod.node))
        t0 = time.monotonic()
        proc = self.start(pod.node, self.env(command, pod, container, **env), stdin)
        out, err = proc.communicate(timeout=120)
        return Call(proc.returncode, out, err, time.monotonic() - t0)

    def add(self, pod: Pod, **kwargs: Any) -> dict[str, Any]:
        call = self.run("ADD", pod, **kwargs)
        assert call.rc == 0, f"ADD {pod.name}: {call.stdout} {call.stderr}"
        return call.json

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def cni(lab: Lab) -> Iterator[Cni]:
    """node1 (master-init, 10.244.1.0/24) and node2 (minion-init, 10.244.2.0/24), the API server."""
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    ok(master_init(node1))
    ok(minion_init(node2, "10.244.2.0/24"))
    api = KubeApiServer(token=TOKEN).start()
    fwd = None
    env = None
    try:
        fwd = Forwarder(lab.ns("central"), lab.central_ip, api.port)
        env = Cni(lab, api, fwd.url)
        yield env
    finally:
        if env is not None:
            env.kill_all()
        if fwd is not None:
            fwd.close()
        api.stop()


# -- observations ---------------------------------------------------------------------------------


def links(netns: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["ip", "-n", netns, "-d", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    return {link["ifname"]: link for link in json.loads(out.stdout)}


def is_pod_port(name: str) -> bool:
    """The plugin names host veths "ovn" + 12 hex (tunnel ports are "ovn-<chassis>-0")."""
    return re.fullmatch(r"ovn[0-9a-f]{12}", name) is not None


def pod_veths(node: Node) -> list[str]:
    """Host-side pod veths on the node."""
    return sorted(n for n, link in links(node.netns).items()
                  if is_pod_port(n) and link.get("linkinfo", {}).get("info_kind") == "veth")


def ovs_pod_ports(node: Node) -> dict[str, dict[str, str]]:
    """Interfaces carrying an iface-id for a pod (not the management port) -> external_ids."""
    out = node.vsctl("--format=json", "--columns=name,external_ids", "find", "interface",
                     "external_ids:iface-status=active")
    data = json.loads(out)["data"]
    return {name: dict(ids[1]) for name, ids in data}


def br_int_ports(node: Node) -> list[str]:
    return sorted(p for p in node.vsctl("list-ports", "br-int").split() if is_pod_port(p))


def global_addrs(netns: str, dev: str) -> list[str]:
    link = links(netns).get(dev)
    if link is None:
        return []
    return [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a.get("scope") == "global"]


def expected_result(pod: Pod, result: dict[str, Any], version: str = "1.0.0") -> dict[str, Any]:
    """The spec result for `pod` (the host veth's name and MAC are the plugin's choice)."""
    host = result["interfaces"][0]
    ip: dict[str, Any] = {"address": pod.ip, "gateway": pod.gateway, "interface": 1}
    if version != "1.0.0":
        ip = {"version": "4", **ip}
    return {"cniVersion": version,
            "interfaces": [{"name": host["name"], "mac": host["mac"]},
                           {"name": "eth0", "mac": pod.mac, "sandbox": pod.path}],
            "ips": [ip], "routes": [{"dst": "0.0.0.0/0", "gw": pod.gateway}], "dns": {}}


def assert_nothing_left(node: Node, pod: Pod) -> None:
    assert pod_veths(node) == [], "a host veth was left behind"
    assert br_int_ports(node) == [], "an OVS port was left behind"
    assert "eth0" not in links(pod.netns), "the pod interface was left behind"


# -- tests ------------------------------------------------------------------------------------------


def test_pods_on_two_nodes_ping_each_other_and_reach_a_service(cni: Cni) -> None:
    node1, node2 = cni.lab.nodes["node1"], cni.lab.nodes["node2"]
    a = cni.pod(node1, "pa", 10)
    b = cni.pod(node2, "pb", 10)
    c = cni.pod(node2, "pc", 11)
    res_a = cni.add(a)
    res_b = cni.add(b, conf=cni.conf(node2, cniVersion="0.4.0"))
    res_c = cni.add(c, conf=cni.conf(node2, cniVersion="0.3.1"))
    assert res_a == expected_result(a, res_a)
    assert res_b == expected_result(b, res_b, "0.4.0")
    assert res_c == expected_result(c, res_c, "0.3.1")
    assert res_a["interfaces"][0]["name"].startswith("ovn") and len(res_a["interfaces"][0]["name"]) == 15
    # the pod side as the annotation says, and OVN bound every port before ADD returned
    assert global_addrs(a.netns, "eth0") == [a.ip]
    assert links(a.netns)["eth0"]["address"] == a.mac
    assert links(a.netns)["eth0"]["mtu"] == 1400
    for pod, res in ((a, res_a), (b, res_b), (c, res_c)):
        ids = ovs_pod_ports(pod.node)[res["interfaces"][0]["name"]]
        assert ids["iface-id"] == pod.lsp and ids["attached-mac"] == pod.mac
        assert ids["ovn-installed"] == "true" and ids["ovn-k8s/sandbox"] == f"sandbox-{pod.name}"

    assert cni.lab.ping(a.netns, b.address)
    assert cni.lab.ping(b.netns, a.address)
    assert cni.lab.ping(c.netns, a.address)

    # a ClusterIP-style service: VIP 10.96.0.10:80 -> the HTTP servers in pb and pc on node2
    cni.lab.start_http(b.netns, 8080, "pb")
    cni.lab.start_http(c.netns, 8080, "pc")
    cni.lab.nbctl("lb-add", "svc-web", "10.96.0.10:80", f"{b.address}:8080,{c.address}:8080", "tcp")
    lb = cni.lab.nbctl("--bare", "--columns=_uuid", "find", "load_balancer", "name=svc-web")
    cni.lab.nbctl("add", "load_balancer_group", "k8s-cluster-lbs", "load_balancer", lb)
    cni.lab.wait_hv()
    answers = {cni.lab.http_get(a.netns, "http://10.96.0.10/") for _ in range(8)}
    assert answers <= {"hello-from-pb", "hello-from-pc"} and answers, answers

    # every step was logged to log_file, tagged with the command and container
    log = open(f"{cni.lab.dir}/cni-node1.log", encoding="utf-8").read()
    assert "ADD sandbox-pa" in log and "ADD default/pa done" in log


def test_add_waits_for_the_annotation_and_for_the_pod(cni: Cni) -> None:
    node1 = cni.lab.nodes["node1"]
    # the pod exists but the watcher has not annotated it yet
    late = cni.pod(node1, "late", 20, annotate=False)
    proc = cni.start(node1, cni.env("ADD", late), json.dumps(cni.conf(node1)))
    assert cni.api.wait_for_watches(1, resource="pods", timeout=20), "the plugin never started watching"
    time.sleep(0.3)
    assert proc.poll() is None, proc.communicate()
    cni.annotate(late)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert json.loads(out) == expected_result(late, json.loads(out))
    assert global_addrs(late.netns, "eth0") == [late.ip]
    watches = [r for r in cni.api.watch_requests if r.resource == "pods"]
    assert watches and all(r.params.get("fieldSelector") == "metadata.name=late" for r in watches), watches

    # the pod object does not even exist yet when ADD starts (informer lag on the master)
    early = cni.pod(node1, "early", 21, create=False)
    proc = cni.start(node1, cni.env("ADD", early), json.dumps(cni.conf(node1)))
    assert cni.api.wait_for_watches(1, resource="pods", timeout=20)
    cni.create(early)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert global_addrs(early.netns, "eth0") == [early.ip]
    assert cni.lab.ping(early.netns, late.address)


def test_add_twice_del_twice_and_del_without_add(cni: Cni) -> None:
    node1 = cni.lab.nodes["node1"]
    pod = cni.pod(node1, "twice", 30)
    first = cni.add(pod)
    ifindex = links(pod.netns)["eth0"]["ifindex"]
    second = cni.add(pod)
    assert second == first
    assert links(pod.netns)["eth0"]["ifindex"] == ifindex  # converged in place, not re-created
    host = first["interfaces"][0]["name"]
    assert pod_veths(node1) == [host]
    assert br_int_ports(node1) == [host]
    assert list(ovs_pod_ports(node1)) == [host]
    assert cni.lab.ping(pod.netns, pod.gateway)

    for _ in range(2):
        call = cni.run("DEL", pod)
        assert (call.rc, call.stdout) == (0, ""), call
        assert_nothing_left(node1, pod)
    # DEL of a container this node never saw, and without CNI_NETNS (the sandbox is gone)
    never = cni.pod(node1, "never", 31)
    call = cni.run("DEL", never, container="never-added")
    assert (call.rc, call.stdout) == (0, ""), call
    call = cni.run("DEL", never, container="never-added", CNI_NETNS=None)
    assert (call.rc, call.stdout) == (0, ""), call

    # a new sandbox for the same pod replaces the port of the old one (one iface-id, one port)
    again = cni.add(pod, container="sandbox-2")
    assert br_int_ports(node1) == [again["interfaces"][0]["name"]] != [host]


def test_check_reports_drift_with_code_103(cni: Cni) -> None:
    node1 = cni.lab.nodes["node1"]
    pod = cni.pod(node1, "chk", 40)
    result = cni.add(pod)
    host = result["interfaces"][0]["name"]
    conf = cni.conf(node1, prevResult=result)

    def check() -> Call:
        return cni.run("CHECK", pod, conf=conf)

    def drift(fragment: str) -> None:
        call = check()
        assert call.rc == 1, call
        err = call.json
        assert err["code"] == 103 and err["cniVersion"] == "1.0.0", err
        assert fragment in err["details"], err
        cni.add(pod)  # ADD again repairs the drift
        assert check().rc == 0

    assert (check().rc, check().stdout) == (0, "")
    subprocess.run(["ip", "-n", pod.netns, "addr", "flush", "dev", "eth0"], check=True)
    drift(f"lacks address {pod.ip}")
    subprocess.run(["ip", "-n", pod.netns, "link", "set", "eth0", "address", "0a:58:00:00:00:99"], check=True)
    drift(f"expected {pod.mac}")
    node1.vsctl("del-port", "br-int", host)
    drift(f"OVS port {host} is missing")
    node1.vsctl("del-port", "br-int", host, "--", "add-port", "br-phy", host)
    drift(f"OVS port {host} is on br-phy, not br-int")
    subprocess.run(["ip", "-n", pod.netns, "link", "del", "eth0"], check=True)
    drift("is missing")


def test_every_error_is_spec_json_with_exit_1_and_leaves_nothing_behind(cni: Cni) -> None:
    node1 = cni.lab.nodes["node1"]
    pod = cni.pod(node1, "bad", 50)
    unannotated = cni.pod(node1, "unann", 51, annotate=False)
    garbled = cni.pod(node1, "garbled", 52, annotate=False)
    cni.annotate(garbled, json.dumps({"ip_address": "10.244.1.52", "mac_address": "0a:58:0a:f4:01:34",
                                      "gateway_ip": "10.244.1.1"}))  # no prefix length
    unbound = cni.pod(node1, "unbound", 53)
    cni.lab.nbctl("lsp-del", unbound.lsp)  # no logical port: OVN never binds it
    conf = cni.conf(node1)
    cases: list[tuple[str, Pod, dict[str, Any], int, str]] = [
        ("malformed JSON", pod, {"stdin": '{"cniVersion": "1.0.0", "name": '}, 6, "decoding"),
        ("not an object", pod, {"stdin": "[]"}, 6, "decoding"),
        ("missing CNI_NETNS", pod, {"CNI_NETNS": None}, 4, "CNI_NETNS"),
        ("missing CNI_CONTAINERID", pod, {"CNI_CONTAINERID": ""}, 4, "CNI_CONTAINERID"),
        ("no pod in CNI_ARGS", pod, {"CNI_ARGS": "IgnoreUnknown=1"}, 4, "K8S_POD_NAMESPACE"),
        ("unsupported version", pod, {"conf": {**conf, "cniVersion": "9.9.9"}}, 1, "incompatible"),
        ("bad config value", pod, {"conf": {**conf, "mtu": "big"}}, 7, "mtu"),
        ("no API server", pod, {"conf": {**conf, "k8s_api_server": None, "k8s_api_token": None}}, 7,
         "no Kubernetes API server"),
        ("annotation never appears", unannotated, {"conf": {**conf, "annotation_timeout": 1.5}}, 100, "timed out"),
        ("malformed annotation", garbled, {}, 105, "no prefix length"),
        ("namespace path missing", pod, {"CNI_NETNS": "/run/netns/no-such-sandbox"}, 3, "does not exist"),
        ("OVN never binds", unbound, {"conf": {**conf, "annotation_timeout": 3}}, 104, "OVN did not bind"),
    ]
    for what, target, kwargs, code, fragment in cases:
        call = cni.run("ADD", target, **kwargs)
        assert call.rc == 1, (what, call)
        err = call.json
        assert set(err) == {"cniVersion", "code", "msg", "details"}, (what, err)
        assert err["code"] == code, (what, err)
        assert fragment in err["msg"] + err["details"], (what, err)
        assert err["cniVersion"] == ("1.0.0" if code != 1 else "9.9.9"), (what, err)
        assert_nothing_left(node1, target)
        if what == "annotation never appears":
            assert call.seconds >= 1.5, call.seconds  # it waited for its deadline
    assert not os.path.exists("/run/netns/no-such-sandbox")
    # with wait_for_ovn off, the same unbound pod is plumbed and attached, and ADD returns
    result = cni.add(unbound, conf={**conf, "wait_for_ovn": False})
    assert result == expected_result(unbound, result)
    host = result["interfaces"][0]["name"]
    assert br_int_ports(node1) == [host] and "ovn-installed" not in ovs_pod_ports(node1)[host]


def test_del_cleans_up_after_an_add_that_was_killed(cni: Cni) -> None:
    """A runtime that gives up on ADD kills the plugin, then calls DEL for the sandbox."""
    node1 = cni.lab.nodes["node1"]
    pod = cni.pod(node1, "killed", 60)
    cni.lab.nbctl("lsp-del", pod.lsp)  # ADD plumbs, then waits for OVN forever
    proc = cni.start(node1, cni.env("ADD", pod), json.dumps(cni.conf(node1)))
    deadline = time.monotonic() + 20
    while not br_int_ports(node1) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert br_int_ports(node1) and pod_veths(node1) and "eth0" in links(pod.netns)
    os.kill(proc.pid, signal.SIGKILL)  # `ip netns exec` exec'd the plugin: this PID is the plugin
    proc.communicate(timeout=10)
    call = cni.run("DEL", pod)
    assert (call.rc, call.stdout) == (0, ""), call
    assert_nothing_left(node1, pod)


def test_fifty_concurrent_adds_on_one_node(cni: Cni) -> None:
    node1 = cni.lab.nodes["node1"]
    pods = [cni.pod(node1, f"burst{i}", 100 + i) for i in range(50)]
    stdin = json.dumps(cni.conf(node1, annotation_timeout=120))
    procs = [cni.start(node1, cni.env("ADD", pod), stdin) for pod in pods]
    outs = [(proc.communicate(timeout=240), proc.returncode) for proc in procs]
    failed = [(pod.name, out, err) for pod, ((out, err), rc) in zip(pods, outs, strict=True) if rc != 0]
    assert not failed, failed[:3]
    results = [json.loads(out) for (out, _), _ in outs]
    hosts = [r["interfaces"][0]["name"] for r in results]
    assert len(set(hosts)) == 50
    assert sorted(hosts) == pod_veths(node1) == br_int_ports(node1)
    ports = ovs_pod_ports(node1)
    for pod, host, result in zip(pods, hosts, results, strict=True):
        assert result == expected_result(pod, result)
        assert ports[host]["iface-id"] == pod.lsp and ports[host]["ovn-installed"] == "true"
    assert cni.lab.ping(pods[0].netns, pods[-1].address, count=2)

    procs = [cni.start(node1, cni.env("DEL", pod), stdin) for pod in pods]
    assert [proc.wait(timeout=240) for proc in procs] == [0] * 50
    assert pod_veths(node1) == br_int_ports(node1) == []


def test_minion_init_conflist_drives_the_plugin(cni: Cni, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The .conflist minion-init writes is all the plugin needs: with an explicit API server
    (and token), and with none, where the plugin reads the node's OVS external_ids."""
    lab = cni.lab
    node2 = lab.nodes["node2"]
    conf_dir = tmp_path / "net.d"
    flags = [f"--cni-conf-dir={conf_dir}", f"--cni-bin-dir={tmp_path / 'bin'}"]
    ok(cli(node2, "ovn-k8s-overlay", "minion-init", "--node-name=node2", "--cluster-ip-subnet=10.244.0.0/16",
           "--minion-switch-subnet=10.244.2.0/24", *flags,
           env={"PATH": f"{BIN}:{os.environ['PATH']}", "OVN_K8S_K8S_API_SERVER": cni.url,
                "OVN_K8S_K8S_API_TOKEN": TOKEN}))
    conflist_path = conf_dir / "10-ovn-k8s.conflist"
    assert conflist_path.stat().st_mode & 0o777 == 0o600  # it holds a token
    conflist = json.loads(conflist_path.read_text())
    (entry,) = conflist["plugins"]
    assert entry["k8s_api_server"] == cni.url and entry["k8s_api_token"] == TOKEN
    assert entry["ovsdb"] == node2.ovs_db
    assert os.path.realpath(tmp_path / "bin" / entry["type"]) == os.path.realpath(PLUGIN)

    def runtime_conf(entry: dict[str, Any]) -> dict[str, Any]:
        # what libcni hands the plugin: the list's name and version merged into the entry;
        # log_file moved into the lab so the test does not write to /var/log
        return {**entry, "cniVersion": conflist["cniVersion"], "name": conflist["name"],
                "log_file": f"{lab.dir}/cni-conflist.log"}

    pod = cni.pod(node2, "fromlist", 70)
    first = cni.add(pod, conf=runtime_conf(entry))
    assert first == expected_result(pod, first)

    # the original's way: no API settings in the conflist, they live in OVS external_ids
    node2.vsctl("set", "open_vswitch", ".", f"external_ids:k8s-api-server={cni.url.removeprefix('http://')}",
                f"external_ids:k8s-api-token={TOKEN}")
    ok(cli(node2, "ovn-k8s-overlay", "minion-init", "--node-name=node2", "--cluster-ip-subnet=10.244.0.0/16",
           "--minion-switch-subnet=10.244.2.0/24", *flags, env={"PATH": f"{BIN}:{os.environ['PATH']}"}))
    conflist = json.loads(conflist_path.read_text())
    (entry,) = conflist["plugins"]
    assert "k8s_api_server" not in entry and "k8s_api_token" not in entry
    assert conflist_path.stat().st_mode & 0o777 == 0o644
    other = cni.pod(node2, "fromovs", 71)
    result = cni.add(other, conf=runtime_conf(entry))
    assert result == expected_result(other, result)
    assert cni.lab.ping(other.netns, pod.address)
    # a wrong token is refused by the API server: the plugin says so instead of waiting 2 min
    node2.vsctl("set", "open_vswitch", ".", "external_ids:k8s-api-token=wrong")
    third = cni.pod(node2, "badtoken", 72)
    call = cni.run("ADD", third, conf=runtime_conf(entry))
    assert call.rc == 1 and call.json["code"] == 100 and "401" in call.json["details"], call
    assert call.seconds < 60  # far below the 120 s annotation_timeout: no waiting after a 401
    assert "eth0" not in links(third.netns)
    assert pod_veths(node2) == br_int_ports(node2) == sorted(r["interfaces"][0]["name"] for r in (first, result))
