"""The sandbox demo: up, two web pods on different nodes behind a ClusterIP and a NodePort
service, then real traffic checks with PASS/FAIL marks. Everything is done through the API
server: the scheduler binds the pods, the agents run the CNI plugin, the watcher writes the
ports and load balancers, the endpoints controller fills the slices. On the real control plane
those are kube-scheduler and kube-controller-manager (Deployment, ReplicaSet, EndpointSlices);
on the embedded one, the sandbox's own (sandbox.controllers, the Deployment expanded by
sandbox.manifests). The manifests are standard ones: both control planes take them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from sandbox import cluster, manifests
from sandbox.lab.checklist import Checklist
from sandbox.state import HOST_SERVICE_PORT, OUTSIDE_IP, OUTSIDE_PORT, State

NAMESPACE = "demo"
OBJECTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NAMESPACE},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "web", "image": "sandbox.ovn-k8s/podserver",
                                                    "ports": [{"containerPort": 8080}]}],
                                    # One per node (kube-scheduler; the embedded one spreads anyway).
                                    "topologySpreadConstraints": [{
                                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                        "whenUnsatisfiable": "DoNotSchedule",
                                        "labelSelector": {"matchLabels": {"app": "web"}}}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NAMESPACE},
     "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-nodeport", "namespace": NAMESPACE},
     "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
]


def http_get(netns: str, url: str, timeout: float = 2) -> str | None:
    """curl in `netns`: a name under /run/netns, or a path (a real node's pod, made by containerd)."""
    enter = ["nsenter", f"--net={netns}"] if netns.startswith("/") else ["ip", "netns", "exec", netns]
    proc = subprocess.run([*enter, "curl", "-s", "-m", str(timeout), url],
                          capture_output=True, text=True, timeout=timeout + 5, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def answers(netns: str, url: str, want: set[str], tries: int = 40) -> set[str]:
    """New connections to `url` until every name in `want` answered (or `tries` ran out)."""
    seen: set[str] = set()
    for _ in range(tries):
        got = http_get(netns, url)
        if got:
            seen.add(got)
        if want <= seen:
            break
        if not got:
            time.sleep(0.1)
    return seen


class Demo(Checklist):
    def __init__(self, directory: str, out: Callable[[str], None] = print) -> None:
        super().__init__(out)
        self.dir = directory

    def run(self, nodes: int | None = None, control_plane: str | None = None, nodes_kind: str | None = None) -> int:
        state = cluster.up(self.dir, nodes=nodes, out=lambda s: self.out("  " + s), control_plane=control_plane,
                           nodes_kind=nodes_kind)
        if len(state.nodes) < 2:
            self.out("the demo needs at least 2 nodes")
            return 1
        api = state.api()
        self.step(f"deploying on the {state.control_plane} control plane: namespace demo, Deployment web "
                  "(2 replicas, HTTP on 8080), Service web (ClusterIP) and web-nodeport (NodePort)")
        keys: list[str] = []
        for obj in OBJECTS:
            keys += manifests.apply_one(api, _copy(obj), out=lambda s: self.out("    " + s), real=state.real)
        missing = manifests.wait_ready(api, keys, timeout=60)
        pods = {p["metadata"]["name"]: p for p in api.list("pods", NAMESPACE, labelSelector="app=web")
                if not p["metadata"].get("deletionTimestamp")}
        for name in sorted(pods):
            st = pods[name].get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
            self.step(f"pod {name}: scheduled on {pods[name]['spec'].get('nodeName')}, CNI ADD gave "
                      f"{st.get('podIP')}, Ready={'yes' if ready else 'no'}")
        if missing or len(pods) != 2:
            self.check("pods became Ready", False, ", ".join(missing) or f"{len(pods)} pods, want 2")
            return self.finish()
        svc = api.get("services", "web", NAMESPACE) or {}
        nodeport_svc = api.get("services", "web-nodeport", NAMESPACE) or {}
        vip = svc["spec"]["clusterIP"]
        node_port = nodeport_svc["spec"]["ports"][0]["nodePort"]
        gateways = ", ".join(f"{ip}:{node_port} ({n})" for n, ip in sorted(state.gateways.items()))
        self.step(f"service web: ClusterIP {vip}:80; web-nodeport: NodePort on the gateways {gateways}")
        a, b = (pods[n] for n in sorted(pods))
        name_a, name_b = a["metadata"]["name"], b["metadata"]["name"]
        ip_a, ip_b = a["status"]["podIP"], b["status"]["podIP"]
        node_a, node_b = a["spec"]["nodeName"], b["spec"]["nodeName"]
        ns_a, ns_b = (pod_netns(state, p) for p in (a, b))
        both = {name_a, name_b}
        self.out("")
        self.step("checks (real packets through OVN)")
        got = http_get(ns_a, f"http://{ip_b}:8080/")
        self.check(f"pod-to-pod across nodes: {name_a} ({node_a}) -> {name_b} ({node_b}) {ip_b}:8080",
                   got == name_b and node_a != node_b,
                   f"answered {got!r}" if node_a != node_b else f"both pods are on {node_a}")
        seen = answers(ns_a, f"http://{vip}:80/", both)
        self.check(f"pod to service VIP: {name_a} -> {vip}:80, both backends answer", seen == both,
                   f"answered by {sorted(seen)}")
        for node, pod, ip in ((node_b, name_a, ip_a), (node_a, name_b, ip_b)):
            got = http_get(state.ns(node), f"http://{ip}:8080/")
            self.check(f"node to pod: {node} -> {pod} {ip}:8080 through management port k8s-{node}",
                       got == pod, f"answered {got!r}")
        for gw, gw_ip in sorted(state.gateways.items()):
            how = "one NIC shared with the host, ovn-k8s-gateway-helper" if gw == state.shared_nic else "own NIC"
            seen = answers(state.ns("out"), f"http://{gw_ip}:{node_port}/", both)
            self.check(f"outside to NodePort: outside ({OUTSIDE_IP}) -> {gw_ip}:{node_port} on {gw} ({how})",
                       bool(seen & both), f"answered by {sorted(seen)}")
        if state.shared_nic:
            host_ip = state.gateways[state.shared_nic]
            got = http_get(state.ns("out"), f"http://{host_ip}:{HOST_SERVICE_PORT}/")
            self.check(f"outside to {state.shared_nic}'s own server on the shared NIC {host_ip}:{HOST_SERVICE_PORT}",
                       got == f"{state.shared_nic}-host", f"answered {got!r}")
        log = f"{state.daemon_dir}/outside-http.access"
        start = _size(log)
        ok = all(http_get(ns, f"http://{OUTSIDE_IP}:{OUTSIDE_PORT}/") == "outside" for ns in (ns_a, ns_b)
                 for _ in range(3))
        sources = _sources(log, start)
        snat = sorted(state.gateways.values())
        self.check(f"pod to outside through SNAT: {name_a}, {name_b} -> {OUTSIDE_IP}:{OUTSIDE_PORT}, "
                   f"seen from gateway addresses only {snat}", ok and bool(sources) and set(sources) <= set(snat),
                   f"outside saw {sources}")
        if state.real_nodes:
            self.kubectl_checks(state, name_a, name_b, vip)
        self.policy_checks(api, state, (name_a, ns_a, node_a), (name_b, ip_b, node_b))
        self.out("")
        cluster.status(self.dir, out=lambda s: self.out("  " + s))
        return self.finish()

    def kubectl_checks(self, state: State, name_a: str, name_b: str, vip: str) -> None:
        """Real nodes: through the kubelets (kube-apiserver -> the node's forwarder -> kubelet ->
        containerd): `kubectl exec` in a container to the Service, `kubectl logs`."""
        from sandbox import real_control_plane

        def kubectl(*args: str) -> str | None:
            binary = real_control_plane.kubectl() or "kubectl"
            proc = subprocess.run([binary, f"--kubeconfig={state.kubeconfig}", "-n", NAMESPACE, *args],
                                  capture_output=True, text=True, timeout=30, check=False)
            return proc.stdout.strip() if proc.returncode == 0 else None

        seen: set[str] = set()
        for _ in range(10):
            got = kubectl("exec", name_a, "--", "timeout", "3", "wget", "-qO-", f"http://{vip}/")
            if got:
                seen.add(got)
            if seen == {name_a, name_b}:
                break
        self.check(f"kubectl exec {name_a} -- wget http://{vip}/ (the Service from inside a container): "
                   "both backends answer", seen == {name_a, name_b}, f"answered by {sorted(seen)}")
        logs = kubectl("logs", name_b) or ""
        self.check(f"kubectl logs {name_b}: the container's requests", "response:200" in logs,
                   f"{len(logs.splitlines())} lines")

    def policy_checks(self, api: Any, state: State, a: tuple[str, str, str],
                      b: tuple[str, str, str]) -> None:
        """NetworkPolicy: deny all ingress in the namespace, then allow it from the namespace
        itself (by its kubernetes.io/metadata.name label); removed again afterwards."""
        name_a, ns_a, node_a = a
        name_b, ip_b, node_b = b
        url = f"http://{ip_b}:8080/"
        self.out("")
        self.step("NetworkPolicy (port groups, address sets and ACLs; docs/networkpolicy.md)")
        try:
            api.create("networkpolicies", _policy("deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                       NAMESPACE)
            blocked = _until(lambda: http_get(ns_a, url, timeout=0.5) is None)
            self.check(f"deny-all in {NAMESPACE}: {name_a} -> {name_b} {ip_b}:8080 refused", blocked,
                       "no answer" if blocked else "still answered after 10s")
            got = http_get(state.ns(node_b), url)
            self.check(f"deny-all: {node_b} still reaches its own pod {name_b} (kubelet probes)",
                       got == name_b, f"answered {got!r}")
            api.create("networkpolicies", _policy("allow-from-demo", {"podSelector": {}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}}]}]}), NAMESPACE)
            answered = _until(lambda: http_get(ns_a, url, timeout=0.5) == name_b)
            self.check(f"allow from namespace {NAMESPACE}: {name_a} -> {name_b} answers again", answered,
                       f"answered {name_b!r}" if answered else "no answer after 10s")
            if node_a != node_b:
                got = http_get(state.ns(node_a), url, timeout=0.5)
                self.check(f"allow from namespace {NAMESPACE}: {node_a}'s management port (not in it) "
                           f"-> {name_b} still refused", got is None,
                           "no answer" if got is None else f"answered {got!r}")
        finally:
            for name in ("allow-from-demo", "deny-all"):
                api.delete("networkpolicies", name, NAMESPACE)


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll until `check()` holds (the policy is enforced once the chassis applied it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(obj)


def _size(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


def _sources(path: str, start: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return sorted({line.split()[0] for line in lines if line.strip()})


def pod_netns(state: State, pod: dict[str, Any]) -> str:
    """A pod's network namespace: its name (agent nodes) or containerd's path (real nodes)."""
    if state.real_nodes:
        from sandbox import realnode

        return realnode.pod_netns(state, pod)
    return state.ns(f"pod-{pod['metadata']['namespace']}-{pod['metadata']['name']}")


def main(directory: str, nodes: int | None = None, keep: bool = False, control_plane: str | None = None,
         nodes_kind: str | None = None) -> int:
    was_up = State.load(directory) is not None and not cluster.healthy(State.load(directory))  # type: ignore[arg-type]
    demo = Demo(directory)
    try:
        return demo.run(nodes=nodes, control_plane=control_plane, nodes_kind=nodes_kind)
    finally:
        if keep or was_up:
            print(f"\nsandbox {'kept' if keep else 'left up (it was up before the demo)'}: state in {directory}")
            state = State.load(directory)
            if state is not None:
                flag = "" if directory == "/run/ovn-k8s-sandbox" else f" --state-dir {directory}"
                print(f"  ovn-k8s-sandbox{flag} status")
                print(f"  ovn-nbctl --db={state.nb} show")
                pod = "web-0" if not state.real else "<pod name>"
                if state.real_nodes:
                    print(f"  ovn-k8s-sandbox{flag} kubectl exec -n demo {pod} -- wget -qO- http://<service VIP>/")
                else:
                    print(f"  ip netns exec {state.ns(f'pod-demo-{pod}')} curl -s http://<service VIP>/")
                print(f"  ovn-k8s-sandbox{flag} kubectl get pods,svc,endpointslices -n demo -o wide")
                print(f"  ovn-k8s-sandbox{flag} down")
        else:
            cluster.down(directory, out=lambda s: print(f"\n{s}"))
