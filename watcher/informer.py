"""Informers: one thread per watched resource runs list_then_watch and hands each event to a
handler (which updates a store and enqueues keys; it never does I/O).

No thread dies silently: list_then_watch retries connection and server errors itself
(capped backoff with jitter); a permanent error it raises, or a bug in a handler, is logged
with its traceback and the loop goes on. `problem()` says whether the watch is down, for
/healthz: from the moment a request fails until a list or watch request succeeds again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ovn_k8s.kube.backoff import Backoff
from ovn_k8s.kube.lite import LiteClient, client_for
from ovn_k8s.kube.rest import KubeClient
from ovn_k8s.kube.watch import Event, StopEvent, Synced, WatchSettings, WatchStats, list_then_watch
from watcher.metrics import WatcherMetrics

LOG = logging.getLogger(__name__)
RESTART_BACKOFF = Backoff(initial=1.0, maximum=30.0, factor=2.0, jitter=0.2)


class Informer:
    def __init__(self, resource: str, client: KubeClient, path: str, *,
                 handler: Callable[[Event], None], stop: StopEvent, metrics: WatcherMetrics,
                 settings: WatchSettings | None = None,
                 on_synced: Callable[[Synced], None] | None = None) -> None:
        self.resource = resource
        self.path = path
        self._client = client
        # The WATCH requests through kube.lite: a watch stream read by requests/urllib3 costs
        # the watcher more CPU per event (docs/performance.md); the LISTs stay on `client`.
        self._watch_client = client_for(client.params, timeout=client.timeout,
                                        connect_timeout=client.connect_timeout)
        self._handler = handler
        self._on_synced = on_synced
        self._stop = stop
        self._metrics = metrics
        self._settings = settings or WatchSettings()
        self.stats = WatchStats()
        self.synced = threading.Event()          # the first list has been handled
        self._down_mark: int | None = None       # lists+watches when the last failure began
        self._fatal: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch-{resource}", daemon=True)
        metrics.watch_up.set(0, resource=resource)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def problem(self) -> str | None:
        """Why this watch is down, or None when it is up."""
        if self._fatal is not None:
            return f"watch {self.resource}: {self._fatal}"
        if self._down_mark is not None and \
                self.stats.lists + self.stats.watches == self._down_mark:
            return f"watch {self.resource}: {self.stats.last_error or 'reconnecting'}"
        return None

    def _update_gauge(self) -> None:
        self._metrics.watch_up.set(0 if self.problem() else 1, resource=self.resource)

    def _failed_sleep(self, delay: float) -> None:
        # list_then_watch calls this only after a failed request: the watch is down until a
        # list or watch request succeeds again.
        self._down_mark = self.stats.lists + self.stats.watches
        self._update_gauge()
        self._stop.wait(delay)

    def _run(self) -> None:
        restarts = 0
        while not self._stop.is_set():
            try:
                for item in list_then_watch(self._client, self.path, stop=self._stop,
                                            settings=self._settings, stats=self.stats,
                                            sleep=self._failed_sleep,
                                            watch_client=self._watch_client):
                    restarts = 0
                    if isinstance(item, Synced):
                        self._fatal = self._down_mark = None
                        if self._on_synced is not None:
                            self._safe(self._on_synced, item)
                        self.synced.set()
                        self._update_gauge()
                        continue
                    if self._fatal is not None or self._down_mark is not None:
                        # An event: the watch works again (the gauge is set on changes only,
                        # not per event).
                        self._fatal = self._down_mark = None
                        self._update_gauge()
                    self._metrics.events.inc(resource=self.resource, type=item.type)
                    self._safe(self._handler, item)
            except Exception as exc:  # noqa: BLE001 -- a watch thread must never end silently
                delay = RESTART_BACKOFF.delay(restarts)
                restarts += 1
                self._fatal = str(exc)
                self._update_gauge()
                LOG.error("watch %s failed: %s; starting over in %.1fs", self.resource, exc,
                          delay, exc_info=not isinstance(exc, OSError))
                self._stop.wait(delay)
        self._metrics.watch_up.set(0, resource=self.resource)
        if isinstance(self._watch_client, LiteClient):
            self._watch_client.close()

    def _safe(self, fn: Callable[[Any], None], item: Any) -> None:
        try:
            fn(item)
        except Exception:  # noqa: BLE001 -- one bad event must not stop the watch
            key = item.key if isinstance(item, Event) else "-"
            LOG.exception("watch %s: handling %s failed", self.resource, key)
