"""The per-node agent: plays the kubelet and the container runtime for one sandbox node.

For each pod bound to its node it creates the pod's network namespace, runs the real CNI
plugin ADD exactly as a runtime does (`ip netns exec <node> <cni-bin>/ovn-k8s-cni-overlay`,
CNI_* environment, the network configuration minion-init wrote on stdin), starts the pod's
process (sandbox.podserver, answering the pod's name) and reports the pod Running
and Ready with its IP. When the pod is deleted it stops the process, runs CNI DEL and deletes
the namespace. State survives an agent restart: one record per pod under <lab>/pods/<node>/.

On the real control plane (kube-apiserver, kube-scheduler, kube-controller-manager) it also does
what a kubelet does toward the API: it registers its Node (Ready, capacity, addresses), keeps it
alive with heartbeats (its Lease in kube-node-lease every 10 s, the Node's status every 60 s) so
the node-lifecycle controller lifts the not-ready taint and the scheduler binds pods to it, and
confirms a pod's deletion (grace period 0, the pod's UID as precondition) once the pod's network
is torn down, so a deleted pod does not stay Terminating.

    python -m sandbox.agent STATE_DIR NODE
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

from sandbox import loop
from sandbox.api import Api, ApiError
from sandbox.lab.proc import netns_exists, stop_pidfile
from sandbox.state import State, node_subnet

LOG = logging.getLogger("sandbox-agent")
PLUGIN = "ovn-k8s-cni-overlay"
DEFAULT_PORT = 8080
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40          # the kubelet's defaults: a 40 s lease renewed every 10 s
RENEW_EVERY = 10.0
STATUS_EVERY = 60.0         # the Node's status (lastHeartbeatTime); the lease is the liveness signal
VERSION = "ovn-k8s-sandbox"


def now(micro: bool = False) -> str:
    """An RFC 3339 time in UTC; `micro` for MicroTime fields (a Lease's renewTime)."""
    t = time.time()
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return text + (f".{int(t % 1 * 1e6):06d}Z" if micro else "Z")


def node_object(state: State, name: str, ready_since: str | None = None) -> dict[str, Any]:
    """The Node a kubelet registers: Ready, capacity for 110 pods, the node's encap IP."""
    index = state.nodes.index(name) + 1
    stamp = now()
    resources = {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                                  "kubernetes.io/arch": "amd64"}},
            "spec": {"podCIDR": node_subnet(index)},
            "status": {"addresses": [{"type": "InternalIP", "address": state.encap_ips[name]},
                                     {"type": "Hostname", "address": name}],
                       "capacity": resources, "allocatable": resources,
                       "nodeInfo": {"kubeletVersion": VERSION, "operatingSystem": "linux",
                                    "architecture": "amd64", "containerRuntimeVersion": VERSION,
                                    "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                                    "osImage": "", "kubeProxyVersion": ""},
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "ovn-k8s-sandbox agent is posting ready status",
                                       "lastHeartbeatTime": stamp,
                                       "lastTransitionTime": ready_since or stamp}]}}


def pod_port(pod: dict[str, Any]) -> int:
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("containerPort"):
                return int(p["containerPort"])
    return DEFAULT_PORT


def running_status(pod: dict[str, Any], rec: dict[str, Any], host_ip: str) -> dict[str, Any]:
    """The status a kubelet posts once the pod's containers run: phase, IPs, conditions and a
    status per container (kubectl's READY and STATUS columns come from those)."""
    stamp = now()
    containers = (pod.get("spec") or {}).get("containers") or []
    return {"phase": "Running", "podIP": rec["ip"], "podIPs": [{"ip": rec["ip"]}],
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": stamp,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": stamp}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": c.get("name", "web"), "image": c.get("image", ""), "imageID": "",
                                   "containerID": f"sandbox://{rec['container']}", "ready": True,
                                   "started": True, "restartCount": 0,
                                   "state": {"running": {"startedAt": stamp}}} for c in containers]}


class Agent:
    def __init__(self, state: State, node: str, api: Api | None = None) -> None:
        self.state = state
        self.node = node
        self.api = api or state.api()
        self.dir = state.pods_dir(node)
        self.node_ns = state.ns(node)
        self.cni_dir = f"{state.node_dir(node)}/cni"
        os.makedirs(self.dir, exist_ok=True)
        self.busy: set[str] = set()
        self.failed_at: dict[str, float] = {}
        self.lock = threading.Lock()
        # Kubelet duties, on the real control plane only (the embedded one has the sandbox's
        # own scheduler, which needs no heartbeats; cluster.up registers the Nodes there).
        self.kubelet = state.real
        self.registered = False
        self.ready_since = now()
        self.renewed_at = float("-inf")
        self.status_at = float("-inf")

    # -- the kubelet's node duties ---------------------------------------------------------------
    def register(self) -> None:
        """Create our Node; a restarted agent finds it and posts its status instead."""
        node = node_object(self.state, self.node, self.ready_since)
        try:
            self.api.create("nodes", node)
            LOG.info("registered node %s", self.node)
        except ApiError as exc:
            if exc.code != 409:
                raise
            self.api.patch("nodes", self.node, {"status": node["status"]}, subresource="status")
            LOG.info("node %s already registered; status posted", self.node)
        self.registered = True
        self.status_at = time.monotonic()

    def heartbeat(self) -> None:
        """Renew the node's Lease (create it on first use) and, less often, post its status."""
        t = time.monotonic()
        if t - self.renewed_at >= RENEW_EVERY:
            try:
                self.api.patch("leases", self.node, {"spec": {"renewTime": now(micro=True)}},
                               namespace=LEASE_NAMESPACE)
            except ApiError as exc:
                if exc.code != 404:
                    raise
                node = self.api.get("nodes", self.node) or {}
                owner = [{"apiVersion": "v1", "kind": "Node", "name": self.node,
                          "uid": node.get("metadata", {}).get("uid", "")}] if node else []
                self.api.create("leases", {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.node, "namespace": LEASE_NAMESPACE, "ownerReferences": owner},
                    "spec": {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS,
                             "renewTime": now(micro=True)}}, namespace=LEASE_NAMESPACE)
            self.renewed_at = t
        if t - self.status_at >= STATUS_EVERY:
            status = node_object(self.state, self.node, self.ready_since)["status"]
            self.api.patch("nodes", self.node, {"status": {"conditions": status["conditions"]}},
                           subresource="status")
            self.status_at = t

    # -- records -------------------------------------------------------------------------------
    def records(self) -> dict[str, dict[str, Any]]:
        out = {}
        for entry in os.listdir(self.dir):
            if entry.endswith(".json"):
                try:
                    with open(f"{self.dir}/{entry}", encoding="utf-8") as f:
                        rec = json.load(f)
                    out[rec["key"]] = rec
                except (OSError, ValueError, KeyError):
                    continue
        return out

    def base(self, key: str) -> str:
        return f"{self.dir}/{key.replace('/', '_')}"

    # -- CNI as a runtime runs it --------------------------------------------------------------
    def cni(self, command: str, rec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        with open(f"{self.cni_dir}/net.d/10-ovn-k8s.conflist", encoding="utf-8") as f:
            conflist = json.load(f)
        plugin = dict(conflist["plugins"][0])
        # minion-init names /var/log/openvswitch: keep the plugin's log inside the sandbox.
        plugin["log_file"] = f"{self.state.node_dir(self.node)}/cni.log"
        conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
        ns, name = rec["key"].split("/", 1)
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": rec["container"],
               "CNI_NETNS": f"/run/netns/{rec['netns']}", "CNI_IFNAME": "eth0",
               "CNI_PATH": f"{self.cni_dir}/bin", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};"
                           f"K8S_POD_INFRA_CONTAINER_ID={rec['container']};K8S_POD_UID={rec['uid']}"}
        return subprocess.run(["ip", "netns", "exec", self.node_ns, f"{self.cni_dir}/bin/{plugin['type']}"],
                              input=json.dumps(conf), capture_output=True, text=True, env=env,
                              timeout=60, check=False)

    # -- pod lifecycle -------------------------------------------------------------------------
    def start_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        rec = {"key": key, "uid": meta.get("uid", ""), "container": f"sandbox-{meta.get('uid', key)}"[:64],
               "netns": self.state.ns(f"pod-{meta['namespace']}-{meta['name']}"), "ip": None,
               "port": pod_port(pod), "started": time.time()}
        base = self.base(key)
        t0 = time.monotonic()
        try:
            with open(f"{self.state.lab_dir}/netns.list", "a", encoding="utf-8") as f:
                f.write(rec["netns"] + "\n")
            if not netns_exists(rec["netns"]):
                subprocess.run(["ip", "netns", "add", rec["netns"]], check=True, capture_output=True)
                subprocess.run(["ip", "-n", rec["netns"], "link", "set", "lo", "up"], check=True,
                               capture_output=True)
            with open(base + ".json", "w", encoding="utf-8") as f:
                json.dump(rec, f)
            proc = self.cni("ADD", rec)
            if proc.returncode != 0:
                raise RuntimeError(f"CNI ADD failed ({proc.returncode}): {proc.stdout.strip()} "
                                   f"{proc.stderr.strip()}")
            result = json.loads(proc.stdout)
            rec["ip"] = result["ips"][0]["address"].split("/")[0]
            with open(base + ".json", "w", encoding="utf-8") as f:
                json.dump(rec, f)
            ready = base + ".access.ready"
            if os.path.exists(ready):
                os.unlink(ready)
            with open(base + ".log", "ab") as log:
                child = subprocess.Popen(["ip", "netns", "exec", rec["netns"], sys.executable, "-m",
                                          "sandbox.podserver", meta["name"], str(rec["port"]),
                                          base + ".access"], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True)
            with open(base + ".pid", "w", encoding="ascii") as f:
                f.write(f"{child.pid}\n")
            deadline = time.monotonic() + 10
            while not os.path.exists(ready):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pod process did not start; see {base}.log")
                time.sleep(0.02)
            self.api.patch("pods", meta["name"], {"status": running_status(pod, rec, self.state.encap_ips[self.node])},
                           namespace=meta["namespace"], subresource="status")
            LOG.info("pod %s up: %s in %.2fs", key, rec["ip"], time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001 - one pod's failure must not stop the agent
            LOG.error("pod %s: %s", key, exc)
            self.failed_at[key] = time.monotonic()
            self.stop_pod(rec)
            try:
                self.api.patch("pods", meta["name"], {"status": {"phase": "Pending", "conditions": [
                    {"type": "Ready", "status": "False", "reason": "SandboxFailed",
                     "message": str(exc)[:300]}]}}, namespace=meta["namespace"], subresource="status")
            except ApiError:
                pass

    def stop_pod(self, rec: dict[str, Any]) -> None:
        base = self.base(rec["key"])
        stop_pidfile(base + ".pid")
        if netns_exists(rec["netns"]) and os.path.exists(f"{self.cni_dir}/net.d/10-ovn-k8s.conflist"):
            proc = self.cni("DEL", rec)
            if proc.returncode != 0:
                LOG.warning("pod %s: CNI DEL: %s %s", rec["key"], proc.stdout.strip(), proc.stderr.strip())
            subprocess.run(["ip", "netns", "del", rec["netns"]], capture_output=True, check=False)
        for ext in (".pid", ".json", ".access.ready", ".access", ".log"):
            try:
                os.unlink(base + ext)
            except FileNotFoundError:
                pass
        LOG.info("pod %s removed", rec["key"])

    def terminate(self, job: tuple[dict[str, Any] | None, dict[str, Any]]) -> None:
        """A pod being deleted (deletionTimestamp set): tear down its process and network, then
        confirm the deletion as a kubelet does (grace period 0; the UID guards a pod re-created
        under the same name meanwhile)."""
        rec, pod = job
        if rec is not None:
            self.stop_pod(rec)
        meta = pod["metadata"]
        try:
            self.api.delete("pods", meta["name"], meta["namespace"],
                            {"gracePeriodSeconds": 0, "preconditions": {"uid": meta.get("uid")}})
            LOG.info("pod %s/%s deletion confirmed", meta["namespace"], meta["name"])
        except ApiError as exc:
            if exc.code != 409:      # 409: another pod of that name by now
                raise

    def _run(self, key: str, fn: Any, arg: Any) -> None:
        try:
            fn(arg)
        except Exception as exc:  # noqa: BLE001 - logged; the next sync tries again
            LOG.error("pod %s: %s", key, exc)
        finally:
            with self.lock:
                self.busy.discard(key)

    def spawn(self, key: str, fn: Any, arg: Any) -> None:
        with self.lock:
            if key in self.busy:
                return
            self.busy.add(key)
        threading.Thread(target=self._run, args=(key, fn, arg), daemon=True).start()

    def sync_once(self) -> None:
        if self.kubelet:
            if not self.registered:
                self.register()
            self.heartbeat()
        pods = self.api.list("pods", fieldSelector=f"spec.nodeName={self.node}")
        want, deleting = {}, {}
        for pod in pods:
            meta = pod["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            if meta.get("deletionTimestamp"):
                deleting[key] = pod
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                continue
            want[key] = pod
        have = self.records()
        for key, pod in deleting.items():
            rec = have.pop(key, None)
            if rec is not None and rec["uid"] != pod["metadata"].get("uid", ""):
                self.spawn(key, self.stop_pod, rec)      # an older pod of that name first
            else:
                self.spawn(key, self.terminate, (rec, pod))
        for key, rec in have.items():
            pod = want.get(key)
            if pod is None or pod["metadata"].get("uid", "") != rec["uid"]:
                self.spawn(key, self.stop_pod, rec)
        for key, pod in want.items():
            if key in have:
                continue
            if time.monotonic() - self.failed_at.get(key, -1e9) < 2:
                continue
            self.spawn(key, self.start_pod, pod)


def main(argv: list[str]) -> int:
    return loop.main(argv, f"agent for {argv[1]}", lambda state: Agent(state, argv[1]).sync_once)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
