"""Processes and network namespaces for the lab: run, start detached daemons, stop by PID."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

LOG = logging.getLogger(__name__)
CLONE_NEWNET = 0x40000000


class LabError(RuntimeError):
    pass


def run(cmd: Sequence[str], *, netns: str | None = None, env: Mapping[str, str] | None = None,
        check: bool = True, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess[str]:
    full = (["ip", "netns", "exec", netns] if netns else []) + list(cmd)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input,
                          env={**os.environ, **(env or {})}, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(full)} failed ({proc.returncode}): "
                       f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def alive(pid: int) -> bool:
    """Exists and is not a zombie (PID 1 here reaps orphans late: kill -0 is not enough)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return False


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile, encoding="ascii") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid):
        LOG.warning("pid %d ignored SIGTERM; killing", pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Reap it if it is our own child (non-detached helpers).
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pidfile(pidfile: str) -> None:
    pid = read_pid(pidfile)
    if pid is not None:
        stop_pid(pid)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def socket_in_netns(netns: str, host: str, port: int = 0) -> socket.socket:
    """A listening TCP socket bound inside `netns`, usable by this (root-namespace) process.

    A socket belongs to the namespace it was created in, so a short-lived thread enters the
    namespace (setns affects only the calling thread), creates and binds the socket, and exits.
    This lets an in-process server (e.g. our Kubernetes API server) serve pods and nodes in
    the lab while the test keeps calling its Python API directly.
    """
    result: list[socket.socket | BaseException] = []

    def enter_and_bind() -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            result.append(sock)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            result.append(e)

    thread = threading.Thread(target=enter_and_bind, name=f"setns-{netns}")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
