"""Real Kubernetes nodes for the sandbox (`up --nodes-kind real`): per node, Debian's containerd
and the kubelet from the assets, both inside the node's network namespace, with the node's OVS,
ovn-controller and our topology commands as for the agent. containerd calls
`ovn-k8s-cni-overlay` from the conflist minion-init wrote (its CNI conf/bin dirs are the node's
`<lab>/<node>/cni/{net.d,bin}`). The recipe is /work/shared/reference/kubelet-lab.md:

    root netns (127.0.0.0/8 only)                   node netns <p>-node<i>
    kube-apiserver 127.0.0.1:<port>                 containerd (private root/state/sockets)
    kubelet forwarder 127.<h>.<i>:10250  ------->   kubelet 127.0.0.1:10250 (healthz :10248)
    forwarder <central_ip>:6443 in <p>-central <-   kubelet's kubeconfig (the lab's API address)

- The Node's InternalIP is 127.<h>.<i> (h from the sandbox's prefix, so two sandboxes differ):
  kube-apiserver (`--kubelet-preferred-address-types=InternalIP`) dials it for exec, logs and
  port-forward, and `sandbox.realnode forward` relays into the node's namespace. The kubelet
  runs with `--cloud-provider external` (it refuses a loopback --node-ip), so `up` sets the
  addresses and spec.podCIDR itself and lifts the `uninitialized` taint.
- Everything per node lives in `/run/ovn-k8s-rn/<prefix>-<node>/` (short: unix socket paths
  are limited to 108 bytes), logs and pid files in `<lab>/<node>/`.
- Host side effects (kubelet-lab.md): the kubelet's global sysctls, `/var/lib/kubelet`,
  `/var/log/containers`, libcni's `/var/lib/cni`, shim sockets under `/run/containerd/s`. The
  first real node on the host saves what was there in `/run/ovn-k8s-rn/host.json`; each
  sandbox leaves a marker; the last one down restores the sysctls and removes what was made.

    python -m sandbox.realnode forward NETNS HOST PORT    (the kubelet's forwarder)
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox import images
from sandbox.lab.proc import alive, read_pid, stop_pid, stop_pidfile
from sandbox.state import State, node_subnet, python_module, start_daemon

LOG = logging.getLogger(__name__)

HOST_DIR = "/run/ovn-k8s-rn"
HOST_STATE = f"{HOST_DIR}/host.json"
USERS_DIR = f"{HOST_DIR}/users"
KUBELET_PORT = 10250
# Global (not per-netns) sysctls the kubelet sets at start (kubelet-lab.md).
KUBELET_SYSCTLS = ("kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
                   "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes")
# Paths the kubelet, containerd or libcni create on the host whatever their configuration.
HOST_PATHS = ("/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/var/lib/cni", "/run/containerd",
              "/run/containerd/s", "/etc/kubernetes")
UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"
SHIM_SOCKET_ROOT = "/run/containerd/s"
CLONE_NEWNET = 0x40000000
CRI = "io.containerd.grpc.v1.cri"
# containerd 1.6 brings up a pod's `lo` through the standard `loopback` plugin, looked up in
# the same bin dir as ours (Debian: containernetworking-plugins).
LOOPBACK_CANDIDATES = ("/usr/lib/cni/loopback", "/opt/cni/bin/loopback")


def unavailable() -> str | None:
    """None when real nodes can run here (the assets' kubelet, containerd, runc, ctr, nsenter,
    busybox-static); else why not, in one line."""
    from sandbox.control_plane import find_assets, missing_binaries

    assets = find_assets()
    if assets is None or missing_binaries(assets, ["kubelet"]):
        return "no kubelet in the assets ($KUBEBUILDER_ASSETS or <repo>/.k8s-assets)"
    missing = [b for b in ("containerd", "runc", "ctr", "nsenter") if shutil.which(b) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install containerd runc)"
    if loopback_plugin() is None:
        return "no CNI loopback plugin (apt-get install containernetworking-plugins)"
    try:
        images.busybox()
    except FileNotFoundError as exc:
        return str(exc)
    return None


def loopback_plugin() -> str | None:
    return next((p for p in LOOPBACK_CANDIDATES if os.access(p, os.X_OK)), None)


def kubelet_binary() -> str:
    from sandbox.control_plane import binary

    return str(binary("kubelet"))


def internal_ip(prefix: str, index: int) -> str:
    """The node's InternalIP: a loopback address of its own, 127.<h1>.<h2>.<index>."""
    digest = hashlib.sha1(prefix.encode()).digest()
    return f"127.{1 + digest[0] % 254}.{digest[1]}.{index}"


@dataclass(frozen=True)
class RealNode:
    """Paths and commands of one real node."""

    prefix: str
    name: str
    index: int
    lab_dir: str

    @property
    def netns(self) -> str:
        return f"{self.prefix}-{self.name}"

    @property
    def base(self) -> str:
        return f"{HOST_DIR}/{self.prefix}-{self.name}"

    @property
    def node_dir(self) -> str:
        return f"{self.lab_dir}/{self.name}"

    @property
    def address(self) -> str:
        """containerd's grpc socket."""
        return f"{self.base}/containerd.sock"

    @property
    def runc_root(self) -> str:
        return f"{self.base}/runc"

    @property
    def containerd_state(self) -> str:
        return f"{self.base}/containerd-state"

    @property
    def kubelet_root(self) -> str:
        return f"{self.base}/kubelet"

    @property
    def cni_dir(self) -> str:
        return f"{self.node_dir}/cni"

    @property
    def ip(self) -> str:
        return internal_ip(self.prefix, self.index)

    def pidfile(self, daemon: str) -> str:
        return f"{self.node_dir}/{daemon}.pid"

    def log(self, daemon: str) -> str:
        return f"{self.node_dir}/{daemon}.log"

    def nsenter(self, *cmd: str) -> list[str]:
        # Not `ip netns exec`: it remounts /sys, which breaks runc (kubelet-lab.md).
        return ["nsenter", f"--net=/run/netns/{self.netns}", *cmd]

    def ctr(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([images.ctr(), "--address", self.address, "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


def nodes_of(state: State) -> list[RealNode]:
    return [RealNode(state.prefix, name, i, state.lab_dir) for i, name in enumerate(state.nodes, start=1)]


# -- configuration ------------------------------------------------------------------------------

def containerd_config(n: RealNode) -> str:
    """containerd's config.toml: private root, state, sockets and runc root; the CRI plugin as
    kubelet-lab.md says; CNI from the node's dirs (minion-init's conflist and plugin link)."""
    b = n.base
    cri = f'plugins."{CRI}"'
    return f"""version = 2
root = "{b}/containerd-root"
state = "{n.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{n.address}"
[ttrpc]
  address = "{n.address}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{b}/opt"
[{cri}]
  sandbox_image = "{images.PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{n.runc_root}"
[{cri}.cni]
  bin_dir = "{n.cni_dir}/bin"
  conf_dir = "{n.cni_dir}/net.d"
  max_conf_num = 1
"""


def kubelet_config(n: RealNode) -> str:
    """The KubeletConfiguration of kubelet-lab.md (cgroup v1 host, no CAP_SYS_RESOURCE, loopback
    only, images never collected)."""
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
address: 127.0.0.1
port: {KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization:
  mode: AlwaysAllow
podLogsDir: {n.base}/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
               "imagefs.available": "1%"}}
containerRuntimeEndpoint: unix://{n.address}
serializeImagePulls: false
maxPods: 110
resolvConf: /etc/resolv.conf
"""


def kubeconfig(state: State) -> str:
    from sandbox.control_plane import kubeconfig_text

    # The lab's address of the API server (the forwarder in <p>-central), as the CNI plugin uses.
    return kubeconfig_text(state.lab_api_url, state.ca, state.token)


# -- host side effects --------------------------------------------------------------------------

def _sysctl(name: str) -> str | None:
    try:
        with open("/proc/sys/" + name.replace(".", "/"), encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _set_sysctl(name: str, value: str) -> None:
    try:
        with open("/proc/sys/" + name.replace(".", "/"), "w", encoding="ascii") as f:
            f.write(value)
    except OSError as exc:
        LOG.warning("cannot restore %s=%s: %s", name, value, exc)


def claim_host(prefix: str) -> None:
    """Before this sandbox's first kubelet: save the host's sysctls and which shared paths exist
    (unless another sandbox already did), and leave this sandbox's marker."""
    os.makedirs(USERS_DIR, exist_ok=True)
    if not os.path.exists(HOST_STATE):
        saved = {"sysctls": {k: v for k in KUBELET_SYSCTLS if (v := _sysctl(k)) is not None},
                 "absent": [p for p in HOST_PATHS if not os.path.lexists(p)],
                 # containerd's CRI namespace as a cgroup under each hierarchy (removed when empty)
                 "absent_cgroups": [f"{d}/k8s.io" for d in glob.glob("/sys/fs/cgroup/*")
                                    if os.path.isdir(d) and not os.path.exists(f"{d}/k8s.io")],
                 "cni_results": sorted(os.listdir("/var/lib/cni/results")) if os.path.isdir("/var/lib/cni/results")
                 else []}
        tmp = HOST_STATE + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(saved, f)
        os.replace(tmp, HOST_STATE)
    open(f"{USERS_DIR}/{prefix}", "w").close()  # noqa: SIM115


def release_host(prefix: str) -> None:
    """This sandbox is gone: drop its marker; the last one restores the sysctls and removes the
    shared paths that were not there before."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{USERS_DIR}/{prefix}")
    if os.path.isdir(USERS_DIR) and os.listdir(USERS_DIR):
        return
    try:
        with open(HOST_STATE, encoding="utf-8") as f:
            saved: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        saved = {}
    for name, value in (saved.get("sysctls") or {}).items():
        if _sysctl(name) != value:
            _set_sysctl(name, value)
    for path in sorted(saved.get("absent") or [], key=len, reverse=True):
        if path == "/var/lib/kubelet" and os.path.isdir(path):
            _unmount_under(path)   # the kubelet's own; only its device-plugins socket is left
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.isdir(path) and not os.path.islink(path):
            _remove_if_only_leftovers(path)
    for cgroup in saved.get("absent_cgroups") or []:
        with contextlib.suppress(OSError):
            os.rmdir(cgroup)
    shutil.rmtree(HOST_DIR, ignore_errors=True)


def _remove_if_only_leftovers(path: str) -> None:
    """Remove `path` if all it holds is empty directories and dangling symlinks (the kubelet's
    links to removed pod logs): something another runtime put there since is kept."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            full = os.path.join(root, name)
            if os.path.islink(full) and not os.path.exists(full):
                os.unlink(full)
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(root, name))
    with contextlib.suppress(OSError):
        os.rmdir(path)


# -- mounts, processes, cgroups -----------------------------------------------------------------

def _mounts() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def _unmount_under(path: str) -> None:
    """Unmount every mount at or under `path`, deepest first (lazily: a busy one goes when freed)."""
    path = path.rstrip("/")
    for _ in range(3):
        points = [m for m in _mounts() if m == path or m.startswith(path + "/")]
        if not points:
            return
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def container_ids(n: RealNode) -> list[str]:
    """Every container/sandbox id containerd (or runc) has for this node, from their state dirs:
    works with containerd stopped or crashed."""
    ids = set()
    for pattern in (f"{n.runc_root}/k8s.io/*", f"{n.containerd_state}/io.containerd.runtime.v2.task/k8s.io/*",
                    f"{n.base}/containerd-root/{CRI}/containers/*", f"{n.base}/containerd-root/{CRI}/sandboxes/*"):
        ids.update(os.path.basename(p) for p in glob.glob(pattern))
    return sorted(i for i in ids if len(i) == 64)


def _cgroup_dirs(cid: str) -> list[str]:
    found = []
    for depth in ("*", "*/*", "*/*/*"):
        found += glob.glob(f"/sys/fs/cgroup/{depth}/{cid}")
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _kill_containers(n: RealNode) -> None:
    """SIGKILL every process of this node's containers (found by their cgroups), then remove
    the cgroups."""
    ids = container_ids(n)
    for _ in range(20):
        pids = set()
        for cid in ids:
            for d in _cgroup_dirs(cid):
                with contextlib.suppress(OSError), open(f"{d}/cgroup.procs", encoding="ascii") as f:
                    pids.update(int(p) for p in f.read().split())
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    for cid in ids:
        for d in _cgroup_dirs(cid):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def shim_pids(n: RealNode) -> list[int]:
    """Shims of this node's containerd: `containerd-shim-runc-v2 ... -address <our socket>`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and b"containerd-shim" in argv[0] and n.address.encode() in argv:
            pids.append(int(entry))
    return pids


def _shim_socket(n: RealNode, cid: str) -> str:
    # containerd 1.6's shim.SocketAddress: sha256 of <grpc address>/<namespace>/<id>.
    return f"{SHIM_SOCKET_ROOT}/{hashlib.sha256(os.path.join(n.address, 'k8s.io', cid).encode()).hexdigest()}"


# -- start ----------------------------------------------------------------------------------------

def _write(path: str, text: str, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _wait(predicate: Any, timeout: float, what: str, pidfile: str | None = None, log: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if pidfile is not None and not alive(read_pid(pidfile) or -1):
            raise RuntimeError(f"{what}: the daemon exited; see {log or pidfile}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; see {log or pidfile}")
        time.sleep(0.05)


def fix_conflist(n: RealNode) -> None:
    """minion-init's conflist names /var/log/openvswitch for the plugin's log (no flag for it):
    keep the log inside the sandbox, as the agent does. Nothing else changes."""
    path = f"{n.cni_dir}/net.d/10-ovn-k8s.conflist"
    with open(path, encoding="utf-8") as f:
        conflist = json.load(f)
    conflist["plugins"][0]["log_file"] = f"{n.node_dir}/cni.log"
    mode = os.stat(path).st_mode & 0o777
    _write(path + ".tmp", json.dumps(conflist, indent=2, sort_keys=True) + "\n", mode)
    os.replace(path + ".tmp", path)


def start_containerd(state: State, n: RealNode, image_dir: str) -> None:
    """containerd in the node's netns, with the sandbox's images imported."""
    os.makedirs(n.base, mode=0o700, exist_ok=True)
    fix_conflist(n)
    loopback = f"{n.cni_dir}/bin/loopback"
    if not os.path.lexists(loopback):
        os.symlink(loopback_plugin() or LOOPBACK_CANDIDATES[0], loopback)
    _write(f"{n.base}/containerd.toml", containerd_config(n))
    launch_containerd(n)
    for tarball in images.build_all(image_dir):
        images.import_tarball(n.address, tarball)


def launch_containerd(n: RealNode) -> None:
    start_daemon(n.node_dir, "containerd", n.nsenter(shutil.which("containerd") or "containerd",
                                                     "--config", f"{n.base}/containerd.toml"))
    _wait(lambda: n.ctr("version", timeout=5).returncode == 0, 20, f"containerd on {n.name}",
          n.pidfile("containerd"), n.log("containerd"))


def restart(state: State, node: str, daemon: str, *, kill: bool = False) -> None:
    """Stop the node's kubelet or containerd (SIGTERM, or SIGKILL with `kill`: a crash) and start
    it again with the same configuration; running containers stay (their shims hold them)."""
    n = next(n for n in nodes_of(state) if n.name == node)
    pid = read_pid(n.pidfile(daemon))
    if pid is not None and alive(pid):
        if kill:
            os.kill(pid, signal.SIGKILL)
            _wait(lambda: not alive(pid), 10, f"{daemon} on {node} to die")
        else:
            stop_pid(pid)
    if daemon == "kubelet":
        start_kubelet(state, n)
    elif daemon == "containerd":
        launch_containerd(n)
    else:
        raise ValueError(f"restart: {daemon} is neither kubelet nor containerd")


def start_kubelet(state: State, n: RealNode) -> None:
    os.makedirs(n.kubelet_root, exist_ok=True)
    _write(f"{n.base}/kubelet.yaml", kubelet_config(n))
    _write(f"{n.base}/kubelet.kubeconfig", kubeconfig(state), 0o600)
    start_daemon(n.node_dir, "kubelet", n.nsenter(
        kubelet_binary(), "--config", f"{n.base}/kubelet.yaml", "--kubeconfig", f"{n.base}/kubelet.kubeconfig",
        "--root-dir", n.kubelet_root, "--cert-dir", f"{n.base}/kubelet-pki", "--hostname-override", n.name,
        "--cloud-provider", "external", "--v", "2"))


def start_forwarder(n: RealNode) -> None:
    start_daemon(n.node_dir, "kubelet-forward", python_module("sandbox.realnode", "forward", n.netns, n.ip,
                                                              str(KUBELET_PORT)))


def start(state: State, names: list[str]) -> None:
    """containerd, the kubelet and its forwarder on every node (in parallel), then set each
    Node's addresses and podCIDR and lift the cloud provider's taint once it registered."""
    from concurrent.futures import ThreadPoolExecutor

    claim_host(state.prefix)
    image_dir = f"{state.daemon_dir}/images"
    nodes = [n for n in nodes_of(state) if n.name in names]

    def one(n: RealNode) -> None:
        start_containerd(state, n, image_dir)
        start_kubelet(state, n)
        start_forwarder(n)

    images.build_all(image_dir)
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        for f in [pool.submit(one, n) for n in nodes]:
            f.result()
    api = state.api()
    for n in nodes:
        _wait(lambda n=n: api.get("nodes", n.name) is not None, 60, f"the kubelet of {n.name} to register",
              n.pidfile("kubelet"), n.log("kubelet"))
        initialize_node(state, n)


def initialize_node(state: State, n: RealNode) -> None:
    """What a cloud controller would do for a node: its addresses (InternalIP 127.<h>.<i>, what
    kube-apiserver dials for exec/logs), its podCIDR, and the `uninitialized` taint lifted."""
    api = state.api()
    node = api.get("nodes", n.name) or {}
    api.patch("nodes", n.name, {"status": {"addresses": [{"type": "InternalIP", "address": n.ip},
                                                         {"type": "Hostname", "address": n.name}]}},
              subresource="status")
    spec = node.get("spec") or {}
    taints = [t for t in spec.get("taints") or [] if t.get("key") != UNINITIALIZED_TAINT]
    patch: dict[str, Any] = {"spec": {"taints": taints or None}}
    if not spec.get("podCIDR"):
        patch["spec"].update({"podCIDR": node_subnet(n.index), "podCIDRs": [node_subnet(n.index)]})
    api.patch("nodes", n.name, patch)


# -- stop -----------------------------------------------------------------------------------------

def teardown(prefix: str, lab_dir: str, names: list[str]) -> None:
    """Stop this sandbox's kubelets and containerds and leave nothing of them (also after a
    crash: it needs only the names): kubelet, container processes and their cgroups, containerd,
    shims, forwarder, mounts, libcni's cache entries, shim sockets, the node's directory; then
    release the host (the last sandbox restores sysctls and removes shared paths)."""
    nodes = [RealNode(prefix, name, i, lab_dir) for i, name in enumerate(names, start=1)]
    nodes += [RealNode(prefix, os.path.basename(p)[len(prefix) + 1:], 0, lab_dir)
              for p in glob.glob(f"{HOST_DIR}/{prefix}-*") if os.path.basename(p)[len(prefix) + 1:] not in names]
    if not os.path.exists(f"{USERS_DIR}/{prefix}") and not any(os.path.exists(n.base) for n in nodes):
        return   # no real node of this sandbox (or lab) on this host
    for n in nodes:
        stop_pidfile(n.pidfile("kubelet"))
    for n in nodes:
        ids = container_ids(n)
        _kill_containers(n)
        stop_pidfile(n.pidfile("containerd"))
        for pid in shim_pids(n):
            stop_pid(pid, timeout=2)
        stop_pidfile(n.pidfile("kubelet-forward"))
        for cid in ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_shim_socket(n, cid))
            for cache in glob.glob(f"/var/lib/cni/results/*-{cid}-*"):
                os.unlink(cache)
        _unmount_under(n.base)
        _unmount_under(n.node_dir)
        shutil.rmtree(n.base, ignore_errors=True)
    release_host(prefix)


# -- pods ---------------------------------------------------------------------------------------

def pod_netns(state: State, pod: dict[str, Any]) -> str:
    """The network namespace (a path under containerd's state dir) of a running pod."""
    n = next(n for n in nodes_of(state) if n.name == pod["spec"]["nodeName"])
    uid = pod["metadata"]["uid"]
    proc = n.ctr("containers", "ls", "-q", f'labels."io.kubernetes.pod.uid"=={uid},'
                 'labels."io.cri-containerd.kind"==sandbox')
    for cid in proc.stdout.split():
        info = n.ctr("containers", "info", cid)
        if info.returncode != 0:
            continue
        spec = json.loads(info.stdout).get("Spec") or {}
        for ns in (spec.get("linux") or {}).get("namespaces") or []:
            if ns.get("type") == "network" and ns.get("path") and os.path.exists(ns["path"]):
                return str(ns["path"])
    raise RuntimeError(f"no network namespace for pod {pod['metadata']['name']} on {n.name}")


def import_image(state: State, tarball: str, names: list[str] | None = None) -> list[str]:
    """Import an image tarball (docker save / OCI archive) into the nodes' containerd."""
    out = []
    for n in nodes_of(state):
        if names and n.name not in names:
            continue
        out.append(f"{n.name}: {images.import_tarball(n.address, tarball)}")
    return out


# -- the kubelet's forwarder ------------------------------------------------------------------------

def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def forward(netns: str, host: str, port: int) -> int:
    """Listen on host:port (a 127/8 address of the root namespace), then enter `netns` and relay
    each connection to 127.0.0.1:port there (the kubelet). The listener stays in the root
    namespace: a socket belongs to the namespace it was made in."""
    if not host.startswith("127."):
        raise SystemExit("the kubelet's forwarder listens on loopback only")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    with open(f"/run/netns/{netns}", "rb") as f:
        if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns({netns})")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"forwarding {host}:{port} -> {netns} 127.0.0.1:{port}", flush=True)
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            upstream.settimeout(None)
        except OSError as exc:
            LOG.warning("kubelet forwarder: %s", exc)
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "forward":
        return forward(argv[1], argv[2], int(argv[3]))
    print("usage: python -m sandbox.realnode forward NETNS HOST PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
