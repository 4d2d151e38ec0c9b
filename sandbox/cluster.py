"""Bring the sandbox up, tear it down, and describe it.

up: the lab (central NB/SB/northd, N nodes with userspace OVS + ovn-controller, an outside
network on node1's eth1), the control plane on 127.0.0.1 and a forwarder that exposes the API
server at <central_ip>:6443 inside the lab, ovn-k8s-overlay master-init / minion-init /
gateway-init, ovn-k8s-watcher, one agent per node, and an HTTP server in the outside namespace
(to see SNAT). The control plane is either real (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler; the agents register the Nodes and keep their heartbeats) or embedded (our API
server, plus the sandbox's scheduler + endpoints controller; Node objects made here).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from sandbox.lab.cluster import REGISTRY, Lab, down_dir
from sandbox.lab.proc import alive, read_pid, stop_pidfile
from sandbox.state import (
    AGENT,
    API_PORT_IN_LAB,
    CLUSTER,
    EMBEDDED,
    GATEWAY_IP,
    HOST_SERVICE_PORT,
    OUTSIDE_IP,
    OUTSIDE_PORT,
    REAL,
    SERVICE_RANGE,
    SHARED_GATEWAY_IP,
    State,
    daemon_alive,
    node_subnet,
    prefix_for,
    python_module,
    start_daemon,
    wait_log,
)

if TYPE_CHECKING:
    from sandbox.control_plane import ControlPlane

Out = Callable[[str], None]
# Our own daemons, stopped first on down (before the lab's OVS/OVN daemons and the pods).
SANDBOX_DAEMONS = ("agent-*", "controllers", "gateway-helper-*", "watcher", "forwarder", "kubeapi",
                   "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd",
                   "outside-http", "host-http-*")
CONTROL_PLANES = (REAL, EMBEDDED)
NODES_KINDS = (REAL, AGENT)


def exe(name: str) -> str:
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.path.exists(beside) else (shutil.which(name) or name)


class SandboxError(RuntimeError):
    pass


def daemons(state: State) -> list[tuple[str, str]]:
    """(name, pid file) of every daemon of the sandbox, in a stable order."""
    lab = state.lab_dir
    out = [(f"central/{os.path.basename(p)[:-4]}", p) for p in sorted(glob.glob(f"{lab}/central/*.pid"))]
    for node in state.nodes:
        out += [(f"{node}/{os.path.basename(p)[:-4]}", p) for p in sorted(glob.glob(f"{lab}/{node}/*.pid"))]
    out += [(os.path.basename(p)[:-4], p) for p in sorted(glob.glob(f"{state.daemon_dir}/*.pid"))]
    return out


def healthy(state: State) -> list[str]:
    """Names of daemons that are not running ([] when all are)."""
    return [name for name, pidfile in daemons(state) if not daemon_alive(pidfile)]


def default_control_plane() -> str:
    """real when the assets for it are found (KUBEBUILDER_ASSETS, <repo>/.k8s-assets), else embedded."""
    from sandbox import real_control_plane

    return REAL if real_control_plane.unavailable() is None else EMBEDDED


def default_nodes_kind(control_plane: str) -> str:
    """real (kubelet + containerd) with a real control plane when the kubelet, containerd and
    runc are there (sandbox.realnode.unavailable), else the agent."""
    from sandbox import realnode

    return REAL if control_plane == REAL and realnode.unavailable() is None else AGENT


def up(directory: str, nodes: int | None = None, out: Out = print, control_plane: str | None = None,
       db_cluster: int | None = None, nodes_kind: str | None = None) -> State:
    """Start the sandbox with `nodes` nodes (default 2) on `control_plane` (real or embedded;
    default: the running sandbox's, else default_control_plane()). A running, healthy sandbox
    is left as it is when `nodes` and `control_plane` are None or match; one with a dead
    daemon is rebuilt. `db_cluster` > 0: the NB and SB are RAFT clusters of that many members
    (0: one server each; None: as the running sandbox, else 0)."""
    if db_cluster is not None and not 0 <= db_cluster <= 7:
        raise SandboxError("--db-cluster must be between 0 (one server) and 7")
    if control_plane is not None and control_plane not in CONTROL_PLANES:
        raise SandboxError(f"--control-plane must be one of {', '.join(CONTROL_PLANES)}")
    if nodes_kind is not None and nodes_kind not in NODES_KINDS:
        raise SandboxError(f"--nodes-kind must be one of {', '.join(NODES_KINDS)}")
    if nodes_kind == REAL and control_plane == EMBEDDED:
        raise SandboxError("--nodes-kind real needs the real control plane (kubelets talk to kube-apiserver)")
    state = State.load(directory)
    if state is not None:
        dead = healthy(state)
        if nodes is None:
            nodes = len(state.nodes) or 2
        if not state.complete:
            dead = dead or ["(an earlier 'up' did not finish)"]
        same_plane = control_plane in (None, state.control_plane)
        same_dbs = db_cluster in (None, state.db_cluster)
        same_kind = nodes_kind in (None, state.nodes_kind)
        if db_cluster is None:
            db_cluster = state.db_cluster
        if not dead and len(state.nodes) == nodes and same_plane and same_dbs and same_kind:
            out(f"sandbox already up in {directory} ({len(state.nodes)} nodes, {state.control_plane} control plane)")
            return state
        if dead:
            why = f"daemons not running: {', '.join(dead)}"
        elif not same_plane:
            why = f"{state.control_plane} control plane, asked for {control_plane}"
        elif not same_dbs:
            why = f"databases of {state.db_cluster or 1} member(s), asked for {db_cluster or 1}"
        elif not same_kind:
            why = f"{state.nodes_kind} nodes, asked for {nodes_kind}"
        else:
            why = f"{len(state.nodes)} nodes, asked for {nodes}"
        control_plane = control_plane or state.control_plane
        nodes_kind = nodes_kind or (state.nodes_kind if control_plane == state.control_plane else None)
        out(f"sandbox in {directory} is not as asked ({why}): rebuilding it")
        down(directory, out=lambda _s: None)
    elif os.path.exists(f"{directory}/lab"):
        down(directory, out=lambda _s: None)   # leftovers of a crashed 'up'
    control_plane = control_plane or default_control_plane()
    if control_plane == REAL:
        from sandbox import real_control_plane

        reason = real_control_plane.unavailable()
        if reason:
            raise SandboxError(f"no real control plane: {reason}; set KUBEBUILDER_ASSETS or use "
                               f"--control-plane {EMBEDDED}")
    if nodes_kind == REAL:
        from sandbox import realnode

        reason = realnode.unavailable()
        if reason:
            raise SandboxError(f"no real nodes: {reason}; use --nodes-kind {AGENT}")
    nodes_kind = nodes_kind or default_nodes_kind(control_plane)
    if nodes_kind == REAL and control_plane != REAL:
        raise SandboxError("--nodes-kind real needs the real control plane (kubelets talk to kube-apiserver)")
    return _build(directory, nodes or 2, out, control_plane, db_cluster=db_cluster or 0, nodes_kind=nodes_kind)


def _build(directory: str, nodes: int, out: Out, control_plane: str = EMBEDDED, *,
           db_cluster: int = 0, nodes_kind: str = AGENT) -> State:
    t0 = time.monotonic()

    def step(text: str) -> None:
        out(f"[{time.monotonic() - t0:5.1f}s] {text}")

    if nodes < 1 or nodes > 200:
        raise SandboxError("--nodes must be between 1 and 200")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    prefix = prefix_for(directory)
    state = State(dir=directory, prefix=prefix, token=secrets.token_hex(16), created=time.time(),
                  control_plane=control_plane, db_cluster=db_cluster, nodes_kind=nodes_kind)
    lab = Lab(prefix=prefix, dir=state.lab_dir)
    state.central_ip = lab.central_ip
    state.save()
    d = state.daemon_dir
    os.makedirs(d, exist_ok=True)
    # The real control plane takes seconds to start and needs nothing of the lab but its
    # address: it starts meanwhile, in a thread (its daemons' pid files are written as they
    # start, so a failure on either side leaves nothing 'down' cannot find).
    with ThreadPoolExecutor(max_workers=1) as pool:
        control_plane_started = pool.submit(_real_control_plane, state) if state.real else None
        raft = f" as {db_cluster}-member RAFT clusters" if db_cluster else ""
        step(f"OVN central (NB, SB{raft}, ovn-northd) in namespace {state.ns('central')}")
        lab.up_central(db_cluster=db_cluster)
        names = [f"node{i}" for i in range(1, nodes + 1)]
        state.nodes = names
        for name in names:
            node = lab.add_node(name)
            state.encap_ips[name] = node.encap_ip
        step(f"{nodes} node(s): {', '.join(state.ns(n) for n in names)} (own OVS + ovn-controller each)")
        lab.add_outside(f"{OUTSIDE_IP}/24")
        lab.connect_outside(lab.nodes["node1"])
        state.save()

        # The API server, as its own process on loopback; the nodes reach it through a forwarder.
        if control_plane_started is not None:
            _registered_real_control_plane(state, control_plane_started.result(), step)
        else:
            _start_embedded_api_server(state, step)
    start_daemon(d, "forwarder", python_module("sandbox.forward", state.ns("central"),
                                               state.central_ip, str(API_PORT_IN_LAB), str(state.api_port)))
    wait_log(f"{d}/forwarder.log", "forwarding", 10, f"{d}/forwarder.pid")
    step(f"API server on {state.api_url} (kubeconfig {state.kubeconfig}); nodes reach it at "
         f"{state.lab_api_url}")
    _topology(state, lab, names, step)
    _start_daemons(state, lab, names, step)
    state.complete = True
    state.save()
    if state.real_nodes:
        step("ovn-k8s-watcher; per node containerd + kubelet in the node's namespace (Node, heartbeats, pods as "
             "containers, our CNI plugin called by containerd); scheduling, ReplicaSets, endpoints by "
             "kube-scheduler and kube-controller-manager")
    elif state.real:
        step("ovn-k8s-watcher, one agent per node (the kubelet: Node, heartbeats, pods); scheduling, "
             "ReplicaSets, endpoints by kube-scheduler and kube-controller-manager")
    else:
        step("ovn-k8s-watcher, scheduler + endpoints controller, one agent per node (the kubelet) started")
    step(f"sandbox up: kubeconfig {state.kubeconfig}")
    return state


def _real_control_plane(state: State) -> ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler on 127.0.0.1, detached, one
    pid file each in the daemon directory (sandbox.real_control_plane)."""
    from sandbox import real_control_plane

    try:
        return real_control_plane.start(state.daemon_dir, state.central_ip, state.kubeconfig)
    except (OSError, RuntimeError) as exc:
        raise SandboxError(f"the real control plane did not start: {exc}") from None


def _registered_real_control_plane(state: State, cp: ControlPlane, step: Callable[[str], None]) -> None:
    """Record the started control plane in the state and the lab registry."""
    state.api_port = cp.port
    state.token = cp.admin_token
    state.api_ca_file = cp.ca_file
    state.save()
    with open(f"{REGISTRY}/{state.prefix}", "w", encoding="utf-8") as f:
        json.dump({"dir": state.lab_dir, "owner": cp.pids["kube-apiserver"]}, f)
    step(f"real control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler "
         f"({', '.join(f'{n} {p}' for n, p in cp.pids.items())}; logs in {cp.workdir}/logs)")


def _start_embedded_api_server(state: State, step: Callable[[str], None]) -> None:
    d = state.daemon_dir
    # https, so kubectl sends the token (client-go sends no credentials over plain http). The
    # certificate names both addresses clients use: loopback here, the forwarder in the lab.
    proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                           "-nodes", "-days", "365", "-subj", "/CN=ovn-k8s-sandbox",
                           "-addext", f"subjectAltName=IP:127.0.0.1,IP:{state.central_ip}",
                           "-keyout", state.api_key, "-out", state.api_cert],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"openssl could not make the API server's certificate: {proc.stderr.strip()}")
    # The token goes to the server in a private file: a command line is readable by every user.
    token_file = f"{d}/kubeapi.token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(state.token + "\n")
    start_daemon(d, "kubeapi", python_module("sandbox.kubeapi", "--listen", "127.0.0.1:0", "--token-file",
                                             token_file, "--kubeconfig-out", state.kubeconfig,
                                             "--tls-cert", state.api_cert, "--tls-key", state.api_key,
                                             "--bookmark-interval", "5", "--log-level", "warning"))
    line = wait_log(f"{d}/kubeapi.log", "kubeapi listening on", 20, f"{d}/kubeapi.pid")
    state.api_port = int(line.rsplit(":", 1)[1])
    state.save()
    # The registry's owner is the API server, which outlives this command: labs whose owner is
    # gone are swept (ovn-k8s-lab down --stale, test sessions), so a crashed sandbox is too.
    with open(f"{REGISTRY}/{state.prefix}", "w", encoding="utf-8") as f:
        json.dump({"dir": state.lab_dir, "owner": read_pid(f"{d}/kubeapi.pid")}, f)
    step("embedded API server (python -m sandbox.kubeapi)")


def _topology(state: State, lab: Lab, names: list[str], step: Callable[[str], None]) -> None:
    """The topology, with our own commands, as an operator runs them on each node."""
    env = {"OVN_K8S_CONFIG": "/dev/null", "OVN_K8S_K8S_API_SERVER": state.lab_api_url,
           "OVN_K8S_K8S_API_TOKEN": state.token, "OVN_K8S_K8S_CA_CERTIFICATE": state.ca,
           # minion-init installs the CNI plugin it finds in PATH: ours, beside this Python.
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")}

    def overlay(node: str, *args: str) -> None:
        n = lab.nodes[node]
        cni = f"{n.dir}/cni"
        cmd = [exe("ovn-k8s-overlay"), *args, f"--node-name={node}", f"--cluster-ip-subnet={CLUSTER}",
               f"--ovs-db={n.ovs_db}", f"--ovn-nb={lab.nb}"]
        if args[0] != "gateway-init":
            cmd.append(f"--service-cluster-ip-range={SERVICE_RANGE}")
        if args[0] == "minion-init":
            cmd += [f"--cni-conf-dir={cni}/net.d", f"--cni-bin-dir={cni}/bin"]
        proc = n.exec(cmd, check=False, env=env)
        if proc.returncode != 0:
            raise SandboxError(f"ovn-k8s-overlay {args[0]} on {node} failed: {proc.stderr.strip()}")
        step(f"{node}$ ovn-k8s-overlay {' '.join(args)}")
        if args[0] == "minion-init" and not os.path.exists(f"{cni}/net.d/10-ovn-k8s.conflist"):
            raise SandboxError(f"minion-init on {node} installed no CNI configuration: {proc.stderr.strip()}")

    overlay("node1", "master-init", f"--master-switch-subnet={node_subnet(1)}")
    # master-init makes node1's switch but does not install CNI; minion-init (idempotent for
    # the same subnet) writes node1's conflist like every other node's.
    overlay("node1", "minion-init", f"--minion-switch-subnet={node_subnet(1)}")
    for i, name in enumerate(names[1:], start=2):
        overlay(name, "minion-init", f"--minion-switch-subnet={node_subnet(i)}")
    overlay("node1", "gateway-init", "--physical-interface=eth1", f"--physical-ip={GATEWAY_IP}/24",
            f"--default-gw={OUTSIDE_IP}")
    state.gateways["node1"] = GATEWAY_IP
    state.save()
    if len(names) > 1:
        _shared_nic_gateway(state, lab, "node2", env, step)


def _start_daemons(state: State, lab: Lab, names: list[str], step: Callable[[str], None]) -> None:
    """The watcher, the gateway helper, the agents (and, embedded, the controllers); returns
    once the watcher is ready and, real, every node is Ready and schedulable."""
    d = state.daemon_dir
    real_nodes = None
    if state.real_nodes:
        # containerd, the sandbox's images and the kubelet per node, while the rest starts.
        real_nodes = ThreadPoolExecutor(max_workers=1)
        real_nodes_started = real_nodes.submit(_start_real_nodes, state, names)
    if not state.real:
        # Real: each agent registers its own Node, as a kubelet does.
        api = state.api()
        for i, name in enumerate(names, start=1):
            api.create("nodes", {"apiVersion": "v1", "kind": "Node",
                                 "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                                 "spec": {"podCIDR": node_subnet(i)},
                                 "status": {"addresses": [{"type": "InternalIP", "address": state.encap_ips[name]},
                                                          {"type": "Hostname", "address": name}],
                                            "conditions": [{"type": "Ready", "status": "True"}]}})

    if state.shared_nic:
        n = lab.nodes[state.shared_nic]
        start_daemon(d, f"gateway-helper-{n.name}",
                     [exe("ovn-k8s-gateway-helper"), "--physical-bridge=breth1", "--physical-interface=eth1",
                      f"--node-name={n.name}", f"--ovs-db={n.ovs_db}", f"--k8s-api-server={state.lab_api_url}",
                      f"--k8s-api-token={state.token}", f"--k8s-ca-certificate={state.ca}",
                      "--log-level=info", f"--log-file={d}/gateway-helper-{n.name}.log"],
                     netns=n.netns, env=n.env)
        # A service of the host itself on the shared address: it must stay the host's.
        start_daemon(d, f"host-http-{n.name}", python_module("sandbox.podserver", f"{n.name}-host",
                                                             str(HOST_SERVICE_PORT), f"{d}/host-http-{n.name}.access"),
                     netns=n.netns)
    # --allocate-node-subnets: the switches minion-init made keep their subnets (node_subnet(i); the
    # annotation follows them) and are marked with their Node's uid, so a deleted Node is cleaned.
    start_daemon(d, "watcher", [exe("ovn-k8s-watcher"), f"--ovn-nb={lab.nb}", f"--kubeconfig={state.kubeconfig}",
                                "--log-level=info", f"--log-file={d}/watcher.log", "--ovs-db=unix:/nonexistent/db.sock",
                                "--metrics-address=127.0.0.1:0", "--allocate-node-subnets"],
                 env={"OVS_RUNDIR": d, "OVS_LOGDIR": d})   # its ovs-appctl socket stays in the sandbox
    if not state.real:
        start_daemon(d, "controllers", python_module("sandbox.controllers", state.dir))
    for name in names if not state.real_nodes else ():
        start_daemon(d, f"agent-{name}", python_module("sandbox.agent", state.dir, name))
    start_daemon(d, "outside-http", python_module("sandbox.podserver", "outside", str(OUTSIDE_PORT),
                                                  f"{d}/outside-http.access"), netns=state.ns("out"))
    line = wait_log(f"{d}/watcher.log", "metrics on http://127.0.0.1:", 30, f"{d}/watcher.pid")
    metrics = line.split("metrics on ", 1)[1].split("/metrics")[0]
    deadline = time.monotonic() + 30
    while not _ok(metrics + "/readyz"):
        if time.monotonic() > deadline or not daemon_alive(f"{d}/watcher.pid"):
            raise SandboxError(f"the watcher is not ready; see {d}/watcher.log")
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while not os.path.exists(f"{d}/outside-http.access.ready"):
        if time.monotonic() > deadline or not daemon_alive(f"{d}/outside-http.pid"):
            raise SandboxError(f"the outside HTTP server did not start; see {d}/outside-http.log")
        time.sleep(0.05)
    if real_nodes is not None:
        with real_nodes:
            real_nodes_started.result()
        _wait_nodes_schedulable(state, names, timeout=60)
        step("kubelets registered their nodes (InternalIP 127.x.y.i, podCIDR set, cloud taint lifted), Ready; "
             "node-lifecycle-controller lifted the not-ready taint")
    elif state.real:
        _wait_nodes_schedulable(state, names)
        step("nodes registered by their agents, Ready; node-lifecycle-controller lifted the not-ready taint")


def _start_real_nodes(state: State, names: list[str]) -> None:
    from sandbox import realnode

    try:
        realnode.start(state, names)
    except (OSError, RuntimeError) as exc:
        raise SandboxError(f"real nodes did not start: {exc}") from None


def schedulable(node: dict) -> bool:  # type: ignore[type-arg]
    """Ready, and no NoSchedule/NoExecute taint (the scheduler's view of a usable node)."""
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    return ready and not taints


def _wait_nodes_schedulable(state: State, names: list[str], timeout: float = 30) -> None:
    api = state.api()
    deadline = time.monotonic() + timeout
    while True:
        nodes = {n["metadata"]["name"]: n for n in api.list("nodes")}
        waiting = [name for name in names if name not in nodes or not schedulable(nodes[name])]
        if not waiting:
            return
        if time.monotonic() > deadline:
            detail = "; ".join(f"{n}: " + ("not registered" if n not in nodes else
                                           f"taints {(nodes[n].get('spec') or {}).get('taints')}") for n in waiting)
            raise SandboxError(f"nodes not schedulable after {timeout:.0f} s ({detail}); see "
                               f"{state.daemon_dir}/agent-*.log and control-plane/logs/kube-controller-manager.log")
        time.sleep(0.1)


def _shared_nic_gateway(state: State, lab: Lab, name: str, env: dict[str, str], step: Callable[[str], None]) -> None:
    """`name` becomes a gateway on its one NIC eth1, shared with its host (docs/gateway-helper.md):
    the host address moves to breth1 (nics-to-bridge), gateway-init --bridge-interface gives
    GR_<name> the same MAC and address, ovn-k8s-gateway-helper sorts the packets."""
    n = lab.nodes[name]
    lab.connect_outside(n)
    n.exec(["ip", "addr", "add", f"{SHARED_GATEWAY_IP}/24", "dev", "eth1"])
    base = [f"--ovs-db={n.ovs_db}"]
    proc = n.exec([exe("ovn-k8s-util"), "nics-to-bridge", "eth1", *base], check=False, env=env)
    if proc.returncode != 0:
        raise SandboxError(f"ovn-k8s-util nics-to-bridge eth1 on {name} failed: {proc.stderr.strip()}")
    step(f"{name}$ ovn-k8s-util nics-to-bridge eth1")
    # Userspace datapath: the node's kernel also sees eth1's frames and would RST the router's
    # connections to its own address; rp_filter drops those copies (docs/testing.md).
    n.exec(["sysctl", "-qw", "net.ipv4.conf.eth1.rp_filter=1"])
    proc = n.exec([exe("ovn-k8s-overlay"), "gateway-init", f"--node-name={name}", f"--cluster-ip-subnet={CLUSTER}",
                   "--bridge-interface=breth1", f"--physical-ip={SHARED_GATEWAY_IP}/24",
                   f"--default-gw={OUTSIDE_IP}", *base, f"--ovn-nb={lab.nb}"], check=False, env=env)
    if proc.returncode != 0:
        raise SandboxError(f"ovn-k8s-overlay gateway-init on {name} failed: {proc.stderr.strip()}")
    step(f"{name}$ ovn-k8s-overlay gateway-init --bridge-interface=breth1 --physical-ip={SHARED_GATEWAY_IP}/24 "
         f"--default-gw={OUTSIDE_IP}   (shared NIC)")
    state.gateways[name] = SHARED_GATEWAY_IP
    state.shared_nic = name
    state.save()


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def down(directory: str, out: Out = print) -> bool:
    """Stop every daemon, delete every namespace and file of the sandbox. True if there was one."""
    state = State.load(directory)
    lab_dir = f"{directory}/lab"
    if state is None and not os.path.exists(lab_dir):
        out(f"no sandbox in {directory}")
        return False
    # Real nodes first (kubelets, containers, containerd, mounts, host side effects), then our
    # daemons, so no agent re-creates a pod while the lab goes away.
    from sandbox import realnode

    realnode.teardown(state.prefix if state else prefix_for(directory), lab_dir, state.nodes if state else [])
    for pattern in SANDBOX_DAEMONS:
        for pidfile in sorted(glob.glob(f"{lab_dir}/sandbox/{pattern}.pid")):
            if pattern == "kube-apiserver":
                # It may drain for a minute on SIGTERM; its data goes with etcd's anyway.
                pid = read_pid(pidfile)
                if pid is not None and alive(pid):
                    os.kill(pid, signal.SIGKILL)
            else:
                stop_pidfile(pidfile)
    prefix = state.prefix if state else prefix_for(directory)
    down_dir(lab_dir, prefix)
    for leftover in ("sandbox.json", "sandbox.json.tmp", "kubeconfig"):
        try:
            os.unlink(f"{directory}/{leftover}")
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass
    out(f"sandbox in {directory} removed")
    return True


# -- status -------------------------------------------------------------------------------------
def table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]


def status(directory: str, out: Out = print) -> int:
    state = State.load(directory)
    if state is None:
        out(f"no sandbox in {directory} (start one with: ovn-k8s-sandbox up)")
        return 1
    rc = 0
    out(f"sandbox {directory}  (namespaces {state.prefix}-*, kubeconfig {state.kubeconfig})")
    out(f"  NB: ovn-nbctl --db={state.nb} show")
    out(f"  control plane: {state.control_plane}" + (" (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)"
                                                    if state.real else " (sandbox.kubeapi + sandbox.controllers)"))
    if not state.complete:
        out("  INCOMPLETE: the 'up' that made it did not finish; run 'up' again to rebuild it, or 'down'")
        rc = 1
    out("")
    try:
        api = state.api()
        nodes = api.list("nodes")
        pods = api.list("pods")
        services = api.list("services")
        slices = api.list("endpointslices")
    except Exception as exc:  # noqa: BLE001 - show the daemons anyway
        out(f"API server not answering: {exc}")
        nodes, pods, services, slices = [], [], [], []
        rc = 1
    count: dict[str, int] = {}
    for p in pods:
        n = p["spec"].get("nodeName") or ""
        count[n] = count.get(n, 0) + 1
    rows = []
    for i, name in enumerate(state.nodes, start=1):
        obj = next((n for n in nodes if n["metadata"]["name"] == name), None)
        ready = "Ready" if obj and any(c.get("type") == "Ready" and c.get("status") == "True"
                                       for c in obj["status"].get("conditions", [])) else "?"
        if obj and (obj.get("spec") or {}).get("taints"):
            ready += ",tainted"
        roles = ["master"] if i == 1 else []
        if name in state.gateways:
            roles.append(f"gateway {state.gateways[name]}" + (" (shared NIC)" if name == state.shared_nic else ""))
        controller = "up" if daemon_alive(f"{state.node_dir(name)}/ovn-controller.pid") else "DOWN"
        rows.append([name, ready, node_subnet(i), state.encap_ips.get(name, "?"), ",".join(roles) or "-",
                     controller, str(count.get(name, 0))])
    out("NODES")
    for line in table(rows, ["NAME", "STATUS", "POD SUBNET", "ENCAP IP", "ROLE", "OVN-CONTROLLER", "PODS"]):
        out("  " + line)
    out("")
    rows = []
    for p in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        st = p.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or [])
        node = p["spec"].get("nodeName") or ""
        pidfile = f"{state.pods_dir(node)}/{p['metadata']['namespace']}_{p['metadata']['name']}.pid"
        process = "-" if not node else ("running" if daemon_alive(pidfile) else "none")
        if state.real_nodes and node:   # containers: what the kubelet reports
            states = [next(iter(c.get("state") or {"none": 0})) for c in st.get("containerStatuses") or []]
            process = ",".join(states) or "none"
        phase = "Terminating" if p["metadata"].get("deletionTimestamp") else st.get("phase", "?")
        rows.append([p["metadata"]["namespace"], p["metadata"]["name"], node or "<pending>",
                     st.get("podIP") or "-", phase, "yes" if ready else "no", process])
    out("PODS")
    for line in table(rows, ["NAMESPACE", "NAME", "NODE", "IP", "PHASE", "READY", "PROCESS"]):
        out("  " + line)
    out("")
    rows = []
    for s in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        spec = s["spec"]
        ports = []
        for p in spec.get("ports") or []:
            text = f"{p['port']}/{p.get('protocol', 'TCP')}"
            if p.get("nodePort"):
                text += f" (node {p['nodePort']})"
            ports.append(text)
        backends = sorted(
            f"{a}:{port['port']}"
            for sl in slices
            if (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == s["metadata"]["name"]
            and sl["metadata"]["namespace"] == s["metadata"]["namespace"]
            for e in sl.get("endpoints") or [] if (e.get("conditions") or {}).get("ready", True)
            for a in e.get("addresses") or [] for port in sl.get("ports") or [])
        rows.append([s["metadata"]["namespace"], s["metadata"]["name"], spec.get("type", "ClusterIP"),
                     spec.get("clusterIP", "-"), ", ".join(ports), " ".join(backends) or "-"])
    out("SERVICES")
    for line in table(rows, ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "PORTS", "BACKENDS"]):
        out("  " + line)
    out("")
    rows = []
    for name, pidfile in daemons(state):
        pid = read_pid(pidfile)
        running = pid is not None and alive(pid)
        if not running:
            rc = 1
        rows.append([name, str(pid or "-"), "running" if running else "STOPPED"])
    out("DAEMONS")
    for line in table(rows, ["NAME", "PID", "STATE"]):
        out("  " + line)
    return rc

