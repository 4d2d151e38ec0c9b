"""List-then-watch: one resource's objects as a never-ending stream of typed events.

Our own loop rather than `kubernetes.watch.Watch`, which replays from its first
resourceVersion after a reconnect and crashes on ERROR 410 with deserialize=False (V9). The
shape follows kopf's watching.py; the semantics follow client-go's reflector:

1. LIST (paged) and yield its objects as events, then `Synced`.
2. WATCH from the list's resourceVersion (never an item's: kubernetes-client/python#819),
   with allowWatchBookmarks and timeoutSeconds, and a client read (inactivity) timeout.
3. Track the last resourceVersion seen, BOOKMARKs included. When the stream ends (server
   timeout, read timeout, dropped connection) watch again from it: no replay, no loss.
4. On 410 Expired (ERROR event or HTTP 410) or "too large resource version": LIST again.

What the consumer sees (`Event | Synced`):
- `Event(type, obj, synthetic)`, type ADDED / MODIFIED / DELETED. Watch events pass
  through with synthetic=False. Every LIST is diffed against the objects known so far and
  yields synthetic=True events: DELETED (carrying the last known object) for keys that
  vanished - so deletions missed while disconnected are reported - then, per listed
  object, ADDED if new, DELETED + ADDED if its uid changed (deleted and re-created), MODIFIED
  if its resourceVersion changed, nothing if unchanged.
- `Synced(resource_version, initial, count)` after each LIST's events: from here on the
  consumer's view equals the server's at that resourceVersion.
Objects are raw dicts, `trim_object`-ed, with kind/apiVersion filled in for list items.

Errors: connection errors, 5xx, 429, 401/403 and ERROR events are logged and retried with
capped exponential backoff and jitter (`WatchSettings.backoff`; `sleep`/`rand` injectable).
400/404/405/422 mean the request itself is wrong and are raised. Nothing runs in a
background thread: a failure is either retried here or raised to the consumer.

Stopping: pass `stop`. A `StopEvent` also interrupts a blocked read at once (its set()
shuts the socket down); a plain threading.Event is checked between events and bounds the
wait to the read timeout / next bookmark.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ovn_k8s.kube.backoff import Backoff
from ovn_k8s.kube.errors import (
    BadRequest,
    Gone,
    Invalid,
    KubeError,
    KubeTimeoutError,
    MethodNotAllowed,
    NotFound,
    ServerTimeout,
    WatchError,
)
from ovn_k8s.kube.rest import KubeClient, Obj, object_key, trim_object

LOG = logging.getLogger(__name__)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

# The request itself is wrong (path, selector, body): retrying cannot help.
PERMANENT_ERRORS: tuple[type[KubeError], ...] = (BadRequest, NotFound, MethodNotAllowed, Invalid)


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    obj: Obj
    synthetic: bool = False  # made from a LIST diff, not sent by the server's watch

    @property
    def key(self) -> str:
        return object_key(self.obj)


@dataclass(frozen=True, slots=True)
class Synced:
    resource_version: str
    initial: bool  # the first list of this generator (False after a relist)
    count: int  # objects in the list


@dataclass(frozen=True, slots=True)
class WatchSettings:
    timeout_seconds: int = 300
    """Server-side watch timeout; the server ends the stream cleanly after it."""
    read_timeout: float = 90.0
    """Client inactivity timeout; above the 60 s bookmark interval of real servers."""
    allow_bookmarks: bool = True
    page_size: int | None = 500
    """LIST page size (limit/continue); None lists in one request."""
    backoff: Backoff = Backoff(initial=0.5, maximum=30.0, factor=2.0, jitter=0.2)
    min_stream_seconds: float = 1.0
    """A stream that ends cleanly sooner than this with no events counts as a failure, so a
    server that closes every watch at once cannot make us spin."""
    trim: bool = True
    """Apply trim_object (drop managedFields, last-applied annotation)."""


@dataclass
class WatchStats:
    """Counters the loop keeps up to date (pass one in to read them)."""

    resource_version: str | None = None
    lists: int = 0
    watches: int = 0
    expired: int = 0
    errors: int = 0
    timeouts: int = 0
    bookmarks: int = 0
    unknown_events: int = 0
    last_error: str | None = None


class StopEvent(threading.Event):
    """A threading.Event whose set() also runs subscribed callbacks, so list_then_watch can
    interrupt a read that is blocked on a quiet stream."""

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._cb_lock = threading.Lock()
        self._next_id = 0

    def set(self) -> None:
        super().set()
        with self._cb_lock:
            callbacks = list(self._callbacks.values())
        for cb in callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 -- one bad callback must not block the others
                LOG.exception("stop callback %r failed", cb)

    def subscribe(self, cb: Callable[[], None]) -> Callable[[], None]:
        """Run `cb` on set() (now, if already set); returns the unsubscribe function."""
        with self._cb_lock:
            token = self._next_id
            self._next_id += 1
            self._callbacks[token] = cb
        if self.is_set():
            cb()

        def unsubscribe() -> None:
            with self._cb_lock:
                self._callbacks.pop(token, None)
        return unsubscribe


def _rv(obj: Obj) -> str | None:
    return (obj.get("metadata") or {}).get("resourceVersion")


def _uid(obj: Obj) -> str | None:
    return (obj.get("metadata") or {}).get("uid")


def _is_expired(status: Obj) -> bool:
    return status.get("code") == 410 or status.get("reason") in ("Expired", "Gone")


@dataclass
class _ListWatch:
    client: KubeClient
    path: str
    field_selector: str | None
    label_selector: str | None
    stop: threading.Event | None
    settings: WatchSettings
    stats: WatchStats
    sleep: Callable[[float], Any]
    rand: Callable[[], float]
    clock: Callable[[], float]
    watch_client: Any = None    # for the WATCH requests (a lite.LiteClient); default: client
    known: dict[str, Obj] = field(default_factory=dict)
    rv: str | None = None
    failures: int = 0  # consecutive failed attempts; sets the next backoff delay

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def _prepare(self, obj: Obj, kind: str | None = None, api_version: str | None = None) -> Obj:
        if self.settings.trim:
            obj = trim_object(obj)
        if kind and "kind" not in obj:
            # Items of a typed list carry no kind/apiVersion; events do. Make them alike.
            obj = {"kind": kind, "apiVersion": api_version, **obj}
        return obj

    def run(self) -> Iterator[Event | Synced]:
        need_list = True
        initial = True
        while not self.stopped():
            try:
                if need_list:
                    yield from self._list(initial)
                    initial = need_list = False
                    self.failures = 0
                    if self.stopped():
                        return
                outcome = yield from self._watch_once()
                if outcome == "stopped":
                    return
                if outcome == "expired":
                    self.stats.expired += 1
                    LOG.info("watch %s: resourceVersion %s expired, listing again", self.path,
                             self.rv)
                    need_list = True
                elif outcome == "empty":
                    raise WatchError("the stream ended at once with no events")
            except Gone:
                self.stats.expired += 1
                LOG.info("watch %s: 410 Gone at resourceVersion %s, listing again", self.path,
                         self.rv)
                need_list = True
            except PERMANENT_ERRORS:
                raise
            except KubeError as exc:
                if self.stopped():
                    return
                if isinstance(exc, ServerTimeout) and exc.too_large_resource_version:
                    # The server is behind our resourceVersion (e.g. restored): relist.
                    need_list = True
                delay = self.settings.backoff.delay(self.failures, self.rand)
                self.failures += 1
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                LOG.warning("watch %s: %s; retry %d in %.2fs", self.path, exc, self.failures,
                            delay)
                self.sleep(delay)

    def _list(self, initial: bool) -> Iterator[Event | Synced]:
        listing = self.client.list(self.path, label_selector=self.label_selector,
                                   field_selector=self.field_selector,
                                   limit=self.settings.page_size)
        self.stats.lists += 1
        rv = _rv(listing)
        if not rv:
            raise WatchError("the list answer has no metadata.resourceVersion")
        list_kind = str(listing.get("kind") or "")
        kind = list_kind[:-4] if list_kind.endswith("List") else None
        items = [self._prepare(o, kind, listing.get("apiVersion"))
                 for o in listing.get("items") or []]
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self.known if k not in fresh]:
            yield Event("DELETED", self.known.pop(key), synthetic=True)
        for key, obj in fresh.items():
            old = self.known.get(key)
            if old is None:
                yield Event("ADDED", obj, synthetic=True)
            elif _uid(old) != _uid(obj):
                yield Event("DELETED", old, synthetic=True)
                yield Event("ADDED", obj, synthetic=True)
            elif _rv(old) != _rv(obj):
                yield Event("MODIFIED", obj, synthetic=True)
            self.known[key] = obj
        self.rv = self.stats.resource_version = rv
        LOG.debug("watch %s: listed %d objects at resourceVersion %s", self.path, len(items), rv)
        yield Synced(rv, initial=initial, count=len(items))

    def _watch_once(self) -> Iterator[Event]:
        """One watch request. Returns "ended" (clean end or read timeout: watch again),
        "expired" (list again), "empty" (ended at once, nothing sent) or "stopped"."""
        started = self.clock()
        stream = (self.watch_client or self.client).watch(
            self.path, resource_version=self.rv, label_selector=self.label_selector,
            field_selector=self.field_selector, allow_bookmarks=self.settings.allow_bookmarks,
            timeout_seconds=self.settings.timeout_seconds,
            read_timeout=self.settings.read_timeout)
        self.stats.watches += 1
        unsubscribe = (self.stop.subscribe(stream.interrupt)
                       if isinstance(self.stop, StopEvent) else None)
        got_any = False
        try:
            try:
                for raw in stream:
                    # Anything received means the server and connection work again.
                    got_any = True
                    self.failures = 0
                    if self.stopped():
                        return "stopped"
                    typ, obj = raw["type"], raw["object"]
                    if typ in ("ADDED", "MODIFIED", "DELETED"):
                        obj = self._prepare(obj)
                        key = object_key(obj)
                        if typ == "DELETED":
                            self.known.pop(key, None)
                        else:
                            self.known[key] = obj
                        self._advance(_rv(obj))
                        yield Event(typ, obj)
                    elif typ == "BOOKMARK":
                        self.stats.bookmarks += 1
                        self._advance(_rv(obj))
                    elif typ == "ERROR":
                        if _is_expired(obj):
                            return "expired"
                        raise WatchError(f"ERROR event {obj.get('code')} "
                                         f"{obj.get('reason')}: {obj.get('message')}",
                                         status=obj)
                    else:
                        self.stats.unknown_events += 1
                        LOG.warning("watch %s: unknown event type %r skipped", self.path, typ)
            except KubeTimeoutError:
                # Inactivity: the connection may be dead without an RST. Watch again at once;
                # the read timeout itself rate-limits this path.
                self.stats.timeouts += 1
                LOG.info("watch %s: nothing received for %.0fs, reconnecting", self.path,
                         self.settings.read_timeout)
                return "ended"
            if self.stopped() or stream.interrupted:
                return "stopped"
            if not got_any and self.clock() - started < self.settings.min_stream_seconds:
                return "empty"
            LOG.debug("watch %s: stream ended at resourceVersion %s", self.path, self.rv)
            return "ended"
        finally:
            if unsubscribe is not None:
                unsubscribe()
            stream.close()

    def _advance(self, rv: str | None) -> None:
        if rv:
            self.rv = self.stats.resource_version = rv


def list_then_watch(client: KubeClient, resource_path: str, *,
                    field_selector: str | None = None, label_selector: str | None = None,
                    stop: threading.Event | None = None, settings: WatchSettings | None = None,
                    stats: WatchStats | None = None, watch_client: Any = None,
                    sleep: Callable[[float], Any] | None = None,
                    rand: Callable[[], float] = random.random,
                    clock: Callable[[], float] = time.monotonic) -> Iterator[Event | Synced]:
    """Events for the objects at `resource_path` (a collection path such as
    resource_path("pods")), forever, until `stop` is set; see the module docstring.

    `sleep` (default: `stop.wait`, so a stop cuts a backoff short), `rand` and `clock` are
    injectable for tests; `stats` is updated in place. `watch_client` serves the WATCH
    requests when given (the watcher's informers: `lite.LiteClient`, which reads a stream of
    events for less CPU than `requests`); `client` serves the LISTs.
    """
    if sleep is None:
        sleep = stop.wait if stop is not None else time.sleep
    loop = _ListWatch(client=client, path=resource_path, field_selector=field_selector,
                      label_selector=label_selector, stop=stop,
                      settings=settings or WatchSettings(),
                      stats=stats if stats is not None else WatchStats(),
                      sleep=sleep, rand=rand, clock=clock, watch_client=watch_client)
    return loop.run()
