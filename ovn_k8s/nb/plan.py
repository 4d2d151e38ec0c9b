"""Diff desired rows against actual rows (pure).

The plan says which rows to create, which columns to change on which rows, which rows to move
to another parent, and which rows to delete: every actual row in the owner scope that is not
desired, and every duplicate of a desired identity (names are not unique in the NB schema, so
an earlier crash or another writer can leave two rows for one identity).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovn_k8s.nb.model import IDL_INDEXES, TABLE_ORDER, ActualRow, Ref, Row


@dataclass(frozen=True, slots=True)
class Update:
    actual: ActualRow
    desired: Row
    columns: Mapping[str, Any]      # only the columns whose value differs
    relink: bool = False            # the row must move to desired.parent
    # what of desired.members the row lacks (missing_members): written by mutation, the
    # column's other values kept
    add_members: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Plan:
    create: list[Row] = field(default_factory=list)
    update: list[Update] = field(default_factory=list)
    delete: list[ActualRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.create or self.update or self.delete)

    def summary(self) -> str:
        return f"+{len(self.create)} ~{len(self.update)} -{len(self.delete)}"


def normalize(value: Any) -> Any:
    """A canonical, hashable form: OVSDB sets are unordered and optional scalars are 0/1-sets."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), normalize_scalar(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(sorted((normalize_scalar(v) for v in value), key=repr))
    return (normalize_scalar(value),)


def normalize_scalar(value: Any) -> Any:
    if isinstance(value, Ref):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value
    return str(value)


def _order(row: Row | ActualRow) -> tuple[int, str]:
    return (TABLE_ORDER.index(row.table) if row.table in TABLE_ORDER else len(TABLE_ORDER), row.id)


def missing_members(row: Row, actual: ActualRow) -> dict[str, Any]:
    """What of `row.members` the actual row lacks: references missing from a set column, or
    map keys missing or with another value."""
    out: dict[str, Any] = {}
    for col, want in (row.members or {}).items():
        have = actual.columns.get(col)
        if isinstance(want, Mapping):
            have = dict(have or {})
            lacking_keys = {k: v for k, v in want.items()
                            if k not in have or normalize_scalar(have[k]) != normalize_scalar(v)}
            if lacking_keys:
                out[col] = lacking_keys
            continue
        present = set(have or ())
        lacking = tuple(r for r in want if r not in present)
        if lacking:
            out[col] = lacking
    return out


def plan_rows(desired: Iterable[Row], actual: Iterable[ActualRow]) -> Plan:
    wanted: dict[tuple[str, str], Row] = {}
    for row in desired:
        key = (row.table, row.id)
        if key in wanted and wanted[key] != row:
            raise ValueError(f"two different desired rows for {row.table} {row.id}")
        wanted[key] = row
    found: dict[tuple[str, str], list[ActualRow]] = {}
    for arow in actual:
        found.setdefault((arow.table, arow.id), []).append(arow)

    plan = Plan()
    for key, row in sorted(wanted.items(), key=lambda kv: _order(kv[1])):
        rows = sorted(found.pop(key, []), key=lambda r: r.uuid)
        if not rows:
            plan.create.append(row)
            continue
        keep, dupes = rows[0], rows[1:]
        plan.delete.extend(dupes)
        changed = {col: val for col, val in row.columns.items()
                   if normalize(val) != normalize(keep.columns.get(col))}
        if any((row.table, col) in IDL_INDEXES for col in changed):
            plan.delete.append(keep)      # an indexed column is never written in place
            plan.create.append(row)
            continue
        relink = row.parent is not None and row.parent != keep.parent
        missing = missing_members(row, keep)
        if changed or relink or missing or keep.owner != row.owner:
            plan.update.append(Update(actual=keep, desired=row, columns=changed, relink=relink,
                                      add_members=missing))
    for rows in found.values():
        plan.delete.extend(rows)
    plan.delete.sort(key=_order)
    return plan
