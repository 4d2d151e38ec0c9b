"""ovn_k8s.cni.plugin: the pure decisions (CHECK of the OVS side, log settings) and the
executable's behaviour before it touches the node (VERSION, bad input, logging), run as a
process exactly as a runtime runs it. No root, no OVS needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ovn_k8s.cni import plugin
from ovn_k8s.cni.ovsdb import PortState

PLUGIN = os.path.join(os.path.dirname(sys.executable), "ovn-k8s-cni-overlay")
MAC = "0a:58:0a:f4:02:05"
GOOD_IDS = {"iface-id": "ns_pod", "attached-mac": MAC, "iface-status": "active", "ovn-installed": "true"}


def port(bridge: str | None = "br-int", **ids: str | None) -> PortState:
    merged = {k: v for k, v in {**GOOD_IDS, **ids}.items() if v is not None}
    return PortState(name="ovn0123456789ab", bridge=bridge, external_ids=merged, ofport=3)


def problems(state: PortState | None, **kwargs: object) -> list[str]:
    args = {"bridge": "br-int", "mac": MAC.upper(), "lsp": "ns_pod", "need_ovn": True, **kwargs}
    return plugin.port_problems(state, "ovn0123456789ab", **args)  # type: ignore[arg-type]


def test_a_correct_port_has_no_problems() -> None:
    assert problems(port()) == []
    assert problems(port(**{"ovn-installed": None}), need_ovn=False) == []
    assert problems(port(**{"iface-id": "x"}), lsp=None) == []  # CHECK without pod identity


@pytest.mark.parametrize(("state", "fragment"), [
    (None, "is missing"),
    (port(bridge=None), "is on no bridge, not br-int"),
    (port(bridge="br-phy"), "is on br-phy, not br-int"),
    (port(**{"iface-id": "ns_other"}), "has iface-id 'ns_other', expected 'ns_pod'"),
    (port(**{"attached-mac": "0a:58:00:00:00:01"}), f"expected {MAC.upper()}"),
    (port(**{"ovn-installed": None}), "not bound by OVN"),
])
def test_each_drift_is_named(state: PortState | None, fragment: str) -> None:
    (problem,) = problems(state)
    assert fragment in problem and "ovn0123456789ab" in problem


def test_vswitchd_errors_are_drift() -> None:
    state = PortState(name="p", bridge="br-int", external_ids=GOOD_IDS, ofport=-1,
                      error="could not open network device p (No such device)")
    assert problems(state) == ["OVS port ovn0123456789ab has an error: could not open network device p "
                               "(No such device)"]


def test_logical_port_name() -> None:
    assert plugin.iface_id("kube-system", "coredns-5d78c9869d-abcde") == "kube-system_coredns-5d78c9869d-abcde"


@pytest.mark.parametrize(("text", "expected"), [
    ('{"log_file": "/var/log/x.log", "log_level": "debug"}', ("/var/log/x.log", "DEBUG")),
    ('{"log_level": "chatty"}', (None, "INFO")),
    ('{"log_file": 3}', (None, "INFO")),
    ("not json", (None, "INFO")),
    ("[]", (None, "INFO")),
])
def test_log_settings_are_read_before_validation(text: str, expected: tuple[str | None, str]) -> None:
    assert plugin._log_settings(text) == expected


# -- the executable ----------------------------------------------------------------------------------


def run(stdin: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ["PATH"], **env}
    return subprocess.run([PLUGIN], input=stdin, capture_output=True, text=True, env=clean, timeout=60, check=False)


def test_version_needs_nothing_but_the_command() -> None:
    proc = run("", CNI_COMMAND="VERSION")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}
    assert proc.stderr == ""


def test_errors_go_to_stdout_as_json_and_to_the_log_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "logs" / "cni.log"  # the directory does not exist yet
    conf = {"cniVersion": "0.4.0", "name": "net", "type": "ovn-k8s-cni-overlay", "mtu": 20,
            "log_file": str(log)}
    proc = run(json.dumps(conf), CNI_COMMAND="ADD", CNI_CONTAINERID="abcdef0123456789", CNI_NETNS="/run/netns/x",
               CNI_IFNAME="eth0", CNI_ARGS="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")
    assert proc.returncode == 1
    assert json.loads(proc.stdout) == {"cniVersion": "0.4.0", "code": 7, "msg": "mtu must be an integer in [68, 65535]",
                                       "details": "20"}
    assert proc.stderr == ""  # kubelet hides stderr: everything went to log_file
    text = log.read_text()
    assert "ERROR ADD abcdef012345: CNI ADD failed: code 7" in text


def test_an_unwritable_log_file_falls_back_to_stderr(tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    conf = {"cniVersion": "1.0.0", "name": "net", "type": "t", "log_file": str(blocker / "cni.log")}
    proc = run(json.dumps(conf), CNI_COMMAND="DEL")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == 4  # DEL still answers: CNI_CONTAINERID and CNI_IFNAME missing
    assert "cannot open log_file" in proc.stderr and "CNI DEL failed" in proc.stderr


def test_stdin_that_is_not_utf8_is_code_6() -> None:
    proc = subprocess.run([PLUGIN], input=b"\xff\xfe{", capture_output=True, timeout=60, check=False,
                          env={"PATH": os.environ["PATH"], "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c",
                               "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"})
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["code"] == 6


NESTED_CONF = '{"cniVersion": "1.0.0", "name": "n", "type": "t", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"


@pytest.mark.parametrize("stdin", ["[" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000, NESTED_CONF])
def test_deeply_nested_stdin_is_code_6_on_stdout(stdin: str) -> None:
    """The JSON decoder's RecursionError is a decoding failure like any other, in the frame."""
    proc = run(stdin, CNI_COMMAND="ADD", CNI_CONTAINERID="c", CNI_NETNS="/x", CNI_IFNAME="eth0")
    assert proc.returncode == 1
    answer = json.loads(proc.stdout)
    assert answer["code"] == 6 and answer["details"] == "nested too deeply", answer
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("stdin", [
    "", "null", "3", '"text"', "[]", "{}", '{"cniVersion": 1}', '{"cniVersion": "9.9.9", "name": "n", "type": "t"}',
    '{"cniVersion": "1.0.0", "name": "n", "type": "t", "log_file": "/tmp/a\\u0000b"}',
    '{"cniVersion": "1.0.0", "name": "n", "type": "t", "log_level": {"a": 1}, "mtu": "x"}',
    '{"cniVersion": "1.0.0", "name": "n", "type": "t", "prevResult": [1]}',
    '{"cniVersion": "1.0.0", "name": "n", "type": "t", "k8s_api_server": "::::"}',
])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "VERSION", "BOGUS", ""])
def test_whatever_the_input_stdout_is_one_spec_json(stdin: str, command: str) -> None:
    """The runtime reads only stdout: every invocation answers there with one JSON object (an
    error: code, msg, details; or VERSION's answer), never a traceback or nothing."""
    proc = run(stdin, CNI_COMMAND=command, CNI_CONTAINERID="c", CNI_NETNS="/nonexistent/netns", CNI_IFNAME="eth0",
               CNI_ARGS="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p")
    answer = json.loads(proc.stdout)
    assert isinstance(answer, dict), proc.stdout
    if command == "VERSION":
        assert proc.returncode == 0 and "supportedVersions" in answer
    else:
        assert proc.returncode == 1 and {"code", "msg"} <= set(answer), answer
        assert answer["code"] != 999, answer
    assert "Traceback" not in proc.stderr
