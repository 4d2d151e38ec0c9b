"""minion-init without --minion-switch-subnet on real OVN nodes: it waits for the subnet the
watcher (--allocate-node-subnets) gave its Node and builds the node with it; an explicit
--minion-switch-subnet still wins and the watcher follows it; a node the API server does not
know fails at the bound with one clear line. Nodes reach each other's management ports over
the overlay with the allocated subnets.
"""

from __future__ import annotations

import subprocess

import pytest

from ovn_k8s import naming
from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.lab.forward import Forwarder
from sandbox.watcher_harness import WatcherProcess, wait_until
from tests.helpers import CLUSTER, cli, master_init, ok, rows

pytestmark = pytest.mark.e2e
TOKEN = "node-subnets-token"
ANN = naming.NODE_SUBNET_ANNOTATION


def annotation(api: KubeApiServer, node: str) -> str | None:
    return (api.get("nodes", node)["metadata"].get("annotations") or {}).get(ANN)


def switch_subnet(lab: Lab, node: str) -> str | None:
    found = rows(lab, "Logical_Switch", "other_config", where=[f"name={node}"])
    return found[0]["other_config"].get("subnet") if found else None


def test_minion_init_uses_the_allocated_subnet_and_an_explicit_one_wins(lab: Lab, tmp_path) -> None:  # type: ignore[no-untyped-def]
    node1, node2, node3 = lab.add_node("node1"), lab.add_node("node2"), lab.add_node("node3")
    ok(master_init(node1))                                   # node1: 10.244.1.0/24
    with KubeApiServer(token=TOKEN) as api, \
            Forwarder(lab.ns("central"), lab.central_ip, api.port) as fwd:
        kubeconfig = str(tmp_path / "kubeconfig")
        api.write_kubeconfig(kubeconfig)
        watcher = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig,
                                 extra=("--allocate-node-subnets",))
        try:
            watcher.start().wait_ready()
            for name in ("node1", "node2", "node3"):
                api.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                     "metadata": {"name": name}})
            kube = (f"--k8s-api-server={fwd.url}", f"--k8s-api-token={TOKEN}")

            proc = ok(cli(node2, "ovn-k8s-overlay", "minion-init", "--node-name=node2",
                          f"--cluster-ip-subnet={CLUSTER}", "--node-subnet-timeout=30", *kube))
            assert proc.stdout.strip() == "Initialization complete."
            subnet2 = annotation(api, "node2")
            assert annotation(api, "node1") == "10.244.1.0/24"   # master-init's, adopted
            assert subnet2 is not None and subnet2 != "10.244.1.0/24"
            assert switch_subnet(lab, "node2") == subnet2
            prefix = subnet2.split("/")[1]
            mgmt2 = subnet2.split("/")[0].rsplit(".", 1)[0] + ".2"
            assert f"{mgmt2}/{prefix}" in node2.exec(["ip", "-4", "-o", "addr", "show",
                                                      "k8s-node2"]).stdout

            # An explicit subnet wins over the allocation; the watcher follows the switch.
            ok(cli(node3, "ovn-k8s-overlay", "minion-init", "--node-name=node3",
                   f"--cluster-ip-subnet={CLUSTER}", "--minion-switch-subnet=10.244.9.0/24",
                   *kube))
            wait_until(lambda: annotation(api, "node3") == "10.244.9.0/24", 20,
                       "node3's annotation to follow its switch")
            assert switch_subnet(lab, "node3") == "10.244.9.0/24"

            # A node the API server does not know: one line at the bound, nothing written.
            before = rows(lab, "Logical_Switch", "name")
            proc = cli(node3, "ovn-k8s-overlay", "minion-init", "--node-name=node4",
                       f"--cluster-ip-subnet={CLUSTER}", "--node-subnet-timeout=1", *kube)
            assert proc.returncode == 1
            assert "no subnet for node node4 after 1s (node node4 is not registered in the " \
                   "API server)" in proc.stderr
            assert rows(lab, "Logical_Switch", "name") == before

            # The allocated subnets carry traffic: node2 reaches node1's and node3's
            # management ports over the overlay.
            lab.wait_hv()
            for target in ("10.244.1.2", "10.244.9.2"):
                wait_until(lambda t=target: subprocess.run(
                    ["ip", "netns", "exec", node2.netns, "ping", "-c1", "-W1", t],
                    capture_output=True).returncode == 0, 30, f"node2 to reach {target}")
        finally:
            watcher.kill()
