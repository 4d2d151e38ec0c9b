"""Prometheus metrics (text exposition format 0.0.4) and the /metrics, /healthz HTTP server.

Standard library only: a few counters, gauges and histograms do not justify a dependency.
Every metric is declared once in `WatcherMetrics`; label values are passed per observation.
The server answers:
- GET /metrics  the metrics;
- GET /healthz  200 "ok", or 503 with one line per failing check (a watch down, the NB
  connection down);
- GET /readyz   200 once the start-up sync is done and this watcher serves (503 in standby).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOG = logging.getLogger(__name__)

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {self.label_names}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[LabelValues, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    """A gauge set by the code, or computed at scrape time by `fn` (label values -> value)."""

    kind = "gauge"

    def __init__(self, *args: Any, fn: Callable[[], dict[LabelValues, float]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._values: dict[LabelValues, float] = {}
        self._fn = fn

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        if self._fn is not None:
            try:
                values = dict(self._fn())
            except Exception:  # noqa: BLE001 -- a scrape must never fail on one gauge
                LOG.exception("metric %s", self.name)
                values = {}
        else:
            with self._lock:
                values = dict(self._values)
        return [f"{self.name}{_labels(self.label_names, k)} {_num(v)}"
                for k, v in sorted(values.items())]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = (), *,
                 buckets: Iterable[float]) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
                    break
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        with self._lock:
            return sum(self._counts.get(self._key(labels), []))

    def samples(self) -> list[str]:
        out = []
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            running = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                running += n
                le = f'le="{_num(bound)}"'
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(total)}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return out


# 1 ms .. ~16 s, doubling (reconcile work and event-to-port latency live in the ms range).
LATENCY_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
PREFIX = "ovnk8s_watcher_"


class WatcherMetrics:
    """Every metric of ovn-k8s-watcher (see docs/watcher.md for their meaning)."""

    def __init__(self) -> None:
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

    def all(self) -> list[_Metric]:
        return [m for m in vars(self).values() if isinstance(m, _Metric)]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines += metric.header()
            lines += metric.samples()
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        LOG.debug("http %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.server.health()         # refreshes the watch_up / nb_connected gauges
            self._send(200, self.server.metrics.render(), "text/plain; version=0.0.4")
        elif path == "/healthz":
            problems = self.server.health()
            self._send(503 if problems else 200, "\n".join(problems) + "\n" if problems
                       else "ok\n")
        elif path == "/readyz":
            ready, why = self.server.ready()
            self._send(200 if ready else 503, why + "\n")
        else:
            self._send(404, "not found\n")

    def _send(self, code: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    metrics: WatcherMetrics
    health: Callable[[], list[str]]
    ready: Callable[[], tuple[bool, str]]


class MetricsServer:
    """Serves /metrics, /healthz and /readyz on host:port (port 0 picks a free one)."""

    def __init__(self, address: str, metrics: WatcherMetrics, *,
                 health: Callable[[], list[str]],
                 ready: Callable[[], tuple[bool, str]]) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdigit():
            from ovn_k8s.errors import ConfigError

            raise ConfigError(f"--metrics-address: {address!r} is not HOST:PORT "
                              "(example: 127.0.0.1:9410)")
        try:
            self._httpd = _Server((host, int(port)), _Handler)
        except OSError as exc:
            from ovn_k8s.errors import ConfigError

            raise ConfigError(f"--metrics-address: cannot listen on {address}: "
                              f"{exc.strerror or exc}") from None
        self._httpd.metrics = metrics
        self._httpd.health = health
        self._httpd.ready = ready
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics",
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
