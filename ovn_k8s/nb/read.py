"""Plain reads of the NB for the controllers: rows as `ActualRow`, never IDL objects.

The functions take the IDL's `tables` and run inside `KeyedRows.read` (in the connection's
thread, on a consistent replica). What they return is plain data, so everything that decides
from it (node switches, gateways) is a pure function in `ovn_k8s.desired`.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ovsdbapp.backend.ovs_idl import idlutils

from ovn_k8s.nb.model import ActualRow, Parent, identity, plain

Where = Callable[[str, str, Mapping[str, str]], bool]    # (owner, id, external_ids) -> wanted


def _select(where: Where | None, table: str, irow: Any) -> bool:
    rid, owner, ext = identity(table, irow)
    if rid is None:
        return False
    return where is None or where(owner or "", rid, ext)


def _actual(name: str, table: Any, irow: Any, columns: Iterable[str],
            parent: Parent | None = None) -> ActualRow:
    rid, owner, ext = identity(name, irow)
    return ActualRow(table=name, id=rid or "", owner=owner, uuid=str(irow.uuid),
                     columns=plain(table, irow, columns, external_ids=dict(ext)), parent=parent)


def rows(tables: Any, table: str, *, where: Where, columns: Iterable[str]) -> list[ActualRow]:
    """Rows of `table` that `where(owner, id, external_ids)` selects, lowest UUID first."""
    cols = tuple(columns)
    schema = tables[table]
    out = []
    for irow in schema.rows.values():
        if _select(where, table, irow):
            out.append(_actual(table, schema, irow, cols))
    return sorted(out, key=lambda r: r.uuid)


def by_name(tables: Any, table: str, name: str, *, columns: Iterable[str]) -> list[ActualRow]:
    """Rows of `table` named `name`, through the IDL's name index when there is one."""
    schema = tables[table]
    try:
        found = list(idlutils.index_lookup_all(schema, name=name))
    except KeyError:
        found = [r for r in schema.rows.values() if r.name == name]
    cols = tuple(columns)
    return sorted((_actual(table, schema, r, cols) for r in found), key=lambda r: r.uuid)


def children(tables: Any, parent: ActualRow, column: str, *, columns: Iterable[str],
             where: Where | None = None) -> list[ActualRow]:
    """The rows a parent row references in `column` (e.g. a switch's ports) that `where`
    selects (all when None)."""
    prow = tables[parent.table].rows.get(uuidlib.UUID(parent.uuid))
    if prow is None:
        return []
    ctype = tables[parent.table].columns[column].type
    child_table = ctype.key.ref_table_name
    schema = tables[child_table]
    cols = tuple(columns)
    link = Parent(parent.table, parent.id, column)
    return [_actual(child_table, schema, child, cols, link) for child in getattr(prow, column)
            if _select(where, child_table, child)]
