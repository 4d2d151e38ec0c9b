"""Fixtures shared by the integration tests (the `lab` fixture lives in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.kubeapi import KubeApiServer


@pytest.fixture
def kube() -> Iterator[KubeApiServer]:
    """Our API server on 127.0.0.1 with fast bookmarks, stopped at teardown."""
    server = KubeApiServer(bookmark_interval=0.5, start_resource_version=1000).start()
    try:
        yield server
    finally:
        server.stop()
