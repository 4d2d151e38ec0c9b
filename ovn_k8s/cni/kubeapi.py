"""How the CNI plugin reaches the API server, and how it waits for the pod's `ovn` annotation.

Owns: the network-configuration keys that say where the API server is, building
`ConnectionParams` from them (or from the node's OVS `external_ids`, as the original did),
parsing and validating the `ovn` annotation the master watcher writes, and ADD's bounded wait
for that annotation.

API server settings, first match wins (all optional keys of the network configuration):

=================== =================================================================================
key                 meaning
=================== =================================================================================
kubeconfig          a kubeconfig file (token, client certificate, CA); pyyaml is imported only then
k8s_api_server      API server URL; "host:port" means http:// (the original's convention)
k8s_api_token       bearer token for k8s_api_server
k8s_ca_cert         CA file for an https server (with k8s_api_server, or with the OVS values below)
(none of the above) the local OVS `Open_vSwitch .` external_ids `k8s-api-server`, `k8s-api-token`
                    and `k8s-ca-certificate` (PEM with literal "\\n"), read through the plugin's
                    own OVSDB connection; this is what the original plugin did
=================== =================================================================================

The wait (`wait_for_pod_network`): one GET of the pod; if it has no annotation yet, one watch on
that single pod (`fieldSelector=metadata.name=<pod>`, from the pod's resourceVersion), so the
annotation is seen the moment the watcher writes it. Connection errors, 5xx, 429 and expired
resourceVersions are retried every `poll_interval` until the deadline; 401/403 and other
client errors fail at once, and so does a TLS failure other than a cut connection (an
unverifiable certificate is a setting to fix: INVALID_NETWORK_CONFIG, the reason in `msg`).
A pod whose UID differs from CNI_ARGS K8S_POD_UID, or that is deleted while we wait, fails at
once too: the sandbox belongs to a pod that is gone.

The HTTP client is `ovn_k8s.kube.lite` (plain sockets, ~30 ms cheaper to import than
`requests` and ~5 ms than http.client), imported only when called: VERSION, config errors and DEL never pay for it. Only
settings with an HTTP proxy bring in `ovn_k8s.kube.rest` and `requests`. Never imports
`kubernetes` (V11).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ovn_k8s.cni.protocol import CniError, ErrorCode, load_json

if TYPE_CHECKING:
    from ovn_k8s.kube.lite import LiteClient
    from ovn_k8s.kube.params import ConnectionParams
    from ovn_k8s.kube.rest import KubeClient

LOG = logging.getLogger(__name__)

ANNOTATION = "ovn"
API_KEYS = ("kubeconfig", "k8s_api_server", "k8s_api_token", "k8s_ca_cert")
OVS_KEYS = {"server": "k8s-api-server", "token": "k8s-api-token", "ca": "k8s-ca-certificate"}
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_MAX_REQUEST_TIMEOUT = 30.0  # one HTTP request never waits longer than this
_CONNECT_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# The annotation


@dataclass(frozen=True, slots=True)
class PodNetwork:
    """The pod's network as the master watcher allocated it (the `ovn` annotation)."""

    ip_cidr: str  # "10.244.2.5/24"
    mac: str  # lower case
    gateway: str  # "10.244.2.1"


def parse_annotation(text: Any, pod_key: str = "") -> PodNetwork:
    """Validate the `ovn` annotation: a JSON object with `ip_address` (with prefix length),
    `mac_address` (unicast) and `gateway_ip` (same family, not the pod's address). Extra keys
    are ignored. CniError(BAD_ANNOTATION) says what is wrong."""

    def bad(problem: str) -> CniError:
        shown = text if isinstance(text, str) and len(text) <= 300 else f"{str(text)[:300]}..."
        return CniError(ErrorCode.BAD_ANNOTATION, f"pod {pod_key} has a bad '{ANNOTATION}' annotation: {problem}",
                        shown)

    if not isinstance(text, str):
        raise bad("not a string")
    try:
        data = load_json(text)
    except ValueError as err:
        raise bad(f"not JSON ({err})") from None
    if not isinstance(data, dict):
        raise bad("not a JSON object")
    values = {}
    for key in ("ip_address", "mac_address", "gateway_ip"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise bad(f"{key} is missing")
        values[key] = value.strip()
    ip_cidr, mac, gateway = values["ip_address"], values["mac_address"].lower(), values["gateway_ip"]
    if "/" not in ip_cidr:
        raise bad(f"ip_address {ip_cidr} has no prefix length")
    try:
        iface = ipaddress.ip_interface(ip_cidr)
    except ValueError:
        raise bad(f"ip_address {ip_cidr} is not an address with a prefix length") from None
    net = iface.network
    if iface.version == 4 and net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
        raise bad(f"ip_address {ip_cidr} is the network or broadcast address of its subnet")
    if not _MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise bad(f"mac_address {values['mac_address']} is not a unicast MAC")
    if mac == "00:00:00:00:00:00":
        raise bad("mac_address is all zeros")
    try:
        gw = ipaddress.ip_address(gateway)
    except ValueError:
        raise bad(f"gateway_ip {gateway} is not an IP address") from None
    if gw.version != iface.version:
        raise bad(f"gateway_ip {gateway} is not IPv{iface.version} like {ip_cidr}")
    if gw == iface.ip:
        raise bad(f"gateway_ip {gateway} is the pod's own address")
    return PodNetwork(ip_cidr=str(iface), mac=mac, gateway=str(gw))


# ---------------------------------------------------------------------------------------------
# Where the API server is


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The API server keys of the network configuration (module docstring)."""

    kubeconfig: str | None = None
    server: str | None = None
    token: str | None = None
    ca_cert: str | None = None


def api_settings(conf: Mapping[str, Any]) -> ApiSettings:
    """Read and type-check our API keys; CniError(INVALID_NETWORK_CONFIG) on a bad value."""
    values: dict[str, str | None] = {}
    for key in API_KEYS:
        value = conf.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"{key} must be a non-empty string or absent",
                           repr(value))
        values[key] = value.strip() if isinstance(value, str) else None
    if values["k8s_api_token"] and not values["k8s_api_server"]:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "k8s_api_token needs k8s_api_server")
    return ApiSettings(kubeconfig=values["kubeconfig"], server=values["k8s_api_server"],
                       token=values["k8s_api_token"], ca_cert=values["k8s_ca_cert"])


def connection_params(settings: ApiSettings, ovs_external_ids: Callable[[], Mapping[str, str]]) -> ConnectionParams:
    """ConnectionParams from the settings, else from the local OVS external_ids (read only then).

    CniError(INVALID_NETWORK_CONFIG) if nothing says where the API server is or the settings
    cannot be used (unreadable kubeconfig, bad URL)."""
    from ovn_k8s.kube import auth
    from ovn_k8s.kube.errors import KubeConfigError

    ca_file = settings.ca_cert if settings.ca_cert and os.path.isfile(settings.ca_cert) else None
    try:
        if settings.kubeconfig:
            return auth.from_kubeconfig(settings.kubeconfig)
        if settings.server:
            if settings.ca_cert and ca_file is None:
                raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "k8s_ca_cert does not exist", settings.ca_cert)
            return auth.from_ovs_values(settings.server, token=settings.token, ca_file=ca_file)
        ids = ovs_external_ids()
        server = ids.get(OVS_KEYS["server"])
        if not server:
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "no Kubernetes API server configured",
                           "set kubeconfig or k8s_api_server in the CNI network configuration, or "
                           "external_ids:k8s-api-server in the local Open vSwitch database")
        # An existing k8s_ca_cert wins over the PEM in OVS; the PEM goes to a private file of
        # this process, never to a shared path that 50 concurrent ADDs would all rewrite.
        return auth.from_ovs_values(server, token=ids.get(OVS_KEYS["token"]) or None,
                                    ca_certificate=None if ca_file else ids.get(OVS_KEYS["ca"]) or None,
                                    ca_file=ca_file)
    except KubeConfigError as err:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"unusable Kubernetes API settings: {err}",
                       str(err)) from None


def make_client(params: ConnectionParams) -> LiteClient | KubeClient:
    from ovn_k8s.kube.lite import client_for

    return client_for(params, timeout=_MAX_REQUEST_TIMEOUT, connect_timeout=_CONNECT_TIMEOUT,
                      user_agent="ovn-k8s-cni-overlay", pool_size=2)


# ---------------------------------------------------------------------------------------------
# The wait


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def network_of(pod: Mapping[str, Any], pod_key: str, uid: str | None) -> PodNetwork | None:
    """The pod's network if annotated, None if not yet; CniError if the pod is another one
    (UID mismatch: ours was deleted and re-created) or the annotation is malformed."""
    meta = _meta(pod)
    if uid and meta.get("uid") and meta["uid"] != uid:
        raise CniError(ErrorCode.ANNOTATION_TIMEOUT, f"pod {pod_key} was deleted and re-created",
                       f"the API server has uid {meta['uid']}, CNI_ARGS K8S_POD_UID is {uid}")
    annotations = meta.get("annotations")
    if not isinstance(annotations, dict) or ANNOTATION not in annotations:
        return None
    return parse_annotation(annotations[ANNOTATION], pod_key)


def wait_for_pod_network(client: LiteClient | KubeClient, namespace: str, name: str, *, uid: str | None,
                         deadline: float, poll_interval: float) -> PodNetwork:
    """The pod's network from its `ovn` annotation, waiting for it until `deadline`
    (a time.monotonic() value); CniError(ANNOTATION_TIMEOUT) then. See the module docstring."""
    from ovn_k8s.kube import errors
    from ovn_k8s.kube.params import resource_path

    key = f"{namespace}/{name}"
    started = time.monotonic()
    collection = resource_path("pods", namespace=namespace)
    path = resource_path("pods", namespace=namespace, name=name)
    last = "the pod has no ovn annotation yet"
    resource_version: str | None = None
    fresh_get = True
    attempts = 0

    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CniError(ErrorCode.ANNOTATION_TIMEOUT, f"timed out waiting for the '{ANNOTATION}' annotation of "
                           f"pod {key}", f"waited {time.monotonic() - started:.1f} s; last: {last}")
        client.timeout = min(_MAX_REQUEST_TIMEOUT, max(remaining, 0.05))
        client.connect_timeout = min(_CONNECT_TIMEOUT, max(remaining, 0.05))
        attempts += 1
        try:
            if fresh_get:
                fresh_get = False
                try:
                    pod = client.get(path)
                except errors.NotFound:
                    last, resource_version = "the pod does not exist", None
                    LOG.info("pod %s not found yet; watching for it", key)
                else:
                    network = network_of(pod, key, uid)
                    if network is not None:
                        LOG.info("pod %s: annotation %s found (GET)", key, network)
                        return network
                    resource_version = _meta(pod).get("resourceVersion") or None
                    LOG.info("pod %s has no '%s' annotation yet; watching it", key, ANNOTATION)
            with client.watch(collection, field_selector=f"metadata.name={name}", resource_version=resource_version,
                              timeout_seconds=max(1, math.ceil(remaining)), read_timeout=remaining + 0.5) as stream:
                for event in stream:
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            raise errors.Gone(obj.get("message") or "expired", code=410)
                        raise errors.WatchError(f"watch of pod {key}: {obj.get('message') or obj}")
                    resource_version = _meta(obj).get("resourceVersion") or resource_version
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        if not uid or _meta(obj).get("uid") == uid:
                            raise CniError(ErrorCode.ANNOTATION_TIMEOUT, f"pod {key} was deleted while waiting "
                                           f"for its '{ANNOTATION}' annotation")
                        continue
                    network = network_of(obj, key, uid)
                    if network is not None:
                        LOG.info("pod %s: annotation %s arrived after %.3f s (watch %s)", key, network,
                                 time.monotonic() - started, kind)
                        return network
                    if time.monotonic() >= deadline:
                        break
        except errors.Gone as err:
            last, resource_version, fresh_get = f"watch expired: {err}", None, True
            LOG.info("pod %s: %s; reading the pod again", key, last)
        except errors.KubeTLSError as err:
            # An unverifiable certificate does not fix itself while we wait: a setting to fix.
            raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, f"TLS to the Kubernetes API server "
                           f"failed (check its CA: k8s_ca_cert, the kubeconfig or "
                           f"external_ids:k8s-ca-certificate): {err}", str(err)) from None
        except (errors.KubeConnectionError, errors.ServerError, errors.TooManyRequests, errors.WatchError) as err:
            last, fresh_get = str(err), True
            pause = min(poll_interval * min(attempts, 10), max(0.0, deadline - time.monotonic()))
            LOG.warning("pod %s: API server: %s; retrying in %.1f s", key, err, pause)
            time.sleep(pause)
        except errors.KubeApiError as err:
            raise CniError(ErrorCode.ANNOTATION_TIMEOUT, f"cannot read pod {key} from the API server",
                           str(err)) from None
