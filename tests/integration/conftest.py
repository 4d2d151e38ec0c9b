"""Fixtures shared by the integration tests (the `lab` fixture lives in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.kubeapi import KubeApiServer


@pytest.fixture
def kube(request: pytest.FixtureRequest) -> Iterator[KubeApiServer]:
    """Our API server on 127.0.0.1 with fast bookmarks, stopped at teardown; or, for tests
    parametrized with tests.real_control_plane.BOTH_SERVERS, the session's real control
    plane as `RealKube` (same CRUD methods; its kubeconfigs hold the watcher's RBAC token)."""
    if getattr(request, "param", "embedded") == "real":
        yield request.getfixturevalue("real_kube")
        return
    server = KubeApiServer(bookmark_interval=0.5, start_resource_version=1000).start()
    try:
        yield server
    finally:
        server.stop()
