"""Keyed work queue for level-driven controllers (client-go's workqueue, in Python).

Watch events only `add(key)`; workers `get()` a key, reconcile it from current state, then
`done(key)`. The queue guarantees:
- de-duplication: a key waiting in the queue is queued once, however often it is added;
- no concurrent processing of one key: a key re-added while being processed is queued
  again only when `done(key)` is called;
- per-key retry: `add_rate_limited(key)` re-adds after a capped exponential backoff with
  jitter (default 5 ms doubling, capped at 60 s) and refuses after `max_retries` (default
  15, ovn-kubernetes' maxRetries); `forget(key)` resets the count after a success;
- batching: `get_batch()` hands out several keys so one OVSDB transaction can cover them.

`clock` drives the retry delays only (inject a fake for tests); `get(timeout)` and
`get_batch(max_wait)` wait in real time. `run_worker()` is the single place where a
reconcile failure is caught, logged and retried (style §4.5).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from ovn_k8s.kube.backoff import Backoff

LOG = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

DEFAULT_BACKOFF = Backoff(initial=0.005, maximum=60.0, factor=2.0, jitter=0.1)
DEFAULT_MAX_RETRIES = 15


class WorkQueue(Generic[K]):
    def __init__(self, *, name: str = "", backoff: Backoff = DEFAULT_BACKOFF,
                 max_retries: int = DEFAULT_MAX_RETRIES,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.name = name
        self.backoff = backoff
        self.max_retries = max_retries
        self._clock = clock
        self._rand = rand
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # keys that need processing (queued or waiting for done)
        self._processing: set[K] = set()
        self._waiting: list[tuple[float, int, K]] = []  # heap of (ready at, seq, key)
        self._ready_at: dict[K, float] = {}  # earliest ready time per delayed key
        self._seq = itertools.count()
        self._failures: dict[K, int] = {}
        self._shutdown = False

    # -- adding --------------------------------------------------------------------------------

    def add(self, key: K) -> None:
        with self._cond:
            if not self._shutdown:
                self._add_locked(key)

    def _add_locked(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() queues it again
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Add `key` once `delay` seconds (of the queue's clock) have passed."""
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            ready = self._clock() + delay
            if self._ready_at.get(key, float("inf")) <= ready:
                return  # already due sooner
            self._ready_at[key] = ready
            heapq.heappush(self._waiting, (ready, next(self._seq), key))
            self._cond.notify_all()  # getters recompute how long to sleep

    def add_rate_limited(self, key: K) -> bool:
        """Re-add `key` after its backoff delay. False (and the count is reset) once it has
        been retried `max_retries` times: the caller gives up on it."""
        with self._cond:
            attempts = self._failures.get(key, 0)
            if attempts >= self.max_retries:
                self._failures.pop(key, None)
                return False
            self._failures[key] = attempts + 1
            delay = self.backoff.delay(attempts, self._rand)
        LOG.debug("workqueue %s: %s retry %d in %.3fs", self.name, key, attempts + 1, delay)
        self.add_after(key, delay)
        return True

    def forget(self, key: K) -> None:
        """Reset the retry count of `key` (call after it was processed successfully)."""
        with self._cond:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    # -- taking --------------------------------------------------------------------------------

    def _promote_locked(self) -> float | None:
        """Move due delayed keys to the queue; return seconds until the next one is due."""
        now = self._clock()
        while self._waiting:
            ready, _, key = self._waiting[0]
            if self._ready_at.get(key) != ready:
                heapq.heappop(self._waiting)  # superseded by an earlier add_after
                continue
            if ready > now:
                return ready - now
            heapq.heappop(self._waiting)
            del self._ready_at[key]
            self._add_locked(key)
        return None

    def _take_locked(self) -> K:
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def get(self, timeout: float | None = None) -> K | None:
        """Next key to process (it is then 'processing' until done()). Blocks; None on
        shutdown or when `timeout` seconds pass with nothing to do."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                due_in = self._promote_locked()
                if self._queue:
                    return self._take_locked()
                wait = due_in
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def get_batch(self, max_items: int, max_wait: float = 0.0,
                  timeout: float | None = None) -> list[K]:
        """Block (up to `timeout`) for one key, then gather more for up to `max_wait`
        seconds, at most `max_items` in all. Every key returned needs its own done().
        [] on shutdown or timeout."""
        first = self.get(timeout)
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + max_wait
        with self._cond:
            while len(batch) < max_items and not self._shutdown:
                due_in = self._promote_locked()
                if self._queue:
                    batch.append(self._take_locked())
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining if due_in is None else min(due_in, remaining))
        return batch

    def done(self, key: K) -> None:
        """Processing of `key` finished; if it was added meanwhile, queue it again."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not self._shutdown:
                self._queue.append(key)
                self._cond.notify_all()  # a getter, whichever waiter notify() would pick
            elif not self._queue and not self._processing:
                # Only wait_idle() waits for this; waking the getters on every done() cost a
                # thread switch per key in a burst.
                self._cond.notify_all()

    # -- lifecycle and introspection -----------------------------------------------------------

    def shutdown(self) -> None:
        """Stop: queued and delayed keys are dropped, get() returns None from now on."""
        with self._cond:
            self._shutdown = True
            self._queue.clear()
            self._dirty.clear()
            self._waiting.clear()
            self._ready_at.clear()
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or processing (delayed keys do not count)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._processing,
                                       timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def num_processing(self) -> int:
        with self._cond:
            return len(self._processing)

    @property
    def num_waiting(self) -> int:
        with self._cond:
            return len(self._ready_at)


def run_worker(queue: WorkQueue[K], reconcile: Callable[[K], None], *,
               permanent_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Process keys until the queue shuts down. The one `except Exception` of a controller:
    a failed key is retried with backoff, dropped after max_retries (logged as an error),
    or dropped at once for `permanent_errors` (e.g. InvalidObject)."""
    while (key := queue.get()) is not None:
        try:
            reconcile(key)
        except permanent_errors as exc:
            LOG.error("%s: %s; not retrying", key, exc)
            queue.forget(key)
        except Exception as exc:  # noqa: BLE001 -- the worker must survive any reconcile bug
            attempt = queue.num_requeues(key) + 1
            if queue.add_rate_limited(key):
                LOG.warning("%s: attempt %d failed: %s; will retry", key, attempt, exc)
            else:
                LOG.error("%s: giving up after %d attempts", key, attempt, exc_info=exc)
        else:
            queue.forget(key)
        finally:
            queue.done(key)
