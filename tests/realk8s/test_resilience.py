"""The watcher on a real control plane under failure: etcd compacted and kube-apiserver killed
(SIGKILL) and restarted in the middle of a burst of pod creations (its watches come back with
410 Gone and it lists again), and the watcher itself killed with
SIGKILL while pods come and go and a new one started. Either way the NB ends matching the
cluster exactly (every pod annotated, its port on its node's switch with that address, no
stale port, no address given twice), and addresses already given are kept."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import requests

from sandbox.kubeapi import ApiError
from sandbox.watcher_harness import annotation, differences, wait_until
from tests.realk8s.conftest import pod

pytestmark = [pytest.mark.realk8s, pytest.mark.integration]


def _retrying(kube, action: Callable[[], object], ok_codes: tuple[int, ...]) -> None:
    """Run one write, retrying through a dead API server; `ok_codes` (409 after a create,
    404 after a delete) mean an earlier attempt got through before the answer was lost."""
    deadline = time.monotonic() + 60
    while True:
        try:
            action()
            return
        except ApiError as exc:
            if exc.code in ok_codes:
                return
            if exc.code < 500 and exc.code != 429:
                raise
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the API server did not come back within 60 s")
        time.sleep(0.1)


class Writer(threading.Thread):
    """Writes in a thread; errors end up in the test."""

    def __init__(self, run: Callable[[Writer], None]) -> None:
        super().__init__(daemon=True)
        self._run, self.done, self.error = run, 0, None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._run(self)
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(90)
        assert not self.is_alive(), "writer stuck"
        if self.error is not None:
            raise self.error


def wait_converged(kube, lab, timeout: float = 60) -> None:
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), timeout,
               "the NB to match the cluster")


def test_apiserver_restart_in_the_middle_of_a_burst(lab, kube, watcher):
    kube.ensure_namespace("burst")
    count = 120

    def create(writer: Writer) -> None:
        for i in range(count):
            body = pod(f"b{i}", "node1" if i % 2 else "node2", ns="burst")
            _retrying(kube, lambda b=body: kube.create("pods", b), (409,))
            writer.done += 1

    writer = Writer(create)
    writer.start()
    wait_until(lambda: writer.done >= count // 3, 30, "a third of the burst")
    # A write none of the watcher's watches sees, then etcd compacted past it: the restarted
    # server's watch cache starts after every resourceVersion the watcher holds, so its
    # watches come back with 410 Gone and it lists again (mid-stream, mid-burst).
    kube.create("configmaps", {"metadata": {"name": f"bump-{time.monotonic_ns()}"}},
                namespace="burst")
    kube.cp.compact()
    kube.cp.restart_apiserver()
    writer.finish()
    wait_converged(kube, lab)
    assert len(kube.list("pods", namespace="burst")) == count
    assert watcher.proc.poll() is None          # the watcher rode it out
    assert "listing again" in watcher.log()     # 410 Gone -> relist
    assert watcher.metric("ovnk8s_watcher_watch_up", resource="pods") == 1


def test_watcher_killed_under_churn_and_replaced(lab, kube, start_watcher):
    kube.ensure_namespace("churn")
    first = start_watcher()

    def churn(writer: Writer) -> None:
        i = 0
        while not writer.stop.is_set():
            body = pod(f"c{i}", "node1" if i % 2 else "node2", ns="churn")
            _retrying(kube, lambda b=body: kube.create("pods", b), (409,))
            if i % 3 == 2:   # every third step deletes an older pod
                name = f"c{i - 2}"
                _retrying(kube, lambda n=name: kube.delete("pods", n, namespace="churn"),
                          (404,))
            i += 1
            writer.done = i

    writer = Writer(churn)
    writer.start()
    wait_until(lambda: sum(1 for p in kube.list("pods", namespace="churn") if annotation(p))
               >= 20, 30, "the first watcher to annotate 20 pods")
    first.kill()                                # SIGKILL: no clean-up at all
    given = {p["metadata"]["name"]: annotation(p)
             for p in kube.list("pods", namespace="churn") if annotation(p)}
    at_kill = writer.done
    second = start_watcher(name="watcher2")
    wait_until(lambda: writer.done >= at_kill + 30, 30, "more churn under the new watcher")
    writer.finish()
    wait_converged(kube, lab)
    # Addresses the killed watcher gave are kept by its successor.
    now = {p["metadata"]["name"]: annotation(p) for p in kube.list("pods", namespace="churn")}
    kept = {name: ann for name, ann in given.items() if name in now}
    assert kept and all(now[name] == ann for name, ann in kept.items())
    assert second.proc.poll() is None
