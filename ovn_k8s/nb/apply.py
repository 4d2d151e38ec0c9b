"""Write a plan to the NB in one transaction, with the plan computed inside that transaction.

`ApplyCommand` is an ovsdbapp command: its `run_idl` reads the owned rows from the IDL, asks
the caller's `build(view)` for the desired rows, plans the difference and writes it. ovsdbapp
re-runs `run_idl` on TRY_AGAIN against fresh IDL state, so a decision taken from what was read
(a free join address, a subnet overlap check) is re-taken if a concurrent writer got there
first; `view.verify()` marks the rows whose columns such a decision depends on.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovs_command

from ovn_k8s import naming
from ovn_k8s.errors import NotReadyError
from ovn_k8s.nb import write
from ovn_k8s.nb.model import (
    BY_NAME_TABLES,
    CHILD_TABLES,
    PARENT_COLUMNS,
    ActualRow,
    Parent,
    Ref,
    Row,
    by_name,
    row_id,
    row_owner,
)
from ovn_k8s.nb.plan import Plan, plan_rows

LOG = logging.getLogger(__name__)
OWNERSHIP_KEYS = (naming.OWNER_KEY, naming.ID_KEY)
MANAGED_TABLES = ("Load_Balancer_Group", "Load_Balancer", "Logical_Router", "Logical_Switch",
                  "Logical_Router_Port", "Logical_Switch_Port", "Logical_Router_Static_Route",
                  "NAT", "ACL", "Chassis_Template_Var")


class RowView:
    """A read-only view of one NB row for builders: columns read as attributes (references as
    RowViews, so a builder can follow them), `uuid`, equality by UUID; never written.

    The full-scan mode hands builders rows through these, so nothing outside ovn_k8s.nb holds
    a python-ovs row (it could write one, or keep it beyond its transaction)."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        object.__setattr__(self, "_row", row)

    def __getattr__(self, column: str) -> Any:
        if column.startswith("_"):
            raise AttributeError(column)
        return _view(getattr(self._row, column))

    def __setattr__(self, column: str, value: Any) -> None:
        raise AttributeError(f"NB rows are read-only outside ovn_k8s.nb (tried to set {column})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RowView) and other._row.uuid == self._row.uuid

    def __hash__(self) -> int:
        return hash(self._row.uuid)

    def __repr__(self) -> str:
        return f"RowView({self._row.uuid})"


def _view(value: Any) -> Any:
    if isinstance(value, list):
        return [_view(v) for v in value]
    if isinstance(value, dict):
        return {k: _view(v) for k, v in value.items()}
    if hasattr(value, "_table") and hasattr(value, "uuid") and not isinstance(value, RowView):
        return RowView(value)            # a python-ovs row: a reference
    return value


def _raw(row: Any) -> Any:
    return row._row if isinstance(row, RowView) else row


class NbView:
    """Read access to the NB for builders, valid inside one run of `run_idl` (rows as
    RowViews; `verify` marks what a decision read)."""

    def __init__(self, idl: Any, tables: Iterable[str] = MANAGED_TABLES) -> None:
        self._idl = idl
        self._by_id: dict[tuple[str, str], list[Any]] = {}
        self._ident: dict[Any, tuple[str, str]] = {}
        self._parent: dict[Any, Parent] = {}
        self._holders: dict[Any, list[tuple[Any, str]]] = {}
        for table in tables:
            if table not in idl.tables:
                continue
            for row in idl.tables[table].rows.values():
                rid = row_id(table, row)
                if rid is None and table in BY_NAME_TABLES:
                    rid = by_name(row.name)      # made by hand: reachable by name only
                if rid is not None:
                    self._by_id.setdefault((table, rid), []).append(row)
                    self._ident[row.uuid] = (table, rid)
        for ptable, column in PARENT_COLUMNS.values():
            for prow in idl.tables[ptable].rows.values():
                pid = self._ident.get(prow.uuid)
                for child in getattr(prow, column):
                    self._holders.setdefault(child.uuid, []).append((prow, column))
                    if pid is not None:
                        self._parent[child.uuid] = Parent(ptable, pid[1], column)

    def _rows(self, table: str, rid: str) -> list[Any]:
        return sorted(self._by_id.get((table, rid), []), key=lambda r: str(r.uuid))

    def _row(self, table: str, rid: str) -> Any | None:
        rows = self._rows(table, rid)
        return rows[0] if rows else None

    def rows(self, table: str, rid: str) -> list[RowView]:
        """Every row of this identity (more than one: duplicates), lowest UUID first."""
        return [RowView(r) for r in self._rows(table, rid)]

    def row(self, table: str, rid: str) -> RowView | None:
        row = self._row(table, rid)
        return RowView(row) if row is not None else None

    def owned(self, table: str, owner_prefix: str = "") -> list[Any]:
        """Rows of `table` whose owner starts with owner_prefix (e.g. 'gateway:')."""
        out = []
        for (tbl, _), rows in self._by_id.items():
            if tbl != table:
                continue
            out.extend(r for r in rows if (row_owner(table, r) or "").startswith(owner_prefix)
                       and row_owner(table, r) is not None)
        return [RowView(r) for r in sorted(out, key=lambda r: str(r.uuid))]

    def _holders_of(self, child_uuid: Any) -> list[tuple[Any, str]]:
        """Every (row, column) that references the child row (to unlink it before deleting)."""
        return self._holders.get(child_uuid, [])

    def verify(self, row: Any, column: str) -> None:
        """Fail (and retry) the transaction if `row.column` changed since it was read."""
        _raw(row).verify(column)

    # -- conversion of IDL rows to the plain form the planner compares ----------------------
    def actual(self, table: str, row: Any, columns: Iterable[str]) -> ActualRow:
        values: dict[str, Any] = {}
        for col in columns:
            values[col] = self._plain(getattr(row, col), col == "external_ids")
        return ActualRow(table=table, id=self._ident[row.uuid][1], owner=row_owner(table, row),
                         uuid=str(row.uuid), columns=values, parent=self._parent.get(row.uuid))

    def _plain(self, value: Any, strip_owner: bool) -> Any:
        if isinstance(value, dict):
            return {k: self._plain_scalar(v) for k, v in value.items()
                    if not (strip_owner and k in OWNERSHIP_KEYS)}
        if isinstance(value, list):
            return [self._plain_scalar(v) for v in value]
        return self._plain_scalar(value)

    def _plain_scalar(self, value: Any) -> Any:
        uuid = getattr(value, "uuid", None)
        if uuid is not None:  # a reference to another row
            ident = self._ident.get(uuid)
            return Ref(*ident) if ident else Ref("?", str(uuid))
        return value


class ApplyCommand(ovs_command.BaseCommand):
    """Make the rows owned by `scopes` equal to `build(view)`, in the enclosing transaction.

    Rows outside the scopes are never deleted; a desired row found under another owner is
    adopted (its owner key is rewritten). `result` is the executed Plan.
    """

    def __init__(self, api: Any, *, scopes: Iterable[str],
                 build: Callable[[NbView], list[Row]], dry_run: bool = False) -> None:
        super().__init__(api)
        self.scopes = frozenset(scopes)
        self.build = build
        self.dry_run = dry_run

    def run_idl(self, txn: Any) -> None:
        view = NbView(self.api.idl)
        desired = self.build(view)
        wanted_ids = {(r.table, r.id) for r in desired}
        columns_of = {(r.table, r.id): (*r.columns, *(r.members or ())) for r in desired}
        actual: list[ActualRow] = []
        for table in MANAGED_TABLES:
            if table not in self.api.idl.tables:
                continue
            for row in self.api.idl.tables[table].rows.values():
                rid = row_id(table, row)
                if rid is None:
                    continue
                if row_owner(table, row) in self.scopes or (table, rid) in wanted_ids:
                    actual.append(view.actual(table, row, columns_of.get((table, rid), ())))
        plan = plan_rows(desired, actual)
        self.result = plan
        if plan and not self.dry_run:
            _write(self.api, txn, view, plan)


class ScopedApplyCommand(ApplyCommand):
    """An ApplyCommand whose owner scopes are partly decided inside the transaction.

    `build(view)` returns the desired rows and extra scopes to make equal to them (e.g. an
    external switch nobody links into any more, which must then be deleted). Both come from the
    same read, so a retried transaction re-decides both. `check(view, rows, scopes)` may raise
    to refuse the plan (e.g. a name collision with rows of another owner)."""

    def __init__(self, api: Any, *, scopes: Iterable[str],
                 build: Callable[[NbView], tuple[list[Row], Iterable[str]]],
                 check: Callable[[NbView, list[Row], frozenset[str]], None] | None = None,
                 dry_run: bool = False) -> None:
        self.base_scopes = frozenset(scopes)
        self.extra_scopes: frozenset[str] = frozenset()
        self._inner = build
        self._check = check
        super().__init__(api, scopes=self.base_scopes, build=self._build, dry_run=dry_run)

    def _build(self, view: NbView) -> list[Row]:
        rows, extra = self._inner(view)
        self.extra_scopes = frozenset(extra)
        self.scopes = self.base_scopes | self.extra_scopes
        if self._check is not None:
            self._check(view, rows, self.scopes)
        return rows


def _write(api: Any, txn: Any, view: NbView, plan: Plan) -> None:
    idl = api.idl
    created: dict[tuple[str, str], Any] = {}
    children_of_new: dict[tuple[str, str, str], list[Any]] = {}

    def lookup(ref: Ref) -> Any:
        row = created.get((ref.table, ref.id)) or view._row(ref.table, ref.id)
        if row is None:
            raise NotReadyError(f"{ref.table} {ref.id!r} does not exist in the NB "
                                "(has master-init run?)")
        return row

    def link(child: Any, parent: Parent) -> None:
        key = (parent.table, parent.id)
        if key in created:
            children_of_new.setdefault((parent.table, parent.id, parent.column), []).append(child)
        else:
            lookup(Ref(parent.table, parent.id)).addvalue(parent.column, child)

    for row in plan.create:
        created[(row.table, row.id)] = txn.insert(idl.tables[row.table])
    for row in plan.create:
        irow = created[(row.table, row.id)]
        table = idl.tables[row.table]
        values = write.desired_columns(row, lookup)
        for col, want in (row.members or {}).items():
            if isinstance(want, Mapping):      # e.g. external_ids: with the ownership keys
                values[col] = {**values.get(col, {}), **want}
            else:
                values[col] = [lookup(ref) for ref in want]
        for col, val in values.items():
            setattr(irow, col, write.column_value(table, col, val))
        if row.parent is not None:
            link(irow, row.parent)
        LOG.debug("create %s %s", row.table, row.id)
    for upd in plan.update:
        table = idl.tables[upd.desired.table]
        irow = table.rows[uuidlib.UUID(upd.actual.uuid)]
        write.update(irow, table, upd.desired, lookup, columns=upd.columns)
        for col, want in upd.add_members.items():   # by mutation: what users added stays
            if isinstance(want, Mapping):
                for key, val in want.items():
                    irow.setkey(col, key, val)
            else:
                for ref in want:
                    irow.addvalue(col, lookup(ref))
        if upd.relink:
            for holder, column in view._holders_of(irow.uuid):
                holder.delvalue(column, irow)
            assert upd.desired.parent is not None
            link(irow, upd.desired.parent)
        LOG.debug("update %s %s: %s", upd.desired.table, upd.desired.id, sorted(upd.columns))
    for (ptable, pid, column), children in children_of_new.items():
        setattr(created[(ptable, pid)], column, children)
    for arow in plan.delete:
        table = idl.tables[arow.table]
        irow = table.rows.get(uuidlib.UUID(arow.uuid))
        if irow is None:
            continue
        if arow.table in CHILD_TABLES:
            for holder, column in view._holders_of(irow.uuid):
                holder.delvalue(column, irow)
        irow.delete()
        LOG.debug("delete %s %s", arow.table, arow.id)

