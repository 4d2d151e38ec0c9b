"""The NetworkPolicy controller: policies, the pods they select and the peers they allow, as
OVN port groups, address sets and ACLs (`ovn_k8s.desired.policies`).

    watch events (policies, pods, namespaces; node switches from the NB)
        --parse (ovn_k8s.model.policy)--> the index, under a lock; the engine keys the change
        touches are queued (never all of them)
    worker: a batch of keys --build (pure)--> desired rows --KeyedRows.apply--> ONE transaction

Keys are the rows' owners (`naming.owner_policy*`): a policy (its port group, ACLs and
named-port address sets), a peer selector (its address set, shared by policies), a node (the
ACL that lets its management port in). What each event touches:
  - a pod added, deleted, relabelled or readdressed: the policies of its namespace whose
    podSelector matched it before or after, the peers that picked it before or after, and the
    policies with egress named ports whose peers did;
  - a namespace relabelled: the peers with a namespaceSelector that matched before or after;
  - a policy: itself, and the peers it stops or starts using (a peer's set is deleted when
    no policy uses it).

`sync` (before serving): seed the engine's cache from the rows we own (a port group's
members read back as port names), compute every key, delete the rows of keys that are gone
and duplicates, create what is missing; a clean restart writes nothing.

A policy that cannot be programmed (malformed, a name taken by another owner, an NB failure
after the last retry) gets a Warning Event (`ErrorSyncingNetworkPolicy`) and is counted in
`ovnk8s_watcher_invalid_objects_total{resource="networkpolicies"}` (or `give_ups_total`).
A policy that turns malformed keeps the rows of its last good version.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import netaddr

from ovn_k8s import ipam, naming
from ovn_k8s.desired.policies import (
    COLUMNS,
    LS,
    LSP,
    PG,
    PolicyIndex,
    has_named_egress,
    node_key,
    node_rows,
    peer_key,
    peer_matches,
    peer_rows,
    policy_key,
    policy_rows,
)
from ovn_k8s.desired.topology import node_switch_id
from ovn_k8s.errors import InvalidObject, OvnK8sError
from ovn_k8s.kube.watch import Event
from ovn_k8s.kube.workqueue import DEFAULT_MAX_RETRIES, WorkQueue
from ovn_k8s.model.policy import (
    NetworkPolicy,
    PeerSelector,
    PolicyPod,
    parse_namespace,
    parse_network_policy,
    parse_policy_pod,
)
from ovn_k8s.nb import read as nb_read
from ovn_k8s.nb.keyed import Ident, KeyedRows, RowTaken, rows_by_ident, scan_tables
from ovn_k8s.nb.model import Ref, Row
from watcher import worker
from watcher.events import EventRecorder, reference
from watcher.metrics import WatcherMetrics
from watcher.retry import requeue_or_give_up

LOG = logging.getLogger(__name__)
RESOURCE = "networkpolicies"
EVENT_REASON = "ErrorSyncingNetworkPolicy"
SWITCH_PREFIX = node_switch_id("")


def _key_of(_table: str, _id: str, external_ids: Mapping[str, str]) -> str | None:
    owner = external_ids.get(naming.OWNER_KEY, "")
    return owner if owner.startswith(naming.OWNER_POLICY_PREFIX) else None


def read_owned(tables: Any) -> Any:
    """The engine's scan of our rows, with port group members as `Ref`s to port names (the
    form the builders use), so that unchanged rows compare equal."""
    found = scan_tables(tables, key_of=_key_of, columns=COLUMNS)
    ports = tables[LSP].rows

    def refs(uuids: Iterable[str]) -> list[Ref]:
        out = []
        for u in uuids:
            row = ports.get(uuidlib.UUID(u))
            if row is not None:
                out.append(Ref(LSP, row.name))
        return sorted(out)

    for rows in found.found.values():
        for ident, applied in rows.items():
            if applied.row.table == PG:
                cols = dict(applied.row.columns)
                cols["ports"] = refs(cols.get("ports") or [])
                rows[ident] = dataclasses.replace(
                    applied, row=dataclasses.replace(applied.row, columns=cols))
    return found


def read_mgmt_ips(tables: Any) -> dict[str, str]:
    """node -> its management port's address (the node subnet's second address)."""
    out: dict[str, str] = {}
    for row in nb_read.rows(tables, LS, where=lambda _o, rid, _e: rid.startswith(SWITCH_PREFIX),
                            columns=("other_config",)):
        node = row.id[len(SWITCH_PREFIX):]
        try:
            subnet = netaddr.IPNetwork((row.columns.get("other_config") or {}).get("subnet", ""))
            out.setdefault(node, str(ipam.node_addresses(subnet).mgmt_ip))
        except (netaddr.AddrFormatError, ValueError, OvnK8sError):
            continue
    return out


class PolicyController:
    def __init__(self, *, nb: Any | None, metrics: WatcherMetrics,
                 recorder: EventRecorder | None, batch_size: int = 500,
                 max_retries: int = DEFAULT_MAX_RETRIES, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.rows: KeyedRows | None = KeyedRows(nb, timeout=timeout) if nb is not None else None
        self.metrics = metrics
        self.recorder = recorder
        self.batch_size = max(1, batch_size)
        self.queue: WorkQueue[str] = WorkQueue(name=RESOURCE, max_retries=max_retries)
        self._lock = threading.Lock()
        self.index = PolicyIndex()
        self.policies: dict[str, NetworkPolicy] = {}        # "ns/name" -> last good version
        self._raw: dict[str, dict[str, Any]] = {}           # "ns/name" -> object (Events)
        self._by_key: dict[str, str] = {}                   # engine key -> "ns/name"
        self._peers: dict[str, PeerSelector] = {}           # engine key -> selector
        self._peer_users: dict[str, set[str]] = {}          # engine key -> policies using it
        self._mgmt: dict[str, str] = {}                     # node -> management IP
        self._switches_dirty = threading.Event()
        self._reload = threading.Event()
        # Until the first sync, events only fill the index: the sync rebuilds every key (at
        # 5k pods the initial list would otherwise compute touched keys 5k times for nothing).
        self._track = False
        self._force: set[str] = set()       # keys to write even if the cache says equal
        self._txns_seen = 0
        metrics.queue_depth.set(0, resource=RESOURCE)

    def attach_nb(self, nb: Any) -> None:
        self.rows = KeyedRows(nb, timeout=self.timeout)

    def _engine(self) -> KeyedRows:
        if self.rows is None:
            raise RuntimeError("the policy controller has no NB connection yet")
        return self.rows

    # -- informer side: index + enqueue the keys a change touches (no I/O) ------------------------
    def _enqueue(self, keys: Iterable[str]) -> None:
        if not self._track:
            return
        for key in keys:
            self.queue.add(key)

    def on_policy_event(self, ev: Event) -> None:
        meta = ev.obj.get("metadata") or {}
        pkey = f"{meta.get('namespace')}/{meta.get('name')}"
        touched: set[str] = set()
        with self._lock:
            old = self.policies.get(pkey)
            if ev.type == "DELETED":
                self._raw.pop(pkey, None)
                new = None
            else:
                self._raw[pkey] = ev.obj
                try:
                    new = parse_network_policy(ev.obj)
                except InvalidObject as exc:
                    self._invalid(pkey, exc)
                    return
                if new == old:
                    return
            if new is None:
                self.policies.pop(pkey, None)
            else:
                self.policies[pkey] = new
            for pol in (old, new):
                if pol is not None:
                    self._by_key[policy_key(pol)] = pkey
                    touched.add(policy_key(pol))
            old_peers = {peer_key(p): p for p in old.peer_selectors()} if old else {}
            new_peers = {peer_key(p): p for p in new.peer_selectors()} if new else {}
            for pk in old_peers:
                self._peer_users.get(pk, set()).discard(pkey)
            for pk, peer in new_peers.items():
                self._peer_users.setdefault(pk, set()).add(pkey)
                self._peers[pk] = peer
            touched.update(old_peers, new_peers)
        self._enqueue(touched)

    def on_pod_event(self, ev: Event) -> None:
        try:
            pod = parse_policy_pod(ev.obj)
        except InvalidObject:
            return
        with self._lock:
            if ev.type == "DELETED":
                old, new = self.index.remove_pod(pod.namespace, pod.name), None
            else:
                old, new = self.index.set_pod(pod), pod
            if old == new or not self._track:
                return
            touched = self._touched_by_pod(old, new)
        self._enqueue(touched)

    def _touched_by_pod(self, old: PolicyPod | None, new: PolicyPod | None) -> set[str]:
        pods = [p for p in (old, new) if p is not None and p.ip is not None]
        if not pods:
            return set()
        ns = pods[0].namespace
        ns_labels = self.index.namespace_labels(ns)
        touched: set[str] = set()
        for pol in self.policies.values():
            if pol.namespace == ns and any(pol.pod_selector.matches(p.label_map) for p in pods):
                touched.add(policy_key(pol))
        for pk, peer in self._peers.items():
            if self._peer_users.get(pk) and any(peer_matches(peer, p, ns_labels) for p in pods):
                touched.add(pk)
        for pol in self.policies.values():
            if has_named_egress(pol) and any(
                    not r.peers or any(peer.selector is not None and
                                       any(peer_matches(peer.selector, p, ns_labels) for p in pods)
                                       for peer in r.peers)
                    for r in pol.egress):
                touched.add(policy_key(pol))
        return touched

    def on_namespace_event(self, ev: Event) -> None:
        try:
            ns = parse_namespace(ev.obj)
        except InvalidObject:
            return
        with self._lock:
            if ev.type == "DELETED":
                old = self.index.remove_namespace(ns.name)
                new = None
            else:
                old = self.index.set_namespace(ns)
                new = ns.labels
            if old == new:
                return
            labels = [dict(x) for x in (old, new) if x is not None]
            touched = {pk for pk, peer in self._peers.items()
                       if peer.namespaces is not None and self._peer_users.get(pk)
                       and any(peer.namespaces.matches(lb) for lb in labels)}
            for pol in self.policies.values():
                if has_named_egress(pol):
                    touched.add(policy_key(pol))
        self._enqueue(touched)

    def on_port_created(self, owner: str) -> None:
        """A logical switch port was created in the NB (called from the IDL thread). A pod's
        port made again has a new UUID: the port groups that held the old one (a weak
        reference) lost it while the cache says it is there, so its policies are rewritten."""
        if not owner.startswith(naming.OWNER_POD_PREFIX):
            return
        namespace, _, name = owner[len(naming.OWNER_POD_PREFIX):].partition("/")
        with self._lock:
            pod = self.index.get(namespace, name)
            if pod is None or pod.ip is None or not self._track:
                return
            labels = pod.label_map
            keys = {policy_key(p) for p in self.policies.values()
                    if p.namespace == namespace and p.pod_selector.matches(labels)}
            self._force.update(keys)
        self._enqueue(keys)

    def on_switch_event(self, node: str) -> None:
        """A node switch came, went or changed in the NB (called from the IDL thread)."""
        self._switches_dirty.set()

    def request_reload(self) -> None:
        self._reload.set()

    # -- building ------------------------------------------------------------------------------------
    def _desired(self, key: str) -> dict[Ident, Row] | None:
        """A key's rows now; None: leave the key alone (a policy known only as malformed)."""
        with self._lock:
            if key.startswith(naming.owner_policy_peer("")):
                peer = self._peers.get(key)
                if peer is None or not self._peer_users.get(key):
                    self._peers.pop(key, None)
                    self._peer_users.pop(key, None)
                    return {}
                return rows_by_ident(peer_rows(peer, self.index))
            if key.startswith(naming.owner_policy_node("")):
                node = key[len(naming.owner_policy_node("")):]
                ip = self._mgmt.get(node)
                return rows_by_ident(node_rows(node, ip)) if ip else {}
            pkey = self._by_key.get(key)
            policy = self.policies.get(pkey) if pkey else None
            if policy is None:
                if pkey is not None and pkey in self._raw:
                    return None           # malformed, never programmed: nothing to keep
                return {}
            return rows_by_ident(policy_rows(policy, self.index))

    def all_keys(self) -> set[str]:
        with self._lock:
            keys = {policy_key(p) for p in self.policies.values()}
            keys.update(k for k, users in self._peer_users.items() if users)
            keys.update(node_key(n) for n in self._mgmt)
            return keys

    # -- start-up and periodic full sync -------------------------------------------------------------
    def sync(self) -> None:
        """Repair before serving (see the module docstring)."""
        t0 = time.monotonic()
        rows = self._engine()
        self._track = True             # from now on events queue keys (also during this sync)
        mgmt = rows.read(read_mgmt_ips)
        with self._lock:
            self._mgmt = mgmt
        self._switches_dirty.clear()
        found = rows.read(read_owned)
        rows.seed(found.found)
        desired: dict[str, dict[Ident, Row]] = {}
        for key in self.all_keys():
            want = self._desired(key)
            if want is not None:
                desired[key] = want
        for key in found.found:
            if key not in desired:
                desired[key] = {}
        outcome = rows.apply(desired, delete=[a for _, a in found.duplicates])
        self._count_txns()
        for key, exc in outcome.errors.items():
            self._report(key, exc)
        seconds = time.monotonic() - t0
        self.metrics.sync_seconds.set(seconds, resource=RESOURCE)
        LOG.info("networkpolicies: sync of %d policies: %d keys, %d found, %d deleted, "
                 "%d duplicates, in %.2fs", len(self.policies), len(desired),
                 len(found.found), sum(1 for k in found.found if not desired.get(k)),
                 len(found.duplicates), seconds)

    # -- the worker ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, resync_interval: float = 0.0) -> None:
        worker.run("networkpolicies", self.queue, stop,
                   resync=worker.Step("sync", self._reload, self.sync),
                   steps=[worker.Step("reading the node switches", self._switches_dirty,
                                      self._refresh_switches)],
                   batch_size=self.batch_size, process=self.process,
                   queue_depth=lambda n: self.metrics.queue_depth.set(n, resource=RESOURCE),
                   resync_interval=resync_interval)

    def _refresh_switches(self) -> None:
        mgmt = self._engine().read(read_mgmt_ips)
        with self._lock:
            old, self._mgmt = self._mgmt, mgmt
        self._enqueue(node_key(n) for n in set(old) | set(mgmt) if old.get(n) != mgmt.get(n))

    def process(self, keys: Sequence[str]) -> None:
        """One batch: build every key, ONE transaction; a failing batch is retried key by key."""
        t0 = time.monotonic()
        desired: dict[str, dict[Ident, Row]] = {}
        for key in keys:
            want = self._desired(key)
            if want is not None:
                desired[key] = want
        with self._lock:
            force = self._force & desired.keys()
            self._force -= force
        results = self._apply(desired, force)
        if isinstance(results, Exception):
            if len(desired) > 1:
                LOG.warning("networkpolicies: batch of %d failed (%s); retrying key by key",
                            len(desired), results)
            results = {}
            for key in desired:
                one = self._apply({key: desired[key]}, force & {key})
                results[key] = one if isinstance(one, Exception) else one.get(key)
        for key in keys:
            self._finish(key, results.get(key))
        self._count_txns()
        self.metrics.reconcile.observe(time.monotonic() - t0, resource=RESOURCE)

    def _apply(self, desired: dict[str, dict[Ident, Row]],
               force: set[str] | frozenset[str] = frozenset()) -> dict[str, Exception] | Exception:
        if not desired:
            return {}
        try:
            outcome = self._engine().apply(desired, force=force)
        except Exception as exc:  # noqa: BLE001 -- per key in _finish
            self.metrics.nb_txns.inc(result="error")
            return exc
        if outcome.written:
            LOG.debug("networkpolicies: wrote %s", ", ".join(sorted(outcome.written)))
        return dict(outcome.errors)

    def _count_txns(self) -> None:
        now = self._engine().transactions
        if now > self._txns_seen:
            self.metrics.nb_txns.inc(now - self._txns_seen, result="ok")
            self._txns_seen = now

    def _finish(self, key: str, exc: BaseException | None) -> None:
        try:
            if exc is None:
                self.queue.forget(key)
                self.metrics.reconciled.inc(resource=RESOURCE, result="ok")
            elif isinstance(exc, InvalidObject):         # RowTaken: a name held by another owner
                self.queue.forget(key)
                self._report(key, exc)
            else:
                attempts = requeue_or_give_up(self.queue, self.metrics, RESOURCE,
                                              "networkpolicy key", key, exc)
                if attempts is not None:
                    self._event(key, f"giving up after {attempts} attempts: {exc}")
        except Exception:  # noqa: BLE001 -- never leave a key processing forever
            LOG.exception("networkpolicies %s: finishing failed", key)
        finally:
            self.queue.done(key)

    def _report(self, key: str, exc: BaseException) -> None:
        if isinstance(exc, (InvalidObject, RowTaken)):
            with self._lock:
                pkey = self._by_key.get(key)
            self._invalid(pkey or key, exc)
        else:
            LOG.warning("networkpolicies %s: %s", key, exc)

    def _invalid(self, pkey: str, exc: BaseException) -> None:
        self.metrics.invalid.inc(resource=RESOURCE)
        self.metrics.reconciled.inc(resource=RESOURCE, result="invalid")
        LOG.warning("network policy %s: %s; not programmed until it changes", pkey, exc)
        self._event_policy(pkey, f"network policy not programmed: {exc}")

    def _event(self, key: str, message: str) -> None:
        with self._lock:
            pkey = self._by_key.get(key)
        if pkey is not None:
            self._event_policy(pkey, message)

    def _event_policy(self, pkey: str, message: str) -> None:
        obj = self._raw.get(pkey)
        if obj is None or self.recorder is None:
            return
        self.recorder.warning(reference(obj, "NetworkPolicy", "networking.k8s.io/v1"),
                              EVENT_REASON, message)

    # -- shutdown ---------------------------------------------------------------------------------------
    def drain(self, timeout: float) -> bool:
        return self.queue.wait_idle(timeout)

    def shutdown(self) -> None:
        self.queue.shutdown()

    def close(self) -> None:
        pass

