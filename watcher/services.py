"""Services in the NB: load balancers per (service, protocol, scope), kept equal to the cluster.

    raw Service + EndpointSlices/Endpoints --parse (ovn_k8s.model.kube)--> Service, backends
        --build (ovn_k8s.desired.services, pure)--> desired Load_Balancer rows per service key
        --ovn_k8s.nb.keyed.KeyedRows: diff against the applied cache--> ONE NB transaction

This module only parses and builds; every NB read and write goes through the engine's keyed
mode (`KeyedRows`): an unchanged key costs a comparison and no NB write, a changed key costs
one lookup by UUID per load balancer and writes only the columns and `vips` keys that differ.
Load balancers are linked into their load balancer group or gateway router by set mutation.

`sync` seeds the cache from the rows we own, deletes duplicates (V4), rows of services that
no longer exist and template variables of gone gateways, and converges every key. The
Chassis_Template_Var rows of the TEMPLATE NodePort mode are tracked under the pseudo key "".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ovn_k8s import naming
from ovn_k8s.desired.services import (
    AffinityMode,
    Gateway,
    NodePortMode,
    gateways_from_rows,
    service_rows,
    template_var_rows,
)
from ovn_k8s.errors import InvalidObject
from ovn_k8s.model.kube import (
    Service,
    ServiceBackends,
    parse_endpoint_slices,
    parse_endpoints,
    parse_service,
)
from ovn_k8s.nb import read as nb_read
from ovn_k8s.nb.keyed import Ident, KeyedRows, RowTaken, rows_by_ident
from ovn_k8s.nb.model import Row

LOG = logging.getLogger(__name__)
LB, LBG, LR, CTV = "Load_Balancer", "Load_Balancer_Group", "Logical_Router", "Chassis_Template_Var"
# The columns of our rows that we write; anything else on them is left alone.
_COLUMNS = {LB: ("name", "protocol", "vips", "options", "selection_fields", "external_ids"),
            CTV: ("chassis", "variables", "external_ids")}
Model = tuple[Service, ServiceBackends]
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


def read_gateways(tables: Any) -> tuple[Gateway, ...]:
    """The gateway routers made by gateway-init (runs inside KeyedRows.read)."""
    prefix = naming.owner_gateway("")
    return gateways_from_rows(nb_read.rows(tables, LR, where=lambda owner, _id, _ext: owner.startswith(prefix),
                                           columns=("name", "options", "external_ids")))


def _service_key(table: str, _id: str, external_ids: Mapping[str, str]) -> str | None:
    """The service key a row of ours belongs to ("" for the template variables), or None."""
    owner = external_ids.get(naming.OWNER_KEY, "")
    if table == LB and owner.startswith(naming.OWNER_SERVICE_PREFIX):
        return owner[len(naming.OWNER_SERVICE_PREFIX):]
    if table == CTV and owner == naming.OWNER_SERVICE_TEMPLATES:
        return _TEMPLATES
    return None


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
        self._rows = KeyedRows(nb_api, timeout=timeout)
        self._mode = NodePortMode(nodeport_mode)
        self._affinity = AffinityMode(affinity_mode)
        self._lock = threading.Lock()
        self._models: dict[str, Model] = {}
        self._gateways: tuple[Gateway, ...] | None = None

    @property
    def transactions(self) -> int:
        """NB transactions committed that changed something (for metrics and tests)."""
        return self._rows.transactions

    @property
    def nodeport_mode(self) -> NodePortMode:
        return self._mode

    # -- public API --------------------------------------------------------------------------------
    def sync(self, services: Mapping[str, ServiceInput]) -> None:
        """Startup repair, before any event is handled: seed the applied cache from the rows we
        own, delete load balancers (and template variables) whose service is not in `services`
        and duplicates, then converge every key, in one NB transaction. A malformed service
        keeps the rows it has and is reported (InvalidServices) after the rest is applied."""
        with self._lock:
            models, errors = self._parse(services)
            gateways = self._rows.read(read_gateways)
            found = self._rows.scan(key_of=_service_key, columns=_COLUMNS)
            self._rows.seed(found.found)
            desired: dict[str, dict[Ident, Row]] = {
                key: self._build(model, gateways) for key, model in models.items()}
            desired[_TEMPLATES] = rows_by_ident(template_var_rows(gateways, nodeport_mode=self._mode))
            for key in found.found:
                if key not in desired and key not in errors:
                    desired[key] = {}                   # the service is gone
            outcome = self._rows.apply(desired, delete=[a for _, a in found.duplicates])
            self._gateways = gateways
            self._models = {k: m for k, m in models.items() if m is not None}
        LOG.info("services: synced %d services (%d invalid), %d load balancers, %d duplicates "
                 "deleted", len(services), len(errors),
                 sum(len(rows) for key, rows in self._rows.items() if key != _TEMPLATES),
                 len(found.duplicates))
        self._raise(errors, outcome.errors)

    def reconcile(self, items: Mapping[str, ServiceInput]) -> None:
        """Make the NB match these services (keys 'ns/name'), in ONE NB transaction for the batch;
        skip keys whose desired rows equal what was last applied (no NB write at all when nothing
        changed). Raises on NB failure (the caller retries); raises InvalidServices for malformed
        services (the others of the batch are applied)."""
        with self._lock:
            models, errors = self._parse(items)
            if self._gateways is None and self._mode is NodePortMode.PER_GATEWAY and any(
                    m is not None and any(p.node_port for p in m[0].ports) for m in models.values()):
                self._gateways = self._rows.read(read_gateways)
            gateways = self._gateways or ()
            desired = {key: self._build(model, gateways) for key, model in models.items()}
            outcome = self._rows.apply(desired)
            for key, model in models.items():
                if key in outcome.errors:
                    continue
                if model is None:
                    self._models.pop(key, None)
                else:
                    self._models[key] = model
        if outcome.written:
            LOG.debug("services: reconciled %s", ", ".join(sorted(outcome.written)))
        self._raise(errors, outcome.errors)

    def refresh_gateways(self) -> None:
        """Re-read gateway routers from the NB and converge the Chassis_Template_Var rows.

        With PER_GATEWAY NodePorts (the default) this also adds and removes the per-gateway
        load balancers of every NodePort service; nothing is written when nothing changed."""
        with self._lock:
            gateways = self._rows.read(read_gateways)
            desired: dict[str, dict[Ident, Row]] = {}
            if self._mode is NodePortMode.PER_GATEWAY and gateways != self._gateways:
                desired = {key: self._build(model, gateways) for key, model in self._models.items()
                           if any(p.node_port for p in model[0].ports)}
            desired[_TEMPLATES] = rows_by_ident(template_var_rows(gateways, nodeport_mode=self._mode))
            outcome = self._rows.apply(desired)
            if not outcome.errors:
                self._gateways = gateways
        self._raise({}, outcome.errors)

    # -- helpers -------------------------------------------------------------------------------------
    def _parse(self, items: Mapping[str, ServiceInput]) -> tuple[
            dict[str, Model | None], dict[str, InvalidObject]]:
        models: dict[str, Model | None] = {}
        errors: dict[str, InvalidObject] = {}
        for key, item in items.items():
            try:
                models[key] = parse_input(key, item)
            except InvalidObject as e:
                errors[key] = e
        return models, errors

    def _build(self, model: Model | None, gateways: tuple[Gateway, ...]) -> dict[Ident, Row]:
        if model is None:
            return {}
        return rows_by_ident(service_rows(model[0], model[1], gateways, nodeport_mode=self._mode,
                                          affinity_mode=self._affinity))

    @staticmethod
    def _raise(invalid: Mapping[str, InvalidObject], failed: Mapping[str, Exception]) -> None:
        """Report per-key failures: a key the NB refused to take (a missing load balancer
        group, a gone gateway router) fails the call so it is retried; malformed services and
        names held by another owner are InvalidServices (not retried)."""
        invalid = {**invalid, **{k: e for k, e in failed.items() if isinstance(e, RowTaken)}}
        retry = [e for k, e in sorted(failed.items()) if not isinstance(e, RowTaken)]
        if retry:
            raise retry[0]
        if invalid:
            raise InvalidServices(invalid)
