"""Pod ports in the NB: one batched ovsdbapp command for many pods, and the start-up scan.

ovn_k8s.nb.apply.ApplyCommand scans whole tables to plan, which is right for the topology and
for start-up repair but costs O(all rows) per transaction; at 10k pods that is too slow for a
pod event. `PodPortsCommand` instead touches only the rows of the pods in its batch: it finds
ports through the NB schema's unique name index, switches by UUID (resolved by the
controller through ovsdbapp's name index), and links or unlinks ports with set mutations on
the switch's `ports` column (addvalue/delvalue), so concurrent writers of sibling rows never
conflict and the switch row is never rewritten.

ovsdbapp re-runs `run_idl` on TRY_AGAIN against fresh IDL state, so it decides everything from
what it reads there; the controller's hints (which switch holds a port) only save a scan.

Reads of the IDL outside a transaction hold the connection's lock (the IDL thread changes
rows under it).
"""

from __future__ import annotations

import ipaddress
import logging
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import idlutils

from ovn_k8s import naming
from ovn_k8s.desired import topology
from ovn_k8s.desired.pods import NodeSwitch, PodPort, pod_key_from_port

LOG = logging.getLogger(__name__)
LS, LSP = "Logical_Switch", "Logical_Switch_Port"
SWITCH_ID_PREFIX = topology.node_switch_id("")          # "switch:"


@dataclass(frozen=True, slots=True)
class NbPort:
    """A pod port as it is in the NB (after our last write, or as found at start)."""

    uuid: str
    name: str
    switch_uuid: str | None            # the switch whose `ports` hold it
    addresses: tuple[str, ...]
    external_ids: tuple[tuple[str, str], ...]

    def matches(self, port: PodPort, switch_uuid: str) -> bool:
        return (self.switch_uuid == switch_uuid and self.name == port.name
                and self.addresses == tuple(port.addresses)
                and self.external_ids == port.external_ids)


@dataclass(frozen=True, slots=True)
class Ensure:
    key: str
    port: PodPort
    switch_uuid: str
    current: NbPort | None = None      # the controller's belief; a hint only


@dataclass(frozen=True, slots=True)
class Remove:
    key: str
    name: str
    current: NbPort | None = None
    by_uuid: bool = False              # remove exactly `current` (a duplicate), not by name


Op = Ensure | Remove


class PortTaken(Exception):
    """A port with the pod's name exists and belongs to another owner of ours."""


def _lsp_by_name(tables: Any, name: str) -> Any | None:
    table = tables[LSP]
    try:
        return next(idlutils.index_lookup_all(table, name=name), None)
    except KeyError:                     # no index (never with ovsdbapp's auto indexes)
        return next((r for r in table.rows.values() if r.name == name), None)


def _holders(tables: Any, lsp_uuid: Any) -> list[Any]:
    """Every switch whose `ports` reference the port: a scan, for rows we have no hint on."""
    return [sw for sw in tables[LS].rows.values() if any(p.uuid == lsp_uuid for p in sw.ports)]


def _ext_tuple(ext: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(ext.items()))


class PodPortsCommand(ovs_command.BaseCommand):
    """Make the ports of a batch of pods what `ops` say, in the enclosing transaction.

    After a successful commit, `result` maps each key to its NbPort (None: no port), and
    `skipped` maps keys whose op could not be applied to the reason (their switch vanished,
    or their port name is held by a row of another owner); the others still commit.
    """

    def __init__(self, api: Any, ops: Sequence[Op]) -> None:
        super().__init__(api)
        self.ops = list(ops)
        self.result: dict[str, NbPort | None] = {}
        self.skipped: dict[str, Exception] = {}
        self._inserted: dict[str, Any] = {}

    def __str__(self) -> str:
        return f"PodPortsCommand({len(self.ops)} ops)"

    def run_idl(self, txn: Any) -> None:
        tables = self.api.tables
        self.result, self.skipped, self._inserted = {}, {}, {}
        for op in self.ops:
            if isinstance(op, Ensure):
                self._ensure(txn, tables, op)
            else:
                self._remove(tables, op)

    def _ensure(self, txn: Any, tables: Any, op: Ensure) -> None:
        switch = tables[LS].rows.get(uuidlib.UUID(op.switch_uuid))
        if switch is None:
            self.skipped[op.key] = LookupError(f"switch of node {op.port.node} is gone")
            return
        port = op.port
        ext = dict(port.external_ids)
        addresses = port.addresses
        lsp = _lsp_by_name(tables, port.name)
        if lsp is None:
            lsp = txn.insert(tables[LSP])
            lsp.name = port.name
            lsp.addresses = addresses
            lsp.external_ids = ext
            switch.addvalue("ports", lsp)
            self._inserted[op.key] = lsp
        else:
            found_ext = dict(lsp.external_ids)
            owner = found_ext.get(naming.OWNER_KEY, "")
            if owner and pod_key_from_port(lsp.name, found_ext) != op.key:
                self.skipped[op.key] = PortTaken(f"port {port.name} exists and belongs to "
                                                 f"{owner}")
                return
            if list(lsp.addresses) != addresses:
                lsp.addresses = addresses
            if found_ext != ext:
                lsp.external_ids = ext
            hint = op.current
            if hint is not None and hint.uuid == str(lsp.uuid) and hint.switch_uuid is not None:
                holders = [tables[LS].rows.get(uuidlib.UUID(hint.switch_uuid))]
                holders = [h for h in holders if h is not None]
            else:
                holders = _holders(tables, lsp.uuid)
            if not any(h.uuid == switch.uuid for h in holders):
                switch.addvalue("ports", lsp)
            for holder in holders:
                if holder.uuid != switch.uuid:
                    holder.delvalue("ports", lsp)
        self.result[op.key] = NbPort(uuid=str(lsp.uuid), name=port.name,
                                     switch_uuid=op.switch_uuid, addresses=tuple(addresses),
                                     external_ids=port.external_ids)

    def _remove(self, tables: Any, op: Remove) -> None:
        if op.by_uuid:
            assert op.current is not None
            lsp = tables[LSP].rows.get(uuidlib.UUID(op.current.uuid))
        else:
            self.result[op.key] = None
            lsp = _lsp_by_name(tables, op.name)
        if lsp is None:
            return
        if pod_key_from_port(lsp.name, dict(lsp.external_ids)) != op.key:
            return                       # not a pod port of this pod: never touch it
        hint = op.current
        if hint is not None and hint.uuid == str(lsp.uuid) and hint.switch_uuid is not None:
            holders = [tables[LS].rows.get(uuidlib.UUID(hint.switch_uuid))]
            if holders[0] is None or not any(p.uuid == lsp.uuid for p in holders[0].ports):
                holders = _holders(tables, lsp.uuid)
        else:
            holders = _holders(tables, lsp.uuid)
        for holder in holders:
            holder.delvalue("ports", lsp)
        lsp.delete()

    def post_commit(self, txn: Any) -> None:
        for key, row in self._inserted.items():
            real = txn.get_insert_uuid(row.uuid)
            entry = self.result[key]
            if entry is not None and real is not None:
                self.result[key] = NbPort(uuid=str(real), name=entry.name,
                                          switch_uuid=entry.switch_uuid,
                                          addresses=entry.addresses,
                                          external_ids=entry.external_ids)


# --- reads outside transactions -----------------------------------------------------------
def _addresses_ips(addresses: Iterable[str]) -> Iterator[ipaddress.IPv4Address]:
    """IPv4 addresses in an LSP `addresses`/`dynamic_addresses` value ("MAC IP [IP...]")."""
    for entry in addresses:
        for token in str(entry).split()[1:]:
            try:
                ip = ipaddress.ip_address(token.split("/")[0])
            except ValueError:
                continue
            if ip.version == 4:
                yield ip


def _node_switch(row: Any) -> NodeSwitch | None:
    rid = row.external_ids.get(naming.ID_KEY, "")
    if not rid.startswith(SWITCH_ID_PREFIX):
        return None
    node = rid[len(SWITCH_ID_PREFIX):]
    try:
        subnet = ipaddress.IPv4Network(row.other_config.get("subnet", ""))
    except ValueError:
        return None
    gateway = row.external_ids.get(naming.GATEWAY_IP_KEY, "").split("/")[0]
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        gw = subnet.network_address + 1
    return NodeSwitch(node=node, uuid=str(row.uuid), subnet=subnet, gateway_ip=gw)


def find_node_switch(api: Any, node: str) -> tuple[NodeSwitch, list[ipaddress.IPv4Address]] | None:
    """The node's switch (by `ovn-k8s/id=switch:<node>`, looked up through the name index)
    and the addresses held by ports on it that are not pod ports (to keep away from pods)."""
    want = topology.node_switch_id(node)
    with api.ovsdb_connection.lock:
        table = api.tables[LS]
        try:
            candidates = list(idlutils.index_lookup_all(table, name=naming.node_switch(node)))
        except KeyError:
            candidates = [r for r in table.rows.values() if r.name == naming.node_switch(node)]
        rows = sorted((r for r in candidates if r.external_ids.get(naming.ID_KEY) == want),
                      key=lambda r: str(r.uuid))
        if not rows:
            return None
        found = _node_switch(rows[0])
        if found is None:
            return None
        return found, list(_foreign_ips(rows[0]))


def _foreign_ips(switch: Any) -> Iterator[ipaddress.IPv4Address]:
    for lsp in switch.ports:
        if pod_key_from_port(lsp.name, lsp.external_ids) is None:
            yield from _addresses_ips(lsp.addresses)
            yield from _addresses_ips(lsp.dynamic_addresses)


@dataclass
class NbSnapshot:
    """What the start-up sync needs from the NB, read in one pass."""

    switches: dict[str, NodeSwitch] = field(default_factory=dict)             # node ->
    foreign_ips: dict[str, list[ipaddress.IPv4Address]] = field(default_factory=dict)
    ports: dict[str, NbPort] = field(default_factory=dict)                    # pod key ->
    extra_ports: list[tuple[str, NbPort]] = field(default_factory=list)       # same key twice


def scan(api: Any) -> NbSnapshot:
    """Node switches, and every pod port with the switch that holds it (one pass)."""
    snap = NbSnapshot()
    with api.ovsdb_connection.lock:
        holder: dict[Any, str] = {}
        for sw in api.tables[LS].rows.values():
            info = _node_switch(sw)
            if info is not None:
                known = snap.switches.get(info.node)
                if known is None or info.uuid < known.uuid:   # duplicates: lowest UUID wins
                    snap.switches[info.node] = info
            for lsp in sw.ports:
                holder[lsp.uuid] = str(sw.uuid)
        for node, info in snap.switches.items():
            row = api.tables[LS].rows[uuidlib.UUID(info.uuid)]
            snap.foreign_ips[node] = list(_foreign_ips(row))
        for lsp in api.tables[LSP].rows.values():
            ext = lsp.external_ids
            key = pod_key_from_port(lsp.name, ext)
            if key is None:
                continue
            port = NbPort(uuid=str(lsp.uuid), name=lsp.name, switch_uuid=holder.get(lsp.uuid),
                          addresses=tuple(lsp.addresses), external_ids=_ext_tuple(dict(ext)))
            if key in snap.ports:
                snap.extra_ports.append((key, port))
            else:
                snap.ports[key] = port
    return snap


def port_ip(port: NbPort) -> ipaddress.IPv4Address | None:
    return next(_addresses_ips(port.addresses), None)
