"""Bad input, a failing host step, a silent database: one line on stderr, exit 1, and
neither the NB nor the host (addresses, routes, the whole local OVS database) changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from sandbox.lab.cluster import Lab, Node
from tests.helpers import cli, gateway_init, master_init, minion_init, nb_dump, ok

pytestmark = pytest.mark.e2e


# Written by ovs-vswitchd all the time, whoever else writes: not a change made by a command.
OVS_VOLATILE = {"Interface": {"statistics", "status", "link_resets", "link_state", "link_speed",
                              "duplex", "mtu", "ifindex", "admin_state"},
                "Bridge": {"status"}, "Open_vSwitch": {"statistics"},
                # ovn-controller gives ports of the physical bridge a "linux-noop" QoS whenever
                # it gets round to it: its doing, not a command's
                "Port": {"qos"}}
OVS_IGNORED_TABLES = {"QoS", "Queue"}
# external_ids keys ovn-controller rewrites as the NB's nb_cfg moves (any NB write does that).
OVN_CONTROLLER_KEYS = {"ovn-nb-cfg", "ovn-nb-cfg-ts", "ovn-startup-ts"}


def _strip(column: str, value: Any) -> Any:
    if column == "external_ids" and isinstance(value, list) and value[0] == "map":
        return ["map", [kv for kv in value[1] if kv[0] not in OVN_CONTROLLER_KEYS]]
    return value


def ovs_dump(node: Node) -> dict[str, Any]:
    """The node's whole Open_vSwitch database (ovsdb-client dump), UUIDs included."""
    out = subprocess.run(["ovsdb-client", "-f", "json", "dump", node.ovs_db, "Open_vSwitch"],
                         capture_output=True, text=True, check=True).stdout
    tables: dict[str, Any] = {}
    for block in out.split("\n"):
        if block.strip():
            data = json.loads(block)
            for table in data if isinstance(data, list) else [data]:
                name = table.get("caption", "?").split()[0]
                if name in OVS_IGNORED_TABLES:
                    continue
                drop = OVS_VOLATILE.get(name, set())
                tables[name] = sorted(
                    ({k: _strip(k, v) for k, v in zip(table["headings"], row, strict=True) if k not in drop}
                     for row in table["data"]), key=lambda r: json.dumps(r, sort_keys=True))
    return tables


def host_state(node: Node) -> tuple[Any, str, str]:
    return (ovs_dump(node), node.exec(["ip", "-o", "addr"]).stdout,
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
    host_after = host_state(node)
    assert host_after == host_before, _ovs_changes(host_before[0], host_after[0])


def _ovs_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The (table, row, column) that differ, for the failure message."""
    def cells(dump: dict[str, Any]) -> dict[str, str]:
        return {f"{t}:{r.get('name', r['_uuid'][1])}.{k}": json.dumps(v, sort_keys=True)
                for t, rows in dump.items() for r in rows for k, v in r.items()}
    old, new = cells(before), cells(after)
    return [f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


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


def test_option_ranges(cluster: Lab) -> None:
    """Out-of-range numbers and unusable paths: one line, before anything is touched."""
    node2 = cluster.nodes["node2"]
    for args, message in ((("--mtu", "-5"), "--mtu: -5 is out of range"),
                          (("--mtu", "99999999"), "--mtu: 99999999 is out of range"),
                          (("--mtu", "0"), "--mtu: 0 is out of range"),
                          (("--timeout", "-1"), "--timeout: -1 is out of range"),
                          (("--timeout", "0"), "--timeout: 0 is out of range"),
                          (("--timeout", "nan"), "--timeout: nan is out of range"),
                          (("--log-file", "/proc/nope/x.log"), "--log-file: /proc/nope/x.log")):
        assert_refused(cluster, node2, lambda a=args: minion_init(node2, "10.244.2.0/24", *a), message)
    node1 = cluster.nodes["node1"]
    assert_refused(cluster, node1, lambda: master_init(node1, "10.244.1.0/24", "--mtu", "0"),
                   "--mtu: 0 is out of range")
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20/24", "--timeout", "-1"),
                   "--timeout: -1 is out of range")


def test_master_init_with_another_node_name_is_refused(cluster: Lab) -> None:
    """A mistyped --node-name on re-run must not rename the cluster router and join ports."""
    node1 = cluster.nodes["node1"]
    assert_refused(cluster, node1, lambda: cli(
        node1, "ovn-k8s-overlay", "master-init", "--node-name=nodel", "--cluster-ip-subnet=10.244.0.0/16",
        "--master-switch-subnet=10.244.1.0/24"), "--node-name nodel differs from the cluster's master node1")


def test_management_port_name_taken(cluster: Lab) -> None:
    """A device named like the management port would make OVS fail after the NB commit."""
    node2 = cluster.nodes["node2"]
    node2.exec(["ip", "link", "add", "k8s-node2", "type", "veth", "peer", "name", "k8s-node2-peer"])
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.2.0/24"),
                   "interface k8s-node2 exists and is not an OVS port")


def test_failed_host_step_undoes_the_nb(cluster: Lab, tmp_path: Any) -> None:
    """minion-init's host step fails after the NB commit: its switch is taken out again."""
    node2 = cluster.nodes["node2"]
    plugin = os.path.join(os.path.dirname(sys.executable), "ovn-k8s-cni-overlay")
    assert_refused(cluster, node2, lambda: minion_init(
        node2, "10.244.2.0/24", f"--cni-plugin={plugin}", f"--cni-bin-dir={tmp_path}/bin",
        "--cni-conf-dir=/proc/nope/net.d"), "--cni-conf-dir: cannot create /proc/nope/net.d")
    # And a re-run that changes the node's subnet puts the old columns back.
    ok(minion_init(node2, "10.244.2.0/24"))
    before = cluster.nbctl("--columns=other_config", "list", "logical_switch", "node2")
    proc = minion_init(node2, "10.244.3.0/24", f"--cni-plugin={plugin}",
                       f"--cni-bin-dir={tmp_path}/bin", "--cni-conf-dir=/proc/nope/net.d")
    assert proc.returncode == 1 and "--cni-conf-dir: cannot create" in proc.stderr, proc
    assert cluster.nbctl("--columns=other_config", "list", "logical_switch", "node2") == before


def test_bridge_with_a_garbage_mac(cluster: Lab) -> None:
    node2 = cluster.nodes["node2"]
    node2.vsctl("add-br", "brgarbage")
    node2.vsctl("set", "interface", "brgarbage", 'mac_in_use="not-a-mac"')
    assert_refused(cluster, node2, lambda: gateway_init(node2, "192.0.2.20/24", "--bridge-interface=brgarbage"),
                   "OVS bridge brgarbage has no valid MAC address")


def test_silent_nb(cluster: Lab, silent_socket: str) -> None:
    """An NB that accepts and never answers: one line once --timeout is spent, not a hang."""
    node2 = cluster.nodes["node2"]
    assert_refused(cluster, node2, lambda: minion_init(node2, "10.244.2.0/24", f"--ovn-nb={silent_socket}",
                                                       "--timeout=1"),
                   f"no answer from the OVN NB database at {silent_socket} in time")


def test_silent_local_ovs(cluster: Lab, silent_socket: str) -> None:
    node2 = cluster.nodes["node2"]
    cmd = ["ip", "netns", "exec", node2.netns, *cli_prefix(), "minion-init", "--node-name=node2",
           "--cluster-ip-subnet=10.244.0.0/16", "--minion-switch-subnet=10.244.2.0/24", "--timeout=1",
           f"--ovs-db={silent_socket}", f"--ovn-nb={cluster.nb}"]
    assert_refused(cluster, node2, lambda: subprocess.run(cmd, capture_output=True, text=True, env=clean_env(),
                                                          timeout=60, check=False),
                   f"no answer from the local OVS database at {silent_socket} in time")
