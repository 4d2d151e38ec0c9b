"""ovn-mesos-plugin on real OVN, run as the Mesos agent runs it: concurrent ADDs, idempotent
ADD, CHECK, DEL, every error path as CNI error JSON (leaving nothing behind), and the install."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ovn_k8s.cni.netns import host_ifname_for
from sandbox.lab.cluster import Lab, Node
from tests.e2e.test_mesos import (
    init_tenant,
    mesos,
    network_conf,
    plugin,
    remove_task_links,  # noqa: F401 (autouse fixture)
    use_nb,
)
from tests.helpers import nb_dump, ok, rows

pytestmark = pytest.mark.e2e

LSP = "Logical_Switch_Port"


def task_ports(lab: Lab) -> dict[str, str]:
    return {r["name"]: r["addresses"] for r in rows(lab, LSP, "name", "addresses",
                                                     where=["external_ids:ovn-k8s/container!=\"\""])}


class SlowNb:
    """A unix-socket relay to the NB that holds back what the server sends by `delay` seconds.

    Each plugin then plans on a view of the NB at least that old, so ADDs started together
    really do allocate against the same state; only the transaction's verification of the
    switch's ports keeps them from handing out one address twice."""

    def __init__(self, target: str, path: str, delay: float) -> None:
        self.target, self.path, self.delay = target, path, delay
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.delay), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                time.sleep(delay)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def test_concurrent_adds_get_distinct_addresses(lab: Lab) -> None:
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    use_nb(lab, node1, node2)
    init_tenant(node1, "coke", "web")
    tasks = [(f"t{i}", node1 if i % 2 else node2, lab.add_netns(f"t{i}")) for i in range(8)]
    results: dict[str, Any] = {}
    start = threading.Barrier(len(tasks))
    slow = SlowNb(lab.nb.removeprefix("unix:"), f"{lab.dir}/slow-nb.sock", delay=0.3)

    def add(name: str, node: Node, ns: str) -> None:
        start.wait()
        conf = network_conf(node, {"logical_switch": "web"}, ovn_nb=f"unix:{slow.path}")
        results[name] = plugin(node, "ADD", name, ns, conf)

    threads = [threading.Thread(target=add, args=task) for task in tasks]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        slow.close()
    addresses = {}
    for name, (proc, out) in results.items():
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        addresses[name] = out["ip4"]["ip"]
    assert len(set(addresses.values())) == 8, addresses
    assert sorted(addresses.values(), key=lambda a: int(a.split(".")[3].split("/")[0])) == \
        [f"192.168.1.{i}/24" for i in range(2, 10)]
    ports = task_ports(lab)
    assert {n: a.split()[1] for n, a in ports.items()} == {f"eth0_{n}": a.split("/")[0] for n, a in addresses.items()}
    for node in (node1, node2):
        mine = {host_ifname_for(name, "eth0") for name, n, _ in tasks if n is node}
        assert mine <= set(node.vsctl("list-ports", "br-int").split())
    lab.wait_hv()
    assert lab.ping(tasks[0][2], addresses["t1"].split("/")[0])


def test_add_is_idempotent_check_and_del(lab: Lab) -> None:
    node1 = lab.add_node("node1")
    use_nb(lab, node1)
    init_tenant(node1, "coke", "web")
    ns = lab.add_netns("task")
    conf = network_conf(node1, {"logical_switch": "web"}, version="1.0.0")
    proc, first = plugin(node1, "ADD", "task", ns, conf)
    assert proc.returncode == 0, proc.stderr
    proc, again = plugin(node1, "ADD", "task", ns, conf)
    assert proc.returncode == 0 and again == first
    assert first["ips"] == [{"address": "192.168.1.2/24", "gateway": "192.168.1.1", "interface": 1}]
    veth = host_ifname_for("task", "eth0")
    assert first["interfaces"][0]["name"] == veth
    assert node1.vsctl("get", "interface", veth, "external_ids:iface-id") == "eth0_task"
    assert node1.vsctl("get", "interface", veth, "external_ids:ovn-installed") == '"true"'
    assert task_ports(lab) == {"eth0_task": "0a:58:c0:a8:01:02 192.168.1.2"}
    (port,) = rows(lab, LSP, "port_security", where=["name=eth0_task"])
    assert port["port_security"] == "0a:58:c0:a8:01:02 192.168.1.2"
    check = {**conf, "prevResult": first}
    proc, out = plugin(node1, "CHECK", "task", ns, check)
    assert (proc.returncode, out) == (0, None), proc.stdout
    # drift inside the task: CHECK reports it
    subprocess.run(["ip", "-n", ns, "addr", "flush", "dev", "eth0"], check=True)
    proc, out = plugin(node1, "CHECK", "task", ns, check)
    assert proc.returncode == 1 and out["code"] == 103 and "lacks address 192.168.1.2/24" in out["details"]
    # ADD again repairs it
    proc, out = plugin(node1, "ADD", "task", ns, conf)
    assert proc.returncode == 0 and out == first
    proc, out = plugin(node1, "DEL", "task", ns, conf)
    assert (proc.returncode, out) == (0, None), proc.stdout
    assert task_ports(lab) == {}
    assert veth not in node1.vsctl("list-ports", "br-int").split()
    assert node1.exec(["ip", "link", "show", veth], check=False).returncode != 0
    proc, out = plugin(node1, "DEL", "task", None, conf)       # DEL again, without CNI_NETNS
    assert (proc.returncode, out) == (0, None), proc.stdout
    proc, out = plugin(node1, "CHECK", "task", ns, check)
    assert proc.returncode == 1 and out["code"] == 103 and "logical port eth0_task does not exist" in out["details"]


def test_network_made_by_hand_and_task_id_label(lab: Lab) -> None:
    """The original README (M:README.md, "Setting up OVN networks" and "Passing the network to
    mesos"): a network made with ovn-nbctl and other_config:subnet, and tasks that pass a
    task_id label, which names the logical port <logical_switch>_<task_id>."""
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    use_nb(lab, node1, node2)
    line = 'ovn-nbctl ls-add $SWITCH -- set logical_switch $SWITCH other_config:subnet="$SUBNET"'
    subprocess.run(["sh", "-c", line], check=True, env={
        "PATH": os.environ["PATH"], "OVN_NB_DB": lab.nb, "SWITCH": "coke1", "SUBNET": "192.168.7.0/24"})
    switch_before = rows(lab, "Logical_Switch", "external_ids", "other_config", where=["name=coke1"])

    def conf(task_id: str | None, version: str = "0.2.0") -> dict[str, Any]:
        labels = {"app": "apachecoke", "logical_switch": "coke1", **({"task_id": task_id} if task_id else {})}
        return network_conf(node1, labels, version=version)

    ns1, ns2 = lab.add_netns("hand1"), lab.add_netns("hand2")
    proc, first = plugin(node1, "ADD", "hand1", ns1, conf("1234"))
    assert proc.returncode == 0, proc.stdout
    assert first["ip4"] == {"ip": "192.168.7.2/24", "gateway": "192.168.7.1",
                            "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.7.1"}]}
    proc, second = plugin(node2, "ADD", "hand2", ns2, {**conf("5678", "1.0.0"), "ovs_db": node2.ovs_db})
    assert proc.returncode == 0, proc.stdout
    assert task_ports(lab) == {"coke1_1234": "0a:58:c0:a8:07:02 192.168.7.2",
                               "coke1_5678": "0a:58:c0:a8:07:03 192.168.7.3"}
    assert lab.nbctl("lsp-get-ls", "coke1_1234").endswith("(coke1)")
    veth1 = host_ifname_for("hand1", "eth0")
    assert node1.vsctl("get", "interface", veth1, "external_ids:iface-id") == "coke1_1234"
    # the switch stays the user's: nothing of ours is written into it but the ports
    assert rows(lab, "Logical_Switch", "external_ids", "other_config", where=["name=coke1"]) == switch_before
    lab.wait_hv()
    assert lab.ping(ns1, "192.168.7.3")
    # ADD again: the same; CHECK finds the port by its owner
    proc, again = plugin(node1, "ADD", "hand1", ns1, conf("1234"))
    assert proc.returncode == 0 and again == first
    proc, out = plugin(node2, "CHECK", "hand2", ns2, {**conf("5678", "1.0.0"), "ovs_db": node2.ovs_db,
                                                      "prevResult": second})
    assert (proc.returncode, out) == (0, None), proc.stdout
    # another task with a task_id already in use: refused, nothing left behind
    before = nb_dump(lab)
    proc, out = plugin(node1, "ADD", "hand3", lab.add_netns("hand3"), conf("1234"))
    assert proc.returncode == 1 and (out["code"], out["msg"]) == (112, "logical port name taken"), out
    assert nb_dump(lab) == before and "hand3" not in os.listdir("/var/run/netns")
    # without task_id: the later original's <ifname>_<container>
    proc, out = plugin(node1, "ADD", "hand3", lab.ns("hand3"), conf(None))
    assert proc.returncode == 0 and out["ip4"]["ip"] == "192.168.7.4/24", proc.stdout
    assert "eth0_hand3" in task_ports(lab)
    # a switch made by hand without a subnet: the error says what to set
    lab.nbctl("ls-add", "bare")
    proc, out = plugin(node1, "ADD", "hand4", lab.add_netns("hand4"),
                       network_conf(node1, {"logical_switch": "bare", "task_id": "1"}))
    assert proc.returncode == 1 and out["code"] == 110 and "other_config:subnet" in out["details"], out
    # DEL needs no labels: the port goes by its owner, the switch stays
    for name, node in (("hand1", node1), ("hand3", node1)):
        proc, out = plugin(node, "DEL", name, None, network_conf(node, {}))
        assert (proc.returncode, out) == (0, None), proc.stdout
    assert set(task_ports(lab)) == {"coke1_5678"}
    assert rows(lab, "Logical_Switch", "external_ids", "other_config", where=["name=coke1"]) == switch_before


def test_netns_link_made_on_add_and_removed_on_del(lab: Lab) -> None:
    """`/var/run/netns/<container-id>` -> CNI_NETNS (Mesos' own bind mount), as the original made
    it: `ip netns ls` on the agent lists the task, `ip netns exec <container-id>` enters it."""
    node1 = lab.add_node("node1")
    use_nb(lab, node1)
    init_tenant(node1, "coke", "coke1")
    ns = lab.add_netns("mesos-task")
    container = f"{lab.prefix}-c1"           # a name of this lab's: nobody else's link
    conf = network_conf(node1, {"logical_switch": "coke1"})
    proc, out = plugin(node1, "ADD", container, ns, conf)
    assert proc.returncode == 0, proc.stdout
    assert os.readlink(f"/var/run/netns/{container}") == f"/var/run/netns/{ns}"
    assert container in node1.exec(["ip", "netns", "ls"]).stdout.split()
    inside = node1.exec(["ip", "netns", "exec", container, "ip", "-4", "-o", "addr", "show", "eth0"]).stdout
    assert "inet 192.168.1.2/24" in inside
    # a stale link of that name (an earlier container's) is replaced
    link = f"/var/run/netns/{container}"
    os.unlink(link)
    os.symlink(f"/var/run/netns/{lab.prefix}-gone", link)
    proc, _ = plugin(node1, "ADD", container, ns, conf)
    assert proc.returncode == 0 and os.readlink(f"/var/run/netns/{container}") == f"/var/run/netns/{ns}"
    proc, out = plugin(node1, "DEL", container, None, conf)
    assert (proc.returncode, out) == (0, None), proc.stdout
    assert not os.path.lexists(f"/var/run/netns/{container}")
    assert ns in node1.exec(["ip", "netns", "ls"]).stdout.split()      # the namespace itself stays
    # CNI_NETNS already is /var/run/netns/<container-id>: no link, and DEL leaves the namespace
    proc, _ = plugin(node1, "ADD", ns, ns, conf)
    assert proc.returncode == 0 and not os.path.islink(f"/var/run/netns/{ns}")
    proc, _ = plugin(node1, "DEL", ns, ns, conf)
    assert proc.returncode == 0 and ns in node1.exec(["ip", "netns", "ls"]).stdout.split()
    assert not os.path.islink(f"/var/run/netns/{ns}")


def test_every_error_path_is_cni_error_json_and_leaves_nothing(lab: Lab) -> None:
    node1 = lab.add_node("node1")
    use_nb(lab, node1)
    init_tenant(node1, "coke", "web")
    init_tenant(node1, "pepsi", "web")
    ok(mesos(node1, "network-init", "--tenant-name=coke", "--network-name=tiny", "--subnet=192.168.9.0/30"))
    ns = lab.add_netns("task")
    proc, out = plugin(node1, "ADD", "first", lab.add_netns("first"), network_conf(node1, {"logical_switch": "tiny"}))
    assert proc.returncode == 0 and out["ip4"]["ip"] == "192.168.9.2/30"
    ovs_before = node1.vsctl("show")
    links_before = node1.exec(["ip", "-o", "link"]).stdout.count("\n")

    def fails(code: int, msg: str, labels: dict[str, str] | None = None, *, conf: Any = None,
              env: dict[str, str] | None = None, netns: str | None = ns, command: str = "ADD", **extra: Any) -> Any:
        before = nb_dump(lab)
        body = conf if conf is not None else network_conf(node1, labels or {"logical_switch": "web"}, **extra)
        proc, out = plugin(node1, command, "task", netns, body, env=env)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert isinstance(out, dict) and set(out) == {"cniVersion", "code", "msg", "details"}, proc.stdout
        assert (out["code"], out["msg"]) == (code, msg), out
        assert "Traceback" not in proc.stdout + proc.stderr
        assert nb_dump(lab) == before
        assert node1.vsctl("show") == ovs_before
        assert node1.exec(["ip", "-o", "link"]).stdout.count("\n") == links_before
        return out

    fails(4, "required env variables [CNI_IFNAME] missing", env={"CNI_IFNAME": ""})
    fails(6, "error decoding network config", conf="{")
    fails(1, "incompatible CNI versions", version="9.9.9")
    fails(1, "config version does not allow CHECK", command="CHECK")
    fails(7, "Failed to get logical_switch from mesos config", {"app": "x"})
    fails(2, "unsupported field ipMasq=true", ipMasq=True)
    out = fails(110, "unknown network", {"logical_switch": "nope"})
    assert out["cniVersion"] == "0.2.0" and "no network 'nope'" in out["details"]
    fails(110, "unknown network", {"logical_switch": "web", "tenant": "fanta"})
    out = fails(7, "ambiguous network", {"logical_switch": "web"})
    assert "network 'web' exists in tenants coke, pepsi: add a 'tenant' label" in out["details"]
    out = fails(111, "no free address", {"logical_switch": "tiny", "tenant": "coke"})
    assert "network tiny of tenant coke" in out["details"]
    # failures after the logical port was made: it is removed again
    fails(3, "network namespace does not exist", {"logical_switch": "web", "tenant": "coke"}, netns="nope")
    out = fails(101, "OVS bridge br-nope does not exist", {"logical_switch": "coke_web"}, bridge="br-nope")
    out = fails(104, "OVN did not bind eth0_task before the deadline", {"logical_switch": "coke_web"},
                bridge="br-phy", timeout=2)
    out = fails(11, "cannot reach the OVN NB", {"logical_switch": "coke_web"}, ovn_nb="unix:/nonexistent.sock")
    assert "cannot reach the OVN NB database at unix:/nonexistent.sock" in out["details"]
    fails(101, "cannot connect to the local OVSDB", {"logical_switch": "coke_web"}, ovs_db="unix:/nonexistent.sock",
          timeout=3)
    # the same network by tenant label or by switch name works
    proc, out = plugin(node1, "ADD", "task", ns, network_conf(node1, {"logical_switch": "web", "tenant": "pepsi"}))
    assert proc.returncode == 0 and out["ip4"]["ip"] == "192.168.1.2/24", proc.stdout
    assert rows(lab, LSP, "external_ids", where=["name=eth0_task"])[0]["external_ids"]["ovn-k8s/tenant"] == "pepsi"


def test_plugin_install_for_the_agent(lab: Lab, tmp_path: Path) -> None:
    node1 = lab.add_node("node1")
    use_nb(lab, node1)
    init_tenant(node1, "coke", "web")
    plugins, configs = tmp_path / "plugins", tmp_path / "config"
    args = ("plugin-install", f"--plugin-dir={plugins}", f"--config-dir={configs}", f"--ovs-db={node1.ovs_db}")
    ok(subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "ovn-mesos-init"), *args],
                      capture_output=True, text=True, check=False))
    link = plugins / "ovn-mesos-plugin"
    assert link.is_symlink() and os.access(link, os.X_OK)
    conf = json.loads((configs / "10-ovn.conf").read_text())
    assert conf == {"cniVersion": "0.2.0", "name": "ovn", "type": "ovn-mesos-plugin", "ovs_db": node1.ovs_db}
    mtime = (configs / "10-ovn.conf").stat().st_mtime_ns
    ok(subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "ovn-mesos-init"), *args],
                      capture_output=True, text=True, check=False))
    assert (configs / "10-ovn.conf").stat().st_mtime_ns == mtime
    # the agent runs the installed plugin with the installed config plus the task's NetworkInfo
    conf["args"] = {"org.apache.mesos": {"network_info": {"name": "ovn", "labels": {"labels": [
        {"key": "logical_switch", "value": "web"}]}}}}
    ns = lab.add_netns("task")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVN_K8S_", "CNI_"))}
    env.update({"OVN_K8S_CONFIG": "/dev/null", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "task",
                "CNI_IFNAME": "eth0", "CNI_NETNS": f"/var/run/netns/{ns}", "CNI_PATH": str(plugins)})
    proc = subprocess.run(["ip", "netns", "exec", node1.netns, str(link)], input=json.dumps(conf),
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == {"cniVersion": "0.2.0", "ip4": {
        "ip": "192.168.1.2/24", "gateway": "192.168.1.1", "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.1.1"}]}}
    proc = subprocess.run([os.path.join(os.path.dirname(os.sys.executable), "ovn-mesos-init"), "plugin-install",
                           f"--plugin-dir={plugins}", f"--config-dir={configs}", "--plugin=/nonexistent"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == \
        "ovn-mesos-init: error: ovn-mesos-plugin not found at /nonexistent: install ovn-k8s, or pass --plugin PATH"
