"""OVN for Mesos on real OVN: two tenants with the same subnet, each with its own gateway.

Tasks are namespaces wired by `ovn-mesos-plugin`, run exactly as a Mesos agent runs it: in the
agent's (node's) namespace, CNI_* in the environment, the network configuration with the
task's NetworkInfo under args["org.apache.mesos"] on stdin. Every address lives inside the
lab's namespaces. The helpers here are shared by the other test_mesos_*.py modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from ovn_k8s.cni.netns import host_ifname_for
from sandbox.lab.cluster import Lab, Node
from tests.helpers import cli, nb_dump, ok, rows

pytestmark = pytest.mark.e2e

BIN = os.path.dirname(sys.executable)
OUTSIDE = "192.0.2.1"
SUBNET = "192.168.1.0/24"
CLUSTER = "192.168.0.0/16"
GATEWAY_IP = {"coke": "192.0.2.10", "pepsi": "192.0.2.11"}


NETNS_DIR = "/var/run/netns"


@pytest.fixture(autouse=True)
def remove_task_links(request: pytest.FixtureRequest) -> Iterator[None]:
    """ADD links /var/run/netns/<container-id> to the task's namespace (a lab namespace) and DEL
    removes it; a test that ends without DEL leaves links behind. Remove those, and only those:
    symlinks into this test's lab (imported by the other test_mesos_*.py modules)."""
    lab = request.getfixturevalue("lab") if "lab" in request.fixturenames else None
    yield
    if lab is None or not os.path.isdir(NETNS_DIR):
        return
    for name in os.listdir(NETNS_DIR):
        path = os.path.join(NETNS_DIR, name)
        if os.path.islink(path) and os.readlink(path).startswith(f"{NETNS_DIR}/{lab.prefix}-"):
            os.unlink(path)


def netns_links() -> dict[str, str]:
    """`ip netns ls` names that are links (the tasks'), with their targets."""
    return {n: os.readlink(os.path.join(NETNS_DIR, n)) for n in os.listdir(NETNS_DIR)
            if os.path.islink(os.path.join(NETNS_DIR, n))}


# --- helpers (imported by test_mesos_*.py) --------------------------------------------------------
def mesos(node: Node, *args: str, nb: str | None = None) -> subprocess.CompletedProcess[str]:
    """ovn-mesos-init in the node's namespace with its OVS (the NB from --ovn-nb)."""
    return cli(node, "ovn-mesos-init", *args, nb=nb or node.lab.nb)


def use_nb(lab: Lab, *nodes: Node) -> None:
    """As on a real agent: the NB address in the local OVS (external_ids:ovn-nb)."""
    for node in nodes:
        node.vsctl("set", "open_vswitch", ".", f"external_ids:ovn-nb={lab.nb}")


def network_conf(node: Node, labels: Mapping[str, str], *, version: str | None = "0.2.0",
                 **extra: Any) -> dict[str, Any]:
    """The configuration the agent sends: its network file plus the task's NetworkInfo."""
    conf: dict[str, Any] = {"name": "ovn", "type": "ovn-mesos-plugin", "ovs_db": node.ovs_db,
                            "args": {"org.apache.mesos": {"network_info": {
                                "name": "ovn",
                                "labels": {"labels": [{"key": k, "value": v} for k, v in labels.items()]}}}}}
    if version is not None:
        conf["cniVersion"] = version
    conf.update(extra)
    return conf


def plugin(node: Node, command: str, container: str, netns: str | None, conf: Mapping[str, Any] | str, *,
           ifname: str = "eth0", env: Mapping[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run ovn-mesos-plugin as the Mesos agent does; returns the process and its stdout JSON."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OVN_K8S_", "CNI_"))}
    clean.update({"OVN_K8S_CONFIG": "/dev/null", "CNI_COMMAND": command, "CNI_CONTAINERID": container,
                  "CNI_IFNAME": ifname, "CNI_PATH": "/var/lib/mesos/cni/plugins"})
    if netns is not None:
        clean["CNI_NETNS"] = f"/var/run/netns/{netns}"
    clean.update(env or {})
    stdin = conf if isinstance(conf, str) else json.dumps(conf)
    proc = subprocess.run(["ip", "netns", "exec", node.netns, os.path.join(BIN, "ovn-mesos-plugin")],
                          input=stdin, capture_output=True, text=True, env=clean, timeout=120, check=False)
    try:
        out = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        out = proc.stdout
    return proc, out


def add_task(lab: Lab, node: Node, name: str, network: str, *, tenant: str | None = None,
             version: str | None = "0.2.0") -> tuple[str, str]:
    """A task namespace on `node`, attached to `network`; returns (netns, its address)."""
    ns = lab.add_netns(name)
    labels = {"app": name, "logical_switch": network, **({"tenant": tenant} if tenant else {})}
    proc, result = plugin(node, "ADD", name, ns, network_conf(node, labels, version=version))
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    if version in ("0.2.0", None):
        return ns, result["ip4"]["ip"].split("/")[0]
    return ns, result["ips"][0]["address"].split("/")[0]


def unreachable(netns: str, ip: str) -> bool:
    """No echo reply within 2 s (used only once the path has been shown to work otherwise)."""
    return subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "3", "-i", "0.2", "-w", "2", ip],
                          capture_output=True, check=False).returncode != 0


def settled_dump(lab: Lab) -> dict[str, Any]:
    lab.wait_hv()
    return nb_dump(lab)


def client_addresses(log: str) -> list[str]:
    with open(log, encoding="utf-8") as f:
        return [line.split()[0] for line in f if "GET /" in line]


def init_tenant(node: Node, tenant: str, network: str, subnet: str = SUBNET) -> None:
    ok(mesos(node, "tenant-init", f"--tenant-name={tenant}"))
    ok(mesos(node, "network-init", f"--tenant-name={tenant}", f"--network-name={network}",
             f"--subnet={subnet}"))


def init_gateway(node: Node, tenant: str, physical_ip: str, *extra: str,
                 nic: str = "eth1") -> subprocess.CompletedProcess[str]:
    mode = [] if any(e.startswith("--bridge-interface") for e in extra) else [f"--physical-interface={nic}"]
    return mesos(node, "gateway-init", f"--tenant-name={tenant}", f"--cluster-ip-subnet={CLUSTER}",
                 f"--physical-ip={physical_ip}", *mode, *extra)


# --- the walkthrough: coke and pepsi -----------------------------------------------------------------
def test_two_tenants_same_subnet_own_gateways_isolated_published(lab: Lab) -> None:
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    use_nb(lab, node1, node2)
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    lab.connect_outside(node2)
    init_tenant(node1, "coke", "web")
    init_tenant(node1, "pepsi", "web")   # the same network name and subnet in another tenant
    ok(init_gateway(node1, "coke", "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    ok(init_gateway(node2, "pepsi", "192.0.2.11/24", f"--default-gw={OUTSIDE}"))

    tasks: dict[str, tuple[str, str]] = {}
    for name, node, tenant, version in (("coke-a", node1, "coke", "0.2.0"), ("coke-b", node2, "coke", "1.0.0"),
                                        ("pepsi-a", node1, "pepsi", "0.3.1"), ("pepsi-b", node2, "pepsi", "0.2.0"),
                                        ("pepsi-c", node2, "pepsi", "0.4.0")):
        tasks[name] = add_task(lab, node, name, "web", tenant=tenant, version=version)
    ip = {name: addr for name, (_, addr) in tasks.items()}
    ns = {name: netns for name, (netns, _) in tasks.items()}
    # as the original: `ip netns ls` on an agent lists its tasks by container ID
    listed = node1.exec(["ip", "netns", "ls"]).stdout.split()
    assert {"coke-a", "pepsi-a"} <= set(listed), listed
    assert netns_links()["coke-b"] == f"{NETNS_DIR}/{ns['coke-b']}"
    inside = node1.exec(["ip", "netns", "exec", "coke-a", "ip", "-4", "-o", "addr", "show", "eth0"]).stdout
    assert f"inet {ip['coke-a']}/24" in inside
    # the same addresses in both tenants: the address spaces overlap
    assert ip == {"coke-a": "192.168.1.2", "coke-b": "192.168.1.3", "pepsi-a": "192.168.1.2",
                  "pepsi-b": "192.168.1.3", "pepsi-c": "192.168.1.4"}
    ports = rows(lab, "Logical_Switch_Port", "name", "addresses", where=["external_ids:ovn-k8s/tenant=coke",
                                                                        "type=\"\""])
    assert {p["name"] for p in ports} >= {"eth0_coke-a", "eth0_coke-b"}
    for name in tasks:
        lab.start_http(ns[name], 80, name)
    lab.wait_hv()

    # east-west inside each tenant, across the two nodes
    assert lab.ping(ns["coke-a"], ip["coke-b"])
    assert lab.ping(ns["pepsi-b"], ip["pepsi-a"])
    assert lab.http_get(ns["coke-a"], "http://192.168.1.3/") == "hello-from-coke-b"
    assert lab.http_get(ns["pepsi-a"], "http://192.168.1.3/") == "hello-from-pepsi-b"
    assert lab.http_get(ns["coke-b"], "http://192.168.1.2/") == "hello-from-coke-a"
    # no way into the other tenant: .4 exists only in pepsi
    assert lab.http_get(ns["pepsi-a"], "http://192.168.1.4/") == "hello-from-pepsi-c"
    assert unreachable(ns["coke-a"], "192.168.1.4")
    assert lab.http_get(ns["coke-b"], "http://192.168.1.4/", timeout=2) is None

    # north-south: each tenant leaves through its own gateway's SNAT address
    out = lab.ns("out")
    coke_log = lab.start_http(out, 8080, "outside-coke")
    pepsi_log = lab.start_http(out, 8081, "outside-pepsi")
    for name in ("coke-a", "coke-b"):
        assert lab.http_get(ns[name], f"http://{OUTSIDE}:8080/") == "hello-from-outside-coke", name
    for name in ("pepsi-a", "pepsi-b", "pepsi-c"):
        assert lab.http_get(ns[name], f"http://{OUTSIDE}:8081/") == "hello-from-outside-pepsi", name
    assert set(client_addresses(coke_log)) == {GATEWAY_IP["coke"]}
    assert set(client_addresses(pepsi_log)) == {GATEWAY_IP["pepsi"]}
    # ... and the outside cannot reach tasks directly, even with a route to them
    subprocess.run(["ip", "-n", out, "route", "add", CLUSTER, "via", GATEWAY_IP["coke"]], check=True)
    assert unreachable(out, ip["coke-a"])

    # published VIPs: each tenant's gateway load-balances to that tenant's tasks only
    ok(mesos(node1, "publish", "--tenant-name=coke", "--vip=192.0.2.10:8000",
             "--backends=192.168.1.2:80,192.168.1.3:80"))
    ok(mesos(node2, "publish", "--tenant-name=pepsi", "--vip=192.0.2.11:8000",
             "--backends=192.168.1.2:80,192.168.1.3:80,192.168.1.4:80"))
    lab.wait_hv()
    coke_seen = {lab.http_get(out, "http://192.0.2.10:8000/") for _ in range(8)}
    pepsi_seen = {lab.http_get(out, "http://192.0.2.11:8000/") for _ in range(8)}
    assert coke_seen and coke_seen <= {"hello-from-coke-a", "hello-from-coke-b"}, coke_seen
    assert pepsi_seen and pepsi_seen <= {"hello-from-pepsi-a", "hello-from-pepsi-b", "hello-from-pepsi-c"}, pepsi_seen
    (lb,) = rows(lab, "Load_Balancer", "name", "vips", where=["name=lb_coke_tcp"])
    assert lb["vips"] == {"192.0.2.10:8000": "192.168.1.2:80,192.168.1.3:80"}

    # the original walkthrough's load balancer by hand (verbatim but for the addresses): its
    # `set ... load_balancer=` replaces the column; re-running gateway-init adds ours back
    # by mutation and keeps theirs, and both VIPs answer
    lab.nbctl("--may-exist", "lb-add", "coke", "192.0.2.10:32350", "192.168.1.2:80,192.168.1.3:80")
    lb_uuid = lab.nbctl("--bare", "--columns=_uuid", "find", "Load_Balancer", "name=coke")
    system_id = node1.vsctl("get", "open_vswitch", ".", "external_ids:system-id").strip('"')
    lab.nbctl("set", "logical_router", f"GR_coke_{system_id}", f"load_balancer={lb_uuid}")
    ok(init_gateway(node1, "coke", "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    lab.wait_hv()
    for vip in ("192.0.2.10:32350", "192.0.2.10:8000"):
        seen = {lab.http_get(out, f"http://{vip}/") for _ in range(6)}
        assert seen and seen <= {"hello-from-coke-a", "hello-from-coke-b"}, (vip, seen)

    # every init command again (and the publish): nothing changes, in the NB or on the hosts
    before, hosts = settled_dump(lab), (node1.vsctl("show"), node2.vsctl("show"))
    init_tenant(node1, "coke", "web")
    init_tenant(node2, "pepsi", "web")
    ok(init_gateway(node1, "coke", "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    ok(init_gateway(node2, "pepsi", "192.0.2.11/24", f"--default-gw={OUTSIDE}"))
    ok(mesos(node2, "publish", "--tenant-name=pepsi", "--vip=192.0.2.11:8000",
             "--backends=192.168.1.4:80,192.168.1.3:80,192.168.1.2:80"))
    assert nb_dump(lab) == before
    assert (node1.vsctl("show"), node2.vsctl("show")) == hosts
    assert len(rows(lab, "NAT", "external_ip")) == 2

    # unpublish: the VIP stops answering; the other tenant's stays
    assert ok(mesos(node1, "unpublish", "--tenant-name=coke", "--vip=192.0.2.10:8000")).stdout.startswith("Unpublished")
    lab.wait_hv()
    assert lab.http_get(out, "http://192.0.2.10:8000/", timeout=2) is None
    assert lab.http_get(out, "http://192.0.2.11:8000/", timeout=5) in {"hello-from-pepsi-a", "hello-from-pepsi-b",
                                                                         "hello-from-pepsi-c"}

    # DEL: the logical port, the OVS port and the veth go
    for name, node in (("coke-a", node1), ("pepsi-b", node2)):
        proc, out_json = plugin(node, "DEL", name, ns[name], network_conf(node, {"logical_switch": "web"}))
        assert (proc.returncode, out_json) == (0, None), proc.stderr
    assert not rows(lab, "Logical_Switch_Port", "name", where=["name=eth0_coke-a"])
    assert not rows(lab, "Logical_Switch_Port", "name", where=["name=eth0_pepsi-b"])
    for name, node in (("coke-a", node1), ("pepsi-b", node2)):
        veth = host_ifname_for(name, "eth0")
        assert veth not in node.vsctl("list-ports", "br-int").split()
        assert node.exec(["ip", "link", "show", veth], check=False).returncode != 0
        assert name not in node.exec(["ip", "netns", "ls"]).stdout.split()
    assert "pepsi-a" in node1.exec(["ip", "netns", "ls"]).stdout.split()
    assert host_ifname_for("pepsi-a", "eth0") in node1.vsctl("list-ports", "br-int").split()
    assert rows(lab, "Logical_Switch_Port", "name", where=["name=eth0_pepsi-a"])
