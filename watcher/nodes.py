"""The node controller (`--allocate-node-subnets`): every Kubernetes Node gets a subnet of the
cluster subnet, and a Node that is deleted takes everything we made for it with it.

Level driven, one key per node name. `reconcile(name)`:
- the Node exists: decide its subnet (`ovn_k8s.desired.nodes.allocate`: its switch's subnet,
  else its annotation, else the lowest free block) and write its rows -- exactly what
  minion-init writes (`desired.topology.node_rows`: the switch with `other_config:subnet`,
  the router port, the management port) -- in ONE transaction, decided inside it (the NB
  engine's full-scan mode), so a concurrent minion-init or a second writer cannot make two
  switches overlap. Then the annotation `ovn-k8s/node-subnet` on the Node, which minion-init
  without --minion-switch-subnet waits for. Write order: NB first, annotation second, so a
  crash between the two leaves the NB recording the allocation and a restart re-derives it.
  The switch also carries the Node's uid (`naming.NODE_UID_KEY`).
- the Node is gone (its DELETED event seen, or -- after a restart -- its switch marked with
  a uid): delete every row owned by its scopes (`node:<n>`: switch, router port,
  management port; `gateway:<n>`: gateway router with its SNAT, routes and join port on the
  cluster router and the join switch, external switch) in one transaction. Pod ports on the
  switch go with it (OVSDB drops unreferenced ports; the pod controller is told through the
  switch's NB notification); the services controller sees the gateway router go and drops
  its per-gateway load balancers and chassis template variables. The subnet is free again
  once the switch is gone (the allocator reads it from the NB).
- A Node that is only NotReady is left alone: only its absence from the API counts. Rows of
  a node that never registered (minion-init run before its kubelet, a switch made by hand:
  no uid mark, no DELETED event) are left alone too.

The pool running out is a clear error, a Warning Event `SubnetAllocationFailed` on the Node,
and no retry until a node or a switch goes away. Sync before serving (`sync`) queues every
Node and every node that owns rows in the NB, so nodes deleted while the watcher was down are
cleaned too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import netaddr

from ovn_k8s import naming
from ovn_k8s.desired import topology
from ovn_k8s.desired.nodes import (
    NodeInfo,
    PoolExhausted,
    check_prefix,
    node_info,
    node_owners,
    node_scopes,
    subnet_for,
)
from ovn_k8s.errors import InvalidObject, NotReadyError
from ovn_k8s.kube.errors import NotFound
from ovn_k8s.kube.params import resource_path
from ovn_k8s.kube.watch import Event
from ovn_k8s.kube.workqueue import DEFAULT_MAX_RETRIES, WorkQueue
from ovn_k8s.nb import connection
from ovn_k8s.nb import read as nb_read
from ovn_k8s.nb.apply import ApplyCommand, NbView
from ovn_k8s.nb.keyed import KeyedRows
from ovn_k8s.nb.model import Row
from ovn_k8s.nb.plan import Plan
from watcher.events import EventRecorder, reference
from watcher.metrics import WatcherMetrics
from watcher.retry import requeue_or_give_up

LOG = logging.getLogger(__name__)
RESOURCE = "nodes"
EVENT_REASON = "SubnetAllocationFailed"
# The tables where rows of a node's scopes live (node_owners reads their owners).
OWNED_TABLES = (topology.LS, topology.LSP, topology.LR, topology.LRP, topology.ROUTE,
                topology.NAT, topology.ACL)
SWITCH_PREFIX = topology.node_switch_id("")


class NodeController:
    def __init__(self, *, nb: Any | None, kube: Any, metrics: WatcherMetrics,
                 recorder: EventRecorder | None, cluster_subnet: str | None = None,
                 prefix: int = 24, max_retries: int = DEFAULT_MAX_RETRIES,
                 timeout: float = 30.0) -> None:
        self.nb = nb
        self.kube = kube                     # rest.KubeClient: the annotation PATCH
        self.metrics = metrics
        self.recorder = recorder
        self.cluster = netaddr.IPNetwork(cluster_subnet) if cluster_subnet else None
        if self.cluster is not None:
            check_prefix(self.cluster, prefix)
        self.prefix = prefix
        self.timeout = timeout
        self.queue: WorkQueue[str] = WorkQueue(name=RESOURCE, max_retries=max_retries)
        self.store: dict[str, NodeInfo] = {}
        self._raw: dict[str, dict[str, Any]] = {}     # name -> the Node's metadata (Events)
        self._exhausted: set[str] = set()             # nodes waiting for a free subnet
        self._seen_deleted: set[str] = set()          # DELETED events since the start
        self._left_alone: set[str] = set()            # unmarked rows of unknown nodes (logged)
        self._lock = threading.Lock()
        self.deleted = 0                              # nodes whose rows were deleted
        metrics.queue_depth.set(0, resource=RESOURCE)

    # -- informer side: store + enqueue, no I/O -------------------------------------------------
    def on_event(self, ev: Event) -> None:
        try:
            info = node_info(ev.obj)
        except InvalidObject as exc:
            LOG.warning("node %s: %s; ignored", ev.key, exc)
            return
        with self._lock:
            old = self.store.get(info.name)
            if ev.type == "DELETED":
                self.store.pop(info.name, None)
                self._raw.pop(info.name, None)
                self._seen_deleted.add(info.name)
            else:
                self.store[info.name] = info
                self._raw[info.name] = dict(ev.obj.get("metadata") or {})
                self._seen_deleted.discard(info.name)
        if ev.type != "DELETED" and old is not None and \
                (old.annotated, old.uid) == (info.annotated, info.uid):
            return                          # readiness, labels, heartbeats: nothing we read
        self.queue.add(info.name)

    def on_switch_event(self, node: str) -> None:
        """A node switch appeared, changed or went in the NB (IDL thread)."""
        self.queue.add(node)
        if node not in self.store:
            self._retry_exhausted()

    def _retry_exhausted(self) -> None:
        with self._lock:
            waiting, self._exhausted = self._exhausted, set()
        for name in waiting:
            self.queue.forget(name)
            self.queue.add(name)

    def snapshot(self) -> list[NodeInfo]:
        with self._lock:
            return list(self.store.values())

    # -- start-up ----------------------------------------------------------------------------------
    def sync(self) -> int:
        """Queue every Node, and every node that owns NB rows (those no longer in the API are
        cleaned by the worker). Returns how many owners in the NB have no Node."""
        owners = KeyedRows(self.nb, timeout=self.timeout).read(_read_node_owners)
        with self._lock:
            names = set(self.store)
        gone = sorted(owners - names)
        if gone:
            LOG.info("nodes: sync: %d node(s) in the NB are not in the cluster any more: %s",
                     len(gone), ", ".join(gone[:20]))
        for name in sorted(names | owners):
            self.queue.add(name)
        return len(gone)

    # -- the worker ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not self.queue.shutting_down:
            name = self.queue.get(timeout=0.5)
            self.metrics.queue_depth.set(len(self.queue), resource=RESOURCE)
            if name is None:
                continue
            t0 = time.monotonic()
            try:
                self.reconcile(name)
            except Exception as exc:  # noqa: BLE001 -- per key: decided in _failed
                self._failed(name, exc)
            else:
                self.queue.forget(name)
                self.metrics.reconciled.inc(resource=RESOURCE, result="ok")
            finally:
                self.queue.done(name)
                self.metrics.reconcile.observe(time.monotonic() - t0, resource=RESOURCE)

    def reconcile(self, name: str) -> None:
        with self._lock:
            info = self.store.get(name)
            seen_deleted = name in self._seen_deleted
        subnet, uid = self._switch_subnet(name)
        if info is None:
            # Only a Node seen deleted, or one whose switch we marked (a Node we knew, gone
            # while we were down): rows of a node that never registered are not ours to drop.
            if seen_deleted or uid:
                self._delete(name)
                with self._lock:
                    # Done: a switch made for this name later (minion-init re-run before the
                    # kubelet registers again) is not ours to drop.
                    self._seen_deleted.discard(name)
            elif name not in self._left_alone:
                self._left_alone.add(name)
                LOG.info("node %s: rows in the NB but no Node in the cluster, and its switch "
                         "has no %s mark: left alone", name, naming.NODE_UID_KEY)
            return
        self._left_alone.discard(name)
        if subnet is None or info.annotated != str(subnet) or uid != info.uid:
            # A new node, or one whose annotation or mark disagrees with its switch: decide in
            # a transaction. (A node whose switch matches costs one local read.)
            subnet = self._ensure(info)
        if info.annotated != str(subnet):
            self._annotate(info, str(subnet))

    def _switch_subnet(self, name: str) -> tuple[netaddr.IPNetwork | None, str]:
        """The subnet of the node's switch in our NB replica (None: no switch yet) and the
        Node uid marked on it ("" when unmarked)."""
        def read(tables: Any) -> tuple[str | None, str]:
            want = SWITCH_PREFIX + name
            rows = nb_read.by_name(tables, topology.LS, naming.node_switch(name),
                                   columns=("other_config", "external_ids"))
            for r in rows:
                if r.id == want:
                    ext = r.columns.get("external_ids") or {}
                    return ((r.columns.get("other_config") or {}).get("subnet"),
                            ext.get(naming.NODE_UID_KEY, ""))
            return None, ""
        text, uid = KeyedRows(self.nb, timeout=self.timeout).read(read)
        try:
            return (netaddr.IPNetwork(text) if text else None), uid
        except (netaddr.AddrFormatError, ValueError):
            return None, uid

    def _apply(self, scopes: tuple[str, ...], build: Callable[[NbView], list[Row]]) -> Plan:
        cmd = ApplyCommand(self.nb, scopes=scopes, build=build)
        try:
            with connection.transaction(self.nb, timeout=self.timeout) as txn:
                txn.add(cmd)
        except Exception:
            self.metrics.nb_txns.inc(result="error")
            raise
        self.metrics.nb_txns.inc(result="ok")
        return cmd.result

    def _delete(self, name: str) -> None:
        plan = self._apply(node_scopes(name), lambda _view: [])
        if plan:
            self.deleted += 1
            LOG.info("node %s: gone from the cluster: deleted its NB rows (%s)", name,
                     plan.summary())
            self._retry_exhausted()

    def _ensure(self, info: NodeInfo) -> netaddr.IPNetwork:
        chosen: list[netaddr.IPNetwork] = []

        def build(view: NbView) -> list[Row]:
            router = view.row(topology.LR, topology.CLUSTER_ROUTER_ID)
            if router is None:
                raise NotReadyError("the cluster router does not exist in the NB: run "
                                    "master-init first")
            # Every node switch links a port into the cluster router: verifying it makes this
            # decision and a concurrent minion-init's overlap check serialise.
            view.verify(router, "ports")
            cluster = self.cluster or _cluster_of(router)
            subnet = subnet_for(info.name, cluster=cluster, prefix=self.prefix,
                                switches=_switch_subnets(view), nodes=self.snapshot())
            chosen[:] = [subnet]
            return marked(topology.node_rows(topology.NodeSpec(node=info.name, subnet=subnet)),
                          info.uid)

        try:
            plan = self._apply((naming.owner_node(info.name),), build)
        except PoolExhausted:
            with self._lock:
                self._exhausted.add(info.name)
            raise
        if plan:
            LOG.info("node %s: subnet %s (%s)", info.name, chosen[0], plan.summary())
        with self._lock:
            self._exhausted.discard(info.name)
        return chosen[0]

    def _annotate(self, info: NodeInfo, subnet: str) -> None:
        path = resource_path("nodes", name=info.name)
        try:
            self.kube.annotate(path, {naming.NODE_SUBNET_ANNOTATION: subnet})
        except NotFound:
            return                          # deleted meanwhile: its DELETED event is queued
        LOG.info("node %s: annotated %s=%s", info.name, naming.NODE_SUBNET_ANNOTATION, subnet)

    def _failed(self, name: str, exc: BaseException) -> None:
        if isinstance(exc, PoolExhausted):
            self.queue.forget(name)
            self.metrics.reconciled.inc(resource=RESOURCE, result="invalid")
            LOG.error("node %s: %s", name, exc)
            self._event(name, str(exc))
            return
        attempts = requeue_or_give_up(self.queue, self.metrics, RESOURCE, "node", name, exc,
                                      expected=isinstance(exc, NotReadyError))
        if attempts is not None:
            self._event(name, f"giving up after {attempts} attempts: {exc}")

    def _event(self, name: str, message: str) -> None:
        with self._lock:
            meta = self._raw.get(name)
        if meta is not None and self.recorder is not None:
            self.recorder.warning(reference({"metadata": meta}, "Node"), EVENT_REASON, message)

    # -- shutdown ----------------------------------------------------------------------------------
    def drain(self, timeout: float) -> bool:
        return self.queue.wait_idle(timeout)

    def shutdown(self) -> None:
        self.queue.shutdown()

    def close(self) -> None:
        pass


def marked(rows: list[Row], uid: str) -> list[Row]:
    """minion-init's rows for a node, its switch marked with the Node's uid (what lets a later
    sync tell a Node we knew, and that went, from one that never registered)."""
    out = []
    for row in rows:
        if row.table == topology.LS and row.id.startswith(SWITCH_PREFIX):
            ext = {**row.columns.get("external_ids", {}), naming.NODE_UID_KEY: uid}
            row = replace(row, columns={**row.columns, "external_ids": ext})
        out.append(row)
    return out


def _cluster_of(router: Any) -> netaddr.IPNetwork:
    text = (router.external_ids or {}).get(naming.CLUSTER_SUBNET_KEY)
    if not text:
        raise NotReadyError("the cluster router records no cluster subnet: give the watcher "
                            "--cluster-ip-subnet")
    return netaddr.IPNetwork(text)


def _switch_subnets(view: NbView) -> dict[str, netaddr.IPNetwork]:
    """node -> the subnet of its switch, for every node switch in the NB (the lowest UUID
    of duplicates)."""
    out: dict[str, netaddr.IPNetwork] = {}
    for row in view.owned(topology.LS, naming.owner_node("")):
        rid = (row.external_ids or {}).get(naming.ID_KEY, "")
        text = (row.other_config or {}).get("subnet")
        if not rid.startswith(SWITCH_PREFIX) or not text:
            continue
        try:
            out.setdefault(rid[len(SWITCH_PREFIX):], netaddr.IPNetwork(text))
        except (netaddr.AddrFormatError, ValueError):
            LOG.warning("node switch %s: other_config:subnet %r is not a subnet", rid, text)
    return out


def _read_node_owners(tables: Any) -> set[str]:
    """Nodes that own rows in the NB (runs inside KeyedRows.read)."""
    owners: set[str] = set()

    def where(owner: str, _rid: str, _ext: Any) -> bool:
        owners.add(owner)
        return False

    for table in OWNED_TABLES:
        if table in tables:
            nb_read.rows(tables, table, where=where, columns=())
    return node_owners(owners)
