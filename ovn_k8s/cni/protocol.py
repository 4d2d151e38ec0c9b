"""CNI wire protocol for `ovn-k8s-cni-overlay`: parse a call, render results and errors.

Owns: turning the runtime's environment and stdin (the network configuration JSON) into a frozen
`CniRequest`; the ADD result, error and VERSION JSON for each supported spec version; and `run()`,
the plugin's main loop body (handler result or exception -> stdout JSON + exit code).

Pure: no I/O except reading the env mapping / stdin and writing the stdout handed to `run()`.
Must not import `kubernetes`, `ovsdbapp`, `requests`, `yaml` or `pyroute2`: the plugin is a process
per pod call, and VERSION or a bad config must answer without paying for heavy imports (V11).

Spec sources (containernetworking/cni SPEC.md): spec-v1.0.0 "Section 2: Execution Protocol" and
"Section 5: Result Types"; spec-v0.4.0 "Parameters", "Result" and "Well-known Error Codes";
spec-v0.3.1 only fixed 0.3.0's `ip` -> `ips` typo, and libcni emits `ips` for 0.3.0 too.

Network configuration keys (all optional; unknown keys are ignored, as the spec allows):

==================== ============================== ================================================
key                  default                        meaning
==================== ============================== ================================================
mtu                  1400                           pod interface MTU (geneve needs ~58 bytes of a
                                                    1500 underlay; ovn-lab.md pitfall 12)
bridge               "br-int"                       OVS integration bridge the host veth joins
ovsdb                "unix:/var/run/openvswitch/    local OVSDB server of the node
                     db.sock"
annotation_timeout   120.0 (s)                      one bounded wait for the whole ADD: the pod
                                                    annotation, then (wait_for_ovn) OVN binding,
                                                    like kubelet's 2-min CRI timeout
poll_interval        0.2 (s)                        poll period of those waits (ovn-k uses 200 ms)
wait_for_ovn         true                           ADD waits for OVS `ovn-installed=true`
disable_tx_offload   true                           `tx off` on the pod veth; the userspace
                                                    datapath forwards CHECKSUM_PARTIAL frames with
                                                    bad checksums (ovn-lab.md pitfall 1)
log_file             null (stderr)                  plugin log file (kubelet hides plugin stderr)
log_level            "INFO"                         DEBUG, INFO, WARNING or ERROR
dns                  {} (well-known)                copied into the ADD result
==================== ============================== ================================================

Rejected with code 2 (unsupported field): `ipam` (addresses come from the pod annotation, not from
a delegated IPAM plugin) and `ipMasq: true` (no masquerading here; the OVN gateway router SNATs).

Beyond the spec, ADD requires K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS (code 4 otherwise):
without them the pod's annotation cannot be found. kubelet always sends them.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import IO, Any

LOG = logging.getLogger(__name__)

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
# Used when the input names no usable version (VERSION without stdin, errors before parsing).
DEFAULT_VERSION = "1.0.0"
# CHECK (and prevResult on DEL) were introduced in spec 0.4.0.
_CHECK_MIN_VERSION = (0, 4, 0)
# 1.0.0 dropped the per-IP "version" field from results.
_NO_IP_VERSION_FROM = (1, 0, 0)

# spec: "Must start with an alphanumeric character, optionally followed by any combination of one
# or more alphanumeric characters, underscore, dot (.) or hyphen (-)" (container ID, network name).
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
_IFNAMSIZ = 16  # Linux: names must be shorter than 16 bytes
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class Command(enum.StrEnum):
    """Values of CNI_COMMAND that this plugin implements (spec 1.0.0 defines exactly these four)."""

    ADD = "ADD"
    DEL = "DEL"
    CHECK = "CHECK"
    VERSION = "VERSION"


class ErrorCode(enum.IntEnum):
    """Error codes. 1-11 are the spec's well-known codes (1.0.0 "Error" table, same as 0.4.0);
    codes 1-99 "must not be used other than as specified". 100+ are ours, free per the spec."""

    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2  # message must contain the key and value
    UNKNOWN_CONTAINER = 3  # runtime need not clean up (no DEL needed)
    INVALID_ENVIRONMENT = 4  # message must name the invalid variables
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_NETWORK_CONFIG = 7
    TRY_AGAIN_LATER = 11
    # --- ovn-k8s specific ---
    ANNOTATION_TIMEOUT = 100  # the pod's "ovn" annotation did not appear within annotation_timeout
    OVS_ATTACH_FAILED = 101  # adding/updating the host veth's port on the integration bridge failed
    POD_INTERFACE_FAILED = 102  # netlink: creating, configuring or removing the pod veth pair failed
    CHECK_FAILED = 103  # CHECK found the pod's interface drifted from prevResult
    OVN_BINDING_TIMEOUT = 104  # OVS never reported ovn-installed=true before the deadline
    BAD_ANNOTATION = 105  # the pod annotation exists but cannot be used (bad JSON, MAC, IP)
    INTERNAL = 999  # unexpected exception; same value as libcni's types.ErrInternal


_WELL_KNOWN_CODES = frozenset(c.value for c in ErrorCode if c.value < 100)


class CniError(Exception):
    """A failure reported to the runtime as the spec's error JSON (exit code 1).

    `code` must be a well-known code (1-7, 11) or a plugin code >= 100; `msg` is short, `details`
    may be long. Raise it from handlers and from the `netns` layer; `run()` renders it.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        code = int(code)
        if code < 100 and code not in _WELL_KNOWN_CODES:
            raise ValueError(f"CNI error code {code} is reserved by the spec")
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg

    def __repr__(self) -> str:
        return f"CniError({self.code}, {self.msg!r}, {self.details!r})"

    def to_json(self, cni_version: str = DEFAULT_VERSION) -> dict[str, Any]:
        """The spec's error structure; `cniVersion` is the one the configuration asked for."""
        return {"cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details}


# ---------------------------------------------------------------------------------------------
# Results


class MalformedResult(ValueError):
    """A result (e.g. `prevResult`) or `dns` object that does not have the spec's shape."""


def _version_tuple(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def _ip_family(address: str) -> int:
    return ipaddress.ip_interface(address).version


@dataclass(frozen=True, slots=True)
class Interface:
    """An interface the attachment created; `sandbox` is the netns path for pod-side interfaces."""

    name: str
    mac: str | None = None
    sandbox: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out


@dataclass(frozen=True, slots=True)
class IPConfig:
    """One address (CIDR) with its gateway and the index of its interface in `interfaces`."""

    address: str
    gateway: str | None = None
    interface: int | None = None

    def __post_init__(self) -> None:
        iface = ipaddress.ip_interface(self.address)  # raises ValueError
        if self.gateway is not None and ipaddress.ip_address(self.gateway).version != iface.version:
            raise ValueError(f"gateway {self.gateway} is not IPv{iface.version} like {self.address}")
        if self.interface is not None and (isinstance(self.interface, bool) or self.interface < 0):
            raise ValueError(f"bad interface index {self.interface!r}")

    @property
    def version(self) -> str:
        return str(_ip_family(self.address))

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if _version_tuple(cni_version) < _NO_IP_VERSION_FROM:
            out["version"] = self.version
        out["address"] = self.address
        if self.gateway is not None:
            out["gateway"] = self.gateway
        if self.interface is not None:
            out["interface"] = self.interface
        return out


@dataclass(frozen=True, slots=True)
class Route:
    """A route; `gw` None means "via the gateway of the matching `ips` entry" (spec)."""

    dst: str
    gw: str | None = None

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.dst, strict=False)  # raises ValueError
        if self.gw is not None and ipaddress.ip_address(self.gw).version != net.version:
            raise ValueError(f"route gw {self.gw} is not IPv{net.version} like {self.dst}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": self.dst}
        if self.gw is not None:
            out["gw"] = self.gw
        return out


@dataclass(frozen=True, slots=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str | None = None
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_json(cls, data: Any) -> DNS:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise MalformedResult("dns must be an object")
        domain = data.get("domain")
        if domain is not None and not isinstance(domain, str):
            raise MalformedResult("dns.domain must be a string")
        return cls(
            nameservers=_str_tuple(data.get("nameservers"), "dns.nameservers"),
            domain=domain or None,
            search=_str_tuple(data.get("search"), "dns.search"),
            options=_str_tuple(data.get("options"), "dns.options"),
        )


def _str_tuple(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedResult(f"{what} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class AddResult:
    """The ADD success result; rendered per spec version by `to_json`."""

    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()

    def __post_init__(self) -> None:
        for ip in self.ips:
            if ip.interface is not None and ip.interface >= len(self.interfaces):
                raise ValueError(f"ip {ip.address} points at interface {ip.interface}, "
                                 f"but there are {len(self.interfaces)} interfaces")

    def to_json(self, cni_version: str) -> dict[str, Any]:
        """All five keys always: spec 1.0.0 says plugins "must output" them; older runtimes
        accept empty lists. 0.3.x/0.4.0 add `"version": "4"|"6"` to each ip, 1.0.0 does not."""
        if cni_version not in SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported CNI version {cni_version!r}")
        return {
            "cniVersion": cni_version,
            "interfaces": [i.to_json() for i in self.interfaces],
            "ips": [ip.to_json(cni_version) for ip in self.ips],
            "routes": [r.to_json() for r in self.routes],
            "dns": self.dns.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> AddResult:
        """Parse a result of any supported version (e.g. `prevResult`).

        Raises MalformedResult, or ValueError from the field checks (bad CIDR, index, ...)."""
        if not isinstance(data, dict):
            raise MalformedResult("result must be an object")
        interfaces = []
        for item in _list(data.get("interfaces"), "interfaces"):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise MalformedResult("interfaces[] needs a string name")
            interfaces.append(Interface(name=item["name"], mac=_opt_str(item, "mac"),
                                        sandbox=_opt_str(item, "sandbox")))
        ips = []
        for item in _list(data.get("ips"), "ips"):
            if not isinstance(item, dict) or not isinstance(item.get("address"), str):
                raise MalformedResult("ips[] needs a string address")
            index = item.get("interface")
            if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
                raise MalformedResult("ips[].interface must be an integer")
            ip = IPConfig(address=item["address"], gateway=_opt_str(item, "gateway"), interface=index)
            if "version" in item and item["version"] != ip.version:
                raise MalformedResult(f"ips[] version {item['version']!r} does not match {ip.address}")
            ips.append(ip)
        routes = []
        for item in _list(data.get("routes"), "routes"):
            if not isinstance(item, dict) or not isinstance(item.get("dst"), str):
                raise MalformedResult("routes[] needs a string dst")
            routes.append(Route(dst=item["dst"], gw=_opt_str(item, "gw")))
        return cls(interfaces=tuple(interfaces), ips=tuple(ips), routes=tuple(routes),
                   dns=DNS.from_json(data.get("dns")))

    def interface_index(self, name: str, sandbox: str | None = None) -> int | None:
        """Index of the interface called `name` (in `sandbox`, if given), for CHECK lookups."""
        for index, iface in enumerate(self.interfaces):
            if iface.name == name and (sandbox is None or iface.sandbox == sandbox):
                return index
        return None

    def ips_for(self, index: int) -> tuple[IPConfig, ...]:
        return tuple(ip for ip in self.ips if ip.interface == index)


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResult(f"{what} must be a list")
    return value


def _opt_str(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedResult(f"{key} must be a string")
    return value


def version_json(cni_version: str | None = None) -> dict[str, Any]:
    """VERSION output. Spec 1.0.0: `cniVersion` is the one given on input; an unknown or missing
    one gets DEFAULT_VERSION so the runtime can still read `supportedVersions`."""
    version = cni_version if cni_version in SUPPORTED_VERSIONS else DEFAULT_VERSION
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """Our keys of the network configuration, with defaults (see the module docstring)."""

    mtu: int = 1400
    bridge: str = "br-int"
    ovsdb: str = "unix:/var/run/openvswitch/db.sock"
    annotation_timeout: float = 120.0
    poll_interval: float = 0.2
    wait_for_ovn: bool = True
    disable_tx_offload: bool = True
    log_file: str | None = None
    log_level: str = "INFO"
    dns: DNS = DNS()


_DEFAULTS = PluginConfig()  # slots=True hides class-level defaults, so read them from an instance


@dataclass(frozen=True, slots=True)
class CniRequest:
    """One validated plugin invocation. For VERSION only `command` and `cni_version` are set;
    for DEL `netns` may be None (the runtime may omit CNI_NETNS when the sandbox is gone)."""

    command: Command
    cni_version: str
    container_id: str = ""
    netns: str | None = None
    ifname: str = ""
    cni_args: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    cni_path: tuple[str, ...] = ()
    network_name: str = ""
    plugin_type: str = ""
    config: PluginConfig = PluginConfig()
    prev_result: AddResult | None = None
    raw_config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}),
                                          hash=False, compare=False, repr=False)

    @property
    def pod_namespace(self) -> str | None:
        return self.cni_args.get("K8S_POD_NAMESPACE")

    @property
    def pod_name(self) -> str | None:
        return self.cni_args.get("K8S_POD_NAME")

    @property
    def pod_uid(self) -> str | None:
        return self.cni_args.get("K8S_POD_UID")

    @property
    def infra_container_id(self) -> str | None:
        return self.cni_args.get("K8S_POD_INFRA_CONTAINER_ID")

    @property
    def pod_key(self) -> str | None:
        """"<namespace>/<name>", the key used in logs, or None when CNI_ARGS lacks the pod."""
        if self.pod_namespace and self.pod_name:
            return f"{self.pod_namespace}/{self.pod_name}"
        return None


# Spec 1.0.0 "Required environment parameters" per operation (0.4.0 agrees: DEL tolerates a
# missing CNI_NETNS). CNI_ARGS and CNI_PATH are optional everywhere; CNI_COMMAND always required.
# NOTE(spec vs libcni): libcni's skel also demands CNI_PATH; the spec lists it as optional.
REQUIRED_ENV: Mapping[Command, tuple[str, ...]] = MappingProxyType({
    Command.ADD: ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    Command.DEL: ("CNI_CONTAINERID", "CNI_IFNAME"),
    Command.CHECK: ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    Command.VERSION: (),
})
# Not a spec rule: ADD must know the pod to find its annotation (kubelet always passes these).
REQUIRED_ADD_ARGS: tuple[str, ...] = ("K8S_POD_NAMESPACE", "K8S_POD_NAME")


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS: "Alphanumeric key-value pairs separated by semicolons", e.g. "FOO=BAR;ABC=123".

    Empty segments (a trailing ';') are skipped; a value may contain '=' (split on the first);
    a later duplicate key wins, as in libcni. A pair without '=' or key is code 4.
    """
    args: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(ErrorCode.INVALID_ENVIRONMENT, "CNI_ARGS: invalid key=value pair",
                           f"{pair!r} in {text!r}")
        args[key] = value
    return args


def validate_ifname(ifname: str, what: str = "CNI_IFNAME") -> None:
    """Spec: not empty, not '.' or '..', shorter than 16 chars, no '/', ':' or whitespace."""
    problem = None
    if not ifname:
        problem = "is empty"
    elif len(ifname.encode()) >= _IFNAMSIZ:
        problem = f"is longer than {_IFNAMSIZ - 1} bytes"
    elif ifname in (".", ".."):
        problem = "is '.' or '..'"
    elif any(c in "/:" or c.isspace() for c in ifname):
        problem = "contains '/', ':' or whitespace"
    if problem:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, f"{what} {problem}", repr(ifname))


def load_json(text: str) -> Any:
    """json.loads whose every failure is a ValueError: deeply nested input makes the decoder
    raise RecursionError, which would otherwise escape as an unexpected error."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def sniff_version(stdin_text: str) -> str:
    """Best-effort `cniVersion` of a config for error output; DEFAULT_VERSION if there is none."""
    try:
        data = load_json(stdin_text)
    except ValueError:
        return DEFAULT_VERSION
    if isinstance(data, dict) and isinstance(data.get("cniVersion"), str) and data["cniVersion"]:
        return data["cniVersion"]
    return DEFAULT_VERSION


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every plugin invocation carries (env + network config), validated; shared by the
    Kubernetes and the Mesos plugins."""

    command: Command
    cni_version: str
    conf: Mapping[str, Any]
    container_id: str
    ifname: str
    netns: str | None
    network_name: str
    plugin_type: str


def parse_command(env: Mapping[str, str]) -> Command:
    raw_command = env.get("CNI_COMMAND", "")
    if not raw_command:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    try:
        return Command(raw_command)
    except ValueError:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {raw_command}") from None


def parse_envelope(command: Command, env: Mapping[str, str], stdin_text: str, *,
                   config_version: Callable[[Mapping[str, Any]], str] | None = None) -> Envelope:
    """Validate the parts every non-VERSION command shares, in libcni's skel order: env
    variables (4), config JSON (6), cniVersion (6 / 1), CHECK needs >= 0.4.0 (1), container ID
    and ifname (4), network name and type (7). `config_version` lets a plugin read cniVersion
    its own way (Mesos accepts a config without one)."""
    missing = [name for name in REQUIRED_ENV[command] if not env.get(name)]
    if missing:
        raise CniError(ErrorCode.INVALID_ENVIRONMENT,
                       f"required env variables [{','.join(missing)}] missing")

    try:
        conf = load_json(stdin_text)
    except ValueError as err:
        raise CniError(ErrorCode.DECODING_FAILURE, "error decoding network config", str(err)) from None
    if not isinstance(conf, dict):
        raise CniError(ErrorCode.DECODING_FAILURE, "error decoding network config",
                       f"expected a JSON object, got {type(conf).__name__}")

    cni_version = (config_version or _config_version)(conf)
    if command is Command.CHECK and _version_tuple(cni_version) < _CHECK_MIN_VERSION:
        raise CniError(ErrorCode.INCOMPATIBLE_VERSION, "config version does not allow CHECK", cni_version)

    container_id = env["CNI_CONTAINERID"]
    if not _NAME_RE.match(container_id):
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, "CNI_CONTAINERID has invalid characters",
                       repr(container_id))
    ifname = env["CNI_IFNAME"]
    validate_ifname(ifname)

    name = conf.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "missing network name")
    if not _NAME_RE.match(name):
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "invalid characters found in network name", name)
    plugin_type = conf.get("type")
    if not isinstance(plugin_type, str) or not plugin_type:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "missing plugin type")
    return Envelope(command=command, cni_version=cni_version, conf=conf, container_id=container_id,
                    ifname=ifname, netns=env.get("CNI_NETNS") or None, network_name=name,
                    plugin_type=plugin_type)


def parse_request(env: Mapping[str, str], stdin_text: str) -> CniRequest:
    """Validate one invocation; raises CniError with the spec's codes.

    Order (as libcni's skel): the envelope (parse_envelope), then CNI_ARGS (4), config fields
    (7 / 2), prevResult (6 / 7).
    """
    command = parse_command(env)
    if command is Command.VERSION:
        # VERSION has no required parameters; stdin only names the version in use.
        return CniRequest(command=command, cni_version=version_json(sniff_version(stdin_text))["cniVersion"])
    envelope = parse_envelope(command, env, stdin_text)
    conf = envelope.conf

    cni_args = parse_cni_args(env.get("CNI_ARGS", ""))
    if command is Command.ADD:
        absent = [key for key in REQUIRED_ADD_ARGS if not cni_args.get(key)]
        if absent:
            raise CniError(ErrorCode.INVALID_ENVIRONMENT,
                           f"CNI_ARGS lacks {', '.join(absent)}", env.get("CNI_ARGS", ""))

    return CniRequest(
        command=command,
        cni_version=envelope.cni_version,
        container_id=envelope.container_id,
        netns=envelope.netns,
        ifname=envelope.ifname,
        cni_args=MappingProxyType(cni_args),
        cni_path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        network_name=envelope.network_name,
        plugin_type=envelope.plugin_type,
        config=parse_plugin_config(conf),
        prev_result=_prev_result(command, conf),
        raw_config=MappingProxyType(conf),
    )


def _config_version(conf: Mapping[str, Any]) -> str:
    version = conf.get("cniVersion")
    if version is None or version == "":
        # libcni treats a config without cniVersion as 0.1.0, which we do not support.
        raise CniError(ErrorCode.INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config has no cniVersion (0.1.0); plugin supports {list(SUPPORTED_VERSIONS)}")
    if not isinstance(version, str):
        raise CniError(ErrorCode.DECODING_FAILURE, "cniVersion must be a string", repr(version))
    if version not in SUPPORTED_VERSIONS:
        raise CniError(ErrorCode.INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}")
    return version


def _prev_result(command: Command, conf: Mapping[str, Any]) -> AddResult | None:
    raw = conf.get("prevResult")
    if raw is None:
        if command is Command.CHECK:
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "prevResult is required for CHECK")
        return None
    try:
        return AddResult.from_json(raw)
    except ValueError as err:
        if command is Command.DEL:
            # DEL must clean up whatever it can; a damaged cache must not block that.
            LOG.warning("ignoring undecodable prevResult on DEL: %s", err)
            return None
        raise CniError(ErrorCode.DECODING_FAILURE, "error decoding prevResult", str(err)) from None


def config_number(conf: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    """A number config key in (low, high]; code 7 otherwise (shared with the Mesos plugin)."""
    value = conf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"{key} must be a number in ({low}, {high}]",
                       repr(value))
    return float(value)


def config_flag(conf: Mapping[str, Any], key: str, default: bool) -> bool:
    """A true/false config key; code 7 otherwise (shared with the Mesos plugin)."""
    value = conf.get(key, default)
    if not isinstance(value, bool):
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"{key} must be true or false", repr(value))
    return value


def config_string(conf: Mapping[str, Any], key: str, default: str | None) -> str | None:
    """A string config key, `default` when absent or null; code 7 for anything but a non-empty string."""
    value = conf.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"{key} must be a non-empty string", repr(value))
    return value


def _string(conf: Mapping[str, Any], key: str, default: str) -> str:
    value = config_string(conf, key, default)
    assert value is not None
    return value


def reject_ipam_and_masq(conf: Mapping[str, Any], *, ipam_reason: str, masq_reason: str) -> None:
    """Code 2 for the spec's `ipam` and a true `ipMasq`: both plugins do their own addressing
    and NAT, and silently ignoring either would surprise whoever configured it."""
    if conf.get("ipam") is not None:
        raise CniError(ErrorCode.UNSUPPORTED_FIELD, f"unsupported field ipam={json.dumps(conf['ipam'])}", ipam_reason)
    masq = conf.get("ipMasq")
    if masq not in (False, "false", None):
        raise CniError(ErrorCode.UNSUPPORTED_FIELD, f"unsupported field ipMasq={json.dumps(masq)}", masq_reason)


def config_mtu(conf: Mapping[str, Any], default: int) -> int:
    mtu = conf.get("mtu", default)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "mtu must be an integer in [68, 65535]", repr(mtu))
    return mtu


def config_bridge(conf: Mapping[str, Any], default: str) -> str:
    bridge = _string(conf, "bridge", default)
    try:
        validate_ifname(bridge, "bridge")
    except CniError as err:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, err.msg, err.details) from None
    return bridge


def config_log_level(conf: Mapping[str, Any], default: str) -> str:
    level = _string(conf, "log_level", default).upper()
    if level not in LOG_LEVELS:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"log_level must be one of {LOG_LEVELS}", level)
    return level


def config_dns(conf: Mapping[str, Any]) -> DNS:
    try:
        return DNS.from_json(conf.get("dns"))
    except ValueError as err:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "bad dns", str(err)) from None


def parse_plugin_config(conf: Mapping[str, Any]) -> PluginConfig:
    """Our keys of the config (module docstring); 7 for bad values, 2 for unsupported fields."""
    reject_ipam_and_masq(conf, ipam_reason="addresses come from the pod's ovn annotation, not from an IPAM plugin",
                         masq_reason="masquerading is done by the OVN gateway router")
    mtu = config_mtu(conf, _DEFAULTS.mtu)
    bridge = config_bridge(conf, _DEFAULTS.bridge)
    ovsdb = _string(conf, "ovsdb", _DEFAULTS.ovsdb)
    if not ovsdb.startswith(("unix:", "tcp:", "ssl:")):
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "ovsdb must be unix:, tcp: or ssl:", ovsdb)
    timeout = config_number(conf, "annotation_timeout", _DEFAULTS.annotation_timeout, 0, 3600)
    interval = config_number(conf, "poll_interval", _DEFAULTS.poll_interval, 0, timeout)
    log_file = conf.get("log_file")
    if log_file is not None and (not isinstance(log_file, str) or not log_file):
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "log_file must be a path or null", repr(log_file))
    log_level = config_log_level(conf, _DEFAULTS.log_level)
    dns = config_dns(conf)
    return PluginConfig(
        mtu=mtu,
        bridge=bridge,
        ovsdb=ovsdb,
        annotation_timeout=timeout,
        poll_interval=interval,
        wait_for_ovn=config_flag(conf, "wait_for_ovn", _DEFAULTS.wait_for_ovn),
        disable_tx_offload=config_flag(conf, "disable_tx_offload", _DEFAULTS.disable_tx_offload),
        log_file=log_file,
        log_level=log_level,
        dns=dns,
    )


# ---------------------------------------------------------------------------------------------
# Main

Handler = Callable[[CniRequest], AddResult | None]


def _read_stdin(stdin: str | bytes | IO[str] | IO[bytes]) -> str:
    try:
        data = stdin if isinstance(stdin, str | bytes) else stdin.read()
    except OSError as err:
        raise CniError(ErrorCode.IO_FAILURE, "error reading network config from stdin", str(err)) from None
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CniError(ErrorCode.DECODING_FAILURE, "network config is not UTF-8", str(err)) from None
    return data


def run(handler: Handler, env: Mapping[str, str], stdin: str | bytes | IO[str] | IO[bytes],
        stdout: IO[str]) -> int:
    """Run one CNI invocation: parse, dispatch to `handler`, write stdout JSON; return exit code.

    VERSION is answered here without calling `handler`. ADD prints the handler's AddResult in the
    requested version (a None result passes `prevResult` through, as chained plugins must); DEL
    and CHECK print nothing on success. Errors as `respond` says.
    """
    return respond(env, stdin, stdout, lambda text: _dispatch(handler, parse_request(env, text)))


def respond(env: Mapping[str, str], stdin: str | bytes | IO[str] | IO[bytes], stdout: IO[str],
            answer: Callable[[str], dict[str, Any] | None], *,
            error_version: Callable[[str], str] = sniff_version) -> int:
    """The frame of every invocation of our plugins: read the config from stdin, call
    `answer(config text)` and print what it returns (nothing for None); exit code 0.

    A CniError prints the spec's error JSON (in the config's version, as `error_version` reads
    it) and returns 1; any other exception is logged (the traceback goes to logging, never to
    stdout) and reported as code 999 with its message. Configure logging to stderr or a file,
    never to stdout.
    """
    version = DEFAULT_VERSION
    payload: dict[str, Any] | None
    try:
        text = _read_stdin(stdin)
        version = error_version(text)
        payload = answer(text)
        rc = 0
    except CniError as err:
        LOG.error("CNI %s failed: code %s: %s", env.get("CNI_COMMAND", "?"), err.code, err)
        payload, rc = err.to_json(version), 1
    except Exception as err:  # the single catch-all: the runtime must always get JSON
        LOG.exception("CNI %s failed unexpectedly", env.get("CNI_COMMAND", "?"))
        unexpected = CniError(ErrorCode.INTERNAL, str(err) or type(err).__name__, type(err).__name__)
        payload, rc = unexpected.to_json(version), 1
    if payload is not None:
        try:
            stdout.write(json.dumps(payload) + "\n")
            stdout.flush()
        except OSError:
            LOG.exception("cannot write the CNI result to stdout")
            return 1
    return rc


def _dispatch(handler: Handler, request: CniRequest) -> dict[str, Any] | None:
    if request.command is Command.VERSION:
        return version_json(request.cni_version)
    LOG.info("CNI %s container=%s pod=%s netns=%s ifname=%s", request.command, request.container_id,
             request.pod_key, request.netns, request.ifname)
    result = handler(request)
    if request.command is not Command.ADD:
        return None
    if result is None:
        if request.prev_result is None:
            raise CniError(ErrorCode.INTERNAL, "ADD handler returned no result")
        result = request.prev_result
    if not isinstance(result, AddResult):
        raise CniError(ErrorCode.INTERNAL, f"ADD handler returned {type(result).__name__}, not AddResult")
    return result.to_json(request.cni_version)

