"""Services on a real OVN dataplane: the ServiceReconciler's load balancers carry real packets.

One lab for the module (services are reconciled per test, each test with its own VIPs):

    node1: master-init + gateway-init (eth1 on the outside network, 192.0.2.10)
    node2: minion-init
    pod1 (node1, 10.244.1.10) and pod2 (node2, 10.244.2.10): HTTP on 8080, UDP echo on 5353
    client (node2, 10.244.2.11)
    outside: 192.0.2.1

OVN picks a backend by hashing the 5-tuple, so ~20 new connections from one client reach both
backends unless session affinity pins them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ovn_k8s.desired.services import AffinityMode
from ovn_k8s.nb import connection
from sandbox.lab.cluster import Lab
from sandbox.lab.proc import run, stop_pid, wait_for
from tests.helpers import gateway_init, master_init, minion_init, ok
from watcher.services import ServiceInput, ServiceReconciler

pytestmark = pytest.mark.e2e
OUTSIDE = "192.0.2.1"
GATEWAY_IP = "192.0.2.10"
UDP_PORT = 5353
TRIES = 20
BACKENDS = {"pod1": "10.244.1.10", "pod2": "10.244.2.10"}

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(sys.argv[1].encode() + b":" + data, peer)
"""
UDP_CLIENT = """
import socket, sys
for _ in range(int(sys.argv[3])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # a new source port each time
    s.settimeout(1.0)
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode())
    except socket.timeout:
        print("timeout")
    s.close()
"""


@dataclass
class Env:
    lab: Lab
    api: Any
    rec: ServiceReconciler
    client: str      # the client pod's namespace
    out: str         # the outside namespace


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    missing = [b for b in ("ovsdb-server", "ovn-northd", "ovs-vswitchd", "ovn-controller", "ip", "curl")
               if shutil.which(b) is None]
    if os.geteuid() != 0 or missing:
        pytest.fail(f"this test needs root and OVS/OVN installed (missing: {missing})")
    lab = Lab()
    servers: list[subprocess.Popen[bytes]] = []
    api = None
    try:
        lab.up_central()
        node1, node2 = lab.add_node("node1"), lab.add_node("node2")
        lab.add_outside(f"{OUTSIDE}/24")
        lab.connect_outside(node1)
        ok(master_init(node1))
        ok(minion_init(node2, "10.244.2.0/24"))
        ok(gateway_init(node1, f"{GATEWAY_IP}/24", f"--default-gw={OUTSIDE}"))
        pods = {"pod1": lab.add_pod(node1, "pod1", cidr="10.244.1.10/24", gateway="10.244.1.1",
                                    mac="0a:58:0a:f4:01:0a", switch="node1"),
                "pod2": lab.add_pod(node2, "pod2", cidr="10.244.2.10/24", gateway="10.244.2.1",
                                    mac="0a:58:0a:f4:02:0a", switch="node2"),
                "client": lab.add_pod(node2, "client", cidr="10.244.2.11/24", gateway="10.244.2.1",
                                      mac="0a:58:0a:f4:02:0b", switch="node2")}
        for name in pods:
            lab.wait_port_up(name)
        # The nodes reach services through their management ports (minion-init routes only
        # the cluster subnet there; the service range is routed the same way here).
        for node, subnet in ((node1, 1), (node2, 2)):
            node.exec(["ip", "route", "add", "10.96.0.0/16", "via", f"10.244.{subnet}.1",
                       "dev", f"k8s-{node.name}"])
        for name in ("pod1", "pod2"):
            lab.start_http(pods[name].netns, 8080, name)
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", pods[name].netns, sys.executable, "-c", UDP_ECHO, name,
                 str(UDP_PORT)], start_new_session=True))
        lab.wait_hv()
        client = pods["client"].netns
        for name, ip in BACKENDS.items():     # warm the tunnel and wait for the UDP servers
            assert lab.ping(client, ip), name
            wait_for(lambda ip=ip: udp(lab, client, ip, UDP_PORT, 1) != ["timeout"], 10,
                     f"UDP echo on {name}")
        api = connection.connect(lab.nb, "OVN_Northbound", what="NB", timeout=10)
        rec = ServiceReconciler(api, timeout=10)
        rec.sync({})
        yield Env(lab=lab, api=api, rec=rec, client=client, out=lab.ns("out"))
    finally:
        for proc in servers:
            stop_pid(proc.pid)
        if api is not None:
            connection.disconnect(api)
        lab.down()


def udp(lab: Lab, netns: str, ip: str, port: int, count: int) -> list[str]:
    proc = run([sys.executable, "-c", UDP_CLIENT, ip, str(port), str(count)], netns=netns,
               timeout=count * 2 + 10)
    return proc.stdout.split()


def http(env: Env, netns: str, url: str, count: int = TRIES) -> list[str | None]:
    return [env.lab.http_get(netns, url, timeout=2) for _ in range(count)]


def service(name: str, ip: str, *, port: int = 80, target: int | str = 8080, protocol: str = "TCP",
            type: str = "ClusterIP", node_port: int | None = None, **spec: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"name": "p", "port": port, "targetPort": target, "protocol": protocol}
    if node_port:
        p["nodePort"] = node_port
    return {"metadata": {"namespace": "default", "name": name},
            "spec": {"type": type, "clusterIP": ip, "ports": [p], **spec}}


def endpoints(name: str, ready: dict[str, bool], port: int = 8080, protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"metadata": {"namespace": "default", "name": f"{name}-1",
                          "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4",
             "endpoints": [{"addresses": [BACKENDS[pod]], "conditions": {"ready": r}} for pod, r in ready.items()],
             "ports": [{"name": "p", "port": port, "protocol": protocol}]}]


def apply(env: Env, svc: dict[str, Any], slices: list[dict[str, Any]],
          rec: ServiceReconciler | None = None) -> None:
    (rec or env.rec).reconcile({f"default/{svc['metadata']['name']}": ServiceInput(svc, slices)})
    env.lab.wait_hv()


BOTH = {"pod1": True, "pod2": True}


def test_pod_reaches_cluster_ip_and_both_backends_answer(env: Env) -> None:
    apply(env, service("web", "10.96.0.10"), endpoints("web", BOTH))
    answers = http(env, env.client, "http://10.96.0.10/")
    assert set(answers) == {"hello-from-pod1", "hello-from-pod2"}, answers


def test_nodes_reach_cluster_ip_through_their_management_ports(env: Env) -> None:
    apply(env, service("mgmt", "10.96.0.11"), endpoints("mgmt", BOTH))
    for node in ("node1", "node2"):
        answers = http(env, env.lab.nodes[node].netns, "http://10.96.0.11/")
        assert set(answers) == {"hello-from-pod1", "hello-from-pod2"}, (node, answers)


def test_outside_reaches_node_port_at_the_gateway_physical_ip(env: Env) -> None:
    svc = service("np", "10.96.0.12", type="NodePort", node_port=30080)
    apply(env, service("np", "10.96.0.12"), endpoints("np", BOTH))
    assert http(env, env.out, f"http://{GATEWAY_IP}:30080/", count=2) == [None, None]
    apply(env, svc, endpoints("np", BOTH))
    answers = http(env, env.out, f"http://{GATEWAY_IP}:30080/")
    assert set(answers) == {"hello-from-pod1", "hello-from-pod2"}, answers
    # the ClusterIP of a NodePort service still works (original issue #128)
    assert set(http(env, env.client, "http://10.96.0.12/", count=4)) <= {"hello-from-pod1", "hello-from-pod2"}
    # and back to ClusterIP: the NodePort is gone
    apply(env, service("np", "10.96.0.12"), endpoints("np", BOTH))
    assert http(env, env.out, f"http://{GATEWAY_IP}:30080/", count=2) == [None, None]


def test_udp_service(env: Env) -> None:
    apply(env, service("dns", "10.96.0.53", port=53, target=UDP_PORT, protocol="UDP"),
          endpoints("dns", BOTH, port=UDP_PORT, protocol="UDP"))
    answers = udp(env.lab, env.client, "10.96.0.53", 53, TRIES)
    assert set(answers) == {"pod1:ping", "pod2:ping"}, answers


def test_endpoints_change_and_removal(env: Env) -> None:
    apply(env, service("flap", "10.96.0.13"), endpoints("flap", BOTH))
    assert set(http(env, env.client, "http://10.96.0.13/")) == {"hello-from-pod1", "hello-from-pod2"}
    # pod1 not ready: only pod2 answers
    apply(env, service("flap", "10.96.0.13"), endpoints("flap", {"pod1": False, "pod2": True}))
    assert set(http(env, env.client, "http://10.96.0.13/")) == {"hello-from-pod2"}
    # no endpoints: the VIP is gone, nothing answers
    apply(env, service("flap", "10.96.0.13"), endpoints("flap", {}))
    assert http(env, env.client, "http://10.96.0.13/", count=2) == [None, None]
    # back
    apply(env, service("flap", "10.96.0.13"), endpoints("flap", {"pod1": True}))
    assert set(http(env, env.client, "http://10.96.0.13/", count=5)) == {"hello-from-pod1"}
    # deleted
    env.rec.reconcile({"default/flap": ServiceInput(None)})
    env.lab.wait_hv()
    assert http(env, env.client, "http://10.96.0.13/", count=2) == [None, None]


def test_session_affinity_pins_a_client_to_one_backend(env: Env) -> None:
    apply(env, service("sticky", "10.96.0.14", sessionAffinity="ClientIP"), endpoints("sticky", BOTH))
    answers = http(env, env.client, "http://10.96.0.14/")
    assert len(set(answers)) == 1 and answers[0] in {"hello-from-pod1", "hello-from-pod2"}, answers
    # the node's management port is another client; it is pinned as well
    node_answers = http(env, env.lab.nodes["node2"].netns, "http://10.96.0.14/", count=10)
    assert len(set(node_answers)) == 1 and node_answers[0] is not None, node_answers
    # UDP: every datagram from one client, each from a new port, reaches the same backend
    apply(env, service("sticky-udp", "10.96.0.54", port=53, target=UDP_PORT, protocol="UDP",
                       sessionAffinity="ClientIP"),
          endpoints("sticky-udp", BOTH, port=UDP_PORT, protocol="UDP"))
    datagrams = udp(env.lab, env.client, "10.96.0.54", 53, TRIES)
    assert len(set(datagrams)) == 1 and datagrams[0] != "timeout", datagrams


def test_session_affinity_with_ovn_affinity_timeout(env: Env) -> None:
    """AffinityMode.TIMEOUT (options:affinity_timeout): OVN 23.03 drops the packet that creates a
    client's affinity, so the first connection of each client fails here (docs/services.md);
    every later one goes to the backend it learnt."""
    rec = ServiceReconciler(env.api, timeout=10, affinity_mode=AffinityMode.TIMEOUT)
    apply(env, service("learn", "10.96.0.16", sessionAffinity="ClientIP"), endpoints("learn", BOTH), rec=rec)
    http(env, env.client, "http://10.96.0.16/", count=1)
    answers = http(env, env.client, "http://10.96.0.16/", count=10)
    assert len(set(answers)) == 1 and answers[0] in {"hello-from-pod1", "hello-from-pod2"}, answers


def test_external_ip_is_served_by_gateways_but_never_answered_by_arp(env: Env) -> None:
    """External IPs sit on every gateway with neighbor_responder=none: no gateway answers ARP
    for them (no duplicate replies with several gateways); the network routes them to one."""
    ext = "192.0.2.100"
    apply(env, service("ext", "10.96.0.15", externalIPs=[ext]), endpoints("ext", BOTH))
    assert http(env, env.out, f"http://{ext}/", count=1) == [None]
    neigh = run(["ip", "neigh", "show", ext], netns=env.out).stdout
    assert "lladdr" not in neigh, neigh
    run(["ip", "route", "add", f"{ext}/32", "via", GATEWAY_IP], netns=env.out)
    try:
        answers = http(env, env.out, f"http://{ext}/")
        assert set(answers) == {"hello-from-pod1", "hello-from-pod2"}, answers
        # pods reach it too, load-balanced on their own switch
        assert set(http(env, env.client, f"http://{ext}/", count=6)) <= {"hello-from-pod1", "hello-from-pod2"}
    finally:
        run(["ip", "route", "del", f"{ext}/32"], netns=env.out)
