"""list_then_watch against the real test API server (no mocks of our own code)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from ovn_k8s.kube.backoff import Backoff
from ovn_k8s.kube.errors import BadRequest, NotFound
from ovn_k8s.kube.rest import ConnectionParams, KubeClient, resource_path
from ovn_k8s.kube.watch import Event, Synced, WatchSettings, WatchStats, list_then_watch

PODS = resource_path("pods")
FAST = WatchSettings(timeout_seconds=60, read_timeout=5.0,
                     backoff=Backoff(initial=0.01, maximum=0.1, factor=2.0, jitter=0.2))


def _summary(item):
    if isinstance(item, Synced):
        return ("SYNCED", item.initial, item.count)
    return (item.type, item.key, item.synthetic)


def _wait(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_initial_list_then_watch_events_in_order(kubeapi, client, objs, run_watch):
    kubeapi.create("pods", objs.pod("b"))
    kubeapi.create("pods", objs.pod("a", "other"))
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=FAST))
    first = w.take(3)
    assert [_summary(i) for i in first] == [
        ("ADDED", "default/b", True), ("ADDED", "other/a", True), ("SYNCED", True, 2)]
    # List items get the kind/apiVersion that a typed list leaves out.
    assert first[0].obj["kind"] == "Pod" and first[0].obj["apiVersion"] == "v1"
    assert first[2].resource_version == str(kubeapi.resource_version)

    kubeapi.create("pods", objs.pod("c"))
    kubeapi.patch("pods", "b", {"metadata": {"labels": {"x": "1"}}})
    kubeapi.delete("pods", "a", namespace="other")
    events = w.take(3)
    assert [_summary(e) for e in events] == [
        ("ADDED", "default/c", False), ("MODIFIED", "default/b", False),
        ("DELETED", "other/a", False)]
    rvs = [int(e.obj["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[-1] == kubeapi.resource_version
    assert w.quiet(0.1)


def test_resume_after_dropped_connection_without_replay_or_loss(kubeapi, client, objs,
                                                                run_watch):
    delays: list[float] = []

    def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 1:
            kubeapi.create("pods", objs.pod("while-down"))  # written while disconnected

    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=FAST,
                                               stats=stats, sleep=sleep))
    assert isinstance(w.next(), Synced)
    kubeapi.create("pods", objs.pod("before"))
    before = w.next()
    assert _summary(before) == ("ADDED", "default/before", False)
    assert kubeapi.wait_for_watches(1)

    assert kubeapi.drop_watches() == 1
    assert _summary(w.next()) == ("ADDED", "default/while-down", False)
    kubeapi.create("pods", objs.pod("after"))
    assert _summary(w.next()) == ("ADDED", "default/after", False)
    assert w.quiet(0.1)  # nothing replayed

    assert len(delays) == 1
    assert kubeapi.request_count("list", "pods") == 1  # resumed, not relisted
    watches = kubeapi.watch_requests
    assert len(watches) == 2
    assert watches[1].params["resourceVersion"] == before.obj["metadata"]["resourceVersion"]
    assert stats.errors == 1 and stats.expired == 0


def test_expired_history_relists_and_reports_what_vanished(kubeapi, client, objs, run_watch):
    kubeapi.create("pods", objs.pod("gone"))
    kubeapi.create("pods", objs.pod("kept"))
    kubeapi.create("pods", objs.pod("changed"))
    kubeapi.create("pods", objs.pod("recreated"))

    def sleep(delay: float) -> None:
        if kubeapi.request_count("list") == 1 and kubeapi.request_count("watch") == 1:
            kubeapi.delete("pods", "gone")
            kubeapi.patch("pods", "changed", {"metadata": {"annotations": {"a": "b"}}})
            kubeapi.delete("pods", "recreated")
            kubeapi.create("pods", objs.pod("recreated"))
            kubeapi.create("pods", objs.pod("new"))
            kubeapi.compact()  # the watch's resourceVersion is now too old

    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=FAST,
                                               stats=stats, sleep=sleep))
    initial = w.take(5)
    assert _summary(initial[-1]) == ("SYNCED", True, 4)
    old_recreated = initial[3].obj
    assert kubeapi.wait_for_watches(1)
    kubeapi.drop_watches()

    relist = w.take(6)
    assert [_summary(i) for i in relist] == [
        ("DELETED", "default/gone", True),
        ("MODIFIED", "default/changed", True),
        ("ADDED", "default/new", True),
        ("DELETED", "default/recreated", True),
        ("ADDED", "default/recreated", True),
        ("SYNCED", False, 4),
    ]
    # A vanished object is reported with the last state we saw.
    assert relist[0].obj["metadata"]["name"] == "gone"
    assert relist[3].obj["metadata"]["uid"] == old_recreated["metadata"]["uid"]
    assert relist[4].obj["metadata"]["uid"] != old_recreated["metadata"]["uid"]
    assert stats.expired == 1 and stats.lists == 2

    # The watch continues from the new list's resourceVersion.
    kubeapi.delete("pods", "kept")
    assert _summary(w.next()) == ("DELETED", "default/kept", False)
    assert kubeapi.watch_requests[-1].params["resourceVersion"] == relist[-1].resource_version


def test_http_410_on_watch_request_relists(kubeapi, client, objs, run_watch):
    kubeapi.create("pods", objs.pod("a"))
    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=FAST,
                                               stats=stats, sleep=lambda d: None))
    assert [_summary(i) for i in w.take(2)] == [("ADDED", "default/a", True),
                                                ("SYNCED", True, 1)]
    assert kubeapi.wait_for_watches(1)
    kubeapi.inject_error(410, reason="Expired", verb="watch", resource="pods")
    kubeapi.drop_watches()
    # Nothing changed, so the relist yields no events, only the marker.
    assert _summary(w.next()) == ("SYNCED", False, 1)
    assert stats.expired == 1


def test_bookmarks_advance_the_resource_version(kubeapi, client, objs, run_watch):
    stats = WatchStats()
    path = resource_path("pods", namespace="watched")
    w = run_watch(lambda stop: list_then_watch(client, path, stop=stop, settings=FAST,
                                               stats=stats, sleep=lambda d: None))
    assert isinstance(w.next(), Synced)
    for i in range(3):  # invisible to this watch, but they move the global resourceVersion
        kubeapi.create("pods", objs.pod(f"p{i}", "elsewhere"))
    target = str(kubeapi.resource_version)
    _wait(lambda: stats.resource_version == target)
    assert stats.bookmarks >= 1
    assert w.quiet(0.05)

    kubeapi.drop_watches()
    _wait(lambda: len(kubeapi.watch_requests) == 2)
    assert kubeapi.watch_requests[1].params["resourceVersion"] == target
    assert kubeapi.watch_requests[0].params["allowWatchBookmarks"] == "true"


def test_server_timeout_ends_stream_and_watch_resumes(kubeapi, client, objs, run_watch):
    settings = WatchSettings(timeout_seconds=1, read_timeout=5.0)
    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=settings,
                                               stats=stats))
    assert isinstance(w.next(), Synced)
    kubeapi.create("pods", objs.pod("a"))
    added = w.next()
    _wait(lambda: len(kubeapi.watch_requests) >= 2, timeout=3)
    first, second = kubeapi.watch_requests[:2]
    assert first.params["timeoutSeconds"] == "1"
    assert second.params["resourceVersion"] >= added.obj["metadata"]["resourceVersion"]
    kubeapi.create("pods", objs.pod("b"))
    assert _summary(w.next()) == ("ADDED", "default/b", False)
    assert stats.errors == 0 and stats.lists == 1


def test_unknown_event_types_are_skipped(kubeapi, client, objs, run_watch):
    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=FAST,
                                               stats=stats))
    assert isinstance(w.next(), Synced)
    assert kubeapi.wait_for_watches(1)
    assert kubeapi.emit_watch_event({"type": "FROBNICATED", "object": {"kind": "Pod"}}) == 1
    kubeapi.create("pods", objs.pod("a"))
    assert _summary(w.next()) == ("ADDED", "default/a", False)
    assert stats.unknown_events == 1
    assert len(kubeapi.watch_requests) == 1  # the stream went on


def test_error_event_backs_off_and_resumes_from_last_rv(kubeapi, client, objs, run_watch):
    delays: list[float] = []
    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=FAST,
                                               stats=stats, sleep=delays.append))
    assert isinstance(w.next(), Synced)
    kubeapi.create("pods", objs.pod("a"))
    a = w.next()
    assert kubeapi.wait_for_watches(1)
    kubeapi.emit_watch_event({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
        "reason": "InternalError", "message": "etcd hiccup"}}, close=True)
    _wait(lambda: len(kubeapi.watch_requests) == 2)
    kubeapi.create("pods", objs.pod("b"))
    assert _summary(w.next()) == ("ADDED", "default/b", False)
    assert len(delays) == 1 and stats.errors == 1
    assert "etcd hiccup" in (stats.last_error or "")
    assert kubeapi.request_count("list") == 1
    assert kubeapi.watch_requests[1].params["resourceVersion"] == \
        a.obj["metadata"]["resourceVersion"]


def test_server_down_backs_off_exponentially_then_recovers(kubeapi, client, objs, run_watch):
    delays: list[float] = []

    def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 3:
            kubeapi.create("pods", objs.pod("while-down"))
            kubeapi.start()  # same port, same store: an API server restart

    settings = WatchSettings(timeout_seconds=60, read_timeout=5.0,
                             backoff=Backoff(initial=0.1, maximum=0.3, factor=2.0, jitter=0.2))
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=settings,
                                               sleep=sleep, rand=lambda: 0.5))
    assert isinstance(w.next(), Synced)
    assert kubeapi.wait_for_watches(1)
    kubeapi.stop()
    assert _summary(w.next()) == ("ADDED", "default/while-down", False)
    assert delays == pytest.approx([0.11, 0.22, 0.33])  # doubling, capped, +10% jitter
    kubeapi.create("pods", objs.pod("later"))
    assert _summary(w.next()) == ("ADDED", "default/later", False)


def test_backoff_resets_after_success(kubeapi, client, objs, run_watch):
    delays: list[float] = []
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=FAST,
                                               sleep=delays.append, rand=lambda: 0.0))
    assert isinstance(w.next(), Synced)
    for name in ("a", "b"):
        assert kubeapi.wait_for_watches(1)
        kubeapi.drop_watches()
        kubeapi.create("pods", objs.pod(name))
        assert _summary(w.next()) == ("ADDED", f"default/{name}", False)
    # Each drop followed a healthy stream, so each retry starts from the initial delay.
    assert delays == [0.01, 0.01]


def test_read_timeout_reconnects(kubeapi, client, objs, run_watch):
    settings = WatchSettings(timeout_seconds=60, read_timeout=0.3)
    stats = WatchStats()
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=settings,
                                               stats=stats))
    assert isinstance(w.next(), Synced)
    kubeapi.pause()  # a hung server: no events, no bookmarks
    _wait(lambda: stats.timeouts >= 1 and len(kubeapi.watch_requests) >= 2)
    kubeapi.create("pods", objs.pod("a"))
    kubeapi.resume()
    assert _summary(w.next()) == ("ADDED", "default/a", False)
    assert w.quiet(0.1)
    assert stats.errors == 0 and stats.lists == 1


def test_stop_event_interrupts_a_blocked_read(kubeapi, client, run_watch):
    settings = WatchSettings(timeout_seconds=600, read_timeout=60.0, allow_bookmarks=False)
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=settings))
    assert isinstance(w.next(), Synced)
    assert kubeapi.wait_for_watches(1)
    started = time.monotonic()
    w.stop.set()
    assert w.finished.wait(2.0)
    assert time.monotonic() - started < 1.0
    assert w.error is None
    _wait(lambda: kubeapi.open_watches() == 0)


def test_plain_event_stop_is_checked_between_events(kubeapi, client, objs):
    stop = threading.Event()
    gen = list_then_watch(client, PODS, stop=stop, settings=FAST)
    assert isinstance(next(gen), Synced)
    stop.set()
    kubeapi.create("pods", objs.pod("a"))  # wakes the read; the loop sees stop and ends
    assert list(gen) == []


def test_stop_cuts_a_backoff_short():
    # Nothing listens on this port: every attempt fails and backs off.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = KubeClient(ConnectionParams(server=f"http://127.0.0.1:{port}"), timeout=1)
    stop = threading.Event()
    settings = WatchSettings(backoff=Backoff(initial=30.0, maximum=30.0))
    gen = list_then_watch(dead, PODS, stop=stop, settings=settings)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert list(gen) == []
    assert time.monotonic() - started < 2.0


def test_selectors_filter_and_label_changes_move_objects_in_and_out(kubeapi, client, objs,
                                                                     run_watch):
    kubeapi.create("pods", objs.pod("web1", labels={"app": "web"}, node="n1"))
    kubeapi.create("pods", objs.pod("db1", labels={"app": "db"}, node="n1"))
    kubeapi.create("pods", objs.pod("web2", labels={"app": "web"}, node="n2"))
    w = run_watch(lambda stop: list_then_watch(
        client, PODS, label_selector="app=web", field_selector="spec.nodeName=n1",
        stop=stop, settings=FAST))
    assert [_summary(i) for i in w.take(2)] == [("ADDED", "default/web1", True),
                                                ("SYNCED", True, 1)]
    kubeapi.patch("pods", "web1", {"metadata": {"labels": {"app": "db"}}})
    assert _summary(w.next()) == ("DELETED", "default/web1", False)
    kubeapi.patch("pods", "db1", {"metadata": {"labels": {"app": "web"}}})
    assert _summary(w.next()) == ("ADDED", "default/db1", False)
    kubeapi.patch("pods", "web2", {"metadata": {"annotations": {"x": "y"}}})  # other node
    assert w.quiet(0.1)


def test_paged_list_and_trimmed_objects(kubeapi, client, objs, run_watch):
    for i in range(5):
        pod = objs.pod(f"p{i}")
        pod["metadata"]["managedFields"] = [{"manager": "kubectl"}]
        pod["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}
        kubeapi.create("pods", pod)
    settings = WatchSettings(timeout_seconds=60, read_timeout=5.0, page_size=2)
    w = run_watch(lambda stop: list_then_watch(client, PODS, stop=stop, settings=settings))
    items = w.take(6)
    assert _summary(items[-1]) == ("SYNCED", True, 5)
    assert kubeapi.request_count("list") == 3
    assert all("managedFields" not in e.obj["metadata"] for e in items[:5])
    assert all(e.obj["metadata"]["annotations"] == {"keep": "me"} for e in items[:5])


@pytest.mark.parametrize(("path", "selector", "error"), [
    ("/api/v1/frobs", None, NotFound),
    (PODS, "app in (web", BadRequest),
])
def test_request_errors_that_cannot_heal_are_raised(client, path, selector, error):
    gen = list_then_watch(client, path, label_selector=selector, settings=FAST,
                          sleep=lambda d: None)
    with pytest.raises(error):
        next(gen)


def test_event_key_and_types():
    e = Event("ADDED", {"metadata": {"name": "n1"}})
    assert e.key == "n1" and not e.synthetic
