"""ovn-k8s-gateway-helper: keep the shared-NIC bridge's flows in line with the cluster's services.

    ovn-k8s-gateway-helper --physical-bridge breth0 --physical-interface eth0 [--node-name N]

Level-driven, with three threads:
- the watch thread lists and watches services (`ovn_k8s.kube.watch.list_then_watch`) and keeps
  an in-memory map key -> `ServicePorts`; every change wakes the main loop;
- the main loop, once the first list is in, reads the local inputs (ofports, the host address),
  computes the whole flow table (`ovn_k8s.openflow.flow_table`, pure) and replaces our cookie's
  flows in one bundle (`ovn_k8s.openflow.FlowApplier`) when the table differs from the one
  applied last. It runs on every wake-up and at least every second (so a re-added NIC or a new
  address shows up quickly), and forces a replacement every --flow-resync-interval seconds,
  which repairs flows changed behind our back;
- the optional metrics server (/metrics, /healthz).

Nothing is read back from the bridge: a restarted helper recomputes the table and replaces
whatever is there. Until the first service list is in, the flows are left alone, so a restart
never removes a NodePort that still exists. The flows also stay when the helper exits: traffic
keeps flowing while it is restarted or upgraded.

The process side is OVS's (`ovn_k8s.ovs_daemon`): --detach (the parent exits once the bridge,
the NIC and the API server settings checked out and the control socket answers), --pidfile,
--monitor, --log-file, -v, and `ovs-appctl -t ovn-k8s-gateway-helper status|exit|vlog/...`.

`GatewayHelper` is the event -> flows core; it takes its inputs, applier and clock as arguments,
so tests run it without OVS (tests/unit/test_gateway_daemon.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway_helper.inputs import InputReader, Inputs
from gateway_helper.metrics import GatewayMetrics, MetricsServer
from gateway_helper.services import parse
from ovn_k8s import config, naming, ovs_daemon, process
from ovn_k8s.errors import ConfigError, OvnK8sError
from ovn_k8s.kube.watch import Event, StopEvent, Synced, WatchStats
from ovn_k8s.openflow import COOKIE, ApplyResult, FlowApplier, ServicePorts, gateway_flows

LOG = logging.getLogger(__name__)
PROG = "ovn-k8s-gateway-helper"
POLL_INTERVAL = 1.0
FLAG_OPTIONS = ("ovs_db", "timeout", "kubeconfig", "k8s_api_server", "k8s_api_token",
                "k8s_ca_certificate", "conntrack_zone", "flow_resync_interval", "metrics_address")
OPTIONS = (*FLAG_OPTIONS, "log_level", "log_file", "pidfile", *ovs_daemon.DAEMON_OPTIONS)


class GatewayHelper:
    """Services in (watch events), flows out (one bundle per change)."""

    def __init__(self, *, read_inputs: Callable[[], Inputs], applier: FlowApplier, zone: int,
                 resync_interval: float, metrics: GatewayMetrics | None = None, cookie: int = COOKIE,
                 poll_interval: float = POLL_INTERVAL,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 watch_stats: WatchStats | None = None) -> None:
        self._read_inputs = read_inputs
        self.applier = applier
        self.zone = zone
        self.cookie = cookie
        self.resync_interval = resync_interval
        self.poll_interval = poll_interval
        self.metrics = metrics or GatewayMetrics()
        self._watch_errors_seen = 0  # the watch keeps its own error count; the metric follows it
        self._clock = clock
        self._wall_clock = wall_clock
        self._watch_stats = watch_stats
        self._lock = threading.Lock()
        self._services: dict[str, ServicePorts] = {}
        self._generation = 0  # bumped by every service event
        self._computed_for: tuple[int, Inputs] | None = None  # (generation, inputs) applied last
        self._synced = False
        self._problem: str | None = None
        self.fatal: str | None = None
        self.wake = threading.Event()
        self.stopping = threading.Event()

    # -- the watch thread's side -----------------------------------------------------------------
    def handle(self, item: Event | Synced) -> None:
        """Take one list/watch item; wake the main loop."""
        if isinstance(item, Synced):
            with self._lock:
                first = not self._synced
                self._synced = True
                count = len(self._services)
            self.metrics.services_synced.set(1)
            if first:
                LOG.info("services: listed %d at resourceVersion %s", count,
                         item.resource_version)
        else:
            self.metrics.service_events.inc(type=item.type.lower())
            key = item.key
            with self._lock:
                self._generation += 1
                if item.type == "DELETED":
                    old, new = self._services.pop(key, None), None
                else:
                    old, new = self._services.get(key), parse(item.obj)
                    self._services[key] = new
                total = len(self._services)
                with_flows = sum(1 for s in self._services.values() if not s.empty)
            self.metrics.services.set(total)
            self.metrics.services_with_flows.set(with_flows)
            if new is not None and new != old:
                for reason in new.skipped:
                    LOG.warning("%s: %s; ignored", key, reason)
            if (old is not None and not old.empty) or (new is not None and not new.empty):
                LOG.debug("%s: %s", key, "deleted" if new is None else f"{new}")
        self.wake.set()

    def fail(self, reason: str) -> None:
        """The watch cannot go on (e.g. the API has no services resource): stop the loop."""
        self.fatal = reason
        self.wake.set()

    # -- the main loop -------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return self._synced

    def services(self) -> list[ServicePorts]:
        with self._lock:
            return [self._services[k] for k in sorted(self._services)]

    def desired(self, inputs: Inputs) -> list[str]:
        return gateway_flows(self.services(), host_ip=inputs.host_ip, ports=inputs.ports,
                             zone=self.zone, cookie=self.cookie)

    def sync_once(self, *, force: bool = False) -> ApplyResult | None:
        """One pass: read the inputs, compute the table, replace our flows if it changed (or if
        forced). None before the first service list. Raises OvnK8sError on failure, after
        counting it."""
        if not self._synced:
            return None
        try:
            inputs = self._read_inputs()
        except OvnK8sError:
            self.metrics.errors.inc(stage="inputs")
            raise
        with self._lock:
            state = (self._generation, inputs)  # read before the services: never too new
        before = self.applier.applied
        if not force and before is not None and state == self._computed_for:
            # Nothing the table depends on changed: skip even computing it (the loop runs every
            # second; 5,000 LoadBalancer services take ~65 ms to compute).
            self.metrics.flow_replacements_skipped.inc()
            return ApplyResult(applied=False, flows=len(before))
        flows = self.desired(inputs)
        try:
            result = self.applier.replace(flows, force=force)
        except OvnK8sError:
            self.metrics.errors.inc(stage="apply")
            raise
        self._computed_for = state
        if force:
            self.metrics.flow_resyncs.inc()
        if result.applied:
            self.metrics.flow_replacements.inc()
            self.metrics.flows.set(result.flows)
            self.metrics.last_replacement.set(self._wall_clock())
            if before != self.applier.applied:
                LOG.info("%s: replaced our flows: %d flows for %d services with ports (host %s, "
                         "NIC ofport %d, patch ofport %d)", self.applier.bridge, result.flows,
                         sum(1 for s in self.services() if not s.empty), inputs.host_ip,
                         inputs.ports.nic, inputs.ports.patch)
            else:
                LOG.debug("%s: resync: re-applied the same %d flows", self.applier.bridge,
                          result.flows)
        else:
            self.metrics.flow_replacements_skipped.inc()
        return result

    def _pass(self, force: bool) -> bool:
        try:
            self.sync_once(force=force)
        except OvnK8sError as exc:
            self._report(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 -- the loop must survive a bug; retried next pass
            LOG.exception("flow sync failed")
            self.metrics.errors.inc(stage="apply")
            self._report(f"flow sync failed: {exc}", logged=True)
            return False
        if self._problem is not None:
            LOG.info("%s: flows in place again", self.applier.bridge)
            self._problem = None
        return True

    def _report(self, problem: str, *, logged: bool = False) -> None:
        # Said once per distinct problem, not once a second.
        if problem != self._problem and not logged:
            LOG.error("%s; retrying every %.0fs", problem, self.poll_interval)
        self._problem = problem

    def run(self) -> None:
        """Until stop(): sync on every wake-up and every poll interval, force every resync."""
        next_resync = self._clock() + self.resync_interval
        while not self.stopping.is_set() and self.fatal is None:
            timeout = self.poll_interval
            if self._synced:
                now = self._clock()
                force = now >= next_resync
                if self._pass(force) and force:
                    next_resync = now + self.resync_interval
                if self._problem is None:
                    timeout = min(timeout, max(0.0, next_resync - self._clock()))
            if self._watch_stats is not None and self._watch_stats.errors > self._watch_errors_seen:
                self.metrics.errors.inc(self._watch_stats.errors - self._watch_errors_seen, stage="watch")
                self._watch_errors_seen = self._watch_stats.errors
            self.wake.wait(timeout)
            self.wake.clear()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def status(self, bridge: str) -> str:
        """`ovs-appctl -t ovn-k8s-gateway-helper status`: the flows installed, and why not."""
        ok, why = self.health()
        services = self.services()
        applied = self.applier.applied
        return "\n".join([
            f"bridge: {bridge}",
            f"state: {'ok' if ok else why}",
            f"services synced: {'yes' if self._synced else 'no'}",
            f"services: {len(services)} ({sum(1 for s in services if not s.empty)} with ports)",
            f"flows installed: {len(applied) if applied is not None else 'none yet'}",
        ]) + "\n"

    def health(self) -> tuple[bool, str]:
        if self.fatal:
            return False, self.fatal
        if not self._synced:
            return False, "waiting for the first list of services"
        if self._problem:
            return False, self._problem
        if self.applier.applied is None:
            return False, "flows not applied yet"
        return True, "ok"


# --- process plumbing ---------------------------------------------------------------------------
def _parse_ipv4(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        ip = ipaddress.ip_address(raw.strip())
    except ValueError:
        raise ConfigError(f"--physical-ip: {raw!r} is not an IPv4 address") from None
    if ip.version != 4:
        raise ConfigError(f"--physical-ip: {raw!r} is not an IPv4 address")
    return str(ip)



def serve(args: argparse.Namespace) -> int:
    from ovn_k8s.kube import auth
    from ovn_k8s.kube.rest import KubeClient, resource_path
    from ovn_k8s.kube.watch import list_then_watch
    from ovn_k8s.local_ovsdb import LocalOvsdb

    bridge, nic = args.physical_bridge, args.physical_interface
    physical_ip = _parse_ipv4(args.physical_ip)
    pre = ovs_daemon.start(args, PROG, ("ovs_db", "timeout"))
    holder: list[GatewayHelper] = []

    def stop_helper() -> None:
        if holder:
            holder[0].stop()

    def status() -> str:
        return holder[0].status(bridge) if holder else (f"bridge: {bridge}\nstate: starting "
                                                    "(connecting to the local OVS database)\n")

    config.resolve(args, OPTIONS)              # every option's range, before anything is opened
    daemon = ovs_daemon.Daemon(PROG, args, stop=stop_helper, status=status)
    daemon.start()                             # --detach/--monitor fork here
    cleanup: list[Callable[[], Any]] = [daemon.close]
    try:
        # A local OVSDB that accepts and never answers must not hold up a stop.
        done, ovs = ovs_daemon.call_or_stop(lambda: LocalOvsdb(pre.ovs_db, timeout=pre.timeout),
                                            daemon.stopping)
        if not done:
            return 0
        cleanup.append(ovs.close)
        cfg = config.resolve(args, OPTIONS, ovs_external_ids=ovs.external_ids)
        ovs_ids = ovs.external_ids()
        node = naming.node_name(args.node_name or ovs_ids.get("hostname") or socket.gethostname())

        # Everything the flows depend on must be there before we serve: one clear line if not.
        reader = InputReader(ovs, bridge=bridge, nic=nic, physical_ip=physical_ip)
        first = reader.read()
        params = auth.load_connection_params(
            kubeconfig=cfg.kubeconfig, api_server=cfg.k8s_api_server, token=cfg.k8s_api_token,
            ca_certificate=ovs_ids.get("k8s-ca-certificate"), ca_file=cfg.k8s_ca_certificate)
        client = KubeClient(params, user_agent=f"{PROG}/{node}")
        cleanup.append(client.close)

        metrics = GatewayMetrics(node)
        stats = WatchStats()
        helper = GatewayHelper(
            read_inputs=reader.read, zone=cfg.conntrack_zone, metrics=metrics,
            applier=FlowApplier(bridge, cookie=COOKIE, timeout=cfg.timeout),
            resync_interval=cfg.flow_resync_interval, watch_stats=stats)
        holder.append(helper)
        if daemon.stopping.is_set():
            return 0
        if cfg.metrics_address:
            server = MetricsServer(cfg.metrics_address, metrics, helper.health)
            server.start()
            cleanup.append(server.stop)
            LOG.info("metrics on http://%s:%d/metrics", *server.address)

        stop = StopEvent()

        def watch() -> None:
            try:
                for item in list_then_watch(client, resource_path("services"), stop=stop,
                                            stats=stats):
                    helper.handle(item)
            except Exception as exc:  # noqa: BLE001 -- permanent API errors end the daemon
                if not stop.is_set():
                    LOG.debug("service watch ended", exc_info=exc)
                    helper.fail(f"watching services at {client.server}: {exc}")

        watcher = threading.Thread(target=watch, name="watch-services", daemon=True)
        LOG.info("node %s: bridge %s (NIC %s ofport %d, patch ofport %d), host %s, conntrack "
                 "zone %d, cookie %#x, services from %s (%s)", node, bridge, nic, first.ports.nic,
                 first.ports.patch, first.host_ip, cfg.conntrack_zone, COOKIE, client.server,
                 params.source)
        watcher.start()
        daemon.serving()                       # a --detach parent exits 0 now
        try:
            helper.run()
        finally:
            stop.set()  # interrupts a blocked watch read at once
            watcher.join(timeout=2)
        if helper.fatal:
            raise OvnK8sError(helper.fatal)
        LOG.info("stopped; the flows stay in place")
        return 0
    finally:
        for step in reversed(cleanup):
            try:
                step()
            except Exception:  # noqa: BLE001 -- cleanup must run to the end
                LOG.debug("cleanup step failed", exc_info=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="On a gateway whose NIC is shared with the host (ovn-k8s-util "
        "nics-to-bridge + gateway-init --bridge-interface), steer each packet to the gateway "
        "router or to the host with OpenFlow flows kept in line with the cluster's services.")
    parser.add_argument("--physical-bridge", required=True, metavar="BRIDGE",
                        help="the OVS bridge holding the shared NIC, e.g. breth0")
    parser.add_argument("--physical-interface", required=True, metavar="NIC",
                        help="the shared NIC on that bridge, e.g. eth0")
    parser.add_argument("--node-name", metavar="NAME",
                        help="this node's name (for logs and metrics; default: the local OVS "
                             "external_ids:hostname, else the host name)")
    parser.add_argument("--physical-ip", metavar="IP",
                        help="the host's (and gateway router's) IPv4 address on the bridge "
                             "(default: the bridge's only IPv4 address)")
    group = parser.add_argument_group("global options")
    config.add_config_flag(group)  # type: ignore[arg-type]
    config.add_options(group, FLAG_OPTIONS)  # type: ignore[arg-type]
    ovs_daemon.add_args(parser, PROG)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return process.run(PROG, serve, args, logging_setup=False)
