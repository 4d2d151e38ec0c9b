"""Connections to OVSDB servers (the OVN NB and the local Open_vSwitch DB) through ovsdbapp.

Traps handled here (style-and-architecture.md §3):
- V1: ovsdbapp keeps the connection on the API *class*; every connection gets its own subclass.
- V6: transactions default to check_error=False; ours always raise.
- python-ovs retries a dead remote forever: we probe the socket first so an unreachable server is
  one clear error after a short wait, not a hang.
- A clustered (RAFT) database is a comma-separated list of remotes. python-ovs does the rest
  (docs/ha.md): the IDL monitors _Server, keeps only a connection to the leader
  (`leader_only=True`; ovsdbapp passes nothing, and our OVSDB lock is per server, so every
  watcher must meet on the leader), moves on when the leader dies or steps down, refuses a
  member with older data than it has seen, and answers an in-flight transaction with
  TRY_AGAIN when the connection drops, which ovsdbapp re-runs against the new leader's data
  (our commands plan inside `run_idl`, so a commit whose reply was lost is not made twice).
- ovsdbapp's get_schema_helper blocks forever on a server that accepts and never answers: the
  schema comes from `ovsdb_remote.fetch_schema`, a get_schema round trip bounded by `timeout`;
  ovsdbapp's Connection.timeout then bounds the first sync and every transaction. A TLS verdict
  against us (the server's certificate unverified by our CA) is a ConfigError, not a retry.

The IDL is ovsdbapp's, subclassed (`_Idl`) to use two hooks python-ovs documents for
subclasses: `notify` (row changes, for `watch_rows`) and `cooperative_yield`. Connection and
lock state are read here and nowhere else (`connected`, `session_seqno`, `lock_state`); the
one private attribute read, python-ovs' `Idl._session`, is pinned by
tests/unit/test_library_contracts.py to the versions setup.py allows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ovn_k8s import naming
from ovn_k8s.errors import ConfigError, ConnectionFailed
from ovn_k8s.nb.model import IDL_INDEXES
from ovn_k8s.ovsdb_remote import PROBE_TIMEOUT, TlsFiles, fetch_schema, parse_remote, probe, split_remotes

LOG = logging.getLogger(__name__)
# re-exported for callers
__all__ = ["PROBE_TIMEOUT", "TlsFiles", "parse_remote", "probe", "split_remotes"]


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
    """Trust on first use, as the original tools did: fetch the server's CA into `cacert`.
    A cluster's members are tried one by one: ovn-nbctl gives up on a list as soon as one
    member refuses it."""
    LOG.warning("CA certificate %s does not exist: bootstrapping it from %s", tls.cacert, remote)
    err = "no output"
    for member in remote.split(","):
        cmd = ["ovn-nbctl", f"--db={member}", f"--private-key={tls.privkey}",
               f"--certificate={tls.cert}", f"--bootstrap-ca-cert={tls.cacert}",
               f"--timeout={max(1, int(timeout))}", "--no-leader-only", "get", "NB_Global", ".",
               "_uuid"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        # The first run only writes the CA (and fails the handshake); the second must succeed.
        if os.path.isfile(tls.cacert):
            return
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise ConnectionFailed(f"could not bootstrap the CA certificate from {remote}: {err}")


def _vlog_to_logging() -> None:
    from ovsdbapp.backend.ovs_idl import vlog

    vlog.use_python_logger(max_level=vlog.INFO)


@dataclass(frozen=True, slots=True)
class RowChange:
    """A row of a watched table changed in the NB (plain data, for controllers)."""

    event: str                       # "create", "update" or "delete"
    table: str
    id: str                          # external_ids ovn-k8s/id ("" when the row has none)
    owner: str                       # external_ids ovn-k8s/owner ("" when none)
    changed: frozenset[str] | None   # updates: which of the watched columns changed


# table -> the columns whose update matters (an update touching none of them is not reported)
Watch = Mapping[str, frozenset[str]]


def _idl_class() -> type:
    from ovsdbapp.backend.ovs_idl import connection

    class _Idl(connection.OvsdbIdl):  # type: ignore[misc]
        """ovsdbapp's IDL plus python-ovs' documented subclass hooks."""

        watch: Watch = {}
        on_change: Callable[[RowChange], None] | None = None
        _reset_at = 0.0

        def notify(self, event: str, row: Any, updates: Any = None) -> None:
            super().notify(event, row, updates)
            callback, watch = self.on_change, self.watch
            if callback is None:
                return
            try:
                table = row._table.name
                columns = watch.get(table)
                if columns is None:
                    return
                changed = None
                if event == "update" and updates is not None:
                    # `updates` holds the old values of the changed columns only (python-ovs
                    # Idl.notify); only the watched ones are tested, never a big `ports` set.
                    changed = frozenset(c for c in columns if hasattr(updates, c))
                    if not changed:
                        return
                ext = getattr(row, "external_ids", {}) or {}
                callback(RowChange(event, table, ext.get(naming.ID_KEY, ""),
                                   ext.get(naming.OWNER_KEY, ""), changed))
            except Exception:  # noqa: BLE001 -- never break the IDL thread
                LOG.exception("NB notification")

        def force_reconnect(self) -> None:
            # NOTE(failover): python-ovs skips its reconnect backoff only when it drops the
            # leader it was monitoring. A member that answers "not the leader" while its
            # cluster is up (its _Server row: connected) says the leader is another member,
            # reachable now: the others are tried at once as well, at most every 0.2 s (an
            # election in progress is no reason to spin).
            now = time.monotonic()
            if self.state != self.IDL_S_MONITORING and _follower_of_a_live_cluster(self) \
                    and now - self._reset_at > 0.2:
                self._reset_at = now
                self._session.reset_backoff()
            super().force_reconnect()

        def cooperative_yield(self) -> None:
            # NOTE(performance): ovsdbapp's IDL yields with time.sleep(0) for every row of an
            # update, for eventlet. With native threads that is a GIL hand-off per row, which
            # slowed our 500-port transactions by half; Python switches threads anyway.
            return None

    return _Idl


def _follower_of_a_live_cluster(idl: Any) -> bool:
    """The member the IDL just asked is a follower of a cluster that has a leader."""
    database = (idl.server_tables or {}).get("Database")
    for row in database.rows.values() if database is not None else ():
        if row.name == "OVN_Northbound" and row.model == "clustered":
            return bool(row.connected) and not row.leader
    return False


def watch_rows(api: Any, watch: Watch, callback: Callable[[RowChange], None]) -> None:
    """Call `callback` (in the IDL thread: keep it short) for changes of the watched tables."""
    idl = api.idl
    idl.watch = dict(watch)
    idl.on_change = callback


def set_lock(api: Any, name: str) -> None:
    """Ask the server for the OVSDB lock `name` (two watchers: one active, one standby)."""
    with api.ovsdb_connection.lock:
        api.idl.set_lock(name)


def lock_state(api: Any) -> tuple[bool, bool]:
    """(we hold the lock, another client holds it)."""
    return bool(api.idl.has_lock), bool(api.idl.is_lock_contended)


def connected(api: Any) -> bool:
    """The session to the server is up (False during a reconnect)."""
    try:
        return bool(api.idl._session.is_connected())
    except AttributeError:
        return False


def monitoring(api: Any) -> bool:
    """Connected, and the replica is being kept up to date."""
    idl = api.idl
    return connected(api) and idl.state == idl.IDL_S_MONITORING


def session_seqno(api: Any) -> int:
    """Changes on every (re)connection of the session: a new value means the NB may have
    changed (or been restored) while we were away."""
    return int(api.idl._session.get_seqno())


def _api_class(base: type) -> type:
    # V1: a fresh subclass per connection, with its own (unset) connection slot.
    return type(f"{base.__name__}Conn", (base,), {"_ovsdb_connection": None})


def connect(remote: str, schema: str, *, what: str, timeout: float,
            tls: TlsFiles | None = None, tables: tuple[str, ...] | None = None) -> Any:
    """An ovsdbapp API object connected to `remote` and synced (raises ConnectionFailed).
    `remote` is one address or a comma-separated list of a cluster's members (the leader is
    used, whichever it is now and later)."""
    from ovsdbapp.backend.ovs_idl import connection

    deadline = time.monotonic() + timeout
    members = split_remotes(remote, what)
    remote = ",".join(members)
    ssl = any(parse_remote(m, what)[0] == "ssl" for m in members)
    if ssl:
        if tls is None:
            raise ConfigError(f"{what}: {remote} needs --nb-privkey, --nb-cert and --nb-cacert")
        # The CA is bootstrapped from the ssl: members only (one of them; a cluster shares a CA).
        _setup_ssl(",".join(m for m in members if m.startswith("ssl:")), tls, timeout)
    probe(remote, what, timeout=min(PROBE_TIMEOUT, timeout))   # within --timeout too
    _vlog_to_logging()
    if schema == "OVN_Northbound":
        from ovsdbapp.schema.ovn_northbound.impl_idl import OvnNbApiIdlImpl as base
    elif schema == "Open_vSwitch":
        from ovsdbapp.schema.open_vswitch.impl_idl import OvsdbIdl as base
    else:
        raise ValueError(schema)
    try:
        helper = _schema_helper(remote, schema, what, deadline, hint=" (check the TLS key, certificate "
                                "and CA)" if ssl else "")
        if tables:
            for table in tables:
                helper.register_table(table)
        else:
            helper.register_all()
        idl_class = _idl_class() if schema == "OVN_Northbound" else connection.OvsdbIdl
        # leader_only: python-ovs' default, said out loud (see the module docstring). The
        # local Open_vSwitch DB is never clustered; the check passes on a standalone server.
        idl = idl_class(remote, helper, leader_only=schema == "OVN_Northbound")
        if schema == "OVN_Northbound":
            # NOTE(failover): python-ovs waits 1 s doubling to 8 s between connection attempts,
            # and a cluster member that says it is not the leader counts as a failed attempt,
            # so after a leader dies the IDL could wait 8 s before trying the member elected
            # seconds ago (and 8 s after a standalone NB came back). Capped at 1 s, the least
            # python-ovs allows: one attempt per second at most (docs/ha.md has the figures).
            idl._session.reconnect.set_backoff(1000, 1000)
        # ovsdbapp's Connection.timeout bounds the first sync (wait_for_change) and each
        # transaction's wait for its result: none of them can hang on a silent server.
        conn = connection.Connection(idl, timeout=timeout)
        if schema != "OVN_Northbound":
            return _api_class(base)(conn)
        # Only the IDL indexes we read (model.IDL_INDEXES), not ovsdbapp's name index on every
        # table: python-ovs cannot keep an index right when a transaction writes the indexed
        # column of an existing row (see IDL_INDEXES). Made before the first rows arrive.
        api = _api_class(base)(conn, start=False, auto_index=False)
        for table, column in sorted(IDL_INDEXES):
            if table in idl.tables:
                api.create_index(table, column)
        api.start_connection(conn)
        return api
    except (ConnectionFailed, ConfigError):
        raise
    except Exception as e:  # noqa: BLE001 - python-ovs raises many types; one clear line out
        raise ConnectionFailed(f"cannot use the {what} at {remote}: {e}") from e


def _schema_helper(remote: str, schema: str, what: str, deadline: float, hint: str = "") -> Any:
    # Not ovsdbapp's idlutils.get_schema_helper: it blocks forever on a server that accepts
    # the connection and never answers. fetch_schema is bounded by the deadline.
    import ovs.db.idl

    schema_json = fetch_schema(remote, schema, deadline, what)
    try:
        return ovs.db.idl.SchemaHelper(schema_json=schema_json)
    except Exception as e:  # noqa: BLE001
        raise ConnectionFailed(f"cannot read the {schema} schema from {remote}{hint}: {e}") from e


def disconnect(api: Any) -> None:
    with contextlib.suppress(Exception):
        api.ovsdb_connection.stop(timeout=2)


@contextlib.contextmanager
def transaction(api: Any, timeout: float | None = None) -> Iterator[Any]:
    """A transaction that raises on every error (V6) and logs no tracebacks of its own. A
    server that does not answer within `timeout` (the connection's when None) is one
    ConnectionFailed saying "timed out", not ovsdbapp's exception with its command dump."""
    from ovsdbapp import exceptions

    try:
        with api.transaction(check_error=True, log_errors=False, timeout=timeout) as txn:
            # NOTE(ovsdbapp 3.0): Backend.create_transaction drops the timeout it is given and
            # uses the connection's; the transaction reads its own attribute, so set that.
            if timeout is not None:
                txn.timeout = timeout
            yield txn
    except exceptions.TimeoutException as e:
        seconds = getattr(e, "timeout", None) or timeout or api.ovsdb_connection.timeout
        raise ConnectionFailed(f"the NB transaction timed out after {seconds:g} s: no answer "
                               "from the server") from None
