"""Node subnet allocation (pure): switches win, annotations are kept, the lowest free block
goes to a new node, nothing is handed out twice, a full pool is an error for that node only."""

from __future__ import annotations

import netaddr
import pytest

from ovn_k8s import config
from ovn_k8s.desired.nodes import (
    NodeInfo,
    PoolExhausted,
    allocate,
    check_prefix,
    free_block,
    node_info,
    node_owners,
    subnet_for,
)
from ovn_k8s.errors import ConfigError, InvalidObject

N = netaddr.IPNetwork
CLUSTER = N("10.244.0.0/16")


def node(name: str, annotated: str | None = None, created: str = "2026-01-01T00:00:00Z") -> NodeInfo:
    return NodeInfo(name=name, uid=f"uid-{name}", created=created, annotated=annotated)


def test_new_nodes_get_the_lowest_free_blocks_in_age_order() -> None:
    nodes = [node("b", created="2026-01-02T00:00:00Z"), node("a", created="2026-01-03T00:00:00Z"),
             node("c", created="2026-01-01T00:00:00Z")]
    result = allocate(cluster=CLUSTER, prefix=24, switches={}, nodes=nodes)
    assert result.subnets == {"c": N("10.244.0.0/24"), "b": N("10.244.1.0/24"),
                              "a": N("10.244.2.0/24")}
    assert result.failed == {}


def test_a_switch_wins_over_the_annotation_and_its_subnet_stays_taken() -> None:
    # master-init gave the master 10.244.0.0/24; minion-init was run by hand on n1 with
    # 10.244.5.0/24 although n1 was annotated 10.244.1.0/24 before; n9 is gone from the API
    # but its switch is still there: its subnet is not free yet.
    switches = {"master": N("10.244.0.0/24"), "n1": N("10.244.5.0/24"), "n9": N("10.244.1.0/24")}
    nodes = [node("master"), node("n1", "10.244.1.0/24"), node("n2")]
    result = allocate(cluster=CLUSTER, prefix=24, switches=switches, nodes=nodes)
    assert result.subnets == {"master": N("10.244.0.0/24"), "n1": N("10.244.5.0/24"),
                              "n2": N("10.244.2.0/24")}


def test_annotations_survive_a_restart_and_the_older_node_keeps_a_disputed_subnet() -> None:
    nodes = [node("young", "10.244.7.0/24", created="2026-02-01T00:00:00Z"),
             node("old", "10.244.7.0/24", created="2026-01-01T00:00:00Z"),
             node("other", "10.244.3.0/24")]
    result = allocate(cluster=CLUSTER, prefix=24, switches={}, nodes=nodes)
    assert result.subnets["old"] == N("10.244.7.0/24")
    assert result.subnets["other"] == N("10.244.3.0/24")
    assert result.subnets["young"] == N("10.244.0.0/24")
    # The same inputs give the same answer (a restart re-derives, never re-deals).
    assert allocate(cluster=CLUSTER, prefix=24, switches={}, nodes=nodes[::-1]) == result


@pytest.mark.parametrize("bad", ["garbage", "10.245.0.0/24", "10.244.1.5/24", "10.244.1.0",
                                 "10.244.1.0/30"])
def test_an_unusable_annotation_is_replaced(bad: str) -> None:
    result = allocate(cluster=CLUSTER, prefix=24, switches={}, nodes=[node("n", bad)])
    assert result.subnets == {"n": N("10.244.0.0/24")}


def test_no_two_nodes_overlap_whatever_the_sizes() -> None:
    switches = {"big": N("10.244.0.0/22"), "odd": N("10.244.6.128/25")}
    nodes = [node(f"n{i}") for i in range(8)]
    result = allocate(cluster=CLUSTER, prefix=24, switches=switches, nodes=nodes)
    nets = list(result.subnets.values()) + list(switches.values())
    for i, a in enumerate(nets):
        for b in nets[i + 1:]:
            assert a.first > b.last or b.first > a.last, (a, b)
    assert N("10.244.4.0/24") in result.subnets.values()
    assert N("10.244.6.0/24") not in result.subnets.values()   # overlaps 10.244.6.128/25


def test_a_full_pool_fails_only_the_nodes_that_do_not_fit_and_frees_on_deletion() -> None:
    cluster = N("10.10.0.0/22")                      # four /24s
    nodes = [node(f"n{i}", created=f"2026-01-0{i + 1}T00:00:00Z") for i in range(5)]
    result = allocate(cluster=cluster, prefix=24, switches={}, nodes=nodes)
    assert len(result.subnets) == 4 and list(result.failed) == ["n4"]
    assert "no free /24 left in the cluster subnet 10.10.0.0/22" in result.failed["n4"]
    switches = dict(result.subnets)                  # their switches are written
    with pytest.raises(PoolExhausted):
        subnet_for("n4", cluster=cluster, prefix=24, switches=switches, nodes=nodes)
    # n1 leaves: while its switch is there, its block stays taken; once gone, n4 gets it.
    left = [n for n in nodes if n.name != "n1"]
    with pytest.raises(PoolExhausted):
        subnet_for("n4", cluster=cluster, prefix=24, switches=switches, nodes=left)
    del switches["n1"]
    assert subnet_for("n4", cluster=cluster, prefix=24, switches=switches, nodes=left) == \
        result.subnets["n1"]


def test_free_block_skips_unaligned_spans() -> None:
    taken = [N("10.0.0.0/25"), N("10.0.1.4/30"), N("10.0.3.0/24")]
    assert free_block(N("10.0.0.0/22"), 24, taken) == N("10.0.2.0/24")
    assert free_block(N("10.0.0.0/22"), 23, taken) is None


def test_prefix_checks() -> None:
    check_prefix(CLUSTER, 24)
    with pytest.raises(ConfigError, match="larger than the cluster subnet"):
        check_prefix(CLUSTER, 12)
    with pytest.raises(ConfigError, match="out of range"):
        check_prefix(CLUSTER, 30)


def test_node_info_reads_the_annotation_and_readiness() -> None:
    obj = {"metadata": {"name": "Node-1", "uid": "u", "creationTimestamp": "t",
                        "annotations": {"ovn-k8s/node-subnet": "10.244.3.0/24"}},
           "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    info = node_info(obj)
    assert (info.name, info.annotated, info.ready) == ("node-1", "10.244.3.0/24", False)
    assert info.annotated_subnet() == N("10.244.3.0/24")
    with pytest.raises(InvalidObject):
        node_info({"metadata": {"name": "bad_name"}})


def test_node_owners() -> None:
    assert node_owners(["node:a", "gateway:b", "cluster", "pod:ns/p", "node:", "gateway:a"]) == \
        {"a", "b"}


def test_election_and_node_options_resolve() -> None:
    names = ("leader_elect", "leader_elect_lease_duration", "leader_elect_renew_deadline",
             "leader_elect_retry_period", "allocate_node_subnets", "node_subnet_prefix")
    defaults = config.resolve({}, names, env={})
    assert (defaults.leader_elect, defaults.leader_elect_lease_duration,
            defaults.leader_elect_renew_deadline, defaults.leader_elect_retry_period) == \
        (False, 15.0, 10.0, 2.0)
    given = config.resolve({"leader_elect": "true", "leader_elect_lease_duration": "3s",
                            "leader_elect_retry_period": "500ms",
                            "allocate_node_subnets": "yes"}, names, env={})
    assert (given.leader_elect, given.leader_elect_lease_duration,
            given.leader_elect_retry_period, given.allocate_node_subnets) == (True, 3.0, 0.5, True)
    with pytest.raises(ConfigError, match="--leader-elect: 'maybe' is not a valid boolean"):
        config.resolve({"leader_elect": "maybe"}, names, env={})
