"""The helper's metrics (Prometheus text format 0.0.4) and its /metrics + /healthz server.

Standard library only. Every metric is declared once in `DECLARED`; values are set by the
daemon's threads under one lock and rendered on each scrape.

- GET /metrics  the metrics below;
- GET /healthz  200 "ok" once the services are listed and the current flow set is applied;
  503 and one line saying why otherwise (still listing services, the last apply failed, the
  bridge or an input is missing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ovn_k8s.errors import ConfigError

LOG = logging.getLogger(__name__)
PREFIX = "ovn_k8s_gateway_helper_"

# name -> (type, help)
DECLARED: dict[str, tuple[str, str]] = {
    "flow_replacements_total": ("counter", "ovs-ofctl bundles that replaced our flows"),
    "flow_replacements_skipped_total": ("counter", "passes whose flow set equalled the one "
                                        "applied last, so ovs-ofctl was not called"),
    "flow_resyncs_total": ("counter", "periodic full resyncs (forced replacements)"),
    "flows": ("gauge", "flows in the set applied last"),
    "last_replacement_timestamp_seconds": ("gauge", "Unix time of the last replacement"),
    "services": ("gauge", "services seen in the API server"),
    "services_with_flows": ("gauge", "services with a node port or an external IPv4 address"),
    "service_events_total": ("counter", "service watch events handled, by type"),
    "services_synced": ("gauge", "1 once the service list has been read"),
    "errors_total": ("counter", "errors, by stage: inputs (bridge, ports, address), apply "
                     "(ovs-ofctl), watch (API server)"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    def __init__(self, const_labels: dict[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._const = dict(const_labels or {})
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {
            name: {} for name in DECLARED}
        for name in DECLARED:
            if name not in ("service_events_total", "errors_total"):
                self._values[name][()] = 0.0
        for stage in ("inputs", "apply", "watch"):
            self._values["errors_total"][(("stage", stage),)] = 0.0

    def _key(self, name: str, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        if name not in DECLARED:
            raise KeyError(f"undeclared metric {name}")
        return tuple(sorted(labels.items()))

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._values[name][key] = self._values[name].get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._values[name][key] = float(value)

    def get(self, name: str, **labels: str) -> float:
        key = self._key(name, labels)
        with self._lock:
            return self._values[name].get(key, 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in DECLARED.items():
                full = PREFIX + name
                lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
                for key, value in sorted(self._values[name].items()):
                    labels = [*self._const.items(), *key]
                    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                    lines.append(f"{full}{{{text}}} {_number(value)}" if text
                                 else f"{full} {_number(value)}")
        return "\n".join(lines) + "\n"


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--metrics-address: {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class MetricsServer:
    """/metrics and /healthz on a background thread; `health()` returns (ok, reason)."""

    def __init__(self, address: str, metrics: Metrics,
                 health: Callable[[], tuple[bool, str]]) -> None:
        host, port = parse_address(address)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer.metrics.render(),
                               "text/plain; version=0.0.4; charset=utf-8")
                elif path == "/healthz":
                    ok, reason = outer.health()
                    self._send(200 if ok else 503, ("ok" if ok else reason) + "\n")
                else:
                    self._send(404, "not found: try /metrics or /healthz\n")

            def _send(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
                LOG.debug("metrics: " + format, *args)

        self.metrics = metrics
        self.health = health
        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"--metrics-address: cannot listen on {address}: "
                              f"{exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self.address = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()  # blocks until serve_forever returns: only once started
            self._thread.join(timeout=5)
        self._server.server_close()
