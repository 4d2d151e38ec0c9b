"""ovn-integrate: a host's OVS settings for OVN (see ovn_k8s/docker/integrate.py).

    ovn-integrate create-integration-bridge
    ovn-integrate set-ipam IP | set-ipam NB-ADDR SB-ADDR
    ovn-integrate set-tep IP
    ovn-integrate set-encap-type geneve|vxlan|stt
    ovn-integrate nics-to-bridge NIC [NIC...]

Silent on success, as the original; every command is idempotent; an error is one line on
stderr and exit status 1, with nothing written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ovn_k8s import config, netlink, process
from ovn_k8s.docker import integrate
from ovn_k8s.local_ovsdb import LocalOvsdb
from ovn_k8s.nic_bridge import nic_to_bridge

PROG = "ovn-integrate"
SHARED = ("ovs_db", "timeout", "log_level", "log_file")


def _run(args: argparse.Namespace) -> int:
    cfg = config.resolve(args, SHARED)
    if args.command == "nics-to-bridge":
        for nic in args.nics:
            netlink.require_link(nic, "NIC")
    with LocalOvsdb(cfg.ovs_db, timeout=cfg.timeout) as ovs:
        if args.command == "create-integration-bridge":
            integrate.create_integration_bridge(ovs)
        elif args.command == "set-ipam":
            integrate.set_ipam(ovs, args.address, args.sb)
        elif args.command == "set-tep":
            integrate.set_tep(ovs, args.ip)
        elif args.command == "set-encap-type":
            integrate.set_encap_type(ovs, args.type)
        else:
            for nic in args.nics:
                nic_to_bridge(ovs, nic)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Set up a host's Open vSwitch for OVN.")
    process.shared_flags_anywhere(parser, SHARED)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = process.option_parent(SHARED, suppress_defaults=True)
    sub.add_parser("create-integration-bridge", parents=[parent],
                   help="create br-int with the settings OVN needs")
    p = sub.add_parser("set-ipam", parents=[parent], help="where the OVN central databases are")
    p.add_argument("address", metavar="IP|NB-ADDR", help="the central host's IP (NB tcp:IP:6641, "
                   "SB tcp:IP:6642), or the NB's OVSDB address")
    p.add_argument("sb", nargs="?", metavar="SB-ADDR", help="the SB's OVSDB address (with NB-ADDR)")
    p = sub.add_parser("set-tep", parents=[parent], help="this host's tunnel endpoint IP")
    p.add_argument("ip", metavar="IP")
    p = sub.add_parser("set-encap-type", parents=[parent], help="geneve (default), vxlan or stt")
    p.add_argument("type", metavar="TYPE")
    p = sub.add_parser("nics-to-bridge", parents=[parent],
                       help="move each NIC into an OVS bridge br<NIC>, with its addresses and routes")
    p.add_argument("nics", nargs="+", metavar="NIC")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = process.fill_defaults(parser.parse_args(argv), SHARED)
    if args.command is None:
        parser.print_help(sys.stderr)     # the original printed its usage without an argument
        return 1
    return process.run(PROG, _run, args)
