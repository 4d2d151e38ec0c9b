"""kubeconfig credentials from programs (ovn_k8s.kube.credentials): `exec` plugins and
`auth-provider` entries, used for real against an https server that checks the token or the
client certificate. The plugins are small scripts that speak the ExecCredential protocol."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time

import pytest
import yaml

from ovn_k8s.kube import auth
from ovn_k8s.kube.errors import KubeConfigError, Unauthorized
from ovn_k8s.kube.rest import KubeClient
from sandbox.kubeapi import KubeApiServer

TOKEN = "exec-token-1"


@pytest.fixture
def server(pki):
    with KubeApiServer(token=TOKEN, tls_cert=pki.server_cert, tls_key=pki.server_key,
                       tls_client_ca=pki.ca_cert, start_resource_version=1) as s:
        s.create("nodes", {"metadata": {"name": "n1"}})
        yield s


def _nodes(params) -> list[str]:
    with KubeClient(params, timeout=5) as c:
        return [n["metadata"]["name"] for n in c.list("/api/v1/nodes")["items"]]


def _plugin(tmp_path, status: dict, *, exit_code: int = 0, stderr: str = "") -> tuple[str, str]:
    """An exec plugin that appends one line per run to a counter file and prints `status`."""
    counter = tmp_path / "runs"
    script = tmp_path / "plugin.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"open({str(counter)!r}, 'a').write(os.environ.get('KUBERNETES_EXEC_INFO', '') + '\\n')\n"
        f"sys.stderr.write({stderr!r})\n"
        f"print(json.dumps({{'apiVersion': 'client.authentication.k8s.io/v1', "
        f"'kind': 'ExecCredential', 'status': {status!r}}}))\n"
        f"sys.exit({exit_code})\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), str(counter)


def _kubeconfig(tmp_path, server_url: str, ca: str, user: dict) -> str:
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "main",
           "clusters": [{"name": "c", "cluster": {"server": server_url,
                                                  "certificate-authority": ca}}],
           "users": [{"name": "u", "user": user}],
           "contexts": [{"name": "main", "context": {"cluster": "c", "user": "u"}}]}
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _exec_user(command: str) -> dict:
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": command,
                     "interactiveMode": "Never"}}


def _runs(counter: str) -> list[str]:
    return open(counter).read().splitlines() if os.path.exists(counter) else []


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def test_exec_plugin_token_is_used_and_not_rerun_while_valid(tmp_path, pki, server):
    command, counter = _plugin(tmp_path, {"token": TOKEN,
                                          "expirationTimestamp": _rfc3339(time.time() + 3600)})
    params = auth.from_kubeconfig(_kubeconfig(tmp_path, server.url, pki.ca_cert,
                                              _exec_user(command)))
    assert TOKEN not in repr(params)
    assert _nodes(params) == ["n1"]
    assert _nodes(params) == ["n1"]
    runs = _runs(counter)
    assert len(runs) == 1  # a valid token is reused, the plugin is not run per request
    # The plugin got the ExecCredential request kubectl sends.
    assert json.loads(runs[0])["kind"] == "ExecCredential"


def test_exec_plugin_is_rerun_when_its_token_expires(tmp_path, pki, server):
    # Inside the loader's five-minute skew the token counts as expired: every request asks again.
    command, counter = _plugin(tmp_path, {"token": TOKEN,
                                          "expirationTimestamp": _rfc3339(time.time() + 60)})
    params = auth.from_kubeconfig(_kubeconfig(tmp_path, server.url, pki.ca_cert,
                                              _exec_user(command)))
    for _ in range(3):
        assert _nodes(params) == ["n1"]
    assert len(_runs(counter)) >= 3


def test_exec_plugin_wrong_token_is_unauthorized(tmp_path, pki, server):
    command, _ = _plugin(tmp_path, {"token": "not-the-token"})
    params = auth.from_kubeconfig(_kubeconfig(tmp_path, server.url, pki.ca_cert,
                                              _exec_user(command)))
    with pytest.raises(Unauthorized):
        _nodes(params)


def test_exec_plugin_client_certificate(tmp_path, pki, server):
    status = {"clientCertificateData": open(pki.client_cert).read(),
              "clientKeyData": open(pki.client_key).read()}
    command, _ = _plugin(tmp_path, status)
    params = auth.from_kubeconfig(_kubeconfig(tmp_path, server.url, pki.ca_cert,
                                              _exec_user(command)))
    assert params.client_cert and params.client_key and params.token_provider is None
    assert _nodes(params) == ["n1"]  # no token at all: the server took the certificate


def test_exec_plugin_failure_is_one_clear_error(tmp_path, pki, server):
    command, _ = _plugin(tmp_path, {}, exit_code=3, stderr="sso session expired")
    with pytest.raises(KubeConfigError) as exc:
        auth.from_kubeconfig(_kubeconfig(tmp_path, server.url, pki.ca_cert, _exec_user(command)))
    message = str(exc.value)
    assert "\n" not in message and "(exec)" in message and "returned 3" in message
    assert "sso session expired" in message


def test_exec_plugin_missing_command(tmp_path, pki, server):
    with pytest.raises(KubeConfigError, match=r"\(exec\)"):
        auth.from_kubeconfig(_kubeconfig(tmp_path, server.url, pki.ca_cert,
                                         _exec_user("/nonexistent/aws-iam-authenticator")))


def _jwt(exp: float) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'iss': 'https://issuer.invalid', 'exp': int(exp)})}.sig"


def test_oidc_auth_provider_id_token(tmp_path, pki):
    token = _jwt(time.time() + 3600)
    with KubeApiServer(token=token, tls_cert=pki.server_cert, tls_key=pki.server_key,
                       start_resource_version=1) as s:
        s.create("nodes", {"metadata": {"name": "n1"}})
        user = {"auth-provider": {"name": "oidc", "config": {
            "client-id": "k8s", "idp-issuer-url": "https://issuer.invalid", "id-token": token}}}
        params = auth.from_kubeconfig(_kubeconfig(tmp_path, s.url, pki.ca_cert, user))
        assert _nodes(params) == ["n1"]


def test_plain_token_kubeconfig_does_not_import_kubernetes(tmp_path):
    (tmp_path / "ca.crt").write_text("")
    path = _kubeconfig(tmp_path, "https://127.0.0.1:1", str(tmp_path / "ca.crt"), {"token": "t"})
    code = ("import sys\nfrom ovn_k8s.kube import auth\n"
            f"auth.from_kubeconfig({path!r})\nprint('kubernetes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "False"
