"""The test API server's wire protocol, checked with plain `requests` calls."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from sandbox.kubeapi import ApiError, KubeApiServer

MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def http(kubeapi):
    with requests.Session() as s:
        s.trust_env = False
        base = kubeapi.url

        class Http:
            def __getattr__(self, method):
                return lambda path, **kw: s.request(method.upper(), base + path, timeout=5,
                                                    **kw)
        yield Http()


def _lines(resp, limit=None):
    """Events of a watch response: all of them (the stream must end), or the first `limit`."""
    out = []
    for line in resp.iter_lines():
        if line:
            out.append(json.loads(line))
            if limit is not None and len(out) == limit:
                resp.close()
                break
    return out


def _names(body):
    return [i["metadata"]["name"] for i in body["items"]]


def test_discovery_documents(http):
    assert http.get("/api").json()["versions"] == ["v1"]
    core = {r["name"] for r in http.get("/api/v1").json()["resources"]}
    assert {"pods", "pods/status", "services", "endpoints", "nodes", "namespaces",
            "events"} <= core
    groups = http.get("/apis").json()["groups"]
    assert {"discovery.k8s.io", "networking.k8s.io"} <= {g["name"] for g in groups}
    assert http.get("/apis/networking.k8s.io/v1").json()["resources"][0]["name"] == \
        "networkpolicies"
    assert http.get("/apis/discovery.k8s.io").json()["preferredVersion"]["version"] == "v1"
    assert http.get("/apis/discovery.k8s.io/v1").json()["resources"][0]["name"] == \
        "endpointslices"
    assert http.get("/version").json()["major"] == "1"
    assert http.get("/healthz").text == "ok"
    missing = http.get("/apis/apps/v1/deployments")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"


def test_create_get_and_error_statuses(http, objs):
    r = http.post("/api/v1/namespaces/ns1/pods", json=objs.pod("a", "ns1"))
    assert r.status_code == 201
    pod = r.json()
    meta = pod["metadata"]
    assert (pod["kind"], pod["apiVersion"]) == ("Pod", "v1")
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["resourceVersion"] == "1001"
    assert pod["status"] == {"phase": "Pending"}
    assert http.get("/api/v1/namespaces/ns1/pods/a").json() == pod

    dup = http.post("/api/v1/namespaces/ns1/pods", json=objs.pod("a", "ns1"))
    assert dup.status_code == 409
    assert dup.json() | {"details": None} == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'pods "a" already exists', "reason": "AlreadyExists", "code": 409,
        "details": None}
    nf = http.get("/api/v1/namespaces/ns1/pods/zz")
    assert (nf.status_code, nf.json()["reason"], nf.json()["code"]) == (404, "NotFound", 404)
    wrong_ns = http.post("/api/v1/namespaces/ns2/pods", json=objs.pod("b", "ns1"))
    assert (wrong_ns.status_code, wrong_ns.json()["reason"]) == (400, "BadRequest")
    bad_json = http.post("/api/v1/namespaces/ns1/pods", data=b"{nope")
    assert bad_json.status_code == 400
    no_name = http.post("/api/v1/namespaces/ns1/pods", json={"metadata": {}})
    assert (no_name.status_code, no_name.json()["reason"]) == (422, "Invalid")


def test_generate_name(http):
    r = http.post("/api/v1/namespaces/default/events",
                  json={"metadata": {"generateName": "ev-"}, "reason": "Test"})
    name = r.json()["metadata"]["name"]
    assert r.status_code == 201 and name.startswith("ev-") and len(name) == 8


def test_list_resource_version_and_scopes(http, kubeapi, objs):
    for ns, name in (("b", "p2"), ("a", "p1"), ("a", "p0")):
        kubeapi.create("pods", objs.pod(name, ns))
    kubeapi.create("nodes", objs.node("n1"))
    body = http.get("/api/v1/pods").json()
    assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"] == str(kubeapi.resource_version)
    assert _names(body) == ["p0", "p1", "p2"]  # ordered by namespace/name
    assert "kind" not in body["items"][0]  # as a real server's typed lists
    assert _names(http.get("/api/v1/namespaces/a/pods").json()) == ["p0", "p1"]
    assert _names(http.get("/api/v1/nodes").json()) == ["n1"]
    assert http.get("/api/v1/namespaces/a/nodes").status_code == 404


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=web", ["a", "b"]),
    ("app==web,tier=fe", ["a"]),
    ("app!=web", ["c", "d"]),
    ("app in (web, db)", ["a", "b", "c"]),
    ("app notin (web)", ["c", "d"]),
    ("tier", ["a"]),
    ("!tier", ["b", "c", "d"]),
    ("", ["a", "b", "c", "d"]),
])
def test_label_selectors(http, kubeapi, objs, selector, expected):
    kubeapi.create("pods", objs.pod("a", labels={"app": "web", "tier": "fe"}))
    kubeapi.create("pods", objs.pod("b", labels={"app": "web"}))
    kubeapi.create("pods", objs.pod("c", labels={"app": "db"}))
    kubeapi.create("pods", objs.pod("d"))
    body = http.get("/api/v1/pods", params={"labelSelector": selector}).json()
    assert _names(body) == expected


def test_field_selectors(http, kubeapi, objs):
    kubeapi.create("pods", objs.pod("on1", node="n1"))
    kubeapi.create("pods", objs.pod("on2", "other", node="n2"))
    kubeapi.create("pods", objs.pod("nowhere"))

    def names(sel):
        return _names(http.get("/api/v1/pods", params={"fieldSelector": sel}).json())
    assert names("spec.nodeName=n1") == ["on1"]
    assert names("spec.nodeName=") == ["nowhere"]
    assert names("spec.nodeName!=n1") == ["nowhere", "on2"]
    assert names("metadata.namespace=other") == ["on2"]
    assert names("metadata.name==on1,spec.nodeName=n1") == ["on1"]
    r = http.get("/api/v1/pods", params={"fieldSelector": "spec.bogus=1"})
    assert r.status_code == 400 and "field label not supported" in r.json()["message"]
    assert http.get("/api/v1/pods", params={"labelSelector": "a in (b"}).status_code == 400


def test_paging_is_a_consistent_snapshot(http, kubeapi, objs):
    for i in range(5):
        kubeapi.create("pods", objs.pod(f"p{i}"))
    first = http.get("/api/v1/pods", params={"limit": 2}).json()
    assert _names(first) == ["p0", "p1"] and first["metadata"]["remainingItemCount"] == 3
    kubeapi.delete("pods", "p3")  # after the snapshot: the next pages still show it
    second = http.get("/api/v1/pods", params={"limit": 2,
                                              "continue": first["metadata"]["continue"]}).json()
    assert _names(second) == ["p2", "p3"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    third = http.get("/api/v1/pods", params={"continue": second["metadata"]["continue"]}).json()
    assert _names(third) == ["p4"] and "continue" not in third["metadata"]
    kubeapi.compact()
    expired = http.get("/api/v1/pods", params={"continue": first["metadata"]["continue"]})
    assert (expired.status_code, expired.json()["reason"]) == (410, "Expired")


def test_list_at_exact_resource_version(http, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    rv = str(kubeapi.resource_version)
    kubeapi.create("pods", objs.pod("b"))
    kubeapi.patch("pods", "a", {"metadata": {"labels": {"x": "y"}}})
    old = http.get("/api/v1/pods", params={"resourceVersion": rv,
                                           "resourceVersionMatch": "Exact"}).json()
    assert _names(old) == ["a"] and "labels" not in old["items"][0]["metadata"]
    assert old["metadata"]["resourceVersion"] == rv
    kubeapi.compact()
    gone = http.get("/api/v1/pods", params={"resourceVersion": rv,
                                            "resourceVersionMatch": "Exact"})
    assert gone.status_code == 410 and gone.json()["reason"] == "Expired"
    future = http.get("/api/v1/pods", params={"resourceVersion": str(10**15)})
    assert future.status_code == 504
    assert future.json()["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_put_conflict_and_status_subresource(http, kubeapi, objs):
    pod = kubeapi.create("pods", objs.pod("a"))
    url = "/api/v1/namespaces/default/pods/a"
    pod["metadata"]["labels"] = {"v": "1"}
    pod["status"] = {"phase": "Running"}  # ignored: status goes through /status
    updated = http.put(url, json=pod)
    assert updated.status_code == 200
    assert updated.json()["metadata"]["labels"] == {"v": "1"}
    assert updated.json()["status"] == {"phase": "Pending"}
    stale = http.put(url, json=pod)  # still carries the old resourceVersion
    assert (stale.status_code, stale.json()["reason"]) == (409, "Conflict")
    unconditional = dict(pod, metadata={k: v for k, v in pod["metadata"].items()
                                        if k != "resourceVersion"})
    assert http.put(url, json=unconditional).status_code == 200
    st = http.patch(url + "/status", data=json.dumps({"status": {"phase": "Running",
                                                                 "podIP": "10.0.0.5"},
                                                      "metadata": {"labels": {"v": "x"}}}),
                    headers=MERGE)
    assert st.json()["status"] == {"phase": "Running", "podIP": "10.0.0.5"}
    assert st.json()["metadata"]["labels"] == {"v": "1"}  # /status changes status only
    renamed = http.put(url, json=dict(unconditional, metadata={"name": "b"}))
    assert renamed.status_code == 400


def test_patch_flavours(http, kubeapi, objs):
    pod = objs.pod("a")
    pod["spec"]["containers"].append({"name": "side", "image": "x"})
    pod["metadata"]["annotations"] = {"keep": "1", "drop": "2"}
    kubeapi.create("pods", pod)
    url = "/api/v1/namespaces/default/pods/a"
    merged = http.patch(url, data=json.dumps(
        {"metadata": {"annotations": {"drop": None, "new": "3"}}}), headers=MERGE).json()
    assert merged["metadata"]["annotations"] == {"keep": "1", "new": "3"}

    smp = http.patch(url, data=json.dumps(
        {"spec": {"containers": [{"name": "side", "image": "y"}]}}), headers=STRATEGIC).json()
    assert [(c["name"], c["image"]) for c in smp["spec"]["containers"]] == [
        ("c", "busybox"), ("side", "y")]  # merged by name, not replaced
    plain = http.patch(url, data=json.dumps(
        {"spec": {"containers": [{"name": "only", "image": "z"}]}}), headers=MERGE).json()
    assert [c["name"] for c in plain["spec"]["containers"]] == ["only"]  # merge patch replaces

    jp = http.patch(url, data=json.dumps([
        {"op": "add", "path": "/metadata/labels", "value": {"a/b": "c"}},
        {"op": "replace", "path": "/metadata/annotations/keep", "value": "one"},
        {"op": "remove", "path": "/metadata/annotations/new"}]), headers=JSONPATCH)
    assert jp.status_code == 200
    assert jp.json()["metadata"]["labels"] == {"a/b": "c"}
    assert jp.json()["metadata"]["annotations"] == {"keep": "one"}
    failed = http.patch(url, data=json.dumps([{"op": "test", "path": "/metadata/name",
                                               "value": "b"}]), headers=JSONPATCH)
    assert (failed.status_code, failed.json()["reason"]) == (422, "Invalid")
    unsupported = http.patch(url, data="{}", headers={"Content-Type": "application/json"})
    assert unsupported.status_code == 415
    stale = http.patch(url, data=json.dumps({"metadata": {"resourceVersion": "1"}}),
                       headers=MERGE)
    assert stale.status_code == 409


def test_strategic_merge_of_node_conditions(http, kubeapi, objs):
    node = objs.node("n1")
    node["status"] = {"conditions": [{"type": "Ready", "status": "False"},
                                     {"type": "DiskPressure", "status": "False"}]}
    kubeapi.create("nodes", node)
    r = http.patch("/api/v1/nodes/n1/status", data=json.dumps(
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}), headers=STRATEGIC)
    assert r.json()["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                                {"type": "DiskPressure", "status": "False"}]


def test_noop_write_keeps_resource_version_and_emits_nothing(http, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a", labels={"x": "1"}))
    rv = kubeapi.resource_version
    r = http.patch("/api/v1/namespaces/default/pods/a",
                   data=json.dumps({"metadata": {"labels": {"x": "1"}}}), headers=MERGE)
    assert r.json()["metadata"]["resourceVersion"] == str(rv)
    assert kubeapi.resource_version == rv


def test_delete_answers_and_preconditions(http, kubeapi, objs):
    pod = kubeapi.create("pods", objs.pod("a"))
    kubeapi.create("nodes", objs.node("n1"))
    bad = http.delete("/api/v1/namespaces/default/pods/a",
                      json={"preconditions": {"uid": "not-the-uid"}})
    assert bad.status_code == 409
    r = http.delete("/api/v1/namespaces/default/pods/a",
                    json={"preconditions": {"uid": pod["metadata"]["uid"]}})
    assert r.status_code == 200 and r.json()["metadata"]["name"] == "a"  # pods: the object
    assert http.get("/api/v1/namespaces/default/pods/a").status_code == 404
    node = http.delete("/api/v1/nodes/n1").json()
    assert (node["kind"], node["status"], node["details"]["name"]) == ("Status", "Success", "n1")
    assert http.delete("/api/v1/nodes/n1").status_code == 404


def test_delete_collection_and_namespace_cascade(http, kubeapi, objs):
    kubeapi.create("namespaces", objs.namespace("doomed"))
    kubeapi.create("pods", objs.pod("a", "doomed", labels={"x": "1"}))
    kubeapi.create("pods", objs.pod("b", "doomed"))
    kubeapi.create("services", objs.service("s", "doomed"))
    kubeapi.create("pods", objs.pod("c", "default", labels={"x": "1"}))
    coll = http.delete("/api/v1/namespaces/default/pods", params={"labelSelector": "x=1"})
    assert _names(coll.json()) == ["c"]
    ns = http.delete("/api/v1/namespaces/doomed").json()
    assert ns["kind"] == "Namespace"
    assert kubeapi.list("pods") == [] and kubeapi.list("services") == []


def test_service_ip_and_node_port_allocation(http, kubeapi, objs):
    a = kubeapi.create("services", objs.service("a", svc_type="NodePort"))
    assert a["spec"]["clusterIP"] == "10.96.0.1" and a["spec"]["clusterIPs"] == ["10.96.0.1"]
    assert a["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80,
                                   "nodePort": 30000}]
    b = kubeapi.create("services", objs.service("b", clusterIP="10.96.0.9"))
    assert b["spec"]["clusterIP"] == "10.96.0.9" and "nodePort" not in b["spec"]["ports"][0]
    headless = kubeapi.create("services", objs.service("h", clusterIP="None"))
    assert headless["spec"]["clusterIP"] == "None"
    taken = http.post("/api/v1/namespaces/default/services",
                      json=objs.service("c", clusterIP="10.96.0.9"))
    assert taken.status_code == 422 and "already allocated" in taken.json()["message"]
    outside = http.post("/api/v1/namespaces/default/services",
                        json=objs.service("c", clusterIP="192.168.0.1"))
    assert outside.status_code == 422
    # A PUT without clusterIP keeps it; changing it is refused.
    body = {k: v for k, v in a.items() if k != "status"}
    body["spec"] = dict(a["spec"], clusterIP="")
    kept = http.put("/api/v1/namespaces/default/services/a", json=body)
    assert kept.json()["spec"]["clusterIP"] == "10.96.0.1"
    assert kept.json()["spec"]["ports"][0]["nodePort"] == 30000
    kubeapi.delete("services", "a")
    again = kubeapi.create("services", objs.service("d", svc_type="NodePort"))
    assert again["spec"]["clusterIP"] == "10.96.0.1"  # released by the delete
    assert again["spec"]["ports"][0]["nodePort"] == 30000


def test_watch_stream_is_chunked_and_resumes_after_rv(http, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    rv = str(kubeapi.resource_version)
    kubeapi.create("pods", objs.pod("b"))
    kubeapi.delete("pods", "a")
    r = http.get("/api/v1/pods", params={"watch": "true", "resourceVersion": rv,
                                         "timeoutSeconds": "1"}, stream=True)
    assert r.headers["Transfer-Encoding"] == "chunked"
    started = time.monotonic()
    events = _lines(r)  # ends cleanly when timeoutSeconds passes
    assert 0.9 < time.monotonic() - started < 3
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("DELETED", "a")]
    assert events[1]["object"]["metadata"]["resourceVersion"] == str(kubeapi.resource_version)


def test_watch_without_rv_starts_with_current_objects(http, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    kubeapi.create("pods", objs.pod("elsewhere", "other"))
    r = http.get("/api/v1/namespaces/default/pods", params={"watch": "1"}, stream=True)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in _lines(r, 1)] == [
        ("ADDED", "a")]


def test_watch_bookmarks_only_when_allowed(http, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a", "elsewhere"))
    r = http.get("/api/v1/namespaces/watched/pods",
                 params={"watch": "1", "allowWatchBookmarks": "true"}, stream=True)
    marks = _lines(r, 3)  # every 0.1 s in these tests
    assert [e["type"] for e in marks] == ["BOOKMARK"] * 3
    assert marks[-1]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": str(kubeapi.resource_version)}}
    plain = http.get("/api/v1/namespaces/watched/pods", params={"watch": "1"}, stream=True)
    assert kubeapi.wait_for_watches(1)
    threading.Timer(0.25, kubeapi.create, ("pods", objs.pod("b", "watched"))).start()
    assert [e["type"] for e in _lines(plain, 1)] == ["ADDED"]  # no bookmark came first


def test_watch_from_compacted_rv_gets_410_error_event(http, kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    rv = str(kubeapi.resource_version - 1)
    kubeapi.compact()
    r = http.get("/api/v1/pods", params={"watch": "1", "resourceVersion": rv}, stream=True)
    assert r.status_code == 200
    (event,) = _lines(r)  # and then the stream ends
    assert event["type"] == "ERROR"
    assert (event["object"]["kind"], event["object"]["code"], event["object"]["reason"]) == (
        "Status", 410, "Expired")


def test_history_limit_expires_old_resource_versions(objs):
    with KubeApiServer(history_limit=2, start_resource_version=0) as server:
        for i in range(4):
            server.create("pods", objs.pod(f"p{i}"))
        url = server.url + "/api/v1/pods"
        old = requests.get(url, params={"watch": "1", "resourceVersion": "1"}, stream=True,
                           timeout=5)
        assert _lines(old)[0]["object"]["code"] == 410
        kept = requests.get(url, params={"watch": "1", "resourceVersion": "2"}, stream=True,
                            timeout=5)
        assert [e["object"]["metadata"]["name"] for e in _lines(kept, 2)] == ["p2", "p3"]


def test_drop_watches_cuts_streams_abruptly(http, kubeapi):
    r = http.get("/api/v1/pods", params={"watch": "1"}, stream=True)
    assert kubeapi.wait_for_watches(1)
    assert kubeapi.drop_watches() == 1
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _lines(r)
    assert kubeapi.open_watches() == 0


def test_pause_holds_events_until_resume(http, kubeapi, objs):
    kubeapi.pause()
    r = http.get("/api/v1/pods", params={"watch": "1", "allowWatchBookmarks": "1"},
                 stream=True)
    assert kubeapi.wait_for_watches(1)
    kubeapi.create("pods", objs.pod("a"))
    resumed_at = []
    threading.Timer(0.15, lambda: (resumed_at.append(time.monotonic()), kubeapi.resume())).start()
    assert [e["type"] for e in _lines(r, 1)] == ["ADDED"]  # no bookmark while paused either
    assert resumed_at and time.monotonic() >= resumed_at[0]


def test_inject_error_and_counters(http, kubeapi):
    kubeapi.inject_error(503, count=2, verb="list", resource="pods", retry_after=1)
    assert http.get("/api/v1/nodes").status_code == 200  # does not match
    first = http.get("/api/v1/pods")
    assert first.status_code == 503 and first.headers["Retry-After"] == "1"
    assert first.json()["reason"] == "ServiceUnavailable"
    assert http.get("/api/v1/pods").status_code == 503
    assert http.get("/api/v1/pods").status_code == 200
    assert kubeapi.request_count("list", "pods") == 3
    assert kubeapi.request_count("list") == 4
    assert kubeapi.requests[-1].path == "/api/v1/pods"
    kubeapi.reset_counters()
    assert kubeapi.request_count() == 0


def test_token_auth():
    with KubeApiServer(token="s3cret", start_resource_version=1) as server:
        url = server.url + "/api/v1/pods"
        denied = requests.get(url, timeout=5)
        assert denied.status_code == 401 and denied.json()["reason"] == "Unauthorized"
        wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        ok = requests.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=5)
        assert ok.status_code == 200
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200


def test_restart_keeps_objects_and_port(kubeapi, objs):
    kubeapi.create("pods", objs.pod("a"))
    port = kubeapi.port
    kubeapi.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(kubeapi.url + "/api/v1/pods", timeout=2)
    kubeapi.start()
    assert kubeapi.port == port
    assert _names(requests.get(kubeapi.url + "/api/v1/pods", timeout=5).json()) == ["a"]


def test_python_api_errors(kubeapi, objs):
    kubeapi.create("nodes", objs.node("n1"))
    with pytest.raises(ApiError) as exc:
        kubeapi.create("nodes", objs.node("n1"))
    assert exc.value.code == 409 and exc.value.reason == "AlreadyExists"
    with pytest.raises(ApiError) as exc:
        kubeapi.get("pods", "missing")
    assert exc.value.status()["reason"] == "NotFound"
    replaced = kubeapi.replace("nodes", dict(objs.node("n1"), status={"phase": "x"}))
    assert replaced["status"] == {"phase": "x"}  # the Python API may write status directly


def test_default_resource_version_is_time_based():
    a = KubeApiServer()
    assert a.resource_version > 1_600_000_000_000  # ms since the epoch


def test_cli_help_explains_every_flag():
    out = subprocess.run([sys.executable, "-m", "sandbox.kubeapi", "--help"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    for flag in ("--listen", "--token-file", "--anonymous", "--kubeconfig-out", "--kubeconfig-ca",
                 "--tls-cert", "--tls-key", "--idle-timeout",
                 "--tls-client-ca", "--bookmark-interval", "--watch-timeout", "--load",
                 "--no-default-namespaces", "--log-level"):
        assert flag in out


def test_cli_serves_writes_kubeconfig_and_stops_on_sigterm(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    seed = tmp_path / "seed.yaml"
    seed.write_text("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\n"
                    "apiVersion: v1\nkind: List\nitems:\n"
                    "- {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: default}}\n")
    token_file = tmp_path / "token"
    token_file.write_text("t0k\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.kubeapi", "--listen", "127.0.0.1:0", "--token-file",
         str(token_file), "--kubeconfig-out", str(kubeconfig), "--load", str(seed),
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    try:
        line = proc.stdout.readline()
        assert line.startswith("kubeapi listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        headers = {"Authorization": "Bearer t0k"}
        namespaces = requests.get(url + "/api/v1/namespaces", headers=headers, timeout=5).json()
        assert "kube-system" in _names(namespaces)
        assert _names(requests.get(url + "/api/v1/nodes", headers=headers, timeout=5).json()) \
            == ["n1"]
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
        assert url in kubeconfig.read_text() and "t0k" in kubeconfig.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    assert rc == 0


def test_cli_reports_a_taken_port():
    with KubeApiServer(start_resource_version=1) as server:
        r = subprocess.run([sys.executable, "-m", "sandbox.kubeapi", "--listen",
                            f"127.0.0.1:{server.port}", "--anonymous"], capture_output=True,
                           text=True, timeout=30)
    assert r.returncode == 1 and "cannot start" in r.stderr
