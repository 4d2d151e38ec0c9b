"""`ovn-mesos-plugin`: the CNI plugin the Mesos agent calls for tasks on OVN tenant networks.

The agent runs it with CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS (and CNI_PATH) and
the network configuration on stdin, into which it puts the task's NetworkInfo:

    {"cniVersion": "0.2.0", "name": "ovn", "type": "ovn-mesos-plugin", ...,
     "args": {"org.apache.mesos": {"network_info": {"name": "ovn", "labels": {"labels": [
         {"key": "logical_switch", "value": "<network>"}, {"key": "tenant", "value": "<t>"}]}}}}}

`logical_switch` names the network (network-init's --network-name, or its switch name
`<tenant>_<network>`, or a switch made by hand with `ovn-nbctl ls-add` and
`other_config:subnet`); `tenant` is needed only when that name exists in several tenants;
`task_id` (optional, the original README's) names the logical port `<switch>_<task_id>`.

There is no watcher in Mesos: ADD creates the task's logical port itself, in ONE NB transaction
that also picks its address. The transaction verifies the network switch's `ports` column, so
two agents adding ports to one network at once cannot get the same address: one commit fails
with TRY_AGAIN and is re-planned against the other's port. Then ADD wires the container's
namespace (veth pair, MAC, address, default route via the tenant router), attaches the host
side to br-int with `iface-id=<ifname>_<container>` (or `<switch>_<task_id>`), links
/var/run/netns/<container> to the task's namespace, waits for ovn-controller to bind it
(`ovn-installed`), and prints the result in the configuration's cniVersion: the 0.1.0/0.2.0
shape ({"ip4": {...}}) Mesos parses, or the 0.3.x/0.4.0/1.0.0 shape. A failed ADD removes what
it made. DEL removes the OVS port, the veth pair, the logical port and the netns link; what
is gone is fine.
Every failure is the spec's error JSON on stdout and exit status 1, never a traceback.

Network configuration keys (all optional):

================== ========================== ====================================================
key                default                    meaning
================== ========================== ====================================================
mtu                1400                       the task interface's MTU
bridge             "br-int"                   the integration bridge
ovs_db (ovsdb)     OVN_K8S_OVS_DB, config,    the agent's local OVSDB
                   unix:/var/run/openvswitch/db.sock
ovn_nb             OVN_K8S_OVN_NB, config     the NB; else external_ids:ovn-nb of the local OVS
                   file, OVS external_ids     (read at every call, as the original did)
nb_privkey,        as ovn-mesos-init          TLS files for ssl: NB addresses (the CA is
nb_cert, nb_cacert                            bootstrapped from the server when missing)
config             OVN_K8S_CONFIG             the ovn_k8s.conf file to read
timeout            30 (s)                     one deadline for the whole ADD
wait_for_ovn       true                       ADD waits for ovn-installed on the port
disable_tx_offload true                       TX checksum offload off in the task (userspace OVS)
log_file           null (stderr)              where to log (never stdout)
log_level          "WARNING"                  DEBUG, INFO, WARNING or ERROR
dns                {}                         copied into the result
================== ========================== ====================================================

`ipMasq` must be false (or the original's "false"), and `ipam` must be absent: the gateway
router SNATs, and addresses come from the NB. The original's `bridge`/`isGateway` keys are
accepted.

This module is the process (logging, dispatch, the answer on stdout); `request.py` parses the
invocation and renders results, `attach.py` does ADD, DEL and CHECK.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from ovn_k8s.cni.protocol import AddResult, CniError, Command, ErrorCode, respond, sniff_version
from ovn_k8s.mesos.request import (
    DEFAULT_VERSION,
    NO_VERSION_MEANS,
    PLUGIN,
    SUPPORTED_VERSIONS,
    MesosConfig,
    MesosRequest,
    parse_request,
    render_result,
    version_json,
)

LOG = logging.getLogger("ovn_k8s.mesos.plugin")


def run(handler: Any, env: Mapping[str, str], stdin: str | bytes | IO[str] | IO[bytes], stdout: IO[str]) -> int:
    """One invocation: parse, dispatch, print the result or the error JSON; the exit code.

    protocol.respond's frame, with the Mesos request parser and result versions: a CniError is
    the spec's error JSON (exit 1); anything else is logged and reported as code 999."""

    def answer(text: str) -> dict[str, Any] | None:
        request = parse_request(env, text)
        if request.command is Command.VERSION:
            return version_json(request.cni_version)
        result = handler(request)
        return render_result(result, request.cni_version) if request.command is Command.ADD else None

    return respond(env, stdin, stdout, answer, error_version=_error_version)


def _error_version(text: str) -> str:
    version = sniff_version(text)
    try:
        conf = json.loads(text)
    except ValueError:
        return version
    if isinstance(conf, dict) and not conf.get("cniVersion"):
        return NO_VERSION_MEANS
    return version if version in SUPPORTED_VERSIONS else DEFAULT_VERSION


def setup_logging(cfg: MesosConfig) -> None:
    handler: logging.Handler
    try:
        handler = logging.FileHandler(cfg.log_file) if cfg.log_file else logging.StreamHandler(sys.stderr)
    except OSError as err:
        raise CniError(ErrorCode.INVALID_NETWORK_CONFIG, "cannot open log_file", str(err)) from None
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(process)d %(levelname)s {PLUGIN}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = getattr(logging, cfg.log_level)
    root.setLevel(level)
    logging.getLogger("ovsdbapp").setLevel(level if level <= logging.INFO else logging.ERROR)


def handle(request: MesosRequest) -> AddResult | None:
    setup_logging(request.config)
    LOG.info("CNI %s container=%s ifname=%s netns=%s labels=%s", request.command, request.container_id,
             request.ifname, request.netns, dict(request.labels))
    from ovn_k8s.mesos import attach  # ovsdbapp and netlink: not for VERSION or bad input

    if request.command is Command.ADD:
        return attach.add(request)
    if request.command is Command.DEL:
        attach.delete(request)
        return None
    attach.check(request)
    return None


def main(env: Mapping[str, str] | None = None, stdin: IO[bytes] | None = None,
         stdout: IO[str] | None = None) -> int:
    # Before anything can log: nothing but the result may reach stdout.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(line_buffering=False)   # type: ignore[union-attr]
    return run(handle, os.environ if env is None else env,
               stdin if stdin is not None else sys.stdin.buffer,
               stdout if stdout is not None else sys.stdout)
