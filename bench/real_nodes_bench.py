#!/usr/bin/env python3
"""Real nodes benchmark: pods on the sandbox's real nodes (kubelet + containerd calling
ovn-k8s-cni-overlay, `ovn-k8s-sandbox up --nodes-kind real`), on the real control plane.

1. One at a time: N pods (default 50), each created (POST) and polled every 20 ms until it is
   Ready with a podIP; p50/p99 of created -> Ready (scheduling, the kubelet, containerd's
   sandbox and container, our CNI ADD, the readiness of a container without probe).
2. At once: N pods created together (8 client threads) across both nodes; time until the last
   is Ready with an IP, and the failures (not Ready within the timeout, or any
   FailedCreatePodSandBox event).
3. The share of our CNI ADD: the plugin logs each ADD's time ("ADD ns/pod done: ... in N ms",
   measured by the plugin from its start to its answer; Python's start-up before it is not
   counted); reported as the sum over the pods against the sum of their created -> Ready.

Usage (root): .venv/bin/python bench/real_nodes_bench.py [--pods 50] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox import cluster  # noqa: E402
from sandbox.state import State  # noqa: E402

NS = "bench"
ADD_DONE = re.compile(r"ADD (\S+)/(\S+) done: .* in (\d+) ms(?: \((.*)\))?")


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "web", "image": "sandbox.ovn-k8s/podserver:latest",
                                     "imagePullPolicy": "Never"}]}}


def ready_ip(p: dict[str, Any] | None) -> bool:
    st = (p or {}).get("status") or {}
    return bool(st.get("podIP")) and any(c.get("type") == "Ready" and c.get("status") == "True"
                                         for c in st.get("conditions") or [])


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def add_times(state: State, names: set[str], parts: dict[str, list[float]] | None = None) -> dict[str, float]:
    """Each pod's ADD time from the plugin's log; `parts` collects its steps (ovsdb, annotation
    (the wait for the watcher's), netns, ovs, ovn (the wait for ovn-controller))."""
    out = {}
    for node in state.nodes:
        try:
            with open(f"{state.node_dir(node)}/cni.log", encoding="utf-8") as f:
                for line in f:
                    m = ADD_DONE.search(line)
                    if m and m.group(1) == NS and m.group(2) in names:
                        out[m.group(2)] = int(m.group(3)) / 1000
                        for part in (m.group(4) or "").split(", ") if parts is not None else ():
                            key, _, ms = part.partition(" ")
                            if ms.isdigit():
                                parts.setdefault(key, []).append(int(ms) / 1000)
        except FileNotFoundError:
            pass
    return out


def delete_all(api: Any) -> None:
    for p in api.list("pods", NS):
        api.delete("pods", p["metadata"]["name"], NS)
    deadline = time.monotonic() + 180
    while api.list("pods", NS) and time.monotonic() < deadline:
        time.sleep(0.2)


def one_at_a_time(state: State, n: int) -> tuple[list[float], dict[str, float]]:
    api = state.api()
    times = {}
    for i in range(n):
        name = f"seq-{i}"
        t0 = time.monotonic()
        api.create("pods", pod(name), NS)
        while not ready_ip(api.get("pods", name, NS)):
            if time.monotonic() - t0 > 120:
                raise RuntimeError(f"{name} not Ready after 120 s")
            time.sleep(0.02)
        times[name] = time.monotonic() - t0
    return list(times.values()), {k: times[k] for k in times}


def at_once(state: State, n: int) -> tuple[float, dict[str, float], list[str], dict[str, int]]:
    api = state.api()
    names = [f"burst-{i}" for i in range(n)]
    t0 = time.monotonic()
    created: dict[str, float] = {}
    lock = threading.Lock()

    def create(name: str) -> None:
        state.api().create("pods", pod(name), NS)
        with lock:
            created[name] = time.monotonic()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, names))
    done: dict[str, float] = {}
    while len(done) < n and time.monotonic() - t0 < 180:
        for p in api.list("pods", NS):
            name = p["metadata"]["name"]
            if name in created and name not in done and ready_ip(p):
                done[name] = time.monotonic() - created[name]
        time.sleep(0.05)
    wall = time.monotonic() - t0
    failed = [x for x in names if x not in done]
    events = [e for e in api.list("events", NS) if e.get("reason") == "FailedCreatePodSandBox"]
    failed += [f"event: {e.get('message', '')[:120]}" for e in events]
    per_node: dict[str, int] = {}
    for p in api.list("pods", NS):
        node = p["spec"].get("nodeName") or "-"
        per_node[node] = per_node.get(node, 0) + 1
    return wall, done, failed, per_node


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="leave the sandbox up")
    parser.add_argument("--state-dir", default="/tmp/ovn-k8s-real-nodes-bench")
    args = parser.parse_args()
    t = time.monotonic()
    state = cluster.up(args.state_dir, nodes=2, control_plane="real", nodes_kind="real", out=lambda s: None)
    print(f"sandbox up with 2 real nodes in {time.monotonic() - t:.1f} s")
    api = state.api()
    try:
        try:
            api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        except Exception:  # noqa: BLE001 - exists from a kept run
            pass
        deadline = time.monotonic() + 30   # pods are refused until the namespace's default SA exists
        while time.monotonic() < deadline and not any(
                s["metadata"]["name"] == "default" for s in api.list("serviceaccounts", NS)):
            time.sleep(0.1)
        seq, seq_by = one_at_a_time(state, args.pods)
        parts: dict[str, list[float]] = {}
        adds = add_times(state, set(seq_by), parts)
        print(f"one at a time, {args.pods} pods: created -> Ready with IP p50 {pct(seq, 0.5):.3f} s, "
              f"p99 {pct(seq, 0.99):.3f} s, min {min(seq):.3f} s, max {max(seq):.3f} s")
        if adds:
            print(f"  our CNI ADD (plugin's own time): p50 {statistics.median(adds.values()):.3f} s; "
                  f"share of created -> Ready {sum(adds.values()) / sum(seq_by[k] for k in adds):.0%}; steps p50 "
                  + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in parts.items()))
        delete_all(api)
        wall, done, failed, per_node = at_once(state, args.pods)
        parts = {}
        adds = add_times(state, set(done), parts)
        spread = ", ".join(f"{k}: {v}" for k, v in sorted(per_node.items()))
        detail = ": " + "; ".join(failed[:3]) if failed else ""
        print(f"at once, {args.pods} pods ({spread}): all Ready with IP in {wall:.2f} s; "
              f"failures {len(failed)}{detail}")
        if done:
            vals = list(done.values())
            print(f"  each pod created -> Ready: p50 {pct(vals, 0.5):.3f} s, p99 {pct(vals, 0.99):.3f} s")
        if adds:
            print(f"  our CNI ADD: p50 {statistics.median(adds.values()):.3f} s, max {max(adds.values()):.3f} s; "
                  f"share of the pods' created -> Ready {sum(adds.values()) / sum(done[k] for k in adds):.0%}; "
                  "steps p50 " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in parts.items()))
        delete_all(api)
        return 1 if failed else 0
    finally:
        if not args.keep:
            cluster.down(args.state_dir, out=lambda s: None)


if __name__ == "__main__":
    raise SystemExit(main())
