"""A failed key's next step, the same for every controller of the watcher: requeue it with
back-off, or give up after the work queue's last retry. Counted in the metrics and logged."""

from __future__ import annotations

import logging

from ovn_k8s.kube.workqueue import WorkQueue
from watcher.metrics import WatcherMetrics

LOG = logging.getLogger(__name__)


def requeue_or_give_up(queue: WorkQueue, metrics: WatcherMetrics, resource: str, kind: str, key: str,
                       exc: BaseException, *, expected: bool = False) -> int | None:
    """Requeue `key` after `exc`: None when it will be retried, else the number of attempts
    made (the caller then drops the key's state and tells the user). `resource` labels the
    metrics ("pods"), `kind` the log lines ("pod"). An `expected` failure (waiting for
    something else to happen first) is logged at INFO rather than WARNING."""
    attempt = queue.num_requeues(key) + 1
    if queue.add_rate_limited(key):
        metrics.retries.inc(resource=resource)
        metrics.reconciled.inc(resource=resource, result="retry")
        LOG.log(logging.INFO if expected else logging.WARNING, "%s %s: attempt %d failed: %s; will retry",
                kind, key, attempt, exc)
        return None
    metrics.give_ups.inc(resource=resource)
    metrics.reconciled.inc(resource=resource, result="give_up")
    LOG.error("%s %s: giving up after %d attempts: %s", kind, key, attempt, exc)
    return attempt
