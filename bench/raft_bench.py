#!/usr/bin/env python3
"""Benchmark of a clustered (RAFT) NB against a standalone one, in the same run (issue 16 item 4).
Not part of the test suite. Needs root.

    .venv/bin/python bench/raft_bench.py                      # 5,000 pods, 3 failovers each
    .venv/bin/python bench/raft_bench.py --pods 1000 --failovers 2

For each NB (standalone: one ovsdb-server; raft-3: a 3-member cluster, every client given the
three members), a lab central (NB, SB, ovn-northd), our API server in this process and the real
ovn-k8s-watcher:
- burst: N pods created while the API server holds its watch events back, then released;
  time until every pod has its port and annotation (the watcher writes the port first, so
  the N-th annotation PATCH marks the end), and the watcher's NB transactions (batching is
  what carries a RAFT NB, whose every commit is a log write on a majority);
- failover (raft-3 only), repeated: the NB leader is killed (SIGKILL) and
  - election: until a surviving member says `Role: leader` (ovs-appctl cluster/status);
  - NB client: until a transaction through our connection (nb.connection, python-ovs,
    leader-only) commits on the new leader: a client in this process that writes in a loop;
  - watcher: a pod created right after the kill, until it has its port and annotation (the
    watcher's first write through the new leader); then the member is restarted and rejoins.
Prints a table (stdout) and the raw figures as JSON (stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovn_k8s.nb import connection  # noqa: E402
from sandbox.kubeapi import KubeApiServer  # noqa: E402
from sandbox.lab.cluster import Lab  # noqa: E402
from sandbox.watcher_harness import WatcherProcess, annotation, differences, wait_until, write_topology  # noqa: E402

NODES = {f"node{i}": f"10.{128 + i // 16}.{(i % 16) * 16}.0/20" for i in range(10)}
CLUSTER = "10.128.0.0/12"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pod_body(i: int, prefix: str = "p") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{prefix}{i}", "namespace": f"ns{i % 20}"},
            "spec": {"nodeName": f"node{i % len(NODES)}",
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}


class Run:
    """One NB (standalone or a cluster), its central, our API server and the watcher."""

    def __init__(self, workdir: str, members: int) -> None:
        self.workdir, self.members = workdir, members
        self.lab = Lab()
        self.kube = KubeApiServer(bookmark_interval=5.0, history_limit=200_000)
        self.watcher: WatcherProcess | None = None

    def __enter__(self) -> Run:
        self.lab.up_central(db_cluster=self.members)
        self.kube.start()
        kubeconfig = os.path.join(self.workdir, "kubeconfig")
        self.kube.write_kubeconfig(kubeconfig)
        write_topology(self.lab.nb, NODES, cluster_subnet=CLUSTER)
        for i in range(20):
            self.kube.create("namespaces", {"metadata": {"name": f"ns{i}"}})
        self.watcher = WatcherProcess(self.workdir, nb=self.lab.nb, kubeconfig=kubeconfig,
                                      log_level="info").start()
        self.watcher.wait_ready(60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.watcher is not None:
            self.watcher.kill()
        self.kube.stop()
        self.lab.down()

    def burst(self, n: int) -> dict[str, Any]:
        assert self.watcher is not None
        txns0 = self.watcher.metric("ovnk8s_watcher_nb_transactions_total", result="ok")
        self.kube.pause()
        for i in range(n):
            self.kube.create("pods", pod_body(i))
        self.kube.reset_counters()
        t0 = time.monotonic()
        self.kube.resume()
        wait_until(lambda: self.kube.request_count("patch", "pods") >= n, 900, f"{n} annotations",
                   interval=0.005)
        seconds = time.monotonic() - t0
        txns = self.watcher.metric("ovnk8s_watcher_nb_transactions_total", result="ok") - txns0
        if self.members:
            self.lab.leader("nb")
        problems = differences(self.kube.list("pods"), self.lab.live_remote("nb"))
        assert not problems, problems[:10]
        return {"pods": n, "seconds": round(seconds, 3), "rate": round(n / seconds), "nb_txns": int(txns)}

    def failover(self, k: int) -> dict[str, float]:
        """Kill the NB leader; the times to a new leader, to our client's first commit, to
        the watcher's first pod; then restart the member."""
        lab = self.lab
        client = connection.connect(lab.nb, "OVN_Northbound", what="NB", timeout=60)
        committed = threading.Event()
        started = threading.Event()
        first_commit: list[float] = []

        def writer() -> None:
            # One small transaction after another; the first to commit after the kill counts.
            # (A transaction begun before the kill may have committed on the old leader.)
            i = 0
            while not committed.is_set():
                started.set()
                begun = time.monotonic()
                with connection.transaction(client) as txn:
                    txn.add(client.db_set("NB_Global", ".", ("external_ids", {"raft-bench": f"{k}-{i}"})))
                i += 1
                if kill_at and begun > kill_at[0]:
                    first_commit.append(time.monotonic())
                    committed.set()

        kill_at: list[float] = []
        thread = threading.Thread(target=writer, daemon=True)
        leader = lab.leader("nb")
        thread.start()
        started.wait(10)
        name, namespace = f"fo{k}", pod_body(k)["metadata"]["namespace"]
        t0 = time.monotonic()
        lab.kill_member("nb", leader)
        kill_at.append(t0)
        self.kube.create("pods", pod_body(k, prefix="fo"))
        elected = None
        watcher_done = None
        deadline = t0 + 120
        while (elected is None or watcher_done is None or not committed.is_set()) and time.monotonic() < deadline:
            now = time.monotonic()
            if elected is None and any(lab.cluster_role("nb", i) == "leader" for i in lab.members if i != leader):
                elected = now - t0
            if watcher_done is None and annotation(self.kube.get("pods", name, namespace=namespace)):
                watcher_done = now - t0
            time.sleep(0.005)
        thread.join(60)
        connection.disconnect(client)
        lab.restart_member("nb", leader)
        lab.leader("nb")
        assert elected is not None and watcher_done is not None and first_commit, "no failover within 120 s"
        return {"election": round(elected, 3), "nb_client": round(first_commit[0] - t0, 3),
                "watcher": round(watcher_done, 3)}


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--failovers", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("raft_bench: needs root (network namespaces, OVS daemons)", file=sys.stderr)
        return 1
    results: dict[str, Any] = {}
    for label, members in (("standalone", 0), ("raft-3", 3)):
        with tempfile.TemporaryDirectory(prefix="raft-bench-") as workdir, Run(workdir, members) as run:
            log(f"{label}: burst of {args.pods} pods")
            results[label] = {"burst": run.burst(args.pods)}
            log(f"{label}: {results[label]['burst']}")
            if members:
                results[label]["failovers"] = []
                for k in range(args.failovers):
                    got = run.failover(k)
                    log(f"{label}: failover {k + 1}: {got}")
                    results[label]["failovers"].append(got)
    print(json.dumps(results), file=sys.stderr)
    s, r = results["standalone"]["burst"], results["raft-3"]["burst"]
    fos = results["raft-3"]["failovers"]
    rows = [
        (f"burst of {args.pods} pods: release -> every port + annotation",
         f"{s['seconds']:.2f} s ({s['rate']} pods/s, {s['nb_txns']} NB txns)",
         f"{r['seconds']:.2f} s ({r['rate']} pods/s, {r['nb_txns']} NB txns)"),
        ("NB leader killed -> a new leader elected (RAFT)", "-", spread([f["election"] for f in fos])),
        ("NB leader killed -> first commit of a client (nb.connection)", "-", spread([f["nb_client"] for f in fos])),
        ("NB leader killed -> watcher's first pod (port + annotation)", "-", spread([f["watcher"] for f in fos])),
    ]
    widths = [max(len(row[i]) for row in rows + [("case", "standalone NB", "3-member RAFT NB")]) for i in range(3)]
    for row in [("case", "standalone NB", "3-member RAFT NB"), tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
