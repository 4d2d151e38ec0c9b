"""The real control plane launcher itself (sandbox/control_plane.py): start, /readyz, a
namespace through the admin token and through kubectl with the written kubeconfig, no token on
any command line, and stop leaves no process behind and nothing outside its workdir."""

from __future__ import annotations

import os
import subprocess

import pytest

from sandbox.control_plane import ControlPlane, binary

pytestmark = pytest.mark.realk8s


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().replace(b"\0", b" ").decode()


def _alive(pid: int) -> bool:
    # stop() reaps its children, so a PID that still answers is a live process.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_readyz_namespace_kubectl_and_stop_leaves_nothing(tmp_path):
    workdir = tmp_path / "cp"
    cp = ControlPlane(workdir)
    try:
        cp.start()
        pids = dict(cp.pids)
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager",
                             "kube-scheduler"}
        for pid in pids.values():   # the admin token only ever travels in files
            assert cp.admin_token not in _cmdline(pid)
        assert cp.readyz()
        cp.create("namespaces", {"metadata": {"name": "launcher-check"}})
        assert cp.get("namespaces", "launcher-check")["status"]["phase"] == "Active"

        kubeconfig = cp.write_kubeconfig(tmp_path / "kubeconfig")
        assert os.stat(kubeconfig).st_mode & 0o777 == 0o600
        out = subprocess.run([str(binary("kubectl")), "--kubeconfig", kubeconfig, "get",
                              "namespace", "launcher-check", "-o", "name"],
                             capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() == "namespace/launcher-check"
    finally:
        cp.stop()
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert cp.pids == {}
    # Everything it wrote is under the workdir (and the kubeconfig we asked for).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp", "kubeconfig"]
