"""The few Docker Engine API calls ovn-container makes, over the API socket: plain HTTP/1.1 on
AF_UNIX (or TCP) with the standard library's http.client, no docker CLI and no extra package.

The engine is DOCKER_HOST's, as for the user's own docker commands: `unix:///path` (default
unix:///var/run/docker.sock) or `tcp://HOST:PORT` without TLS. Paths carry no API version: the
daemon then serves its own, and the fields used here (Image, Cmd, Labels, HostConfig.NetworkMode,
HostConfig.Init, State.Pid) mean the same from API 1.25 on.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from ovn_k8s.errors import ConfigError, HostError

LOG = logging.getLogger(__name__)
DEFAULT_HOST = "unix:///var/run/docker.sock"
HOST_ENV = "DOCKER_HOST"
TIMEOUT = 120.0                   # a first start can pull an image


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix stream socket (the Host header says `docker`, as the CLI's does)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def resolve_host(given: str | None) -> str:
    """--docker-host > DOCKER_HOST > the default socket."""
    return given or os.environ.get(HOST_ENV) or DEFAULT_HOST


@dataclass
class DockerApi:
    """One engine; a connection per call (the daemon may close idle ones)."""

    host: str = field(default_factory=lambda: resolve_host(None))
    timeout: float = TIMEOUT
    # The socket's path, or (host, port) for tcp://.
    _address: str | tuple[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        url = urllib.parse.urlsplit(self.host)
        if url.scheme == "unix" and url.path:
            self._address = url.path
        elif url.scheme == "tcp" and url.hostname and url.port:
            self._address = (url.hostname, url.port)
        else:
            raise ConfigError(f"Docker host {self.host!r}: expected unix:///PATH or tcp://HOST:PORT "
                              "(TLS is not supported)")

    # -- the calls ---------------------------------------------------------------------------------
    def create(self, image: str, cmd: list[str], *, name: str, labels: dict[str, str],
               init: bool = True) -> str:
        """POST /containers/create with no network (`--net=none`); pulls the image first when
        the engine lacks it, as `docker run` does. Returns the container's full ID."""
        body = {"Image": image, "Cmd": cmd, "Labels": labels,
                "HostConfig": {"NetworkMode": "none", "Init": init}}
        path = "/containers/create?" + urllib.parse.urlencode({"name": name})
        status, answer = self._call("POST", path, body)
        if status == 404:
            self.pull(image)
            status, answer = self._call("POST", path, body)
        self._check("create", status, answer, 201)
        return str(answer["Id"])

    def start(self, container: str) -> None:
        status, answer = self._call("POST", f"/containers/{_quote(container)}/start")
        self._check("start", status, answer, 204, 304)

    def inspect(self, container: str) -> dict[str, Any]:
        status, answer = self._call("GET", f"/containers/{_quote(container)}/json")
        self._check("inspect", status, answer, 200)
        return dict(answer)

    def pid(self, container: str) -> int:
        """The PID of the container's first process (its network namespace is that PID's)."""
        pid = int(self.inspect(container).get("State", {}).get("Pid") or 0)
        if pid <= 0:
            raise HostError(f"docker inspect: container {container[:12]} is not running")
        return pid

    def delete(self, container: str) -> None:
        """DELETE ?force=true (`docker rm -f`); a container already gone is no error."""
        status, answer = self._call("DELETE", f"/containers/{_quote(container)}?force=true")
        if status == 404:
            LOG.debug("container %s is already gone", container[:12])
            return
        self._check("rm", status, answer, 204)

    def remove(self, container: str) -> None:
        """delete() for undo and clean-up paths: a failure is logged, never raised."""
        try:
            self.delete(container)
        except HostError as e:
            LOG.warning("%s", e)

    def pull(self, image: str) -> None:
        """POST /images/create; the answer is a stream of JSON progress lines, an error among
        them (status 200 all the same) fails the pull."""
        ref = {"fromImage": image}
        last = image.rsplit("/", 1)[-1]
        if ":" not in last and "@" not in last:
            ref["tag"] = "latest"        # an empty tag would pull every tag
        LOG.info("pulling image %s", image)
        status, answer = self._call("POST", "/images/create?" + urllib.parse.urlencode(ref))
        self._check(f"pull {image}", status, answer, 200)
        text = answer if isinstance(answer, str) else json.dumps(answer)
        for line in text.splitlines():
            with_error = _decode(line)
            if isinstance(with_error, dict) and with_error.get("error"):
                raise HostError(f"docker pull {image} failed: {with_error['error']}")

    # -- HTTP --------------------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if isinstance(self._address, str):
            return _UnixConnection(self._address, self.timeout)
        return http.client.HTTPConnection(*self._address, timeout=self.timeout)

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = self._connection()
        try:
            data = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as e:
            raise HostError(f"cannot reach the Docker Engine at {self.host}: {e}") from None
        finally:
            conn.close()
        return resp.status, _decode(text)

    @staticmethod
    def _check(op: str, status: int, answer: Any, *good: int) -> None:
        if status in good:
            return
        message = answer.get("message") if isinstance(answer, dict) else None
        text = str(message or answer or f"HTTP {status}").strip().splitlines()
        raise HostError(f"docker {op} failed: {text[0] if text else status}")


def _quote(container: str) -> str:
    return urllib.parse.quote(container, safe="")


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
