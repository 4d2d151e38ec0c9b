"""The cached, batched, per-key mode of the NB engine (the watcher's pods and services).

    controller key ("ns/name") --desired rows (pure builders)--> KeyedRows.apply(batch)
        --compare with the applied cache (no NB read)--> changed keys only
        --KeyedApplyCommand: ONE transaction for the batch--> cache updated after commit

`apply.ApplyCommand` scans whole tables to plan, which suits the topology commands and a
start-up repair but costs O(all rows) per transaction. Here the engine remembers, per key,
the rows it last wrote (or found at start-up) with their UUIDs and the parents that hold
them, so an unchanged key costs a dict comparison and a changed key costs one lookup by UUID
per row. Rows are written by `nb.write` (the same column writer as the full scan), children
are linked into and out of their parents by set mutation (addvalue/delvalue), so concurrent
writers of sibling rows never conflict and parents are never rewritten.

A key fails alone: a row whose parent is missing (`MissingParent`) or whose unique name is
held by another owner (`RowTaken`) fails its key before anything of that key is written, and
the rest of the batch commits. ovsdbapp re-runs `run_idl` on TRY_AGAIN against fresh IDL
state, so every decision that depends on the NB is taken there, and the cache is changed
only after the commit succeeded.

Identity is (table, external_ids:ovn-k8s/id), as in the full scan (V4: names are not unique).
`scan` seeds the cache from the NB: it reports each key's rows and the duplicates to delete.

A transaction may have committed although we were told it failed: the leader of a clustered
NB dies after committing and before replying (python-ovs answers TRY_AGAIN, ovsdbapp re-runs
the command), or the reply does not come in time (we raise). A row the cache does not place
is then looked up by identity before one is inserted: on every re-run of `run_idl`, and on the
next apply of a key whose transaction failed (its rows are kept as unverified, with the rows
it was creating as placeholders without a UUID, so a key deleted meanwhile still deletes
them). Nothing is written twice and nothing is lost (tests/integration/test_raft_nb.py).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovs_command
from ovsdbapp.backend.ovs_idl import idlutils

from ovn_k8s.errors import InvalidObject, NotReadyError
from ovn_k8s.nb import write
from ovn_k8s.nb.connection import transaction
from ovn_k8s.nb.model import (
    CHILD_TABLES,
    IDL_INDEXES,
    NAMED_TABLES,
    Parent,
    Ref,
    Row,
    identity,
    plain,
    row_id,
    row_owner,
)
from ovn_k8s.nb.plan import normalize

LOG = logging.getLogger(__name__)
Ident = tuple[str, str]                       # (table, ovn-k8s/id)
# (table, id, external_ids) -> the controller key a row belongs to, or None: not this scan's
KeyOf = Callable[[str, str, Mapping[str, str]], "str | None"]

# Which parent columns may hold a row of each table (for unlinking and for the scan).
LINKS: dict[str, tuple[tuple[str, str], ...]] = {
    "Logical_Switch_Port": (("Logical_Switch", "ports"),),
    "Logical_Router_Port": (("Logical_Router", "ports"),),
    "Logical_Router_Static_Route": (("Logical_Router", "static_routes"),),
    "NAT": (("Logical_Router", "nat"),),
    "ACL": (("Logical_Switch", "acls"), ("Port_Group", "acls")),
    "Load_Balancer": (("Load_Balancer_Group", "load_balancer"), ("Logical_Router", "load_balancer"),
                      ("Logical_Switch", "load_balancer")),
}


class MissingParent(NotReadyError):
    """The parent a row must be linked into does not exist (yet)."""


class RowTaken(InvalidObject):
    """A row with the same unique name exists and belongs to another owner of ours."""


@dataclass(frozen=True, slots=True)
class Applied:
    """A row as the NB holds it: as we last wrote it, or as `scan` found it."""

    row: Row
    uuid: str                      # "" for a row a failed transaction was creating
    parents: frozenset[Parent] = frozenset()
    verified: bool = True          # False: a transaction with this row failed; re-read it


@dataclass(slots=True)
class Change:
    """Make the rows of one key equal `desired`; `existing` is what we believe is there."""

    key: str
    desired: dict[Ident, Row]
    existing: dict[Ident, Applied]


@dataclass(slots=True)
class Outcome:
    """What one `apply` did: per key, the rows now in the NB, or the error that failed it."""

    written: dict[str, dict[Ident, Applied]] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    wrote: bool = False          # a transaction with changes was committed


@dataclass(slots=True)
class ScanResult:
    found: dict[str, dict[Ident, Applied]] = field(default_factory=dict)
    duplicates: list[tuple[str, Applied]] = field(default_factory=list)   # extra rows of an identity


def rows_by_ident(rows: Iterable[Row]) -> dict[Ident, Row]:
    return {(r.table, r.id): r for r in rows}


def same(desired: Mapping[Ident, Row], existing: Mapping[Ident, Applied]) -> bool:
    """True when the NB already holds exactly the desired rows (by the applied cache)."""
    if desired.keys() != existing.keys():
        return False
    for ident, row in desired.items():
        app = existing[ident]
        if not app.verified:
            return False
        if (app.row is row or app.row == row) and app.parents is _parents_of(row):
            continue                   # the common case: as last written (parent sets are shared)
        if app.row.owner != row.owner or app.parents != _parents_of(row):
            return False
        if app.row.columns.keys() != row.columns.keys() or any(
                normalize(v) != normalize(app.row.columns[c]) for c, v in row.columns.items()):
            return False
    return True


# One frozenset per distinct set of parents (a few per node), shared by every cached row: at
# 10k pods a frozenset per row would cost ~2 MB of the watcher's memory.
_PARENT_SETS: dict[frozenset[Parent], frozenset[Parent]] = {}


def _parent_set(parents: Iterable[Parent]) -> frozenset[Parent]:
    key = frozenset(parents)
    return _PARENT_SETS.setdefault(key, key)


_ONE_PARENT: dict[Parent | None, frozenset[Parent]] = {}


def _parents_of(row: Row) -> frozenset[Parent]:
    """{row.parent} (or the empty set), the shared instance."""
    found = _ONE_PARENT.get(row.parent)
    if found is None:
        found = _ONE_PARENT[row.parent] = _parent_set((row.parent,) if row.parent is not None else ())
    return found


class _ParentIndex:
    """Parent rows of one run, looked up by identity: one pass over a parent table, at most."""

    def __init__(self, tables: Any) -> None:
        self._tables = tables
        self._index: dict[str, dict[str, Any]] = {}

    def get(self, table: str, rid: str) -> Any | None:
        index = self._index.get(table)
        if index is None:
            index = self._index[table] = {}
            for row in sorted(self._tables[table].rows.values(), key=lambda r: str(r.uuid)):
                pid = row_id(table, row)
                if pid is not None and row_owner(table, row) is not None:
                    index.setdefault(pid, row)      # duplicates: the lowest UUID, as the scan
        return index.get(rid)

    def ours(self, table: str, row: Any) -> Parent | None:
        pid = row_id(table, row)
        return Parent(table, pid, "") if pid is not None and row_owner(table, row) else None


def _unique_match(table: Any, row: Row) -> Any | None:
    """An existing row with the same unique name (the only way a second row cannot be made)."""
    if row.table not in NAMED_TABLES or "name" not in row.columns:
        return None
    name = row.columns["name"]
    try:
        return next(idlutils.index_lookup_all(table, name=name), None)
    except KeyError:                          # no index registered: scan
        return next((r for r in table.rows.values() if r.name == name), None)


class KeyedApplyCommand(ovs_command.BaseCommand):
    """Write the changes of a batch of keys in the enclosing transaction.

    After commit, `outcome.written[key]` holds each changed key's rows with their real UUIDs
    and `outcome.errors[key]` the reason a key was left as it was.
    """

    def __init__(self, api: Any, changes: Iterable[Change],
                 delete: Iterable[Applied] = ()) -> None:
        super().__init__(api)
        self.changes = list(changes)
        self.delete = list(delete)
        self.outcome = Outcome()
        self._inserted: dict[tuple[str, Ident], Any] = {}
        self._runs = 0
        self._new: dict[Ident, Any] = {}
        self._new_children: dict[tuple[Ident, str], list[Any]] = {}

    def __str__(self) -> str:
        return f"KeyedApplyCommand({len(self.changes)} keys, {len(self.delete)} deletions)"

    def run_idl(self, txn: Any) -> None:
        tables = self.api.tables
        self.outcome = Outcome()
        self._inserted = {}
        # ovsdbapp runs us again after TRY_AGAIN, which may follow a commit whose reply was
        # lost (a cluster leader died): from the second run on, rows are found by identity.
        self._runs += 1
        self._new = {}
        self._new_children = {}
        parents = _ParentIndex(tables)
        for change in self.changes:
            try:
                targets = self._check(tables, parents, change)
            except (MissingParent, RowTaken) as exc:
                self.outcome.errors[change.key] = exc
                continue
            written: dict[Ident, Applied] = {}
            # Parents before children: a key may hold both (a port group and its ACLs).
            for ident, row in sorted(change.desired.items(), key=lambda i: i[1].table in CHILD_TABLES):
                written[ident] = self._ensure(txn, tables, parents, change, row, targets[ident])
            # Children before parents: a child is unlinked from a parent still in the NB.
            for ident, applied in sorted(change.existing.items(),
                                         key=lambda i: i[1].row.table not in CHILD_TABLES):
                if ident not in change.desired:
                    self._delete(tables, parents, applied)
            self.outcome.written[change.key] = written
        for applied in sorted(self.delete, key=lambda a: a.row.table not in CHILD_TABLES):
            self._delete(tables, parents, applied)
        # V3: a parent inserted here gets its children set directly, never by mutation.
        for ((ptable, pid), column), children in self._new_children.items():
            setattr(self._new[(ptable, pid)], column, children)

    # -- per key: every check before any write, so a failing key writes nothing ---------------
    def _check(self, tables: Any, parents: _ParentIndex, change: Change) -> dict[Ident, Any]:
        targets: dict[Ident, Any] = {}
        for ident, row in change.desired.items():
            if row.parent is not None and (row.parent.table, row.parent.id) not in change.desired \
                    and parents.get(row.parent.table, row.parent.id) is None:
                raise MissingParent(f"{row.parent.table} {row.parent.id!r} does not exist in "
                                    f"the NB (needed by {row.table} {row.id})")
            table = tables[row.table]
            applied = change.existing.get(ident)
            irow = table.rows.get(uuidlib.UUID(applied.uuid)) if applied and applied.uuid else None
            if irow is None:
                irow = _unique_match(table, row)
                if irow is None and (self._runs > 1 or (applied is not None and not applied.verified)):
                    irow = parents.get(row.table, row.id)     # committed, reply lost
                if irow is not None:
                    owner = row_owner(row.table, irow)
                    if owner and owner != row.owner:
                        raise RowTaken(f"{row.table} {row.columns.get('name')} exists and "
                                       f"belongs to {owner}")
            targets[ident] = irow
        return targets

    def _ensure(self, txn: Any, tables: Any, parents: _ParentIndex, change: Change, row: Row,
                irow: Any | None) -> Applied:
        table = tables[row.table]
        want = None
        new_parent = False
        if row.parent is not None:
            want = self._new.get((row.parent.table, row.parent.id))
            new_parent = want is not None
            if want is None:
                want = parents.get(row.parent.table, row.parent.id)
        written = self._resolved(tables, parents, row)
        if irow is not None and any((row.table, col) in IDL_INDEXES and getattr(irow, col) != val
                                    for col, val in row.columns.items()):
            # An indexed column is never written in place (model.IDL_INDEXES): replace the row.
            self._delete(tables, parents, Applied(row, str(irow.uuid), frozenset(), verified=False))
            irow = None
        if irow is None:
            irow = write.insert(txn, table, written)
            self._new[(row.table, row.id)] = irow
            if new_parent:
                self._link_new(row.parent, irow)
            elif want is not None:
                want.addvalue(row.parent.column, irow)
            self._inserted[(change.key, (row.table, row.id))] = irow
            self.outcome.wrote = True
            LOG.debug("%s: create %s %s", change.key, row.table, row.id)
            return Applied(row, str(irow.uuid), _parents_of(row))
        if write.update(irow, table, written):
            self.outcome.wrote = True
        applied = change.existing.get((row.table, row.id))
        holders = self._holders(tables, parents, row.table, irow, applied)
        for holder, column in holders:
            if want is None or holder.uuid != want.uuid:
                holder.delvalue(column, irow)
                self.outcome.wrote = True
        if want is not None and not any(h.uuid == want.uuid for h, _ in holders):
            if new_parent:
                self._link_new(row.parent, irow)
            else:
                want.addvalue(row.parent.column, irow)
            self.outcome.wrote = True
        return Applied(row, str(irow.uuid), _parents_of(row))

    def _link_new(self, parent: Parent, child: Any) -> None:
        self._new_children.setdefault(((parent.table, parent.id), parent.column), []).append(child)

    def _resolved(self, tables: Any, parents: _ParentIndex, row: Row) -> Row:
        """The row with every `Ref` in its columns replaced by the IDL row it names. A
        reference in a set column to a row that does not exist is left out (a port group's
        member whose port is gone: the weak reference would go anyway)."""
        if not any(isinstance(v, Ref) or (isinstance(v, (list, tuple)) and v and isinstance(v[0], Ref))
                   for v in row.columns.values()):
            return row
        columns: dict[str, Any] = {}
        for col, value in row.columns.items():
            if isinstance(value, Ref):
                target = self._lookup(tables, parents, value)
                if target is None:
                    raise MissingParent(f"{value.table} {value.id!r} does not exist in the NB "
                                        f"(needed by {row.table} {row.id})")
                columns[col] = target
            elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Ref):
                columns[col] = [t for t in (self._lookup(tables, parents, v) for v in value)
                                if t is not None]
            else:
                columns[col] = value
        return dataclasses.replace(row, columns=columns)

    def _lookup(self, tables: Any, parents: _ParentIndex, ref: Ref) -> Any | None:
        new = self._new.get((ref.table, ref.id))
        if new is not None:
            return new
        if ref.table in NAMED_TABLES:
            # Rows of any owner (a port group lists pod ports), by their unique name.
            return _unique_match(tables[ref.table], Row(ref.table, ref.id, "", {"name": ref.id}))
        return parents.get(ref.table, ref.id)

    def _holders(self, tables: Any, parents: _ParentIndex, table: str, irow: Any,
                 applied: Applied | None) -> list[tuple[Any, str]]:
        """Our parents that hold the row: the cache's, when it knows this row (its set is not
        read back: a group holds thousands of load balancers, and a mutation that removes a
        non-member changes nothing), else a scan of the parent tables."""
        if applied is not None and applied.verified and applied.uuid == str(irow.uuid):
            found = []
            for parent in applied.parents:
                prow = parents.get(parent.table, parent.id)
                if prow is not None:
                    found.append((prow, parent.column))
            return found
        out = []
        for ptable, column in LINKS.get(table, ()):
            if ptable not in tables:
                continue
            for prow in tables[ptable].rows.values():
                if parents.ours(ptable, prow) is not None and write.holds(prow, column, irow.uuid):
                    out.append((prow, column))
        return out

    def _delete(self, tables: Any, parents: _ParentIndex, applied: Applied) -> None:
        table = applied.row.table
        irow = tables[table].rows.get(uuidlib.UUID(applied.uuid)) if applied.uuid else None
        if irow is None and not applied.verified:
            irow = parents.get(table, applied.row.id)       # made by a commit we were not told of
        if irow is None:
            return
        if table in CHILD_TABLES:         # strong references: unlink before deleting
            for holder, column in self._holders(tables, parents, table, irow, applied):
                holder.delvalue(column, irow)
        irow.delete()                      # weak references (load balancers) go with it
        self.outcome.wrote = True
        LOG.debug("delete %s %s", table, applied.row.id)

    def post_commit(self, txn: Any) -> None:
        for (key, ident), irow in self._inserted.items():
            real = txn.get_insert_uuid(irow.uuid)
            if real is not None:
                old = self.outcome.written[key][ident]
                self.outcome.written[key][ident] = Applied(old.row, str(real), old.parents)


class _ScanCommand(ovs_command.ReadOnlyCommand):
    def __init__(self, api: Any, fn: Callable[[Any], Any]) -> None:
        super().__init__(api)
        self.fn = fn

    def run_idl(self, txn: Any) -> None:
        self.result = self.fn(self.api.tables)


def scan_tables(tables: Any, *, key_of: KeyOf, columns: Mapping[str, Iterable[str]]) -> ScanResult:
    """Every row of `columns`' tables that `key_of` assigns to a key, in the plain form of
    `Row`, with our parents that hold it. Of two rows of one identity the lowest UUID is kept
    and the other reported as a duplicate."""
    result = ScanResult()
    holders: dict[Any, set[Parent]] = {}
    index = _ParentIndex(tables)
    for table in columns:
        for ptable, column in LINKS.get(table, ()):
            if ptable not in tables:
                continue
            for prow in tables[ptable].rows.values():
                parent = index.ours(ptable, prow)
                if parent is None:
                    continue
                parent = Parent(ptable, parent.id, column)
                for child in getattr(prow, column):
                    holders.setdefault(child.uuid, set()).add(parent)
    for table, cols in columns.items():
        cols = tuple(cols)
        schema = tables[table]
        for irow in schema.rows.values():
            rid, owner, ext = identity(table, irow)
            if rid is None:
                continue
            key = key_of(table, rid, ext)
            if key is None:
                continue
            parents = _parent_set(holders.get(irow.uuid, ()))
            row = Row(table, rid, owner or "", plain(schema, irow, cols, strip_owner=True, external_ids=ext),
                      parent=next(iter(parents)) if len(parents) == 1 else None)
            applied = Applied(row, str(irow.uuid), parents)
            per_key = result.found.setdefault(key, {})
            other = per_key.get((table, rid))
            if other is None:
                per_key[(table, rid)] = applied
            elif uuidlib.UUID(other.uuid) < irow.uuid:     # the lowest UUID is kept
                result.duplicates.append((key, applied))
            else:
                per_key[(table, rid)] = applied
                result.duplicates.append((key, other))
    return result


class KeyedRows:
    """The applied cache and the one way the watcher's controllers write the NB.

    Thread-safe: calls are serialised.
    """

    def __init__(self, api: Any, *, timeout: float = 30.0) -> None:
        self.api = api
        self.timeout = timeout
        self._lock = threading.RLock()
        self._applied: dict[str, dict[Ident, Applied]] = {}
        self.transactions = 0                 # committed transactions that wrote something

    # -- the cache -----------------------------------------------------------------------------
    def get(self, key: str) -> dict[Ident, Applied]:
        with self._lock:
            return dict(self._applied.get(key, {}))

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._applied)

    def items(self) -> list[tuple[str, dict[Ident, Applied]]]:
        with self._lock:
            return [(k, dict(v)) for k, v in self._applied.items()]

    def seed(self, found: Mapping[str, Mapping[Ident, Applied]], *, replace: bool = True) -> None:
        with self._lock:
            if replace:
                self._applied = {}
            for key, rows in found.items():
                if rows:
                    self._applied[key] = dict(rows)
                else:
                    self._applied.pop(key, None)

    def forget(self, key: str) -> None:
        """The NB changed behind the cache's back: the next apply of the key re-checks it."""
        with self._lock:
            self._applied.pop(key, None)

    def unchanged(self, key: str, desired: Mapping[Ident, Row]) -> bool:
        with self._lock:
            return same(desired, self._applied.get(key, {}))

    # -- NB access -----------------------------------------------------------------------------
    def scan(self, *, key_of: KeyOf, columns: Mapping[str, Iterable[str]]) -> ScanResult:
        """Read what we own (see `scan_tables`), in the connection's thread."""
        cols = {t: tuple(c) for t, c in columns.items()}
        return self.read(lambda tables: scan_tables(tables, key_of=key_of, columns=cols))

    def read(self, fn: Callable[[Any], Any]) -> Any:
        """Run a pure read `fn(tables)` against the IDL, consistently, in its own thread."""
        cmd = _ScanCommand(self.api, fn)
        cmd.execute(check_error=True, log_errors=False)
        return cmd.result

    def apply(self, desired: Mapping[str, Mapping[Ident, Row]], *,
              delete: Iterable[Applied] = (), force: Iterable[str] = ()) -> Outcome:
        """Make each key's rows equal its desired rows (an empty mapping deletes them), in ONE
        transaction for the batch; keys whose rows equal the cache are skipped (no write at
        all when nothing changed), unless listed in `force`. `delete` names extra rows to
        remove (duplicates, rows of keys that are gone). Raises on a transaction failure (the
        caller retries or splits the batch); per-key failures are in `Outcome.errors`."""
        forced = set(force)
        with self._lock:
            changes = [Change(key, dict(rows), dict(self._applied.get(key, {})))
                       for key, rows in desired.items()
                       if key in forced or not same(rows, self._applied.get(key, {}))]
            deletions = list(delete)
            if not changes and not deletions:
                return Outcome()
            cmd = KeyedApplyCommand(self.api, changes, deletions)
            try:
                with transaction(self.api, timeout=self.timeout) as txn:
                    txn.add(cmd)
            except Exception:
                # The NB may not be what the cache says (a row unlinked or deleted behind our
                # back, or the transaction committed after all): the next apply of these keys
                # re-reads where their rows are linked, and finds the rows it was creating by
                # identity (placeholders without a UUID) instead of creating them again.
                for change in changes:
                    rows = {i: dataclasses.replace(a, verified=False)
                            for i, a in self._applied.get(change.key, {}).items()}
                    for ident, row in change.desired.items():
                        rows.setdefault(ident, Applied(row, "", verified=False))
                    if rows:
                        self._applied[change.key] = rows
                raise
            outcome = cmd.outcome
            if outcome.wrote:
                self.transactions += 1
            for key, rows in outcome.written.items():
                if rows:
                    self._applied[key] = rows
                else:
                    self._applied.pop(key, None)
            return outcome
