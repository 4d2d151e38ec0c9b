"""The services controller's Kubernetes side: stores, a work queue and a worker around
`watcher.services.ServiceReconciler` (the NB side, which builds and writes the load balancers).

Informers for services and for EndpointSlices (or core/v1 Endpoints, where the API server does
not serve discovery.k8s.io/v1) keep raw, trimmed objects in stores; every event enqueues the
key of the service it concerns (a slice names its service in the label
kubernetes.io/service-name). The worker hands the reconciler batches of ServiceInputs, read
from the stores at that moment, so events are only hints (level driven).

Failures are per key, as for pods: a batch that fails is retried key by key, so one bad
service never holds up the others; a malformed service (`InvalidObject`) is skipped with a
Warning Event (`ErrorSyncingService`) until it changes; other failures are retried with
backoff and given up on loudly after the last try. A change of the gateway routers in the NB
(gateway-init on a new node) re-reads them (`refresh_gateways`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ovn_k8s.errors import InvalidObject
from ovn_k8s.kube.rest import object_key
from ovn_k8s.kube.watch import Event
from ovn_k8s.kube.workqueue import DEFAULT_MAX_RETRIES, WorkQueue
from watcher import worker
from watcher.events import EventRecorder, reference
from watcher.metrics import WatcherMetrics
from watcher.retry import requeue_or_give_up
from watcher.services import InvalidServices, ServiceInput, ServiceReconciler

LOG = logging.getLogger(__name__)
RESOURCE = "services"
EVENT_REASON = "ErrorSyncingService"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _service_of_slice(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    ns = meta.get("namespace")
    return f"{ns}/{name}" if name and ns else None


class ServiceController:
    def __init__(self, *, nb: Any | None, metrics: WatcherMetrics,
                 recorder: EventRecorder | None,
                 use_slices: bool = True, batch_size: int = 500,
                 max_retries: int = DEFAULT_MAX_RETRIES, timeout: float = 30.0,
                 nodeport_mode: str = "per-gateway", affinity_mode: str = "hash") -> None:
        self._reconciler_args = {"timeout": timeout, "nodeport_mode": nodeport_mode,
                                 "affinity_mode": affinity_mode}
        self.reconciler: ServiceReconciler = None  # type: ignore[assignment]
        if nb is not None:
            self.attach_nb(nb)
        self.metrics = metrics
        self.recorder = recorder
        self.use_slices = use_slices
        self.batch_size = max(1, batch_size)
        self.queue: WorkQueue[str] = WorkQueue(name=RESOURCE, max_retries=max_retries)
        self._lock = threading.Lock()
        self.services: dict[str, dict[str, Any]] = {}
        self.slices: dict[str, dict[str, Any]] = {}           # slice key -> object
        self._slice_service: dict[str, str] = {}              # slice key -> service key
        self._service_slices: dict[str, set[str]] = {}        # service key -> slice keys
        self.endpoints: dict[str, dict[str, Any]] = {}
        self._gateways_changed = threading.Event()
        self._reload = threading.Event()
        self._first_seen: dict[str, float] = {}
        self._txns_seen = 0

    def attach_nb(self, nb: Any) -> None:
        """The NB connection (it may come after the informers started filling the stores)."""
        self.reconciler = ServiceReconciler(nb, **self._reconciler_args)

    # -- informer side (watch threads): stores + enqueue -----------------------------------------
    def _enqueue(self, key: str) -> None:
        self._first_seen.setdefault(key, time.monotonic())
        self.queue.add(key)

    def on_service_event(self, ev: Event) -> None:
        key = object_key(ev.obj)
        with self._lock:
            if ev.type == "DELETED":
                self.services.pop(key, None)
            else:
                old = self.services.get(key)
                self.services[key] = ev.obj
                if old is not None and _same_object(old, ev.obj):
                    return
        self._enqueue(key)

    def on_slice_event(self, ev: Event) -> None:
        slice_key = object_key(ev.obj)
        service = _service_of_slice(ev.obj)
        with self._lock:
            old_service = self._slice_service.pop(slice_key, None)
            if old_service is not None:
                self._service_slices.get(old_service, set()).discard(slice_key)
            if ev.type == "DELETED" or service is None:
                self.slices.pop(slice_key, None)
            else:
                self.slices[slice_key] = ev.obj
                self._slice_service[slice_key] = service
                self._service_slices.setdefault(service, set()).add(slice_key)
        for key in {old_service, service} - {None}:
            self._enqueue(key)  # type: ignore[arg-type]

    def on_endpoints_event(self, ev: Event) -> None:
        key = object_key(ev.obj)
        with self._lock:
            if ev.type == "DELETED":
                self.endpoints.pop(key, None)
            else:
                self.endpoints[key] = ev.obj
        self._enqueue(key)

    def on_gateways_changed(self) -> None:
        """A gateway router came, went or changed in the NB (called from the IDL thread)."""
        self._gateways_changed.set()

    def request_reload(self) -> None:
        self._reload.set()

    def input(self, key: str) -> ServiceInput:
        with self._lock:
            svc = self.services.get(key)
            if self.use_slices:
                slices = [self.slices[k] for k in sorted(self._service_slices.get(key, ()))
                          if k in self.slices]
                return ServiceInput(service=svc, endpoint_slices=slices)
            return ServiceInput(service=svc, endpoint_slices=None,
                                endpoints=self.endpoints.get(key))

    def keys(self) -> list[str]:
        with self._lock:
            return list(self.services)

    # -- start-up and periodic full sync -----------------------------------------------------------
    def sync(self) -> None:
        """Repair before serving: every service at once (ServiceReconciler.sync)."""
        t0 = time.monotonic()
        keys = self.keys()
        items = {k: self.input(k) for k in keys}
        try:
            self.reconciler.sync(items)
        except InvalidServices as exc:
            for key, err in exc.errors.items():
                self._invalid(key, err)
        self._count_txns()
        seconds = time.monotonic() - t0
        self.metrics.sync_seconds.set(seconds, resource=RESOURCE)
        LOG.info("services: sync of %d services in %.2fs", len(keys), seconds)

    # -- the worker ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, resync_interval: float = 0.0) -> None:
        def refresh_gateways() -> None:
            self.reconciler.refresh_gateways()
            self._count_txns()

        worker.run("services", self.queue, stop,
                   # A sync re-reads the gateways too.
                   resync=worker.Step("sync", self._reload, self.sync,
                                      clears=(self._gateways_changed,)),
                   steps=[worker.Step("refresh_gateways", self._gateways_changed,
                                      refresh_gateways)],
                   batch_size=self.batch_size, process=self.process,
                   queue_depth=lambda n: self.metrics.queue_depth.set(n, resource=RESOURCE),
                   resync_interval=resync_interval)

    def process(self, keys: Sequence[str]) -> None:
        t0 = time.monotonic()
        outcome = self._reconcile(keys)
        if len(keys) > 1 and isinstance(outcome, Exception):
            # Find the key that fails: each on its own, so the others still go through.
            LOG.warning("services: batch of %d failed (%s); retrying key by key", len(keys),
                        outcome)
            results = {key: self._reconcile([key]) for key in keys}
        else:
            results = {key: outcome for key in keys}
        for key, result in results.items():
            if isinstance(result, InvalidServices):
                err = result.errors.get(key)
                self._finish(key, err)
            else:
                self._finish(key, result)
        self._count_txns()
        self.metrics.reconcile.observe(time.monotonic() - t0, resource=RESOURCE)

    def _reconcile(self, keys: Sequence[str]) -> Exception | None:
        try:
            self.reconciler.reconcile({k: self.input(k) for k in keys})
        except InvalidServices as exc:
            return exc            # the other keys of the batch were applied
        except Exception as exc:  # noqa: BLE001 -- per key in _finish
            return exc
        return None

    def _count_txns(self) -> None:
        now = self.reconciler.transactions
        if now > self._txns_seen:
            self.metrics.nb_txns.inc(now - self._txns_seen, result="ok")
            self._txns_seen = now

    def _finish(self, key: str, exc: BaseException | None) -> None:
        try:
            if exc is None:
                self.queue.forget(key)
                self._first_seen.pop(key, None)
                self.metrics.reconciled.inc(resource=RESOURCE, result="ok")
            elif isinstance(exc, InvalidObject):
                self.queue.forget(key)
                self._invalid(key, exc)
            else:
                attempts = requeue_or_give_up(self.queue, self.metrics, RESOURCE, "service", key, exc)
                if attempts is not None:
                    self._first_seen.pop(key, None)
                    self._event(key, f"giving up after {attempts} attempts: {exc}")
        except Exception:  # noqa: BLE001 -- never leave a key processing forever
            LOG.exception("service %s: finishing failed", key)
        finally:
            self.queue.done(key)

    def _invalid(self, key: str, exc: BaseException) -> None:
        self._first_seen.pop(key, None)
        self.metrics.invalid.inc(resource=RESOURCE)
        self.metrics.reconciled.inc(resource=RESOURCE, result="invalid")
        LOG.warning("service %s: %s; skipped until the service changes", key, exc)
        self._event(key, f"service skipped: {exc}")

    def _event(self, key: str, message: str) -> None:
        with self._lock:
            svc = self.services.get(key)
        if svc is None or self.recorder is None:
            return
        self.recorder.warning(reference(svc, "Service"), EVENT_REASON, message)

    # -- shutdown -------------------------------------------------------------------------------------
    def drain(self, timeout: float) -> bool:
        return self.queue.wait_idle(timeout)

    def shutdown(self) -> None:
        self.queue.shutdown()

    def close(self) -> None:
        pass


def _same_object(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from metadata.resourceVersion (and managedFields, already trimmed)."""
    if a.get("spec") != b.get("spec") or a.get("status") != b.get("status"):
        return False
    ma, mb = a.get("metadata") or {}, b.get("metadata") or {}
    return ma.get("uid") == mb.get("uid") and ma.get("name") == mb.get("name")
