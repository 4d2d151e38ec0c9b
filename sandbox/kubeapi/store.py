"""In-memory object store of the test API server: objects, resourceVersions, event history.

One global, monotonically increasing resourceVersion (as etcd's revision) is bumped by every
write; each write appends an entry to the event log that watches read. `compact()` forgets the
log, so a watch or exact list from an older resourceVersion gets 410 Expired, as after etcd
compaction on a real cluster.

Invariant: a stored object dict is never modified in place. Writes build new dicts, so
readers may serialise objects outside the lock.

Everything here runs under `Store.cond`; the HTTP and Python layers call in from many threads.
"""

from __future__ import annotations

import base64
import bisect
import copy
import ipaddress
import json
import random
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sandbox.kubeapi.errors import (
    ApiError,
    already_exists,
    conflict,
    expired,
    not_found,
    too_large_rv,
)
from sandbox.kubeapi.patch import PatchError, apply_patch
from sandbox.kubeapi.resources import BY_PLURAL, RESOURCES, ResourceType

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)
Visible = Callable[[Mapping[str, Any]], bool]

# Write modes: what part of an object a PUT/PATCH may change.
MAIN, STATUS, ALL = "main", "status", "all"

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet


@dataclass(frozen=True, slots=True)
class LogEntry:
    rv: int
    plural: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj  # state after the write (for DELETED: the last state, carrying the delete's RV)
    old: Obj | None  # state before the write (None for ADDED)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _strip_for_compare(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata") or {})
    meta.pop("resourceVersion", None)
    return dict(obj, metadata=meta)


class _ServiceAllocator:
    """ClusterIP and NodePort bookkeeping, like the apiserver's service REST layer."""

    def __init__(self, cidr: str, node_ports: tuple[int, int]) -> None:
        self.net = ipaddress.ip_network(cidr)
        self.node_ports = node_ports
        self.ips: set[str] = set()
        self.ports: set[int] = set()

    def _next_ip(self, taken: set[str]) -> str:
        for host in self.net.hosts():
            if str(host) not in taken:
                return str(host)
        raise ApiError(500, f"no free ClusterIP left in {self.net}")

    def _next_port(self, taken: set[int]) -> int:
        for port in range(self.node_ports[0], self.node_ports[1] + 1):
            if port not in taken:
                return port
        raise ApiError(500, "no free NodePort left")

    def plan(self, name: str, new: Obj, old: Obj | None) -> tuple[set[str], set[int]]:
        """Fill in clusterIP/nodePorts of `new` in place; return what it holds. Raises
        ApiError(422) before anything is reserved, so a failed write leaks nothing."""
        spec = new.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        old_ips = {ip for ip in old_spec.get("clusterIPs") or [old_spec.get("clusterIP")]
                   if ip and ip != "None"}
        old_ports = {p["nodePort"] for p in old_spec.get("ports") or [] if p.get("nodePort")}
        svc_type = spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        held_ips: set[str] = set()
        if svc_type == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        else:
            ip = spec.get("clusterIP") or ""
            if not ip:
                ip = old_spec.get("clusterIP") or self._next_ip(self.ips)
            elif ip != "None":
                if old_ips and ip not in old_ips:
                    raise ApiError(422, f'Service "{name}" is invalid: spec.clusterIP: '
                                   "Invalid value: field is immutable")
                try:
                    if ipaddress.ip_address(ip) not in self.net:
                        raise ApiError(422, f'Service "{name}" is invalid: spec.clusterIP: '
                                       f"provided IP {ip} is not in the valid range {self.net}")
                except ValueError:
                    raise ApiError(422, f'Service "{name}" is invalid: spec.clusterIP: '
                                   f"invalid IP {ip!r}") from None
                if ip in self.ips and ip not in old_ips:
                    raise ApiError(422, f'Service "{name}" is invalid: spec.clusterIP: '
                                   f"provided IP {ip} is already allocated")
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
            if ip != "None":
                held_ips.add(ip)
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
        held_ports: set[int] = set()
        if svc_type in ("NodePort", "LoadBalancer"):
            old_by_port = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                           for p in old_spec.get("ports") or [] if p.get("nodePort")}
            taken = set(self.ports) - old_ports
            for port in spec.get("ports") or []:
                want = port.get("nodePort")
                if want:
                    if want in taken or want in held_ports:
                        raise ApiError(422, f'Service "{name}" is invalid: spec.ports.nodePort: '
                                       f"provided port {want} is already allocated")
                else:
                    want = old_by_port.get((port.get("port"), port.get("protocol")))
                    if not want or want in held_ports:
                        want = self._next_port(taken | held_ports)
                    port["nodePort"] = want
                held_ports.add(want)
        else:
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
        return held_ips, held_ports

    def commit(self, old: Obj | None, held: tuple[set[str], set[int]] | None) -> None:
        if old is not None:
            old_spec = old.get("spec") or {}
            self.ips -= {ip for ip in old_spec.get("clusterIPs") or [] if ip}
            self.ports -= {p["nodePort"] for p in old_spec.get("ports") or [] if p.get("nodePort")}
        if held is not None:
            self.ips |= held[0]
            self.ports |= held[1]


class Store:
    def __init__(self, *, start_resource_version: int, history_limit: int = 100_000,
                 service_cidr: str = "10.96.0.0/16",
                 node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.cond = threading.Condition()
        self._objects: dict[str, dict[Key, Obj]] = {r.plural: {} for r in RESOURCES}
        self._rv = start_resource_version
        # All events with rv > _first_rv are in _log; a watch may start at any rv >= _first_rv.
        self._first_rv = start_resource_version
        self._log: list[LogEntry] = []
        self._history_limit = history_limit
        self._services = _ServiceAllocator(service_cidr, node_port_range)

    # -- state --------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def first_resource_version(self) -> int:
        return self._first_rv

    def compact(self) -> None:
        """Forget the event history: watches from any older resourceVersion get 410."""
        with self.cond:
            self._log.clear()
            self._first_rv = self._rv
            self.cond.notify_all()

    def _append(self, plural: str, type_: str, obj: Obj, old: Obj | None) -> None:
        self._log.append(LogEntry(self._rv, plural, type_, obj, old))
        if len(self._log) > self._history_limit:
            drop = len(self._log) - self._history_limit
            self._first_rv = self._log[drop - 1].rv
            del self._log[:drop]
        self.cond.notify_all()

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- reads --------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self.cond:
            obj = self._objects[rt.plural].get((namespace or "", name) if rt.namespaced
                                               else ("", name))
            if obj is None:
                raise not_found(rt.plural, name, rt.group)
            return obj

    def _state_at(self, rt: ResourceType, rv: int) -> dict[Key, Obj]:
        """The objects of one kind as they were at `rv`, rebuilt by undoing newer events."""
        if rv < self._first_rv:
            raise expired(f"too old resource version: {rv} ({self._first_rv})")
        if rv > self._rv:
            raise too_large_rv(rv, self._rv)
        state = dict(self._objects[rt.plural])
        for entry in reversed(self._log):
            if entry.rv <= rv:
                break
            if entry.plural != rt.plural:
                continue
            key = object_key(entry.obj)
            if entry.type == "ADDED":
                state.pop(key, None)
            elif entry.old is not None:
                state[key] = entry.old
        return state

    def list(self, rt: ResourceType, visible: Visible, *, resource_version: str | None = None,
             exact: bool = False, limit: int | None = None,
             continue_token: str | None = None) -> tuple[list[Obj], str, str | None, int]:
        """Items (sorted by namespace/name), the list's resourceVersion, the continue token
        and the number of items left after this page."""
        with self.cond:
            start_after: Key | None = None
            at: int | None = None
            if continue_token:
                try:
                    token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                    at, start_after = int(token["rv"]), (token["start"][0], token["start"][1])
                except (ValueError, KeyError, TypeError, IndexError):
                    raise ApiError(400, "continue key is not valid") from None
            elif resource_version not in (None, "", "0"):
                try:
                    requested = int(resource_version)  # type: ignore[arg-type]
                except ValueError:
                    raise ApiError(400, f"invalid resource version {resource_version!r}") from None
                if requested > self._rv:
                    raise too_large_rv(requested, self._rv)
                if exact:
                    at = requested
            if at is None:
                at = self._rv
                state = self._objects[rt.plural]
            else:
                state = self._state_at(rt, at)
            keys = sorted(k for k, o in state.items() if visible(o))
            if start_after is not None:
                keys = keys[bisect.bisect_right(keys, start_after):]
            token_out = None
            remaining = 0
            if limit and limit > 0 and len(keys) > limit:
                remaining = len(keys) - limit
                keys = keys[:limit]
                token_out = base64.urlsafe_b64encode(json.dumps(
                    {"rv": at, "start": list(keys[-1])}).encode()).decode()
            return [state[k] for k in keys], str(at), token_out, remaining

    def watch_start(self, rt: ResourceType, visible: Visible,
                    resource_version: str | None) -> tuple[list[Obj], int, bool]:
        """(initial objects to send as ADDED, cursor rv, expired?) for a new watch."""
        with self.cond:
            if resource_version in (None, "", "0"):
                objs = [o for k, o in sorted(self._objects[rt.plural].items()) if visible(o)]
                return objs, self._rv, False
            try:
                requested = int(resource_version)  # type: ignore[arg-type]
            except ValueError:
                raise ApiError(400, f"invalid resource version {resource_version!r}") from None
            if requested > self._rv:
                raise too_large_rv(requested, self._rv)
            return [], requested, requested < self._first_rv

    def events_after(self, rv: int) -> list[LogEntry]:
        """Log entries newer than `rv`; ApiError(410) if some of them were compacted away.
        Caller holds `cond`."""
        if rv < self._first_rv:
            raise expired(f"too old resource version: {rv} ({self._first_rv})")
        idx = bisect.bisect_right(self._log, rv, key=lambda e: e.rv)
        return self._log[idx:]

    # -- writes -------------------------------------------------------------------------------

    def _namespace_of(self, rt: ResourceType, url_ns: str | None, meta: Obj) -> str:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return ""
        body_ns = meta.get("namespace")
        if url_ns and body_ns and body_ns != url_ns:
            raise ApiError(400, "the namespace of the provided object does not match the "
                           "namespace sent on the request")
        ns = url_ns or body_ns
        if not ns:
            raise ApiError(400, "the namespace of the object is not set")
        meta["namespace"] = ns
        return ns

    def _check_kind(self, rt: ResourceType, obj: Obj) -> Obj:
        """`obj` with kind and apiVersion set (and first, as the real server prints them)."""
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if (kind and kind != rt.kind) or (api_version and api_version != rt.api_version):
            raise ApiError(400, f"the object is a {api_version}/{kind}, this endpoint serves "
                           f"{rt.api_version}/{rt.kind}")
        rest = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        return {"kind": rt.kind, "apiVersion": rt.api_version, **rest}

    def _defaults(self, rt: ResourceType, obj: Obj) -> None:
        # The few defaults controllers depend on (apiserver defaulting + registry strategies).
        if rt.plural == "pods":
            obj.setdefault("status", {}).setdefault("phase", "Pending")
            for container in (obj.get("spec") or {}).get("containers") or []:
                for port in container.get("ports") or []:
                    port.setdefault("protocol", "TCP")
        elif rt.plural == "namespaces":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {}).setdefault("phase", "Active")
        elif rt.plural == "endpoints":
            for subset in obj.get("subsets") or []:
                for port in subset.get("ports") or []:
                    port.setdefault("protocol", "TCP")
        elif rt.plural == "endpointslices":
            for port in obj.get("ports") or []:
                port.setdefault("protocol", "TCP")

    def create(self, rt: ResourceType, namespace: str | None, body: Obj) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body is not a JSON object")
        obj = self._check_kind(rt, copy.deepcopy(body))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError(400, "metadata must be an object")
        with self.cond:
            ns = self._namespace_of(rt, namespace, meta)
            objects = self._objects[rt.plural]
            name = meta.get("name")
            if not name:
                prefix = meta.get("generateName")
                if not prefix:
                    raise ApiError(422, f"{rt.kind} is invalid: metadata.name: Required value: "
                                   "name or generateName is required")
                for _ in range(100):
                    name = prefix + "".join(random.choice(_NAME_CHARS) for _ in range(5))
                    if (ns, name) not in objects:
                        break
                meta["name"] = name
            if "/" in name or name in (".", ".."):
                raise ApiError(422, f'{rt.kind} "{name}" is invalid: metadata.name: not a valid '
                               "name")
            if (ns, name) in objects:
                raise already_exists(rt.plural, name, rt.group)
            for field in ("resourceVersion", "deletionTimestamp", "selfLink"):
                meta.pop(field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            self._defaults(rt, obj)
            held = (self._services.plan(name, obj, None) if rt.plural == "services" else None)
            meta["resourceVersion"] = self._next_rv()
            if held is not None:
                self._services.commit(None, held)
            objects[(ns, name)] = obj
            self._append(rt.plural, "ADDED", obj, None)
            return obj

    def update(self, rt: ResourceType, namespace: str | None, name: str, body: Obj, *,
               mode: str = MAIN) -> Obj:
        """PUT: replace the object (or only its status with mode=STATUS)."""
        if not isinstance(body, dict):
            raise ApiError(400, "the request body is not a JSON object")
        with self.cond:
            old = self.get(rt, namespace, name)
            return self._write(rt, old, copy.deepcopy(body), mode=mode)

    def patch(self, rt: ResourceType, namespace: str | None, name: str, content_type: str,
              patch: Any, *, mode: str = MAIN) -> Obj:
        with self.cond:
            old = self.get(rt, namespace, name)
            try:
                new = apply_patch(content_type, old, patch)
            except PatchError as exc:
                raise ApiError(422, f"{rt.kind} \"{name}\" is invalid: {exc}") from None
            return self._write(rt, old, new, mode=mode)

    def _write(self, rt: ResourceType, old: Obj, new: Obj, *, mode: str) -> Obj:
        """Common tail of PUT and PATCH: checks, status handling, no-op detection, commit."""
        new = self._check_kind(rt, new)
        old_meta = old["metadata"]
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        name = old_meta["name"]
        if meta.get("name", name) != name:
            raise ApiError(400, f'the name of the object ({meta.get("name")}) does not match '
                           f"the name on the URL ({name})")
        if rt.namespaced and meta.get("namespace", old_meta["namespace"]) != old_meta["namespace"]:
            raise ApiError(400, "the namespace of the provided object does not match the "
                           "namespace sent on the request")
        want_rv = meta.get("resourceVersion")
        if want_rv and want_rv != old_meta["resourceVersion"]:
            raise conflict(rt.plural, name, rt.group)
        # Identity fields are the server's, whatever the client sent.
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = old_meta["namespace"]
        for field in ("uid", "creationTimestamp"):
            meta[field] = old_meta[field]
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if rt.status_subresource and mode == MAIN:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        elif mode == STATUS:
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        self._defaults(rt, new)
        held = self._services.plan(name, new, old) if rt.plural == "services" else None
        if _strip_for_compare(new) == _strip_for_compare(old):
            return old  # no-op writes keep the resourceVersion and emit nothing (as etcd3 store)
        new["metadata"]["resourceVersion"] = self._next_rv()
        if held is not None:
            self._services.commit(old, held)
        self._objects[rt.plural][object_key(new)] = new
        self._append(rt.plural, "MODIFIED", new, old)
        return new

    def delete(self, rt: ResourceType, namespace: str | None, name: str, *,
               preconditions: Mapping[str, Any] | None = None) -> Obj:
        with self.cond:
            old = self.get(rt, namespace, name)
            meta = old["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise ApiError(409, f"Precondition failed: UID in precondition: {pre['uid']}, "
                               f"UID in object meta: {meta['uid']}", reason="Conflict")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise ApiError(409, "Precondition failed: ResourceVersion in precondition: "
                               f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                               f"{meta['resourceVersion']}", reason="Conflict")
            if rt.plural == "namespaces":
                # Namespace deletion is immediate here, so its contents go first (the real
                # namespace controller does the same, asynchronously).
                for other in RESOURCES:
                    if other.namespaced:
                        for key in sorted(k for k in self._objects[other.plural] if k[0] == name):
                            self._delete_locked(other, self._objects[other.plural][key])
            return self._delete_locked(rt, old)

    def _delete_locked(self, rt: ResourceType, old: Obj) -> Obj:
        deleted = dict(old, metadata=dict(old["metadata"], resourceVersion=self._next_rv()))
        if rt.plural == "services":
            self._services.commit(old, None)
        del self._objects[rt.plural][object_key(old)]
        self._append(rt.plural, "DELETED", deleted, old)
        return deleted

    def delete_collection(self, rt: ResourceType, visible: Visible) -> list[Obj]:
        with self.cond:
            victims = [o for _, o in sorted(self._objects[rt.plural].items()) if visible(o)]
            return [self.delete(rt, o["metadata"].get("namespace"), o["metadata"]["name"])
                    for o in victims]


def resource_type(plural: str) -> ResourceType:
    try:
        return BY_PLURAL[plural]
    except KeyError:
        raise ApiError(404, f"the server could not find the requested resource ({plural})") \
            from None
