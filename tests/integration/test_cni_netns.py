"""The pod's veth pair (ovn_k8s.netlink, through its CNI face ovn_k8s.cni.netns) against the real
kernel, inside network namespaces this file creates.

Each test gets a "node" netns (plays the host: the library runs there, in a subprocess started
with `ip netns exec`) and a "pod" netns. Nothing is created in, addressed in, or sent from the
root netns; the fixture checks that and removes every namespace (hence every link) it made,
even when the test fails. Results are observed independently with `ip`/`ethtool`/`ping`.
Needs root, iproute2, ethtool and ping.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ovn_k8s.cni.netns import cni_result, host_ifname_for, setup_pod_interface
from ovn_k8s.cni.protocol import DNS, CniError, Route
from ovn_k8s.netlink import Route as NetlinkRoute
from ovn_k8s.netlink import VethPair

PREFIX = "cnitest-"
NETNS_DIR = "/var/run/netns"

# Runs one netns function in the node netns; arguments and results travel as JSON.
RUNNER = r"""
import dataclasses, json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from ovn_k8s.cni import netns
from ovn_k8s.cni.protocol import CniError, Route
call = json.load(sys.stdin)
kwargs = call["kwargs"]
if "routes" in kwargs:
    kwargs["routes"] = [Route(**r) for r in kwargs["routes"]]
try:
    out = getattr(netns, call["func"])(**kwargs)
except CniError as err:
    json.dump({"error": [err.code, err.msg, err.details]}, sys.stdout)
else:
    json.dump({"result": dataclasses.asdict(out) if dataclasses.is_dataclass(out) else out}, sys.stdout)
"""


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def netns_names() -> set[str]:
    return {line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.strip()}


def links(ns: str | None) -> dict[str, dict[str, Any]]:
    """`ip -d -j link` of a netns (None = root, read-only), by name."""
    where = ["-n", ns] if ns else []
    return {link["ifname"]: link for link in json.loads(sh("ip", *where, "-d", "-j", "link", "show").stdout)}


def global_addrs(ns: str, dev: str) -> list[str]:
    data = json.loads(sh("ip", "-n", ns, "-j", "addr", "show", "dev", dev).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"] if a.get("scope") == "global"]


def routes(ns: str, *family: str) -> list[dict[str, Any]]:
    return json.loads(sh("ip", *family, "-n", ns, "-j", "route", "show").stdout)


def tx_checksumming(ns: str, dev: str) -> str:
    out = sh("ip", "netns", "exec", ns, "ethtool", "-k", dev).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("tx-checksumming:"))


def veths(ns: str) -> list[str]:
    return [name for name, link in links(ns).items() if link.get("linkinfo", {}).get("info_kind") == "veth"]


@dataclass
class NetnsLab:
    """Two namespaces (node, pod) plus whatever a test adds; `call` runs the library in the node."""

    tag: str
    subnet: int = field(default_factory=lambda: random.randint(1, 250))
    created: list[str] = field(default_factory=list)
    holders: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node = f"{self.tag}-node"
        self.pod = f"{self.tag}-pod"
        self.container_id = f"{self.tag}-container"
        self.host = host_ifname_for(self.container_id)
        self.mac = f"0a:58:0a:f4:{self.subnet:02x}:0a"
        self.ip = f"10.244.{self.subnet}.10/24"
        self.gw = f"10.244.{self.subnet}.1"

    def path(self, ns: str | None = None) -> str:
        return f"{NETNS_DIR}/{ns or self.pod}"

    def add_netns(self, name: str) -> str:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        return name

    def hold(self, ns: str) -> int:
        """A process keeping `ns` alive (for /proc/PID/ns/net paths and deleted-name tests)."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"])
        self.holders.append(proc)
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino != os.stat(self.path(ns)).st_ino:
            assert time.monotonic() < deadline, "holder never entered the netns"
            time.sleep(0.01)
        return proc.pid

    def call(self, func: str, **kwargs: Any) -> Any:
        proc = subprocess.run(["ip", "netns", "exec", self.node, sys.executable, "-c", RUNNER],
                              input=json.dumps({"func": func, "kwargs": kwargs}), capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        if "error" in out:
            raise CniError(*out["error"])
        return out["result"]

    def setup(self, **overrides: Any) -> dict[str, Any]:
        kwargs = {"netns_path": self.path(), "ifname": "eth0", "host_ifname": self.host, "mac": self.mac,
                  "ip_cidr": self.ip, "gateway": self.gw, "mtu": 1400,
                  "routes": [{"dst": "10.96.0.0/12", "gw": None}], **overrides}
        return self.call("setup_pod_interface", **kwargs)

    def check(self, **overrides: Any) -> dict[str, Any]:
        kwargs = {"netns_path": self.path(), "ifname": "eth0", "host_ifname": self.host, "mac": self.mac,
                  "ip_cidr": self.ip, "gateway": self.gw, "mtu": 1400,
                  "routes": [{"dst": "10.96.0.0/12", "gw": None}], "disable_tx_offload": True, **overrides}
        return self.call("check_pod_interface", **kwargs)

    def teardown(self, **overrides: Any) -> bool:
        kwargs = {"netns_path": self.path(), "ifname": "eth0", "host_ifname": self.host, **overrides}
        return self.call("teardown_pod_interface", **kwargs)

    def cleanup(self) -> None:
        for proc in self.holders:
            proc.kill()
            proc.wait(timeout=10)
        for name in self.created:
            sh("ip", "netns", "del", name, check=False)


def _sweep_crashed_runs() -> None:
    """Namespaces of an earlier run that was killed before its finally: older than any test."""
    for name in netns_names():
        if name.startswith(PREFIX):
            try:
                age = time.time() - os.stat(f"{NETNS_DIR}/{name}").st_mtime
            except FileNotFoundError:
                continue
            if age > 900:
                sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces)")
    _sweep_crashed_runs()
    lab = NetnsLab(PREFIX + secrets.token_hex(3))
    try:
        lab.add_netns(lab.node)
        lab.add_netns(lab.pod)
        sh("ip", "-n", lab.node, "link", "set", "lo", "up")
        yield lab
    finally:
        lab.cleanup()
    assert not {n for n in netns_names() if n.startswith(lab.tag)}, "namespaces left behind"
    assert lab.host not in links(None), "a link was created in the root netns"


# ---------------------------------------------------------------------------------------------


def test_host_ifname_for_is_stable_short_and_distinct() -> None:
    # Golden values: the name is an on-node contract (OVS port names), it must not change.
    assert host_ifname_for("c0ffee") == host_ifname_for("c0ffee", "eth0") == "ovn6ad2516ced2a"
    assert host_ifname_for("c0ffee", "net1") == "ovnfae361891200"
    assert len(host_ifname_for("x" * 200)) == 15
    # The original used container_id[:15]: IDs sharing a prefix collided.
    assert host_ifname_for("a" * 15 + "1") != host_ifname_for("a" * 15 + "2")
    ids = [secrets.token_hex(32) for _ in range(5000)]
    assert len({host_ifname_for(cid) for cid in ids}) == 5000


def test_cni_result_of_a_pod_interface() -> None:
    pod = VethPair(netns_path="/var/run/netns/p", ifname="eth0", host_ifname="ovn6ad2516ced2a",
                   host_ifindex=7, host_mac="aa:bb:cc:dd:ee:ff", pod_ifindex=2, pod_mac="0a:58:0a:f4:01:0a",
                   ip_cidr="10.244.1.10/24", gateway="10.244.1.1", mtu=1400,
                   routes=(NetlinkRoute("10.96.0.0/12"), NetlinkRoute("10.0.0.0/8", "10.244.1.254")))
    assert cni_result(pod, DNS(nameservers=("10.96.0.10",))).to_json("1.0.0") == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "ovn6ad2516ced2a", "mac": "aa:bb:cc:dd:ee:ff"},
                       {"name": "eth0", "mac": "0a:58:0a:f4:01:0a", "sandbox": "/var/run/netns/p"}],
        "ips": [{"address": "10.244.1.10/24", "gateway": "10.244.1.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "10.96.0.0/12", "gw": "10.244.1.1"},
                   {"dst": "10.0.0.0/8", "gw": "10.244.1.254"}],
        "dns": {"nameservers": ["10.96.0.10"]},
    }


@pytest.mark.parametrize("kwargs", [
    {"mac": "0a:58:0a:f4:01"}, {"mac": "01:00:5e:00:00:01"}, {"ip_cidr": "10.244.1.10"},
    {"gateway": "10.244.1.10"}, {"gateway": "fd00::1"}, {"mtu": 67}, {"host_ifname": "x" * 16},
    {"routes": [Route("fd00::/64")]},
])
def test_setup_rejects_bad_arguments_before_touching_anything(kwargs: dict[str, Any]) -> None:
    args = {"netns_path": "/nonexistent", "ifname": "eth0", "host_ifname": "ovn0", "mac": "0a:58:0a:f4:01:0a",
            "ip_cidr": "10.244.1.10/24", "gateway": "10.244.1.1", "mtu": 1400, **kwargs}
    with pytest.raises(ValueError):
        setup_pod_interface(**args)


def test_setup_configures_both_sides(lab: NetnsLab) -> None:
    res = lab.setup()
    pod = links(lab.pod)
    eth0 = pod["eth0"]
    assert eth0["address"] == lab.mac and eth0["mtu"] == 1400 and "UP" in eth0["flags"]
    assert eth0["linkinfo"]["info_kind"] == "veth"
    assert "UP" in pod["lo"]["flags"]
    assert global_addrs(lab.pod, "eth0") == [lab.ip]
    table = {(r["dst"], r.get("gateway"), r.get("dev")) for r in routes(lab.pod)}
    assert ("default", lab.gw, "eth0") in table
    assert ("10.96.0.0/12", lab.gw, "eth0") in table
    assert tx_checksumming(lab.pod, "eth0") == "off"

    host = links(lab.node)[lab.host]
    assert host["linkinfo"]["info_kind"] == "veth" and "UP" in host["flags"] and host["mtu"] == 1400
    assert eth0["link_index"] == host["ifindex"] and host["link_index"] == eth0["ifindex"]
    assert res == {
        "netns_path": lab.path(), "ifname": "eth0", "host_ifname": lab.host,
        "host_ifindex": host["ifindex"], "host_mac": host["address"],
        "pod_ifindex": eth0["ifindex"], "pod_mac": lab.mac,
        "ip_cidr": lab.ip, "gateway": lab.gw, "mtu": 1400,
        "routes": [{"dst": "10.96.0.0/12", "gateway": None, "proto": None, "priority": None}],
    }


def test_setup_twice_is_idempotent(lab: NetnsLab) -> None:
    first = lab.setup()
    second = lab.setup()
    assert first == second
    assert veths(lab.node) == [lab.host]
    assert sorted(links(lab.pod)) == ["eth0", "lo"]
    assert global_addrs(lab.pod, "eth0") == [lab.ip]


def test_setup_converges_drift_in_place(lab: NetnsLab) -> None:
    first = lab.setup()
    n, p = lab.node, lab.pod
    sh("ip", "-n", p, "link", "set", "eth0", "address", "0a:58:00:00:00:99", "mtu", "1300")
    sh("ip", "-n", p, "addr", "flush", "dev", "eth0")  # also drops the routes via the subnet
    sh("ip", "-n", p, "addr", "add", f"10.244.{lab.subnet}.99/24", "dev", "eth0")
    sh("ip", "-n", p, "link", "set", "lo", "down")
    sh("ip", "netns", "exec", p, "ethtool", "-K", "eth0", "tx", "on")
    sh("ip", "-n", n, "link", "set", lab.host, "down")

    assert lab.setup() == first  # same ifindexes: fixed in place, not recreated
    eth0 = links(p)["eth0"]
    assert (eth0["address"], eth0["mtu"]) == (lab.mac, 1400)
    assert global_addrs(p, "eth0") == [lab.ip]  # the stray address is gone
    assert any(r["dst"] == "default" and r.get("gateway") == lab.gw for r in routes(p))
    assert "UP" in links(p)["lo"]["flags"] and "UP" in links(n)[lab.host]["flags"]
    assert tx_checksumming(p, "eth0") == "off"


def test_setup_replaces_a_stale_pair_whose_peer_is_elsewhere(lab: NetnsLab) -> None:
    old = lab.add_netns(f"{lab.tag}-old")
    sh("ip", "-n", lab.node, "link", "add", lab.host, "type", "veth", "peer", "name", "eth0", "netns", old)
    lab.setup()
    assert "eth0" not in links(old)
    assert veths(lab.node) == [lab.host]
    assert links(lab.pod)["eth0"]["link_index"] == links(lab.node)[lab.host]["ifindex"]
    lab.check()


@pytest.mark.parametrize("foreign", [
    ["type", "bridge"],
    ["type", "veth", "peer", "name", "other0"],  # a veth, but not paired with our host side
])
def test_setup_refuses_a_foreign_interface_of_the_same_name(lab: NetnsLab, foreign: list[str]) -> None:
    # Spec 1.0.0: "If an interface of the requested name already exists in the container, the
    # CNI plugin MUST return with an error."
    sh("ip", "-n", lab.pod, "link", "add", "eth0", *foreign)
    before = links(lab.pod)["eth0"]
    with pytest.raises(CniError) as info:
        lab.setup()
    assert info.value.code == 102 and "already exists" in info.value.msg
    after = links(lab.pod)["eth0"]
    assert (after["ifindex"], after["address"]) == (before["ifindex"], before["address"])  # left alone
    assert global_addrs(lab.pod, "eth0") == []
    assert lab.host not in links(lab.node)


def test_setup_refuses_a_non_veth_host_name(lab: NetnsLab) -> None:
    sh("ip", "-n", lab.node, "link", "add", lab.host, "type", "bridge")
    with pytest.raises(CniError) as info:
        lab.setup()
    assert info.value.code == 102 and "not a veth" in info.value.msg
    assert links(lab.node)[lab.host]["linkinfo"]["info_kind"] == "bridge"
    assert "eth0" not in links(lab.pod)


def test_setup_in_a_missing_netns_is_code_3_and_creates_nothing(lab: NetnsLab) -> None:
    missing = lab.path(f"{lab.tag}-never")
    with pytest.raises(CniError) as info:
        lab.setup(netns_path=missing)
    assert info.value.code == 3
    assert not os.path.exists(missing)  # pyroute2 would create it with its default flags
    assert lab.host not in links(lab.node)


def test_setup_refuses_its_own_netns(lab: NetnsLab) -> None:
    # /proc/self/ns/net of the runner is the node netns: configuring "the pod" there would take
    # over the node's lo and default route.
    with pytest.raises(CniError) as info:
        lab.setup(netns_path="/proc/self/ns/net")
    assert info.value.code == 4
    assert veths(lab.node) == []
    assert routes(lab.node) == []


def test_setup_failure_rolls_back_the_new_pair(lab: NetnsLab) -> None:
    # An unreachable next hop fails after the pair exists; the pair must not be left behind.
    with pytest.raises(CniError) as info:
        lab.setup(routes=[{"dst": "10.96.0.0/12", "gw": "10.99.0.1"}])
    assert info.value.code == 102
    assert veths(lab.node) == []
    assert sorted(links(lab.pod)) == ["lo"]


def test_setup_with_a_proc_pid_netns_path(lab: NetnsLab) -> None:
    pid = lab.hold(lab.pod)
    path = f"/proc/{pid}/ns/net"
    res = lab.setup(netns_path=path)
    assert res["netns_path"] == path
    assert global_addrs(lab.pod, "eth0") == [lab.ip]
    assert lab.teardown(netns_path=path) is True
    assert sorted(links(lab.pod)) == ["lo"]


def test_setup_ipv6(lab: NetnsLab) -> None:
    ip, gw = f"fd00:10:244:{lab.subnet:x}::a/64", f"fd00:10:244:{lab.subnet:x}::1"
    lab.setup(ip_cidr=ip, gateway=gw, routes=[{"dst": "fd00:10:96::/112", "gw": None}])
    assert global_addrs(lab.pod, "eth0") == [ip]
    table = {(r["dst"], r.get("gateway")) for r in routes(lab.pod, "-6")}
    assert {("default", gw), ("fd00:10:96::/112", gw)} <= table
    lab.check(ip_cidr=ip, gateway=gw, routes=[{"dst": "fd00:10:96::/112", "gw": None}])


def test_packets_cross_the_pair(lab: NetnsLab) -> None:
    lab.setup()
    # The node side plays the OVN router port: the gateway address, only inside the node netns.
    sh("ip", "-n", lab.node, "addr", "add", f"{lab.gw}/24", "dev", lab.host)
    sh("ip", "netns", "exec", lab.pod, "ping", "-c", "3", "-w", "10", "-i", "0.2", lab.gw)
    sh("ip", "netns", "exec", lab.node, "ping", "-c", "3", "-w", "10", "-i", "0.2", lab.ip.split("/")[0])
    # MTU 1400 on the pod side: 1372 bytes of ICMP payload + 28 of headers fit, 1373 do not.
    sh("ip", "netns", "exec", lab.pod, "ping", "-c", "1", "-w", "5", "-M", "do", "-s", "1372", lab.gw)
    too_big = sh("ip", "netns", "exec", lab.pod, "ping", "-c", "1", "-w", "2", "-M", "do", "-s", "1373", lab.gw,
                 check=False)
    assert too_big.returncode != 0


def test_check_passes_after_setup(lab: NetnsLab) -> None:
    res = lab.setup()
    state = lab.check()
    assert state["paired"] and state["pod_up"] and state["host_up"] and state["lo_up"]
    assert state["tx_checksum"] is False
    assert (state["pod_mac"], state["pod_ifindex"], state["host_ifindex"]) == (
        lab.mac, res["pod_ifindex"], res["host_ifindex"])
    assert state["addresses"] == [lab.ip]


DRIFT = {
    "mac": (["ip", "-n", "{pod}", "link", "set", "eth0", "address", "0a:58:00:00:00:99"],
            ["has MAC 0a:58:00:00:00:99, expected {mac}"]),
    # Removing the last address (or downing the link) makes the kernel drop routes via eth0 too.
    "address": (["ip", "-n", "{pod}", "addr", "del", "{ip}", "dev", "eth0"],
                ["lacks address {ip} (has none)", "has no default route via {gw}",
                 "has no route to 10.96.0.0/12 via {gw}"]),
    "default-route": (["ip", "-n", "{pod}", "route", "del", "default"], ["has no default route via {gw}"]),
    "extra-route": (["ip", "-n", "{pod}", "route", "del", "10.96.0.0/12"], ["has no route to 10.96.0.0/12 via {gw}"]),
    "pod-down": (["ip", "-n", "{pod}", "link", "set", "eth0", "down"],
                 ["eth0 in {path} is down", "has no default route via {gw}", "has no route to 10.96.0.0/12 via {gw}"]),
    "host-down": (["ip", "-n", "{node}", "link", "set", "{host}", "down"], ["host veth {host} is down"]),
    "mtu": (["ip", "-n", "{pod}", "link", "set", "eth0", "mtu", "1500"], ["has MTU 1500, expected 1400"]),
    "lo-down": (["ip", "-n", "{pod}", "link", "set", "lo", "down"], ["lo in {path} is down"]),
    "offload": (["ip", "netns", "exec", "{pod}", "ethtool", "-K", "eth0", "tx", "on"],
                ["has TX checksum offload on"]),
    "gone": (["ip", "-n", "{pod}", "link", "del", "eth0"],
             ["host veth {host} is missing", "eth0 in {path} is missing"]),
    "netns-gone": (["ip", "netns", "del", "{pod}"], ["network namespace {path} does not exist"]),
}


@pytest.mark.parametrize("drift", sorted(DRIFT))
def test_check_reports_drift(lab: NetnsLab, drift: str) -> None:
    lab.setup()
    lab.check()
    tamper, expected = DRIFT[drift]
    names = {"pod": lab.pod, "node": lab.node, "host": lab.host, "mac": lab.mac, "ip": lab.ip, "gw": lab.gw,
             "path": lab.path()}
    sh(*(arg.format(**names) for arg in tamper))
    with pytest.raises(CniError) as info:
        lab.check()
    assert info.value.code == 103
    problems = info.value.details.split("; ")
    for fragment in expected:
        assert any(fragment.format(**names) in problem for problem in problems), problems
    assert len(problems) == len(expected), problems


def test_teardown_twice(lab: NetnsLab) -> None:
    lab.setup()
    assert lab.teardown() is True
    assert lab.teardown() is False
    assert veths(lab.node) == []
    assert sorted(links(lab.pod)) == ["lo"]


def test_teardown_without_netns_path(lab: NetnsLab) -> None:
    lab.setup()
    assert lab.teardown(netns_path=None) is True  # DEL without CNI_NETNS
    assert veths(lab.node) == []
    assert sorted(links(lab.pod)) == ["lo"]


def test_teardown_after_the_pod_netns_name_is_deleted(lab: NetnsLab) -> None:
    # A process keeps the namespace (and so the pair) alive after its name is gone, so the
    # host side can only disappear because teardown removed it.
    lab.hold(lab.pod)
    lab.setup()
    sh("ip", "netns", "del", lab.pod)
    assert not os.path.exists(lab.path())
    assert lab.host in links(lab.node)
    assert lab.teardown() is True
    assert veths(lab.node) == []
    assert lab.teardown() is False


def test_teardown_after_the_pod_netns_is_destroyed(lab: NetnsLab) -> None:
    lab.setup()
    sh("ip", "netns", "del", lab.pod)
    lab.teardown()  # succeeds whether it or the kernel's netns cleanup removes the host side
    deadline = time.monotonic() + 10
    while lab.host in links(lab.node):
        assert time.monotonic() < deadline, "host veth outlived its pod netns"
        time.sleep(0.05)
    assert lab.teardown() is False


def test_teardown_leaves_a_foreign_interface_alone(lab: NetnsLab) -> None:
    # After an ADD refused a foreign eth0, the runtime still calls DEL: that eth0 is not ours.
    sh("ip", "-n", lab.pod, "link", "add", "eth0", "type", "bridge")
    assert lab.teardown() is False
    assert links(lab.pod)["eth0"]["linkinfo"]["info_kind"] == "bridge"


def test_teardown_never_touches_its_own_netns(lab: NetnsLab) -> None:
    sh("ip", "-n", lab.node, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    assert lab.teardown(netns_path="/proc/self/ns/net") is False
    assert {"eth0", "eth0p"} <= set(links(lab.node))
