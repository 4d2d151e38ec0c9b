"""Desired and actual NB rows as plain data (pure: no ovsdbapp import).

A `Row` is what a builder wants to exist. Its identity is (table, id): the id is stored in
external_ids[ovn-k8s/id] (for tables with a unique name index, id == name, so rows made by
other tools or by hand can be adopted by name). `columns` hold the full value of every column
the row owns; columns not listed (a switch's `ports`, a port's `up`) are never touched. A row
that lives inside another (a port in a switch, a route in a router) names its `parent`; it is
linked into the parent's column by mutation, so concurrent writers of sibling rows do not
conflict. A column the row shares with users is listed in `members`, not `columns`: a
reference set (a router's `load_balancer`, to which users add load balancers by hand) or a map
(a router's `options`, to which users add keys). The row owns only those members (set values,
or map keys with their values), which are written by mutation when missing or different;
everything else in the column is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovn_k8s import naming


@dataclass(frozen=True, slots=True, order=True)
class Ref:
    """A reference to another row by identity; resolved to a row when written."""

    table: str
    id: str


@dataclass(frozen=True, slots=True)
class Parent:
    """The row and set column that hold a non-root row (e.g. Logical_Switch <id> .ports)."""

    table: str
    id: str
    column: str


@dataclass(frozen=True, slots=True)
class Row:
    table: str
    id: str
    owner: str
    columns: Mapping[str, Any] = field(default_factory=dict)
    parent: Parent | None = None
    # column -> what this row owns in it: references (a set column) or keys and their values
    # (a map column); full-scan mode only, see the module docstring. A member no longer
    # listed is not removed: it cannot be told from a user's.
    members: Mapping[str, tuple[Ref, ...] | Mapping[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class ActualRow:
    """A row as found in the NB, its columns converted to the same plain form as `Row`."""

    table: str
    id: str
    owner: str | None
    uuid: str
    columns: Mapping[str, Any] = field(default_factory=dict)
    parent: Parent | None = None


# Tables whose rows are only kept alive by a parent reference (garbage-collected otherwise).
CHILD_TABLES = frozenset({"Logical_Switch_Port", "Logical_Router_Port",
                          "Logical_Router_Static_Route", "NAT", "ACL"})
# Tables with a unique `name` index: there the id is the name.
NAMED_TABLES = frozenset({"Logical_Switch_Port", "Logical_Router_Port", "Load_Balancer_Group",
                          "Port_Group", "Address_Set"})
# Tables whose rows made by hand (`ovn-nbctl ls-add`: no identity) builders may still name,
# as `Ref(table, by_name(name))`, e.g. to put a port into a switch a user made.
BY_NAME_TABLES = frozenset({"Logical_Switch", "Logical_Router"})
# Tables without external_ids (ownership is by reserved name).
NO_EXTERNAL_IDS = frozenset({"Load_Balancer_Group"})
# Where children live: child table -> (parent table, column).
PARENT_COLUMNS = {
    "Logical_Switch_Port": ("Logical_Switch", "ports"),
    "Logical_Router_Port": ("Logical_Router", "ports"),
    "Logical_Router_Static_Route": ("Logical_Router", "static_routes"),
    "NAT": ("Logical_Router", "nat"),
    "ACL": ("Logical_Switch", "acls"),
}
# The columns the NB connection indexes in the IDL (nb/connection.py; ports are looked up by
# their unique name). python-ovs cannot keep an IDL index right when a transaction writes the
# indexed column of an existing row (3.1: the write raises once another client renamed the row;
# 4.0: the server's update for our own write raises in Idl.run and drops the row from the
# cache), so both modes of the engine replace such a row instead of writing that column.
IDL_INDEXES = frozenset({("Logical_Switch_Port", "name"),
                         # policies' port groups and address sets: found by name when made
                         ("Port_Group", "name"), ("Address_Set", "name")})
# Write order: roots before the rows that refer to them (one transaction either way, but a
# stable order keeps logs and plans readable).
TABLE_ORDER = ("Load_Balancer_Group", "Load_Balancer", "Logical_Router", "Logical_Switch",
               "Logical_Router_Port", "Logical_Switch_Port", "Logical_Router_Static_Route", "NAT",
               "ACL", "Chassis_Template_Var")


def by_name(name: str) -> str:
    """The identity under which NbView knows a BY_NAME_TABLES row that has none of its own."""
    return f"name:{name}"


# -- identity and plain values of IDL rows (duck-typed: python-ovs rows, no import needed) ------
def row_id(table: str, row: Any) -> str | None:
    """A row's identity: external_ids ovn-k8s/id; the unique name where the table has one and
    the row has no id yet (made by the original tools: adoptable); None: not an identity."""
    if table in NO_EXTERNAL_IDS:
        return row.name
    rid = row.external_ids.get(naming.ID_KEY)
    if rid is None and table in NAMED_TABLES:
        return row.name
    return rid


def identity(table: str, row: Any) -> tuple[str | None, str | None, Mapping[str, str]]:
    """(id, owner, external_ids) of an IDL row, reading external_ids once (python-ovs converts
    a column to Python on every access)."""
    if table in NO_EXTERNAL_IDS:
        return row.name, (naming.OWNER_CLUSTER if row.name in naming.LB_GROUPS else None), {}
    ext = row.external_ids
    rid = ext.get(naming.ID_KEY)
    if rid is None and table in NAMED_TABLES:
        rid = row.name
    return rid, ext.get(naming.OWNER_KEY), ext


def row_owner(table: str, row: Any) -> str | None:
    if table in NO_EXTERNAL_IDS:
        return naming.OWNER_CLUSTER if row.name in naming.LB_GROUPS else None
    return row.external_ids.get(naming.OWNER_KEY)


def plain(table: Any, row: Any, columns: Iterable[str], *, strip_owner: bool = False,
          external_ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Columns in the builders' form: maps as dicts, optional scalars as value-or-None, sets
    as sorted lists, references as the referenced row's UUID string. `strip_owner` leaves
    our two ownership keys out of external_ids (the builders never list them);
    `external_ids` is that column when the caller has read it already."""
    out: dict[str, Any] = {}
    for col in columns:
        value = external_ids if col == "external_ids" and external_ids is not None else getattr(row, col)
        ctype = table.columns[col].type
        if ctype.is_map():
            value = {k: _scalar(v) for k, v in value.items()}
            if strip_owner and col == "external_ids":
                value.pop(naming.OWNER_KEY, None)
                value.pop(naming.ID_KEY, None)
        elif ctype.is_optional():
            value = _scalar(value[0]) if value else None
        elif isinstance(value, list):
            value = sorted((_scalar(v) for v in value), key=str)
        else:
            value = _scalar(value)
        out[col] = value
    return out


def _scalar(value: Any) -> Any:
    uuid = getattr(value, "uuid", None)
    return str(uuid) if uuid is not None and not isinstance(value, str) else value
