"""A real Docker Engine (Debian's docker.io) inside a lab namespace, for tests, docs and bench.

    engine = DockerEngine(netns=node.netns, dir=f"{node.dir}/docker")
    engine.start()                 # dockerd + its containerd, API on <dir>/docker.sock
    engine.import_busybox()        # image bb:latest, no registry
    engine.docker("run", "-d", "--network", "ls0", "bb:latest", "sleep", "600")
    engine.stop()                  # containers, dockerd (by PID), the data directory

The recipe is /work/shared/reference/docker-lab.md's:
- dockerd runs in the lab namespace (`nsenter --net=`), so its containers' veths, its own
  fall-backs (docker_gwbridge) and everything else it makes stay there; `--iptables=false
  --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none`: nothing is written to
  any netfilter table.
- It also runs in a mount namespace of its own (`unshare --mount --propagation slave`), where
  `<dir>/plugins` is bind-mounted on /run/docker/plugins and `<dir>/etc` on /etc/docker. So a
  driver's socket `<dir>/plugins/ovn.sock` is what this dockerd finds as
  /run/docker/plugins/ovn.sock, two lab hosts each have their own `ovn` driver, and dockerd's
  key.json, its self bind-mount of --data-root and the containers' mounts never reach the
  machine's mount table (they go with the namespace).
- data, exec root, pid file and API socket are under `dir`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.lab.proc import LabError, alive, read_pid, stop_pid, wait_for

LOG = logging.getLogger(__name__)
DOCKER = "/usr/bin/docker"        # Debian's 20.10 CLI (/usr/local/bin/docker is a newer one)
DOCKERD = "/usr/sbin/dockerd"
BUSYBOX = "/bin/busybox"          # busybox-static
IMAGE = "bb:latest"
PLUGINS = "/run/docker/plugins"
START_TIMEOUT = 30.0

# Run in dockerd's new mount namespace: the private plugin directory and /etc/docker, then
# dockerd itself (exec: the PID we started is dockerd's).
_START = """set -e
d="$1"; shift
mkdir -p /run/docker/plugins /etc/docker
mount --bind "$d/plugins" /run/docker/plugins
mount --bind "$d/etc" /etc/docker
exec "$@"
"""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def api_get(socket_path: str, path: str, timeout: float = 5.0) -> Any:
    """GET on the Docker API's unix socket; the decoded JSON (or text)."""
    conn = _UnixHTTPConnection(socket_path, timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise LabError(f"docker API GET {path}: {resp.status} {body.strip()}")
        try:
            return json.loads(body)
        except ValueError:
            return body
    finally:
        conn.close()


def plugin_call(socket_path: str, method: str, body: Any, timeout: float = 30.0) -> tuple[int, Any]:
    """POST /<method> to a plugin socket as dockerd does; (HTTP status, decoded answer).
    `body` may be bytes (sent as they are: for malformed requests)."""
    conn = _UnixHTTPConnection(socket_path, timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", f"/{method}", body=data,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text
    finally:
        conn.close()


@dataclass
class DockerEngine:
    """One dockerd in the lab namespace `netns`, all its state under `dir`."""

    netns: str
    dir: str
    pid: int | None = None

    @property
    def socket(self) -> str:
        return f"{self.dir}/docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def plugins_dir(self) -> str:
        """What this dockerd sees as /run/docker/plugins: drivers put their sockets here."""
        return f"{self.dir}/plugins"

    @property
    def pidfile(self) -> str:
        return f"{self.dir}/dockerd.pid"

    # -- life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT) -> None:
        for sub in ("plugins", "etc", "data", "exec"):
            os.makedirs(f"{self.dir}/{sub}", exist_ok=True)
        cmd = ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount",
               "--propagation", "slave", "sh", "-c", _START, "sh", self.dir,
               DOCKERD, f"--data-root={self.dir}/data", f"--exec-root={self.dir}/exec",
               f"--pidfile={self.pidfile}", f"--host={self.host}", "--bridge=none",
               "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
               "--userland-proxy=false"]
        with open(f"{self.dir}/dockerd.log", "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        self.pid = proc.pid            # sh execs dockerd: this is dockerd's PID

        def up() -> bool:
            if proc.poll() is not None:
                raise LabError(f"dockerd exited ({proc.returncode}): see {self.dir}/dockerd.log")
            try:
                return api_get(self.socket, "/_ping", timeout=1) == "OK"
            except (OSError, LabError, http.client.HTTPException):
                return False

        wait_for(up, timeout, f"dockerd in {self.netns}")
        # Not a child we wait for: the lab's stop_pid reaps it.
        proc.returncode = 0

    def running(self) -> bool:
        return self.pid is not None and alive(self.pid)

    def stop(self, *, remove_containers: bool = True, timeout: float = 20.0) -> None:
        """Remove every container (fast: no 10 s stop timeout), then SIGTERM dockerd by its
        PID and wait; containerd and the shims go with it. The data stays (a restart finds its
        networks and containers); `destroy()` removes it too."""
        if not self.running():
            return
        if remove_containers:
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=60)
        assert self.pid is not None
        stop_pid(self.pid, timeout=timeout)
        _reap(self.pid)
        self.pid = None

    def destroy(self) -> None:
        """stop() and remove everything under `dir`; the shared /run/docker/plugins mount point
        too when no dockerd is left on the machine."""
        self.stop()
        # A dockerd started before us and not known by PID (a crashed test): its pid file.
        stale = read_pid(self.pidfile)
        if stale is not None and alive(stale) and _comm(stale) == "dockerd":
            stop_pid(stale, timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)
        if not any(_comm(int(p)) == "dockerd" and alive(int(p)) for p in os.listdir("/proc") if p.isdigit()):
            for path in (PLUGINS, os.path.dirname(PLUGINS)):
                with contextlib.suppress(OSError):
                    os.rmdir(path)      # only if empty: another user's files stay

    # -- the CLI ---------------------------------------------------------------------------------
    def docker(self, *args: str, check: bool = True, timeout: float = 60,
               input: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Debian's docker CLI against this dockerd (run from the root namespace: the API is a
        unix socket)."""
        cmd = [DOCKER, "-H", self.host, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              input=input if isinstance(input, str) or input is None else input.decode())
        if check and proc.returncode != 0:
            raise LabError(f"docker {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def inspect(self, kind: str, name: str) -> Any:
        return json.loads(self.docker(kind, "inspect", name).stdout)[0]

    def container_pid(self, name: str) -> int:
        return int(self.docker("inspect", "-f", "{{.State.Pid}}", name).stdout.strip())

    def exec(self, container: str, *cmd: str, check: bool = False,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return self.docker("exec", container, *cmd, check=check, timeout=timeout)

    def import_busybox(self, tag: str = IMAGE) -> None:
        """Image `tag` from the machine's busybox-static: no registry (docker-lab.md)."""
        if self.docker("image", "inspect", tag, check=False).returncode == 0:
            return
        tarball = f"{self.dir}/busybox.tar"
        _busybox_tar(tarball)
        with open(tarball, "rb") as f:
            proc = subprocess.run([DOCKER, "-H", self.host, "import", "-c", "ENV PATH=/bin",
                                   "-c", 'CMD ["/bin/sh"]', "-", tag], stdin=f,
                                  capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise LabError(f"docker import: {proc.stderr.strip()}")

    def wait_container_running(self, name: str, timeout: float = 20) -> None:
        wait_for(lambda: self.docker("inspect", "-f", "{{.State.Running}}", name,
                                     check=False).stdout.strip() == "true", timeout,
                 f"container {name} running")


@dataclass
class DockerDriver:
    """`ovn-docker-driver` serving `engine` (in its namespace, sockets in its plugin dir)."""

    engine: DockerEngine
    ovs_db: str
    nb: str
    bin_dir: str
    extra: tuple[str, ...] = ()
    pid: int | None = None

    @property
    def log(self) -> str:
        return f"{self.engine.dir}/ovn-docker-driver.log"

    def socket(self, name: str = "ovn") -> str:
        return f"{self.engine.plugins_dir}/{name}.sock"

    def start(self, timeout: float = 20.0) -> None:
        cmd = ["nsenter", f"--net=/run/netns/{self.engine.netns}",
               os.path.join(self.bin_dir, "ovn-docker-driver"),
               f"--plugin-dir={self.engine.plugins_dir}", f"--ovs-db={self.ovs_db}",
               f"--ovn-nb={self.nb}", f"--log-file={self.log}", "-vfile:dbg",
               f"--unixctl={self.engine.dir}/ovn-docker-driver.ctl", *self.extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVN_K8S_")}
        env["OVN_K8S_CONFIG"] = "/dev/null"
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
        self.pid = proc.pid

        def up() -> bool:
            if proc.poll() is not None:
                raise LabError(f"ovn-docker-driver exited ({proc.returncode}): "
                               f"{proc.stderr.read().decode().strip() if proc.stderr else ''}")
            return all(os.path.exists(self.socket(n)) for n in ("ovn", "openvswitch"))

        wait_for(up, timeout, "ovn-docker-driver sockets")
        if proc.stderr is not None:
            proc.stderr.close()
        proc.returncode = 0           # not waited for here: stop_pid reaps it

    def stop(self) -> None:
        if self.pid is not None:
            stop_pid(self.pid, timeout=10)
            _reap(self.pid)
            self.pid = None

    def running(self) -> bool:
        return self.pid is not None and alive(self.pid)


def _reap(pid: int) -> None:
    """Collect our own child's exit status (a zombie would still read as `dockerd`)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def _busybox_tar(path: str) -> None:
    """A root file system of busybox and its applet links, as a tar file."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    with tarfile.open(path, "w") as tar:
        def add_dir(name: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tar.addfile(info)
        for d in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            add_dir(d)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)


def run_in_netns(netns: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """`cmd` in the lab namespace through nsenter (not `ip netns exec`, which remounts /sys)."""
    return subprocess.run(["nsenter", f"--net=/run/netns/{netns}", *cmd], capture_output=True,
                          text=True, check=False, **kwargs)


__all__ = ["DockerDriver", "DockerEngine", "IMAGE", "api_get", "plugin_call", "run_in_netns"]
