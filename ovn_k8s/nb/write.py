"""The one column writer of the NB engine: how a desired value lands on an IDL row.

Both modes of the engine (`apply.ApplyCommand`, the full scan, and `keyed.KeyedApplyCommand`,
the per-key cache) write through these functions, inside an ovsdbapp command's `run_idl`.

- Values are compared with what the IDL row holds now, in one canonical form
  (`plan.normalize`), so an unchanged column costs a comparison and no write.
- Maps are written as a delta (`setkey` / `delkey`): the result is the whole desired map
  (V7: a key we no longer want is removed, never merged), and the wire carries only the keys
  that changed, as mutations that do not conflict with writers of other keys.
- Sets and scalars are assigned whole; python-ovs wants both as lists where the column is a
  set or optional.
- Ownership (`ovn-k8s/owner`, `ovn-k8s/id`) is added to `external_ids` here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ovn_k8s import naming
from ovn_k8s.nb.model import NO_EXTERNAL_IDS, Ref, Row
from ovn_k8s.nb.plan import normalize

Resolve = Callable[[Ref], Any]


def ownership(row: Row) -> dict[str, str]:
    return {naming.OWNER_KEY: row.owner, naming.ID_KEY: row.id}


def resolve(value: Any, lookup: Resolve) -> Any:
    """Replace every `Ref` in a desired value by the IDL row it names."""
    if isinstance(value, Ref):
        return lookup(value)
    if isinstance(value, Mapping):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [resolve(v, lookup) for v in value]
    return value


def column_value(table: Any, column: str, value: Any) -> Any:
    """The form python-ovs wants: maps as dicts, sets and optional scalars as lists."""
    ctype = table.columns[column].type
    if ctype.is_map():
        return dict(value or {})
    if ctype.is_set() or ctype.is_optional():
        if value is None:
            return []
        return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
    return value


def _comparable(value: Any) -> Any:
    """Rows (resolved references, or references read from the IDL) compare by UUID."""
    if isinstance(value, Mapping):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_comparable(v) for v in value]
    uuid = getattr(value, "uuid", None)
    return str(uuid) if uuid is not None and not isinstance(value, str) else value


def desired_columns(row: Row, lookup: Resolve | None = None) -> dict[str, Any]:
    """Every column the row owns, references resolved, external_ids with ownership."""
    out = {}
    for col, val in row.columns.items():
        out[col] = resolve(val, lookup) if lookup is not None else val
    if row.table not in NO_EXTERNAL_IDS:
        out["external_ids"] = {**row.columns.get("external_ids", {}), **ownership(row)}
    return out


def insert(txn: Any, table: Any, row: Row, lookup: Resolve | None = None) -> Any:
    """A new IDL row with every column set (V2: one insert, no follow-up updates)."""
    irow = txn.insert(table)
    for col, val in desired_columns(row, lookup).items():
        setattr(irow, col, column_value(table, col, val))
    return irow


def update(irow: Any, table: Any, row: Row, lookup: Resolve | None = None,
           columns: Mapping[str, Any] | None = None) -> bool:
    """Make the row's owned columns (or only `columns`, a subset) equal to `row`; True when
    anything was written. external_ids always gets the ownership keys."""
    wanted = desired_columns(row, lookup)
    if columns is not None:
        wanted = {c: v for c, v in wanted.items() if c in columns or c == "external_ids"}
    wrote = False
    for col, value in wanted.items():
        ctype = table.columns[col].type
        actual = getattr(irow, col)
        if ctype.is_map():
            value = dict(value or {})
            # external_ids the row does not own: only our two keys are ours to set.
            partial = col == "external_ids" and "external_ids" not in row.columns
            for key in () if partial else actual.keys() - value.keys():
                irow.delkey(col, key)
                wrote = True
            for key, val in value.items():
                if key not in actual or _comparable(actual[key]) != _comparable(val):
                    irow.setkey(col, key, val)
                    wrote = True
        elif normalize(_comparable(actual)) != normalize(_comparable(value)):
            setattr(irow, col, column_value(table, col, value))
            wrote = True
    return wrote


def holds(holder: Any, column: str, child_uuid: Any) -> bool:
    return any(ref.uuid == child_uuid for ref in getattr(holder, column))
