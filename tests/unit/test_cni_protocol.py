"""CNI protocol layer: env/stdin -> CniRequest, results/errors/VERSION JSON per spec version, run().

Expected values come from the CNI spec text (1.0.0 "Section 2"/"Section 5", 0.4.0 "Result" and
"Well-known Error Codes"), written out here as golden dicts rather than derived from the code.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

import pytest

from ovn_k8s.cni import protocol as p
from ovn_k8s.cni.protocol import (
    DNS,
    AddResult,
    CniError,
    CniRequest,
    Command,
    Interface,
    IPConfig,
    Route,
)

NETNS = "/var/run/netns/cni-1234"
K8S_ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123"


def env(command: str = "ADD", **overrides: str | None) -> dict[str, str]:
    """A complete kubelet-like environment; an override of None removes the variable."""
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": NETNS,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": K8S_ARGS,
        "CNI_PATH": "/opt/cni/bin:/usr/libexec/cni",
    }
    for key, value in overrides.items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return base


def conf(version: str = "1.0.0", **extra: Any) -> str:
    data: dict[str, Any] = {"cniVersion": version, "name": "ovn-kubernetes", "type": "ovn-k8s-cni-overlay"}
    data.update(extra)
    return json.dumps(data)


PREV_1_0 = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "ovn0123456789ab", "mac": "aa:bb:cc:dd:ee:ff"},
                   {"name": "eth0", "mac": "0a:58:0a:f4:01:0a", "sandbox": NETNS}],
    "ips": [{"address": "10.244.1.10/24", "gateway": "10.244.1.1", "interface": 1}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
    "dns": {},
}
PREV_0_4 = {**PREV_1_0, "cniVersion": "0.4.0",
            "ips": [{"version": "4", "address": "10.244.1.10/24", "gateway": "10.244.1.1", "interface": 1}]}

RESULT = AddResult(
    interfaces=(Interface("ovn0123456789ab", "aa:bb:cc:dd:ee:ff"),
                Interface("eth0", "0a:58:0a:f4:01:0a", NETNS)),
    ips=(IPConfig("10.244.1.10/24", "10.244.1.1", interface=1),),
    routes=(Route("0.0.0.0/0", "10.244.1.1"), Route("10.96.0.0/12")),
    dns=DNS(nameservers=("10.96.0.10",), search=("default.svc.cluster.local",)),
)


def code_of(fn: Any, *args: Any) -> int:
    with pytest.raises(CniError) as info:
        fn(*args)
    return info.value.code


# ---------------------------------------------------------------------------------------------
# environment variables


@pytest.mark.parametrize(("command", "var"), [
    ("ADD", "CNI_CONTAINERID"), ("ADD", "CNI_NETNS"), ("ADD", "CNI_IFNAME"),
    ("DEL", "CNI_CONTAINERID"), ("DEL", "CNI_IFNAME"),
    ("CHECK", "CNI_CONTAINERID"), ("CHECK", "CNI_NETNS"), ("CHECK", "CNI_IFNAME"),
])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_required_variable_missing_is_code_4_and_named(command: str, var: str, how: str) -> None:
    e = env(command, **{var: None if how == "absent" else ""})
    with pytest.raises(CniError) as info:
        p.parse_request(e, conf(prevResult=PREV_1_0))
    assert info.value.code == 4
    assert var in info.value.msg


@pytest.mark.parametrize(("command", "dropped"), [
    ("DEL", ("CNI_NETNS",)),  # spec: DEL must tolerate a missing netns
    ("DEL", ("CNI_NETNS", "CNI_ARGS", "CNI_PATH")),
    ("CHECK", ("CNI_PATH",)),  # CNI_PATH is optional in spec 1.0.0 (libcni's skel demands it)
    ("ADD", ("CNI_PATH",)),
])
def test_optional_variables_may_be_absent(command: str, dropped: tuple[str, ...]) -> None:
    e = env(command, **{v: None for v in dropped})
    req = p.parse_request(e, conf(prevResult=PREV_1_0))
    assert req.command is Command(command)
    if "CNI_NETNS" in dropped:
        assert req.netns is None
    if "CNI_PATH" in dropped:
        assert req.cni_path == ()


def test_version_needs_no_variables_and_no_stdin() -> None:
    req = p.parse_request({"CNI_COMMAND": "VERSION"}, "")
    assert req == CniRequest(command=Command.VERSION, cni_version="1.0.0")


@pytest.mark.parametrize(("environ", "fragment"), [
    ({}, "CNI_COMMAND"),
    ({"CNI_COMMAND": ""}, "CNI_COMMAND"),
    ({"CNI_COMMAND": "GC"}, "unknown CNI_COMMAND: GC"),
    ({"CNI_COMMAND": "add"}, "unknown CNI_COMMAND: add"),
])
def test_bad_command_is_code_4(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(CniError) as info:
        p.parse_request(environ, conf())
    assert (info.value.code, fragment in info.value.msg) == (4, True)


@pytest.mark.parametrize("container_id", ["-abc", "_x", "a b", "a/b", "ä", "abc;rm"])
def test_invalid_container_id_is_code_4(container_id: str) -> None:
    assert code_of(p.parse_request, env(CNI_CONTAINERID=container_id), conf()) == 4


@pytest.mark.parametrize("container_id", ["a", "0", "abc.def-ghi_jkl", "f" * 64])
def test_valid_container_ids(container_id: str) -> None:
    assert p.parse_request(env(CNI_CONTAINERID=container_id), conf()).container_id == container_id


@pytest.mark.parametrize("ifname", ["x" * 16, ".", "..", "a/b", "a:b", "a b", "a\tb"])
def test_invalid_ifname_is_code_4(ifname: str) -> None:
    assert code_of(p.parse_request, env(CNI_IFNAME=ifname), conf()) == 4


def test_ifname_of_15_chars_is_fine() -> None:
    assert p.parse_request(env(CNI_IFNAME="x" * 15), conf()).ifname == "x" * 15


def test_full_add_request() -> None:
    req = p.parse_request(env(), conf(mtu=1450))
    assert req.command is Command.ADD
    assert (req.container_id, req.netns, req.ifname) == ("abc123", NETNS, "eth0")
    assert req.cni_path == ("/opt/cni/bin", "/usr/libexec/cni")
    assert (req.network_name, req.plugin_type, req.cni_version) == ("ovn-kubernetes", "ovn-k8s-cni-overlay", "1.0.0")
    pod = (req.pod_namespace, req.pod_name, req.pod_uid, req.infra_container_id)
    assert pod == ("default", "web-0", None, "abc123")
    assert req.pod_key == "default/web-0"
    assert req.config.mtu == 1450
    assert req.prev_result is None
    assert req.raw_config["name"] == "ovn-kubernetes"


# ---------------------------------------------------------------------------------------------
# CNI_ARGS


@pytest.mark.parametrize(("text", "expected"), [
    ("", {}),
    ("FOO=BAR;ABC=123", {"FOO": "BAR", "ABC": "123"}),
    ("FOO=BAR;", {"FOO": "BAR"}),
    (";;FOO=BAR", {"FOO": "BAR"}),
    ("K=a=b", {"K": "a=b"}),
    ("K=", {"K": ""}),
    ("K=1;K=2", {"K": "2"}),
    (("IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=dns-1;K8S_POD_UID=u-1;"
      "K8S_POD_INFRA_CONTAINER_ID=c0ffee"),
     {"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "kube-system", "K8S_POD_NAME": "dns-1",
      "K8S_POD_UID": "u-1", "K8S_POD_INFRA_CONTAINER_ID": "c0ffee"}),
])
def test_parse_cni_args(text: str, expected: dict[str, str]) -> None:
    assert p.parse_cni_args(text) == expected


@pytest.mark.parametrize("text", ["novalue", "A=1;junk", "=x"])
def test_bad_cni_args_are_code_4(text: str) -> None:
    with pytest.raises(CniError) as info:
        p.parse_cni_args(text)
    assert info.value.code == 4 and "CNI_ARGS" in info.value.msg


def test_pod_fields_from_cni_args() -> None:
    req = p.parse_request(env(CNI_ARGS="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod;K8S_POD_UID=1-2-3"), conf())
    assert (req.pod_namespace, req.pod_name, req.pod_uid, req.infra_container_id) == ("ns", "pod", "1-2-3", None)


@pytest.mark.parametrize(("args", "missing"), [
    (None, "K8S_POD_NAMESPACE, K8S_POD_NAME"),
    ("K8S_POD_NAME=p", "K8S_POD_NAMESPACE"),
    ("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=", "K8S_POD_NAME"),
])
def test_add_needs_the_pod_in_cni_args(args: str | None, missing: str) -> None:
    with pytest.raises(CniError) as info:
        p.parse_request(env(CNI_ARGS=args), conf())
    assert info.value.code == 4 and missing in info.value.msg


@pytest.mark.parametrize("command", ["DEL", "CHECK"])
def test_del_and_check_do_not_need_the_pod(command: str) -> None:
    req = p.parse_request(env(command, CNI_ARGS=None), conf(prevResult=PREV_1_0))
    assert req.pod_key is None


# ---------------------------------------------------------------------------------------------
# configuration JSON and versions


@pytest.mark.parametrize("stdin", ["", "{", "not json", '{"cniVersion": "1.0.0",}', "[]", '"1.0.0"', "null"])
def test_malformed_config_is_code_6(stdin: str) -> None:
    assert code_of(p.parse_request, env(), stdin) == 6


def test_non_string_version_is_code_6() -> None:
    assert code_of(p.parse_request, env(), json.dumps({"cniVersion": 1, "name": "n", "type": "t"})) == 6


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "1.1.0", "2.0.0", "1.0", "latest", None, ""])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_unsupported_version_is_code_1(version: str | None, command: str) -> None:
    data: dict[str, Any] = {"name": "n", "type": "t", "prevResult": PREV_1_0}
    if version is not None:
        data["cniVersion"] = version
    with pytest.raises(CniError) as info:
        p.parse_request(env(command), json.dumps(data))
    assert info.value.code == 1


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_supported_versions_parse(version: str) -> None:
    assert p.parse_request(env(), conf(version)).cni_version == version


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1"])
def test_check_before_0_4_0_is_code_1(version: str) -> None:
    prev = {**PREV_0_4, "cniVersion": version}
    with pytest.raises(CniError) as info:
        p.parse_request(env("CHECK"), conf(version, prevResult=prev))
    assert info.value.code == 1 and "CHECK" in info.value.msg


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_check_needs_prev_result(version: str) -> None:
    assert code_of(p.parse_request, env("CHECK"), conf(version)) == 7


@pytest.mark.parametrize(("version", "prev"), [("0.4.0", PREV_0_4), ("1.0.0", PREV_1_0)])
def test_check_parses_prev_result(version: str, prev: dict[str, Any]) -> None:
    req = p.parse_request(env("CHECK"), conf(version, prevResult=prev))
    assert req.prev_result is not None
    assert req.prev_result.interface_index("eth0", NETNS) == 1
    assert req.prev_result.ips_for(1) == (IPConfig("10.244.1.10/24", "10.244.1.1", 1),)


@pytest.mark.parametrize("bad", [
    [], {"interfaces": "eth0"}, {"ips": [{"address": "bogus"}]}, {"ips": [{"address": "10.0.0.2/24", "interface": 3}]},
    {"ips": [{"version": "6", "address": "10.0.0.2/24"}]}, {"routes": [{"gw": "10.0.0.1"}]},
    {"dns": []}, {"interfaces": [{"mac": "aa:bb:cc:dd:ee:ff"}]},
])
def test_undecodable_prev_result(bad: Any) -> None:
    with pytest.raises(ValueError):
        AddResult.from_json(bad)
    for command in ("ADD", "CHECK"):
        assert code_of(p.parse_request, env(command), conf(prevResult=bad)) == 6
    # DEL must clean up whatever it can: a damaged cached result is ignored.
    assert p.parse_request(env("DEL"), conf(prevResult=bad)).prev_result is None


@pytest.mark.parametrize(("name", "code"), [(None, 7), ("", 7), (5, 7), ("-net", 7), ("a net", 7)])
def test_bad_network_name_is_code_7(name: Any, code: int) -> None:
    data = {"cniVersion": "1.0.0", "type": "t"}
    if name is not None:
        data["name"] = name
    assert code_of(p.parse_request, env(), json.dumps(data)) == code


def test_missing_type_is_code_7() -> None:
    assert code_of(p.parse_request, env(), json.dumps({"cniVersion": "1.0.0", "name": "n"})) == 7


def test_config_defaults() -> None:
    assert p.parse_request(env(), conf()).config == p.PluginConfig(
        mtu=1400, bridge="br-int", ovsdb="unix:/var/run/openvswitch/db.sock", annotation_timeout=120.0,
        poll_interval=0.2, wait_for_ovn=True, disable_tx_offload=True, log_file=None, log_level="INFO",
        dns=DNS())


def test_config_overrides() -> None:
    cfg = p.parse_request(env(), conf(
        mtu=9000, bridge="br-test", ovsdb="unix:/tmp/n1/db.sock", annotation_timeout=30, poll_interval=0.5,
        wait_for_ovn=False, disable_tx_offload=False, log_file="/var/log/cni.log", log_level="debug",
        dns={"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc"], "options": ["ndots:5"]},
        unknownKey={"is": "ignored"}, args={"labels": {"a": "b"}}, runtimeConfig={},
    )).config
    assert cfg == p.PluginConfig(
        mtu=9000, bridge="br-test", ovsdb="unix:/tmp/n1/db.sock", annotation_timeout=30.0, poll_interval=0.5,
        wait_for_ovn=False, disable_tx_offload=False, log_file="/var/log/cni.log", log_level="DEBUG",
        dns=DNS(("10.96.0.10",), "cluster.local", ("svc",), ("ndots:5",)))


@pytest.mark.parametrize(("key", "value"), [
    ("mtu", 67), ("mtu", 65536), ("mtu", "1400"), ("mtu", True), ("mtu", 1400.0),
    ("bridge", ""), ("bridge", "x" * 16), ("bridge", 1),
    ("ovsdb", "/var/run/db.sock"), ("ovsdb", ""),
    ("annotation_timeout", 0), ("annotation_timeout", -1), ("annotation_timeout", "120"),
    ("annotation_timeout", 3601), ("annotation_timeout", False),
    ("poll_interval", 0), ("poll_interval", 121),
    ("wait_for_ovn", "yes"), ("wait_for_ovn", 1), ("disable_tx_offload", None),
    ("log_file", ""), ("log_file", 3), ("log_level", "TRACE"), ("dns", []), ("dns", {"nameservers": "x"}),
])
def test_invalid_config_values_are_code_7(key: str, value: Any) -> None:
    with pytest.raises(CniError) as info:
        p.parse_request(env(), conf(**{key: value}))
    assert info.value.code == 7, info.value


@pytest.mark.parametrize(("key", "value"), [
    ("ipam", {"type": "host-local", "subnet": "10.1.0.0/16"}),
    ("ipMasq", True),
])
def test_unsupported_fields_are_code_2_with_key_and_value(key: str, value: Any) -> None:
    with pytest.raises(CniError) as info:
        p.parse_request(env(), conf(**{key: value}))
    assert info.value.code == 2
    assert f"{key}={json.dumps(value)}" in info.value.msg


def test_ip_masq_false_and_ipam_null_are_accepted() -> None:
    assert p.parse_request(env(), conf(ipMasq=False, ipam=None)).config.mtu == 1400


def test_request_is_frozen() -> None:
    req = p.parse_request(env(), conf())
    with pytest.raises(AttributeError):
        req.netns = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(TypeError):
        req.cni_args["K8S_POD_NAME"] = "other"  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# results, errors, VERSION


GOLDEN_RESULTS: dict[str, dict[str, Any]] = {
    "1.0.0": {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "ovn0123456789ab", "mac": "aa:bb:cc:dd:ee:ff"},
                       {"name": "eth0", "mac": "0a:58:0a:f4:01:0a", "sandbox": NETNS}],
        "ips": [{"address": "10.244.1.10/24", "gateway": "10.244.1.1", "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "10.96.0.0/12"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]},
    },
}
for _v in ("0.4.0", "0.3.1", "0.3.0"):
    GOLDEN_RESULTS[_v] = {
        **GOLDEN_RESULTS["1.0.0"],
        "cniVersion": _v,
        "ips": [{"version": "4", "address": "10.244.1.10/24", "gateway": "10.244.1.1", "interface": 1}],
    }


@pytest.mark.parametrize("version", sorted(GOLDEN_RESULTS))
def test_result_json_per_version(version: str) -> None:
    assert RESULT.to_json(version) == GOLDEN_RESULTS[version]


@pytest.mark.parametrize("version", sorted(GOLDEN_RESULTS))
def test_result_round_trips(version: str) -> None:
    assert AddResult.from_json(RESULT.to_json(version)) == RESULT


def test_ipv6_result_version_field() -> None:
    result = AddResult(interfaces=(Interface("eth0", sandbox=NETNS),),
                       ips=(IPConfig("fd00:10:244:1::a/64", "fd00:10:244:1::1", 0),))
    assert result.to_json("0.4.0")["ips"] == [
        {"version": "6", "address": "fd00:10:244:1::a/64", "gateway": "fd00:10:244:1::1", "interface": 0}]
    assert result.to_json("1.0.0")["ips"] == [
        {"address": "fd00:10:244:1::a/64", "gateway": "fd00:10:244:1::1", "interface": 0}]


def test_empty_result_still_has_every_key() -> None:
    assert AddResult().to_json("1.0.0") == {"cniVersion": "1.0.0", "interfaces": [], "ips": [], "routes": [], "dns": {}}


def test_result_rejects_unsupported_output_version() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        RESULT.to_json("0.2.0")


@pytest.mark.parametrize("build", [
    lambda: IPConfig("10.0.0.300/24"),
    lambda: IPConfig("10.0.0.2/24", gateway="fd00::1"),
    lambda: IPConfig("10.0.0.2/24", interface=-1),
    lambda: Route("10.0.0.0/33"),
    lambda: Route("10.0.0.0/8", gw="fd00::1"),
    lambda: AddResult(ips=(IPConfig("10.0.0.2/24", interface=0),)),
])
def test_result_validation(build: Any) -> None:
    with pytest.raises(ValueError):
        build()


def test_error_json() -> None:
    err = CniError(p.ErrorCode.INVALID_NETWORK_CONFIG, "Invalid Configuration",
                   "Network 192.168.0.0/31 too small to allocate from.")
    assert err.to_json("1.0.0") == {  # the example from spec 1.0.0 section 5 "Error"
        "cniVersion": "1.0.0", "code": 7, "msg": "Invalid Configuration",
        "details": "Network 192.168.0.0/31 too small to allocate from.",
    }
    assert CniError(100, "timed out").to_json("0.3.1") == {
        "cniVersion": "0.3.1", "code": 100, "msg": "timed out", "details": ""}
    assert str(err) == "Invalid Configuration: Network 192.168.0.0/31 too small to allocate from."


def test_well_known_codes_match_the_spec() -> None:
    assert {c.name: c.value for c in p.ErrorCode if c.value < 100} == {
        "INCOMPATIBLE_VERSION": 1, "UNSUPPORTED_FIELD": 2, "UNKNOWN_CONTAINER": 3, "INVALID_ENVIRONMENT": 4,
        "IO_FAILURE": 5, "DECODING_FAILURE": 6, "INVALID_NETWORK_CONFIG": 7, "TRY_AGAIN_LATER": 11}
    assert {c.value for c in p.ErrorCode if c.value >= 100} == {100, 101, 102, 103, 104, 105, 999}


@pytest.mark.parametrize("code", [0, 8, 9, 10, 12, 50, 99])
def test_reserved_codes_are_refused(code: int) -> None:
    with pytest.raises(ValueError, match="reserved"):
        CniError(code, "x")


@pytest.mark.parametrize(("given", "echoed"), [
    (None, "1.0.0"), ("1.0.0", "1.0.0"), ("0.4.0", "0.4.0"), ("0.3.1", "0.3.1"), ("0.3.0", "0.3.0"),
    ("0.2.0", "1.0.0"), ("9.9.9", "1.0.0"),
])
def test_version_json(given: str | None, echoed: str) -> None:
    assert p.version_json(given) == {"cniVersion": echoed,
                                     "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


# ---------------------------------------------------------------------------------------------
# run()


class Recorder:
    """A handler that records its requests and returns or raises what it is told to."""

    def __init__(self, outcome: Any = None) -> None:
        self.outcome = outcome
        self.requests: list[CniRequest] = []

    def __call__(self, request: CniRequest) -> AddResult | None:
        self.requests.append(request)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def run(handler: Any, environ: dict[str, str], stdin: Any) -> tuple[int, str]:
    out = io.StringIO()
    rc = p.run(handler, environ, stdin, out)
    return rc, out.getvalue()


@pytest.mark.parametrize("version", sorted(GOLDEN_RESULTS))
def test_run_add_prints_the_result(version: str) -> None:
    handler = Recorder(RESULT)
    rc, out = run(handler, env(), conf(version))
    assert rc == 0
    assert json.loads(out) == GOLDEN_RESULTS[version]
    assert out.endswith("\n") and out.count("\n") == 1
    assert [r.command for r in handler.requests] == [Command.ADD]


@pytest.mark.parametrize(("command", "prev"), [("DEL", None), ("DEL", PREV_1_0), ("CHECK", PREV_1_0)])
def test_run_del_and_check_print_nothing(command: str, prev: Any) -> None:
    handler = Recorder(None)
    extra = {"prevResult": prev} if prev else {}
    assert run(handler, env(command), conf(**extra)) == (0, "")
    assert handler.requests[0].command is Command(command)


def test_run_version_does_not_call_the_handler() -> None:
    handler = Recorder(RuntimeError("must not be called"))
    rc, out = run(handler, {"CNI_COMMAND": "VERSION"}, '{"cniVersion": "0.4.0"}')
    assert (rc, json.loads(out)) == (0, {"cniVersion": "0.4.0", "supportedVersions": list(p.SUPPORTED_VERSIONS)})
    assert handler.requests == []
    rc, out = run(handler, {"CNI_COMMAND": "VERSION"}, "garbage")
    assert (rc, json.loads(out)["cniVersion"]) == (0, "1.0.0")


def test_run_reports_cni_error_with_the_config_version() -> None:
    handler = Recorder(CniError(p.ErrorCode.ANNOTATION_TIMEOUT, "timed out waiting for the pod annotation",
                                "default/web-0 after 120 s"))
    rc, out = run(handler, env(), conf("0.4.0"))
    assert rc == 1
    assert json.loads(out) == {"cniVersion": "0.4.0", "code": 100, "msg": "timed out waiting for the pod annotation",
                               "details": "default/web-0 after 120 s"}


@pytest.mark.parametrize(("environ", "stdin", "code", "version"), [
    (env(), "{oops", 6, "1.0.0"),
    (env(), conf("0.2.0"), 1, "0.2.0"),  # the error echoes the version the config asked for
    (env(CNI_NETNS=None), conf("0.3.1"), 4, "0.3.1"),
    (env(), conf(mtu=1), 7, "1.0.0"),
    (env(), conf(ipam={"type": "dhcp"}), 2, "1.0.0"),
    ({"CNI_COMMAND": "BOGUS"}, conf(), 4, "1.0.0"),
])
def test_run_parse_errors(environ: dict[str, str], stdin: str, code: int, version: str) -> None:
    handler = Recorder(RESULT)
    rc, out = run(handler, environ, stdin)
    payload = json.loads(out)
    assert (rc, payload["code"], payload["cniVersion"]) == (1, code, version)
    assert set(payload) == {"cniVersion", "code", "msg", "details"}
    assert handler.requests == []


def test_run_unexpected_exception_is_code_999_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    rc, out = run(Recorder(KeyError("boom")), env(), conf())
    payload = json.loads(out)
    assert (rc, payload["code"], payload["msg"], payload["details"]) == (1, 999, "'boom'", "KeyError")
    assert "Traceback" not in out and out.count("\n") == 1
    assert "Traceback" in caplog.text  # the traceback goes to logging instead


def test_run_exception_without_message_uses_the_type_name() -> None:
    rc, out = run(Recorder(RuntimeError()), env(), conf())
    assert (rc, json.loads(out)["msg"]) == (1, "RuntimeError")


def test_run_add_without_result_passes_prev_result_through() -> None:
    rc, out = run(Recorder(None), env(), conf("0.4.0", prevResult=PREV_0_4))
    assert (rc, json.loads(out)) == (0, PREV_0_4)


@pytest.mark.parametrize("outcome", [None, {"ips": []}])
def test_run_add_without_a_proper_result_is_an_error(outcome: Any) -> None:
    rc, out = run(Recorder(outcome), env(), conf())
    assert (rc, json.loads(out)["code"]) == (1, 999)


@pytest.mark.parametrize("stdin", [
    lambda: conf().encode(),
    lambda: io.StringIO(conf()),
    lambda: io.BytesIO(conf().encode()),
])
def test_run_accepts_text_bytes_and_files(stdin: Any) -> None:
    assert run(Recorder(RESULT), env(), stdin())[0] == 0


class BrokenStdin(io.RawIOBase):
    def read(self, size: int = -1) -> bytes:
        raise OSError(5, "Input/output error")


def test_run_stdin_failures() -> None:
    rc, out = run(Recorder(RESULT), env(), BrokenStdin())
    assert (rc, json.loads(out)["code"]) == (1, 5)
    rc, out = run(Recorder(RESULT), env(), b"\xff\xfe{}")
    assert (rc, json.loads(out)["code"]) == (1, 6)


class BrokenStdout(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_run_stdout_failure_is_exit_1() -> None:
    assert p.run(Recorder(RESULT), env(), conf(), BrokenStdout()) == 1


# ---------------------------------------------------------------------------------------------
# import contract (style-and-architecture.md V11)


def test_cni_modules_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import ovn_k8s.cni.protocol, ovn_k8s.cni.netns, ovn_k8s.cni.plugin, ovn_k8s.cni.kubeapi\n"
        "import ovn_k8s.cni.ovsdb\n"
        "heavy = ('kubernetes', 'ovsdbapp', 'requests', 'yaml', 'pyroute2')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    # pyroute2 is loaded on first netlink use only, so VERSION and config errors stay cheap.
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_cni_add_path_loads_neither_kubernetes_nor_ovsdbapp() -> None:
    """What ADD imports on its way (API client, netlink): two pyroute2 submodules, but not
    requests (the client is kube.lite's http.client), kubernetes, ovsdbapp, yaml (no kubeconfig
    here) nor pyroute2's whole library."""
    code = (
        "import sys\n"
        "from ovn_k8s import netlink\n"
        "from ovn_k8s.cni import kubeapi, netns, plugin\n"
        "params = kubeapi.connection_params(kubeapi.api_settings({'k8s_api_server': 'http://127.0.0.1:1'}), dict)\n"
        "kubeapi.make_client(params).close()\n"
        "netlink._pyroute2()\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        "heavy = {'kubernetes', 'ovsdbapp', 'requests', 'yaml', 'pyroute2'}\n"
        "print(sorted(top & heavy), 'pyroute2.ndb' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == "['pyroute2'] False", proc.stdout + proc.stderr


def test_only_a_proxy_brings_requests_onto_the_add_path() -> None:
    code = (
        "import sys\n"
        "from ovn_k8s.cni import kubeapi\n"
        "from ovn_k8s.kube.params import ConnectionParams\n"
        "client = kubeapi.make_client(ConnectionParams(server='http://127.0.0.1:1', proxy='http://127.0.0.1:2'))\n"
        "print(type(client).__name__, 'requests' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == "KubeClient True", proc.stdout + proc.stderr
