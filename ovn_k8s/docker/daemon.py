"""ovn-docker-driver: the libnetwork remote network and IPAM driver, as an OVS-style daemon.

    ovn-docker-driver [--plugin-dir /run/docker/plugins] [--names ovn,openvswitch]
                      [--bridge br-int] [--mtu 1400] [--bind-timeout 20]
                      [--pidfile] [--detach] [--log-file] [-v...]

It listens on <plugin-dir>/<name>.sock for every name (Docker finds plugins there; the original
driver's name `openvswitch` makes its `docker network create -d openvswitch` lines run), must
run in dockerd's network namespace (Join hands Docker an interface by name), and reads the NB
address and TLS files as every command does (flag > OVN_K8S_* > config file > the local OVS'
external_ids:ovn-nb). SIGTERM, SIGINT and `ovs-appctl -t ovn-docker-driver exit` stop it; the
networks and endpoints stay in the NB for the next start.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ovn_k8s import config, ovs_daemon, process
from ovn_k8s.docker.driver import Driver, HostSettings
from ovn_k8s.docker.nbstore import DockerNb
from ovn_k8s.docker.server import PluginServer
from ovn_k8s.errors import ConfigError

LOG = logging.getLogger(__name__)
PROG = "ovn-docker-driver"
PARENT_ENV = "OS_VIF_ID"
PLUGIN_DIR = "/run/docker/plugins"
NAMES = ("ovn", "openvswitch")
OPTIONS = (*process.NB_OPTIONS, "ovs_db", "timeout")


def _bounded(kind: Callable[[str], Any], lo: float, hi: float, what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{what}: {text} is not in {lo:g}..{hi:g}")
        return value
    return parse


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(not n.replace("-", "").replace("_", "").isalnum() for n in names):
        raise argparse.ArgumentTypeError(f"--names: {text!r} is not a comma-separated list of names")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Docker libnetwork remote network and IPAM driver for OVN: "
        "`docker network create -d ovn --ipam-driver ovn --subnet S [-o switch=NAME] "
        "[-o router=NAME] NET` makes (or joins) an OVN logical switch; containers get logical "
        "ports bound by ovn-controller before they start.")
    parser.add_argument("--plugin-dir", default=PLUGIN_DIR, metavar="DIR",
                        help=f"where Docker looks for plugin sockets (default {PLUGIN_DIR})")
    parser.add_argument("--names", type=_names, default=list(NAMES), metavar="NAME[,NAME...]",
                        help="plugin names, one socket each (default ovn,openvswitch)")
    parser.add_argument("--bridge", default="br-int", metavar="BRIDGE",
                        help="the OVS integration bridge (default br-int)")
    parser.add_argument("--mtu", type=_bounded(int, 576, 9000, "--mtu"), default=1400,
                        help="MTU of the containers' interfaces (default 1400: room for geneve)")
    parser.add_argument("--bind-timeout", type=_bounded(float, 0.1, 600, "--bind-timeout"),
                        default=20.0, metavar="SECONDS",
                        help="how long Join waits for ovn-controller to bind the port (default 20)")
    parser.add_argument("--no-wait-for-ovn", action="store_true",
                        help="do not wait for ovn-controller in Join")
    parser.add_argument("--underlay-mode", action="store_true",
                        help="containers inside a VM: endpoints are children (VLAN-tagged) of the "
                             "VM's logical port, on --bridge (e.g. breth0 from nics-to-bridge)")
    parser.add_argument("--parent-port", metavar="PORT",
                        help=f"underlay: the VM's logical port (default: env {PARENT_ENV}, as the original)")
    group = parser.add_argument_group("global options")
    config.add_config_flag(group)  # type: ignore[arg-type]
    config.add_options(group, OPTIONS)  # type: ignore[arg-type]
    ovs_daemon.add_args(parser, PROG)
    return parser


def serve(args: argparse.Namespace) -> int:
    from ovn_k8s.local_ovsdb import LocalOvsdb

    pre = ovs_daemon.start(args, PROG, ("ovs_db", "timeout"))
    servers: list[PluginServer] = []
    stop = threading.Event()

    def status() -> str:
        socks = ", ".join(s.path for s in servers) or "not yet listening"
        return f"sockets: {socks}\nbridge: {args.bridge}\n"

    daemon = ovs_daemon.Daemon(PROG, args, stop=stop.set, status=status)
    daemon.start()
    cleanup: list[Callable[[], Any]] = [daemon.close]
    try:
        with LocalOvsdb(pre.ovs_db, timeout=pre.timeout) as ovs:
            cfg = config.resolve(args, OPTIONS, ovs_external_ids=ovs.external_ids)
            system_id = ovs.external_ids().get("system-id")
            if ovs.bridge(args.bridge) is None:
                raise ConfigError(f"OVS bridge {args.bridge} does not exist: run "
                                  + ("ovn-integrate nics-to-bridge" if args.underlay_mode
                                     else "ovn-integrate create-integration-bridge"))
        parent = None
        if args.underlay_mode:
            parent = args.parent_port or os.environ.get(PARENT_ENV)
            if not parent:
                raise ConfigError(f"--underlay-mode needs the VM's logical port: --parent-port or env {PARENT_ENV}")
            system_id = system_id or socket.gethostname()     # a VM runs no ovn-controller
        elif args.parent_port:
            raise ConfigError("--parent-port is for --underlay-mode")
        if not system_id:
            raise ConfigError("the local OVS has no external_ids:system-id (ovn-controller's "
                              "chassis name): set it first")
        nb = DockerNb(process.connect_nb(cfg), timeout=cfg.timeout, system_id=system_id)
        cleanup.append(nb.close)
        driver = Driver(nb, HostSettings(ovs_db=cfg.ovs_db, bridge=args.bridge, mtu=args.mtu,
                                         bind_timeout=args.bind_timeout, timeout=cfg.timeout,
                                         wait_for_ovn=not args.no_wait_for_ovn, parent=parent))
        for name in args.names:
            server = PluginServer(os.path.join(args.plugin_dir, f"{name}.sock"), driver)
            servers.append(server)
            cleanup.append(server.stop)
            server.start()
        LOG.info("serving %s for %s (bridge %s, NB %s)", ", ".join(s.path for s in servers),
                 f"children of {parent}" if parent else f"chassis {system_id}", args.bridge, cfg.ovn_nb)
        daemon.serving()
        stop.wait()
        LOG.info("stopped; networks and endpoints stay in the NB")
        return 0
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception:  # noqa: BLE001 -- cleanup must run to the end
                LOG.debug("cleanup step failed", exc_info=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return process.run(PROG, serve, args, logging_setup=False)
