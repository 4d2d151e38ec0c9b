"""ovn_k8s.netlink_raw (the pyroute2-free rtnetlink of a pod's veth pair) against the real kernel.

Everything happens in two network namespaces this file creates ("a" and "b"): the sockets are
made inside them (`netlink._socket_in`, as the CNI plugin makes its pod socket), so no link,
address or route ever exists in the root netns; the fixture removes both namespaces (hence
every link) even when a test fails. Results are observed independently with `ip -j`.
Also: ADD/CHECK/DEL's whole path, in a fresh interpreter, loads no pyroute2. Needs root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from ovn_k8s import netlink
from ovn_k8s.errors import HostError
from ovn_k8s.netlink_raw import NetlinkError, Rtnl

PREFIX = "nlrawtest-"
MAC = "0a:58:0a:f5:00:0a"


def sh(*cmd: str, check: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def ip_json(ns: str, *args: str) -> list[dict[str, Any]]:
    return json.loads(sh("ip", "-n", ns, "-j", *args) or "[]")


@dataclass
class Pair:
    """Namespaces a and b, an Rtnl socket made inside each."""

    a: str
    b: str
    fds: dict[str, int] = field(default_factory=dict)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def rtnl(self, ns: str) -> Rtnl:
        if ns not in self.fds:
            fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            self.stack.callback(os.close, fd)
            self.fds[ns] = fd
        sock = Rtnl(netlink._socket_in(self.fds[ns]))
        self.stack.callback(sock.close)
        return sock


@pytest.fixture
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces)")
    tag = PREFIX + secrets.token_hex(3)
    made: list[str] = []
    try:
        for ns in (f"{tag}-a", f"{tag}-b"):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        p = Pair(*made)
        with p.stack:
            yield p
    finally:
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
    assert not [n for n in sh("ip", "netns", "list").split() if n.startswith(tag)]


def test_veth_across_namespaces_with_address_routes_and_delete(pair: Pair) -> None:
    a, b = pair.rtnl(pair.a), pair.rtnl(pair.b)
    a.link("add", ifname="hostside0", kind="veth", mtu=1400,
           peer={"ifname": "eth0", "net_ns_fd": pair.fds[pair.b], "address": MAC, "mtu": 1400})
    host, pod = a.link("get", ifname="hostside0")[0], b.link("get", ifname="eth0")[0]
    assert (host[("linkinfo", "kind")], pod[("linkinfo", "kind")]) == ("veth", "veth")
    assert (pod["address"], pod["mtu"], host["mtu"]) == (MAC, 1400, 1400)
    assert host["link"] == pod["index"] and pod["link"] == host["index"]
    assert host["link_netnsid"] == a.get_netnsid(fd=pair.fds[pair.b])["nsid"] >= 0
    seen = {link["ifname"]: link for link in ip_json(pair.b, "-d", "link", "show")}
    assert seen["eth0"]["address"] == MAC and seen["eth0"]["mtu"] == 1400

    index = pod["index"]
    b.link("set", index=index, mtu=1300, address="0a:58:0a:f5:00:0b", state="up")
    b.addr("add", index=index, address="10.245.0.10", prefixlen=24)
    b.addr("add", index=index, address="fd00:245::10", prefixlen=64)
    b.route("replace", family=2, dst="10.245.9.1/32", oif=index, scope=netlink.RT_SCOPE_LINK)
    for _ in range(2):  # replace is idempotent
        b.route("replace", family=2, dst="0.0.0.0/0", gateway="10.245.9.1", oif=index)
        b.route("replace", family=10, dst="fd00:96::/64", gateway="fd00:245::1", oif=index)
    link = b.link("get", index=index)[0]
    assert (link["mtu"], link["address"], link["flags"] & 1) == (1300, "0a:58:0a:f5:00:0b", 1)  # IFF_UP
    mine = {(m["family"], m.get("local") or m["address"], m["prefixlen"]) for m in b.addr("dump", index=index)
            if m["index"] == index and m["scope"] == 0}
    assert mine == {(2, "10.245.0.10", 24), (10, "fd00:245::10", 64)}
    got = {(r.get("dst"), r["dst_len"], r.get("gateway")) for r in b.route("dump")
           if r.get("oif") == index and r["table"] == 254 and r["proto"] != 2}
    assert got == {("10.245.9.1", 32, None), (None, 0, "10.245.9.1"), ("fd00:96::", 64, "fd00:245::1")}
    assert {(r["dst"], r.get("gateway")) for r in ip_json(pair.b, "route", "show", "proto", "static")} == {
        ("default", "10.245.9.1"), ("10.245.9.1", None)}
    b.addr("del", index=index, address="10.245.0.10", prefixlen=24)
    left = ip_json(pair.b, "addr", "show", "dev", "eth0")[0]["addr_info"]
    assert [a["local"] for a in left if a["scope"] == "global"] == ["fd00:245::10"]

    a.link("del", index=host["index"])
    with pytest.raises(NetlinkError) as gone:
        b.link("get", ifname="eth0")
    assert gone.value.code == gone.value.errno == errno.ENODEV
    assert "eth0" not in {link["ifname"] for link in ip_json(pair.b, "link", "show")}


def test_kernel_errors_are_one_line_host_errors_with_the_errno(pair: Pair) -> None:
    a = pair.rtnl(pair.a)
    a.link("add", ifname="x0", kind="veth", peer={"ifname": "x1"})
    index = a.link("get", ifname="x0")[0]["index"]
    a.addr("add", index=index, address="10.245.1.1", prefixlen=24)
    with pytest.raises(HostError) as exists, netlink._kernel_errors("add 10.245.1.1 to x0"):
        a.addr("add", index=index, address="10.245.1.1", prefixlen=24)
    message = str(exists.value)
    assert message.startswith("failed to add 10.245.1.1 to x0: NetlinkError: [Errno 17] File exists")
    assert "\n" not in message and isinstance(exists.value.__cause__, NetlinkError)
    with pytest.raises(HostError) as bad_mtu, netlink._kernel_errors("set x0's MTU"):
        a.link("set", index=index, mtu=10)  # below the minimum: EINVAL, with the kernel's ext-ack text
    assert str(bad_mtu.value) == ("failed to set x0's MTU: NetlinkError: [Errno 22] Invalid argument "
                                  "(mtu less than device minimum)")
    with pytest.raises(NetlinkError) as clash:
        a.link("add", ifname="x0", kind="veth", peer={"ifname": "x2"})
    assert clash.value.code == errno.EEXIST
    assert a.link("get", index=index)[0]["mtu"] == 1500  # a refused request changed nothing


# A fresh interpreter in namespace a (playing the node) runs the plugin's ADD, CHECK and DEL
# calls on a pair with b (the pod), then lists the pyroute2 modules it loaded.
FRESH = r"""
import json, sys
import ovn_k8s.cni.plugin
from ovn_k8s import netlink
from ovn_k8s.cni import netns
from ovn_k8s.cni.protocol import Route
args = json.loads(sys.argv[1])
if args["node_side_call"]:
    netlink.link_index("lo")
kw = dict(netns_path=args["pod"], ifname="eth0", host_ifname="ovnrawtest0")
netns.setup_pod_interface(mac=args["mac"], ip_cidr="10.245.2.10/24", gateway="10.245.2.1", mtu=1400,
                          routes=[Route("10.96.0.0/12")], **kw)
netns.check_pod_interface(mac=args["mac"], ip_cidr="10.245.2.10/24", gateway="10.245.2.1", mtu=1400,
                          routes=[Route("10.96.0.0/12")], disable_tx_offload=True, **kw)
removed = netns.teardown_pod_interface(**kw)
print(json.dumps({"removed": removed, "pyroute2": sorted(m for m in sys.modules if m.startswith("pyroute2"))}))
"""


def _fresh(pair: Pair, node_side_call: bool) -> dict[str, Any]:
    args = {"pod": f"/var/run/netns/{pair.b}", "mac": MAC, "node_side_call": node_side_call}
    out = sh("ip", "netns", "exec", pair.a, sys.executable, "-c", FRESH, json.dumps(args))
    return json.loads(out)


def test_add_check_del_load_no_pyroute2(pair: Pair) -> None:
    result = _fresh(pair, node_side_call=False)
    assert result == {"removed": True, "pyroute2": []}
    assert "eth0" not in {link["ifname"] for link in ip_json(pair.b, "link", "show")}


def test_the_pyroute2_check_itself_can_fail(pair: Pair) -> None:
    result = _fresh(pair, node_side_call=True)
    assert result["removed"] is True and "pyroute2.iproute.linux" in result["pyroute2"]
