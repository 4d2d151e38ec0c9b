"""Where the API server is and how to authenticate: build `ConnectionParams`.

Three sources, each a plain function the config layer (or a test) calls with explicit values:

- `from_kubeconfig(path, context=...)`: a kubeconfig file, parsed here with pyyaml (imported
  lazily, so the CNI plugin pays for it only when it uses a kubeconfig). Supports
  current-context, server, certificate-authority(-data), insecure-skip-tls-verify, proxy-url,
  token, tokenFile, client-certificate(-data), client-key(-data); `exec` plugins and
  `auth-provider` entries through `credentials` (the official client's loader, imported only
  then). Basic auth is refused with a KubeConfigError. `$KUBECONFIG` lists are not
  merged: the first existing file is used.
- `from_service_account(sa_dir=...)`: in-cluster, from KUBERNETES_SERVICE_HOST/PORT and the
  service-account token (re-read when it rotates), CA and namespace files.
- `from_ovs_values(api_server, token=..., ca_certificate=..., ca_file=...)`: the original
  project's OVS external_ids k8s-api-server (http:// when no scheme), k8s-api-token and
  k8s-ca-certificate (PEM with literal "\\n", written to a file), as in
  ovn_k8s/common/kubernetes.py of the Python original.

`load_connection_params(...)` tries them in a fixed order (see its docstring).
Certificate data is written to private (0600) files, in `data_dir` or a temporary directory
removed at exit. Never imports `kubernetes` itself (V11); `credentials` does, lazily.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import ipaddress
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

from ovn_k8s.kube.errors import KubeConfigError
from ovn_k8s.kube.params import ConnectionParams

LOG = logging.getLogger(__name__)

DEFAULT_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_KUBECONFIG = os.path.join("~", ".kube", "config")


def _private_dir(data_dir: str | None) -> str:
    if data_dir:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        return data_dir
    path = tempfile.mkdtemp(prefix="ovn-k8s-kube-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _write_private(directory: str, name: str, data: bytes) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _b64(value: Any, what: str) -> bytes:
    try:
        data = base64.b64decode("".join(str(value).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KubeConfigError(f"{what} is not valid base64: {exc}") from None
    if not data:
        raise KubeConfigError(f"{what} is empty")
    return data


def _named(entries: Any, name: str, what: str, path: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            body = entry.get(what)
            return body if isinstance(body, dict) else {}
    raise KubeConfigError(f"{path}: no {what} named {name!r}")


def default_kubeconfig_path(environ: Mapping[str, str] | None = None) -> str | None:
    """The first existing file of $KUBECONFIG, else ~/.kube/config if it exists."""
    env = os.environ if environ is None else environ
    for candidate in (env.get("KUBECONFIG") or "").split(os.pathsep):
        if candidate and os.path.isfile(candidate):
            return candidate
    home = os.path.expanduser(DEFAULT_KUBECONFIG)
    return home if os.path.isfile(home) else None


def from_kubeconfig(path: str | None = None, *, context: str | None = None,
                    data_dir: str | None = None,
                    environ: Mapping[str, str] | None = None) -> ConnectionParams:
    """Connection settings from a kubeconfig (default: $KUBECONFIG, then ~/.kube/config)."""
    import yaml  # lazily: only kubeconfig users pay for it

    if path is None:
        path = default_kubeconfig_path(environ)
        if path is None:
            raise KubeConfigError("no kubeconfig: $KUBECONFIG is unset and ~/.kube/config "
                                  "does not exist")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"kubeconfig {path} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a mapping")
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: Any) -> str:
        # kubectl resolves relative file references against the kubeconfig's directory.
        return os.path.join(base, os.path.expanduser(str(p)))

    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeConfigError(f"kubeconfig {path}: no current-context and no context given")
    ctx = _named(doc.get("contexts"), ctx_name, "context", path)
    cluster_name = ctx.get("cluster")
    if not cluster_name:
        raise KubeConfigError(f"kubeconfig {path}: context {ctx_name!r} names no cluster")
    cluster = _named(doc.get("clusters"), cluster_name, "cluster", path)
    user = _named(doc.get("users"), ctx["user"], "user", path) if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeConfigError(f"kubeconfig {path}: cluster {cluster_name!r} has no server")
    if user.get("username") or user.get("password"):
        raise KubeConfigError(f"kubeconfig {path}: basic auth is not supported; use a token")
    # The same order as kubectl (client-go): an auth provider, then a token, then exec.
    plugin_kind = ("auth-provider" if user.get("auth-provider") else
                   None if user.get("token") or user.get("tokenFile") else
                   "exec" if user.get("exec") else None)
    plugin = None
    if plugin_kind:
        from ovn_k8s.kube import credentials  # imports `kubernetes`: only these users pay

        plugin = credentials.load(path, ctx_name, str(ctx.get("user")), plugin_kind)

    private: str | None = None

    def materialise(name: str, data: bytes) -> str:
        nonlocal private
        private = private or _private_dir(data_dir)
        return _write_private(private, name, data)

    ca_file = None
    if cluster.get("certificate-authority-data"):
        ca_file = materialise("ca.crt", _b64(cluster["certificate-authority-data"],
                                             "certificate-authority-data"))
    elif cluster.get("certificate-authority"):
        ca_file = rel(cluster["certificate-authority"])
    client_cert = client_key = None
    if user.get("client-certificate-data"):
        client_cert = materialise("client.crt", _b64(user["client-certificate-data"],
                                                     "client-certificate-data"))
    elif user.get("client-certificate"):
        client_cert = rel(user["client-certificate"])
    if user.get("client-key-data"):
        client_key = materialise("client.key", _b64(user["client-key-data"], "client-key-data"))
    elif user.get("client-key"):
        client_key = rel(user["client-key"])
    if plugin is not None and plugin.client_cert and not client_cert:
        client_cert, client_key = plugin.client_cert, plugin.client_key
    for what, f in (("certificate-authority", ca_file), ("client-certificate", client_cert),
                    ("client-key", client_key)):
        if f and not os.path.isfile(f):
            raise KubeConfigError(f"kubeconfig {path}: {what} file {f} does not exist")
    token_file = rel(user["tokenFile"]) if user.get("tokenFile") else None
    return ConnectionParams(
        server=str(server), token=user.get("token") or None, token_file=token_file,
        ca_file=ca_file, insecure=bool(cluster.get("insecure-skip-tls-verify")),
        client_cert=client_cert, client_key=client_key,
        proxy=cluster.get("proxy-url") or None, namespace=ctx.get("namespace") or None,
        token_provider=plugin.provider if plugin else None,
        source=f"kubeconfig {path} (context {ctx_name})")


def in_cluster_available(*, sa_dir: str = DEFAULT_SA_DIR,
                         environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST") and env.get("KUBERNETES_SERVICE_PORT")
                and os.path.isfile(os.path.join(sa_dir, "token")))


def from_service_account(*, sa_dir: str = DEFAULT_SA_DIR,
                         environ: Mapping[str, str] | None = None) -> ConnectionParams:
    """In-cluster settings (what client-go's rest.InClusterConfig reads)."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise KubeConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST and "
                              "KUBERNETES_SERVICE_PORT must be set")
    token_file = os.path.join(sa_dir, "token")
    if not os.path.isfile(token_file):
        raise KubeConfigError(f"service account token {token_file} does not exist")
    try:
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    except ValueError:
        pass  # a host name
    ca_file = os.path.join(sa_dir, "ca.crt")
    namespace = None
    try:
        with open(os.path.join(sa_dir, "namespace"), encoding="utf-8") as fh:
            namespace = fh.read().strip() or None
    except OSError:
        pass
    return ConnectionParams(server=f"https://{host}:{port}", token_file=token_file,
                            ca_file=ca_file if os.path.isfile(ca_file) else None,
                            namespace=namespace, source=f"service account {sa_dir}")


def _unquote(value: str) -> str:
    # `ovs-vsctl get` prints string values in double quotes.
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def from_ovs_values(api_server: str, *, token: str | None = None,
                    ca_certificate: str | None = None, ca_file: str | None = None,
                    data_dir: str | None = None) -> ConnectionParams:
    """Settings from the original's OVS external_ids (or the same values from a config file).

    api_server: "host:port" means http:// (the original's README: "if no protocol is
    specified ... insecure http connection will be used"); a URL is kept. For https:
    an existing `ca_file` is used; else `ca_certificate` (PEM text with literal "\\n") is
    written to `ca_file` (or to a private file if that path is not writable) and used; with
    neither, the system CA bundle applies.
    """
    server = _unquote(api_server)
    if not server:
        raise KubeConfigError("k8s-api-server is empty")
    if "://" not in server:
        server = "http://" + server
    token = _unquote(token) if token else None
    chosen_ca = None
    if server.startswith("https://"):
        if ca_file and os.path.isfile(ca_file):
            chosen_ca = ca_file
        elif ca_certificate and _unquote(ca_certificate):
            pem = _unquote(ca_certificate).replace("\\n", "\n").encode()
            if ca_file:
                try:
                    os.makedirs(os.path.dirname(os.path.abspath(ca_file)), exist_ok=True)
                    chosen_ca = _write_private(os.path.dirname(os.path.abspath(ca_file)),
                                               os.path.basename(ca_file), pem)
                except OSError as exc:
                    LOG.warning("kube: cannot write the CA to %s (%s); using a private copy",
                                ca_file, exc)
            if chosen_ca is None:
                chosen_ca = _write_private(_private_dir(data_dir), "ca.crt", pem)
    return ConnectionParams(server=server.rstrip("/"), token=token or None, ca_file=chosen_ca,
                            source="OVS external_ids")


def load_connection_params(*, kubeconfig: str | None = None, api_server: str | None = None,
                           token: str | None = None, ca_certificate: str | None = None,
                           ca_file: str | None = None, context: str | None = None,
                           sa_dir: str = DEFAULT_SA_DIR,
                           environ: Mapping[str, str] | None = None,
                           data_dir: str | None = None) -> ConnectionParams:
    """The first source that applies, in this order:

    1. an explicit `kubeconfig` file;
    2. an explicit `api_server` (with `token`, `ca_certificate`, `ca_file`: OVS style);
    3. the in-cluster service account (KUBERNETES_SERVICE_HOST/PORT and a token in sa_dir);
    4. $KUBECONFIG or ~/.kube/config.
    """
    if kubeconfig:
        return from_kubeconfig(kubeconfig, context=context, data_dir=data_dir)
    if api_server:
        return from_ovs_values(api_server, token=token, ca_certificate=ca_certificate,
                               ca_file=ca_file, data_dir=data_dir)
    if in_cluster_available(sa_dir=sa_dir, environ=environ):
        return from_service_account(sa_dir=sa_dir, environ=environ)
    if default_kubeconfig_path(environ):
        return from_kubeconfig(None, context=context, data_dir=data_dir, environ=environ)
    raise KubeConfigError("no Kubernetes API server configured: give a kubeconfig or "
                          "k8s-api-server, or run in a cluster")
