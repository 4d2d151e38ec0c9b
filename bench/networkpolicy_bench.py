#!/usr/bin/env python3
"""Benchmark of NetworkPolicy in ovn-k8s-watcher (issue 15). Not part of the test suite. Needs root.

    .venv/bin/python bench/networkpolicy_bench.py                  # both parts, prints a table
    .venv/bin/python bench/networkpolicy_bench.py --only scale --pods 5000 --policies 500

Two parts:
- scale (NB only): a lab central (NB, SB, ovn-northd), the topology of 10 nodes, our API server
  in this process, the real watcher; 50 namespaces, 5,000 pods, 500 policies of ten kinds
  (deny-all, same-namespace and cross-namespace peers, AND peers with matchExpressions, named
  ports, endPort, ipBlock with except, egress). Reported: the time until the NB stops changing
  after the 500 policies are created, NB row counts by table, the row count if every selected
  pod had its own ACLs (one per rule and pod, one drop per pod and direction; peers inline),
  and a restart: time to ready, the watcher's own sync figure, NB rows written. Then, at this
  size, one policy at a time allowing a pair the model (tests/netpol/model.py) says is blocked:
  time to the watcher's NB write and to the SB (ovn-northd); `ovn-trace` checks the verdicts
  (before, after, after deletion) but is too slow here (seconds per trace) to time anything.
- dataplane (small): the truth-table cluster (tests/netpol/harness.py: two nodes, 9 pods, real
  packets). policy-to-enforced: with x denied all ingress, an allow-from-y policy is created and
  every y -> x TCP 80 probe is retried (0.05 s timeouts) until all connect; deletion until all
  are blocked again (a blocked verdict is only seen when a probe times out: +0..0.05 s).
  label-change-to-verdict: y/b relabelled into (and out of) the peer selector of a policy on x.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sandbox.kubeapi import KubeApiServer  # noqa: E402
from sandbox.lab.cluster import Lab  # noqa: E402
from sandbox.watcher_harness import WatcherProcess, annotation, wait_until, write_topology  # noqa: E402
from tests.helpers import row_versions  # noqa: E402
from tests.netpol import model  # noqa: E402

NODES = {f"node{i}": f"10.{128 + i // 16}.{(i % 16) * 16}.0/20" for i in range(10)}
CLUSTER = "10.128.0.0/12"
POLICY_TABLES = ("ACL", "Port_Group", "Address_Set")
ALL_TABLES = (*POLICY_TABLES, "Logical_Switch", "Logical_Switch_Port")
TIERS = ("web", "api", "db")
PROBE_PORT = 7777            # no policy of the workload names it


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


# --- the workload ---------------------------------------------------------------------------------
def namespaces(n: int) -> list[dict[str, Any]]:
    return [{"metadata": {"name": f"ns{i:02d}", "labels": {
        "kubernetes.io/metadata.name": f"ns{i:02d}", "team": f"t{i % 5}", "env": ("prod", "dev")[i % 2]}}}
        for i in range(n)]


def pods(n: int, n_ns: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        ns, j = i % n_ns, i // n_ns
        out.append({"metadata": {"namespace": f"ns{ns:02d}", "name": f"p{j}",
                                 "labels": {"app": f"app{j % 10}", "tier": TIERS[j % 3]}},
                    "spec": {"nodeName": f"node{i % len(NODES)}",
                             "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9", "ports": [
                                 {"name": "http", "containerPort": 8080 + j % 2, "protocol": "TCP"},
                                 {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                                 {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}})
    return out


def policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def policies(n: int, n_ns: int) -> list[dict[str, Any]]:
    """n policies, n / n_ns per namespace, cycling over ten kinds."""
    out = []
    for i in range(n):
        ns, k = f"ns{i % n_ns:02d}", (i // n_ns) % 10
        app, other = f"app{i % 10}", f"app{(i + 1) % 10}"
        spec: dict[str, Any]
        if k == 0:
            spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
        elif k == 1:
            spec = {"podSelector": {"matchLabels": {"app": other}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app}}}],
                                 "ports": [{"protocol": "TCP", "port": 8080}]}]}
        elif k == 2:
            spec = {"podSelector": {"matchLabels": {"tier": "web"}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{i % 5}"}}}],
                                 "ports": [{"port": "http"}]}]}
        elif k == 3:
            spec = {"podSelector": {"matchLabels": {"tier": "db"}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                                 "ports": [{"protocol": "TCP", "port": 5432}]}]}
        elif k == 4:
            spec = {"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"]}
        elif k == 5:
            spec = {"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}],
                                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "UDP", "port": "dns"}]}]}
        elif k == 6:
            spec = {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["api"]}]},
                    "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                        {"key": "team", "operator": "In", "values": [f"t{i % 5}", f"t{(i + 2) % 5}"]}]},
                        "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                                              "values": ["db"]}]}}]}]}
        elif k == 7:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"namespaceSelector": {}}],
                                 "ports": [{"protocol": "TCP", "port": 30000, "endPort": 30100}]}]}
        elif k == 8:
            spec = {"podSelector": {"matchLabels": {"app": app, "tier": "web"}}, "ingress": [{}]}
        else:
            spec = {"podSelector": {"matchLabels": {"app": other}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [CLUSTER]}}],
                                "ports": [{"protocol": "TCP", "port": 443}]},
                               {"to": [{"podSelector": {}}]}]}
        out.append(policy(ns, f"np{i}", spec))
    return out


def per_pod_acl_rows(cluster: model.Cluster) -> int:
    """ACL rows if every selected pod had its own ACLs: one per (pod, rule) with the peers
    inline, and one drop per (pod, direction) it is isolated for."""
    total = 0
    by_ns: dict[str, list[model.Pod]] = {}
    for p in cluster.pods:
        by_ns.setdefault(p.namespace, []).append(p)
    for pol in cluster.policies:
        spec = pol["spec"]
        ns = pol["metadata"]["namespace"]
        selected = sum(1 for p in by_ns.get(ns, []) if model.selector_matches(spec.get("podSelector"), p.labels))
        types = model.policy_types(spec)
        rules = (len(spec.get("ingress") or []) if "Ingress" in types else 0) + \
                (len(spec.get("egress") or []) if "Egress" in types else 0)
        total += selected * (rules + len(types))
    return total


def cluster_of(kube: KubeApiServer) -> model.Cluster:
    ns = [model.Namespace(n["metadata"]["name"], n["metadata"].get("labels") or {}) for n in kube.list("namespaces")]
    ps = []
    for p in kube.list("pods"):
        ann = annotation(p)
        if ann is None:
            continue
        ports = tuple(model.ContainerPort(cp.get("name"), cp["containerPort"], cp.get("protocol", "TCP"))
                      for c in p["spec"]["containers"] for cp in c.get("ports") or [])
        ps.append(model.Pod(p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"].get("labels") or {},
                            ann["ip_address"].split("/")[0], p["spec"]["nodeName"], ports))
    return model.Cluster.of(ns, ps, kube.list("networkpolicies"))


def counts(lab: Lab, tables: tuple[str, ...] = POLICY_TABLES) -> dict[str, int]:
    return {t: len(v) for t, v in row_versions(lab, *tables).items()}


def metric_sum(watcher: WatcherProcess, suffix: str) -> float:
    _, text = watcher.get("/metrics")
    total = 0.0
    for line in text.splitlines():
        if line and not line.startswith("#") and line.split("{")[0].split(" ")[0].endswith(suffix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_programmed(lab: Lab, watcher: WatcherProcess, quiet: float, limit: float) -> float:
    """Seconds until the watcher is done: its work queues empty, and neither its reconciled-key
    count nor the NB's policy tables changed for `quiet` seconds. Returns the time of the last
    change (an NB write alone is no end: one transaction may take seconds to build)."""
    t0 = time.monotonic()

    def state() -> tuple[Any, ...]:
        return (metric_sum(watcher, "queue_depth"), metric_sum(watcher, "reconciled_keys_total"),
                row_versions(lab, *POLICY_TABLES))
    last, since = state(), time.monotonic()
    while time.monotonic() - since < quiet or last[0] != 0:
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"the watcher is still busy after {limit}s")
        time.sleep(0.1)
        now = state()
        if now != last:
            last, since = now, time.monotonic()
    return since - t0


# --- ovn-trace on the SB ----------------------------------------------------------------------------
class Tracer:
    """One `ovn-trace` process per trace: its daemon mode (--detach) kept answering from the
    port groups and address sets it had read first (a new policy's allow never showed)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        lsps = json.loads(lab.nbctl("--format=json", "--columns=name,addresses", "list", "Logical_Switch_Port"))
        self.addresses = {r[0]: r[1] for r in lsps["data"] if isinstance(r[1], str)}
        lrps = json.loads(lab.nbctl("--format=json", "--columns=mac,networks", "list", "Logical_Router_Port"))
        self.routers = [(r[0], r[1] if isinstance(r[1], str) else r[1][1]) for r in lrps["data"]]
        self.durations: list[float] = []

    def allowed(self, src: model.Pod, dst: model.Pod, port: int) -> bool:
        s_lsp, d_lsp = f"{src.namespace}_{src.name}", f"{dst.namespace}_{dst.name}"
        s_mac = self.addresses[s_lsp].split()[0]
        if src.node == dst.node:
            eth_dst = self.addresses[d_lsp].split()[0]
        else:
            eth_dst = next(mac for mac, nets in self.routers for n in (nets if isinstance(nets, list) else [nets])
                           if ipaddress.ip_address(src.ip) in ipaddress.ip_network(n, strict=False))
        flow = (f'inport == "{s_lsp}" && eth.src == {s_mac} && eth.dst == {eth_dst} && ip4.src == {src.ip} && '
                f"ip4.dst == {dst.ip} && ip.ttl == 64 && tcp.src == 40000 && tcp.dst == {port}")
        t0 = time.monotonic()
        out = subprocess.run(["ovn-trace", f"--db={self.lab.sb}", "--minimal", *["--ct=trk,new"] * 6,
                              flow], capture_output=True, text=True, check=True).stdout
        self.durations.append(time.monotonic() - t0)
        return f'output("{d_lsp}");' in out


def time_until(check: Callable[[], bool], limit: float = 60.0) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > limit:
            raise RuntimeError(f"not reached in {limit}s")
    return time.monotonic() - t0


# --- part 1: scale ----------------------------------------------------------------------------------
def scale(args: argparse.Namespace, rows: list[tuple[str, str]]) -> None:
    work = tempfile.mkdtemp(prefix="np-bench-")
    lab = Lab()
    kube = KubeApiServer(bookmark_interval=5.0, history_limit=200_000)
    watcher: WatcherProcess | None = None
    try:
        lab.up_central()
        write_topology(lab.nb, NODES, cluster_subnet=CLUSTER)
        kube.start()
        kubeconfig = os.path.join(work, "kubeconfig")
        kube.write_kubeconfig(kubeconfig)
        for obj in namespaces(args.namespaces):
            kube.create("namespaces", obj)
        for obj in pods(args.pods, args.namespaces):
            kube.create("pods", obj)
        watcher = WatcherProcess(work, nb=lab.nb, kubeconfig=kubeconfig)
        watcher.start().wait_ready(300)
        t0 = time.monotonic()
        wait_until(lambda: sum(1 for p in kube.list("pods") if annotation(p)) == args.pods, 600,
                   "every pod annotated", interval=0.5)
        log(f"{args.pods} pods annotated in {time.monotonic() - t0:.1f}s")
        t0 = time.monotonic()
        for obj in policies(args.policies, args.namespaces):
            kube.create("networkpolicies", obj)
        created = time.monotonic() - t0
        settled = wait_programmed(lab, watcher, quiet=3.0, limit=600)
        log(f"{args.policies} policies created in {created:.2f}s; programmed {settled:.2f}s after the first create")
        rows.append((f"{args.policies} policies created at once (pods in place): programmed after "
                     "(queues empty, last key reconciled, last NB write)", f"{settled:.2f} s"))
        n = counts(lab)
        total = sum(n.values())
        for t in POLICY_TABLES:
            rows.append((f"NB rows: {t}", str(n[t])))
        cluster = cluster_of(kube)
        naive = per_pod_acl_rows(cluster)
        rows.append(("rows if every selected pod had its own ACLs", f"{naive} ({naive / total:.1f} x the "
                                                                    f"{total} ACL + Port_Group + Address_Set rows)"))
        # restart
        assert watcher.stop(signal.SIGTERM) == 0
        before = row_versions(lab, *ALL_TABLES)
        t0 = time.monotonic()
        watcher.start().wait_ready(300)
        ready = time.monotonic() - t0
        m = re.findall(r"networkpolicies: sync of .*", watcher.current_log())
        time.sleep(1.0)   # a late write would show up here
        after = row_versions(lab, *ALL_TABLES)
        written = sum(1 for t in ALL_TABLES for u in set(before[t]) | set(after[t])
                      if before[t].get(u) != after[t].get(u))
        rows.append(("restart: process start to /readyz 200", f"{ready:.2f} s"))
        rows.append(("restart: the watcher's policy sync", m[-1].split("networkpolicies: ")[1] if m else "?"))
        rows.append(("restart: NB rows created, changed or deleted", str(written)))
        # policy-to-programmed at this size, through ovn-trace on the SB
        tracer = Tracer(lab)
        to_nb, to_sb, deleted = programmed_latency(lab, kube, tracer, cluster, args.scale_samples)
        n = len(to_nb)
        rows.append((f"at this size, one policy created -> its NB write (n={n}) p50 / p99",
                     f"{statistics.median(to_nb):.3f} / {pct(to_nb, 0.99):.3f} s"))
        rows.append((f"at this size, one policy created -> in the SB (--wait=sb) (n={n}) p50 / p99",
                     f"{statistics.median(to_sb):.3f} / {pct(to_sb, 0.99):.3f} s"))
        rows.append((f"at this size, one policy deleted -> its NB write (n={n}) p50 / p99",
                     f"{statistics.median(deleted):.3f} / {pct(deleted, 0.99):.3f} s"))
        rows.append(("at this size, ovn-trace: each pair dropped before, allowed after, dropped after deletion",
                     f"yes ({n} pairs; one trace takes {statistics.median(tracer.durations):.1f} s)"))
    finally:
        if watcher is not None:
            watcher.kill()
        kube.stop()
        lab.down()


def programmed_latency(lab: Lab, kube: KubeApiServer, tracer: Tracer, cluster: model.Cluster,
                       samples: int) -> tuple[list[float], list[float], list[float]]:
    """Pairs the model blocks on PROBE_PORT and allows once one more policy lets exactly that
    pair in (so the source's own egress policies do not stand in the way). For each: the time
    from that policy's creation to the watcher's NB write (the first change of the policy
    tables, polled), and to ovn-northd having it in the SB (`ovn-nbctl --wait=sb sync` after
    that write); ovn-trace then checks the pair is allowed (and dropped again after the
    policy's deletion, whose NB write is timed too)."""
    by_ns: dict[str, list[model.Pod]] = {}
    for p in cluster.pods:
        by_ns.setdefault(p.namespace, []).append(p)
    names = sorted(by_ns)
    chosen: list[tuple[model.Pod, model.Pod, dict[str, Any]]] = []
    for i in range(len(names) * 4):
        if len(chosen) >= samples:
            break
        dst_ns, src_ns = names[i % len(names)], names[(i * 7 + 1) % len(names)]
        dst, src = by_ns[dst_ns][i % 17], by_ns[src_ns][(i * 3) % 19]
        pol = policy(dst.namespace, f"bench-{len(chosen)}", {
            "podSelector": {"matchLabels": dict(dst.labels)},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": src.namespace}}, "podSelector": {"matchLabels": dict(src.labels)}}],
                "ports": [{"protocol": "TCP", "port": PROBE_PORT}]}]})
        with_it = model.Cluster(cluster.namespaces, cluster.pods, [*cluster.policies, pol])
        if not cluster.allowed(src, dst, "TCP", PROBE_PORT) and with_it.allowed(src, dst, "TCP", PROBE_PORT):
            chosen.append((src, dst, pol))
    to_nb, to_sb, deleted = [], [], []

    def nb_write_after(action: Callable[[], Any]) -> tuple[float, float]:
        before = row_versions(lab, *POLICY_TABLES)
        t0 = time.monotonic()
        action()
        time_until(lambda: row_versions(lab, *POLICY_TABLES) != before)
        nb = time.monotonic() - t0
        lab.nbctl("--wait=sb", "sync")
        return nb, time.monotonic() - t0

    for src, dst, pol in chosen:
        if tracer.allowed(src, dst, PROBE_PORT):
            raise RuntimeError(f"{src.key} -> {dst.key}:{PROBE_PORT} is allowed before the policy")
        nb, sb = nb_write_after(lambda p=pol: kube.create("networkpolicies", p))
        to_nb.append(nb)
        to_sb.append(sb)
        time_until(lambda s=src, d=dst: tracer.allowed(s, d, PROBE_PORT))
        nb, _ = nb_write_after(lambda p=pol: kube.delete("networkpolicies", p["metadata"]["name"],
                                                         namespace=p["metadata"]["namespace"]))
        deleted.append(nb)
        time_until(lambda s=src, d=dst: not tracer.allowed(s, d, PROBE_PORT))
    return to_nb, to_sb, deleted


# --- part 2: dataplane ------------------------------------------------------------------------------
def dataplane(args: argparse.Namespace, rows: list[tuple[str, str]]) -> None:
    from tests.netpol import harness

    harness.PROBE_TIMEOUT = 0.05   # a lab round trip is ~1 ms; the resolution of the measures
    truth = harness.build(tempfile.mkdtemp(prefix="np-bench-dp-"))
    try:
        xs = [f"x/{p}" for p in "abc"]
        into_x = [(s, d, "TCP", 80) for s in ("y/a", "y/b", "y/c") for d in xs]
        truth.create(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
        time_until(lambda: not any(truth.probe(into_x).values()))
        add, delete = [], []
        for _ in range(args.samples):
            t0 = time.monotonic()
            truth.create(policy("x", "from-y", {"podSelector": {}, "ingress": [
                {"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}))
            time_until(lambda: all(truth.probe(into_x).values()))
            add.append(time.monotonic() - t0)
            t0 = time.monotonic()
            truth.kube.delete("networkpolicies", "from-y", namespace="x")
            time_until(lambda: not any(truth.probe(into_x).values()))
            delete.append(time.monotonic() - t0)
        rows.append((f"dataplane: allow policy created -> every probe connects (n={len(add)}) p50 / p99",
                     f"{statistics.median(add):.3f} / {pct(add, 0.99):.3f} s"))
        rows.append((f"dataplane: allow policy deleted -> every probe blocked, +0..0.05 s (n={len(delete)}) p50 / p99",
                     f"{statistics.median(delete):.3f} / {pct(delete, 0.99):.3f} s"))
        truth.kube.delete("networkpolicies", "deny", namespace="x")
        truth.create(policy("x", "from-clients", {"podSelector": {}, "ingress": [
            {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}]}))
        yb = [("y/b", d, "TCP", 80) for d in xs]
        time_until(lambda: not any(truth.probe(yb).values()))
        into, out = [], []
        for _ in range(args.samples):
            t0 = time.monotonic()
            truth.relabel_pod("y", "b", {**harness.POD_LABELS["b"], "role": "client"})
            time_until(lambda: all(truth.probe(yb).values()))
            into.append(time.monotonic() - t0)
            t0 = time.monotonic()
            truth.relabel_pod("y", "b", harness.POD_LABELS["b"])
            time_until(lambda: not any(truth.probe(yb).values()))
            out.append(time.monotonic() - t0)
        rows.append((f"dataplane: pod relabelled into a peer selector -> connects (n={len(into)}) p50 / p99",
                     f"{statistics.median(into):.3f} / {pct(into, 0.99):.3f} s"))
        rows.append((f"dataplane: relabelled out -> blocked, +0..0.05 s (n={len(out)}) p50 / p99",
                     f"{statistics.median(out):.3f} / {pct(out, 0.99):.3f} s"))
    finally:
        harness.teardown(truth)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("scale", "dataplane"), action="append")
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--samples", type=int, default=20, help="dataplane latency samples (default 20)")
    parser.add_argument("--scale-samples", type=int, default=10, help="ovn-trace latency samples at scale "
                                                                     "(default 10; a trace takes seconds there)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, OVS)", file=sys.stderr)
        return 1
    rows: list[tuple[str, str]] = []
    parts = args.only or ["scale", "dataplane"]
    for part, run_part, what in (("scale", scale, f"{args.pods} pods, {args.namespaces} namespaces, "
                                                  f"{args.policies} policies"),
                                 ("dataplane", dataplane, "2 nodes, 9 pods")):
        if part in parts:
            log(f"{part}: {what}")
            try:
                run_part(args, rows)
            except Exception as exc:  # noqa: BLE001 - reported in the table, the other part still runs
                rows.append((f"{part}: FAILED", str(exc)))
    print(f"\nnetworkpolicy_bench on {platform.node()} ({os.cpu_count()} cores), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
