"""ovn-k8s-watcher's pod path, end to end: the real daemon (a subprocess), a real NB with
northd, and our API server in-process on 127.0.0.1.

Each event kind: add, modify, delete, terminal, hostNetwork skipped, a pod on a node without
a switch retried until minion-init runs; annotations honoured or rejected; Events on pods the
watcher skips or gives up on; /metrics, /healthz, /readyz; SIGTERM and the pidfile.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from sandbox.kubeapi import KubeApiServer
from sandbox.lab.cluster import Lab
from sandbox.watcher_harness import WatcherProcess, annotation, differences, nb_pod_ports, wait_until, write_topology
from tests.helpers import master_init, minion_init, ok
from tests.real_control_plane import BOTH_SERVERS

pytestmark = pytest.mark.integration
NODES = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24"}


@pytest.fixture
def kubeconfig(kube: KubeApiServer, tmp_path) -> str:
    path = str(tmp_path / "kubeconfig")
    kube.write_kubeconfig(path)
    return path


@pytest.fixture
def start_watcher(lab: Lab, kubeconfig: str, tmp_path) -> Iterator:
    started: list[WatcherProcess] = []

    def start(*extra: str, name: str = "watcher") -> WatcherProcess:
        w = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=kubeconfig, name=name,
                           extra=extra).start()
        started.append(w)
        return w
    try:
        yield start
    finally:
        for w in started:
            w.kill()


def pod(name: str, node: str | None = "node1", ns: str = "default", **spec) -> dict:
    body = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node:
        body["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": body}


def ann_of(kube: KubeApiServer, name: str, ns: str = "default") -> dict | None:
    return annotation(kube.get("pods", name, namespace=ns))


def wait_converged(kube: KubeApiServer, lab: Lab, timeout: float = 20) -> None:
    wait_until(lambda: not differences(kube.list("pods"), lab.nb), timeout,
               "the NB to match the cluster")


def events_for(kube: KubeApiServer, name: str) -> list[dict]:
    return [e for e in kube.list("events")
            if e.get("involvedObject", {}).get("name") == name]


@BOTH_SERVERS
def test_pod_add_modify_delete(lab, kube, start_watcher):
    write_topology(lab.nb, NODES)
    kube.create("pods", pod("before", "node2"))           # exists before the watcher starts
    w = start_watcher()
    w.wait_ready()
    kube.create("pods", pod("a", "node1"))
    kube.create("pods", pod("b", "node2", ns="other"))
    kube.create("pods", pod("hostnet", "node1", hostNetwork=True))
    kube.create("pods", pod("unscheduled", None))
    wait_converged(kube, lab)

    a = ann_of(kube, "a")
    assert a["gateway_ip"] == "10.244.1.1" and a["ip_address"].endswith("/24")
    ip = a["ip_address"].split("/")[0]
    assert ip.startswith("10.244.1.") and ip not in ("10.244.1.1", "10.244.1.2")
    assert a["mac_address"] == "0a:58:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
    ports = nb_pod_ports(lab.nb)
    assert set(ports) == {"default_before", "default_a", "other_b"}
    assert dict(ports["other_b"].external_ids) == {
        "ovn-k8s/owner": "pod:other/b", "ovn-k8s/id": "other_b", "namespace": "other",
        "pod": "true"}
    assert ann_of(kube, "hostnet") is None and ann_of(kube, "unscheduled") is None

    # modify: a label changes nothing; scheduling the unscheduled pod gives it a port
    uuid_a = ports["default_a"].uuid
    kube.patch("pods", "a", {"metadata": {"labels": {"x": "y"}}})
    kube.patch("pods", "unscheduled", {"spec": {"nodeName": "node2"}})
    wait_converged(kube, lab)
    ports = nb_pod_ports(lab.nb)
    assert ports["default_a"].uuid == uuid_a and ann_of(kube, "a") == a
    assert ports["default_unscheduled"].switch == "node2"

    # terminal: the port goes, the address is freed
    kube.patch("pods", "a", {"status": {"phase": "Succeeded"}})
    wait_converged(kube, lab)
    assert "default_a" not in nb_pod_ports(lab.nb)

    # delete
    kube.delete("pods", "b", namespace="other")
    kube.delete("pods", "before")
    wait_converged(kube, lab)
    assert set(nb_pod_ports(lab.nb)) == {"default_unscheduled"}
    assert w.metric("ovnk8s_watcher_events_total", resource="pods", type="DELETED") >= 2
    assert w.stop() == 0


@BOTH_SERVERS
def test_pod_on_a_node_without_a_switch_waits_for_minion_init(lab, kube, start_watcher):
    n1 = lab.add_node("node1")
    ok(master_init(n1, "10.244.1.0/24"))
    w = start_watcher()
    w.wait_ready()
    kube.create("pods", pod("early", "node2"))
    kube.create("pods", pod("other", "node1"))
    wait_until(lambda: ann_of(kube, "other"), 20, "the pod on node1")
    wait_until(lambda: w.metric("ovnk8s_watcher_retries_total", resource="pods") >= 2, 20,
               "retries of the pod on node2")
    assert ann_of(kube, "early") is None and "default_early" not in nb_pod_ports(lab.nb)
    n2 = lab.add_node("node2")
    ok(minion_init(n2, "10.244.2.0/24"))
    wait_converged(kube, lab)
    assert ann_of(kube, "early")["ip_address"].startswith("10.244.2.")
    assert nb_pod_ports(lab.nb)["default_early"].switch == "node2"


@BOTH_SERVERS
def test_give_up_records_an_event_and_a_new_switch_still_wakes_the_pod(lab, kube,
                                                                        start_watcher):
    write_topology(lab.nb, {"node1": "10.244.1.0/24"})
    w = start_watcher("--max-retries=2")
    w.wait_ready()
    kube.create("pods", pod("lost", "node9"))
    wait_until(lambda: w.metric("ovnk8s_watcher_give_ups_total", resource="pods") == 1, 20,
               "the watcher to give up")
    wait_until(lambda: any("giving up after 3 attempts" in e["message"]
                           for e in events_for(kube, "lost")), 10, "a give-up Event")
    event = events_for(kube, "lost")[0]
    assert event["type"] == "Warning" and event["reason"] == "ErrorAddingLogicalPort"
    assert "node9 has no logical switch" in event["message"]
    assert "giving up" in w.log()
    write_topology(lab.nb, {"node1": "10.244.1.0/24", "node9": "10.244.9.0/24"})
    wait_converged(kube, lab)


@BOTH_SERVERS
def test_an_existing_annotation_is_honoured(lab, kube, start_watcher):
    write_topology(lab.nb, NODES)
    given = {"ip_address": "10.244.1.77/24", "mac_address": "0a:00:00:00:00:77",
             "gateway_ip": "10.244.1.1"}
    body = pod("kept", "node1")
    body["metadata"]["annotations"] = {"ovn": json.dumps(given)}
    kube.create("pods", body)
    w = start_watcher()
    w.wait_ready()
    wait_converged(kube, lab)
    assert ann_of(kube, "kept") == given
    assert nb_pod_ports(lab.nb)["default_kept"].addresses == ("0a:00:00:00:00:77 10.244.1.77",)
    # New pods never get that address.
    for i in range(20):
        kube.create("pods", pod(f"p{i}", "node1"))
    wait_converged(kube, lab)


@BOTH_SERVERS
def test_malformed_pods_are_skipped_with_an_event_and_the_rest_proceed(lab, kube,
                                                                        start_watcher):
    write_topology(lab.nb, NODES)
    bad = pod("bad-json", "node1")
    bad["metadata"]["annotations"] = {"ovn": "{not json"}
    outside = pod("outside", "node1")
    outside["metadata"]["annotations"] = {"ovn": json.dumps(
        {"ip_address": "10.244.2.5/24", "mac_address": "0a:00:00:00:00:05"})}
    taken = pod("taken", "node2")
    taken["metadata"]["annotations"] = {"ovn": json.dumps(
        {"ip_address": "10.244.2.2/24", "mac_address": "0a:00:00:00:00:05"})}
    for body in (bad, outside, taken):
        kube.create("pods", body)
    w = start_watcher()
    w.wait_ready()
    for i in range(10):
        kube.create("pods", pod(f"good{i}", "node1" if i % 2 else "node2"))
    wait_until(lambda: all(ann_of(kube, f"good{i}") for i in range(10)), 20, "the good pods")
    ports = nb_pod_ports(lab.nb)
    assert not {"default_bad-json", "default_outside", "default_taken"} & set(ports)
    assert len(ports) == 10
    for name, text in (("bad-json", "is not JSON"), ("outside", "outside the subnet"),
                       ("taken", "is reserved")):
        wait_until(lambda n=name, t=text: any(t in e["message"] for e in events_for(kube, n)),
                   10, f"an Event on {name}")
    assert w.metric("ovnk8s_watcher_invalid_objects_total", resource="pods") >= 3
    assert "is not JSON" in w.log()
    # Fixing the pod is enough: the next event reconciles it.
    kube.patch("pods", "bad-json", {"metadata": {"annotations": {"ovn": None}}})
    wait_until(lambda: ann_of(kube, "bad-json"), 20, "the fixed pod's annotation")
    assert "default_bad-json" in nb_pod_ports(lab.nb)


@BOTH_SERVERS
def test_two_pods_claiming_one_address_the_older_keeps_it(lab, kube, start_watcher):
    write_topology(lab.nb, NODES)
    same = {"ip_address": "10.244.1.50/24", "mac_address": "0a:00:00:00:00:50",
            "gateway_ip": "10.244.1.1"}
    for name in ("first", "second"):
        body = pod(name, "node1")
        body["metadata"]["annotations"] = {"ovn": json.dumps(same)}
        kube.create("pods", body)
    w = start_watcher()
    w.wait_ready()
    wait_until(lambda: any("already used by pod default/first" in e["message"]
                           for e in events_for(kube, "second")), 20, "an Event on 'second'")
    ports = nb_pod_ports(lab.nb)
    assert ports["default_first"].addresses == ("0a:00:00:00:00:50 10.244.1.50",)
    assert "default_second" not in ports


@BOTH_SERVERS
def test_metrics_healthz_and_sigterm(lab, kube, start_watcher):
    write_topology(lab.nb, NODES)
    w = start_watcher()
    w.wait_ready()
    kube.create("pods", pod("m", "node1"))
    wait_converged(kube, lab)
    status, text = w.get("/metrics")
    assert status == 200
    for name in ("ovnk8s_watcher_events_total", "ovnk8s_watcher_reconcile_duration_seconds_bucket",
                 "ovnk8s_watcher_retries_total", "ovnk8s_watcher_give_ups_total",
                 "ovnk8s_watcher_nb_transactions_total", "ovnk8s_watcher_pod_port_latency_seconds"):
        assert name in text, name
    assert w.metric("ovnk8s_watcher_nb_transactions_total", result="ok") >= 1
    assert w.metric("ovnk8s_watcher_leader") == 1
    assert w.get("/healthz") == (200, "ok\n")
    assert w.get("/readyz")[0] == 200

    # The API server goes away: the watches are down, /healthz says so; and back.
    kube.stop()
    wait_until(lambda: w.get("/healthz")[0] == 503, 20, "/healthz to report the watch down")
    assert "watch pods" in w.get("/healthz")[1]
    assert w.metric("ovnk8s_watcher_watch_up", resource="pods") == 0
    kube.start()
    wait_until(lambda: w.get("/healthz")[0] == 200, 30, "/healthz to recover")

    # The NB goes away: unhealthy until it is back.
    with open(f"{lab.central_dir}/nb.pid", encoding="ascii") as fh:
        os.kill(int(fh.read()), signal.SIGKILL)
    wait_until(lambda: w.get("/healthz")[0] == 503 and "NB" in w.get("/healthz")[1], 20,
               "/healthz to report the NB down")

    assert os.path.exists(w.pidfile)
    assert w.stop(signal.SIGTERM) == 0
    assert not os.path.exists(w.pidfile)
    assert "stopped" in w.log()


@BOTH_SERVERS
def test_a_port_name_held_by_another_owner_is_never_taken_over(lab, kube, start_watcher):
    write_topology(lab.nb, NODES)
    lab.nbctl("lsp-add", "node1", "default_squatter", "--", "set", "Logical_Switch_Port",
              "default_squatter", 'external_ids:"ovn-k8s/owner"="node:node1"',
              'external_ids:"ovn-k8s/id"=default_squatter', "addresses=unknown")
    before = lab.nbctl("--columns=_uuid,addresses,external_ids", "list", "Logical_Switch_Port",
                       "default_squatter")
    w = start_watcher()
    w.wait_ready()
    kube.create("pods", pod("squatter", "node1"))
    kube.create("pods", pod("fine", "node1"))
    wait_until(lambda: ann_of(kube, "fine"), 20, "the other pod")
    wait_until(lambda: any("belongs to node:node1" in e["message"]
                           for e in events_for(kube, "squatter")), 20, "an Event")
    assert lab.nbctl("--columns=_uuid,addresses,external_ids", "list", "Logical_Switch_Port",
                     "default_squatter") == before
    assert ann_of(kube, "squatter") is None


def test_original_style_settings_from_the_config_file(lab, tmp_path):
    """k8s_api_server + k8s_api_token in the [default] section, as the original tools kept
    them; no kubeconfig anywhere."""
    write_topology(lab.nb, NODES)
    server = KubeApiServer(token="t0ken", bookmark_interval=0.5).start()
    conf = tmp_path / "ovn_k8s.conf"
    conf.write_text(f"[default]\nk8s_api_server = {server.url.removeprefix('http://')}\n"
                    "k8s_api_token = t0ken\n")
    w = WatcherProcess(str(tmp_path), nb=lab.nb, kubeconfig=None,
                       env={"OVN_K8S_CONFIG": str(conf), "HOME": str(tmp_path)})
    try:
        w.start().wait_ready()
        server.create("pods", pod("a", "node1"))
        wait_until(lambda: annotation(server.get("pods", "a")), 20, "the annotation")
        assert f"Kubernetes API server {server.url} " in w.log()
    finally:
        w.kill()
        server.stop()
