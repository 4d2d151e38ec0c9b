"""What our code relies on in python-ovs and ovsdbapp beyond their documented API, pinned.

ovn_k8s/nb/connection.py is the one module that does so (issue 11: no patching of library
internals; what remains is confined there and checked here):
- python-ovs `Idl.notify` and `Idl.cooperative_yield`: hooks python-ovs documents for
  subclasses; we subclass ovsdbapp's IDL and override them.
- python-ovs `Idl._session` (`is_connected`, `get_seqno`): the connection state, which python-ovs
  exposes no other way; `_session.reconnect.set_backoff` and `_session.reset_backoff`, the
  NB session's reconnect pace (nb.connection), with `server_tables` (its _Server rows);
  `Row._table.name` in notify, as ovsdbapp's own RowEvent reads it.
- ovsdbapp `Backend(start=False, auto_index=False)`, `create_index`, `start_connection`.
If a dependency moves outside the versions setup.py pins, the first test fails: re-check the
rest against the new version before widening the pin.
"""

from __future__ import annotations

import ast
import inspect
import os
from importlib import metadata

import pytest
from packaging.requirements import Requirement

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NB_SCHEMA = "/usr/share/ovn/ovn-nb.ovsschema"


def _requirements() -> dict[str, Requirement]:
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            reqs = [Requirement(elt.value) for elt in node.value.elts]  # type: ignore[attr-defined]
            return {r.name.lower(): r for r in reqs}
    raise AssertionError("setup.py has no install_requires")


@pytest.mark.parametrize("name", ["ovs", "ovsdbapp", "pyroute2"])
def test_installed_versions_are_the_pinned_ones(name: str) -> None:
    req = _requirements()[name]
    assert req.specifier, f"setup.py must pin {name}: code relies on its internals"
    installed = metadata.version(name)
    assert installed in req.specifier, f"{name} {installed} is outside setup.py's {req}"


def test_python_ovs_idl_has_the_hooks_and_session_we_use() -> None:
    import ovs.db.idl

    params = list(inspect.signature(ovs.db.idl.Idl.notify).parameters)
    assert params == ["self", "event", "row", "updates"]
    assert list(inspect.signature(ovs.db.idl.Idl.cooperative_yield).parameters) == ["self"]
    helper = ovs.db.idl.SchemaHelper(location=NB_SCHEMA)
    helper.register_table("NB_Global")
    idl = ovs.db.idl.Idl("unix:/nonexistent/nb.sock", helper)
    try:
        assert idl._session.is_connected() is False
        assert isinstance(idl._session.get_seqno(), int)
        assert hasattr(idl, "IDL_S_MONITORING") and hasattr(idl, "state")
        assert idl.has_lock is False and idl.is_lock_contended is False
    finally:
        idl.close()
    # A list of remotes (a clustered NB): one session over all of them, whose backoff we cap.
    helper = ovs.db.idl.SchemaHelper(location=NB_SCHEMA)
    helper.register_table("NB_Global")
    idl = ovs.db.idl.Idl("unix:/nonexistent/nb1.sock,unix:/nonexistent/nb2.sock", helper)
    try:
        assert idl._session.get_num_of_remotes() == 2
        idl._session.reconnect.set_backoff(1000, 1000)
        assert idl._session.reconnect.get_max_backoff() == 1000
        # force_reconnect, overridden to reset the backoff (reset_backoff) when a follower of
        # a live cluster answers; its _Server rows are in server_tables once read
        assert list(inspect.signature(ovs.db.idl.Idl.force_reconnect).parameters) == ["self"]
        assert idl.server_tables is None and callable(idl._session.reset_backoff)
        assert idl.leader_only is True           # python-ovs' default, which we also pass
    finally:
        idl.close()


def test_python_ovs_rows_know_their_table_by_name() -> None:
    import ovs.db.idl

    helper = ovs.db.idl.SchemaHelper(location=NB_SCHEMA)
    helper.register_table("Logical_Switch")
    idl = ovs.db.idl.Idl("unix:/nonexistent/nb.sock", helper)
    try:
        row = ovs.db.idl.Row(idl, idl.tables["Logical_Switch"], None, None)
        assert row._table.name == "Logical_Switch"
    finally:
        idl.close()


def test_ovsdbapp_backend_lets_us_choose_the_indexes() -> None:
    from ovsdbapp.backend import ovs_idl

    params = inspect.signature(ovs_idl.Backend.__init__).parameters
    assert "start" in params and "auto_index" in params
    assert callable(ovs_idl.Backend.create_index) and callable(ovs_idl.Backend.start_connection)
    from ovsdbapp.backend.ovs_idl import connection

    assert "cooperative_yield" in connection.OvsdbIdl.__dict__     # the sleep(0) we override
