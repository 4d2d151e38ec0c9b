"""Bad input: one line on stderr, exit 1, and neither the NB nor the host changed."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from sandbox.lab.cluster import Lab, Node
from tests.helpers import cli, gateway_init, master_init, minion_init, nb_dump, ok

pytestmark = pytest.mark.e2e


def host_state(node: Node) -> tuple[str, str, str]:
    return (node.vsctl("show"), node.exec(["ip", "-o", "addr"]).stdout,
            node.exec(["ip", "route"]).stdout)


def assert_refused(lab: Lab, node: Node, run: Callable[[], subprocess.CompletedProcess[str]],
                   message: str) -> None:
    nb_before, host_before = nb_dump(lab), host_state(node)
    proc = run()
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ovn-k8s-overlay: error: ") or lines[0].startswith("ovn-k8s-util: error: ")
    assert message in lines[0], lines[0]
    assert proc.stdout == ""
    assert nb_dump(lab) == nb_before
    assert host_state(node) == host_before


@pytest.fixture
def cluster(lab: Lab) -> Lab:
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    lab.add_outside("192.0.2.1/24")
    lab.connect_outside(node2)
    ok(master_init(node1))
    return lab


def test_bad_cidrs_and_subnets(cluster: Lab) -> None:
    node2 = cluster.nodes["node2"]
    assert_refused(cluster, node2, lambda: cli(node2, "ovn-k8s-overlay", "minion-init",
                   "--node-name=node2", "--cluster-ip-subnet=10.244.0.0",
                   "--minion-switch-subnet=10.244.2.0/24"), "has no prefix length")
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.2.0/33"), "not a valid CIDR")
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.245.2.0/24"),
                   "not inside the cluster subnet 10.244.0.0/16")
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.1.128/25"),
                   "overlaps 10.244.1.0/24 of node node1")
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.2.0/24", "--mtu=big"),
                   "--mtu: 'big' is not a valid int")


def test_minion_init_before_master_init(lab: Lab) -> None:
    node = lab.add_node("node1")
    assert_refused(lab, node, lambda: minion_init(node, "10.244.2.0/24"), "run master-init first")


def test_unreachable_nb(cluster: Lab) -> None:
    node2 = cluster.nodes["node2"]
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.2.0/24", "--ovn-nb=unix:/nonexistent.sock"),
                   "cannot reach the OVN NB database at unix:/nonexistent.sock")
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.2.0/24", f"--ovn-nb=tcp:{cluster.central_ip}:1"),
                   f"cannot reach the OVN NB database at tcp:{cluster.central_ip}:1")
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.2.0/24", "--ovn-nb=http://x"),
                   "is not an OVSDB address")


def test_no_nb_address_anywhere(cluster: Lab) -> None:
    node2 = cluster.nodes["node2"]
    proc_cmd = ["--node-name=node2", "--cluster-ip-subnet=10.244.0.0/16",
                "--minion-switch-subnet=10.244.2.0/24", f"--ovs-db={node2.ovs_db}"]
    assert_refused(cluster, node2, lambda: subprocess.run(
        ["ip", "netns", "exec", node2.netns, *cli_prefix(), "minion-init", *proc_cmd],
        capture_output=True, text=True, env=clean_env(), check=False),
        "OVN central database's address not set")


def cli_prefix() -> list[str]:
    import os
    import sys
    return [os.path.join(os.path.dirname(sys.executable), "ovn-k8s-overlay")]


def clean_env() -> dict[str, str]:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    env["OVN_K8S_CONFIG"] = "/dev/null"
    return env


def test_ovn_nb_from_the_local_ovs_external_ids(cluster: Lab) -> None:
    """The original tools' configuration store still works: external_ids:ovn-nb."""
    node2 = cluster.nodes["node2"]
    node2.vsctl("set", "open_vswitch", ".", f"external_ids:ovn-nb={cluster.nb}")
    proc = subprocess.run(["ip", "netns", "exec", node2.netns, *cli_prefix(), "minion-init",
                           "--node-name=node2", "--cluster-ip-subnet=10.244.0.0/16",
                           "--minion-switch-subnet=10.244.2.0/24", f"--ovs-db={node2.ovs_db}"],
                          capture_output=True, text=True, env=clean_env(), check=False)
    ok(proc)
    assert "node2" in cluster.nbctl("ls-list")


def test_gateway_init_errors(cluster: Lab) -> None:
    node2 = cluster.nodes["node2"]
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.300/24"), "not a valid IP/MASK")
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20"), "not a valid IPv4 IP/MASK")
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20/24", "--default-gw=nope"),
                   "--default-gw: 'nope' is not a valid IP address")
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20/24", nic="eth9"),
                   "interface eth9 does not exist")
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20/24", "--bridge-interface=breth9"),
                   "OVS bridge breth9 does not exist")
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20/24",
                                                        "--rampout-ip-subnets=10.1.0.0/16,bad"),
                   "--rampout-ip-subnets: 'bad'")
    assert_refused(cluster, node2, lambda: cli(node2, "ovn-k8s-overlay", "gateway-init", "--node-name=node2",
                                               "--cluster-ip-subnet=10.99.0.0/16", "--physical-interface=eth1",
                                               "--physical-ip=192.0.2.20/24"),
                   "differs from the cluster's 10.244.0.0/16")
    node2.vsctl("remove", "open_vswitch", ".", "external_ids", "system-id")
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20/24"), "no system-id configured")


def test_nics_to_bridge_missing_nic(cluster: Lab) -> None:
    node2 = cluster.nodes["node2"]
    assert_refused(cluster, node2, lambda: cli(node2, "ovn-k8s-util", "nics-to-bridge", "eth9"),
                   "NIC eth9 does not exist")
