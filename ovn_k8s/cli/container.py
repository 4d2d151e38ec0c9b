"""ovn-container: networks, endpoints and network containers (see ovn_k8s/docker/container.py).

    ovn-container init --bridge BR --overlay-mode|--underlay-mode
    ovn-container net-create NAME SUBNET            prints the network's UUID
    ovn-container net-list
    ovn-container net-delete NAME|UUID
    ovn-container endpoint-create NETWORK [NAME]    prints the endpoint's UUID
    ovn-container endpoint-list
    ovn-container endpoint-delete NAME|UUID
    ovn-container container-create --network=EP [--network=EP ...]   prints the container's ID

The NB address comes as for every command (--ovn-nb > OVN_K8S_OVN_NB > config file > the local
OVS' external_ids:ovn-nb, which `ovn-integrate set-ipam` sets). Underlay mode takes the VM's
logical port from --parent or env OS_VIF_ID, as the original. Lists are tables in the format of
the original's `neutron net-list` / `port-list`. Docker is its Engine API (ovn_k8s/docker/engine.py)
at --docker-host > DOCKER_HOST > unix:///var/run/docker.sock; no docker CLI is needed.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Sequence

from ovn_k8s import config, process
from ovn_k8s.docker import container as steps
from ovn_k8s.docker import engine
from ovn_k8s.docker.nbstore import DockerNb
from ovn_k8s.local_ovsdb import LocalOvsdb

PROG = "ovn-container"
SHARED = process.GLOBAL_OPTIONS


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The neutron client's table: +---+ rules, | cells |, left-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])


def _run(args: argparse.Namespace) -> int:
    pre = config.resolve(args, ("ovs_db", "timeout"))
    with LocalOvsdb(pre.ovs_db, timeout=pre.timeout) as ovs:
        if args.command == "init":
            steps.init(ovs, args.bridge, "overlay" if args.overlay_mode else "underlay")
            return 0
        cfg = steps.settings(ovs, getattr(args, "parent", None))
        gcfg = config.resolve(args, SHARED, ovs_external_ids=ovs.external_ids)
        system_id = ovs.external_ids().get("system-id") or socket.gethostname()
        nb = DockerNb(process.connect_nb(gcfg), timeout=gcfg.timeout, system_id=system_id)
        try:
            if args.command == "net-create":
                print(steps.net_create(nb, args.name, args.subnet))
            elif args.command == "net-list":
                print(table(("id", "name", "subnets"), steps.net_list(nb)))
            elif args.command == "net-delete":
                steps.net_delete(nb, args.network)
            elif args.command == "endpoint-create":
                print(steps.endpoint_create(nb, cfg, args.network, args.name).name)
            elif args.command == "endpoint-list":
                rows = [(ep.name, ep.external_ids.get("ovn-k8s/name", ""), ep.mac,
                         json.dumps({"network": ep.switch, "ip_address": str(ep.ip)}))
                        for ep in steps.endpoint_list(nb)]
                print(table(("id", "name", "mac_address", "fixed_ips"), rows))
            elif args.command == "endpoint-delete":
                steps.endpoint_delete(nb, ovs, args.endpoint, _docker(args))
            elif args.command == "container-create":
                print(steps.container_create(nb, ovs, cfg, args.network, _docker(args), args.image,
                                             bind_timeout=gcfg.timeout))
        finally:
            nb.close()
    return 0


def _docker(args: argparse.Namespace) -> engine.DockerApi:
    return engine.DockerApi(engine.resolve_host(args.docker_host))


def _docker_host_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--docker-host", metavar="URL",
                   help=f"the Docker Engine API: unix:///PATH or tcp://HOST:PORT (default: env "
                   f"{engine.HOST_ENV}, else {engine.DEFAULT_HOST})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="OVN networks and endpoints for Docker "
                                     "containers, with the NB as the IPAM.")
    process.shared_flags_anywhere(parser, SHARED)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parent = process.option_parent(SHARED, suppress_defaults=True)
    p = sub.add_parser("init", parents=[parent], help="set the mode and the bridge of this host (VM)")
    p.add_argument("--bridge", required=True, metavar="BR")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--overlay-mode", action="store_true")
    mode.add_argument("--underlay-mode", action="store_true")
    p = sub.add_parser("net-create", parents=[parent], help="create a network; prints its UUID")
    p.add_argument("name", metavar="NAME")
    p.add_argument("subnet", metavar="SUBNET")
    sub.add_parser("net-list", parents=[parent], help="list the networks")
    p = sub.add_parser("net-delete", parents=[parent], help="delete a network without endpoints")
    p.add_argument("network", metavar="NAME|UUID")
    p = sub.add_parser("endpoint-create", parents=[parent], help="create an endpoint; prints its UUID")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--parent", metavar="PORT", help=f"underlay: the VM's logical port (env {steps.PARENT_ENV})")
    sub.add_parser("endpoint-list", parents=[parent], help="list the endpoints")
    p = sub.add_parser("endpoint-delete", parents=[parent],
                       help="delete an endpoint (and its network container with its last endpoint)")
    p.add_argument("endpoint", metavar="NAME|UUID")
    _docker_host_flag(p)
    p = sub.add_parser("container-create", parents=[parent],
                       help="a network container holding the endpoints; prints its ID")
    p.add_argument("--network", action="append", required=True, metavar="EP")
    p.add_argument("--image", default="busybox", help="the network container's image (default busybox)")
    _docker_host_flag(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = process.fill_defaults(build_parser().parse_args(argv), SHARED)
    return process.run(PROG, _run, args)
