#!/usr/bin/env python3
"""Benchmark of ovn-k8s-watcher against a real NB ovsdb-server + ovn-northd (a lab central)
and our API server (in this process, on 127.0.0.1). Not part of the test suite. Needs root.

    .venv/bin/python bench/watcher_bench.py                 # everything, prints a table
    .venv/bin/python bench/watcher_bench.py --only burst --burst 1000,5000

Scenarios (issue 3, item 8):
- burst: N pods created while the watch is held back (`pause()`), then released at once;
  time from the release until every pod has its port and annotation (the watcher writes the
  port first, so the N-th annotation PATCH reaching the API server marks the end; the NB and
  every annotation are checked afterwards).
- original: the same burst done the way the original watcher did it, one pod at a time:
  `ovn-nbctl --wait=sb -- --may-exist lsp-add ... -- lsp-set-addresses <lsp> dynamic -- set
  ... external-ids`, `ovn-nbctl get ... dynamic_addresses`, then the annotation PATCH
  through requests (original-systems.md §B.3).
- steady: pods created at a fixed rate; per pod, from the create returning to the moment a
  watch in this process sees its annotation (port written before): p50 / p99 / max.
- sync: 10k annotated pods with ports and 1k services with endpoints in place; a fresh
  watcher is started: time to ready (process start to /readyz 200; the sync itself from the
  watcher's metrics), its resident memory, NB writes during the sync, and that no live port
  was deleted (UUIDs before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovn_k8s.kube.rest import ConnectionParams, KubeClient, resource_path  # noqa: E402
from ovn_k8s.kube.watch import StopEvent, list_then_watch  # noqa: E402
from sandbox.kubeapi import KubeApiServer  # noqa: E402
from sandbox.lab.cluster import Lab  # noqa: E402
from sandbox.watcher_harness import (  # noqa: E402
    WatcherProcess,
    annotation,
    differences,
    nb_pod_ports,
    wait_until,
    write_topology,
)

NODES = {f"node{i}": f"10.{128 + i // 16}.{(i % 16) * 16}.0/20" for i in range(10)}
CLUSTER = "10.128.0.0/12"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pod_body(i: int, prefix: str = "p") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{prefix}{i}", "namespace": f"ns{i % 20}",
                         "labels": {"app": f"app{i % 1000}"}},
            "spec": {"nodeName": f"node{i % len(NODES)}",
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_of(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out["VmRSS"], out["VmHWM"]


class Env:
    """One lab central (NB, SB, northd), our API server, and at most one watcher."""

    def __init__(self, workdir: str, *, watcher_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.lab = Lab()
        self.kube = KubeApiServer(bookmark_interval=5.0, history_limit=200_000)
        self.watcher_args = watcher_args
        self.watcher: WatcherProcess | None = None

    def __enter__(self) -> Env:
        self.lab.up_central()
        self.kube.start()
        self.kubeconfig = os.path.join(self.workdir, "kubeconfig")
        self.kube.write_kubeconfig(self.kubeconfig)
        write_topology(self.lab.nb, NODES, cluster_subnet=CLUSTER)
        for ns in {pod_body(i)["metadata"]["namespace"] for i in range(20)}:
            self.kube.create("namespaces", {"metadata": {"name": ns}})
        return self

    def __exit__(self, *exc: object) -> None:
        if self.watcher is not None:
            self.watcher.kill()
        self.kube.stop()
        self.lab.down()

    def start_watcher(self, name: str = "watcher") -> WatcherProcess:
        self.watcher = WatcherProcess(self.workdir, nb=self.lab.nb, kubeconfig=self.kubeconfig,
                                      name=name, extra=self.watcher_args, log_level="info")
        self.watcher.start()
        return self.watcher

    def pids(self) -> dict[str, int]:
        c = self.lab.central_dir
        out = {"bench+apiserver": os.getpid()}
        for name in ("nb", "northd"):
            with open(f"{c}/{name}.pid", encoding="ascii") as fh:
                out[name] = int(fh.read())
        if self.watcher is not None:
            out["watcher"] = self.watcher.pid
        return out

    def check(self) -> None:
        problems = differences(self.kube.list("pods"), self.lab.nb)
        if problems:
            raise AssertionError(f"NB differs from the cluster: {problems[:5]} "
                                 f"({len(problems)} problems)")


def burst(n: int, workdir: str, args: tuple[str, ...]) -> dict[str, Any]:
    with Env(workdir, watcher_args=args) as env:
        w = env.start_watcher()
        w.wait_ready(60)
        env.kube.pause()
        for i in range(n):
            env.kube.create("pods", pod_body(i))
        pids = env.pids()
        cpu0 = {k: cpu_of(p) for k, p in pids.items()}
        env.kube.reset_counters()
        t0 = time.monotonic()
        log(f"burst {n}: released the watch events at {time.time():.3f}")
        env.kube.resume()
        wait_until(lambda: env.kube.request_count("patch", "pods") >= n, 600,
                   f"{n} annotations", interval=0.005)
        seconds = time.monotonic() - t0
        cpu = {k: round(cpu_of(p) - cpu0[k], 2) for k, p in pids.items()}
        env.check()
        result = {"pods": n, "seconds": seconds, "rate": n / seconds, "cpu": cpu,
                  "rss_mb": memory_of(w.pid)[0],
                  "nb_txns": w.metric("ovnk8s_watcher_nb_transactions_total", result="ok")}
        log(f"burst {n}: {seconds:.2f}s = {n / seconds:.0f} pods/s, cpu {cpu}, "
            f"{result['nb_txns']:.0f} NB transactions")
        return result


def original(n: int, workdir: str) -> dict[str, Any]:
    """One pod at a time, as the original watcher did (no watcher process runs)."""
    with Env(workdir) as env:
        for i in range(n):
            env.kube.create("pods", pod_body(i))
        client = KubeClient(ConnectionParams(server=env.kube.url))
        nb = env.lab.nb

        def nbctl(*args: str) -> str:
            return subprocess.run(["ovn-nbctl", f"--db={nb}", *args], check=True,
                                  capture_output=True, text=True).stdout.strip()
        t0 = time.monotonic()
        for i in range(n):
            body = pod_body(i)
            ns, name, node = (body["metadata"]["namespace"], body["metadata"]["name"],
                              body["spec"]["nodeName"])
            lsp = f"{ns}_{name}"
            nbctl("--wait=sb", "--", "--may-exist", "lsp-add", node, lsp, "--",
                  "lsp-set-addresses", lsp, "dynamic", "--", "set", "logical_switch_port", lsp,
                  f"external-ids:namespace={ns}", "external-ids:pod=true")
            mac, ip = nbctl("get", "logical_switch_port", lsp, "dynamic_addresses") \
                .strip('"').split()[:2]
            gw = nbctl("get", "logical_switch", node, "external_ids:gateway_ip").strip('"')
            client.annotate(resource_path("pods", namespace=ns, name=name), {"ovn": json.dumps(
                {"ip_address": f"{ip}/{gw.split('/')[1]}", "mac_address": mac,
                 "gateway_ip": gw.split("/")[0]})})
        seconds = time.monotonic() - t0
        client.close()
        log(f"original {n}: {seconds:.2f}s = {n / seconds:.0f} pods/s")
        return {"pods": n, "seconds": seconds, "rate": n / seconds}


def steady(rate: float, seconds: float, workdir: str, args: tuple[str, ...]) -> dict[str, Any]:
    with Env(workdir, watcher_args=args) as env:
        w = env.start_watcher()
        w.wait_ready(60)
        created: dict[str, float] = {}
        done: dict[str, float] = {}
        stop = StopEvent()
        client = KubeClient(ConnectionParams(server=env.kube.url))

        def watch() -> None:
            for item in list_then_watch(client, resource_path("pods"), stop=stop):
                obj = getattr(item, "obj", None)
                if obj is not None and annotation(obj):
                    name = obj["metadata"]["name"]
                    done.setdefault(name, time.monotonic())
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        time.sleep(0.5)
        n = int(rate * seconds)
        t0 = time.monotonic()
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            env.kube.create("pods", pod_body(i, "s"))
            created[f"s{i}"] = time.monotonic()
        achieved = n / (time.monotonic() - t0)
        wait_until(lambda: len(done) >= n, 60, "every annotation")
        stop.set()
        client.close()
        env.check()
        lat = sorted(1000 * (done[k] - created[k]) for k in created)
        result = {"pods": n, "rate": achieved, "p50": statistics.median(lat),
                  "p99": lat[int(0.99 * (len(lat) - 1))], "max": lat[-1]}
        log(f"steady {achieved:.0f} pods/s: p50 {result['p50']:.1f} ms, p99 "
            f"{result['p99']:.1f} ms, max {result['max']:.1f} ms")
        return result


def sync(pods: int, services: int, workdir: str, args: tuple[str, ...]) -> dict[str, Any]:
    with Env(workdir, watcher_args=args) as env:
        log(f"sync: preparing {pods} pods and {services} services")
        w = env.start_watcher("prepare")
        w.wait_ready(60)
        for i in range(pods):
            env.kube.create("pods", pod_body(i))
        wait_until(lambda: env.kube.request_count("patch", "pods") >= pods, 600,
                   "the pods", interval=0.2)
        for j in range(services):
            ns = f"ns{j % 20}"
            svc = env.kube.create("services", {
                "metadata": {"name": f"svc{j}", "namespace": ns},
                "spec": {"selector": {"app": f"app{j}"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
            ips = [annotation(env.kube.get("pods", f"p{i}", namespace=ns)) for i in (j, j + 1000)
                   if i < pods and f"ns{i % 20}" == ns]
            env.kube.create("endpointslices", {
                "metadata": {"name": f"svc{j}-1", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": f"svc{j}"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [a["ip_address"].split("/")[0]],
                               "conditions": {"ready": True}} for a in ips if a],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
            assert svc["spec"]["clusterIP"]
        wait_until(lambda: w.get("/readyz")[0] == 200 and
                   w.metric("ovnk8s_watcher_queue_depth", resource="services") == 0, 120,
                   "services")
        time.sleep(2)
        env.check()
        assert w.stop() == 0
        before = nb_pod_ports(env.lab.nb)
        lbs_before = env.lab.nbctl("--bare", "--columns=_uuid", "list", "Load_Balancer").split()
        assert len(before) == pods and len(lbs_before) >= services
        log(f"sync: {len(before)} pod ports and {len(lbs_before)} load balancers in the NB; "
            "restarting the watcher")
        nb_pid = env.pids()["nb"]
        nb_cpu0 = cpu_of(nb_pid)
        t0 = time.monotonic()
        w = env.start_watcher("measured")
        w.wait_ready(120)
        ready = time.monotonic() - t0
        rss, hwm = memory_of(w.pid)
        after = nb_pod_ports(env.lab.nb)
        deleted = [n for n, p in before.items() if n not in after or after[n].uuid != p.uuid]
        result = {"pods": pods, "services": services, "ready": ready,
                  "sync_pods": w.metric("ovnk8s_watcher_sync_duration_seconds", resource="pods"),
                  "sync_services": w.metric("ovnk8s_watcher_sync_duration_seconds",
                                            resource="services"),
                  "rss_mb": rss, "hwm_mb": hwm, "live_ports_deleted": len(deleted),
                  "stale_deleted": w.metric("ovnk8s_watcher_stale_ports_deleted_total"),
                  "nb_txns": w.metric("ovnk8s_watcher_nb_transactions_total", result="ok"),
                  "annotation_patches": w.metric("ovnk8s_watcher_pod_annotations_total",
                                                 result="ok"),
                  "nb_cpu": cpu_of(nb_pid) - nb_cpu0}
        env.check()
        log(f"sync: ready in {ready:.2f}s (pods sync {result['sync_pods']:.2f}s, services "
            f"{result['sync_services']:.2f}s), RSS {rss:.0f} MB (peak {hwm:.0f} MB), "
            f"{len(deleted)} live ports deleted, {result['nb_txns']:.0f} NB writes")
        return result


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as fh:
        mem = int(fh.readline().split()[1]) / 1024 / 1024
    ovs = subprocess.run(["ovsdb-server", "--version"], capture_output=True, text=True).stdout
    ovn = subprocess.run(["ovn-northd", "--version"], capture_output=True, text=True).stdout
    return (f"{os.cpu_count()} x {cpu}, {mem:.0f} GB RAM, Linux {platform.release()}, Python "
            f"{platform.python_version()}, {ovs.splitlines()[0]}, {ovn.splitlines()[0]}; load "
            f"average at start {os.getloadavg()[0]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("burst", "original", "steady", "sync"), action="append",
                        help="run only these scenarios (repeatable; default: all)")
    parser.add_argument("--burst", default="1000,5000", help="burst sizes (default 1000,5000)")
    parser.add_argument("--original", type=int, default=1000,
                        help="pods for the original-way burst (default 1000)")
    parser.add_argument("--rate", type=float, default=200.0, help="steady pods/s (default 200)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="steady run length (default 15 s)")
    parser.add_argument("--sync-pods", type=int, default=10_000)
    parser.add_argument("--sync-services", type=int, default=1000)
    parser.add_argument("--watcher-arg", action="append", default=[],
                        help="extra flag for ovn-k8s-watcher (repeatable)")
    parser.add_argument("--workdir", help="keep the watchers' logs here (default: a temporary "
                        "directory, removed at the end)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("watcher_bench: needs root (the lab uses network namespaces)", file=sys.stderr)
        return 1
    only = set(args.only or ("burst", "original", "steady", "sync"))
    wargs = tuple(args.watcher_arg)
    desc = machine()
    log(desc)
    rows: list[tuple[str, str, str]] = []
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="watcher-bench-") as tmp:
        tmp = args.workdir or tmp
        def run(name: str, fn: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
            d = os.path.join(tmp, name)
            os.makedirs(d, exist_ok=True)
            return fn(d)
        if "burst" in only:
            for n in (int(x) for x in args.burst.split(",")):
                r = results[f"burst{n}"] = run(f"burst{n}", lambda d, n=n: burst(n, d, wargs))
                rows.append((f"burst of {n} pods: API event -> port + annotation",
                             f"{r['rate']:.0f} pods/s ({r['seconds']:.2f} s, "
                             f"{r['nb_txns']:.0f} NB txns)", ">= 1000 pods/s"))
        if "original" in only:
            n = args.original
            r = results["original"] = run("original", lambda d: original(n, d))
            ours = results.get(f"burst{n}")
            ratio = f"; ours is {ours['rate'] / r['rate']:.0f}x faster" if ours else ""
            rows.append((f"same burst of {n}, the original way (ovn-nbctl per port)",
                         f"{r['rate']:.1f} pods/s ({r['seconds']:.1f} s){ratio}", "-"))
        if "steady" in only:
            r = results["steady"] = run("steady", lambda d: steady(args.rate, args.seconds, d,
                                                                   wargs))
            rows.append((f"event -> port latency at a steady {r['rate']:.0f} pods/s "
                         f"({r['pods']} pods)",
                         f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms",
                         "p99 < 100 ms"))
        if "sync" in only:
            r = results["sync"] = run("sync", lambda d: sync(args.sync_pods, args.sync_services,
                                                             d, wargs))
            rows.append((f"restart with {r['pods']} pods + {r['services']} services: "
                         "process start -> serving",
                         f"{r['ready']:.2f} s (pod sync {r['sync_pods']:.2f} s, service sync "
                         f"{r['sync_services']:.2f} s)", "< 10 s"))
            rows.append(("watcher memory after that sync", f"{r['rss_mb']:.0f} MB RSS (peak "
                         f"{r['hwm_mb']:.0f} MB)", "< 250 MB"))
            rows.append(("live ports deleted / NB writes / annotation patches by that sync",
                         f"{r['live_ports_deleted']} / {r['nb_txns']:.0f} / "
                         f"{r['annotation_patches']:.0f}", "0 deleted"))
    print(f"\nMachine: {desc}\n")
    print("| measurement | result | target |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\n" + json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
