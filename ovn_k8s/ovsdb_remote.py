"""OVSDB remotes: parsing `unix:` / `tcp:` / `ssl:` addresses and comma-separated lists of
them (the members of a clustered database), TLS file names, and a probe.

Shared by the NB connection (ovn_k8s.nb.connection) and the local Open_vSwitch DB
(ovn_k8s.local_ovsdb). Light on purpose: the CNI plugin imports it on every call, so at import
time it loads nothing beyond the standard library and ovn_k8s.errors (python-ovs is imported
inside `fetch_schema`, whose callers have loaded it already).

python-ovs retries a dead remote forever: `probe` makes an unreachable server one clear error
after a short wait instead of a hang. `fetch_schema`, the first round trip of both clients, is
bounded by a deadline: a server that accepts and never answers is one ConnectionFailed in
time (ovsdbapp's get_schema_helper would block forever).

A clustered (RAFT) database is named by a list, `tcp:a:6641,tcp:b:6641,tcp:c:6641`: python-ovs
itself connects to the leader and follows leader changes (docs/ha.md); here the probe asks only
that one member answer, and the schema comes from the first member that gives it.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def split_remotes(remotes: str, what: str) -> list[str]:
    """The members of a comma-separated list of remotes (one remote is a list of one), each
    checked by `parse_remote`. A piece without ':' continues the previous one, python-ovs' own
    rule (Idl._parse_remotes), so we read a list exactly as the library will."""
    members: list[str] = []
    for piece in remotes.split(","):
        if members and ":" not in piece and piece:
            members[-1] += "," + piece
        else:
            members.append(piece.strip())
    for member in members:
        parse_remote(member, what)
    return members


def probe(remote: str, what: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Fail fast with one line if nothing listens at `remote`; for a list, if no member
    listens (each probed at once: one dead member costs nothing)."""
    members = split_remotes(remote, what)
    if len(members) == 1:
        _probe_one(members[0], what, timeout)
        return
    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        results = list(pool.map(lambda m: _try(lambda: _probe_one(m, what, timeout)), members))
    if any(r is None for r in results):
        return
    reasons = "; ".join(f"{m}: {_why(e)}" for m, e in zip(members, results, strict=True))
    raise ConnectionFailed(f"cannot reach the {what} at any of {remote} ({reasons})")


def _try(fn: Callable[[], None]) -> Exception | None:
    try:
        fn()
    except (ConnectionFailed, ConfigError) as e:
        return e
    return None


def _why(e: Exception | None) -> str:
    # "cannot reach the X at ADDR: REASON" -> "REASON"
    return str(e).rsplit(": ", 1)[-1]


def _probe_one(remote: str, what: str, timeout: float) -> None:
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


def block(deadline: float, register: Callable[[Any], None]) -> None:
    """Sleep until an event `register(poller)` asked for, or the deadline (TimeoutError)."""
    import ovs.poller

    remaining = int((deadline - time.monotonic()) * 1000)
    if remaining <= 0:
        raise TimeoutError
    poller = ovs.poller.Poller()
    register(poller)
    poller.timer_wait(remaining)
    poller.block()


def _reason(error: int) -> str:
    import ovs.util

    return "connection closed" if error == ovs.util.EOF else os.strerror(error)


# A TLS session cut short (a server restarting) may work on the next try.
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def fetch_schema(remote: str, db: str, deadline: float, what: str) -> dict[str, Any]:
    """The server's schema of `db` (one get_schema round trip on a connection of its own),
    bounded by `deadline` (a time.monotonic() value). Doubles as the probe: ConnectionFailed at
    once if nothing listens, at the deadline if the server accepts and never answers. ssl:
    remotes need python-ovs' process-wide TLS files set first; a TLS verdict the handshake
    raises (the server's certificate not signed by our CA) is a ConfigError.

    For a list, the members are asked in turn, each within its share of the time left (a
    silent member cannot use up the deadline); the first schema wins (every member of a
    cluster serves the same one)."""
    members = split_remotes(remote, what)
    failure: ConnectionFailed | None = None
    for i, member in enumerate(members):
        share = (deadline - time.monotonic()) / (len(members) - i)
        try:
            return _fetch_schema_one(member, db, min(deadline, time.monotonic() + share), what)
        except ConnectionFailed as e:
            failure = e
            LOG.info("%s: %s", what, e)
    assert failure is not None
    if len(members) == 1:
        raise failure
    raise ConnectionFailed(f"no member of the {what} {remote} gave its {db} schema (last: {failure})")


def _fetch_schema_one(remote: str, db: str, deadline: float, what: str) -> dict[str, Any]:
    import ovs.jsonrpc
    import ovs.stream

    hint = " (check the TLS key, certificate and CA)" if remote.startswith("ssl:") else ""
    error, stream = ovs.stream.Stream.open(remote)
    if error:
        raise ConnectionFailed(f"cannot reach the {what} at {remote}: {_reason(error)}{hint}")
    rpc = None
    try:
        while (error := stream.connect()) == errno.EAGAIN:
            block(deadline, stream.connect_wait)
        if error:
            raise ConnectionFailed(f"cannot reach the {what} at {remote}: {_reason(error)}{hint}")
        rpc = ovs.jsonrpc.Connection(stream)
        request = ovs.jsonrpc.Message.create_request("get_schema", [db])
        error = rpc.send(request)
        while not error:
            rpc.run()
            error, msg = rpc.recv()
            if msg is not None and msg.id == request.id:
                if msg.type != ovs.jsonrpc.Message.T_REPLY:
                    raise ConnectionFailed(f"the server at {remote} has no {db} database: {msg.error}")
                result: dict[str, Any] = msg.result
                return result
            if error == errno.EAGAIN:
                error = 0
                block(deadline, lambda p: (rpc.wait(p), rpc.recv_wait(p)))
        raise ConnectionFailed(f"cannot read the {db} schema from {remote}: {_reason(error)}{hint}")
    except TimeoutError:
        raise ConnectionFailed(f"no answer from the {what} at {remote} in time{hint}") from None
    except _TLS_TRANSIENT as e:
        raise ConnectionFailed(f"TLS with the {what} at {remote} was cut: {e}{hint}") from None
    except ssl.SSLError as e:
        # python-ovs lets the handshake's verdict escape as an exception: an unverified server
        # certificate or a client certificate the server refuses is a setting, not a retry.
        reason = " ".join(str(x) for x in (e.reason, getattr(e, "verify_message", None)) if x) or str(e)
        raise ConfigError(f"TLS with the {what} at {remote} failed: {reason}{hint}") from None
    finally:
        if rpc is not None:
            rpc.close()
        else:
            stream.close()
