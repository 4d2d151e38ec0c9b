"""pytest plugin: tests marked `realk8s` run against a real Kubernetes control plane.

- One `ControlPlane` (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) per
  session, `control_plane`, started on first use: its start-up costs seconds, so every test
  shares it and keeps to its own namespaces or names.
- Where the assets are missing (`sandbox.control_plane.not_run_reason()`), the marked tests are
  deselected and the summary says so on a line of its own, "NOT RUN: real control plane:
  <reason>"; under CI (CI=true) they are kept and fail with that reason instead, so CI never
  passes without them.

Loaded by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.control_plane import ControlPlane, not_run_reason

MARK = "realk8s"
_NOT_RUN = pytest.StashKey[tuple[str, int]]()


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    not_run = config.stash.get(_NOT_RUN, None)
    if not_run is None:
        return
    reason, count = not_run
    terminalreporter.write_sep("=", "real Kubernetes control plane", yellow=True)
    terminalreporter.write_line(
        f"NOT RUN: real control plane: {reason} ({count} tests marked {MARK!r} deselected; "
        "under CI=true they fail instead)", yellow=True, bold=True)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's real control plane; tests create their own namespaces and names."""
    reason = not_run_reason()
    if reason is not None:
        pytest.fail(f"real control plane needed ({MARK}): {reason}", pytrace=False)
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    try:
        cp.start()
        yield cp
    finally:
        cp.stop()
