"""Harness for the watcher's tests and benchmark (not used by the daemon itself).

- `write_topology`: the rows master-init and minion-init write, straight into an NB (no node
  namespaces needed when only the control plane is under test);
- `WatcherProcess`: `ovn-k8s-watcher` as a real subprocess, with a clean environment, its log
  in a file, its /metrics URL, and stop/kill by PID;
- `nb_pod_ports`, `expected_ports`, `converged`: the NB's pod ports against what the cluster
  wants, so a test can assert "the NB matches the cluster exactly".

Every address used here is on 127.0.0.1 or a unix socket.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import netaddr

from ovn_k8s import ipam, naming
from ovn_k8s.desired import topology
from ovn_k8s.nb import connection
from ovn_k8s.nb.apply import ApplyCommand

BIN = os.path.dirname(sys.executable)
WATCHER = os.path.join(BIN, "ovn-k8s-watcher")


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.05) -> Any:
    """Poll `check` until it returns a true value (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: "
                                 f"{str(last)[:500]})")
        time.sleep(interval)


def write_topology(nb_remote: str, nodes: Mapping[str, str], *,
                   gateways: Mapping[str, str] | None = None,
                   cluster_subnet: str = "10.244.0.0/16", master: str = "master",
                   join_subnet: str = "100.64.0.0/16") -> None:
    """The rows of master-init, of minion-init on each node ({node: subnet}) and of
    gateway-init on each gateway ({node: physical IP/LEN}), in one transaction. Rows of
    nodes and gateways not named are left alone."""
    api = connection.connect(nb_remote, "OVN_Northbound", what="NB", timeout=30)
    cluster, join = netaddr.IPNetwork(cluster_subnet), netaddr.IPNetwork(join_subnet)
    try:
        rows = topology.master_rows(topology.MasterSpec(master, cluster, join))
        for node, subnet in nodes.items():
            rows += topology.node_rows(topology.NodeSpec(node, netaddr.IPNetwork(subnet)))
        for i, (node, physical) in enumerate(sorted((gateways or {}).items())):
            ip = netaddr.IPNetwork(physical)
            rows += topology.gateway_rows(topology.GatewaySpec(
                node=node, system_id=f"chassis-{node}", cluster_subnet=cluster,
                join_subnet=join, join_ip=join.network + 2 + i, physical_ip=ip,
                physical_mac=ipam.mac_from_ip(ip.ip), port_name="eth1"))
        scopes = [naming.OWNER_CLUSTER, *(naming.owner_node(n) for n in nodes),
                  *(naming.owner_gateway(n) for n in gateways or {})]
        with connection.transaction(api) as txn:
            txn.add(ApplyCommand(api, scopes=scopes, build=lambda view: rows))
    finally:
        connection.disconnect(api)


# --- the NB as ovn-nbctl prints it ---------------------------------------------------------------
def nbctl(nb: str, *args: str) -> str:
    """ovn-nbctl against `nb`, bounded; its stdout."""
    return subprocess.run(["ovn-nbctl", f"--db={nb}", "--timeout=30", *args], check=True,
                          capture_output=True, text=True, timeout=60).stdout


def _plain(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and value[0] in ("set", "map", "uuid"):
        kind, inner = value
        if kind == "map":
            return {k: _plain(v) for k, v in inner}
        if kind == "set":
            return [_plain(v) for v in inner]
        return inner
    return value


def nb_table(nb: str, table: str, columns: str | None = None) -> list[dict[str, Any]]:
    """Every row of `table` (all columns, or `columns` comma-separated) as plain values."""
    data = json.loads(nbctl(nb, "--format=json", *([f"--columns={columns}"] if columns else []),
                            "list", table))
    return [dict(zip(data["headings"], [_plain(v) for v in row], strict=True))
            for row in data["data"]]


@dataclass(frozen=True)
class NbPodPort:
    name: str
    uuid: str
    switch: str | None          # the name of the switch whose ports hold it
    addresses: tuple[str, ...]
    external_ids: tuple[tuple[str, str], ...]


def nb_pod_ports(nb: str) -> dict[str, NbPodPort]:
    """Every LSP that is a pod port (our owner key, or the original's pod=true), by name."""
    holder: dict[str, str] = {}
    for sw in nb_table(nb, "Logical_Switch", "name,ports"):
        ports = sw["ports"] if isinstance(sw["ports"], list) else [sw["ports"]]
        for p in ports:
            holder[p] = sw["name"]
    out = {}
    for row in nb_table(nb, "Logical_Switch_Port", "_uuid,name,addresses,external_ids"):
        ext = row["external_ids"] or {}
        if not (ext.get(naming.OWNER_KEY, "").startswith(naming.OWNER_POD_PREFIX)
                or ext.get(naming.POD_MARK) == "true"):
            continue
        addrs = row["addresses"] if isinstance(row["addresses"], list) else [row["addresses"]]
        out[row["name"]] = NbPodPort(row["name"], row["_uuid"], holder.get(row["_uuid"]),
                                     tuple(addrs), tuple(sorted(ext.items())))
    return out


# --- what the cluster wants -------------------------------------------------------------------
def pod_wants_port(pod: Mapping[str, Any]) -> bool:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    return bool(spec.get("nodeName")) and not spec.get("hostNetwork") and \
        status.get("phase") not in ("Succeeded", "Failed")


def annotation(pod: Mapping[str, Any]) -> dict[str, str] | None:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(naming.POD_ANNOTATION)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def expected_ports(pods: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """LSP name -> (switch, "mac ip") for every pod that wants a port and is annotated."""
    out = {}
    for pod in pods:
        if not pod_wants_port(pod):
            continue
        meta = pod["metadata"]
        ann = annotation(pod)
        addr = f"{ann['mac_address']} {ann['ip_address'].split('/')[0]}" if ann else "?"
        out[naming.pod_port(meta["namespace"], meta["name"])] = \
            (pod["spec"]["nodeName"].lower(), addr)
    return out


def differences(pods: Iterable[Mapping[str, Any]], nb: str) -> list[str]:
    """Why the NB's pod ports differ from what the cluster wants ([] when they match exactly:
    every wanted pod annotated and its port on its node's switch with the annotated address,
    no other pod port, no address given to two live pods)."""
    pods = list(pods)
    want = expected_ports(pods)
    have = nb_pod_ports(nb)
    problems = []
    for name, (switch, addr) in sorted(want.items()):
        port = have.get(name)
        if addr == "?":
            problems.append(f"{name}: pod not annotated")
        elif port is None:
            problems.append(f"{name}: no port")
        elif port.switch != switch or port.addresses != (addr,):
            problems.append(f"{name}: port on {port.switch} {port.addresses}, want {switch} "
                            f"{addr}")
    for name in sorted(set(have) - set(want)):
        problems.append(f"{name}: stale port")
    seen: dict[str, str] = {}
    for pod in pods:
        ann = annotation(pod)
        if ann and pod_wants_port(pod):
            ip = ann["ip_address"].split("/")[0]
            key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            if ip in seen:
                problems.append(f"{ip} given to {seen[ip]} and {key}")
            seen[ip] = key
    return problems


# --- the daemon as a subprocess -------------------------------------------------------------------
class WatcherProcess:
    """`ovn-k8s-watcher` started like an operator would, with a clean environment."""

    def __init__(self, workdir: str, *, nb: str, kubeconfig: str | None, name: str = "watcher",
                 extra: Iterable[str] = (), log_level: str = "info",
                 env: Mapping[str, str] | None = None) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.pidfile = os.path.join(workdir, f"{name}.pid")
        self.args = [WATCHER, f"--ovn-nb={nb}",
                     *([f"--kubeconfig={kubeconfig}"] if kubeconfig else []),
                     f"--log-level={log_level}", f"--log-file={self.log_path}",
                     "--ovs-db=unix:/nonexistent/db.sock",
                     "--metrics-address=127.0.0.1:0", f"--pidfile={self.pidfile}", *extra]
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith("OVN_K8S_") and k != "KUBECONFIG"}
        clean["OVN_K8S_CONFIG"] = "/dev/null"
        # Its ovs-appctl socket next to its pidfile: `ovs-appctl -t ovn-k8s-watcher` with
        # OVS_RUNDIR=workdir reaches it (the name is the daemon's own: ovn-k8s-watcher.pid).
        clean["OVS_RUNDIR"] = clean["OVS_LOGDIR"] = workdir
        self.env = {**clean, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    def start(self) -> WatcherProcess:
        self._url = None
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(f"--- start {' '.join(self.args)}\n")
        self._log_offset = os.path.getsize(self.log_path)
        self.proc = subprocess.Popen(self.args, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(  # noqa: SIM115
                                         self.log_path + ".stderr", "ab"))
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return ""

    def current_log(self) -> str:
        """The log of the current run only."""
        return self.log()[getattr(self, "_log_offset", 0):]

    @property
    def url(self) -> str:
        if self._url is None:
            def find() -> str | None:
                self._check_alive()
                m = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", self.current_log())
                return m.group(1) if m else None
            self._url = wait_until(find, 20, "the watcher's metrics address")
        return self._url

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"ovn-k8s-watcher exited with {self.proc.returncode}:\n"
                                 f"{self.current_log()[-3000:]}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        _, text = self.get("/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, rest = head.partition("{")
            if metric != name:
                continue
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if got == want:
                return float(value)
        return 0.0

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            self._check_alive()
            return self.get("/readyz")[0] == 200
        wait_until(ready, timeout, "the watcher to finish its sync")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
