"""ovn-k8s-watcher: keeps the OVN Northbound database equal to what the cluster wants.

    flags/env/file/OVS -> config -> Kubernetes client, NB connection (+ OVSDB lock)
    informers (pods, services, endpointslices|endpoints) -> stores -> work queues
    standby until this watcher holds the NB lock -> sync -> workers -> ... -> SIGTERM

Life cycle:
1. Connect to the API server and the NB (retried with backoff until they answer); ask the NB
   for the OVSDB lock `ovn_k8s_watcher`.
2. Start the informers; wait for their first list.
3. Standby until the lock is ours: a second watcher started at the same time waits here,
   with its informers warm, and takes over when the first one's NB connection goes away.
4. Sync before serving (`PodController.sync`, the services' `sync`), then start the workers.
5. Serve until SIGTERM/SIGINT or `ovs-appctl -t ovn-k8s-watcher exit` (stop the watches,
   drain the queues for at most 1.5 s, close the NB, remove the pidfile, exit 0; always within
   5 s), or until another watcher holds the lock after an NB reconnect (exit 1, so a
   supervisor restarts this one as a standby).

The process side is OVS's (`ovn_k8s.ovs_daemon`): --detach (the parent exits once the checks
passed and the control socket answers), --pidfile, --monitor, --log-file, -v, and the
`status` command of ovs-appctl.

Every thread reports its failure: a watch thread logs and starts over; a worker that dies
ends the daemon with status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import tenacity

from ovn_k8s import config, ipam, naming, ovs_daemon, process
from ovn_k8s.desired.nodes import check_prefix
from ovn_k8s.desired.pods import SWITCH_ID_PREFIX
from ovn_k8s.desired.services import AffinityMode, NodePortMode
from ovn_k8s.errors import ConfigError, ConnectionFailed, OvnK8sError
from ovn_k8s.kube import auth
from ovn_k8s.kube.errors import KubeConfigError, KubeError, NotFound
from ovn_k8s.kube.rest import KubeClient, resource_path
from ovn_k8s.kube.watch import StopEvent
from ovn_k8s.nb import connection
from watcher.annotator import PodAnnotator
from watcher.events import EventRecorder
from watcher.informer import Informer
from watcher.leader import ElectionConfig, LeaseElector
from watcher.metrics import MetricsServer, WatcherMetrics
from watcher.nodes import NodeController
from watcher.pods import PodController
from watcher.policies import PolicyController
from watcher.service_controller import ServiceController

LOG = logging.getLogger(__name__)
PROG = "ovn-k8s-watcher"
POLICY_PATH = "/apis/networking.k8s.io/v1/networkpolicies"
NB_LOCK = "ovn_k8s_watcher"          # an OVSDB lock id: letters, digits and underscores
DRAIN_TIMEOUT = 1.5
SHUTDOWN_TIMEOUT = 3.0       # under ovs_daemon.STOP_GRACE: a stop never needs the watchdog
# The original watcher's only NB: the NB server's unix socket (config key unix_socket), by
# default where OVS 2.x put it; OVN packages since put it under /var/run/ovn.
NB_UNIX_SOCKETS = ("/var/run/openvswitch/ovnnb_db.sock", "/var/run/ovn/ovnnb_db.sock")
# 0.5 s doubling to 30 s, plus up to 0.5 s of jitter so that restarted watchers spread out.
CONNECT_BACKOFF = tenacity.wait_exponential(multiplier=0.5, max=30.0) + tenacity.wait_random(0, 0.5)
KUBE_OPTIONS = ("kubeconfig", "k8s_api_server", "k8s_api_token", "k8s_ca_certificate",
                "k8s_ca_certificate_data")
WATCHER_OPTIONS = ("metrics_address", "pod_batch_size", "annotation_workers",
                   "max_retries", "resync_interval", "nodeport_mode", "affinity_mode")
NODE_OPTIONS = ("allocate_node_subnets", "cluster_ip_subnet", "node_subnet_prefix")
LEADER_OPTIONS = ("leader_elect", "leader_elect_lease_duration", "leader_elect_renew_deadline",
                  "leader_elect_retry_period", "leader_elect_lease_name",
                  "leader_elect_lease_namespace")
OPTIONS = (*process.GLOBAL_OPTIONS, *KUBE_OPTIONS, *WATCHER_OPTIONS, *NODE_OPTIONS,
           *LEADER_OPTIONS, "unix_socket", "pidfile", *ovs_daemon.DAEMON_OPTIONS)
# The NB changes the controllers react to: a node switch's subnet or identity (pods), a
# gateway router's chassis, physical IP or name (services). A switch's `ports` and other
# link columns change with every pod and are not watched.
NB_WATCH = {"Logical_Switch": frozenset({"name", "other_config", "external_ids"}),
            "Logical_Router": frozenset({"options", "external_ids", "name"}),
            # Creations only (no column watched): a pod port made again (new UUID) has left
            # the policies' port groups, which hold it by weak reference.
            "Logical_Switch_Port": frozenset()}


class LostLock(OvnK8sError):
    """Another watcher holds the NB lock now."""


# --- arguments and configuration -------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Keep the OVN Northbound database equal to what the Kubernetes cluster "
                    "wants: a logical switch port, address and `ovn` annotation for every pod, "
                    "load balancers for services. Runs in the foreground unless --detach; "
                    f"stops cleanly on SIGTERM or `ovs-appctl -t {PROG} exit`.",
        parents=[process.global_parent(without=("log_level", "log_file"))])
    kube = parser.add_argument_group("Kubernetes API (first that applies: --kubeconfig or "
                                     "$KUBECONFIG, k8s-api-server, in-cluster service account, "
                                     "~/.kube/config)")
    config.add_options(kube, KUBE_OPTIONS)  # type: ignore[arg-type]
    daemon = parser.add_argument_group("daemon")
    config.add_options(daemon, (*WATCHER_OPTIONS, "unix_socket"))  # type: ignore[arg-type]
    nodes = parser.add_argument_group("node subnets (docs/ha.md)")
    config.add_options(nodes, NODE_OPTIONS)  # type: ignore[arg-type]
    election = parser.add_argument_group("leader election on a coordination.k8s.io/v1 Lease "
                                         "(docs/ha.md)")
    config.add_options(election, LEADER_OPTIONS)  # type: ignore[arg-type]
    parser.add_argument("--no-network-policy", action="store_true",
                        help="do not program NetworkPolicies (no port groups, address "
                             "sets or ACLs; the watcher then neither watches policies "
                             "nor namespaces)")
    ovs_daemon.add_args(parser, PROG)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--overlay", action="store_true",
                      help="overlay mode, the only one (the original watcher required it; "
                           "accepted and optional here)")
    mode.add_argument("--underlay", action="store_true",
                      help="refused: underlay mode is not implemented (as in the original)")
    mode.add_argument("--openstack", action="store_true",
                      help="refused: OpenStack mode is not implemented (as in the original)")
    return parser


def _ovs_external_ids(ovs_db: str, timeout: float) -> Callable[[], dict[str, str]]:
    """The local OVS external_ids, or {} when there is no local OVS (the watcher runs on the
    NB host, which need not be a node)."""

    def read() -> dict[str, str]:
        from ovn_k8s.local_ovsdb import LocalOvsdb

        try:
            ovs = LocalOvsdb(ovs_db, timeout=min(timeout, 5.0))
        except OvnK8sError as exc:
            LOG.debug("no local OVS settings: %s", exc)
            return {}
        try:
            return ovs.external_ids()
        except OvnK8sError as exc:
            LOG.debug("no local OVS settings: %s", exc)
            return {}
        finally:
            ovs.close()
    return read


def resolve(args: argparse.Namespace) -> config.Config:
    pre = config.resolve(args, ("ovs_db", "timeout"))
    cfg = config.resolve(args, OPTIONS, ovs_external_ids=_ovs_external_ids(pre.ovs_db,
                                                                           pre.timeout))
    # The original watcher reached the NB only through `unix_socket` (default: the NB
    # server's socket): it stands in for an --ovn-nb given nowhere (flag, env or file).
    if cfg.sources["ovn_nb"] in ("flag", "env", "file"):
        return cfg
    socket_path = None
    if cfg.sources["unix_socket"] != "default" and cfg.unix_socket:
        socket_path = cfg.unix_socket
    elif not cfg.ovn_nb:
        socket_path = next((p for p in NB_UNIX_SOCKETS if os.path.exists(p)), None)
    if socket_path is None:
        return cfg
    return config.Config(values={**cfg.values, "ovn_nb": f"unix:{socket_path}"},
                         sources={**cfg.sources, "ovn_nb": "unix_socket"})


def kube_params(cfg: config.Config, environ: dict[str, str] | None = None) -> Any:
    """Where the API server is: --kubeconfig (or $KUBECONFIG) > k8s-api-server (flag, env,
    file or OVS, with k8s-api-token and the CA) > the in-cluster service account >
    ~/.kube/config."""
    env = dict(os.environ if environ is None else environ)
    kubeconfig = cfg.kubeconfig or next(
        (p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p and os.path.isfile(p)),
        None)
    if kubeconfig and not os.path.isfile(os.path.expanduser(kubeconfig)):
        raise ConfigError(f"--kubeconfig: {kubeconfig} does not exist")
    try:
        return auth.load_connection_params(
            kubeconfig=kubeconfig, api_server=cfg.k8s_api_server, token=cfg.k8s_api_token,
            ca_certificate=cfg.k8s_ca_certificate_data, ca_file=cfg.k8s_ca_certificate,
            environ=env)
    except KubeConfigError as exc:
        raise ConfigError(str(exc)) from None


# --- the daemon ------------------------------------------------------------------------------
class Watcher:
    def __init__(self, cfg: config.Config) -> None:
        self.cfg = cfg
        self.stop = StopEvent()
        self.metrics = WatcherMetrics()
        self.nb: Any = None
        self.kube: KubeClient | None = None
        self.informers: list[Informer] = []
        self.pods: PodController | None = None
        self.services: ServiceController | None = None
        self.policies: PolicyController | None = None
        self.network_policy = True           # --no-network-policy turns it off
        self.nodes: NodeController | None = None
        self.elector: LeaseElector | None = None
        self.serving = threading.Event()
        self.synced = threading.Event()
        self._workers: list[threading.Thread] = []
        self._fatal: str | None = None
        self._metrics_server: MetricsServer | None = None

    # -- health ----------------------------------------------------------------------------------
    def nb_connected(self) -> bool:
        # monitoring, not connected: python-ovs' session is up while it asks a clustered NB's
        # followers whether they lead (or waits on a member that never answers); only a
        # monitored replica (the leader's, or a standalone server's) is a working NB.
        return self.nb is not None and connection.monitoring(self.nb)

    def has_lock(self) -> bool:
        return self.nb is not None and connection.lock_state(self.nb)[0]

    def health(self) -> list[str]:
        problems = []
        nb_up = self.nb_connected()
        self.metrics.nb_up.set(1 if nb_up else 0)
        if not nb_up:
            if len(connection.split_remotes(self.cfg.ovn_nb, "--ovn-nb")) > 1:
                problems.append(f"NB: not connected to the NB leader (members: {self.cfg.ovn_nb})")
            else:
                problems.append(f"NB: not connected to {self.cfg.ovn_nb}")
        for informer in self.informers:
            problem = informer.problem()
            informer._update_gauge()
            if problem:
                problems.append(problem)
        if self._fatal:
            problems.append(self._fatal)
        return problems

    def status(self) -> str:
        """`ovs-appctl -t ovn-k8s-watcher status`: synced or not, leader or standby, counts."""
        nb_up = self.nb_connected()
        if self.synced.is_set():
            state = "serving"
        elif self.nb is None or not nb_up:
            state = "connecting"
        elif not self.has_lock() or (self.elector is not None and not self.elector.is_leader):
            state = "standby"
        else:
            state = "syncing"
        lines = [f"state: {state}",
                 f"synced: {'yes' if self.synced.is_set() else 'no'}",
                 f"role: {self.role()} (NB lock {NB_LOCK}: "
                 f"{'held' if self.has_lock() else 'not held'})",
                 f"nb: {self.cfg.ovn_nb} ({'connected' if nb_up else 'not connected'})"]
        if self.elector is not None:
            lines.append(f"lease: {self.elector.describe()}")
        for informer in self.informers:
            lines.append(f"watch {informer.resource}: "
                         f"{'listed' if informer.synced.is_set() else 'not listed yet'}")
        if self.pods is not None:
            lines.append(f"pods: {len(self.pods.store)} (queued {len(self.pods.queue)})")
        if self.nodes is not None:
            lines.append(f"nodes: {len(self.nodes.store)} (queued {len(self.nodes.queue)}, "
                         f"cleaned {self.nodes.deleted})")
        if self.services is not None:
            svc = self.services
            lines.append(f"services: {len(svc.services)} (queued {len(svc.queue)})")
            lines.append(f"endpointslices: {len(svc.slices)}" if svc.use_slices
                         else f"endpoints: {len(svc.endpoints)}")
        if self.policies is not None:
            lines.append(f"networkpolicies: {len(self.policies.policies)} "
                         f"(queued {len(self.policies.queue)})")
        if self._fatal:
            lines.append(f"failed: {self._fatal}")
        return "\n".join(lines) + "\n"

    def role(self) -> str:
        """leader, standby or lost: the Lease's verdict with --leader-elect, else the NB
        lock's."""
        if self.elector is not None:
            if self.elector.lost:
                return "lost"
            return "leader" if self.elector.is_leader and self.has_lock() else "standby"
        return "leader" if self.has_lock() else "standby"

    def ready(self) -> tuple[bool, str]:
        if self.synced.is_set():
            return True, f"ok: {self.role()}"
        if self.elector is not None and not self.elector.is_leader:
            return False, f"{self.role()}: {self.elector.describe()}"
        if self.nb is not None and not self.has_lock():
            return False, "standby: another watcher holds the NB lock"
        return False, "syncing"

    # -- start-up --------------------------------------------------------------------------------
    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        """fn() until it succeeds, retrying connection errors with backoff; None once stopped."""
        def log(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            LOG.warning("%s: %s; retrying in %.1fs", what, exc, delay)

        try:
            for attempt in tenacity.Retrying(
                    retry=tenacity.retry_if_exception_type((ConnectionFailed, KubeError)),
                    wait=CONNECT_BACKOFF, stop=lambda _state: self.stop.is_set(),
                    sleep=self.stop.wait, before_sleep=log, reraise=True):
                with attempt:
                    if self.stop.is_set():
                        return None
                    # In a helper thread: a server that accepts and never answers must not
                    # hold up a stop.
                    done, result = ovs_daemon.call_or_stop(fn, self.stop)
                    return result if done else None
        except (ConnectionFailed, KubeError):
            return None                     # stopped while the last attempt failed
        return None

    def _setup_nb(self, nb: Any) -> None:
        pods, services, nodes = self.pods, self.services, self.nodes
        gateway_prefix = naming.owner_gateway("")
        policies = self.policies

        def on_change(change: connection.RowChange) -> None:
            if change.table == "Logical_Switch":
                if change.id.startswith(SWITCH_ID_PREFIX) and pods is not None:
                    pods.on_switch_event(change.id[len(SWITCH_ID_PREFIX):])
                if change.id.startswith(SWITCH_ID_PREFIX) and nodes is not None:
                    nodes.on_switch_event(change.id[len(SWITCH_ID_PREFIX):])
                if change.id.startswith(SWITCH_ID_PREFIX) and policies is not None:
                    policies.on_switch_event(change.id[len(SWITCH_ID_PREFIX):])
            elif change.table == "Logical_Switch_Port":
                if change.event == "create" and policies is not None:
                    policies.on_port_created(change.owner)
            elif services is not None and change.owner.startswith(gateway_prefix):
                services.on_gateways_changed()

        connection.watch_rows(nb, NB_WATCH, on_change)
        if self.elector is None:
            # With --leader-elect the lock is asked for once the Lease is ours: a standby
            # holding it would keep the Lease's leader from ever writing.
            connection.set_lock(nb, NB_LOCK)

    def _start_informers(self, kube: KubeClient) -> None:
        assert self.pods is not None and self.services is not None
        svc = self.services
        watches: list[tuple[str, str, Callable[[Any], None]]] = [
            ("pods", resource_path("pods"), self.pods.on_event),
            ("services", resource_path("services"), svc.on_service_event)]
        if svc.use_slices:
            watches.append(("endpointslices", resource_path("endpointslices"),
                            svc.on_slice_event))
        else:
            watches.append(("endpoints", resource_path("endpoints"), svc.on_endpoints_event))
        if self.nodes is not None:
            watches.append(("nodes", resource_path("nodes"), self.nodes.on_event))
        if self.policies is not None:
            # One pod watch for both controllers; policies also need namespaces' labels.
            policies, pod_handler = self.policies, watches[0][2]

            def on_pod(ev: Any) -> None:
                pod_handler(ev)
                policies.on_pod_event(ev)
            watches[0] = ("pods", watches[0][1], on_pod)
            watches.append(("networkpolicies", POLICY_PATH, policies.on_policy_event))
            watches.append(("namespaces", resource_path("namespaces"),
                            policies.on_namespace_event))
        for name, path, handler in watches:
            self.informers.append(Informer(name, kube, path, handler=handler, stop=self.stop,
                                           metrics=self.metrics).start())

    def _slices_served(self, kube: KubeClient) -> bool:
        """Does the API server serve discovery.k8s.io/v1 EndpointSlices? (Else: Endpoints.)"""
        def probe() -> bool:
            try:
                doc = kube.get("/apis/discovery.k8s.io/v1")
            except NotFound:
                return False
            return any(r.get("name") == "endpointslices" for r in doc.get("resources") or [])
        served = self._retry("API discovery", probe)
        if served is False:
            LOG.warning("the API server does not serve discovery.k8s.io/v1 EndpointSlices: "
                        "using core/v1 Endpoints")
        return bool(served)

    def _wait(self, what: str, done: Callable[[], bool], log_every: float = 30.0) -> bool:
        t0 = last = time.monotonic()
        while not self.stop.is_set():
            if done():
                return True
            if self._fatal:
                return False
            if time.monotonic() - last >= log_every:
                last = time.monotonic()
                LOG.info("still waiting for %s (%.0fs)", what, last - t0)
            self.stop.wait(0.1)
        return False

    def _start_worker(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception as exc:  # noqa: BLE001 -- the daemon must learn of it
                LOG.exception("worker %s died", name)
                self._fatal = f"worker {name} died: {exc}"
                self.stop.set()
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._workers.append(thread)

    def check(self) -> Any:
        """Everything that can be wrong before connecting, as one ConfigError; the API
        server's connection parameters."""
        cfg = self.cfg
        if not cfg.ovn_nb:
            process.connect_nb(cfg)           # raises the standard "address not set" error
        connection.split_remotes(cfg.ovn_nb, "--ovn-nb")
        for name in ("pod_batch_size", "annotation_workers"):
            if getattr(cfg, name) < 1:
                raise ConfigError(f"{config.OPTIONS[name].flag} must be at least 1")
        if cfg.cluster_ip_subnet:
            cluster = ipam.parse_cidr(cfg.cluster_ip_subnet, "--cluster-ip-subnet")
            check_prefix(cluster, cfg.node_subnet_prefix)
        if cfg.leader_elect:
            self._election_config().check()
        for name, enum in (("nodeport_mode", NodePortMode), ("affinity_mode", AffinityMode)):
            if getattr(cfg, name) not in {m.value for m in enum}:
                raise ConfigError(f"{config.OPTIONS[name].flag}: {getattr(cfg, name)!r} is not "
                                  f"one of {', '.join(m.value for m in enum)}")
        return kube_params(cfg)

    def _election_config(self) -> ElectionConfig:
        cfg = self.cfg
        return ElectionConfig(name=cfg.leader_elect_lease_name,
                              namespace=cfg.leader_elect_lease_namespace,
                              lease_duration=cfg.leader_elect_lease_duration,
                              renew_deadline=cfg.leader_elect_renew_deadline,
                              retry_period=cfg.leader_elect_retry_period)

    def _start_election(self, params: Any) -> None:
        """Campaign for the Lease on a client of its own, whose requests time out well inside
        the renew deadline (the watchdog fences regardless)."""
        election = self._election_config()
        request_timeout = max(0.2, min(election.renew_deadline / 2, self.cfg.timeout))
        self._election_client = KubeClient(params, timeout=request_timeout,
                                           connect_timeout=request_timeout,
                                           user_agent=f"{PROG}/leader-election", pool_size=2)
        self.elector = LeaseElector(self._election_client, election, on_lost=self._fence)
        LOG.info("leader election: campaigning for the Lease %s/%s as %s (lease %gs, renew "
                 "deadline %gs, retry %gs)", election.namespace, election.name,
                 self.elector.identity, election.lease_duration, election.renew_deadline,
                 election.retry_period)
        self.elector.start()

    def _fence(self, why: str) -> None:
        """The Lease is lost: stop writing at once and exit 1. The work queues stop handing
        out keys now; a batch already in hand may still commit, so the process ends for good
        halfway through the gap between the renew deadline and the lease duration, before any
        standby can take the Lease."""
        self._fatal = f"leader election: {why}; stopped writing"
        self.metrics.leader.set(0)
        for controller in self._controllers():
            controller.shutdown()
        self.stop.set()
        election = self._election_config()
        grace = max(0.05, (election.lease_duration - election.renew_deadline) / 2)

        def hard_exit() -> None:
            LOG.error("leader election: not stopped %.2fs after losing the Lease: exiting now",
                      grace)
            logging.shutdown()
            os._exit(1)

        timer = threading.Timer(grace, hard_exit)
        timer.daemon = True
        timer.start()

    def _controllers(self) -> list[Any]:
        return [c for c in (self.pods, self.services, self.nodes, self.policies)
                if c is not None]

    def run(self, params: Any) -> int:
        try:
            return self._run(params)
        finally:
            self._shutdown()

    def _run(self, params: Any) -> int:
        cfg = self.cfg
        if cfg.metrics_address:
            self._metrics_server = MetricsServer(
                cfg.metrics_address, self.metrics, health=self.health, ready=self.ready,
                role=self.role if cfg.leader_elect else None).start()
            LOG.info("metrics on %s/metrics", self._metrics_server.url)
        self.kube = KubeClient(params, timeout=cfg.timeout, user_agent=PROG)
        annotator = PodAnnotator(params, timeout=cfg.timeout, user_agent=PROG)
        LOG.info("Kubernetes API server %s (%s)", params.server, params.source)
        recorder = EventRecorder(self.kube)
        self._recorder = recorder
        self._annotator = annotator
        if cfg.leader_elect:
            self._start_election(params)
        # The informers list while the NB connection downloads the NB: both take seconds at
        # 10k pods, and neither needs the other until the sync.
        use_slices = self._slices_served(self.kube)
        if self.stop.is_set():
            return self._exit_status()
        self.pods = PodController(nb=None, annotator=annotator, metrics=self.metrics,
                                  recorder=recorder, batch_size=cfg.pod_batch_size,
                                  annotate_workers=cfg.annotation_workers,
                                  max_retries=cfg.max_retries, timeout=cfg.timeout)
        self.services = ServiceController(nb=None, metrics=self.metrics, recorder=recorder,
                                          use_slices=use_slices, batch_size=cfg.pod_batch_size,
                                          max_retries=cfg.max_retries, timeout=cfg.timeout,
                                          nodeport_mode=cfg.nodeport_mode,
                                          affinity_mode=cfg.affinity_mode)
        if cfg.allocate_node_subnets:
            self.nodes = NodeController(nb=None, kube=self.kube, metrics=self.metrics,
                                        recorder=recorder, cluster_subnet=cfg.cluster_ip_subnet,
                                        prefix=cfg.node_subnet_prefix,
                                        max_retries=cfg.max_retries, timeout=cfg.timeout)
        if self.network_policy:
            self.policies = PolicyController(nb=None, metrics=self.metrics, recorder=recorder,
                                             batch_size=cfg.pod_batch_size,
                                             max_retries=cfg.max_retries,
                                             timeout=cfg.timeout)
        self._start_informers(self.kube)
        self.nb = self._retry(f"NB {cfg.ovn_nb}", lambda: process.connect_nb(cfg))
        if self.nb is None:
            return self._exit_status()
        self.pods.nb = self.nb
        self.services.attach_nb(self.nb)
        if self.policies is not None:
            self.policies.attach_nb(self.nb)
        if self.nodes is not None:
            self.nodes.nb = self.nb
        self._setup_nb(self.nb)
        if not self._wait("the first list of every watched resource",
                          lambda: all(i.synced.is_set() for i in self.informers)):
            return self._exit_status()
        nb = self.nb
        elector = self.elector
        if elector is not None:
            if not elector.is_leader:
                LOG.info("standby: %s", elector.describe())
            if not self._wait("the Lease", lambda: elector.is_leader or elector.lost):
                return self._exit_status()
            if elector.lost:
                return self._exit_status()
            # The second fence: a fenced leader's NB connection holds the lock until it exits.
            connection.set_lock(nb, NB_LOCK)
        self._wait("the NB's answer to the lock request", lambda: any(connection.lock_state(nb)))
        if not self.has_lock():
            LOG.warning("standby: another %s holds the NB lock %s; waiting for it", PROG,
                        NB_LOCK)
        if not self._wait(f"the NB lock {NB_LOCK}", self.has_lock):
            return self._exit_status()
        self.metrics.leader.set(1)
        LOG.info("holding the NB lock %s: syncing", NB_LOCK)
        t0 = time.monotonic()
        if self.nodes is not None:
            self.nodes.sync()
        self.pods.sync()
        self.services.sync()
        if self.policies is not None:
            self.policies.sync()
        self.serving.set()
        pods, services, nodes = self.pods, self.services, self.nodes
        self._start_worker("pods", lambda: pods.run(self.stop,
                                                    resync_interval=cfg.resync_interval))
        self._start_worker("services", lambda: services.run(
            self.stop, resync_interval=cfg.resync_interval))
        if nodes is not None:
            self._start_worker("nodes", lambda: nodes.run(self.stop))
        policies = self.policies
        if policies is not None:
            self._start_worker("networkpolicies", lambda: policies.run(
                self.stop, resync_interval=cfg.resync_interval))
            self._wait("the initial policies to be programmed",
                       lambda: policies.queue.wait_idle(0))
        self._wait("the initial objects to be reconciled",
                   lambda: pods.queue.wait_idle(0) and services.queue.wait_idle(0)
                   and (nodes is None or nodes.queue.wait_idle(0)))
        if not self.stop.is_set():
            self.synced.set()
            LOG.info("Initialization complete: serving (sync %.2fs)", time.monotonic() - t0)
        seqno = connection.session_seqno(nb)
        reload_pending = False
        while not self.stop.is_set():
            has_lock, contended = connection.lock_state(nb)
            if contended and not has_lock:
                self._fatal = f"lost the NB lock {NB_LOCK} to another {PROG}"
                LOG.error("%s; exiting so that a supervisor restarts this one as a standby",
                          self._fatal)
                self.stop.set()
                break
            now = connection.session_seqno(nb)
            if now != seqno:
                seqno, reload_pending = now, True
            if reload_pending and has_lock and connection.monitoring(nb):
                # Reconnected: the NB may have changed (or been restored) meanwhile.
                reload_pending = False
                LOG.info("NB connection re-established; re-reading the NB")
                for controller in (self.pods, self.services):
                    controller.request_reload()
                if self.policies is not None:
                    self.policies.request_reload()
            self.stop.wait(0.2)
        return self._exit_status()

    def _exit_status(self) -> int:
        return 1 if self._fatal else 0

    def _shutdown(self) -> None:
        self.stop.set()
        end = time.monotonic() + SHUTDOWN_TIMEOUT

        def left(most: float = SHUTDOWN_TIMEOUT) -> float:
            return max(0.0, min(most, end - time.monotonic()))

        for informer in self.informers:
            informer.join(timeout=left(1.0))
        deadline = time.monotonic() + left(DRAIN_TIMEOUT)
        drained = True
        for controller in (self.pods, self.services, self.nodes):
            if controller is None:
                continue
            if self.serving.is_set() and not self._fatal:
                if not controller.drain(max(0.0, deadline - time.monotonic())):
                    drained = False
                    LOG.warning("shutdown: %s work still queued after %.1fs; dropped",
                                type(controller).__name__, DRAIN_TIMEOUT)
            controller.shutdown()
        if self.policies is not None:
            if self.serving.is_set() and not self._fatal and \
                    not self.policies.drain(max(0.0, deadline - time.monotonic())):
                drained = False
                LOG.warning("shutdown: network policy work still queued after %.1fs; "
                            "dropped", DRAIN_TIMEOUT)
            self.policies.shutdown()
        for thread in self._workers:
            # Undrained work: a worker is likely stuck waiting for the NB; give it less.
            thread.join(timeout=left() if drained else left(0.5))
        # A worker still inside an NB transaction means the NB stopped answering: do not wait
        # for it (nor for a polite disconnect) past the stop bound; the process exit closes
        # the socket.
        stuck = any(thread.is_alive() for thread in self._workers)
        if stuck:
            LOG.warning("shutdown: a worker is still waiting for the NB; not waiting for it")
        else:
            for controller in (self.pods, self.services, self.nodes):
                if controller is not None:
                    controller.close()
        recorder = getattr(self, "_recorder", None)
        if recorder is not None:
            recorder.close(timeout=left(2.0))
        if self.nb is not None and not stuck:
            connection.disconnect(self.nb)
        if self.elector is not None:
            # Nothing writes any more: hand the Lease over at once (not after a lease duration).
            self.elector.stop(release=not stuck and not self.elector.lost)
        for client in (self.kube, getattr(self, "_annotator", None),
                       getattr(self, "_election_client", None)):
            if client is not None:
                client.close()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        self.metrics.leader.set(0)
        LOG.info("stopped")


def serve(args: argparse.Namespace) -> int:
    if args.underlay or args.openstack:
        raise ConfigError(f"{'Underlay' if args.underlay else 'OpenStack'} mode not "
                          "implemented: overlay is the only mode")
    ovs_daemon.start(args, PROG)
    holder: list[Watcher] = []

    def stop() -> None:
        if holder:
            holder[0].stop.set()

    def status() -> str:
        return holder[0].status() if holder else "state: starting\n"

    daemon = ovs_daemon.Daemon(PROG, args, stop=stop, status=status)
    daemon.start()                             # --detach/--monitor fork here
    try:
        watcher = Watcher(resolve(args))
        watcher.network_policy = not args.no_network_policy
        holder.append(watcher)
        if daemon.stopping.is_set():
            return 0
        params = watcher.check()
        daemon.serving()                       # a --detach parent exits 0 now
        return watcher.run(params)
    finally:
        daemon.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return process.run(PROG, serve, args, logging_setup=False)
