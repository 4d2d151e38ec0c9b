"""The node's local Open vSwitch database, as the CNI plugin needs it, over python-ovs's IDL.

Owns: attaching a pod's host veth to the integration bridge (Port + Interface with the
`external_ids` OVN binds on), removing it again, waiting until ovn-controller reports the port
bound (`external_ids:ovn-installed="true"` on the Interface), reading the Open_vSwitch row's
`external_ids` (the original's `k8s-api-server` settings), and describing a port for CHECK.

One IDL connection per plugin call, replicating only four tables and the columns below (an
embedded schema: no `get_schema` round trip, no schema file on disk). Every write is one OVSDB
transaction; every wait is event-driven on the IDL's socket and bounded by the caller's deadline
(a `time.monotonic()` value). No `ovs-vsctl` process per step and no `ovsdbapp` (V11): the
plugin runs once per pod, and process-per-call storms are a known pain point.

Ports this module creates carry `external_ids:ovn-k8s/sandbox=<container id>` and
`ovn-k8s/ifname=<CNI_IFNAME>` on their Interface, so a later DEL or ADD can recognise them.
Failures are `CniError(OVS_ATTACH_FAILED)` (101) or, for the binding wait,
`CniError(OVN_BINDING_TIMEOUT)` (104).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ovs.db.idl
import ovs.poller

from ovn_k8s.cni.protocol import CniError, ErrorCode

LOG = logging.getLogger(__name__)

SANDBOX_KEY = "ovn-k8s/sandbox"
IFNAME_KEY = "ovn-k8s/ifname"
IFACE_ID_KEY = "iface-id"
INSTALLED_KEY = "ovn-installed"

_MAP = {"key": "string", "value": "string", "min": 0, "max": "unlimited"}


def _ref(table: str, minimum: int = 0) -> dict[str, Any]:
    return {"type": {"key": {"type": "uuid", "refTable": table}, "min": minimum, "max": "unlimited"}}


# The subset of vswitch.ovsschema this module reads and writes (types as in OVS 2.x/3.x; these
# columns have not changed since OVS 1.x). ovsdb-server checks requests against its own schema.
SCHEMA: dict[str, Any] = {
    "name": "Open_vSwitch",
    "version": "8.3.1",
    "tables": {
        "Open_vSwitch": {"isRoot": True, "maxRows": 1, "columns": {
            "bridges": _ref("Bridge"),
            "external_ids": {"type": _MAP},
        }},
        "Bridge": {"isRoot": False, "indexes": [["name"]], "columns": {
            "name": {"type": "string", "mutable": False},
            "ports": _ref("Port"),
        }},
        "Port": {"isRoot": False, "indexes": [["name"]], "columns": {
            "name": {"type": "string", "mutable": False},
            "interfaces": _ref("Interface", 1),
        }},
        "Interface": {"isRoot": False, "indexes": [["name"]], "columns": {
            "name": {"type": "string", "mutable": False},
            "external_ids": {"type": _MAP},
            "ofport": {"type": {"key": "integer", "min": 0, "max": 1}},
            "error": {"type": {"key": "string", "min": 0, "max": 1}},
        }},
    },
}

_TXN = ovs.db.idl.Transaction
_RETRIES = 5  # TRY_AGAIN / constraint races with a concurrent ADD of the same container


def _remaining_ms(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


@dataclass(frozen=True, slots=True)
class PortState:
    """A port as CHECK sees it: which bridge holds it and its Interface's columns."""

    name: str
    bridge: str | None
    external_ids: Mapping[str, str] = field(default_factory=dict)
    ofport: int | None = None
    error: str | None = None

    @property
    def installed(self) -> bool:
        return self.external_ids.get(INSTALLED_KEY) == "true"


def attach_ids(*, iface_id: str, mac: str, sandbox: str, ifname: str, ip_cidr: str) -> dict[str, str]:
    """The Interface external_ids of a pod port: what OVN binds on (`iface-id`, `attached-mac`,
    `iface-status`), the address for humans (`ip_addresses`, as ovn-kubernetes), and our tags."""
    return {IFACE_ID_KEY: iface_id, "attached-mac": mac.lower(), "iface-status": "active",
            "ip_addresses": ip_cidr, SANDBOX_KEY: sandbox, IFNAME_KEY: ifname}


class LocalOvsdb:
    """An IDL replica of the node's OVSDB (the SCHEMA subset). Use as a context manager."""

    def __init__(self, remote: str, *, deadline: float) -> None:
        self.remote = remote
        helper = ovs.db.idl.SchemaHelper(schema_json=SCHEMA)
        for table, spec in SCHEMA["tables"].items():
            helper.register_columns(table, list(spec["columns"]))
        # probe_interval=0: a call lives for seconds; no keepalive echo needed.
        self.idl = ovs.db.idl.Idl(remote, helper, probe_interval=0)
        try:
            self._wait(self.idl.has_ever_connected, deadline)
        except TimeoutError:
            self.close()
            details = f"no answer from {remote} before the deadline"
            if remote.startswith("unix:") and not os.path.exists(remote[5:]):
                details += f" ({remote[5:]} does not exist)"
            raise CniError(ErrorCode.OVS_ATTACH_FAILED, "cannot connect to the local OVSDB", details) from None

    def close(self) -> None:
        self.idl.close()

    def __enter__(self) -> LocalOvsdb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- event loop ---------------------------------------------------------------------------

    def _wait(self, predicate: Callable[[], Any], deadline: float) -> Any:
        """Run the IDL until `predicate()` is truthy; TimeoutError at `deadline`."""
        while True:
            self.idl.run()
            result = predicate()
            if result:
                return result
            remaining = _remaining_ms(deadline)
            if remaining <= 0:
                raise TimeoutError
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            poller.timer_wait(remaining)
            poller.block()

    def _commit(self, txn: Any, deadline: float) -> str:
        while True:
            status = txn.commit()
            if status != _TXN.INCOMPLETE:
                return status
            remaining = _remaining_ms(deadline)
            if remaining <= 0:
                txn.abort()
                raise CniError(ErrorCode.OVS_ATTACH_FAILED, "OVSDB transaction timed out", self.remote)
            self.idl.run()
            poller = ovs.poller.Poller()
            self.idl.wait(poller)
            txn.wait(poller)
            poller.timer_wait(remaining)
            poller.block()

    def _transact(self, build: Callable[[Any], bool], deadline: float, what: str) -> bool:
        """One transaction made by `build(txn)` (which returns False when there is nothing to
        do); retried on TRY_AGAIN and on errors from racing writers. True if it wrote."""
        error = ""
        for _ in range(_RETRIES):
            self.idl.run()
            seqno = self.idl.change_seqno
            txn = _TXN(self.idl)
            txn.add_comment(f"ovn-k8s-cni-overlay: {what}")
            try:
                wanted = build(txn)
            except BaseException:
                txn.abort()
                raise
            if not wanted:
                txn.abort()
                return False
            status = self._commit(txn, deadline)
            if status in (_TXN.SUCCESS, _TXN.UNCHANGED):
                return True
            error = txn.get_error()
            # ERROR is final, except an index clash with a concurrent insert of the same name.
            if status != _TXN.TRY_AGAIN and not (status == _TXN.ERROR and "constraint violation" in error):
                break
            # A concurrent writer (e.g. the same ADD run twice at once) won; see its result.
            LOG.info("OVSDB %s: %s, retrying", what, error)
            try:
                self._wait(lambda s=seqno: self.idl.change_seqno != s, min(deadline, time.monotonic() + 0.5))
            except TimeoutError:
                pass
        raise CniError(ErrorCode.OVS_ATTACH_FAILED, f"OVSDB transaction failed: {what}", error)

    # -- reads ----------------------------------------------------------------------------------

    def _rows(self, table: str) -> list[Any]:
        return list(self.idl.tables[table].rows.values())

    def external_ids(self) -> dict[str, str]:
        """external_ids of the Open_vSwitch row ({} if `ovs-vsctl init` never ran)."""
        rows = self._rows("Open_vSwitch")
        return dict(rows[0].external_ids) if rows else {}

    def _bridge(self, name: str) -> Any | None:
        return next((b for b in self._rows("Bridge") if b.name == name), None)

    def _ports(self) -> list[tuple[Any, Any]]:
        """(bridge, port) for every port on a bridge."""
        return [(br, port) for br in self._rows("Bridge") for port in br.ports]

    def _port(self, name: str) -> tuple[Any, Any] | None:
        return next(((br, p) for br, p in self._ports() if p.name == name), None)

    def _interface(self, name: str) -> Any | None:
        return next((i for i in self._rows("Interface") if i.name == name), None)

    def port_state(self, name: str) -> PortState | None:
        """The port named `name` (None if neither a Port nor an Interface has that name)."""
        self.idl.run()
        found = self._port(name)
        iface = self._interface(name)
        if found is None and iface is None:
            return None
        ofport = list(iface.ofport) if iface is not None else []
        error = list(iface.error) if iface is not None else []
        return PortState(name=name, bridge=found[0].name if found else None,
                         external_ids=dict(iface.external_ids) if iface is not None else {},
                         ofport=ofport[0] if ofport else None, error=error[0] if error else None)

    # -- writes ---------------------------------------------------------------------------------

    def attach(self, bridge: str, name: str, external_ids: Mapping[str, str], *, deadline: float) -> bool:
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
            br = self._bridge(bridge)
            if br is None:
                raise CniError(ErrorCode.OVS_ATTACH_FAILED, f"OVS bridge {bridge} does not exist",
                               f"in {self.remote}; has minion-init run on this node?")
            changed = False
            for holder, port in self._ports():
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
                    LOG.warning("%s: port %s (not of another sandbox of ours) also claims iface-id %s", name,
                                port.name, iface_id)
            found = self._port(name)
            if found is None:
                iface = txn.insert(self.idl.tables["Interface"])
                iface.name = name
                iface.external_ids = dict(external_ids)
                port = txn.insert(self.idl.tables["Port"])
                port.name = name
                port.interfaces = [iface]
                br.addvalue("ports", port)
                return True
            holder, port = found
            if holder.name != bridge:
                LOG.info("%s: moving the port from %s to %s", name, holder.name, bridge)
                holder.delvalue("ports", port)
                br.addvalue("ports", port)
                changed = True
            iface = next((i for i in port.interfaces if i.name == name), None)
            if iface is None:
                raise CniError(ErrorCode.OVS_ATTACH_FAILED, f"OVS port {name} exists without an interface "
                               f"named {name}", "not a port this plugin made; remove it by hand")
            have = dict(iface.external_ids)
            for key, value in external_ids.items():
                if have.get(key) != value:
                    # setkey, not a whole-map write: ovn-controller's keys (ovn-installed) stay.
                    iface.setkey("external_ids", key, value)
                    changed = True
            return changed

        wrote = self._transact(build, deadline, f"attach {name} to {bridge}")
        LOG.info("%s: %s %s (iface-id %s)", name, "attached to" if wrote else "already on", bridge, iface_id)
        return wrote

    def detach(self, name: str, *, sandbox: str | None = None, ifname: str | None = None,
               deadline: float) -> list[str]:
        """Remove port `name`, and ports whose Interface carries our tags for (`sandbox`,
        `ifname`), from every bridge; returns what was removed ([] if nothing was there)."""
        removed: list[str] = []

        def build(txn: Any) -> bool:
            removed.clear()
            for holder, port in self._ports():
                ours = any(i.external_ids.get(SANDBOX_KEY) == sandbox and i.external_ids.get(IFNAME_KEY) == ifname
                           for i in port.interfaces) if sandbox else False
                if port.name == name or ours:
                    holder.delvalue("ports", port)
                    removed.append(f"{holder.name}/{port.name}")
            return bool(removed)

        self._transact(build, deadline, f"detach {name}")
        if removed:
            LOG.info("%s: removed OVS port(s) %s", name, ", ".join(removed))
        return removed

    # -- OVN binding --------------------------------------------------------------------------

    def wait_installed(self, name: str, iface_id: str, *, deadline: float) -> float:
        """Wait until ovn-controller sets `ovn-installed=true` on interface `name`; returns the
        seconds waited. CniError 104 at the deadline, 101 if the port goes away, another ADD
        takes it over (its iface-id changes), or ovs-vswitchd cannot open the device."""
        start = time.monotonic()

        def bound() -> bool:
            iface = self._interface(name)
            if iface is None:
                raise CniError(ErrorCode.OVS_ATTACH_FAILED, f"OVS interface {name} disappeared while "
                               "waiting for OVN", "a concurrent DEL removed it?")
            ids = iface.external_ids
            if ids.get(IFACE_ID_KEY) != iface_id:
                raise CniError(ErrorCode.OVS_ATTACH_FAILED, f"OVS interface {name} was taken over while "
                               "waiting for OVN", f"iface-id is now {ids.get(IFACE_ID_KEY)!r}, not {iface_id!r}")
            ofport, error = list(iface.ofport), list(iface.error)
            if error and ofport == [-1]:
                raise CniError(ErrorCode.OVS_ATTACH_FAILED, f"ovs-vswitchd cannot use {name}", error[0])
            return ids.get(INSTALLED_KEY) == "true"

        try:
            self._wait(bound, deadline)
        except TimeoutError:
            state = self.port_state(name)
            raise CniError(ErrorCode.OVN_BINDING_TIMEOUT, f"OVN did not bind {iface_id} before the deadline",
                           f"ovn-controller never set ovn-installed on {name} (ofport "
                           f"{state.ofport if state else None}); is ovn-controller running and does the "
                           f"logical switch port {iface_id} exist?") from None
        waited = time.monotonic() - start
        LOG.info("%s: bound by OVN (ovn-installed) after %.3f s", name, waited)
        return waited
