"""ovn-k8s-lab: run the topology demo on a real OVN lab, or tear labs down."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sandbox.lab.cluster import REGISTRY, Lab, down_dir, sweep_stale
from sandbox.lab.demo import Demo


def demo(args: argparse.Namespace) -> int:
    lab = Lab(prefix=args.prefix) if args.prefix else Lab()
    try:
        return Demo(lab).run(nodes=args.nodes, db_cluster=args.db_cluster)
    finally:
        if args.keep:
            print(f"\nlab kept: namespaces {lab.prefix}-*, state in {lab.dir}")
            print(f"  ovn-nbctl --db={lab.nb} show")
            print(f"  ip netns exec {lab.prefix}-pod1 ping {'10.244.2.10' if args.nodes > 1 else '10.244.1.2'}")
            print(f"  ovn-k8s-lab down {lab.prefix}")
        else:
            lab.down()


def down(args: argparse.Namespace) -> int:
    if args.stale:
        for name in sweep_stale():
            print(f"removed stale lab {name}")
        return 0
    names = args.prefixes or sorted(os.listdir(REGISTRY)) if os.path.isdir(REGISTRY) else args.prefixes
    import json

    for name in names:
        try:
            with open(os.path.join(REGISTRY, name), encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            print(f"ovn-k8s-lab: no lab named {name}", file=sys.stderr)
            continue
        down_dir(info["dir"], name)
        print(f"removed lab {name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovn-k8s-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="build a cluster with ovn-k8s-overlay and check it with real "
                                    "packets (needs root)")
    d.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    d.add_argument("--db-cluster", type=int, default=0, metavar="N",
                   help="run the NB and SB as RAFT clusters of N members (default 0: one server each)")
    d.add_argument("--keep", action="store_true",
                   help="leave the lab running to poke at it; remove it later with 'down'")
    d.add_argument("--prefix", help="name prefix of the lab's namespaces (default: random)")
    d.set_defaults(func=demo)
    w = sub.add_parser("down", help="remove labs: every namespace, link, daemon and file they made")
    w.add_argument("prefixes", nargs="*", metavar="PREFIX", help="labs to remove (default: all)")
    w.add_argument("--stale", action="store_true",
                   help="only labs whose creating process is gone (after a crash)")
    w.set_defaults(func=down)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("ovn-k8s-lab: must run as root (network namespaces, OVS daemons)", file=sys.stderr)
        return 1
    return int(args.func(args))
