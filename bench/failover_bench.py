#!/usr/bin/env python3
"""Benchmark of the watcher's Lease failover (docs/ha.md): N watchers with --leader-elect on a
real NB (a lab central: ovsdb-server + ovn-northd) and our API server (`sandbox.kubeapi`, in
this process, on 127.0.0.1). Not part of the test suite. Needs root.

    .venv/bin/python bench/failover_bench.py                       # short and default settings
    .venv/bin/python bench/failover_bench.py --settings 3s/2s/500ms --runs 5

For each lease/renew/retry setting and run, with pods created at --rate meanwhile:
- kill: the leader is killed (SIGKILL); measured from the kill to (a) the new leader's
  "acquired the Lease" log line, (b) its "Initialization complete" (serving), and (c) the
  first pod created after the kill having its port in the NB (the first write that matters);
- stop: the leader is stopped (SIGTERM: it releases the Lease); the same three.
The NB is then checked against the cluster (0 stale, 0 missing, 0 duplicate addresses).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovn_k8s import naming  # noqa: E402
from sandbox.kubeapi import KubeApiServer  # noqa: E402
from sandbox.lab.cluster import Lab  # noqa: E402
from sandbox.watcher_harness import (  # noqa: E402
    WatcherProcess,
    differences,
    nb_pod_ports,
    wait_until,
    write_topology,
)

NODES = {"node1": "10.244.0.0/20", "node2": "10.244.16.0/20"}


def log_time(w: WatcherProcess, pattern: str) -> float | None:
    """The wall-clock time of the first log line of the current run matching `pattern`."""
    for line in w.current_log().splitlines():
        if re.search(pattern, line):
            # ovs.vlog writes milliseconds below 100 unpadded: "08:31:08.35.Z" is .035.
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d+)\.?Z", line)
            if m is None:
                return None
            base = datetime.fromisoformat(m.group(1) + "+00:00").timestamp()
            return base + int(m.group(2)) / 1000.0
    return None


def pod(name: str, i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": f"node{1 + i % 2}", "containers": [{"name": "c"}]}}


def one_run(lab: Lab, kube: KubeApiServer, workdir: str, kubeconfig: str, setting: str,
            how: str, watchers: int, rate: float) -> dict[str, float]:
    lease, renew, retry = setting.split("/")
    made = [WatcherProcess(os.path.join(workdir, f"w{i}"), nb=lab.nb,
                           kubeconfig=kubeconfig, name=f"w{i}",
                           extra=("--leader-elect", f"--leader-elect-lease-duration={lease}",
                                  f"--leader-elect-renew-deadline={renew}",
                                  f"--leader-elect-retry-period={retry}",
                                  "--pod-batch-size=50")).start()
            for i in range(watchers)]
    stop = threading.Event()
    counter = [len(kube.list("pods"))]

    def churn() -> None:
        while not stop.wait(1.0 / rate):
            i = counter[0]
            counter[0] += 1
            kube.create("pods", pod(f"p{i}", i))
    chaos = threading.Thread(target=churn, daemon=True)
    try:
        leader = wait_until(lambda: next((w for w in made if w.get("/readyz")[0] == 200), None),
                            120, "a leader", interval=0.1)
        chaos.start()
        time.sleep(1.0)
        t0 = time.time()
        if how == "kill":
            leader.kill()
        else:
            leader.stop(signal.SIGTERM)
        probe = f"probe{int(t0 * 1000)}"
        kube.create("pods", pod(probe, 0))
        port = naming.pod_port("default", probe)
        wait_until(lambda: port in nb_pod_ports(lab.nb), 120, "the probe's port", interval=0.02)
        t_write = time.time()
        others = [w for w in made if w is not leader]
        new = wait_until(lambda: next((w for w in others if w.get("/readyz")[0] == 200), None),
                         60, "the new leader", interval=0.05)
        acquired = log_time(new, r"acquired the Lease")
        serving = log_time(new, r"Initialization complete")
        stop.set()
        chaos.join(10)
        wait_until(lambda: not differences(kube.list("pods"), lab.nb), 60, "the NB to converge",
                   interval=0.3)
        return {"acquired": (acquired or t0) - t0, "serving": (serving or t0) - t0,
                "first_write": t_write - t0}
    finally:
        stop.set()
        for w in made:
            w.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="3s/2s/500ms,15s/10s/2s",
                        help="lease/renew-deadline/retry triples, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0, help="pods created per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with Lab() as lab, KubeApiServer() as kube, tempfile.TemporaryDirectory() as tmp:
        lab.up_central()
        write_topology(lab.nb, NODES)
        kube.write_kubeconfig(os.path.join(tmp, "kubeconfig"))
        for setting in args.settings.split(","):
            for how in ("kill", "stop"):
                key = f"{setting} {how}"
                for run in range(args.runs):
                    workdir = os.path.join(tmp, f"{setting.replace('/', '_')}-{how}-{run}")
                    got = one_run(lab, kube, workdir, os.path.join(tmp, "kubeconfig"), setting,
                                  how, args.watchers, args.rate)
                    for name, value in got.items():
                        results.setdefault(key, {}).setdefault(name, []).append(value)
                    print(f"{key} run {run}: " + ", ".join(f"{k} {v:.2f}s" for k, v in
                                                            got.items()), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    print(f"\n{'setting (lease/renew/retry) event':40} {'acquired':>9} {'serving':>9} "
          f"{'first write':>12}   (median of {args.runs}, seconds after the kill/stop)")
    for key, vals in results.items():
        print(f"{key:40} " + " ".join(f"{statistics.median(vals[n]):>{w}.2f}" for n, w in
                                      (("acquired", 9), ("serving", 9), ("first_write", 12))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
