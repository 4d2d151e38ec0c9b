"""ovn-k8s-overlay master-init | minion-init | gateway-init: the argparse front end of
ovn_k8s/overlay.py, which builds the cluster's OVN topology (idempotent; run on each node).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ovn_k8s import ipam, naming, overlay, process

PROG = "ovn-k8s-overlay"
EXTRAS = ("mtu", "join_subnet", "service_cluster_ip_range", "cni_conf_dir", "cni_bin_dir",
          "cni_plugin", "kubeconfig", "k8s_api_server", "k8s_api_token", "k8s_ca_certificate",
          "node_subnet_timeout")


def master_init(args: argparse.Namespace) -> int:
    node = naming.node_name(args.node_name)
    cluster = ipam.parse_cidr(args.cluster_ip_subnet, "--cluster-ip-subnet")
    subnet = ipam.parse_cidr(args.master_switch_subnet, "--master-switch-subnet")
    overlay.master_init(args, node=node, cluster=cluster, subnet=subnet)
    print("Initialization complete.")
    return 0


def minion_init(args: argparse.Namespace) -> int:
    node = naming.node_name(args.node_name)
    cluster = ipam.parse_cidr(args.cluster_ip_subnet, "--cluster-ip-subnet")
    subnet = (ipam.parse_cidr(args.minion_switch_subnet, "--minion-switch-subnet")
              if args.minion_switch_subnet else None)
    overlay.minion_init(args, node=node, cluster=cluster, subnet=subnet)
    print("Initialization complete.")
    return 0


def gateway_init(args: argparse.Namespace) -> int:
    node = naming.node_name(args.node_name)
    cluster = ipam.parse_cidr(args.cluster_ip_subnet, "--cluster-ip-subnet")
    physical_ip = ipam.parse_ip_with_mask(args.physical_ip, "--physical-ip")
    default_gw = ipam.parse_ip(args.default_gw, "--default-gw") if args.default_gw else None
    rampout = [ipam.parse_cidr(s.strip(), "--rampout-ip-subnets")
               for s in (args.rampout_ip_subnets or "").split(",") if s.strip()]
    overlay.gateway_init(args, node=node, cluster=cluster, physical_ip=physical_ip,
                         default_gw=default_gw, rampout=rampout,
                         physical_interface=args.physical_interface,
                         bridge_interface=args.bridge_interface)
    print("Initialization complete.")
    return 0


# --- argument parsing --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Build the cluster's OVN topology (idempotent; run on each node). "
        "The global options go before or after the command.")
    process.shared_flags_anywhere(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def subcommand(name: str, help_text: str, extra: Sequence[str]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           parents=[process.global_parent(extra, suppress_defaults=True)])
        p.add_argument("--node-name", required=True,
                       help="this node's name, exactly as the kubelet reports it (lower-cased)")
        p.add_argument("--cluster-ip-subnet", required=True, metavar="CIDR",
                       help="the cluster-wide pod subnet, e.g. 10.244.0.0/16")
        return p

    m = subcommand("master-init", "Create the cluster router, join switch, load balancer groups "
                   "and the master's own node switch and management port.",
                   ("mtu", "join_subnet", "service_cluster_ip_range"))
    m.add_argument("--master-switch-subnet", required=True, metavar="CIDR",
                   help="the master's node subnet, inside the cluster subnet, e.g. 10.244.0.0/24")
    m.set_defaults(func=master_init)

    n = subcommand("minion-init", "Create this node's switch, its router port and management "
                   "port, and install the CNI configuration.",
                   ("mtu", "cni_conf_dir", "cni_bin_dir", "cni_plugin", "service_cluster_ip_range",
                    "kubeconfig", "k8s_api_server", "k8s_api_token", "k8s_ca_certificate",
                    "node_subnet_timeout"))
    n.add_argument("--minion-switch-subnet", metavar="CIDR",
                   help="this node's pod subnet, inside the cluster subnet, e.g. 10.244.1.0/24 "
                        "(default: the subnet the watcher gave this node, from its annotation "
                        "ovn-k8s/node-subnet, waited for up to --node-subnet-timeout)")
    n.set_defaults(func=minion_init)

    g = subcommand("gateway-init", "Make this node a gateway: gateway router bound to this "
                   "chassis, external switch, SNAT and routes.", ())
    mode = g.add_mutually_exclusive_group(required=True)
    mode.add_argument("--physical-interface", metavar="NIC",
                      help="a NIC dedicated to the gateway: it is moved into br-int and its "
                           "address flushed (the gateway router takes it over)")
    mode.add_argument("--bridge-interface", metavar="BRIDGE",
                      help="an OVS bridge holding a NIC shared with the host (see "
                           "ovn-k8s-util nics-to-bridge); the router shares its MAC and IP")
    g.add_argument("--physical-ip", required=True, metavar="IP/LEN",
                   help="the gateway router's external address with its prefix length")
    g.add_argument("--default-gw", metavar="IP",
                   help="next hop of the gateway router's default route (may be off-subnet)")
    g.add_argument("--rampout-ip-subnets", metavar="CIDR[,CIDR...]",
                   help="source subnets whose traffic must leave through this gateway")
    g.set_defaults(func=gateway_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = process.fill_defaults(build_parser().parse_args(argv),
                                 (*process.GLOBAL_OPTIONS, *EXTRAS))
    return process.run(PROG, args.func, args)
