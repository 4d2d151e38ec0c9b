"""PID files for our daemons: refuse to start twice, survive a stale file, clean up after us."""

from __future__ import annotations

import os

from ovn_k8s.errors import ConfigError


def alive(pid: int, prog: str | None = None) -> bool:
    """`pid` runs (not a zombie: PID 1 here reaps late) and, when we can tell, is `prog` (a
    stale file whose PID was reused by something else does not block a start)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            state = next((line.split()[1] for line in f if line.startswith("State:")), "Z")
    except OSError:
        return False
    if "Z" in state:
        return False
    if prog is None:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return prog.encode() in f.read()
    except OSError:
        return True


def write(path: str, prog: str) -> None:
    """Write our PID atomically; a ConfigError if the file names another live `prog`."""
    try:
        with open(path, encoding="ascii") as f:
            other = int(f.read().strip() or 0)
    except (OSError, ValueError):
        other = 0
    if other and other != os.getpid() and alive(other, prog):
        raise ConfigError(f"--pidfile {path}: {prog} is already running as pid {other}")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"--pidfile {path}: cannot write it: {exc.strerror or exc}") from None


def remove(path: str) -> None:
    """Remove the file if it still names us (a successor may have taken it over)."""
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() != str(os.getpid()):
                return
        os.unlink(path)
    except OSError:
        pass
