"""pytest plugin: tests marked `realk8s` run against a real Kubernetes control plane.

- One `ControlPlane` (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) per
  session, `control_plane`, started on first use: its start-up costs seconds, so every test
  shares it. etc/kubernetes/rbac.yaml is applied to it once (`real_cluster`).
- `real_kube`: that control plane seen as the `kube` fixture of the embedded-server tests
  (`RealKube`: the same create/get/list/replace/patch/delete), emptied of pods, services,
  EndpointSlices and Events before each test, and writing kubeconfigs that hold the
  ovn-k8s-watcher ServiceAccount's token: every watcher a test starts runs with exactly the
  shipped role. `BOTH_SERVERS` parametrizes a test's `kube` over ["embedded", "real"].
- Where the assets are missing (`sandbox.control_plane.not_run_reason()`), the marked tests are
  deselected and the summary says so on a line of its own, "NOT RUN: real control plane:
  <reason>"; under CI (CI=true) they are kept and fail with that reason instead, so CI never
  passes without them.

Loaded by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.control_plane import REPO, ControlPlane, not_run_reason
from sandbox.kubeapi import ApiError

MARK = "realk8s"
_NOT_RUN = pytest.StashKey[tuple[str, int]]()
RBAC = REPO / "etc" / "kubernetes" / "rbac.yaml"
RBAC_NAMESPACE = "kube-system"
WATCHER_SA, CNI_SA = "ovn-k8s-watcher", "ovn-k8s-cni"
# Namespaces the control plane makes itself: never emptied.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

# `kube` over both servers: @BOTH_SERVERS on a test whose fixtures use `kube`.
BOTH_SERVERS = pytest.mark.parametrize(
    "kube", ["embedded", pytest.param("real", marks=pytest.mark.realk8s)], indirect=True)


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@pytest.hookimpl(trylast=True)  # after -m/-k: count only the tests that would have run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real = [item for item in items if item.get_closest_marker(MARK)]
    if not real:
        return
    reason = not_run_reason()
    if reason is None or under_ci():
        return  # they run (and, under CI without assets, fail in the fixture)
    keep = [item for item in items if not item.get_closest_marker(MARK)]
    config.hook.pytest_deselected(items=real)
    items[:] = keep
    config.stash[_NOT_RUN] = (reason, len(real))
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: tell the controller, which prints
        workeroutput["realk8s_not_run"] = [reason, len(real)]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist's controller: every worker collects the whole suite, so each reports
    the same count; keep one."""
    reported = getattr(node, "workeroutput", {}).get("realk8s_not_run")
    if reported:
        node.config.stash[_NOT_RUN] = (reported[0], int(reported[1]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    not_run = config.stash.get(_NOT_RUN, None)
    if not_run is None:
        return
    reason, count = not_run
    terminalreporter.write_sep("=", "real Kubernetes control plane", yellow=True)
    terminalreporter.write_line(
        f"NOT RUN: real control plane: {reason} ({count} test{'s' if count != 1 else ''} "
        f"marked {MARK!r} deselected; "
        "under CI=true they fail instead)", yellow=True, bold=True)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's real control plane; tests create their own namespaces and names."""
    reason = not_run_reason()
    if reason is not None:
        pytest.fail(f"real control plane needed ({MARK}): {reason}", pytrace=False)
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"), die_with_parent=True)
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()


def rbac_documents(path: Path = RBAC) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@dataclass
class RealCluster:
    """The session's control plane with etc/kubernetes/rbac.yaml applied, and a token of
    each of its ServiceAccounts."""

    cp: ControlPlane
    watcher_token: str
    cni_token: str


@pytest.fixture(scope="session")
def real_cluster(control_plane: ControlPlane) -> RealCluster:
    control_plane.apply(rbac_documents())
    tokens = {sa: control_plane.service_account_token(sa, namespace=RBAC_NAMESPACE)
              for sa in (WATCHER_SA, CNI_SA)}
    return RealCluster(control_plane, tokens[WATCHER_SA], tokens[CNI_SA])


class RealKube:
    """A real control plane behind the embedded server's test API (`kube` fixture).

    CRUD goes through the admin token; a namespace a test names is created on first use (the
    embedded server has no namespace objects to create first); write_kubeconfig() holds the
    watcher's least-privilege token unless told otherwise."""

    real = True

    def __init__(self, cluster: RealCluster) -> None:
        self.cluster = cluster
        self.cp = cluster.cp

    @property
    def url(self) -> str:
        return self.cp.url

    @property
    def ca_file(self) -> str:
        return self.cp.ca_file

    def write_kubeconfig(self, path: str | os.PathLike[str], *, token: str | None = None,
                         namespace: str = "default", **_: Any) -> str:
        return self.cp.write_kubeconfig(path, token or self.cluster.watcher_token,
                                        namespace=namespace)

    def create(self, resource: str, obj: dict[str, Any], *,
               namespace: str | None = None) -> dict[str, Any]:
        try:
            return self.cp.create(resource, obj, namespace=namespace)
        except ApiError as exc:
            missing = (exc.details or {}).get("kind") == "namespaces" and exc.code == 404
            if not missing:
                raise
            self.ensure_namespace(str((exc.details or {}).get("name")))
            return self.cp.create(resource, obj, namespace=namespace)

    def ensure_namespace(self, name: str) -> None:
        try:
            self.cp.create("namespaces", {"metadata": {"name": name}})
        except ApiError as exc:
            if exc.code != 409:
                raise

    def get(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.cp.get(*args, **kwargs)

    def list(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return self.cp.list(*args, **kwargs)

    def replace(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.cp.replace(*args, **kwargs)

    def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.cp.patch(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.cp.delete(*args, **kwargs)

    def stop(self) -> None:
        """The API server goes away (kube-apiserver killed; etcd and the rest stay)."""
        self.cp.stop_apiserver()

    def start(self) -> RealKube:
        """And comes back on the same address, with the same data."""
        self.cp.start_apiserver()
        return self

    def clear(self) -> None:
        """Delete every pod (grace 0), service (but default/kubernetes), EndpointSlice and
        Event outside the system namespaces: the next test starts from an empty cluster."""
        client = self.cp.client
        grace0 = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
        for ns in self.cp.list("namespaces"):
            name = ns["metadata"]["name"]
            if name in SYSTEM_NAMESPACES or ns["metadata"].get("deletionTimestamp"):
                continue
            client.request("DELETE", f"/api/v1/namespaces/{name}/pods", body=grace0)
            client.request("DELETE", f"/api/v1/namespaces/{name}/events")
            client.request("DELETE",
                           f"/apis/discovery.k8s.io/v1/namespaces/{name}/endpointslices")
        for svc in self.cp.list("services"):
            meta = svc["metadata"]
            if meta["namespace"] in SYSTEM_NAMESPACES or (
                    meta["namespace"], meta["name"]) == ("default", "kubernetes"):
                continue
            try:
                self.cp.delete("services", meta["name"], namespace=meta["namespace"])
            except ApiError as exc:
                if exc.code != 404:
                    raise


@pytest.fixture
def real_kube(real_cluster: RealCluster) -> RealKube:
    if not real_cluster.cp.running("kube-apiserver"):   # a test stopped it and failed
        real_cluster.cp.start_apiserver()
    real_cluster.cp.check_alive()   # a daemon that died during an earlier test: say which
    kube = RealKube(real_cluster)
    kube.clear()
    return kube
