"""ovn-k8s-util nics-to-bridge NIC [NIC...]: put each NIC into an OVS bridge br<NIC> and move its
addresses and routes onto the bridge, so the host keeps its connectivity while the NIC becomes
shareable with OVN (gateway-init --bridge-interface br<NIC>).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ovn_k8s import config, netlink, process
from ovn_k8s.local_ovsdb import LocalOvsdb
from ovn_k8s.nic_bridge import nic_to_bridge

PROG = "ovn-k8s-util"
SHARED = ("ovs_db", "timeout", "log_level", "log_file")


def nics_to_bridge(args: argparse.Namespace) -> int:
    cfg = config.resolve(args, SHARED)
    process.setup_logging(cfg.log_level, cfg.log_file)
    for nic in args.nics:
        netlink.require_link(nic, "NIC")
    with LocalOvsdb(cfg.ovs_db, timeout=cfg.timeout) as ovs:
        for nic in args.nics:
            print(f"{nic} -> {nic_to_bridge(ovs, nic)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Host utilities for ovn-k8s.")
    process.shared_flags_anywhere(parser, SHARED)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = process.option_parent(SHARED, suppress_defaults=True)
    n = sub.add_parser("nics-to-bridge", parents=[parent],
                       help="move each NIC into an OVS bridge br<NIC>, with its addresses and routes",
                       description="For each NIC: create OVS bridge br<NIC> (fail-mode standalone, "
                                   "MAC pinned to the NIC's), add the NIC to it, and move the NIC's "
                                   "static addresses and routes to the bridge. Idempotent.")
    n.add_argument("nics", nargs="+", metavar="NIC", help="interface to move (e.g. eth0)")
    n.set_defaults(func=nics_to_bridge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = process.fill_defaults(build_parser().parse_args(argv), SHARED)
    return process.run(PROG, args.func, args)
