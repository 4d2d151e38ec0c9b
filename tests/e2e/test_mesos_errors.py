"""ovn-mesos-init with bad input: one line on stderr, exit 1, the NB and the host unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from sandbox.lab.cluster import Lab, Node
from tests.helpers import cli, master_init, nb_dump, ok

pytestmark = pytest.mark.e2e

OUTSIDE = "192.0.2.1"


def mesos(node: Node, *args: str, nb: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli(node, "ovn-mesos-init", *args, nb=nb or node.lab.nb)


def init_tenant(node: Node, tenant: str, network: str) -> None:
    ok(mesos(node, "tenant-init", f"--tenant-name={tenant}"))
    ok(mesos(node, "network-init", f"--tenant-name={tenant}", f"--network-name={network}",
             "--subnet=192.168.1.0/24"))


def init_gateway(node: Node, tenant: str, physical_ip: str, *extra: str,
                 nic: str = "eth1") -> subprocess.CompletedProcess[str]:
    mode = [] if any(e.startswith("--bridge-interface") for e in extra) else [f"--physical-interface={nic}"]
    return mesos(node, "gateway-init", f"--tenant-name={tenant}", "--cluster-ip-subnet=192.168.0.0/16",
                 f"--physical-ip={physical_ip}", *mode, *extra)


def host_state(node: Node) -> tuple[str, str, str]:
    return (node.vsctl("show"), node.exec(["ip", "-o", "addr"]).stdout, node.exec(["ip", "route"]).stdout)


def assert_refused(lab: Lab, node: Node, run: Callable[[], subprocess.CompletedProcess[str]], message: str) -> None:
    nb_before, host_before = nb_dump(lab), host_state(node)
    proc = run()
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ovn-mesos-init: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert proc.stdout == ""
    assert nb_dump(lab) == nb_before
    assert host_state(node) == host_before


@pytest.fixture
def coke(lab: Lab) -> Lab:
    """Tenant coke with network web 192.168.1.0/24 and a gateway on node1; node2 has a NIC too."""
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    lab.connect_outside(node2)
    init_tenant(node1, "coke", "web")
    ok(init_gateway(node1, "coke", "192.0.2.10/24"))
    return lab


def test_tenant_and_network_errors(coke: Lab) -> None:
    n2 = coke.nodes["node2"]

    def refused(message: str, *args: str) -> None:
        assert_refused(coke, n2, lambda: mesos(n2, *args), message)

    refused("invalid tenant name 'co_ke'", "tenant-init", "--tenant-name=co_ke")
    refused("--join-subnet: 'x' is not a valid CIDR", "tenant-init", "--tenant-name=pepsi", "--join-subnet=x")
    refused("--join-subnet 192.168.0.0/16 overlaps network web (192.168.1.0/24) of tenant coke",
            "tenant-init", "--tenant-name=coke", "--join-subnet=192.168.0.0/16")
    refused("tenant pepsi does not exist in the NB: run tenant-init first",
            "network-init", "--tenant-name=pepsi", "--network-name=web", "--subnet=192.168.1.0/24")
    refused("invalid network name 'we/b'", "network-init", "--tenant-name=coke", "--network-name=we/b",
            "--subnet=192.168.2.0/24")
    refused("--subnet: '192.168.2.1/24' has host bits set", "network-init", "--tenant-name=coke",
            "--network-name=db", "--subnet=192.168.2.1/24")
    refused("--subnet 192.168.2.0/31 is too small", "network-init", "--tenant-name=coke", "--network-name=db",
            "--subnet=192.168.2.0/31")
    refused("--subnet 192.168.1.128/25 overlaps network web (192.168.1.0/24) of tenant coke",
            "network-init", "--tenant-name=coke", "--network-name=db", "--subnet=192.168.1.128/25")
    refused("--subnet 100.64.5.0/24 overlaps the join subnet 100.64.0.0/16 of tenant coke",
            "network-init", "--tenant-name=coke", "--network-name=db", "--subnet=100.64.5.0/24")
    refused("--subnet 10.1.0.0/24 is not inside the cluster subnet 192.168.0.0/16 that gateway GR_coke_node1 SNATs",
            "network-init", "--tenant-name=coke", "--network-name=db", "--subnet=10.1.0.0/24")
    refused("--vip 192.0.2.99 is not the physical IP of a gateway of tenant coke (192.0.2.10)",
            "publish", "--tenant-name=coke", "--vip=192.0.2.99:80", "--backends=192.168.1.2:80")
    refused("--backends: 'x' is not IP:PORT", "publish", "--tenant-name=coke", "--vip=192.0.2.10:80",
            "--backends=x")
    assert_refused(coke, n2, lambda: mesos(n2, "tenant-init", "--tenant-name=pepsi", nb="unix:/nonexistent.sock"),
                   "cannot reach the OVN NB database at unix:/nonexistent.sock")


def test_gateway_errors(coke: Lab) -> None:
    n1, n2 = coke.nodes["node1"], coke.nodes["node2"]
    init_tenant(n1, "pepsi", "web")

    def refused(node: Node, message: str, *args: str, tenant: str = "coke", nic: str = "eth1") -> None:
        assert_refused(coke, node, lambda: init_gateway(node, tenant, *args, nic=nic), message)

    refused(n2, "--physical-ip: '192.0.2.300/24' is not a valid IP/MASK", "192.0.2.300/24")
    refused(n2, "interface eth9 does not exist", "192.0.2.11/24", nic="eth9")
    refused(n2, "OVS bridge breth9 does not exist", "192.0.2.11/24", "--bridge-interface=breth9")
    refused(n2, "--default-gw: 'gw' is not a valid IP address", "192.0.2.11/24", "--default-gw=gw")
    refused(n2, "tenant cola does not exist in the NB: run tenant-init first", "192.0.2.11/24", tenant="cola")
    # a tenant's gateways must SNAT the same subnet, which must hold all its networks
    assert_refused(coke, n2, lambda: mesos(n2, "gateway-init", "--tenant-name=coke",
                                           "--cluster-ip-subnet=192.168.1.0/24", "--physical-interface=eth1",
                                           "--physical-ip=192.0.2.11/24"),
                   "--cluster-ip-subnet 192.168.1.0/24 differs from 192.168.0.0/16 of tenant coke's gateway "
                   "GR_coke_node1")
    assert_refused(coke, n2, lambda: mesos(n2, "gateway-init", "--tenant-name=pepsi",
                                           "--cluster-ip-subnet=10.0.0.0/16", "--physical-interface=eth1",
                                           "--physical-ip=192.0.2.11/24"),
                   "network web (192.168.1.0/24) of tenant pepsi is not inside --cluster-ip-subnet 10.0.0.0/16")
    # two tenants on one NIC need their own addresses
    refused(n1, "--physical-ip 192.0.2.10 is already used by rtoe-GR_coke_node1 on this NIC", "192.0.2.10/24",
            tenant="pepsi")
    n2.vsctl("remove", "open_vswitch", ".", "external_ids", "system-id")
    refused(n2, "no system-id configured", "192.0.2.11/24")


def test_names_of_other_owners_are_not_taken(lab: Lab) -> None:
    """A tenant named like the Kubernetes master would take its rtoj-<name> port: refused."""
    node1 = lab.add_node("node1")
    ok(master_init(node1))
    assert_refused(lab, node1, lambda: mesos(node1, "tenant-init", "--tenant-name=node1"),
                   "Logical_Router_Port rtoj-node1 already exists and belongs to cluster: choose another name")


def test_no_nb_address_anywhere(lab: Lab) -> None:
    node1 = lab.add_node("node1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    env["OVN_K8S_CONFIG"] = "/dev/null"
    cmd = [os.path.join(os.path.dirname(sys.executable), "ovn-mesos-init"), "tenant-init", "--tenant-name=coke"]
    assert_refused(lab, node1, lambda: subprocess.run(["ip", "netns", "exec", node1.netns, *cmd,
                                                      f"--ovs-db={node1.ovs_db}"],
                                                     capture_output=True, text=True, env=env, check=False),
                   "OVN central database's address not set")
    # without a local OVS at all, the NB address must come from somewhere else: still one line
    assert_refused(lab, node1, lambda: subprocess.run(["ip", "netns", "exec", node1.netns, *cmd,
                                                      "--ovs-db=unix:/nonexistent.sock"],
                                                     capture_output=True, text=True, env=env, check=False),
                   "OVN central database's address not set")
    # ... and from the local OVS's external_ids:ovn-nb, as the original read it
    node1.vsctl("set", "open_vswitch", ".", f"external_ids:ovn-nb={lab.nb}")
    proc = subprocess.run(["ip", "netns", "exec", node1.netns, *cmd, f"--ovs-db={node1.ovs_db}"],
                          capture_output=True, text=True, env=env, check=False)
    ok(proc)
    assert "coke" in lab.nbctl("lr-list")


def test_silent_nb_is_an_error_at_the_timeout(lab: Lab, silent_socket: str) -> None:
    """An NB that accepts and never answers: the plugin answers once `timeout` is spent (and
    ovn-mesos-init says so in one line), instead of hanging the agent."""
    from tests.e2e.test_mesos import network_conf, plugin

    node1 = lab.add_node("node1")
    ns = lab.add_netns("task")
    conf = network_conf(node1, {"logical_switch": "web"}, ovn_nb=silent_socket, timeout=1)
    proc, out = plugin(node1, "ADD", "task", ns, conf)
    assert proc.returncode == 1, proc
    assert f"no answer from the OVN NB database at {silent_socket} in time" in out["details"], out
    assert_refused(lab, node1, lambda: mesos(node1, "tenant-init", "--tenant-name=coke", "--timeout=1",
                                             nb=silent_socket),
                   f"no answer from the OVN NB database at {silent_socket} in time")
