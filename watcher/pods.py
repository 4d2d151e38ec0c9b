"""The pod controller: every scheduled pod on the pod network gets a logical switch port on its
node's switch, a stable address, and the `ovn` annotation the CNI plugin reads.

Level driven. Watch events only update the store and enqueue the pod's key. A worker takes
the keys that are ready, up to `batch_size` at a time, and for each reads the pod as it is
now, builds the port it should have (`ovn_k8s.desired.pods`, pure), and compares it with the
port we last wrote; all the differences of the batch go to the NB in ONE transaction
(`PodPortsCommand`). Annotations are then patched concurrently, over keep-alive
connections, while the worker already plans the next batch (a key stays "processing" until
its annotation is written, so no key is ever worked on twice at once). Deletion is the same
path with "no port" as the wanted state. Every NB read and write goes through the NB
engine's keyed mode (`ovn_k8s.nb.keyed.KeyedRows`), which holds what was last written.

Addresses are allocated here (`watcher.ipalloc`), not by ovn-northd. Write order: port first,
annotation second. So an annotated address always has its port, and after a crash between
the two, the port records the address until the annotation is written.

Failures are per key: a batch whose transaction fails is split in halves until the bad key
is alone, so one bad pod never holds up the others. A failed key is retried with capped
exponential backoff and jitter (the work queue: 5 ms doubling to 60 s, 15 tries). After the
last try, or at once for a pod that can never work (`InvalidObject`: a malformed
annotation, an address outside the node subnet), the key is dropped loudly: an error log, a
Warning Event on the pod (`ErrorAddingLogicalPort`), and a counter. A pod whose node has no
switch yet waits: minion-init creating the switch re-queues it at once (NB notification).

Start-up (`sync`), before any event is handled: rebuild the address pools from every live
pod's annotation (the source of truth), then from existing ports; delete the ports we own
whose pod is gone or needs none; queue every live pod, so missing ports are created by the
same code that handles events. A restart therefore never deletes a live pod's port and
never hands out an address twice.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ovn_k8s import naming
from ovn_k8s.desired.pods import (
    FOREIGN_PORT_COLUMNS,
    LS,
    LSP,
    PORT_COLUMNS,
    SWITCH_COLUMNS,
    SWITCH_ID_PREFIX,
    NodeSwitch,
    PodPort,
    annotated_ip,
    annotation_current,
    foreign_ips,
    is_foreign_port,
    node_switch,
    pod_key_of_row,
    pod_port,
    port_row,
    row_ip,
)
from ovn_k8s.errors import InvalidObject, OvnK8sError
from ovn_k8s.kube.errors import NotFound
from ovn_k8s.kube.watch import Event
from ovn_k8s.kube.workqueue import DEFAULT_MAX_RETRIES, WorkQueue
from ovn_k8s.model.kube import Pod, parse_pod
from ovn_k8s.nb import read as nb_read
from ovn_k8s.nb.keyed import Applied, Ident, KeyedRows, MissingParent
from ovn_k8s.nb.model import Row
from watcher import worker
from watcher.events import EventRecorder
from watcher.ipalloc import PodIpam
from watcher.metrics import WatcherMetrics
from watcher.retry import requeue_or_give_up

LOG = logging.getLogger(__name__)
RESOURCE = "pods"
EVENT_REASON = "ErrorAddingLogicalPort"   # the reason ovn-kubernetes uses
DELETE_CHUNK = 1000                       # stale ports deleted per transaction at start


class Annotator(Protocol):
    def annotate(self, namespace: str, name: str,
                 annotations: Mapping[str, str | None]) -> None: ...


class NodeNotReady(OvnK8sError):
    """The pod's node has no logical switch (with a subnet) in the NB yet."""

    def __init__(self, node: str) -> None:
        super().__init__(f"node {node} has no logical switch in the NB yet (has minion-init "
                         "run on it?)")
        self.node = node


Desired = dict[Ident, Row]           # a pod's rows: its port, or nothing


@dataclass(frozen=True, slots=True)
class _Plan:
    desired: Desired | None            # the rows to write; None: the NB is already right
    pod: Pod | None = None
    annotate: PodPort | None = None    # the annotation to write, if the pod lacks it


@dataclass
class SyncReport:
    pods: int = 0                      # pods in the store
    live: int = 0                      # pods that want a port
    ports_found: int = 0               # pod ports in the NB
    stale_deleted: int = 0
    seconds: float = 0.0


class PodController:
    def __init__(self, *, nb: Any | None, annotator: Annotator, metrics: WatcherMetrics,
                 recorder: EventRecorder | None, batch_size: int = 200,
                 annotate_workers: int = 8, max_retries: int = DEFAULT_MAX_RETRIES,
                 timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.rows: KeyedRows | None = None         # the NB engine, once the NB is known
        self.nb = nb                               # may be set later, before sync()
        self.annotator = annotator
        self.metrics = metrics
        self.recorder = recorder
        self.batch_size = max(1, batch_size)
        self.timeout = timeout
        self.queue: WorkQueue[str] = WorkQueue(name=RESOURCE, max_retries=max_retries)
        self.store: dict[str, Pod] = {}
        self.ipam = PodIpam()
        self._switches: dict[str, NodeSwitch] = {}
        self._lock = threading.Lock()              # store, _waiting, _dirty_nodes
        self._waiting: dict[str, set[str]] = {}    # node -> keys waiting for its switch
        self._dirty_nodes: set[str] = set()        # node switches changed in the NB
        self._first_seen: dict[str, float] = {}    # key -> when its pending change was seen
        self._written: dict[str, str] = {}         # key -> the annotation we last patched
        self._pool = ThreadPoolExecutor(max(1, annotate_workers),
                                        thread_name_prefix="annotate")
        self._reload = threading.Event()
        metrics.queue_depth.set(0, resource=RESOURCE)

    @property
    def nb(self) -> Any | None:
        return self.rows.api if self.rows is not None else None

    @nb.setter
    def nb(self, api: Any | None) -> None:
        self.rows = KeyedRows(api, timeout=self.timeout) if api is not None else None

    def _engine(self) -> KeyedRows:
        if self.rows is None:
            raise RuntimeError("the pod controller has no NB connection yet")
        return self.rows

    # -- informer side (watch thread): store + enqueue, no I/O ----------------------------------
    def on_event(self, ev: Event) -> None:
        try:
            pod = parse_pod(ev.obj)
        except InvalidObject as exc:
            LOG.warning("pod %s: %s; ignored", ev.key, exc)
            return
        key = pod.key
        with self._lock:
            old = self.store.get(key)
            if ev.type == "DELETED":
                self.store.pop(key, None)
                self._written.pop(key, None)
            else:
                self.store[key] = pod
        if ev.type != "DELETED" and old is not None:
            if old == pod:
                return                    # nothing the controller reads has changed
            if ev.type == "MODIFIED" and pod.annotation_text is not None and \
                    self._written.get(key) == pod.annotation_text and \
                    replace(old, annotation_text=pod.annotation_text,
                            annotation=pod.annotation, error=pod.error) == pod:
                # The echo of our own annotation patch: the pod is now what we made it.
                self._written.pop(key, None)
                return
        self._first_seen.setdefault(key, time.monotonic())
        self.queue.add(key)

    def snapshot(self) -> dict[str, Pod]:
        with self._lock:
            return dict(self.store)

    # -- NB side (IDL thread): a node switch appeared, changed or went -------------------------
    def on_switch_event(self, node: str) -> None:
        with self._lock:
            self._dirty_nodes.add(node)
            keys = self._waiting.pop(node, set())
        for key in keys:
            self.queue.forget(key)
            self.queue.add(key)

    def request_reload(self) -> None:
        """Re-read the NB (after a reconnect) and re-check every pod, between two batches."""
        self._reload.set()

    # -- start-up sync ---------------------------------------------------------------------------
    def sync(self) -> SyncReport:
        """Repair before serving (see the module docstring). Call once the pod informer has
        listed, before run()."""
        t0 = time.monotonic()
        self.ipam = PodIpam()
        report = self._reload_nb()
        report.seconds = time.monotonic() - t0
        self.metrics.sync_seconds.set(report.seconds, resource=RESOURCE)
        LOG.info("pods: sync: %d pods (%d need a port), %d ports found, %d stale ports "
                 "deleted, in %.2fs", report.pods, report.live, report.ports_found,
                 report.stale_deleted, report.seconds)
        return report

    def _reload_nb(self) -> SyncReport:
        rows = self._engine()
        pods = self.snapshot()
        switches = rows.read(_read_switches)
        found = rows.scan(key_of=pod_key_of_row, columns={LSP: PORT_COLUMNS})
        ports = {key: next(iter(applied.values())) for key, applied in found.found.items()}
        with self._lock:
            self._dirty_nodes.clear()
        self._switches = {node: sw for node, (sw, _) in switches.items()}
        for node, (sw, foreign) in switches.items():
            self.ipam.set_subnet(node, sw.subnet, foreign)
        live = {k: p for k, p in pods.items() if p.wants_port}
        # 1. Annotations are the record of which pod has which address: oldest pod first,
        #    so of two pods claiming one address the one that had it first keeps it.
        for pod in sorted(live.values(), key=lambda p: (p.created, p.key)):
            sw = self._switches.get(pod.node or "")
            if sw is None or pod.error or pod.annotation is None or self.ipam.get(pod.key):
                continue
            try:
                ip = annotated_ip(pod, sw)
            except InvalidObject:
                continue                     # reported when the pod is reconciled
            if ip is not None and not self.ipam.claim(pod.key, sw.node, ip):
                LOG.warning("pod %s: annotated address %s is taken by %s", pod.key, ip,
                            self.ipam.owner(sw.node, ip))
        # 2. A port written before a crash, whose annotation was not: keep its address.
        for key, port in ports.items():
            pod = live.get(key)
            if pod is None or self.ipam.get(key):
                continue
            sw = self._switches.get(pod.node or "")
            ip = row_ip(port.row)
            if sw is not None and ip is not None and ip in sw.subnet:
                self.ipam.claim(key, sw.node, ip)
        # 3. What is in the NB is what we compare against from now on.
        rows.seed({k: v for k, v in found.found.items() if k in live})
        # 4. Ports of pods that are gone, finished, or on the host network; duplicates.
        stale = sorted(k for k in found.found if k not in live)
        dupes: list[Applied] = [applied for _, applied in found.duplicates]
        deleted = 0
        for i in range(0, max(len(stale), 1 if dupes else 0), DELETE_CHUNK):
            chunk = stale[i:i + DELETE_CHUNK]
            rows.seed({k: found.found[k] for k in chunk}, replace=False)
            extra, dupes = (dupes, []) if i == 0 else ([], dupes)
            outcome, failed = self._write({k: {} for k in chunk}, delete=extra)
            deleted += len(chunk) - len(failed) + len(extra)
            for key in chunk:
                if key not in failed:
                    self.ipam.release(key)
            for key, exc in failed.items():
                LOG.warning("pod %s: could not delete its stale port: %s", key, exc)
        if deleted:
            self.metrics.stale_deleted.inc(deleted)
            LOG.info("pods: deleted %d stale pod ports", deleted)
        # 5. Every live pod goes through reconcile: missing ports are created, wrong ones
        #    fixed, current ones cost a comparison.
        for key in live:
            self.queue.add(key)
        self.metrics.ports.set(len(rows.keys()))
        return SyncReport(pods=len(pods), live=len(live), ports_found=len(ports),
                          stale_deleted=deleted)

    # -- the worker ------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, resync_interval: float = 0.0) -> None:
        """Process batches until the queue shuts down."""
        def reload_nb() -> None:
            report = self._reload_nb()
            LOG.info("pods: re-read the NB: %d ports, %d stale deleted",
                     report.ports_found, report.stale_deleted)

        worker.run("pods", self.queue, stop,
                   resync=worker.Step("re-reading the NB", self._reload, reload_nb),
                   every_loop=self._refresh_dirty_nodes,
                   batch_size=self.batch_size, process=self.process,
                   queue_depth=lambda n: self.metrics.queue_depth.set(n, resource=RESOURCE),
                   resync_interval=resync_interval)

    def process(self, keys: Sequence[str]) -> None:
        """Reconcile one batch: one NB transaction, then the annotations (concurrently)."""
        t0 = time.monotonic()
        plans: dict[str, _Plan] = {}
        failures: dict[str, BaseException] = {}
        for key in keys:
            try:
                plans[key] = self._plan(key)
            except Exception as exc:  # noqa: BLE001 -- per key: decided in _finish
                failures[key] = exc
        batch = {key: p.desired for key, p in plans.items() if p.desired is not None}
        written, write_failures = self._write(batch) if batch else ({}, {})
        failures.update(write_failures)
        annotate: list[tuple[str, Pod, PodPort]] = []
        for key, plan in plans.items():
            if key in failures:
                continue
            if plan.desired == {}:
                self.ipam.release(key)
            elif plan.desired and key not in written:
                failures[key] = RuntimeError("port not written")
                continue
            if plan.annotate is not None and plan.pod is not None:
                annotate.append((key, plan.pod, plan.annotate))
            else:
                self._finish(key, None)
        for key, exc in failures.items():
            self._finish(key, exc)
        self.metrics.ports.set(len(self._engine().keys()))
        for key, pod, port in annotate:
            try:
                future = self._pool.submit(self._annotate, pod, port)
            except RuntimeError as exc:      # shutting down: the next start annotates it
                self._finish(key, exc)
                continue
            future.add_done_callback(lambda f, k=key: self._finish(k, _outcome(f)))
        self.metrics.reconcile.observe(time.monotonic() - t0, resource=RESOURCE)
        if batch:
            LOG.debug("pods: batch of %d keys: %d NB changes, %d annotations, %d failed",
                      len(keys), len(batch), len(annotate), len(failures))

    def _plan(self, key: str) -> _Plan:
        with self._lock:
            pod = self.store.get(key)
        rows = self._engine()
        if pod is None or not pod.wants_port:
            self._unwait(key)
            if not rows.get(key):
                self.ipam.release(key)
                return _Plan(desired=None)
            return _Plan(desired={})
        if pod.error:
            raise InvalidObject(pod.error)
        node = pod.node or ""
        sw = self._switch(node)
        want = annotated_ip(pod, sw)
        if want is not None:
            if not self.ipam.claim(key, node, want):
                holder = self.ipam.owner(node, want)
                raise InvalidObject(f"annotated address {want} is already used by "
                                    f"{'pod ' + holder if holder else 'another port'} on "
                                    f"node {node}")
            ip = want
        else:
            ip = self.ipam.allocate(key, node)
        port = pod_port(pod, sw, ip)
        row = port_row(port)
        desired: Desired = {(row.table, row.id): row}
        return _Plan(desired=None if rows.unchanged(key, desired) else desired, pod=pod,
                     annotate=None if annotation_current(pod, port) else port)

    def _switch(self, node: str) -> NodeSwitch:
        sw = self._switches.get(node)
        if sw is not None:
            return sw
        found = self._engine().read(lambda tables: _read_switches(tables, node)).get(node)
        if found is None:
            raise NodeNotReady(node)
        sw, foreign = found
        self.ipam.set_subnet(node, sw.subnet, foreign)
        self._switches[node] = sw
        return sw

    def _refresh_dirty_nodes(self) -> None:
        with self._lock:
            dirty, self._dirty_nodes = self._dirty_nodes, set()
        for node in dirty:
            old = self._switches.pop(node, None)
            if old is None:
                continue
            found = self._engine().read(lambda tables, n=node: _read_switches(tables, n)).get(node)
            if found is not None and found[0] == old:
                self._switches[node] = old
                continue
            # The switch went or changed: its ports went with it or must move; re-check its pods.
            LOG.info("pods: the switch of node %s changed in the NB; re-checking its pods", node)
            if found is None or found[0].uuid != old.uuid:
                parent_id = SWITCH_ID_PREFIX + node
                for key, applied in self._engine().items():
                    if any(p.id == parent_id for a in applied.values() for p in a.parents):
                        self._engine().forget(key)
            for key, pod in self.snapshot().items():
                if pod.node == node:
                    self.queue.add(key)

    def _unwait(self, key: str) -> None:
        with self._lock:
            for keys in self._waiting.values():
                keys.discard(key)

    def _write(self, batch: dict[str, Desired], *, delete: Sequence[Applied] = ()) -> tuple[
            dict[str, dict[Ident, Applied]], dict[str, BaseException]]:
        """Commit `batch` in one transaction; on a transaction error, bisect to find the keys
        that fail, so the others still commit. Returns (rows written, failures) per key."""
        rows = self._engine()
        try:
            outcome = rows.apply(batch, delete=delete, force=batch.keys())
        except Exception as exc:  # noqa: BLE001 -- classified below
            self.metrics.nb_txns.inc(result="error")
            keys = list(batch)
            if len(keys) <= 1 or not _is_txn_error(exc):
                return {}, {key: exc for key in keys}
            LOG.warning("pods: NB transaction of %d ports failed (%s); splitting it", len(keys),
                        exc)
            half = len(keys) // 2
            w1, f1 = self._write({k: batch[k] for k in keys[:half]}, delete=delete)
            w2, f2 = self._write({k: batch[k] for k in keys[half:]})
            return {**w1, **w2}, {**f1, **f2}
        self.metrics.nb_txns.inc(result="ok")
        failures: dict[str, BaseException] = dict(outcome.errors)
        for key, exc in outcome.errors.items():
            if isinstance(exc, MissingParent):    # the node's switch is gone: wait for it
                node = next((r.parent.id[len(SWITCH_ID_PREFIX):] for r in batch[key].values()
                             if r.parent is not None), "")
                with self._lock:
                    self._dirty_nodes.add(node)
                failures[key] = NodeNotReady(node)
        return outcome.written, failures

    def _annotate(self, pod: Pod, port: PodPort) -> BaseException | None:
        text = port.annotation.to_json()
        self._written[pod.key] = text
        try:
            self.annotator.annotate(pod.namespace, pod.name, {naming.POD_ANNOTATION: text})
        except NotFound:
            pass                          # deleted meanwhile: its DELETED event is queued
        except Exception as exc:  # noqa: BLE001 -- KubeError or a bug: reported per key
            self._written.pop(pod.key, None)
            self.metrics.annotations.inc(result="error")
            return exc
        self.metrics.annotations.inc(result="ok")
        return None

    def _finish(self, key: str, exc: BaseException | None) -> None:
        """The single place where a key's outcome is decided (style §4.5)."""
        try:
            if exc is None:
                self.queue.forget(key)
                seen = self._first_seen.pop(key, None)
                if seen is not None:
                    self.metrics.pod_latency.observe(time.monotonic() - seen)
                self.metrics.reconciled.inc(resource=RESOURCE, result="ok")
            elif isinstance(exc, InvalidObject):
                self.queue.forget(key)
                self._first_seen.pop(key, None)
                self.metrics.invalid.inc(resource=RESOURCE)
                self.metrics.reconciled.inc(resource=RESOURCE, result="invalid")
                LOG.warning("pod %s: %s; skipped until the pod changes", key, exc)
                self._event(key, f"pod skipped: {exc}")
            else:
                if isinstance(exc, NodeNotReady):
                    with self._lock:
                        self._waiting.setdefault(exc.node, set()).add(key)
                attempts = requeue_or_give_up(self.queue, self.metrics, RESOURCE, "pod", key, exc,
                                              expected=isinstance(exc, NodeNotReady))
                if attempts is not None:
                    self._first_seen.pop(key, None)
                    self._event(key, f"giving up after {attempts} attempts: {exc}")
        except Exception:  # noqa: BLE001 -- never leave a key processing forever
            LOG.exception("pod %s: finishing failed", key)
        finally:
            self.queue.done(key)

    def _event(self, key: str, message: str) -> None:
        with self._lock:
            pod = self.store.get(key)
        if pod is not None and self.recorder is not None:
            self.recorder.warning(pod.involved_object(), EVENT_REASON, message)

    # -- shutdown --------------------------------------------------------------------------------
    def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight (delayed retries do not count)."""
        return self.queue.wait_idle(timeout)

    def shutdown(self) -> None:
        """Stop taking keys (queued ones are dropped); the worker's batch in hand finishes."""
        self.queue.shutdown()

    def close(self) -> None:
        """After the worker has returned: wait for the annotations in flight."""
        self._pool.shutdown(wait=True, cancel_futures=False)

    # -- introspection for tests and the benchmark ------------------------------------------------
    def keys_with_ports(self) -> Iterable[str]:
        return self._engine().keys() if self.rows is not None else []

    def address_of(self, key: str) -> ipaddress.IPv4Address | None:
        entry = self.ipam.get(key)
        return entry[1] if entry else None


def _read_switches(tables: Any, node: str | None = None) -> dict[
        str, tuple[NodeSwitch, list[ipaddress.IPv4Address]]]:
    """Node switches (of one node, or all) with the addresses of their ports that are not pod
    ports; of two switches of one node the lowest UUID wins. Runs inside KeyedRows.read."""
    if node is None:
        found = nb_read.rows(tables, LS, where=lambda _o, rid, _e: rid.startswith(SWITCH_ID_PREFIX),
                             columns=SWITCH_COLUMNS)
    else:
        want = SWITCH_ID_PREFIX + node
        found = [r for r in nb_read.by_name(tables, LS, naming.node_switch(node),
                                            columns=SWITCH_COLUMNS) if r.id == want]
    out: dict[str, tuple[NodeSwitch, list[ipaddress.IPv4Address]]] = {}
    for row in found:
        sw = node_switch(row)
        if sw is None or sw.node in out:
            continue
        ports = nb_read.children(tables, row, "ports", columns=FOREIGN_PORT_COLUMNS,
                                 where=is_foreign_port)
        out[sw.node] = (sw, foreign_ips(ports))
    return out


def _outcome(future: Future[BaseException | None]) -> BaseException | None:
    try:
        return future.result()
    except BaseException as exc:  # noqa: BLE001 -- _annotate returns errors; this is a bug
        return exc


def _is_txn_error(exc: BaseException) -> bool:
    """An error of this transaction's content (worth splitting the batch), not of the
    connection or the lock (which every smaller transaction would hit too)."""
    text = str(exc)
    if "lock" in text or "timed out" in text.lower() or "Timeout" in type(exc).__name__:
        return False
    return True
