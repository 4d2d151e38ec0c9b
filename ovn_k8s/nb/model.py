"""Desired and actual NB rows as plain data (pure: no ovsdbapp import).

A `Row` is what a builder wants to exist. Its identity is (table, id): the id is stored in
external_ids[ovn-k8s/id] (for tables with a unique name index, id == name, so rows made by
other tools or by hand can be adopted by name). `columns` hold the full value of every column
the row owns; columns not listed (a switch's `ports`, a port's `up`) are never touched. A row
that lives inside another (a port in a switch, a route in a router) names its `parent`; it is
linked into the parent's column by mutation, so concurrent writers of sibling rows do not
conflict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
NAMED_TABLES = frozenset({"Logical_Switch_Port", "Logical_Router_Port", "Load_Balancer_Group"})
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
# Write order: roots before the rows that refer to them (one transaction either way, but a
# stable order keeps logs and plans readable).
TABLE_ORDER = ("Load_Balancer_Group", "Load_Balancer", "Logical_Router", "Logical_Switch",
               "Logical_Router_Port", "Logical_Switch_Port", "Logical_Router_Static_Route", "NAT",
               "ACL", "Chassis_Template_Var")
