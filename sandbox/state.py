"""Where the sandbox keeps its state, and how it starts and stops its daemons.

Everything lives under one state directory (default /run/ovn-k8s-sandbox, or
$OVN_K8S_SANDBOX_DIR, or --state-dir), so separate invocations find the running sandbox:

    <dir>/sandbox.json      prefix, nodes, control plane (real or embedded), API server port and token
    <dir>/kubeconfig        for clients on this machine (https://127.0.0.1:PORT, token, CA)
    <dir>/lab/              the lab (sandbox.lab): central/, node<i>/, netns.list, pids/
    <dir>/lab/sandbox/      pid files and logs of the sandbox's own daemons (the real control
                            plane's too: etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
    <dir>/lab/pods/<node>/  pid files, logs and records of the pods each agent started

Every daemon has a pid file under <dir>/lab, so the lab's down_dir() stops all of them, deletes
every namespace listed in netns.list (pods' too) and removes the directory, even after a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sandbox.lab.proc import alive, read_pid

DEFAULT_DIR = "/run/ovn-k8s-sandbox"
ENV_DIR = "OVN_K8S_SANDBOX_DIR"
CLUSTER = "10.244.0.0/16"
SERVICE_RANGE = "10.96.0.0/16"
OUTSIDE_IP = "192.0.2.1"
GATEWAY_IP = "192.0.2.10"
SHARED_GATEWAY_IP = "192.0.2.20"   # node2's host address on its one NIC, shared with GR_node2
API_PORT_IN_LAB = 6443   # where the nodes reach the API server: <central_ip>:6443 (a forwarder)
OUTSIDE_PORT = 8080
REAL, EMBEDDED = "real", "embedded"   # the control planes (--control-plane)
AGENT = "agent"                       # the nodes (--nodes-kind): REAL (kubelet + containerd) or AGENT
HOST_SERVICE_PORT = 22             # the shared-NIC node's own HTTP server ("ssh"), on its host address


def state_dir(explicit: str | None = None) -> str:
    return os.path.abspath(explicit or os.environ.get(ENV_DIR) or DEFAULT_DIR)


def prefix_for(directory: str) -> str:
    """The namespace prefix: fixed for the default directory, derived from any other."""
    if directory == DEFAULT_DIR:
        return "sandbox"
    return "sb" + hashlib.sha1(directory.encode()).hexdigest()[:6]


def node_subnet(index: int) -> str:
    return f"10.244.{index}.0/24"


@dataclass
class State:
    dir: str
    prefix: str
    nodes: list[str] = field(default_factory=list)
    api_port: int = 0
    token: str = ""
    central_ip: str = ""
    encap_ips: dict[str, str] = field(default_factory=dict)
    gateways: dict[str, str] = field(default_factory=dict)   # node -> physical IP
    shared_nic: str = ""                                      # the shared-NIC gateway node
    created: float = 0.0
    complete: bool = False      # set once 'up' finished; an interrupted 'up' leaves it False
    control_plane: str = EMBEDDED   # "real" (kube-apiserver, etcd, ...) or "embedded" (sandbox.kubeapi)
    api_ca_file: str = ""           # the CA clients trust (real: the control plane's); "" = api_cert
    db_cluster: int = 0             # > 0: the NB and SB are RAFT clusters of this many members
    nodes_kind: str = "agent"       # "real" (kubelet + containerd, sandbox.realnode) or "agent"

    @property
    def real(self) -> bool:
        return self.control_plane == REAL

    @property
    def real_nodes(self) -> bool:
        return self.nodes_kind == REAL

    @property
    def lab_dir(self) -> str:
        return f"{self.dir}/lab"

    @property
    def daemon_dir(self) -> str:
        return f"{self.lab_dir}/sandbox"

    @property
    def kubeconfig(self) -> str:
        return f"{self.dir}/kubeconfig"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def lab_api_url(self) -> str:
        return f"https://{self.central_ip}:{API_PORT_IN_LAB}"

    @property
    def api_cert(self) -> str:
        """The API server's self-signed certificate (also the CA clients trust)."""
        return f"{self.daemon_dir}/api.crt"

    @property
    def ca(self) -> str:
        """The CA file clients (watcher, CNI plugin, agents, kubectl) trust."""
        return self.api_ca_file or self.api_cert

    @property
    def api_key(self) -> str:
        return f"{self.daemon_dir}/api.key"

    @property
    def nb(self) -> str:
        """The NB for clients: its socket, or every member's of a clustered NB (a list)."""
        if self.db_cluster:
            return ",".join(f"unix:{self.lab_dir}/central/nb{i}.sock" for i in range(1, self.db_cluster + 1))
        return f"unix:{self.lab_dir}/central/nb.sock"

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def node_dir(self, node: str) -> str:
        return f"{self.lab_dir}/{node}"

    def pods_dir(self, node: str) -> str:
        return f"{self.lab_dir}/pods/{node}"

    def save(self) -> None:
        tmp = f"{self.dir}/sandbox.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, f"{self.dir}/sandbox.json")

    @classmethod
    def load(cls, directory: str) -> State | None:
        try:
            with open(f"{directory}/sandbox.json", encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            return None
        return cls(**data)

    def api(self):  # type: ignore[no-untyped-def]
        from sandbox.api import Api

        return Api(self.api_url, self.token, cafile=self.ca)


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def start_daemon(directory: str, name: str, cmd: list[str], *, netns: str | None = None,
                 env: dict[str, str] | None = None) -> int:
    """Start `cmd` detached (own session, outlives the CLI), logging to <directory>/<name>.log,
    its pid in <directory>/<name>.pid."""
    os.makedirs(directory, exist_ok=True)
    full = (["ip", "netns", "exec", netns] if netns else []) + cmd
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_") and k != "KUBECONFIG"}
    clean["OVN_K8S_CONFIG"] = "/dev/null"
    with open(f"{directory}/{name}.log", "ab") as log:
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env={**clean, **(env or {})}, start_new_session=True,
                                close_fds=True)
    with open(f"{directory}/{name}.pid", "w", encoding="ascii") as f:
        f.write(f"{proc.pid}\n")
    return proc.pid


def daemon_alive(pidfile: str) -> bool:
    pid = read_pid(pidfile)
    return pid is not None and alive(pid)


def wait_log(path: str, needle: str, timeout: float, pidfile: str | None = None) -> str:
    """Wait until the log contains `needle`; return the line. Fails early if the daemon died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if needle in line:
                        return line.strip()
        except FileNotFoundError:
            pass
        if pidfile is not None and not daemon_alive(pidfile):
            raise RuntimeError(f"{os.path.basename(path)[:-4]} exited; see {path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {needle!r} in {path}")
        time.sleep(0.05)
