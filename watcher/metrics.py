"""The metrics of ovn-k8s-watcher, and its /metrics, /healthz and /readyz server.

- GET /metrics  the metrics below (ovn_k8s.metrics renders them);
- GET /healthz  200 "ok" ("ok (leader)" / "ok (standby)" with --leader-elect), or 503 with
  one line per failing check (a watch down, the NB connection down);
- GET /readyz   200 once the start-up sync is done and this watcher serves (503 in standby).
"""

from __future__ import annotations

from collections.abc import Callable

from ovn_k8s import metrics
from ovn_k8s.metrics import Counter, Gauge, Histogram, MetricSet

__all__ = ["Counter", "Gauge", "Histogram", "MetricsServer", "WatcherMetrics"]

# 1 ms .. ~16 s, doubling (reconcile work and event-to-port latency live in the ms range).
LATENCY_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
PREFIX = "ovnk8s_watcher_"


class WatcherMetrics(MetricSet):
    """Every metric of ovn-k8s-watcher (see docs/watcher.md for their meaning)."""

    def __init__(self) -> None:
        super().__init__()
        p = PREFIX
        self.events = Counter(p + "events_total", "Watch events received, per resource and "
                              "event type (synthetic ones come from a relist).",
                              ("resource", "type"))
        self.reconcile = Histogram(p + "reconcile_duration_seconds", "Time to reconcile one "
                                   "batch of keys (NB transaction and annotations included).",
                                   ("resource",), buckets=LATENCY_BUCKETS)
        self.reconciled = Counter(p + "reconciled_keys_total", "Keys reconciled, per resource "
                                  "and result (ok, retry, invalid, give_up).",
                                  ("resource", "result"))
        self.pod_latency = Histogram(p + "pod_port_latency_seconds", "From the first watch "
                                     "event of a pod change to its port and annotation written.",
                                     buckets=LATENCY_BUCKETS)
        self.retries = Counter(p + "retries_total", "Failed reconciles that were requeued "
                               "with backoff.", ("resource",))
        self.give_ups = Counter(p + "give_ups_total", "Keys dropped after the last retry "
                                "(an Event is recorded on the object).", ("resource",))
        self.invalid = Counter(p + "invalid_objects_total", "Objects skipped because they can "
                               "never be programmed (an Event is recorded on the object).",
                               ("resource",))
        self.nb_txns = Counter(p + "nb_transactions_total", "NB transactions committed, per "
                               "result (ok, error).", ("result",))
        self.annotations = Counter(p + "pod_annotations_total", "Pod annotation patches, per "
                                   "result (ok, error).", ("result",))
        self.sync_seconds = Gauge(p + "sync_duration_seconds", "Duration of the last start-up "
                                  "sync, per resource.", ("resource",))
        self.watch_up = Gauge(p + "watch_up", "1 when the watch of a resource is established.",
                              ("resource",))
        self.nb_up = Gauge(p + "nb_connected", "1 when the NB connection is up.")
        self.leader = Gauge(p + "leader", "1 when this watcher holds the NB lock and serves.")
        self.queue_depth = Gauge(p + "queue_depth", "Keys waiting in a work queue.",
                                 ("resource",))
        self.ports = Gauge(p + "pod_ports", "Pod ports this watcher has in the NB.")
        self.stale_deleted = Counter(p + "stale_ports_deleted_total", "Pod ports deleted by a "
                                     "sync because their pod is gone or needs none.")


class MetricsServer(metrics.MetricsServer):
    """Serves /metrics, /healthz and /readyz on host:port (port 0 picks a free one)."""

    def __init__(self, address: str, metrics_: WatcherMetrics, *,
                 health: Callable[[], list[str]],
                 ready: Callable[[], tuple[bool, str]],
                 role: Callable[[], str] | None = None) -> None:
        def healthz() -> tuple[int, str]:
            problems = health()
            if problems:
                return 503, "\n".join(problems) + "\n"
            # With leader election a standby is healthy too; the body says which it is.
            return 200, f"ok ({role()})\n" if role is not None else "ok\n"

        def readyz() -> tuple[int, str]:
            ok, why = ready()
            return 200 if ok else 503, why + "\n"

        # health() also refreshes the watch_up / nb_connected gauges before a scrape.
        super().__init__(address, metrics_, {"/healthz": healthz, "/readyz": readyz}, before_scrape=health)
