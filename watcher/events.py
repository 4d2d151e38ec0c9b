"""Kubernetes Events about the objects the watcher skips or gives up on (ovn-k's
`ErrorAddingLogicalPort` idea: explain a failure on the object, where `kubectl describe`
shows it).

Posting runs on one background thread behind a bounded queue, so a slow or failing API
server never holds up a reconcile; an identical event for the same object is not repeated
within `repeat_after` seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ovn_k8s.kube.errors import KubeError
from ovn_k8s.kube.rest import KubeClient

LOG = logging.getLogger(__name__)
COMPONENT = "ovn-k8s-watcher"


def reference(obj: dict[str, Any], kind: str, api_version: str = "v1") -> dict[str, Any]:
    """The involvedObject of an Event about `obj`: kind, apiVersion and the identifying part
    of its metadata (namespace, name, uid, resourceVersion, whichever it has)."""
    meta = obj.get("metadata") or {}
    return {"kind": kind, "apiVersion": api_version, "metadata": {
        k: meta[k] for k in ("namespace", "name", "uid", "resourceVersion") if k in meta}}


class EventRecorder:
    def __init__(self, client: KubeClient, *, component: str = COMPONENT,
                 repeat_after: float = 300.0, maxsize: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._component = component
        self._repeat_after = repeat_after
        self._clock = clock
        self._queue: queue.Queue[tuple[dict[str, Any], str, str] | None] = \
            queue.Queue(maxsize=maxsize)
        self._recent: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()
        self.posted = 0

    def warning(self, involved: dict[str, Any], reason: str, message: str) -> None:
        meta = involved.get("metadata") or {}
        ident = (f"{involved.get('kind')}/{meta.get('namespace')}/{meta.get('name')}/"
                 f"{meta.get('uid')}", reason, message)
        now = self._clock()
        with self._lock:
            last = self._recent.get(ident)
            if last is not None and now - last < self._repeat_after:
                return
            self._recent[ident] = now
            if len(self._recent) > 10_000:
                cutoff = now - self._repeat_after
                self._recent = {k: t for k, t in self._recent.items() if t >= cutoff}
        try:
            self._queue.put_nowait((involved, reason, message))
        except queue.Full:
            LOG.warning("events: queue full, not recording %s on %s", reason, ident[0])

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            involved, reason, message = item
            try:
                self._client.post_event(involved, reason=reason, message=message,
                                        event_type="Warning", component=self._component)
                self.posted += 1
            except KubeError as exc:
                LOG.warning("events: cannot record %s: %s", reason, exc)
            except Exception:  # noqa: BLE001 -- the event thread must not die
                LOG.exception("events: cannot record %s", reason)

    def close(self, timeout: float = 2.0) -> None:
        """Post what is queued (up to `timeout`), then stop."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
