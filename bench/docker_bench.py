#!/usr/bin/env python3
"""Docker benchmark: `docker run -d` on an ovn-docker-driver network versus `--network none`
on the same dockerd, and N containers started at once on the driver's network.

A one-host lab (real NB/SB, northd, ovs-vswitchd, ovn-controller in a namespace) with Debian's
dockerd 20.10 and ovn-docker-driver in that namespace (sandbox/lab/docker.py). Each `docker run`
is one Debian docker CLI process, timed from start to exit (the container is running, its port
bound by ovn-controller: Join waits for ovn-installed). `--network none` involves no driver,
so the difference is the driver's cost (IPAM, NB transactions, veth, OVS port, binding).

Usage (root): .venv/bin/python bench/docker_bench.py [--runs 10] [--burst 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sandbox.lab.cluster import Lab  # noqa: E402
from sandbox.lab.docker import DOCKER, IMAGE, DockerDriver, DockerEngine  # noqa: E402

BIN = os.path.dirname(sys.executable)


def timed_run(engine: DockerEngine, name: str, network: str) -> tuple[float, bool]:
    start = time.monotonic()
    proc = subprocess.run([DOCKER, "-H", engine.host, "run", "-d", "--init", "--name", name,
                           "--network", network, IMAGE, "sleep", "3600"],
                          capture_output=True, text=True, check=False, timeout=300)
    return time.monotonic() - start, proc.returncode == 0


def series(engine: DockerEngine, network: str, runs: int, tag: str) -> list[float]:
    times = []
    for i in range(runs):
        elapsed, ok = timed_run(engine, f"{tag}{i}", network)
        if not ok:
            raise SystemExit(f"docker run on {network} failed")
        times.append(elapsed)
    engine.docker("rm", "-f", *(f"{tag}{i}" for i in range(runs)))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    with Lab() as lab:
        lab.up_central()
        node = lab.add_node("h1")
        node.vsctl("--may-exist", "add-br", "br-int", "--", "set", "bridge", "br-int",
                   "fail-mode=secure", "other-config:disable-in-band=true")
        engine = DockerEngine(netns=node.netns, dir=f"{node.dir}/docker")
        driver = DockerDriver(engine, ovs_db=node.ovs_db, nb=lab.nb, bin_dir=BIN,
                              extra=("-vfile:info",))
        try:
            engine.start()
            engine.import_busybox()
            driver.start()
            engine.docker("network", "create", "-d", "ovn", "--ipam-driver", "ovn", "--subnet",
                          "10.200.0.0/16", "-o", "switch=bench", "bench")
            # Warm both paths once (image layers, first plugin contact).
            series(engine, "none", 1, "warm-none")
            series(engine, "bench", 1, "warm-ovn")
            none = series(engine, "none", args.runs, "none")
            ovn = series(engine, "bench", args.runs, "ovn")
            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=args.burst) as pool:
                results = list(pool.map(lambda i: timed_run(engine, f"burst{i}", "bench"),
                                        range(args.burst)))
            wall = time.monotonic() - start
            failures = sum(1 for _, ok in results if not ok)
            ports = len(lab.nbctl("lsp-list", "bench").splitlines())
            up = lab.nbctl("--bare", "--columns=up", "find", "Logical_Switch_Port", "up=true").split()
        finally:
            driver.stop()
            engine.destroy()

    def row(what: str, values: list[float]) -> str:
        return (f"| {what} | {len(values)} | {statistics.median(values):.3f} | {min(values):.3f} "
                f"| {max(values):.3f} |")

    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    print("| docker run -d | runs | median s | min s | max s |")
    print("| --- | --- | --- | --- | --- |")
    print(row("--network none", none))
    print(row("--network (ovn driver)", ovn))
    print(row(f"burst of {args.burst}, each", [t for t, _ in results]))
    print(f"\nburst of {args.burst} at once: {wall:.2f} s wall, {failures} failures, "
          f"{ports} logical ports, {len(up)} up")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
