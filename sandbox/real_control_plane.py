"""The sandbox's real control plane: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler from the envtest assets (sandbox.control_plane), started by `up` as detached
daemons that outlive the command, each with a pid file in the sandbox's daemon directory, so
`status` shows them and `down` (or the lab's sweep after a crash) stops them by PID.

Two things differ from sandbox.control_plane's defaults, both because the sandbox has
kubelet-like agents and nodes in network namespaces:

- kube-controller-manager also runs node-lifecycle-controller: the agents keep their nodes'
  heartbeats, and that controller lifts the `node.kubernetes.io/not-ready` taint admission puts
  on every new Node (the scheduler binds nothing to a tainted node);
- kube-apiserver's serving certificate also names the lab's address of the API server (the
  forwarder at <central_ip>:6443, what the CNI plugin and the gateway helper in the nodes
  use), signed by the same CA.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sandbox.control_plane import DEFAULT_CONTROLLERS, FIRST_SERVICE_IP, ControlPlane, find_assets, not_run_reason

# In the order `down` stops them: clients first, etcd last.
PROCESSES = ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
CONTROLLERS = (*DEFAULT_CONTROLLERS, "node-lifecycle-controller")


def unavailable() -> str | None:
    """None when the assets for a real control plane are there; else why not (one line)."""
    return not_run_reason()


def kubectl() -> str | None:
    """The assets' kubectl, when there is one."""
    assets = find_assets()
    path = assets / "kubectl" if assets else None
    return str(path) if path and os.access(path, os.X_OK) else None


class SandboxControlPlane(ControlPlane):
    """A ControlPlane whose apiserver certificate also names `lab_ip` (the forwarder's address
    inside the lab), so clients in the nodes' namespaces verify it."""

    def __init__(self, workdir: str, lab_ip: str, pid_dir: str) -> None:
        super().__init__(workdir, controllers=CONTROLLERS)
        self.lab_ip = lab_ip
        self.pid_dir = pid_dir

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        # The pid file at once, not after start(): an 'up' killed half-way leaves none running
        # that down cannot find.
        proc = super()._spawn(name, args)
        with open(f"{self.pid_dir}/{name}.pid", "w", encoding="ascii") as f:
            f.write(f"{proc.pid}\n")
        return proc

    def apiserver_command(self) -> list[str]:
        cert, key = self._lab_certificate()
        # Extra flags come last and override the base class's serving certificate. Real nodes'
        # InternalIP is a loopback address of their own; the default order would try the
        # Hostname first (a DNS query for the node's name) for exec and logs.
        return [*super().apiserver_command(), "--tls-cert-file", cert, "--tls-private-key-file", key,
                "--kubelet-preferred-address-types=InternalIP"]

    def _lab_certificate(self) -> tuple[str, str]:
        pki = self.workdir / "pki"
        cert, key, csr, ext = (pki / f"sandbox-apiserver.{x}" for x in ("crt", "key", "csr", "cnf"))
        if not cert.exists():
            ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                           "extendedKeyUsage=serverAuth\n"
                           f"subjectAltName=IP:127.0.0.1,IP:{self.lab_ip},IP:{FIRST_SERVICE_IP},DNS:localhost,"
                           "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n", encoding="utf-8")
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
            os.chmod(key, 0o600)
            _openssl("req", "-new", "-key", str(key), "-subj", "/CN=kube-apiserver", "-out", str(csr))
            _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
                     "-CAcreateserial", "-days", "365", "-extfile", str(ext), "-out", str(cert))
        return str(cert), str(key)


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def start(daemon_dir: str, lab_ip: str, kubeconfig: str) -> SandboxControlPlane:
    """Start the control plane under <daemon_dir>/control-plane, write a pid file per process
    into `daemon_dir` and the admin kubeconfig to `kubeconfig`. Returns once /readyz is 200."""
    cp = SandboxControlPlane(f"{daemon_dir}/control-plane", lab_ip, daemon_dir)
    cp.start()
    cp.write_kubeconfig(kubeconfig)
    return cp


def log_file(daemon_dir: str, name: str) -> Path:
    return Path(daemon_dir) / "control-plane" / "logs" / f"{name}.log"
