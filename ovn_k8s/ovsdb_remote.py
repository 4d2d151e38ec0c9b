"""OVSDB remotes: parsing `unix:` / `tcp:` / `ssl:` addresses, TLS file names, and a probe.

Shared by the NB connection (ovn_k8s.nb.connection) and the local Open_vSwitch DB
(ovn_k8s.local_ovsdb). Light on purpose: the CNI plugin imports it on every call, so it
imports nothing beyond the standard library and ovn_k8s.errors.

python-ovs retries a dead remote forever: `probe` makes an unreachable server one clear error
after a short wait instead of a hang.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ovn_k8s.errors import ConfigError, ConnectionFailed

PROBE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    privkey: str
    cert: str
    cacert: str


def parse_remote(remote: str, what: str) -> tuple[str, str, int | None]:
    """('unix', path, None) or ('tcp'|'ssl', host, port); a bad address is a ConfigError."""
    proto, _, rest = remote.partition(":")
    if proto == "unix" and rest:
        return proto, rest, None
    if proto in ("tcp", "ssl"):
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return proto, host, int(port)
    raise ConfigError(f"{what}: {remote!r} is not an OVSDB address (unix:PATH, tcp:IP:PORT or "
                      "ssl:IP:PORT)")


def probe(remote: str, what: str, timeout: float = PROBE_TIMEOUT) -> None:
    """Fail fast with one line if nothing listens at `remote`."""
    proto, host, port = parse_remote(remote, what)
    try:
        if proto == "unix":
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(timeout)
                s.connect(host)
        else:
            with socket.create_connection((host, port), timeout=timeout):
                pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConnectionFailed(f"cannot reach the {what} at {remote}: {reason}") from None
