"""ovn-mesos-init on real OVN: exact rows, a tenant's second gateway, a NIC shared by two
tenants, deletes that remove exactly what was created, shared-bridge mode, and idempotency."""

from __future__ import annotations

import subprocess
import threading

import pytest

from sandbox.lab.cluster import Lab
from tests.e2e.test_mesos import (
    CLUSTER,
    OUTSIDE,
    add_task,
    client_addresses,
    init_gateway,
    init_tenant,
    mesos,
    network_conf,
    plugin,
    remove_task_links,  # noqa: F401 (autouse fixture)
    settled_dump,
    use_nb,
)
from tests.e2e.test_mesos_plugin import SlowNb
from tests.helpers import cli, identities, nb_dump, ok, rows

pytestmark = pytest.mark.e2e

LS, LSP, LR, LRP = "Logical_Switch", "Logical_Switch_Port", "Logical_Router", "Logical_Router_Port"
ROUTE, NAT, LB, ACL = "Logical_Router_Static_Route", "NAT", "Load_Balancer", "ACL"


def test_rows_of_one_tenant_and_reruns_change_nothing(lab: Lab) -> None:
    node1 = lab.add_node("node1")
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    assert ok(mesos(node1, "tenant-init", "--tenant-name=coke")).stdout.strip() == "Initialization complete."
    init_tenant(node1, "coke", "coke1")
    ok(init_gateway(node1, "coke", "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    assert identities(lab) == {
        (LR, "tenant-router:coke"), (LS, "tenant-join:coke"), (LRP, "rtoj-coke"), (LSP, "jtor-coke"),
        (LB, "tenant-lb:coke:tcp"), (LB, "tenant-lb:coke:udp"),
        (LS, "tenant-network:coke/coke1"), (LRP, "rtos-coke_coke1"), (LSP, "stor-coke_coke1"),
        (LR, "tenant-gateway-router:coke/node1"), (LRP, "rtoj-GR_coke_node1"), (LSP, "jtor-GR_coke_node1"),
        (LRP, "rtoe-GR_coke_node1"), (LSP, "etor-GR_coke_node1"), (ACL, "tenant-isolation:coke/node1"),
        (NAT, "tenant-snat:coke/node1"), (ROUTE, "tenant-gateway:coke/node1:cluster"),
        (ROUTE, "tenant-gateway:coke/node1:default"), (ROUTE, "tenant-router:coke/node1:default"),
        (LS, "tenant-external-switch:node1/eth1"), (LSP, "eth1_node1")}
    names = {r["name"] for r in rows(lab, LS, "name")} | {r["name"] for r in rows(lab, LR, "name")}
    assert names == {"coke", "join_coke", "coke_coke1", "GR_coke_node1", "ext_eth1_node1"}
    (gr,) = rows(lab, LR, "options", "load_balancer", where=["name=GR_coke_node1"])
    assert gr["options"] == {"chassis": "node1", "lb_force_snat_ip": "100.64.0.2"}
    assert len(gr["load_balancer"]) == 2
    (rtoj,) = rows(lab, LRP, "networks", where=["name=rtoj-GR_coke_node1"])
    assert rtoj["networks"] == "100.64.0.2/16"
    (nat,) = rows(lab, NAT, "type", "logical_ip", "external_ip")
    assert nat == {"type": "snat", "logical_ip": CLUSTER, "external_ip": "192.0.2.10"}
    assert node1.vsctl("get", "interface", "eth1", "external_ids:iface-id") == "eth1_node1"
    assert "inet " not in node1.exec(["ip", "-4", "-o", "addr", "show", "eth1"]).stdout

    before, ovs_before = settled_dump(lab), node1.vsctl("show")
    init_tenant(node1, "coke", "coke1")
    ok(init_gateway(node1, "coke", "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    assert nb_dump(lab) == before
    assert node1.vsctl("show") == ovs_before
    # new arguments converge: another physical IP rewrites the one SNAT row, no default gw
    ok(init_gateway(node1, "coke", "192.0.2.20/24"))
    (nat,) = rows(lab, NAT, "external_ip")
    assert nat["external_ip"] == "192.0.2.20"
    assert not [r for r in rows(lab, ROUTE, "nexthop") if r["nexthop"] == OUTSIDE]


def gateway_lbs(lab: Lab, router: str) -> set[str]:
    names = {r["_uuid"]: r["name"] for r in rows(lab, LB, "_uuid", "name")}
    (gr,) = rows(lab, LR, "load_balancer", where=[f"name={router}"])
    value = gr["load_balancer"]
    return {names[u] for u in (value if isinstance(value, list) else [value] if value else [])}


def test_load_balancer_and_keys_added_by_hand_survive_our_commands(lab: Lab) -> None:
    """The original walkthrough's north-south step, verbatim (M:README.md): `lb-add`, then
    `set logical_router GR_coke_$OVS_SYSTEM_ID load_balancer=$LB_UUID`, which replaces the
    whole column. Our re-runs add our own load balancers back by mutation and keep theirs;
    keys users add to our routers' and networks' maps stay too."""
    node1 = lab.add_node("node1")
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    init_tenant(node1, "coke", "coke1")
    ok(init_gateway(node1, "coke", "192.0.2.10/24"))
    assert gateway_lbs(lab, "GR_coke_node1") == {"lb_coke_tcp", "lb_coke_udp"}
    lab.nbctl("--may-exist", "lb-add", "coke", "192.0.2.10:32350", "192.168.1.2:80,192.168.1.3:80")
    lb_uuid = lab.nbctl("--bare", "--columns=_uuid", "find", LB, "name=coke")
    system_id = node1.vsctl("get", "open_vswitch", ".", "external_ids:system-id").strip('"')
    lab.nbctl("set", "logical_router", f"GR_coke_{system_id}", f"load_balancer={lb_uuid}")
    assert gateway_lbs(lab, "GR_coke_node1") == {"coke"}
    ok(init_gateway(node1, "coke", "192.0.2.10/24"))
    assert gateway_lbs(lab, "GR_coke_node1") == {"coke", "lb_coke_tcp", "lb_coke_udp"}
    before = nb_dump(lab)
    init_tenant(node1, "coke", "coke1")
    ok(init_gateway(node1, "coke", "192.0.2.10/24"))
    assert nb_dump(lab) == before
    ok(mesos(node1, "publish", "--tenant-name=coke", "--vip=192.0.2.10:8000", "--backends=192.168.1.2:80"))
    ok(mesos(node1, "unpublish", "--tenant-name=coke", "--vip=192.0.2.10:8000"))
    assert gateway_lbs(lab, "GR_coke_node1") == {"coke", "lb_coke_tcp", "lb_coke_udp"}
    (theirs,) = rows(lab, LB, "vips", where=["name=coke"])
    assert theirs["vips"] == {"192.0.2.10:32350": "192.168.1.2:80,192.168.1.3:80"}
    # gateway-del removes the router, not the user's load balancer
    # keys added by hand: an option on the gateway router, an id on the tenant router, and
    # addresses the plugin must not hand out
    lab.nbctl("set", "logical_router", "GR_coke_node1", "options:always_learn_from_arp_request=false",
              "options:lb_force_snat_ip=10.0.0.9")
    lab.nbctl("set", "logical_router", "coke", "external_ids:team=blue")
    lab.nbctl("set", "logical_switch", "coke_coke1", "other_config:exclude_ips=192.168.1.2..192.168.1.5")
    init_tenant(node1, "coke", "coke1")
    ok(init_gateway(node1, "coke", "192.0.2.10/24"))
    (gr,) = rows(lab, LR, "options", where=["name=GR_coke_node1"])
    assert gr["options"] == {"chassis": "node1", "lb_force_snat_ip": "100.64.0.2",   # ours: corrected
                             "always_learn_from_arp_request": "false"}
    (router,) = rows(lab, LR, "external_ids", where=["name=coke"])
    assert router["external_ids"]["team"] == "blue" and router["external_ids"]["ovn-k8s/tenant"] == "coke"
    (net,) = rows(lab, LS, "other_config", where=["name=coke_coke1"])
    assert net["other_config"] == {"subnet": "192.168.1.0/24", "exclude_ips": "192.168.1.2..192.168.1.5"}
    use_nb(lab, node1)
    assert add_task(lab, node1, "excl", "coke1")[1] == "192.168.1.6"
    before = nb_dump(lab)
    init_tenant(node1, "coke", "coke1")
    ok(init_gateway(node1, "coke", "192.0.2.10/24"))
    assert nb_dump(lab) == before
    ok(mesos(node1, "gateway-del", "--tenant-name=coke"))
    assert {r["name"] for r in rows(lab, LB, "name")} == {"coke", "lb_coke_tcp", "lb_coke_udp"}


def test_second_gateway_shared_nic_and_deletes(lab: Lab) -> None:
    node1, node2 = lab.add_node("node1"), lab.add_node("node2")
    use_nb(lab, node1, node2)
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    lab.connect_outside(node2)
    empty = identities(lab)
    init_tenant(node1, "coke", "web")
    init_tenant(node1, "pepsi", "web")
    # coke: two gateways, one per node (the original hard-coded the join address: impossible)
    ok(init_gateway(node1, "coke", "192.0.2.10/24", f"--default-gw={OUTSIDE}"))
    ok(init_gateway(node2, "coke", "192.0.2.11/24", f"--default-gw={OUTSIDE}"))
    # pepsi: a gateway on node1's NIC too, with its own address (a floating IP on a shared NIC)
    ok(init_gateway(node1, "pepsi", "192.0.2.12/24", f"--default-gw={OUTSIDE}"))
    joins = sorted(r["networks"] for r in rows(lab, LRP, "name", "networks") if r["name"].startswith("rtoj-GR_coke_"))
    assert joins == ["100.64.0.2/16", "100.64.0.3/16"]
    (pepsi_join,) = rows(lab, LRP, "networks", where=["name=rtoj-GR_pepsi_node1"])
    assert pepsi_join["networks"] == "100.64.0.2/16"     # its own join switch: no clash
    defaults = rows(lab, ROUTE, "nexthop", where=["external_ids:ovn-k8s/tenant=coke", 'ip_prefix="0.0.0.0/0"',
                                                 "output_port=[]"])
    assert sorted(r["nexthop"] for r in defaults) == ["100.64.0.2", "100.64.0.3"]   # ECMP
    (ext,) = rows(lab, LS, "ports", where=["name=ext_eth1_node1"])
    assert len(ext["ports"]) == 3      # the NIC's port and both tenants' router ports
    macs = {r["mac"] for r in rows(lab, LRP, "name", "mac") if r["name"].startswith("rtoe-GR_")}
    assert len(macs) == 3

    coke_ns, _ = add_task(lab, node2, "coke-t", "web", tenant="coke")
    pepsi_ns, _ = add_task(lab, node2, "pepsi-t", "web", tenant="pepsi")
    lab.wait_hv()
    log = lab.start_http(lab.ns("out"), 8080, "outside")
    assert lab.http_get(pepsi_ns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"
    assert client_addresses(log) == ["192.0.2.12"]    # pepsi leaves by node1's shared NIC
    for _ in range(3):
        assert lab.http_get(coke_ns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"
    assert set(client_addresses(log)[1:]) <= {"192.0.2.10", "192.0.2.11"}

    # coke leaves node1: the shared NIC stays for pepsi
    assert ok(mesos(node1, "gateway-del", "--tenant-name=coke")).stdout.strip() == "Gateway GR_coke_node1 deleted."
    assert not rows(lab, LR, "name", where=["name=GR_coke_node1"])
    assert rows(lab, LS, "name", where=["name=ext_eth1_node1"])
    assert "eth1" in node1.vsctl("list-ports", "br-int").split()
    lab.wait_hv()
    assert lab.http_get(pepsi_ns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"
    assert lab.http_get(coke_ns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"
    assert client_addresses(log)[-2:] == ["192.0.2.12", "192.0.2.11"]
    # pepsi leaves node1: nobody uses the NIC, so its switch and its place in br-int go
    ok(mesos(node1, "gateway-del", "--tenant-name=pepsi"))
    assert not rows(lab, LS, "name", where=["name=ext_eth1_node1"])
    assert "eth1" not in node1.vsctl("list-ports", "br-int").split()
    assert ok(mesos(node1, "gateway-del", "--tenant-name=pepsi")).stdout.strip() == \
        "Gateway GR_pepsi_node1 does not exist: nothing to delete."

    # deleting a network or tenant with tasks on it is refused (one line), unless --force
    before = nb_dump(lab)
    for args in (("network-del", "--tenant-name=pepsi", "--network-name=web"), ("tenant-del", "--tenant-name=pepsi")):
        proc = mesos(node1, *args)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "still has 1 task port(s) (pepsi-t/eth0)" in proc.stderr
    assert nb_dump(lab) == before
    ok(mesos(node1, "network-del", "--tenant-name=pepsi", "--network-name=web", "--force"))
    assert not rows(lab, LS, "name", where=["name=pepsi_web"])
    assert not rows(lab, LRP, "name", where=["name=rtos-pepsi_web"])
    assert not rows(lab, LSP, "name", where=["name=eth0_pepsi-t"])
    # the agent's DEL for a task whose port is already gone succeeds
    proc, _ = plugin(node2, "DEL", "pepsi-t", pepsi_ns, network_conf(node2, {"logical_switch": "web"}))
    assert proc.returncode == 0, proc.stdout
    ok(mesos(node1, "tenant-del", "--tenant-name=pepsi"))
    assert {i for i in identities(lab) if "pepsi" in i[1]} == set()
    proc, _ = plugin(node2, "DEL", "coke-t", coke_ns, network_conf(node2, {"logical_switch": "web"}))
    assert proc.returncode == 0, proc.stdout
    # tenant-del on the chassis of coke's last gateway also releases its NIC
    assert ok(mesos(node2, "tenant-del", "--tenant-name=coke")).stdout.strip() == "Tenant coke deleted."
    assert identities(lab) == empty
    assert "eth1" not in node2.vsctl("list-ports", "br-int").split()
    assert ok(mesos(node2, "tenant-del", "--tenant-name=coke")).stdout.strip() == \
        "Tenant coke does not exist: nothing to delete."


def test_concurrent_gateways_of_a_tenant_get_distinct_join_addresses(lab: Lab) -> None:
    nodes = [lab.add_node(f"node{i}") for i in (1, 2, 3)]
    lab.add_outside(f"{OUTSIDE}/24")
    for node in nodes:
        lab.connect_outside(node)
    init_tenant(nodes[0], "coke", "web")
    # every gateway-init plans on an NB view at least 0.3 s old: they really do overlap
    slow = SlowNb(lab.nb.removeprefix("unix:"), f"{lab.dir}/slow-nb.sock", delay=0.3)
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    start = threading.Barrier(len(nodes))

    def run(i: int) -> None:
        start.wait()
        results[nodes[i].name] = mesos(nodes[i], "gateway-init", "--tenant-name=coke",
                                       f"--cluster-ip-subnet={CLUSTER}", "--physical-interface=eth1",
                                       f"--physical-ip=192.0.2.{20 + i}/24", nb=f"unix:{slow.path}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        slow.close()
    for proc in results.values():
        ok(proc)
    joins = sorted(r["networks"] for r in rows(lab, LRP, "name", "networks") if r["name"].startswith("rtoj-GR_"))
    assert joins == ["100.64.0.2/16", "100.64.0.3/16", "100.64.0.4/16"]


def our_flows(node, stats: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    opts = [] if stats else ["--no-stats"]
    out = node.ofctl("--no-names", *opts, "dump-flows", "breth1", "cookie=0x6d65736f73/-1")
    return [line.strip() for line in out.splitlines() if "cookie=" in line]


def test_shared_bridge_mode(lab: Lab) -> None:
    """The gateway router shares the host's NIC, MAC and IP: flows on the bridge (the gateway
    helper's table, without services) give OVN only the replies to its own traffic."""
    node1 = lab.add_node("node1")
    use_nb(lab, node1)
    lab.add_outside(f"{OUTSIDE}/24")
    lab.connect_outside(node1)
    node1.exec(["ip", "addr", "add", "192.0.2.50/24", "dev", "eth1"])
    init_tenant(node1, "coke", "web")
    ok(cli(node1, "ovn-k8s-util", "nics-to-bridge", "eth1"))
    # userspace datapath: the kernel also sees eth1's frames; see tests/e2e/test_gateway_helper.py
    node1.exec(["sysctl", "-qw", "net.ipv4.conf.eth1.rp_filter=1"])
    ok(init_gateway(node1, "coke", "192.0.2.50/24", "--bridge-interface=breth1", f"--default-gw={OUTSIDE}"))
    mac = node1.exec(["cat", "/sys/class/net/breth1/address"]).stdout.strip()
    (rtoe,) = rows(lab, LRP, "mac", where=["name=rtoe-GR_coke_node1"])
    assert rtoe["mac"] == mac
    assert node1.vsctl("get", "interface", "mesos-patch-br-int-breth1", "external_ids:iface-id") == "breth1_node1"
    assert node1.vsctl("get", "interface", "mesos-patch-breth1-br-int", "options:peer") == "mesos-patch-br-int-breth1"
    assert "192.0.2.50/24" in node1.exec(["ip", "-4", "-o", "addr", "show", "breth1"]).stdout   # host keeps it
    flows = our_flows(node1)
    assert any("ip,in_port=2 actions=ct(commit,zone=64000),output:1" in f for f in flows), flows
    assert any("ct_state=+est+trk,ip,in_port=1 actions=output:2" in f for f in flows), flows

    ns, _ = add_task(lab, node1, "task", "web")
    lab.wait_hv()
    log = lab.start_http(lab.ns("out"), 8080, "outside")
    lab.start_http(node1.netns, 22, "host-ssh", text="host-ssh")
    for _ in range(3):
        assert lab.http_get(ns, f"http://{OUTSIDE}:8080/") == "hello-from-outside"
        assert lab.http_get(lab.ns("out"), "http://192.0.2.50:22/") == "host-ssh"
    assert set(client_addresses(log)) == {"192.0.2.50"}

    before, ovs_before = settled_dump(lab), node1.vsctl("show")
    durations = [float(f.split("duration=")[1].split("s,")[0]) for f in our_flows(node1, stats=True)]
    ok(init_gateway(node1, "coke", "192.0.2.50/24", "--bridge-interface=breth1", f"--default-gw={OUTSIDE}"))
    assert nb_dump(lab) == before
    assert node1.vsctl("show") == ovs_before
    assert our_flows(node1) == flows
    after = [float(f.split("duration=")[1].split("s,")[0]) for f in our_flows(node1, stats=True)]
    assert min(after) >= min(durations)          # not replaced
    # another tenant cannot take the host's address (and MAC) on the same bridge
    init_tenant(node1, "pepsi", "web")
    proc = init_gateway(node1, "pepsi", "192.0.2.50/24", "--bridge-interface=breth1")
    assert proc.returncode == 1 and "--physical-ip 192.0.2.50 is already used by rtoe-GR_coke_node1" in proc.stderr
    proc, _ = plugin(node1, "DEL", "task", ns, network_conf(node1, {"logical_switch": "coke_web"}))
    assert proc.returncode == 0
    ok(mesos(node1, "gateway-del", "--tenant-name=coke"))
    ports = node1.vsctl("list-ports", "br-int").split() + node1.vsctl("list-ports", "breth1").split()
    assert not [p for p in ports if p.startswith("mesos-patch")], ports
    assert not rows(lab, LS, "name", where=["name=ext_breth1_node1"])
    assert our_flows(node1) == []
    assert lab.http_get(lab.ns("out"), "http://192.0.2.50:22/") == "host-ssh"
