"""Configuration in one place, with one precedence for every command and daemon.

    command-line flag  >  environment (OVN_K8S_<NAME>)  >  config file ([default] section of
    --config, default /etc/openvswitch/ovn_k8s.conf, the original keys)  >  the local OVS
    Open_vSwitch external_ids (ovn-nb, k8s-api-server, ...)  >  built-in default

Each option is declared once in OPTIONS; argparse flags, environment names, file keys and OVS
keys all come from that declaration, so a new option cannot be half wired. The OVS layer is read
lazily: only when an option that has an OVS key is not set by a stronger layer.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovn_k8s.errors import ConfigError

DEFAULT_CONFIG_FILE = "/etc/openvswitch/ovn_k8s.conf"
ENV_PREFIX = "OVN_K8S_"


@dataclass(frozen=True, slots=True)
class Option:
    name: str                      # attribute on Config, and the env suffix (upper-cased)
    help: str
    default: Any = None
    file_key: str | None = None    # key in the config file's [default] section
    ovs_key: str | None = None     # key in Open_vSwitch external_ids
    type: Callable[[str], Any] = str
    metavar: str | None = None
    bounds: tuple[float, float] | None = None  # inclusive range of a number (NaN is outside)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def boolean(value: object) -> bool:
    """A yes/no setting: true/false, yes/no, on/off, 1/0 (any case), or a bool from the file."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(value)


def duration(value: object) -> float:
    """Seconds: a number, or a Go-style duration as kube components take it (500ms, 15s, 2m)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[:-len(suffix)] and text[-len(suffix) - 1].isdigit():
            return float(text[:-len(suffix)]) * scale
    return float(text)


OPTIONS: dict[str, Option] = {o.name: o for o in [
    Option("ovn_nb", "OVN Northbound database: unix:PATH, tcp:IP:PORT or ssl:IP:PORT, or a "
           "clustered NB's members separated by commas (the leader is used; docs/ha.md) "
           "(OVS external_ids:ovn-nb)", file_key="ovn_nb", ovs_key="ovn-nb", metavar="ADDR"),
    Option("ovs_db", "the local Open vSwitch database", default="unix:/var/run/openvswitch/db.sock",
           file_key="ovs_db", metavar="ADDR"),
    Option("nb_privkey", "private key for ssl: connections to the NB",
           default="/etc/openvswitch/ovncontroller-privkey.pem", file_key="private_key", metavar="FILE"),
    Option("nb_cert", "certificate for ssl: connections to the NB",
           default="/etc/openvswitch/ovncontroller-cert.pem", file_key="certificate", metavar="FILE"),
    Option("nb_cacert", "CA certificate that signed the NB server's certificate; bootstrapped from "
           "the server (trust on first use) when the file does not exist yet",
           default="/etc/openvswitch/ovnnb-ca.cert", file_key="ca_cert", metavar="FILE"),
    Option("timeout", "seconds to wait for a database connection or transaction", default=30.0,
           file_key="timeout", type=float, metavar="SECONDS", bounds=(0.001, 86400.0)),
    Option("mtu", "MTU of the management port and of pods (geneve needs ~100 bytes of headroom)",
           default=1400, file_key="mtu", type=int, bounds=(68, 65535)),
    Option("join_subnet", "subnet of the join switch between the cluster router and the gateway "
           "routers; must not overlap the cluster or any physical network",
           default="100.64.0.0/16", file_key="join_subnet", metavar="CIDR"),
    Option("service_cluster_ip_range", "service (ClusterIP) range: the management port also routes it, "
           "so the node itself reaches services (the original needed a manual route)",
           file_key="service_cluster_ip_range", metavar="CIDR"),
    Option("cni_conf_dir", "where minion-init writes the CNI network configuration",
           default="/etc/cni/net.d", file_key="cni_conf_path", metavar="DIR"),
    Option("cni_bin_dir", "where minion-init links the CNI plugin for the container runtime",
           default="/opt/cni/bin", file_key="cni_link_path", metavar="DIR"),
    Option("cni_plugin", "the CNI plugin executable, looked up in PATH",
           default="ovn-k8s-cni-overlay", file_key="cni_plugin", metavar="NAME"),
    Option("log_level", "log level: debug, info, warning or error", default="warning",
           file_key="log_level", metavar="LEVEL"),
    Option("log_file", "write logs to FILE instead of stderr", file_key="log_file", metavar="FILE"),
    Option("k8s_api_server", "Kubernetes API server URL (http:// is assumed without a scheme)",
           file_key="k8s_api_server", ovs_key="k8s-api-server", metavar="URL"),
    Option("k8s_api_token", "bearer token for the Kubernetes API", file_key="k8s_api_token",
           ovs_key="k8s-api-token", metavar="TOKEN"),
    Option("k8s_ca_certificate", "CA bundle that signed the API server's certificate",
           default="/etc/openvswitch/k8s-ca.crt", file_key="k8s_ca_certificate", metavar="FILE"),
    Option("kubeconfig", "kubeconfig file (also $KUBECONFIG); wins over k8s-api-server",
           file_key="kubeconfig", metavar="FILE"),
    Option("conntrack_zone", "conntrack zone the gateway helper uses on a shared NIC",
           default=64000, file_key="conntrack_zone", type=int, metavar="ZONE", bounds=(0, 65535)),
    # -- ovn-k8s-watcher ---------------------------------------------------------------------
    Option("k8s_ca_certificate_data", "the API server's CA certificate itself (PEM, literal \\n "
           "allowed), written to --k8s-ca-certificate when that file does not exist (OVS "
           "external_ids:k8s-ca-certificate)", ovs_key="k8s-ca-certificate", metavar="PEM"),
    Option("pod_batch_size", "most pods written to the NB in one transaction", default=200,
           file_key="pod_batch_size", type=int, metavar="N", bounds=(1, 100000)),
    Option("annotation_workers", "pod annotation PATCH requests in flight at once", default=8,
           file_key="annotation_workers", type=int, metavar="N", bounds=(1, 1024)),
    Option("max_retries", "retries of a failed object (backoff 5 ms doubling up to 60 s) "
           "before giving up on it with an error log and a Kubernetes Event", default=15,
           file_key="max_retries", type=int, metavar="N", bounds=(0, 1000)),
    Option("resync_interval", "seconds between full re-reads of the NB that re-check every "
           "object (0: never)", default=600.0, file_key="resync_interval", type=float,
           metavar="SECONDS", bounds=(0.0, 604800.0)),
    Option("nodeport_mode", "how NodePort VIPs reach every gateway: per-gateway (one load "
           "balancer per gateway; works on OVN 23.03) or template (^NODEIP template VIPs; see "
           "docs/services.md)", default="per-gateway", file_key="nodeport_mode", metavar="MODE"),
    Option("affinity_mode", "how sessionAffinity: ClientIP is written: hash (selection_fields "
           "ip_src) or timeout (OVN affinity_timeout; see docs/services.md)", default="hash",
           file_key="affinity_mode", metavar="MODE"),
    Option("flow_resync_interval", "seconds between the gateway helper's full re-applications "
           "of its flows (repairs flows changed behind its back)", default=60.0,
           file_key="flow_resync_interval", type=float, metavar="SECONDS", bounds=(0.1, 86400.0)),
    Option("pidfile", "write the daemon's process ID to FILE (removed at exit)",
           file_key="pidfile", metavar="FILE"),
    Option("metrics_address", "serve /metrics and /healthz over HTTP on HOST:PORT (off when "
           "unset)", file_key="metrics_address", metavar="HOST:PORT"),
    # -- ovn-k8s-watcher: node subnets and leader election (docs/ha.md) --------------------
    Option("allocate_node_subnets", "give every Kubernetes Node a subnet of the cluster subnet "
           "(annotation ovn-k8s/node-subnet, and its switch in the NB), and delete the NB rows "
           "of Nodes removed from the cluster", default=False,
           file_key="allocate_node_subnets", type=boolean, metavar="BOOL"),
    Option("cluster_ip_subnet", "the cluster subnet node subnets are cut from (default: the "
           "one master-init recorded on the cluster router)", file_key="cluster_ip_subnet",
           metavar="CIDR"),
    Option("node_subnet_prefix", "prefix length of each node's subnet", default=24,
           file_key="node_subnet_prefix", type=int, metavar="LEN", bounds=(1, 29)),
    Option("node_subnet_timeout", "seconds minion-init without --minion-switch-subnet waits "
           "for the watcher to annotate this node with its subnet", default=120.0,
           file_key="node_subnet_timeout", type=float, metavar="SECONDS",
           bounds=(0.0, 86400.0)),
    Option("leader_elect", "elect one active watcher through a coordination.k8s.io/v1 Lease; "
           "the others stand by", default=False, file_key="leader_elect",
           type=boolean, metavar="BOOL"),
    Option("leader_elect_lease_duration", "seconds a standby waits after the last renewal it "
           "saw before taking the lease over", default=15.0,
           file_key="leader_elect_lease_duration", type=duration,
           metavar="SECONDS", bounds=(1.0, 86400.0)),
    Option("leader_elect_renew_deadline", "seconds the leader keeps trying to renew before it "
           "stops writing and exits (below the lease duration)", default=10.0,
           file_key="leader_elect_renew_deadline", type=duration,
           metavar="SECONDS", bounds=(0.1, 86400.0)),
    Option("leader_elect_retry_period", "seconds between two attempts to acquire or renew",
           default=2.0, file_key="leader_elect_retry_period", type=duration,
           metavar="SECONDS", bounds=(0.05, 86400.0)),
    Option("leader_elect_lease_name", "name of the Lease", default="ovn-k8s-watcher",
           file_key="leader_elect_lease_name", metavar="NAME"),
    Option("leader_elect_lease_namespace", "namespace of the Lease", default="kube-system",
           file_key="leader_elect_lease_namespace", metavar="NAMESPACE"),
    # -- the original's daemon keys -----------------------------------------------------------
    Option("rundir", "the daemons' run directory: pidfile and ovs-appctl control socket "
           "(default: $OVS_RUNDIR, else /var/run/openvswitch)", file_key="rundir", metavar="DIR"),
    Option("logdir", "where --log-file without a name writes (default: $OVS_LOGDIR, else "
           "/var/log/openvswitch)", file_key="logdir", metavar="DIR"),
    Option("unix_socket", "the NB server's unix socket: the watcher's NB when no --ovn-nb (flag, "
           "env or file ovn_nb) is given; with neither this nor OVS external_ids:ovn-nb, the "
           "first of /var/run/openvswitch/ovnnb_db.sock and /var/run/ovn/ovnnb_db.sock that "
           "exists", file_key="unix_socket", metavar="PATH"),
    Option("ovn_mode", "the network mode; overlay is the only one", default="overlay",
           file_key="ovn_mode", metavar="MODE"),
]}

# Keys of the original tools' file that no option reads, refused with where the setting went.
REFUSED_FILE_KEYS = {
    "log_path": "the CNI plugin's log file is \"log_file\" in its network configuration "
                "(the .conf/.conflist in --cni-conf-dir), not a key of this file",
}
MODES = ("overlay",)


@dataclass(frozen=True, slots=True)
class Config:
    """Resolved settings: every option's value and the layer it came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def add_options(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Add the flags of the named options; their argparse default is 'unset' (None). A yes/no
    option's flag alone means yes (`--leader-elect`, as kube components take it)."""
    for name in names:
        opt = OPTIONS[name]
        default = f" (default: {opt.default})" if opt.default is not None else ""
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if opt.metavar == "BOOL" else {}
        parser.add_argument(opt.flag, dest=opt.name, default=None, metavar=opt.metavar,
                            help=f"{opt.help}{default}; env {opt.env}", **extra)


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="FILE",
                        help=f"INI config file with a [default] section (default: "
                             f"{DEFAULT_CONFIG_FILE}; env {ENV_PREFIX}CONFIG)")


def read_config_file(path: str | None) -> dict[str, Any]:
    """The [default] section of the INI file; values go through literal_eval as the original did.

    A missing default file is fine; a missing file the user named is an error.
    """
    explicit = bool(path)
    path = path or DEFAULT_CONFIG_FILE
    if not os.path.exists(path):
        if explicit:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid INI: {str(e).splitlines()[0]}") from None
    others = [name for name in parser.sections() if name != "default"]
    if others:
        raise ConfigError(f"config file {path}: section [{others[0]}] is not read: every key "
                          "goes in [default] (the original tools' format)")
    if not parser.has_section("default"):
        return {}
    out: dict[str, Any] = {}
    known = {o.file_key for o in OPTIONS.values() if o.file_key}
    for key, raw in parser.items("default"):
        # Nothing read is silently ignored: a key no option reads is an error.
        if key in REFUSED_FILE_KEYS:
            raise ConfigError(f"config file {path}: {key} is not supported: "
                              f"{REFUSED_FILE_KEYS[key]}")
        if key not in known:
            raise ConfigError(f"config file {path}: unknown key {key!r} in [default] (known: "
                              f"{', '.join(sorted(known))})")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    mode = out.get("ovn_mode", "overlay")
    if mode not in MODES:
        raise ConfigError(f"config file {path}: ovn_mode = {mode!r}: OVN mode not supported "
                          f"(only {', '.join(MODES)})")
    return out


def resolve(args: argparse.Namespace | Mapping[str, Any], names: Iterable[str], *,
            env: Mapping[str, str] | None = None,
            ovs_external_ids: Callable[[], Mapping[str, str]] | None = None) -> Config:
    """Resolve the named options through the precedence chain (see module docstring)."""
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    env = os.environ if env is None else env
    file_values = read_config_file(given.get("config") or env.get(ENV_PREFIX + "CONFIG"))
    ovs_cache: list[Mapping[str, str]] = []

    def from_ovs(key: str) -> str | None:
        if ovs_external_ids is None:
            return None
        if not ovs_cache:
            ovs_cache.append(ovs_external_ids())
        value = ovs_cache[0].get(key)
        return value or None

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in names:
        opt = OPTIONS[name]
        layers = (("flag", given.get(name)), ("env", env.get(opt.env)),
                  ("file", file_values.get(opt.file_key) if opt.file_key else None))
        source, raw = next(((src, val) for src, val in layers if val is not None and val != ""),
                           ("ovs", None))
        if source == "ovs" and opt.ovs_key:
            raw = from_ovs(opt.ovs_key)
        if raw is None:
            source, raw = "default", opt.default
        shown = raw
        if raw is not None and not (isinstance(opt.type, type) and isinstance(raw, opt.type)):
            try:
                raw = opt.type(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{opt.flag}: {raw!r} is not a valid {opt.type.__name__}") from None
        if opt.bounds is not None and raw is not None and not opt.bounds[0] <= raw <= opt.bounds[1]:
            raise ConfigError(f"{opt.flag}: {shown} is out of range ({opt.bounds[0]:g}..{opt.bounds[1]:g})")
        values[name] = raw
        sources[name] = source
    server = values.get("k8s_api_server")
    if server and "://" not in server:
        # The original tools took "host:port" to mean plain http.
        values["k8s_api_server"] = "http://" + server
    return Config(values=values, sources=sources)
