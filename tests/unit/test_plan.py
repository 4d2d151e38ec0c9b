"""The planner: desired vs actual rows -> create / update / relink / delete."""

from ovn_k8s.nb.model import ActualRow, Parent, Ref, Row
from ovn_k8s.nb.plan import plan_rows

LS = "Logical_Switch"
LSP = "Logical_Switch_Port"
SW = Parent(LS, "switch:a", "ports")


def test_creates_missing_and_deletes_stale_in_scope() -> None:
    desired = [Row(LS, "switch:a", "node:a", {"name": "a"})]
    actual = [ActualRow(LS, "switch:old", "node:a", "u1", {"name": "old"})]
    plan = plan_rows(desired, actual)
    assert [r.id for r in plan.create] == ["switch:a"]
    assert [r.id for r in plan.delete] == ["switch:old"]
    assert not plan.update


def test_equal_rows_are_a_no_op_whatever_the_set_order() -> None:
    desired = [Row(LSP, "p", "node:a", {"addresses": ["b", "a"], "options": {"x": "1"},
                                        "type": "", "tag": None}, parent=SW)]
    actual = [ActualRow(LSP, "p", "node:a", "u1", {"addresses": ["a", "b"], "options": {"x": "1"},
                                                   "type": "", "tag": []}, parent=SW)]
    assert not plan_rows(desired, actual)


def test_changed_columns_only_and_relink() -> None:
    desired = [Row(LSP, "p", "node:a", {"addresses": ["m 10.0.0.3"], "type": ""},
                   parent=Parent(LS, "switch:b", "ports"))]
    actual = [ActualRow(LSP, "p", "node:a", "u1", {"addresses": ["m 10.0.0.2"], "type": ""},
                        parent=SW)]
    (upd,) = plan_rows(desired, actual).update
    assert dict(upd.columns) == {"addresses": ["m 10.0.0.3"]}
    assert upd.relink


def test_duplicates_of_one_identity_are_deleted_keeping_one() -> None:
    desired = [Row(LS, "switch:a", "node:a", {"name": "a"})]
    actual = [ActualRow(LS, "switch:a", "node:a", u, {"name": "a"}) for u in ("u3", "u1", "u2")]
    plan = plan_rows(desired, actual)
    assert sorted(r.uuid for r in plan.delete) == ["u2", "u3"]
    assert not plan.create and not plan.update


def test_references_compare_by_identity() -> None:
    ref = [Ref("Load_Balancer_Group", "k8s-cluster-lbs")]
    desired = [Row(LS, "switch:a", "node:a", {"load_balancer_group": ref})]
    same = [ActualRow(LS, "switch:a", "node:a", "u", {"load_balancer_group": list(ref)})]
    other = [ActualRow(LS, "switch:a", "node:a", "u", {"load_balancer_group": []})]
    assert not plan_rows(desired, same)
    assert plan_rows(desired, other).update[0].columns == {"load_balancer_group": ref}


def test_adopting_a_row_of_another_owner_rewrites_the_owner() -> None:
    desired = [Row(LSP, "k8s-a", "node:a", {"type": ""}, parent=SW)]
    actual = [ActualRow(LSP, "k8s-a", None, "u", {"type": ""}, parent=SW)]
    (upd,) = plan_rows(desired, actual).update
    assert upd.columns == {} and not upd.relink
