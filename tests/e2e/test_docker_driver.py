"""ovn-docker-driver under a real Docker Engine (Debian's dockerd 20.10) on real OVN.

Two lab hosts, each a namespace with its own OVS, ovn-controller, dockerd (sandbox/lab/docker.py:
a private mount namespace gives each its own /run/docker/plugins) and driver; one NB. One lab
for the whole module (dockerd and OVN start once); each test uses its own networks and
containers and removes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from sandbox.lab.cluster import OVS_SCHEMA, Lab, Node
from sandbox.lab.docker import DockerDriver, DockerEngine, plugin_call
from sandbox.lab.proc import run, wait_for
from tests.helpers import cli, nb_dump, ok

pytestmark = pytest.mark.e2e

BIN = os.path.dirname(sys.executable)
IMAGE = "bb:latest"


@dataclass
class Host:
    node: Node
    engine: DockerEngine
    driver: DockerDriver

    def docker(self, *args: str, check: bool = True) -> str:
        return self.engine.docker(*args, check=check).stdout.strip()

    def fails(self, *args: str) -> str:
        proc = self.engine.docker(*args, check=False)
        assert proc.returncode != 0, proc.stdout
        return proc.stderr.strip()

    def run(self, name: str, network: str, *extra: str) -> str:
        """A detached busybox sleeping on `network`; --init so that a stop is immediate."""
        self.docker("run", "-d", "--init", "--name", name, "--network", network, *extra, IMAGE,
                    "sleep", "3600")
        return self.ip(name)

    def ip(self, name: str, network: str | None = None) -> str:
        nets = self.engine.inspect("container", name)["NetworkSettings"]["Networks"]
        return nets[network or next(iter(nets))]["IPAddress"]

    def ping(self, name: str, ip: str, attempts: int = 8) -> bool:
        """One echo answered, within `attempts` tries of 1 s (the first packet of a new path
        can be lost while OVS resolves the tunnel neighbour)."""
        return any(self.engine.exec(name, "ping", "-c", "1", "-W", "1", ip, timeout=20).returncode == 0
                   for _ in range(attempts))

    def unreachable(self, name: str, ip: str) -> bool:
        """No answer within ~1.5 s (used only where the same path was shown to work)."""
        return self.engine.exec(name, "ping", "-c", "2", "-i", "0.2", "-W", "1", ip,
                                timeout=20).returncode != 0

    def links(self) -> set[str]:
        out = run(["ip", "-o", "link"], netns=self.node.netns).stdout
        return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


@dataclass
class Lab2:
    lab: Lab
    h1: Host
    h2: Host


def _host(lab: Lab, name: str) -> Host:
    node = lab.add_node(name)
    node.vsctl("--may-exist", "add-br", "br-int", "--", "set", "bridge", "br-int",
               "fail-mode=secure", "other-config:disable-in-band=true")
    engine = DockerEngine(netns=node.netns, dir=f"{node.dir}/docker")
    engine.start()
    engine.import_busybox()
    # A generous binding bound: the CI machine's load can slow ovn-controller down a lot.
    driver = DockerDriver(engine, ovs_db=node.ovs_db, nb=lab.nb, bin_dir=BIN, extra=("--bind-timeout=60",))
    driver.start()
    return Host(node, engine, driver)


@pytest.fixture(scope="module")
def hosts() -> Iterator[Lab2]:
    lab = Lab()
    made: list[Host] = []
    try:
        lab.up_central()
        for name in ("h1", "h2"):
            made.append(_host(lab, name))
        yield Lab2(lab, *made)
    finally:
        for host in made:
            host.driver.stop()
            host.engine.destroy()
        lab.down()


def installed(host: Host, iface: str) -> bool:
    """ovn-controller has put the port's flows in (what Join and container-create wait for)."""
    return host.node.vsctl("--if-exists", "get", "interface", iface, "external_ids:ovn-installed") == '"true"'


def switches(lab: Lab) -> dict[str, dict[str, str]]:
    out = json.loads(lab.nbctl("--format=json", "--columns=name,other_config,external_ids",
                               "list", "Logical_Switch"))
    return {row[0]: {**dict(row[1][1]), **dict(row[2][1])} for row in out["data"]}


def ports(lab: Lab, switch: str) -> dict[str, str]:
    """Endpoint ports of a switch: name -> addresses."""
    names = lab.nbctl("lsp-list", switch).splitlines()
    out = {}
    for line in names:
        name = line.split("(")[1].rstrip(")")
        addrs = lab.nbctl("lsp-get-addresses", name)
        if not name.startswith("stor-"):
            out[name] = addrs
    return out


def create(host: Host, name: str, subnet: str, *opts: str) -> str:
    return host.docker("network", "create", "-d", "ovn", "--ipam-driver", "ovn", "--subnet",
                       subnet, *opts, name)


# --- the driver on one host ------------------------------------------------------------------------
def test_network_containers_and_cleanup_on_one_host(hosts: Lab2) -> None:
    lab, h1 = hosts.lab, hosts.h1
    create(h1, "one", "10.10.1.0/24", "-o", "switch=one")
    assert switches(lab)["one"]["subnet"] == "10.10.1.0/24"
    assert switches(lab)["one"]["gateway_ip"] == "10.10.1.1/24"
    a = h1.run("one-a", "one")
    b = h1.run("one-b", "one")
    assert {a, b} == {"10.10.1.2", "10.10.1.3"}
    found = ports(lab, "one")
    eid = h1.engine.inspect("container", "one-a")["NetworkSettings"]["Networks"]["one"]["EndpointID"]
    mac = h1.engine.inspect("container", "one-a")["NetworkSettings"]["Networks"]["one"]["MacAddress"]
    assert found[eid] == f"{mac} {a}"
    # Bound by ovn-controller before Join returned: its flows are in as soon as run returns
    # (ovn-installed); the NB's `up` follows through the SB and northd.
    assert installed(h1, eid[:15])
    lab.wait_port_up(eid)
    # No router: L2 only, no default route, no docker_gwbridge.
    assert "default" not in h1.engine.exec("one-a", "ip", "route").stdout
    assert "docker_gwbridge" not in h1.docker("network", "ls")
    assert h1.ping("one-a", b)
    host_if = eid[:15]
    assert host_if in h1.links()
    h1.docker("rm", "-f", "one-a", "one-b")
    assert ports(lab, "one") == {}
    assert host_if not in h1.links() and f"{eid[:13]}_c" not in h1.links()
    assert host_if not in h1.node.vsctl("list-ports", "br-int").split()
    h1.docker("network", "rm", "one")
    assert "one" not in switches(lab)


def test_original_openvswitch_driver_with_dockers_ipam(hosts: Lab2) -> None:
    """The original vagrant test1: `docker network create -d openvswitch --subnet=...` with
    Docker's own IPAM; the switch is named by the network ID; rm removes it."""
    lab, h1 = hosts.lab, hosts.h1
    net = h1.docker("network", "create", "-d", "openvswitch", "--subnet=192.168.1.0/24", "foo")
    assert net in switches(lab)
    ip = h1.run("foo-a", "foo")
    assert ip == "192.168.1.2"
    mac = h1.engine.inspect("container", "foo-a")["NetworkSettings"]["Networks"]["foo"]["MacAddress"]
    assert list(ports(lab, net).values()) == [f"{mac} {ip}"]
    h1.docker("rm", "-f", "foo-a")
    h1.docker("network", "rm", "foo")
    assert net not in switches(lab)


def test_ip_mac_connect_disconnect_and_restart(hosts: Lab2) -> None:
    lab, h1 = hosts.lab, hosts.h1
    create(h1, "opt1", "10.11.1.0/24", "-o", "switch=opt1")
    create(h1, "opt2", "10.11.2.0/24", "-o", "switch=opt2")
    ip = h1.run("opt-a", "opt1", "--ip", "10.11.1.77", "--mac-address", "02:00:00:00:11:77")
    assert ip == "10.11.1.77"
    assert list(ports(lab, "opt1").values()) == ["02:00:00:00:11:77 10.11.1.77"]
    assert "02:00:00:00:11:77" in h1.engine.exec("opt-a", "ip", "link", "show", "eth0").stdout
    # The same address again: refused, nothing written.
    err = h1.fails("run", "-d", "--name", "opt-dup", "--network", "opt1", "--ip", "10.11.1.77",
                   IMAGE, "sleep", "60")
    assert "10.11.1.77 is already in use" in err
    h1.docker("rm", "-f", "opt-dup", check=False)
    assert len(ports(lab, "opt1")) == 1
    h1.run("opt-b", "opt2")
    h1.run("opt-c", "opt1")
    h1.docker("network", "connect", "--ip", "10.11.2.50", "opt2", "opt-a")
    assert h1.ip("opt-a", "opt2") == "10.11.2.50"
    assert h1.ping("opt-b", "10.11.2.50")
    h1.docker("network", "disconnect", "opt2", "opt-a")
    assert "10.11.2.50" not in " ".join(ports(lab, "opt2").values())
    before = set(ports(lab, "opt1"))
    assert len(before) == 2
    h1.docker("restart", "-t", "1", "opt-a")
    after = {n: a for n, a in ports(lab, "opt1").items() if "10.11.1.77" in a}
    assert set(after) - before and list(after.values()) == ["02:00:00:00:11:77 10.11.1.77"]
    assert h1.ping("opt-c", "10.11.1.77")
    h1.docker("rm", "-f", "opt-a", "opt-b", "opt-c")
    h1.docker("network", "rm", "opt1", "opt2")
    assert not {"opt1", "opt2"} & set(switches(lab))


# --- two hosts ----------------------------------------------------------------------------------
def test_two_hosts_share_a_switch_and_ping_through_geneve(hosts: Lab2) -> None:
    lab, h1, h2 = hosts.lab, hosts.h1, hosts.h2
    create(h1, "shared", "10.20.0.0/24", "-o", "switch=shared")
    create(h2, "shared", "10.20.0.0/24", "-o", "switch=shared")
    assert sum(k.startswith("ovn-k8s/docker-net:") for k in switches(lab)["shared"]) == 2
    a = h1.run("sh-a", "shared")
    b = h2.run("sh-b", "shared")
    assert a != b
    assert h1.ping("sh-a", b) and h2.ping("sh-b", a)
    # Both hosts start containers at once on the switch: the reservations RequestAddress writes
    # in the NB keep every address single, and none is left once the ports exist.
    runs = [(h, f"sh-{h.node.name}-{i}") for h in (h1, h2) for i in range(4)]
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        ips = list(pool.map(lambda hn: hn[0].run(hn[1], "shared"), runs))
    found = ports(lab, "shared")
    assert len(set(ips) | {a, b}) == 10 and len(found) == 10
    assert not [n for n in found if n.startswith("rsv-")]
    assert h2.ping("sh-h2-3", ips[0])
    for host, name in runs:
        host.docker("rm", "-f", name)
    # One host leaving keeps the switch for the other.
    h1.docker("rm", "-f", "sh-a")
    h1.docker("network", "rm", "shared")
    assert "shared" in switches(lab)
    h2.docker("rm", "-f", "sh-b")
    h2.docker("network", "rm", "shared")
    assert "shared" not in switches(lab)


def test_egress_through_a_gateway_router_for_containers_on_both_hosts(hosts: Lab2) -> None:
    """-o router=R on both hosts; h1 also names the gateway (its NIC eth1 on the outside network,
    SNAT to 192.0.2.10). The outside has no route back to 10.90.0.0/24: a reply proves SNAT."""
    lab, h1, h2 = hosts.lab, hosts.h1, hosts.h2
    out = lab.add_outside("192.0.2.1/24")
    lab.connect_outside(h1.node)
    gw = ("-o", "gateway-nic=eth1", "-o", "gateway-ip=192.0.2.10/24", "-o", "gateway-next-hop=192.0.2.1")
    create(h1, "eg", "10.90.0.0/24", "-o", "switch=eg", "-o", "router=r-eg", *gw)
    create(h2, "eg", "10.90.0.0/24", "-o", "switch=eg", "-o", "router=r-eg")
    assert h1.node.vsctl("get", "interface", "eth1", "external_ids:iface-id") == "nic-r-eg"
    assert lab.nbctl("get", "Logical_Router", "r-eg", "options:chassis") == "h1"
    a = h1.run("eg-a", "eg")
    b = h2.run("eg-b", "eg")
    assert "default via 10.90.0.1" in h2.engine.exec("eg-b", "ip", "route").stdout
    assert h2.ping("eg-b", a)
    assert h2.ping("eg-b", "192.0.2.1") and h1.ping("eg-a", "192.0.2.1")
    assert run(["ip", "route", "get", b], netns=out, check=False).returncode != 0  # no way back
    # Bad gateway options: one line, nothing written.
    before = nb_dump(lab)
    for opts, message in ((("-o", "gateway-nic=eth1"), "needs -o router"),
                          (("-o", "router=r-x", "-o", "gateway-nic=eth1"), "gateway-ip, -o gateway-next-hop missing"),
                          (("-o", "router=r-x", "-o", "gateway-nic=nosuch0", "-o", "gateway-ip=192.0.2.11/24",
                            "-o", "gateway-next-hop=192.0.2.1"), "no such interface"),
                          (("-o", "router=r-x", "-o", "gateway-nic=eth1", "-o", "gateway-ip=192.0.2.11",
                            "-o", "gateway-next-hop=192.0.2.1"), "address/len")):
        err = h1.fails("network", "create", "-d", "ovn", "--ipam-driver", "ovn", "--subnet", "10.91.0.0/24",
                       *opts, "egbad")
        assert message in err, err
    lab.nbctl("lr-add", "k8s-router")
    before = nb_dump(lab)
    err = h1.fails("network", "create", "-d", "ovn", "--ipam-driver", "ovn", "--subnet", "10.91.0.0/24",
                   "-o", "router=k8s-router", "egbad")
    assert "a logical router named k8s-router exists" in err
    assert nb_dump(lab) == before
    lab.nbctl("lr-del", "k8s-router")
    h1.docker("rm", "-f", "eg-a")
    h2.docker("rm", "-f", "eg-b")
    h2.docker("network", "rm", "eg")
    h1.docker("network", "rm", "eg")
    assert "r-eg" not in lab.nbctl("lr-list") and "eg" not in switches(lab)
    assert "eth1" not in h1.node.vsctl("list-ports", "br-int").split()


def test_overlapping_subnets_are_kept_apart(hosts: Lab2) -> None:
    lab, h1 = hosts.lab, hosts.h1
    create(h1, "ovl-a", "10.30.0.0/24", "-o", "switch=ovl-a")
    create(h1, "ovl-b", "10.30.0.0/24", "-o", "switch=ovl-b")
    a1 = h1.run("ovl-a1", "ovl-a")
    a2 = h1.run("ovl-a2", "ovl-a")
    b1 = h1.run("ovl-b1", "ovl-b")
    assert len({a1, a2, b1}) == 3        # one pool: no address twice
    assert h1.ping("ovl-a1", a2)
    assert h1.unreachable("ovl-b1", a1) and h1.unreachable("ovl-b1", a2)
    h1.docker("rm", "-f", "ovl-a1", "ovl-a2", "ovl-b1")
    h1.docker("network", "rm", "ovl-a", "ovl-b")
    assert not {"ovl-a", "ovl-b"} & set(switches(lab))


# --- restarts and a network that went away -------------------------------------------------------------
def test_driver_restart_and_dockerd_restart_with_running_containers(hosts: Lab2) -> None:
    lab, h1 = hosts.lab, hosts.h1
    create(h1, "rs", "10.40.0.0/24", "-o", "switch=rs")
    a = h1.run("rs-a", "rs", "--restart=always")
    b = h1.run("rs-b", "rs", "--restart=always")
    h1.driver.stop()
    h1.driver.start()
    assert h1.ping("rs-a", b)                           # the data path never needed the driver
    c = h1.run("rs-c", "rs")                             # PoolID and NetworkID still resolve
    assert c not in (a, b)
    h1.docker("rm", "-f", "rs-c")
    assert len(ports(lab, "rs")) == 2
    # dockerd: every container is stopped (full teardown), then restarted by its policy.
    h1.engine.stop(remove_containers=False)
    assert ports(lab, "rs") == {}
    h1.engine.start()
    wait_for(lambda: len(ports(lab, "rs")) == 2, 30, "both containers back")
    h1.engine.wait_container_running("rs-a")
    h1.engine.wait_container_running("rs-b")
    a2, b2 = h1.ip("rs-a"), h1.ip("rs-b")
    assert len({a2, b2}) == 2 and h1.ping("rs-a", b2)
    h1.docker("rm", "-f", "rs-a", "rs-b")
    h1.docker("network", "rm", "rs")
    assert "rs" not in switches(lab)
    # Nothing leaks: no veth, no OVS port, no reservation of this host.
    assert not [n for n in h1.links() if len(n) == 15 and n.isalnum()]
    assert not [p for p in h1.node.vsctl("list-ports", "br-int").split() if len(p) == 15 and p.isalnum()]
    assert "docker-reservation:h1/" not in lab.nbctl("--columns=external_ids", "list", "Logical_Switch_Port")


def test_network_removed_from_the_nb_behind_dockers_back(hosts: Lab2) -> None:
    lab, h1 = hosts.lab, hosts.h1
    create(h1, "gone", "10.50.0.0/24", "-o", "switch=gone")
    lab.nbctl("ls-del", "gone")
    before = nb_dump(lab)
    err = h1.fails("run", "-d", "--name", "gone-a", "--network", "gone", IMAGE, "sleep", "60")
    assert "is not in the OVN NB" in err and "docker network rm" in err
    assert nb_dump(lab) == before
    h1.docker("rm", "-f", "gone-a", check=False)
    h1.docker("network", "rm", "gone")                   # still removable
    assert nb_dump(lab) == before


def test_a_failed_join_undoes_its_own_steps(hosts: Lab2) -> None:
    """Docker sends no Leave after a failed Join: the driver removes its veth and OVS port."""
    lab, h1 = hosts.lab, hosts.h1
    net = create(h1, "undo", "10.12.0.0/24", "-o", "switch=undo")
    sock = h1.driver.socket()
    eid = "e" * 64
    # Another host's reservations: a live one (.2) holds its address, an expired one (.3, its
    # driver died before CreateEndpoint) does not, and is collected.
    for ip, until in (("10.12.0.2", "9999999999"), ("10.12.0.3", "1")):
        name = f"rsv-undo-{ip}-ghost"
        lab.nbctl("lsp-add", "undo", name, "--", "set", "Logical_Switch_Port", name,
                  f"external_ids:ovn-k8s/owner=docker-reservation:ghost/10.12.0.0/24/{ip}",
                  f"external_ids:ovn-k8s/id={name}", f"external_ids:ovn-k8s/reserved-ip={ip}",
                  f"external_ids:ovn-k8s/reserved-until={until}")
    status, answer = plugin_call(sock, "IpamDriver.RequestAddress", {"PoolID": "ovn/10.12.0.0/24"})
    assert status == 200 and answer["Address"] == "10.12.0.3/24"
    assert set(ports(lab, "undo")) == {"rsv-undo-10.12.0.2-ghost", "rsv-undo-10.12.0.3-h1"}
    lab.nbctl("lsp-del", "rsv-undo-10.12.0.2-ghost")
    status, answer = plugin_call(sock, "NetworkDriver.CreateEndpoint", {
        "NetworkID": net, "EndpointID": eid, "Interface": {"Address": answer["Address"]}})
    assert status == 200 and answer["Interface"]["MacAddress"] == "0a:58:0a:0c:00:03"
    assert set(ports(lab, "undo")) == {eid}               # the reservation became the port
    h1.node.exec(["ip", "link", "add", eid[:15], "type", "bridge"])     # in the way of the veth
    try:
        join = {"NetworkID": net, "EndpointID": eid, "SandboxKey": "/var/run/docker/netns/abc"}
        status, answer = plugin_call(sock, "NetworkDriver.Join", join)
        assert status == 500 and "not a veth" in answer["Err"]
        assert f"{eid[:13]}_c" not in h1.links()
        assert eid[:15] not in h1.node.vsctl("list-ports", "br-int").split()
    finally:
        h1.node.exec(["ip", "link", "del", eid[:15]], check=False)
    status, answer = plugin_call(sock, "NetworkDriver.Join", join)
    assert status == 200 and answer["InterfaceName"] == {"SrcName": f"{eid[:13]}_c", "DstPrefix": "eth"}
    assert answer["DisableGatewayService"] is True and answer["Gateway"] == ""
    assert installed(h1, eid[:15])
    assert "sockets:" in run(["ovs-appctl", "-t", f"{h1.engine.dir}/ovn-docker-driver.ctl", "status"]).stdout
    for method in ("NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint"):
        assert plugin_call(sock, method, {"NetworkID": net, "EndpointID": eid})[0] == 200
    assert plugin_call(sock, "IpamDriver.ReleaseAddress", {"PoolID": "ovn/10.12.0.0/24",
                                                           "Address": "10.12.0.3"})[0] == 200
    assert ports(lab, "undo") == {} and eid[:15] not in h1.links()
    h1.docker("network", "rm", "undo")


# --- bad input to every call ------------------------------------------------------------------------
V4 = [{"Pool": "10.0.0.0/24", "Gateway": "10.0.0.1/24"}]
GENERIC = "com.docker.network.generic"
BAD_CALLS = [
    ("IpamDriver.RequestPool", {"Pool": "", "V6": False}, "needs a --subnet"),
    ("IpamDriver.RequestPool", {"Pool": "fd00::/64", "V6": True}, "IPv6"),
    ("IpamDriver.RequestPool", {"Pool": "10.0.0.0/24", "SubPool": "10.0.0.0/25"}, "--ip-range"),
    ("IpamDriver.RequestPool", {"Pool": "10.0.0.1/24"}, "host bits"),
    ("IpamDriver.RequestPool", {"Pool": "10.0.0.0/31"}, "too small"),
    ("IpamDriver.RequestPool", {"Pool": "banana"}, "not an IPv4 CIDR"),
    ("IpamDriver.RequestAddress", {"PoolID": "other/10.0.0.0/24"}, "not one of this driver's"),
    ("IpamDriver.RequestAddress", {"PoolID": "ovn/10.0.0.0/24", "Address": "10.0.1.5"}, "not a host address"),
    ("IpamDriver.RequestAddress", {"PoolID": "ovn/10.0.0.0/24", "Address": "x"}, "not an IPv4 address"),
    ("IpamDriver.ReleaseAddress", {"PoolID": "ovn/10.0.0.0/24"}, "Address missing"),
    ("NetworkDriver.CreateNetwork", {}, "NetworkID missing"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": []}, "exactly one IPv4 subnet"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": V4, "IPv6Data": [{"Pool": "fd00::/64"}]},
     "IPv6"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": V4, "Options": {GENERIC: {"colour": "red"}}},
     "unknown option"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": V4, "Options": {GENERIC: {"switch": "bad name!"}}},
     "not a valid name"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": [{"Pool": "10.0.0.0/24", "Gateway": "10.9.0.1"}]},
     "not a host address"),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n/1", "IPv4Data": []}, "not a Docker ID"),
    ("NetworkDriver.CreateEndpoint", {"NetworkID": "n1", "EndpointID": "e1"}, "Interface.Address missing"),
    ("NetworkDriver.CreateEndpoint", {"NetworkID": "n1", "EndpointID": "e1",
                                      "Interface": {"Address": "10.0.0.5/24"}}, "is not in the OVN NB"),
    ("NetworkDriver.CreateEndpoint", {"NetworkID": "n1", "EndpointID": "e1",
                                      "Interface": {"Address": "10.0.0.5/24", "MacAddress": "01:00:00:00:00:01"}},
     "not a unicast MAC"),
    ("NetworkDriver.CreateEndpoint", {"NetworkID": "n1", "EndpointID": "e1",
                                      "Interface": {"Address": "10.0.0.5/24", "AddressIPv6": "fd00::5/64"}}, "IPv6"),
    ("NetworkDriver.Join", {"NetworkID": "n1", "EndpointID": "e1"}, "SandboxKey missing"),
    ("NetworkDriver.Join", {"NetworkID": "n1", "EndpointID": "e1", "SandboxKey": "/x/y"}, "not in the OVN NB"),
    ("NetworkDriver.Leave", {"NetworkID": "n1"}, "EndpointID missing"),
    ("NetworkDriver.DeleteEndpoint", {"EndpointID": "e1"}, "NetworkID missing"),
    ("NetworkDriver.EndpointOperInfo", {"NetworkID": "n1"}, "EndpointID missing"),
    ("NetworkDriver.DeleteNetwork", {"NetworkID": ["n1"]}, "not a Docker ID"),
    ("NetworkDriver.Frobnicate", {}, "not supported"),
]


def test_bad_input_to_every_call_is_one_clear_error_and_writes_nothing(hosts: Lab2) -> None:
    lab, h1 = hosts.lab, hosts.h1
    sock = h1.driver.socket()
    before = nb_dump(lab)
    links = h1.links()
    for method, body, expected in BAD_CALLS:
        status, answer = plugin_call(sock, method, body)
        assert status != 200, (method, body, answer)
        err = answer["Err"]
        assert expected in err and "\n" not in err, (method, body, err)
    for raw in (b"{not json", b"[1, 2]"):
        status, answer = plugin_call(sock, "NetworkDriver.CreateNetwork", raw)
        assert status == 400 and "JSON" in answer["Err"]
    # Through Docker: its message carries ours.
    err = h1.fails("network", "create", "-d", "ovn", "--ipam-driver", "ovn", "--subnet",
                   "10.60.0.0/24", "-o", "colour=red", "bad")
    assert "unknown option(s) colour" in err
    err = h1.fails("network", "create", "-d", "ovn", "--ipam-driver", "ovn", "--subnet",
                   "10.60.0.0/24", "--ip-range", "10.60.0.0/25", "bad")
    assert "--ip-range is not supported" in err
    assert nb_dump(lab) == before
    assert h1.links() == links
    assert "bad" not in h1.docker("network", "ls")


# --- ovn-integrate -----------------------------------------------------------------------------------
def ovs_dump(node: Node) -> str:
    """What ovn-integrate writes (next_cfg counts transactions that went to ovs-vswitchd)."""
    return "".join(run(["ovsdb-client", "dump", node.ovs_db, "Open_vSwitch", table, *columns]).stdout
                   for table, columns in (("Open_vSwitch", ("external_ids", "next_cfg")),
                                          ("Bridge", ("name", "external_ids", "fail_mode",
                                                      "other_config", "ports"))))


def test_ovn_integrate_is_idempotent_and_refuses_bad_input(hosts: Lab2) -> None:
    lab, h2 = hosts.lab, hosts.h2
    node = h2.node
    for args in (("create-integration-bridge",), ("set-ipam", lab.nb, lab.sb),
                 ("set-tep", node.encap_ip), ("set-encap-type", "geneve")):
        ok(cli(node, "ovn-integrate", *args))
    ids = node.vsctl("get", "open_vswitch", ".", "external_ids")
    assert f'ovn-nb="{lab.nb}"' in ids and f'ovn-remote="{lab.sb}"' in ids
    assert node.vsctl("br-get-external-id", "br-int", "bridge-id") == "br-int"
    assert node.vsctl("get", "bridge", "br-int", "fail_mode") == "secure"
    before = ovs_dump(node)
    for args in (("create-integration-bridge",), ("set-ipam", lab.nb, lab.sb),
                 ("set-tep", node.encap_ip), ("set-encap-type", "geneve")):
        ok(cli(node, "ovn-integrate", *args))
    assert ovs_dump(node) == before                      # a re-run writes nothing
    bad = {("set-encap-type", "stt"): "stt tunnels are not supported here: the userspace",
           ("set-encap-type", "gre"): "not one of geneve, vxlan, stt",
           ("set-tep", "banana"): "not an IP address",
           ("set-ipam", "banana"): "not an IP address",
           ("set-ipam", "tcp:10.0.0.1:6641"): "give the SB address too",
           ("set-ipam", "tcp:10.0.0.1:x", "tcp:10.0.0.1:6642"): "not an OVSDB address",
           ("nics-to-bridge", "nosuchnic0"): "nosuchnic0"}
    for args, message in bad.items():
        proc = cli(node, "ovn-integrate", *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert ovs_dump(node) == before
    assert cli(node, "ovn-integrate").returncode == 1     # no command: the usage
    # nics-to-bridge: the same step as ovn-k8s-util's, idempotent.
    node.exec(["ip", "link", "add", "nic9", "type", "veth", "peer", "name", "nic9p"])
    try:
        node.exec(["ip", "addr", "add", "10.99.9.1/24", "dev", "nic9"])
        node.exec(["ip", "link", "set", "nic9", "up"])
        ok(cli(node, "ovn-integrate", "nics-to-bridge", "nic9"))
        ok(cli(node, "ovn-integrate", "nics-to-bridge", "nic9"))
        assert "10.99.9.1/24" in node.exec(["ip", "-o", "addr", "show", "brnic9"]).stdout
        assert node.vsctl("port-to-br", "nic9") == "brnic9"
    finally:
        node.vsctl("--if-exists", "del-br", "brnic9")
        node.exec(["ip", "link", "del", "nic9"], check=False)


# --- ovn-container: the original document's overlay walkthrough, line by line --------------------------
def container_cli(host: Host, *args: str) -> str:
    proc = cli(host.node, "ovn-container", *args, env={"DOCKER_HOST": host.engine.host})
    return ok(proc).stdout.strip()


DOCKER_CLIS = [p for p in ("/usr/bin/docker", "/usr/local/bin/docker") if os.path.exists(p)]


def container_api_only(host: Host, *args: str) -> str:
    """ovn-container with no docker CLI to fall back to: PATH holds none, and in a private mount
    namespace /dev/null hides every docker binary of the machine; DOCKER_HOST points nowhere, so
    only --docker-host reaches the engine."""
    hide = "".join(f"{shutil.which('mount')} --bind /dev/null {p}\n" for p in DOCKER_CLIS)
    script = hide + 'if command -v docker || [ -x /usr/bin/docker ]; then exit 99; fi\nexec "$@"\n'
    cmd = [shutil.which("ip") or "ip", "netns", "exec", host.node.netns, shutil.which("unshare") or "unshare",
           "--mount", "--propagation", "private", "/bin/sh", "-ec", script, "sh",
           os.path.join(BIN, "ovn-container"), *args, f"--ovs-db={host.node.ovs_db}",
           f"--docker-host={host.engine.host}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    env.update(OVN_K8S_CONFIG="/dev/null", PATH=BIN, DOCKER_HOST=f"unix://{host.engine.dir}/none.sock")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=False)
    return ok(proc).stdout.strip()


def test_the_original_overlay_walkthrough(hosts: Lab2) -> None:
    lab, h1 = hosts.lab, hosts.h1
    node = h1.node
    # ovn-integrate create-integration-bridge / set-ipam $IPAM_IP / set-tep $LOCAL_IP
    ok(cli(node, "ovn-integrate", "create-integration-bridge"))
    ok(cli(node, "ovn-integrate", "set-ipam", lab.nb, lab.sb))
    ok(cli(node, "ovn-integrate", "set-tep", node.encap_ip))
    # ovn-container init --bridge br-int --overlay-mode
    container_cli(h1, "init", "--bridge", "br-int", "--overlay-mode")
    # ovn-container net-create ls0 192.168.1.0/24: "returns a uuid for that network"
    net_uuid = container_cli(h1, "net-create", "ls0", "192.168.1.0/24")
    assert net_uuid == lab.nbctl("get", "Logical_Switch", "ls0", "_uuid")
    # ovn-container net-list
    listing = container_cli(h1, "net-list")
    assert listing.splitlines()[0].startswith("+-") and listing.splitlines()[2].startswith("+-")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in listing.splitlines()
             if line.startswith("|")]
    assert cells[0] == ["id", "name", "subnets"] and [net_uuid, "ls0", "192.168.1.0/24"] in cells
    # ovn-container endpoint-create ls0 ls0p0: "returns a uuid for that port"
    ep0 = container_cli(h1, "endpoint-create", "ls0", "ls0p0")
    ep1 = container_cli(h1, "endpoint-create", "ls0", "ls0p1")
    assert lab.nbctl("lsp-get-addresses", ep0) == "0a:58:c0:a8:01:02 192.168.1.2"
    # ovn-container endpoint-list
    listing = container_cli(h1, "endpoint-list")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in listing.splitlines()
             if line.startswith("|")]
    assert cells[0] == ["id", "name", "mac_address", "fixed_ips"]
    assert [ep0, "ls0p0", "0a:58:c0:a8:01:02", '{"network": "ls0", "ip_address": "192.168.1.2"}'] in cells
    # ovn-container container-create --network=ls0p0: returns the network container's id. Made
    # through the Engine API: no docker CLI is reachable (`--docker-host`; DOCKER_HOST for nc1).
    nc0 = container_api_only(h1, "container-create", "--network=ls0p0", "--image", IMAGE)
    nc1 = container_cli(h1, "container-create", f"--network={ep1}", "--image", IMAGE)
    made = h1.engine.inspect("container", nc0)
    assert made["Id"] == nc0 and made["Name"].startswith("/network_") and made["State"]["Running"]
    assert made["HostConfig"]["NetworkMode"] == "none" and made["HostConfig"]["Init"] is True
    assert made["Config"]["Labels"] == {"ovn-k8s/owner": "ovn-container", "ovn-k8s/endpoints": ep0}
    assert installed(h1, f"{ep0[:13]}_l")
    lab.wait_port_up(ep0)
    # docker run -d --net=container:$NETWORK_CONTAINER ...
    h1.docker("run", "-d", "--name", "wl0", f"--net=container:{nc0}", IMAGE, "sleep", "3600")
    h1.docker("run", "-d", "--name", "wl1", f"--net=container:{nc1}", IMAGE, "sleep", "3600")
    addr = h1.engine.exec("wl0", "ip", "-o", "addr", "show", "eth1").stdout
    assert "192.168.1.2/24" in addr
    assert h1.ping("wl0", "192.168.1.3")
    # Bad input: one line, nothing written.
    lab.nbctl("ls-add", "byhand", "--", "ls-add", "theirs", "--", "set", "Logical_Switch", "theirs",
              "external_ids:ovn-k8s/owner=node:x", "external_ids:ovn-k8s/id=node-switch:x")
    before = nb_dump(lab)
    for args, message in ((("net-create", "ls0", "192.168.1.0/24"), "already exists"),
                          (("net-create", "byhand", "10.0.0.0/24"), "ovn-k8s did not make"),
                          (("net-create", "theirs", "10.0.0.0/24"), "already belongs to node:x"),
                          (("net-create", "lsx", "192.168.1.0"), "not an IPv4 CIDR"),
                          (("net-create", "bad name", "10.0.0.0/24"), "not a valid name"),
                          (("endpoint-create", "nosuch"), "no network 'nosuch'"),
                          (("endpoint-create", "ls0", "ls0p0"), "already exists"),
                          (("endpoint-delete", "nosuch"), "no endpoint 'nosuch'"),
                          (("container-create", "--network=ls0p0", "--image", IMAGE), "already in network container"),
                          (("net-delete", "ls0"), "in use")):
        proc = cli(node, "ovn-container", *args, env={"DOCKER_HOST": h1.engine.host})
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert nb_dump(lab) == before
    lab.nbctl("ls-del", "byhand", "--", "ls-del", "theirs")
    # After you stop your container: ovn-container endpoint-delete ls0p0 (the network container
    # goes with its last endpoint)
    h1.docker("rm", "-f", "wl0")
    container_api_only(h1, "endpoint-delete", "ls0p0")
    assert nc0 not in h1.docker("ps", "-aq", "--no-trunc").split()
    assert ep0 not in lab.nbctl("lsp-list", "ls0")
    assert f"{ep0[:13]}_l" not in h1.links()
    h1.docker("rm", "-f", "wl1")
    container_cli(h1, "endpoint-delete", ep1)
    assert nc1 not in h1.docker("ps", "-aq", "--no-trunc").split()
    # ovn-container net-delete ls0
    container_cli(h1, "net-delete", "ls0")
    assert "ls0" not in switches(lab)


def test_a_docker_network_on_an_ovn_container_network(hosts: Lab2) -> None:
    """`-o switch=NAME` joins a network ovn-container made: one switch, both kinds of ports."""
    lab, h1, h2 = hosts.lab, hosts.h1, hosts.h2
    ok(cli(h1.node, "ovn-integrate", "set-ipam", lab.nb, lab.sb))
    container_cli(h1, "init", "--bridge", "br-int", "--overlay-mode")
    container_cli(h1, "net-create", "mixed", "10.80.0.0/24")
    ep = container_cli(h1, "endpoint-create", "mixed", "m0")
    nc = container_cli(h1, "container-create", "--network=m0", "--image", IMAGE)
    create(h2, "mixed", "10.80.0.0/24", "-o", "switch=mixed")
    ip = h2.run("mixed-a", "mixed")
    assert ip == "10.80.0.3"
    assert h2.ping("mixed-a", "10.80.0.2")
    h2.docker("rm", "-f", "mixed-a")
    h2.docker("network", "rm", "mixed")
    assert "mixed" in switches(lab)                    # ovn-container's network stays
    container_cli(h1, "endpoint-delete", ep)
    assert nc not in h1.docker("ps", "-aq", "--no-trunc").split()
    # Two endpoints in one network container: eth1 and eth2.
    e1 = container_cli(h1, "endpoint-create", "mixed", "m1")
    e2 = container_cli(h1, "endpoint-create", "mixed", "m2")
    nc = container_cli(h1, "container-create", "--network=m1", "--network=m2", "--image", IMAGE)
    shown = h1.engine.exec(nc, "ip", "-o", "addr").stdout
    assert "eth1" in shown and "eth2" in shown
    container_cli(h1, "endpoint-delete", "m1")
    assert nc in h1.docker("ps", "-aq", "--no-trunc").split()      # m2 still holds it
    container_cli(h1, "endpoint-delete", "m2")
    assert nc not in h1.docker("ps", "-aq", "--no-trunc").split()
    # A step failing after the container started undoes everything (container, veths, records).
    e3 = container_cli(h1, "endpoint-create", "mixed", "m3")
    e4 = container_cli(h1, "endpoint-create", "mixed", "m4")
    h1.node.exec(["ip", "link", "add", f"{e4[:13]}_l", "type", "bridge"])   # in the way
    try:
        containers = h1.docker("ps", "-aq")
        proc = cli(h1.node, "ovn-container", "container-create", "--network=m3", "--network=m4",
                   "--image", IMAGE, env={"DOCKER_HOST": h1.engine.host})
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert h1.docker("ps", "-aq") == containers
        assert f"{e3[:13]}_l" not in h1.links()
        assert "ovn-k8s/container" not in lab.nbctl("get", "Logical_Switch_Port", e3, "external_ids")
    finally:
        h1.node.exec(["ip", "link", "del", f"{e4[:13]}_l"], check=False)
    for e in (e1, e2, e3, e4):
        assert e not in lab.nbctl("lsp-list", "mixed") or container_cli(h1, "endpoint-delete", e) == ""
    container_cli(h1, "net-delete", "mixed")
    assert "mixed" not in switches(lab)


# --- underlay: containers inside a VM, children of the VM's port -----------------------------------------
def _vm(lab: Lab, hv: Node, name: str, mac: str, ip: str) -> Node:
    """A "VM" on hypervisor `hv`: a namespace with its own ovsdb-server and ovs-vswitchd (no
    ovn-controller), whose NIC eth0 is a port of the hypervisor's br-int bound to logical port
    `name`. Its daemons' pid files are under the lab directory, so lab.down() stops them."""
    d = f"{lab.dir}/{name}"
    os.makedirs(d, exist_ok=True)
    ns = lab.add_netns(name)
    vm = Node(lab=lab, name=name, index=99, dir=d, netns=ns, encap_ip="")
    outer = f"{name}-nic"[:15]
    run(["ip", "link", "add", outer, "netns", hv.netns, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "-n", ns, "link", "set", "eth0", "address", mac, "up"])
    run(["ip", "-n", ns, "addr", "add", ip, "dev", "eth0"])
    run(["ip", "-n", hv.netns, "link", "set", outer, "up"])
    for netns, dev in ((ns, "eth0"), (hv.netns, outer)):
        run(["ethtool", "-K", dev, "tx", "off"], netns=netns)
    hv.vsctl("add-port", "br-int", outer, "--", "set", "interface", outer, f"external_ids:iface-id={name}")
    run(["ovsdb-tool", "create", f"{d}/conf.db", OVS_SCHEMA])
    vm.exec(["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock", f"--pidfile={d}/ovsdb-server.pid",
             f"--unixctl={d}/ovsdb-server.ctl", f"--log-file={d}/ovsdb-server.log", "--detach", "--no-chdir"])
    vm.vsctl("--no-wait", "init")
    vm.vsctl("--no-wait", "set", "open_vswitch", ".", "external_ids:ovn-bridge-datapath-type=netdev")
    vm.exec(["ovs-vswitchd", vm.ovs_db, "--disable-system", f"--pidfile={d}/ovs-vswitchd.pid",
             f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log", "--detach", "--no-chdir"])
    return vm


def test_underlay_two_containers_on_two_vlan_tags_behind_one_vm_port(hosts: Lab2) -> None:
    lab, h1, h2 = hosts.lab, hosts.h1, hosts.h2
    lab.nbctl("ls-add", "vmnet", "--", "lsp-add", "vmnet", "vm1", "--",
              "lsp-set-addresses", "vm1", "02:00:00:00:64:05 10.100.0.5")
    vm = _vm(lab, h1.node, "vm1", "02:00:00:00:64:05", "10.100.0.5/24")
    engine = DockerEngine(netns=vm.netns, dir=f"{vm.dir}/docker")
    driver = DockerDriver(engine, ovs_db=vm.ovs_db, nb=lab.nb, bin_dir=BIN,
                          extra=("--underlay-mode", "--bridge=breth0", "--parent-port=vm1", "--bind-timeout=60"))
    try:
        lab.wait_port_up("vm1")
        engine.start()
        engine.import_busybox()
        vm_host = Host(vm, engine, driver)

        def vm_cli(*args: str) -> str:
            proc = cli(vm, *args, env={"DOCKER_HOST": engine.host, "OS_VIF_ID": "vm1"})
            return ok(proc).stdout.strip()

        # Inside the VM, as the original document: its NIC into breth0, then underlay mode.
        vm_cli("ovn-integrate", "nics-to-bridge", "eth0")
        assert "10.100.0.5/24" in vm.exec(["ip", "-o", "addr", "show", "breth0"]).stdout
        vm_cli("ovn-integrate", "set-ipam", lab.nb, lab.sb)
        vm_cli("ovn-container", "init", "--bridge", "breth0", "--underlay-mode")
        vm_cli("ovn-container", "net-create", "vnet", "10.70.0.0/24")
        ep_a = vm_cli("ovn-container", "endpoint-create", "vnet", "va")
        ep_b = vm_cli("ovn-container", "endpoint-create", "vnet", "vb")
        assert lab.nbctl("get", "Logical_Switch_Port", ep_a, "parent_name") == "vm1"
        assert [lab.nbctl("get", "Logical_Switch_Port", ep, "tag_request") for ep in (ep_a, ep_b)] == ["1", "2"]
        nc_a = vm_cli("ovn-container", "container-create", "--network=va", "--image", IMAGE)
        nc_b = vm_cli("ovn-container", "container-create", "--network=vb", "--image", IMAGE)
        assert [vm.vsctl("get", "port", f"{ep[:13]}_l", "tag") for ep in (ep_a, ep_b)] == ["1", "2"]
        lab.wait_port_up(ep_a)
        lab.wait_port_up(ep_b)
        vm_host.docker("run", "-d", "--name", "wa", f"--net=container:{nc_a}", IMAGE, "sleep", "3600")
        vm_host.docker("run", "-d", "--name", "wb", f"--net=container:{nc_b}", IMAGE, "sleep", "3600")
        # And an overlay container on the other hypervisor, on the same network.
        create(h2, "vnet", "10.70.0.0/24", "-o", "switch=vnet")
        c = h2.run("vnet-c", "vnet")
        assert vm_host.ping("wa", "10.70.0.3")             # tag 1 -> OVN on h1 -> tag 2
        assert vm_host.ping("wa", c) and h2.ping("vnet-c", "10.70.0.3")
        # The driver in underlay mode, in the VM: a third child (tag 3) behind the same port.
        driver.start()
        create(vm_host, "vnet", "10.70.0.0/24", "-o", "switch=vnet")
        d = vm_host.run("vnet-d", "vnet")
        eid = engine.inspect("container", "vnet-d")["NetworkSettings"]["Networks"]["vnet"]["EndpointID"]
        assert lab.nbctl("get", "Logical_Switch_Port", eid, "parent_name") == "vm1"
        assert lab.nbctl("get", "Logical_Switch_Port", eid, "tag_request") == "3"
        assert vm_host.ping("vnet-d", "10.70.0.2") and h2.ping("vnet-c", d)
        vm_host.docker("rm", "-f", "vnet-d")
        vm_host.docker("network", "rm", "vnet")
        assert eid not in lab.nbctl("lsp-list", "vnet")
        # Without the parent: one line, nothing written.
        before = nb_dump(lab)
        proc = cli(vm, "ovn-container", "endpoint-create", "vnet", "vc", env={"DOCKER_HOST": engine.host})
        assert proc.returncode == 1 and "OS_VIF_ID" in proc.stderr
        assert nb_dump(lab) == before
        h2.docker("rm", "-f", "vnet-c")
        h2.docker("network", "rm", "vnet")
        vm_host.docker("rm", "-f", "wa", "wb")
        vm_cli("ovn-container", "endpoint-delete", "va")
        vm_cli("ovn-container", "endpoint-delete", "vb")
        assert engine.docker("ps", "-aq").stdout.strip() == ""
        vm_cli("ovn-container", "net-delete", "vnet")
        assert "vnet" not in switches(lab)
    finally:
        driver.stop()
        engine.destroy()
        lab.nbctl("--if-exists", "ls-del", "vmnet")
