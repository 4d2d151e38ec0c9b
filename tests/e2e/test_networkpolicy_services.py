"""Egress NetworkPolicy through Service VIPs, with real packets: an egress-isolated pod is judged
by the backend a VIP sends it to (the egress ACLs apply after OVN's load balancing), not by the
VIP, and the replies come back (conntrack).

Two lab nodes, the real watcher and the embedded API server: `client` (node2) may only talk to
pods labelled app=allowed; Service `allowed` (VIP 10.96.0.10) has the pod `allowed` (node1)
behind it, Service `other` (VIP 10.96.0.20) the pod `other` (node1). Both pods serve HTTP.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.lab.proc import stop_pid
from sandbox.watcher_harness import WatcherProcess, annotation, wait_until
from tests.helpers import master_init, minion_init, ok

pytestmark = pytest.mark.e2e
PODS = {"allowed": "node1", "other": "node1", "client": "node2"}
VIPS = {"allowed": "10.96.0.10", "other": "10.96.0.20"}
PORT = 8080


def http(lab: Lab, pod: str, ip: str, port: int) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", lab.pods[pod].netns, "curl", "-s", "-m", "0.7",
                           f"http://{ip}:{port}/name"], capture_output=True, text=True, timeout=10,
                          check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = sys.argv[1].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[2])), H).serve_forever()
"""


@pytest.fixture
def cluster(two_nodes: Lab, tmp_path) -> Iterator[tuple[Lab, KubeApiServer, dict[str, str]]]:
    lab = two_nodes
    ok(master_init(lab.nodes["node1"], "10.244.1.0/24"))
    ok(minion_init(lab.nodes["node2"], "10.244.2.0/24"))
    kube = KubeApiServer(bookmark_interval=0.5).start()
    watcher = None
    servers: list[subprocess.Popen[bytes]] = []
    try:
        kubeconfig = str(tmp_path / "kubeconfig")
        kube.write_kubeconfig(kubeconfig)
        watcher = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig).start()
        watcher.wait_ready()
        for name, node in PODS.items():
            kube.create("pods", {"metadata": {"name": name, "namespace": "default",
                                              "labels": {"app": name}},
                                 "spec": {"nodeName": node, "containers": [{"name": "c"}]}})
        ips = {}
        for name, node in PODS.items():
            ann = wait_until(lambda n=name: annotation(kube.get("pods", n)), 20, f"{name}'s annotation")
            ips[name] = ann["ip_address"].split("/")[0]
            lab.add_pod(lab.nodes[node], name, cidr=ann["ip_address"], gateway=ann["gateway_ip"],
                        mac=ann["mac_address"], lsp=f"default_{name}")
        for name in ("allowed", "other"):
            servers.append(subprocess.Popen(["ip", "netns", "exec", lab.pods[name].netns,
                                             sys.executable, "-c", SERVER, name, str(PORT)]))
            kube.create("services", {"metadata": {"name": name, "namespace": "default"},
                                     "spec": {"clusterIP": VIPS[name], "selector": {"app": name},
                                              "ports": [{"port": 80, "targetPort": PORT}]}})
            kube.create("endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": f"{name}-1", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": name}},
                "endpoints": [{"addresses": [ips[name]], "conditions": {"ready": True}}],
                "ports": [{"port": PORT, "protocol": "TCP"}]})
        for name in PODS:
            lab.wait_port_up(f"default_{name}")
        lab.wait_hv()
        # Every path answers before any policy (the first packets across nodes wait for the
        # tunnel's neighbours).
        for name in ("allowed", "other"):
            wait_until(lambda n=name: http(lab, "client", VIPS[n], 80) == n, 20, f"{name}'s VIP")
            wait_until(lambda n=name: http(lab, "client", ips[n], PORT) == n, 20, f"{name}'s pod")
        yield lab, kube, ips
    finally:
        for server in servers:
            stop_pid(server.pid)
        if watcher is not None:
            watcher.kill()
        kube.stop()


def test_egress_is_judged_by_the_backend_behind_a_vip(cluster):
    lab, kube, ips = cluster
    kube.create("networkpolicies", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "client-out", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
                 "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "allowed"}}}]}]}})
    wait_until(lambda: http(lab, "client", ips["other"], PORT) is None, 20, "client -> other refused")
    lab.wait_hv()
    # Direct and through the VIP: the allowed backend answers, the other one does not.
    assert http(lab, "client", ips["allowed"], PORT) == "allowed"
    assert all(http(lab, "client", VIPS["allowed"], 80) == "allowed" for _ in range(3))
    assert http(lab, "client", VIPS["other"], 80) is None
    assert http(lab, "client", ips["other"], PORT) is None
