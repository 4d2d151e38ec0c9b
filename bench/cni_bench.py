#!/usr/bin/env python3
"""CNI plugin benchmark: ADD/DEL latency of the whole plugin process, and a burst of ADDs.

Runs a one-node lab (real NB/SB, northd, ovs-vswitchd, ovn-controller in namespaces) and our
in-process API server (on 127.0.0.1, reached from the node namespace through a lab Forwarder).
The benchmark plays the master watcher: every pod exists in the API server with its `ovn`
annotation and its logical switch port before the plugin runs, so the numbers are the plugin's
own cost: process start, imports, OVSDB, the API GET, netlink, OVS attach and the wait for
ovn-controller's `ovn-installed`.

Each call is one process started the way a runtime starts it, inside the node's network
namespace (`nsenter --net=...`, which is what "the node" is in the lab), with the CNI_*
environment and the network configuration on stdin. Two executables are timed:

- `installed`: .venv/bin/ovn-k8s-cni-overlay, what `pip install -e` installed: a copy of
  bin/ovn-k8s-cni-overlay (PEP 660, see pyproject.toml) whose imports go through setuptools'
  editable finder; this is what minion-init links into the runtime's plugin directory;
- `direct`: the venv python running bin/ovn-k8s-cni-overlay, as a regular install's script does.

Usage (root): .venv/bin/python bench/cni_bench.py [--pods 40] [--burst 50] [--exe both]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.kubeapi.server import KubeApiServer  # noqa: E402
from sandbox.lab.cluster import Lab, Node  # noqa: E402
from sandbox.lab.forward import Forwarder  # noqa: E402

VENV_BIN = os.path.dirname(sys.executable)
EXES = {
    "installed": [os.path.join(VENV_BIN, "ovn-k8s-cni-overlay")],
    "direct": [sys.executable, os.path.join(REPO, "bin", "ovn-k8s-cni-overlay")],
}
SUBNET, GATEWAY, CLUSTER = "10.244.1", "10.244.1.1", "10.244.0.0/16"


def overlay(node: Node, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
    env["OVN_K8S_CONFIG"] = "/dev/null"
    subprocess.run(["ip", "netns", "exec", node.netns, os.path.join(VENV_BIN, "ovn-k8s-overlay"), *args,
                    f"--ovs-db={node.ovs_db}", f"--ovn-nb={node.lab.nb}"], check=True, capture_output=True,
                   env=env, timeout=120)


class Bench:
    def __init__(self, lab: Lab, node: Node, api: KubeApiServer, url: str) -> None:
        self.lab, self.node, self.api = lab, node, api
        self.log = f"{lab.dir}/cni.log"
        self.conf = {"cniVersion": "1.0.0", "name": "ovn-k8s", "type": "ovn-k8s-cni-overlay",
                     "ovsdb": node.ovs_db, "k8s_api_server": url, "log_file": self.log}
        self.count = 0
        self.conf_file = f"{lab.dir}/bench.conf"
        with open(self.conf_file, "w", encoding="utf-8") as f:
            json.dump(self.conf, f)

    def pods(self, n: int) -> list[tuple[str, str]]:
        """n annotated pods with logical ports, and their netns: [(pod name, netns path)]."""
        out = []
        lsp_cmds: list[str] = []
        for _ in range(n):
            self.count += 1
            i = self.count
            name, ip = f"bench{i}", f"{SUBNET}.{10 + i}"
            mac = f"0a:58:0a:f4:{i // 256 + 1:02x}:{i % 256:02x}"
            self.api.create("pods", {"metadata": {"name": name, "namespace": "bench", "annotations": {
                "ovn": json.dumps({"ip_address": f"{ip}/24", "mac_address": mac, "gateway_ip": GATEWAY})}},
                "spec": {"nodeName": self.node.name}}, namespace="bench")
            lsp_cmds += ["--", "lsp-add", self.node.name, f"bench_{name}", "--", "lsp-set-addresses",
                         f"bench_{name}", f"{mac} {ip}"]
            out.append((name, f"/run/netns/{self.lab.add_netns(name)}"))
        self.lab.nbctl(*lsp_cmds[1:])
        return out

    def start(self, exe: Sequence[str], command: str, pod: str, netns: str) -> Run:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": f"c-{pod}", "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
               "CNI_PATH": "/opt/cni/bin", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "PYTHONPATH": REPO,  # as a regular install would have it (and a broken easy-install.pth not)
               "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={pod}"}
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        with open(self.conf_file, encoding="utf-8") as stdin:
            # nsenter exec's the plugin: the PID is the plugin's, and wait4 gives its CPU time
            proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.node.netns}", *exe], stdin=stdin,
                                    stdout=out, stderr=err, env=env)
        return Run(proc, out, err, time.perf_counter())

    def steps(self, offset: int, command: str = "ADD") -> dict[str, float]:
        """Median ms per step of `command`, from the plugin's "done" log lines after `offset`."""
        per_step: dict[str, list[float]] = {}
        with open(self.log, encoding="utf-8") as f:
            f.seek(offset)
            for line in f:
                found = re.search(rf": {command} \S+ done: .* in (\d+) ms \((.*)\)$", line)
                if not found:
                    continue
                per_step.setdefault("total", []).append(float(found.group(1)))
                for part in found.group(2).split(", "):
                    step, value = part.rsplit(" ", 1)
                    per_step.setdefault(step, []).append(float(value))
        return {step: statistics.median(values) for step, values in per_step.items()}

    def call(self, exe: Sequence[str], command: str, pod: str, netns: str) -> Result:
        return self.start(exe, command, pod, netns).finish()


@dataclass
class Result:
    wall: float  # seconds from start to exit
    cpu: float  # user + system seconds of the plugin process and the children it waited for
    ok: bool
    stdout: str
    stderr: str


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    out: IO[str]
    err: IO[str]
    t0: float

    def finish(self) -> Result:
        _, status, usage = os.wait4(self.proc.pid, 0)
        wall = time.perf_counter() - self.t0
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        texts = []
        for f in (self.out, self.err):
            f.seek(0)
            texts.append(f.read())
            f.close()
        return Result(wall, usage.ru_utime + usage.ru_stime, self.proc.returncode == 0, *texts)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


LAZY = """
import gc, json, time
gc.disable()  # as the executable does
t0 = time.perf_counter()
import ovn_k8s.cni.plugin
t1 = time.perf_counter()
from ovn_k8s import netlink
from ovn_k8s.cni import kubeapi
kubeapi.make_client(kubeapi.connection_params(kubeapi.ApiSettings(server="http://127.0.0.1:1"), dict)).close()
t2 = time.perf_counter()
netlink._pyroute2()
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
"""


def import_time() -> dict[str, float]:
    """What process start and imports cost: the bare interpreter, the plugin module's imports
    (-X importtime, cumulative), the imports ADD adds on its way (the http.client transport
    ovn_k8s.kube.lite, the pyroute2 parts), and VERSION as a whole process."""
    env = dict(os.environ, PYTHONPATH=REPO)

    def run(args: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env)
        return time.perf_counter() - t0

    runs = [subprocess.run([sys.executable, "-X", "importtime", "-c", "import gc; gc.disable(); "
                            "import ovn_k8s.cni.plugin"], capture_output=True, text=True, check=True, env=env).stderr
            for _ in range(7)]
    cumulative = []
    for text in runs:
        line = next(ln for ln in text.splitlines() if ln.rstrip().endswith("| ovn_k8s.cni.plugin"))
        cumulative.append(int(line.split("|")[1]) / 1e6)
    lazy = [json.loads(subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, check=True,
                                      env=env).stdout) for _ in range(7)]
    version = json.dumps({"cniVersion": "1.0.0"})
    return {
        "python -c pass (interpreter start)": statistics.median(run([sys.executable, "-c", "pass"]) for _ in range(10)),
        "import ovn_k8s.cni.plugin (-X importtime, cumulative)": statistics.median(cumulative),
        "+ ADD's lazy import of the API client (kube.lite)": statistics.median(x[1] for x in lazy),
        "(pyroute2 parts: node side only, not on ADD/DEL)": statistics.median(x[2] for x in lazy),
        "VERSION, whole process (direct)": statistics.median(
            run(["sh", "-c", f"echo '{version}' | CNI_COMMAND=VERSION {' '.join(EXES['direct'])} >/dev/null"])
            for _ in range(10)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=40, help="sequential ADD/DEL samples per executable")
    parser.add_argument("--burst", type=int, default=50, help="ADDs started at once on one node (0: none)")
    parser.add_argument("--exe", choices=["both", "installed", "direct"], default="both")
    parser.add_argument("--keep-log", metavar="FILE", help="copy the plugin's log file here at the end")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    exes = list(EXES) if args.exe == "both" else [args.exe]
    rows: list[tuple[str, str]] = []
    api = KubeApiServer().start()
    lab = Lab()
    fwd = None
    try:
        lab.up_central()
        node = lab.add_node("node1")
        overlay(node, "master-init", "--node-name=node1", f"--cluster-ip-subnet={CLUSTER}",
                f"--master-switch-subnet={SUBNET}.0/24")
        fwd = Forwarder(lab.ns("central"), lab.central_ip, api.port)
        bench = Bench(lab, node, api, fwd.url)
        assert bench.call(EXES["direct"], "ADD", *bench.pods(1)[0]).ok  # warm the page cache and ovn-controller
        load_before = os.getloadavg()[0]
        ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
        imports = import_time()  # first: the bursts below load the machine for a while

        for name in exes:
            pods = bench.pods(args.pods)
            offset = os.path.getsize(bench.log)
            adds = [bench.call(EXES[name], "ADD", pod, netns) for pod, netns in pods]
            steps = bench.steps(offset)
            offset = os.path.getsize(bench.log)
            dels = [bench.call(EXES[name], "DEL", pod, netns) for pod, netns in pods]
            del_steps = bench.steps(offset, "DEL")
            for result in adds + dels:
                if not result.ok:
                    print(f"call failed: {result.stdout} {result.stderr}", file=sys.stderr)
            for command, results in (("ADD", adds), ("DEL", dels)):
                walls, cpus = [r.wall for r in results], [r.cpu for r in results]
                rows.append((f"{command} wall p50 / p99 ({name}, n={len(results)})",
                             f"{ms(pct(walls, 50))} / {ms(pct(walls, 99))}"))
                rows.append((f"{command} CPU (user+sys) p50 ({name})", ms(pct(cpus, 50))))
            rows += [(f"ADD inside the process, median per step ({name})",
                      ", ".join(f"{k} {v:.0f}" for k, v in steps.items()) + " ms"),
                     (f"DEL inside the process, median per step ({name})",
                      ", ".join(f"{k} {v:.0f}" for k, v in del_steps.items()) + " ms"),
                     (f"failures ({name})", str(sum(not r.ok for r in adds + dels)))]

        for name in exes if args.burst else []:
            pods = bench.pods(args.burst)
            t0 = time.perf_counter()
            runs = [bench.start(EXES[name], "ADD", pod, netns) for pod, netns in pods]
            results = [run.finish() for run in runs]
            wall = time.perf_counter() - t0
            failed = [r for r in results if not r.ok]
            for r in failed[:3]:
                print(f"burst ADD failed: {r.stdout} {r.stderr}", file=sys.stderr)
            hosts = {json.loads(r.stdout)["interfaces"][0]["name"] for r in results if r.ok}
            bound = set(node.vsctl("--bare", "--columns=name", "find", "interface",
                                   "external_ids:ovn-installed=true").split())
            offset = os.path.getsize(bench.log)
            t0 = time.perf_counter()
            del_results = [run.finish() for run in [bench.start(EXES[name], "DEL", pod, netns)
                                                    for pod, netns in pods]]
            del_wall = time.perf_counter() - t0
            burst_del_steps = bench.steps(offset, "DEL")
            rows += [(f"{args.burst} ADDs at once on one node ({name}): wall, pods/s",
                      f"{wall:.2f} s, {args.burst / wall:.1f} pods/s"),
                     (f"  failures, distinct interfaces, bound by OVN ({name})",
                      f"{len(failed)}, {len(hosts)}, {len(hosts & bound)}"),
                     ("  CPU per ADD p50 (user+sys)", ms(pct([r.cpu for r in results], 50))),
                     (f"{args.burst} DELs at once ({name}): wall, failures",
                      f"{del_wall:.2f} s, {sum(not r.ok for r in del_results)}"),
                     ("  DEL inside the process, median per step",
                      ", ".join(f"{k} {v:.0f}" for k, v in burst_del_steps.items()) + " ms")]
        rows.append(("load average (1 min) before / after", f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"))
        for key, value in imports.items():
            rows.append((key, ms(value)))
    finally:
        if args.keep_log and os.path.exists(f"{lab.dir}/cni.log"):
            shutil.copy(f"{lab.dir}/cni.log", args.keep_log)
        if fwd is not None:
            fwd.close()
        api.stop()
        lab.down()

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"machine: {os.cpu_count()} cores ({cpu}), {platform.python_implementation()} "
          f"{platform.python_version()}, kernel {platform.release()}")
    width = max(len(k) for k, _ in rows)
    print(f"| {'metric'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
