"""A real Kubernetes control plane on 127.0.0.1, for the tests, the sandbox and the benchmarks.

- `find_assets()` / `not_run_reason()`: the binaries, found the envtest way
  (`KUBEBUILDER_ASSETS`, else `<repo>/.k8s-assets` that scripts/install.sh unpacks), and why
  a real-control-plane run cannot happen when they are missing;
- `ControlPlane`: etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler) as
  subprocesses on free ports of 127.0.0.1, with a self-made CA, a static admin token in a
  token FILE (never on a command line) and everything else under one work directory;
- `RealKubeClient`: create/get/list/replace/patch/delete with the signatures of
  `sandbox.kubeapi.KubeApiServer`'s, over HTTPS, so a test runs against either server
  (ControlPlane itself exposes them too).

Differences from the embedded server that matter to tests (pods deleted with grace 0 where no
kubelet runs, EndpointSlices only for pods with a podIP on an existing Node, ...) are in
/work/shared/k8s-assets/README.md and docs/testing.md; the client smooths only those the
embedded server's Python API hides too (status written through /status, a pod's nodeName
through /binding, grace 0 by default). An old resourceVersion answers 410 only once etcd is
compacted past it AND the apiserver's watch cache no longer holds it: `compact()` then
`restart_apiserver()`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from sandbox.kubeapi.errors import ApiError
from sandbox.kubeapi.resources import ResourceType
from sandbox.kubeapi.resources import lookup as _embedded_lookup

LOG = logging.getLogger(__name__)

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[1]
ASSETS_ENV = "KUBEBUILDER_ASSETS"
DEFAULT_ASSETS = REPO / ".k8s-assets"
ALL_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                "kubectl", "kubelet")
# What ControlPlane() starts with its defaults; etcd + kube-apiserver is the envtest minimum.
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

SERVICE_CIDR = "10.96.0.0/16"
FIRST_SERVICE_IP = "10.96.0.1"
# The controllers that make sense without kubelets (README of the assets);
# node-lifecycle-controller only where something keeps nodes' heartbeats.
DEFAULT_CONTROLLERS = (
    "endpoints-controller", "endpointslice-controller", "endpointslice-mirroring-controller",
    "clusterrole-aggregation-controller", "root-ca-certificate-publisher-controller",
    "namespace-controller", "garbage-collector-controller", "serviceaccount-controller",
    "serviceaccount-token-controller", "replicaset-controller", "deployment-controller",
)
ADMIN_USER = "ovn-k8s-admin"


# -- assets ------------------------------------------------------------------------------------

def find_assets(env: Mapping[str, str] | None = None) -> Path | None:
    """The assets directory: $KUBEBUILDER_ASSETS when set (even if it is incomplete: the user
    asked for it), else <repo>/.k8s-assets when it exists, else None."""
    env = os.environ if env is None else env
    if env.get(ASSETS_ENV):
        return Path(env[ASSETS_ENV])
    return DEFAULT_ASSETS if DEFAULT_ASSETS.is_dir() else None


def missing_binaries(assets: Path | None,
                     required: Iterable[str] = CONTROL_PLANE_BINARIES) -> list[str]:
    """The required binaries that `assets` lacks or cannot execute (all of them for None)."""
    if assets is None:
        return list(required)
    return [b for b in required
            if not (os.path.isfile(assets / b) and os.access(assets / b, os.X_OK))]


def not_run_reason(required: Iterable[str] = CONTROL_PLANE_BINARIES,
                   env: Mapping[str, str] | None = None) -> str | None:
    """None when a control plane can start; else one line saying why not and how to fix it."""
    assets = find_assets(env)
    if assets is None:
        return (f"no assets: {ASSETS_ENV} is unset and {DEFAULT_ASSETS} does not exist "
                "(scripts/install.sh unpacks ../shared/k8s-assets there)")
    if not assets.is_dir():
        return f"{ASSETS_ENV}={assets} is not a directory"
    missing = missing_binaries(assets, required)
    if missing:
        source = f"{ASSETS_ENV}={assets}" if assets != DEFAULT_ASSETS else str(assets)
        return f"{source} lacks {', '.join(missing)} (missing or not executable)"
    return None


def binary(name: str, assets: Path | None = None) -> Path:
    """Path of one asset binary (e.g. kubectl); FileNotFoundError with the reason if absent."""
    assets = assets or find_assets()
    if missing_binaries(assets, [name]):
        raise FileNotFoundError(not_run_reason([name]) or name)
    assert assets is not None
    return assets / name


# -- small helpers -----------------------------------------------------------------------------

def free_port() -> int:
    """A port free on 127.0.0.1 right now (the daemons bind it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports(count: int) -> list[int]:
    # Hold all sockets open while picking, so the ports differ from each other.
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()[-500:]}")


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, the apiserver's serving certificate and the service-account key pair, by the
    openssl CLI (P-256 keys: fast to make, accepted by every component)."""
    directory.mkdir(parents=True, exist_ok=True)
    p = {name: directory / name for name in
         ("ca.key", "ca.crt", "apiserver.key", "apiserver.csr", "apiserver.crt", "sa.key",
          "sa.pub", "ext.cnf")}
    for key in ("ca.key", "apiserver.key", "sa.key"):
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", str(p[key]))
        os.chmod(p[key], 0o600)
    _openssl("req", "-x509", "-new", "-key", str(p["ca.key"]), "-subj", "/CN=ovn-k8s-test-ca",
             "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(p["ca.crt"]))
    p["ext.cnf"].write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
        f"subjectAltName=IP:127.0.0.1,IP:{FIRST_SERVICE_IP},DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\n", encoding="utf-8")
    _openssl("req", "-new", "-key", str(p["apiserver.key"]), "-subj", "/CN=kube-apiserver",
             "-out", str(p["apiserver.csr"]))
    _openssl("x509", "-req", "-in", str(p["apiserver.csr"]), "-CA", str(p["ca.crt"]),
             "-CAkey", str(p["ca.key"]), "-CAcreateserial", "-days", "365",
             "-extfile", str(p["ext.cnf"]), "-out", str(p["apiserver.crt"]))
    _openssl("pkey", "-in", str(p["sa.key"]), "-pubout", "-out", str(p["sa.pub"]))
    return p


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent thread ends (Linux prctl)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def kubeconfig_text(url: str, ca_file: str | os.PathLike[str], token: str,
                    namespace: str = "default") -> str:
    import yaml  # the sandbox and tests write kubeconfigs; nothing else needs yaml here

    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "real", "cluster": {
            "server": url, "certificate-authority": os.path.abspath(ca_file)}}],
        "users": [{"name": "real", "user": {"token": token}}],
        "contexts": [{"name": "real", "context": {"cluster": "real", "user": "real",
                                                  "namespace": namespace}}],
        "current-context": "real",
    }
    return yaml.safe_dump(config, default_flow_style=False, sort_keys=False)


# -- resources beyond the embedded server's table ----------------------------------------------

_EXTRA: tuple[ResourceType, ...] = (
    ResourceType("serviceaccounts", "ServiceAccount", "", "v1", True, "serviceaccount", ("sa",)),
    ResourceType("configmaps", "ConfigMap", "", "v1", True, "configmap", ("cm",)),
    ResourceType("secrets", "Secret", "", "v1", True, "secret"),
    ResourceType("clusterroles", "ClusterRole", "rbac.authorization.k8s.io", "v1", False,
                 "clusterrole"),
    ResourceType("clusterrolebindings", "ClusterRoleBinding", "rbac.authorization.k8s.io", "v1",
                 False, "clusterrolebinding"),
    ResourceType("roles", "Role", "rbac.authorization.k8s.io", "v1", True, "role"),
    ResourceType("rolebindings", "RoleBinding", "rbac.authorization.k8s.io", "v1", True,
                 "rolebinding"),
    ResourceType("leases", "Lease", "coordination.k8s.io", "v1", True, "lease"),
    ResourceType("networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True,
                 "networkpolicy", ("netpol",)),
    ResourceType("deployments", "Deployment", "apps", "v1", True, "deployment", ("deploy",),
                 status_subresource=True),
    ResourceType("replicasets", "ReplicaSet", "apps", "v1", True, "replicaset", ("rs",),
                 status_subresource=True),
)


def lookup(name: str) -> ResourceType:
    """A resource type by plural, singular, kind or short name: the embedded server's kinds
    plus the few more a real cluster needs in tests (RBAC, service accounts, leases, ...)."""
    try:
        return _embedded_lookup(name)
    except KeyError:
        for r in _EXTRA:
            if name in (r.plural, r.singular, r.kind) or name in r.short_names:
                return r
        raise


def _session(ca_file: str | os.PathLike[str]) -> requests.Session:
    session = requests.Session()
    # Not the environment's: REQUESTS_CA_BUNDLE would override `verify`, and a proxy
    # variable would send 127.0.0.1 traffic elsewhere.
    session.trust_env = False
    session.verify = os.fspath(ca_file)
    return session


# -- the client --------------------------------------------------------------------------------

class RealKubeClient:
    """CRUD over HTTPS with `KubeApiServer`'s method signatures and its ApiError on failure.

    Like the embedded server's Python API, create/replace/patch write `status` too (through
    the /status subresource), a patch of a pod's spec.nodeName binds it (the binding
    subresource), and delete of a pod is immediate (grace 0: no kubelet here)."""

    def __init__(self, url: str, ca_file: str | os.PathLike[str], token: str, *,
                 timeout: float = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._session = _session(ca_file)
        self._session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._session.close()

    def request(self, method: str, path: str, *, body: Any = None,
                params: Mapping[str, Any] | None = None,
                content_type: str = "application/json") -> Obj:
        """One request; the decoded JSON answer, or ApiError with the server's Status."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        resp = self._session.request(method, self.url + path, data=data, params=params,
                                     headers=headers, timeout=self.timeout)
        try:
            answer = resp.json()
        except ValueError:
            answer = {"message": resp.text[:500]}
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, str(answer.get("message") or resp.reason),
                           reason=answer.get("reason"), details=answer.get("details"))
        return answer

    def request_text(self, method: str, path: str) -> str:
        """One request answered in plain text (/metrics, /readyz?verbose); ApiError on failure."""
        resp = self._session.request(method, self.url + path, timeout=self.timeout)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.text[:500] or resp.reason)
        return resp.text

    @staticmethod
    def _ns(rt: ResourceType, namespace: str | None, obj: Mapping[str, Any] | None = None
            ) -> str | None:
        if not rt.namespaced:
            return None
        meta = (obj or {}).get("metadata") or {}
        return namespace or meta.get("namespace") or "default"

    def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj:
        rt = lookup(resource)
        ns = self._ns(rt, namespace, obj)
        body = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        created = self.request("POST", rt.path(ns), body=body)
        status = obj.get("status")
        if rt.status_subresource and status:
            created = self.request(
                "PATCH", rt.path(ns, created["metadata"]["name"]) + "/status",
                body={"status": status}, content_type="application/merge-patch+json")
        return created

    def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj:
        rt = lookup(resource)
        return self.request("GET", rt.path(self._ns(rt, namespace), name))

    def list(self, resource: str, *, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        rt = lookup(resource)
        params = {k: v for k, v in (("labelSelector", label_selector),
                                    ("fieldSelector", field_selector)) if v}
        ns = namespace if rt.namespaced else None
        answer = self.request("GET", rt.path(ns), params=params)
        items = answer.get("items") or []
        for item in items:  # a list's items carry no kind/apiVersion; a get's do
            item.setdefault("kind", rt.kind)
            item.setdefault("apiVersion", rt.api_version)
        return items

    def replace(self, resource: str, obj: Obj) -> Obj:
        """Replace the whole object, status included (a PUT of the object, then of /status)."""
        rt = lookup(resource)
        meta = obj.get("metadata") or {}
        path = rt.path(self._ns(rt, None, obj), meta["name"])
        body = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        replaced = self.request("PUT", path, body=body)
        if rt.status_subresource and "status" in obj:
            body["metadata"] = {**meta, "resourceVersion":
                                replaced["metadata"]["resourceVersion"]}
            replaced = self.request("PUT", path + "/status", body=body)
        return replaced

    def patch(self, resource: str, name: str, patch: Any, *, namespace: str | None = None,
              patch_type: str = "merge") -> Obj:
        """Patch the object, status included; patch_type merge, strategic or json."""
        rt = lookup(resource)
        content_type = {"merge": "application/merge-patch+json",
                        "strategic": "application/strategic-merge-patch+json",
                        "json": "application/json-patch+json"}.get(patch_type, patch_type)
        path = rt.path(self._ns(rt, namespace), name)
        node = ((patch.get("spec") or {}).get("nodeName")
                if rt.plural == "pods" and isinstance(patch, dict) else None)
        if node:
            # A pod is scheduled through its binding subresource (as kube-scheduler does);
            # spec.nodeName is immutable to PATCH.
            self.request("POST", path + "/binding", body={
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
            rest = {**patch, "spec": {k: v for k, v in patch["spec"].items()
                                      if k != "nodeName"}}
            if not rest["spec"]:
                del rest["spec"]
            if not rest:
                return self.get(resource, name, namespace=namespace)
            patch = rest
        if rt.status_subresource and isinstance(patch, dict) and "status" in patch:
            main = {k: v for k, v in patch.items() if k != "status"}
            result = self.request("PATCH", path + "/status", body={"status": patch["status"]},
                                  content_type=content_type)
            if main:
                result = self.request("PATCH", path, body=main, content_type=content_type)
            return result
        if rt.status_subresource and isinstance(patch, list) and any(
                str(op.get("path", "")).startswith("/status") for op in patch):
            return self.request("PATCH", path + "/status", body=patch,
                                content_type=content_type)
        return self.request("PATCH", path, body=patch, content_type=content_type)

    def delete(self, resource: str, name: str, *, namespace: str | None = None,
               grace_period_seconds: int | None = 0) -> Obj:
        """Delete; grace 0 by default, as the embedded server (None: the server's default)."""
        rt = lookup(resource)
        body = None
        if grace_period_seconds is not None:
            body = {"apiVersion": "v1", "kind": "DeleteOptions",
                    "gracePeriodSeconds": grace_period_seconds}
        return self.request("DELETE", rt.path(self._ns(rt, namespace), name), body=body)

    # -- beyond the embedded server's API ------------------------------------------------------

    def apply(self, docs: Iterable[Mapping[str, Any]]) -> list[Obj]:
        """Create each object, or replace it when it exists (a plain `kubectl apply`)."""
        done = []
        for doc in docs:
            if not doc:
                continue
            rt = lookup(doc["kind"])
            obj = dict(doc)
            try:
                done.append(self.create(rt.plural, obj))
            except ApiError as exc:
                if exc.code != 409:
                    raise
                meta = obj["metadata"]
                current = self.get(rt.plural, meta["name"], namespace=meta.get("namespace"))
                obj["metadata"] = {**meta,
                                   "resourceVersion": current["metadata"]["resourceVersion"]}
                done.append(self.replace(rt.plural, obj))
        return done

    def service_account_token(self, name: str, *, namespace: str = "default",
                              cluster_role: str | None = None,
                              expiration_seconds: int = 3600) -> str:
        """Create (if needed) ServiceAccount `namespace/name`, bind it to `cluster_role` when
        given, and mint a token for it through the TokenRequest API."""
        try:
            self.create("serviceaccounts", {"metadata": {"name": name}}, namespace=namespace)
        except ApiError as exc:
            if exc.code != 409:
                raise
        if cluster_role:
            self.apply([{
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{namespace}-{name}-{cluster_role}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": cluster_role},
                "subjects": [{"kind": "ServiceAccount", "name": name,
                              "namespace": namespace}],
            }])
        answer = self.request(
            "POST", lookup("serviceaccounts").path(namespace, name) + "/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                  "spec": {"expirationSeconds": expiration_seconds}})
        return answer["status"]["token"]


# -- the control plane -------------------------------------------------------------------------

class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler) on 127.0.0.1.

    Everything lives under `workdir` (certificates, token file, kubeconfig, etcd data, logs);
    nothing outside it is written or removed. Use as a context manager or start()/stop()."""

    def __init__(self, workdir: str | os.PathLike[str], *, assets: Path | None = None,
                 controllers: Sequence[str] | None = DEFAULT_CONTROLLERS,
                 scheduler: bool = True, apiserver_args: Sequence[str] = (),
                 ready_timeout: float = 60.0, stop_grace: float = 3.0,
                 die_with_parent: bool = False) -> None:
        """controllers: kube-controller-manager's --controllers (None or empty: no
        controller manager); apiserver_args: extra kube-apiserver flags (they come last,
        so they override ours); die_with_parent: the daemons get SIGKILL when the thread
        that started them ends (tests: a killed pytest leaves no control plane behind)."""
        self.workdir = Path(workdir).resolve()
        self.assets = assets or find_assets()
        self.controllers = tuple(controllers or ())
        self.scheduler = scheduler
        self.apiserver_args = tuple(apiserver_args)
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.die_with_parent = die_with_parent
        self.admin_token = secrets.token_hex(24)
        self.etcd_port = self.peer_port = self.port = self.kcm_port = 0
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._client: RealKubeClient | None = None
        self.pki: dict[str, Path] = {}

    # -- paths and addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def ca_file(self) -> str:
        return str(self.pki["ca.crt"])

    @property
    def admin_kubeconfig(self) -> str:
        return str(self.workdir / "admin.kubeconfig")

    def log_file(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    @property
    def client(self) -> RealKubeClient:
        if self._client is None:
            raise RuntimeError("control plane not started")
        return self._client

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        needed = ["etcd", "kube-apiserver"]
        if self.controllers:
            needed.append("kube-controller-manager")
        if self.scheduler:
            needed.append("kube-scheduler")
        reason = (not_run_reason(needed) if self.assets is None
                  else (f"{self.assets} lacks {', '.join(missing)}"
                        if (missing := missing_binaries(self.assets, needed)) else None))
        if reason:
            raise FileNotFoundError(f"cannot start a real control plane: {reason}")
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.workdir / "pki")
        # token,user,uid,"groups": read by the apiserver from this file only.
        _write_private(self.workdir / "tokens.csv",
                       f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        try:
            for attempt in range(3):
                self.etcd_port, self.peer_port, self.port, self.kcm_port = _free_ports(4)
                self.write_kubeconfig(self.admin_kubeconfig)  # for the KCM and the scheduler
                try:
                    self._start_etcd()
                    self._start_apiserver()
                    break
                except RuntimeError as exc:
                    # Another process took a port between our pick and the daemon's bind.
                    if "address already in use" not in str(exc) or attempt == 2:
                        raise
                    LOG.info("control plane: a port was taken meanwhile; new ports")
                    self._terminate(["kube-apiserver", "etcd"], 0)
            self._client = RealKubeClient(self.url, self.ca_file, self.admin_token)
            if self.controllers:
                self._start_controller_manager()
            if self.scheduler:
                self._start_scheduler()
        except BaseException:
            self.stop()
            raise
        LOG.info("control plane: %s (etcd %s, workdir %s)", self.url, self.etcd_url,
                 self.workdir)
        return self

    def _spawn(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        assert self.assets is not None
        log = open(self.log_file(name), "ab")  # noqa: SIM115 (the child owns it)
        try:
            proc = subprocess.Popen([str(self.assets / name), *args], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.workdir,
                                    preexec_fn=_die_with_parent if self.die_with_parent
                                    else None)  # noqa: PLW1509 (only prctl, no locks)
        finally:
            log.close()
        self.procs[name] = proc
        LOG.debug("control plane: %s pid %d", name, proc.pid)
        return proc

    def _start_etcd(self) -> None:
        self._spawn("etcd", [
            "--name", "default", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-url", self.etcd_url,
            "--listen-peer-url", f"http://127.0.0.1:{self.peer_port}",
            "--log-level", "warn",
        ])

    def apiserver_command(self) -> list[str]:
        p = self.pki
        return [
            "--etcd-servers", self.etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port),
            "--endpoint-reconciler-type", "none",
            "--tls-cert-file", str(p["apiserver.crt"]),
            "--tls-private-key-file", str(p["apiserver.key"]),
            "--client-ca-file", str(p["ca.crt"]),
            "--token-auth-file", str(self.workdir / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(p["sa.pub"]),
            "--service-account-signing-key-file", str(p["sa.key"]),
            "--disable-admission-plugins", "ServiceAccount",
            "--allow-privileged=true", "--profiling=false",
            *self.apiserver_args,
        ]

    def _start_apiserver(self) -> None:
        self._spawn("kube-apiserver", self.apiserver_command())
        self.wait_ready()

    def _start_controller_manager(self) -> None:
        kubeconfig = self.admin_kubeconfig
        self._spawn("kube-controller-manager", [
            "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig, "--authentication-skip-lookup",
            "--bind-address", "127.0.0.1", "--secure-port", str(self.kcm_port),
            "--leader-elect=false", "--use-service-account-credentials=false",
            "--service-account-private-key-file", str(self.pki["sa.key"]),
            "--root-ca-file", self.ca_file,
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--controllers", ",".join(self.controllers),
        ])

    def _start_scheduler(self) -> None:
        self._spawn("kube-scheduler", [
            "--kubeconfig", self.admin_kubeconfig, "--leader-elect=false",
            "--bind-address", "127.0.0.1", "--secure-port", "0",
        ])

    def check_alive(self) -> None:
        """RuntimeError naming the first daemon that exited, with its log's tail."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; log tail:\n"
                                   f"{_tail(self.log_file(name))}")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll /readyz until 200 (bounded); RuntimeError with the logs' tails otherwise."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        last = ""
        with _session(self.ca_file) as session:
            session.headers["Authorization"] = f"Bearer {self.admin_token}"
            while True:
                self.check_alive()
                try:
                    resp = session.get(f"{self.url}/readyz", timeout=2)
                    if resp.status_code == 200:
                        return
                    last = f"HTTP {resp.status_code}: {resp.text[-300:]}"
                except requests.RequestException as exc:
                    last = str(exc)[:300]
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"kube-apiserver not ready after {timeout or self.ready_timeout}s "
                        f"({last}); apiserver log tail:\n"
                        f"{_tail(self.log_file('kube-apiserver'))}\netcd log tail:\n"
                        f"{_tail(self.log_file('etcd'), 10)}")
                time.sleep(0.1)

    def readyz(self) -> bool:
        """One GET /readyz: True on 200."""
        with _session(self.ca_file) as session:
            session.headers["Authorization"] = f"Bearer {self.admin_token}"
            try:
                return session.get(f"{self.url}/readyz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

    def _terminate(self, names: Iterable[str], grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds, each by PID; reaps them."""
        procs = [(n, self.procs.pop(n)) for n in names if n in self.procs]
        for _, proc in procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGKILL if grace <= 0 else signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for name, proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                LOG.debug("control plane: %s pid %d ignored SIGTERM; SIGKILL", name, proc.pid)
                proc.kill()
                proc.wait(10)

    def stop(self) -> None:
        """Stop every daemon (SIGTERM, SIGKILL after stop_grace); the workdir stays."""
        if self._client is not None:
            self._client.close()
            self._client = None
        # Clients first, so the apiserver has no watchers to drain; etcd last.
        self._terminate(["kube-scheduler", "kube-controller-manager"], self.stop_grace)
        self._terminate(["kube-apiserver"], self.stop_grace)
        self._terminate(["etcd"], self.stop_grace)

    def stop_apiserver(self, *, graceful: bool = False) -> None:
        """Kill kube-apiserver (SIGKILL, or SIGTERM first with graceful); etcd, the controller
        manager and the scheduler keep running (they reconnect once it is back)."""
        self._terminate(["kube-apiserver"], self.stop_grace if graceful else 0)

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port and data; returns once /readyz is 200."""
        if self.running("kube-apiserver"):
            raise RuntimeError("kube-apiserver is running")
        self._start_apiserver()

    def restart_apiserver(self, *, graceful: bool = False) -> None:
        """stop_apiserver() then start_apiserver(): watches end abruptly, clients see
        connection errors for a few seconds, the watch cache starts afresh."""
        self.stop_apiserver(graceful=graceful)
        self.start_apiserver()

    def running(self, name: str = "kube-apiserver") -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}

    # -- etcd ------------------------------------------------------------------------------------

    def _etcd(self, call: str, body: Obj) -> Obj:
        with requests.Session() as session:
            session.trust_env = False  # no proxy for 127.0.0.1
            resp = session.post(f"{self.etcd_url}/v3/{call}", json=body, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def etcd_revision(self) -> int:
        """etcd's current revision (a range read of one unlikely key)."""
        key = base64.b64encode(b"\0").decode()
        return int(self._etcd("kv/range", {"key": key})["header"]["revision"])

    def compact(self) -> int:
        """Compact etcd to its current revision (through its v3 HTTP gateway); returns it.
        A watch or list from an older resourceVersion that the apiserver's watch cache no
        longer holds then answers 410 Gone (restart_apiserver() empties the cache)."""
        revision = self.etcd_revision()
        self._etcd("kv/compaction", {"revision": revision, "physical": True})
        return revision

    # -- credentials -----------------------------------------------------------------------------

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str | None = None, *,
                         namespace: str = "default") -> str:
        """A kubeconfig (mode 0600) for this server with `token` (default: the admin's)."""
        path = os.fspath(path)
        _write_private(Path(path), kubeconfig_text(self.url, self.ca_file,
                                                   token or self.admin_token, namespace))
        return path

    def token_client(self, token: str) -> RealKubeClient:
        return RealKubeClient(self.url, self.ca_file, token)

    def service_account_token(self, name: str, *, namespace: str = "default",
                              cluster_role: str | None = None,
                              expiration_seconds: int = 3600) -> str:
        return self.client.service_account_token(name, namespace=namespace,
                                                 cluster_role=cluster_role,
                                                 expiration_seconds=expiration_seconds)

    # -- objects: the embedded server's signatures -------------------------------------------------

    def create(self, resource: str, obj: Obj, *, namespace: str | None = None) -> Obj:
        return self.client.create(resource, obj, namespace=namespace)

    def get(self, resource: str, name: str, *, namespace: str | None = None) -> Obj:
        return self.client.get(resource, name, namespace=namespace)

    def list(self, resource: str, *, namespace: str | None = None,
             label_selector: str | None = None, field_selector: str | None = None) -> list[Obj]:
        return self.client.list(resource, namespace=namespace, label_selector=label_selector,
                                field_selector=field_selector)

    def replace(self, resource: str, obj: Obj) -> Obj:
        return self.client.replace(resource, obj)

    def patch(self, resource: str, name: str, patch: Any, *, namespace: str | None = None,
              patch_type: str = "merge") -> Obj:
        return self.client.patch(resource, name, patch, namespace=namespace,
                                 patch_type=patch_type)

    def delete(self, resource: str, name: str, *, namespace: str | None = None,
               grace_period_seconds: int | None = 0) -> Obj:
        return self.client.delete(resource, name, namespace=namespace,
                                  grace_period_seconds=grace_period_seconds)

    def apply(self, docs: Iterable[Mapping[str, Any]]) -> list[Obj]:
        return self.client.apply(docs)
