"""WorkQueue: de-duplication, per-key exclusivity, retry backoff, batches (fake clock)."""

from __future__ import annotations

import threading
import time

import pytest

from ovn_k8s.kube.backoff import Backoff
from ovn_k8s.kube.workqueue import WorkQueue, run_worker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def drain(q: WorkQueue) -> list:
    keys = []
    while (key := q.get(timeout=0)) is not None:
        keys.append(key)
    return keys


def test_adds_are_deduplicated_and_fifo():
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "c", "b"):
        q.add(key)
    assert len(q) == 3
    assert drain(q) == ["a", "b", "c"]
    assert q.get(timeout=0.01) is None


def test_key_re_added_while_processing_waits_for_done():
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get() == "a"
    q.add("a")
    q.add("a")
    assert q.get(timeout=0) is None  # not handed out twice concurrently
    assert q.num_processing == 1
    q.done("a")
    assert q.get(timeout=0) == "a"  # queued again, once
    q.done("a")
    assert q.get(timeout=0) is None


def test_no_concurrent_processing_of_one_key_across_workers():
    q: WorkQueue[str] = WorkQueue()
    active: set[str] = set()
    overlaps = []
    processed = []
    lock = threading.Lock()

    def reconcile(key: str) -> None:
        with lock:
            if key in active:
                overlaps.append(key)
            active.add(key)
        time.sleep(0.002)
        with lock:
            active.discard(key)
            processed.append(key)

    workers = [threading.Thread(target=run_worker, args=(q, reconcile)) for _ in range(4)]
    for w in workers:
        w.start()
    for i in range(200):
        q.add(f"k{i % 5}")
        if i % 20 == 0:
            time.sleep(0.003)
    assert q.wait_idle(5)
    q.shutdown()
    for w in workers:
        w.join(5)
    assert not overlaps
    assert set(processed) == {f"k{i}" for i in range(5)}
    assert len(processed) < 200  # de-duplicated


def test_rate_limited_backoff_schedule(clock):
    q: WorkQueue[str] = WorkQueue(clock=clock, rand=lambda: 0.5,
                                  backoff=Backoff(initial=0.005, maximum=0.05, jitter=0.1))
    delays = []
    for _ in range(6):
        assert q.add_rate_limited("a")
        assert q.get(timeout=0) is None  # not yet
        assert q.num_waiting == 1
        start = clock.now
        # Step the fake clock until the key comes due.
        while (key := q.get(timeout=0)) is None:
            clock.advance(0.0001)
        delays.append(round(clock.now - start, 4))
        assert key == "a"
        q.done("a")
    # 5 ms doubling, capped at 50 ms, +5% jitter (rand 0.5 * jitter 0.1)
    assert delays == pytest.approx([0.00525, 0.0105, 0.021, 0.042, 0.0525, 0.0525], abs=2e-4)
    assert q.num_requeues("a") == 6
    q.forget("a")
    assert q.num_requeues("a") == 0


def test_gives_up_after_max_retries(clock):
    q: WorkQueue[str] = WorkQueue(clock=clock, max_retries=3)
    assert [q.add_rate_limited("a") for _ in range(4)] == [True, True, True, False]
    assert q.num_requeues("a") == 0  # reset once given up
    assert q.add_rate_limited("a")  # a fresh start if it fails again later


def test_add_after_keeps_the_earliest_time(clock):
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 1)
    q.add_after("a", 5)
    assert q.num_waiting == 1
    clock.advance(1)
    assert q.get(timeout=0) == "a"
    q.done("a")
    clock.advance(10)
    assert q.get(timeout=0) is None  # the superseded entries are gone


def test_delayed_key_already_queued_is_not_duplicated(clock):
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("a")
    q.add_after("a", 1)
    clock.advance(2)
    assert drain(q) == ["a"]


def test_get_batch_collects_up_to_max_items():
    q: WorkQueue[str] = WorkQueue()
    for key in "abcde":
        q.add(key)
    assert q.get_batch(3) == ["a", "b", "c"]
    assert q.get_batch(10) == ["d", "e"]
    assert q.num_processing == 5
    threading.Timer(0.05, q.add, ("late",)).start()
    started = time.monotonic()
    q.add("f")
    assert q.get_batch(10, max_wait=0.15) == ["f", "late"]
    assert time.monotonic() - started >= 0.14  # waited for more until max_wait
    assert q.get_batch(5, timeout=0.01) == []


def test_blocking_get_wakes_for_a_delayed_key():
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0.05)
    started = time.monotonic()
    assert q.get(timeout=2) == "a"
    assert 0.04 <= time.monotonic() - started < 1


def test_shutdown_wakes_blocked_getters():
    q: WorkQueue[str] = WorkQueue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.02)
    q.shutdown()
    t.join(2)
    assert got == [None] and q.shutting_down
    q.add("a")
    assert q.get(timeout=0) is None


def test_run_worker_retries_then_succeeds_and_drops_permanent_errors(clock):
    q: WorkQueue[str] = WorkQueue(clock=clock, max_retries=2)
    attempts: dict[str, int] = {}

    class Permanent(Exception):
        pass

    def reconcile(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if key == "flaky" and attempts[key] < 2:
            raise RuntimeError("try again")
        if key == "broken":
            raise RuntimeError("always")
        if key == "invalid":
            raise Permanent("bad object")

    for key in ("flaky", "broken", "invalid", "fine"):
        q.add(key)
    worker = threading.Thread(target=run_worker, args=(q, reconcile),
                              kwargs={"permanent_errors": (Permanent,)})
    worker.start()
    for _ in range(200):  # let delayed retries come due on the fake clock
        clock.advance(1)
        q.add("tick")
        time.sleep(0.001)
        if attempts.get("broken", 0) >= 3:
            break
    assert q.wait_idle(2)
    q.shutdown()
    worker.join(2)
    assert attempts["flaky"] == 2 and q.num_requeues("flaky") == 0  # forgotten on success
    assert attempts["broken"] == 3  # first try + max_retries, then dropped
    assert attempts["invalid"] == 1 and attempts["fine"] == 1
