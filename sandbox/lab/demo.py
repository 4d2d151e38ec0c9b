"""The topology demo: a two-node lab built by our own commands, checked with real packets."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable

from sandbox.lab.checklist import Checklist
from sandbox.lab.cluster import Lab, Node

CLUSTER = "10.244.0.0/16"
OUTSIDE_IP = "192.0.2.1"
GATEWAY_IP = "192.0.2.10"


def _exe(name: str) -> str:
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else (shutil.which(name) or name)


class Demo(Checklist):
    def __init__(self, lab: Lab, out: Callable[[str], None] = print) -> None:
        super().__init__(out)
        self.lab = lab

    def command(self, node: Node, *args: str) -> None:
        cmd = [_exe(args[0]), *args[1:], f"--ovs-db={node.ovs_db}"]
        if args[0] == "ovn-k8s-overlay":
            cmd.append(f"--ovn-nb={self.lab.nb}")
        self.step(f"{node.name}$ {' '.join(args)}")
        proc = node.exec(cmd, check=False, env={"OVN_K8S_CONFIG": "/dev/null"})
        if proc.returncode != 0:
            raise SystemExit(f"ovn-k8s-lab: {args[0]} {args[1]} failed on {node.name}: "
                             f"{proc.stderr.strip()}")

    def run(self, nodes: int = 2, db_cluster: int = 0) -> int:
        lab = self.lab
        self.step(f"starting OVN: central NB/SB + ovn-northd, {nodes} nodes (userspace OVS + "
                  "ovn-controller each), an outside network")
        lab.up_central(db_cluster=db_cluster)
        members = [lab.add_node(f"node{i}") for i in range(1, nodes + 1)]
        lab.add_outside(f"{OUTSIDE_IP}/24")
        lab.connect_outside(members[0])
        node1 = members[0]
        self.command(node1, "ovn-k8s-overlay", "master-init", "--node-name=node1",
                     f"--cluster-ip-subnet={CLUSTER}", "--master-switch-subnet=10.244.1.0/24")
        for i, node in enumerate(members[1:], start=2):
            self.command(node, "ovn-k8s-overlay", "minion-init", f"--node-name={node.name}",
                         f"--cluster-ip-subnet={CLUSTER}", f"--minion-switch-subnet=10.244.{i}.0/24")
        self.command(node1, "ovn-k8s-overlay", "gateway-init", "--node-name=node1",
                     f"--cluster-ip-subnet={CLUSTER}", "--physical-interface=eth1",
                     f"--physical-ip={GATEWAY_IP}/24", f"--default-gw={OUTSIDE_IP}")
        pods = []
        for i, node in enumerate(members, start=1):
            ip = f"10.244.{i}.10"
            mac = f"0a:58:0a:f4:{i:02x}:0a"
            self.step(f"pod{i} on {node.name}: {ip} (namespace + veth into br-int, wired by hand)")
            pods.append(lab.add_pod(node, f"pod{i}", cidr=f"{ip}/24", gateway=f"10.244.{i}.1",
                                    mac=mac, switch=node.name))
        for pod in pods:
            lab.wait_port_up(pod.lsp or pod.name)
        lab.wait_hv()
        self.out("")
        self.out("OVN Northbound topology (ovn-nbctl show):")
        for line in lab.nbctl("show").splitlines():
            self.out("    " + line)
        self.out("")
        self.step("connectivity checks")
        if len(pods) > 1:
            self.check(f"pod1 ({pods[0].ip}, node1) -> pod2 ({pods[1].ip}, node2) across the "
                       "geneve tunnel", lab.ping(pods[0].netns, pods[1].ip))
            self.check("pod2 (node2) -> node1's management port 10.244.1.2",
                       lab.ping(pods[1].netns, "10.244.1.2"))
        for i, node in enumerate(members, start=1):
            target = pods[-1] if i == 1 else pods[0]
            self.check(f"{node.name} -> {target.name} through its management port k8s-{node.name}",
                       lab.ping(node.netns, target.ip))
        log = lab.start_http(lab.ns("out"), 8080, "outside")
        for pod in pods:
            got = lab.http_get(pod.netns, f"http://{OUTSIDE_IP}:8080/")
            self.check(f"{pod.name} -> outside server {OUTSIDE_IP}:8080 through GR_node1",
                       got == "hello-from-outside")
        with open(log, encoding="utf-8") as f:
            seen = sorted({line.split()[0] for line in f if "GET /" in line})
        self.check(f"outside server saw only the SNAT address {GATEWAY_IP} (saw {seen})",
                   seen == [GATEWAY_IP])
        self.check("outside cannot reach a pod address directly",
                   not lab.ping(lab.ns("out"), pods[0].ip, count=1))
        return self.finish()
