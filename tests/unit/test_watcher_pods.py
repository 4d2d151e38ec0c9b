"""The watcher's pure pod parts: parsing pods and the `ovn` annotation, building ports,
address pools, and the NB-facing helpers that need no server."""

from __future__ import annotations

import ipaddress
import json

import pytest

from ovn_k8s import naming
from ovn_k8s.desired.pods import NodeSwitch, annotated_ip, annotation_current, pod_key_from_port, pod_port
from ovn_k8s.errors import InvalidObject
from ovn_k8s.model.kube import Pod, PodAnnotation, parse_pod
from watcher.ipalloc import PodIpam, SubnetFull

SW = NodeSwitch(node="node1", uuid="u1", subnet=ipaddress.IPv4Network("10.244.1.0/24"),
                gateway_ip=ipaddress.IPv4Address("10.244.1.1"))


def raw_pod(name="a", ns="ns1", *, node="Node1", annotation=None, **spec):
    meta = {"name": name, "namespace": ns, "uid": "u-" + name, "resourceVersion": "7",
            "creationTimestamp": "2024-01-01T00:00:00Z"}
    if annotation is not None:
        meta["annotations"] = {"ovn": annotation}
    body = {"containers": [{"name": "c"}], **spec}
    if node:
        body["nodeName"] = node
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": body,
            "status": {"phase": "Running"}}


# --- parsing ------------------------------------------------------------------------------------
def test_parse_pod_keeps_what_the_controller_reads():
    pod = parse_pod(raw_pod(annotation=json.dumps({"ip_address": "10.244.1.5/24",
                                                   "mac_address": "0A:58:0A:F4:01:05",
                                                   "gateway_ip": "10.244.1.1"})))
    assert (pod.key, pod.node, pod.uid, pod.phase, pod.host_network) == \
        ("ns1/a", "node1", "u-a", "Running", False)
    assert pod.annotation == PodAnnotation("10.244.1.5", 24, "0a:58:0a:f4:01:05", "10.244.1.1")
    assert pod.error is None and pod.wants_port


@pytest.mark.parametrize("case,spec,phase,wants", [
    ("scheduled", {}, "Running", True),
    ("pending but scheduled", {}, "Pending", True),
    ("host network", {"hostNetwork": True}, "Running", False),
    ("succeeded", {}, "Succeeded", False),
    ("failed", {}, "Failed", False),
])
def test_wants_port(case, spec, phase, wants):
    obj = raw_pod(**spec)
    obj["status"]["phase"] = phase
    assert parse_pod(obj).wants_port is wants, case


def test_unscheduled_pod_wants_no_port():
    assert parse_pod(raw_pod(node=None)).wants_port is False


@pytest.mark.parametrize("annotation,fragment", [
    ("not json", "is not JSON"),
    ('["a"]', "not a JSON object"),
    ('{"ip_address": "10.244.1.5", "mac_address": "0a:58:0a:f4:01:05"}', "is not IP/LEN"),
    ('{"ip_address": "300.1.1.1/24", "mac_address": "0a:58:0a:f4:01:05"}', "not an IPv4"),
    ('{"ip_address": "10.244.1.5/24", "mac_address": "zz"}', "not a MAC"),
    ('{"ip_address": "10.244.1.5/24", "mac_address": "01:00:5e:00:00:01"}', "multicast"),
    ('{"ip_address": "10.244.1.5/24", "mac_address": "0a:58:0a:f4:01:05", "gateway_ip": "x"}',
     "gateway_ip"),
])
def test_a_bad_annotation_is_an_error_on_the_pod(annotation, fragment):
    pod = parse_pod(raw_pod(annotation=annotation))
    assert pod.annotation is None
    assert fragment in (pod.error or "")
    with pytest.raises(InvalidObject, match=fragment.split()[0]):
        annotated_ip(pod, SW)


def test_wrong_field_types_are_errors_not_crashes():
    obj = raw_pod()
    obj["spec"]["nodeName"] = 5
    obj["spec"]["hostNetwork"] = "yes"
    pod = parse_pod(obj)
    assert "spec.nodeName" in pod.error and "spec.hostNetwork" in pod.error


def test_a_pod_without_name_cannot_be_keyed():
    with pytest.raises(InvalidObject):
        parse_pod({"metadata": {"namespace": "ns"}})
    with pytest.raises(InvalidObject):
        parse_pod({"metadata": "x"})


def test_resource_version_alone_does_not_make_a_pod_different():
    a = parse_pod(raw_pod())
    b_raw = raw_pod()
    b_raw["metadata"]["resourceVersion"] = "8"
    assert parse_pod(b_raw) == a
    b_raw["metadata"]["annotations"] = {"x": "y"}
    assert parse_pod(b_raw) == a         # other annotations are not read
    b_raw["metadata"]["annotations"] = {"ovn": "{}"}
    assert parse_pod(b_raw) != a


def test_annotation_json_has_the_original_keys():
    ann = PodAnnotation("10.244.1.5", 24, "0a:58:0a:f4:01:05", "10.244.1.1")
    assert json.loads(ann.to_json()) == {"ip_address": "10.244.1.5/24",
                                         "mac_address": "0a:58:0a:f4:01:05",
                                         "gateway_ip": "10.244.1.1"}
    assert PodAnnotation.parse(ann.to_json()) == ann


# --- building ports --------------------------------------------------------------------------
def test_port_of_a_new_pod():
    pod = parse_pod(raw_pod())
    port = pod_port(pod, SW, ipaddress.IPv4Address("10.244.1.7"))
    assert port.name == "ns1_a"
    assert port.addresses == ["0a:58:0a:f4:01:07 10.244.1.7"]
    assert dict(port.external_ids) == {naming.OWNER_KEY: "pod:ns1/a", naming.ID_KEY: "ns1_a",
                                       "namespace": "ns1", "pod": "true"}
    assert port.annotation.to_json() == ('{"ip_address":"10.244.1.7/24",'
                                         '"mac_address":"0a:58:0a:f4:01:07",'
                                         '"gateway_ip":"10.244.1.1"}')
    assert not annotation_current(pod, port)


def test_an_annotated_pod_keeps_its_address_and_mac():
    text = json.dumps({"ip_address": "10.244.1.9/24", "mac_address": "0a:00:00:00:00:09",
                       "gateway_ip": "10.244.1.1"})
    pod = parse_pod(raw_pod(annotation=text))
    ip = annotated_ip(pod, SW)
    assert ip == ipaddress.IPv4Address("10.244.1.9")
    port = pod_port(pod, SW, ip)
    assert port.addresses == ["0a:00:00:00:00:09 10.244.1.9"]
    assert annotation_current(pod, port)


def test_an_annotation_with_a_stale_gateway_is_rewritten_but_keeps_the_address():
    text = json.dumps({"ip_address": "10.244.1.9/16", "mac_address": "0a:00:00:00:00:09",
                       "gateway_ip": "10.244.0.1"})
    pod = parse_pod(raw_pod(annotation=text))
    port = pod_port(pod, SW, annotated_ip(pod, SW))
    assert port.ip == "10.244.1.9" and port.mac == "0a:00:00:00:00:09"
    assert not annotation_current(pod, port)
    assert port.annotation.ip_address == "10.244.1.9/24"


@pytest.mark.parametrize("ip", ["10.244.2.9", "10.244.1.0", "10.244.1.1", "10.244.1.2",
                                "10.244.1.255"])
def test_annotated_addresses_that_can_never_be_this_pods(ip):
    text = json.dumps({"ip_address": f"{ip}/24", "mac_address": "0a:00:00:00:00:09"})
    with pytest.raises(InvalidObject):
        annotated_ip(parse_pod(raw_pod(annotation=text)), SW)


@pytest.mark.parametrize("name,ext,key", [
    ("ns1_a", {naming.OWNER_KEY: "pod:ns1/a"}, "ns1/a"),
    ("ns1_a", {"namespace": "ns1", "pod": "true"}, "ns1/a"),        # the original's port
    ("ns1_a-b_c", {"namespace": "ns1", "pod": "true"}, "ns1/a-b_c"),
    ("k8s-node1", {naming.OWNER_KEY: "node:node1"}, None),
    ("stray", {}, None),
    ("x_a", {"namespace": "ns1", "pod": "true"}, None),             # name does not match
    ("ns1_a", {naming.OWNER_KEY: "node:n", "pod": "true", "namespace": "ns1"}, None),
])
def test_which_ports_are_pod_ports(name, ext, key):
    assert pod_key_from_port(name, ext) == key


# --- address pools -----------------------------------------------------------------------------
def test_pool_skips_reserved_addresses_and_round_robins():
    ipam = PodIpam()
    ipam.set_subnet("n", ipaddress.IPv4Network("10.0.0.0/29"))    # .3 .4 .5 .6 usable
    got = [str(ipam.allocate(f"p{i}", "n")) for i in range(4)]
    assert got == ["10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(SubnetFull):
        ipam.allocate("p4", "n")
    ipam.release("p1")
    ipam.release("p0")
    # Round robin wraps around to the lowest free address after the last one handed out.
    assert str(ipam.allocate("p5", "n")) == "10.0.0.3"
    assert str(ipam.allocate("p6", "n")) == "10.0.0.4"


def test_allocate_is_stable_per_key():
    ipam = PodIpam()
    ipam.set_subnet("n", ipaddress.IPv4Network("10.0.0.0/24"))
    a = ipam.allocate("p", "n")
    assert ipam.allocate("p", "n") == a
    assert ipam.get("p") == ("n", a)


def test_claim_refuses_another_pods_address_and_reserved_ones():
    ipam = PodIpam()
    ipam.set_subnet("n", ipaddress.IPv4Network("10.0.0.0/24"),
                    reserved=[ipaddress.IPv4Address("10.0.0.50")])
    ip = ipaddress.IPv4Address("10.0.0.9")
    assert ipam.claim("a", "n", ip)
    assert ipam.claim("a", "n", ip)                     # idempotent
    assert not ipam.claim("b", "n", ip)
    assert ipam.owner("n", ip) == "a"
    assert not ipam.claim("b", "n", ipaddress.IPv4Address("10.0.0.50"))
    assert not ipam.claim("b", "n", ipaddress.IPv4Address("10.0.0.1"))
    assert not ipam.claim("b", "n", ipaddress.IPv4Address("10.0.1.9"))
    # A claim moves the key: its old address is free again.
    assert ipam.claim("a", "n", ipaddress.IPv4Address("10.0.0.10"))
    assert ipam.owner("n", ip) is None


def test_allocation_never_hands_out_a_claimed_or_reserved_address():
    ipam = PodIpam()
    ipam.set_subnet("n", ipaddress.IPv4Network("10.0.0.0/28"),
                    reserved=[ipaddress.IPv4Address("10.0.0.4")])
    ipam.claim("old", "n", ipaddress.IPv4Address("10.0.0.3"))
    got = {ipam.allocate(f"p{i}", "n") for i in range(10)}
    assert len(got) == 10
    assert ipaddress.IPv4Address("10.0.0.3") not in got
    assert ipaddress.IPv4Address("10.0.0.4") not in got


def test_pods_keep_their_entry_when_the_subnet_changes():
    ipam = PodIpam()
    ipam.set_subnet("n", ipaddress.IPv4Network("10.0.0.0/24"))
    ipam.claim("a", "n", ipaddress.IPv4Address("10.0.0.9"))
    ipam.set_subnet("n", ipaddress.IPv4Network("10.0.0.0/23"))   # grown: still inside
    assert ipam.owner("n", ipaddress.IPv4Address("10.0.0.9")) == "a"
    ipam.set_subnet("n", ipaddress.IPv4Network("10.9.0.0/24"))   # moved: a gets a new one
    assert ipam.allocate("a", "n") in ipaddress.IPv4Network("10.9.0.0/24")


def test_unknown_node():
    ipam = PodIpam()
    assert not ipam.claim("a", "nope", ipaddress.IPv4Address("10.0.0.9"))
    assert ipam.pool("nope") is None


def test_pod_involved_object():
    pod = Pod(namespace="ns", name="a", uid="u", resource_version="3")
    assert pod.involved_object() == {"kind": "Pod", "apiVersion": "v1", "metadata": {
        "namespace": "ns", "name": "a", "uid": "u", "resourceVersion": "3"}}


# --- the controller's event side (no NB, no API server needed) ----------------------------------
def _controller():
    from watcher.metrics import WatcherMetrics
    from watcher.pods import PodController

    class NoAnnotator:
        def annotate(self, namespace, name, annotations):
            raise AssertionError("not called in these tests")
    return PodController(nb=None, annotator=NoAnnotator(), metrics=WatcherMetrics(),
                         recorder=None)


def _drain(ctrl) -> list[str]:
    keys = ctrl.queue.get_batch(100, 0.0, timeout=0.01)
    for k in keys:
        ctrl.queue.done(k)
    return keys


def test_events_enqueue_only_changes_the_controller_reads():
    from ovn_k8s.kube.watch import Event

    ctrl = _controller()
    obj = raw_pod()
    ctrl.on_event(Event("ADDED", obj))
    assert _drain(ctrl) == ["ns1/a"]
    same = json.loads(json.dumps(obj))
    same["metadata"]["resourceVersion"] = "8"
    same["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    ctrl.on_event(Event("MODIFIED", same))
    assert _drain(ctrl) == []
    assert ctrl.store["ns1/a"].resource_version == "8"
    # The echo of the watcher's own annotation patch is not work either...
    text = PodAnnotation("10.244.1.7", 24, "0a:58:0a:f4:01:07", "10.244.1.1").to_json()
    ctrl._written["ns1/a"] = text
    echo = json.loads(json.dumps(same))
    echo["metadata"]["annotations"] = {"ovn": text}
    ctrl.on_event(Event("MODIFIED", echo))
    assert _drain(ctrl) == [] and ctrl.store["ns1/a"].annotation_text == text
    # ...but anyone else's change of it is.
    other = json.loads(json.dumps(echo))
    other["metadata"]["annotations"] = {"ovn": text.replace(".7", ".8")}
    ctrl.on_event(Event("MODIFIED", other))
    assert _drain(ctrl) == ["ns1/a"]
    ctrl.on_event(Event("DELETED", other))
    assert _drain(ctrl) == ["ns1/a"] and "ns1/a" not in ctrl.store
    ctrl.shutdown()


def test_a_pod_without_a_name_is_ignored_not_fatal():
    from ovn_k8s.kube.watch import Event

    ctrl = _controller()
    ctrl.on_event(Event("ADDED", {"metadata": {"namespace": "x"}}))
    assert _drain(ctrl) == [] and not ctrl.store
    ctrl.shutdown()
