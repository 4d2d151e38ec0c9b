#!/usr/bin/env python3
"""Benchmark of ovn-k8s-watcher against a real NB ovsdb-server + ovn-northd (a lab central)
and a Kubernetes API server: ours (`sandbox.kubeapi`, in this process, on 127.0.0.1) and, for
the burst, a real one too (etcd + kube-apiserver + kube-controller-manager + kube-scheduler,
`sandbox.control_plane.ControlPlane`, when its binaries are found the envtest way). Not part
of the test suite. Needs root.

    .venv/bin/python bench/watcher_bench.py                 # everything, prints a table
    .venv/bin/python bench/watcher_bench.py --only burst --burst 1000,5000
    .venv/bin/python bench/watcher_bench.py --only burst --burst 1000 --control-plane real

Scenarios (issue 3, item 8):
- burst: N pods created while the watch is held back, then released at once; time from the
  release until every pod has its port and annotation (the watcher writes the port first, so
  the N-th annotation marks the end; the NB and every annotation are checked afterwards).
  Our server holds its watch events back (`pause()`) and counts the PATCHes it serves; with
  kube-apiserver the watcher process is stopped (SIGSTOP) while the pods are created and
  continued (SIGCONT), and a watch in this process sees the N-th annotation. The same run
  prints the CPU seconds per pod of every process (/proc/<pid>/stat, utime + stime, from
  the release until the watcher's CPU stops growing), and the server's raw annotation-PATCH
  ceiling: a minimal client in its own process PATCHing the same pods over as many
  keep-alive connections as the watcher has annotation workers, with the watcher stopped.
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
import http.client
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovn_k8s.kube.errors import KubeError  # noqa: E402
from ovn_k8s.kube.lite import LiteClient  # noqa: E402
from ovn_k8s.kube.rest import ConnectionParams, KubeClient, resource_path  # noqa: E402
from ovn_k8s.kube.watch import StopEvent, list_then_watch  # noqa: E402
from sandbox import control_plane  # noqa: E402
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
    """One lab central (NB, SB, northd), an API server (ours in this process, or a real
    control plane), and at most one watcher."""

    def __init__(self, workdir: str, *, watcher_args: tuple[str, ...] = (),
                 control_plane: str = "embedded") -> None:
        self.workdir = workdir
        self.lab = Lab()
        self.real = control_plane == "real"
        self.kube: Any = (control_plane_for(workdir) if self.real else
                          KubeApiServer(bookmark_interval=5.0, history_limit=200_000))
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

    @property
    def params(self) -> ConnectionParams:
        """How a client of ours reaches the API server (as the watcher's kubeconfig says)."""
        if self.real:
            return ConnectionParams(server=self.kube.url, token=self.kube.admin_token,
                                    ca_file=self.kube.ca_file)
        return ConnectionParams(server=self.kube.url)

    def start_watcher(self, name: str = "watcher") -> WatcherProcess:
        self.watcher = WatcherProcess(self.workdir, nb=self.lab.nb, kubeconfig=self.kubeconfig,
                                      name=name, extra=self.watcher_args, log_level="info")
        self.watcher.start()
        return self.watcher

    def create_pods(self, bodies: list[dict[str, Any]]) -> None:
        if not self.real:
            for body in bodies:
                self.kube.create("pods", body)
            return
        with ThreadPoolExecutor(8) as pool:   # kube-apiserver: ~1,000 creates/s this way
            list(pool.map(lambda b: self.kube.create("pods", b), bodies))

    def pids(self) -> dict[str, int]:
        c = self.lab.central_dir
        out = {"bench" if self.real else "bench+apiserver": os.getpid()}
        if self.real:
            out.update(self.kube.pids)
        for name, label in (("nb", "nb-ovsdb"), ("sb", "sb-ovsdb"), ("northd", "ovn-northd")):
            with open(f"{c}/{name}.pid", encoding="ascii") as fh:
                out[label] = int(fh.read())
        if self.watcher is not None:
            out["watcher"] = self.watcher.pid
        return out

    def check(self) -> None:
        problems = differences(self.kube.list("pods"), self.lab.nb)
        if problems:
            raise AssertionError(f"NB differs from the cluster: {problems[:5]} "
                                 f"({len(problems)} problems)")


def control_plane_for(workdir: str) -> Any:
    return control_plane.ControlPlane(os.path.join(workdir, "control-plane"))


class AnnotationWatch:
    """A watch of every pod in this process, counting the pods whose `ovn` annotation it has
    seen: how the benchmark learns that kube-apiserver has the N-th annotation."""

    def __init__(self, params: ConnectionParams, resource_version: str) -> None:
        self._client = LiteClient(params)
        self._rv = resource_version
        self.annotated: set[str] = set()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()

    def __enter__(self) -> AnnotationWatch:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _run(self) -> None:
        try:
            stream = self._client.watch(resource_path("pods"), resource_version=self._rv,
                                        timeout_seconds=600, read_timeout=600)
        finally:
            self._started.set()
        try:
            for event in stream:
                meta = event["object"].get("metadata") or {}
                if "ovn" in (meta.get("annotations") or {}):
                    self.annotated.add(f"{meta.get('namespace')}/{meta.get('name')}")
        except KubeError:
            pass                     # closed by __exit__, or the server went: the wait says


def cpu_all(pids: dict[str, int]) -> dict[str, float]:
    return {k: cpu_of(p) for k, p in pids.items()}


def settle(pid: int, most: float = 5.0) -> None:
    """Wait until `pid` has used less than 5 ms of CPU in 0.2 s (its queues are empty)."""
    end = time.monotonic() + most
    last = cpu_of(pid)
    while time.monotonic() < end:
        time.sleep(0.2)
        now = cpu_of(pid)
        if now - last < 0.005:
            return
        last = now


def burst(n: int, workdir: str, args: tuple[str, ...], control_plane: str = "embedded",
          ceiling: bool = True) -> dict[str, Any]:
    with Env(workdir, watcher_args=args, control_plane=control_plane) as env:
        w = env.start_watcher()
        w.wait_ready(60)
        bodies = [pod_body(i) for i in range(n)]
        if env.real:
            os.kill(w.pid, signal.SIGSTOP)
            env.create_pods(bodies)
            listed = env.kube.client.request("GET", resource_path("pods"), params={"limit": 1})
            watch: Any = AnnotationWatch(env.params, listed["metadata"]["resourceVersion"])
        else:
            env.kube.pause()
            env.create_pods(bodies)
            env.kube.reset_counters()
            watch = None
        pids = env.pids()
        try:
            if watch is not None:
                watch.__enter__()
            cpu0 = cpu_all(pids)
            t0 = time.monotonic()
            log(f"burst {n} ({control_plane}): released the watch events at {time.time():.3f}")
            if env.real:
                os.kill(w.pid, signal.SIGCONT)
                wait_until(lambda: len(watch.annotated) >= n, 600, f"{n} annotations",
                           interval=0.005)
            else:
                env.kube.resume()
                wait_until(lambda: env.kube.request_count("patch", "pods") >= n, 600,
                           f"{n} annotations", interval=0.005)
            seconds = time.monotonic() - t0
            cpu_end = cpu_all(pids)
            settle(w.pid)
            cpu_settled = cpu_all(pids)
        finally:
            if watch is not None:
                watch.__exit__()
        env.check()
        cpu = {k: round(cpu_end[k] - cpu0[k], 3) for k in pids}
        per_pod = {k: round(1000 * (cpu_settled[k] - cpu0[k]) / n, 3) for k in pids}
        result = {"pods": n, "control_plane": control_plane, "seconds": seconds,
                  "rate": n / seconds, "cpu": cpu, "cpu_ms_per_pod": per_pod,
                  "rss_mb": memory_of(w.pid)[0],
                  "nb_txns": w.metric("ovnk8s_watcher_nb_transactions_total", result="ok")}
        log(f"burst {n} ({control_plane}): {seconds:.2f}s = {n / seconds:.0f} pods/s, "
            f"{result['nb_txns']:.0f} NB transactions, CPU ms per pod {per_pod}")
        if ceiling:
            w.stop()
            env.watcher = None
            result["ceiling"] = patch_ceiling(env, [b["metadata"] for b in bodies],
                                              annotation_workers(args))
            result["ratio"] = result["rate"] / result["ceiling"]["rate"]
        return result


def annotation_workers(args: tuple[str, ...]) -> int:
    """The watcher's --annotation-workers among `args`, else its default."""
    for i, arg in enumerate(args):
        if arg.startswith("--annotation-workers="):
            return int(arg.split("=", 1)[1])
        if arg == "--annotation-workers" and i + 1 < len(args):
            return int(args[i + 1])
    from ovn_k8s.config import OPTIONS

    return int(OPTIONS["annotation_workers"].default)


def patch_ceiling(env: Env, pods: list[dict[str, Any]], connections: int) -> dict[str, Any]:
    """The API server's raw annotation-PATCH rate: a minimal client (http.client, one
    keep-alive connection per thread, the answer read and not parsed) in its own process,
    PATCHing every pod once with an annotation of the watcher's size."""
    spec = {"server": env.params.server, "token": env.params.token,
            "ca_file": env.params.ca_file, "connections": connections,
            "paths": [resource_path("pods", namespace=m["namespace"], name=m["name"])
                      for m in pods]}
    pids = {k: p for k, p in env.pids().items() if k not in ("watcher", "bench")}
    cpu0 = cpu_all(pids)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--patch-client"],
                          input=json.dumps(spec), capture_output=True, text=True, check=True,
                          timeout=600)
    cpu = cpu_all(pids)
    out = json.loads(proc.stdout)
    n = len(pods)
    out["cpu_ms_per_patch"] = {k: round(1000 * (cpu[k] - cpu0[k]) / n, 3) for k in pids}
    out["cpu_ms_per_patch"]["client"] = round(1000 * out.pop("client_cpu") / n, 3)
    log(f"PATCH ceiling ({connections} connections): {out['rate']:.0f}/s, CPU ms per PATCH "
        f"{out['cpu_ms_per_patch']}")
    return out


def patch_client() -> int:
    """--patch-client: the minimal PATCH client of patch_ceiling (a JSON spec on stdin)."""
    spec = json.load(sys.stdin)
    url = urllib.parse.urlsplit(spec["server"])
    ctx = ssl.create_default_context(cafile=spec["ca_file"]) if url.scheme == "https" else None
    headers = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
    if spec["token"]:
        headers["Authorization"] = f"Bearer {spec['token']}"
    paths = spec["paths"]
    k = spec["connections"]
    errors: list[str] = []

    def run(first: int) -> None:
        conn = (http.client.HTTPSConnection(url.hostname, url.port, context=ctx) if ctx else
                http.client.HTTPConnection(url.hostname, url.port))
        for i in range(first, len(paths), k):
            value = json.dumps({"ip_address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/20",
                                "mac_address": "0a:58:0a:80:00:05",
                                "gateway_ip": "10.128.0.1"}, separators=(",", ":"))
            body = json.dumps({"metadata": {"annotations": {"bench-ceiling": value}}},
                              separators=(",", ":")).encode()
            conn.request("PATCH", paths[i], body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errors.append(f"{paths[i]}: {resp.status}")
        conn.close()
    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - t0
    usage = os.times()
    print(json.dumps({"patches": len(paths), "connections": k, "seconds": seconds,
                      "rate": len(paths) / seconds, "errors": errors[:5],
                      "client_cpu": usage.user + usage.system}))
    return 1 if errors else 0


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
        nb_pid = env.pids()["nb-ovsdb"]
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


SERVER_NAMES = {"embedded": "our API server", "real": "kube-apiserver"}


def burst_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    n, cp = r["pods"], r["control_plane"]
    server = SERVER_NAMES[cp]
    target = ">= 1000 pods/s" if cp == "embedded" else ">= 400 pods/s"
    rows = [(f"burst of {n} pods, {server}: API event -> port + annotation",
             f"{r['rate']:.0f} pods/s ({r['seconds']:.2f} s, {r['nb_txns']:.0f} NB txns)",
             target)]
    per_pod = r["cpu_ms_per_pod"]
    rows.append((f"CPU ms per pod in that burst ({server}), by process",
                 ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_pod.items(),
                                                             key=lambda kv: -kv[1]))
                 + f"; all {sum(per_pod.values()):.2f}",
                 "watcher <= 1.0" if cp == "real" else "-"))
    if "ceiling" in r:
        c = r["ceiling"]
        rows.append((f"raw annotation-PATCH ceiling of {server} ({c['connections']} "
                     "connections, minimal client)",
                     f"{c['rate']:.0f} PATCH/s; burst / ceiling = {r['ratio']:.2f}; CPU ms per "
                     "PATCH " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(
                         c["cpu_ms_per_patch"].items(), key=lambda kv: -kv[1])), "-"))
    return rows


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
    parser.add_argument("--control-plane", choices=("embedded", "real", "both"),
                        help="the API server(s) of the burst (default: both when the real "
                        "control plane's binaries are found, else embedded); the other "
                        "scenarios use ours")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the PATCH-ceiling measurement after each burst")
    parser.add_argument("--patch-client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.patch_client:
        return patch_client()
    if os.geteuid() != 0:
        print("watcher_bench: needs root (the lab uses network namespaces)", file=sys.stderr)
        return 1
    only = set(args.only or ("burst", "original", "steady", "sync"))
    wargs = tuple(args.watcher_arg)
    planes = {"embedded": ["embedded"], "real": ["real"], "both": ["embedded", "real"],
              None: ["embedded", "real"] if control_plane.find_assets() else ["embedded"]
              }[args.control_plane]
    if "real" in planes and (reason := control_plane.not_run_reason()):
        print(f"watcher_bench: no real control plane: {reason}", file=sys.stderr)
        return 1
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
                for cp in planes:
                    name = f"burst{n}" + ("" if cp == "embedded" else f"-{cp}")
                    r = results[name] = run(name, lambda d, n=n, cp=cp: burst(
                        n, d, wargs, cp, ceiling=not args.no_ceiling))
                    rows += burst_rows(r)
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
