"""Fixtures for the kube client and test API server tests.

Every server binds 127.0.0.1:0 in-process and is stopped at teardown. `run_watch` runs a
generator in a thread and hands its items over a queue, so a test can wait for events with
a timeout; exceptions in the thread are re-raised in the test, never lost.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ovn_k8s.kube.rest import ConnectionParams, KubeClient
from ovn_k8s.kube.watch import StopEvent
from sandbox.kubeapi import KubeApiServer


@pytest.fixture
def kubeapi() -> Iterator[KubeApiServer]:
    server = KubeApiServer(start_resource_version=1000, bookmark_interval=0.1).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(kubeapi: KubeApiServer) -> Iterator[KubeClient]:
    with KubeClient(ConnectionParams(server=kubeapi.url), timeout=5) as c:
        yield c


class Objs:
    """Small dict factories for test objects."""

    @staticmethod
    def pod(name: str, ns: str = "default", *, node: str | None = None,
            labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        meta: dict[str, Any] = {"name": name, "namespace": ns}
        if labels:
            meta["labels"] = labels
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, **extra}

    @staticmethod
    def service(name: str, ns: str = "default", *, port: int = 80,
                svc_type: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": svc_type, "selector": {"app": name},
                         "ports": [{"port": port}], **spec}}

    @staticmethod
    def node(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}

    @staticmethod
    def namespace(name: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@pytest.fixture
def objs() -> type[Objs]:
    return Objs


class WatchRunner:
    """Consume a generator in a daemon thread; read its items with timeouts."""

    def __init__(self, make: Callable[[StopEvent], Iterator[Any]]) -> None:
        self.stop = StopEvent()
        self.items: queue.Queue[Any] = queue.Queue()
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._gen = make(self.stop)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self._gen:
                self.items.put(item)
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            self.error = exc
        finally:
            self.finished.set()

    def next(self, timeout: float = 5.0) -> Any:
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            if self.error is not None:
                raise AssertionError(f"watch thread died: {self.error!r}") from self.error
            raise AssertionError(f"no watch item within {timeout}s") from None

    def take(self, n: int, timeout: float = 5.0) -> list[Any]:
        return [self.next(timeout) for _ in range(n)]

    def quiet(self, seconds: float) -> bool:
        """True when nothing arrives for `seconds`."""
        try:
            item = self.items.get(timeout=seconds)
        except queue.Empty:
            return True
        self.items.put(item)
        return False

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "watch thread did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def run_watch() -> Iterator[Callable[[Callable[[StopEvent], Iterator[Any]]], WatchRunner]]:
    runners: list[WatchRunner] = []

    def start(make: Callable[[StopEvent], Iterator[Any]]) -> WatchRunner:
        runner = WatchRunner(make)
        runners.append(runner)
        return runner
    yield start
    for runner in runners:
        runner.close()


@dataclass(frozen=True)
class Pki:
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca_cert: str  # a CA that signed nothing here


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(d: str, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def _make_leaf(d: str, name: str, cn: str, ext: str) -> None:
    with open(os.path.join(d, f"{name}.ext"), "w") as fh:
        fh.write(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=d)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made
    with the openssl CLI."""
    d = str(tmp_path_factory.mktemp("pki"))
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_leaf(d, "server", "127.0.0.1",
               "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
               "keyUsage=critical,digitalSignature\n")
    _make_leaf(d, "client", "ovn-k8s",
               "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return Pki(p("ca.crt"), p("ca.key"), p("server.crt"), p("server.key"), p("client.crt"),
               p("client.key"), p("other-ca.crt"))
