"""`ovn-k8s-cni-overlay`: the CNI plugin's ADD, DEL and CHECK, and its `main()`.

Assembles the layers: `protocol` (env + stdin -> request, result/error JSON), `kubeapi` (the
pod's `ovn` annotation), `netns` (the veth pair, by ovn_k8s.netlink) and `ovsdb` (the port on
br-int and the OVN binding, by ovn_k8s.local_ovsdb). docs/cni.md describes the behaviour for
operators.

ADD, under ONE deadline of `annotation_timeout` seconds for everything:
  1. connect to the local OVSDB (and read the API server settings from it if the network
     configuration names none);
  2. wait for the pod's `ovn` annotation (GET, then a watch on that one pod);
  3. create or converge the veth pair: host side `host_ifname_for(container, ifname)`, pod side
     CNI_IFNAME with the annotated MAC, address, default route, `mtu`, TX offload off;
  4. attach the host side to `bridge` with `iface-id=<namespace>_<pod>`, `attached-mac`,
     `iface-status=active`, `ovn-k8s/sandbox=<container id>`, `ovn-k8s/ifname=<CNI_IFNAME>`;
  5. if `wait_for_ovn` (default), wait until ovn-controller sets `ovn-installed=true` on it;
  6. print the spec's result: the host veth, the pod interface (index 1, with sandbox), its
     address and gateway, the default route, `dns`.
  If 3-5 fail, what this call set up is removed again before the error is returned. Running ADD
  again for the same container converges to the same result (same interfaces, one OVS port).

DEL removes the OVS port(s) of (container, ifname) and the veth pair; what is already gone is
fine, and it needs neither the API server nor CNI_NETNS. CHECK compares the pod interface, the
host veth and the OVS port with `prevResult` and reports every drift in one error (code 103).

Logging goes to `log_file` (kubelet does not show plugin stderr), one line per step, each
tagged with the command and container ID; never to stdout, which carries the result.

Imports: protocol, ovsdb (python-ovs) and netns at start (never pyroute2: netlink_raw);
`ovn_k8s.kube.lite` (plain sockets) only on ADD; pyyaml only with a `kubeconfig`. Never
`kubernetes` or `ovsdbapp` (V11; tests/unit/test_cni_protocol.py checks it).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import ipaddress
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping
from typing import IO, Any, NoReturn

from ovn_k8s.cni import kubeapi, netns, ovsdb
from ovn_k8s.cni.protocol import (
    AddResult,
    CniError,
    CniRequest,
    Command,
    ErrorCode,
    PluginConfig,
    load_json,
    run,
)

LOG = logging.getLogger("ovn_k8s.cni")

CLEANUP_TIMEOUT = 10.0  # seconds for undoing a failed ADD
DEL_TIMEOUT = 30.0  # DEL and CHECK: bound on reaching the local OVSDB (they have no other deadline)
_LOG_FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(tag)s%(message)s"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"


def iface_id(namespace: str, pod: str) -> str:
    """The logical switch port the master watcher creates for a pod."""
    return f"{namespace}_{pod}"


# ---------------------------------------------------------------------------------------------
# ADD


def cmd_add(req: CniRequest) -> AddResult:
    cfg = req.config
    start = time.monotonic()
    deadline = start + cfg.annotation_timeout
    settings = kubeapi.api_settings(req.raw_config)  # config errors before any I/O
    assert req.pod_namespace and req.pod_name and req.netns  # protocol.parse_request checked
    host_ifname = netns.host_ifname_for(req.container_id, req.ifname)
    lsp = iface_id(req.pod_namespace, req.pod_name)
    marks = [("start", start)]

    with ovsdb.PodPorts(cfg.ovsdb, deadline=deadline) as db:
        marks.append(("ovsdb", time.monotonic()))
        params = kubeapi.connection_params(settings, db.external_ids)
        client = kubeapi.make_client(params)
        try:
            network = kubeapi.wait_for_pod_network(client, req.pod_namespace, req.pod_name, uid=req.pod_uid,
                                                   deadline=deadline, poll_interval=cfg.poll_interval)
        finally:
            client.close()
        marks.append(("annotation", time.monotonic()))
        try:
            pod_if = netns.setup_pod_interface(
                netns_path=req.netns, ifname=req.ifname, host_ifname=host_ifname, mac=network.mac,
                ip_cidr=network.ip_cidr, gateway=network.gateway, mtu=cfg.mtu,
                disable_tx_offload=cfg.disable_tx_offload)
        except ValueError as err:  # the annotation passed our checks but not netns's
            raise CniError(ErrorCode.BAD_ANNOTATION, f"pod {req.pod_key}: unusable annotation", str(err)) from None
        marks.append(("netns", time.monotonic()))
        try:
            if time.monotonic() >= deadline:
                raise CniError(ErrorCode.OVS_ATTACH_FAILED, "no time left to attach the port",
                               f"annotation_timeout {cfg.annotation_timeout} s used up")
            db.attach(cfg.bridge, host_ifname,
                      ovsdb.attach_ids(iface_id=lsp, mac=pod_if.pod_mac or network.mac, sandbox=req.container_id,
                                       ifname=req.ifname, ip_cidr=network.ip_cidr),
                      deadline=deadline)
            marks.append(("ovs", time.monotonic()))
            if cfg.wait_for_ovn:
                db.wait_installed(host_ifname, lsp, deadline=deadline)
                marks.append(("ovn", time.monotonic()))
        except BaseException:
            _undo_add(db, req, host_ifname)
            raise
    steps = ", ".join(f"{name} {(t - prev) * 1000:.0f}" for (_, prev), (name, t) in zip(marks, marks[1:], strict=False))
    LOG.info("ADD %s done: %s on %s as %s in %.0f ms (%s)", req.pod_key, network.ip_cidr, host_ifname, lsp,
             (time.monotonic() - start) * 1000, steps)
    return netns.cni_result(pod_if, cfg.dns)


def _undo_add(db: ovsdb.PodPorts, req: CniRequest, host_ifname: str) -> None:
    """Remove what a failed ADD set up (its OVS port and veth pair); errors are only logged,
    the ADD's own error is what the runtime must see."""
    LOG.warning("ADD failed: removing %s and its OVS port", host_ifname)
    try:
        db.detach(host_ifname, sandbox=req.container_id, ifname=req.ifname,
                  deadline=time.monotonic() + CLEANUP_TIMEOUT)
    except Exception:  # best effort: the ADD error is what counts
        LOG.exception("could not remove the OVS port %s", host_ifname)
    try:
        netns.teardown_pod_interface(netns_path=req.netns, ifname=req.ifname, host_ifname=host_ifname)
    except Exception:
        LOG.exception("could not remove the veth pair %s", host_ifname)


# ---------------------------------------------------------------------------------------------
# DEL


def cmd_del(req: CniRequest) -> None:
    """Remove the OVS port and the veth pair; success if they are already gone. An unreachable
    OVSDB is an error (the runtime retries DEL), but the veth pair is removed first anyway."""
    cfg = req.config
    start = time.monotonic()
    host_ifname = netns.host_ifname_for(req.container_id, req.ifname)
    deadline = start + min(cfg.annotation_timeout, DEL_TIMEOUT)
    ovs_error: CniError | None = None
    removed: list[str] = []
    try:
        with ovsdb.PodPorts(cfg.ovsdb, deadline=deadline) as db:
            removed = db.detach(host_ifname, sandbox=req.container_id, ifname=req.ifname, deadline=deadline)
    except CniError as err:
        ovs_error = err
    ovs_done = time.monotonic()
    veth = netns.teardown_pod_interface(netns_path=req.netns, ifname=req.ifname, host_ifname=host_ifname)
    if ovs_error is not None:
        raise ovs_error
    end = time.monotonic()
    what = [*removed, *(["veth pair"] if veth else [])]
    LOG.info("DEL %s done: %s in %.0f ms (ovs %.0f, netns %.0f)", host_ifname,
             f"removed {', '.join(what)}" if what else "nothing left to remove", (end - start) * 1000,
             (ovs_done - start) * 1000, (end - ovs_done) * 1000)


# ---------------------------------------------------------------------------------------------
# CHECK


def _is_default(dst: str) -> bool:
    return ipaddress.ip_network(dst, strict=False).prefixlen == 0


def cmd_check(req: CniRequest) -> None:
    """CNI CHECK: everything ADD made must still be as `prevResult` says; CniError(103) lists
    every problem (missing or re-addressed interface, wrong MAC/MTU/route, OVS port missing,
    on another bridge, claiming another logical port, or not bound by OVN)."""
    cfg, prev = req.config, req.prev_result
    assert prev is not None and req.netns  # protocol.parse_request requires them for CHECK
    index = prev.interface_index(req.ifname, req.netns)
    if index is None:
        raise CniError(ErrorCode.CHECK_FAILED, f"prevResult has no interface {req.ifname} in {req.netns}",
                       json.dumps(prev.to_json(req.cni_version)))
    ips = prev.ips_for(index)
    if not ips:
        raise CniError(ErrorCode.CHECK_FAILED, f"prevResult has no address on {req.ifname}")
    ip = ips[0]
    mac = prev.interfaces[index].mac
    host_ifname = netns.host_ifname_for(req.container_id, req.ifname)
    state = netns.inspect_pod_interface(netns_path=req.netns, ifname=req.ifname, host_ifname=host_ifname)
    problems = netns.diff_pod_interface(
        state, mac=mac, ip_cidr=ip.address, gateway=ip.gateway, mtu=cfg.mtu,
        routes=[r for r in prev.routes if not _is_default(r.dst) and r.gw == ip.gateway],
        disable_tx_offload=cfg.disable_tx_offload)
    with ovsdb.PodPorts(cfg.ovsdb, deadline=time.monotonic() + min(cfg.annotation_timeout, DEL_TIMEOUT)) as db:
        port = db.port_state(host_ifname)
    problems.extend(port_problems(port, host_ifname, bridge=cfg.bridge, mac=mac,
                                  lsp=iface_id(req.pod_namespace, req.pod_name)
                                  if req.pod_namespace and req.pod_name else None,
                                  need_ovn=cfg.wait_for_ovn))
    if problems:
        raise CniError(ErrorCode.CHECK_FAILED, f"{req.ifname} in {req.netns} is not as ADD left it",
                       "; ".join(problems))
    LOG.info("CHECK %s: ok", host_ifname)


def port_problems(port: ovsdb.PortState | None, name: str, *, bridge: str, mac: str | None, lsp: str | None,
                  need_ovn: bool) -> list[str]:
    """What is wrong with the OVS side of an attachment (pure; [] when all is well)."""
    if port is None:
        return [f"OVS port {name} is missing"]
    if port.bridge != bridge:
        return [f"OVS port {name} is on {port.bridge or 'no bridge'}, not {bridge}"]
    problems = []
    ids = port.external_ids
    if lsp and ids.get(ovsdb.IFACE_ID_KEY) != lsp:
        problems.append(f"OVS port {name} has iface-id {ids.get(ovsdb.IFACE_ID_KEY)!r}, expected {lsp!r}")
    if mac and (ids.get("attached-mac") or "").lower() != mac.lower():
        problems.append(f"OVS port {name} has attached-mac {ids.get('attached-mac')!r}, expected {mac}")
    if port.error:
        problems.append(f"OVS port {name} has an error: {port.error}")
    if need_ovn and not port.installed:
        problems.append(f"OVS port {name} is not bound by OVN (no ovn-installed)")
    return problems


# ---------------------------------------------------------------------------------------------
# main


def handle(req: CniRequest) -> AddResult | None:
    if req.command is Command.ADD:
        return cmd_add(req)
    if req.command is Command.DEL:
        cmd_del(req)
    elif req.command is Command.CHECK:
        cmd_check(req)
    return None


class _Tag(logging.Filter):
    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        record.tag = self.tag
        return True


def _log_settings(text: str) -> tuple[str | None, str]:
    """log_file and log_level from the config, read before the full parse so that parse errors
    are logged too; anything unusable falls back to stderr / INFO (the parse reports it)."""
    defaults = PluginConfig()
    try:
        conf = load_json(text)
    except ValueError:
        return None, defaults.log_level
    if not isinstance(conf, dict):
        return None, defaults.log_level
    log_file = conf.get("log_file")
    level = conf.get("log_level")
    return (log_file if isinstance(log_file, str) and log_file else None,
            level.upper() if isinstance(level, str) and level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR")
            else defaults.log_level)


def setup_logging(text: str, env: Mapping[str, str]) -> None:
    log_file, level = _log_settings(text)
    handler: logging.Handler | None = None
    problem = None
    if log_file:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
            handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except (OSError, ValueError) as err:  # ValueError: a NUL in the path
            problem = f"cannot open log_file {log_file}: {err}; logging to stderr"
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, _DATE_FORMAT))
    container = env.get("CNI_CONTAINERID", "")
    handler.addFilter(_Tag(f"{env.get('CNI_COMMAND', '?')} {container[:12]}: " if container else ""))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("pyroute2", "urllib3"):  # their DEBUG is per-message chatter
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    if problem:
        LOG.warning("%s", problem)


def main(env: Mapping[str, str] | None = None, stdin: IO[bytes] | None = None,
         stdout: IO[str] | None = None) -> int:
    """The executable: read stdin once, set up logging from it, run the call, return the exit
    code (0, or 1 with the spec's error JSON on stdout)."""
    env = os.environ if env is None else env
    raw: Any
    try:
        raw = (stdin or sys.stdin.buffer).read()
    except OSError as err:
        raw = b""
        LOG.error("cannot read stdin: %s", err)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    setup_logging(text, env)
    with contextlib.suppress(Exception):
        LOG.debug("env: %s", {k: v for k, v in env.items() if k.startswith("CNI_")})
    return run(handle, env, raw, stdout or sys.stdout)


def exit_main() -> NoReturn:
    """The executable's entry: `main()`, then a fast exit.

    After atexit handlers (logging.shutdown, kube.auth's temporary CA files) and a flush of
    stdout/stderr, `os._exit` skips the interpreter's teardown of every module and object,
    which cost ~35 ms once pyroute2, ssl and python-ovs were loaded: the plugin runs once
    per pod, so that is pure latency.
    """
    code = 1
    try:
        code = main()
    except BaseException as err:  # main() answers every CNI error itself; this is a bug or a signal
        traceback.print_exc()
        # Still the spec's answer: the runtime reads stdout, never stderr.
        with contextlib.suppress(Exception):
            unexpected = CniError(ErrorCode.INTERNAL, str(err) or type(err).__name__, type(err).__name__)
            sys.stdout.write(json.dumps(unexpected.to_json()) + "\n")
    finally:
        try:
            atexit._run_exitfuncs()  # what a normal exit runs first
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    gc.disable()
    exit_main()
