"""The sandbox's real nodes without starting them: the images it builds (docker archives from
busybox-static), containerd's and the kubelet's configuration (kubelet-lab.md's fixes), the
nodes' loopback InternalIPs, the choice of node kind and the manifests' fill-ins for the
sandbox's images. tests/e2e/test_sandbox_real_nodes.py runs them."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from sandbox import cluster, images, manifests, realnode
from sandbox.cluster import SandboxError


def test_image_tarball_is_a_docker_archive_and_reproducible(tmp_path: Path) -> None:
    a = images.build(images.PODSERVER, str(tmp_path / "a.tar"))
    b = images.build(images.PODSERVER, str(tmp_path / "b.tar"))
    assert Path(a).read_bytes() == Path(b).read_bytes()    # same busybox, same image
    with tarfile.open(a) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [images.PODSERVER_IMAGE]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        layer = tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Cmd"] == ["/bin/sh", "/podserver.sh"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    with tarfile.open(fileobj=io.BytesIO(layer)) as rootfs:
        names = {m.name: m for m in rootfs.getmembers()}
        assert names["bin/busybox"].mode == 0o755 and names["bin/busybox"].size > 100_000
        for applet in ("sh", "httpd", "wget", "hostname", "sleep", "nc"):
            assert names[f"bin/{applet}"].issym() and names[f"bin/{applet}"].linkname == "busybox"
        script = rootfs.extractfile("podserver.sh").read().decode()  # type: ignore[union-attr]
    assert "hostname > /www/index.html" in script and "trap" in script and "${PORT:-8080}" in script


def test_pause_image_sleeps() -> None:
    assert images.PAUSE.cmd == ("/bin/sleep", "infinity")
    assert images.PAUSE.ref == images.PAUSE_IMAGE


def node() -> realnode.RealNode:
    return realnode.RealNode("sbabc123", "node2", 2, "/tmp/some/state/lab")


def test_containerd_config_is_private_and_has_the_recipes_fixes() -> None:
    n = node()
    conf = tomllib.loads(realnode.containerd_config(n))
    assert conf["root"].startswith(n.base) and conf["state"] == n.containerd_state
    assert conf["grpc"]["address"] == n.address and len(n.address) < 108
    assert conf["ttrpc"]["address"].startswith(n.base)
    cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True and cri["disable_apparmor"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == images.PAUSE_IMAGE
    assert cri["cni"] == {"bin_dir": "/tmp/some/state/lab/node2/cni/bin",
                          "conf_dir": "/tmp/some/state/lab/node2/cni/net.d", "max_conf_num": 1}
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {"SystemdCgroup": False, "Root": n.runc_root}


def test_kubelet_config_keeps_it_on_loopback_and_off_the_hosts_cgroups() -> None:
    n = node()
    conf = yaml.safe_load(realnode.kubelet_config(n))
    assert conf["kind"] == "KubeletConfiguration"
    assert conf["failCgroupV1"] is False and conf["cgroupsPerQOS"] is False
    assert conf["enforceNodeAllocatable"] == [] and conf["cgroupDriver"] == "cgroupfs"
    assert conf["address"] == conf["healthzBindAddress"] == "127.0.0.1"
    assert conf["readOnlyPort"] == 0 and conf["authorization"]["mode"] == "AlwaysAllow"
    assert conf["imageGCHighThresholdPercent"] == 100
    assert conf["containerRuntimeEndpoint"] == f"unix://{n.address}"
    assert conf["podLogsDir"].startswith(n.base)


def test_internal_ips_are_loopback_and_differ_between_sandboxes() -> None:
    a = [realnode.internal_ip("sandbox", i) for i in (1, 2)]
    b = [realnode.internal_ip("sb1a2b3c", i) for i in (1, 2)]
    for ip in a + b:
        parts = [int(x) for x in ip.split(".")]
        assert parts[0] == 127 and 1 <= parts[1] <= 254 and all(0 <= x <= 255 for x in parts)
    assert len(set(a + b)) == 4 and a[0].rsplit(".", 1)[0] == a[1].rsplit(".", 1)[0]
    assert realnode.internal_ip("sandbox", 1) == a[0]    # stable: `down` after a crash finds it


def test_nodes_kind_choice() -> None:
    assert cluster.default_nodes_kind("embedded") == "agent"
    assert cluster.default_nodes_kind("real") == ("real" if realnode.unavailable() is None else "agent")


def test_real_nodes_need_the_real_control_plane(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="needs the real control plane"):
        cluster.up(str(tmp_path / "s"), control_plane="embedded", nodes_kind="real")
    with pytest.raises(SandboxError, match="--nodes-kind must be one of"):
        cluster.up(str(tmp_path / "s"), nodes_kind="vm")


def test_sandbox_images_are_never_pulled_and_listen_on_the_container_port() -> None:
    dep = {"kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 9000}]},
                                                         {"name": "other", "image": "example.org/x:1"}]}}}}
    manifests._fill_in(dep)
    web, other = dep["spec"]["template"]["spec"]["containers"]
    assert web["image"] == manifests.PLACEHOLDER_IMAGE and web["imagePullPolicy"] == "Never"
    assert web["env"] == [{"name": "PORT", "value": "9000"}]
    assert "imagePullPolicy" not in other and "env" not in other   # a user's image: as written
