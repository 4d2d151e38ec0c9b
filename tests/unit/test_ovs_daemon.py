"""The daemons as OVS daemons (ovn_k8s.ovs_daemon): the original READMEs' command lines run
verbatim, `ovs-appctl` drives them through their real control socket, and SIGTERM wins in
every state, including against servers that accept a connection and never answer.

Real processes throughout: the executables, our in-process Kubernetes API server, listeners on
a unix socket in the test's directory or on 127.0.0.1 that accept and stay silent.
Configuration comes from the environment, so that each README line is typed as written.

Lines (from ../shared/reference/original-systems.md):
- `ovn-k8s-watcher --overlay --pidfile --log-file -vfile:info -vconsole:emer --detach`
  (ovn-kubernetes README, Python era; §A.2)
- `ovn-k8s-gateway-helper --physical-bridge=breth0 --physical-interface=eth0 --pidfile --detach`
  (ovn-kubernetes README, shared-NIC gateway; §A.3)
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.kubeapi import KubeApiServer

BIN = os.path.dirname(sys.executable)
WATCHER_LINE = "ovn-k8s-watcher --overlay --pidfile --log-file -vfile:info -vconsole:emer --detach"
HELPER_LINE = ("ovn-k8s-gateway-helper --physical-bridge=breth0 --physical-interface=eth0 "
               "--pidfile --detach")
STOP_BOUND = 5.0        # the bound: every daemon exits within 5 s of SIGTERM


# --- helpers -------------------------------------------------------------------------------------
class Silent:
    """A listener that accepts connections and never sends a byte (unix socket or 127.0.0.1)."""

    def __init__(self, path: str | None = None, *, hang_up: bool = False) -> None:
        self.hang_up = hang_up              # close each connection at once instead
        if path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(path)
            self.address = path
        else:
            self.sock = socket.socket(socket.AF_INET)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.sock.listen(16)
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            if self.hang_up:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            state = next(line.split()[1] for line in f if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return state != "Z"


def wait_until(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OVN_K8S_", "OVS_")) and k != "KUBECONFIG"}
    env.update({"OVN_K8S_CONFIG": "/dev/null", "OVS_RUNDIR": str(tmp), "OVS_LOGDIR": str(tmp),
                "OVN_K8S_OVS_DB": f"unix:{tmp}/no-ovs.sock", **extra})
    return env


def argv(line: str) -> list[str]:
    words = shlex.split(line)
    return [os.path.join(BIN, words[0]), *words[1:]]


def appctl(tmp: Path, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ovs-appctl", "-t", target, *args], capture_output=True, text=True,
                          timeout=10, env={**os.environ, "OVS_RUNDIR": str(tmp)}, check=False)


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


def vlog_levels(text: str, module: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.split()[:1] == [module])
    return line.split()[1:]


@pytest.fixture
def kube() -> Iterator[KubeApiServer]:
    server = KubeApiServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def reap() -> Iterator[list[int]]:
    """PIDs to kill at teardown if a test left them running (detached daemons)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- the watcher -----------------------------------------------------------------------------------
def test_the_readme_watcher_line_detaches_and_ovs_appctl_drives_it(
        tmp_path: Path, kube: KubeApiServer, reap: list[int]) -> None:
    nb = Silent(str(tmp_path / "nb.sock"))
    env = env_for(tmp_path, OVN_K8S_OVN_NB=f"unix:{nb.address}", OVN_K8S_K8S_API_SERVER=kube.url)
    try:
        start = subprocess.run(argv(WATCHER_LINE), capture_output=True, text=True, timeout=60,
                               env=env, check=False)
        # The parent returned once the child was serving: pidfile and control socket are there.
        assert start.returncode == 0, start.stderr
        assert start.stderr == ""                             # -vconsole:emer
        pidfile = tmp_path / "ovn-k8s-watcher.pid"
        pid = read_pid(pidfile)
        reap.append(pid)
        assert alive(pid) and (tmp_path / f"ovn-k8s-watcher.{pid}.ctl").exists()

        version = appctl(tmp_path, "ovn-k8s-watcher", "version")
        assert version.returncode == 0 and version.stdout.startswith("ovn-k8s-watcher (ovn-k8s) ")
        wait_until(lambda: nb.accepted, 30, "the watcher to connect to the NB")
        status = appctl(tmp_path, "ovn-k8s-watcher", "status")
        assert status.returncode == 0, status.stderr
        assert "state: connecting" in status.stdout and "synced: no" in status.stdout
        assert "role: standby" in status.stdout and "pods: 0" in status.stdout

        levels = appctl(tmp_path, "ovn-k8s-watcher", "vlog/list").stdout
        assert vlog_levels(levels, "watcher") == ["emer", "off", "info"]   # console syslog file
        assert appctl(tmp_path, "ovn-k8s-watcher", "vlog/set", "watcher:file:dbg").returncode == 0
        levels = appctl(tmp_path, "ovn-k8s-watcher", "vlog/list").stdout
        assert vlog_levels(levels, "watcher") == ["emer", "off", "dbg"]

        assert appctl(tmp_path, "ovn-k8s-watcher", "exit").returncode == 0
        wait_until(lambda: not alive(pid), STOP_BOUND, "the watcher to exit")
        assert not pidfile.exists()
        assert not (tmp_path / f"ovn-k8s-watcher.{pid}.ctl").exists()
        log = (tmp_path / "ovn-k8s-watcher.log").read_text()   # --log-file: LOGDIR/PROG.log
        assert re.search(r"\|\s*watcher\s*\|\s*INFO\s*\|\s*Kubernetes API server", log), log
        assert "ovs-appctl exit: stopping" in log and "exiting now" not in log
    finally:
        nb.close()


def test_a_second_watcher_on_the_same_pidfile_is_refused_unless_overwritten(
        tmp_path: Path, kube: KubeApiServer, reap: list[int]) -> None:
    env = env_for(tmp_path, OVN_K8S_OVN_NB=f"unix:{tmp_path}/nb.sock",
                  OVN_K8S_K8S_API_SERVER=kube.url)
    first = subprocess.run(argv(WATCHER_LINE), capture_output=True, text=True, timeout=60, env=env,
                           check=False)
    assert first.returncode == 0, first.stderr
    pid = read_pid(tmp_path / "ovn-k8s-watcher.pid")
    reap.append(pid)
    second = subprocess.run(argv(WATCHER_LINE), capture_output=True, text=True, timeout=60,
                            env=env, check=False)
    assert second.returncode == 1
    assert f"already running as pid {pid}" in second.stderr
    assert read_pid(tmp_path / "ovn-k8s-watcher.pid") == pid
    assert appctl(tmp_path, "ovn-k8s-watcher", "exit").returncode == 0
    wait_until(lambda: not alive(pid), STOP_BOUND, "the watcher to exit")


def test_monitor_restarts_a_crashed_watcher(tmp_path: Path, kube: KubeApiServer,
                                            reap: list[int]) -> None:
    env = env_for(tmp_path, OVN_K8S_OVN_NB=f"unix:{tmp_path}/nb.sock",
                  OVN_K8S_K8S_API_SERVER=kube.url)
    start = subprocess.run(argv(WATCHER_LINE + " --monitor"), capture_output=True, text=True,
                           timeout=60, env=env, check=False)
    assert start.returncode == 0, start.stderr
    pidfile = tmp_path / "ovn-k8s-watcher.pid"
    pid = read_pid(pidfile)
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        monitor = int(next(line.split()[1] for line in f if line.startswith("PPid:")))
    reap.extend([pid, monitor])
    os.kill(pid, signal.SIGSEGV)
    wait_until(lambda: pidfile.exists() and read_pid(pidfile) != pid, 30,
               "the monitor to restart the watcher")
    new = read_pid(pidfile)
    reap.append(new)
    assert appctl(tmp_path, "ovn-k8s-watcher", "version").returncode == 0
    assert appctl(tmp_path, "ovn-k8s-watcher", "exit").returncode == 0
    wait_until(lambda: not alive(new) and not alive(monitor), STOP_BOUND,
               "the watcher and its monitor to exit")


def _stop_in_time(proc: subprocess.Popen[str], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(timeout=STOP_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"still running {STOP_BOUND}s after SIGTERM:\n{log.read_text()}") from None
    text = log.read_text()
    assert status == 0, text
    assert "SIGTERM: stopping" in text and "exiting now" not in text   # orderly, no watchdog


def test_sigterm_wins_while_the_nb_accepts_and_never_answers(tmp_path: Path,
                                                             kube: KubeApiServer) -> None:
    nb = Silent(str(tmp_path / "nb.sock"))
    log = tmp_path / "w.log"
    proc = subprocess.Popen([os.path.join(BIN, "ovn-k8s-watcher"), f"--ovn-nb=unix:{nb.address}",
                             f"--k8s-api-server={kube.url}", "--timeout=60",
                             f"--log-file={log}", "-vfile:dbg"],
                            env=env_for(tmp_path), text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: nb.accepted, 30, "the watcher to connect to the NB")
        _stop_in_time(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        nb.close()


def test_sigterm_wins_while_the_api_server_accepts_and_never_answers(tmp_path: Path) -> None:
    api = Silent()
    log = tmp_path / "w.log"
    proc = subprocess.Popen([os.path.join(BIN, "ovn-k8s-watcher"),
                             f"--ovn-nb=unix:{tmp_path}/nb.sock", "--timeout=60",
                             f"--k8s-api-server=http://{api.address}", f"--log-file={log}",
                             "-vfile:dbg"],
                            env=env_for(tmp_path), text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: api.accepted, 30, "the watcher to connect to the API server")
        _stop_in_time(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        api.close()


def test_console_emer_keeps_warnings_off_stderr_without_a_log_file(tmp_path: Path) -> None:
    api = Silent(hang_up=True)               # every API request fails: a warning per retry
    proc = subprocess.Popen([os.path.join(BIN, "ovn-k8s-watcher"), "-vconsole:emer",
                             f"--ovn-nb=unix:{tmp_path}/nb.sock",
                             f"--k8s-api-server=http://{api.address}"],
                            env=env_for(tmp_path), text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(api.accepted) >= 2, 30, "a failed request and its retry")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_BOUND)
        assert proc.returncode == 0 and err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        api.close()


@pytest.mark.parametrize("args, message", [
    (["--underlay"], "Underlay mode not implemented"),
    (["--openstack"], "OpenStack mode not implemented"),
    (["--log-file=/proc/nope/x.log"], "--log-file /proc/nope/x.log: cannot open it"),
    (["-vnosuchmodule:file:info"], '-v nosuchmodule:file:info: no destination, level, or module'),
    (["--log-level=loud"], "--log-level: 'loud' is not one of"),
])
def test_bad_daemon_options_are_one_error_line(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    proc = subprocess.run([os.path.join(BIN, "ovn-k8s-watcher"), *args], capture_output=True,
                          text=True, timeout=60, env=env_for(tmp_path), check=False)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ovn-k8s-watcher: error: "), lines
    assert message in lines[0]


def test_the_config_files_rundir_places_pidfile_and_control_socket(
        tmp_path: Path, kube: KubeApiServer) -> None:
    run = tmp_path / "run"
    conf = tmp_path / "ovn_k8s.conf"
    conf.write_text(f"[default]\nrundir = {run}\nlogdir = {tmp_path}/logs\novn_mode = overlay\n")
    (tmp_path / "logs").mkdir()
    env = env_for(tmp_path, OVN_K8S_CONFIG=str(conf), OVN_K8S_OVN_NB=f"unix:{tmp_path}/nb.sock",
                  OVN_K8S_K8S_API_SERVER=kube.url)
    proc = subprocess.Popen(argv("ovn-k8s-watcher --overlay --pidfile --log-file -vfile:info"), env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: list(run.glob("ovn-k8s-watcher.*.ctl")), 30, "the control socket")
        assert read_pid(run / "ovn-k8s-watcher.pid") == proc.pid
        assert appctl(run, "ovn-k8s-watcher", "version").returncode == 0
        assert (tmp_path / "logs" / "ovn-k8s-watcher.log").exists()
        _stop_in_time(proc, tmp_path / "logs" / "ovn-k8s-watcher.log")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the gateway helper ----------------------------------------------------------------------------
def test_the_readme_helper_line_exits_with_the_childs_error(tmp_path: Path) -> None:
    """--detach: the parent waits for the child, and reports its failure (here: a local OVS DB
    that accepts and never answers, within --timeout) as its own exit status and line."""
    ovs = Silent(str(tmp_path / "db.sock"))
    env = env_for(tmp_path, OVN_K8S_OVS_DB=f"unix:{ovs.address}", OVN_K8S_TIMEOUT="1")
    try:
        proc = subprocess.run(argv(HELPER_LINE), capture_output=True, text=True, timeout=60,
                              env=env, check=False)
    finally:
        ovs.close()
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ovn-k8s-gateway-helper: error: "), lines
    assert "local OVS database" in lines[0]
    assert not (tmp_path / "ovn-k8s-gateway-helper.pid").exists()


def test_sigterm_wins_while_the_local_ovsdb_accepts_and_never_answers(tmp_path: Path) -> None:
    ovs = Silent(str(tmp_path / "db.sock"))
    log = tmp_path / "h.log"
    proc = subprocess.Popen([os.path.join(BIN, "ovn-k8s-gateway-helper"),
                             "--physical-bridge=breth0", "--physical-interface=eth0",
                             f"--ovs-db=unix:{ovs.address}", "--timeout=60", "--pidfile",
                             f"--log-file={log}", "-vfile:dbg"],
                            env=env_for(tmp_path), text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: ovs.accepted, 30, "the helper to connect to the local OVS DB")
        status = appctl(tmp_path, "ovn-k8s-gateway-helper", "status")
        assert status.returncode == 0 and "bridge: breth0" in status.stdout, status
        _stop_in_time(proc, log)
        assert not (tmp_path / "ovn-k8s-gateway-helper.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ovs.close()
