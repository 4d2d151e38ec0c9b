"""Prometheus metrics (text exposition format 0.0.4) and the HTTP server of our daemons.

Standard library only: a few counters, gauges and histograms do not justify a dependency.
A daemon declares each of its metrics once, as an attribute of a `MetricSet` subclass
(watcher.metrics.WatcherMetrics, gateway_helper.metrics.GatewayMetrics); label values are
passed per observation. `MetricsServer` serves GET /metrics plus the daemon's own health
endpoints (/healthz, /readyz), each a function returning (HTTP status, text).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ovn_k8s.errors import ConfigError

LOG = logging.getLogger(__name__)

LabelValues = tuple[str, ...]
Endpoint = Callable[[], tuple[int, str]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(const: str, names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [const] if const else []
    parts += [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
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
        self._label_set = frozenset(self.label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if labels.keys() != self._label_set:       # no set built per call: a hot path
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {self.label_names}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self, const: str = "") -> list[str]:
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

    def samples(self, const: str = "") -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(const, self.label_names, k)} {_num(v)}" for k, v in items]


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

    def samples(self, const: str = "") -> list[str]:
        if self._fn is not None:
            try:
                values = dict(self._fn())
            except Exception:  # noqa: BLE001 -- a scrape must never fail on one gauge
                LOG.exception("metric %s", self.name)
                values = {}
        else:
            with self._lock:
                values = dict(self._values)
        return [f"{self.name}{_labels(const, self.label_names, k)} {_num(v)}"
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

    def samples(self, const: str = "") -> list[str]:
        out = []
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            running = 0
            for bound, n in zip(self.buckets, counts, strict=True):
                running += n
                le = f'le="{_num(bound)}"'
                out.append(f"{self.name}_bucket{_labels(const, self.label_names, key, le)} {running}")
            out.append(f"{self.name}_sum{_labels(const, self.label_names, key)} {_num(total)}")
            out.append(f"{self.name}_count{_labels(const, self.label_names, key)} {running}")
        return out


class MetricSet:
    """A daemon's metrics: every `_Metric` attribute, rendered in declaration order, each
    sample carrying `const_labels` (such as the node's name) first."""

    def __init__(self, const_labels: Mapping[str, str] | None = None) -> None:
        self.const_labels = dict(const_labels or {})

    def all(self) -> list[_Metric]:
        return [m for m in vars(self).values() if isinstance(m, _Metric)]

    def render(self) -> str:
        const = ",".join(f'{k}="{_escape(v)}"' for k, v in self.const_labels.items())
        lines: list[str] = []
        for metric in self.all():
            lines += metric.header()
            lines += metric.samples(const)
        return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        LOG.debug("http %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            if self.server.before_scrape is not None:
                self.server.before_scrape()
            self._send(200, self.server.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
        elif path in self.server.endpoints:
            code, text = self.server.endpoints[path]()
            self._send(code, text)
        else:
            self._send(404, "not found: try " + ", ".join(["/metrics", *self.server.endpoints]) + "\n")

    def _send(self, code: int, text: str, ctype: str = "text/plain; charset=utf-8") -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    metrics: MetricSet
    endpoints: Mapping[str, Endpoint]
    before_scrape: Callable[[], object] | None


def parse_address(address: str, flag: str = "--metrics-address") -> tuple[str, int]:
    """HOST:PORT ([v6]:PORT) -> (host, port); ConfigError in one line otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{flag}: {address!r} is not HOST:PORT (example: 127.0.0.1:9410)")
    return host.strip("[]"), int(port)


class MetricsServer:
    """GET /metrics and the given endpoints on HOST:PORT (port 0 picks a free one), served
    by a background thread between start() and stop()."""

    def __init__(self, address: str, metrics: MetricSet, endpoints: Mapping[str, Endpoint], *,
                 before_scrape: Callable[[], object] | None = None) -> None:
        host, port = parse_address(address)
        try:
            self._httpd = _Server((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"--metrics-address: cannot listen on {address}: {exc.strerror or exc}") from None
        self._httpd.metrics = metrics
        self._httpd.endpoints = dict(endpoints)
        self._httpd.before_scrape = before_scrape
        self.address: tuple[str, int] = self._httpd.server_address[:2]  # type: ignore[assignment]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics",
                                        kwargs={"poll_interval": 0.2}, daemon=True)

    @property
    def url(self) -> str:
        return "http://{}:{}".format(*self.address)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()  # blocks until serve_forever returns: only once started
            self._thread.join(timeout=5)
        self._httpd.server_close()
