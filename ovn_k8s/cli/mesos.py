"""ovn-mesos-init: tenants, their networks and gateways, published VIPs, and the plugin install.

    tenant-init | tenant-del | network-init | network-del | gateway-init | gateway-del |
    publish | unpublish | plugin-install

The argparse front end: each subcommand parses its flags, then calls ovn_k8s/mesos/
(`tenants`, `gateways`, `install`), which validates what needs the NB and writes its rows in
ONE transaction, so concurrent runs cannot collide. Re-running with the same arguments changes
nothing; with new arguments it converges. Only gateway-init and gateway-del touch the host:
they run on the gateway's chassis.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ovn_k8s import config, ipam, naming, process
from ovn_k8s.desired import mesos as build
from ovn_k8s.mesos import gateways, tenants
from ovn_k8s.mesos.install import (
    DCOS_DIRS,
    DEFAULT_PLUGIN_CNI_VERSION,
    MESOS_DIRS,
    PLUGIN,
    PLUGIN_CNI_VERSIONS,
    PluginInstall,
    install_plugin,
)
from ovn_k8s.mesos.session import Session

PROG = "ovn-mesos-init"
EXTRAS = ("join_subnet", "conntrack_zone")


def _tenant(args: argparse.Namespace) -> str:
    return naming.tenant_name(args.tenant_name)


# --- tenant-init / tenant-del -----------------------------------------------------------------------
def tenant_init(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    join = ipam.parse_cidr(config.resolve(args, ("join_subnet",)).join_subnet, "--join-subnet")
    with Session(args) as session:
        tenants.tenant_init(session, tenant, join)
    print("Initialization complete.")
    return 0


def tenant_del(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    with Session(args) as session:
        deleted = tenants.tenant_del(session, tenant, force=args.force)
    print(f"Tenant {tenant} deleted." if deleted else f"Tenant {tenant} does not exist: nothing to delete.")
    return 0


# --- network-init / network-del ---------------------------------------------------------------------
def network_init(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    network = naming.network_name(args.network_name)
    subnet = ipam.parse_cidr(args.subnet, "--subnet")
    with Session(args) as session:
        tenants.network_init(session, tenant, network, subnet)
    print("Initialization complete.")
    return 0


def network_del(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    network = naming.network_name(args.network_name)
    with Session(args) as session:
        deleted = tenants.network_del(session, tenant, network, force=args.force)
    print(f"Network {network} of tenant {tenant} deleted." if deleted
          else f"Network {network} of tenant {tenant} does not exist: nothing to delete.")
    return 0


# --- gateway-init / gateway-del ---------------------------------------------------------------------
def gateway_init(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    cluster = ipam.parse_cidr(args.cluster_ip_subnet, "--cluster-ip-subnet")
    physical_ip = ipam.parse_ip_with_mask(args.physical_ip, "--physical-ip")
    default_gw = ipam.parse_ip(args.default_gw, "--default-gw") if args.default_gw else None
    with Session(args) as session:
        gateways.gateway_init(session, tenant, cluster_subnet=cluster, physical_ip=physical_ip,
                              default_gw=default_gw, physical_interface=args.physical_interface,
                              bridge_interface=args.bridge_interface)
    print("Initialization complete.")
    return 0


def gateway_del(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    with Session(args) as session:
        router, deleted = gateways.gateway_del(session, tenant)
    print(f"Gateway {router} deleted." if deleted else f"Gateway {router} does not exist: nothing to delete.")
    return 0


# --- publish / unpublish ----------------------------------------------------------------------------
def publish(args: argparse.Namespace) -> int:
    tenant = _tenant(args)
    vip = build.parse_endpoint(args.vip, "--vip")
    backends = build.parse_backends(args.backends)
    with Session(args) as session:
        tenants.publish(session, tenant, args.protocol, vip, backends)
    print(f"Published {args.protocol} {vip} -> {backends}.")
    return 0


def unpublish(args: argparse.Namespace) -> int:
    vip = build.parse_endpoint(args.vip, "--vip")
    tenant = _tenant(args)
    with Session(args) as session:
        removed = tenants.unpublish(session, tenant, args.protocol, vip)
    print(f"Unpublished {args.protocol} {vip}." if removed else f"{args.protocol} {vip} was not published.")
    return 0


# --- plugin-install -------------------------------------------------------------------------------
def plugin_install(args: argparse.Namespace) -> int:
    done = install_plugin(PluginInstall(
        dcos=args.dcos, plugin_dir=args.plugin_dir, config_dir=args.config_dir, plugin=args.plugin,
        network_name=args.network_name, cni_version=args.cni_version, mtu=args.mtu,
        ovs_db=args.ovs_db, ovn_nb=args.ovn_nb))
    print(f"{done.link} -> {done.target}")
    print(f"{done.config}: network {args.network_name!r}, CNI {args.cni_version}")
    return 0


# --- argument parsing ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="OVN for Mesos: per-tenant routers, networks and gateways "
                               "(idempotent), published VIPs, and the CNI plugin install. "
                               "The global options go before or after the command.")
    process.shared_flags_anywhere(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def subcommand(name: str, help_text: str, extra: Sequence[str] = ()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text,
                           parents=[process.global_parent(extra, suppress_defaults=True)])
        p.add_argument("--tenant-name", required=True, metavar="TENANT",
                       help="the tenant: letters, digits, '.' and '-'")
        return p

    def force(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--force", action="store_true",
                       help=f"also delete the task ports still on {what} (default: refuse)")

    p = subcommand("tenant-init", "Create the tenant's router, its join switch and its load "
                   "balancers.", ("join_subnet",))
    p.set_defaults(func=tenant_init)
    p = subcommand("tenant-del", "Delete everything of the tenant: its networks, gateways, load "
                   "balancers, router and join switch (and, on a gateway chassis, release its NICs).")
    force(p, "its networks")
    p.set_defaults(func=tenant_del)

    p = subcommand("network-init", "Create a network of the tenant: a switch <tenant>_<network> "
                   "linked to the tenant router (subnets may repeat across tenants).")
    p.add_argument("--network-name", required=True, metavar="NAME",
                   help="the network name tasks ask for with the logical_switch label")
    p.add_argument("--subnet", required=True, metavar="CIDR",
                   help="the network's subnet; the tenant router takes its first address")
    p.set_defaults(func=network_init)
    p = subcommand("network-del", "Delete a network of the tenant.")
    p.add_argument("--network-name", required=True, metavar="NAME")
    force(p, "the network")
    p.set_defaults(func=network_del)

    p = subcommand("gateway-init", "Make this chassis a gateway of the tenant: gateway router "
                   "GR_<tenant>_<system-id>, SNAT of the cluster subnet, routes.", ("conntrack_zone",))
    p.add_argument("--cluster-ip-subnet", required=True, metavar="CIDR",
                   help="a subnet holding all of the tenant's networks: SNATed to --physical-ip")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--physical-interface", metavar="NIC",
                      help="a NIC for the gateways: moved into br-int, its address flushed; "
                           "several tenants may share it with their own --physical-ip")
    mode.add_argument("--bridge-interface", metavar="BRIDGE",
                      help="an OVS bridge holding a NIC shared with the host (see ovn-k8s-util "
                           "nics-to-bridge); the router shares its MAC and IP, and flows on the "
                           "bridge send only replies to the router's own traffic to OVN")
    p.add_argument("--physical-ip", required=True, metavar="IP/LEN",
                   help="the gateway router's external address with its prefix length")
    p.add_argument("--default-gw", metavar="IP", help="next hop of the gateway's default route")
    p.set_defaults(func=gateway_init)
    p = subcommand("gateway-del", "Remove this chassis' gateway of the tenant (and take its NIC "
                   "out of br-int when no other tenant uses it).")
    p.set_defaults(func=gateway_del)

    for name, func, text in (("publish", publish, "Publish task ports as a load-balancer VIP on "
                              "the tenant's gateway routers (VIP = a gateway's physical IP)."),
                             ("unpublish", unpublish, "Remove a published VIP.")):
        p = subcommand(name, text)
        p.add_argument("--vip", required=True, metavar="IP:PORT",
                       help="the public address, e.g. the gateway's physical IP and a port")
        if name == "publish":
            p.add_argument("--backends", required=True, metavar="IP:PORT[,IP:PORT...]",
                           help="the tasks' addresses and ports")
        p.add_argument("--protocol", choices=build.PROTOCOLS, default="tcp")
        p.set_defaults(func=func)

    p = sub.add_parser("plugin-install", help="Install ovn-mesos-plugin and its network config "
                       "for the Mesos agent (or DC/OS).",
                       description="Link ovn-mesos-plugin into the agent's CNI plugin directory "
                       "and write the network configuration the agent loads.")
    p.add_argument("--dcos", action="store_true",
                   help=f"use the DC/OS directories ({DCOS_DIRS[0]}, {DCOS_DIRS[1]})")
    p.add_argument("--plugin-dir", metavar="DIR",
                   help=f"--network_cni_plugins_dir of the agent (default {MESOS_DIRS[0]})")
    p.add_argument("--config-dir", metavar="DIR",
                   help=f"--network_cni_config_dir of the agent (default {MESOS_DIRS[1]})")
    p.add_argument("--plugin", metavar="PATH", help=f"the {PLUGIN} executable (default: from PATH)")
    p.add_argument("--network-name", default="ovn", metavar="NAME",
                   help="the CNI network name tasks use in network_infos (default ovn)")
    p.add_argument("--cni-version", default=DEFAULT_PLUGIN_CNI_VERSION,
                   choices=PLUGIN_CNI_VERSIONS,
                   help="result format the agent parses (default 0.2.0, what Mesos reads)")
    p.add_argument("--mtu", type=int, metavar="N", help="the tasks' interface MTU (default 1400)")
    # SUPPRESS: the same flags given before the command are kept (fill_defaults sets None).
    p.add_argument("--ovs-db", metavar="ADDR", default=argparse.SUPPRESS,
                   help="the local OVS database, if not the default")
    p.add_argument("--ovn-nb", metavar="ADDR", default=argparse.SUPPRESS,
                   help="the NB address (default: read from external_ids:ovn-nb at each call)")
    p.add_argument("--log-level", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--log-file", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=plugin_install)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = process.fill_defaults(build_parser().parse_args(argv),
                                 (*process.GLOBAL_OPTIONS, *EXTRAS))
    return process.run(PROG, args.func, args)
