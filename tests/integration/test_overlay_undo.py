"""ovn-k8s-overlay's undo (`overlay._undo`): after a host step fails, the NB part of the command
is put back: created rows deleted, changed columns restored, deleted rows made again. Checked
on the real topology rows, comparing the whole NB without UUIDs (the undone rows are new)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import netaddr
import pytest

from ovn_k8s import naming, overlay
from ovn_k8s.desired import topology
from ovn_k8s.nb import connection
from sandbox.lab.cluster import Lab
from tests.helpers import nb_dump

CLUSTER, JOIN = netaddr.IPNetwork("10.244.0.0/16"), netaddr.IPNetwork("100.64.0.0/16")


@pytest.fixture
def nb(lab: Lab) -> Iterator[Any]:
    api = connection.connect(lab.nb, "OVN_Northbound", what="NB", timeout=10)
    yield api
    connection.disconnect(api)


def content(lab: Lab) -> dict[str, Any]:
    """The whole NB with every UUID replaced by the row's identity (ovn-k8s/id or name)."""
    dump = nb_dump(lab)
    names: dict[str, str] = {}
    for table, rows in dump.items():
        for row in rows:
            ext = dict(row.get("external_ids", ["map", []])[1]) if "external_ids" in row else {}
            names[row["_uuid"][1]] = f"{table}:{ext.get(naming.ID_KEY) or row.get('name') or '?'}"

    def plain(value: Any) -> Any:
        if isinstance(value, list) and len(value) == 2 and value[0] == "uuid":
            return names.get(value[1], "?")
        if isinstance(value, list) and len(value) == 2 and value[0] == "set":
            return sorted((plain(v) for v in value[1]), key=str)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {table: sorted(({k: plain(v) for k, v in row.items() if k not in ("_uuid", "_version")}
                           for row in rows), key=str)
            for table, rows in dump.items()}


def gateway(default_gw: str, rampout: list[str]) -> topology.GatewaySpec:
    return topology.GatewaySpec(
        node="gw1", system_id="chassis-1", cluster_subnet=CLUSTER, join_subnet=JOIN,
        join_ip=netaddr.IPAddress("100.64.0.2"), physical_ip=netaddr.IPNetwork("192.0.2.20/24"),
        physical_mac="0a:00:00:00:00:20", port_name="eth1", default_gw=netaddr.IPAddress(default_gw),
        rampout_subnets=[netaddr.IPNetwork(s) for s in rampout])


def test_undo_puts_back_created_changed_and_deleted_rows(lab: Lab, nb: Any) -> None:
    master = topology.MasterSpec(master="master", cluster_subnet=CLUSTER, join_subnet=JOIN)
    overlay.apply_rows(nb, scopes=[naming.OWNER_CLUSTER], build=lambda v: topology.master_rows(master), timeout=10)
    scope = [naming.owner_gateway("gw1")]

    # a first gateway-init whose host step fails: nothing of it stays
    before = content(lab)
    first = overlay._apply(nb, scopes=scope, build=lambda v: topology.gateway_rows(
        gateway("192.0.2.1", ["10.244.1.0/24"])), timeout=10)
    assert first.plan.create and content(lab) != before
    overlay._undo(nb, first, timeout=10)
    assert content(lab) == before

    # a re-run with another default gateway (an update) and another rampout subnet (a delete and
    # a create) whose host step fails: the first run's rows are back as they were
    overlay.apply_rows(nb, scopes=scope, build=lambda v: topology.gateway_rows(
        gateway("192.0.2.1", ["10.244.1.0/24"])), timeout=10)
    before = content(lab)
    rerun = overlay._apply(nb, scopes=scope, build=lambda v: topology.gateway_rows(
        gateway("192.0.2.254", ["10.244.2.0/24"])), timeout=10)
    assert rerun.plan.update and rerun.plan.delete and rerun.plan.create
    assert content(lab) != before
    overlay._undo(nb, rerun, timeout=10)
    assert content(lab) == before
