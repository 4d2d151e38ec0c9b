"""Where ovn-container finds the Docker Engine (the calls themselves: tests/integration/
test_docker_engine.py, against a real dockerd)."""

from __future__ import annotations

import pytest

from ovn_k8s.docker.engine import DockerApi, resolve_host
from ovn_k8s.errors import ConfigError


def test_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert resolve_host(None) == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/x.sock")
    assert resolve_host(None) == "unix:///run/x.sock"
    assert resolve_host("tcp://127.0.0.1:2375") == "tcp://127.0.0.1:2375"
    for bad in ("/var/run/docker.sock", "ssh://host", "tcp://127.0.0.1", "unix://"):
        with pytest.raises(ConfigError, match="expected unix:///PATH or tcp://HOST:PORT"):
            DockerApi(bad)
