"""list_then_watch (ovn_k8s.kube.watch) against kube-apiserver: a server-side watch timeout
ends the stream and the watch resumes from its resourceVersion; a compacted resourceVersion
answers 410 mid-stream and the loop relists, reporting what vanished. The same event
sequences as the embedded server's tests (tests/unit/kube/test_watch.py), read from WatchStats
instead of that server's request log. Runs with the watcher's least-privilege token."""

from __future__ import annotations

import pytest

from ovn_k8s.kube.backoff import Backoff
from ovn_k8s.kube.params import ConnectionParams
from ovn_k8s.kube.rest import KubeClient, resource_path
from ovn_k8s.kube.watch import Synced, WatchSettings, WatchStats, list_then_watch
from sandbox.watcher_harness import wait_until
from tests.realk8s.conftest import pod
from tests.unit.kube.conftest import WatchRunner

pytestmark = pytest.mark.realk8s
FAST = WatchSettings(timeout_seconds=60, read_timeout=5.0,
                     backoff=Backoff(initial=0.01, maximum=0.1, factor=2.0, jitter=0.2))


def _summary(item):
    if isinstance(item, Synced):
        return ("SYNCED", item.initial, item.count)
    return (item.type, item.key, item.synthetic)


@pytest.fixture
def client(real_kube):
    params = ConnectionParams(server=real_kube.url, ca_file=real_kube.ca_file,
                              token=real_kube.cluster.watcher_token)
    with KubeClient(params, timeout=10) as c:
        yield c


@pytest.fixture
def run_watch():
    runners: list[WatchRunner] = []

    def start(make):
        runner = WatchRunner(make)
        runners.append(runner)
        return runner
    yield start
    for runner in runners:
        runner.close(timeout=15)


def test_server_timeout_ends_stream_and_watch_resumes(real_kube, client, run_watch):
    real_kube.ensure_namespace("wt")
    path = resource_path("pods", namespace="wt")
    settings = WatchSettings(timeout_seconds=1, read_timeout=5.0)
    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, path, stop=stop, settings=settings,
                                               stats=stats))
    assert isinstance(w.next(), Synced)
    real_kube.create("pods", pod("a", ns="wt"))
    added = w.next()
    assert _summary(added) == ("ADDED", "wt/a", False)
    wait_until(lambda: stats.watches >= 3, 10, "the server to end two 1 s watches")
    real_kube.create("pods", pod("b", ns="wt"))
    assert _summary(w.next()) == ("ADDED", "wt/b", False)   # a is not replayed
    assert int(stats.resource_version) > int(added.obj["metadata"]["resourceVersion"])
    assert stats.errors == 0 and stats.lists == 1 and stats.expired == 0


def test_compaction_410_mid_stream_relists_and_reports_what_vanished(real_kube, client,
                                                                     run_watch):
    kube, cp = real_kube, real_kube.cp
    kube.ensure_namespace("cmp")
    for name in ("gone", "kept", "changed", "recreated"):
        kube.create("pods", pod(name, ns="cmp"))
    done: list[int] = []

    def sleep(delay: float) -> None:
        # Called after the stream broke (kube-apiserver killed): once it is back, change
        # things behind the watch's back and compact etcd past its resourceVersion.
        if done:
            return
        wait_until(cp.readyz, 60, "kube-apiserver to come back")
        kube.delete("pods", "gone", namespace="cmp")
        kube.patch("pods", "changed", {"metadata": {"annotations": {"a": "b"}}},
                   namespace="cmp")
        kube.delete("pods", "recreated", namespace="cmp")
        kube.create("pods", pod("recreated", ns="cmp"))
        kube.create("pods", pod("new", ns="cmp"))
        done.append(cp.compact())

    stats = WatchStats()
    path = resource_path("pods", namespace="cmp")
    w = run_watch(lambda stop: list_then_watch(client, path, stop=stop, settings=FAST,
                                               stats=stats, sleep=sleep))
    initial = w.take(5)
    assert _summary(initial[-1]) == ("SYNCED", True, 4)
    old_recreated = next(i.obj for i in initial[:4] if i.key == "cmp/recreated")
    # A write the pod watch does not see: the restarted server's watch cache starts past
    # the watch's resourceVersion, whatever else happens meanwhile.
    kube.create("configmaps", {"metadata": {"name": "bump"}, "data": {}}, namespace="cmp")
    cp.restart_apiserver()

    relist = w.take(6, timeout=30)
    assert [_summary(i) for i in relist] == [
        ("DELETED", "cmp/gone", True),
        ("MODIFIED", "cmp/changed", True),
        ("ADDED", "cmp/new", True),
        ("DELETED", "cmp/recreated", True),
        ("ADDED", "cmp/recreated", True),
        ("SYNCED", False, 4),
    ]
    assert relist[0].obj["metadata"]["name"] == "gone"
    assert relist[3].obj["metadata"]["uid"] == old_recreated["metadata"]["uid"]
    assert relist[4].obj["metadata"]["uid"] != old_recreated["metadata"]["uid"]
    assert stats.expired == 1 and stats.lists == 2
    assert int(relist[-1].resource_version) >= done[0]

    # The watch continues from the new list's resourceVersion. (kube-apiserver deletes a
    # pod bound to a node in two writes, even with grace 0: MODIFIED with its
    # deletionTimestamp, then DELETED.)
    kube.delete("pods", "kept", namespace="cmp")
    marked = w.next()
    assert _summary(marked) == ("MODIFIED", "cmp/kept", False)
    assert marked.obj["metadata"]["deletionTimestamp"]
    assert _summary(w.next()) == ("DELETED", "cmp/kept", False)
