"""The real control plane launcher itself (sandbox/control_plane.py): start, /readyz, a
namespace through the admin token and through kubectl with the written kubeconfig, the
controller manager (an EndpointSlice) and the scheduler (a binding) at work, no token on any
command line, and stop leaves no process behind and nothing outside its workdir."""

from __future__ import annotations

import os
import subprocess

import pytest

from sandbox.control_plane import ControlPlane, binary
from sandbox.watcher_harness import wait_until

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

        # kube-scheduler binds a pod to the one Ready, untainted node; kube-controller-manager
        # writes the EndpointSlice of a service (for a pod with an IP on an existing Node).
        cp.create("nodes", {"metadata": {"name": "n1"}})
        room = {"cpu": "2", "memory": "2Gi", "pods": "10"}
        cp.patch("nodes", "n1", {"spec": {"taints": None}, "status": {
            "capacity": room, "allocatable": room,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
        cp.create("pods", {"metadata": {"name": "p", "labels": {"app": "p"}},
                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        wait_until(lambda: cp.get("pods", "p")["spec"].get("nodeName") == "n1", 30,
                   "kube-scheduler to bind the pod")
        cp.patch("pods", "p", {"status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                                          "conditions": [{"type": "Ready", "status": "True"}]}})
        cp.create("services", {"metadata": {"name": "p"}, "spec": {
            "selector": {"app": "p"}, "ports": [{"port": 80}]}})
        slices = wait_until(lambda: [s for s in cp.list("endpointslices")
                                     if s["metadata"]["labels"].get(
                                         "kubernetes.io/service-name") == "p"
                                     and s.get("endpoints")], 30, "the EndpointSlice")
        assert slices[0]["endpoints"][0]["addresses"] == ["10.244.0.5"]
    finally:
        cp.stop()
    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert cp.pids == {}
    # Everything it wrote is under the workdir (and the kubeconfig we asked for).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cp", "kubeconfig"]
