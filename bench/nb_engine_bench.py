#!/usr/bin/env python3
"""Benchmark of the NB engine's keyed mode with the services controller, against a real NB
ovsdb-server + ovn-northd (a lab central). Not part of the test suite. Needs root.

    .venv/bin/python bench/nb_engine_bench.py [--services 1000] [--keys 200]

The outcomes (one transaction per sync, per changed key, none for an unchanged key) are
asserted by tests/integration/test_services_nb.py; this prints how long each one takes:

- sync: N NodePort services with two gateways (3N load balancers) written from nothing;
- one changed key: a single service's backends changed, reconciled alone (one transaction);
- one unchanged key: the same reconcile again (a comparison against the cache, no NB write);
- changed batch: every service's backends changed, reconciled in one call;
- restart sync: a fresh reconciler seeds its cache from the NB and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import netaddr  # noqa: E402

from ovn_k8s import naming  # noqa: E402
from ovn_k8s.desired import topology  # noqa: E402
from ovn_k8s.nb import connection  # noqa: E402
from ovn_k8s.overlay import apply_rows  # noqa: E402
from sandbox.lab.cluster import Lab  # noqa: E402
from watcher.services import ServiceInput, ServiceReconciler  # noqa: E402

CLUSTER = netaddr.IPNetwork("10.244.0.0/16")
JOIN = netaddr.IPNetwork("100.64.0.0/16")


def topology_rows(nb: Any) -> None:
    spec = topology.MasterSpec("node1", CLUSTER, JOIN)
    apply_rows(nb, scopes=[naming.OWNER_CLUSTER], build=lambda v: topology.master_rows(spec), timeout=30)
    for index in (1, 2):
        node = f"node{index}"
        gw = topology.GatewaySpec(node=node, system_id=f"chassis-{index}", cluster_subnet=CLUSTER,
                                  join_subnet=JOIN, join_ip=netaddr.IPAddress(f"100.64.0.{index + 1}"),
                                  physical_ip=netaddr.IPNetwork(f"192.0.2.{9 + index}/24"),
                                  physical_mac=f"0a:00:00:00:00:0{index}", port_name="eth1")
        apply_rows(nb, scopes=[naming.owner_gateway(node)], build=lambda v, g=gw: topology.gateway_rows(g),
                   timeout=30)


def item(i: int, backend: str) -> ServiceInput:
    name = f"s{i}"
    svc = {"metadata": {"namespace": "default", "name": name, "uid": f"uid-{name}"},
           "spec": {"type": "NodePort", "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
                    "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30000 + i}]}}
    eps = [{"metadata": {"namespace": "default", "name": f"{name}-x",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}
                          for ip in ("10.244.1.5", backend)],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
    return ServiceInput(svc, eps)


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000, help="NodePort services (default 1000)")
    parser.add_argument("--keys", type=int, default=200,
                        help="single-key reconciles timed, changed and unchanged (default 200)")
    args = parser.parse_args()
    n, k = args.services, min(args.keys, args.services)
    lab = Lab()
    try:
        lab.up_central()
        nb = connection.connect(lab.nb, "OVN_Northbound", what="NB", timeout=30)
        try:
            topology_rows(nb)
            rec = ServiceReconciler(nb, timeout=120)
            sync_s = timed(lambda: rec.sync({f"default/s{i}": item(i, "10.244.2.5") for i in range(n)}))
            one_s = timed(lambda: [rec.reconcile({f"default/s{i}": item(i, "10.244.2.6")}) for i in range(k)])
            noop_s = timed(lambda: [rec.reconcile({f"default/s{i}": item(i, "10.244.2.6")}) for i in range(k)])
            batch = {f"default/s{i}": item(i, "10.244.2.7") for i in range(n)}
            batch_s = timed(lambda: rec.reconcile(batch))
            again = ServiceReconciler(nb, timeout=120)
            restart_s = timed(lambda: again.sync(batch))
            writes = again.transactions
        finally:
            connection.disconnect(nb)
    finally:
        lab.down()
    print(f"\nMachine: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average at end {os.getloadavg()[0]:.2f}\n")
    print("| measurement | result |")
    print("|---|---|")
    print(f"| sync of {n} NodePort services ({3 * n} load balancers), one transaction | {sync_s:.2f} s |")
    print(f"| one changed key (one transaction), mean of {k} | {one_s / k * 1000:.2f} ms |")
    print(f"| one unchanged key (no NB write), mean of {k} | {noop_s / k * 1000:.3f} ms |")
    print(f"| {n} changed keys in one call | {batch_s:.2f} s |")
    print(f"| restart: a new reconciler's sync of the same {n} | {restart_s:.2f} s, {writes} transactions |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
