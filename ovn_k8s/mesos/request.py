"""ovn-mesos-plugin's requests and results: PURE (env and stdin text in, `MesosRequest` out;
`AddResult` in, the JSON the agent parses out). The configuration keys and labels it reads are
described in ovn_k8s/mesos/plugin.py; ADD, DEL and CHECK themselves are ovn_k8s/mesos/attach.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ovn_k8s.cni.protocol import (
    DNS,
    AddResult,
    CniError,
    Command,
    ErrorCode,
    MalformedResult,
    config_bridge,
    config_dns,
    config_flag,
    config_log_level,
    config_mtu,
    config_number,
    config_string,
    parse_command,
    parse_envelope,
    reject_ipam_and_masq,
    sniff_version,
)

PLUGIN = "ovn-mesos-plugin"
# 0.1.0/0.2.0: the {"ip4": ...} results Mesos' CNI isolator parses; the rest: the spec's
# "ips"/"interfaces" results (0.3.x and 0.4.0 with a per-IP "version", 1.0.0 without).
SUPPORTED_VERSIONS: tuple[str, ...] = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")
LEGACY_VERSIONS = ("0.1.0", "0.2.0")
_TASK_ID_RE = re.compile(r'^[^\s"\\]{1,200}$')
# The original's 10-ovn.conf had no cniVersion and its plugin printed 0.2.0 results.
NO_VERSION_MEANS = "0.2.0"
DEFAULT_VERSION = "1.0.0"
MESOS_ARGS = "org.apache.mesos"
NETWORK_LABEL = "logical_switch"
TENANT_LABEL = "tenant"
# The original's README: "OVN needs you to also pass the task_id via the label"; its plugin
# then named the logical port <logical_switch>_<task_id> (later versions <ifname>_<container>).
TASK_ID_LABEL = "task_id"


class Code:
    """Plugin error codes (>= 100 are ours; 101-104 mean what they mean for ovn-k8s-cni-overlay)."""

    OVS_ATTACH_FAILED = ErrorCode.OVS_ATTACH_FAILED          # 101
    POD_INTERFACE_FAILED = ErrorCode.POD_INTERFACE_FAILED    # 102
    CHECK_FAILED = ErrorCode.CHECK_FAILED                    # 103
    OVN_BINDING_TIMEOUT = ErrorCode.OVN_BINDING_TIMEOUT      # 104
    UNKNOWN_NETWORK = 110      # the task's logical_switch names no network in the NB
    NETWORK_FULL = 111         # the network has no free address
    NB_FAILED = 112            # the NB refused the transaction


# ---------------------------------------------------------------------------------------------
# Request


@dataclass(frozen=True, slots=True)
class MesosConfig:
    mtu: int = 1400
    bridge: str = "br-int"
    timeout: float = 30.0
    wait_for_ovn: bool = True
    disable_tx_offload: bool = True
    log_file: str | None = None
    log_level: str = "WARNING"
    dns: DNS = DNS()
    # for ovn_k8s.config.resolve: network-configuration values act as command-line flags
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class MesosRequest:
    command: Command
    cni_version: str
    container_id: str = ""
    netns: str | None = None
    ifname: str = ""
    network_name: str = ""                 # the CNI network ("ovn")
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    config: MesosConfig = MesosConfig()
    prev_result: AddResult | None = None

    @property
    def network(self) -> str | None:
        return self.labels.get(NETWORK_LABEL) or None

    @property
    def tenant(self) -> str | None:
        return self.labels.get(TENANT_LABEL) or None

    @property
    def task_id(self) -> str | None:
        return self.labels.get(TASK_ID_LABEL) or None


def version_json(cni_version: str | None = None) -> dict[str, Any]:
    version = cni_version if cni_version in SUPPORTED_VERSIONS else DEFAULT_VERSION
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def _config_version(conf: Mapping[str, Any]) -> str:
    version = conf.get("cniVersion")
    if version is None or version == "":
        return NO_VERSION_MEANS
    if not isinstance(version, str):
        raise CniError(ErrorCode.DECODING_FAILURE, "cniVersion must be a string", repr(version))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(ErrorCode.INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}")
    return version


def mesos_labels(conf: Mapping[str, Any]) -> dict[str, str]:
    """The task's NetworkInfo labels: args["org.apache.mesos"]["network_info"]["labels"]["labels"]."""
    node: Any = conf.get("args")
    for key in (MESOS_ARGS, "network_info", "labels", "labels"):
        if not isinstance(node, Mapping) or key not in node:
            return {}
        node = node[key]
    if not isinstance(node, list):
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "network_info labels must be a list",
                       f"args.{MESOS_ARGS}.network_info.labels.labels is {type(node).__name__}")
    out: dict[str, str] = {}
    for item in node:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "bad network_info label",
                           f"{json.dumps(item)}: expected {{\"key\": ..., \"value\": ...}}")
        value = item.get("value", "")
        out[item["key"]] = value if isinstance(value, str) else json.dumps(value)
    return out


def parse_config(conf: Mapping[str, Any]) -> MesosConfig:
    reject_ipam_and_masq(conf, ipam_reason="addresses are allocated in the OVN NB by this plugin",
                         masq_reason="the tenant's OVN gateway router SNATs")
    mtu = config_mtu(conf, 1400)
    bridge = config_bridge(conf, "br-int")
    settings: dict[str, Any] = {}
    for key, option in (("ovn_nb", "ovn_nb"), ("ovs_db", "ovs_db"), ("ovsdb", "ovs_db"),
                        ("nb_privkey", "nb_privkey"), ("nb_cert", "nb_cert"),
                        ("nb_cacert", "nb_cacert"), ("config", "config")):
        value = config_string(conf, key, None)
        if value is not None:
            settings.setdefault(option, value)
    for option in ("ovn_nb", "ovs_db"):
        value = settings.get(option)
        if value is not None and not value.startswith(("unix:", "tcp:", "ssl:")):
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"{option} must be unix:, tcp: or ssl:", value)
    timeout = config_number(conf, "timeout", 30.0, 0, 3600)
    settings["timeout"] = timeout
    log_level = config_log_level(conf, "WARNING")
    dns = config_dns(conf)
    return MesosConfig(mtu=mtu, bridge=bridge, timeout=timeout,
                       wait_for_ovn=config_flag(conf, "wait_for_ovn", True),
                       disable_tx_offload=config_flag(conf, "disable_tx_offload", True),
                       log_file=config_string(conf, "log_file", None), log_level=log_level, dns=dns,
                       settings=MappingProxyType(settings))


def parse_request(env: Mapping[str, str], stdin_text: str) -> MesosRequest:
    """Validate one invocation: the CNI envelope (protocol.parse_envelope, with Mesos' reading of
    a missing cniVersion), then the task's network_info labels and prevResult."""
    command = parse_command(env)
    if command is Command.VERSION:
        return MesosRequest(command=command, cni_version=version_json(sniff_version(stdin_text))["cniVersion"])
    envelope = parse_envelope(command, env, stdin_text, config_version=_config_version)
    conf, version = envelope.conf, envelope.cni_version
    labels = mesos_labels(conf)
    if command in (Command.ADD, Command.CHECK) and not labels.get(NETWORK_LABEL):
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "Failed to get logical_switch from mesos config",
                       f'the task needs a network_infos label {{"key": "{NETWORK_LABEL}", '
                       f'"value": "<network>"}} (args.{MESOS_ARGS}.network_info.labels.labels)')
    task_id = labels.get(TASK_ID_LABEL)
    if task_id and not _TASK_ID_RE.match(task_id):
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "bad task_id label",
                       f"{task_id!r}: it names the logical port, so no spaces, quotes or backslashes")
    prev = None
    if command is Command.CHECK:
        if conf.get("prevResult") is None:
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "prevResult is required for CHECK")
        try:
            prev = AddResult.from_json(conf["prevResult"])
        except (MalformedResult, ValueError) as err:
            raise CniError(ErrorCode.DECODING_FAILURE, "error decoding prevResult", str(err)) from None
    return MesosRequest(command=command, cni_version=version, container_id=envelope.container_id,
                        netns=envelope.netns, ifname=envelope.ifname, network_name=envelope.network_name,
                        labels=MappingProxyType(labels), config=parse_config(conf), prev_result=prev)


def render_result(result: AddResult, version: str) -> dict[str, Any]:
    """The ADD result in `version`: 0.1.0/0.2.0 {"ip4": {"ip", "gateway", "routes"}, "dns"},
    later versions as protocol.AddResult renders them."""
    if version not in LEGACY_VERSIONS:
        return result.to_json(version)
    ip = result.ips[0]
    out: dict[str, Any] = {"cniVersion": version, "ip4": {
        "ip": ip.address, "gateway": ip.gateway,
        "routes": [r.to_json() for r in result.routes]}}
    dns = result.dns.to_json()
    if dns:
        out["dns"] = dns
    return out
