"""The gateway helper's metrics and its /metrics + /healthz server (ovn_k8s.metrics).

Every sample carries the node's name as a `node` label. GET /healthz answers 200 "ok" once
the services are listed and the current flow set is applied; 503 and one line saying why
otherwise (still listing services, the last apply failed, the bridge or an input is missing).
"""

from __future__ import annotations

from collections.abc import Callable

from ovn_k8s import metrics
from ovn_k8s.metrics import Counter, Gauge, MetricSet

PREFIX = "ovn_k8s_gateway_helper_"
ERROR_STAGES = ("inputs", "apply", "watch")


class GatewayMetrics(MetricSet):
    def __init__(self, node: str | None = None) -> None:
        super().__init__({"node": node} if node else None)
        p = PREFIX
        self.flow_replacements = Counter(p + "flow_replacements_total", "ovs-ofctl bundles that replaced our flows")
        self.flow_replacements_skipped = Counter(
            p + "flow_replacements_skipped_total",
            "passes whose flow set equalled the one applied last, so ovs-ofctl was not called")
        self.flow_resyncs = Counter(p + "flow_resyncs_total", "periodic full resyncs (forced replacements)")
        self.flows = Gauge(p + "flows", "flows in the set applied last")
        self.last_replacement = Gauge(p + "last_replacement_timestamp_seconds", "Unix time of the last replacement")
        self.services = Gauge(p + "services", "services seen in the API server")
        self.services_with_flows = Gauge(p + "services_with_flows",
                                         "services with a node port or an external IPv4 address")
        self.service_events = Counter(p + "service_events_total", "service watch events handled, by type",
                                      ("type",))
        self.services_synced = Gauge(p + "services_synced", "1 once the service list has been read")
        self.errors = Counter(p + "errors_total", "errors, by stage: inputs (bridge, ports, address), apply "
                              "(ovs-ofctl), watch (API server)", ("stage",))
        for gauge in (self.flows, self.last_replacement, self.services, self.services_with_flows,
                      self.services_synced):
            gauge.set(0)
        for stage in ERROR_STAGES:
            self.errors.inc(0, stage=stage)


class MetricsServer(metrics.MetricsServer):
    """/metrics and /healthz on a background thread; `health()` returns (ok, reason)."""

    def __init__(self, address: str, metrics_: GatewayMetrics, health: Callable[[], tuple[bool, str]]) -> None:
        def healthz() -> tuple[int, str]:
            ok, reason = health()
            return (200, "ok\n") if ok else (503, reason + "\n")

        super().__init__(address, metrics_, {"/healthz": healthz})
