"""ovn-k8s-overlay on real OVN: rows, idempotency, and connectivity with real packets.

Pods are namespaces wired by hand (the CNI plugin is tested on its own); the 'outside'
network is a namespace with a Linux bridge; every address lives inside the lab's namespaces.
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from sandbox.lab.cluster import Lab
from tests.helpers import cli, gateway_init, identities, master_init, minion_init, nb_dump, ok, rows

pytestmark = pytest.mark.e2e

LS, LSP, LR, LRP = "Logical_Switch", "Logical_Switch_Port", "Logical_Router", "Logical_Router_Port"
ROUTE, NAT, LBG = "Logical_Router_Static_Route", "NAT", "Load_Balancer_Group"
OUTSIDE = "192.0.2.1"


def test_master_init_creates_exactly_the_topology_and_rerun_is_a_no_op(lab: Lab) -> None:
    node1 = lab.add_node("node1")
    assert ok(master_init(node1)).stdout.strip() == "Initialization complete."
    assert identities(lab) == {
        (LBG, "k8s-cluster-lbs"), (LBG, "k8s-gateway-lbs"),
        (LR, "cluster-router"), (LS, "join-switch"), (LRP, "rtoj-node1"), (LSP, "jtor-node1"),
        (LS, "switch:node1"), (LRP, "rtos-node1"), (LSP, "stor-node1"), (LSP, "k8s-node1")}
    (router,) = rows(lab, LR, "name", "external_ids", "ports")
    assert router["name"] == "node1"
    assert router["external_ids"]["k8s-cluster-router"] == "yes"
    (sw,) = rows(lab, LS, "other_config", "external_ids", where=["name=node1"])
    assert sw["other_config"] == {"subnet": "10.244.1.0/24"}
    assert sw["external_ids"]["gateway_ip"] == "10.244.1.1/24"
    # the management port exists on the host with its address and the cluster route
    addr = node1.exec(["ip", "-4", "-o", "addr", "show", "k8s-node1"]).stdout
    assert "10.244.1.2/24" in addr
    route = node1.exec(["ip", "route", "show", "10.244.0.0/16"]).stdout
    assert "via 10.244.1.1 dev k8s-node1" in route
    assert node1.vsctl("get", "interface", "k8s-node1", "external_ids:iface-id") == 'k8s-node1'

    before = nb_dump(lab)
    ovs_before = node1.vsctl("show")
    ok(master_init(node1))
    assert nb_dump(lab) == before
    assert node1.vsctl("show") == ovs_before


def cluster_with_gateway(lab: Lab) -> tuple:  # type: ignore[type-arg]
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    ok(master_init(node1))
    ok(minion_init(node2, "10.244.2.0/24"))
    ok(gateway_init(node1, "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    pod = lab.add_pod(node2, "pod2", cidr="10.244.2.10/24", gateway="10.244.2.1",
                      mac="0a:58:0a:f4:02:0a", switch="node2")
    lab.wait_port_up("pod2")
    lab.wait_hv()
    return node1, node2, pod


def test_pods_nodes_and_outside_connectivity(lab: Lab) -> None:
    node1, node2, pod = cluster_with_gateway(lab)
    # pod on node2 -> node1's management port: across the geneve tunnel and the cluster router
    assert lab.ping(pod.netns, "10.244.1.2")
    # each node reaches pods through its own management port
    assert lab.ping(node2.netns, pod.ip)
    assert lab.ping(node1.netns, pod.ip)
    # pod -> outside through the gateway router on node1; the server sees the SNAT address
    log = lab.start_http(lab.ns("out"), 8080, "outside")
    assert lab.http_get(pod.netns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"
    with open(log, encoding="utf-8") as f:
        clients = {line.split()[0] for line in f if "GET /" in line}
    assert clients == {"192.0.2.10"}
    # the outside cannot reach pod addresses directly (it has no route; give it one to be sure)
    out = lab.ns("out")
    subprocess.run(["ip", "-n", out, "route", "add", "10.244.0.0/16", "via", "192.0.2.10"], check=True)
    assert not lab.ping(out, pod.ip, count=2)
    # the gateway router answers on its physical address
    assert lab.ping(out, "192.0.2.10")


def test_two_gateways_share_egress_and_reruns_add_no_rows(lab: Lab) -> None:
    node1, node2, pod2 = cluster_with_gateway(lab)
    lab.connect_outside(node2)
    ok(gateway_init(node2, "192.0.2.11/24", f"--default-gw={OUTSIDE}"))
    pod1 = lab.add_pod(node1, "pod1", cidr="10.244.1.10/24", gateway="10.244.1.1",
                       mac="0a:58:0a:f4:01:0a", switch="node1")
    lab.wait_port_up("pod1")
    lab.wait_hv()
    # one ECMP default route per gateway on the cluster router, each via its own join address
    routes = rows(lab, ROUTE, "ip_prefix", "nexthop", where=["ip_prefix=\"0.0.0.0/0\"",
                                                           "external_ids:ovn-k8s/owner!=x"])
    assert sorted(r["nexthop"] for r in routes if r["nexthop"].startswith("100.64.")) == \
        ["100.64.0.2", "100.64.0.3"]
    lab.start_http(lab.ns("out"), 8080, "outside")
    for pod in (pod1, pod2):
        assert lab.http_get(pod.netns, f"http://{OUTSIDE}:8080/") == "hello-from-outside", pod.name
        assert lab.ping(pod.netns, OUTSIDE), pod.name
    before = nb_dump(lab)
    ok(gateway_init(node1, "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    ok(gateway_init(node2, "192.0.2.11/24", f"--default-gw={OUTSIDE}"))
    assert nb_dump(lab) == before
    assert len(rows(lab, NAT, "external_ip")) == 2


def test_rerun_with_new_arguments_converges(lab: Lab) -> None:
    node1, node2, pod = cluster_with_gateway(lab)
    ok(minion_init(node2, "10.244.12.0/24"))
    (sw,) = rows(lab, LS, "other_config", where=["name=node2"])
    assert sw["other_config"] == {"subnet": "10.244.12.0/24"}
    assert rows(lab, LRP, "networks", where=["name=rtos-node2"])[0]["networks"] == "10.244.12.1/24"
    assert "10.244.12.2/24" in node2.exec(["ip", "-4", "-o", "addr", "show", "k8s-node2"]).stdout
    assert "10.244.2.2" not in node2.exec(["ip", "-4", "-o", "addr", "show", "k8s-node2"]).stdout
    ok(gateway_init(node1, "192.0.2.20/24", "--rampout-ip-subnets=10.244.12.0/24"))
    (nat,) = rows(lab, NAT, "external_ip")
    assert nat["external_ip"] == "192.0.2.20"
    src = rows(lab, ROUTE, "ip_prefix", "policy", "nexthop", where=["policy=src-ip"])
    assert src == [{"ip_prefix": "10.244.12.0/24", "policy": "src-ip", "nexthop": "100.64.0.2"}]
    # --default-gw dropped: the gateway router's default route is gone
    assert not [r for r in rows(lab, ROUTE, "nexthop") if r["nexthop"] == OUTSIDE]
    # another NIC: the old one leaves br-int along with its logical port
    lab.connect_outside(node1, "eth2")
    ok(gateway_init(node1, "192.0.2.20/24", nic="eth2"))
    ports = node1.vsctl("list-ports", "br-int").split()
    assert "eth2" in ports and "eth1" not in ports, ports
    assert [r["name"] for r in rows(lab, LSP, "name", where=["name=eth1_node1"])] == []
    assert rows(lab, LSP, "name", where=["name=eth2_node1"])


def test_concurrent_gateway_inits_get_distinct_join_addresses(lab: Lab) -> None:
    nodes = [lab.add_node(f"node{i}") for i in (1, 2, 3)]
    lab.add_outside(f"{OUTSIDE}/24")
    ok(master_init(nodes[0]))
    for n in nodes:
        lab.connect_outside(n)
    results: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(i: int) -> None:
        results[nodes[i].name] = gateway_init(nodes[i], f"192.0.2.{20 + i}/24")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results.values():
        ok(r)
    joins = [r["networks"] for r in rows(lab, LRP, "networks", where=["name!=rtoj-node1",
                                                                      "external_ids:connect_to_join=yes"])]
    assert sorted(joins) == ["100.64.0.2/16", "100.64.0.3/16", "100.64.0.4/16"]


def test_shared_nic_host_keeps_its_address_and_stays_reachable(lab: Lab) -> None:
    node1 = lab.add_node("node1")
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    node1.exec(["ip", "addr", "add", "192.0.2.50/24", "dev", "eth1"])
    node1.exec(["ip", "route", "add", "198.51.100.0/24", "via", OUTSIDE])
    ok(master_init(node1))
    assert ok(cli(node1, "ovn-k8s-util", "nics-to-bridge", "eth1")).stdout.strip() == "eth1 -> breth1"
    assert "192.0.2.50/24" in node1.exec(["ip", "-4", "-o", "addr", "show", "breth1"]).stdout
    assert "inet " not in node1.exec(["ip", "-4", "-o", "addr", "show", "eth1"]).stdout
    assert "198.51.100.0/24 via 192.0.2.1 dev breth1" in node1.exec(["ip", "route"]).stdout
    # idempotent: nothing left to move, nothing changes
    ovs_before = node1.vsctl("show")
    ok(cli(node1, "ovn-k8s-util", "nics-to-bridge", "eth1"))
    assert node1.vsctl("show") == ovs_before
    ok(gateway_init(node1, "192.0.2.50/24", "--bridge-interface=breth1", f"--default-gw={OUTSIDE}"))
    mac = node1.exec(["cat", "/sys/class/net/breth1/address"]).stdout.strip()
    (rtoe,) = rows(lab, LRP, "mac", where=["name=rtoe-GR_node1"])
    assert rtoe["mac"] == mac
    assert node1.vsctl("get", "interface", "k8s-patch-br-int-breth1", "external_ids:iface-id") == \
        'breth1_node1'
    lab.wait_hv()
    out = lab.ns("out")
    assert lab.ping(out, "192.0.2.50")
    lab.start_http(node1.netns, 22, "host-ssh", text="host-service")
    for _ in range(5):
        assert lab.http_get(out, "http://192.0.2.50:22/") == "host-service"
    before = nb_dump(lab)
    ok(gateway_init(node1, "192.0.2.50/24", "--bridge-interface=breth1", f"--default-gw={OUTSIDE}"))
    assert nb_dump(lab) == before


def test_minion_init_installs_cni_only_once_the_plugin_exists(lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    node1 = lab.add_node("node1")
    ok(master_init(node1))
    conf, bindir, path = tmp_path / "net.d", tmp_path / "bin", tmp_path / "path"
    flags = [f"--cni-conf-dir={conf}", f"--cni-bin-dir={bindir}"]
    import os
    # PATH without the venv's bin, which holds the real plugin
    no_plugin = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                if not os.path.exists(os.path.join(p, "ovn-k8s-cni-overlay")))
    proc = ok(cli(node1, "ovn-k8s-overlay", "minion-init", "--node-name=node1",
                  "--cluster-ip-subnet=10.244.0.0/16", "--minion-switch-subnet=10.244.1.0/24", *flags,
                  env={"PATH": no_plugin}))
    assert "not found in PATH" in proc.stderr
    assert not conf.exists()
    path.mkdir()
    plugin = path / "ovn-k8s-cni-overlay"
    plugin.write_text("#!/bin/sh\nexit 0\n")
    plugin.chmod(0o755)
    ok(cli(node1, "ovn-k8s-overlay", "minion-init", "--node-name=node1",
           "--cluster-ip-subnet=10.244.0.0/16", "--minion-switch-subnet=10.244.1.0/24", *flags,
           env={"PATH": f"{path}:{os.environ['PATH']}"}))
    assert os.path.realpath(bindir / "ovn-k8s-cni-overlay") == str(plugin)
    import json
    conflist = json.loads((conf / "10-ovn-k8s.conflist").read_text())
    assert conflist["cniVersion"] == "1.0.0"
    assert conflist["name"] == "ovn-k8s"
    # what the plugin needs on this node; no API server was configured, so the plugin will
    # read it from the node's OVS external_ids (tests/e2e/test_cni_plugin.py runs the plugin)
    assert conflist["plugins"] == [{"type": "ovn-k8s-cni-overlay", "mtu": 1400, "bridge": "br-int",
                                    "ovsdb": node1.ovs_db,
                                    "log_file": "/var/log/openvswitch/ovn-k8s-cni-overlay.log"}]
    assert (conf / "10-ovn-k8s.conflist").stat().st_mode & 0o777 == 0o644


def test_nodes_reach_services_through_the_management_port(lab: Lab) -> None:
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    ok(master_init(node1, "10.244.1.0/24", "--service-cluster-ip-range=10.96.0.0/16"))
    ok(minion_init(node2, "10.244.2.0/24", "--service-cluster-ip-range=10.96.0.0/16"))
    assert "10.96.0.0/16 via 10.244.2.1 dev k8s-node2" in node2.exec(["ip", "route"]).stdout
    pod = lab.add_pod(node1, "web", cidr="10.244.1.10/24", gateway="10.244.1.1",
                      mac="0a:58:0a:f4:01:0a", switch="node1")
    lab.start_http(pod.netns, 8080, "web")
    uuid = lab.nbctl("create", "load_balancer", "name=test-vip", "protocol=tcp",
                     'vips={"10.96.0.10:80"="10.244.1.10:8080"}')
    lab.nbctl("add", "load_balancer_group", "k8s-cluster-lbs", "load_balancer", uuid)
    lab.wait_port_up("web")
    lab.wait_hv()
    for node in (node1, node2):
        assert lab.http_get(node.netns, "http://10.96.0.10/") == "hello-from-web", node.name
    # a service range that overlaps the cluster subnet is refused
    bad = minion_init(node2, "10.244.2.0/24", "--service-cluster-ip-range=10.240.0.0/12")
    assert bad.returncode == 1 and "overlaps --cluster-ip-subnet" in bad.stderr
