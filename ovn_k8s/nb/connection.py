"""Connections to OVSDB servers (the OVN NB and the local Open_vSwitch DB) through ovsdbapp.

Traps handled here (style-and-architecture.md §3):
- V1: ovsdbapp keeps the connection on the API *class*; every connection gets its own subclass.
- V6: transactions default to check_error=False; ours always raise.
- python-ovs retries a dead remote forever: we probe the socket first so an unreachable server is
  one clear error after a short wait, not a hang.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ovn_k8s.errors import ConfigError, ConnectionFailed

LOG = logging.getLogger(__name__)
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    privkey: str
    cert: str
    cacert: str


def parse_remote(remote: str, what: str) -> tuple[str, str, int | None]:
    """('unix', path, None) or ('tcp'|'ssl', host, port); a bad address is a ConfigError."""
    proto, _, rest = remote.partition(":")
    if proto == "unix" and rest:
        return proto, rest, None
    if proto in ("tcp", "ssl"):
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return proto, host, int(port)
    raise ConfigError(f"{what}: {remote!r} is not an OVSDB address (unix:PATH, tcp:IP:PORT or "
                      "ssl:IP:PORT)")


def probe(remote: str, what: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Fail fast with one line if nothing listens at `remote`."""
    proto, host, port = parse_remote(remote, what)
    try:
        if proto == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(host)
        else:
            with socket.create_connection((host, port), timeout=timeout):
                pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConnectionFailed(f"cannot reach the {what} at {remote}: {reason}") from None


def _setup_ssl(remote: str, tls: TlsFiles, timeout: float) -> None:
    from ovs.stream import Stream

    for path, flag in ((tls.privkey, "--nb-privkey"), (tls.cert, "--nb-cert")):
        if not os.path.isfile(path):
            raise ConfigError(f"{flag}: {path} does not exist (needed for {remote})")
    if not os.path.isfile(tls.cacert):
        _bootstrap_ca(remote, tls, timeout)
    Stream.ssl_set_private_key_file(tls.privkey)
    Stream.ssl_set_certificate_file(tls.cert)
    Stream.ssl_set_ca_cert_file(tls.cacert)


def _bootstrap_ca(remote: str, tls: TlsFiles, timeout: float) -> None:
    """Trust on first use, as the original tools did: fetch the server's CA into `cacert`."""
    LOG.warning("CA certificate %s does not exist: bootstrapping it from %s", tls.cacert, remote)
    cmd = ["ovn-nbctl", f"--db={remote}", f"--private-key={tls.privkey}",
           f"--certificate={tls.cert}", f"--bootstrap-ca-cert={tls.cacert}",
           f"--timeout={max(1, int(timeout))}", "--no-leader-only", "get", "NB_Global", ".", "_uuid"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # The first run only writes the CA (and fails the handshake); the second must succeed.
    if not os.path.isfile(tls.cacert):
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConnectionFailed(f"could not bootstrap the CA certificate from {remote}: {err}")


def _vlog_to_logging() -> None:
    from ovsdbapp.backend.ovs_idl import vlog

    vlog.use_python_logger(max_level=vlog.INFO)


def _api_class(base: type) -> type:
    # V1: a fresh subclass per connection, with its own (unset) connection slot.
    return type(f"{base.__name__}Conn", (base,), {"_ovsdb_connection": None})


def connect(remote: str, schema: str, *, what: str, timeout: float,
            tls: TlsFiles | None = None, tables: tuple[str, ...] | None = None) -> Any:
    """An ovsdbapp API object connected to `remote` and synced (raises ConnectionFailed)."""
    from ovsdbapp.backend.ovs_idl import connection

    proto, _, _ = parse_remote(remote, what)
    if proto == "ssl":
        if tls is None:
            raise ConfigError(f"{what}: {remote} needs --nb-privkey, --nb-cert and --nb-cacert")
        _setup_ssl(remote, tls, timeout)
    probe(remote, what)
    _vlog_to_logging()
    if schema == "OVN_Northbound":
        from ovsdbapp.schema.ovn_northbound.impl_idl import OvnNbApiIdlImpl as base
    elif schema == "Open_vSwitch":
        from ovsdbapp.schema.open_vswitch.impl_idl import OvsdbIdl as base
    else:
        raise ValueError(schema)
    try:
        helper = _schema_helper(remote, schema, timeout, hint=" (check the TLS key, certificate "
                                "and CA)" if proto == "ssl" else "")
        if tables:
            for table in tables:
                helper.register_table(table)
        else:
            helper.register_all()
        idl = connection.OvsdbIdl(remote, helper, leader_only=False)
        conn = connection.Connection(idl, timeout=timeout)
        return _api_class(base)(conn)
    except ConnectionFailed:
        raise
    except Exception as e:  # noqa: BLE001 - python-ovs raises many types; one clear line out
        raise ConnectionFailed(f"cannot use the {what} at {remote}: {e}") from e


def _schema_helper(remote: str, schema: str, timeout: float, hint: str = "") -> Any:
    from ovsdbapp.backend.ovs_idl import idlutils

    try:
        return idlutils.get_schema_helper(remote, schema)
    except Exception as e:  # noqa: BLE001
        raise ConnectionFailed(f"cannot read the {schema} schema from {remote}{hint}: {e}") from e


def disconnect(api: Any) -> None:
    with contextlib.suppress(Exception):
        api.ovsdb_connection.stop(timeout=2)


@contextlib.contextmanager
def transaction(api: Any, timeout: float | None = None) -> Iterator[Any]:
    """A transaction that raises on every error (V6) and logs no tracebacks of its own."""
    with api.transaction(check_error=True, log_errors=False, timeout=timeout) as txn:
        yield txn
