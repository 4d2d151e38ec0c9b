"""ApplyCommand against a real NB ovsdb-server: one transaction, idempotent, owner-scoped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s.errors import ConfigError
from ovn_k8s.nb import connection
from ovn_k8s.nb.model import Parent, Ref, Row, by_name
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


def test_members_are_linked_by_mutation_and_members_added_by_hand_stay(lab: Lab, nb: Any) -> None:
    """A router's load_balancer shared with users: we add our LB when missing, never drop theirs."""
    LR, LB = "Logical_Router", "Load_Balancer"

    def build(view: Any) -> list[Row]:
        return [Row(LB, "lb:ours", "gw:a", {"name": "ours", "protocol": "tcp", "external_ids": {}}),
                Row(LR, "router:a", "gw:a", {"name": "a", "external_ids": {}},
                    members={"load_balancer": (Ref(LB, "lb:ours"),)})]

    def lbs_of_router() -> set[str]:
        names = {r["_uuid"]: r["name"] for r in rows(lab, LB, "_uuid", "name")}
        (router,) = rows(lab, LR, "load_balancer", where=["name=a"])
        value = router["load_balancer"]
        return {names[u] for u in (value if isinstance(value, list) else [value] if value else [])}

    assert apply_rows(nb, scopes=["gw:a"], build=build, timeout=10).summary() == "+2 ~0 -0"
    assert lbs_of_router() == {"ours"}
    # the original walkthrough: lb-add, then `set logical_router ... load_balancer=` (whole column)
    lab.nbctl("lb-add", "theirs", "10.10.1.12:32350", "192.168.1.2:80")
    theirs = lab.nbctl("--bare", "--columns=_uuid", "find", LB, "name=theirs")
    lab.nbctl("set", LR, "a", f"load_balancer={theirs}")
    wait_for(lambda: [lb.name for lb in next(iter(nb.tables[LR].rows.values())).load_balancer] == ["theirs"],
             10, "the IDL to see the hand-made change")
    plan = apply_rows(nb, scopes=["gw:a"], build=build, timeout=10)
    assert plan.summary() == "+0 ~1 -0"
    assert lbs_of_router() == {"ours", "theirs"}
    before = nb_dump(lab)
    assert not apply_rows(nb, scopes=["gw:a"], build=build, timeout=10)
    assert nb_dump(lab) == before
    # deleting the owner's rows leaves the user's load balancer alone
    apply_rows(nb, scopes=["gw:a"], build=lambda v: [], timeout=10)
    assert identities(lab) == {(LB, "theirs")}


def test_a_switch_made_by_hand_is_reachable_by_name(lab: Lab, nb: Any) -> None:
    """`ovn-nbctl ls-add` makes a switch without our identity: builders name it by_name(name) to
    put a port into it (by mutation); the switch itself is never adopted or rewritten."""
    lab.nbctl("ls-add", "hand", "--", "set", "logical_switch", "hand", "other_config:subnet=10.9.0.0/24")
    wait_for(lambda: len(nb.tables[LS].rows) == 1, 10, "the IDL to see the switch")
    before = rows(lab, LS, "_uuid", "external_ids", "other_config")
    seen: list[str] = []

    def build(view: Any) -> list[Row]:
        seen.extend(sw.other_config["subnet"] for sw in view.rows(LS, by_name("hand")))
        return [Row(LSP, "p1", "task:1", {"name": "p1", "addresses": ["unknown"], "external_ids": {}},
                    parent=Parent(LS, by_name("hand"), "ports"))]

    assert apply_rows(nb, scopes=["task:1"], build=build, timeout=10).summary() == "+1 ~0 -0"
    assert seen == ["10.9.0.0/24"]
    assert lab.nbctl("lsp-get-ls", "p1").endswith("(hand)")
    assert not apply_rows(nb, scopes=["task:1"], build=build, timeout=10)
    apply_rows(nb, scopes=["task:1"], build=lambda v: [], timeout=10)
    assert rows(lab, LS, "_uuid", "external_ids", "other_config") == before
    assert identities(lab) == {(LS, "hand")}


def test_map_members_own_their_keys_only(lab: Lab, nb: Any) -> None:
    """external_ids/options shared with users: our keys are set (and corrected), theirs stay."""
    LR = "Logical_Router"

    def build(chassis: str) -> Any:
        return lambda view: [Row(LR, "router:a", "gw:a", {"name": "a"}, members={
            "options": {"chassis": chassis}, "external_ids": {"tenant": "coke"}})]

    assert apply_rows(nb, scopes=["gw:a"], build=build("c1"), timeout=10).summary() == "+1 ~0 -0"
    (router,) = rows(lab, LR, "options", "external_ids")
    assert router == {"options": {"chassis": "c1"},
                      "external_ids": {"tenant": "coke", "ovn-k8s/id": "router:a", "ovn-k8s/owner": "gw:a"}}
    lab.nbctl("set", LR, "a", "options:always_learn_from_arp_request=false", "external_ids:mine=yes",
              "options:chassis=wrong")
    wait_for(lambda: next(iter(nb.tables[LR].rows.values())).external_ids.get("mine") == "yes", 10,
             "the IDL to see the hand-made keys")
    assert apply_rows(nb, scopes=["gw:a"], build=build("c1"), timeout=10).summary() == "+0 ~1 -0"
    (router,) = rows(lab, LR, "options", "external_ids")
    assert router["options"] == {"chassis": "c1", "always_learn_from_arp_request": "false"}
    assert router["external_ids"]["mine"] == "yes" and router["external_ids"]["tenant"] == "coke"
    assert not apply_rows(nb, scopes=["gw:a"], build=build("c1"), timeout=10)
