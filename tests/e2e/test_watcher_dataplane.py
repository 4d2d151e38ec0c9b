"""Real packets through ports only the watcher made: two lab nodes (master-init, minion-init),
ovn-k8s-watcher, two pods scheduled on different nodes. Each pod namespace is wired by hand
from its `ovn` annotation alone (address, MAC, gateway) and bound to the port the watcher
created (iface-id <ns>_<pod>; no switch= given to the lab, so no port is made by hand)."""

from __future__ import annotations

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.watcher_harness import WatcherProcess, annotation, nb_pod_ports, wait_until
from tests.helpers import master_init, minion_init, ok

pytestmark = pytest.mark.e2e


def test_pods_on_two_nodes_ping_each_other_through_watcher_ports(two_nodes, tmp_path):
    lab = two_nodes
    n1, n2 = lab.nodes["node1"], lab.nodes["node2"]
    ok(master_init(n1, "10.244.1.0/24"))
    ok(minion_init(n2, "10.244.2.0/24"))
    kube = KubeApiServer(bookmark_interval=0.5).start()
    watcher = None
    try:
        kubeconfig = str(tmp_path / "kubeconfig")
        kube.write_kubeconfig(kubeconfig)
        watcher = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig).start()
        watcher.wait_ready()
        for name, node in (("a", "node1"), ("b", "node2")):
            kube.create("pods", {"metadata": {"name": name, "namespace": "default"},
                                 "spec": {"nodeName": node, "containers": [{"name": "c"}]}})
        anns = {}
        for name in ("a", "b"):
            anns[name] = wait_until(lambda n=name: annotation(kube.get("pods", n)), 20,
                                    f"pod {name}'s annotation")
        assert set(nb_pod_ports(lab.nb)) == {"default_a", "default_b"}
        pods = {}
        for name, node in (("a", n1), ("b", n2)):
            ann = anns[name]
            pods[name] = lab.add_pod(node, f"pod-{name}", cidr=ann["ip_address"],
                                     gateway=ann["gateway_ip"], mac=ann["mac_address"],
                                     lsp=f"default_{name}")
        for name in ("a", "b"):
            lab.wait_port_up(f"default_{name}")
        lab.wait_hv()
        b_ip = anns["b"]["ip_address"].split("/")[0]
        a_ip = anns["a"]["ip_address"].split("/")[0]
        assert lab.ping(pods["a"].netns, b_ip), f"pod a cannot reach pod b at {b_ip}"
        assert lab.ping(pods["b"].netns, a_ip), f"pod b cannot reach pod a at {a_ip}"
        assert lab.ping(pods["a"].netns, anns["a"]["gateway_ip"])
    finally:
        if watcher is not None:
            watcher.kill()
        kube.stop()
