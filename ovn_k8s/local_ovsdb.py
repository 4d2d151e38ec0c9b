"""The node's local Open_vSwitch database: the one module that reads and writes it.

Built on python-ovs's IDL directly (no ovsdbapp, no ovs-vsctl processes), in one of two modes:
- `Mode.FULL` replicates every table and column: the topology commands (management port,
  gateway NIC and patch ports), nics-to-bridge, the Mesos gateways, the gateway helper's
  ofports, the daemons' settings in `external_ids`;
- `Mode.POD_PORTS` replicates only the four tables and the columns a pod's port needs
  (`POD_PORT_COLUMNS`): the CNI plugins, a process per pod ADD/DEL/CHECK, sync less.
The schema is the server's own (`get_schema`, ~0.3 ms more than parsing the installed
vswitch.ovsschema, and right when OVS runs in a container whose schema file the node lacks),
given to python-ovs's SchemaHelper and restricted with register_all/register_columns (in
POD_PORTS mode cut to its four tables first: `_only`).

There is no background thread: every read first takes in what the server has sent, every wait
is event-driven on the IDL's socket and bounded by a deadline (`time.monotonic()` value), and
one object is used by one thread. Writes are single transactions, retried on TRY_AGAIN against
fresh state: the `ensure_*` methods compare the replica with what is wanted and queue only what
changes something, `commit()` writes the queue and (like ovs-vsctl) waits until ovs-vswitchd
has applied it, so a new internal port's device exists when it returns; the pod-port methods
(`attach`, `detach`) each write one transaction of their own.

Remotes: unix:PATH, tcp:IP:PORT, ssl:IP:PORT (with `tls`). A server that refuses or is absent is
one ConnectionFailed at once; one that accepts but never answers is one ConnectionFailed at the
deadline, never a hang (python-ovs alone would retry forever).

Errors: ConfigError (a bad address, ssl: without TLS files, `ovs-vsctl init` never ran),
ConnectionFailed, and OvsdbError (a HostError) for failed writes and waits, with
BindingTimeout when ovn-controller does not bind a port in time.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ovs.db.idl
import ovs.stream

from ovn_k8s import naming, ovsdb_remote
from ovn_k8s.errors import ConfigError, ConnectionFailed, HostError
from ovn_k8s.ovsdb_remote import TlsFiles, block, parse_remote

LOG = logging.getLogger(__name__)

WHAT = "local OVS database"
DB = "Open_vSwitch"

# Interface external_ids of a pod port: what OVN binds on, and our tags.
IFACE_ID_KEY = "iface-id"
INSTALLED_KEY = "ovn-installed"   # set by ovn-controller once the port's flows are in
SANDBOX_KEY = "ovn-k8s/sandbox"   # the container (sandbox) id the port was made for
IFNAME_KEY = "ovn-k8s/ifname"     # and its CNI_IFNAME


class Mode(enum.Enum):
    FULL = "full"            # every table and column
    POD_PORTS = "pod-ports"  # POD_PORT_COLUMNS only


POD_PORT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "Open_vSwitch": ("bridges", "external_ids"),
    "Bridge": ("name", "ports"),
    "Port": ("name", "interfaces"),
    "Interface": ("name", "external_ids", "ofport", "error"),
}

_TXN = ovs.db.idl.Transaction
_RETRIES = 5  # TRY_AGAIN / constraint races with a concurrent writer of the same port
_REFRESH_ROUNDS = 100  # Idl.run() takes in at most 50 messages a call


class OvsdbError(HostError):
    """A write or wait on the local OVSDB failed: `summary` says what, `details` why."""

    def __init__(self, summary: str, details: str = "") -> None:
        super().__init__(f"{summary}: {details}" if details else summary)
        self.summary = summary
        self.details = details


class BindingTimeout(OvsdbError):
    """ovn-controller did not mark a port `ovn-installed` before the deadline."""


@dataclass(frozen=True, slots=True)
class PortState:
    """An interface and the bridge whose port holds it (None: on no bridge)."""

    name: str
    bridge: str | None
    external_ids: Mapping[str, str] = field(default_factory=dict)
    ofport: int | None = None  # None: not assigned yet; -1: ovs-vswitchd could not add it
    error: str | None = None

    @property
    def installed(self) -> bool:
        return self.external_ids.get(INSTALLED_KEY) == "true"


def attach_ids(*, iface_id: str, mac: str, sandbox: str, ifname: str, ip_cidr: str) -> dict[str, str]:
    """The Interface external_ids of a pod port: what OVN binds on (`iface-id`, `attached-mac`,
    `iface-status`), the address for humans (`ip_addresses`, as ovn-kubernetes), and our tags."""
    return {IFACE_ID_KEY: iface_id, "attached-mac": mac.lower(), "iface-status": "active",
            "ip_addresses": ip_cidr, SANDBOX_KEY: sandbox, IFNAME_KEY: ifname}


def _use_tls(remote: str, tls: TlsFiles | None) -> None:
    if tls is None:
        raise ConfigError(f"the {WHAT} at {remote} needs a private key, a certificate and a CA "
                          "certificate")
    for path in (tls.privkey, tls.cert, tls.cacert):
        if not os.path.isfile(path):
            raise ConfigError(f"{path} does not exist (needed for the {WHAT} at {remote})")
    # python-ovs keeps these per process, for every ssl: stream.
    ovs.stream.Stream.ssl_set_private_key_file(tls.privkey)
    ovs.stream.Stream.ssl_set_certificate_file(tls.cert)
    ovs.stream.Stream.ssl_set_ca_cert_file(tls.cacert)


def _only(schema: dict[str, Any], columns: Mapping[str, Iterable[str]]) -> dict[str, Any]:
    """The server's schema with only `columns` of their tables. NOTE(speed): python-ovs parses
    every table of the schema it is given before register_columns narrows it: the whole
    Open_vSwitch schema costs ~1.1 ms per process, these four tables ~0.08 ms."""
    tables = {}
    for name, wanted in columns.items():
        spec = dict(schema["tables"][name])
        spec["columns"] = {c: spec["columns"][c] for c in wanted}
        spec["indexes"] = [i for i in spec.get("indexes", []) if set(i) <= set(wanted)]
        tables[name] = spec
    return {**schema, "tables": tables}


def fetch_schema(remote: str, deadline: float) -> dict[str, Any]:
    """The server's Open_vSwitch schema, bounded by `deadline` (ovsdb_remote.fetch_schema)."""
    return ovsdb_remote.fetch_schema(remote, DB, deadline, WHAT)


class LocalOvsdb:
    """An IDL replica of the node's Open_vSwitch database. Use as a context manager.

    `timeout` bounds the connection and each later operation that is given no `deadline`.
    """

    def __init__(self, remote: str, *, timeout: float, mode: Mode = Mode.FULL,
                 tls: TlsFiles | None = None) -> None:
        self.remote = remote
        self.timeout = timeout
        self.mode = mode
        deadline = time.monotonic() + timeout
        if not (remote.startswith("unix:") and len(remote) > 5):
            if parse_remote(remote, WHAT)[0] == "ssl":
                _use_tls(remote, tls)
        schema = fetch_schema(remote, deadline)
        if mode is Mode.FULL:
            helper = ovs.db.idl.SchemaHelper(schema_json=schema)
            helper.register_all()
        else:
            helper = ovs.db.idl.SchemaHelper(schema_json=_only(schema, POD_PORT_COLUMNS))
            for table, columns in POD_PORT_COLUMNS.items():
                helper.register_columns(table, list(columns))
        # A pod call lives for seconds: no keepalive echo. The daemons keep python-ovs' default.
        self.idl = ovs.db.idl.Idl(remote, helper, probe_interval=0 if mode is Mode.POD_PORTS else None,
                                  leader_only=False)
        self._pending: list[tuple[str, Callable[[Any], None]]] = []
        try:
            self._wait(self.idl.has_ever_connected, deadline)
        except TimeoutError:
            self.close()
            raise ConnectionFailed(f"no answer from the {WHAT} at {remote} in time") from None

    def close(self) -> None:
        self.idl.close()

    def __enter__(self) -> LocalOvsdb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deadline(self, deadline: float | None) -> float:
        return deadline if deadline is not None else time.monotonic() + self.timeout

    # -- event loop ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Take in every update the server has sent so far (non-blocking)."""
        for _ in range(_REFRESH_ROUNDS):
            if not self.idl.run():
                return

    def _wait(self, predicate: Callable[[], Any], deadline: float) -> Any:
        """Run the IDL until `predicate()` is truthy; TimeoutError at `deadline`."""
        while True:
            self._refresh()
            result = predicate()
            if result:
                return result
            block(deadline, self.idl.wait)

    def _commit(self, txn: Any, deadline: float) -> str:
        while True:
            status = txn.commit()
            if status != _TXN.INCOMPLETE:
                return str(status)
            self.idl.run()
            try:
                block(deadline, lambda p: (self.idl.wait(p), txn.wait(p)))
            except TimeoutError:
                txn.abort()
                raise OvsdbError("OVSDB transaction timed out", self.remote) from None

    def _transact(self, build: Callable[[Any], bool], deadline: float, what: str) -> tuple[Any, str] | None:
        """One transaction made by `build(txn)` (which returns False when there is nothing to
        do); retried on TRY_AGAIN and on index clashes with racing writers. Returns the
        committed transaction and its status, or None if there was nothing to write."""
        error = ""
        for _ in range(_RETRIES):
            self._refresh()
            seqno = self.idl.change_seqno
            txn = _TXN(self.idl)
            txn.add_comment(f"ovn-k8s: {what}")
            try:
                wanted = build(txn)
            except BaseException:
                txn.abort()
                raise
            if not wanted:
                txn.abort()
                return None
            status = self._commit(txn, deadline)
            if status in (_TXN.SUCCESS, _TXN.UNCHANGED):
                return txn, status
            error = txn.get_error()
            # ERROR is final, except an index clash with a concurrent insert of the same name.
            if status != _TXN.TRY_AGAIN and not (status == _TXN.ERROR and "constraint violation" in error):
                break
            LOG.info("OVSDB %s: %s, retrying", what, error)
            try:  # let the change that beat us arrive, then decide again
                self._wait(lambda s=seqno: self.idl.change_seqno != s, min(deadline, time.monotonic() + 0.5))
            except TimeoutError:
                pass
        raise OvsdbError(f"OVSDB transaction failed: {what}", error)

    # -- reads ----------------------------------------------------------------------------------

    def _rows(self, table: str) -> list[Any]:
        return list(self.idl.tables[table].rows.values())

    def _find(self, table: str, name: str) -> Any | None:
        return next((r for r in self._rows(table) if r.name == name), None)

    def _root(self) -> Any:
        rows = self._rows("Open_vSwitch")
        if not rows:
            raise ConfigError(f"the OVS database at {self.remote} is not initialised "
                              "(run 'ovs-vsctl init')")
        return rows[0]

    def external_ids(self) -> dict[str, str]:
        """external_ids of the Open_vSwitch row ({} if `ovs-vsctl init` never ran)."""
        self._refresh()
        rows = self._rows("Open_vSwitch")
        return dict(rows[0].external_ids) if rows else {}

    def system_id(self) -> str:
        sysid = self.external_ids().get("system-id", "").strip()
        if not sysid:
            raise ConfigError("no system-id configured in the local OVS "
                              "(set it with: ovs-vsctl set Open_vSwitch . external_ids:system-id=ID)")
        return sysid

    def datapath_type(self) -> str | None:
        """The datapath ovn-controller uses for br-int (netdev for the userspace datapath)."""
        return self.external_ids().get("ovn-bridge-datapath-type") or None

    def iface_types(self) -> list[str]:
        """The interface types ovs-vswitchd supports (geneve, vxlan, stt, ...)."""
        self._refresh()
        rows = self._rows("Open_vSwitch")
        return sorted(rows[0].iface_types) if rows else []

    def ensure_external_ids(self, wanted: Mapping[str, str]) -> list[str]:
        """Queue the Open_vSwitch external_ids keys that differ from `wanted` (other keys
        stay); returns the keys that will change."""
        have = self.external_ids()
        changed = sorted(k for k, v in wanted.items() if have.get(k) != v)
        if changed:
            values = {k: wanted[k] for k in changed}
            self._queue("set external_ids " + ",".join(changed),
                        lambda txn: [self._root().setkey("external_ids", k, v) for k, v in values.items()])
        return changed

    def bridges(self) -> list[Any]:
        """Every Bridge row."""
        self._refresh()
        return self._rows("Bridge")

    def bridge(self, name: str) -> Any | None:
        self._refresh()
        return self._find("Bridge", name)

    def interface(self, name: str) -> Any | None:
        self._refresh()
        return self._find("Interface", name)

    def _port(self, name: str) -> tuple[Any, Any] | None:
        """(bridge, port) of the port named `name` on a bridge."""
        return next(((br, p) for br in self._rows("Bridge") for p in br.ports if p.name == name), None)

    def port_bridge(self, port: str) -> str | None:
        self._refresh()
        found = self._port(port)
        return str(found[0].name) if found else None

    def require_bridge(self, name: str) -> Any:
        row = self.bridge(name)
        if row is None:
            raise HostError(f"OVS bridge {name} does not exist")
        return row

    def mac_in_use(self, iface: str) -> str:
        row = self.interface(iface)
        macs = list(row.mac_in_use) if row is not None else []
        if not macs or not macs[0]:
            raise HostError(f"OVS interface {iface} has no MAC address yet")
        return str(macs[0])

    @staticmethod
    def _state(iface: Any, bridge: str | None) -> PortState:
        ofport, error = list(iface.ofport), list(iface.error)
        return PortState(name=str(iface.name), bridge=bridge, external_ids=dict(iface.external_ids),
                         ofport=int(ofport[0]) if ofport else None, error=str(error[0]) if error else None)

    def port_state(self, name: str) -> PortState | None:
        """The interface named `name` (None if neither a Port nor an Interface has that name)."""
        self._refresh()
        found = self._port(name)
        iface = self._find("Interface", name)
        if iface is None:
            return None if found is None else PortState(name=name, bridge=str(found[0].name))
        return self._state(iface, str(found[0].name) if found else None)

    def bridge_interfaces(self, bridge: str) -> list[PortState] | None:
        """Every interface of the bridge's ports; None if there is no such bridge."""
        br = self.bridge(bridge)
        if br is None:
            return None
        return [self._state(iface, bridge) for port in br.ports for iface in port.interfaces]

    # -- queued writes (FULL mode) --------------------------------------------------------------

    def _queue(self, what: str, op: Callable[[Any], None]) -> None:
        """Queue `op(txn)` for the next commit. Ops look rows up again when they run, since a
        commit retried after TRY_AGAIN runs them against fresh state."""
        self._pending.append((what, op))

    def _need(self, table: str, name: str) -> Any:
        row = self._find(table, name)
        if row is None:
            raise OvsdbError(f"OVS {table} {name} does not exist")
        return row

    def _add_port(self, txn: Any, bridge: str, name: str, iface_columns: Mapping[str, Any],
                  port_columns: Mapping[str, Any] | None = None) -> None:
        if self._port(name) is not None:
            return  # made meanwhile by someone else: ensure_* on the next run converges it
        iface = txn.insert(self.idl.tables["Interface"])
        iface.name = name
        for column, value in iface_columns.items():
            setattr(iface, column, dict(value) if isinstance(value, Mapping) else value)
        port = txn.insert(self.idl.tables["Port"])
        port.name = name
        port.interfaces = [iface]
        for column, value in (port_columns or {}).items():
            setattr(port, column, value)
        self._need("Bridge", bridge).addvalue("ports", port)

    def _set(self, table: str, name: str, column: str, value: Any) -> None:
        row = self._need(table, name)
        if isinstance(value, Mapping):
            for key, item in value.items():  # merge: keys others own stay
                row.setkey(column, key, item)
        else:
            setattr(row, column, value)

    def _del_port(self, name: str) -> None:
        found = self._port(name)
        if found is not None:
            found[0].delvalue("ports", found[1])  # ovsdb-server collects the Port and Interface

    def ensure_bridge(self, name: str, *, fail_mode: str | None = None,
                      other_config: Mapping[str, str] | None = None,
                      external_ids: Mapping[str, str] | None = None) -> None:
        row = self.bridge(name)
        dp_type = self.datapath_type()
        if row is None:
            def add_br(txn: Any) -> None:
                if self._find("Bridge", name) is not None:
                    return
                iface = txn.insert(self.idl.tables["Interface"])  # the bridge's own port
                iface.name = name
                iface.type = "internal"
                port = txn.insert(self.idl.tables["Port"])
                port.name = name
                port.interfaces = [iface]
                br = txn.insert(self.idl.tables["Bridge"])
                br.name = name
                br.ports = [port]
                if dp_type:
                    br.datapath_type = dp_type
                self._root().addvalue("bridges", br)
            self._queue(f"add bridge {name}", add_br)
        elif dp_type and row.datapath_type != dp_type:
            self._queue(f"set {name} datapath_type", lambda txn: self._set("Bridge", name, "datapath_type", dp_type))
        if fail_mode is not None and (row is None or list(row.fail_mode) != [fail_mode]):
            self._queue(f"set {name} fail_mode", lambda txn: self._set("Bridge", name, "fail_mode", fail_mode))
        for column, wanted in (("other_config", other_config), ("external_ids", external_ids)):
            if wanted and (row is None or any(getattr(row, column).get(k) != v for k, v in wanted.items())):
                self._queue(f"set {name} {column}",
                            lambda txn, c=column, w=dict(wanted): self._set("Bridge", name, c, w))

    def ensure_integration_bridge(self) -> None:
        self.ensure_bridge(naming.BR_INT, fail_mode="secure",
                           other_config={"disable-in-band": "true"})

    def ensure_port(self, bridge: str, name: str, *, tag: int | None = None, **iface: Any) -> None:
        """Port `name` on `bridge` whose Interface has at least the given column values (and
        the Port the VLAN `tag`, when given: an access port)."""
        current = self.port_bridge(name)
        if current is not None and current != bridge:
            self._queue(f"remove {name} from {current}", lambda txn: self._del_port(name))
            current = None
        if current is None:
            port_columns = {"tag": [tag]} if tag is not None else {}
            self._queue(f"add {name} to {bridge}",
                        lambda txn: self._add_port(txn, bridge, name, iface, port_columns))
            return
        if tag is not None:
            found = self._port(name)
            if found is not None and list(found[1].tag) != [tag]:
                self._queue(f"set {name} tag", lambda txn: setattr(self._port(name)[1], "tag", [tag]))
        row = self.interface(name)
        changes = []
        for column, value in iface.items():
            have = getattr(row, column) if row is not None else None
            if isinstance(value, Mapping):
                if have is None or any(have.get(k) != v for k, v in value.items()):
                    changes.append((column, dict(value)))
            else:
                plain = list(have) if isinstance(have, list) else have
                if plain not in (value, [value]):
                    changes.append((column, value))
        for column, value in changes:
            self._queue(f"set {name} {column}",
                        lambda txn, c=column, v=value: self._set("Interface", name, c, v))

    def ensure_patch_pair(self, bridge_a: str, port_a: str, bridge_b: str, port_b: str, *,
                          external_ids_a: Mapping[str, str] | None = None) -> None:
        self.ensure_port(bridge_a, port_a, type="patch", options={"peer": port_b},
                         **({"external_ids": external_ids_a} if external_ids_a else {}))
        self.ensure_port(bridge_b, port_b, type="patch", options={"peer": port_a})

    def remove_owned_ports(self, owner: str, keep: Iterable[str]) -> list[str]:
        """Queue removal of every port whose interface carries our owner key but is not in
        `keep` (e.g. the NIC a previous gateway-init moved into br-int)."""
        keep = set(keep)
        removed = []
        for br in self.bridges():
            for port in br.ports:
                if port.name in keep:
                    continue
                if any(iface.external_ids.get(naming.OWNER_KEY) == owner for iface in port.interfaces):
                    name = str(port.name)
                    self._queue(f"remove {name} from {br.name}", lambda txn, n=name: self._del_port(n))
                    removed.append(name)
        return removed

    @property
    def pending(self) -> int:
        return len(self._pending)

    def commit(self) -> bool:
        """Write the queued changes in one transaction and wait (up to `timeout`) until
        ovs-vswitchd has applied them; False if there was nothing to do."""
        if not self._pending:
            return False
        ops, self._pending = self._pending, []
        deadline = time.monotonic() + self.timeout

        def build(txn: Any) -> bool:
            for _, op in ops:
                op(txn)
            self._root().increment("next_cfg")  # what ovs-vswitchd acknowledges in cur_cfg
            return True

        what = ", ".join(w for w, _ in ops[:3]) + (f" and {len(ops) - 3} more" if len(ops) > 3 else "")
        done = self._transact(build, deadline, what)
        if done is not None and done[1] == _TXN.SUCCESS:
            self._wait_for_vswitchd(done[0].get_increment_new_value(), deadline)
        return True

    def _wait_for_vswitchd(self, next_cfg: int, deadline: float) -> None:
        try:
            self._wait(lambda: self._root().cur_cfg >= next_cfg, deadline)
        except TimeoutError:
            # As ovs-vsctl: the change is in the database; ovs-vswitchd will apply it when it runs.
            LOG.warning("ovs-vswitchd has not applied the change (next_cfg %d) within %.0f s: "
                        "is it running?", next_cfg, self.timeout)

    # -- pod ports ----------------------------------------------------------------------------

    def attach(self, bridge: str, name: str, external_ids: Mapping[str, str], *, deadline: float | None = None) -> bool:
        """Make port `name` (one Interface, same name) a member of `bridge` with at least
        `external_ids`, in one transaction; True if something was written.

        Idempotent: a correct port is left alone, other keys (ovn-controller's `ovn-installed`)
        are kept; a port of that name on another bridge is moved. Ports we made earlier for the
        same `iface-id` for another sandbox (an older sandbox of the same pod) are removed in the
        same transaction: two interfaces claiming one logical port confuse ovn-controller.
        """
        iface_id = external_ids.get(IFACE_ID_KEY)
        sandbox = external_ids.get(SANDBOX_KEY)

        def build(txn: Any) -> bool:
            br = self._find("Bridge", bridge)
            if br is None:
                raise OvsdbError(f"OVS bridge {bridge} does not exist",
                                 f"in {self.remote}; has minion-init run on this node?")
            changed = False
            for holder in self._rows("Bridge"):
                for port in holder.ports:
                    if port.name == name or not iface_id:
                        continue
                    ids = [dict(i.external_ids) for i in port.interfaces]
                    if not any(i.get(IFACE_ID_KEY) == iface_id for i in ids):
                        continue
                    if any(SANDBOX_KEY in i and i[SANDBOX_KEY] != sandbox for i in ids):
                        LOG.warning("%s: removing port %s of an older sandbox (%s) for %s", name, port.name,
                                    ",".join(i.get(SANDBOX_KEY, "?") for i in ids), iface_id)
                        holder.delvalue("ports", port)
                        changed = True
                    else:
                        LOG.warning("%s: port %s (not of another sandbox of ours) also claims iface-id %s",
                                    name, port.name, iface_id)
            found = self._port(name)
            if found is None:
                self._add_port(txn, bridge, name, {"external_ids": external_ids})
                return True
            holder, port = found
            if holder.name != bridge:
                LOG.info("%s: moving the port from %s to %s", name, holder.name, bridge)
                holder.delvalue("ports", port)
                br.addvalue("ports", port)
                changed = True
            iface = next((i for i in port.interfaces if i.name == name), None)
            if iface is None:
                raise OvsdbError(f"OVS port {name} exists without an interface named {name}",
                                 "not a port this plugin made; remove it by hand")
            have = dict(iface.external_ids)
            for key, value in external_ids.items():
                if have.get(key) != value:
                    # setkey, not a whole-map write: ovn-controller's keys (ovn-installed) stay.
                    iface.setkey("external_ids", key, value)
                    changed = True
            return changed

        wrote = self._transact(build, self._deadline(deadline), f"attach {name} to {bridge}") is not None
        LOG.info("%s: %s %s (iface-id %s)", name, "attached to" if wrote else "already on", bridge, iface_id)
        return wrote

    def detach(self, name: str, *, sandbox: str | None = None, ifname: str | None = None,
               deadline: float | None = None) -> list[str]:
        """Remove port `name`, and ports whose Interface carries our tags for (`sandbox`,
        `ifname`), from every bridge; returns what was removed ([] if nothing was there)."""
        removed: list[str] = []

        def build(txn: Any) -> bool:
            removed.clear()
            for holder in self._rows("Bridge"):
                for port in holder.ports:
                    ours = bool(sandbox) and any(
                        i.external_ids.get(SANDBOX_KEY) == sandbox and i.external_ids.get(IFNAME_KEY) == ifname
                        for i in port.interfaces)
                    if port.name == name or ours:
                        holder.delvalue("ports", port)
                        removed.append(f"{holder.name}/{port.name}")
            return bool(removed)

        self._transact(build, self._deadline(deadline), f"detach {name}")
        if removed:
            LOG.info("%s: removed OVS port(s) %s", name, ", ".join(removed))
        return removed

    def wait_installed(self, name: str, iface_id: str, *, deadline: float | None = None) -> float:
        """Wait until ovn-controller sets `ovn-installed=true` on interface `name`; returns the
        seconds waited. BindingTimeout at the deadline; OvsdbError if the port goes away,
        another ADD takes it over (its iface-id changes), or ovs-vswitchd cannot open the device."""
        start = time.monotonic()

        def bound() -> bool:
            iface = self._find("Interface", name)
            if iface is None:
                raise OvsdbError(f"OVS interface {name} disappeared while waiting for OVN",
                                 "a concurrent DEL removed it?")
            ids = iface.external_ids
            if ids.get(IFACE_ID_KEY) != iface_id:
                raise OvsdbError(f"OVS interface {name} was taken over while waiting for OVN",
                                 f"iface-id is now {ids.get(IFACE_ID_KEY)!r}, not {iface_id!r}")
            ofport, error = list(iface.ofport), list(iface.error)
            if error and ofport == [-1]:
                raise OvsdbError(f"ovs-vswitchd cannot use {name}", error[0])
            return ids.get(INSTALLED_KEY) == "true"

        try:
            self._wait(bound, self._deadline(deadline))
        except TimeoutError:
            state = self.port_state(name)
            raise BindingTimeout(f"OVN did not bind {iface_id} before the deadline",
                                 f"ovn-controller never set ovn-installed on {name} (ofport "
                                 f"{state.ofport if state else None}); is ovn-controller running and does "
                                 f"the logical switch port {iface_id} exist?") from None
        waited = time.monotonic() - start
        LOG.info("%s: bound by OVN (ovn-installed) after %.3f s", name, waited)
        return waited
