"""The truth-table suite's cluster: a real OVN lab, the real watcher daemon, the embedded API
server, and one agent process (tests/netpol/agent.py) per pod and node namespace.

    node1: master-init; node2: minion-init
    namespaces x, y, z; pods a, b, c in each, spread over both nodes; every pod serves TCP
    and UDP on 80 and 81; container ports serve-80 / serve-81 (TCP) name 80 / 81, except on
    the SWAPPED pods where they name 81 / 80; serve-80-udp, serve-81-udp, serve-80-sctp and
    serve-81-sctp name 80 / 81 everywhere

No gateway and no outside network: ipBlocks are tested on pod addresses (which Kubernetes
lets an ipBlock match). The first version probed an outside namespace through gateway-init's
SNAT and lost the gateway's ovs-vswitchd to OVS 3.1's conntrack assertion (see `revive`,
which later proved not to need NAT); without the gateway the module also starts faster.

Pod namespaces are entered only through `enter()` (nsenter --net=). A matrix is probed all at
once: every agent gets its batch of probes in one line and runs them in parallel.

SCTP is judged by `ovn-trace` over the logical flows ovn-northd made (what OVN writes), not by
packets, for two reasons found here: the kernel has no SCTP (no `sctp` module; a socket with
IPPROTO_SCTP fails with EPROTONOSUPPORT), and real SCTP packets (INIT / INIT ACK sent on raw
sockets) through OVS 3.1's userspace conntrack abort ovs-vswitchd within a minute or two of
such traffic (`lib/conntrack.c:1063: assertion conn->conn_type == CT_CONN_TYPE_DEFAULT failed
in conn_update_state()`, both nodes, 3 runs of 3; 0 of 2 runs without SCTP). Its conntrack has
no SCTP tracker: one entry per address pair, ports zero (`dpctl/dump-conntrack`:
sctp,orig=(src=A,dst=B,sport=0,dport=0)), taken by OVN's ct(nat) for both directions.

The expected matrix always comes from tests/netpol/model.py, fed with the objects the API
server holds (namespaces, pods with their annotated addresses, policies): what the test sent
is what the model judges.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab, Node
from sandbox.lab.proc import alive, netns_exists, read_pid, run, stop_pid
from sandbox.watcher_harness import WatcherProcess, annotation, wait_until
from tests.helpers import master_init, minion_init, ok, row_versions
from tests.netpol import model
from tests.netpol.model import Cell, Cluster, ContainerPort, Namespace, Pod

AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.py")
SUBNETS = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24"}
PROBE_TIMEOUT = 1.0
NAMESPACES: dict[str, dict[str, str]] = {
    "x": {"ns": "x", "team": "red"},
    "y": {"ns": "y", "team": "blue"},
    "z": {"ns": "z"},
}
POD_LABELS: dict[str, dict[str, str]] = {"a": {"pod": "a", "tier": "front"},
                                         "b": {"pod": "b", "tier": "back"},
                                         "c": {"pod": "c"}}
NODE_OF = {("x", "a"): "node1", ("x", "b"): "node2", ("x", "c"): "node1",
           ("y", "a"): "node2", ("y", "b"): "node1", ("y", "c"): "node2",
           ("z", "a"): "node1", ("z", "b"): "node2", ("z", "c"): "node1"}
SWAPPED = {("x", "b"), ("z", "c")}      # serve-80 names 81 and serve-81 names 80 there
# NB tables a policy implementation may write: a change in any of them is the settle hint.
TABLES = ("ACL", "Port_Group", "Address_Set", "Logical_Switch", "Logical_Switch_Port")
ALL_COLUMNS = (("TCP", 80), ("TCP", 81), ("UDP", 80), ("UDP", 81))
SCTP_COLUMNS = (("SCTP", 80), ("SCTP", 81))
TRACE_CT = ["--ct=trk,new"] * 6      # every conntrack stage sees a new connection


def enter(netns: str, *argv: str) -> list[str]:
    """The one way into a lab namespace: nsenter execs, so the PID is the command's own."""
    return ["nsenter", f"--net=/run/netns/{netns}", *argv]


def container_ports(ns: str, pod: str) -> list[dict[str, Any]]:
    n80, n81 = (81, 80) if (ns, pod) in SWAPPED else (80, 81)
    return [{"name": "serve-80", "containerPort": n80, "protocol": "TCP"},
            {"name": "serve-81", "containerPort": n81, "protocol": "TCP"},
            {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
            {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"},
            {"name": "serve-80-sctp", "containerPort": 80, "protocol": "SCTP"},
            {"name": "serve-81-sctp", "containerPort": 81, "protocol": "SCTP"}]


def pod_object(ns: str, name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": dict(labels)},
            "spec": {"nodeName": node,
                     "containers": [{"name": "serve", "image": "agent", "ports": container_ports(ns, name)}]}}


class Agent:
    """tests/netpol/agent.py in one namespace, driven over its stdin/stdout."""

    def __init__(self, netns: str, name: str, log_dir: str, *serve: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        log = open(os.path.join(log_dir, f"agent-{name.replace('/', '-')}.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(enter(netns, sys.executable, AGENT, name, *serve), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        log.close()
        ready = self.proc.stdout.readline() if self.proc.stdout else ""
        if ready.strip() != f"ready {name}":
            raise AssertionError(f"agent {name} did not start (said {ready!r}, exit {self.proc.poll()})")

    def probe(self, batch: list[list[Any]]) -> list[str | None]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self._lock:
            self.proc.stdin.write(json.dumps(batch) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"agent {self.name} exited ({self.proc.poll()})")
        return json.loads(line)

    def stop(self) -> None:
        stop_pid(self.proc.pid, timeout=2)
        self.proc.wait(5)


@dataclass
class Truth:
    """The module's one cluster, and the truth-table checks against it."""

    lab: Lab
    kube: KubeApiServer
    workdir: str
    kubeconfig: str
    watcher: WatcherProcess | None = None
    agents: dict[str, Agent] = field(default_factory=dict)
    node_ips: dict[str, str] = field(default_factory=dict)
    late_pods: set[tuple[str, str]] = field(default_factory=set)
    answers: dict[Cell, str | None] = field(default_factory=dict)   # the last raw answer per cell
    restarts: int = 0                   # ovs-vswitchd restarts (see `revive`)
    log: list[str] = field(default_factory=list)

    # -- the watcher --------------------------------------------------------------------------
    def start_watcher(self) -> WatcherProcess:
        self.watcher = WatcherProcess(self.workdir, nb=self.lab.nb, kubeconfig=self.kubeconfig).start()
        self.watcher.wait_ready(60)
        return self.watcher

    # -- pods -----------------------------------------------------------------------------------
    def add_pod(self, ns: str, name: str, node: str, labels: dict[str, str]) -> None:
        """Create the pod in the API, wire its namespace from the watcher's annotation, start its agent."""
        self.kube.create("pods", pod_object(ns, name, node, labels))
        self.wire_pod(ns, name, node)

    def wire_pod(self, ns: str, name: str, node: str) -> None:
        ann = wait_until(lambda: annotation(self.kube.get("pods", name, namespace=ns)), 30,
                         f"pod {ns}/{name}'s annotation")
        self.lab.add_pod(self.lab.nodes[node], f"{ns}-{name}", cidr=ann["ip_address"],
                         gateway=ann["gateway_ip"], mac=ann["mac_address"], lsp=f"{ns}_{name}")

    def start_agent(self, ns: str, name: str) -> None:
        ports = "80,81"
        self.agents[f"{ns}/{name}"] = Agent(self.lab.ns(f"{ns}-{name}"), f"{ns}/{name}", self.lab.dir,
                                            "--tcp", ports, "--udp", ports)

    def remove_pod(self, ns: str, name: str) -> None:
        agent = self.agents.pop(f"{ns}/{name}", None)
        if agent is not None:
            agent.stop()
        self.kube.delete("pods", name, namespace=ns)
        pod = self.lab.pods.pop(f"{ns}-{name}", None)
        if pod is not None:
            pod.node.vsctl("--if-exists", "del-port", "br-int", pod.host_ifname)
            if netns_exists(pod.netns):
                run(["ip", "netns", "del", pod.netns])
        self.late_pods.discard((ns, name))

    # -- the model ------------------------------------------------------------------------------
    def cluster(self) -> Cluster:
        namespaces = [Namespace(n["metadata"]["name"], n["metadata"].get("labels") or {})
                      for n in self.kube.list("namespaces")]
        pods = []
        for p in self.kube.list("pods"):
            meta, ann = p["metadata"], annotation(p)
            if ann is None:
                continue
            ports = tuple(ContainerPort(cp.get("name"), cp["containerPort"], cp.get("protocol", "TCP"))
                          for c in p["spec"].get("containers") or [] for cp in c.get("ports") or [])
            pods.append(Pod(meta["namespace"], meta["name"], meta.get("labels") or {},
                            ann["ip_address"].split("/")[0], p["spec"]["nodeName"], ports))
        return Cluster.of(namespaces, pods, self.kube.list("networkpolicies"))

    def cells(self, cluster: Cluster, columns: Sequence[tuple[str, int]]) -> dict[Cell, bool]:
        """Every ordered pair of probed pods, and each node to its own pods."""
        pods = [p for p in cluster.pods if p.key in self.agents]
        nodes = [model.Node(n, ip) for n, ip in self.node_ips.items()]
        pairs: list[tuple[model.Endpoint, model.Endpoint]] = [(s, d) for s in pods for d in pods if s.key != d.key]
        pairs += [(n, d) for n in nodes for d in pods if d.node == n.name]
        return model.truth_table(cluster, pairs, columns)

    # -- probing --------------------------------------------------------------------------------
    def ip(self, key: str) -> str:
        ns, name = key.split("/")
        ann = annotation(self.kube.get("pods", name, namespace=ns))
        assert ann is not None, key
        return ann["ip_address"].split("/")[0]

    def _target(self, key: str) -> tuple[str, str]:
        """(address, name that must answer) of a destination pod."""
        return self.ip(key), key

    def probe(self, cells: Iterable[Cell]) -> dict[Cell, bool]:
        """Probe every cell at once: each source agent gets its batch in one line."""
        self.revive()
        out = self._probe_at_once(list(cells))
        self.revive()
        return out

    def revive(self) -> None:
        """Start again an ovs-vswitchd that died, as OVS's own --monitor would.

        OVS 3.1.0's userspace conntrack aborts now and then under these tables' traffic
        once every node switch is stateful (`lib/conntrack.c:1063: assertion conn->conn_type
        == CT_CONN_TYPE_DEFAULT failed in conn_update_state()`): an OVS bug, not ours; a
        production node runs it under --monitor or systemd, which restart it. Each restart is
        logged in the module's summary, and `expect` judges a pass again when one happened
        during its confirming probe."""
        for node in self.lab.nodes.values():
            pid = read_pid(f"{node.dir}/ovs-vswitchd.pid")
            if pid is not None and alive(pid):
                continue
            self.restarts += 1
            self.log.append(f"ovs-vswitchd on {node.name} (pid {pid}) had died: restarted "
                            f"({self._last_log_line(node)})")
            d = node.dir
            node.exec(["ovs-vswitchd", node.ovs_db, "--disable-system", f"--pidfile={d}/ovs-vswitchd.pid",
                       f"--unixctl={d}/ovs-vswitchd.ctl", f"--log-file={d}/ovs-vswitchd.log", "--detach",
                       "--no-chdir"])

    @staticmethod
    def _last_log_line(node: Node) -> str:
        try:
            with open(f"{node.dir}/ovs-vswitchd.log", encoding="utf-8", errors="replace") as f:
                lines = [line for line in f if "EMER" in line or "ERR" in line]
            return lines[-1].strip() if lines else "no error logged"
        except OSError:
            return "no log"

    def _probe_at_once(self, cells: list[Cell]) -> dict[Cell, bool]:
        by_src: dict[str, list[Cell]] = defaultdict(list)
        for cell in cells:
            by_src[cell[0]].append(cell)
        targets = {d: self._target(d) for cs in by_src.values() for _, d, _, _ in cs}
        out: dict[Cell, bool] = {}
        errors: list[BaseException] = []

        def one(src: str) -> None:
            try:
                batch = [[proto, targets[d][0], port, PROBE_TIMEOUT] for _, d, proto, port in by_src[src]]
                answers = self.agents[src].probe(batch)
                for cell, answer in zip(by_src[src], answers, strict=True):
                    out[cell] = answer == targets[cell[1]][1]
                    self.answers[cell] = answer
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
        threads = [threading.Thread(target=one, args=(s,)) for s in by_src]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return out

    # -- SCTP: the logical flows, through ovn-trace ----------------------------------------------
    def trace(self, cells: Iterable[Cell]) -> dict[Cell, bool]:
        """Each cell's first packet (conntrack state new at every stage) through the logical
        pipeline: allowed when ovn-trace outputs it on the destination's port."""
        ports = {row["name"]: row["addresses"] for row in self._nb_rows("Logical_Switch_Port", "name,addresses")}
        routers = self._nb_rows("Logical_Router_Port", "mac,networks")

        def endpoint(key: str) -> tuple[str, str, str, str]:
            """(logical port, its switch, MAC, IP) of a pod or node key."""
            if key.startswith("node:"):
                node = key[5:]
                lsp = f"k8s-{node}"
            else:
                lsp = key.replace("/", "_")
                node = self.kube.get("pods", key.split("/")[1], namespace=key.split("/")[0])["spec"]["nodeName"]
            mac, ip = ports[lsp].split()[:2]
            return lsp, node, mac, ip

        def gateway_mac(ip: str) -> str:
            for r in routers:
                nets = r["networks"] if isinstance(r["networks"], list) else [r["networks"]]
                if any(ipaddress.ip_address(ip) in ipaddress.ip_network(n, strict=False) for n in nets):
                    return r["mac"]
            raise AssertionError(f"no router port for {ip}")

        def one(cell: Cell) -> tuple[Cell, bool]:
            src, dst, proto, port = cell
            s_lsp, s_switch, s_mac, s_ip = endpoint(src)
            d_lsp, d_switch, d_mac, d_ip = endpoint(dst)
            eth_dst = d_mac if s_switch == d_switch else gateway_mac(s_ip)
            flow = (f'inport == "{s_lsp}" && eth.src == {s_mac} && eth.dst == {eth_dst} && '
                    f"ip4.src == {s_ip} && ip4.dst == {d_ip} && ip.ttl == 64 && "
                    f"{proto.lower()}.src == 40000 && {proto.lower()}.dst == {port}")
            # No datapath argument: ovn-trace finds it from the inport (a router may share the
            # switch's name: master-init's cluster router is named after its node).
            out = run(["ovn-trace", f"--db={self.lab.sb}", "--minimal", *TRACE_CT, flow]).stdout
            return cell, f'output("{d_lsp}");' in out
        with ThreadPoolExecutor(max_workers=4) as pool:
            return dict(pool.map(one, list(cells)))

    def _nb_rows(self, table: str, columns: str) -> list[dict[str, Any]]:
        data = json.loads(self.lab.nbctl("--format=json", f"--columns={columns}", "list", table))
        return [{h: (v[1] if isinstance(v, list) and v and v[0] == "set" else v)
                 for h, v in zip(data["headings"], row, strict=True)} for row in data["data"]]

    def expect_traced(self, what: str, columns: Sequence[tuple[str, int]] = SCTP_COLUMNS, *,
                      timeout: float = 20.0) -> None:
        """Poll ovn-trace's matrix until it equals the model's (bounded; northd may lag)."""
        t0 = time.monotonic()
        want = self.cells(self.cluster(), columns)
        assert not all(want.values()) and any(want.values()), f"{what}: a one-sided case proves little"
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            seen = self.trace(want)
            polls += 1
            if seen == want:
                break
            if time.monotonic() > deadline:
                self.answers.clear()
                self.fail(what, want, seen, f"ovn-trace differs from the model after {timeout:.0f}s")
        self.log.append(f"{what} (ovn-trace): {len(want)} cells, {polls} polls, {time.monotonic() - t0:.2f}s")

    def settle(self, before: dict[str, dict[str, str]], bound: float = 3.0) -> None:
        """A hint, not a check: wait (bounded) for the NB to change after a change of ours,
        then for every chassis to apply it; the probes decide."""
        deadline = time.monotonic() + bound
        while row_versions(self.lab, *TABLES) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        self.lab.wait_hv()
        for node in self.lab.nodes.values():
            self.purge_datapath(node)

    def purge_datapath(self, node: Node) -> None:
        """Drop every flow the node's userspace datapath has cached, once its OpenFlow tables
        hold the change: the probes then judge what OVN programmed.

        OVS 3.1.0's userspace datapath kept a stale flow in force after a policy change: in
        test_policy_updated_in_place ("x allows y" -> "x allows y on TCP 81 only"; 2 of 29
        runs of the case looped on one cluster) one y pod reached x/a on TCP 80, every probe a new connection, for
        the whole 20 s bound. x/a's node's OpenFlow tables were right (only the tp_dst=81
        conjunctions left; `ofproto/trace` of the packet: drop), its datapath held
        `recirc_id(0x2),ct_state(+new+trk),ipv4(src=<y/a>),tcp(dst=80)
        actions:ct(commit,...),<x/a>`, used every second; a later OpenFlow change left it,
        `revalidator/purge` ended it at once. See docs/networkpolicy.md (Limits). Turning
        megaflows off instead (upcall/disable-megaflows) made OVS 3.1.0's conntrack
        assertion (see `revive`) fire 3 times in 2 minutes."""
        # One that died (OVS's assertion, see `revive`) is started again with an empty datapath.
        run(["ovs-appctl", "-t", f"{node.dir}/ovs-vswitchd.ctl", "revalidator/purge"], check=False)

    def nb_versions(self) -> dict[str, dict[str, str]]:
        return row_versions(self.lab, *TABLES)

    def expect(self, what: str, columns: Sequence[tuple[str, int]] = (("TCP", 80),), *,
               before: dict[str, dict[str, str]] | None = None, timeout: float = 20.0,
               allow_all: bool = False) -> dict[Cell, bool]:
        """Poll the probed matrix until it equals the model's (bounded), then probe it once
        more to confirm: there a cell the model blocks must be blocked at once (never
        retried), and a cell it allows that did not answer gets one more try."""
        t0 = time.monotonic()
        if before is not None:
            self.settle(before)
        want = self.cells(self.cluster(), columns)
        if not allow_all:
            assert not all(want.values()), f"{what}: the model allows everything, the case proves nothing"
        deadline = time.monotonic() + timeout
        polls = 0
        while True:
            seen = self.probe(want)
            polls += 1
            if seen != want:
                if time.monotonic() > deadline:
                    self.fail(what, want, seen, f"not converged within {timeout:.0f}s ({polls} polls)")
                continue
            converged = time.monotonic() - t0
            restarts = self.restarts
            seen = self.probe(want)
            again = [c for c in want if want[c] and not seen[c]]
            if again:
                seen.update(self.probe(again))
            if any(seen[c] and not want[c] for c in want):
                self.fail(what, want, seen, "converged, then let through what the model blocks")
            if self.restarts != restarts and time.monotonic() < deadline:
                continue        # a datapath died under the confirming pass: judge it again
            if seen != want:
                self.fail(what, want, seen, "converged, then differed on the confirming probe")
            break
        self.log.append(f"{what}: {len(want)} cells, {polls} polls, converged {converged:.2f}s, "
                        f"total {time.monotonic() - t0:.2f}s")
        return seen

    def fail(self, what: str, want: dict[Cell, bool], seen: dict[Cell, bool], why: str) -> None:
        lines = [f"{line} (answer: {self.answers.get(cell)!r})"
                 for line, cell in zip(model.diff(want, seen), [c for c in sorted(want) if seen.get(c) != want[c]],
                                       strict=True)]
        rows = {t: len(v) for t, v in self.nb_versions().items()}
        watcher_log = self.watcher.current_log().splitlines()[-25:] if self.watcher else []
        pytest.fail(f"{what}: {why}; {len(lines)} cells differ\n"
                    f"expected (model; '.' allowed, 'X' blocked):\n{model.render(want)}\n"
                    f"observed ('!' allowed but the model blocks it, '#' blocked but the model allows it):\n"
                    f"{model.render(seen, want)}\n" + "\n".join(lines[:60]) +
                    f"\nNB rows: {rows}\nthe watcher's log (last lines):\n" + "\n".join(watcher_log) +
                    "\n" + self.daemons() + self.leak_flows(want, seen), pytrace=False)

    def leak_flows(self, want: dict[Cell, bool], seen: dict[Cell, bool]) -> str:
        """For cells let through against the model: the destination node's OpenFlow flows
        that name the source address (what let it through, or what is left of a rule)."""
        out = []
        for cell in [c for c in want if seen.get(c) and not want[c]][:3]:
            src, dst = cell[0], cell[1]
            if src.startswith("node:"):
                continue
            node = self.lab.nodes[self.kube.get("pods", dst.split("/")[1], namespace=dst.split("/")[0])
                                  ["spec"]["nodeName"]]
            flows = node.exec(["ovs-ofctl", "dump-flows", "br-int"], check=False).stdout
            ip = self.ip(src)
            named = [f.strip() for f in flows.splitlines() if f"={ip}," in f or f"={ip} " in f or f.endswith(f"={ip}")]
            out.append(f"\nflows on {node.name} naming {src}'s address {ip} ({len(named)}):\n" + "\n".join(named[:40]))
            # The datapath's cache can differ from the OpenFlow tables (see `settle`).
            dp = run(["ovs-appctl", "-t", f"{node.dir}/ovs-vswitchd.ctl", "dpctl/dump-flows"], check=False).stdout
            cached = [f.strip() for f in dp.splitlines() if f"src={ip}," in f or f"src={ip}/" in f]
            out.append(f"\ndatapath flows on {node.name} from {ip} ({len(cached)}):\n" + "\n".join(cached[:20]))
        return "".join(out)

    def daemons(self) -> str:
        """Which node daemons are alive, and their last log lines (for a failure's report)."""
        out = []
        for node in self.lab.nodes.values():
            for daemon in ("ovs-vswitchd", "ovn-controller"):
                pid = read_pid(f"{node.dir}/{daemon}.pid")
                out.append(f"{node.name} {daemon} pid {pid} alive {pid is not None and alive(pid)}")
                try:
                    with open(f"{node.dir}/{daemon}.log", encoding="utf-8", errors="replace") as f:
                        out += ["    " + line.rstrip() for line in f.readlines()[-8:]]
                except OSError:
                    pass
        return "\n".join(out)

    # -- between cases ----------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the base cluster: no policy, base labels, no late pod; then every cell of
        the base matrix must answer (cheap: nothing times out when everything is allowed)."""
        before = self.nb_versions()
        changed = False
        for pol in self.kube.list("networkpolicies"):
            self.kube.delete("networkpolicies", pol["metadata"]["name"], namespace=pol["metadata"]["namespace"])
            changed = True
        for ns, labels in NAMESPACES.items():
            want = {**labels, "kubernetes.io/metadata.name": ns}
            if (self.kube.get("namespaces", ns).get("metadata") or {}).get("labels") != want:
                self.relabel_namespace(ns, want)
                changed = True
        for (ns, name) in list(self.late_pods):
            self.remove_pod(ns, name)
            changed = True
        for (ns, name) in NODE_OF:
            if (self.kube.get("pods", name, namespace=ns)["metadata"].get("labels") or {}) != POD_LABELS[name]:
                self.relabel_pod(ns, name, POD_LABELS[name])
                changed = True
        if changed:
            self.expect("reset", ALL_COLUMNS[:3], before=before, allow_all=True)

    def relabel_pod(self, ns: str, name: str, labels: dict[str, str]) -> None:
        obj = self.kube.get("pods", name, namespace=ns)
        obj["metadata"]["labels"] = dict(labels)
        self.kube.replace("pods", obj)

    def relabel_namespace(self, ns: str, labels: dict[str, str]) -> None:
        obj = self.kube.get("namespaces", ns)
        obj["metadata"]["labels"] = dict(labels)
        self.kube.replace("namespaces", obj)

    def create(self, *policies: dict[str, Any]) -> None:
        for pol in policies:
            self.kube.create("networkpolicies", pol)


def build(tmp: str) -> Truth:
    """Everything up, the base matrix all allowed. The caller tears down with `teardown`."""
    lab = Lab()
    kube = KubeApiServer(bookmark_interval=0.5)
    truth = Truth(lab=lab, kube=kube, workdir=tmp, kubeconfig=os.path.join(tmp, "kubeconfig"))
    try:
        lab.up_central()
        n1, n2 = lab.add_node("node1"), lab.add_node("node2")
        ok(master_init(n1, SUBNETS["node1"]))
        ok(minion_init(n2, SUBNETS["node2"]))
        kube.start()
        kube.write_kubeconfig(truth.kubeconfig)
        for ns, labels in NAMESPACES.items():
            kube.create("namespaces", {"metadata": {"name": ns,
                                                    "labels": {**labels, "kubernetes.io/metadata.name": ns}}})
        truth.start_watcher()
        for (ns, name), node in NODE_OF.items():
            kube.create("pods", pod_object(ns, name, node, POD_LABELS[name]))
        for (ns, name), node in NODE_OF.items():
            truth.wire_pod(ns, name, node)
        for (ns, name) in NODE_OF:
            truth.start_agent(ns, name)
        for name, node in lab.nodes.items():
            truth.node_ips[name] = management_ip(node)
            truth.agents[f"node:{name}"] = Agent(node.netns, f"node:{name}", lab.dir)
        for (ns, name) in NODE_OF:
            lab.wait_port_up(f"{ns}_{name}")
        lab.wait_hv()
        # The first packets across nodes wait for tunnel neighbours: warm every path.
        wait_until(lambda: all(truth.probe(truth.cells(truth.cluster(), ALL_COLUMNS)).values()), 30,
                   "every pod and node path to answer with no policy")
        return truth
    except BaseException:
        teardown(truth)
        raise


def management_ip(node: Node) -> str:
    out = node.exec(["ip", "-4", "-o", "addr", "show", "dev", f"k8s-{node.name}"]).stdout.split()
    return out[out.index("inet") + 1].split("/")[0]


def teardown(truth: Truth) -> None:
    for agent in truth.agents.values():
        agent.stop()
    if truth.watcher is not None:
        truth.watcher.kill()
    truth.kube.stop()
    truth.lab.down()
