"""ovn-mesos-plugin's protocol side (pure): parsing what the Mesos agent sends, the result in
every supported version, and error JSON for every bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from ovn_k8s.cni.protocol import DNS, AddResult, CniError, Interface, IPConfig, Route
from ovn_k8s.mesos import plugin as p
from ovn_k8s.mesos import request as r

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "7d5a1c3e-task", "CNI_IFNAME": "eth0",
       "CNI_NETNS": "/var/run/mesos/isolators/network/cni/7d5a1c3e-task/ns", "CNI_PATH": "/var/lib/mesos/cni/plugins"}


def conf(labels: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """As the agent sends it: the network file plus args.org.apache.mesos.network_info."""
    out: dict[str, Any] = {"cniVersion": "0.2.0", "name": "ovn", "type": "ovn-mesos-plugin",
                           "args": {"org.apache.mesos": {"network_info": {"name": "ovn", "labels": {"labels": (
                               labels if labels is not None else
                               [{"key": "app", "value": "web"}, {"key": "logical_switch", "value": "coke1"}])}}}}}
    out.update(extra)
    return out


def parse(env: dict[str, str] | None = None, **kw: Any) -> r.MesosRequest:
    return r.parse_request({**ENV, **(env or {})}, json.dumps(conf(**kw)))


def code_of(env: dict[str, str] | None = None, text: str | None = None, **kw: Any) -> tuple[int, str]:
    with pytest.raises(CniError) as info:
        r.parse_request({**ENV, **(env or {})}, text if text is not None else json.dumps(conf(**kw)))
    return info.value.code, info.value.msg


def test_add_reads_the_network_from_the_mesos_labels() -> None:
    req = parse()
    assert (req.command, req.cni_version, req.container_id, req.ifname) == ("ADD", "0.2.0", "7d5a1c3e-task", "eth0")
    assert req.network == "coke1" and req.tenant is None
    assert req.labels == {"app": "web", "logical_switch": "coke1"}
    assert req.config.mtu == 1400 and req.config.wait_for_ovn and req.config.settings["timeout"] == 30.0
    req = parse(labels=[{"key": "logical_switch", "value": "web"}, {"key": "tenant", "value": "pepsi"}])
    assert (req.network, req.tenant) == ("web", "pepsi")


def test_the_task_id_label_of_the_originals_readme() -> None:
    req = parse(labels=[{"key": "logical_switch", "value": "coke1"}, {"key": "task_id", "value": "1234"}])
    assert (req.network, req.task_id) == ("coke1", "1234")
    assert parse().task_id is None
    for bad in ("a b", 'a"b', "a\\b", "x" * 201):
        assert code_of(labels=[{"key": "logical_switch", "value": "coke1"},
                               {"key": "task_id", "value": bad}]) == (7, "bad task_id label"), bad


def test_the_originals_config_file_is_accepted() -> None:
    """M:config/10-ovn.conf had no cniVersion and string booleans; its plugin printed 0.2.0."""
    original = {"bridge": "br-int", "ipMasq": "false", "name": "ovn", "isGateway": "true", "type": "ovn-mesos-plugin",
                "args": conf()["args"]}
    req = r.parse_request(ENV, json.dumps(original))
    assert req.cni_version == "0.2.0" and req.config.bridge == "br-int"


def test_settings_for_the_nb_and_ovs_come_from_the_network_config() -> None:
    req = parse(ovsdb="unix:/run/ovs/db.sock", ovn_nb="ssl:10.0.0.1:6641", nb_privkey="/k.pem", timeout=5)
    assert dict(req.config.settings) == {"ovs_db": "unix:/run/ovs/db.sock", "ovn_nb": "ssl:10.0.0.1:6641",
                                         "nb_privkey": "/k.pem", "timeout": 5.0}


@pytest.mark.parametrize(("kw", "env", "text", "code", "msg"), [
    ({}, {"CNI_COMMAND": ""}, None, 4, "required env variables [CNI_COMMAND] missing"),
    ({}, {"CNI_COMMAND": "GC"}, None, 4, "unknown CNI_COMMAND: GC"),
    ({}, {"CNI_NETNS": ""}, None, 4, "required env variables [CNI_NETNS] missing"),
    ({}, {"CNI_CONTAINERID": "a/b"}, None, 4, "CNI_CONTAINERID has invalid characters"),
    ({}, {"CNI_IFNAME": "x" * 16}, None, 4, "CNI_IFNAME is longer than 15 bytes"),
    ({}, {}, "{not json", 6, "error decoding network config"),
    ({}, {}, "[]", 6, "error decoding network config"),
    ({"cniVersion": "0.5.0"}, {}, None, 1, "incompatible CNI versions"),
    ({"cniVersion": 2}, {}, None, 6, "cniVersion must be a string"),
    ({"name": "a b"}, {}, None, 7, "invalid characters found in network name"),
    ({"type": ""}, {}, None, 7, "missing plugin type"),
    ({"labels": []}, {}, None, 7, "Failed to get logical_switch from mesos config"),
    ({"labels": [{"key": "logical_switch"}]}, {}, None, 7, "Failed to get logical_switch from mesos config"),
    ({"labels": [{"value": "x"}]}, {}, None, 7, "bad network_info label"),
    ({"args": {"org.apache.mesos": {"network_info": {"labels": {"labels": {}}}}}}, {}, None, 7,
     "network_info labels must be a list"),
    ({"ipam": {"type": "host-local"}}, {}, None, 2, 'unsupported field ipam={"type": "host-local"}'),
    ({"ipMasq": True}, {}, None, 2, "unsupported field ipMasq=true"),
    ({"mtu": 20}, {}, None, 7, "mtu must be an integer in [68, 65535]"),
    ({"bridge": "br/int"}, {}, None, 7, "bridge contains '/', ':' or whitespace"),
    ({"ovn_nb": "http://nb"}, {}, None, 7, "ovn_nb must be unix:, tcp: or ssl:"),
    ({"timeout": 0}, {}, None, 7, "timeout must be a number in (0, 3600]"),
    ({"wait_for_ovn": "yes"}, {}, None, 7, "wait_for_ovn must be true or false"),
    ({"log_level": "LOUD"}, {}, None, 7, "log_level must be one of"),
    ({"dns": {"nameservers": "1.1.1.1"}}, {}, None, 7, "bad dns"),
    ({}, {"CNI_COMMAND": "CHECK"}, None, 1, "config version does not allow CHECK"),
    ({"cniVersion": "1.0.0"}, {"CNI_COMMAND": "CHECK"}, None, 7, "prevResult is required for CHECK"),
    ({"cniVersion": "1.0.0", "prevResult": {"ips": "x"}}, {"CNI_COMMAND": "CHECK"}, None, 6,
     "error decoding prevResult"),
])
def test_bad_input_gets_the_spec_code(kw: dict[str, Any], env: dict[str, str], text: str | None, code: int,
                                      msg: str) -> None:
    labels = kw.pop("labels", None)
    got_code, got_msg = code_of(env, text, labels=labels, **kw)
    assert got_code == code
    assert got_msg.startswith(msg), got_msg


def test_del_needs_neither_labels_nor_netns() -> None:
    req = r.parse_request({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}, json.dumps(conf(labels=[])))
    assert req.command == "DEL" and req.netns is None and req.network is None


RESULT = AddResult(interfaces=(Interface("ovn0123456789ab", "aa:bb:cc:dd:ee:ff"),
                               Interface("eth0", "0a:58:c0:a8:01:02", "/var/run/netns/t")),
                   ips=(IPConfig("192.168.1.2/24", "192.168.1.1", interface=1),),
                   routes=(Route("0.0.0.0/0", "192.168.1.1"),), dns=DNS(nameservers=("192.0.2.53",)))


def test_results_per_version() -> None:
    legacy = r.render_result(RESULT, "0.2.0")
    assert legacy == {"cniVersion": "0.2.0", "ip4": {"ip": "192.168.1.2/24", "gateway": "192.168.1.1",
                                                     "routes": [{"dst": "0.0.0.0/0", "gw": "192.168.1.1"}]},
                      "dns": {"nameservers": ["192.0.2.53"]}}
    assert r.render_result(RESULT, "0.1.0")["ip4"] == legacy["ip4"]
    v031 = r.render_result(RESULT, "0.3.1")
    assert v031["ips"] == [{"version": "4", "address": "192.168.1.2/24", "gateway": "192.168.1.1", "interface": 1}]
    v1 = r.render_result(RESULT, "1.0.0")
    assert v1["ips"] == [{"address": "192.168.1.2/24", "gateway": "192.168.1.1", "interface": 1}]
    assert v1["interfaces"][1] == {"name": "eth0", "mac": "0a:58:c0:a8:01:02", "sandbox": "/var/run/netns/t"}


def run(env: dict[str, str], stdin: str, handler: Any = None) -> tuple[int, Any]:
    out = io.StringIO()
    rc = p.run(handler or (lambda request: RESULT), env, stdin, out)
    text = out.getvalue()
    return rc, json.loads(text) if text else None


def test_run_prints_the_result_in_the_configs_version() -> None:
    for version, key in (("0.2.0", "ip4"), ("0.3.0", "ips"), ("0.4.0", "ips"), ("1.0.0", "ips")):
        rc, out = run(ENV, json.dumps(conf(cniVersion=version)))
        assert rc == 0 and out["cniVersion"] == version and key in out
    rc, out = run({**ENV, "CNI_COMMAND": "DEL"}, json.dumps(conf()), handler=lambda request: None)
    assert (rc, out) == (0, None)


def test_run_turns_every_failure_into_error_json() -> None:
    rc, out = run({**ENV, "CNI_COMMAND": ""}, "")
    assert rc == 1 and out == {"cniVersion": "1.0.0", "code": 4, "msg": "required env variables [CNI_COMMAND] missing",
                               "details": ""}
    rc, out = run(ENV, json.dumps(conf(cniVersion="0.3.1", labels=[])))
    assert rc == 1 and out["cniVersion"] == "0.3.1" and out["code"] == 7
    # a config without cniVersion gets its errors in 0.2.0, like its results
    rc, out = run(ENV, json.dumps({k: v for k, v in conf(labels=[]).items() if k != "cniVersion"}))
    assert rc == 1 and out["cniVersion"] == "0.2.0"

    def boom(request: r.MesosRequest) -> None:
        raise RuntimeError("something broke")

    rc, out = run(ENV, json.dumps(conf()), handler=boom)
    assert rc == 1 and out == {"cniVersion": "0.2.0", "code": 999, "msg": "something broke", "details": "RuntimeError"}

    def unknown(request: r.MesosRequest) -> None:
        raise CniError(r.Code.UNKNOWN_NETWORK, "unknown network", "no network 'x'")

    rc, out = run(ENV, json.dumps(conf()), handler=unknown)
    assert rc == 1
    assert out == {"cniVersion": "0.2.0", "code": 110, "msg": "unknown network", "details": "no network 'x'"}


def test_version_is_answered_without_heavy_imports() -> None:
    code = ("import io, json, sys\n"
            "from ovn_k8s.mesos import plugin\n"
            "out = io.StringIO()\n"
            "rc = plugin.main({'CNI_COMMAND': 'VERSION'}, io.BytesIO(b'{\"cniVersion\": \"0.2.0\"}'), out)\n"
            "heavy = ['ovsdbapp' in sys.modules, 'pyroute2' in sys.modules]\n"
            "print(json.dumps([rc, json.loads(out.getvalue()), *heavy]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rc, out, ovsdbapp, pyroute2 = json.loads(proc.stdout)
    assert rc == 0
    assert out == {"cniVersion": "0.2.0", "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]}
    assert not ovsdbapp and not pyroute2
