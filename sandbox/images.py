"""Container images without a registry: the sandbox's pause and podserver images, built here
as docker-archive tarballs (what `docker save` writes and `ctr images import` reads) from the
host's busybox-static, and imported into a real node's containerd.

- `sandbox.ovn-k8s/pause:1`: busybox running `sleep infinity` (the pod sandbox's process);
- `sandbox.ovn-k8s/podserver:latest`: busybox httpd answering its pod's name (the pod's
  hostname, which the kubelet sets to the pod's name) on $PORT (default 8080), logging each
  request to stdout (`kubectl logs`); /ready is a file the readiness probe of a test can
  remove and restore with `kubectl exec`. On SIGTERM it keeps serving $STOP_DELAY seconds
  (default 2) while the pod leaves the endpoints, then stops (a rolling update loses no request).

No docker build: a layer is a plain tar written with `tarfile` (fixed mtimes, so the same
busybox gives the same image ID), the config and manifest.json are JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass

PAUSE_IMAGE = "sandbox.ovn-k8s/pause:1"
PODSERVER_IMAGE = "sandbox.ovn-k8s/podserver:latest"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

PODSERVER_SCRIPT = """#!/bin/sh
# The sandbox's workload: answer the pod's name (its hostname) on every GET of / and /ready.
mkdir -p /www
hostname > /www/index.html
cp /www/index.html /www/ready
echo "podserver $(hostname) listening on :${PORT:-8080}"
httpd -f -vv -p "${PORT:-8080}" -h /www &
pid=$!
# As PID 1 a process ignores the signals it has no handler for: stop at the kubelet's SIGTERM
# instead of waiting out the grace period for its SIGKILL, after serving $STOP_DELAY more
# seconds (default 2), while the pod leaves the Service's endpoints and the load balancers.
trap 'sleep "${STOP_DELAY:-2}"; kill $pid; exit 0' TERM INT
wait $pid
"""


@dataclass(frozen=True)
class ImageSpec:
    ref: str
    cmd: tuple[str, ...]
    files: tuple[tuple[str, bytes, int], ...] = ()   # (path, content, mode) beside busybox


def busybox() -> str:
    """The host's static busybox (the package busybox-static); a dynamic one would need its libc."""
    for path in BUSYBOX_CANDIDATES:
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError:
            continue
        # A dynamic executable names its loader (PT_INTERP) near the start of the file.
        if head.startswith(b"\x7fELF") and b"/ld-linux" not in head and b"/ld-musl" not in head:
            return path
    raise FileNotFoundError("no static busybox (apt-get install busybox-static)")


def _applets(path: str) -> list[str]:
    proc = subprocess.run([path, "--list"], capture_output=True, text=True, check=True)
    return sorted({a for a in proc.stdout.split() if a and "/" not in a and a != "busybox"})


def _info(name: str, *, size: int = 0, mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
          link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type, info.linkname = size, mode, kind, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    return info


def layer(spec: ImageSpec, busybox_path: str) -> bytes:
    """The image's one layer: /bin/busybox, a symlink per applet, /tmp, /etc and the files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d in ("bin", "etc", "tmp", "www", "proc", "sys", "dev"):
            tar.addfile(_info(d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755))
        with open(busybox_path, "rb") as f:
            data = f.read()
        tar.addfile(_info("bin/busybox", size=len(data), mode=0o755), io.BytesIO(data))
        for applet in _applets(busybox_path):
            tar.addfile(_info(f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777))
        etc = {"etc/passwd": b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
               "etc/group": b"root:x:0:\nnobody:x:65534:\n"}
        for path, content in etc.items():
            tar.addfile(_info(path, size=len(content)), io.BytesIO(content))
        for path, content, mode in spec.files:
            tar.addfile(_info(path.lstrip("/"), size=len(content), mode=mode), io.BytesIO(content))
    return buf.getvalue()


def build(spec: ImageSpec, dest: str, busybox_path: str | None = None) -> str:
    """Write `spec` as a docker-archive tarball at `dest`; returns `dest`."""
    data = layer(spec, busybox_path or busybox())
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    config = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
              "config": {"Cmd": list(spec.cmd), "Env": ["PATH=/bin"], "WorkingDir": "/"},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "ovn-k8s-sandbox (sandbox.images)"}]}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [spec.ref], "Layers": [layer_name]}]).encode()
    tmp = dest + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in ((layer_name.split("/")[0], None), (layer_name, data), (config_name, config_bytes),
                              ("manifest.json", manifest)):
            if content is None:
                tar.addfile(_info(name, kind=tarfile.DIRTYPE, mode=0o755))
            else:
                tar.addfile(_info(name, size=len(content)), io.BytesIO(content))
    os.replace(tmp, dest)
    return dest


PAUSE = ImageSpec(PAUSE_IMAGE, ("/bin/sleep", "infinity"))
PODSERVER = ImageSpec(PODSERVER_IMAGE, ("/bin/sh", "/podserver.sh"),
                      files=(("podserver.sh", PODSERVER_SCRIPT.encode(), 0o755),))


def build_all(directory: str) -> list[str]:
    """The sandbox's images as tarballs in `directory` (rebuilt only when missing)."""
    os.makedirs(directory, exist_ok=True)
    path = busybox()
    out = []
    for spec in (PAUSE, PODSERVER):
        dest = f"{directory}/{spec.ref.split('/')[-1].replace(':', '_')}.tar"
        if not os.path.exists(dest):
            build(spec, dest, path)
        out.append(dest)
    return out


def ctr() -> str:
    return shutil.which("ctr") or "ctr"


def import_tarball(address: str, tarball: str, timeout: float = 120) -> str:
    """`ctr -n k8s.io images import` into the containerd at `address` (its grpc socket);
    returns ctr's output (the imported references)."""
    proc = subprocess.run([ctr(), "--address", address, "-n", "k8s.io", "images", "import", tarball],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ctr images import {tarball}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()
