"""Services in the NB: load balancers per (service, protocol, scope), kept equal to the cluster.

    raw Service + EndpointSlices/Endpoints --parse (ovn_k8s.model.kube)--> Service, backends
        --build (ovn_k8s.desired.services, pure)--> desired Load_Balancer rows per service key
        --diff against the applied cache--> changed keys only --write--> ONE NB transaction

The applied cache maps a service key to the rows last written for it (with their UUIDs). It
is seeded by `sync` from the rows we own in the NB, so a reconcile never scans the NB: an
unchanged key costs a dict comparison and no NB write at all; a changed key costs one row
lookup by UUID per load balancer, and only the columns and map keys that differ are written
(V7: `vips` keys are removed explicitly with delkey, never merged). Load balancers are created
with every column in one insert (V2) and linked into their load balancer group or gateway
router by set mutation (addvalue/delvalue), so concurrent writers never rewrite those rows.

Identity is external_ids ovn-k8s/id (V4: Load_Balancer names are not unique); `sync` deletes
duplicates, rows of services that no longer exist, and template variables of gone gateways.

ovsdbapp re-runs `run_idl` on TRY_AGAIN against fresh IDL state, so every decision that
depends on the NB (does the row still exist, where is it linked) is taken there, and the cache
is only changed after the transaction committed.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ovsdbapp.backend.ovs_idl import command as ovs_command

from ovn_k8s import naming
from ovn_k8s.desired.services import AffinityMode, Gateway, NodePortMode, service_rows, template_var_rows
from ovn_k8s.errors import InvalidObject, NotReadyError
from ovn_k8s.model.kube import (
    Service,
    ServiceBackends,
    parse_endpoint_slices,
    parse_endpoints,
    parse_service,
)
from ovn_k8s.nb.connection import transaction
from ovn_k8s.nb.model import Parent, Row

LOG = logging.getLogger(__name__)
LB, LBG, LR, CTV = "Load_Balancer", "Load_Balancer_Group", "Logical_Router", "Chassis_Template_Var"
# The columns of our rows that we write; anything else on them is left alone.
_COLUMNS = {LB: ("name", "protocol", "vips", "options", "selection_fields", "external_ids"),
            CTV: ("chassis", "variables", "external_ids")}
_TEMPLATES = ""   # the pseudo service key under which template variables are tracked


@dataclass(frozen=True)
class ServiceInput:
    service: dict | None                 # raw Service object, None = deleted
    endpoint_slices: list[dict] | None = None   # raw EndpointSlices of this service (label kubernetes.io/service-name)
    endpoints: dict | None = None        # raw core/v1 Endpoints, used when slices are not served


class InvalidServices(InvalidObject):
    """Some services of a batch are malformed; every other key of the batch was applied.
    `errors` maps each bad key to its InvalidObject. The rows of a bad key are left as they
    were (a malformed update never tears down a working service)."""

    def __init__(self, errors: Mapping[str, InvalidObject]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(str(e) for _, e in sorted(self.errors.items())))


@dataclass(frozen=True, slots=True)
class _Applied:
    row: Row                 # what the NB row holds (as last written, or as found by sync)
    uuid: uuidlib.UUID


@dataclass(slots=True)
class _Change:
    """Make the rows of one key equal `desired`; `existing` is what we believe is there."""

    key: str
    desired: dict[str, Row]
    existing: dict[str, _Applied]
    linked: dict[str, frozenset[Parent]] = field(default_factory=dict)   # sync: actual holders


@dataclass(slots=True)
class _Plan:
    changes: list[_Change] = field(default_factory=list)
    delete: list[uuidlib.UUID] = field(default_factory=list)      # duplicates, stale keys (sync)
    keep: dict[str, dict[str, _Applied]] = field(default_factory=dict)   # cache as is (sync)
    gateways: tuple[Gateway, ...] | None = None

    def __bool__(self) -> bool:
        return bool(self.changes or self.delete)


def parse_input(key: str, item: ServiceInput) -> tuple[Service, ServiceBackends] | None:
    """The parsed service and backends of one key; None for a deleted service."""
    if item.service is None:
        return None
    svc = parse_service(item.service)
    if svc.key != key:
        raise InvalidObject(f"service {svc.key} was passed under the key {key!r}")
    if item.endpoint_slices is not None:
        backends = parse_endpoint_slices(item.endpoint_slices)
    else:
        backends = parse_endpoints(item.endpoints)
    return svc, backends


def read_gateways(idl: Any) -> tuple[Gateway, ...]:
    """Gateway routers made by gateway-init: owner gateway:<node>, options:chassis and
    external_ids:physical_ip set (a router missing either cannot serve NodePorts)."""
    prefix = naming.owner_gateway("")
    found = []
    for row in idl.tables[LR].rows.values():
        ext = row.external_ids
        owner = ext.get(naming.OWNER_KEY, "")
        chassis = row.options.get("chassis")
        ip = ext.get(naming.PHYSICAL_IP_KEY)
        if not owner.startswith(prefix) or not chassis or not ip or naming.ID_KEY not in ext:
            continue
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            LOG.warning("gateway router %s: physical_ip %r is not an IP address; ignored",
                        row.name, ip)
            continue
        found.append(Gateway(node=ext.get(naming.NODE_KEY) or owner[len(prefix):],
                             chassis=chassis, physical_ip=ip, router_id=ext[naming.ID_KEY]))
    return tuple(sorted(found, key=lambda g: g.node))


class ServiceReconciler:
    """The NB side of the services controller (see the module docstring).

    Thread-safe: calls are serialised; the caller may run reconciles from several workers.
    `nodeport_mode` picks how NodePort VIPs reach every gateway and `affinity_mode` how
    sessionAffinity is written (docs/services.md); the defaults, PER_GATEWAY and HASH, are the
    ones that work on OVN 23.03.
    """

    def __init__(self, nb_api: Any, *, timeout: float = 30.0,
                 nodeport_mode: NodePortMode | str = NodePortMode.PER_GATEWAY,
                 affinity_mode: AffinityMode | str = AffinityMode.HASH) -> None:
        self._api = nb_api
        self._timeout = timeout
        self._mode = NodePortMode(nodeport_mode)
        self._affinity = AffinityMode(affinity_mode)
        self._lock = threading.Lock()
        self._applied: dict[str, dict[str, _Applied]] = {}
        self._models: dict[str, tuple[Service, ServiceBackends]] = {}
        self._gateways: tuple[Gateway, ...] | None = None
        self.transactions = 0     # NB transactions committed (for metrics and tests)

    # -- public API --------------------------------------------------------------------------------
    def sync(self, services: Mapping[str, ServiceInput]) -> None:
        """Startup repair, before any event is handled: seed the applied cache from NB rows we own,
        delete LBs (and template vars) whose service key is not in `services` or that are duplicates,
        then reconcile every key. One or a few NB transactions."""
        with self._lock:
            models, errors = self._parse(services)
            cmd = _WriteCommand(self._api, lambda idl: self._plan_sync(idl, models, errors))
            self._commit(cmd)
            self._install(cmd, replace=True)
            self._models = {k: m for k, m in models.items() if m is not None}
        LOG.info("services: synced %d services (%d invalid), %d load balancers, %d deleted",
                 len(services), len(errors), sum(len(v) for k, v in self._applied.items() if k),
                 len(cmd.plan.delete) if cmd.plan else 0)
        if errors:
            raise InvalidServices(errors)

    def reconcile(self, items: Mapping[str, ServiceInput]) -> None:
        """Make the NB match these services (keys 'ns/name'), in ONE NB transaction for the batch;
        skip keys whose desired rows equal what was last applied (no NB write at all when nothing
        changed); change only the VIP keys that changed (V7). Raises on NB failure (the caller
        retries); raises InvalidObject for a malformed service (the caller logs and skips it)."""
        with self._lock:
            models, errors = self._parse(items)
            if self._gateways is None and self._mode is NodePortMode.PER_GATEWAY and any(
                    m is not None and any(p.node_port for p in m[0].ports) for m in models.values()):
                self._gateways = self._read(read_gateways)
            gateways = self._gateways or ()
            changes = []
            for key, model in models.items():
                desired = self._build(model, gateways)
                existing = self._applied.get(key, {})
                if not _same(desired, existing):
                    changes.append(_Change(key, desired, dict(existing)))
            if changes:
                plan = _Plan(changes=changes)
                cmd = _WriteCommand(self._api, lambda idl: plan)
                self._commit(cmd)
                self._install(cmd)
            for key, model in models.items():
                if model is None:
                    self._models.pop(key, None)
                else:
                    self._models[key] = model
        if changes:
            LOG.debug("services: reconciled %s", ", ".join(c.key for c in changes))
        if errors:
            raise InvalidServices(errors)

    def refresh_gateways(self) -> None:
        """Re-read gateway routers from the NB and converge the Chassis_Template_Var rows.

        With PER_GATEWAY NodePorts (the default) this also adds and removes the per-gateway
        load balancers of every NodePort service; nothing is written when nothing changed."""
        with self._lock:
            cmd = _WriteCommand(self._api, self._plan_gateways)
            self._commit(cmd)
            self._install(cmd)

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def nodeport_mode(self) -> NodePortMode:
        return self._mode

    def _parse(self, items: Mapping[str, ServiceInput]) -> tuple[
            dict[str, tuple[Service, ServiceBackends] | None], dict[str, InvalidObject]]:
        models: dict[str, tuple[Service, ServiceBackends] | None] = {}
        errors: dict[str, InvalidObject] = {}
        for key, item in items.items():
            try:
                models[key] = parse_input(key, item)
            except InvalidObject as e:
                errors[key] = e
        return models, errors

    def _build(self, model: tuple[Service, ServiceBackends] | None,
               gateways: tuple[Gateway, ...]) -> dict[str, Row]:
        if model is None:
            return {}
        return {r.id: r for r in service_rows(model[0], model[1], gateways, nodeport_mode=self._mode,
                                              affinity_mode=self._affinity)}

    def _read(self, fn: Callable[[Any], Any]) -> Any:
        cmd = _ReadCommand(self._api, fn)
        cmd.execute(check_error=True, log_errors=False)
        return cmd.result

    def _commit(self, cmd: _WriteCommand) -> None:
        with transaction(self._api, timeout=self._timeout) as txn:
            txn.add(cmd)
        if cmd.wrote:
            self.transactions += 1

    def _install(self, cmd: _WriteCommand, *, replace: bool = False) -> None:
        plan = cmd.plan
        assert plan is not None
        if replace:
            self._applied = {}
        self._applied.update(plan.keep)
        for key, rows in cmd.applied().items():
            if rows:
                self._applied[key] = rows
            else:
                self._applied.pop(key, None)
        if plan.gateways is not None:
            self._gateways = plan.gateways

    # -- plans (run inside the transaction, against the IDL; pure w.r.t. self) -----------------------
    def _plan_gateways(self, idl: Any) -> _Plan:
        gateways = read_gateways(idl)
        plan = _Plan(gateways=gateways)
        if self._mode is NodePortMode.PER_GATEWAY and gateways != self._gateways:
            for key, model in self._models.items():
                if not any(p.node_port for p in model[0].ports):
                    continue
                desired = self._build(model, gateways)
                existing = self._applied.get(key, {})
                if not _same(desired, existing):
                    plan.changes.append(_Change(key, desired, dict(existing)))
        desired_vars = {r.id: r for r in template_var_rows(gateways, nodeport_mode=self._mode)}
        existing_vars = self._applied.get(_TEMPLATES, {})
        if not _same(desired_vars, existing_vars):
            plan.changes.append(_Change(_TEMPLATES, desired_vars, dict(existing_vars)))
        return plan

    def _plan_sync(self, idl: Any, models: Mapping[str, tuple[Service, ServiceBackends] | None],
                   errors: Mapping[str, InvalidObject]) -> _Plan:
        gateways = read_gateways(idl)
        plan = _Plan(gateways=gateways)
        holders = _holders(idl)
        found: dict[str, dict[str, list[Any]]] = {}
        for row in idl.tables[LB].rows.values():
            owner = row.external_ids.get(naming.OWNER_KEY, "")
            if owner.startswith(naming.OWNER_SERVICE_PREFIX):
                key = owner[len(naming.OWNER_SERVICE_PREFIX):]
                rid = row.external_ids.get(naming.ID_KEY, "")
                found.setdefault(key, {}).setdefault(rid, []).append(row)
        for row in idl.tables[CTV].rows.values():
            if row.external_ids.get(naming.OWNER_KEY) == naming.OWNER_SERVICE_TEMPLATES:
                rid = row.external_ids.get(naming.ID_KEY, "")
                found.setdefault(_TEMPLATES, {}).setdefault(rid, []).append(row)

        desired_of: dict[str, dict[str, Row]] = {
            key: self._build(model, gateways) for key, model in models.items()}
        desired_of[_TEMPLATES] = {r.id: r for r in template_var_rows(gateways, nodeport_mode=self._mode)}
        for key in sorted(set(found) | set(desired_of) | set(errors)):
            rows_by_id = found.get(key, {})
            existing: dict[str, _Applied] = {}
            linked: dict[str, frozenset[Parent]] = {}
            for rid, rows in rows_by_id.items():
                keep, *dupes = sorted(rows, key=lambda r: str(r.uuid))
                plan.delete.extend(r.uuid for r in dupes)
                parents = holders.get(keep.uuid, frozenset())
                table = CTV if key == _TEMPLATES else LB
                existing[rid] = _Applied(_actual_row(table, keep, rid, parents), keep.uuid)
                linked[rid] = parents
            if key in errors:
                plan.keep[key] = existing         # a malformed service keeps what it has
            elif key in desired_of:
                plan.changes.append(_Change(key, desired_of[key], existing, linked))
            else:                                  # the service is gone
                plan.delete.extend(a.uuid for a in existing.values())
        return plan


def _same(desired: Mapping[str, Row], existing: Mapping[str, _Applied]) -> bool:
    return desired.keys() == existing.keys() and all(
        existing[rid].row == row for rid, row in desired.items())


def _holders(idl: Any) -> dict[uuidlib.UUID, frozenset[Parent]]:
    """Which of our parents (the LB groups, gateway routers) hold each load balancer."""
    out: dict[uuidlib.UUID, set[Parent]] = {}
    for group in idl.tables[LBG].rows.values():
        if group.name in naming.LB_GROUPS:
            for lb in group.load_balancer:
                out.setdefault(lb.uuid, set()).add(Parent(LBG, group.name, "load_balancer"))
    prefix = naming.owner_gateway("")
    for router in idl.tables[LR].rows.values():
        rid = router.external_ids.get(naming.ID_KEY)
        if rid and router.external_ids.get(naming.OWNER_KEY, "").startswith(prefix):
            for lb in router.load_balancer:
                out.setdefault(lb.uuid, set()).add(Parent(LR, rid, "load_balancer"))
    return {k: frozenset(v) for k, v in out.items()}


def _actual_row(table: str, row: Any, rid: str, parents: frozenset[Parent]) -> Row:
    columns = {}
    for col in _COLUMNS[table]:
        value = _value(row, col)
        if col == "external_ids":
            value = {k: v for k, v in value.items() if k not in (naming.OWNER_KEY, naming.ID_KEY)}
        columns[col] = value
    parent = next(iter(parents)) if len(parents) == 1 else None
    return Row(table, rid, row.external_ids.get(naming.OWNER_KEY, ""), columns, parent=parent)


class _ReadCommand(ovs_command.ReadOnlyCommand):
    def __init__(self, api: Any, fn: Callable[[Any], Any]) -> None:
        super().__init__(api)
        self.fn = fn

    def run_idl(self, txn: Any) -> None:
        self.result = self.fn(self.api.idl)


class _Parents:
    """Parent rows looked up once per run: LB groups by name, gateway routers by ovn-k8s/id."""

    def __init__(self, idl: Any) -> None:
        self.idl = idl
        self._rows: dict[tuple[str, str], Any] | None = None

    def get(self, parent: Parent) -> Any | None:
        if self._rows is None:
            self._rows = {}
            for group in self.idl.tables[LBG].rows.values():
                self._rows.setdefault((LBG, group.name), group)
            for router in self.idl.tables[LR].rows.values():
                rid = router.external_ids.get(naming.ID_KEY)
                if rid:
                    self._rows.setdefault((LR, rid), router)
        return self._rows.get((parent.table, parent.id))


class _WriteCommand(ovs_command.BaseCommand):
    """Write one plan. `make_plan(idl)` runs inside the transaction (again on TRY_AGAIN)."""

    def __init__(self, api: Any, make_plan: Callable[[Any], _Plan]) -> None:
        super().__init__(api)
        self.make_plan = make_plan
        self.plan: _Plan | None = None
        self.wrote = False
        self._written: dict[str, dict[str, tuple[Row, uuidlib.UUID, bool]]] = {}
        self._real: dict[uuidlib.UUID, uuidlib.UUID] = {}

    def run_idl(self, txn: Any) -> None:
        idl = self.api.idl
        self.plan = plan = self.make_plan(idl)
        self._written = {}
        self._real = {}
        self.wrote = False
        parents = _Parents(idl)
        for change in plan.changes:
            written = self._written[change.key] = {}
            for rid, row in change.desired.items():
                result = self._ensure(txn, idl, parents, row, change.existing.get(rid),
                                      change.linked.get(rid))
                if result is not None:
                    written[rid] = result
            for rid, applied in change.existing.items():
                if rid not in change.desired:
                    self._delete(idl, applied.row.table, applied.uuid)
        for uuid in plan.delete:
            for table in (LB, CTV):
                self._delete(idl, table, uuid)

    def post_commit(self, txn: Any) -> None:
        for rows in self._written.values():
            for _, uuid, inserted in rows.values():
                if inserted:
                    self._real[uuid] = txn.get_insert_uuid(uuid)

    def applied(self) -> dict[str, dict[str, _Applied]]:
        out = {}
        for key, rows in self._written.items():
            out[key] = {rid: _Applied(row, self._real[uuid] if inserted else uuid)
                        for rid, (row, uuid, inserted) in rows.items()}
        return out

    # -- row writes ----------------------------------------------------------------------------------
    def _delete(self, idl: Any, table: str, uuid: uuidlib.UUID) -> None:
        row = idl.tables[table].rows.get(uuid)
        if row is not None:
            row.delete()     # weak references from groups and routers go with it
            self.wrote = True

    def _ensure(self, txn: Any, idl: Any, parents: _Parents, row: Row, applied: _Applied | None,
                linked: frozenset[Parent] | None) -> tuple[Row, uuidlib.UUID, bool] | None:
        table = idl.tables[row.table]
        parent_row = None
        if row.parent is not None:
            parent_row = parents.get(row.parent)
            if parent_row is None:
                if row.parent.table == LBG:
                    raise NotReadyError(f"load balancer group {row.parent.id!r} does not exist in "
                                        "the NB (has master-init run?)")
                # The gateway router is gone (refresh_gateways will drop its load balancers).
                if applied is not None:
                    self._delete(idl, row.table, applied.uuid)
                return None
        irow = table.rows.get(applied.uuid) if applied is not None else None
        if irow is None and row.table == CTV:
            irow = _by_chassis(table, row.columns["chassis"])    # adopt (unique index)
            linked = frozenset()
        if irow is None:
            irow = txn.insert(table)
            for col, value in row.columns.items():
                _set(irow, table, col, _with_ownership(row) if col == "external_ids" else value)
            if parent_row is not None:
                parent_row.addvalue(row.parent.column, irow)
            self.wrote = True
            return row, irow.uuid, True
        self._update(irow, table, row)
        if linked is None:       # from the cache: linked where we last linked it
            linked = frozenset({applied.row.parent}) if applied and applied.row.parent else frozenset()
        for old in linked - {row.parent}:
            old_row = parents.get(old)
            if old_row is not None:
                old_row.delvalue(old.column, irow)
                self.wrote = True
        if row.parent is not None and row.parent not in linked and parent_row is not None:
            parent_row.addvalue(row.parent.column, irow)
            self.wrote = True
        return row, irow.uuid, False

    def _update(self, irow: Any, table: Any, row: Row) -> None:
        for col, value in row.columns.items():
            if col == "external_ids":
                value = _with_ownership(row)
            actual = _value(irow, col)
            if isinstance(value, Mapping):
                for k in actual.keys() - value.keys():
                    irow.delkey(col, k)
                    self.wrote = True
                for k, v in value.items():
                    if actual.get(k) != v:
                        irow.setkey(col, k, v)
                        self.wrote = True
            elif actual != (sorted(value) if isinstance(value, list) else value):
                _set(irow, table, col, value)
                self.wrote = True


def _by_chassis(table: Any, chassis: str) -> Any | None:
    for row in table.rows.values():
        if row.chassis == chassis:
            return row
    return None


def _with_ownership(row: Row) -> dict[str, str]:
    return {**row.columns.get("external_ids", {}), naming.OWNER_KEY: row.owner, naming.ID_KEY: row.id}


def _value(irow: Any, col: str) -> Any:
    """A column in the form the builder uses: maps as dicts, sets as sorted lists, optional
    scalars (Load_Balancer.protocol) as the value or None."""
    value = getattr(irow, col)
    ctype = irow._table.columns[col].type
    if ctype.is_map():
        return dict(value)
    if ctype.is_optional():
        return value[0] if value else None
    if isinstance(value, list):
        return sorted(value)
    return value


def _set(irow: Any, table: Any, col: str, value: Any) -> None:
    ctype = table.columns[col].type
    if ctype.is_map():
        value = dict(value or {})
    elif ctype.is_set() or ctype.is_optional():
        value = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
    setattr(irow, col, value)

