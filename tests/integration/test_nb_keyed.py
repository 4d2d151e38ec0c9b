"""The NB engine's keyed mode (ovn_k8s.nb.keyed.KeyedRows) against a real NB ovsdb-server.

Rows are Logical_Switch_Ports of two keys in two switches made with ovn-nbctl; every check
reads the NB back (ovn-nbctl, and row `_version`s from the server for "nothing written")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ovn_k8s import naming
from ovn_k8s.nb import connection
from ovn_k8s.nb.keyed import KeyedRows, MissingParent, RowTaken, rows_by_ident
from ovn_k8s.nb.model import Parent, Row
from sandbox.lab.cluster import Lab
from sandbox.lab.proc import wait_for
from tests.helpers import nb_caught_up, row_versions, rows

pytestmark = pytest.mark.integration
LS, LSP = "Logical_Switch", "Logical_Switch_Port"


@pytest.fixture
def nb(lab: Lab) -> Iterator[Any]:
    for node in ("n1", "n2"):
        lab.nbctl("ls-add", node, "--", "set", "logical_switch", node,
                  f"external_ids:{naming.OWNER_KEY}=node:{node}", f"external_ids:{naming.ID_KEY}=switch:{node}")
    api = connection.connect(lab.nb, "OVN_Northbound", what="NB", timeout=10)
    yield api
    connection.disconnect(api)


def port(name: str, *, node: str = "n1", mac: str = "0a:58:0a:00:00:05", ip: str = "10.0.0.5",
         owner: str | None = None, **ext: str) -> Row:
    return Row(LSP, name, owner or f"pod:{name}", {"name": name, "addresses": [f"{mac} {ip}"],
                                                   "external_ids": {"pod": "true", **ext}},
               parent=Parent(LS, f"switch:{node}", "ports"))


def switch_ports(lab: Lab) -> dict[str, set[str]]:
    """switch name -> names of the ports it holds."""
    names = {r["_uuid"]: r["name"] for r in rows(lab, LSP, "_uuid", "name")}
    out = {}
    for sw in rows(lab, LS, "name", "ports"):
        ports = sw["ports"] if isinstance(sw["ports"], list) else [sw["ports"]]
        out[sw["name"]] = {names[u] for u in ports}
    return out


def lsps(lab: Lab) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in rows(lab, LSP, "_uuid", "name", "addresses", "external_ids")}


def test_creates_then_writes_nothing_for_unchanged_keys(lab: Lab, nb: Any) -> None:
    engine = KeyedRows(nb, timeout=10)
    out = engine.apply({"a": rows_by_ident([port("a")]), "b": rows_by_ident([port("b", node="n2")])})
    assert not out.errors and out.wrote and engine.transactions == 1
    assert switch_ports(lab) == {"n1": {"a"}, "n2": {"b"}}
    found = lsps(lab)
    assert found["a"]["external_ids"] == {naming.OWNER_KEY: "pod:a", naming.ID_KEY: "a", "pod": "true"}
    assert out.written["a"][(LSP, "a")].uuid == found["a"]["_uuid"]       # the real UUID
    versions = row_versions(lab, LS, LSP)
    again = engine.apply({"a": rows_by_ident([port("a")]), "b": rows_by_ident([port("b", node="n2")])})
    assert not again.written and not again.wrote and engine.transactions == 1
    assert row_versions(lab, LS, LSP) == versions


def test_a_change_writes_only_that_key_and_moves_between_parents(lab: Lab, nb: Any) -> None:
    engine = KeyedRows(nb, timeout=10)
    engine.apply({"a": rows_by_ident([port("a")]), "b": rows_by_ident([port("b")])})
    before = row_versions(lab, LSP)[LSP]
    uuid_b = lsps(lab)["b"]["_uuid"]
    out = engine.apply({"a": rows_by_ident([port("a")]),
                        "b": rows_by_ident([port("b", node="n2", ip="10.0.0.6", extra="1")])})
    assert set(out.written) == {"b"}
    after = row_versions(lab, LSP)[LSP]
    assert after[lsps(lab)["a"]["_uuid"]] == before[lsps(lab)["a"]["_uuid"]]   # a untouched
    found = lsps(lab)["b"]
    assert found["_uuid"] == uuid_b and found["addresses"] == "0a:58:0a:00:00:05 10.0.0.6"
    assert found["external_ids"]["extra"] == "1"
    assert switch_ports(lab) == {"n1": {"a"}, "n2": {"b"}}
    # a map key no longer wanted is removed (V7: the map is ours whole)
    engine.apply({"b": rows_by_ident([port("b", node="n2", ip="10.0.0.6")])})
    assert "extra" not in lsps(lab)["b"]["external_ids"]


def test_an_empty_key_deletes_its_rows_and_unlinks_them(lab: Lab, nb: Any) -> None:
    engine = KeyedRows(nb, timeout=10)
    engine.apply({"a": rows_by_ident([port("a")]), "b": rows_by_ident([port("b")])})
    out = engine.apply({"a": {}})
    assert out.written == {"a": {}} and engine.keys() == ["b"]
    assert set(lsps(lab)) == {"b"} and switch_ports(lab)["n1"] == {"b"}


def test_a_failing_key_writes_nothing_and_the_batch_still_commits(lab: Lab, nb: Any) -> None:
    lab.nbctl("lsp-add", "n2", "taken", "--", "set", "logical_switch_port", "taken",
              f"external_ids:{naming.OWNER_KEY}=node:n2", "addresses=router")
    nb_caught_up(nb)
    engine = KeyedRows(nb, timeout=10)
    out = engine.apply({"gone": rows_by_ident([port("gone", node="n9"), port("gone2")]),
                        "taken": rows_by_ident([port("taken")]),
                        "ok": rows_by_ident([port("ok")])})
    assert isinstance(out.errors["gone"], MissingParent) and "switch:n9" in str(out.errors["gone"])
    assert isinstance(out.errors["taken"], RowTaken) and "node:n2" in str(out.errors["taken"])
    assert set(out.written) == {"ok"}
    found = lsps(lab)
    assert set(found) == {"ok", "taken"}                      # nothing of "gone", not even gone2
    assert found["taken"]["external_ids"] == {naming.OWNER_KEY: "node:n2"}    # never touched
    assert found["taken"]["addresses"] == "router"
    assert switch_ports(lab) == {"n1": {"ok"}, "n2": {"taken"}}


def test_an_unowned_row_with_the_unique_name_is_adopted(lab: Lab, nb: Any) -> None:
    lab.nbctl("lsp-add", "n2", "old", "--", "set", "logical_switch_port", "old", "addresses=dynamic",
              "external_ids:pod=true", "external_ids:namespace=ns")
    uuid = lsps(lab)["old"]["_uuid"]
    nb_caught_up(nb)
    engine = KeyedRows(nb, timeout=10)
    engine.apply({"old": rows_by_ident([port("old", namespace="ns")])})
    found = lsps(lab)["old"]
    assert found["_uuid"] == uuid and found["addresses"] == "0a:58:0a:00:00:05 10.0.0.5"
    assert found["external_ids"][naming.OWNER_KEY] == "pod:old"
    assert switch_ports(lab) == {"n1": {"old"}, "n2": set()}   # moved to its desired switch


def test_scan_seeds_the_cache_and_reports_duplicates(lab: Lab, nb: Any) -> None:
    lab.nbctl("lsp-add", "n1", "p1", "--", "lsp-set-addresses", "p1", "0a:58:0a:00:00:05 10.0.0.5",
              "--", "set", "logical_switch_port", "p1", f"external_ids:{naming.OWNER_KEY}=pod:p1",
              f"external_ids:{naming.ID_KEY}=p1", "external_ids:pod=true")
    # the same identity twice (Logical_Router_Static_Route-style rows have no unique name, but
    # a crash or a second writer can leave two rows of one id): a second port named p1-dup
    lab.nbctl("lsp-add", "n2", "p1-dup", "--", "set", "logical_switch_port", "p1-dup",
              f"external_ids:{naming.OWNER_KEY}=pod:p1", f"external_ids:{naming.ID_KEY}=p1")
    lab.nbctl("lsp-add", "n2", "mgmt", "--", "set", "logical_switch_port", "mgmt",
              f"external_ids:{naming.OWNER_KEY}=node:n2")
    nb_caught_up(nb)

    def key_of(table: str, _id: str, ext: Any) -> str | None:
        owner = ext.get(naming.OWNER_KEY, "")
        return owner[len("pod:"):] if owner.startswith("pod:") else None

    engine = KeyedRows(nb, timeout=10)
    found = engine.scan(key_of=key_of, columns={LSP: ("name", "addresses", "external_ids")})
    assert set(found.found) == {"p1"} and len(found.duplicates) == 1
    kept = found.found["p1"][(LSP, "p1")]
    assert kept.parents in ({Parent(LS, "switch:n1", "ports")}, {Parent(LS, "switch:n2", "ports")})
    dup_uuid = found.duplicates[0][1].uuid
    keep_uuid = kept.uuid
    assert keep_uuid < dup_uuid                                 # the lowest UUID is kept
    engine.seed(found.found)
    engine.apply({}, delete=[a for _, a in found.duplicates])
    assert {r["_uuid"] for r in lsps(lab).values()} >= {keep_uuid}
    assert dup_uuid not in {r["_uuid"] for r in lsps(lab).values()}
    assert "mgmt" in lsps(lab)                                  # another owner's row stays


def test_a_port_moved_behind_the_cache_is_removed_by_the_next_scan(lab: Lab, nb: Any) -> None:
    """Ports are not root rows: they go when no switch holds them (python-ovs sends no delete
    for them). A port moved to another switch behind the cache's back therefore outlives the
    delete of its key, and the start-up/periodic scan, which reads the real holders, removes it."""
    engine = KeyedRows(nb, timeout=10)
    engine.apply({"a": rows_by_ident([port("a")])})
    uuid = lsps(lab)["a"]["_uuid"]
    lab.nbctl("remove", "logical_switch", "n1", "ports", uuid, "--", "add", "logical_switch", "n2", "ports", uuid)
    nb_caught_up(nb)
    engine.apply({"a": {}})
    assert switch_ports(lab) == {"n1": set(), "n2": {"a"}}
    found = engine.scan(key_of=lambda _t, rid, _e: rid, columns={LSP: ("name", "addresses", "external_ids")})
    assert found.found["a"][(LSP, "a")].parents == {Parent(LS, "switch:n2", "ports")}
    engine.seed(found.found)
    engine.apply({"a": {}})
    assert "a" not in lsps(lab) and switch_ports(lab) == {"n1": set(), "n2": set()}


def test_watched_changes_reach_the_callback_and_port_churn_does_not(lab: Lab, nb: Any) -> None:
    seen: list[connection.RowChange] = []
    connection.watch_rows(nb, {LS: frozenset({"other_config", "external_ids"})}, seen.append)
    assert connection.connected(nb) and connection.monitoring(nb)
    seqno = connection.session_seqno(nb)
    lab.nbctl("lsp-add", "n1", "churn")                        # only n1's `ports` changes
    lab.nbctl("set", "logical_switch", "n2", "other_config:subnet=10.0.2.0/24")
    wait_for(lambda: any(c.id == "switch:n2" for c in seen), 5, "the n2 change")
    assert [(c.event, c.table, c.id, c.owner, c.changed) for c in seen] == [
        ("update", LS, "switch:n2", "node:n2", frozenset({"other_config"}))]
    assert connection.session_seqno(nb) == seqno                # same session: no reconnect
