"""watcher.worker.run, the controllers' shared loop, on a real WorkQueue in a thread: flagged
steps run before any batch, a failing step holds every batch back until it succeeds, a sync
clears the flags it makes moot."""

from __future__ import annotations

import threading

from ovn_k8s.kube.workqueue import WorkQueue
from watcher import worker


def _start(queue, stop, **kwargs) -> threading.Thread:
    t = threading.Thread(target=worker.run, args=("test", queue, stop), daemon=True,
                         kwargs={"batch_size": 10, "queue_depth": lambda n: None, **kwargs})
    t.start()
    return t


def test_a_failing_step_holds_batches_back_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(worker, "RETRY_PAUSE", 0.01)
    log: list[str] = []
    done = threading.Event()
    fails = [RuntimeError("NB gone"), RuntimeError("still gone")]

    def refresh() -> None:
        log.append("refresh")
        if fails:
            raise fails.pop(0)

    def process(keys) -> None:
        log.append("process " + ",".join(sorted(keys)))
        done.set()

    queue: WorkQueue[str] = WorkQueue(name="t")
    stop = threading.Event()
    resync, dirty = threading.Event(), threading.Event()
    dirty.set()
    queue.add("a")
    t = _start(queue, stop, resync=worker.Step("sync", resync, lambda: log.append("sync")),
               steps=[worker.Step("refresh", dirty, refresh)], process=process)
    try:
        assert done.wait(10)
    finally:
        queue.shutdown()
        stop.set()
        t.join(5)
    assert log == ["refresh", "refresh", "refresh", "process a"]
    assert not dirty.is_set()


def test_a_sync_clears_the_flags_it_covers_and_every_loop_runs(monkeypatch):
    log: list[str] = []
    done = threading.Event()
    queue: WorkQueue[str] = WorkQueue(name="t")
    stop = threading.Event()
    resync, gateways = threading.Event(), threading.Event()
    resync.set()
    gateways.set()
    queue.add("k")

    def process(keys) -> None:
        log.append("process")
        done.set()

    t = _start(queue, stop,
               resync=worker.Step("sync", resync, lambda: log.append("sync"), clears=(gateways,)),
               steps=[worker.Step("gateways", gateways, lambda: log.append("gateways"))],
               every_loop=lambda: log.append("tick"), process=process)
    try:
        assert done.wait(10)
    finally:
        queue.shutdown()
        stop.set()
        t.join(5)
    assert log[:3] == ["sync", "tick", "process"]
    assert "gateways" not in log
