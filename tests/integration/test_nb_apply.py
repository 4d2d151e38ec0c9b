"""ApplyCommand against a real NB ovsdb-server: one transaction, idempotent, owner-scoped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s.errors import ConfigError
from ovn_k8s.nb import connection
from ovn_k8s.nb.model import Parent, Row
from ovn_k8s.overlay import apply_rows
from sandbox.lab.cluster import Lab
from sandbox.lab.proc import wait_for
from tests.helpers import identities, nb_dump, rows

pytestmark = pytest.mark.integration
LS, LSP = "Logical_Switch", "Logical_Switch_Port"


@pytest.fixture
def nb(lab: Lab) -> Iterator[Any]:
    api = connection.connect(lab.nb, "OVN_Northbound", what="NB", timeout=10)
    yield api
    connection.disconnect(api)


def switch_rows(owner: str, name: str, ports: list[str]) -> list[Row]:
    sid = f"switch:{name}"
    return [Row(LS, sid, owner, {"name": name, "external_ids": {"k": "v"}}),
            *(Row(LSP, p, owner, {"name": p, "addresses": ["unknown"], "external_ids": {}},
                  parent=Parent(LS, sid, "ports")) for p in ports)]


def test_apply_creates_then_is_a_no_op(lab: Lab, nb: Any) -> None:
    plan = apply_rows(nb, scopes=["node:a"], build=lambda v: switch_rows("node:a", "a", ["p1", "p2"]),
                      timeout=10)
    assert plan.summary() == "+3 ~0 -0"
    before = nb_dump(lab)
    plan = apply_rows(nb, scopes=["node:a"], build=lambda v: switch_rows("node:a", "a", ["p1", "p2"]),
                      timeout=10)
    assert not plan
    assert nb_dump(lab) == before
    (sw,) = rows(lab, LS, "name", "external_ids")
    assert sw["external_ids"] == {"k": "v", "ovn-k8s/id": "switch:a", "ovn-k8s/owner": "node:a"}


def test_converges_and_never_touches_other_owners(lab: Lab, nb: Any) -> None:
    apply_rows(nb, scopes=["node:a"], build=lambda v: switch_rows("node:a", "a", ["p1", "p2"]), timeout=10)
    apply_rows(nb, scopes=["node:b"], build=lambda v: switch_rows("node:b", "b", ["q1"]), timeout=10)
    lab.nbctl("lsp-add", "a", "by-hand")       # someone else's port on our switch
    wait_for(lambda: len(nb.tables["Logical_Switch_Port"].rows) == 4, 10, "the IDL to see by-hand")
    plan = apply_rows(nb, scopes=["node:a"], build=lambda v: switch_rows("node:a", "a", ["p2", "p3"]),
                      timeout=10)
    assert plan.summary() == "+1 ~0 -1"
    assert identities(lab) == {(LS, "switch:a"), (LS, "switch:b"), (LSP, "p2"), (LSP, "p3"),
                               (LSP, "q1"), (LSP, "by-hand")}
    # desired = nothing deletes exactly what the owner has
    apply_rows(nb, scopes=["node:a"], build=lambda v: [], timeout=10)
    assert identities(lab) == {(LS, "switch:b"), (LSP, "q1")}


def test_duplicates_are_removed_and_unowned_named_rows_adopted(lab: Lab, nb: Any) -> None:
    for _ in range(2):  # two switches with the same identity (names are not unique in the NB)
        lab.nbctl("create", "Logical_Switch", "name=a",
                  'external_ids={"ovn-k8s/id"="switch:a","ovn-k8s/owner"="node:a"}')
    lab.nbctl("ls-add", "other", "--", "lsp-add", "other", "p1")  # an unowned port named p1
    # the IDL learns of rows written by others asynchronously: wait until it has them all
    wait_for(lambda: len(nb.tables["Logical_Switch"].rows) == 3 and
             len(nb.tables["Logical_Switch_Port"].rows) == 1, 10, "the IDL to see the new rows")
    apply_rows(nb, scopes=["node:a"], build=lambda v: switch_rows("node:a", "a", ["p1"]), timeout=10)
    assert identities(lab) == {(LS, "switch:a"), (LS, "other"), (LSP, "p1")}
    (p1,) = rows(lab, LSP, "external_ids", "addresses")
    assert p1["external_ids"]["ovn-k8s/owner"] == "node:a" and p1["addresses"] == "unknown"
    # the port moved into our switch; the other switch no longer holds it
    assert lab.nbctl("lsp-get-ls", "p1").endswith("(a)")


def test_an_error_in_build_writes_nothing(lab: Lab, nb: Any) -> None:
    def build(view: Any) -> list[Row]:
        raise ConfigError("overlap")

    before = nb_dump(lab)
    with pytest.raises(ConfigError, match="overlap"):
        apply_rows(nb, scopes=["node:a"], build=build, timeout=10)
    assert nb_dump(lab) == before


def test_builders_see_read_only_rows_and_follow_references(lab: Lab, nb: Any) -> None:
    """What a builder gets from the view: plain values, references it can follow, no writes."""
    apply_rows(nb, scopes=["node:a"], build=lambda v: switch_rows("node:a", "a", ["p1"]), timeout=10)
    seen: dict[str, Any] = {}

    def build(view: Any) -> list[Row]:
        sw = view.row(LS, "switch:a")
        seen["ports"] = sorted(p.name for p in sw.ports)          # a reference, followed
        seen["equal"] = view.owned(LS, "node:")[0] == sw
        sw.name = "renamed"                                        # refused
        return []

    before = nb_dump(lab)
    with pytest.raises(AttributeError, match="read-only"):
        apply_rows(nb, scopes=["node:a"], build=build, timeout=10)
    assert seen == {"ports": ["p1"], "equal": True}
    assert nb_dump(lab) == before
